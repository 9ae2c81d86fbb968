/**
 * The aedes parts of a cluster node: routing over mqemitter-redis and persistence over
 * aedes-persistence-redis, on the cluster's own Redis connections.
 *
 * Routing while Redis is away: mqemitter-redis delivers a message to local subscribers only
 * when Redis echoes it back; with Redis unreachable the node would route nothing, not even
 * between its own clients. So a publish goes through Redis when it is up and straight to the
 * local subscribers when it is not (the "keep serving their own connections and local
 * routing"); messages for other nodes during the outage are lost (QoS 0 semantics across nodes).
 */
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import type { RedisCluster } from './cluster.js';

const require = createRequire(import.meta.url);

interface MqEmitterLike {
  state: { on(event: 'error', listener: (err: Error) => void): void };
  emit(msg: unknown, done?: (err?: Error) => void): void;
  _emit(msg: unknown, done?: (err?: Error) => void): void;
}

export interface ClusterBrokerOptions {
  id: string;
  mq: unknown;
  persistence: unknown;
  /** aedes' own $SYS heartbeat between brokers (for wills of dead brokers): every 5 s. */
  heartbeatInterval: number;
}

export function clusterBrokerOptions(cluster: RedisCluster): ClusterBrokerOptions {
  const mqemitterRedis = require('mqemitter-redis') as (opts: object) => MqEmitterLike;
  // The async class: aedes 1.x requires persistence.setup() to be async.
  const AsyncRedisPersistence = require('aedes-persistence-redis/asyncPersistence.js') as new (opts: object) => unknown;
  const mq = mqemitterRedis({ pubConn: cluster.redis.mqPub, subConn: cluster.redis.mqSub });
  // mqemitter-redis re-emits its connections' errors on `state`; an unheard 'error' would be
  // thrown. The outage is reported by the cluster's Redis link (redis-link.ts).
  mq.state.on('error', () => undefined);
  const viaRedis = mq.emit.bind(mq);
  mq.emit = (msg, done) => {
    if (cluster.redis.mqPub.status === 'ready' && cluster.redis.mqSub.status === 'ready') viaRedis(msg, done);
    else mq._emit(msg, done);
  };
  const persistence = new AsyncRedisPersistence({ conn: cluster.redis.persistence }) as {
    createRetainedStreamCombi(patterns: string[]): unknown;
  };
  // aedes 1.2's SUBSCRIBE pipes the retained messages (a stream, as aedes-persistence 11 gives);
  // aedes-persistence-redis 11 answers with an async iterable: wrap it.
  const retainedCombi = persistence.createRetainedStreamCombi.bind(persistence);
  persistence.createRetainedStreamCombi = (patterns) => {
    const r = retainedCombi(patterns);
    return typeof (r as { pipe?: unknown }).pipe === 'function' ? r : Readable.from(r as AsyncIterable<unknown>);
  };
  return { id: cluster.nodeId, mq, persistence, heartbeatInterval: 5_000 };
}

