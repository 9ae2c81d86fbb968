/**
 * Sub-device sessions through a gateway (spec 4.5-4.8): combine/login, batch_login, logout,
 * batch_logout, and what ends a sub-device's session from the server side (gateway gone,
 * sub-device disabled or deleted, topology removed, logged in through another gateway).
 *
 * Transport-independent: the broker edge hands in a GatewayLink per gateway connection (a
 * reconnect is a new link) that can grant/revoke the right to use a sub-device's topics and
 * deliver a message to the gateway, subscribed or not. The service keeps which sub-devices
 * each link has logged in and writes presence (a logged-in sub-device is ONLINE and activated
 * on its first login; gone = OFFLINE).
 */
import type { Device } from '../core/records.js';
import {
  SubDeviceCodes as C,
  checkSubDeviceSignRotating,
  fail,
  foldItems,
  itemsOf,
  missingIdentity,
  ok,
  subDeviceIdentity,
  type AlinkResult,
  type ItemOutcome,
} from '../core/sub-device-protocol.js';
import type { Logger } from '../logger.js';
import type { Store } from '../store/store.js';
import type { AuditLog } from './audit.js';
import type { Metrics } from './metrics.js';
import { subDeviceLoginLabel } from '../core/refusals.js';
import type { DeviceRef, RegistryEvents } from './events.js';
import { gatewayActor, outcomeAuditEntries, type AuditedOutcome } from './sub-device-audit.js';
import { refOf, type TopologyService } from './topology.js';
import { PREVIOUS_SECRET_REASON } from '../core/secret-rotation.js';
import type { Limiter, SlidingWindowSpec } from './limits/limiter.js';
import { MemoryLimiter } from './limits/memory-limiter.js';

/** One live gateway connection as the broker edge exposes it. */
export interface GatewayLink {
  readonly gateway: DeviceRef;
  /** From now on the connection may publish/subscribe on the sub-device's topics. */
  actFor(sub: DeviceRef): void;
  /** Takes that right away again. The edge must not report this back as an external removal. */
  stopActingFor(sub: DeviceRef, reason: string): void;
  /** Delivers a message to this gateway connection even if it did not subscribe. */
  send(topic: string, payload: string): void;
  /**
   * Whether the connection is still the gateway's live session. A login checked while the
   * gateway disconnected, was kicked or disabled must not leave a sub-device ONLINE.
   */
  isLive?(): boolean;
}

/**
 * Where presence goes: the broker's batched presence writer (services/presence.ts), so direct
 * devices and sub-devices share one ordered write queue and a batch of 50 logins is one
 * transaction. `flush` resolves once everything queued is in the store.
 */
export interface PresenceWriter {
  markOnline(ref: DeviceRef): void;
  markOffline(ref: DeviceRef): void;
  flush(): Promise<void>;
}

export interface SubDeviceSessionOptions {
  /** Sub-devices online at once under one gateway (spec 4.8); above it logins get 428. */
  onlineLimitPerGateway: number;
  /** Logins per sub-device per window (spec 4.6: 5 per minute); above it 429. */
  loginsPerWindow?: number;
  loginWindowMs?: number;
  /** Where the login window is kept (shared through Redis in a cluster); default in this process. */
  limiter?: Limiter;
}

/** At most this many entries in batch_login / batch_logout (spec 4.8). */
export const MAX_BATCH_LOGIN = 50;

/** Login params the sign does not cover besides sign and the method (spec 4.5). */
const LOGIN_UNSIGNED = ['cleanSession'] as const;

interface LinkState {
  link: GatewayLink;
  /** Logged-in sub-devices by IotId. */
  subs: Map<string, DeviceRef>;
}

/** `viaPrevious`: signed with the secret before a rotation, within its grace. */
type Checked = { sub: Device; viaPrevious: boolean } | { code: number; message: string };

/** A successful login's audit message: which secret signed, when it was not the current one. */
function loginSuccessMessage(checked: { viaPrevious: boolean }): string {
  return checked.viaPrevious ? PREVIOUS_SECRET_REASON : 'success';
}

/**
 * The sub-device's key in the login window: its ProductKey and DeviceName, which every node
 * knows it by (an IotId is made by the store that created the device).
 */
function loginWindowKey(sub: Device): string {
  return `${sub.productKey}&${sub.deviceName}`;
}

