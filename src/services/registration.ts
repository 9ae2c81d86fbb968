/**
 * Dynamic registration use cases (spec 2 and 3), independent of the transport that carried
 * them: the HTTPS route and the MQTT CONNECT authenticators translate their inputs into these
 * calls and these errors into their reply codes.
 *
 * - registerPreRegistered: `/auth/register/device` and MQTT `authType=register`. The device
 *   must exist; the answer is its CURRENT DeviceSecret. Unlike the cloud (which issues a new
 *   secret per call, the last one winning) we deliberately return the same secret on every
 *   call before activation: a device whose answer was lost, or two racing requests, can never
 *   end up holding a dead secret.
 * - registerWithoutPreRegistration: MQTT `authType=regnwl`. Creates the device if needed
 *   (within the product's device limit) and answers with a credential slot (regnwl-slots.ts:
 *   up to 5 physical devices per name; an unactivated slot is answered again).
 * - verifyConnwl: the `authType=connwl` login that follows regnwl (any live slot).
 */
import { ThingAuthError } from '../core/errors.js';
import { refusalOfError } from '../core/refusals.js';
import { registrationSignPairs } from '../core/credentials.js';
import { assertDeviceName, assertProductKey, generateDeviceSecret, generateDeviceToken, generateIotId, randomAlnum } from '../core/names.js';
import { boundGatewayOf, type Device, type Product } from '../core/records.js';
import { buildSignContent, constantTimeEquals, parseSignMethod, verifySignature } from '../core/sign.js';
import type { Logger } from '../logger.js';
import type { Store } from '../store/store.js';
import type { RegistryEvents } from './events.js';
import { KeyedTokenBucket } from './rate-limiter.js';
import { sourceKey } from './login-throttle.js';
import type { LogLimiter } from './log-limiter.js';
import type { AuditLog } from './audit.js';
import type { Metrics } from './metrics.js';
import { RegnwlSlots, type ConnwlMatch } from './regnwl-slots.js';

export { generateIssuedClientId } from './regnwl-slots.js';

export type RegistrationChannel = 'https' | 'mqtt';

export interface RegistrationTransport {
  channel: RegistrationChannel;
  /** Whether the request actually arrived over TLS (not what the client claims). */
  tls: boolean;
  sourceAddress?: string | null;
}

/** Fields as the device sent them; validated here so every edge gets the same answers. */
export interface RegistrationRequest {
  productKey: unknown;
  deviceName: unknown;
  random: unknown;
  sign: unknown;
  /** Absent = hmacmd5, the documented default of the protocol family (spec 0.1). */
  signMethod?: unknown;
  transport: RegistrationTransport;
}

export interface PreRegistrationResult {
  productKey: string;
  deviceName: string;
  deviceSecret: string;
}

export interface PreRegistrationFreeResult {
  productKey: string;
  deviceName: string;
  clientId: string;
  deviceToken: string;
}

export interface ConnwlRequest {
  productKey: string;
  deviceName: string;
  /** The part of the MQTT ClientId before the first `|`. */
  clientId: string;
  /** The MQTT password: the DeviceToken verbatim. */
  deviceToken: string;
}

export interface RegistrationOptions {
  /** Requests per product per second (token bucket, burst twice that). */
  ratePerSecond: number;
  /**
   * Requests per source address per second (token bucket, burst twice that; IPv6 per /64),
   * taken before the product's bucket so one source cannot starve a product's other
   * devices. 0 or absent = off.
   */
  ratePerSourcePerSecond?: number;
  /** Product device limit when the product sets none. */
  defaultDeviceLimit: number;
}

/** Longest `random` accepted: C SDKs send a uint32, Python 15 characters; 128 leaves room. */
export const MAX_RANDOM_LENGTH = 128;
const MAX_SIGN_LENGTH = 128;

