/**
 * A thingauth cluster for a test file: a private PostgreSQL database and a private Redis
 * (test/helpers/postgres.ts, redis.ts), and `thingauth serve` child processes joined to them
 * (test/e2e/security-child-server.ts spawnServer), each with its own data dir and node id and
 * the same master key. Skipped only when a service cannot be started and CI is unset.
 */
import { createHmac, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ensureTlsMaterial } from '../../src/tls/local-ca.js';
import type { IClientOptions, MqttClient } from 'mqtt';
import { spawnServer, type ChildServer } from '../e2e/security-child-server.js';
import { startPrivatePostgres, type PrivatePostgres } from './postgres.js';
import { startPrivateRedis, type PrivateRedis } from './redis.js';
import { makeTempDir } from './server.js';
import { connectUrl, endClient, refusalAt, type DeviceCredentials } from './mqtt.js';

export interface TestCluster {
  pg: PrivatePostgres;
  redis: PrivateRedis;
  databaseUrl: string;
  masterKey: string;
  /** The CA every node's certificate chains to (all nodes present one certificate, as behind a balancer). */
  ca: string;
  nodes: ChildServer[];
  /** Starts one more node (its id, extra environment). */
  startNode(nodeId: string, env?: Record<string, string>, args?: string[]): Promise<ChildServer>;
  /**
   * Stops a node gracefully (SIGTERM) and starts it again with the same id, data dir and ports
   * (as a rolling upgrade does); the new process replaces the old one in `nodes`.
   */
  restartNode(node: ChildServer): Promise<ChildServer>;
  stop(): Promise<void>;
}