export class SubDeviceSessionService {
  /** Set by createServices: decisions go to the batched audit log and the login metrics. */
  observers?: { audit: AuditLog; metrics: Metrics };
  private readonly links = new Map<GatewayLink, LinkState>();
  /** Sub-device IotId -> the link it is logged in through. */
  private readonly owner = new Map<string, LinkState>();
  /** Per sub-device: times of its recent successful logins (sliding window). */
  private readonly limiter: Limiter;
  private readonly loginWindow: SlidingWindowSpec;
  private readonly loginsPerWindow: number;
  private readonly windowMs: number;
  private noticeSeq = 0;

  constructor(
    private readonly store: Store,
    events: RegistryEvents,
    private readonly presence: PresenceWriter,
    private readonly topology: TopologyService,
    private readonly opts: SubDeviceSessionOptions,
    private readonly logger?: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.loginsPerWindow = opts.loginsPerWindow ?? 5;
    this.windowMs = opts.loginWindowMs ?? 60_000;
    this.limiter = opts.limiter ?? new MemoryLimiter();
    this.loginWindow = { name: 'login.sub-device', windowMs: this.windowMs, maxKeys: 200_000 };
    // Prepended so a sub-device gets its notice before any other listener (the broker's
    // kick) takes the session away without saying why.
    events.prependListener('device.disabled', (ref) => this.endSession(ref.iotId, C.DISABLED, 'sub-device disabled'));
    events.prependListener('device.deleted', (ref) => this.endSession(ref.iotId, C.DELETED, 'sub-device deleted'));
    events.prependListener('topology.changed', ({ gateway, removed }) => {
      for (const sub of removed) {
        const state = this.owner.get(sub.iotId);
        if (state && state.link.gateway.iotId === gateway.iotId) this.endSession(sub.iotId, C.NOT_IN_TOPOLOGY, 'topology with this gateway removed');
      }
    });
  }

  // ---- queries for the edge ----

  /** Is this sub-device logged in through this link? */
  isLoggedIn(link: GatewayLink, subIotId: string): boolean {
    return this.links.get(link)?.subs.has(subIotId) ?? false;
  }

  /** Number of sub-devices logged in through this link. */
  onlineCount(link: GatewayLink): number {
    return this.links.get(link)?.subs.size ?? 0;
  }

  loggedIn(link: GatewayLink): DeviceRef[] {
    return [...(this.links.get(link)?.subs.values() ?? [])];
  }

  // ---- the gateway's messages ----

  /** `combine/login`: params {productKey, deviceName, clientId, timestamp, signMethod, sign, cleanSession}. */
  async login(link: GatewayLink, params: unknown): Promise<AlinkResult> {
    const notGateway = await this.topology.gatewayCheck(link.gateway);
    if (notGateway) return notGateway;
    const id = subDeviceIdentity(params);
    if (!id) return fail(C.PARAM_ERROR, 'params must be {productKey, deviceName, clientId, timestamp, signMethod, sign}');
    const checked = await this.checkLogin(link.gateway, params as Record<string, unknown>, undefined);
    if ('code' in checked) {
      this.audit('session.sub.login', link.gateway, [{ ...id, ...checked }]);
      return fail(checked.code, checked.message, id);
    }
    const capacity = this.capacityCheck(link, [checked.sub]);
    if (capacity) {
      this.audit('session.sub.login', link.gateway, [{ ...id, ...capacity }]);
      return fail(capacity.code, capacity.message, id);
    }
    if (link.isLive && !link.isLive()) return fail(C.NO_SESSION, 'the gateway session ended', id);
    this.commit(link, [checked.sub]);
    // The reply waits for the write: a gateway (or operator) reading status next sees ONLINE.
    await this.presence.flush();
    this.audit('session.sub.login', link.gateway, [{ ...id, code: C.SUCCESS, message: loginSuccessMessage(checked) }]);
    // iotkit 3.x finds the sub-device by data.productKey/deviceName and drops the reply otherwise.
    return ok(id);
  }

