/**
 * Is a session still the one acting, and may it receive a topic (issue 11 items 5 and 9).
 *
 * - `isLiveSession`: a session whose connection ended (a will message, a request that raced
 *   the disconnect or a kick) or that was taken over by a newer login of the same device
 *   must not run topic handlers any more.
 * - `isSystemTopic`: topics the platform acts on; a will published there is dropped.
 * - `mayReceive`: the delivery-time check (aedes authorizeForward): a message reaches a
 *   client only while one of its identities may subscribe to the topic, so a stored
 *   subscription or a queued QoS 1 message of a sub-device the gateway no longer acts for
 *   is not delivered.
 */
import { maySubscribe } from './acl.js';
import type { Session, SessionRegistry } from './sessions.js';

export function isLiveSession(sessions: SessionRegistry, session: Session): boolean {
  if (session.ended || session.client.closed) return false;
  const id = session.identity;
  if (id.kind === 'device') return sessions.byDevice(id.productKey, id.deviceName) === session;
  return true;
}

/** `/sys/...`, `/ext/...` (sessions, RRPC, NTP, errors), `/ota/...`, `/shadow/...`. */
export function isSystemTopic(topic: string): boolean {
  return topic.startsWith('/sys/') || topic.startsWith('/ext/') || topic.startsWith('/ota/') || topic.startsWith('/shadow/') || topic.startsWith('$');
}

export function mayReceive(session: Session, topic: string): boolean {
  return maySubscribe(session, topic);
}