function requireString(value: unknown, field: string, max: number): string {
  if (typeof value !== 'string' || value === '') {
    throw new ThingAuthError('INVALID_ARGUMENT', `${field} is required`, { field });
  }
  if (value.length > max) {
    throw new ThingAuthError('INVALID_ARGUMENT', `${field} must be at most ${max} characters`, { field });
  }
  return value;
}

interface VerifiedRequest {
  product: Product;
  deviceName: string;
  random: string;
}

/** Looks a product up by key; undefined when there is none. */
export type ProductSource = (productKey: string) => Promise<Product | undefined>;

export class RegistrationService {
  private readonly limiter: KeyedTokenBucket;
  private readonly sourceLimiter: KeyedTokenBucket | undefined;
  /** The pre-registration-free credential slots (also the operator's list/revoke). */
  readonly slots: RegnwlSlots;
  /** Set by createServices: decisions go to the batched audit log and the registration metrics; refusal lines through the log limiter. */
  observers?: { audit: AuditLog; metrics: Metrics; logLimiter?: LogLimiter };
  /**
   * Set by createServices to the authenticator's product cache (dropped on product.changed,
   * which every product update, secret change and delete emits): a product read was a tenth
   * of a registration's CPU. Devices are still read from the store on every request, so the
   * answer always carries the current secret and an activation refuses at once.
   */
  products?: ProductSource;

  constructor(
    private readonly store: Store,
    private readonly events: RegistryEvents,
    private readonly opts: RegistrationOptions,
    private readonly logger?: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.limiter = new KeyedTokenBucket({ ratePerSecond: opts.ratePerSecond });
    this.sourceLimiter = opts.ratePerSourcePerSecond ? new KeyedTokenBucket({ ratePerSecond: opts.ratePerSourcePerSecond }) : undefined;
    this.slots = new RegnwlSlots(store, events, now);
  }

  private ts(): string {
    return this.now().toISOString();
  }

  private product(productKey: string): Promise<Product | undefined> {
    return this.products ? this.products(productKey) : this.store.getProduct(productKey);
  }

  /**
   * Checks shared by both registration kinds: transport, parameters (460), product (6250),
   * switch (6288), signMethod (6292), signature (6600), and only then the rate (429): first
   * the source's bucket, then the product's. A request without the ProductSecret therefore
   * never takes a token (it could otherwise drain the product's budget and lock its honest
   * devices out, issue 11 item 7), a source over its own rate takes none of the product's,
   * and the product limiter only ever holds buckets for products that exist.
   */
  private async verifyRequest(req: RegistrationRequest, kind: 'register' | 'regnwl'): Promise<VerifiedRequest> {
    const verified = await this.checkRequest(req, kind);
    const source = sourceKey(req.transport.sourceAddress);
    if (this.sourceLimiter && source !== undefined && !this.sourceLimiter.tryTake(source)) {
      throw new ThingAuthError('RATE_LIMITED', 'too many registration requests from this address; retry later');
    }
    if (!this.limiter.tryTake(verified.product.productKey)) {
      throw new ThingAuthError('RATE_LIMITED', `too many registration requests for product ${verified.product.productKey}; retry later`);
    }
    return verified;
  }

