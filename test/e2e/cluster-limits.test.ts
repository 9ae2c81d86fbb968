/**
 * Shared limits across nodes (issue 14): two real thingauth servers (each its own SQLite file,
 * the same products and device names) share one private Redis through THINGAUTH_REDIS_URL.
 * Failed logins from one source spread over both servers start ONE cool-down that both honour;
 * a device's accepted connects are counted together; a source's registration bucket is one
 * bucket. Then Redis is killed mid-run: both servers keep serving (each counting alone,
 * /healthz "degraded", metrics), and once Redis is back they share again by themselves.
 *
 * Distinct source addresses come from binding the client socket to other loopback addresses
 * (127.0.0.0/8 is all loopback on Linux), as in security-throttle.test.ts.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it, test } from 'node:test';
import { MqttClient } from 'mqtt';
import { deviceHttpsPost } from '../helpers/https.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { signedConnect, type SignedConnect } from '../helpers/mqtt.js';
import { startPrivateRedis } from '../helpers/redis.js';
import { startPrivatePostgres } from '../helpers/postgres.js';
import { randomBytes } from 'node:crypto';
import { freePort } from '../../bench/lib/private-redis.js';
import { registerForm } from './registration-helpers.js';
import { attachByApi, connectGateway, loginParams, request, sessionTopic } from './gateway-helpers.js';
import { endClient } from '../helpers/mqtt.js';

const THRESHOLD = 4;
const CONNECT_RATE = 3;
const PS = 'PsClusterLimits1';
const PK = 'a1ClusterLim';
const GW_PK = 'a1ClusterGw1';
const SUB_PK = 'a1ClusterSub';

/** CONNACK return code of a CONNECT over MQTT/TCP from `source` (0 = accepted; the session is closed again). */
function connectCode(server: TestServer, source: string, c: SignedConnect): Promise<number> {
  const port = server.running.listeners['mqtt']!.port;
  return new Promise((resolve, reject) => {
    const client = new MqttClient(() => net.createConnection({ host: '127.0.0.1', port, localAddress: source }), {
      clientId: c.clientId, username: c.username, password: c.password, keepalive: 60, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000,
    });
    let settled = false;
    const settle = (f: () => void) => {
      if (settled) return;
      settled = true;
      client.end(true);
      f();
    };
    client.once('connect', () => settle(() => resolve(0)));
    client.on('error', (err: Error & { code?: number }) => settle(() => (typeof err.code === 'number' ? resolve(err.code) : reject(err))));
    client.once('close', () => settle(() => reject(new Error('closed before CONNACK'))));
  });
}

async function healthz(server: TestServer): Promise<{ status: string; limits?: string }> {
  return (await fetch(`${server.api}/healthz`)).json() as Promise<{ status: string; limits?: string }>;
}

async function metrics(server: TestServer): Promise<string> {
  return (await fetch(`${server.api}/metrics`, { headers: { authorization: `Bearer ${server.adminToken}` } })).text();
}

