/**
 * Issue 14's benchmark, side by side in one run on this machine:
 * - connect storm through HAProxy (TCP, PROXY v2 to thingauth) to one cluster node, to
 *   `serve --workers 2`, and to Mosquitto (HAProxy in front too, without PROXY: Mosquitto 2.0
 *   does not read it), same devices, same CONNECT bytes, same concurrency; CPU per connect of
 *   the server processes (workers included) and of HAProxy;
 * - cross-node message latency: a device on node A publishes, an application on node B
 *   receives (Redis pub/sub between them), p50/p99;
 * - RSS per held connection on one cluster node.
 * The nodes share a private PostgreSQL (fsync on) and a private Redis; everything, the load
 * generator included, shares the machine's cores, so the figures are per machine, not per node.
 */
import { createHmac } from 'node:crypto';
import path from 'node:path';
import mqtt from 'mqtt';
import { renderClusterHaproxyCfg } from '../lib/haproxy-cfg.js';
import { startHaproxy, type PrivateHaproxy } from '../lib/private-haproxy.js';
import { startPostgresServer, type PrivatePostgres } from '../lib/private-postgres.js';
import { startRedisServer, type PrivateRedis } from '../lib/private-redis.js';
import { connectPackets, deviceCredentials, makeFleet, type VirtualDevice } from '../lib/fleet.js';
import { FigureSink, note } from '../lib/emit.js';
import { LatencyRecorder, round } from '../lib/histogram.js';
import { connectStorm, holdConnections, type StormResult, type Target } from '../lib/loadgen.js';
import { mosquittoMissingReason, startMosquitto, type RunningMosquitto } from '../lib/mosquitto.js';
import { readProcTreeCpuMs } from '../lib/proc.js';
import { BENCH_ADMIN_TOKEN, benchProduct, benchTls, provision, startThingAuthProcess, useBenchDatabaseServer, type RunningThingAuthProcess } from '../lib/thingauth.js';

export interface ClusterSizes {
  stormN: number;
  concurrency: number;
  messages: number;
  heldN: number;
  timeLimitMs: number;
}

const PRODUCT_KEY = 'a1BenchClust';

interface StormTarget {
  name: string;
  /** Processes whose CPU counts as the server's (trees: workers included). */
  pids: () => number[];
  port: number;
}

function cpuOf(pids: number[]): number {
  return pids.reduce((s, p) => s + (readProcTreeCpuMs(p) ?? 0), 0);
}

/** The run's Redis and PostgreSQL processes: their CPU per connect is the cluster's cost too. */
let sharedPids: { redis: () => number | undefined; postgres: () => number | undefined } = { redis: () => undefined, postgres: () => undefined };

async function storm(sink: FigureSink, t: StormTarget, hap: PrivateHaproxy, packets: Buffer[], c: number, timeLimitMs: number): Promise<StormResult> {
  const s0 = cpuOf(t.pids());
  const h0 = readProcTreeCpuMs(hap.pid()!) ?? 0;
  const shared = () => ({ redis: readProcTreeCpuMs(sharedPids.redis() ?? -1) ?? 0, postgres: readProcTreeCpuMs(sharedPids.postgres() ?? -1) ?? 0 });
  const x0 = shared();
  const r = await connectStorm({ target: { host: '127.0.0.1', port: t.port }, packets, concurrency: c, timeLimitMs });
  const serverMs = cpuOf(t.pids()) - s0;
  const haproxyMs = (readProcTreeCpuMs(hap.pid()!) ?? 0) - h0;
  const x1 = shared();
  sink.emit({
    bench: 'cluster-connect-storm',
    target: t.name,
    via: 'haproxy',
    n: packets.length,
    c,
    accepted: r.accepted,
    refused: r.refused,
    errors: r.errors,
    ...(r.errors ? { errorKinds: r.errorKinds } : {}),
    ...(r.refused ? { refusedCodes: r.refusedCodes } : {}),
    connectsPerSec: round(r.connectsPerSec, 0),
    p50Ms: round(r.p50Ms, 2),
    p99Ms: round(r.p99Ms, 2),
    serverCpuUsPerConnect: r.accepted > 0 ? round((serverMs * 1000) / r.accepted, 0) : null,
    haproxyCpuUsPerConnect: r.accepted > 0 ? round((haproxyMs * 1000) / r.accepted, 0) : null,
    ...(t.name.startsWith('thingauth')
      ? {
          redisCpuUsPerConnect: r.accepted > 0 ? round(((x1.redis - x0.redis) * 1000) / r.accepted, 0) : null,
          postgresCpuUsPerConnect: r.accepted > 0 ? round(((x1.postgres - x0.postgres) * 1000) / r.accepted, 0) : null,
        }
      : {}),
  });
  return r;
}

