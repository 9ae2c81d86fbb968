/**
 * The ioredis client for THINGAUTH_REDIS_URL, set up so a Redis outage never holds a device
 * up: a short command timeout, no queueing while disconnected (a command fails at once and
 * the caller falls back), and reconnection forever with a capped back-off. Whoever creates a
 * client closes it; the limiter can also be handed a client made elsewhere (the cluster core's).
 */
import { Redis, type RedisOptions } from 'ioredis';

/** A limit decision waits at most this long for Redis before this node decides alone. */
export const REDIS_COMMAND_TIMEOUT_MS = 200;

export function createRedisClient(url: string, overrides: RedisOptions = {}): Redis {
  return handleEveryRejection(new Redis(url, {
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    connectTimeout: 2_000,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    // Reconnect forever, 100 ms growing to 2 s apart: the node recovers by itself.
    retryStrategy: (times) => Math.min(100 * times, 2_000),
    // The URL may hold a password: never in a log line or error of ours.
    connectionName: 'thingauth',
    lazyConnect: false,
    ...overrides,
  }));
}

/**
 * Some users of a connection (aedes-persistence-redis, mqemitter-redis, a limiter probe) fire
 * commands without a rejection handler; when Redis drops, such a command's failure would be an
 * unhandled rejection, and Node ends the process on those. Every command promise of this
 * connection gets a no-op handler attached; a caller that awaits it still sees the failure.
 */
export function handleEveryRejection(conn: Redis): Redis {
  const send = conn.sendCommand.bind(conn);
  conn.sendCommand = ((command: { promise?: Promise<unknown> }, stream?: unknown) => {
    command.promise?.catch(() => undefined);
    return (send as (c: unknown, s?: unknown) => unknown)(command, stream);
  }) as typeof conn.sendCommand;
  return conn;
}

