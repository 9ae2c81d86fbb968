/**
 * The MQTT broker: one aedes instance whose hooks carry our decisions.
 *
 * Extension points:
 * - `acquireMqttBroker(ctx)` -> { broker, release }: the one broker of this server, created on
 *   first use; listeners (listeners.ts) and the HTTP device channel hold a reference and the
 *   broker closes when the last holder releases it.
 * - `MqttBroker`: `aedes`, `sessions` (sessions.ts), `handlerContext` (handlers/index.ts:
 *   replyTo / publish), `publish(topic, payload)`.
 * - The listeners (MQTT/TCP that also accepts TLS, MQTTS, WS, WSS) are in listeners.ts:
 *   `startMqttTcp`, `startMqtts`, `startMqttWs`, `startMqttWss`, registered in main.ts.
 *   Each attaches the transport actually used to the connection (connection-info.ts) before
 *   aedes sees it.
 *
 * Hook flow: preConnect remembers the CONNECT facts aedes does not pass on (keep-alive,
 * protocol level) -> authenticate dispatches to CONNECT_AUTHENTICATORS
 * (connect-authenticators.ts), refuses with the CONNACK code and closes, or creates the
 * Session and renames the aedes client to the identity's key (so aedes itself closes an
 * older connection of the same device: spec 1.5 takeover) -> authorizeSubscribe /
 * authorizePublish consult the ACL (acl.ts) -> published runs TOPIC_HANDLERS.
 */
import { Aedes, type AuthenticateError, type Client, type PublishPacket } from 'aedes';
import type { AppContext } from '../context.js';
import { parseMqttClientId } from '../core/credentials.js';
import type { Logger } from '../logger.js';
import { mayPublish, maySubscribe } from './acl.js';
import { routeToAutoSubscribed } from './auto-subscribe.js';
import { connectionInfoOf } from './connection-info.js';
import { recordConnectDecision } from './connect-audit.js';
import { authenticateConnect, type ConnectAllow, type ConnectAttempt, type ConnackRefusal } from './connect-authenticators.js';
import { adaptMqtt5Client, setV5ConnackReason, setV5DisconnectReason } from './mqtt5-adapter.js';
import { dispatchToHandlers, type HandlerContext, type PublishOptions } from './handlers/index.js';
import { refusedSubDevicePublish, SWALLOWED_TOPIC } from './handlers/gateway-link.js';
import { startTopoChangeNotices } from './handlers/topo-change.js';
import { startBootstrapNotices } from './handlers/bootstrap-notify.js';
import { startSlotRevocationKicks } from './slot-revocation.js';
import { startCertificateRevocationKicks } from './certificate-revocation.js';
import { deviceKey, newSession, SessionRegistry, sessionOf, type Session } from './sessions.js';
import { RetainedQuota } from './retained-quota.js';
import { RedisCluster } from '../cluster/cluster.js';
import { SessionDrainer } from './drain.js';
import { clusterBrokerOptions } from '../cluster/broker-parts.js';
import { isLiveSession, isSystemTopic, mayReceive } from './session-liveness.js';

import { MAX_PAYLOAD_BYTES } from './packet-limits.js';

/** Spec 1.5: MQTT payload at most 256 KB (packet-limits.ts, with the packet size limits). */
export { MAX_PAYLOAD_BYTES };

export interface MqttBroker {
  aedes: Aedes;
  sessions: SessionRegistry;
  handlerContext: HandlerContext;
  /** Publishes into the broker (e.g. the HTTP device channel); subscribers receive it. */
  publish(topic: string, payload: object | string | Buffer, opts?: PublishOptions): Promise<void>;
  close(): Promise<void>;
}

interface ConnectFacts {
  clientId: string;
  keepalive: number;
  protocolVersion: number;
  clean: boolean;
}

function toBuffer(payload: object | string | Buffer): Buffer {
  if (Buffer.isBuffer(payload)) return payload;
  return Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload), 'utf8');
}

function refusal(code: ConnackRefusal, reason: string): AuthenticateError {
  return Object.assign(new Error(reason), { returnCode: code as number }) as AuthenticateError;
}

