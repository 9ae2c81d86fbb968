/**
 * The audit trail: every authentication decision and every management change, appended in
 * batches (a login storm must not become one fsync per login) and pruned after
 * config.auditRetentionDays.
 *
 * Entries carry who, what, on which identity, from where, the result and a short reason:
 * never a secret, token, signature or request body. Callers pass only those fields, and
 * every text field is clipped and stripped of control characters here, so an attacker
 * choosing a 64 KiB DeviceName cannot bloat or forge lines of the trail.
 */
import { isThingAuthError } from '../core/errors.js';
import type { Logger } from '../logger.js';
import type { AuditEntry, AuditQuery, Store } from '../store/store.js';

export interface AuditRecord {
  /** e.g. 'mqtt.connect.sign', 'register.https', 'api.post /products' */
  action: string;
  /** Who: 'token:<id>' for management calls, the identity claimed for logins. */
  actor: string;
  productKey?: string | null;
  deviceName?: string | null;
  sourceAddress?: string | null;
  result: AuditEntry['result'];
  reason?: string | null;
  /** Defaults to now. */
  at?: string;
}

export interface AuditOptions {
  retentionDays: number;
  /** Flush when this many entries wait (default 500). */
  maxBuffered?: number;
  /** Flush at least this often (ms, default 200). */
  flushIntervalMs?: number;
  /** Prune this often (ms, default 1 hour). */
  pruneIntervalMs?: number;
}

const MAX_FIELD = 256;
/** Past this many waiting entries (store down or far behind) new ones are dropped and counted. */
const MAX_PENDING = 100_000;
/** While the database is unavailable: how long to wait before writing the kept entries again. */
const UNAVAILABLE_RETRY_MS = 1_000;

function clean(v: string | null | undefined, max = MAX_FIELD): string | null {
  if (v === null || v === undefined) return null;
  // eslint-disable-next-line no-control-regex
  const s = String(v).replace(/[\u0000-\u001f\u007f]/g, '?');
  return s.length > max ? s.slice(0, max) + '…' : s;
}

export class AuditLog {
  private buffer: AuditEntry[] = [];
  private flushing: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private pruneTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Entries dropped because the store could not keep up (reported in the log). */
  dropped = 0;
  private readonly maxBuffered: number;
  private readonly flushIntervalMs: number;
  /** Set while the database is unavailable: no flush before then (record() must not hammer it). */
  private retryAt = 0;
  /** close() has begun: a failed write is final (counted as dropped), no retry is scheduled. */
  private closing = false;

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
    private readonly opts: AuditOptions,
  ) {
    this.maxBuffered = opts.maxBuffered ?? 500;
    this.flushIntervalMs = opts.flushIntervalMs ?? 200;
  }

  /** Starts periodic pruning (and prunes once now). */
  start(): void {
    if (this.pruneTimer || this.closed) return;
    void this.prune();
    this.pruneTimer = setInterval(() => void this.prune(), this.opts.pruneIntervalMs ?? 3_600_000);
    this.pruneTimer.unref();
  }

  record(r: AuditRecord): void {
    if (this.closed) return;
    if (this.buffer.length >= MAX_PENDING) {
      this.dropped++;
      return;
    }
    this.buffer.push({
      at: r.at ?? new Date().toISOString(),
      action: clean(r.action, 128) ?? '?',
      actor: clean(r.actor) ?? '?',
      productKey: clean(r.productKey, 64),
      deviceName: clean(r.deviceName, 128),
      sourceAddress: clean(r.sourceAddress, 64),
      result: r.result,
      reason: clean(r.reason),
    });
    if (this.buffer.length >= this.maxBuffered && Date.now() >= this.retryAt) void this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => void this.flush(), this.flushIntervalMs);
      this.timer.unref();
    }
  }

  /** Writes everything recorded so far; resolves when it is in the store. */
  flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    // Chained so batches land in record order and never overlap.
    this.flushing = this.flushing.then(async () => {
      if (this.buffer.length === 0) return;
      const batch = this.buffer;
      this.buffer = [];
      try {
        await this.store.appendAudit(batch);
        this.retryAt = 0;
      } catch (err) {
        if (isThingAuthError(err) && err.kind === 'UNAVAILABLE' && !this.closing) {
          // The database is down (PostgreSQL): keep the entries, oldest first and bounded, and
          // write them when it is back.
          const keep = Math.max(0, Math.min(batch.length, MAX_PENDING - this.buffer.length));
          this.dropped += batch.length - keep;
          this.buffer = [...batch.slice(0, keep), ...this.buffer];
          if (this.retryAt === 0) this.logger.warn({ entries: this.buffer.length, reason: err.message }, 'audit entries kept until the database is back');
          this.retryAt = Date.now() + UNAVAILABLE_RETRY_MS;
          if (!this.timer) {
            this.timer = setTimeout(() => void this.flush(), UNAVAILABLE_RETRY_MS);
            this.timer.unref();
          }
          return;
        }
        this.dropped += batch.length;
        this.logger.error({ err, entries: batch.length }, 'audit entries could not be written');
      }
    });
    return this.flushing;
  }

  async query(q: AuditQuery): Promise<AuditEntry[]> {
    // Reads see what was recorded before them.
    await this.flush();
    return this.store.queryAudit(q);
  }

  async prune(now = Date.now()): Promise<number> {
    const before = new Date(now - this.opts.retentionDays * 86_400_000).toISOString();
    try {
      const n = await this.store.pruneAudit(before);
      if (n > 0) this.logger.info({ pruned: n, before }, 'audit entries past retention pruned');
      return n;
    } catch (err) {
      this.logger.warn({ err }, 'audit prune failed');
      return 0;
    }
  }

  /** Stops the timers and writes what is buffered. Call before the store closes. */
  async close(): Promise<void> {
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    this.pruneTimer = undefined;
    this.closing = true;
    await this.flush();
    this.closed = true;
    if (this.dropped > 0) this.logger.warn({ dropped: this.dropped }, 'audit entries were dropped');
  }
}
