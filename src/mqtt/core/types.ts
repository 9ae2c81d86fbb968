/**
 * Shared types of the connection core: messages, hooks, options.
 * The hooks are plain async functions so the product can plug its authenticators and ACL in.
 */
import type { IConnectPacket, IPublishPacket, ISubscription, QoS, UserProperties } from 'mqtt-packet';

/** What a PUBLISH carries from publisher to subscribers (v5 properties forwarded as-is). */
export interface CoreMessage {
  topic: string;
  payload: Buffer;
  qos: QoS;
  retain: boolean;
  /** Client id of the publisher (undefined for broker-originated messages): MQTT 5 No Local. */
  origin?: string;
  /** Absolute expiry (ms since epoch) from the v5 Message Expiry Interval. */
  expiresAt?: number;
  payloadFormatIndicator?: boolean;
  contentType?: string;
  responseTopic?: string;
  correlationData?: Buffer;
  userProperties?: UserProperties;
}

/** What the hooks see of a connection. */
export interface CoreClient {
  readonly id: string;
  readonly protocolVersion: 3 | 4 | 5;
  readonly remoteAddress: string;
  readonly username?: string;
}

export type Verdict = { ok: true } | { ok: false; reasonCode: number; reasonString?: string };

export interface CoreHooks {
  /** Called with every CONNECT; deny with a v5 reason code (mapped to a 3.1.1 return code). */
  authenticate?: (client: CoreClient, connect: IConnectPacket) => Promise<Verdict>;
  authorizePublish?: (client: CoreClient, packet: IPublishPacket) => Promise<Verdict>;
  authorizeSubscribe?: (client: CoreClient, sub: ISubscription) => Promise<Verdict>;
  /** After a client's message was routed. */
  published?: (client: CoreClient | undefined, message: CoreMessage) => Promise<void>;
}

export interface CoreOptions extends CoreHooks {
  /** Largest whole packet accepted from a client (bytes); larger ones close the connection (v5: DISCONNECT 0x95). */
  maxPacketSize?: number;
  /** Largest packet before CONNACK (a CONNECT): bytes. */
  maxConnectPacketSize?: number;
  /** Server Receive Maximum: QoS 2 publishes a client may have unacknowledged towards us. */
  receiveMaximum?: number;
  /** Topic aliases a v5 client may use towards us. */
  topicAliasMaximum?: number;
  /** Cap of messages queued per session (online past the client's Receive Maximum, or offline). */
  maxQueuedMessages?: number;
  /** Socket write buffer (bytes) above which QoS 0 messages to that client are dropped. */
  maxWriteBuffer?: number;
  /** Milliseconds a socket has to send its CONNECT. */
  connectTimeoutMs?: number;
  /** If set, overrides the client's keep-alive (v5: Server Keep Alive in CONNACK). */
  serverKeepAlive?: number;
  /** Largest keep-alive (seconds) a client may ask for; a larger one or 0 gets this as Server Keep Alive (v5). */
  maxKeepAlive?: number;
  /** Upper bound on Session Expiry Interval (seconds). */
  maxSessionExpiry?: number;
}

export const DEFAULTS = {
  maxPacketSize: 256 * 1024 + 68 * 1024,
  maxConnectPacketSize: 64 * 1024,
  receiveMaximum: 100,
  topicAliasMaximum: 10,
  maxQueuedMessages: 1000,
  maxWriteBuffer: 1024 * 1024,
  connectTimeoutMs: 10_000,
  maxSessionExpiry: 0xffffffff,
} as const;

/** Session expiry value meaning "never" (3.1.1 persistent sessions, v5 0xFFFFFFFF). */
export const NEVER_EXPIRES = 0xffffffff;