export async function createMqttBroker(ctx: AppContext): Promise<MqttBroker> {
  const logger: Logger = ctx.logger.child({ component: 'mqtt' });
  const { authenticator, presence, applications } = ctx.services;
  const sessions = new SessionRegistry();
  ctx.services.metrics.useSessionSource(sessions);
  ctx.cluster.sessionCount = () => sessions.size;
  const drainer = new SessionDrainer(sessions, logger, ctx.config.drainRatePerSecond);
  ctx.cluster.onDrain((on) => (on ? drainer.start() : drainer.stop()));
  ctx.cluster.onSubDeviceClaimed((ref) => {
    const actor = sessions.actingSessionOf(ref.iotId);
    if (actor) sessions.removeActingFor(actor, ref.iotId, 'logged in through a gateway on another node');
  });
  const facts = new WeakMap<Client, ConnectFacts>();
  const readyHooks = new WeakMap<Client, NonNullable<ConnectAllow['onSessionReady']>>();
  const retained = new RetainedQuota({
    perIdentity: ctx.config.retainedPerIdentity,
    bytesPerIdentity: ctx.config.retainedBytesPerIdentity,
    total: ctx.config.retainedTotal,
    bytesTotal: ctx.config.retainedBytesTotal,
  });
  /** MQTT 5 clients learn why they are disconnected (aedes itself speaks 3.1.1 and just closes). */
  const v5Disconnect = (client: Client, reasonCode: number) => {
    if (facts.get(client)?.protocolVersion === 5) setV5DisconnectReason(client, reasonCode);
  };
  let broker: MqttBroker;

  const aedes = await Aedes.createBroker({
    // A cluster node: routing and persistent sessions on Redis (cluster/broker-parts.ts).
    ...(ctx.cluster instanceof RedisCluster ? clusterBrokerOptions(ctx.cluster) : { id: ctx.cluster.nodeId }),
    connectTimeout: 15_000,
    // Platform ClientIds often exceed 100 characters (spec 1.1); aedes applies this to MQTT 3.1 only.
    maxClientsIdLength: 65_535,

    preConnect(client, packet, callback) {
      facts.set(client, {
        clientId: packet.clientId ?? '',
        keepalive: packet.keepalive ?? 0,
        protocolVersion: packet.protocolVersion ?? 4,
        clean: packet.clean !== false,
      });
      if (packet.protocolVersion === 5) adaptMqtt5Client(client, packet);
      callback(null, true);
    },

    authenticate(client, username, password, done) {
      const f = facts.get(client);
      const info = connectionInfoOf(client.conn) ?? { transport: 'tcp' as const, remoteAddress: '' };
      const rawClientId = f?.clientId ?? '';
      const parsed = parseMqttClientId(rawClientId);
      const attempt: ConnectAttempt = {
        rawClientId,
        parsed,
        username: username ?? undefined,
        password: password ? password.toString('utf8') : '',
        keepalive: f?.keepalive ?? 0,
        protocolVersion: f?.protocolVersion ?? 4,
        clean: f?.clean ?? true,
        transport: info.transport,
        remoteAddress: info.remoteAddress,
        ...(info.clientCertChain ? { clientCertChain: info.clientCertChain } : {}),
      };
      authenticateConnect(attempt, ctx).then(
        (decision) => {
          if (decision.ok) {
            const id = decision.identity;
            // aedes keys clients by id and closes an older client with the same id before
            // registering the new one: keying devices by (productKey, deviceName) makes that
            // the platform's takeover rule (spec 1.5).
            (client as { id: string }).id =
              id.kind === 'device' ? deviceKey(id.productKey, id.deviceName) : `${id.kind}|${id.iotId}|${rawClientId}`;
            newSession(client, id, { transport: info.transport, remoteAddress: info.remoteAddress, ext: parsed?.ext ?? {} });
            if (decision.onSessionReady) readyHooks.set(client, decision.onSessionReady);
            logger.debug(
              { kind: id.kind, productKey: id.productKey, deviceName: id.deviceName, transport: info.transport, remote: info.remoteAddress },
              'mqtt connect allowed',
            );
            recordConnectDecision(ctx, attempt, decision);
            done(null, true);
            return;
          }
          recordConnectDecision(ctx, attempt, decision);
          // Rate-limited per source with a count of what was held back (issue 11 item 11).
          ctx.services.logLimiter.log(
            'info',
            'mqtt.connect.deny',
            info.remoteAddress,
            {
              code: decision.returnCode,
              refusal: decision.refusal,
              reason: decision.reason,
              productKey: decision.device?.productKey ?? decision.productKey,
              deviceName: decision.device?.deviceName ?? decision.deviceName,
              transport: info.transport,
              remote: info.remoteAddress,
            },
            'mqtt connect refused',
          );
          if (decision.device) authenticator.recordAuthError(decision.device, decision.reason, `mqtt/${info.transport} ${info.remoteAddress}`);
          if (decision.v5ReasonCode !== undefined) setV5ConnackReason(client, decision.v5ReasonCode);
          done(refusal(decision.returnCode, decision.reason), false);
        },
        (err) => {
          logger.error({ err, transport: info.transport, remote: info.remoteAddress }, 'mqtt authentication failed');
          recordConnectDecision(ctx, attempt, undefined);
          done(refusal(3, 'server unavailable'), false);
        },
      );
    },

    authorizePublish(client, packet, callback) {
      if (!client) return callback(null); // the broker's own publishes
      const session = sessionOf(client);
      if (!session) return callback(new Error('no session'));
      if (client.closed && isSystemTopic(packet.topic)) {
        // A will message (or a publish that raced the disconnect): the session is over, so it
        // may not log sub-devices in, report properties or anything else a system topic does.
        logger.info({ event: 'mqtt.publish.deny', ...who(session), topic: packet.topic.slice(0, 200) }, 'publish after the session ended (will) on a system topic dropped');
        return callback(new Error('session ended'));
      }
      const size = packet.payload ? packet.payload.length : 0;
      if (size > MAX_PAYLOAD_BYTES) {
        logger.warn({ event: 'mqtt.publish.deny', ...who(session), topic: packet.topic.slice(0, 200), size }, 'publish refused: payload too large');
        return callback(new Error('payload too large'));
      }
      if (mayPublish(session, packet.topic)) {
        if (!packet.retain) return callback(null);
        const admission = retained.admit(retainedOwner(session, packet.topic), packet.topic, size);
        if (admission.ok) return callback(null);
        // MQTT 3.1.1 has no negative PUBACK: the connection closes; MQTT 5 learns why.
        logger.warn({ event: 'mqtt.publish.deny', ...who(session), topic: packet.topic.slice(0, 200), reason: admission.reason }, 'retained publish refused; disconnecting');
        v5Disconnect(client, admission.retainUnsupported ? 0x9a : 0x97);
        return callback(new Error('retained publish refused: ' + admission.reason));
      }
      const refuse = () => {
        // MQTT 3.1.1 has no negative PUBACK: refusing the publish closes the connection.
        logger.warn({ event: 'mqtt.publish.deny', ...who(session), topic: packet.topic.slice(0, 200) }, 'publish refused by topic ACL; disconnecting');
        v5Disconnect(client, 0x87);
        callback(new Error('publish not authorized'));
      };
      // A gateway's own sub-device that is not logged in: 520 on /ext/error, the message is
      // dropped (re-addressed to a topic nothing matches), the gateway stays connected (spec 4.7).
      refusedSubDevicePublish(broker.handlerContext, session, packet as PublishPacket).then(
        (swallowed) => {
          if (!swallowed) return refuse();
          packet.topic = SWALLOWED_TOPIC;
          packet.retain = false;
          callback(null);
        },
        (err) => {
          logger.error({ err, ...who(session) }, 'sub-device session check failed');
          refuse();
        },
      );
    },

    authorizeSubscribe(client, sub, callback) {
      const session = sessionOf(client);
      if (session && maySubscribe(session, sub.topic)) return callback(null, sub);
      ctx.services.logLimiter.log('warn', 'mqtt.subscribe.deny', session?.remoteAddress ?? connectionInfoOf(client.conn)?.remoteAddress, { ...(session ? who(session) : {}), topic: sub.topic.slice(0, 200) }, 'subscription refused by topic ACL');
      // A stored subscription of a persistent session (clean=false) restored at reconnect
      // that is no longer allowed (e.g. a sub-device that moved to another gateway) is
      // removed from the store, so it neither comes back nor queues messages while offline.
      if (client && client.clean === false) {
        persistenceOf(aedes).removeSubscriptions(client, [sub.topic]).catch((err: Error) => logger.debug({ err: err.message }, 'stale subscription not removed'));
      }
      callback(null, null); // SUBACK failure 0x80 for this filter
    },

    // Checked for every message at delivery time, including QoS 1 messages queued for an
    // offline persistent session and delivered when it reconnects: a session that no longer
    // acts for the identity a topic belongs to does not get it (issue 11 item 5).
    authorizeForward(client, packet) {
      const session = sessionOf(client);
      if (!session) return packet;
      return mayReceive(session, packet.topic) ? packet : null;
    },

    published(packet, client, callback) {
      callback(null);
      routeToAutoSubscribed(sessions, packet as PublishPacket, client ?? null);
      if (!client) return;
      const session = sessionOf(client);
      if (!session || session.identity.kind === 'application') return;
      // A will, or a request that raced its connection's end: the session is over (or was
      // taken over), so nothing may act for it any more (issue 11 item 9).
      if (!isLiveSession(sessions, session)) {
        logger.info({ event: 'mqtt.handler.skip', ...who(session), topic: packet.topic.slice(0, 200) }, 'publish of an ended session not handled');
        return;
      }
      dispatchToHandlers(broker.handlerContext, client, packet as PublishPacket);
    },
  });

  aedes.on('client', (client) => {
    const session = sessionOf(client);
    if (!session) return;
    sessions.open(session);
    if (session.identity.kind === 'device') presence.markOnline(session.identity);
  });

  aedes.on('clientReady', (client) => {
    const session = sessionOf(client);
    if (!session) return;
    const hook = readyHooks.get(client);
    if (hook) {
      readyHooks.delete(client);
      try {
        hook(session, broker);
      } catch (err) {
        logger.error({ err, ...who(session) }, 'session ready hook failed');
      }
    }
  });

  aedes.on('clientDisconnect', (client) => {
    const session = sessionOf(client);
    if (session) sessions.closed(session, 'disconnected');
  });

  aedes.on('keepaliveTimeout', (client) => {
    const session = sessionOf(client);
    if (session) session.closeReason ??= 'keep-alive expired';
  });

  aedes.on('clientError', (client, err) => {
    const session = sessionOf(client);
    logger.debug({ ...(session ? who(session) : {}), err: err.message }, 'mqtt client error');
  });

  // aedes reports its persistence failures (a cluster's Redis away: clearing wills, queuing for
  // offline sessions) as 'error' on the broker; unheard, that would end the process. The node
  // serves on; the Redis link reports the outage (cluster/redis-link.ts).
  let persistenceErrors = 0;
  (aedes as unknown as { on(e: 'error', l: (err: Error) => void): void }).on('error', (err: Error) => {
    if (persistenceErrors++ % 100 === 0) logger.error({ err: err.message, count: persistenceErrors }, 'mqtt broker persistence error; serving on');
  });

  aedes.on('connectionError', (_client, err) => {
    logger.debug({ err: err.message }, 'mqtt connection error before CONNECT completed');
  });

  sessions.on('session.closed', (session, reason) => {
    logger.debug({ ...who(session), reason }, 'mqtt session closed');
    const id = session.identity;
    // Only the last live session of a device makes it offline (a takeover opens a new one).
    if (id.kind === 'device' && !sessions.byIotId(id.iotId)) presence.markOffline(id);
  });

  const kick = (reason: string) => (ref: { iotId: string; productKey: string; deviceName: string }) => {
    // A login just before the change may still have its online write queued: it must not
    // mark the device online (or re-activate a reset one) after the change.
    presence.forgetOnline(ref.iotId);
    if (sessions.kick(ref, reason)) logger.info({ productKey: ref.productKey, deviceName: ref.deviceName, reason }, 'mqtt session kicked');
  };
  const onDisabled = kick('device disabled');
  /** The device's retained messages go with it: the next holder of its name starts clean. */
  const dropRetained = (ref: { iotId: string; productKey: string; deviceName: string }) => {
    for (const topic of retained.topicsOfDevice(ref.iotId, ref.productKey, ref.deviceName)) {
      retained.release(topic);
      persistenceOf(aedes)
        .storeRetained({ cmd: 'publish', topic, payload: Buffer.alloc(0), qos: 0, retain: true, dup: false } as PublishPacket)
        .catch((err: Error) => logger.warn({ err: err.message }, 'retained message not removed'));
    }
  };
  const kickDeleted = kick('device deleted');
  const onDeleted = (ref: { iotId: string; productKey: string; deviceName: string }) => {
    kickDeleted(ref);
    dropRetained(ref);
  };
  // Reset clears the credential a regnwl device logs in with and sends the device back to
  // UNACTIVE: a session still running on the old credential must end with it.
  const kickReset = kick('device reset');
  const onReset = (ref: { iotId: string; productKey: string; deviceName: string }) => {
    kickReset(ref);
    dropRetained(ref);
  };
  const onAppDeleted = ({ appKey }: { appKey: string }) => {
    sessions.kickApplication(appKey, 'application deleted');
  };
  ctx.services.events.on('device.disabled', onDisabled);
  ctx.services.events.on('device.deleted', onDeleted);
  ctx.services.events.on('device.reset', onReset);
  applications.on('application.deleted', onAppDeleted);

  const publish = (topic: string, payload: object | string | Buffer, opts: PublishOptions = {}): Promise<void> =>
    new Promise((resolve, reject) => {
      const packet = { cmd: 'publish', topic, payload: toBuffer(payload), qos: opts.qos ?? 0, retain: opts.retain ?? false, dup: false } as PublishPacket;
      aedes.publish(packet, (err) => (err ? reject(err) : resolve()));
    });

  const handlerContext: HandlerContext = {
    app: ctx,
    logger,
    sessions,
    sessionOf: (client) => sessionOf(client),
    replyTo(client, topic, payload, opts = {}) {
      if (client.closed) return;
      const packet = { cmd: 'publish', topic, payload: toBuffer(payload), qos: opts.qos ?? 0, retain: false, dup: false } as PublishPacket;
      client.publish(packet, (err) => {
        if (err) logger.debug({ err: err.message, topic }, 'reply not delivered');
      });
    },
    publish,
  };
  const stopTopoChangeNotices = startTopoChangeNotices(handlerContext);
  const stopBootstrapNotices = startBootstrapNotices(handlerContext);
  const stopSlotRevocationKicks = startSlotRevocationKicks(ctx, sessions, logger);
  const stopCertificateRevocationKicks = startCertificateRevocationKicks(ctx, sessions, logger);

  broker = {
    aedes,
    sessions,
    handlerContext,
    publish,
    async close() {
      ctx.services.events.off('device.disabled', onDisabled);
      ctx.services.events.off('device.deleted', onDeleted);
      ctx.services.events.off('device.reset', onReset);
      applications.off('application.deleted', onAppDeleted);
      stopTopoChangeNotices();
      stopBootstrapNotices();
      stopSlotRevocationKicks();
      drainer.stop();
      stopCertificateRevocationKicks();
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await presence.flush();
    },
  };
  return broker;
}

