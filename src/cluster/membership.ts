/**
 * Who is in the cluster: each node keeps a short-lived record in Redis (`thingauth:node:<id>`,
 * refreshed every second, gone 10 s after its last beat), so `thingauth node list` shows the
 * live nodes and two nodes started with the same THINGAUTH_NODE_ID are caught: a node whose id
 * is held by a record that is still being refreshed refuses to start.
 *
 * The same start also checks the master keys: every node records the ids of the keys it holds
 * (`thingauth:cluster:key-ids`); a node that shares none of them with the cluster cannot read
 * the secrets the others wrote, and refuses to join with a message saying so.
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { Redis } from 'ioredis';

const NODE_PREFIX = 'thingauth:node:';
const KEY_IDS = 'thingauth:cluster:key-ids';
export const BEAT_MS = 1_000;
export const NODE_RECORD_TTL_MS = 10_000;

export interface NodeRecord {
  nodeId: string;
  /** A new id per process: tells a live duplicate from this process's own record. */
  instance: string;
  host: string;
  pid: number;
  version: string;
  startedAt: string;
  beatAt: string;
  draining: boolean;
  /** Live MQTT sessions on the node at its last beat. */
  sessions: number;
}

export class NodeIdConflictError extends Error {}
export class KeyMismatchError extends Error {}

export class Membership {
  readonly instance = randomUUID();
  private timer: NodeJS.Timeout | undefined;
  private record: NodeRecord;
  private keyIds: string[] = [];

  constructor(
    private readonly redis: Redis,
    readonly nodeId: string,
    version: string,
    private readonly sessionCount: () => number,
  ) {
    const now = new Date().toISOString();
    this.record = { nodeId, instance: this.instance, host: os.hostname(), pid: process.pid, version, startedAt: now, beatAt: now, draining: false, sessions: 0 };
  }

  /**
   * Claims the node id and checks the key ids. Throws NodeIdConflictError when another live
   * process holds the id (its record is refreshed while we watch), KeyMismatchError when this
   * node's keys share nothing with the cluster's.
   */
  async join(keyIds: string[]): Promise<void> {
    const key = NODE_PREFIX + this.nodeId;
    const claimed = await this.redis.set(key, JSON.stringify(this.record), 'PX', NODE_RECORD_TTL_MS, 'NX');
    if (claimed !== 'OK') {
      const first = await this.redis.get(key);
      // A crashed process leaves a record that is no longer refreshed: watch it for three beats.
      await new Promise((r) => setTimeout(r, 3 * BEAT_MS + 200));
      const later = await this.redis.get(key);
      if (later !== null && first !== null && later !== first) {
        const other = JSON.parse(later) as NodeRecord;
        throw new NodeIdConflictError(
          `cluster: node id "${this.nodeId}" is already used by a running node (host ${other.host}, pid ${other.pid}, started ${other.startedAt}); give every node its own THINGAUTH_NODE_ID`,
        );
      }
      await this.redis.set(key, JSON.stringify(this.record), 'PX', NODE_RECORD_TTL_MS);
    }
    const known = await this.redis.smembers(KEY_IDS);
    if (known.length > 0 && !keyIds.some((id) => known.includes(id))) {
      await this.redis.del(key);
      throw new KeyMismatchError(
        `cluster: this node's master key (id ${keyIds[0]}) is not one the cluster uses (ids ${known.slice(0, 4).join(', ')}): start every node with the same THINGAUTH_MASTER_KEY (or master.key file); during a key rotation, give the new node the previous key too (THINGAUTH_MASTER_KEY_PREVIOUS)`,
      );
    }
    await this.redis.sadd(KEY_IDS, ...keyIds);
    this.keyIds = keyIds;
    this.timer = setInterval(() => void this.beat().catch(() => undefined), BEAT_MS);
    this.timer.unref();
  }

  setDraining(on: boolean): void {
    this.record.draining = on;
    void this.beat().catch(() => undefined);
  }

  get draining(): boolean {
    return this.record.draining;
  }

  private async beat(): Promise<void> {
    this.record.beatAt = new Date().toISOString();
    this.record.sessions = this.sessionCount();
    // A Redis restarted empty learns the record and the key ids again within a beat.
    await this.redis.multi().set(NODE_PREFIX + this.nodeId, JSON.stringify(this.record), 'PX', NODE_RECORD_TTL_MS).sadd(KEY_IDS, ...this.keyIds).exec();
  }

  /** The live nodes (records refreshed within the last 10 s), by node id. */
  async list(): Promise<NodeRecord[]> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await this.redis.scan(cursor, 'MATCH', `${NODE_PREFIX}*`, 'COUNT', 500);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    if (keys.length === 0) return [];
    const values = await this.redis.mget(...keys);
    return values
      .filter((v): v is string => v !== null)
      .map((v) => JSON.parse(v) as NodeRecord)
      .sort((a, b) => a.nodeId.localeCompare(b.nodeId));
  }

  /** Leaves the cluster (a clean stop: the record goes at once). */
  async leave(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const key = NODE_PREFIX + this.nodeId;
    const v = await this.redis.get(key).catch(() => null);
    if (v !== null && (JSON.parse(v) as NodeRecord).instance === this.instance) await this.redis.del(key).catch(() => undefined);
  }
}
