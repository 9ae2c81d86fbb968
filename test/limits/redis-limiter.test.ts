/**
 * The Limiter contract against Redis (a private redis-server for this file), plus what only
 * the shared implementation has to prove: several clients (nodes) draw on one budget, exactly,
 * however they interleave; every key expires by itself; the key prefix separates
 * deployments; and the fail-mode: a Redis that is killed or hangs never holds a decision up
 * longer than the command timeout, the node decides from memory meanwhile (logged once,
 * gauge and counter in the metrics) and goes back to the shared state when Redis returns.
 * Skipped only when no redis-server can be started and CI is unset.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, describe, it, test } from 'node:test';
import { Registry } from 'prom-client';
import { Redis } from 'ioredis';
import { createLogger } from '../../src/logger.js';
import { RedisLimiter } from '../../src/services/limits/redis-limiter.js';
import { SharedLimiter } from '../../src/services/limits/shared-limiter.js';
import { createRedisClient, REDIS_COMMAND_TIMEOUT_MS } from '../../src/services/limits/redis-client.js';
import type { BucketSpec, CooldownSpec } from '../../src/services/limits/limiter.js';
import { startPrivateRedis } from '../helpers/redis.js';
import { limiterContract, sleep } from './contract.js';
import { freePort } from '../../bench/lib/private-redis.js';

const started = await startPrivateRedis();

if ('skip' in started) {
  test('Limiter contract: redis', { skip: started.skip }, () => undefined);
} else {
  const server = started.server;
  const clients: Redis[] = [];
  const client = (): Redis => {
    const c = createRedisClient(server.url);
    c.on('error', () => undefined); // the outage cases provoke errors on purpose
    clients.push(c);
    return c;
  };
  /** A client that is connected (the raw limiter does not wait: no offline queue). */
  const readyClient = async (): Promise<Redis> => {
    const c = client();
    if (c.status !== 'ready') await new Promise((r) => c.once('ready', r));
    return c;
  };
  after(async () => {
    for (const c of clients) c.disconnect();
    await server.stop();
  });
  let n = 0;
  /** A prefix of its own per limiter, so cases never see each other's keys. */
  const prefix = () => `test:${process.pid}:${++n}:`;

  limiterContract('redis', async () => new RedisLimiter(await readyClient(), { keyPrefix: prefix() }));
  limiterContract('shared (redis up)', async () => {
    const l = new SharedLimiter(client(), { logger: createLogger('silent'), keyPrefix: prefix() });
    assert.equal(await l.connected(5_000), true);
    return l;
  });

  describe('Redis limiter: shared by nodes', () => {
    it('two clients racing on one bucket get exactly `burst` tokens between them (atomic scripts)', async () => {
      const p = prefix();
      const a = new RedisLimiter(await readyClient(), { keyPrefix: p });
      const b = new RedisLimiter(await readyClient(), { keyPrefix: p });
      const spec: BucketSpec = { name: 'race', ratePerSecond: 0.001, burst: 50 };
      const results = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).take(spec, 'dev')));
      assert.equal(results.filter((r) => r.ok).length, 50);
      // Failures racing to the threshold trip the cool-down exactly once.
      const cool: CooldownSpec = { name: 'race.cool', threshold: 10, windowMs: 60_000, cooldownMs: 60_000 };
      const fails = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).recordFailure(cool, 'src')));
      assert.equal(fails.filter((f) => f.state === 'tripped').length, 1);
      assert.equal(fails.filter((f) => f.state === 'counted').length, 9);
      assert.equal(fails.filter((f) => f.state === 'cooling').length, 30);
      const check = await b.checkCooldown(cool, 'src');
      assert.ok(!check.ok && check.refusals === 1);
      assert.ok(!(await a.checkCooldown(cool, 'src')).ok);
    });

    it('every key it writes has a TTL no longer than the state matters, all under the prefix', async () => {
      const p = prefix();
      const c = await readyClient();
      const l = new RedisLimiter(c, { keyPrefix: p });
      await l.take({ name: 'ttl.b', ratePerSecond: 2, burst: 10 }, 'k');
      await l.recordFailure({ name: 'ttl.c', threshold: 1, windowMs: 60_000, cooldownMs: 30_000 }, 'tripped');
      await l.recordFailure({ name: 'ttl.c', threshold: 5, windowMs: 60_000, cooldownMs: 30_000 }, 'counting');
      await l.increment({ name: 'ttl.n', windowMs: 45_000 }, 'k');
      await l.windowAdd({ name: 'ttl.s', windowMs: 20_000 }, 'k');
      const keys = await c.keys(`${p}*`);
      assert.equal(keys.length, 5, keys.join(' '));
      const limits: Record<string, number> = {
        [`${p}ttl.b:b:k`]: 1_500, // one token to refill at 2/s, plus a second of margin
        [`${p}ttl.c:c:tripped`]: 30_000,
        [`${p}ttl.c:w:counting`]: 60_000,
        [`${p}ttl.n:n:k`]: 45_000,
        [`${p}ttl.s:s:k`]: 21_000,
      };
      for (const k of keys) {
        const ttl = await c.pttl(k);
        assert.ok(limits[k] !== undefined, `unexpected key ${k}`);
        assert.ok(ttl > 0 && ttl <= limits[k]!, `${k}: ttl ${ttl}`);
      }
      // Another prefix (another deployment on the same Redis) sees none of it.
      const other = new RedisLimiter(c, { keyPrefix: prefix() });
      assert.deepEqual(await other.take({ name: 'ttl.b', ratePerSecond: 2, burst: 1 }, 'k'), { ok: true });
      assert.deepEqual(await other.cooling({ name: 'ttl.c', threshold: 1, windowMs: 60_000, cooldownMs: 30_000 }), []);
    });

    it('a script Redis forgot (SCRIPT FLUSH, a restart) is loaded again', async () => {
      const c = await readyClient();
      const l = new RedisLimiter(c, { keyPrefix: prefix() });
      const spec = { name: 'flush', windowMs: 10_000 };
      assert.equal(await l.increment(spec, 'k'), 1);
      await c.script('FLUSH');
      assert.equal(await l.increment(spec, 'k'), 2);
    });
  });

  describe('Shared limiter: Redis outage', () => {
    it('killed: decisions come from memory without waiting, logged once, in the metrics; back to shared by itself after start()', async () => {
      const lines: string[] = [];
      const logger = createLogger('info', new Writable({ write(chunk, _e, cb) { lines.push(String(chunk)); cb(); } }));
      const registry = new Registry();
      const p = prefix();
      const shared = new SharedLimiter(client(), { logger, registry, keyPrefix: p, probeIntervalMs: 200 });
      const peer = new RedisLimiter(await readyClient(), { keyPrefix: p }); // another node, straight on Redis
      assert.equal(await shared.connected(5_000), true);
      assert.deepEqual(shared.health(), { mode: 'redis' });
      const metric = async (name: string) => Number((await registry.getSingleMetricAsString(name)).split('\n').find((l) => l.startsWith(name + ' '))!.split(' ')[1]);
      assert.equal(await metric('thingauth_limiter_redis_up'), 1);
      const spec: BucketSpec = { name: 'outage', ratePerSecond: 0.001, burst: 3 };
      assert.deepEqual(await peer.take(spec, 'dev'), { ok: true });
      assert.deepEqual(await shared.take(spec, 'dev'), { ok: true });

      await server.kill();
      // Every decision answers within the command timeout (most at once), from memory.
      for (let i = 0; i < 6; i++) {
        const t0 = performance.now();
        const r = await shared.take(spec, 'dev');
        const took = performance.now() - t0;
        assert.ok(took < REDIS_COMMAND_TIMEOUT_MS + 150, `decision ${i} took ${took.toFixed(0)} ms`);
        // Memory starts with a full bucket of 3: this node alone gives 3 more, then refuses.
        assert.equal(r.ok, i < 3, `decision ${i}`);
      }
      assert.deepEqual(shared.health(), { mode: 'fallback' });
      assert.equal(await metric('thingauth_limiter_redis_up'), 0);
      assert.ok((await metric('thingauth_limiter_fallback_total')) >= 6);
      const down = lines.filter((l) => l.includes('limits.redis.down'));
      assert.equal(down.length, 1, down.join(''));
      assert.doesNotMatch(down[0]!, new RegExp(`${server.port}.*password`));

      await server.start();
      const deadline = Date.now() + 10_000;
      while (shared.health().mode !== 'redis' && Date.now() < deadline) await sleep(50);
      assert.deepEqual(shared.health(), { mode: 'redis' });
      assert.equal(await metric('thingauth_limiter_redis_up'), 1);
      assert.equal(lines.filter((l) => l.includes('limits.redis.up')).length, 1);
      // Shared again: the restarted Redis is empty, both nodes draw on one new bucket of 3.
      assert.deepEqual(await peer.take(spec, 'dev'), { ok: true });
      assert.deepEqual(await shared.take(spec, 'dev'), { ok: true });
      assert.deepEqual(await peer.take(spec, 'dev'), { ok: true });
      assert.equal((await shared.take(spec, 'dev')).ok, false);
      await shared.close();
    });

    it('hung (SIGSTOP): a decision waits at most the command timeout, then the node decides alone until Redis answers again', async () => {
      const p = prefix();
      const shared = new SharedLimiter(client(), { logger: createLogger('silent'), keyPrefix: p, probeIntervalMs: 200 });
      assert.equal(await shared.connected(5_000), true);
      const spec: CooldownSpec = { name: 'hang', threshold: 2, windowMs: 60_000, cooldownMs: 60_000 };
      const pid = server.pid()!;
      process.kill(pid, 'SIGSTOP');
      try {
        const t0 = performance.now();
        const r = await shared.recordFailure(spec, 'src');
        const took = performance.now() - t0;
        assert.deepEqual(r, { state: 'counted', failures: 1 });
        assert.ok(took >= REDIS_COMMAND_TIMEOUT_MS - 20 && took < REDIS_COMMAND_TIMEOUT_MS + 300, `took ${took.toFixed(0)} ms`);
        // Known down now: the next ones do not wait at all.
        const t1 = performance.now();
        assert.deepEqual(await shared.recordFailure(spec, 'src'), { state: 'tripped', failures: 2 });
        assert.ok(!(await shared.checkCooldown(spec, 'src')).ok);
        assert.ok(performance.now() - t1 < 50, `took ${(performance.now() - t1).toFixed(0)} ms`);
        assert.deepEqual(shared.health(), { mode: 'fallback' });
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      const deadline = Date.now() + 10_000;
      while (shared.health().mode !== 'redis' && Date.now() < deadline) await sleep(50);
      assert.deepEqual(shared.health(), { mode: 'redis' });
      // Back on Redis, where this source never failed: what the node counted alone is gone.
      assert.deepEqual(await shared.checkCooldown(spec, 'src'), { ok: true });
      await shared.close();
    });

    it('answers but cannot write (a read-only replica after a failover): stays on memory until Redis takes writes again', async () => {
      const admin = await readyClient();
      const shared = new SharedLimiter(client(), { logger: createLogger('silent'), keyPrefix: prefix(), probeIntervalMs: 100 });
      assert.equal(await shared.connected(5_000), true);
      const spec: BucketSpec = { name: 'readonly', ratePerSecond: 0.001, burst: 1 };
      // A replica of a primary that does not exist: PING answers, every write is refused (READONLY).
      await admin.call('REPLICAOF', '127.0.0.1', String(await freePort()));
      try {
        assert.deepEqual(await shared.take(spec, 'k'), { ok: true }, 'from memory');
        assert.deepEqual(shared.health(), { mode: 'fallback' });
        // Probes run every 100 ms and keep failing (Redis counts them): still local after several.
        const refusedScripts = async () => {
          const info = await admin.info('commandstats');
          let n = 0;
          for (const m of info.matchAll(/^cmdstat_eval(?:sha)?:.*?rejected_calls=(\d+),failed_calls=(\d+)/gm)) n += Number(m[1]) + Number(m[2]);
          return n;
        };
        const before = await refusedScripts();
        const deadline = Date.now() + 10_000;
        while ((await refusedScripts()) < before + 3) {
          assert.ok(Date.now() < deadline, 'no probe reached Redis');
          await sleep(50);
        }
        assert.deepEqual(shared.health(), { mode: 'fallback' });
        assert.equal((await shared.take(spec, 'k')).ok, false, 'memory still counts the first take');
      } finally {
        await admin.call('REPLICAOF', 'NO', 'ONE');
      }
      assert.equal(await shared.connected(5_000), true);
      assert.deepEqual(await shared.take(spec, 'k'), { ok: true }, 'shared again, a fresh bucket in Redis');
      await shared.close();
    });

    it('Redis unreachable from the start: the node serves from memory and switches to shared once it answers', async () => {
      await server.kill();
      const shared = new SharedLimiter(client(), { logger: createLogger('silent'), keyPrefix: prefix(), probeIntervalMs: 200 });
      assert.equal(await shared.connected(300), false);
      assert.deepEqual(await shared.take({ name: 'late', ratePerSecond: 1, burst: 1 }, 'k'), { ok: true });
      assert.deepEqual(shared.health(), { mode: 'fallback' });
      await server.start();
      assert.equal(await shared.connected(10_000), true);
      assert.deepEqual(shared.health(), { mode: 'redis' });
      await shared.close();
    });
  });
}
