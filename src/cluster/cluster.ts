/**
 * A node of a Redis cluster (THINGAUTH_REDIS_URL, with the registry on PostgreSQL):
 * - MQTT routing across nodes: aedes on mqemitter-redis (a publish on any node reaches the
 *   subscribers on every node; while Redis is away, a node still routes among its own clients);
 * - persistent sessions (clean=false, queued QoS 1) and retained messages in Redis
 *   (aedes-persistence-redis), so a device resumes its session on any node;
 * - one live session per device cluster-wide: aedes announces every new client on
 *   `$SYS/<node>/new/clients` and the node holding an older client of the same id closes it
 *   (client ids are the device's (ProductKey, DeviceName): spec 1.5's takeover, across nodes);
 * - registry changes, application deletes and cluster commands on the event bus (event-bus.ts);
 * - membership, duplicate node ids and master key agreement (membership.ts).
 */
import type { Logger } from '../logger.js';
import type { ApplicationService } from '../services/applications.js';
import type { RegistryEvents } from '../services/events.js';
import type { ClusterControl, ClusterStatus, NodeSummary, SubDeviceRef } from './control.js';
import { ClusterEventBus } from './event-bus.js';
import { Membership } from './membership.js';
import { connectRedis, type RedisLink } from './redis-link.js';

export interface RedisClusterOptions {
  url: string;
  nodeId: string;
  version: string;
  /** Ids of the master keys this node holds (checked against the cluster's). */
  keyIds: string[];
  logger: Logger;
}

export class RedisCluster implements ClusterControl {
  readonly mode = 'redis' as const;
  private readonly drainListeners: ((on: boolean) => void)[] = [];
  sessionCount: () => number = () => 0;

  private constructor(
    readonly nodeId: string,
    readonly redis: RedisLink,
    readonly bus: ClusterEventBus,
    private readonly membership: Membership,
  ) {
    bus.onCommand('node.drain', ({ nodeId, on }) => {
      if (nodeId !== this.nodeId) return;
      membership.setDraining(on);
      for (const l of this.drainListeners) l(on);
    });
  }

  /** Connects to Redis and joins: throws with a message that says what to do when it cannot. */
  static async join(opts: RedisClusterOptions): Promise<RedisCluster> {
    const redis = await connectRedis(opts.url, opts.logger);
    try {
      let self: RedisCluster | undefined;
      const membership = new Membership(redis.command, opts.nodeId, opts.version, () => self?.sessionCount() ?? 0);
      await membership.join(opts.keyIds);
      const bus = new ClusterEventBus(opts.nodeId, redis.command, redis.subscriber, opts.logger);
      self = new RedisCluster(opts.nodeId, redis, bus, membership);
      return self;
    } catch (e) {
      await redis.close().catch(() => undefined);
      throw e;
    }
  }

  /** Starts carrying this node's registry events to the others (and theirs here). */
  startEvents(events: RegistryEvents, applications: ApplicationService): Promise<void> {
    return this.bus.start(events, applications);
  }

  get draining(): boolean {
    return this.membership.draining;
  }

  available(): boolean {
    return this.redis.up();
  }

  status(): ClusterStatus {
    return { mode: 'redis', nodeId: this.nodeId, redis: this.redis.up() ? 'up' : 'down', draining: this.draining };
  }

  async nodes(): Promise<NodeSummary[]> {
    return (await this.membership.list()).map(({ instance: _instance, ...rest }) => rest);
  }

  async drain(nodeId: string, on: boolean): Promise<boolean> {
    const live = (await this.membership.list()).some((n) => n.nodeId === nodeId);
    if (!live) return false;
    await this.bus.command('node.drain', { nodeId, on });
    return true;
  }

  onDrain(listener: (on: boolean) => void): void {
    this.drainListeners.push(listener);
  }

  claimSubDevice(ref: SubDeviceRef): void {
    this.bus.command('subdevice.claimed', { nodeId: this.nodeId, iotId: ref.iotId, productKey: ref.productKey, deviceName: ref.deviceName }).catch(() => undefined);
  }

  onSubDeviceClaimed(listener: (ref: SubDeviceRef) => void): void {
    this.bus.onCommand('subdevice.claimed', (claim) => {
      if (claim.nodeId !== this.nodeId) listener({ iotId: claim.iotId, productKey: claim.productKey, deviceName: claim.deviceName });
    });
  }

  async close(): Promise<void> {
    this.bus.close();
    await this.membership.leave().catch(() => undefined);
    await this.redis.close();
  }
}
