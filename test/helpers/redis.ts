/**
 * A PRIVATE Redis server for a test file (the launcher lives in bench/lib/private-redis.ts,
 * shared with the benchmarks). When none can be started, `startPrivateRedis` returns the reason
 * and the caller skips, unless CI is set: under CI=true it throws, so the cluster tests never
 * silently vanish from a CI run.
 */
import { startRedisServer, type PrivateRedis } from '../../bench/lib/private-redis.js';

export type { PrivateRedis } from '../../bench/lib/private-redis.js';

export async function startPrivateRedis(): Promise<{ server: PrivateRedis } | { skip: string }> {
  try {
    return { server: await startRedisServer() };
  } catch (e) {
    const reason = `no private Redis server: ${(e as Error).message}`;
    if (process.env.CI) throw new Error(`${reason} (CI is set, so the Redis tests may not be skipped)`);
    return { skip: reason };
  }
}
