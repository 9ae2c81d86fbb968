/**
 * The limiter with its state in Redis (limiter.ts), so that every node of a cluster draws on
 * the same budgets: a device's failed logins on node A count on node B too. Each decision is
 * one Lua script, atomic in Redis however many nodes ask at once; time is Redis' own clock
 * (TIME), so nodes whose clocks differ still agree. Every key gets a TTL no longer than the
 * state it holds matters (a full bucket, an ended window or cool-down is the same as no key),
 * so nothing grows without bound.
 *
 * Keys: `<prefix><limit name>:<kind>:<key>`, kind b (bucket), w (failure window), c
 * (cool-down), n (counter), s (sliding window). One Redis server (or a primary with
 * replicas / Sentinel); the scripts touch more than one key, so Redis Cluster is not supported.
 *
 * Errors are not handled here: a command that fails or times out rejects, and the shared
 * limiter (shared-limiter.ts) answers from memory instead.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { assertSpec, type BucketSpec, type CooldownCheck, type CooldownSpec, type CounterSpec, type FailureResult, type Limiter, type LimiterHealth, type SlidingWindowSpec, type TakeResult } from './limiter.js';

export const DEFAULT_KEY_PREFIX = 'thingauth:limit:';

/** Redis' clock in ms (with sub-ms precision); scripts that call TIME and then write need effects replication (always on since Redis 7). */
const NOW = `
if redis.replicate_commands then redis.replicate_commands() end
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + tonumber(tm[2]) / 1000
`;

/** KEYS[1] bucket; ARGV rate per ms, burst, n. Returns {1, 0} or {0, retryAfterMs}. */
const TAKE = `${NOW}
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if tokens == nil or at == nil then
  tokens = burst
else
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
end
local ok = 0
local retry = 0
if tokens >= n then
  tokens = tokens - n
  ok = 1
else
  retry = math.ceil((n - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate) + 1000)
return {ok, retry}
`;

/** KEYS[1] cool-down. Returns {0, 0} (none) or {retryAfterMs, refusals}. */
const CHECK_COOLDOWN = `
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then return {0, 0} end
return {ttl, redis.call('INCR', KEYS[1])}
`;

/** KEYS[1] failure window, KEYS[2] cool-down; ARGV threshold, windowMs, cooldownMs. Returns {-1} (cooling), {count, 0} or {count, 1} (tripped). */
const RECORD_FAILURE = `
if redis.call('EXISTS', KEYS[2]) == 1 then return {-1, 0} end
local c = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if c >= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '0', 'PX', ARGV[3])
  return {c, 1}
end
return {c, 0}
`;

/** KEYS[1] counter; ARGV windowMs. Returns the new count. */
const INCREMENT = `
local c = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return c
`;

/** KEYS[1] sorted set of event times; ARGV windowMs. Returns the events within the window. */
const WINDOW_COUNT = `${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
return redis.call('ZCARD', KEYS[1])
`;

/** KEYS[1] sorted set; ARGV windowMs, a unique member. */
const WINDOW_ADD = `${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) + 1000)
return 1
`;

class Script {
  readonly sha: string;
  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }
}

const SCRIPTS = {
  take: new Script(TAKE),
  checkCooldown: new Script(CHECK_COOLDOWN),
  recordFailure: new Script(RECORD_FAILURE),
  increment: new Script(INCREMENT),
  windowCount: new Script(WINDOW_COUNT),
  windowAdd: new Script(WINDOW_ADD),
};

export interface RedisLimiterOptions {
  /** Prepended to every key; default "thingauth:limit:". Nodes sharing limits must use the same. */
  keyPrefix?: string;
}

export class RedisLimiter implements Limiter {
  private readonly prefix: string;
  private readonly checked = new WeakSet<object>();
  private readonly member = randomBytes(6).toString('hex');
  private seq = 0;

