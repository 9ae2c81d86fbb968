/**
 * The limiter with its state in this process (limiter.ts): the default without Redis, and a
 * shared limiter's stand-in while Redis is unreachable. Decisions are exactly those the three
 * former in-memory limiters made (token buckets, the login throttle's windows and cool-downs,
 * the sub-device login window), with an injected clock. Every map is bounded by the spec's
 * `maxKeys`: expired entries are swept when it is reached, and if that is not enough the
 * oldest half goes (a flood of distinct keys must not grow memory without bound).
 *
 * Each method changes the state synchronously when called; the promise only carries the answer.
 */
import { assertSpec, type BucketSpec, type CooldownCheck, type CooldownSpec, type CounterSpec, type FailureResult, type Limiter, type LimiterHealth, type SlidingWindowSpec, type TakeResult } from './limiter.js';

export interface MemoryLimiterOptions {
  /** Clock in ms; defaults to performance.now (monotonic). */
  now?: () => number;
  /** Default bound per limit when its spec sets none. */
  maxKeys?: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

interface Window {
  count: number;
  start: number;
}

interface Cooldown {
  until: number;
  refused: number;
}

const DEFAULT_MAX_KEYS = 100_000;

export class MemoryLimiter implements Limiter {
  private readonly now: () => number;
  private readonly defaultMaxKeys: number;
  private readonly buckets = new Map<string, Map<string, Bucket>>();
  private readonly windows = new Map<string, Map<string, Window>>();
  private readonly cooldowns = new Map<string, Map<string, Cooldown>>();
  private readonly counters = new Map<string, Map<string, Window>>();
  private readonly events = new Map<string, Map<string, number[]>>();
  private readonly checked = new WeakSet<object>();

  constructor(opts: MemoryLimiterOptions = {}) {
    this.now = opts.now ?? (() => performance.now());
    this.defaultMaxKeys = opts.maxKeys ?? DEFAULT_MAX_KEYS;
  }

  async take(spec: BucketSpec, key: string, n = 1): Promise<TakeResult> {
    return this.takeNow(spec, key, n);
  }

  /** take, synchronously (what the in-memory users did before the limiter was async). */
  takeNow(spec: BucketSpec, key: string, n = 1): TakeResult {
    this.check(spec);
    const t = this.now();
    const map = this.mapOf(this.buckets, spec.name);
    const max = spec.maxKeys ?? this.defaultMaxKeys;
    let b = map.get(key);
    if (!b) {
      if (map.size >= max) this.sweepBuckets(map, spec, t, max);
      b = { tokens: spec.burst, at: t };
      map.set(key, b);
    } else {
      b.tokens = Math.min(spec.burst, b.tokens + ((t - b.at) / 1000) * spec.ratePerSecond);
      b.at = t;
    }
    if (b.tokens < n) return { ok: false, retryAfterMs: Math.ceil(((n - b.tokens) / spec.ratePerSecond) * 1000) };
    b.tokens -= n;
    return { ok: true };
  }

  async checkCooldown(spec: CooldownSpec, key: string): Promise<CooldownCheck> {
    this.check(spec);
    const map = this.mapOf(this.cooldowns, spec.name);
    const c = map.get(key);
    if (!c) return { ok: true };
    const t = this.now();
    if (t >= c.until) {
      map.delete(key);
      return { ok: true };
    }
    c.refused++;
    return { ok: false, retryAfterMs: c.until - t, refusals: c.refused };
  }

  async recordFailure(spec: CooldownSpec, key: string): Promise<FailureResult> {
    this.check(spec);
    const t = this.now();
    const cooldowns = this.mapOf(this.cooldowns, spec.name);
    if ((cooldowns.get(key)?.until ?? -Infinity) > t) return { state: 'cooling' };
    const max = spec.maxKeys ?? this.defaultMaxKeys;
    const windows = this.mapOf(this.windows, spec.name);
    const w = bump(windows, key, t, spec.windowMs, max);
    if (w.count < spec.threshold) return { state: 'counted', failures: w.count };
    windows.delete(key);
    if (cooldowns.size >= max) {
      for (const [k, c] of cooldowns) if (c.until <= t) cooldowns.delete(k);
    }
    cooldowns.set(key, { until: t + spec.cooldownMs, refused: 0 });
    return { state: 'tripped', failures: w.count };
  }

