/**
 * The console's live feed (issue 17), independent of HTTP: subscribers get device presence
 * (`device.status`, the moment the broker marks a device online or offline), device changes
 * (`device.changed`: disabled, enabled, deleted, reset, or any other change) and, every 5 s,
 * login rates and the online count (`stats`). The SSE route (http/management/routes/events.ts)
 * turns a subscription into a stream.
 *
 * Limits: a subscription belongs to one management token; at most MAX_STREAMS_PER_TOKEN per
 * token and MAX_STREAMS in all. A revoked token's subscriptions end at once (TokenService
 * revoke), and the route checks its token again every ping (a revocation made through another
 * node). Delivery never buffers here: the route drops events for a reader that is behind.
 */
import { ThingAuthError } from '../core/errors.js';
import type { DeviceRef, RegistryEvents } from './events.js';
import type { Metrics } from './metrics.js';
import type { PresenceService } from './presence.js';
import type { Caller, TokenService } from './tokens.js';

export type DeviceChange = 'disabled' | 'enabled' | 'deleted' | 'reset' | 'changed';

export type LiveEvent =
  | { event: 'device.status'; data: DeviceRef & { status: 'ONLINE' | 'OFFLINE'; at: string } }
  | { event: 'device.changed'; data: DeviceRef & { change: DeviceChange } }
  | { event: 'stats'; data: { connectsPerMinute: number; refusalsPerMinute: number; online: number; at: string } };

export interface LiveSubscription {
  caller: Caller;
  /** Only events of this product (stats always). */
  productKey?: string;
  deliver(e: LiveEvent): void;
  /** The subscription is over (token revoked, server closing): end the stream. */
  end(reason: string): void;
}

export const MAX_STREAMS_PER_TOKEN = 4;
export const MAX_STREAMS = 64;
export const STATS_INTERVAL_MS = 5_000;

export class LiveEvents {
  private readonly subs = new Set<LiveSubscription>();
  private statsTimer: NodeJS.Timeout | undefined;
  /** device.changed of this tick, held back a microtask: a specific change of the same device replaces it. */
  private pendingChanged = new Map<string, DeviceRef>();
  private flushScheduled = false;

  constructor(
    events: RegistryEvents,
    presence: PresenceService,
    private readonly metrics: Metrics,
    tokens: TokenService,
    private readonly statsIntervalMs = STATS_INTERVAL_MS,
  ) {
    presence.onStatus((ref, status) => {
      if (this.subs.size === 0) return;
      this.publish({ event: 'device.status', data: { productKey: ref.productKey, deviceName: ref.deviceName, iotId: ref.iotId, status, at: new Date().toISOString() } });
    });
    // Services emit device.changed and then the specific event (disabled, reset...) in the same
    // tick: one device.changed with the specific change goes out, not both.
    events.on('device.changed', (ref) => {
      if (this.subs.size === 0) return;
      this.pendingChanged.set(ref.iotId, ref);
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        queueMicrotask(() => this.flushChanged());
      }
    });
    const specific = (change: DeviceChange) => (ref: DeviceRef) => {
      if (this.subs.size === 0) return;
      this.pendingChanged.delete(ref.iotId);
      this.publish({ event: 'device.changed', data: { productKey: ref.productKey, deviceName: ref.deviceName, iotId: ref.iotId, change } });
    };
    events.on('device.disabled', specific('disabled'));
    events.on('device.enabled', specific('enabled'));
    events.on('device.deleted', specific('deleted'));
    events.on('device.reset', specific('reset'));
    tokens.onRevoked((tokenId) => {
      for (const s of [...this.subs]) if (s.caller.tokenId === tokenId) this.unsubscribe(s, 'token revoked');
    });
  }

  /** Adds a subscription; RATE_LIMITED when its token (or the server) has as many streams as allowed. */
  subscribe(sub: LiveSubscription): () => void {
    let ofToken = 0;
    for (const s of this.subs) if (s.caller.tokenId === sub.caller.tokenId) ofToken++;
    if (ofToken >= MAX_STREAMS_PER_TOKEN) {
      throw new ThingAuthError('RATE_LIMITED', `this token already has ${MAX_STREAMS_PER_TOKEN} live streams open; close one first`);
    }
    if (this.subs.size >= MAX_STREAMS) throw new ThingAuthError('RATE_LIMITED', `the server already serves ${MAX_STREAMS} live streams; retry later`);
    this.subs.add(sub);
    if (!this.statsTimer) {
      this.statsTimer = setInterval(() => this.publish({ event: 'stats', data: this.stats() }), this.statsIntervalMs);
      this.statsTimer.unref();
    }
    return () => this.remove(sub);
  }

  /** The stats event's data now (also sent once when a stream opens). */
  stats(): { connectsPerMinute: number; refusalsPerMinute: number; online: number; at: string } {
    return {
      connectsPerMinute: this.metrics.recentLogins.lastMinute('accepted'),
      refusalsPerMinute: this.metrics.recentLogins.lastMinute('refused'),
      online: this.metrics.onlineDevices(),
      at: new Date().toISOString(),
    };
  }

  get size(): number {
    return this.subs.size;
  }

  /** Ends every subscription (server shutdown). */
  close(): void {
    for (const s of [...this.subs]) this.unsubscribe(s, 'server closing');
  }

  private unsubscribe(sub: LiveSubscription, reason: string): void {
    if (!this.remove(sub)) return;
    try {
      sub.end(reason);
    } catch {
      /* the stream is gone already */
    }
  }

  private remove(sub: LiveSubscription): boolean {
    const had = this.subs.delete(sub);
    if (this.subs.size === 0 && this.statsTimer) {
      clearInterval(this.statsTimer);
      this.statsTimer = undefined;
    }
    return had;
  }

  private flushChanged(): void {
    this.flushScheduled = false;
    const refs = [...this.pendingChanged.values()];
    this.pendingChanged.clear();
    for (const ref of refs) this.publish({ event: 'device.changed', data: { productKey: ref.productKey, deviceName: ref.deviceName, iotId: ref.iotId, change: 'changed' } });
  }

  private publish(e: LiveEvent): void {
    const pk = e.event === 'stats' ? undefined : e.data.productKey;
    for (const s of this.subs) {
      if (pk !== undefined && s.productKey !== undefined && s.productKey !== pk) continue;
      try {
        s.deliver(e);
      } catch {
        this.unsubscribe(s, 'delivery failed');
      }
    }
  }
}
