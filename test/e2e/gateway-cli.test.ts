/**
 * `thingauth topo list|add|remove` as users run it: the built CLI in a child process against
 * a real server (real HTTP, real SQLite file).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { setupGateway, type GatewaySetup } from './gateway-helpers.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

function cli(s: TestServer, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('THINGAUTH_') && v !== undefined) env[k] = v;
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args, '--url', s.api, '--token', s.adminToken], { env }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('thingauth topo', () => {
  let s: TestServer;
  let g: GatewaySetup;

  before(async () => {
    s = await startTestServer();
    g = await setupGateway(s, { subCount: 3 });
  });
  after(async () => {
    await s.stop();
  });

  it('add (pk/dn and --sub-product forms), list, remove', async () => {
    const gw = [g.gateway.productKey, g.gateway.deviceName];
    const [a, b, c] = g.subs;
    const add = await cli(s, ['topo', 'add', ...gw, `${a!.productKey}/${a!.deviceName}`]);
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /1 added; 1 sub-devices now/);
    const add2 = await cli(s, ['topo', 'add', ...gw, b!.deviceName, c!.deviceName, '--sub-product', g.subProductKey, '--json']);
    assert.equal(add2.code, 0, add2.stderr);
    assert.equal(JSON.parse(add2.stdout).total, 3);

    const list = await cli(s, ['topo', 'list', ...gw, '--json']);
    assert.equal(list.code, 0, list.stderr);
    const page = JSON.parse(list.stdout);
    assert.deepEqual(page.items.map((d: { deviceName: string }) => d.deviceName).sort(), [a!.deviceName, b!.deviceName, c!.deviceName].sort());
    assert.ok(!list.stdout.includes(a!.deviceSecret), 'no secrets in the listing');
    const human = await cli(s, ['topo', 'list', ...gw]);
    assert.match(human.stdout, /\(3 of 3\)/);

    const rm = await cli(s, ['topo', 'remove', ...gw, `${a!.productKey}/${a!.deviceName}`]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.match(rm.stdout, /1 removed/);
    assert.equal((await s.request('GET', `/api/v1/products/${a!.productKey}/devices/${a!.deviceName}`)).body.gateway, null);
  });

  it('fails with a clear message: bad sub-device argument, unknown sub-device, not in topology', async () => {
    const gw = [g.gateway.productKey, g.gateway.deviceName];
    const bad = await cli(s, ['topo', 'add', ...gw, 'just-a-name']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /productKey\/deviceName/);
    const unknown = await cli(s, ['topo', 'add', ...gw, `${g.subProductKey}/no-such-sub`]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /not found/);
    const notIn = await cli(s, ['topo', 'remove', ...gw, `${g.subs[0]!.productKey}/${g.subs[0]!.deviceName}`]);
    assert.equal(notIn.code, 1);
    assert.match(notIn.stderr, /not a sub-device of/);
  });
});
