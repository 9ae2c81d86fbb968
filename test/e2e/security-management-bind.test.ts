/**
 * The management API binds its own address (issue 11 item 2): THINGAUTH_MANAGEMENT_HOST,
 * loopback by default, while THINGAUTH_HOST binds the device listeners. Checked over real
 * sockets: the device listeners here bind 127.0.0.2, so a listener answers on exactly the
 * addresses its bind allows (on Linux every 127.x address is loopback).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.js';

/** true when a TCP connection to host:port is accepted, false when it is refused. */
function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('management API bind address', () => {
  const servers: TestServer[] = [];
  after(async () => {
    for (const s of servers) await s.stop();
  });

  it('by default the management API listens on 127.0.0.1 only, the device listeners on THINGAUTH_HOST; the start line says how to open it', async () => {
    const server = await startTestServer({ host: '127.0.0.2' });
    servers.push(server);
    const l = server.running.listeners;
    const mgmt = l['management-http']!.port;
    assert.equal(await reachable('127.0.0.1', mgmt), true);
    assert.equal(await reachable('127.0.0.2', mgmt), false, 'not on the device listeners address');
    for (const name of ['device-https', 'mqtt', 'mqtts', 'mqtt-ws', 'mqtt-wss']) {
      assert.equal(await reachable('127.0.0.2', l[name]!.port), true, `${name} on THINGAUTH_HOST`);
      assert.equal(await reachable('127.0.0.1', l[name]!.port), false, `${name} not on the management address`);
    }
    assert.equal((await fetch(`${server.api}/healthz`)).status, 200);
    const line = server.logs.map((x) => JSON.parse(x) as { listener?: string; msg: string; url?: string }).find((j) => j.listener === 'management-http');
    assert.ok(line, 'a start line for the management API');
    assert.equal(line.url, `http://127.0.0.1:${mgmt}`);
    assert.match(line.msg, /only this machine can reach it; set THINGAUTH_MANAGEMENT_HOST=0\.0\.0\.0/);
  });

  it('THINGAUTH_MANAGEMENT_HOST=0.0.0.0 opens it on every address, and the start line warns it is plain HTTP', async () => {
    const server = await startTestServer({ host: '127.0.0.2', managementHost: '0.0.0.0', managementTls: 'off' });
    servers.push(server);
    const mgmt = server.running.listeners['management-http']!.port;
    assert.equal(await reachable('127.0.0.1', mgmt), true);
    assert.equal(await reachable('127.0.0.2', mgmt), true);
    const line = server.logs.map((x) => JSON.parse(x) as { listener?: string; msg: string }).find((j) => j.listener === 'management-http');
    assert.match(line!.msg, /reachable from the network over plain HTTP/);
  });
});
