/**
 * `thingauth import products|devices` and `thingauth device export --format jsonl` as users
 * run them: `node dist/src/cli/main.js` in a child process against a real server. Summaries
 * (human and --json), exit codes, --dry-run, --overwrite, and a CLI round trip.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, startTestServer, type TestServer } from '../helpers/server.js';
import { deviceSnapshot } from './import-helpers.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');
const S = (n: number) => `CliSecret${String(n).padStart(23, '0')}`;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

describe('thingauth import (CLI)', () => {
  let server: TestServer;
  let dir: string;

  /** Asynchronous: the server lives in this process, so the event loop must keep running. */
  function cli(args: string[], target: TestServer = server): Promise<Run> {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('THINGAUTH_') && v !== undefined) env[k] = v;
    return new Promise((resolve) => {
      execFile(process.execPath, [CLI, ...args, '--url', target.api, '--token', target.adminToken], { cwd: dir, env, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
        resolve({ code, stdout, stderr });
      });
    });
  }

  function write(name: string, text: string): string {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text);
    return file;
  }

  before(async () => {
    server = await startTestServer();
    dir = makeTempDir('thingauth-import-cli-');
  });
  after(async () => {
    await server.stop();
  });

  it('imports products from JSON lines and devices from the console CSV, printing a summary', async () => {
    const products = write('products.jsonl', JSON.stringify({ productKey: 'a1CliPK0001', productSecret: 'CliProductSecret01', productName: 'cli product', nodeType: 'GATEWAY' }) + '\n');
    const p = await cli(['import', 'products', '--file', products]);
    assert.equal(p.code, 0, p.stderr);
    assert.match(p.stdout, /^products from .*products\.jsonl \(jsonl\): 1 rows read$/m);
    assert.match(p.stdout, /^ {2}created {15}1$/m);

    const csv = write('devices.csv', `\ufeffProductKey,DeviceName,DeviceSecret\r\na1CliPK0001,dev-001,${S(1)}\r\na1CliPK0001,dev-002,${S(2)}\r\n`);
    const d = await cli(['import', 'devices', '--file', csv, '--json']);
    assert.equal(d.code, 0, d.stderr);
    const summary = JSON.parse(d.stdout);
    assert.deepEqual([summary.kind, summary.format, summary.created, summary.identical], ['devices', 'csv', 2, 0]);
    assert.equal((await server.running.ctx.store.getDevice('a1CliPK0001', 'dev-002'))?.deviceSecret, S(2));
  });

  it('--dry-run writes nothing; conflicts and invalid rows are listed with line numbers and exit 3; --overwrite replaces', async () => {
    const before = await deviceSnapshot(server, 'a1CliPK0001');
    const csv = write('changed.csv', `ProductKey,DeviceName,DeviceSecret\na1CliPK0001,dev-001,${S(1)}\na1CliPK0001,dev-002,${S(22)}\na1CliPK0001,dev-003,${S(3)}\na1CliPK0001,d,${S(4)}\n`);
    const dry = await cli(['import', 'devices', '--file', csv, '--dry-run']);
    assert.equal(dry.code, 3, dry.stderr);
    assert.match(dry.stdout, /^dry run: devices from/m);
    assert.match(dry.stdout, /^ {2}would be created {6}1$/m);
    assert.match(dry.stdout, /^ {2}identical \(skipped\) {3}1$/m);
    assert.match(dry.stdout, /^ {2}line 3: a1CliPK0001\/dev-002: deviceSecret differs/m);
    assert.match(dry.stdout, /^ {2}line 5: deviceName must be 4-32/m);
    assert.match(dry.stdout, /^dry run: nothing was written$/m);
    assert.deepEqual(await deviceSnapshot(server, 'a1CliPK0001'), before);

    const real = await cli(['import', 'devices', '--file', csv, '--json']);
    assert.equal(real.code, 3);
    const s = JSON.parse(real.stdout);
    assert.deepEqual([s.created, s.identical, s.conflictCount, s.invalidCount], [1, 1, 1, 1]);
    assert.equal((await server.running.ctx.store.getDevice('a1CliPK0001', 'dev-002'))?.deviceSecret, S(2), 'conflict not written');

    const fixed = write('fixed.csv', `ProductKey,DeviceName,DeviceSecret\na1CliPK0001,dev-002,${S(22)}\n`);
    const o = await cli(['import', 'devices', '--file', fixed, '--overwrite', '--json']);
    assert.equal(o.code, 0, o.stderr);
    assert.equal(JSON.parse(o.stdout).overwritten, 1);
    assert.equal((await server.running.ctx.store.getDevice('a1CliPK0001', 'dev-002'))?.deviceSecret, S(22));
  });

  it('device export --format jsonl writes a file that imports into another server unchanged', async () => {
    const out = path.join(dir, 'export.jsonl');
    const e = await cli(['device', 'export', 'a1CliPK0001', '--format', 'jsonl', '--out', out, '--json']);
    assert.equal(e.code, 0, e.stderr);
    assert.equal(JSON.parse(e.stdout).devices, 3);
    assert.equal(fs.statSync(out).mode & 0o777, 0o600);
    const productsOut = path.join(dir, 'products-export.jsonl');
    const pr = await fetch(`${server.api}/api/v1/export/products`, { headers: { authorization: `Bearer ${server.adminToken}` } });
    fs.writeFileSync(productsOut, await pr.text());

    const other = await startTestServer();
    try {
      assert.equal((await cli(['import', 'products', '--file', productsOut], other)).code, 0);
      const d = await cli(['import', 'devices', '--file', out, '--json'], other);
      assert.equal(d.code, 0, d.stderr);
      assert.equal(JSON.parse(d.stdout).created, 3);
      assert.deepEqual(await deviceSnapshot(other, 'a1CliPK0001'), await deviceSnapshot(server, 'a1CliPK0001'));
      const again = path.join(dir, 'again.jsonl');
      assert.equal((await cli(['device', 'export', 'a1CliPK0001', '--format', 'jsonl', '--out', again], other)).code, 0);
      assert.equal(fs.readFileSync(again, 'utf8'), fs.readFileSync(out, 'utf8'));
    } finally {
      await other.stop();
    }
  });

  it('says what is wrong: unknown kind, unreadable file, unknown format, header missing', async () => {
    const kind = await cli(['import', 'widgets', '--file', 'x.csv']);
    assert.equal(kind.code, 1);
    assert.match(kind.stderr, /expected "products" or "devices"/);
    const missing = await cli(['import', 'devices', '--file', path.join(dir, 'nope.csv')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot read --file/);
    const txt = await cli(['import', 'devices', '--file', write('fleet.txt', 'x\n')]);
    assert.equal(txt.code, 1);
    assert.match(txt.stderr, /pass --format csv or --format jsonl/);
    const headerless = await cli(['import', 'devices', '--file', write('headerless.csv', `a1CliPK0001,dev-009,${S(9)}\n`)]);
    assert.equal(headerless.code, 1);
    assert.match(headerless.stderr, /line 1: the first row must be a header/);
    assert.equal(await server.running.ctx.store.getDevice('a1CliPK0001', 'dev-009'), undefined);
  });
});
