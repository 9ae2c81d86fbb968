/**
 * thingauth on PostgreSQL (issue 13), on a private server for this file (test/helpers/postgres.ts):
 * - a server started with a postgres:// URL serves a device login over MQTT, and its presence
 *   lands in the database;
 * - start fails with a clear message (host, port, error) when the database is unreachable, and
 *   is refused when the database was migrated by a newer thingauth;
 * - two `thingauth serve` processes on one database: parallel creates of one DeviceName (one
 *   wins) and filling a product to its device limit from both (never past it); a nodeType
 *   change or a lowered device limit on one node racing creates on both (issue 13: decided in
 *   the store's transaction).
 * Skipped only when no PostgreSQL server can be started and CI is unset.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it, test } from 'node:test';
import fs from 'node:fs';
import path from 'node:path';
import { generateMasterKey, KeyringCipher } from '../../src/core/secret-cipher.js';
import { generateLocalCa } from '../../src/tls/local-ca.js';
import { loadConfig } from '../../src/config.js';
import { openStore } from '../../src/main.js';
import { POSTGRES_MIGRATIONS } from '../../src/store/postgres/migrations.js';
import { PostgresStore } from '../../src/store/postgres/postgres-store.js';
import mqtt from 'mqtt';
import { connectClient, connectRefusal, createDevice, endClient, eventually, signedConnect } from '../helpers/mqtt.js';
import { startPrivatePostgres } from '../helpers/postgres.js';
import { makeTempDir, startTestServer, type TestServer } from '../helpers/server.js';
import { regnwl, spawnServer, type ChildServer } from './security-child-server.js';

const started = await startPrivatePostgres();

if ('skip' in started) {
  test('thingauth on PostgreSQL', { skip: started.skip }, () => undefined);
} else {
  const pg = started.server;
  after(() => pg.stop());
  let n = 0;
  const freshDatabase = () => pg.createDatabase(`serve_${process.pid}_${++n}`);

  describe('thingauth serve on PostgreSQL', () => {
    let server: TestServer;
    let url: string;
    before(async () => {
      url = await freshDatabase();
      server = await startTestServer({ databaseUrl: url, databasePoolSize: '3' });
    });
    after(async () => {
      await server?.stop();
    });

    it('a device logs in over MQTT; it is ONLINE in the database, and its secret is not stored in plaintext', async () => {
      assert.ok(server.running.ctx.store instanceof PostgresStore, 'the postgres:// URL selected the PostgreSQL adapter');
      assert.equal(server.running.ctx.store.pool.options.max, 3, 'THINGAUTH_DATABASE_POOL_SIZE sizes the pool');
      const dev = await createDevice(server);
      const client = await connectClient(server, 'mqtt', signedConnect(dev));
      try {
        await server.settle();
        const row = await eventually(async () => {
          const r = (await queryDb(url, 'SELECT online, activated_at, device_secret FROM devices WHERE iot_id = $1', [dev.iotId]))[0];
          return r?.online === true ? r : undefined;
        });
        assert.ok(row.activated_at, 'activated on first login');
        assert.ok(!String(row.device_secret).includes(dev.deviceSecret), 'ciphertext only');
        assert.ok(!pg.dump(url.split('/').pop()!).includes(dev.deviceSecret), 'a pg_dump holds no DeviceSecret');
      } finally {
        await endClient(client);
      }
    });
  });

  describe('start-up failures on PostgreSQL', () => {
    it('an unreachable database stops the start with its host, port and the error', async () => {
      // A port nobody listens on: the server's own port after a second database URL is built is
      // not safe to reuse, so take a fresh free one by binding and closing.
      const net = await import('node:net');
      const port = await new Promise<number>((resolve) => {
        const s = net.createServer().listen(0, '127.0.0.1', () => {
          const p = (s.address() as { port: number }).port;
          s.close(() => resolve(p));
        });
      });
      const config = loadConfig({ dataDir: makeTempDir(), databaseUrl: `postgres://thingauth:NotThePassword1@127.0.0.1:${port}/registry` });
      await assert.rejects(openStore(config, generateMasterKey()), (e: Error) => {
        assert.match(e.message, new RegExp(`PostgreSQL database at 127\\.0\\.0\\.1:${port}/registry`));
        assert.match(e.message, /ECONNREFUSED/);
        assert.ok(!e.message.includes('NotThePassword1'), 'the password is never in the message');
        return true;
      });
    });

    it('a database migrated by a newer thingauth is refused with a clear message, and left as it is', async () => {
      const url = await freshDatabase();
      const store = new PostgresStore({ connectionString: url, cipher: new KeyringCipher(generateMasterKey()) });
      await store.migrate();
      await store.pool.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'from the future', 'x')");
      await store.close();
      await assert.rejects(openStore(loadConfig({ dataDir: makeTempDir(), databaseUrl: url }), generateMasterKey()), /schema version 999, newer than this thingauth knows/);
      assert.equal((await queryDb(url, 'SELECT COUNT(*)::int AS n FROM schema_migrations WHERE version = 999'))[0]!.n, 1);
    });

    it('a role that only owns its database (no superuser) migrates and serves (README "Privileges")', async () => {
      const name = `owned_${process.pid}`;
      await pg.admin('CREATE ROLE thingauth_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE');
      await pg.admin(`CREATE DATABASE "${name}" OWNER thingauth_owner`);
      const url = `postgres://thingauth_owner@${pg.host}:${pg.port}/${name}`;
      const store = (await openStore(loadConfig({ dataDir: makeTempDir(), databaseUrl: url }), generateMasterKey())) as PostgresStore;
      try {
        const [who] = (await store.pool.query('SELECT current_user AS u, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS sup')).rows;
        assert.deepEqual(who, { u: 'thingauth_owner', sup: false });
        await store.createProduct({ productKey: 'a1Owned', productName: 'owned', productSecret: 'OwnedProductSecret1', nodeType: 'DEVICE', dynamicRegistration: false, preRegistrationFree: false, requireTls: false, replayProtection: false, deviceLimit: null, description: '', createdAt: 'x', updatedAt: 'x' });
        const [d] = await store.createDevices('a1Owned', [{ iotId: 'iotOwned1', deviceName: 'owned-1', deviceSecret: 'OwnedDeviceSecret0000000000001' }], 10, 'x');
        assert.deepEqual(await store.markOnline(d!.iotId, 'y'), { activated: true });
        await store.appendAudit([{ at: 'y', action: 'test', actor: 'owner', result: 'ok' }]);
        assert.equal((await store.queryAudit({})).length, 1);
      } finally {
        await store.close();
      }
    });

    it('several nodes migrating the same empty database at once: one migrates, the others find it done', async () => {
      const url = await freshDatabase();
      const stores = Array.from({ length: 4 }, () => new PostgresStore({ connectionString: url, cipher: new KeyringCipher(generateMasterKey()), poolSize: 1 }));
      try {
        await Promise.all(stores.map((s) => s.migrate()));
        const [row] = await queryDb(url, 'SELECT COUNT(*)::int AS n, MAX(version) AS newest FROM schema_migrations');
        assert.equal(row!.n, POSTGRES_MIGRATIONS.length, 'each migration applied once');
        assert.equal(row!.newest, POSTGRES_MIGRATIONS[POSTGRES_MIGRATIONS.length - 1]!.version);
      } finally {
        await Promise.all(stores.map((s) => s.close()));
      }
    });
  });

  describe('TLS to the database (THINGAUTH_DATABASE_CA_FILE, sslmode)', () => {
    let url: string;
    let caFile: string;
    let otherCaFile: string;
    before(async () => {
      url = await freshDatabase();
      const tls = await generateLocalCa([]);
      await pg.enableTls(tls.cert, tls.key);
      const dir = makeTempDir();
      caFile = path.join(dir, 'db-ca.pem');
      fs.writeFileSync(caFile, tls.caCert);
      otherCaFile = path.join(dir, 'other-ca.pem');
      fs.writeFileSync(otherCaFile, (await generateLocalCa([])).caCert);
    });

    /** Opens the store as `thingauth serve` would and says whether its own connection is encrypted. */
    async function encrypted(databaseUrl: string, databaseCaFile?: string): Promise<boolean> {
      const store = (await openStore(loadConfig({ dataDir: makeTempDir(), databaseUrl, databaseCaFile }), generateMasterKey())) as PostgresStore;
      try {
        const r = await store.pool.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
        return r.rows[0]!.ssl === true;
      } finally {
        await store.close();
      }
    }

    it('verify-full with the CA file connects over TLS (127.0.0.1 is in the certificate); so does the CA file alone', async () => {
      assert.equal(await encrypted(`${url}?sslmode=verify-full`, caFile), true);
      assert.equal(await encrypted(url, caFile), true, 'a CA file without sslmode means verify-full');
      assert.equal(await encrypted(`${url}?sslmode=verify-ca`, caFile), true);
    });

    it('a certificate from another CA is refused at start, naming the server', async () => {
      await assert.rejects(encrypted(`${url}?sslmode=verify-full`, otherCaFile), (e: Error) => {
        assert.match(e.message, /PostgreSQL database at 127\.0\.0\.1:\d+\//);
        assert.match(e.message, /certificate/i);
        return true;
      });
    });

    it('require encrypts without checking; disable and no sslmode stay plaintext', async () => {
      assert.equal(await encrypted(`${url}?sslmode=require`), true);
      assert.equal(await encrypted(`${url}?sslmode=disable`), false);
      assert.equal(await encrypted(url), false);
    });
  });

  describe('two thingauth serve processes on one PostgreSQL database', () => {
    const nodes: ChildServer[] & { url?: string } = [];
    before(async () => {
      const url = await freshDatabase();
      nodes.url = url;
      // Both nodes hold the same master key (secrets are shared); each has its own data dir.
      const env = { THINGAUTH_DATABASE_URL: url, THINGAUTH_MASTER_KEY: generateMasterKey().toString('hex'), THINGAUTH_SUB_DEVICE_LIMIT: '3' };
      // One after the other: the second start also proves a migrated database is taken as it is.
      nodes.push(await spawnServer(makeTempDir(), env));
      nodes.push(await spawnServer(makeTempDir(), env));
    });
    after(async () => {
      for (const node of nodes) {
        node.proc.kill('SIGTERM');
        await node.exited;
      }
    });

    it('parallel creates of one DeviceName on both nodes: exactly one succeeds, the others are 409', async () => {
      const p = await nodes[0]!.request('POST', '/api/v1/products', { productName: 'Race one name' });
      assert.equal(p.status, 201, JSON.stringify(p.body));
      const productKey = p.body.productKey as string;
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => nodes[i % 2]!.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: 'contested-name' })),
      );
      assert.deepEqual(results.map((r) => r.status).sort(), [201, ...Array(19).fill(409)].sort(), JSON.stringify(results.map((r) => r.body)));
      const list = await nodes[1]!.request('GET', `/api/v1/products/${productKey}/devices`);
      assert.equal(list.body.total, 1);
    });

    it('filling a product to its device limit from both nodes never passes the limit', async () => {
      const p = await nodes[1]!.request('POST', '/api/v1/products', { productName: 'Race the limit', deviceLimit: 7 });
      assert.equal(p.status, 201, JSON.stringify(p.body));
      const productKey = p.body.productKey as string;
      const results = await Promise.all(
        Array.from({ length: 24 }, (_, i) => nodes[i % 2]!.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: `fill-${i}` })),
      );
      const ok = results.filter((r) => r.status === 201);
      assert.equal(ok.length, 7, JSON.stringify(results.map((r) => [r.status, r.body?.code])));
      for (const r of results) if (r.status !== 201) assert.equal(r.status, 422, JSON.stringify(r.body));
      for (const node of nodes) {
        const list = await node.request('GET', `/api/v1/products/${productKey}/devices`);
        assert.equal(list.body.total, 7);
      }
    });

    it('adding sub-devices to one gateway from both nodes at once never passes the sub-device limit', async () => {
      const gwp = await nodes[0]!.request('POST', '/api/v1/products', { productName: 'Race gateway', nodeType: 'GATEWAY' });
      const subp = await nodes[0]!.request('POST', '/api/v1/products', { productName: 'Race subs', nodeType: 'SUB_DEVICE' });
      assert.equal(gwp.status, 201, JSON.stringify(gwp.body));
      assert.equal(subp.status, 201, JSON.stringify(subp.body));
      const gw = gwp.body.productKey as string;
      const sub = subp.body.productKey as string;
      assert.equal((await nodes[0]!.request('POST', `/api/v1/products/${gw}/devices`, { deviceName: 'gw-1' })).status, 201);
      for (let i = 0; i < 10; i++) assert.equal((await nodes[i % 2]!.request('POST', `/api/v1/products/${sub}/devices`, { deviceName: `sub-${i}` })).status, 201);
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          nodes[i % 2]!.request('POST', `/api/v1/products/${gw}/devices/gw-1/sub-devices`, { subDevices: [{ productKey: sub, deviceName: `sub-${i}` }] }),
        ),
      );
      assert.equal(results.filter((r) => r.status === 200).length, 3, JSON.stringify(results.map((r) => [r.status, r.body?.code])));
      for (const r of results) if (r.status !== 200) assert.equal(r.status, 422, JSON.stringify(r.body));
      for (const node of nodes) assert.equal((await node.request('GET', `/api/v1/products/${gw}/devices/gw-1/sub-devices`)).body.total, 3);
    });

    it('concurrent regnwl registrations of one new device on both nodes: one device, one slot, every answer the same credential', async () => {
      const productSecret = 'RaceRegnwlSecret01';
      const p = await nodes[0]!.request('POST', '/api/v1/products', { productName: 'Race regnwl', dynamicRegistration: true, preRegistrationFree: true, productSecret });
      assert.equal(p.status, 201, JSON.stringify(p.body));
      const productKey = p.body.productKey as string;
      const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => regnwl(nodes[i % 2]!, productKey, 'raced-device', productSecret)));
      for (const a of answers) assert.equal(a.error, undefined, String(a.error));
      assert.equal(new Set(answers.map((a) => `${a.clientId} ${a.deviceToken}`)).size, 1, 'racing nodes hand out the same (pending) credential');
      const list = await nodes[1]!.request('GET', `/api/v1/products/${productKey}/devices`);
      assert.equal(list.body.total, 1, 'the device was created once');
      const slots = await queryDb(nodes.url!, 'SELECT COUNT(*)::int AS n FROM device_tokens t JOIN devices d USING (iot_id) WHERE d.product_key = $1', [productKey]);
      assert.equal(slots[0]!.n, 1, 'one credential slot');
    });

    it('a nodeType change on one node racing creates on both: refused once a device exists, never accepted with devices created under the old type', async () => {
      for (let round = 0; round < 3; round++) {
        const p = await nodes[0]!.request('POST', '/api/v1/products', { productName: `Race nodeType ${round}` });
        assert.equal(p.status, 201, JSON.stringify(p.body));
        const productKey = p.body.productKey as string;
        const creates = Array.from({ length: 16 }, (_, i) => nodes[i % 2]!.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: `nt-${i}` }));
        // The change also sets deviceLimit 1: accepted, it leaves room for at most one device
        // created after it, so more than one device beside an accepted change means devices
        // were created under the old nodeType (the check and the update were apart).
        const flip = await nodes[1]!.request('PATCH', `/api/v1/products/${productKey}`, { nodeType: 'GATEWAY', deviceLimit: 1 });
        const results = await Promise.all(creates);
        for (const r of results) assert.ok(r.status === 201 || r.status === 422, JSON.stringify(r.body));
        const total = (await nodes[0]!.request('GET', `/api/v1/products/${productKey}/devices`)).body.total as number;
        assert.equal(total, results.filter((r) => r.status === 201).length);
        const product = (await nodes[0]!.request('GET', `/api/v1/products/${productKey}`)).body;
        if (flip.status === 200) {
          assert.ok(total <= 1, `round ${round}: nodeType changed with ${total} devices`);
          assert.equal(product.nodeType, 'GATEWAY');
        } else {
          assert.equal(flip.status, 409, JSON.stringify(flip.body));
          assert.ok(total > 0);
          assert.equal(product.nodeType, 'DEVICE');
          assert.equal(product.deviceLimit, null, 'the refused change wrote nothing');
        }
      }
    });

    it('a device limit lowered on one node while both create: no create lands after the lower limit is in force', async () => {
      const p = await nodes[0]!.request('POST', '/api/v1/products', { productName: 'Race lowered limit', deviceLimit: 100 });
      assert.equal(p.status, 201, JSON.stringify(p.body));
      const productKey = p.body.productKey as string;
      const creates = Array.from({ length: 20 }, (_, i) => nodes[i % 2]!.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: `ll-${i}` }));
      const lowered = await nodes[1]!.request('PATCH', `/api/v1/products/${productKey}`, { deviceLimit: 1 });
      assert.equal(lowered.status, 200, JSON.stringify(lowered.body));
      // Every create committed before the change is visible now.
      const atChange = (await nodes[0]!.request('GET', `/api/v1/products/${productKey}/devices`)).body.total as number;
      const late = await Promise.all(Array.from({ length: 4 }, (_, i) => nodes[i % 2]!.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: `late-${i}` })));
      const results = [...(await Promise.all(creates)), ...late];
      for (const r of results) assert.ok(r.status === 201 || r.status === 422, JSON.stringify(r.body));
      const total = (await nodes[1]!.request('GET', `/api/v1/products/${productKey}/devices`)).body.total as number;
      assert.ok(total <= Math.max(1, atChange), `${total} devices: ${atChange} when the limit became 1`);
      if (atChange >= 1) for (const r of late) assert.equal(r.status, 422, 'a create after the change is refused');
    });
  });

  describe('presence with several nodes (each node clears only its own devices; a dead one by lease)', () => {
    let a: ChildServer | undefined;
    let b: ChildServer | undefined;
    after(async () => {
      for (const node of [a, b]) {
        if (node && node.proc.exitCode === null && node.proc.signalCode === null) {
          node.proc.kill('SIGTERM');
          await node.exited;
        }
      }
    });

    it('a second node starting leaves the first node\'s device ONLINE; when the first node dies, the second marks it OFFLINE after the lease', async () => {
      const env = {
        THINGAUTH_DATABASE_URL: await freshDatabase(),
        THINGAUTH_MASTER_KEY: generateMasterKey().toString('hex'),
        THINGAUTH_PRESENCE_LEASE_SECONDS: '1',
      };
      a = await spawnServer(makeTempDir(), env);
      const p = await a.request('POST', '/api/v1/products', { productName: 'Presence product' });
      const productKey = p.body.productKey as string;
      const d = await a.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: 'held-by-a' });
      assert.equal(d.status, 201, JSON.stringify(d.body));
      const login = signedConnect({ productKey, deviceName: 'held-by-a', deviceSecret: d.body.deviceSecret });
      const client = mqtt.connect(`mqtt://127.0.0.1:${a.ports['mqtt']}`, { ...login, reconnectPeriod: 0, keepalive: 60 });
      client.on('error', () => undefined);
      try {
        await new Promise<void>((resolve, reject) => (client.once('connect', () => resolve()), client.once('error', reject)));
        const statusOn = async (node: ChildServer) => (await node.request('GET', `/api/v1/products/${productKey}/devices/held-by-a`)).body.status as string;
        await eventually(async () => (await statusOn(a!)) === 'ONLINE', 10_000);

        b = await spawnServer(makeTempDir(), env);
        assert.equal(await statusOn(b), 'ONLINE', 'node B\'s start did not mark node A\'s session offline');

        a.proc.kill('SIGKILL');
        await a.exited;
        // Node A cannot clear its own rows any more: B does, once A's heartbeat is a lease old.
        await eventually(async () => (await statusOn(b!)) === 'OFFLINE', 15_000);
      } finally {
        client.end(true);
      }
    });
  });

  // Last in this file: it stops and restarts the shared private server.
  describe('a change made through one node reaches the other node\'s logins within the cache lifetime', () => {
    let a: TestServer;
    let b: TestServer;
    before(async () => {
      const url = await freshDatabase();
      // One master key for both nodes (the secrets in the shared database are under it).
      const masterKey = generateMasterKey().toString('hex');
      // No per-device connect rate: the logins below are few but close together.
      const settings = { databaseUrl: url, masterKey, cacheTtlSeconds: '1', deviceConnectRatePerMinute: '0' };
      a = await startTestServer(settings);
      b = await startTestServer(settings);
    });
    after(async () => {
      await a?.stop();
      await b?.stop();
    });

    it('a device disabled through node A is refused by node B once B\'s cached record expires (THINGAUTH_CACHE_TTL_SECONDS)', async () => {
      const dev = await createDevice(a);
      // Node B has the device's record cached from this login.
      await endClient(await connectClient(b, 'mqtt', signedConnect(dev)));
      assert.equal((await a.request('POST', `/api/v1/products/${dev.productKey}/devices/${dev.deviceName}/disable`)).status, 200);
      // No event reaches node B (several nodes share only the database): its cache entry expires
      // after a second and the next login reads the disabled record.
      const pastTtl = () => new Promise((r) => setTimeout(r, 1_200));
      await pastTtl();
      assert.equal((await connectRefusal(b, 'mqtt', signedConnect(dev))).code, 5);
      const seen = await b.request('GET', `/api/v1/products/${dev.productKey}/devices/${dev.deviceName}`);
      assert.match(String(seen.body.lastAuthError), /disabled/, 'refused because it is disabled');
      // A rotated secret likewise: the new one works on node B, the old one is refused.
      const other = await createDevice(a);
      await endClient(await connectClient(b, 'mqtt', signedConnect(other)));
      const rotated = await a.request('POST', `/api/v1/products/${other.productKey}/devices/${other.deviceName}/secret/rotate`, { graceSeconds: 0 });
      assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
      await pastTtl();
      assert.equal((await connectRefusal(b, 'mqtt', signedConnect(other))).code, 5);
      await endClient(await connectClient(b, 'mqtt', signedConnect({ ...other, deviceSecret: rotated.body.deviceSecret })));
    });
  });

  describe('the database goes away at run time and comes back', () => {
    let server: TestServer;
    before(async () => {
      // A short cache lifetime: the device's record has expired when the outage starts, and the
      // expired record still serves its login while the database cannot answer.
      server = await startTestServer({ databaseUrl: await freshDatabase(), cacheTtlSeconds: '1' });
    });
    after(async () => {
      await server?.stop();
    });

    it('the server stays up and answers 503 UNAVAILABLE while PostgreSQL is down, and recovers by itself when it is back', async () => {
      const p = await server.request('POST', '/api/v1/products', { productName: 'Outage product' });
      assert.equal(p.status, 201, JSON.stringify(p.body));
      const productKey = p.body.productKey as string;
      // A device that logged in before the outage (its record is cached)...
      const known = await createDevice(server);
      await endClient(await connectClient(server, 'mqtt', signedConnect(known)));
      await server.settle();
      await new Promise((r) => setTimeout(r, 1_100)); // past the 1 s cache lifetime
      pg.pause();
      let online: Awaited<ReturnType<typeof connectClient>> | undefined;
      try {
        // ...keeps logging in while the database is down; its presence is written afterwards.
        online = await connectClient(server, 'mqtt', signedConnect(known));
        await server.settle();
        const down = await server.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: 'during-outage' });
        assert.equal(down.status, 503, JSON.stringify(down.body));
        assert.deepEqual(down.body, { code: 'UNAVAILABLE', message: 'the registry database is unavailable; retry later' });
        assert.equal((await server.request('GET', `/api/v1/products/${productKey}`)).status, 503);
        const health = await eventually(async () => {
          const h = await fetch(`${server.api}/healthz`);
          assert.equal(h.status, 200, 'the process is still serving');
          const body = (await h.json()) as { status: string };
          return body.status === 'degraded' ? body : undefined;
        }, 5_000);
        assert.deepEqual(health, { status: 'degraded', database: 'unavailable' });
        // An audit entry recorded during the outage is kept, not dropped.
        server.running.ctx.services.audit.record({ action: 'test.during-outage', actor: 'outage-test', result: 'ok' });
        await server.running.ctx.services.audit.flush();
      } finally {
        pg.start();
      }
      await eventually(async () => (await queryDb(dbUrlOf(server), 'SELECT online FROM devices WHERE iot_id = $1', [known.iotId]))[0]?.online === true, 10_000);
      await endClient(online);
      // No restart of thingauth: the pool opens new connections once the server is back.
      let lastAnswer: unknown;
      const created = await eventually(async () => {
        const r = await server.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: 'after-outage' });
        if (r.status !== 201) lastAnswer = r;
        return r.status === 201 ? r : undefined;
      }, 15_000).catch((e: Error) => assert.fail(`${e.message}; last answer ${JSON.stringify(lastAnswer)}; log tail ${server.logs.slice(-3).join(' | ')}`));
      assert.equal(created.body.deviceName, 'after-outage');
      await eventually(async () => ((await (await fetch(`${server.api}/healthz`)).json()) as { status: string }).status === 'ok', 5_000);
      const kept = await eventually(async () => {
        const entries = await server.running.ctx.store.queryAudit({ action: 'test.during-outage' });
        return entries.length > 0 ? entries : undefined;
      }, 10_000);
      assert.equal(kept.length, 1, 'written once the database was back');
      assert.equal(server.running.ctx.services.audit.dropped, 0);
      assert.equal((await server.request('GET', `/api/v1/products/${productKey}/devices`)).body.total, 1, 'nothing was written during the outage');
      const warned = server.logs.filter((l) => l.includes('registry database unavailable'));
      assert.ok(warned.length > 0, 'the outage is in the log');
      for (const l of warned) assert.equal(JSON.parse(l).level, 40, 'a warning, not an error with a stack');
    });
  });
}

/** The database URL a test server was started with. */
function dbUrlOf(server: TestServer): string {
  return server.running.ctx.config.databaseUrl!;
}

/** One query on its own connection (what any other client of the database sees). */
async function queryDb(url: string, sql: string, values: unknown[] = []): Promise<Record<string, any>[]> {
  const { default: pgm } = await import('pg');
  const c = new pgm.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(sql, values)).rows;
  } finally {
    await c.end();
  }
}
