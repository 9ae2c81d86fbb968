/**
 * Presence and activation (spec 6.1): online/offline and the first good login's activation.
 * CONNACK does not wait for the store: changes are queued and written in batches a few
 * milliseconds later (one transaction per batch), so a connect storm costs one write per
 * batch instead of one per device. Within a batch the last state of a device wins, but a
 * device that came online at all is always written online first, so a short-lived first
 * connection still activates it.
 */
import { isThingAuthError } from '../core/errors.js';
import type { Logger } from '../logger.js';
import type { Store } from '../store/store.js';

export interface PresenceRef {
  iotId: string;
  productKey: string;
  deviceName: string;
}

export interface PresenceOptions {
  /** How long a change may wait before it is written. */
  flushDelayMs?: number;
  /** Write at once when this many changes are waiting. */
  maxBatch?: number;
}

/** While the database is unavailable: how long to wait before writing the kept changes again. */
const UNAVAILABLE_RETRY_MS = 1_000;

export class PresenceService {
  private online = new Set<string>();
  private offline = new Set<string>();
  /** Batches taken by flush() whose write has not run yet (forgetOnline reaches into them). */
  private readonly pending = new Set<{ online: Set<string>; offline: Set<string> }>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private readonly flushDelayMs: number;
  private readonly maxBatch: number;
  private readonly activationListeners: ((iotIds: string[]) => void)[] = [];
  private readonly statusListeners: ((ref: PresenceRef, status: 'ONLINE' | 'OFFLINE') => void)[] = [];
  /** Set while the database is unavailable: no write before then. */
  private retryAt = 0;
  private closing = false;

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
    opts: PresenceOptions = {},
  ) {
    this.flushDelayMs = opts.flushDelayMs ?? 100;
    this.maxBatch = opts.maxBatch ?? 5_000;
  }

  /** Called with the IotIds a flush activated (UNACTIVE -> activated). */
  onActivated(listener: (iotIds: string[]) => void): void {
    this.activationListeners.push(listener);
  }

  /**
   * Called at once (before the batched write) when a device comes online or goes offline: the
   * console's live stream (services/live-events.ts). A listener must not throw.
   */
  onStatus(listener: (ref: PresenceRef, status: 'ONLINE' | 'OFFLINE') => void): void {
    this.statusListeners.push(listener);
  }

  private tellStatus(ref: PresenceRef, status: 'ONLINE' | 'OFFLINE'): void {
    for (const l of this.statusListeners) {
      try {
        l(ref, status);
      } catch (err) {
        this.logger.warn({ err, iotId: ref.iotId }, 'presence status listener failed');
      }
    }
  }

  markOnline(ref: PresenceRef): void {
    this.tellStatus(ref, 'ONLINE');
    this.online.add(ref.iotId);
    this.offline.delete(ref.iotId);
    this.schedule();
  }

  markOffline(ref: PresenceRef): void {
    this.tellStatus(ref, 'OFFLINE');
    this.offline.add(ref.iotId);
    this.schedule();
  }

  /** A login without a lasting connection (HTTP `/auth`): activates, leaves the device offline. */
  markSeen(ref: PresenceRef): void {
    this.online.add(ref.iotId);
    this.offline.add(ref.iotId);
    this.schedule();
  }

  /**
   * Drops every online write still waiting for this device, queued or already taken by a
   * flush. Called when the device was reset, disabled or deleted: a login that happened just
   * before must not re-activate it (or mark it online) a few milliseconds after the change.
   * Offline writes stay (they only ever turn a device offline).
   */
  forgetOnline(iotId: string): void {
    this.online.delete(iotId);
    for (const batch of this.pending) batch.online.delete(iotId);
  }

  private schedule(): void {
    if (this.online.size + this.offline.size >= this.maxBatch && Date.now() >= this.retryAt) {
      void this.flush();
      return;
    }
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.flush();
      }, this.flushDelayMs);
    }
  }

  /** Writes everything queued so far; resolves when it is in the store. */
  flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const batch = { online: this.online, offline: this.offline };
    this.online = new Set();
    this.offline = new Set();
    this.pending.add(batch);
    // Batches are written in order so an older batch never overwrites a newer one. The sets
    // are read only when the write starts, so forgetOnline() still applies until then.
    this.flushing = this.flushing.then(() => {
      this.pending.delete(batch);
      return this.write([...batch.online], [...batch.offline]);
    });
    return this.flushing;
  }

  private async write(online: string[], offline: string[]): Promise<void> {
    if (online.length === 0 && offline.length === 0) return;
    const at = new Date().toISOString();
    try {
      if (online.length > 0) {
        const activated = await this.store.markOnlineMany(online, at);
        if (activated.length > 0) {
          this.logger.info({ count: activated.length, iotIds: activated.slice(0, 20) }, 'devices activated');
          for (const l of this.activationListeners) l(activated);
        }
      }
      if (offline.length > 0) await this.store.markOffline(offline, at);
      this.retryAt = 0;
    } catch (err) {
      if (isThingAuthError(err) && err.kind === 'UNAVAILABLE' && !this.closing) {
        this.keepForLater(online, offline, err.message);
        return;
      }
      this.logger.error({ err, online: online.length, offline: offline.length }, 'presence write failed');
    }
  }

  /**
   * The database is down (PostgreSQL): the batch goes back in the queue, under what happened
   * since (a device that went offline or came back meanwhile keeps its newer state; online
   * goes first in a batch, so activation is not lost), and is written when the database is back.
   */
  private keepForLater(online: string[], offline: string[], reason: string): void {
    // Devices whose newest queued state is online: a kept offline for them is stale.
    const backOnline = new Set([...this.online].filter((id) => !this.offline.has(id)));
    for (const id of online) this.online.add(id);
    for (const id of offline) if (!backOnline.has(id)) this.offline.add(id);
    if (this.retryAt === 0) this.logger.warn({ online: online.length, offline: offline.length, reason }, 'presence changes kept until the database is back');
    this.retryAt = Date.now() + UNAVAILABLE_RETRY_MS;
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.flush();
      }, UNAVAILABLE_RETRY_MS);
      this.timer.unref();
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.flush();
  }
}
