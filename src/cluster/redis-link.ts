/**
 * The cluster's connections to Redis (ioredis): one for commands, one for subscriptions (a
 * subscribed connection can run nothing else), plus the pair mqemitter-redis uses for MQTT
 * routing. Every connection reconnects by itself; `up()` says whether all of them are ready
 * now, and `onChange` tells when that flips (logged once per outage, exposed in /healthz and
 * the `thingauth_redis_up` gauge).
 *
 * Commands do not queue while Redis is away (enableOfflineQueue off on the command connection):
 * what needs the cluster fails at once with a clear error instead of hanging a login.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../logger.js';
import { handleEveryRejection } from '../services/limits/redis-client.js';

export interface RedisLink {
  /** Commands (session directory, membership, events published). */
  command: Redis;
  /** Subscriptions of the event bus. */
  subscriber: Redis;
  /** mqemitter-redis' publish and subscribe connections (MQTT routing across nodes). */
  mqPub: Redis;
  mqSub: Redis;
  /** aedes-persistence-redis' connection (persistent sessions, retained messages). */
  persistence: Redis;
  up(): boolean;
  onChange(listener: (up: boolean) => void): void;
  close(): Promise<void>;
}

/** Where a Redis URL points, without its password (for logs and errors). */
export function redisTarget(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.hostname}:${u.port || 6379}${u.pathname && u.pathname !== '/' ? u.pathname : ''}`;
  } catch {
    return 'redis (unparsable URL)';
  }
}

export async function connectRedis(url: string, logger: Logger, opts: { connectTimeoutMs?: number } = {}): Promise<RedisLink> {
  const base: RedisOptions = {
    lazyConnect: true,
    connectTimeout: opts.connectTimeoutMs ?? 5_000,
    // Back off to 1 s between attempts; never give up (the node recovers by itself).
    retryStrategy: (times) => Math.min(50 * times, 1_000),
    maxRetriesPerRequest: 2,
  };
  const make = (name: string, extra: RedisOptions = {}) => handleEveryRejection(new Redis(url, { ...base, connectionName: `thingauth-${name}`, ...extra }));
  const command = make('command', { enableOfflineQueue: false, commandTimeout: 2_000 });
  // Subscribing connections keep their (un)subscribe commands until Redis is back, however
  // long (ioredis re-subscribes on reconnect): a command failed after N retries would surface
  // as an error in a library callback that does not expect one.
  const subscriber = make('events', { maxRetriesPerRequest: null });
  // A publish or persistence command in flight when Redis drops is resent on reconnect (or
  // ends by its timeout) rather than failed with MaxRetriesPerRequestError after two
  // reconnect attempts: some library paths fire those commands without a handler.
  const mqPub = make('mq-pub', { enableOfflineQueue: false, maxRetriesPerRequest: null });
  const mqSub = make('mq-sub', { maxRetriesPerRequest: null });
  const persistence = make('persistence', { enableOfflineQueue: false, commandTimeout: 5_000, maxRetriesPerRequest: null });
  const all = [command, subscriber, mqPub, mqSub, persistence];
  const target = redisTarget(url);
  const listeners: ((up: boolean) => void)[] = [];
  let wasUp = false;
  let closing = false;
  const isUp = () => all.every((c) => c.status === 'ready');
  const check = () => {
    const now = isUp();
    if (now === wasUp || closing) return;
    wasUp = now;
    if (now) logger.info({ redis: target }, 'cluster: Redis reachable again');
    else logger.error({ redis: target }, 'cluster: Redis unreachable; serving local connections only until it is back');
    for (const l of listeners) l(now);
  };
  for (const c of all) {
    c.on('ready', check);
    c.on('close', check);
    c.on('end', check);
    // Errors are reported through the up/down state; ioredis would print them otherwise.
    c.on('error', () => undefined);
  }
  try {
    await Promise.all(all.map((c) => c.connect()));
  } catch (e) {
    for (const c of all) c.disconnect();
    throw new Error(`cluster: cannot reach Redis at ${target}: ${(e as Error).message}`);
  }
  wasUp = isUp();
  return {
    command,
    subscriber,
    mqPub,
    mqSub,
    persistence,
    up: isUp,
    onChange: (l) => listeners.push(l),
    async close() {
      closing = true;
      await Promise.all(all.map((c) => c.quit().catch(() => c.disconnect())));
    },
  };
}