  /** verifyRequest's checks up to the signature, without taking from the rate buckets (also the doctor's). */
  private async checkRequest(req: RegistrationRequest, kind: 'register' | 'regnwl'): Promise<VerifiedRequest> {
    if (!req.transport.tls) {
      throw new ThingAuthError('INVALID_ARGUMENT', 'dynamic registration is accepted over TLS only; connect with TLS (securemode=2 or -2)', { field: 'transport', refusal: 'tls-required' });
    }
    const productKey = requireString(req.productKey, 'productKey', 64);
    assertProductKey(productKey);
    const deviceName = requireString(req.deviceName, 'deviceName', 64);
    assertDeviceName(deviceName);
    const random = requireString(req.random, 'random', MAX_RANDOM_LENGTH);
    const sign = requireString(req.sign, 'sign', MAX_SIGN_LENGTH);
    const signMethod = req.signMethod === undefined || req.signMethod === '' ? 'hmacmd5' : req.signMethod;
    if (typeof signMethod !== 'string') {
      throw new ThingAuthError('INVALID_ARGUMENT', 'signMethod must be a string', { field: 'signMethod' });
    }

    const product = await this.product(productKey);
    if (!product) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${productKey} not found`, { field: 'productKey' });
    if (!product.dynamicRegistration) {
      throw new ThingAuthError('DYNAMIC_REGISTRATION_OFF', `dynamic registration is switched off for product ${productKey}`);
    }
    if (kind === 'regnwl' && !product.preRegistrationFree) {
      throw new ThingAuthError('DYNAMIC_REGISTRATION_OFF', `pre-registration-free registration is switched off for product ${productKey}`);
    }
    const algorithm = parseSignMethod(signMethod);
    if (!algorithm) {
      throw new ThingAuthError('UNSUPPORTED_SIGN_METHOD', 'signMethod must be hmacmd5, hmacsha1 or hmacsha256 (any case)', { field: 'signMethod' });
    }
    const content = buildSignContent(registrationSignPairs(deviceName, productKey, random));
    if (!verifySignature(algorithm, product.productSecret, content, sign)) {
      throw new ThingAuthError('BAD_SIGNATURE', 'sign does not match: HMAC over deviceName, productKey, random with the ProductSecret', { field: 'sign' });
    }
    return { product, deviceName, random };
  }

  /** Refuses a `random` already used for this device when the product asks for it. */
  private async checkReplay(product: Product, device: Device, random: string): Promise<void> {
    if (!product.replayProtection) return;
    if (!(await this.store.useRegistrationRandom(device.iotId, random, this.ts()))) {
      throw new ThingAuthError('INVALID_ARGUMENT', 'random was already used for this device; send a fresh random', { field: 'random', replayed: true, refusal: 'replayed' });
    }
  }

  private audit(action: string, req: RegistrationRequest, result: 'ok' | 'deny' | 'error', reason: string | null): void {
    const entry = {
      at: this.ts(),
      action,
      actor: 'device',
      productKey: typeof req.productKey === 'string' ? req.productKey.slice(0, 64) : null,
      deviceName: typeof req.deviceName === 'string' ? req.deviceName.slice(0, 64) : null,
      sourceAddress: req.transport.sourceAddress ?? null,
      result,
      reason,
    };
    this.observers?.metrics.registration(action, result);
    if (this.observers) this.observers.audit.record(entry);
    else this.store.appendAudit([entry]).catch((e) => this.logger?.warn({ err: e }, 'audit append failed'));
  }

  private async run<T>(action: string, req: RegistrationRequest, body: () => Promise<T>): Promise<T> {
    try {
      const out = await body();
      this.audit(action, req, 'ok', null);
      // Debug, as the broker's accepted CONNECTs: every registration is in the audit log
      // already, and an info line per request was a tenth of the HTTPS route's CPU.
      // Refusals stay at info.
      this.logger?.debug({ action, productKey: req.productKey, deviceName: req.deviceName, channel: req.transport.channel }, 'dynamic registration answered');
      return out;
    } catch (e) {
      const known = e instanceof ThingAuthError;
      this.audit(action, req, known ? 'deny' : 'error', known ? e.message : 'internal error');
      const fields = { action, productKey: typeof req.productKey === 'string' ? req.productKey.slice(0, 64) : undefined, channel: req.transport.channel, remote: req.transport.sourceAddress ?? undefined };
      if (!known) this.logger?.error({ ...fields, err: e }, 'dynamic registration refused');
      // Refusals are the client's doing: rate-limited per source, so a flood cannot flood the log (issue 11 item 11).
      else if (this.observers?.logLimiter) this.observers.logLimiter.log('info', 'registration.refused', req.transport.sourceAddress, { ...fields, reason: e.kind, refusal: refusalOfError(e) }, 'dynamic registration refused');
      else this.logger?.info({ ...fields, reason: e.kind, refusal: refusalOfError(e) }, 'dynamic registration refused');
      throw e;
    }
  }

  /** Pre-registration (spec 2, 3.1 `register`): returns the device's current DeviceSecret. */
  registerPreRegistered(req: RegistrationRequest): Promise<PreRegistrationResult> {
    return this.run(`register.${req.transport.channel}`, req, async () => {
      const { product, deviceName, random } = await this.verifyRequest(req, 'register');
      const device = await this.preRegisteredDevice(product, deviceName);
      await this.checkReplay(product, device, random);
      return { productKey: device.productKey, deviceName: device.deviceName, deviceSecret: device.deviceSecret };
    });
  }

  /**
   * The connection doctor (issue 17): the checks a registration request passes, in the same
   * order and with the same errors as the real one, but with no effect: no rate bucket is
   * taken, no random used up, nothing created, nothing audited, and no secret returned.
   * Resolves when the request would be answered; throws the refusal otherwise. A replayed
   * random and the rate limits are not judged (they depend on the moment of the request).
   */
  async diagnose(req: RegistrationRequest, kind: 'register' | 'regnwl'): Promise<void> {
    const { product, deviceName } = await this.checkRequest(req, kind);
    if (kind === 'register') await this.preRegisteredDevice(product, deviceName);
  }

  /** The device a pre-registration answers for, or the refusal (product kind, existence, switches, binding). */
  private async preRegisteredDevice(product: Product, deviceName: string): Promise<Device> {
    // Issue 11 item 10: a pre-registration-free product offers regnwl (ClientID + DeviceToken)
    // only; handing its devices a DeviceSecret would be a second way in it never offered.
    if (product.preRegistrationFree) {
      throw new ThingAuthError('DYNAMIC_REGISTRATION_OFF', `product ${product.productKey} is pre-registration-free: its devices register with authType=regnwl only, never for a DeviceSecret`);
    }
    const device = await this.store.getDevice(product.productKey, deviceName);
    if (!device) {
      throw new ThingAuthError('DEVICE_NOT_FOUND', `device ${deviceName} not found in product ${product.productKey}; pre-registration needs the device created first`, { field: 'deviceName' });
    }
    if (!device.enabled) throw new ThingAuthError('DEVICE_DISABLED', `device ${deviceName} is disabled`);
    if (device.activatedAt) {
      throw new ThingAuthError('DEVICE_ALREADY_ACTIVATED', `device ${deviceName} is already activated; an operator must reset it before it can register again`);
    }
    // Issue 11 item 8: a sub-device bound to a gateway gets its secret through that gateway
    // only; the ProductSecret must not be a way around the binding.
    if (boundGatewayOf(device)) {
      throw new ThingAuthError('SUB_DEVICE_BOUND', `device ${deviceName} is bound to a gateway; it registers through that gateway, or an operator releases it`);
    }
    return device;
  }

  /** Pre-registration-free (spec 3.1 `regnwl`): creates the device if needed, answers with a credential slot. */
  registerWithoutPreRegistration(req: RegistrationRequest): Promise<PreRegistrationFreeResult> {
    return this.run(`regnwl.${req.transport.channel}`, req, async () => {
      const { product, deviceName, random } = await this.verifyRequest(req, 'regnwl');
      const issued = await this.slots.issue(product, deviceName, this.opts.defaultDeviceLimit);
      await this.checkReplay(product, issued.device, random);
      return { productKey: issued.device.productKey, deviceName: issued.device.deviceName, clientId: issued.clientId, deviceToken: issued.deviceToken };
    });
  }

  /**
   * The `connwl` login: the token must be the one issued to (pk, dn) together with that
   * ClientID in one live slot. Works whatever the product's registration switches say now:
   * devices already in the field keep working when an operator closes registration.
   */
  async verifyConnwl(req: ConnwlRequest): Promise<ConnwlMatch> {
    return this.slots.verifyConnwl(req, await this.product(req.productKey));
  }
}
