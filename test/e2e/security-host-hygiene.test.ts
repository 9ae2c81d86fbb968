/**
 * Issue 11 item 13, host hygiene: the generated admin token is never printed (only where it
 * is); an existing data dir is tightened to 0700; the SQLite database and its WAL and SHM
 * files are 0600, also when they existed with a looser mode; `thingauth device export --out`
 * leaves a 0600 file whatever the file was before.
 *
 * The process umask is set to the usual 022 for the whole file (children inherit it), so a
 * file created with default permissions would be 0644 and fail these checks.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, startTestServer } from '../helpers/server.js';
import { spawnServer } from './security-child-server.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

function modeOf(file: string): string {
  return (fs.statSync(file).mode & 0o777).toString(8);
}

/** Mode of every database file that exists, by suffix. */
function databaseModes(dataDir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const suffix of ['', '-wal', '-shm']) {
    const f = path.join(dataDir, `thingauth.db${suffix}`);
    if (fs.existsSync(f)) out[`thingauth.db${suffix}`] = modeOf(f);
  }
  return out;
}

describe('host hygiene (issue 11 item 13)', () => {
  let oldUmask: number;
  before(() => {
    oldUmask = process.umask(0o022);
  });
  after(() => {
    process.umask(oldUmask);
  });

  it('thingauth serve: the generated admin token is not printed, only its file; a 0755 data dir becomes 0700; database, WAL, SHM, key and token files are 0600', async () => {
    const dataDir = makeTempDir('thingauth-hygiene-');
    fs.chmodSync(dataDir, 0o755);
    const server = await spawnServer(dataDir, { THINGAUTH_ADMIN_TOKEN: '' });
    try {
      const tokenFile = path.join(dataDir, 'admin-token');
      const token = fs.readFileSync(tokenFile, 'utf8').trim();
      assert.ok(token.length >= 16);
      // The token works (it is the admin token), and a write makes SQLite create its WAL.
      const created = await fetch(`${server.api}/api/v1/products`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ productName: 'hygiene' }),
      });
      assert.equal(created.status, 201);
      const all = server.logs.join('\n');
      assert.ok(!all.includes(token), 'the admin token appears in the start output');
      assert.ok(all.includes(tokenFile), `the start output names ${tokenFile}`);
      assert.ok(server.logs.some((l) => l.includes('tightened to 0700') && l.includes('"was":"755"')), 'the start log says the data dir was tightened');
      assert.equal(modeOf(dataDir), '700');
      assert.equal(modeOf(tokenFile), '600');
      assert.equal(modeOf(path.join(dataDir, 'master.key')), '600');
      const modes = databaseModes(dataDir);
      assert.ok(modes['thingauth.db-wal'] && modes['thingauth.db-shm'], `WAL and SHM exist while the server runs: ${JSON.stringify(modes)}`);
      assert.deepEqual(modes, { 'thingauth.db': '600', 'thingauth.db-wal': '600', 'thingauth.db-shm': '600' });
    } finally {
      server.proc.kill('SIGTERM');
      await server.exited;
    }
  });

  it('database, WAL and SHM files left 0644 (an older version, a restore) are 0600 after the next start', async () => {
    const dataDir = makeTempDir('thingauth-hygiene-');
    const first = await startTestServer({}, { dataDir });
    await first.stop();
    const db = path.join(dataDir, 'thingauth.db');
    fs.chmodSync(db, 0o644);
    // Empty WAL/SHM files are valid for SQLite (no frames, index rebuilt).
    for (const f of [`${db}-wal`, `${db}-shm`]) {
      fs.closeSync(fs.openSync(f, 'a', 0o644));
      fs.chmodSync(f, 0o644);
    }
    assert.deepEqual(databaseModes(dataDir), { 'thingauth.db': '644', 'thingauth.db-wal': '644', 'thingauth.db-shm': '644' });
    const second = await startTestServer({}, { dataDir });
    try {
      assert.equal((await second.request('POST', '/api/v1/products', { productName: 'after restore' })).status, 201);
      assert.deepEqual(databaseModes(dataDir), { 'thingauth.db': '600', 'thingauth.db-wal': '600', 'thingauth.db-shm': '600' });
    } finally {
      await second.stop();
    }
  });

  it('device export --out over an existing 0644 file leaves a 0600 file with the credentials', async () => {
    const srv = await startTestServer();
    try {
      const { registry } = srv.running.ctx.services;
      const p = await registry.createProduct({ productName: 'export mode' });
      const [d] = await registry.createDevices(p.productKey, { deviceNames: ['exp-0001'] });
      const dir = makeTempDir('thingauth-export-');
      const out = path.join(dir, 'creds.csv');
      fs.writeFileSync(out, 'an older file that others may read\n', { mode: 0o644 });
      fs.chmodSync(out, 0o644);
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('THINGAUTH_') && v !== undefined) env[k] = v;
      const run = await new Promise<{ code: number; stderr: string }>((resolve) => {
        execFile(process.execPath, [CLI, 'device', 'export', p.productKey, '--out', out, '--url', srv.api, '--token', srv.adminToken], { env, cwd: dir }, (err, _stdout, stderr) => {
          resolve({ code: err ? 1 : 0, stderr });
        });
      });
      assert.equal(run.code, 0, run.stderr);
      assert.equal(modeOf(out), '600');
      const text = fs.readFileSync(out, 'utf8');
      assert.ok(!text.includes('older file'), 'the old content is replaced');
      assert.ok(text.includes(`${p.productKey},exp-0001,${d!.deviceSecret}`), text);
      // A new file is 0600 too.
      const fresh = path.join(dir, 'fresh.csv');
      const again = await new Promise<number>((resolve) => {
        execFile(process.execPath, [CLI, 'device', 'export', p.productKey, '--out', fresh, '--url', srv.api, '--token', srv.adminToken], { env, cwd: dir }, (err) => resolve(err ? 1 : 0));
      });
      assert.equal(again, 0);
      assert.equal(modeOf(fresh), '600');
    } finally {
      await srv.stop();
    }
  });
});