function haproxyFor(name: string, backend: { mqtt: number; management?: number }, proxyProtocol: boolean): Promise<PrivateHaproxy> {
  return startHaproxy({
    ports: ['mqtt'] as const,
    render: ({ ports }) => {
      if (proxyProtocol) {
        const cfg = renderClusterHaproxyCfg({
          bind: '127.0.0.1',
          front: { mqtt: String(ports.mqtt), mqtts: '0', deviceHttps: '0' },
          nodes: [{ name, host: '127.0.0.1', mqtt: String(backend.mqtt), mqtts: '1', deviceHttps: '1', management: String(backend.management) }],
          checkInterval: '1s',
        });
        // Only the MQTT frontend and its backend.
        return cfg.slice(0, cfg.indexOf('frontend mqtts\n'));
      }
      return `global

defaults
    mode tcp
    timeout connect 5s
    timeout client 1900s
    timeout server 1900s

frontend mqtt
    bind 127.0.0.1:${ports.mqtt}
    default_backend mosquitto

backend mosquitto
    server ${name} 127.0.0.1:${backend.mqtt} check
`;
    },
  });
}

export async function runClusterScenarios(sink: FigureSink, sizes: ClusterSizes, workDir: string, opts: { mosquitto: boolean }): Promise<void> {
  let pg: PrivatePostgres | undefined;
  let redis: PrivateRedis | undefined;
  const running: { stop(): Promise<void> }[] = [];
  try {
    pg = await startPostgresServer({ durable: true, settings: { shared_buffers: '1GB' } });
    redis = await startRedisServer();
    const [pgNow, redisNow] = [pg, redis];
    sharedPids = { redis: () => redisNow.pid(), postgres: () => pgNow.postmasterPid() };
    useBenchDatabaseServer(pg);
    const dataDir = path.join(workDir, 'thingauth-cluster');
    const fleetSize = Math.max(sizes.stormN, sizes.heldN);
    note(`cluster: provisioning ${fleetSize} devices into PostgreSQL`);
    const fleet = makeFleet(PRODUCT_KEY, fleetSize, 'bench-cluster-seed');
    await provision(dataDir, [{ product: benchProduct(PRODUCT_KEY, 'benchClusterSecret01'), devices: fleet }]);
    await benchTls(dataDir);
    const packets = connectPackets(fleet.slice(0, sizes.stormN), 3);
    const env = (nodeId: string): Record<string, string> => ({
      THINGAUTH_REDIS_URL: redis!.url,
      THINGAUTH_NODE_ID: nodeId,
      THINGAUTH_PROXY_PROTOCOL_FROM: '127.0.0.1',
      THINGAUTH_LOG_LEVEL: 'warn',
    });
    sink.emit({ bench: 'cluster-setup', postgres: 'private, fsync on', redis: 'private, no persistence', haproxy: 'private, TCP mode, PROXY v2 to thingauth', devices: fleetSize });

    // 1. Connect storms through HAProxy, one target at a time (fresh processes).
    interface Started {
      t: StormTarget;
      hap: PrivateHaproxy;
      stop(): Promise<void>;
    }
    const targets: { name: string; start: () => Promise<Started> }[] = [
      {
        // The same node without Redis (PostgreSQL only): what the cluster's shared state costs per connect.
        name: 'thingauth-1-node-no-redis',
        start: async () => {
          const { THINGAUTH_REDIS_URL: _none, ...alone } = env('bench-0');
          const ta = await startThingAuthProcess({ dataDir, env: alone, logLevel: 'warn' });
          const hap = await haproxyFor('bench-0', { mqtt: ta.ports.mqtt, management: ta.ports.http }, true);
          return { t: { name: 'thingauth-1-node-no-redis', pids: () => [ta.pid], port: hap.ports.mqtt! }, hap, stop: async () => { await hap.stop(); await ta.stop(); } };
        },
      },
      {
        name: 'thingauth-1-node',
        start: async () => {
          const ta = await startThingAuthProcess({ dataDir, env: env('bench-1'), logLevel: 'warn' });
          const hap = await haproxyFor('bench-1', { mqtt: ta.ports.mqtt, management: ta.ports.http }, true);
          return { t: { name: 'thingauth-1-node', pids: () => [ta.pid], port: hap.ports.mqtt! }, hap, stop: async () => { await hap.stop(); await ta.stop(); } };
        },
      },
      {
        name: 'thingauth-workers-2',
        start: async () => {
          const ta = await startThingAuthProcess({ dataDir, env: env('bench-w'), logLevel: 'warn', serveArgs: ['--workers', '2'] });
          const hap = await haproxyFor('bench-w', { mqtt: ta.ports.mqtt, management: ta.ports.http }, true);
          return { t: { name: 'thingauth-workers-2', pids: () => [ta.pid], port: hap.ports.mqtt! }, hap, stop: async () => { await hap.stop(); await ta.stop(); } };
        },
      },
    ];
    const mosquittoMissing = opts.mosquitto ? mosquittoMissingReason() : 'Mosquitto comparison switched off (--no-mosquitto)';
    if (!mosquittoMissing) {
      targets.push({
        name: 'mosquitto',
        start: async () => {
          const users = fleet.slice(0, sizes.stormN).map((d) => {
            const c = deviceCredentials(d, 3);
            return { username: c.username, password: c.password };
          });
          const mq: RunningMosquitto = await startMosquitto({ dir: path.join(workDir, 'mosquitto-cluster'), users });
          const hap = await haproxyFor('mosquitto', { mqtt: mq.port }, false);
          return { t: { name: 'mosquitto', pids: () => [mq.pid], port: hap.ports.mqtt! }, hap, stop: async () => { await hap.stop(); await mq.stop(); } };
        },
      });
    } else {
      sink.skip('cluster-connect-storm', mosquittoMissing, { target: 'mosquitto' });
    }
    for (const target of targets) {
      note(`cluster: storm via HAProxy to ${target.name}`);
      const started = await target.start();
      try {
        // Warm-up (not reported), then the measured storm.
        await connectStorm({ target: { host: '127.0.0.1', port: started.t.port }, packets: packets.slice(0, Math.min(1_000, packets.length)), concurrency: 50, timeLimitMs: sizes.timeLimitMs });
        await storm(sink, started.t, started.hap, packets, sizes.concurrency, sizes.timeLimitMs);
      } finally {
        await started.stop();
      }
    }

    // 2. Cross-node latency and held connections: two nodes, directly (no HAProxy).
    note('cluster: cross-node latency and RSS per held connection');
    const nodeEnv = (id: string) => ({ ...env(id), THINGAUTH_PROXY_PROTOCOL_FROM: '' });
    const a = await startThingAuthProcess({ dataDir, env: nodeEnv('bench-a'), logLevel: 'warn' });
    running.push(a);
    const b = await startThingAuthProcess({ dataDir, env: nodeEnv('bench-b'), logLevel: 'warn' });
    running.push(b);
    await crossNodeLatency(sink, a, b, fleet[0]!, sizes.messages);
    await heldRss(sink, a, connectPackets(fleet.slice(1, 1 + sizes.heldN), 3, 1200), sizes.timeLimitMs);
  } finally {
    for (const r of running.reverse()) await r.stop().catch(() => undefined);
    useBenchDatabaseServer(undefined);
    await redis?.stop();
    await pg?.stop();
  }
}

