/**
 * Session state of one client id: subscriptions, outgoing inflight (QoS 1/2 not yet
 * acknowledged), queued messages, incoming QoS 2 packet ids, expiry and delayed will.
 * Lives in a SessionStore; outlives the connection when the session is persistent.
 */
import type { QoS } from 'mqtt-packet';
import type { CoreMessage } from './types.js';
import type { Subscription } from './subscriptions.js';

/** A message on its way to this session's client. */
export interface OutgoingMessage {
  message: CoreMessage;
  qos: QoS;
  retain: boolean;
  subscriptionIds?: number[];
  /** 'publish': PUBLISH sent (or to send), no ack yet; 'pubrel': PUBREC received, PUBREL sent. */
  state: 'publish' | 'pubrel';
}

export class Session {
  readonly subscriptions = new Map<string, Subscription>();
  readonly inflight = new Map<number, OutgoingMessage>();
  queue: OutgoingMessage[] = [];
  readonly incomingQos2 = new Set<number>();
  /** Seconds; NEVER_EXPIRES for "never". */
  expiryInterval = 0;
  expiryTimer?: NodeJS.Timeout;
  willTimer?: NodeJS.Timeout;
  /** The will waiting for its v5 Will Delay Interval (published when the timer or the session ends). */
  pendingWill?: CoreMessage;
  /** Messages dropped because the queue was full (offline session). */
  dropped = 0;
  private nextId = 1;

  constructor(readonly clientId: string) {}

  /** A packet id not in use by the inflight map (1..65535), or undefined if all are used. */
  allocatePacketId(): number | undefined {
    for (let n = 0; n < 65535; n++) {
      const id = this.nextId;
      this.nextId = id === 65535 ? 1 : id + 1;
      if (!this.inflight.has(id)) return id;
    }
    return undefined;
  }
}

/**
 * Where sessions and retained messages live. Shaped after aedes-persistence's responsibilities
 * (sessions with subscriptions and outgoing queues, retained store) but synchronous and
 * in-memory for this stage; a Redis-backed one is the next stage.
 */
export interface SessionStore {
  get(clientId: string): Session | undefined;
  create(clientId: string): Session;
  delete(clientId: string): void;
  setRetained(topic: string, message: CoreMessage | undefined): void;
  retained(): Iterable<CoreMessage>;
}

export class MemorySessionStore implements SessionStore {
  private readonly sessions = new Map<string, Session>();
  private readonly retainedByTopic = new Map<string, CoreMessage>();

  get(clientId: string): Session | undefined {
    return this.sessions.get(clientId);
  }

  create(clientId: string): Session {
    const s = new Session(clientId);
    this.sessions.set(clientId, s);
    return s;
  }

  delete(clientId: string): void {
    this.sessions.delete(clientId);
  }

  setRetained(topic: string, message: CoreMessage | undefined): void {
    if (message) this.retainedByTopic.set(topic, message);
    else this.retainedByTopic.delete(topic);
  }

  retained(): Iterable<CoreMessage> {
    return this.retainedByTopic.values();
  }
}
