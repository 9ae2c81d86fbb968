/**
 * Audit trail and Prometheus metrics against a real server: /metrics needs a token (read is
 * enough) and moves with real logins, registrations and sessions; the audit answers by
 * device, action, time and limit over the API and the CLI (child process), keeps what was
 * recorded right before a shutdown, and prunes past retention. Token and key CLI commands
 * run against the same server.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { connectClient, connectRefusal, eventually, signedConnect, type DeviceCredentials } from '../helpers/mqtt.js';
import { makeTempDir, startTestServer, type TestServer } from '../helpers/server.js';
import { attachByApi, connectGateway, loginParams, request, sessionTopic, setupGateway } from './gateway-helpers.js';
import { postRegister, registerForm } from './registration-helpers.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

function cli(srv: TestServer, args: string[], token = srv.adminToken): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('THINGAUTH_') && v !== undefined) env[k] = v;
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args, '--url', srv.api, '--token', token], { env }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** The value of one sample line of the Prometheus text, 0 when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries((m[3] ?? '').split(',').filter(Boolean).map((kv) => {
      const i = kv.indexOf('=');
      return [kv.slice(0, i), JSON.parse(kv.slice(i + 1))];
    }));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[4]);
  }
  return 0;
}

describe('metrics and audit', () => {
  let srv: TestServer;
  let pk: string;
  let productSecret: string;
  let devices: DeviceCredentials[];
  let readToken: string;

  before(async () => {
    srv = await startTestServer();
    const p = await srv.request('POST', '/api/v1/products', { productName: 'MetricsProduct', dynamicRegistration: true });
    pk = p.body.productKey;
    productSecret = p.body.productSecret;
    const batch = await srv.request('POST', `/api/v1/products/${pk}/devices/batch`, { deviceNames: ['met-1', 'met-2', 'met-pre'] });
    assert.equal(batch.status, 201, JSON.stringify(batch.body));
    devices = batch.body.devices;
    readToken = (await srv.request('POST', '/api/v1/tokens', { name: 'prometheus', scope: 'read' })).body.token;
  });
  after(async () => {
    await srv.stop();
  });

  async function metrics(): Promise<string> {
    const r = await fetch(`${srv.api}/metrics`, { headers: { authorization: `Bearer ${readToken}` } });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain/);
    return r.text();
  }

  it('/metrics needs a token; a read token is enough', async () => {
    assert.equal((await fetch(`${srv.api}/metrics`)).status, 401);
    assert.equal((await fetch(`${srv.api}/metrics`, { headers: { authorization: 'Bearer nope-nope-nope-nope' } })).status, 401);
    const text = await metrics();
    for (const name of ['thingauth_connected_devices', 'thingauth_logins_total', 'thingauth_registrations_total', 'thingauth_throttled_sources_total', 'thingauth_store_operation_seconds']) {
      assert.ok(text.includes(`# TYPE ${name} `), `${name} is exposed`);
    }
  });

  it('counts logins by result and reason, connected devices and sub-devices, registrations, store latency', async () => {
    const before = await metrics();
    const c1 = await connectClient(srv, 'mqtt', signedConnect(devices[0]!));
    await connectRefusal(srv, 'mqtt', signedConnect({ ...devices[1]!, deviceSecret: 'WrongSecretWrongSecret' }));
    await connectRefusal(srv, 'mqtt', signedConnect({ ...devices[1]!, productKey: 'a1NoSuchProduct' }));
    const reg = await postRegister(srv, registerForm(pk, 'met-pre', productSecret, 'r-1'));
    assert.equal(reg.json.code, 200);
    await postRegister(srv, registerForm(pk, 'met-pre', 'WrongProductSecret1', 'r-2'));

    const g = await setupGateway(srv, { subCount: 1 });
    await attachByApi(srv, g.gateway, g.subs);
    const gw = await connectGateway(srv, g.gateway);
    assert.equal((await request(gw, sessionTopic(g.gateway, 'login'), { params: loginParams(g.subs[0]!) })).body.code, 200);

    const now = await metrics();
    const delta = (name: string, labels: Record<string, string>) => sample(now, name, labels) - sample(before, name, labels);
    assert.equal(delta('thingauth_logins_total', { channel: 'mqtt', result: 'accepted' }), 2, 'device + gateway');
    assert.equal(delta('thingauth_logins_total', { channel: 'mqtt', result: 'refused', reason: 'bad_signature' }), 1);
    assert.equal(delta('thingauth_logins_total', { channel: 'mqtt', result: 'refused', reason: 'unknown_product' }), 1);
    assert.equal(delta('thingauth_logins_total', { channel: 'gateway', result: 'accepted' }), 1);
    assert.equal(delta('thingauth_registrations_total', { method: 'register.https', result: 'ok' }), 1);
    assert.equal(delta('thingauth_registrations_total', { method: 'register.https', result: 'deny' }), 1);
    assert.equal(sample(now, 'thingauth_connected_devices', { kind: 'device' }), 2);
    assert.equal(sample(now, 'thingauth_connected_devices', { kind: 'sub_device' }), 1);
    assert.ok(sample(now, 'thingauth_store_operation_seconds_count', { operation: 'getDevice' }) > 0);

    await c1.endAsync();
    gw.end(true);
    await eventually(async () => sample(await metrics(), 'thingauth_connected_devices', { kind: 'device' }) === 0);
  });

  it("answers a device's audit by API: who, from where, result and reason, newest first; limit and since apply", async () => {
    const d = devices[1]!;
    await connectRefusal(srv, 'mqtt', signedConnect({ ...d, deviceSecret: 'AnotherWrongSecret' }));
    (await connectClient(srv, 'mqtt', signedConnect(d))).end(true);
    const r = await srv.request('GET', `/api/v1/audit?productKey=${pk}&deviceName=${d.deviceName}&action=mqtt.connect.sign`);
    assert.equal(r.status, 200);
    const [newest, older] = r.body.items;
    assert.equal(newest.result, 'allow');
    assert.equal(older.result, 'deny');
    assert.match(older.reason, /^CONNACK \d: bad signature/);
    assert.equal(older.actor, `${d.deviceName}&${pk}`);
    assert.equal(older.sourceAddress, '127.0.0.1');
    assert.equal((await srv.request('GET', `/api/v1/audit?productKey=${pk}&deviceName=${d.deviceName}&limit=1`)).body.items.length, 1);
    const future = new Date(Date.now() + 3_600_000).toISOString();
    assert.deepEqual((await srv.request('GET', `/api/v1/audit?productKey=${pk}&since=${encodeURIComponent(future)}`)).body.items, []);
    const bad = await srv.request('GET', '/api/v1/audit?since=yesterday');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.field, 'since');
    assert.equal((await srv.request('GET', '/api/v1/audit?limit=0')).status, 400);
  });

  it('thingauth audit --device pk/dn and the token and keys commands work against the server', async () => {
    const d = devices[0]!;
    const out = await cli(srv, ['audit', '--device', `${pk}/${d.deviceName}`, '--limit', '5']);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /mqtt\.connect\.sign/);
    assert.match(out.stdout, new RegExp(d.deviceName));
    const json = await cli(srv, ['audit', '--product', pk, '--action', 'register.https', '--json']);
    assert.equal(json.code, 0, json.stderr);
    const items = JSON.parse(json.stdout).items as { action: string }[];
    assert.ok(items.length >= 2 && items.every((e) => e.action === 'register.https'));
    assert.notEqual((await cli(srv, ['audit', '--device', 'no-slash'])).code, 0);

    const created = await cli(srv, ['token', 'create', '--name', 'cli-made', '--scope', 'read', '--json']);
    assert.equal(created.code, 0, created.stderr);
    const t = JSON.parse(created.stdout);
    const listed = await cli(srv, ['token', 'list']);
    assert.match(listed.stdout, /cli-made/);
    assert.ok(!listed.stdout.includes(t.token));
    // The read token can read but not create tokens.
    assert.equal((await cli(srv, ['audit', '--limit', '1'], t.token)).code, 0);
    const denied = await cli(srv, ['token', 'create', '--name', 'x', '--scope', 'admin'], t.token);
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /admin token/);
    assert.equal((await cli(srv, ['token', 'revoke', t.id])).code, 0);
    assert.notEqual((await cli(srv, ['audit', '--limit', '1'], t.token)).code, 0);

    const status = await cli(srv, ['keys', 'status', '--json']);
    assert.equal(status.code, 0, status.stderr);
    const before = JSON.parse(status.stdout).currentKeyId;
    const rotated = await cli(srv, ['keys', 'rotate', '--json']);
    assert.equal(rotated.code, 0, rotated.stderr);
    const r = JSON.parse(rotated.stdout);
    assert.equal(r.state, 'done');
    assert.deepEqual(r.retiredKeyIds, [before]);
    (await connectClient(srv, 'mqtt', signedConnect(devices[0]!))).end(true);
  });
});

describe('audit durability and retention', () => {
  it('keeps what was recorded just before a shutdown, and prunes entries past retention', async () => {
    const dataDir = makeTempDir();
    let srv = await startTestServer({ auditRetentionDays: '30' }, { dataDir });
    try {
      const audit = srv.running.ctx.services.audit;
      const old = new Date(Date.now() - 31 * 86_400_000).toISOString();
      audit.record({ action: 'test.old', actor: 'test', result: 'ok', at: old });
      audit.record({ action: 'test.recent', actor: 'test', result: 'ok' });
      // Stop at once: the 200 ms flush timer has not fired; close must write the buffer.
      await srv.stop();
      srv = await startTestServer({ auditRetentionDays: '30' }, { dataDir });
      // The start prunes once in the background; wait for the store to answer after it.
      await srv.running.ctx.services.audit.prune();
      const recent = await srv.request('GET', '/api/v1/audit?action=test.recent');
      assert.equal(recent.body.items.length, 1);
      const gone = await srv.request('GET', '/api/v1/audit?action=test.old');
      assert.deepEqual(gone.body.items, []);
    } finally {
      await srv.stop();
    }
  });
});
