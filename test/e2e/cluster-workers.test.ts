/**
 * `thingauth serve --workers 2` (issue 14, all cores of one machine): two worker processes
 * share the listeners and are two nodes of one cluster on Redis and PostgreSQL. Logins spread
 * over both workers, a device's publish reaches an application whichever worker each landed on,
 * and a second login of a device takes over its first wherever that one is. Without
 * THINGAUTH_REDIS_URL the command stops at once and says what is missing.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import { connectAppTo, connectTo, createDeviceIn, createDeviceOn, deviceConnect, startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { endClient, eventually, nextMessage, subscribe, waitForClose } from '../helpers/mqtt.js';
import { makeTempDir } from '../helpers/server.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

describe('serve --workers without Redis', () => {
  it('stops with exit code 2 and names THINGAUTH_REDIS_URL', async () => {
    const proc = spawn(process.execPath, [MAIN, 'serve', '--workers', '2'], {
      env: { ...process.env, THINGAUTH_DATA_DIR: makeTempDir(), THINGAUTH_REDIS_URL: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)));
    assert.equal(code, 2);
    assert.match(stderr, /--workers .*set THINGAUTH_REDIS_URL/);
  });
});

const started = await startTestCluster([]);

if ('skip' in started) {
  test('serve --workers', { skip: started.skip }, () => undefined);
} else {
  const cluster: TestCluster = started.cluster;
  after(() => cluster.stop());
  const clients: MqttClient[] = [];
  after(async () => {
    for (const cl of clients) await endClient(cl);
  });

  describe('serve --workers 2 on Redis and PostgreSQL', () => {
    it('two workers share the listeners as two nodes of one cluster', async () => {
      const node = await cluster.startNode('box', {}, ['--workers', '2']);
      const nodes = await eventually(async () => {
        const r = await node.request('GET', '/api/v1/nodes');
        return r.body.nodes?.length === 2 ? r.body.nodes : undefined;
      }, 10_000);
      assert.deepEqual(nodes.map((n: { nodeId: string }) => n.nodeId), ['box-w0', 'box-w1']);
      const dev = await createDeviceOn(node);
      const app = await connectAppTo(node, node.ports.mqtt!, [dev.productKey]);
      clients.push(app);
      await subscribe(app, `/${dev.productKey}/+/user/update`, 0);
      // Enough devices that both workers get some (round-robin hand-off).
      const devs = [dev, ...(await Promise.all(Array.from({ length: 7 }, () => createDeviceIn(node, dev.productKey))))];
      const connected = await Promise.all(devs.map(async (d) => connectTo(node.ports.mqtt!, deviceConnect(d))));
      clients.push(...connected);
      const perWorker = await eventually(async () => {
        const r = await node.request('GET', '/api/v1/nodes');
        const s = (r.body.nodes as { nodeId: string; sessions: number }[]).map((n) => n.sessions);
        return s.reduce((x, y) => x + y, 0) === devs.length + 1 ? s : undefined;
      }, 5_000);
      assert.ok(perWorker.every((n) => n > 0), `sessions per worker ${perWorker.join(', ')}: both serve`);
      for (const [i, d] of devs.entries()) {
        const got = nextMessage(app, (t) => t === `/${d.productKey}/${d.deviceName}/user/update`, 5_000);
        connected[i]!.publish(`/${d.productKey}/${d.deviceName}/user/update`, `from-${i}`);
        assert.equal((await got).payload.toString(), `from-${i}`);
      }
      // Takeover wherever the older session is.
      const older = connected[0]!;
      const closed = waitForClose(older, 5_000);
      clients.push(await connectTo(node.ports.mqtt!, deviceConnect(dev)));
      await closed;
    });
  });
}