export async function startTestCluster(nodeIds: string[], env: Record<string, string> = {}): Promise<{ cluster: TestCluster } | { skip: string }> {
  const pgStarted = await startPrivatePostgres();
  if ('skip' in pgStarted) return pgStarted;
  const redisStarted = await startPrivateRedis();
  if ('skip' in redisStarted) {
    await pgStarted.server.stop();
    return redisStarted;
  }
  const pg = pgStarted.server;
  const redis = redisStarted.server;
  const databaseUrl = await pg.createDatabase(`cluster_${process.pid}`);
  const masterKey = randomBytes(32).toString('hex');
  // One certificate for every node (as behind a load balancer): generated once, copied into each data dir.
  const tlsTemplate = makeTempDir('thingauth-cluster-tls-');
  await ensureTlsMaterial({ dataDir: tlsTemplate, hostnames: [] });
  const nodes: ChildServer[] = [];
  const launched = new Map<ChildServer, { env: Record<string, string>; args: string[] }>();
  const startNode = async (nodeId: string, extra: Record<string, string> = {}, args: string[] = [], dir?: string) => {
    const dataDir = dir ?? makeTempDir('thingauth-node-');
    if (!dir) fs.cpSync(path.join(tlsTemplate, 'tls'), path.join(dataDir, 'tls'), { recursive: true });
    const nodeEnv = {
      THINGAUTH_DATABASE_URL: databaseUrl,
      THINGAUTH_REDIS_URL: redis.url,
      THINGAUTH_NODE_ID: nodeId,
      THINGAUTH_MASTER_KEY: masterKey,
      THINGAUTH_KEEPALIVE_MIN_SECONDS: '2',
      THINGAUTH_DATABASE_POOL_SIZE: '4',
      THINGAUTH_LOG_LEVEL: 'info',
      ...env,
      ...extra,
    };
    const node = await spawnServer(dataDir, nodeEnv, args);
    launched.set(node, { env: nodeEnv, args });
    nodes.push(node);
    return node;
  };
  const restartNode = async (old: ChildServer): Promise<ChildServer> => {
    const how = launched.get(old);
    if (!how) throw new Error('not a node of this cluster');
    old.proc.kill('SIGTERM');
    await old.exited;
    const samePorts = {
      THINGAUTH_HTTP_PORT: String(old.ports['management-http']),
      THINGAUTH_HTTPS_PORT: String(old.ports['device-https']),
      THINGAUTH_MQTT_PORT: String(old.ports.mqtt),
      THINGAUTH_MQTTS_PORT: String(old.ports.mqtts),
      THINGAUTH_WS_PORT: String(old.ports['mqtt-ws']),
      THINGAUTH_WSS_PORT: String(old.ports['mqtt-wss']),
    };
    nodes.splice(nodes.indexOf(old), 1);
    return startNode(how.env.THINGAUTH_NODE_ID!, { ...how.env, ...samePorts }, how.args, old.dataDir);
  };
  const cluster: TestCluster = {
    pg,
    redis,
    databaseUrl,
    masterKey,
    ca: fs.readFileSync(path.join(tlsTemplate, 'tls', 'ca.pem'), 'utf8'),
    nodes,
    startNode,
    restartNode,
    async stop() {
      await Promise.all(
        nodes.map(async (n) => {
          if (n.proc.exitCode === null && n.proc.signalCode === null) {
            n.proc.kill('SIGTERM');
            const t = setTimeout(() => n.proc.kill('SIGKILL'), 15_000);
            await n.exited;
            clearTimeout(t);
          }
        }),
      );
      await redis.stop();
      await pg.stop();
    },
  };
  try {
    for (const id of nodeIds) await startNode(id);
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return { cluster };
}

/** A product and a device created through one node's API. */
export async function createDeviceOn(node: ChildServer, product: Record<string, unknown> = {}): Promise<DeviceCredentials & { iotId: string }> {
  const p = await node.request('POST', '/api/v1/products', { productName: 'cluster product', ...product });
  if (p.status !== 201) throw new Error(`product: ${p.status} ${JSON.stringify(p.body)}`);
  return createDeviceIn(node, p.body.productKey);
}

export async function createDeviceIn(node: ChildServer, productKey: string): Promise<DeviceCredentials & { iotId: string }> {
  const d = await node.request('POST', `/api/v1/products/${productKey}/devices`, {});
  if (d.status !== 201) throw new Error(`device: ${d.status} ${JSON.stringify(d.body)}`);
  return { productKey, deviceName: d.body.deviceName, deviceSecret: d.body.deviceSecret, iotId: d.body.iotId };
}

/** The CONNECT fields of a device (hmacsha256, securemode=3, no timestamp). */
export function deviceConnect(dev: DeviceCredentials, clientIdBase = `${dev.productKey}.${dev.deviceName}`): { clientId: string; username: string; password: string } {
  const content = `clientId${clientIdBase}deviceName${dev.deviceName}productKey${dev.productKey}`;
  return {
    clientId: `${clientIdBase}|securemode=3,signmethod=hmacsha256|`,
    username: `${dev.deviceName}&${dev.productKey}`,
    password: createHmac('sha256', dev.deviceSecret).update(content).digest('hex'),
  };
}

/** Connects over plain MQTT to a port; resolves on CONNACK 0. */
export function connectTo(port: number, fields: { clientId: string; username: string; password: string }, o: Partial<IClientOptions> = {}): Promise<MqttClient> {
  return connectUrl(`mqtt://127.0.0.1:${port}`, { ...fields, keepalive: 60, reconnectPeriod: 0, connectTimeout: 5_000, ...o });
}

/** Connects expecting a refusal: the CONNACK code. */
export async function refusalFrom(port: number, fields: { clientId: string; username: string; password: string }, o: Partial<IClientOptions> = {}): Promise<number | undefined> {
  return (await refusalAt(`mqtt://127.0.0.1:${port}`, { ...fields, keepalive: 60, reconnectPeriod: 0, connectTimeout: 5_000, ...o })).code;
}

/** MQTT clients a test file opens, all ended after it. */
export function clientTracker(): { track<T extends MqttClient>(c: T): T; endAll(): Promise<void> } {
  const clients: MqttClient[] = [];
  return {
    track: (c) => {
      clients.push(c);
      return c;
    },
    endAll: async () => {
      for (const c of clients.splice(0)) await endClient(c);
    },
  };
}

/** An application credential (through a node's API) connected to a port with its signed password. */
export async function connectAppTo(node: ChildServer, port: number, productKeys: string[], o: Partial<IClientOptions> = {}): Promise<MqttClient> {
  const app = await node.request('POST', '/api/v1/applications', { name: `cluster-app-${randomBytes(3).toString('hex')}`, productKeys });
  if (app.status !== 201) throw new Error(`application: ${app.status} ${JSON.stringify(app.body)}`);
  const clientId = `app-${app.body.appKey}-${randomBytes(2).toString('hex')}`;
  return connectTo(port, { clientId, username: `app:${app.body.appKey}`, password: createHmac('sha256', app.body.appSecret).update(`appKey${app.body.appKey}clientId${clientId}`).digest('hex') }, o);
}
