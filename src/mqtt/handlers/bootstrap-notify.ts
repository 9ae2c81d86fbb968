/**
 * `thing/bootstrap/notify` (down): the operator's order to run bootstrap again
 * (services/bootstrap.ts, management API `.../bootstrap-notify`, `thingauth device
 * bootstrap-notify`). Handed straight to each live session of the devices named, subscribed
 * or not: the C Link SDK 4.x only registers a handler for the topic and relies on `_ss=1`.
 * A device that is not connected gets nothing queued (it asks bootstrap when it next starts).
 * The device's `notify_reply` (up) needs no answer; it reaches subscribed applications.
 */
import type { PublishPacket } from 'aedes';
import type { BootstrapNotifyOrder } from '../../services/events.js';
import type { HandlerContext } from './index.js';

export function startBootstrapNotices(hctx: HandlerContext): () => void {
  const events = hctx.app.services.events;
  const onNotify = (order: BootstrapNotifyOrder) => {
    for (const session of hctx.sessions.all()) {
      const id = session.identity;
      if (id.kind !== 'device' || id.productKey !== order.productKey) continue;
      if (order.deviceName !== undefined && id.deviceName !== order.deviceName) continue;
      if (session.ended || session.client.closed) continue;
      const { topic, payload } = order.messageFor(id.deviceName);
      const packet = { cmd: 'publish', topic, payload: Buffer.from(payload, 'utf8'), qos: 0, retain: false, dup: false } as PublishPacket;
      session.client.publish(packet, (err) => {
        if (err) hctx.logger.debug({ err: err.message, topic }, 'bootstrap notify not delivered');
      });
      order.delivered++;
    }
  };
  events.on('bootstrap.notify', onNotify);
  return () => events.off('bootstrap.notify', onNotify);
}