  /** `client`: an ioredis client; the limiter never closes it (its owner does). */
  constructor(private readonly client: Redis, opts: RedisLimiterOptions = {}) {
    this.prefix = opts.keyPrefix ?? DEFAULT_KEY_PREFIX;
  }

  async take(spec: BucketSpec, key: string, n = 1): Promise<TakeResult> {
    this.check(spec);
    const [ok, retry] = (await this.run(SCRIPTS.take, [this.key(spec, 'b', key)], [spec.ratePerSecond / 1000, spec.burst, n])) as [number, number];
    return ok === 1 ? { ok: true } : { ok: false, retryAfterMs: retry };
  }

  async checkCooldown(spec: CooldownSpec, key: string): Promise<CooldownCheck> {
    this.check(spec);
    const [ttl, refusals] = (await this.run(SCRIPTS.checkCooldown, [this.key(spec, 'c', key)], [])) as [number, number];
    return ttl > 0 ? { ok: false, retryAfterMs: ttl, refusals } : { ok: true };
  }

  async recordFailure(spec: CooldownSpec, key: string): Promise<FailureResult> {
    this.check(spec);
    const [count, tripped] = (await this.run(SCRIPTS.recordFailure, [this.key(spec, 'w', key), this.key(spec, 'c', key)], [spec.threshold, spec.windowMs, spec.cooldownMs])) as [number, number];
    if (count < 0) return { state: 'cooling' };
    return tripped === 1 ? { state: 'tripped', failures: count } : { state: 'counted', failures: count };
  }

  async cooling(spec: CooldownSpec, limit = 1_000): Promise<string[]> {
    const head = this.key(spec, 'c', '');
    const out: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await this.client.scan(cursor, 'MATCH', globEscape(head) + '*', 'COUNT', 1000);
      cursor = next;
      for (const k of keys) if (out.length < limit) out.push(k.slice(head.length));
    } while (cursor !== '0' && out.length < limit);
    return out;
  }

  async increment(spec: CounterSpec, key: string): Promise<number> {
    this.check(spec);
    return (await this.run(SCRIPTS.increment, [this.key(spec, 'n', key)], [spec.windowMs])) as number;
  }

  async reset(spec: CounterSpec, key: string): Promise<void> {
    await this.client.del(this.key(spec, 'n', key));
  }

  async windowCount(spec: SlidingWindowSpec, key: string): Promise<number> {
    this.check(spec);
    return (await this.run(SCRIPTS.windowCount, [this.key(spec, 's', key)], [spec.windowMs])) as number;
  }

  async windowAdd(spec: SlidingWindowSpec, key: string): Promise<void> {
    this.check(spec);
    // Members must be unique: two events in the same microsecond are still two.
    await this.run(SCRIPTS.windowAdd, [this.key(spec, 's', key)], [spec.windowMs, `${this.member}:${++this.seq}`]);
  }

  health(): LimiterHealth {
    return { mode: 'redis' };
  }

  async connected(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await this.client.ping().then(() => true, () => false)) return true;
      if (Date.now() >= deadline) return false;
      await new Promise((r) => setTimeout(r, Math.min(100, Math.max(0, deadline - Date.now()))));
    }
  }

  async close(): Promise<void> {
    // The client belongs to whoever made it.
  }

  private key(spec: { name: string }, kind: string, key: string): string {
    return `${this.prefix}${spec.name}:${kind}:${key}`;
  }

  /** EVALSHA, and EVAL once when Redis does not know the script (a restart, a flush). */
  private async run(script: Script, keys: string[], args: (string | number)[]): Promise<unknown> {
    try {
      return await this.client.evalsha(script.sha, keys.length, ...keys, ...args);
    } catch (e) {
      if (!String((e as Error)?.message).startsWith('NOSCRIPT')) throw e;
      return this.client.eval(script.source, keys.length, ...keys, ...args);
    }
  }

  private check(spec: object & { name: string }): void {
    if (this.checked.has(spec)) return;
    assertSpec(spec);
    this.checked.add(spec);
  }
}

function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => '\\' + c);
}
