/**
 * The live session registry: who is connected, keyed by (productKey, deviceName) the way the
 * platform keys sessions (spec 1.1, 1.5), never by the raw MQTT ClientId, which changes with
 * every timestamp and SDK version.
 *
 * Extension points (engineer D, gateways):
 * - `session.actingFor`: identities a client may act for besides its own (logged-in
 *   sub-devices). Change it only through `sessions.addActingFor` / `sessions.removeActingFor`
 *   so the reverse index stays true; the ACL (acl.ts) checks every identity in it.
 * - `sessions.kick(ref, reason)`: closes the primary session of a device and drops the
 *   identity from every session acting for it.
 * - `sessions.byIotId(iotId)` / `sessions.byDevice(pk, dn)` / `sessions.actingSessionOf(iotId)`.
 * - events: 'session.opened' (Session), 'session.closed' (Session, reason),
 *   'acting.removed' (Session, SessionIdentity, reason).
 */
import { EventEmitter } from 'node:events';
import type { Client } from 'aedes';
import type { Transport } from './connection-info.js';
import { compileAclFor, IdentityAclMap, type CompiledIdentityAcl } from './acl.js';

export type IdentityKind = 'device' | 'application' | 'provisioning';

export interface SessionIdentity {
  kind: IdentityKind;
  /** Applications: '' (they act on the products in productKeys). */
  productKey: string;
  /** Applications: ''. */
  deviceName: string;
  /** Devices: the IotId. Applications: `app:{appKey}`. */
  iotId: string;
  /** Applications only: the products whose device topics they may use. */
  productKeys?: readonly string[];
  /** Devices logged in with connwl: the regnwl credential slot whose token opened the session. */
  slot?: number;
  /** Devices logged in with an X.509 certificate: its serial (revoking it ends this session). */
  certSerial?: string;
}

export interface Session {
  readonly client: Client;
  readonly identity: SessionIdentity;
  readonly transport: Transport;
  readonly remoteAddress: string;
  readonly connectedAt: number;
  /** The ClientId extension items (`_ss`, `lan`, `_v`, ...). */
  readonly ext: Readonly<Record<string, string>>;
  /** Identities this client acts for besides its own, by IotId (gateway sub-devices). */
  readonly actingFor: Map<string, SessionIdentity>;
  /** Compiled ACL of each identity (own first), kept in step with actingFor. */
  readonly acl: Map<string, CompiledIdentityAcl>;
  /** Set when the server closes the session on purpose (takeover, kick). */
  closeReason?: string;
  /** True once closed() ran; closing is reported once. */
  ended?: boolean;
}

export interface DeviceRef {
  iotId?: string;
  productKey?: string;
  deviceName?: string;
}

interface SessionEvents {
  'session.opened': [Session];
  'session.closed': [Session, string];
  'acting.removed': [Session, SessionIdentity, string];
}

export function deviceKey(productKey: string, deviceName: string): string {
  // DeviceNames cannot contain '&' (spec 6.2), so the key is unambiguous.
  return productKey + '&' + deviceName;
}

const sessionOfClient = new WeakMap<Client, Session>();

export function sessionOf(client: Client | null | undefined): Session | undefined {
  return client ? sessionOfClient.get(client) : undefined;
}

export function newSession(
  client: Client,
  identity: SessionIdentity,
  info: { transport: Transport; remoteAddress: string; ext: Record<string, string> },
): Session {
  const session: Session = {
    client,
    identity,
    transport: info.transport,
    remoteAddress: info.remoteAddress,
    connectedAt: Date.now(),
    ext: info.ext,
    actingFor: new Map(),
    acl: new IdentityAclMap([[identity.iotId, compileAclFor(identity)]]),
  };
  sessionOfClient.set(client, session);
  return session;
}

export class SessionRegistry extends EventEmitter<SessionEvents> {
  /** Device sessions by deviceKey; provisioning and application sessions by their own client id (keyOf). */
  private readonly byKey = new Map<string, Session>();
  private readonly byIot = new Map<string, Session>();
  /** iotId of an acted-for identity -> the session acting for it. */
  private readonly acting = new Map<string, Session>();

  constructor() {
    super();
    this.setMaxListeners(100);
  }

  get size(): number {
    return this.byKey.size;
  }

