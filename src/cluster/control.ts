/**
 * What the rest of thingauth asks of "the cluster", with two implementations: a node alone
 * (no THINGAUTH_REDIS_URL: a cluster of one, everything in process) and a node of a Redis
 * cluster (cluster.ts). Listeners, the broker and the management API use only this.
 */
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Config } from '../config.js';
import type { NodeRecord } from './membership.js';

export interface SubDeviceRef {
  iotId: string;
  productKey: string;
  deviceName: string;
}

export type NodeSummary = Omit<NodeRecord, 'instance'>;

export interface ClusterStatus {
  mode: 'single' | 'redis';
  nodeId: string;
  /** Redis reachable (always true for a node alone). */
  redis: 'up' | 'down' | 'none';
  draining: boolean;
}

export interface ClusterControl {
  readonly nodeId: string;
  readonly mode: 'single' | 'redis';
  /** This node refuses new logins (drain). */
  readonly draining: boolean;
  /** Whether what needs the cluster works now (Redis reachable). */
  available(): boolean;
  status(): ClusterStatus;
  /** The nodes of the cluster (a node alone: itself). */
  nodes(): Promise<NodeSummary[]>;
  /** Asks the node named to drain (on) or to take logins again (off); false when no such node is live. */
  drain(nodeId: string, on: boolean): Promise<boolean>;
  /** This node's drain orders. */
  onDrain(listener: (on: boolean) => void): void;
  /** A sub-device logged in through a gateway here: the other nodes drop it from their gateways. */
  claimSubDevice(ref: SubDeviceRef): void;
  /** Claims made on other nodes. */
  onSubDeviceClaimed(listener: (ref: SubDeviceRef) => void): void;
  /** Live MQTT sessions of this node (for the node list); set by the broker. */
  sessionCount: () => number;
  close(): Promise<void>;
}

/** THINGAUTH_NODE_ID, else host-pid-random (unique per process). */
export function resolveNodeId(config: Config): string {
  if (config.nodeId) return config.nodeId;
  const host = os.hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 40) || 'node';
  return `${host}-${process.pid}-${randomBytes(2).toString('hex')}`;
}

export class SingleNode implements ClusterControl {
  readonly mode = 'single' as const;
  private drainingNow = false;
  private readonly listeners: ((on: boolean) => void)[] = [];
  private readonly startedAt = new Date().toISOString();
  sessionCount: () => number = () => 0;

  constructor(
    readonly nodeId: string,
    private readonly version: string,
  ) {}

  get draining(): boolean {
    return this.drainingNow;
  }

  available(): boolean {
    return true;
  }

  status(): ClusterStatus {
    return { mode: 'single', nodeId: this.nodeId, redis: 'none', draining: this.drainingNow };
  }

  async nodes(): Promise<NodeSummary[]> {
    const now = new Date().toISOString();
    return [{ nodeId: this.nodeId, host: os.hostname(), pid: process.pid, version: this.version, startedAt: this.startedAt, beatAt: now, draining: this.drainingNow, sessions: this.sessionCount() }];
  }

  async drain(nodeId: string, on: boolean): Promise<boolean> {
    if (nodeId !== this.nodeId) return false;
    this.drainingNow = on;
    for (const l of this.listeners) l(on);
    return true;
  }

  onDrain(listener: (on: boolean) => void): void {
    this.listeners.push(listener);
  }

  /** One node: the session registry already moves a sub-device between its gateways. */
  claimSubDevice(): void {}

  onSubDeviceClaimed(): void {}

  async close(): Promise<void> {}
}