  /**
   * `combine/batch_login`: params {signMethod, deviceList: [...]} with at most 50 entries.
   * All or nothing: on any failure nobody is logged in and `data` lists the offenders.
   */
  async batchLogin(link: GatewayLink, params: unknown): Promise<AlinkResult> {
    const notGateway = await this.topology.gatewayCheck(link.gateway);
    if (notGateway) return notGateway;
    const p = params !== null && typeof params === 'object' && !Array.isArray(params) ? (params as Record<string, unknown>) : undefined;
    const list = p ? p.deviceList : params;
    if (!Array.isArray(list) || list.length === 0) return fail(C.PARAM_ERROR, 'params.deviceList must be a non-empty list');
    if (list.length > MAX_BATCH_LOGIN) return fail(C.PARAM_ERROR, `at most ${MAX_BATCH_LOGIN} entries per batch_login, got ${list.length}`);
    const methodOverride = p?.signMethod ?? p?.signmethod;

    const offenders: ItemOutcome[] = [];
    const subs: Device[] = [];
    const viaPrevious = new Set<string>();
    for (const entry of list) {
      const id = subDeviceIdentity(entry);
      if (!id) {
        offenders.push(missingIdentity());
        continue;
      }
      const checked = await this.checkLogin(link.gateway, entry as Record<string, unknown>, methodOverride);
      if ('code' in checked) offenders.push({ ...id, ...checked });
      else if (!subs.some((s) => s.iotId === checked.sub.iotId)) {
        subs.push(checked.sub);
        if (checked.viaPrevious) viaPrevious.add(checked.sub.iotId);
      }
    }
    if (offenders.length === 0) {
      const capacity = this.capacityCheck(link, subs);
      if (capacity) for (const s of subs) offenders.push({ productKey: s.productKey, deviceName: s.deviceName, ...capacity });
    }
    if (offenders.length > 0) {
      this.audit('session.sub.login', link.gateway, offenders);
      const first = offenders[0]!;
      return fail(
        first.code,
        `batch refused, nobody logged in: ${offenders.length} of ${list.length} failed; first: ${first.productKey}/${first.deviceName}: ${first.message}`,
        offenders.map((o) => ({ productKey: o.productKey, deviceName: o.deviceName, code: o.code, message: o.message })),
      );
    }
    if (link.isLive && !link.isLive()) return fail(C.NO_SESSION, 'the gateway session ended');
    // The presence writer turns the batch into one transaction (markOnlineMany): with
    // synchronous=FULL a commit per sub-device would make 1,500 logins cost 1,500 fsyncs.
    this.commit(link, subs);
    await this.presence.flush();
    this.audit(
      'session.sub.login',
      link.gateway,
      subs.map((s) => ({ productKey: s.productKey, deviceName: s.deviceName, code: C.SUCCESS, message: loginSuccessMessage({ viaPrevious: viaPrevious.has(s.iotId) }) })),
    );
    return ok(subs.map((s) => ({ productKey: s.productKey, deviceName: s.deviceName })));
  }

  /** `combine/logout`: params {productKey, deviceName}; reply data echoes them (iotkit needs it). */
  async logout(link: GatewayLink, params: unknown): Promise<AlinkResult> {
    const id = subDeviceIdentity(params);
    if (!id) return fail(C.PARAM_ERROR, 'params must be {productKey, deviceName}');
    const [outcome] = await this.logoutMany(link, [id]);
    return outcome!.code === C.SUCCESS ? ok(id) : fail(outcome!.code, outcome!.message, id);
  }

  /** `combine/batch_logout`: params [{productKey, deviceName}, ...] (or {deviceList: [...]}); per item. */
  async batchLogout(link: GatewayLink, params: unknown): Promise<AlinkResult> {
    const list =
      params !== null && typeof params === 'object' && !Array.isArray(params) && 'deviceList' in params
        ? (params as { deviceList: unknown }).deviceList
        : params;
    const items = itemsOf(list);
    if (!items || items.length === 0) return fail(C.PARAM_ERROR, 'params must be a non-empty list of {productKey, deviceName}');
    if (items.length > MAX_BATCH_LOGIN) return fail(C.PARAM_ERROR, `at most ${MAX_BATCH_LOGIN} entries per batch_logout, got ${items.length}`);
    const ids = items.map((i) => subDeviceIdentity(i) ?? { productKey: '', deviceName: '' });
    return foldItems(await this.logoutMany(link, ids));
  }

  private async logoutMany(link: GatewayLink, ids: { productKey: string; deviceName: string }[]): Promise<ItemOutcome[]> {
    const state = this.links.get(link);
    const outcomes: ItemOutcome[] = [];
    let gone = false;
    for (const id of ids) {
      if (!id.productKey) {
        outcomes.push(missingIdentity());
        continue;
      }
      const sub = [...(state?.subs.values() ?? [])].find((s) => s.productKey === id.productKey && s.deviceName === id.deviceName);
      if (!sub || !state) {
        outcomes.push({ ...id, code: C.NO_SESSION, message: 'sub-device is not logged in through this gateway' });
        continue;
      }
      this.drop(state, sub.iotId);
      link.stopActingFor(sub, 'logged out');
      this.presence.markOffline(sub);
      gone = true;
      outcomes.push({ ...id, code: C.SUCCESS, message: 'success' });
    }
    if (gone) await this.presence.flush();
    return outcomes;
  }