/** The parts of aedes' persistence (aedes-persistence) used here; aedes' types do not expose it. */
interface BrokerPersistence {
  removeSubscriptions(client: Client, topics: string[]): Promise<unknown>;
  storeRetained(packet: PublishPacket): Promise<void>;
}

function persistenceOf(aedes: Aedes): BrokerPersistence {
  return (aedes as unknown as { persistence: BrokerPersistence }).persistence;
}

/**
 * Who a retained message is charged to: the identity the topic belongs to among those the
 * session acts for (a gateway's sub-device), else the session's own identity.
 */
function retainedOwner(session: Session, topic: string): string {
  if (session.actingFor.size > 0) {
    const levels = topic.split('/');
    for (const id of session.actingFor.values()) {
      for (let i = 0; i + 1 < levels.length; i++) {
        if (levels[i] === id.productKey && levels[i + 1] === id.deviceName) return id.iotId;
      }
    }
  }
  return session.identity.iotId;
}

function who(session: Session): { productKey?: string; deviceName?: string; app?: string } {
  const id = session.identity;
  return id.kind === 'application' ? { app: id.iotId } : { productKey: id.productKey, deviceName: id.deviceName };
}

interface BrokerHolder {
  broker: Promise<MqttBroker>;
  refs: number;
}

const holders = new WeakMap<AppContext, BrokerHolder>();

/**
 * The broker of this server, created on first use. Each holder calls release() when it
 * stops; the last release closes the broker.
 */
export async function acquireMqttBroker(ctx: AppContext): Promise<{ broker: MqttBroker; release: () => Promise<void> }> {
  let holder = holders.get(ctx);
  if (!holder) {
    holder = { broker: createMqttBroker(ctx), refs: 0 };
    holders.set(ctx, holder);
    holder.broker.catch(() => holders.delete(ctx));
  }
  holder.refs++;
  const h = holder;
  const broker = await h.broker;
  let released = false;
  return {
    broker,
    async release() {
      if (released) return;
      released = true;
      h.refs--;
      if (h.refs === 0) {
        holders.delete(ctx);
        await broker.close();
      }
    },
  };
}
