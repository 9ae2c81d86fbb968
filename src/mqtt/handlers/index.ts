/**
 * Topic handlers: the platform's side of Alink request topics, one file per topic family.
 *
 * Extension point: TOPIC_HANDLERS. Each handler has a name, `match(topic)` returning the
 * topic's parameters or null, and `handle(hctx, client, params, payload, packet)`. Handlers
 * run for every PUBLISH a device (or a gateway on behalf of a logged-in sub-device) made
 * that passed the ACL, after the broker delivered it to subscribers; applications' publishes
 * do not trigger them. They run asynchronously: a throw or rejection is logged, never
 * crashes the broker. Engineer D appends thing/sub/register, thing/topo/*,
 * /ext/session/.../combine/* here.
 *
 * The context gives `replyTo(client, topic, payload)`, which delivers to that client even
 * if it never subscribed (spec 1.3 / 0.3: C SDKs do not SUBSCRIBE to system replies), and
 * `publish(topic, payload)` into the broker (reaches subscribers, e.g. applications).
 */
import type { Client, PublishPacket } from 'aedes';
import type { AppContext } from '../../context.js';
import type { Logger } from '../../logger.js';
import type { Session, SessionRegistry } from '../sessions.js';
import type { TopicParams } from './topic-pattern.js';
import { thingEventPostHandler } from './thing-event-post.js';
import { combineSessionHandler } from './combine-session.js';
import { proxyProductRegisterHandler, subRegisterHandler } from './sub-register.js';
import { topoHandler } from './topo.js';
import { listFoundHandler } from './topo-change.js';

export type { TopicParams } from './topic-pattern.js';

export interface PublishOptions {
  qos?: 0 | 1;
  retain?: boolean;
}

export interface HandlerContext {
  app: AppContext;
  logger: Logger;
  sessions: SessionRegistry;
  /** The session of a connected client (its identity, actingFor, transport...). */
  sessionOf(client: Client): Session | undefined;
  /** Delivers straight to this client, subscribed or not. Objects are sent as JSON. */
  replyTo(client: Client, topic: string, payload: object | string | Buffer, opts?: PublishOptions): void;
  /** Publishes into the broker: every authorized subscriber receives it. */
  publish(topic: string, payload: object | string | Buffer, opts?: PublishOptions): Promise<void>;
}

export interface TopicHandler<P extends TopicParams = TopicParams> {
  name: string;
  match(topic: string): P | null;
  handle(hctx: HandlerContext, client: Client, params: P, payload: Buffer, packet: PublishPacket): void | Promise<void>;
}

export const TOPIC_HANDLERS: TopicHandler[] = [
  thingEventPostHandler,
  subRegisterHandler,
  proxyProductRegisterHandler,
  topoHandler,
  listFoundHandler,
  combineSessionHandler,
];

/** Runs the first handler whose pattern matches. Never throws. */
export function dispatchToHandlers(hctx: HandlerContext, client: Client, packet: PublishPacket): void {
  const topic = packet.topic;
  for (const h of TOPIC_HANDLERS) {
    const params = h.match(topic);
    if (params === null) continue;
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    try {
      const r = h.handle(hctx, client, params, payload, packet);
      if (r && typeof (r as Promise<void>).then === 'function') {
        (r as Promise<void>).catch((err) => hctx.logger.error({ err, handler: h.name, topic }, 'topic handler failed'));
      }
    } catch (err) {
      hctx.logger.error({ err, handler: h.name, topic }, 'topic handler failed');
    }
    return;
  }
}
