/**
 * Registry events across the nodes of a cluster, over Redis pub/sub.
 *
 * Every node's services emit their changes on their own in-process emitters (RegistryEvents,
 * ApplicationService), after the store committed. The bridge listens to those and publishes
 * each change once on one channel; every other node re-emits it on its own emitters, so the
 * node that holds a device's session kicks it, and every node drops its cached records. One
 * versioned message format (`v: 1`); a message of an unknown version or event is counted and
 * ignored (a newer node during a rolling upgrade), never guessed at.
 *
 * Cluster commands ride on the same channel: `node.drain` (thingauth node drain).
 *
 * Delivery is at most once: while Redis is unreachable, changes are not carried to other
 * nodes; their cached records expire after THINGAUTH_CACHE_TTL_SECONDS (5 s on PostgreSQL), and
 * a session that should have been kicked is kicked at its next login decision. That is logged.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../logger.js';
import type { ApplicationService } from '../services/applications.js';
import { bootstrapNotifyOrder } from '../services/bootstrap.js';
import type { RegistryEventMap, RegistryEvents } from '../services/events.js';

export const EVENTS_CHANNEL = 'thingauth:events';
const VERSION = 1;

/** Registry events carried as they are (their arguments are plain references). */
const PLAIN_EVENTS = [
  'device.changed',
  'device.disabled',
  'device.enabled',
  'device.deleted',
  'device.reset',
  'device.slot.revoked',
  'product.changed',
  'topology.changed',
  'device.certificate.revoked',
] as const satisfies readonly (keyof RegistryEventMap)[];

export interface ClusterCommandMap {
  /** Drain (on) or return to service (off) the node named. */
  'node.drain': [{ nodeId: string; on: boolean }];
  /** A sub-device logged in through a gateway on `nodeId`: a gateway elsewhere acting for it stops. */
  'subdevice.claimed': [{ nodeId: string; iotId: string; productKey: string; deviceName: string }];
}

interface WireMessage {
  v: number;
  origin: string;
  event: string;
  args: unknown[];
}

export class ClusterEventBus {
  /** Set while a peer's event is re-emitted here: the bridge's own listeners must not send it back. */
  private receiving = false;
  private readonly commandListeners: { [K in keyof ClusterCommandMap]?: ((...a: ClusterCommandMap[K]) => void)[] } = {};
  private readonly detach: (() => void)[] = [];
  private droppedWhileDown = 0;
  /** Messages from peers ignored because of their version or event (a newer node). */
  unknownMessages = 0;

  constructor(
    private readonly nodeId: string,
    private readonly publisher: Redis,
    private readonly subscriber: Redis,
    private readonly logger: Logger,
  ) {}

  /** Subscribes to the channel and starts forwarding this node's events. */
  async start(events: RegistryEvents, applications: ApplicationService): Promise<void> {
    for (const name of PLAIN_EVENTS) {
      const forward = (...args: unknown[]) => {
        if (!this.receiving) this.publish(name, args);
      };
      events.on(name, forward as never);
      this.detach.push(() => events.off(name, forward as never));
    }
    const forwardNotify = (order: RegistryEventMap['bootstrap.notify'][0]) => {
      if (!this.receiving) this.publish('bootstrap.notify', [{ productKey: order.productKey, deviceName: order.deviceName }]);
    };
    events.on('bootstrap.notify', forwardNotify);
    this.detach.push(() => events.off('bootstrap.notify', forwardNotify));
    const forwardAppDeleted = (e: { appKey: string }) => {
      if (!this.receiving) this.publish('application.deleted', [e]);
    };
    applications.on('application.deleted', forwardAppDeleted);
    this.detach.push(() => applications.off('application.deleted', forwardAppDeleted));

    const onMessage = (channel: string, raw: string) => {
      if (channel !== EVENTS_CHANNEL) return;
      this.receive(raw, events, applications);
    };
    this.subscriber.on('message', onMessage);
    this.detach.push(() => this.subscriber.off('message', onMessage));
    await this.subscriber.subscribe(EVENTS_CHANNEL);
  }

  /** A command for the cluster (delivered to every node, this one included). */
  command<K extends keyof ClusterCommandMap>(name: K, ...args: ClusterCommandMap[K]): Promise<void> {
    this.dispatchCommand(name, args);
    return this.publisher.publish(EVENTS_CHANNEL, JSON.stringify({ v: VERSION, origin: this.nodeId, event: name, args } satisfies WireMessage)).then(() => undefined);
  }

  onCommand<K extends keyof ClusterCommandMap>(name: K, listener: (...a: ClusterCommandMap[K]) => void): void {
    ((this.commandListeners[name] ??= []) as ((...a: ClusterCommandMap[K]) => void)[]).push(listener);
  }

  close(): void {
    for (const d of this.detach.splice(0)) d();
  }

  private publish(event: string, args: unknown[]): void {
    const message: WireMessage = { v: VERSION, origin: this.nodeId, event, args };
    this.publisher.publish(EVENTS_CHANNEL, JSON.stringify(message)).catch((err: Error) => {
      if (this.droppedWhileDown++ % 100 === 0) {
        this.logger.warn({ event, err: err.message, dropped: this.droppedWhileDown }, 'cluster: a registry change was not carried to the other nodes (Redis unreachable); their caches expire by THINGAUTH_CACHE_TTL_SECONDS');
      }
    });
  }

  private receive(raw: string, events: RegistryEvents, applications: ApplicationService): void {
    let m: WireMessage;
    try {
      m = JSON.parse(raw) as WireMessage;
    } catch {
      this.unknownMessages++;
      return;
    }
    if (m.origin === this.nodeId) return;
    if (m.v !== VERSION || !Array.isArray(m.args)) {
      this.unknown(m);
      return;
    }
    if (m.event === 'node.drain' || m.event === 'subdevice.claimed') {
      this.dispatchCommand(m.event, m.args as ClusterCommandMap[typeof m.event]);
      return;
    }
    this.receiving = true;
    try {
      if ((PLAIN_EVENTS as readonly string[]).includes(m.event)) {
        (events.emit as (e: string, ...a: unknown[]) => boolean)(m.event, ...m.args);
      } else if (m.event === 'bootstrap.notify') {
        const scope = m.args[0] as { productKey: string; deviceName?: string };
        events.emit('bootstrap.notify', bootstrapNotifyOrder(scope.productKey, scope.deviceName));
      } else if (m.event === 'application.deleted') {
        applications.emit('application.deleted', m.args[0] as { appKey: string });
      } else {
        this.unknown(m);
      }
    } finally {
      this.receiving = false;
    }
  }

  private dispatchCommand<K extends keyof ClusterCommandMap>(name: K, args: ClusterCommandMap[K]): void {
    for (const l of (this.commandListeners[name] ?? []) as ((...a: ClusterCommandMap[K]) => void)[]) {
      try {
        l(...args);
      } catch (err) {
        this.logger.error({ command: name, err: (err as Error).message }, 'cluster command listener failed');
      }
    }
  }

  private unknown(m: WireMessage): void {
    if (this.unknownMessages++ % 100 === 0) {
      this.logger.warn({ v: m.v, event: m.event, origin: m.origin }, 'cluster: ignored an event of an unknown version or kind (a newer node?)');
    }
  }
}
