/**
 * Keep-alive expiry (spec 1.5): a device that connected with keep-alive K and then sends
 * nothing is dropped after 1.5 x K and goes OFFLINE; a device that sends PINGREQ stays. Raw
 * sockets (net + mqtt-packet) so nothing pings behind the test's back.
 *
 * The platform's smallest keep-alive is 30 s (29 is refused by default, mqtt-connect.test.ts);
 * this server lowers it with THINGAUTH_KEEPALIVE_MIN_SECONDS so the expiry takes seconds.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createDevice, eventually, signedConnect } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { openRawMqtt } from './fix-raw-mqtt.js';

const KEEPALIVE_S = 2;

describe('keep-alive expiry makes a silent device OFFLINE', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer({ keepaliveMinSeconds: String(KEEPALIVE_S) });
  });
  after(async () => {
    await server.stop();
  });

  const statusOf = async (d: { productKey: string; deviceName: string }) =>
    (await server.request('GET', `/api/v1/products/${d.productKey}/devices/${d.deviceName}`)).body.status as string;

  it(`keep-alive ${KEEPALIVE_S}: silent past 1.5 x keep-alive -> closed by the server, OFFLINE; a pinging device stays ONLINE`, { timeout: 60_000 }, async () => {
    const port = server.running.listeners.mqtt!.port;
    const silent = await createDevice(server);
    const pinging = await createDevice(server);
    const silentConn = await openRawMqtt(port);
    const pingConn = await openRawMqtt(port);
    let pinger: NodeJS.Timeout | undefined;
    try {
      assert.equal((await pingConn.connect({ ...signedConnect(pinging), keepalive: KEEPALIVE_S })).returnCode, 0);
      pinger = setInterval(() => pingConn.send({ cmd: 'pingreq' }), (KEEPALIVE_S * 1000) / 2);
      const connectedAt = Date.now();
      assert.equal((await silentConn.connect({ ...signedConnect(silent), keepalive: KEEPALIVE_S })).returnCode, 0);
      await eventually(async () => (await statusOf(silent)) === 'ONLINE' && (await statusOf(pinging)) === 'ONLINE');

      // The server closes the silent connection, and not before 1.5 x keep-alive.
      await silentConn.closed;
      const closedAfter = Date.now() - connectedAt;
      assert.ok(closedAfter >= KEEPALIVE_S * 1500 - 100, `dropped after ${closedAfter} ms, before 1.5 x keep-alive`);
      await eventually(async () => (await statusOf(silent)) === 'OFFLINE', 10_000);
      assert.ok(
        server.logs.some((l) => l.includes(silent.deviceName) && l.includes('keep-alive expired')),
        'the session was closed for keep-alive expiry',
      );

      // The pinging device outlives several keep-alive periods and had its pings answered.
      const pongs = () => pingConn.packets.filter((x) => x.cmd === 'pingresp').length;
      await eventually(async () => pongs() >= 6, 30_000);
      assert.equal(pingConn.isClosed(), false);
      assert.equal(await statusOf(pinging), 'ONLINE');
    } finally {
      if (pinger) clearInterval(pinger);
      silentConn.destroy();
      pingConn.destroy();
    }
  });
});
