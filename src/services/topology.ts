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
 */
import { ThingAuthError, isThingAuthError } from '../core/errors.js';
import type { Device, Product } from '../core/records.js';
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

  /** `thing/topo/add`: each entry signed with the sub-device's DeviceSecret. */
  async addSigned(gateway: DeviceRef, params: unknown): Promise<AlinkResult> {
    const notGateway = await this.gatewayCheck(gateway);
    if (notGateway) return notGateway;
    const request = requestItems(params, 'params must be a non-empty list of {productKey, deviceName, clientId, timestamp, signmethod, sign}');
    if ('refusal' in request) return request.refusal;

    const outcomes: ItemOutcome[] = [];
    const accepted: { index: number; sub: Device }[] = [];
    const products = new Map<string, Product | undefined>();
    for (const item of request.items) {
      const id = subDeviceIdentity(item);
      if (!id) {
        outcomes.push(missingIdentity());
        continue;
      }
      const checked = await this.checkCandidate(gateway, id, products);
      if ('code' in checked) {
        outcomes.push({ ...id, ...checked });
        continue;
      }
      const sign = checkSubDeviceSignRotating(item as Record<string, unknown>, checked.sub, this.now().getTime());
      if (!sign.ok) {
        outcomes.push({ ...id, code: sign.reason === 'bad-sign' ? C.TOPO_SIGN_ERROR : C.PARAM_ERROR, message: sign.message });
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
    this.audit('topology.add', gateway, 'device', outcomes);
    return foldItems(outcomes);
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
    const product = await this.store.getProduct(productKey);
    if (!product) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${productKey} not found`, { field: 'productKey' });
    const gw = await this.store.getDevice(productKey, deviceName);
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
  ): Promise<{ sub: Device } | { code: number; message: string }> {
    if (id.productKey === gateway.productKey && id.deviceName === gateway.deviceName) {
      return { code: C.GATEWAY_ITSELF, message: 'a gateway cannot be its own sub-device' };
    }
    if (!products.has(id.productKey)) products.set(id.productKey, await this.store.getProduct(id.productKey));
    const product = products.get(id.productKey);
    if (!product) return { code: C.DEVICE_NOT_FOUND, message: `product ${id.productKey} not found` };
    const sub = await this.store.getDevice(id.productKey, id.deviceName);
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
