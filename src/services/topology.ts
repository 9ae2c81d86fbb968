/**
 * Gateway topology (spec 4.3, 4.4): which sub-devices a gateway may log in. Two ways in:
 * - the gateway's own `thing/topo/add|delete|get` (each added entry signed with the
 *   sub-device's DeviceSecret, checked like a CONNECT; per-item results);
 * - the operator (management API, CLI): no signatures, all or nothing.
 *
 * Rules (decided here, documented in the README):
 * - The gateway must be a device of a GATEWAY product, and a sub-device a device of a
 *   SUB_DEVICE product. Topology gives a connection the power to act for other identities;
 *   an ordinary device must not gain it, and a directly connecting device must not be
 *   reachable through a gateway.
 * - A sub-device has at most one gateway. Adding it under another gateway moves it (spec:
 *   the latest topology wins); its login through the old gateway ends ('topology.changed'
 *   with `removed` for the old gateway, which the session service turns into a 6401 notice).
 * - At most `subDeviceLimit` sub-devices per gateway, enforced atomically by the store.
 * - A gateway's own topo/add cannot take a sub-device from the gateway it is bound to
 *   (issue 11 item 8; `boundGatewayOf`: its topology's gateway, else its registrar): before
 *   activation never (its secret was issued to that gateway only), after activation not while
 *   that gateway is connected. Both get 6619; the operator moves it or releases it.
 * - topo/add answers an unknown sub-device (or product) exactly as a bad sign (401, one
 *   message), and checks everything else only after the sign verified: a gateway without the
 *   DeviceSecret learns nothing about which sub-devices exist or to whom they are bound.
 */
import { randomBytes } from 'node:crypto';
import { ThingAuthError, isThingAuthError } from '../core/errors.js';
import { boundGatewayOf, type Device, type Product } from '../core/records.js';
import {
  SubDeviceCodes as C,
  checkSubDeviceSignRotating,
  fail,
  foldItems,
  missingIdentity,
  ok,
  requestItems,
  subDeviceIdentity,
  type AlinkResult,
  type ItemOutcome,
} from '../core/sub-device-protocol.js';
import type { Logger } from '../logger.js';
import { PREVIOUS_SECRET_REASON } from '../core/secret-rotation.js';
import type { Page, Store } from '../store/store.js';
import type { DeviceRef, RegistryEvents } from './events.js';
import { gatewayActor, outcomeAuditEntries, type AuditedOutcome } from './sub-device-audit.js';

export interface TopologyOptions {
  subDeviceLimit: number;
}

export interface SubDeviceName {
  productKey: string;
  deviceName: string;
}

/** What topo/add needs to know about live connections (the broker edge answers it). */
export interface LiveGateways {
  /** Does this gateway (IotId) have a live MQTT session now? */
  isConnected(gatewayIotId: string): boolean;
}

/** topo/add's one answer for "no such sub-device (or product)" and "sign does not match". */
export const TOPO_ADD_UNVERIFIED = {
  code: C.TOPO_SIGN_ERROR,
  message: 'sub-device not found or sign does not match (HMAC over the entry fields with the sub-device DeviceSecret)',
} as const;

/**
 * Signs an unknown sub-device's entry against this instead of returning early, so an unknown
 * name costs the same HMAC work as a known one. Random per process: nothing can match it.
 */
const UNKNOWN_SUB_DEVICE_SECRETS = { deviceSecret: randomBytes(16).toString('hex'), previousDeviceSecret: null, previousSecretExpiresAt: null };

export function refOf(d: DeviceRef): DeviceRef {
  return { iotId: d.iotId, productKey: d.productKey, deviceName: d.deviceName };
}

