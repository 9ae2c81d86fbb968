/**
 * One asynchronous limiter for every rate and brute-force limit (the login throttle, the
 * per-device connect rate, the registration buckets, the sub-device login window), with two
 * implementations that decide the same way:
 * - MemoryLimiter (memory-limiter.ts): state in this process; the default, and what a node
 *   falls back to while Redis is unreachable;
 * - RedisLimiter (redis-limiter.ts): state in Redis, each decision one atomic Lua script, so
 *   every node of a cluster draws on one budget; every key expires on its own.
 * SharedLimiter (shared-limiter.ts) puts the two together: Redis while it answers, this
 * node's memory while it does not.
 *
 * The limiter only keeps counts; what a count means (refuse, alarm, audit) is decided by its
 * users (login-throttle.ts, registration.ts, sub-device-sessions.ts). Every call names the
 * limit it is about with a spec: its `name` separates the keys of different limits, the
 * numbers are that limit's settings.
 *
 * Promises from a limiter never reject on a Redis outage (the shared limiter answers from
 * memory then); the in-memory limiter changes its state synchronously, when called, so calls
 * not awaited still happen in call order.
 */

/** Token bucket: holds up to `burst` tokens, refills at `ratePerSecond`. */
export interface BucketSpec {
  name: string;
  ratePerSecond: number;
  burst: number;
  /** In-memory only: buckets kept before full ones are swept. */
  maxKeys?: number;
}

export type TakeResult = { ok: true } | { ok: false; retryAfterMs: number };

/**
 * Failure counting with cool-down: `threshold` failures within a window (starting at the
 * first failure, `windowMs` long) start a cool-down of `cooldownMs`; failures during a
 * cool-down are not counted.
 */
export interface CooldownSpec {
  name: string;
  threshold: number;
  windowMs: number;
  cooldownMs: number;
  maxKeys?: number;
}

/** `refusals`: checks refused in this cool-down, this one included (1 = the first). */
export type CooldownCheck = { ok: true } | { ok: false; retryAfterMs: number; refusals: number };

/** `tripped`: this failure reached the threshold and started the cool-down. */
export type FailureResult = { state: 'cooling' } | { state: 'counted'; failures: number } | { state: 'tripped'; failures: number };

/** A counter per fixed window (starting at the first count, `windowMs` long). */
export interface CounterSpec {
  name: string;
  windowMs: number;
  maxKeys?: number;
}

/** Events within the last `windowMs` (sliding window). */
export interface SlidingWindowSpec {
  name: string;
  windowMs: number;
  maxKeys?: number;
}

/** Where the limits are kept right now. */
export interface LimiterHealth {
  /** 'memory': this process only (no Redis configured); 'redis': shared; 'fallback': Redis configured but unreachable, this node counts alone. */
  mode: 'memory' | 'redis' | 'fallback';
}

export interface Limiter {
  /** Takes `n` tokens (default 1) from `key`'s bucket, or none when fewer are left. */
  take(spec: BucketSpec, key: string, n?: number): Promise<TakeResult>;
  /** Whether `key` is in a cool-down; a refused check counts as one more refusal of it. */
  checkCooldown(spec: CooldownSpec, key: string): Promise<CooldownCheck>;
  /** Counts a failure of `key`; may start its cool-down. */
  recordFailure(spec: CooldownSpec, key: string): Promise<FailureResult>;
  /** Keys in a cool-down now (diagnostics and tests), at most `limit`. */
  cooling(spec: CooldownSpec, limit?: number): Promise<string[]>;
  /** Adds one to `key`'s counter in its current window; returns the new count. */
  increment(spec: CounterSpec, key: string): Promise<number>;
  /** Forgets `key`'s counter. */
  reset(spec: CounterSpec, key: string): Promise<void>;
  /** Events of `key` within the window. */
  windowCount(spec: SlidingWindowSpec, key: string): Promise<number>;
  /** Records one event of `key` now. */
  windowAdd(spec: SlidingWindowSpec, key: string): Promise<void>;
  health(): LimiterHealth;
  /** Resolves true once the place the limits are kept answers (at once for memory), false after `timeoutMs`. */
  connected(timeoutMs: number): Promise<boolean>;
  /** Stops timers and closes what the limiter owns (not a client it was given). */
  close(): Promise<void>;
}

/** Rejects a spec that could not mean anything (a programming error, not input). */
export function assertSpec(spec: { name: string } & Partial<Record<'ratePerSecond' | 'burst' | 'threshold' | 'windowMs' | 'cooldownMs', number>>): void {
  if (!/^[a-z0-9._-]{1,40}$/i.test(spec.name)) throw new RangeError(`limit name must be 1-40 of a-z 0-9 . _ -, got "${spec.name}"`);
  for (const k of ['ratePerSecond', 'burst', 'threshold', 'windowMs', 'cooldownMs'] as const) {
    const v = spec[k];
    if (v !== undefined && !(Number.isFinite(v) && v > 0)) throw new RangeError(`${spec.name}: ${k} must be a finite number > 0, got ${v}`);
  }
}