function metricValue(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const started = await startPrivateRedis();
// The nodes of a cluster share one registry (THINGAUTH_REDIS_URL needs PostgreSQL) and one master key.
const pgStarted = 'skip' in started ? started : await startPrivatePostgres();

if ('skip' in started || 'skip' in pgStarted) {
  test('shared limits across nodes', { skip: 'skip' in started ? started.skip : (pgStarted as { skip: string }).skip }, () => undefined);
} else {
  const redis = started.server;
  const pg = (pgStarted as { server: import('../helpers/postgres.js').PrivatePostgres }).server;
  const databaseUrl = await pg.createDatabase(`limits_${process.pid}`);
  const masterKey = randomBytes(32).toString('hex');
  after(() => pg.stop());

  describe('shared limits across nodes (Redis)', () => {
    const nodes: TestServer[] = [];
    /** Each node's own credentials (the secrets differ per SQLite file; the names are the same). */
    const secrets: Record<string, string>[] = [];
    let a: TestServer;
    let b: TestServer;
    const cred = (node: number, deviceName: string, secret?: string) => ({ productKey: PK, deviceName, deviceSecret: secret ?? secrets[node]![deviceName]! });

    before(async () => {
      for (let i = 0; i < 2; i++) {
        const s = await startTestServer({
          redisUrl: redis.url,
          databaseUrl,
          masterKey,
          loginFailThreshold: String(THRESHOLD),
          loginFailWindowSeconds: '600',
          loginCooldownSeconds: '600',
          deviceConnectRatePerMinute: String(CONNECT_RATE),
          registrationRatePerSourcePerSecond: '1',
        });
        nodes.push(s);
        if (i > 0) {
          // One registry: the devices made through the first node are the second node's too.
          secrets.push(secrets[0]!);
          continue;
        }
        const reg = s.running.ctx.services.registry;
        await reg.createProduct({ productName: 'cluster limits', productKey: PK, productSecret: PS, dynamicRegistration: true });
        const created = await reg.createDevices(PK, { deviceNames: ['victim', 'flapper', 'steady', 'reg-dev', 'after-outage'] });
        // A gateway with one sub-device, the same names on both nodes.
        await reg.createProduct({ productName: 'cluster gateway', productKey: GW_PK, nodeType: 'GATEWAY' });
        await reg.createProduct({ productName: 'cluster sub-device', productKey: SUB_PK, nodeType: 'SUB_DEVICE' });
        const [gw] = await reg.createDevices(GW_PK, { deviceNames: ['gateway'] });
        const [sub] = await reg.createDevices(SUB_PK, { deviceNames: ['sub-1'] });
        await attachByApi(s, { productKey: GW_PK, deviceName: 'gateway', deviceSecret: gw!.deviceSecret }, [{ productKey: SUB_PK, deviceName: 'sub-1', deviceSecret: sub!.deviceSecret }]);
        secrets.push(Object.fromEntries([...created, gw!, sub!].map((d) => [d.deviceName, d.deviceSecret])));
      }
      [a, b] = nodes as [TestServer, TestServer];
    });
    after(async () => {
      for (const s of nodes) await s.stop();
      await redis.stop();
    });

    it('both nodes report shared limits', async () => {
      for (const s of nodes) {
        const h = await healthz(s);
        assert.equal(h.status, 'ok');
        assert.equal(h.limits, 'shared');
      }
      assert.equal(metricValue(await metrics(a), 'thingauth_limiter_redis_up'), 1);
    });

    it('failed logins from one source over both nodes start one cool-down that both honour; the device is not locked out elsewhere', async () => {
      const attacker = '127.0.0.31';
      for (let i = 0; i < THRESHOLD; i++) {
        assert.equal(await connectCode(i % 2 ? b : a, attacker, signedConnect(cred(0, 'victim', `WrongGuess${i}`))), 5, `guess ${i}`);
      }
      // Neither node alone saw THRESHOLD failures, yet the source is refused on both, even with the right secret.
      assert.equal(await connectCode(a, attacker, signedConnect(cred(0, 'victim'))), 5);
      assert.equal(await connectCode(b, attacker, signedConnect(cred(1, 'victim'))), 5);
      const http = await deviceHttpsPost(b, '/auth/register/device', registerForm(PK, 'reg-dev', PS, 'r-attacker'), { 'content-type': 'application/x-www-form-urlencoded' }, { localAddress: attacker });
      assert.equal(http.json.code, 429);
      assert.match(http.json.message, /source throttled/);
      assert.deepEqual(await a.running.ctx.services.loginThrottle.throttledSources(), [attacker]);
      // One cool-down, announced once in the whole cluster: by the node whose failure tripped it (b, the 4th).
      await a.settle();
      await b.settle();
      const announced = async (s: TestServer) => (await s.request('GET', '/api/v1/audit?action=security.source.throttled')).body.items.length;
      // The nodes share one audit (PostgreSQL): one entry, whichever node is asked.
      assert.equal(await announced(a), 1);
      assert.equal(await announced(b), 1);
      // The device alarm counted the device's failures over both nodes, and fired once.
      const alarms = async (s: TestServer) => (await s.request('GET', `/api/v1/audit?productKey=${PK}&deviceName=victim&action=security.device.failures`)).body.items.length;
      assert.equal(await alarms(a), 1);
      // Rule 2 (docs/security.md): a device's failures never lock it out; from its own address it logs in on both nodes.
      assert.equal(await connectCode(a, '127.0.0.1', signedConnect(cred(0, 'victim'))), 0);
      assert.equal(await connectCode(b, '127.0.0.1', signedConnect(cred(1, 'victim'))), 0);
    });

    it('a device\'s accepted connects per minute are counted over both nodes', async () => {
      assert.equal(await connectCode(a, '127.0.0.1', signedConnect(cred(0, 'flapper'))), 0);
      assert.equal(await connectCode(b, '127.0.0.1', signedConnect(cred(1, 'flapper'))), 0);
      assert.equal(await connectCode(a, '127.0.0.1', signedConnect(cred(0, 'flapper'))), 0);
      assert.equal(await connectCode(b, '127.0.0.1', signedConnect(cred(1, 'flapper'))), 5);
      const rec = await b.request('GET', `/api/v1/products/${PK}/devices/flapper`);
      assert.match(rec.body.lastAuthError, /too many connects for this device: at most 3 per minute/);
      // Another device has its own budget.
      assert.equal(await connectCode(b, '127.0.0.1', signedConnect(cred(1, 'steady'))), 0);
    });

    it('a source\'s registration bucket is one bucket over both nodes', async () => {
      const source = '127.0.0.32';
      const post = (s: TestServer, r: string) => deviceHttpsPost(s, '/auth/register/device', registerForm(PK, 'reg-dev', PS, r), { 'content-type': 'application/x-www-form-urlencoded' }, { localAddress: source });
      // 1 per second, burst 2: two on a, and b has nothing left for this source.
      assert.equal((await post(a, 'r1')).json.code, 200);
      assert.equal((await post(a, 'r2')).json.code, 200);
      const refused = (await post(b, 'r3')).json;
      assert.equal(refused.code, 429);
      assert.match(refused.message, /too many registration requests from this address/);
      // Another source is not affected.
      const other = await deviceHttpsPost(b, '/auth/register/device', registerForm(PK, 'reg-dev', PS, 'r4'), { 'content-type': 'application/x-www-form-urlencoded' }, { localAddress: '127.0.0.33' });
      assert.equal(other.json.code, 200);
    });

    it('a sub-device\'s logins per window (5 per minute) are counted over both nodes', async () => {
      // One gateway session at a time (a second login of the gateway on the other node would take
      // the first over): three sub-device logins through it on a, then the gateway moves to b.
      const login = async (gateway: MqttClient) => (await request(gateway, sessionTopic({ productKey: GW_PK, deviceName: 'gateway', deviceSecret: '' }, 'login'), { params: loginParams({ productKey: SUB_PK, deviceName: 'sub-1', deviceSecret: secrets[0]!['sub-1']! }) })).body.code;
      const codes = [];
      for (const i of [0, 1, 0]) {
        const gateway = await connectGateway(nodes[i]!, { productKey: GW_PK, deviceName: 'gateway', deviceSecret: secrets[0]!.gateway! });
        try {
          codes.push(await login(gateway));
          codes.push(await login(gateway));
        } finally {
          await endClient(gateway);
        }
      }
      assert.deepEqual(codes, [200, 200, 200, 200, 200, 429]);
    });

    it('Redis killed mid-run: both nodes keep serving with local limits, say so, and share again by themselves once it is back', async () => {
      await redis.kill();
      // MQTT logins need the cluster (one live session per device cluster-wide): refused with CONNACK 3 on both nodes.
      await until('both nodes see Redis down', async () => (await Promise.all(nodes.map(healthz))).every((h) => h.status === 'degraded'));
      assert.equal(await connectCode(a, '127.0.0.1', signedConnect(cred(0, 'after-outage'))), 3);
      assert.equal(await connectCode(b, '127.0.0.1', signedConnect(cred(1, 'after-outage'))), 3);
      // Registrations (PostgreSQL only) go on, each node applying the limits on its own.
      const source = '127.0.0.36';
      const post = (s: TestServer, r: string) => deviceHttpsPost(s, '/auth/register/device', registerForm(PK, 'reg-dev', PS, r), { 'content-type': 'application/x-www-form-urlencoded' }, { localAddress: source });
      assert.equal((await post(a, 'o1')).json.code, 200);
      assert.equal((await post(a, 'o2')).json.code, 200);
      assert.equal((await post(a, 'o3')).json.code, 429, 'a counted alone and limits the source');
      assert.equal((await post(b, 'o4')).json.code, 200, 'b did not see those requests');
      for (const s of nodes) {
        const h = await healthz(s);
        assert.equal(h.status, 'degraded');
        assert.equal(h.limits, 'local: redis unavailable');
      }
      const m = await metrics(a);
      assert.equal(metricValue(m, 'thingauth_limiter_redis_up'), 0);
      assert.ok(metricValue(m, 'thingauth_limiter_fallback_total') >= 3);
      assert.equal(a.logs.filter((l) => l.includes('"limits.redis.down"')).length, 1, 'one warning per outage');

      await redis.start();
      // Both: the limits shared again, and the cluster's own Redis connections back (logins need them).
      for (const s of nodes) await until('shared limits again', async () => {
        const h = await healthz(s);
        return h.limits === 'shared' && h.status === 'ok';
      });
      assert.equal(a.logs.filter((l) => l.includes('"limits.redis.up"')).length, 1);
      // Shared again (Redis restarted empty): failures over both nodes add up once more.
      const again = '127.0.0.35';
      for (let i = 0; i < THRESHOLD; i++) assert.equal(await connectCode(i % 2 ? a : b, again, signedConnect(cred(0, 'steady', `Again${i}`))), 5);
      assert.equal(await connectCode(a, again, signedConnect(cred(0, 'steady'))), 5);
      assert.equal(await connectCode(b, again, signedConnect(cred(1, 'steady'))), 5);
      // And the source a limited alone during the outage is free again: that count was this node's only.
      assert.equal((await post(a, 'o5')).json.code, 200);
      // MQTT logins are back too.
      assert.equal(await connectCode(a, '127.0.0.1', signedConnect(cred(0, 'after-outage'))), 0);
    });
  });

  describe('a node started while Redis is unreachable', () => {
    it('refuses to start with a message naming Redis (it cannot join the cluster), never the password', async () => {
      const port = await freePort(); // nothing listens there
      await assert.rejects(
        startTestServer({ redisUrl: `redis://:n0tl0gged@127.0.0.1:${port}`, databaseUrl, masterKey }),
        (e: Error) => {
          assert.match(e.message, new RegExp(`cannot reach Redis at redis://127\\.0\\.0\\.1:${port}`));
          assert.ok(!e.message.includes('n0tl0gged'), 'no password in the message');
          return true;
        },
      );
    });
  });
}