  // ---- what the edge reports ----

  /** The gateway connection ended: every sub-device logged in through it goes OFFLINE. */
  async gatewayDisconnected(link: GatewayLink): Promise<void> {
    const state = this.links.get(link);
    if (!state) return;
    this.links.delete(link);
    for (const [iotId, ref] of state.subs) {
      if (this.owner.get(iotId) === state) this.owner.delete(iotId);
      this.presence.markOffline(ref);
    }
    state.subs.clear();
    await this.presence.flush();
  }

  /** The broker took a sub-device identity away from a link on its own (e.g. a kick). */
  actingRemoved(link: GatewayLink, subIotId: string): void {
    const state = this.links.get(link);
    const ref = state?.subs.get(subIotId);
    if (!state || !ref) return;
    this.drop(state, subIotId);
    this.presence.markOffline(ref);
  }

  /**
   * A gateway published on a device's topic it may not use. When that device is one of the
   * gateway's sub-devices (not logged in, or logged in elsewhere) the gateway gets 520 on
   * /ext/error (spec 4.7) and iotkit logs it in again. Returns whether it was such a case.
   */
  async publishWithoutSession(link: GatewayLink, productKey: string, deviceName: string, requestId: unknown): Promise<boolean> {
    if (productKey === link.gateway.productKey && deviceName === link.gateway.deviceName) return false;
    const sub = await this.store.getDevice(productKey, deviceName);
    if (!sub || sub.gatewayIotId !== link.gateway.iotId) return false;
    // Logged in through this gateway: the topic itself is refused (a downlink the device may
    // only subscribe to), not the session; the publish is refused like the device's own.
    if (this.isLoggedIn(link, sub.iotId)) return false;
    this.notify(link, { productKey, deviceName }, C.NO_SESSION, 'device session error: the sub-device is not logged in through this gateway', requestId);
    return true;
  }

  // ---- internals ----

  /**
   * One login entry's checks, in this order: device exists (6100), enabled (522), sign
   * (6287; a bad or unsupported method is a parameter error), topology with this gateway
   * (6401), login rate (429). Nothing is written.
   */
  private async checkLogin(gateway: DeviceRef, entry: Record<string, unknown>, methodOverride: unknown): Promise<Checked> {
    const id = subDeviceIdentity(entry)!;
    const sub = await this.store.getDevice(id.productKey, id.deviceName);
    if (!sub) return { code: C.DEVICE_NOT_FOUND, message: 'sub-device not found' };
    if (!sub.enabled) return { code: C.DISABLED, message: 'sub-device is disabled' };
    const sign = checkSubDeviceSignRotating(entry, sub, this.now().getTime(), { exclude: LOGIN_UNSIGNED, methodOverride });
    if (!sign.ok) return { code: sign.reason === 'bad-sign' ? C.LOGIN_SIGN_ERROR : C.PARAM_ERROR, message: sign.message };
    if (sub.gatewayIotId !== gateway.iotId) return { code: C.NOT_IN_TOPOLOGY, message: 'sub-device is not in this gateway\'s topology; add it with thing/topo/add first' };
    if ((await this.limiter.windowCount(this.loginWindow, loginWindowKey(sub))) >= this.loginsPerWindow) {
      return { code: C.RATE_LIMITED, message: `more than ${this.loginsPerWindow} logins of this sub-device within ${this.windowMs / 1000} s; retry later` };
    }
    if (sign.secret === 'previous') {
      this.logger?.info(
        { event: 'session.sub.login.previous-secret', gateway: `${gateway.productKey}/${gateway.deviceName}`, sub: `${sub.productKey}/${sub.deviceName}`, graceEndsAt: sub.previousSecretExpiresAt },
        `sub-device login signed with its ${PREVIOUS_SECRET_REASON}`,
      );
    }
    return { sub, viaPrevious: sign.secret === 'previous' };
  }