async function crossNodeLatency(sink: FigureSink, a: RunningThingAuthProcess, b: RunningThingAuthProcess, device: VirtualDevice, messages: number): Promise<void> {
  const appRes = await fetch(`http://127.0.0.1:${b.ports.http}/api/v1/applications`, {
    method: 'POST',
    headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'bench-latency', productKeys: [PRODUCT_KEY] }),
  });
  const app = (await appRes.json()) as { appKey: string; appSecret: string };
  const appClientId = `bench-app-${app.appKey}`;
  const sub = await mqttConnect(b.ports.mqtt, { clientId: appClientId, username: `app:${app.appKey}`, password: createHmac('sha256', app.appSecret).update(`appKey${app.appKey}clientId${appClientId}`).digest('hex') });
  const creds = deviceCredentials(device, 3);
  const pub = await mqttConnect(a.ports.mqtt, { clientId: creds.clientId, username: creds.username, password: creds.password });
  const topic = `/${PRODUCT_KEY}/${device.deviceName}/user/update`;
  await new Promise<void>((resolve, reject) => sub.subscribe(topic, { qos: 0 }, (e) => (e ? reject(e) : resolve())));
  const lat = new LatencyRecorder(messages);
  let received = 0;
  const done = new Promise<void>((resolve) => {
    sub.on('message', (_t, payload) => {
      const sent = Number(payload.toString());
      lat.record(Number(process.hrtime.bigint() - BigInt(sent)) / 1e6);
      if (++received >= messages) resolve();
    });
  });
  // 500 messages per second: latency, not throughput.
  for (let i = 0; i < messages; i++) {
    pub.publish(topic, String(process.hrtime.bigint()), { qos: 0 });
    if (i % 50 === 49) await new Promise((r) => setTimeout(r, 100));
  }
  await Promise.race([done, new Promise((r) => setTimeout(r, 10_000))]);
  sink.emit({ bench: 'cluster-cross-node-latency', path: 'device on node A -> Redis -> application on node B', messages, received, ...lat.summary() });
  sub.end(true);
  pub.end(true);
}

async function heldRss(sink: FigureSink, node: RunningThingAuthProcess, packets: Buffer[], timeLimitMs: number): Promise<void> {
  await new Promise((r) => setTimeout(r, 500));
  const before = node.memory()!.rssKiB;
  const held = await holdConnections({ target: { host: '127.0.0.1', port: node.ports.mqtt } as Target, packets, concurrency: 100, timeLimitMs });
  await new Promise((r) => setTimeout(r, 2_000));
  const after = node.memory()!.rssKiB;
  const open = held.open();
  sink.emit({ bench: 'cluster-held-connections', target: 'thingauth cluster node (Redis persistence)', n: packets.length, held: open, rssBeforeKiB: before, rssAfterKiB: after, kibPerConnection: open > 0 ? round((after - before) / open, 2) : null });
  await held.close();
}

function mqttConnect(port: number, o: { clientId: string; username: string; password: string }): Promise<mqtt.MqttClient> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { ...o, reconnectPeriod: 0, keepalive: 60 });
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}

