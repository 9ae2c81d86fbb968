/**
 * The broker side of a gateway for the sub-device services: one GatewayLink per gateway
 * session (services/sub-device-sessions.ts), built on the session registry's acting-for
 * mechanism, and the request/reply plumbing every gateway topic handler shares.
 */
import type { Client, PublishPacket } from 'aedes';
import type { AlinkResult } from '../../core/sub-device-protocol.js';
import { SubDeviceCodes } from '../../core/sub-device-protocol.js';
import type { DeviceRef } from '../../services/events.js';
import type { GatewayLink } from '../../services/sub-device-sessions.js';
import { maySubscribe } from '../acl.js';
import { isLiveSession } from '../session-liveness.js';
import { autoSubscribe } from '../auto-subscribe.js';
import type { Session, SessionRegistry } from '../sessions.js';
import { alinkReply, parseAlinkRequest } from './alink.js';
import type { HandlerContext, TopicParams } from './index.js';

const links = new WeakMap<Session, GatewayLink>();
const wired = new WeakSet<SessionRegistry>();

/**
 * Reports the registry's own changes to the session service once per registry: a closed
 * gateway session logs out all its sub-devices; an identity the registry took away by itself
 * (a kick, a takeover) is logged out too. While a session closes, its identities are removed
 * one by one before 'session.closed': those are left to the single gatewayDisconnected call.
 */
function wire(hctx: HandlerContext): void {
  if (wired.has(hctx.sessions)) return;
  wired.add(hctx.sessions);
  const service = hctx.app.services.subDeviceSessions;
  hctx.sessions.on('session.closed', (session) => {
    const link = links.get(session);
    if (!link) return;
    service.gatewayDisconnected(link).catch((err) => hctx.logger.error({ err }, 'sub-device logout on gateway disconnect failed'));
  });
  hctx.sessions.on('acting.removed', (session, identity) => {
    if (session.ended) return;
    const link = links.get(session);
    if (link) service.actingRemoved(link, identity.iotId);
  });
}

/** The link of a gateway session, created on first use. */
export function gatewayLinkOf(hctx: HandlerContext, session: Session): GatewayLink {
  let link = links.get(session);
  if (link) return link;
  wire(hctx);
  // C SDKs that send _ss=1 never SUBSCRIBE; the platform subscribes them (spec 1.3), and a
  // gateway is treated as subscribed to its logged-in sub-devices' system topics (spec 4.5).
  const autoSub = session.ext._ss === '1';
  const { iotId, productKey, deviceName } = session.identity;
  link = {
    gateway: { iotId, productKey, deviceName },
    actFor(sub: DeviceRef) {
      hctx.sessions.addActingFor(session, { kind: 'device', iotId: sub.iotId, productKey: sub.productKey, deviceName: sub.deviceName });
      // One live login of a sub-device cluster-wide: a gateway on another node acting for it stops.
      hctx.app.cluster.claimSubDevice(sub);
      if (autoSub) autoSubscribe(session.client, sub).catch((err) => hctx.logger.warn({ err, sub: `${sub.productKey}/${sub.deviceName}` }, 'auto-subscribe of a sub-device failed'));
    },
    stopActingFor(sub: DeviceRef, reason: string) {
      hctx.sessions.removeActingFor(session, sub.iotId, reason);
      if (session.ended) return;
      // Subscriptions made while acting for the sub-device (by the gateway or automatically)
      // must not outlive the right: otherwise a gateway that lost a sub-device (moved to
      // another gateway, disabled) would keep receiving its commands.
      const current = Object.keys((session.client as unknown as { subscriptions: Record<string, unknown> }).subscriptions ?? {});
      const stale = current.filter((filter) => !maySubscribe(session, filter));
      // No messageId: aedes then sends no UNSUBACK the client never asked for, and does not
      // touch the persisted copy either: a persistent session (clean=false) has its stored
      // subscriptions removed here, so nothing is queued for it while it is offline (issue 11
      // item 5; a copy that survives anyway is refused and removed when it is restored).
      if (stale.length > 0) {
        session.client.unsubscribe({ unsubscriptions: stale, cmd: 'unsubscribe' } as never, () => undefined);
        if (session.client.clean === false) {
          const persistence = ((session.client as unknown as { broker: unknown }).broker as { persistence: { removeSubscriptions(c: Client, t: string[]): Promise<unknown> } }).persistence;
          persistence.removeSubscriptions(session.client, stale).catch((err: Error) => hctx.logger.debug({ err: err.message }, 'stale stored subscription not removed'));
        }
      }
    },
    isLive() {
      return isLiveSession(hctx.sessions, session);
    },
    send(topic: string, payload: string) {
      hctx.replyTo(session.client, topic, payload);
    },
  };
  links.set(session, link);
  return link;
}

