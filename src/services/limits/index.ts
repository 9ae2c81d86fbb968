/** The limiter a server uses: in memory without THINGAUTH_REDIS_URL, shared through Redis with it. */
import type { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import type { Logger } from '../../logger.js';
import type { Limiter } from './limiter.js';
import { MemoryLimiter } from './memory-limiter.js';
import { createRedisClient } from './redis-client.js';
import { SharedLimiter } from './shared-limiter.js';

export type { Limiter, LimiterHealth } from './limiter.js';
export { MemoryLimiter } from './memory-limiter.js';
export { SharedLimiter } from './shared-limiter.js';

export interface LimiterWiring {
  redisUrl: string | undefined;
  logger: Logger;
  registry?: Registry;
  /** A client made elsewhere (the cluster core's) to use instead of making one; not closed by the limiter. */
  redisClient?: Redis;
}

/** The server's limiter. */
export function createLimiter(w: LimiterWiring): Limiter {
  if (w.redisClient) return new SharedLimiter(w.redisClient, { logger: w.logger, registry: w.registry });
  if (w.redisUrl) return new SharedLimiter(createRedisClient(w.redisUrl), { logger: w.logger, registry: w.registry, ownsClient: true });
  return new MemoryLimiter();
}
