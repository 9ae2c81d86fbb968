/**
 * The connection core's broker: owns the client registry (takeover by client id), the
 * subscription index, the session store and routing. Each socket is a CoreConnection.
 * Routing is in-process in this stage (no mqemitter yet, so no cross-node delivery).
 */
import type { Duplex } from 'node:stream';
import { CoreConnection } from './connection.js';
import { MemorySessionStore, type Session, type SessionStore } from './session.js';
import { SubscriptionIndex, type Subscription } from './subscriptions.js';
import { topicMatches } from './topics.js';
import { DEFAULTS, NEVER_EXPIRES, type CoreClient, type CoreMessage, type CoreOptions } from './types.js';

const MAX_TIMER_MS = 2 ** 31 - 1;

export type ResolvedOptions = CoreOptions & { -readonly [K in keyof typeof DEFAULTS]: number };

export class CoreBroker {
  readonly options: ResolvedOptions;
  readonly store: SessionStore;
  readonly index = new SubscriptionIndex();
  readonly clients = new Map<string, CoreConnection>();
  private readonly connections = new Set<CoreConnection>();
  private closed = false;

  constructor(options: CoreOptions = {}, store: SessionStore = new MemorySessionStore()) {
    this.options = { ...DEFAULTS, ...options } as ResolvedOptions;
    this.store = store;
  }

  /** Takes a connected byte stream (TCP socket, TLS socket, WebSocket stream). */
  handle(stream: Duplex, remoteAddress = ''): void {
    if (this.closed) {
      stream.destroy();
      return;
    }
    const c = new CoreConnection(this, stream, remoteAddress);
    this.connections.add(c);
  }

  /** @internal called by a connection when its socket is gone. */
  forget(c: CoreConnection): void {
    this.connections.delete(c);
    if (c.clientId !== undefined && this.clients.get(c.clientId) === c) this.clients.delete(c.clientId);
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  addSubscription(session: Session, sub: Subscription): boolean {
    const old = session.subscriptions.get(sub.filter);
    if (old) this.index.remove(old);
    session.subscriptions.set(sub.filter, sub);
    this.index.add(sub);
    return old === undefined;
  }

  removeSubscription(session: Session, filter: string): boolean {
    const old = session.subscriptions.get(filter);
    if (!old) return false;
    session.subscriptions.delete(filter);
    this.index.remove(old);
    return true;
  }

  /** Ends a session: drops its subscriptions and state; fires a pending delayed will now. */
  endSession(session: Session): void {
    if (this.store.get(session.clientId) !== session) return;
    for (const sub of session.subscriptions.values()) this.index.remove(sub);
    session.subscriptions.clear();
    if (session.expiryTimer) clearTimeout(session.expiryTimer);
    session.expiryTimer = undefined;
    this.store.delete(session.clientId);
    if (session.willTimer) {
      clearTimeout(session.willTimer);
      session.willTimer = undefined;
      const will = session.pendingWill;
      session.pendingWill = undefined;
      if (will) this.publish(will);
    }
  }

  /** Starts the expiry clock of a session whose connection went away. */
  scheduleExpiry(session: Session): void {
    if (session.expiryInterval === 0) {
      this.endSession(session);
      return;
    }
    if (session.expiryInterval >= NEVER_EXPIRES) return;
    // Timers hold at most 2^31-1 ms (about 24.8 days); longer expiries re-arm until due.
    const due = Date.now() + session.expiryInterval * 1000;
    const arm = () => {
      const left = due - Date.now();
      if (left <= 0) return this.endSession(session);
      session.expiryTimer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
      session.expiryTimer.unref();
    };
    arm();
  }

  /** Routes a message: retained store, then every matching session. */
  publish(message: CoreMessage, from?: CoreClient): void {
    if (message.retain) this.store.setRetained(message.topic, message.payload.length === 0 ? undefined : message);
    const matches = this.index.match(message.topic);
    for (const [clientId, subs] of matches) {
      let qos = -1;
      let retainAsPublished = false;
      const ids: number[] = [];
      for (const s of subs) {
        if (s.noLocal && message.origin === clientId) continue;
        if (s.qos > qos) qos = s.qos;
        if (s.retainAsPublished) retainAsPublished = true;
        if (s.subscriptionId !== undefined) ids.push(s.subscriptionId);
      }
      if (qos < 0) continue;
      const deliveredQos = Math.min(qos, message.qos) as 0 | 1 | 2;
      const retain = retainAsPublished && message.retain;
      const conn = this.clients.get(clientId);
      if (conn) conn.deliver(message, deliveredQos, retain, ids.length ? ids : undefined);
      else {
        const session = this.store.get(clientId);
        if (session && deliveredQos > 0) {
          if (session.queue.length >= this.options.maxQueuedMessages) session.dropped++;
          else session.queue.push({ message, qos: deliveredQos, retain, subscriptionIds: ids.length ? ids : undefined, state: 'publish' });
        }
      }
    }
    if (this.options.published) void this.options.published(from, message).catch(() => undefined);
  }

  /** Retained messages matching a filter (for a new subscription). */
  retainedFor(filter: string): CoreMessage[] {
    const out: CoreMessage[] = [];
    const now = Date.now();
    for (const m of this.store.retained()) {
      if (m.expiresAt !== undefined && m.expiresAt <= now) {
        this.store.setRetained(m.topic, undefined);
        continue;
      }
      if (topicMatches(filter, m.topic)) out.push(m);
    }
    return out;
  }

  /** Closes every connection (no wills for a server shutdown are suppressed: they fire as on a crash). */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.connections];
    await Promise.all(all.map((c) => c.destroy()));
  }
}