export class TopologyService {
  constructor(
    private readonly store: Store,
    private readonly events: RegistryEvents,
    private readonly opts: TopologyOptions,
    private readonly logger?: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {}

  get subDeviceLimit(): number {
    return this.opts.subDeviceLimit;
  }

  /** Device-protocol guard: only a device of a GATEWAY product speaks for sub-devices. */
  async gatewayCheck(gateway: DeviceRef): Promise<AlinkResult | undefined> {
    const product = await this.store.getProduct(gateway.productKey);
    if (!product || product.nodeType !== 'GATEWAY') {
      return fail(C.NOT_A_GATEWAY, `device ${gateway.productKey}/${gateway.deviceName} is not a gateway: its product's nodeType is ${product?.nodeType ?? 'unknown'}, not GATEWAY`);
    }
    return undefined;
  }

  // ---- the gateway's own messages ----

  /**
   * `thing/topo/add`: each entry signed with the sub-device's DeviceSecret. `live` tells
   * whether a gateway is connected (no edge given = none is: nothing then counts as live).
   */
  async addSigned(gateway: DeviceRef, params: unknown, live?: LiveGateways): Promise<AlinkResult> {
    const notGateway = await this.gatewayCheck(gateway);
    if (notGateway) return notGateway;
    const request = requestItems(params, 'params must be a non-empty list of {productKey, deviceName, clientId, timestamp, signmethod, sign}');
    if ('refusal' in request) return request.refusal;

    const outcomes: ItemOutcome[] = [];
    // What the audit records instead of the reply's message (the operator may know why).
    const auditReasons = new Map<number, string>();
    const accepted: { index: number; sub: Device }[] = [];
    const products = new Map<string, Product | undefined>();
    for (const item of request.items) {
      const id = subDeviceIdentity(item);
      if (!id) {
        outcomes.push(missingIdentity());
        continue;
      }
      if (id.productKey === gateway.productKey && id.deviceName === gateway.deviceName) {
        outcomes.push({ ...id, code: C.GATEWAY_ITSELF, message: 'a gateway cannot be its own sub-device' });
        continue;
      }
      // Read whether or not the product exists: the same store work either way. The device
      // before its product: while a device exists the store keeps its product's nodeType.
      const record = await this.store.getDevice(id.productKey, id.deviceName);
      if (!products.has(id.productKey)) products.set(id.productKey, await this.store.getProduct(id.productKey));
      const found = products.get(id.productKey) ? record : undefined;
      // Unknown or not: the same sign work and the same answers, until the sign verified.
      const sign = checkSubDeviceSignRotating(item as Record<string, unknown>, found ?? UNKNOWN_SUB_DEVICE_SECRETS, this.now().getTime());
      if (!sign.ok && sign.reason !== 'bad-sign') {
        outcomes.push({ ...id, code: C.PARAM_ERROR, message: sign.message });
        continue;
      }
      if (!sign.ok || !found) {
        if (!found) auditReasons.set(outcomes.length, products.get(id.productKey) ? 'sub-device not found' : `product ${id.productKey} not found`);
        outcomes.push({ ...id, ...TOPO_ADD_UNVERIFIED });
        continue;
      }
      const checked = await this.checkCandidate(gateway, id, products, found);
      if ('code' in checked) {
        outcomes.push({ ...id, ...checked });
        continue;
      }
      const taken = this.bindingRefusal(gateway, checked.sub, live);
      if (taken) {
        outcomes.push({ ...id, ...taken });
        continue;
      }
      accepted.push({ index: outcomes.length, sub: checked.sub });
      // The message of a success only reaches the audit: it says when the previous secret signed.
      outcomes.push({ ...id, code: C.SUCCESS, message: sign.secret === 'previous' ? PREVIOUS_SECRET_REASON : 'success' });
    }

    if (accepted.length > 0) {
      const failure = await this.attach(gateway, accepted.map((a) => a.sub), true);
      if (failure) for (const a of accepted) outcomes[a.index] = { ...outcomes[a.index]!, ...failure };
    }
    this.audit('topology.add', gateway, 'device', outcomes.map((o, i) => (auditReasons.has(i) ? { ...o, message: auditReasons.get(i)! } : o)));
    return foldItems(outcomes);
  }

  /**
   * topo/add may not take a sub-device from the gateway it is bound to: before activation
   * never (only that gateway was given its secret), after activation not while that gateway
   * is connected (it is in use there). Operator action (move or release) is the way.
   */
  private bindingRefusal(gateway: DeviceRef, sub: Device, live: LiveGateways | undefined): { code: number; message: string } | undefined {
    const bound = boundGatewayOf(sub);
    if (!bound || bound === gateway.iotId) return undefined;
    if (!sub.activatedAt) {
      return { code: C.BOUND_TO_OTHER_GATEWAY, message: 'sub-device is bound to another gateway; an operator must release it (POST /api/v1/products/{pk}/devices/{dn}/release) or move it' };
    }
    if (sub.gatewayIotId && sub.gatewayIotId !== gateway.iotId && live?.isConnected(sub.gatewayIotId)) {
      return { code: C.BOUND_TO_OTHER_GATEWAY, message: 'sub-device belongs to another gateway that is connected; an operator must move or release it' };
    }
    return undefined;
  }

  /** `thing/topo/delete`: params [{productKey, deviceName}]. */
  async removeByGateway(gateway: DeviceRef, params: unknown): Promise<AlinkResult> {
    const notGateway = await this.gatewayCheck(gateway);
    if (notGateway) return notGateway;
    const request = requestItems(params, 'params must be a non-empty list of {productKey, deviceName}');
    if ('refusal' in request) return request.refusal;
    const outcomes: ItemOutcome[] = [];
    const toDetach: Device[] = [];
    for (const item of request.items) {
      const id = subDeviceIdentity(item);
      if (!id) {
        outcomes.push(missingIdentity());
        continue;
      }
      const sub = await this.store.getDevice(id.productKey, id.deviceName);
      if (!sub) {
        outcomes.push({ ...id, code: C.DEVICE_NOT_FOUND, message: 'sub-device not found' });
      } else if (sub.gatewayIotId !== gateway.iotId) {
        outcomes.push({ ...id, code: C.NOT_IN_TOPOLOGY, message: 'sub-device is not in this gateway\'s topology' });
      } else {
        toDetach.push(sub);
        outcomes.push({ ...id, code: C.SUCCESS, message: 'success' });
      }
    }
    if (toDetach.length > 0) await this.detach(gateway, toDetach, true);
    this.audit('topology.remove', gateway, 'device', outcomes);
    return foldItems(outcomes);
  }

  /** `thing/topo/get`: every sub-device of the gateway as [{productKey, deviceName}]. */
  async getByGateway(gateway: DeviceRef): Promise<AlinkResult> {
    const notGateway = await this.gatewayCheck(gateway);
    if (notGateway) return notGateway;
    const subs = await this.allSubDevices(gateway);
    return ok(subs.map((d) => ({ productKey: d.productKey, deviceName: d.deviceName })));
  }

  // ---- the operator's way (management API, CLI) ----

  private async gatewayRecord(productKey: string, deviceName: string): Promise<Device> {
    // The device before its product: while it exists the store keeps the product's nodeType.
    const gw = await this.store.getDevice(productKey, deviceName);
    const product = await this.store.getProduct(productKey);
    if (!product) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${productKey} not found`, { field: 'productKey' });
    if (!gw) throw new ThingAuthError('DEVICE_NOT_FOUND', `device ${deviceName} not found in product ${productKey}`, { field: 'deviceName' });
    if (product.nodeType !== 'GATEWAY') {
      throw new ThingAuthError('INVALID_ARGUMENT', `device ${productKey}/${deviceName} is not a gateway: product nodeType is ${product.nodeType}, not GATEWAY`, { field: 'deviceName' });
    }
    return gw;
  }

  async list(gwProductKey: string, gwDeviceName: string, offset: number, limit: number): Promise<Page<Device>> {
    const gw = await this.gatewayRecord(gwProductKey, gwDeviceName);
    // listDevices ignores the product filter when gatewayIotId is set: sub-devices may come from any product.
    return this.store.listDevices(gw.productKey, { gatewayIotId: gw.iotId }, offset, limit);
  }

  /** Operator add, all or nothing: nothing is written unless every sub-device qualifies. */
  async addByOperator(gwProductKey: string, gwDeviceName: string, subs: SubDeviceName[]): Promise<{ gateway: Device; added: Device[]; moved: Device[] }> {
    const gw = await this.gatewayRecord(gwProductKey, gwDeviceName);
    if (subs.length === 0) throw new ThingAuthError('INVALID_ARGUMENT', 'subDevices must not be empty', { field: 'subDevices' });
    const products = new Map<string, Product | undefined>();
    const found: Device[] = [];
    const seen = new Set<string>();
    for (const [i, s] of subs.entries()) {
      const field = `subDevices[${i}]`;
      const checked = await this.checkCandidate(gw, s, products);
      if ('code' in checked) {
        const kind = checked.code === C.DEVICE_NOT_FOUND ? 'DEVICE_NOT_FOUND' : checked.code === C.PRODUCT_NOT_FOUND ? 'PRODUCT_NOT_FOUND' : 'INVALID_ARGUMENT';
        throw new ThingAuthError(kind, `${field} (${s.productKey}/${s.deviceName}): ${checked.message}`, { field });
      }
      if (!seen.has(checked.sub.iotId)) {
        seen.add(checked.sub.iotId);
        found.push(checked.sub);
      }
    }
    const failure = await this.attach(gw, found, false);
    if (failure) {
      if (failure.code === C.TOPO_LIMIT) {
        throw new ThingAuthError('SUB_DEVICE_LIMIT_REACHED', failure.message, { field: 'subDevices', limit: this.opts.subDeviceLimit });
      }
      throw new ThingAuthError('INTERNAL', failure.message);
    }
    const added = found.filter((d) => d.gatewayIotId !== gw.iotId);
    const moved = added.filter((d) => d.gatewayIotId !== null);
    this.audit('topology.add', gw, 'admin', found.map((d) => ({ productKey: d.productKey, deviceName: d.deviceName, code: C.SUCCESS, message: 'success' })));
    return { gateway: gw, added, moved };
  }

  /** Operator remove, all or nothing: every named sub-device must be in this gateway's topology. */
  async removeByOperator(gwProductKey: string, gwDeviceName: string, subs: SubDeviceName[]): Promise<{ gateway: Device; removed: Device[] }> {
    const gw = await this.gatewayRecord(gwProductKey, gwDeviceName);
    if (subs.length === 0) throw new ThingAuthError('INVALID_ARGUMENT', 'subDevices must not be empty', { field: 'subDevices' });
    const found: Device[] = [];
    for (const [i, s] of subs.entries()) {
      const field = `subDevices[${i}]`;
      const sub = await this.store.getDevice(s.productKey, s.deviceName);
      if (!sub) throw new ThingAuthError('DEVICE_NOT_FOUND', `${field}: device ${s.deviceName} not found in product ${s.productKey}`, { field });
      if (sub.gatewayIotId !== gw.iotId) {
        throw new ThingAuthError('NOT_FOUND', `${field}: ${s.productKey}/${s.deviceName} is not a sub-device of ${gw.productKey}/${gw.deviceName}`, { field });
      }
      if (!found.some((d) => d.iotId === sub.iotId)) found.push(sub);
    }
    await this.detach(gw, found, false);
    this.audit('topology.remove', gw, 'admin', found.map((d) => ({ productKey: d.productKey, deviceName: d.deviceName, code: C.SUCCESS, message: 'success' })));
    return { gateway: gw, removed: found };
  }

  /**
   * The operator's release of a sub-device (issue 11 item 8): forgets which gateway registered
   * it and takes it out of its gateway's topology (that gateway gets the usual 6401 notice and
   * a topo/change). Afterwards any gateway may register it (if not activated) or add it.
   */
  async releaseByOperator(productKey: string, deviceName: string): Promise<{ device: Device; gateway: Device | undefined; registeredBy: Device | undefined }> {
    // The device before its product: while it exists the store keeps the product's nodeType.
    const sub = await this.store.getDevice(productKey, deviceName);
    const product = await this.store.getProduct(productKey);
    if (!product) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${productKey} not found`, { field: 'productKey' });
    if (!sub) throw new ThingAuthError('DEVICE_NOT_FOUND', `device ${deviceName} not found in product ${productKey}`, { field: 'deviceName' });
    if (product.nodeType !== 'SUB_DEVICE') {
      throw new ThingAuthError('INVALID_ARGUMENT', `device ${productKey}/${deviceName} is not a sub-device: product nodeType is ${product.nodeType}, not SUB_DEVICE`, { field: 'deviceName' });
    }
    const before = await this.store.releaseSubDevice(sub.iotId);
    if (!before) throw new ThingAuthError('DEVICE_NOT_FOUND', `device ${deviceName} not found in product ${productKey}`, { field: 'deviceName' });
    const gateway = before.gatewayIotId ? await this.store.getDeviceByIotId(before.gatewayIotId) : undefined;
    const registeredBy = before.registeredByGatewayIotId ? await this.store.getDeviceByIotId(before.registeredByGatewayIotId) : undefined;
    this.events.emit('device.changed', refOf(sub));
    if (before.gatewayIotId) {
      const oldRef = gateway ? refOf(gateway) : { iotId: before.gatewayIotId, productKey: '', deviceName: '' };
      this.events.emit('topology.changed', { gateway: oldRef, removed: [refOf(sub)], added: [], byGateway: false });
    }
    const from = [gateway, registeredBy].filter((d): d is Device => d !== undefined).map((d) => `${d.productKey}/${d.deviceName}`);
    const at = this.now().toISOString();
    this.store
      .appendAudit([{ at, action: 'topology.release', actor: 'admin', productKey, deviceName, result: 'ok', reason: from.length > 0 ? `released from ${[...new Set(from)].join(', ')}` : 'was not bound' }])
      .catch((e) => this.logger?.warn({ err: e }, 'audit append failed'));
    const device = (await this.store.getDeviceByIotId(sub.iotId)) ?? { ...before, gatewayIotId: null, registeredByGatewayIotId: null };
    return { device, gateway, registeredBy };
  }