  async cooling(spec: CooldownSpec, limit = 1_000): Promise<string[]> {
    const t = this.now();
    const out: string[] = [];
    for (const [k, c] of this.mapOf(this.cooldowns, spec.name)) {
      if (out.length >= limit) break;
      if (c.until > t) out.push(k);
    }
    return out;
  }

  async increment(spec: CounterSpec, key: string): Promise<number> {
    this.check(spec);
    return bump(this.mapOf(this.counters, spec.name), key, this.now(), spec.windowMs, spec.maxKeys ?? this.defaultMaxKeys).count;
  }

  async reset(spec: CounterSpec, key: string): Promise<void> {
    this.counters.get(spec.name)?.delete(key);
  }

  async windowCount(spec: SlidingWindowSpec, key: string): Promise<number> {
    this.check(spec);
    return this.countIn(this.mapOf(this.events, spec.name), key, this.now() - spec.windowMs);
  }

  async windowAdd(spec: SlidingWindowSpec, key: string): Promise<void> {
    this.check(spec);
    const map = this.mapOf(this.events, spec.name);
    const t = this.now();
    if (!map.has(key) && map.size >= (spec.maxKeys ?? this.defaultMaxKeys)) {
      // Forget keys whose window has passed; still full: the oldest half.
      for (const k of [...map.keys()]) this.countIn(map, k, t - spec.windowMs);
      dropOldestHalf(map, spec.maxKeys ?? this.defaultMaxKeys);
    }
    const times = map.get(key);
    if (times) times.push(t);
    else map.set(key, [t]);
  }

  health(): LimiterHealth {
    return { mode: 'memory' };
  }

  async connected(): Promise<boolean> {
    return true;
  }

  /** Entries held per kind over all limits (tests check the bounds). */
  sizes(): Record<'buckets' | 'windows' | 'cooldowns' | 'counters' | 'events', number> {
    const sum = (m: Map<string, Map<string, unknown>>) => [...m.values()].reduce((n, x) => n + x.size, 0);
    return { buckets: sum(this.buckets), windows: sum(this.windows), cooldowns: sum(this.cooldowns), counters: sum(this.counters), events: sum(this.events) };
  }

  /** Forgets everything (a shared limiter does this when Redis is back). */
  clear(): void {
    for (const m of [this.buckets, this.windows, this.cooldowns, this.counters, this.events]) m.clear();
  }

  async close(): Promise<void> {
    this.clear();
  }

  private countIn(map: Map<string, number[]>, key: string, since: number): number {
    const times = map.get(key);
    if (!times) return 0;
    while (times.length > 0 && times[0]! <= since) times.shift();
    if (times.length === 0) map.delete(key);
    return times.length;
  }

  private sweepBuckets(map: Map<string, Bucket>, spec: BucketSpec, t: number, max: number): void {
    // A bucket that has refilled completely behaves exactly like a missing one: drop it.
    for (const [k, b] of map) {
      if (b.tokens + ((t - b.at) / 1000) * spec.ratePerSecond >= spec.burst) map.delete(k);
    }
    dropOldestHalf(map, max);
  }

  private mapOf<V>(maps: Map<string, Map<string, V>>, name: string): Map<string, V> {
    let m = maps.get(name);
    if (!m) maps.set(name, (m = new Map()));
    return m;
  }

  private check(spec: object & { name: string }): void {
    if (this.checked.has(spec)) return;
    assertSpec(spec);
    this.checked.add(spec);
  }
}

/** One more in `key`'s window (a new window once the old one has run `windowMs`). */
function bump(map: Map<string, Window>, key: string, t: number, windowMs: number, max: number): Window {
  let w = map.get(key);
  if (!w || t - w.start >= windowMs) {
    if (!w && map.size >= max) {
      for (const [k, x] of map) if (t - x.start >= windowMs) map.delete(k);
      // Still full (a flood of distinct keys within one window): drop the oldest half rather
      // than grow without bound.
      dropOldestHalf(map, max);
    }
    w = { count: 0, start: t };
    map.set(key, w);
  }
  w.count++;
  return w;
}

function dropOldestHalf(map: Map<string, unknown>, max: number): void {
  if (map.size < max) return;
  let n = Math.floor(map.size / 2);
  for (const k of map.keys()) {
    if (n-- <= 0) break;
    map.delete(k);
  }
}
