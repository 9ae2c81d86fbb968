/**
 * Keep-alive expiry (spec 1.5): a device that connected with keep-alive 30 s and then sends
 * nothing is dropped after 1.5 x 30 = 45 s and goes OFFLINE; a device that sends PINGREQ
 * stays. Raw sockets (net + mqtt-packet) so nothing pings behind the test's back.
 *
 * This file takes ~50 s of wall time (30 s is the smallest keep-alive the platform accepts)
 * but is idle meanwhile; it is its own file so the runner overlaps it with the others.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createDevice, eventually, signedConnect } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { openRawMqtt } from './fix-raw-mqtt.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('keep-alive expiry makes a silent device OFFLINE', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server.stop();
  });

  const statusOf = async (d: { productKey: string; deviceName: string }) =>
    (await server.request('GET', `/api/v1/products/${d.productKey}/devices/${d.deviceName}`)).body.status as string;

  it('keep-alive 30: silent for 45 s -> connection closed by the server, OFFLINE; a pinging device stays ONLINE', { timeout: 90_000 }, async () => {
    const port = server.running.listeners.mqtt!.port;
    const silent = await createDevice(server);
    const pinging = await createDevice(server);
    const silentConn = await openRawMqtt(port);
    const pingConn = await openRawMqtt(port);
    let pinger: NodeJS.Timeout | undefined;
    try {
      const s = signedConnect(silent);
      const p = signedConnect(pinging);
      const connectedAt = Date.now();
      assert.equal((await silentConn.connect({ ...s, keepalive: 30 })).returnCode, 0);
      assert.equal((await pingConn.connect({ ...p, keepalive: 30 })).returnCode, 0);
      pinger = setInterval(() => pingConn.send({ cmd: 'pingreq' }), 20_000);
      await eventually(async () => (await statusOf(silent)) === 'ONLINE' && (await statusOf(pinging)) === 'ONLINE');

      // Still inside 1.5 x keep-alive: nothing happens yet.
      await sleep(Math.max(0, connectedAt + 40_000 - Date.now()));
      assert.equal(silentConn.isClosed(), false, 'closed before 1.5 x keep-alive');
      assert.equal(await statusOf(silent), 'ONLINE');

      await Promise.race([silentConn.closed, sleep(Math.max(0, connectedAt + 60_000 - Date.now()))]);
      assert.equal(silentConn.isClosed(), true, 'silent device not dropped within 60 s');
      assert.ok(Date.now() - connectedAt >= 44_000, `dropped after ${Date.now() - connectedAt} ms, before 1.5 x keep-alive`);
      await eventually(async () => (await statusOf(silent)) === 'OFFLINE');
      assert.ok(
        server.logs.some((l) => l.includes(silent.deviceName) && l.includes('keep-alive expired')),
        'the session was closed for keep-alive expiry',
      );

      // The device that pinged (at 20 s and 40 s) is still connected and answered its pings.
      assert.equal(pingConn.isClosed(), false);
      assert.ok(pingConn.packets.filter((x) => x.cmd === 'pingresp').length >= 2);
      assert.equal(await statusOf(pinging), 'ONLINE');
    } finally {
      if (pinger) clearInterval(pinger);
      silentConn.destroy();
      pingConn.destroy();
    }
  });
});
