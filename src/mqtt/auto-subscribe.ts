/**
 * Auto-subscription (spec 1.3): devices that send `_ss=1` (C Link SDK 4.x, iotkit with
 * MQTT_AUTO_SUBSCRIBE, Python linkkit) never SUBSCRIBE to their downlink system topics; the
 * platform treats them as subscribed. Replies to their own requests do not need this: handlers
 * deliver replies with replyTo.
 *
 * For a device's own connection this is routing, not subscriptions: a publish on one of
 * these topics is handed straight to the `_ss=1` session of the device it names
 * (`routeToAutoSubscribed`, called by the broker for every publish). That keeps a connect
 * storm free of eight broker subscriptions per device. `autoSubscribe` makes real,
 * server-side subscriptions instead; engineer D uses it for logged-in sub-devices on the
 * gateway's client.
 */
import type { Client, PublishPacket } from 'aedes';
import { topicMatches } from './acl.js';
import type { SessionIdentity, SessionRegistry } from './sessions.js';

export const AUTO_SUBSCRIBE_PATTERNS: readonly string[] = [
  '/sys/{productKey}/{deviceName}/thing/service/+',
  '/sys/{productKey}/{deviceName}/thing/service/property/set',
  '/sys/{productKey}/{deviceName}/thing/service/property/get',
  '/sys/{productKey}/{deviceName}/thing/model/down_raw',
  '/sys/{productKey}/{deviceName}/thing/topo/change',
  '/sys/{productKey}/{deviceName}/thing/config/push',
  '/sys/{productKey}/{deviceName}/thing/bootstrap/notify',
  '/sys/{productKey}/{deviceName}/rrpc/request/+',
  '/ext/error/{productKey}/{deviceName}',
];

export function autoSubscribeFilters(identity: Pick<SessionIdentity, 'productKey' | 'deviceName'>): string[] {
  return AUTO_SUBSCRIBE_PATTERNS.map((p) => p.replace('{productKey}', identity.productKey).replace('{deviceName}', identity.deviceName));
}

/** Subscribes the client server-side (no SUBACK is sent); goes through the ACL like any subscription. */
export function autoSubscribe(client: Client, identity: Pick<SessionIdentity, 'productKey' | 'deviceName'>): Promise<void> {
  const subscriptions = autoSubscribeFilters(identity).map((topic) => ({ topic, qos: 0 as const }));
  return new Promise((resolve, reject) => client.subscribe({ subscriptions }, (err) => (err ? reject(err) : resolve())));
}

/** The part after `/sys/{pk}/{dn}/` of each /sys pattern, split into levels. */
const SYS_TAILS = AUTO_SUBSCRIBE_PATTERNS.filter((p) => p.startsWith('/sys/')).map((p) => p.split('/').slice(4));

/** The device an auto-subscribed topic is addressed to, or undefined. */
export function autoSubscribedTarget(topic: string): { productKey: string; deviceName: string } | undefined {
  if (topic.startsWith('/ext/error/')) {
    const levels = topic.split('/');
    return levels.length === 5 ? { productKey: levels[3]!, deviceName: levels[4]! } : undefined;
  }
  if (!topic.startsWith('/sys/')) return undefined;
  const levels = topic.split('/');
  const tail = levels.slice(4);
  return SYS_TAILS.some((t) => topicMatches(t, tail)) ? { productKey: levels[2]!, deviceName: levels[3]! } : undefined;
}

function subscribedTo(client: Client, topic: string): boolean {
  const subs = (client as unknown as { subscriptions: Record<string, unknown> }).subscriptions;
  let levels: string[] | undefined;
  for (const filter in subs) {
    levels ??= topic.split('/');
    if (topicMatches(filter.split('/'), levels)) return true;
  }
  return false;
}

/**
 * Delivers a publish to the `_ss=1` session of the device its topic names, unless that
 * client subscribed to it anyway (it then gets it through the broker, once) or published it.
 */
export function routeToAutoSubscribed(sessions: SessionRegistry, packet: PublishPacket, publisher: Client | null): void {
  const target = autoSubscribedTarget(packet.topic);
  if (!target) return;
  const session = sessions.byDevice(target.productKey, target.deviceName);
  if (!session || session.ext._ss !== '1' || session.client === publisher || session.client.closed) return;
  if (subscribedTo(session.client, packet.topic)) return;
  session.client.publish({ cmd: 'publish', topic: packet.topic, payload: packet.payload, qos: packet.qos, retain: false, dup: false } as PublishPacket, () => undefined);
}