  private capacityCheck(link: GatewayLink, subs: Device[]): { code: number; message: string } | undefined {
    const state = this.links.get(link);
    const already = state ? subs.filter((s) => state.subs.has(s.iotId)).length : 0;
    const after = (state?.subs.size ?? 0) + subs.length - already;
    if (after > this.opts.onlineLimitPerGateway) {
      return { code: C.TOO_MANY_ONLINE, message: `at most ${this.opts.onlineLimitPerGateway} sub-devices may be online under one gateway` };
    }
    return undefined;
  }

  private recordLogin(sub: Device): void {
    // Not awaited: the in-memory limiter counts it at once, Redis in command order; a
    // limiter never rejects (a Redis outage falls back to memory), the catch is for bugs.
    this.limiter.windowAdd(this.loginWindow, loginWindowKey(sub)).catch((e) => this.logger?.warn({ err: e }, 'sub-device login not counted'));
  }

  /** Makes the logins live: state, ACL, presence, and a 427 notice to a gateway that loses one. */
  private commit(link: GatewayLink, subs: Device[]): void {
    let state = this.links.get(link);
    if (!state) {
      state = { link, subs: new Map() };
      this.links.set(link, state);
    }
    for (const sub of subs) {
      const ref = refOf(sub);
      const prev = this.owner.get(sub.iotId);
      if (prev && prev !== state) {
        this.drop(prev, sub.iotId);
        prev.link.stopActingFor(ref, 'logged in through another connection');
        this.notify(prev.link, ref, C.KICKED_ELSEWHERE, 'device connect in elsewhere');
      }
      state.subs.set(sub.iotId, ref);
      this.owner.set(sub.iotId, state);
      link.actFor(ref);
      this.presence.markOnline(ref);
      this.recordLogin(sub);
    }
  }

  private drop(state: LinkState, subIotId: string): void {
    state.subs.delete(subIotId);
    if (this.owner.get(subIotId) === state) this.owner.delete(subIotId);
  }

  /** Ends a sub-device's session from the server side with a notice to its gateway (spec 4.7). */
  private endSession(subIotId: string, code: number, message: string): void {
    const state = this.owner.get(subIotId);
    if (!state) return;
    const ref = state.subs.get(subIotId);
    if (!ref) return;
    this.drop(state, subIotId);
    this.notify(state.link, ref, code, message);
    state.link.stopActingFor(ref, message);
    // A deleted device has no row left; the offline write simply matches nothing. Written
    // now rather than with the next batch: an operator who just disabled it reads it back.
    this.presence.markOffline(ref);
    this.presence.flush().catch((e) => this.logger?.warn({ err: e }, 'presence write failed'));
  }

  /**
   * `/ext/error/{gwPk}/{gwDn}`: {id, code, message, data: {productKey, deviceName}}. The
   * `data` is what iotkit reads to find the sub-device (and to log it in again on 520).
   */
  private notify(link: GatewayLink, sub: { productKey: string; deviceName: string }, code: number, message: string, requestId?: unknown): void {
    const id = requestId ?? String(++this.noticeSeq);
    const topic = `/ext/error/${link.gateway.productKey}/${link.gateway.deviceName}`;
    try {
      link.send(topic, JSON.stringify({ id, code, data: { productKey: sub.productKey, deviceName: sub.deviceName }, message }));
    } catch (e) {
      this.logger?.warn({ err: e, topic }, 'sub-device notice not delivered');
    }
    this.logger?.info({ gateway: `${link.gateway.productKey}/${link.gateway.deviceName}`, sub: `${sub.productKey}/${sub.deviceName}`, code }, message);
  }

  private audit(action: string, gateway: DeviceRef, outcomes: AuditedOutcome[]): void {
    if (outcomes.length === 0) return;
    const at = this.now().toISOString();
    // A success says nothing unless it is worth an operator's eye (the previous secret signed).
    const entries = outcomeAuditEntries(at, action, gatewayActor(gateway), outcomes, (m) => (m === 'success' ? null : m));
    if (!this.observers) {
      this.store.appendAudit(entries).catch((e) => this.logger?.warn({ err: e }, 'audit append failed'));
      return;
    }
    for (const [i, e] of entries.entries()) {
      this.observers.audit.record(e);
      if (action === 'session.sub.login') {
        const ok = e.result === 'ok';
        this.observers.metrics.login('gateway', ok ? 'accepted' : 'refused', ok ? '' : subDeviceLoginLabel(outcomes[i]!.code));
      }
    }
  }
}
