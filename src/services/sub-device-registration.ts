/**
 * Sub-device dynamic registration through a gateway (spec 4.1, 4.2). Both kinds hand out the
 * DeviceSecret of a pre-created sub-device of a product with dynamic registration on:
 * - `thing/sub/register`: no signature, the gateway's authenticated session is the proof;
 * - `thing/proxy/provisioning/product_register`: each item signed with the sub-product's
 *   ProductSecret over deviceName, productKey, random.
 * Like the HTTPS pre-registration (services/registration.ts) the answer is the device's
 * CURRENT secret, the same on every call until the device is activated (then 6289): a lost
 * answer can never leave firmware holding a dead secret. Results are per item.
 *
 * Binding (issue 11 item 8): the secret goes to ONE gateway. The first gateway a sub-device's
 * secret is issued to becomes its registrar (Store.claimSubDeviceRegistration, atomic); from
 * then on, and while the sub-device sits in another gateway's topology, every other gateway
 * gets 6619 until an operator releases it (TopologyService.releaseByOperator). Otherwise any
 * gateway could harvest the secret of every unactivated sub-device and later sign topo/add.
 */
import { registrationSignPairs } from '../core/credentials.js';
import { boundGatewayOf, type Product } from '../core/records.js';
import { buildSignContent, parseSignMethod, verifySignature } from '../core/sign.js';
import {
  SubDeviceCodes as C,
  foldItems,
  missingIdentity,
  requestItems,
  subDeviceIdentity,
  type AlinkResult,
  type ItemOutcome,
} from '../core/sub-device-protocol.js';
import type { Logger } from '../logger.js';
import type { DeviceRef } from './events.js';
import type { Store } from '../store/store.js';
import type { AuditLog } from './audit.js';
import type { Metrics } from './metrics.js';
import { gatewayActor, outcomeAuditEntries } from './sub-device-audit.js';
import type { TopologyService } from './topology.js';

const MAX_RANDOM_LENGTH = 128;

/** Documented in README (gateway section) and docs/security.md. */
const BOUND_ELSEWHERE = {
  code: C.BOUND_TO_OTHER_GATEWAY,
  message: 'sub-device is bound to another gateway; an operator must release it (POST /api/v1/products/{pk}/devices/{dn}/release) first',
} as const;

