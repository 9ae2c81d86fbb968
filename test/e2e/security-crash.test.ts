/**
 * Crash safety: `thingauth serve` runs as a child process with SQLite synchronous=FULL (the
 * default) and is killed with SIGKILL in the middle of (a) a large device import through the
 * management API while gateway topology changes run beside it, and (b) a storm of dynamic
 * registrations (MQTT regnwl over TLS and HTTPS /auth/register/device). After the kill the
 * data dir is inspected directly and the server restarted on it:
 * - every device exists with exactly the secret / token its caller was given, or not at all;
 * - the file passes integrity and foreign-key checks, no sub-device hangs off a missing
 *   gateway, and the kept device counts equal the rows (productCountMismatches);
 * - the server starts cleanly and finishes the interrupted work (a re-import is idempotent,
 *   a repeated regnwl gets the pair already stored).
 *
 * Counts: CRASH_IMPORT_DEVICES (default 100,000) and CRASH_REGISTRATIONS (default 300)
 * environment variables; docs/security.md "Crash safety and durability" has the commands.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { makeTempDir } from '../helpers/server.js';
import { openStoreOf, regnwl, spawnServer, type ChildServer } from './security-child-server.js';
import { registerForm } from './registration-helpers.js';

const IMPORT_DEVICES = Number(process.env.CRASH_IMPORT_DEVICES ?? 100_000);
const REGISTRATIONS = Number(process.env.CRASH_REGISTRATIONS ?? 300);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function secretOf(name: string): string {
  return createHash('sha256').update(`crash-test:${name}`).digest('hex').slice(0, 32);
}

async function kill9(server: ChildServer): Promise<void> {
  server.proc.kill('SIGKILL');
  const { signal } = await server.exited;
  assert.equal(signal, 'SIGKILL');
}

/** The checks that need no keys: SQLite's own, plus topology shape. Read-only. */
function checkFile(dataDir: string): void {
  const db = new Database(path.join(dataDir, 'thingauth.db'), { readonly: true });
  try {
    assert.equal((db.prepare('PRAGMA integrity_check').get() as { integrity_check: string }).integrity_check, 'ok');
    assert.deepEqual(db.prepare('PRAGMA foreign_key_check').all(), []);
    const orphans = db.prepare('SELECT COUNT(*) AS n FROM devices d WHERE d.gateway_iot_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM devices g WHERE g.iot_id = d.gateway_iot_id)').get() as { n: number };
    assert.equal(orphans.n, 0, 'no sub-device attached to a missing gateway');
  } finally {
    db.close();
  }
}

function httpsRegister(server: ChildServer, productKey: string, deviceName: string, productSecret: string, random: string): Promise<any> {
  const body = registerForm(productKey, deviceName, productSecret, random);
  return new Promise((resolve) => {
    const req = https.request(
      { host: '127.0.0.1', port: server.ports['device-https'], path: '/auth/register/device', method: 'POST', ca: server.ca, servername: 'localhost', headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
          } catch {
            resolve({ error: 'torn answer' });
          }
        });
        res.on('error', () => resolve({ error: 'cut' }));
      },
    );
    req.on('error', (e) => resolve({ error: e.message }));
    req.end(body);
  });
}