  private keyOf(s: Session): string {
    // Applications may run several connections; provisioning connections must not take over
    // (or be taken over by) the device's real session: both are keyed by their own client id.
    if (s.identity.kind === 'application') return 'app|' + s.client.id;
    if (s.identity.kind === 'provisioning') return 'prov|' + s.client.id;
    return deviceKey(s.identity.productKey, s.identity.deviceName);
  }

  /**
   * Registers a session that completed CONNECT. A live session with the same key is the
   * older login: it is closed (spec 1.5, the new connection wins).
   */
  open(session: Session): void {
    const key = this.keyOf(session);
    const old = this.byKey.get(key);
    if (old && old !== session) {
      this.detach(old, 'taken over by a new login');
      old.closeReason = 'taken over by a new login';
      old.client.close();
    }
    this.byKey.set(key, session);
    if (session.identity.kind === 'device') this.byIot.set(session.identity.iotId, session);
    this.emit('session.opened', session);
  }

  /** Called when the client's connection ended, whatever the cause. */
  closed(session: Session, reason: string): void {
    if (session.ended) return;
    session.ended = true;
    const key = this.keyOf(session);
    if (this.byKey.get(key) === session) {
      this.byKey.delete(key);
      if (this.byIot.get(session.identity.iotId) === session) this.byIot.delete(session.identity.iotId);
    }
    this.detach(session, reason);
    this.emit('session.closed', session, session.closeReason ?? reason);
  }

  private detach(session: Session, reason: string): void {
    for (const [iotId, identity] of session.actingFor) {
      if (this.acting.get(iotId) === session) this.acting.delete(iotId);
      this.emit('acting.removed', session, identity, reason);
    }
    session.actingFor.clear();
  }

  byDevice(productKey: string, deviceName: string): Session | undefined {
    return this.byKey.get(deviceKey(productKey, deviceName));
  }

  byIotId(iotId: string): Session | undefined {
    return this.byIot.get(iotId);
  }

  /** The session currently acting for this IotId (a gateway for its logged-in sub-device). */
  actingSessionOf(iotId: string): Session | undefined {
    return this.acting.get(iotId);
  }

  /**
   * Lets `session` act for `identity` (its topics pass the ACL). If another session acted
   * for it, that one loses it first (emits 'acting.removed' with reason 'taken over').
   */
  addActingFor(session: Session, identity: SessionIdentity): void {
    const prev = this.acting.get(identity.iotId);
    if (prev && prev !== session) this.removeActingFor(prev, identity.iotId, 'taken over by another login');
    session.actingFor.set(identity.iotId, identity);
    session.acl.set(identity.iotId, compileAclFor(identity));
    this.acting.set(identity.iotId, session);
  }

  removeActingFor(session: Session, iotId: string, reason: string): boolean {
    const identity = session.actingFor.get(iotId);
    if (!identity) return false;
    session.actingFor.delete(iotId);
    session.acl.delete(iotId);
    if (this.acting.get(iotId) === session) this.acting.delete(iotId);
    this.emit('acting.removed', session, identity, reason);
    return true;
  }

  /**
   * Ends a device's presence now: closes its own connection and removes it from any session
   * acting for it. Returns whether anything was live.
   */
  kick(ref: DeviceRef, reason: string): boolean {
    let did = false;
    const s =
      (ref.iotId !== undefined ? this.byIot.get(ref.iotId) : undefined) ??
      (ref.productKey !== undefined && ref.deviceName !== undefined ? this.byDevice(ref.productKey, ref.deviceName) : undefined);
    if (s) {
      s.closeReason = reason;
      s.client.close();
      did = true;
    }
    const iotId = ref.iotId ?? s?.identity.iotId;
    if (iotId !== undefined) {
      const actor = this.acting.get(iotId);
      if (actor) did = this.removeActingFor(actor, iotId, reason) || did;
    }
    return did;
  }

  /** Closes every session of an application (its credential was deleted). */
  kickApplication(appKey: string, reason: string): number {
    let n = 0;
    for (const s of [...this.byKey.values()]) {
      if (s.identity.kind === 'application' && s.identity.iotId === 'app:' + appKey) {
        s.closeReason = reason;
        s.client.close();
        n++;
      }
    }
    return n;
  }

  all(): IterableIterator<Session> {
    return this.byKey.values();
  }
}