export class SubDeviceRegistrationService {
  /** Set by createServices: decisions go to the batched audit log and the registration metrics. */
  observers?: { audit: AuditLog; metrics: Metrics };
  constructor(
    private readonly store: Store,
    private readonly topology: TopologyService,
    private readonly logger?: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** `thing/sub/register`: params [{productKey, deviceName}]. */
  async register(gateway: DeviceRef, params: unknown): Promise<AlinkResult> {
    const notGateway = await this.topology.gatewayCheck(gateway);
    if (notGateway) return notGateway;
    const request = requestItems(params, 'params must be a non-empty list of {productKey, deviceName}');
    if ('refusal' in request) return request.refusal;
    const products = new Map<string, Product | undefined>();
    const outcomes: ItemOutcome[] = [];
    for (const item of request.items) {
      const id = subDeviceIdentity(item);
      if (!id) {
        outcomes.push(missingIdentity());
        continue;
      }
      outcomes.push(await this.issue(gateway, id.productKey, id.deviceName, products));
    }
    this.audit('register.sub', gateway, outcomes);
    return foldItems(outcomes);
  }

  /** `thing/proxy/provisioning/product_register`: params {proxieds: [{productKey, deviceName, random, signMethod, sign}]}. */
  async provisionByProduct(gateway: DeviceRef, params: unknown): Promise<AlinkResult> {
    const notGateway = await this.topology.gatewayCheck(gateway);
    if (notGateway) return notGateway;
    // Lenient: the list may also come bare, without the `proxieds` wrapper.
    const list =
      params !== null && typeof params === 'object' && !Array.isArray(params) && 'proxieds' in params
        ? (params as { proxieds: unknown }).proxieds
        : params;
    const request = requestItems(list, 'params.proxieds must be a non-empty list of {productKey, deviceName, random, signMethod, sign}');
    if ('refusal' in request) return request.refusal;
    const products = new Map<string, Product | undefined>();
    const outcomes: ItemOutcome[] = [];
    for (const item of request.items) {
      const id = subDeviceIdentity(item);
      if (!id) {
        outcomes.push(missingIdentity());
        continue;
      }
      const entry = item as Record<string, unknown>;
      const { random, sign } = entry;
      const method = entry.signMethod ?? entry.signmethod ?? 'hmacmd5';
      if (typeof random !== 'string' || random === '' || random.length > MAX_RANDOM_LENGTH) {
        outcomes.push({ ...id, code: C.PARAM_ERROR, message: `random must be a string of 1-${MAX_RANDOM_LENGTH} characters` });
        continue;
      }
      if (typeof sign !== 'string' || sign === '') {
        outcomes.push({ ...id, code: C.PARAM_ERROR, message: 'sign is required' });
        continue;
      }
      const product = await this.productOf(id.productKey, products);
      if (!product) {
        outcomes.push({ ...id, code: C.PRODUCT_NOT_FOUND, message: `product ${id.productKey} not found` });
        continue;
      }
      const algorithm = parseSignMethod(typeof method === 'string' ? method : undefined);
      if (!algorithm) {
        outcomes.push({ ...id, code: C.UNSUPPORTED_SIGN_METHOD, message: 'signMethod must be hmacmd5, hmacsha1 or hmacsha256 (any case)' });
        continue;
      }
      const content = buildSignContent(registrationSignPairs(id.deviceName, id.productKey, random));
      if (!verifySignature(algorithm, product.productSecret, content, sign)) {
        outcomes.push({ ...id, code: C.REGISTER_SIGN_ERROR, message: 'sign does not match: HMAC over deviceName, productKey, random with the sub-product\'s ProductSecret' });
        continue;
      }
      outcomes.push(await this.issue(gateway, id.productKey, id.deviceName, products));
    }
    this.audit('register.proxy', gateway, outcomes);
    return foldItems(outcomes);
  }

  private async productOf(productKey: string, cache: Map<string, Product | undefined>): Promise<Product | undefined> {
    if (!cache.has(productKey)) cache.set(productKey, await this.store.getProduct(productKey));
    return cache.get(productKey);
  }

  /** The checks both kinds share, in the order of the spec's code list; success carries the secret. */
  private async issue(gateway: DeviceRef, productKey: string, deviceName: string, products: Map<string, Product | undefined>): Promise<ItemOutcome> {
    const id = { productKey, deviceName };
    if (productKey === gateway.productKey && deviceName === gateway.deviceName) {
      return { ...id, code: C.GATEWAY_ITSELF, message: 'a gateway cannot register itself as a sub-device' };
    }
    // The device before its product: while it exists the store keeps the product's nodeType,
    // so a product read after it is the one the device lives under (the answers keep the
    // spec's order below).
    const sub = await this.store.getDevice(productKey, deviceName);
    const product = await this.productOf(productKey, products);
    if (!product) return { ...id, code: C.PRODUCT_NOT_FOUND, message: `product ${productKey} not found` };
    if (product.nodeType !== 'SUB_DEVICE') {
      return { ...id, code: C.PARAM_ERROR, message: `product ${productKey} has nodeType ${product.nodeType}; only SUB_DEVICE products register through a gateway` };
    }
    if (!product.dynamicRegistration) return { ...id, code: C.DYNAMIC_REGISTRATION_OFF, message: `dynamic registration is switched off for product ${productKey}` };
    if (!sub) return { ...id, code: C.DEVICE_NOT_FOUND, message: 'sub-device not found; sub-devices must be created before they register' };
    const bound = boundGatewayOf(sub);
    if (bound && bound !== gateway.iotId) return { ...id, ...BOUND_ELSEWHERE };
    if (!sub.enabled) return { ...id, code: C.DEVICE_DISABLED, message: 'sub-device is disabled' };
    if (sub.activatedAt) {
      return { ...id, code: C.ALREADY_ACTIVATED, message: 'sub-device is already activated; an operator must reset it before it can register again' };
    }
    // The checks above read a snapshot; the claim decides atomically (a racing gateway loses,
    // and so does a registration racing the sub-device's first login on another node).
    if (!(await this.store.claimSubDeviceRegistration(sub.iotId, gateway.iotId, { unactivatedOnly: true }))) {
      const now = await this.store.getDeviceByIotId(sub.iotId);
      if (!now) return { ...id, code: C.DEVICE_NOT_FOUND, message: 'sub-device not found; sub-devices must be created before they register' };
      const boundNow = boundGatewayOf(now);
      if (now.activatedAt && (!boundNow || boundNow === gateway.iotId)) {
        return { ...id, code: C.ALREADY_ACTIVATED, message: 'sub-device is already activated; an operator must reset it before it can register again' };
      }
      return { ...id, ...BOUND_ELSEWHERE };
    }
    // The secret as it is after the claim: a rotation on another node since the read above is
    // not answered with the secret it replaced.
    const claimed = await this.store.getDeviceByIotId(sub.iotId);
    if (!claimed) return { ...id, code: C.DEVICE_NOT_FOUND, message: 'sub-device not found; sub-devices must be created before they register' };
    return { ...id, code: C.SUCCESS, message: 'success', extra: { iotId: claimed.iotId, deviceSecret: claimed.deviceSecret } };
  }

  private audit(action: string, gateway: DeviceRef, outcomes: ItemOutcome[]): void {
    if (outcomes.length === 0) return;
    const at = this.now().toISOString();
    const entries = outcomeAuditEntries(at, action, gatewayActor(gateway), outcomes, () => null);
    if (!this.observers) {
      this.store.appendAudit(entries).catch((e) => this.logger?.warn({ err: e }, 'audit append failed'));
      return;
    }
    for (const e of entries) {
      this.observers.audit.record(e);
      this.observers.metrics.registration(action, e.result);
    }
  }
}