describe('crash safety (SIGKILL, child process, synchronous=FULL)', () => {
  const dirs: string[] = [];
  const children: ChildServer[] = [];
  after(() => {
    for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it(`killed in the middle of a ${IMPORT_DEVICES}-device import (with topology changes beside it): all or nothing per device, consistent counts, clean restart`, async () => {
    const dataDir = makeTempDir('thingauth-crash-import-');
    dirs.push(dataDir);
    let server = await spawnServer(dataDir);
    children.push(server);
    const p = await server.request('POST', '/api/v1/products', { productName: 'crash import' });
    const pk = p.body.productKey as string;
    const gp = await server.request('POST', '/api/v1/products', { productName: 'crash gateways', nodeType: 'GATEWAY' });
    const sp = await server.request('POST', '/api/v1/products', { productName: 'crash subs', nodeType: 'SUB_DEVICE' });
    const gpk = gp.body.productKey as string;
    const spk = sp.body.productKey as string;
    assert.equal((await server.request('POST', `/api/v1/products/${gpk}/devices`, { deviceName: 'gw-1' })).status, 201);
    const subNames = Array.from({ length: 200 }, (_, i) => `sub-${i}`);
    assert.equal((await server.request('POST', `/api/v1/products/${spk}/devices/batch`, { deviceNames: subNames })).status, 201);

    const lines: string[] = [];
    for (let i = 0; i < IMPORT_DEVICES; i++) {
      const name = `imp-${String(i).padStart(6, '0')}`;
      lines.push(JSON.stringify({ productKey: pk, deviceName: name, deviceSecret: secretOf(name) }));
    }
    const file = lines.join('\n') + '\n';
    const importing = fetch(`${server.api}/api/v1/import/devices`, {
      method: 'POST',
      headers: { authorization: `Bearer child-admin-token-0123456789`, 'content-type': 'application/x-ndjson' },
      body: file,
    }).then(
      (r) => ({ status: r.status }),
      (e: Error) => ({ error: e.message }),
    );
    // Topology changes beside the import: attach and detach batches of sub-devices.
    let topoRunning = true;
    const topo = (async () => {
      let i = 0;
      while (topoRunning) {
        const batch = subNames.slice((i * 50) % 200, ((i * 50) % 200) + 50).map((deviceName) => ({ productKey: spk, deviceName }));
        const method = i % 3 === 2 ? 'DELETE' : 'POST';
        try {
          await server.request(method, `/api/v1/products/${gpk}/devices/gw-1/sub-devices`, { subDevices: batch });
        } catch {
          return; // the server is gone
        }
        i++;
      }
    })();

    // Kill once a good part (but not all) of the import is committed.
    const target = Math.floor(IMPORT_DEVICES / 4);
    let seen = 0;
    for (let i = 0; i < 600; i++) {
      const r = await server.request('GET', `/api/v1/products/${pk}/devices?limit=1`).catch(() => undefined);
      seen = r?.body?.total ?? seen;
      if (seen >= target) break;
      await sleep(50);
    }
    await kill9(server);
    topoRunning = false;
    await topo;
    const outcome = await importing;
    assert.ok('error' in outcome, 'the import was cut by the kill');

    checkFile(dataDir);
    const store = await openStoreOf(dataDir);
    let stored = 0;
    try {
      assert.deepEqual(await store.productCountMismatches(), []);
      let after: string | null = null;
      for (;;) {
        const page = await store.listDevicesAfter(pk, after, 5_000);
        if (page.length === 0) break;
        for (const d of page) {
          assert.equal(d.deviceSecret, secretOf(d.deviceName), `${d.deviceName} holds another secret than the one imported`);
          stored++;
        }
        after = page[page.length - 1]!.deviceName;
      }
      assert.equal(await store.countDevices(pk), stored);
      const gw = await store.getDevice(gpk, 'gw-1');
      const subs = await store.countSubDevices(gw!.iotId);
      assert.ok(subs >= 0 && subs <= 200);
    } finally {
      await store.close();
    }
    console.log(`# killed with ${stored} of ${IMPORT_DEVICES} devices committed`);
    assert.ok(stored >= target && stored < IMPORT_DEVICES, `stored ${stored}`);

    // Restart on the same data dir: clean start, and the same file imports to completion.
    server = await spawnServer(dataDir);
    children.push(server);
    assert.deepEqual(server.logs.filter((l) => /"level":(50|60)/.test(l)), [], 'no error at start');
    const res = await fetch(`${server.api}/api/v1/import/devices`, {
      method: 'POST',
      headers: { authorization: `Bearer child-admin-token-0123456789`, 'content-type': 'application/x-ndjson' },
      body: file,
    });
    const again = { status: res.status, body: (await res.json()) as any };
    assert.equal(again.status, 200, JSON.stringify(again.body).slice(0, 300));
    assert.equal(again.body.created, IMPORT_DEVICES - stored);
    assert.equal(again.body.identical, stored);
    assert.equal((await server.request('GET', `/api/v1/products/${pk}/devices?limit=1`)).body.total, IMPORT_DEVICES);
    server.proc.kill('SIGTERM');
    assert.equal((await server.exited).code, 0);
  });

  it(`killed in the middle of a registration storm (MQTT regnwl over TLS, HTTPS register): every answered credential is stored exactly, unanswered ones are retried to the same pair`, async () => {
    const dataDir = makeTempDir('thingauth-crash-reg-');
    dirs.push(dataDir);
    // 24 workers on one address stand for many devices: no per-source caps.
    const storm = { THINGAUTH_REGISTRATION_RATE: '100000', THINGAUTH_REGISTRATION_RATE_PER_SOURCE: '0', THINGAUTH_MQTT_PENDING_PER_SOURCE: '0' };
    let server = await spawnServer(dataDir, storm);
    children.push(server);
    const PS = 'PsCrashRegist123';
    const p = await server.request('POST', '/api/v1/products', { productName: 'crash regnwl', dynamicRegistration: true, preRegistrationFree: true, replayProtection: true, productSecret: PS });
    const pk = p.body.productKey as string;
    // HTTPS pre-registration needs a pre-registration product: a pre-registration-free one offers regnwl only (issue 11 item 10).
    const pp = await server.request('POST', '/api/v1/products', { productName: 'crash pre', dynamicRegistration: true, replayProtection: true, productSecret: PS });
    const prePk = pp.body.productKey as string;
    const pre = await server.request('POST', `/api/v1/products/${prePk}/devices/batch`, { deviceNames: Array.from({ length: 50 }, (_, i) => `pre-${i}`) });
    const preSecrets = new Map<string, string>((pre.body.devices as { deviceName: string; deviceSecret: string }[]).map((d) => [d.deviceName, d.deviceSecret]));

    const answers = new Map<string, { clientId?: string; deviceToken?: string; error?: string }>();
    const httpsAnswers = new Map<string, string>();
    let next = 0;
    let killed = false;
    let answered = 0;
    const worker = async () => {
      while (!killed && next < REGISTRATIONS * 3) {
        const i = next++;
        if (i % 10 === 0) {
          const name = `pre-${(i / 10) % 50}`;
          const r = await httpsRegister(server, prePk, name, PS, `rnd-${i}`);
          if (r.code === 200) httpsAnswers.set(name, r.data.deviceSecret);
          continue;
        }
        const name = `storm-${i}`;
        const a = await regnwl(server, pk, name, PS);
        answers.set(name, a);
        if (a.deviceToken) answered++;
      }
    };
    const workers = Array.from({ length: 24 }, () => worker());
    // Bounded: if the workers run out of requests first, the storm failed and the test says so.
    while (answered < REGISTRATIONS && next < REGISTRATIONS * 3) await sleep(20);
    assert.ok(answered >= REGISTRATIONS, `only ${answered} of ${REGISTRATIONS} registrations answered: ${JSON.stringify([...answers.values()].find((a) => a.error))}`);
    await kill9(server);
    killed = true;
    await Promise.all(workers);

    checkFile(dataDir);
    const store = await openStoreOf(dataDir);
    const unansweredButStored: string[] = [];
    try {
      assert.deepEqual(await store.productCountMismatches(), []);
      for (const [name, a] of answers) {
        const d = await store.getDevice(pk, name);
        const slots = d ? await store.getLiveDeviceTokens(d.iotId) : [];
        if (a.deviceToken) {
          assert.ok(d, `${name} was answered but is not stored`);
          assert.deepEqual(slots.map((s) => [s.slot, s.clientId, s.deviceToken]), [[1, a.clientId, a.deviceToken]], `${name}: stored slot differs from the answer`);
        } else if (d) {
          // Created, answer lost in the kill: not activated; slot 1 complete, or not issued yet.
          assert.equal(d.activatedAt, null);
          assert.ok(slots.length <= 1 && slots.every((s) => s.slot === 1 && s.activatedAt === null && s.clientId && s.deviceToken));
          if (slots.length === 1) unansweredButStored.push(name);
        }
      }
      for (const [name, secret] of httpsAnswers) assert.equal((await store.getDevice(prePk, name))!.deviceSecret, secret);
      assert.equal(secretsMatch(preSecrets, httpsAnswers), true);
    } finally {
      await store.close();
    }
    console.log(`# ${answered} regnwl answered, ${unansweredButStored.length} stored without an answer, ${httpsAnswers.size} HTTPS registrations answered`);

    server = await spawnServer(dataDir, storm);
    children.push(server);
    assert.deepEqual(server.logs.filter((l) => /"level":(50|60)/.test(l)), [], 'no error at start');
    // A device whose answer was lost retries and gets exactly the stored pair.
    const store2 = await openStoreOf(dataDir);
    const retryNames = [...unansweredButStored.slice(0, 5), ...[...answers].filter(([, a]) => a.deviceToken).slice(0, 5).map(([n]) => n)];
    const stored = new Map<string, string | null>();
    try {
      for (const n of retryNames) stored.set(n, (await store2.getLiveDeviceTokens((await store2.getDevice(pk, n))!.iotId))[0]?.deviceToken ?? null);
    } finally {
      await store2.close();
    }
    for (const n of retryNames) {
      const again = await regnwl(server, pk, n, PS);
      assert.equal(again.deviceToken, stored.get(n), `${n}: retry after the crash`);
    }
    server.proc.kill('SIGTERM');
    assert.equal((await server.exited).code, 0);
  });
});

function secretsMatch(pre: Map<string, string>, answered: Map<string, string>): boolean {
  for (const [name, secret] of answered) if (pre.get(name) !== secret) return false;
  return true;
}
