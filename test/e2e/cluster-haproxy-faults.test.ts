/**
 * Issue 14's fault proof: three nodes (private PostgreSQL + Redis) behind a private HAProxy
 * (bench/lib/haproxy-cfg.ts renderClusterHaproxyCfg: every node in every backend, PROXY v2,
 * health check on /healthz), 1,000 devices (mqtt.js, reconnecting) logged in through it.
 * - SIGKILL the node holding the most sessions while HTTPS registrations run through HAProxy:
 *   within 30 s every device is back through the survivors, each exactly once ONLINE in the
 *   registry, no duplicate session, none left ONLINE on the dead node; every registration
 *   answered (retried over the failure) and each returned DeviceSecret logs in.
 * - Redis killed and restarted while the devices publish: no node crashes, the sessions stay,
 *   and the cluster converges (health ok, new logins and cross-node delivery again).
 */
import assert from 'node:assert/strict';
import https from 'node:https';
import { after, before, describe, it, test } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import pg from 'pg';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CLUSTER_DOC_EXAMPLE, renderClusterHaproxyCfg } from '../../bench/lib/haproxy-cfg.js';
import { startPrivateHaproxy, type PrivateHaproxy } from '../helpers/haproxy.js';
import { connectAppTo, connectTo, createDeviceIn, deviceConnect, startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { endClient, eventually, nextMessage, subscribe } from '../helpers/mqtt.js';
import { registerForm } from './registration-helpers.js';
import type { ChildServer } from './security-child-server.js';

const DEVICES = 1_000;
const REGISTRATIONS = 60;
const PS = 'clusterFaultProductSecret01';

const started = await startTestCluster(['ha-1', 'ha-2', 'ha-3'], {
  THINGAUTH_PROXY_PROTOCOL_FROM: '127.0.0.1',
  // The test's 1,000 devices reach thingauth from one address (through HAProxy's header).
  THINGAUTH_MQTT_PENDING_PER_SOURCE: '0',
  THINGAUTH_REGISTRATION_RATE_PER_SOURCE: '0',
  THINGAUTH_HTTP_CONNECTIONS_PER_SOURCE: '0',
});

if ('skip' in started) {
  test('cluster behind HAProxy', { skip: started.skip }, () => undefined);
} else {
  const cluster: TestCluster = started.cluster;
  let hap: PrivateHaproxy;
  let db: pg.Pool;
  const clients: MqttClient[] = [];
  const connects = new Map<MqttClient, number>();
  /** Per device: when its connection last closed, and the longest time it was offline. */
  const closedAt = new Map<MqttClient, number>();
  const longestGap = new Map<MqttClient, number>();
  let productKey = '';
  let creds: { deviceName: string; deviceSecret: string }[] = [];

  const live = () => cluster.nodes.filter((n) => n.proc.exitCode === null && n.proc.signalCode === null);
  const onlineRows = async () =>
    (await db.query<{ online: number; nodes: string[] | null }>('SELECT COUNT(*)::int AS online, array_agg(DISTINCT online_node) AS nodes FROM devices WHERE product_key = $1 AND online', [productKey])).rows[0]!;
  const sessionsOf = async (node: ChildServer) => {
    const r = await node.request('GET', '/api/v1/nodes');
    return (r.body.nodes as { nodeId: string; sessions: number }[]) ?? [];
  };

  before(async () => {
    const [a] = cluster.nodes;
    const h = await startPrivateHaproxy({
      ports: ['mqtt', 'mqtts', 'deviceHttps'] as const,
      render: ({ ports }) =>
        renderClusterHaproxyCfg({
          bind: '127.0.0.1',
          front: { mqtt: String(ports.mqtt), mqtts: String(ports.mqtts), deviceHttps: String(ports.deviceHttps) },
          nodes: cluster.nodes.map((n, i) => ({
            name: `ha-${i + 1}`,
            host: '127.0.0.1',
            mqtt: String(n.ports.mqtt),
            mqtts: String(n.ports.mqtts),
            deviceHttps: String(n.ports['device-https']),
            management: String(n.ports['management-http']),
          })),
          checkInterval: '500ms',
        }),
    });
    if ('skip' in h) throw new Error(h.skip);
    hap = h.server;
    db = new pg.Pool({ connectionString: cluster.databaseUrl, max: 2 });
    const p = await a!.request('POST', '/api/v1/products', { productName: 'fault fleet', productSecret: PS, dynamicRegistration: true });
    assert.equal(p.status, 201, JSON.stringify(p.body));
    productKey = p.body.productKey;
    const batch = await a!.request('POST', `/api/v1/products/${productKey}/devices/batch`, { count: DEVICES });
    assert.equal(batch.status, 201, JSON.stringify(batch.body).slice(0, 300));
    creds = batch.body.devices;
  });

  after(async () => {
    await Promise.all(clients.map((c) => endClient(c)));
    await db?.end();
    await hap?.stop();
    await cluster.stop();
  });

  describe('1,000 devices through HAProxy', () => {
    it('docs/deployment.md shows this configuration verbatim (rendered with example addresses)', () => {
      const doc = fs.readFileSync(fileURLToPath(new URL('../../../docs/deployment.md', import.meta.url)), 'utf8');
      assert.ok(doc.includes(renderClusterHaproxyCfg(CLUSTER_DOC_EXAMPLE)), 'docs/deployment.md does not hold renderClusterHaproxyCfg(CLUSTER_DOC_EXAMPLE) verbatim');
    });

    it('all log in through HAProxy, spread over the three nodes', async () => {
      for (let i = 0; i < creds.length; i += 100) {
        await Promise.all(
          creds.slice(i, i + 100).map(
            (d) =>
              new Promise<void>((resolve, reject) => {
                const c = mqtt.connect(`mqtt://127.0.0.1:${hap.ports.mqtt}`, { ...deviceConnect({ productKey, ...d }), keepalive: 60, reconnectPeriod: 500, connectTimeout: 5_000 });
                connects.set(c, 0);
                c.on('connect', () => {
                  connects.set(c, (connects.get(c) ?? 0) + 1);
                  const since = closedAt.get(c);
                  if (since !== undefined) longestGap.set(c, Math.max(longestGap.get(c) ?? 0, Date.now() - since));
                  closedAt.delete(c);
                });
                c.on('close', () => {
                  if (!closedAt.has(c)) closedAt.set(c, Date.now());
                });
                c.once('connect', () => resolve());
                c.once('error', (e) => reject(e));
                c.on('error', () => undefined);
                clients.push(c);
              }),
          ),
        );
      }
      await eventually(async () => (await onlineRows()).online === DEVICES, 15_000);
      const per = await eventually(async () => {
        const list = await sessionsOf(cluster.nodes[0]!);
        return list.length === 3 && list.every((n) => n.sessions > 0) ? list : undefined;
      }, 5_000);
      assert.ok(per.every((n) => n.sessions > 0), `sessions per node: ${per.map((n) => `${n.nodeId}=${n.sessions}`).join(', ')}`);
      // Node records are refreshed every second: wait for a beat that counts them all.
      await eventually(async () => (await sessionsOf(cluster.nodes[0]!)).reduce((s, n) => s + n.sessions, 0) === DEVICES, 5_000);
    });

    it('a rolling restart of every node (drain, restart, undrain-free): no device offline longer than its reconnect delay plus a connect', async () => {
      for (const c of clients) connects.set(c, 0);
      const order = [...cluster.nodes];
      for (const node of order) {
        const nodeId = /"nodeId":"([^"]+)"/.exec(node.logs.find((l) => l.includes('joined')) ?? '')?.[1];
        assert.ok(nodeId, 'node id from the start log');
        const other = cluster.nodes.find((n) => n !== node)!;
        const drained = await other.request('POST', `/api/v1/nodes/${nodeId}/drain`);
        assert.equal(drained.status, 202);
        await eventually(async () => {
          const list = await sessionsOf(other);
          return list.find((n) => n.nodeId === nodeId)?.sessions === 0;
        }, 20_000);
        await cluster.restartNode(node);
        await eventually(async () => clients.every((c) => c.connected), 10_000);
      }
      await eventually(async () => (await onlineRows()).online === DEVICES, 10_000);
      const gaps = [...longestGap.values()];
      const worst = Math.max(...gaps);
      const sorted = [...gaps].sort((x, y) => x - y);
      console.log(`# rolling restart of 3 nodes: ${gaps.length} devices moved, offline p50 ${sorted[Math.floor(sorted.length / 2)]} ms, max ${worst} ms`);
      // mqtt.js reconnects 500 ms after a close; the new login through HAProxy takes the rest.
      assert.ok(worst <= 3_000, `longest time a device was offline: ${worst} ms`);
      assert.ok([...connects.values()].every((n) => n <= 3), 'each device moved at most once per restarted node');
      const per = await eventually(async () => {
        const list = await sessionsOf(cluster.nodes[0]!);
        return list.length === 3 && list.reduce((s, n) => s + n.sessions, 0) === DEVICES ? list : undefined;
      }, 10_000);
      assert.equal(per.length, 3);
    });

    it('SIGKILL of the busiest node: every device back within 30 s, once, on the survivors; registrations lose nothing', async () => {
      for (const c of clients) connects.set(c, 1);
      const per = await sessionsOf(cluster.nodes[0]!);
      const busiest = per.reduce((m, n) => (n.sessions > m.sessions ? n : m));
      const victim = cluster.nodes.find((n) => n.logs.some((l) => l.includes(`"nodeId":"${busiest.nodeId}"`)))!;
      assert.ok(victim, `node ${busiest.nodeId} found`);
      const survivor = cluster.nodes.find((n) => n !== victim)!;

      // Pre-created names registered over HTTPS through HAProxy while the node dies.
      const names = (await survivor.request('POST', `/api/v1/products/${productKey}/devices/batch`, { count: REGISTRATIONS })).body.devices.map((d: { deviceName: string }) => d.deviceName) as string[];
      const register = async (deviceName: string): Promise<string> => {
        for (let attempt = 0; attempt < 50; attempt++) {
          const answer = await new Promise<{ code?: number; secret?: string } | undefined>((resolve) => {
            const body = registerForm(productKey, deviceName, PS, `r${attempt}x${deviceName.slice(0, 6)}`);
            const req = https.request(
              { host: '127.0.0.1', port: hap.ports.deviceHttps, path: '/auth/register/device', method: 'POST', ca: cluster.ca, servername: 'localhost', agent: false, headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } },
              (res) => {
                let text = '';
                res.on('data', (c: Buffer) => (text += c.toString()));
                res.on('end', () => {
                  try {
                    const j = JSON.parse(text) as { code: number; data?: { deviceSecret?: string } };
                    resolve({ code: j.code, secret: j.data?.deviceSecret });
                  } catch {
                    resolve(undefined);
                  }
                });
                res.on('error', () => resolve(undefined));
              },
            );
            req.setTimeout(5_000, () => req.destroy());
            req.on('error', () => resolve(undefined));
            req.end(body);
          });
          if (answer?.code === 200 && answer.secret) return answer.secret;
          await new Promise((r) => setTimeout(r, 200));
        }
        throw new Error(`registration of ${deviceName} never answered`);
      };
      const registrations = Promise.all(names.map(async (n, i) => {
        await new Promise((r) => setTimeout(r, i * 25));
        return { deviceName: n, deviceSecret: await register(n) };
      }));

      await new Promise((r) => setTimeout(r, 300));
      const killedAt = Date.now();
      victim.proc.kill('SIGKILL');
      await victim.exited;

      await eventually(async () => {
        if (!clients.every((c) => c.connected)) return false;
        const rows = await onlineRows();
        return rows.online === DEVICES && !(rows.nodes ?? []).includes(busiest.nodeId);
      }, 30_000);
      const took = Date.now() - killedAt;
      console.log(`# SIGKILL of ${busiest.nodeId} (${busiest.sessions} sessions): all ${DEVICES} devices back and ONLINE once after ${took} ms`);
      assert.ok(took <= 30_000, `back after ${took} ms`);
      // No duplicate session: the survivors hold exactly one session per device.
      const after = await eventually(async () => {
        const list = await sessionsOf(survivor);
        const sum = list.reduce((s, n) => s + n.sessions, 0);
        return sum === DEVICES && list.length === 2 ? list : undefined;
      }, 10_000);
      assert.deepEqual(after.map((n) => n.nodeId).sort(), per.map((n) => n.nodeId).filter((id) => id !== busiest.nodeId).sort());
      const moved = [...connects.values()].filter((n) => n === 2).length;
      assert.ok(moved >= busiest.sessions * 0.9, `${moved} devices reconnected (the dead node held ${busiest.sessions})`);
      assert.ok([...connects.values()].every((n) => n >= 1 && n <= 3), 'no device flapped');

      const registered = await registrations;
      assert.equal(registered.length, REGISTRATIONS);
      // Every returned secret is the stored one: the device logs in with it (through HAProxy).
      for (const d of registered.slice(0, 10)) {
        const c = await connectTo(hap.ports.mqtt, deviceConnect({ productKey, ...d }));
        await endClient(c);
      }
      await eventually(async () => {
        const activated = await db.query<{ n: number }>('SELECT COUNT(*)::int AS n FROM devices WHERE product_key = $1 AND device_name = ANY($2) AND activated_at IS NOT NULL', [productKey, registered.slice(0, 10).map((d) => d.deviceName)]);
        return activated.rows[0]!.n === 10;
      }, 5_000);
    });

    it('Redis killed and restarted while devices publish: no crash, sessions stay, the cluster converges', async () => {
      const nodes = live();
      const publishing = setInterval(() => {
        for (const [i, c] of clients.slice(0, 200).entries()) if (c.connected) c.publish(`/${productKey}/${creds[i]!.deviceName}/user/update`, 'load');
      }, 100);
      try {
        await cluster.redis.kill();
        await eventually(async () => {
          const hs = await Promise.all(nodes.map((n) => fetch(`${n.api}/healthz`).then((r) => r.json() as Promise<{ status: string }>)));
          return hs.every((h) => h.status === 'degraded');
        }, 10_000);
        await new Promise((r) => setTimeout(r, 1_000));
        await cluster.redis.start();
        await eventually(async () => {
          const hs = await Promise.all(nodes.map((n) => fetch(`${n.api}/healthz`).then((r) => r.json() as Promise<{ status: string }>)));
          return hs.every((h) => h.status === 'ok');
        }, 15_000);
      } finally {
        clearInterval(publishing);
      }
      assert.equal(live().length, 2, 'no node crashed');
      assert.ok(clients.every((c) => c.connected), 'the sessions stayed');
      assert.equal((await onlineRows()).online, DEVICES);
      // Converged: the node list is back, a new login (through HAProxy) works, and messages flow again.
      // Redis came back empty: each node's record returns with its next beat (every second).
      await eventually(async () => (await sessionsOf(nodes[0]!)).length === 2, 5_000);
      const dev = await createDeviceIn(nodes[0]!, productKey);
      const viaHap = await connectTo(hap.ports.mqtt, deviceConnect(dev));
      const app = await connectAppTo(nodes[1]!, hap.ports.mqtt, [productKey]);
      try {
        await subscribe(app, `/${productKey}/${dev.deviceName}/user/update`, 0);
        await eventually(async () => {
          const got = nextMessage(app, (t) => t === `/${productKey}/${dev.deviceName}/user/update`, 400).then(() => true, () => false);
          viaHap.publish(`/${productKey}/${dev.deviceName}/user/update`, 'converged');
          return got;
        }, 5_000);
      } finally {
        await endClient(viaHap);
        await endClient(app);
      }
    });
  });
}
