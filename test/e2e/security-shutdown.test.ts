/**
 * Graceful shutdown of `thingauth serve` in a child process: on SIGTERM it stops accepting,
 * lets registrations in flight finish (each one either answered, and then stored with exactly
 * that credential, or never stored), marks connected devices offline, writes the audit, and
 * exits 0 within the configured bound. The database is then read directly, read-only.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { signedConnect } from '../helpers/mqtt.js';
import { makeTempDir } from '../helpers/server.js';
import { openStoreOf, regnwl, spawnServer, type ChildServer } from './security-child-server.js';

const SHUTDOWN_BOUND_S = 5;

function connectDevice(server: ChildServer, productKey: string, deviceName: string, deviceSecret: string): Promise<mqtt.MqttClient> {
  // {pk}.{dn}|securemode=3,signmethod=hmacsha256,timestamp=2524608000000|
  const fields = signedConnect({ productKey, deviceName, deviceSecret });
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(`mqtt://127.0.0.1:${server.ports['mqtt']}`, {
      ...fields,
      keepalive: 60,
      reconnectPeriod: 0,
    });
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}

describe('graceful shutdown (SIGTERM, child process)', () => {
  const dirs: string[] = [];
  let child: ChildServer | undefined;
  after(() => {
    if (child && child.proc.exitCode === null) child.proc.kill('SIGKILL');
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it('stops accepting, finishes registrations in flight, marks devices offline, flushes the audit, exits 0 in time', async () => {
    const dataDir = makeTempDir('thingauth-shutdown-');
    dirs.push(dataDir);
    child = await spawnServer(dataDir, { THINGAUTH_SHUTDOWN_TIMEOUT_SECONDS: String(SHUTDOWN_BOUND_S) });
    const server = child;
    const PS = 'PsShutdown123456';
    const p = await server.request('POST', '/api/v1/products', { productName: 'shutdown', dynamicRegistration: true, preRegistrationFree: true, productSecret: PS });
    assert.equal(p.status, 201, JSON.stringify(p.body));
    const pk = p.body.productKey as string;
    const created = await server.request('POST', `/api/v1/products/${pk}/devices/batch`, { deviceNames: ['online-1', 'online-2', 'online-3'] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const devs = (created.body.devices ?? created.body) as { deviceName: string; deviceSecret: string }[];
    const clients = await Promise.all(devs.map((d) => connectDevice(server, pk, d.deviceName, d.deviceSecret)));
    // The store says ONLINE before the shutdown (presence is written in batches).
    for (let i = 0; i < 50; i++) {
      const list = await server.request('GET', `/api/v1/products/${pk}/devices?status=ONLINE`);
      if (list.body.total === 3) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal((await server.request('GET', `/api/v1/products/${pk}/devices?status=ONLINE`)).body.total, 3);

    // Registrations in flight when SIGTERM arrives.
    const names = Array.from({ length: 40 }, (_, i) => `reg-${i}`);
    const inFlight = names.map((n) => regnwl(server, pk, n, PS));
    // SIGTERM as soon as the first one is answered: the others are mid-handshake or mid-decision.
    await new Promise<void>((resolve) => inFlight.forEach((p) => p.then((a) => a.deviceToken && resolve())));
    const t0 = Date.now();
    server.proc.kill('SIGTERM');
    const { code, signal } = await server.exited;
    const tookMs = Date.now() - t0;
    assert.equal(signal, null);
    assert.equal(code, 0, server.logs.slice(-10).join('\n'));
    assert.ok(tookMs < SHUTDOWN_BOUND_S * 1000 + 2_000, `exit took ${tookMs} ms`);
    assert.ok(server.logs.some((l) => l.includes('shut down cleanly')));
    const answers = await Promise.all(inFlight);
    for (const c of clients) c.end(true);

    // Nothing accepts any more.
    await assert.rejects(fetch(`${server.api}/api/v1/products`), /fetch failed/);

    // Read-only look at the file the server left.
    const db = new Database(path.join(dataDir, 'thingauth.db'), { readonly: true });
    try {
      const online = db.prepare('SELECT COUNT(*) AS n FROM devices WHERE online = 1').get() as { n: number };
      assert.equal(online.n, 0, 'every device is offline after the shutdown');
      const lastOnline = db.prepare("SELECT COUNT(*) AS n FROM devices WHERE device_name LIKE 'online-%' AND last_online_at IS NOT NULL AND activated_at IS NOT NULL").get() as { n: number };
      assert.equal(lastOnline.n, 3);
      // The audit buffer was written: the three logins are there.
      const audited = db.prepare("SELECT COUNT(*) AS n FROM audit WHERE action = 'mqtt.connect.sign' AND result = 'allow'").get() as { n: number };
      assert.equal(audited.n, 3);
    } finally {
      db.close();
    }
    // Each registration: answered -> stored with exactly that credential; not answered -> the
    // device may exist (created, answer lost) but then it is UNACTIVE and a retry gets the same pair.
    const store = await openStoreOf(dataDir);
    try {
      let answered = 0;
      for (let i = 0; i < names.length; i++) {
        const a = answers[i]!;
        const d = await store.getDevice(pk, names[i]!);
        if (a.deviceToken) {
          answered++;
          assert.ok(d, `${names[i]} was answered but not stored`);
          const slots = await store.getLiveDeviceTokens(d.iotId);
          assert.deepEqual(slots.map((s) => [s.clientId, s.deviceToken]), [[a.clientId, a.deviceToken]]);
        } else if (d) {
          assert.equal(d.activatedAt, null);
        }
      }
      assert.deepEqual(await store.productCountMismatches(), []);
      // No decision in flight met a closed store (it would log 'mqtt authentication failed').
      assert.deepEqual(server.logs.filter((l) => /authentication failed|database connection is not open/.test(l)), []);
      assert.ok(answered >= 1);
      console.log(`# ${answered} of ${names.length} registrations were answered; the rest were refused at the door or cut`);
    } finally {
      await store.close();
    }
  });
});
