/**
 * Smoke test of the benchmark scripts: runs `bench/run.js --smoke --no-mosquitto` (tiny sizes,
 * thingauth only) as a child process and checks that every scenario ran end to end against
 * the real server with nothing refused, and that stdout is one valid JSON object per line.
 * No timing is asserted: the numbers of a smoke run mean nothing.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';

const RUN_JS = fileURLToPath(new URL('../../bench/run.js', import.meta.url));

type Fig = Record<string, any>;

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [RUN_JS, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

test('bench --smoke runs every scenario against thingauth with 0 refusals and prints JSON lines', { timeout: 240_000 }, async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'thingauth-bench-smoke-'));
  try {
    const r = await run(['--smoke', '--no-mosquitto', '--out', out]);
    assert.equal(r.code, 0, `bench exited with ${r.code}:\n${r.stderr.slice(-2_000)}`);
    const lines = r.stdout.split('\n').filter((l) => l !== '');
    assert.ok(lines.length >= 10, `expected a JSON line per figure, got:\n${r.stdout}`);
    const figs: Fig[] = lines.map((l, i) => {
      let f: unknown;
      assert.doesNotThrow(() => (f = JSON.parse(l)), `stdout line ${i + 1} is not JSON: ${l}`);
      assert.ok(f !== null && typeof f === 'object' && !Array.isArray(f), `line ${i + 1} is not an object`);
      assert.equal(typeof (f as Fig).bench, 'string', `line ${i + 1} has no "bench"`);
      return f as Fig;
    });
    const one = (bench: string, match: Fig = {}): Fig => {
      const found = figs.filter((f) => f.bench === bench && Object.entries(match).every(([k, v]) => f[k] === v));
      assert.equal(found.length, 1, `expected one ${bench} ${JSON.stringify(match)} figure, got ${found.length}:\n${r.stdout}`);
      const f = found[0]!;
      assert.equal(f.skipped, undefined, `${bench} was skipped: ${f.skipped}`);
      return f;
    };

    assert.equal(one('machine').mode, 'smoke');
    // Mosquitto is off: said so, never a made-up figure.
    const mq = figs.filter((f) => f.target === 'mosquitto');
    assert.ok(mq.length > 0 && mq.every((f) => typeof f.skipped === 'string'), 'Mosquitto figures must be skips in a --no-mosquitto run');

    const held = one('held-connections', { target: 'thingauth' });
    assert.equal(held.held, held.n);
    assert.equal(held.refused, 0);
    assert.equal(held.errors, 0);
    assert.ok(held.rssAfterKiB > 0 && held.rssBeforeKiB > 0);

    for (const transport of ['tcp', 'tls']) {
      const s = one('connect-storm', { target: 'thingauth', transport });
      assert.equal(s.accepted, s.n, `${transport} storm: ${JSON.stringify(s)}`);
      assert.equal(s.refused, 0);
      assert.equal(s.errors, 0);
      assert.ok(s.connectsPerSec > 0 && s.p99Ms >= s.p50Ms);
    }

    for (const cache of ['cold', 'warm']) {
      const a = one('auth-decision', { cache });
      assert.equal(a.denied, 0, `${cache} auth decisions denied a correctly signed device`);
      assert.ok(a.opsPerSec > 0);
    }

    const https = one('register-https');
    assert.equal(https.ok, https.n);
    assert.equal(https.failed, 0, JSON.stringify(https.failures));
    // Keep-alive: no more TLS connections than requests in flight.
    assert.ok(https.tlsConnections <= https.c, `keep-alive not used: ${https.tlsConnections} connections for C=${https.c}`);

    const regnwl = one('register-mqtt-regnwl');
    assert.equal(regnwl.ok, regnwl.n);
    assert.equal(regnwl.failed, 0, JSON.stringify(regnwl.failures));

    const bulk = one('bulk-provision');
    assert.equal(bulk.failed, undefined, String(bulk.failed));
    assert.equal(bulk.created, bulk.n);
    assert.ok(bulk.cliPeakRssKiB > 0 && bulk.serverPeakRssKiB > 0);

    const imp = one('migration-import');
    assert.equal(imp.failed, undefined, String(imp.failed));
    assert.equal(imp.created, imp.n);
    assert.ok(imp.cliPeakRssKiB > 0 && imp.serverPeakRssKiB > 0);

    const gw = one('gateway-batch-login');
    assert.equal(gw.failed, 0, JSON.stringify(gw.failures));
    assert.equal(gw.batches, Math.ceil(gw.n / gw.batch));

    for (const target of ['thingauth-1-node', 'thingauth-workers-2']) {
      const c = one('cluster-connect-storm', { target });
      assert.equal(c.accepted, c.n, `${target} through HAProxy: ${JSON.stringify(c)}`);
      assert.equal(c.refused, 0);
      assert.ok(c.serverCpuUsPerConnect > 0);
    }
    const lat = one('cluster-cross-node-latency');
    assert.equal(lat.received, lat.messages);
    assert.ok(lat.p99Ms >= lat.p50Ms && lat.p50Ms > 0);
    const clusterHeld = one('cluster-held-connections');
    assert.equal(clusterHeld.held, clusterHeld.n);

    // The report made from the same lines.
    const md = fs.readFileSync(path.join(out, 'smoke.md'), 'utf8');
    assert.match(md, /### Connect storm/);
    assert.match(md, /### Targets/);
    assert.ok(fs.readFileSync(path.join(out, 'benchmarks-connect-smoke.svg'), 'utf8').startsWith('<svg'));
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});