/**
 * Runs one gateway request: parse the envelope leniently, make sure the topic names the
 * publishing gateway itself (not a sub-device it acts for), run the use case, reply on
 * `<topic>_reply` unless `sys.ack` is 0. Garbage gets 460; an unexpected failure 500.
 */
export async function handleGatewayRequest(
  hctx: HandlerContext,
  client: Client,
  params: TopicParams,
  payload: Buffer,
  packet: PublishPacket,
  run: (link: GatewayLink, requestParams: unknown) => Promise<AlinkResult>,
): Promise<void> {
  const session = hctx.sessionOf(client);
  if (!session || session.identity.kind !== 'device') return;
  const replyTopic = packet.topic + '_reply';
  const req = parseAlinkRequest(payload);
  if (!req) {
    hctx.replyTo(client, replyTopic, alinkReply(null, SubDeviceCodes.PARAM_ERROR, {}, 'payload must be a JSON object {id, params}'));
    return;
  }
  const reply = (r: AlinkResult) => {
    if (req.wantsReply) hctx.replyTo(client, replyTopic, alinkReply(req.id, r.code, r.data, r.message));
  };
  if (params.productKey !== session.identity.productKey || params.deviceName !== session.identity.deviceName) {
    reply({ code: SubDeviceCodes.NOT_A_GATEWAY, data: {}, message: 'only a gateway, on its own topics, manages sub-devices' });
    return;
  }
  let result: AlinkResult;
  try {
    // A request that raced the gateway's end (disconnect, kick, disable) or a gateway disabled
    // meanwhile runs nothing (issue 11 item 9).
    const gateway = await hctx.app.store.getDevice(session.identity.productKey, session.identity.deviceName);
    if (!gateway?.enabled || !isLiveSession(hctx.sessions, session)) {
      hctx.logger.info({ event: 'gateway.request.skip', productKey: session.identity.productKey, deviceName: session.identity.deviceName, topic: packet.topic.slice(0, 200) }, 'request of an ended or disabled gateway session not run');
      return;
    }
    result = await run(gatewayLinkOf(hctx, session), req.params);
  } catch (err) {
    hctx.logger.error({ err, topic: packet.topic }, 'gateway request failed');
    result = { code: SubDeviceCodes.INTERNAL, data: {}, message: 'server error' };
  }
  reply(result);
}

/** `/sys/{pk}/{dn}/...` or `/{pk}/{dn}/user/...`: the device a topic belongs to. */
function deviceOfTopic(topic: string): { productKey: string; deviceName: string } | undefined {
  const l = topic.split('/');
  if (l[0] !== '') return undefined;
  if (l[1] === 'sys' && l.length > 4 && l[2] && l[3]) return { productKey: l[2], deviceName: l[3] };
  if (l[3] === 'user' && l[1] && l[2]) return { productKey: l[1], deviceName: l[2] };
  return undefined;
}

/** Topic a swallowed publish is re-addressed to: `$`-topics match no subscription filter or handler. */
export const SWALLOWED_TOPIC = '$thingauth/swallowed';

/**
 * For the broker's authorizePublish, after the ACL refused a publish: a gateway publishing
 * on one of ITS sub-devices' topics while that sub-device is not logged in through it gets
 * 520 on /ext/error (spec 4.7; iotkit then logs it in again) instead of losing its whole
 * connection, and the message is dropped. Resolves true when the publish was such a case.
 */
export async function refusedSubDevicePublish(hctx: HandlerContext, session: Session, packet: PublishPacket): Promise<boolean> {
  if (session.identity.kind !== 'device') return false;
  const target = deviceOfTopic(packet.topic);
  if (!target) return false;
  let requestId: unknown;
  try {
    const body = JSON.parse(Buffer.isBuffer(packet.payload) ? packet.payload.toString('utf8') : String(packet.payload));
    if (body && typeof body === 'object') requestId = (body as { id?: unknown }).id;
  } catch {
    /* not JSON: the notice carries a server id */
  }
  return hctx.app.services.subDeviceSessions.publishWithoutSession(gatewayLinkOf(hctx, session), target.productKey, target.deviceName, requestId);
}