  // ---- shared ----

  /** The gateway whose topology holds this sub-device, if any. */
  async gatewayOf(sub: { productKey: string; deviceName: string }): Promise<Device | undefined> {
    const d = await this.store.getDevice(sub.productKey, sub.deviceName);
    return d?.gatewayIotId ? this.store.getDeviceByIotId(d.gatewayIotId) : undefined;
  }

  /** Every sub-device of a gateway (at most the limit, read in pages). */
  async allSubDevices(gateway: DeviceRef): Promise<Device[]> {
    const out: Device[] = [];
    for (let offset = 0; ; offset += 1000) {
      const page = await this.store.listDevices(gateway.productKey, { gatewayIotId: gateway.iotId }, offset, 1000);
      out.push(...page.items);
      if (page.items.length < 1000) return out;
    }
  }

  /** Checks one candidate sub-device for `gateway`; a failure carries the Alink code. */
  private async checkCandidate(
    gateway: DeviceRef,
    id: SubDeviceName,
    products: Map<string, Product | undefined>,
    /** The sub-device's record when the caller read it already. */
    known?: Device,
  ): Promise<{ sub: Device } | { code: number; message: string }> {
    if (id.productKey === gateway.productKey && id.deviceName === gateway.deviceName) {
      return { code: C.GATEWAY_ITSELF, message: 'a gateway cannot be its own sub-device' };
    }
    // The device before its product (see addSigned).
    const sub = known ?? (await this.store.getDevice(id.productKey, id.deviceName));
    if (!products.has(id.productKey)) products.set(id.productKey, await this.store.getProduct(id.productKey));
    const product = products.get(id.productKey);
    if (!product) return { code: C.DEVICE_NOT_FOUND, message: `product ${id.productKey} not found` };
    if (!sub) return { code: C.DEVICE_NOT_FOUND, message: 'sub-device not found' };
    if (product.nodeType !== 'SUB_DEVICE') {
      return { code: C.PARAM_ERROR, message: `product ${id.productKey} has nodeType ${product.nodeType}; only SUB_DEVICE products connect through a gateway` };
    }
    if (!sub.enabled) return { code: C.DEVICE_DISABLED, message: 'sub-device is disabled' };
    return { sub };
  }

