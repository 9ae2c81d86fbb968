/**
 * The `thingauth` CLI as users run it: `node dist/src/cli/main.js ...` in a child process
 * against a real server (real HTTP, real SQLite file). Exit codes, human and --json output,
 * connection settings from flags, environment and the data dir, import and export.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, startTestServer, type TestServer } from '../helpers/server.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

let s: TestServer;
let cwd: string;

before(async () => {
  s = await startTestServer();
  cwd = makeTempDir('thingauth-cli-');
});
after(async () => {
  await s?.stop();
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI asynchronously (the server lives in this process, so never block it). */
function cli(args: string[], opts: { env?: Record<string, string>; connect?: boolean } = {}): Promise<Run> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('THINGAUTH_') && v !== undefined) env[k] = v;
  const connect = opts.connect === false ? [] : ['--url', s.api, '--token', s.adminToken];
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args, ...connect], { cwd, env: { ...env, ...opts.env }, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function ok(args: string[], opts?: Parameters<typeof cli>[1]): Promise<string> {
  const r = await cli(args, opts);
  assert.equal(r.code, 0, `thingauth ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

async function json(args: string[], opts?: Parameters<typeof cli>[1]): Promise<any> {
  return JSON.parse(await ok([...args, '--json'], opts));
}

async function fails(args: string[], pattern: RegExp, opts?: Parameters<typeof cli>[1]): Promise<Run> {
  const r = await cli(args, opts);
  assert.equal(r.code, 1, `expected exit 1 from thingauth ${args.join(' ')}; stdout: ${r.stdout}`);
  assert.match(r.stderr, pattern);
  return r;
}

async function deviceTotal(pk: string): Promise<number> {
  return (await s.request('GET', `/api/v1/products/${pk}/devices?limit=1`)).body.total;
}

describe('thingauth product', () => {
  it('create, list, get, update, secret, delete, with text and --json output', async () => {
    const created = await json(['product', 'create', 'CLI product', '--node-type', 'GATEWAY', '--dynamic-registration', '--device-limit', '50', '--description', 'from the CLI']);
    assert.match(created.productKey, /^a1[A-Za-z0-9]{9}$/);
    assert.equal(created.nodeType, 'GATEWAY');
    assert.equal(created.dynamicRegistration, true);
    assert.equal(created.deviceLimit, 50);
    assert.match(created.productSecret, /^[A-Za-z0-9]{16}$/);
    const pk = created.productKey as string;

    const text = await ok(['product', 'create', 'Text product']);
    assert.match(text, /productKey\s+a1[A-Za-z0-9]{9}/);
    assert.match(text, /productSecret\s+[A-Za-z0-9]{16}/);

    const list = await json(['product', 'list']);
    assert.ok(list.items.some((p: any) => p.productKey === pk));
    const listText = await ok(['product', 'list']);
    assert.match(listText, new RegExp(`${pk}\\s+CLI product\\s+GATEWAY`));
    assert.ok(!listText.includes(created.productSecret), 'no secret in the list');

    const got = await json(['product', 'get', pk]);
    assert.equal(got.productName, 'CLI product');
    assert.equal(got.productSecret, undefined);
    assert.match(await ok(['product', 'get', pk]), /description\s+from the CLI/);

    const updated = await json(['product', 'update', pk, '--name', 'Renamed product', '--dynamic-registration', 'false', '--device-limit', 'default']);
    assert.equal(updated.productName, 'Renamed product');
    assert.equal(updated.dynamicRegistration, false);
    assert.equal(updated.deviceLimit, null);
    assert.equal((await s.request('GET', `/api/v1/products/${pk}`)).body.productName, 'Renamed product');

    assert.deepEqual(await json(['product', 'secret', pk]), { productKey: pk, productSecret: created.productSecret });

    assert.match(await ok(['product', 'delete', pk]), new RegExp(`deleted product ${pk}`));
    assert.equal((await s.request('GET', `/api/v1/products/${pk}`)).status, 404);
  });

  it('refusals exit 1 with the server message and change nothing', async () => {
    const before = (await s.request('GET', '/api/v1/products?limit=1')).body.total;
    await fails(['product', 'create', 'ab'], /productName must be 4-30 characters/);
    await fails(['product', 'create', 'Good name', '--pre-registration-free'], /preRegistrationFree requires dynamicRegistration/);
    await fails(['product', 'get', 'a1NoSuchPK0'], /product a1NoSuchPK0 not found/);
    await fails(['product', 'delete', 'a1NoSuchPK0'], /not found/);
    await fails(['product', 'update', 'a1NoSuchPK0'], /nothing to update/);
    await fails(['product', 'update', 'a1NoSuchPK0', '--require-tls', 'maybe'], /must be true or false/);
    await fails(['product', 'create', 'Good name', '--node-type', 'ROUTER'], /Allowed choices are DEVICE, GATEWAY, SUB_DEVICE/);
    assert.equal((await s.request('GET', '/api/v1/products?limit=1')).body.total, before);

    const { productKey } = (await s.request('POST', '/api/v1/products', { productName: 'Busy product' })).body;
    await s.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: 'keeps-it' });
    await fails(['product', 'delete', productKey], /still has 1 devices/);
    assert.equal((await s.request('GET', `/api/v1/products/${productKey}`)).status, 200);
  });
});

describe('connection settings', () => {
  it('token from --token, THINGAUTH_ADMIN_TOKEN, or <data dir>/admin-token; URL from --url or THINGAUTH_URL', async () => {
    const fromEnv = await json(['product', 'list'], { connect: false, env: { THINGAUTH_URL: s.api, THINGAUTH_ADMIN_TOKEN: s.adminToken } });
    assert.equal(typeof fromEnv.total, 'number');

    const dataDir = makeTempDir('thingauth-cli-data-');
    fs.writeFileSync(path.join(dataDir, 'admin-token'), s.adminToken + '\n', { mode: 0o600 });
    assert.equal(typeof (await json(['product', 'list', '--url', s.api, '--data-dir', dataDir], { connect: false })).total, 'number');
    assert.equal(typeof (await json(['product', 'list'], { connect: false, env: { THINGAUTH_URL: s.api, THINGAUTH_DATA_DIR: dataDir } })).total, 'number');
    // ./data is the default data dir.
    fs.mkdirSync(path.join(cwd, 'data'), { recursive: true });
    fs.writeFileSync(path.join(cwd, 'data', 'admin-token'), s.adminToken + '\n', { mode: 0o600 });
    try {
      assert.equal(typeof (await json(['product', 'list', '--url', s.api], { connect: false })).total, 'number');
    } finally {
      fs.rmSync(path.join(cwd, 'data'), { recursive: true });
    }
    // --token wins over the environment.
    await fails(['product', 'list', '--url', s.api, '--token', 'wrong-token-wrong-token'], /missing or invalid bearer token/, { connect: false, env: { THINGAUTH_ADMIN_TOKEN: s.adminToken } });
  });

  it('no token, a wrong token, or no server: exit 1 with what to do', async () => {
    await fails(['product', 'list', '--url', s.api, '--data-dir', path.join(cwd, 'nowhere')], /no admin token: pass --token/, { connect: false });
    await fails(['product', 'list', '--url', s.api, '--token', 'wrong-token-wrong-token'], /missing or invalid bearer token/, { connect: false });
    // A port nobody listens on: take a free one from a closed server.
    const closed = await startTestServer();
    const deadUrl = closed.api;
    await closed.stop();
    await fails(['product', 'list', '--url', deadUrl, '--token', s.adminToken], /cannot reach thingauth at .*is the server running/, { connect: false });
  });
});

describe('thingauth device', () => {
  it('create, list, get, secret, disable, enable, reset, delete', async () => {
    const { productKey: pk } = (await s.request('POST', '/api/v1/products', { productName: 'Device product' })).body;
    const d = await json(['device', 'create', pk, 'cli-dev-01', '--nickname', 'Front door']);
    assert.equal(d.deviceName, 'cli-dev-01');
    assert.equal(d.nickname, 'Front door');
    assert.match(d.deviceSecret, /^[A-Za-z0-9]{32}$/);
    const generated = await json(['device', 'create', pk]);
    assert.match(generated.deviceName, /^[A-Za-z0-9\-_@.:]{4,32}$/);
    const many = await json(['device', 'create', pk, '--count', '3']);
    assert.equal(many.created, 3);
    assert.equal(many.devices.length, 3);
    assert.equal(await deviceTotal(pk), 5);

    const textCreate = await ok(['device', 'create', pk, 'cli-dev:02@x']);
    assert.match(textCreate, /deviceName\s+cli-dev:02@x/);
    assert.match(textCreate, /deviceSecret\s+[A-Za-z0-9]{32}/);

    const list = await json(['device', 'list', pk, '--name', 'cli-dev']);
    assert.deepEqual(list.items.map((x: any) => x.deviceName), ['cli-dev-01', 'cli-dev:02@x']);
    assert.ok(!JSON.stringify(list).includes(d.deviceSecret));
    const listText = await ok(['device', 'list', pk, '--limit', '2']);
    assert.match(listText, /cli-dev-01\s+UNACTIVE/);
    assert.match(listText, /\(2 of 6\)/);
    assert.ok(!listText.includes(d.deviceSecret));

    const got = await json(['device', 'get', pk, 'cli-dev-01']);
    assert.equal(got.status, 'UNACTIVE');
    assert.equal(got.deviceSecret, undefined);
    assert.match(await ok(['device', 'get', pk, 'cli-dev:02@x']), /status\s+UNACTIVE/);

    assert.equal((await json(['device', 'secret', pk, 'cli-dev-01'])).deviceSecret, d.deviceSecret);
    assert.match(await ok(['device', 'secret', pk, 'cli-dev-01']), new RegExp(`deviceSecret\\s+${d.deviceSecret}`));

    assert.match(await ok(['device', 'disable', pk, 'cli-dev-01']), new RegExp(`${pk}/cli-dev-01: DISABLE`));
    assert.equal((await s.request('GET', `/api/v1/products/${pk}/devices/cli-dev-01`)).body.status, 'DISABLE');
    assert.deepEqual((await json(['device', 'list', pk, '--status', 'DISABLE'])).items.map((x: any) => x.deviceName), ['cli-dev-01']);
    assert.equal((await json(['device', 'enable', pk, 'cli-dev-01'])).status, 'UNACTIVE');

    const dev = await s.running.ctx.store.getDevice(pk, 'cli-dev-01');
    await s.running.ctx.store.markOnline(dev!.iotId, new Date().toISOString());
    assert.equal((await json(['device', 'get', pk, 'cli-dev-01'])).status, 'ONLINE');
    const reset = await json(['device', 'reset', pk, 'cli-dev-01']);
    assert.equal(reset.status, 'UNACTIVE');
    assert.equal(reset.activatedAt, null);

    assert.match(await ok(['device', 'delete', pk, 'cli-dev-01']), /deleted device/);
    assert.equal((await s.request('GET', `/api/v1/products/${pk}/devices/cli-dev-01`)).status, 404);
  });

  it('refusals exit 1 with the server message and write nothing', async () => {
    const { productKey: pk } = (await s.request('POST', '/api/v1/products', { productName: 'Refusal product', deviceLimit: 2 })).body;
    await ok(['device', 'create', pk, 'dup-name']);
    await fails(['device', 'create', pk, 'dup-name'], /deviceName already exists/);
    await fails(['device', 'create', pk, 'no'], /deviceName must be 4-32 characters/);
    await fails(['device', 'create', 'a1NoSuchPK0', 'some-name'], /product a1NoSuchPK0 not found/);
    await fails(['device', 'get', pk, 'ghost-dev'], /device ghost-dev not found/);
    await fails(['device', 'disable', pk, 'ghost-dev'], /not found/);
    await fails(['device', 'create', pk, '--count', '2'], /device limit reached.*at most 2 devices/);
    await fails(['device', 'create', pk, '--count', 'lots'], /--count must be a whole number/);
    await fails(['device', 'list', pk, '--status', 'ASLEEP'], /Allowed choices are UNACTIVE, ONLINE, OFFLINE, DISABLE/);
    assert.equal(await deviceTotal(pk), 1);
  });

  it('import: 20,000 names from a file in batches, then export them as CSV with their secrets', async () => {
    const { productKey: pk } = (await s.request('POST', '/api/v1/products', { productName: 'Import product' })).body;
    const file = path.join(cwd, 'names.txt');
    const names = Array.from({ length: 20_000 }, (_, i) => `line-${String(i).padStart(6, '0')}`);
    // CRLF line ends, blank lines and a comment are tolerated.
    fs.writeFileSync(file, '# production run 7\r\n' + names.slice(0, 10).join('\r\n') + '\r\n\r\n' + names.slice(10).join('\n') + '\n');
    const r = await cli(['device', 'import', pk, '--file', file, '--batch-size', '3000']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`imported 20000 devices into ${pk} in 7 batch\\(es\\)`));
    assert.equal(await deviceTotal(pk), 20_000);

    const out = path.join(cwd, 'creds.csv');
    const exp = await cli(['device', 'export', pk, '--format', 'csv', '--out', out]);
    assert.equal(exp.code, 0, exp.stderr);
    assert.match(exp.stdout, new RegExp(`exported 20000 devices of ${pk}`));
    assert.equal(fs.statSync(out).mode & 0o777, 0o600, 'the credentials file is private');
    const lines = fs.readFileSync(out, 'utf8').trimEnd().split('\n');
    assert.equal(lines[0], 'ProductKey,DeviceName,DeviceSecret');
    assert.equal(lines.length, 20_001);
    assert.deepEqual(lines.slice(1).map((l) => l.split(',')[1]).sort(), names);
    // Spot-check secrets against the secret endpoint.
    for (const line of [lines[1]!, lines[12_345]!, lines[20_000]!]) {
      const [p, dn, secret] = line.split(',');
      assert.equal(p, pk);
      assert.equal((await s.request('GET', `/api/v1/products/${pk}/devices/${dn}/secret`)).body.deviceSecret, secret);
    }

    const toStdout = await ok(['device', 'export', pk]);
    assert.equal(toStdout.trimEnd().split('\n').length, 20_001);
    const summary = await json(['device', 'import', pk, '--file', file]).catch((e) => e);
    assert.ok(summary instanceof Error, 're-importing the same names is refused');
    await fails(['device', 'export', 'a1NoSuchPK0'], /product a1NoSuchPK0 not found/);
    await fails(['device', 'export', pk, '--format', 'xml'], /Allowed choices are csv/);
  });

  it('import checks the whole file first: a bad or repeated name (with its line) sends nothing', async () => {
    const { productKey: pk } = (await s.request('POST', '/api/v1/products', { productName: 'Checked import' })).body;
    const file = path.join(cwd, 'bad-names.txt');
    fs.writeFileSync(file, ['good-0001', 'good-0002', 'bad name', 'good-0003', 'good-0001'].join('\n'));
    const r = await fails(['device', 'import', pk, '--file', file], /nothing was imported/);
    assert.match(r.stderr, /line 3: "bad name" is not a valid DeviceName/);
    assert.match(r.stderr, /line 5: "good-0001" repeats line 1/);
    assert.equal(await deviceTotal(pk), 0);
    const empty = path.join(cwd, 'empty.txt');
    fs.writeFileSync(empty, '\n\n');
    await fails(['device', 'import', pk, '--file', empty], /holds no DeviceNames/);
    await fails(['device', 'import', pk, '--file', path.join(cwd, 'missing.txt')], /cannot read --file/);
    await fails(['device', 'import', 'a1NoSuchPK0', '--file', file], /product a1NoSuchPK0 not found/);
    assert.equal(await deviceTotal(pk), 0);
  });

  it('import stops at a refused batch and says how far it got', async () => {
    const { productKey: pk } = (await s.request('POST', '/api/v1/products', { productName: 'Partial import' })).body;
    await s.request('POST', `/api/v1/products/${pk}/devices`, { deviceName: 'name-0007' });
    const file = path.join(cwd, 'partial.txt');
    fs.writeFileSync(file, Array.from({ length: 12 }, (_, i) => `name-${String(i).padStart(4, '0')}`).join('\n'));
    const r = await fails(['device', 'import', pk, '--file', file, '--batch-size', '5'], /batch 2 \(lines 6-10\) was refused: deviceName already exists.*name-0007/);
    assert.match(r.stderr, /5 devices from earlier batches were created/);
    assert.equal(await deviceTotal(pk), 6, 'batch 1 (5) plus the device that was there; nothing from batch 2 or 3');
    assert.equal((await s.request('GET', `/api/v1/products/${pk}/devices/name-0005`)).status, 404);
  });
});

describe('thingauth --help', () => {
  it('lists the command families', async () => {
    const help = await ok(['--help'], { connect: false });
    for (const cmd of ['serve', 'product', 'device']) assert.match(help, new RegExp(`\\b${cmd}\\b`));
    const dev = await ok(['device', '--help'], { connect: false });
    for (const cmd of ['create', 'list', 'get', 'enable', 'disable', 'reset', 'delete', 'secret', 'import', 'export']) assert.match(dev, new RegExp(`\\b${cmd}\\b`));
  });
});
