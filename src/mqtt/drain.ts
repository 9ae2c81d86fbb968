/**
 * Draining a node (thingauth node drain): new logins are refused with CONNACK 3 / MQTT 5 0x9C
 * "use another server" (connect-authenticators.ts); the devices already here are moved away
 * without a reconnect storm:
 * 1. every device session gets the bootstrap notify order at once (the C Link SDK 4.x and
 *    others that listen to `thing/bootstrap/notify` run bootstrap again and reconnect through
 *    the advertised endpoint, i.e. the load balancer, to another node);
 * 2. after a grace period the sessions still here are closed, at most `ratePerSecond` per
 *    second, devices and applications alike, so the fleet reconnects elsewhere spread over time.
 * Draining stops when the order is taken back (node undrain): sessions not closed yet stay.
 */
import type { PublishPacket } from 'aedes';
import type { Logger } from '../logger.js';
import { bootstrapNotifyOrder } from '../services/bootstrap.js';
import type { SessionRegistry } from './sessions.js';

export const DRAIN_NOTIFY_GRACE_MS = 2_000;
const TICK_MS = 100;

export class SessionDrainer {
  private timers: NodeJS.Timeout[] = [];
  private active = false;

  constructor(
    private readonly sessions: SessionRegistry,
    private readonly logger: Logger,
    private readonly ratePerSecond: number,
    private readonly graceMs = DRAIN_NOTIFY_GRACE_MS,
  ) {}

  start(): void {
    if (this.active) return;
    this.active = true;
    let notified = 0;
    for (const s of this.sessions.all()) {
      const id = s.identity;
      if (id.kind !== 'device' || s.ended || s.client.closed) continue;
      const { topic, payload } = bootstrapNotifyOrder(id.productKey, id.deviceName).messageFor(id.deviceName);
      const packet = { cmd: 'publish', topic, payload: Buffer.from(payload, 'utf8'), qos: 0, retain: false, dup: false } as PublishPacket;
      s.client.publish(packet, () => undefined);
      notified++;
    }
    this.logger.info({ notified, ratePerSecond: this.ratePerSecond }, 'draining: bootstrap notify sent; closing the remaining sessions at a bounded rate');
    const perTick = Math.max(1, Math.round((this.ratePerSecond * TICK_MS) / 1000));
    const begin = setTimeout(() => {
      const tick = setInterval(() => {
        let closed = 0;
        for (const s of [...this.sessions.all()]) {
          if (closed >= perTick) break;
          if (s.ended || s.client.closed || s.identity.kind === 'provisioning') continue;
          s.closeReason = 'node draining';
          s.client.close();
          closed++;
        }
        if (closed === 0) {
          clearInterval(tick);
          this.logger.info('draining: no session left on this node');
        }
      }, TICK_MS);
      this.timers.push(tick);
    }, this.graceMs);
    this.timers.push(begin);
  }

  stop(): void {
    this.active = false;
    for (const t of this.timers.splice(0)) clearTimeout(t);
  }
}
