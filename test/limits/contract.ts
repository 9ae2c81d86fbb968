/**
 * The Limiter contract (services/limits/limiter.ts): one suite every implementation must pass
 * unchanged, on real time (Redis keeps its own clock, so no clock is injected here). Windows,
 * cool-downs and refills are 0.5-1.5 s (long enough that a loaded machine does not cross them
 * between two calls meant to fall in one window); the waits are for something to HAPPEN (a window
 * to pass, a cool-down to end), each followed by a positive assertion.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BucketSpec, CooldownSpec, CounterSpec, Limiter, SlidingWindowSpec } from '../../src/services/limits/limiter.js';

/** A fresh limiter with nothing counted; `cleanup` closes what the factory opened. */
export type MakeLimiter = () => Promise<Limiter>;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function limiterContract(name: string, make: MakeLimiter): void {
  describe(`Limiter contract: ${name}`, () => {
    it('token bucket: a full bucket gives `burst` tokens, then refuses with the time to the next token; refills at the rate', async () => {
      const l = await make();
      const spec: BucketSpec = { name: 'c.bucket', ratePerSecond: 2, burst: 3 };
      for (let i = 0; i < 3; i++) assert.deepEqual(await l.take(spec, 'k'), { ok: true }, `token ${i}`);
      const refused = await l.take(spec, 'k');
      assert.equal(refused.ok, false);
      assert.ok(!refused.ok && refused.retryAfterMs > 0 && refused.retryAfterMs <= 500, JSON.stringify(refused));
      // Another key and another limit of the same key have their own buckets.
      assert.deepEqual(await l.take(spec, 'other'), { ok: true });
      assert.deepEqual(await l.take({ ...spec, name: 'c.bucket2' }, 'k'), { ok: true });
      await sleep((refused as { retryAfterMs: number }).retryAfterMs + 30);
      assert.deepEqual(await l.take(spec, 'k'), { ok: true });
      assert.equal((await l.take(spec, 'k')).ok, false);
      await l.close();
    });

    it('token bucket: n tokens at once or none; never more than burst however long it waited', async () => {
      const l = await make();
      const spec: BucketSpec = { name: 'c.bulk', ratePerSecond: 4, burst: 4 };
      assert.deepEqual(await l.take(spec, 'k', 3), { ok: true });
      const r = await l.take(spec, 'k', 3);
      assert.equal(r.ok, false, 'only one token left');
      assert.deepEqual(await l.take(spec, 'k', 1), { ok: true }, 'the refused take took nothing');
      await sleep(1_600); // 6 tokens' worth of time, capped at 4
      assert.deepEqual(await l.take(spec, 'k', 4), { ok: true });
      assert.equal((await l.take(spec, 'k', 1)).ok, false);
      assert.equal((await l.take(spec, 'k2', 5)).ok, false, 'more than burst: never');
      await l.close();
    });

    it('failures with cool-down: `threshold` failures in a window trip it; checks are refused and counted; failures meanwhile do not count; it ends', async () => {
      const l = await make();
      const spec: CooldownSpec = { name: 'c.cool', threshold: 3, windowMs: 5_000, cooldownMs: 1_500 };
      assert.deepEqual(await l.checkCooldown(spec, 'src'), { ok: true });
      assert.deepEqual(await l.recordFailure(spec, 'src'), { state: 'counted', failures: 1 });
      assert.deepEqual(await l.recordFailure(spec, 'src'), { state: 'counted', failures: 2 });
      assert.deepEqual(await l.checkCooldown(spec, 'src'), { ok: true });
      assert.deepEqual(await l.recordFailure(spec, 'src'), { state: 'tripped', failures: 3 });
      const first = await l.checkCooldown(spec, 'src');
      assert.ok(!first.ok && first.refusals === 1 && first.retryAfterMs > 0 && first.retryAfterMs <= 1_500, JSON.stringify(first));
      const second = await l.checkCooldown(spec, 'src');
      assert.ok(!second.ok && second.refusals === 2 && second.retryAfterMs <= first.retryAfterMs, JSON.stringify(second));
      assert.deepEqual(await l.recordFailure(spec, 'src'), { state: 'cooling' });
      assert.deepEqual(await l.cooling(spec), ['src']);
      assert.deepEqual(await l.checkCooldown(spec, 'other'), { ok: true });
      await sleep(1_550);
      assert.deepEqual(await l.checkCooldown(spec, 'src'), { ok: true });
      assert.deepEqual(await l.cooling(spec), []);
      // After the cool-down the count starts over.
      assert.deepEqual(await l.recordFailure(spec, 'src'), { state: 'counted', failures: 1 });
      await l.close();
    });

    it('failures with cool-down: failures further apart than the window never add up', async () => {
      const l = await make();
      const spec: CooldownSpec = { name: 'c.window', threshold: 2, windowMs: 600, cooldownMs: 10_000 };
      assert.deepEqual(await l.recordFailure(spec, 'src'), { state: 'counted', failures: 1 });
      await sleep(650);
      assert.deepEqual(await l.recordFailure(spec, 'src'), { state: 'counted', failures: 1 });
      assert.deepEqual(await l.recordFailure(spec, 'src'), { state: 'tripped', failures: 2 });
      await l.close();
    });

    it('counter: counts per fixed window, reset forgets, a new window starts at 1', async () => {
      const l = await make();
      const spec: CounterSpec = { name: 'c.count', windowMs: 1_000 };
      assert.equal(await l.increment(spec, 'd'), 1);
      assert.equal(await l.increment(spec, 'd'), 2);
      assert.equal(await l.increment(spec, 'e'), 1);
      await l.reset(spec, 'd');
      assert.equal(await l.increment(spec, 'd'), 1);
      assert.equal(await l.increment(spec, 'd'), 2);
      await sleep(1_050);
      assert.equal(await l.increment(spec, 'd'), 1);
      await l.reset(spec, 'never-counted');
      await l.close();
    });

    it('sliding window: counts the events of the last windowMs, each leaving on its own', async () => {
      const l = await make();
      const spec: SlidingWindowSpec = { name: 'c.slide', windowMs: 1_000 };
      assert.equal(await l.windowCount(spec, 'sub'), 0);
      await l.windowAdd(spec, 'sub');
      await l.windowAdd(spec, 'sub');
      assert.equal(await l.windowCount(spec, 'sub'), 2);
      await sleep(600);
      await l.windowAdd(spec, 'sub');
      assert.equal(await l.windowCount(spec, 'sub'), 3);
      assert.equal(await l.windowCount(spec, 'other'), 0);
      await sleep(500); // the first two are older than 1 s now, the third is not
      assert.equal(await l.windowCount(spec, 'sub'), 1);
      await sleep(600);
      assert.equal(await l.windowCount(spec, 'sub'), 0);
      await l.close();
    });

    it('a spec that cannot mean anything is refused (programming error), not silently ignored', async () => {
      const l = await make();
      await assert.rejects(l.take({ name: 'c.bad', ratePerSecond: 0, burst: 1 }, 'k'), RangeError);
      await assert.rejects(l.recordFailure({ name: 'bad name with spaces', threshold: 1, windowMs: 1, cooldownMs: 1 }, 'k'), RangeError);
      await assert.rejects(l.windowCount({ name: 'c.bad', windowMs: Number.NaN }, 'k'), RangeError);
      await l.close();
    });
  });
}
