/** The Limiter contract against the in-process limiter (the default without THINGAUTH_REDIS_URL). */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { MemoryLimiter } from '../../src/services/limits/memory-limiter.js';
import { limiterContract } from './contract.js';

limiterContract('memory', async () => new MemoryLimiter());

it('memory limiter: every kind of state stays within maxKeys under a flood of distinct keys', async () => {
  let t = 0;
  const l = new MemoryLimiter({ now: () => t, maxKeys: 500 });
  for (let i = 0; i < 5_000; i++) {
    t += 1;
    await l.take({ name: 'f.b', ratePerSecond: 1, burst: 2 }, `k${i}`);
    await l.recordFailure({ name: 'f.c', threshold: 1, windowMs: 60_000, cooldownMs: 60_000 }, `k${i}`);
    await l.recordFailure({ name: 'f.w', threshold: 5, windowMs: 60_000, cooldownMs: 60_000 }, `k${i}`);
    await l.increment({ name: 'f.n', windowMs: 60_000 }, `k${i}`);
    await l.windowAdd({ name: 'f.s', windowMs: 60_000 }, `k${i}`);
  }
  const sizes = l.sizes();
  // Cool-downs still running are kept (each is a source being refused); everything else is bounded.
  for (const k of ['buckets', 'windows', 'counters', 'events'] as const) assert.ok(sizes[k] <= 500, `${k}: ${sizes[k]}`);
});
