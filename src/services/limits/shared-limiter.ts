/**
 * Limits shared by every node through Redis, with a documented fail-mode: while Redis does not
 * answer, this node decides from its own memory (every limit still applies, per node), and
 * goes back to the shared state by itself once Redis answers again.
 *
 * - A command gets `commandTimeout` (the client's, 200 ms by default in redis-client.ts) and
 *   the client queues nothing while disconnected, so a CONNECT never waits longer than that
 *   for a limit, and not at all once the outage is known.
 * - The first failed command marks Redis down: one warning in the log per outage, the gauge
 *   thingauth_limiter_redis_up goes to 0, /healthz says "degraded"; every decision taken from
 *   memory meanwhile counts in thingauth_limiter_fallback_total.
 * - A probe (one script call that writes, every `probeIntervalMs`, and when the client
 *   reconnects) marks it up again: one info line, gauge 1. What this node counted alone during the outage is
 *   forgotten then; the shared state decides from there on (after a Redis restart it starts
 *   empty, like a restarted single node).
 */
import type { Redis } from 'ioredis';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from '../../logger.js';
import type { BucketSpec, CooldownCheck, CooldownSpec, CounterSpec, FailureResult, Limiter, LimiterHealth, SlidingWindowSpec, TakeResult } from './limiter.js';
import { MemoryLimiter } from './memory-limiter.js';
import { RedisLimiter, type RedisLimiterOptions } from './redis-limiter.js';

/** What the probe counts: one short-lived key. */
const PROBE = { name: 'probe', windowMs: 10_000 };

export interface SharedLimiterOptions extends RedisLimiterOptions {
  logger: Logger;
  /** Where the limiter's gauge and counter are registered (the server's metrics registry). */
  registry?: Registry;
  /** How often a down Redis is probed; default 1000 ms. */
  probeIntervalMs?: number;
  /** The client is this limiter's own: close() quits it. */
  ownsClient?: boolean;
}

export class SharedLimiter implements Limiter {
  private readonly redis: RedisLimiter;
  private readonly local = new MemoryLimiter();
  private readonly logger: Logger;
  private up = false;
  private outageLogged = false;
  private probing = false;
  private closed = false;
  private readonly timer: NodeJS.Timeout;
  private readonly upGauge: Gauge | undefined;
  private readonly fallbacks: Counter | undefined;
  private readonly waiters = new Set<(up: boolean) => void>();
  private readonly onReady = (): void => void this.probe();
  private readonly onError = (e: Error): void => this.markDown(e);
  private readonly onClose = (): void => this.markDown(new Error('connection closed'));

  constructor(private readonly client: Redis, private readonly opts: SharedLimiterOptions) {
    this.redis = new RedisLimiter(client, opts);
    this.logger = opts.logger;
    if (opts.registry) {
      this.upGauge = new Gauge({ name: 'thingauth_limiter_redis_up', help: '1 while the shared limits (login throttle, connect rate, registration buckets) are in Redis; 0 while this node counts alone because Redis does not answer', registers: [opts.registry] });
      this.upGauge.set(0);
      this.fallbacks = new Counter({ name: 'thingauth_limiter_fallback_total', help: 'Limit decisions this node took from its own memory because Redis did not answer', registers: [opts.registry] });
    }
    client.on('ready', this.onReady);
    client.on('error', this.onError);
    client.on('close', this.onClose);
    this.timer = setInterval(() => {
      if (!this.up) void this.probe();
    }, opts.probeIntervalMs ?? 1000);
    this.timer.unref();
    if (client.status === 'ready') void this.probe();
  }

  /** Resolves true once Redis answers (at once if it does), false after `timeoutMs`. */
  connected(timeoutMs: number): Promise<boolean> {
    if (this.up) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (v: boolean) => {
        clearTimeout(t);
        this.waiters.delete(onUp);
        resolve(v);
      };
      const onUp = (up: boolean) => done(up);
      const t = setTimeout(() => done(false), timeoutMs);
      this.waiters.add(onUp);
    });
  }

  take(spec: BucketSpec, key: string, n?: number): Promise<TakeResult> {
    return this.run(() => this.redis.take(spec, key, n), () => this.local.take(spec, key, n));
  }
  checkCooldown(spec: CooldownSpec, key: string): Promise<CooldownCheck> {
    return this.run(() => this.redis.checkCooldown(spec, key), () => this.local.checkCooldown(spec, key));
  }
  recordFailure(spec: CooldownSpec, key: string): Promise<FailureResult> {
    return this.run(() => this.redis.recordFailure(spec, key), () => this.local.recordFailure(spec, key));
  }
  cooling(spec: CooldownSpec, limit?: number): Promise<string[]> {
    return this.run(() => this.redis.cooling(spec, limit), () => this.local.cooling(spec, limit));
  }
  increment(spec: CounterSpec, key: string): Promise<number> {
    return this.run(() => this.redis.increment(spec, key), () => this.local.increment(spec, key));
  }
  reset(spec: CounterSpec, key: string): Promise<void> {
    return this.run(() => this.redis.reset(spec, key), () => this.local.reset(spec, key));
  }
  windowCount(spec: SlidingWindowSpec, key: string): Promise<number> {
    return this.run(() => this.redis.windowCount(spec, key), () => this.local.windowCount(spec, key));
  }
  windowAdd(spec: SlidingWindowSpec, key: string): Promise<void> {
    return this.run(() => this.redis.windowAdd(spec, key), () => this.local.windowAdd(spec, key));
  }

  health(): LimiterHealth {
    return { mode: this.up ? 'redis' : 'fallback' };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    for (const w of [...this.waiters]) w(false);
    this.client.off('ready', this.onReady);
    this.client.off('error', this.onError);
    this.client.off('close', this.onClose);
    if (this.opts.ownsClient) {
      // QUIT when it answers, else just drop the socket: shutdown must not wait on a dead Redis.
      if (this.client.status === 'ready') await this.client.quit().catch(() => this.client.disconnect());
      else this.client.disconnect();
    }
  }

  private async run<T>(remote: () => Promise<T>, local: () => Promise<T>): Promise<T> {
    if (this.up) {
      try {
        return await remote();
      } catch (e) {
        // A script error is a bug, not an outage, but this node must still decide: from memory.
        this.markDown(e as Error);
      }
    }
    this.fallbacks?.inc();
    return local();
  }

  private markDown(e: Error): void {
    if (this.closed) return;
    this.up = false;
    this.upGauge?.set(0);
    if (!this.outageLogged) {
      this.outageLogged = true;
      this.logger.warn({ event: 'limits.redis.down', err: e?.message }, 'Redis does not answer: login throttle, connect rate and registration limits are counted by this node alone until it is back');
    }
  }

  private async probe(): Promise<void> {
    if (this.up || this.probing || this.closed || this.client.status !== 'ready') return;
    this.probing = true;
    try {
      // A real decision, not a PING: a Redis that answers but cannot run the scripts or write
      // (a read-only replica after a failover, out of memory) stays "down".
      await this.redis.increment(PROBE, 'probe');
      if (this.closed) return;
      this.up = true;
      this.upGauge?.set(1);
      if (this.outageLogged) this.logger.info({ event: 'limits.redis.up' }, 'Redis answers again: limits are shared again');
      this.outageLogged = false;
      this.local.clear();
      for (const w of [...this.waiters]) w(true);
    } catch {
      /* still down; the next probe tries again */
    } finally {
      this.probing = false;
    }
  }
}