  /** One atomic attach; on refusal returns the per-item failure every accepted entry gets. */
  private async attach(gateway: DeviceRef, subs: Device[], byGateway: boolean): Promise<{ code: number; message: string } | undefined> {
    try {
      await this.store.attachSubDevices(gateway.iotId, subs.map((d) => d.iotId), this.opts.subDeviceLimit);
    } catch (e) {
      if (isThingAuthError(e) && e.kind === 'SUB_DEVICE_LIMIT_REACHED') {
        return { code: C.TOPO_LIMIT, message: `gateway topology is full: ${e.message}` };
      }
      if (isThingAuthError(e) && e.kind === 'DEVICE_NOT_FOUND') {
        return { code: C.DEVICE_NOT_FOUND, message: 'a sub-device was deleted while being added; nothing was added' };
      }
      throw e;
    }
    const gwRef = refOf(gateway);
    const added = subs.filter((d) => d.gatewayIotId !== gateway.iotId);
    // A sub-device that had another gateway moved: that gateway loses it (and its login).
    const byOldGateway = new Map<string, Device[]>();
    for (const d of added) {
      if (d.gatewayIotId) byOldGateway.set(d.gatewayIotId, [...(byOldGateway.get(d.gatewayIotId) ?? []), d]);
    }
    for (const [oldIotId, moved] of byOldGateway) {
      const old = await this.store.getDeviceByIotId(oldIotId);
      const oldRef = old ? refOf(old) : { iotId: oldIotId, productKey: '', deviceName: '' };
      this.events.emit('topology.changed', { gateway: oldRef, removed: moved.map(refOf), added: [], byGateway: false });
    }
    for (const d of added) this.events.emit('device.changed', refOf(d));
    if (added.length > 0) this.events.emit('topology.changed', { gateway: gwRef, removed: [], added: added.map(refOf), byGateway });
    return undefined;
  }

  private async detach(gateway: DeviceRef, subs: Device[], byGateway: boolean): Promise<void> {
    await this.store.detachSubDevices(gateway.iotId, subs.map((d) => d.iotId));
    for (const d of subs) this.events.emit('device.changed', refOf(d));
    this.events.emit('topology.changed', { gateway: refOf(gateway), removed: subs.map(refOf), added: [], byGateway });
  }

  private audit(action: string, gateway: DeviceRef, actor: 'device' | 'admin', outcomes: AuditedOutcome[]): void {
    if (outcomes.length === 0) return;
    const at = this.now().toISOString();
    const entries = outcomeAuditEntries(
      at,
      action,
      actor === 'device' ? gatewayActor(gateway) : 'admin',
      outcomes,
      (m) => `gateway ${gateway.productKey}/${gateway.deviceName}${m === 'success' ? '' : `; ${m}`}`,
    );
    this.store.appendAudit(entries).catch((e) => this.logger?.warn({ err: e }, 'audit append failed'));
  }
}
