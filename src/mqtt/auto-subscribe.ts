/**
 * Auto-subscription (spec 1.3): devices that send `_ss=1` (C Link SDK 4.x, iotkit with
 * MQTT_AUTO_SUBSCRIBE, Python linkkit) never SUBSCRIBE to their downlink system topics; the
 * platform subscribes them. Replies to their own requests do not need this: handlers
 * deliver replies with replyTo. Engineer D may call autoSubscribe for logged-in sub-devices
 * on the gateway's client.
 */
import type { Client } from 'aedes';
import type { SessionIdentity } from './sessions.js';

export const AUTO_SUBSCRIBE_PATTERNS: readonly string[] = [
  '/sys/{productKey}/{deviceName}/thing/service/+',
  '/sys/{productKey}/{deviceName}/thing/service/property/set',
  '/sys/{productKey}/{deviceName}/thing/service/property/get',
  '/sys/{productKey}/{deviceName}/thing/model/down_raw',
  '/sys/{productKey}/{deviceName}/thing/topo/change',
  '/sys/{productKey}/{deviceName}/thing/config/push',
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
