/**
 * TLS manners (issue 12 item 5): every TLS session the server ends — the device closes, sends
 * DISCONNECT, is kicked, or the server shuts down — ends with close_notify and a FIN, never a
 * bare cut or a reset. Embedded TLS stacks (mbedtls in the C Link SDK) report a session cut
 * without close_notify as an error (a possible truncation attack) rather than a clean close.
 *
 * A TCP relay between client and server watches the server's side: the TLS record types it
 * sends (TLS 1.2, so an alert record, type 21, is visible on the wire) and whether its side
 * ended with FIN or RST.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { after, describe, it } from 'node:test';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { caOf, createDevice, signedConnect, type SignedConnect } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const TLS_ALERT = 21;

interface Watched {
  port: number;
  /** Record types the server sent, FIN or RST from the server. */
  seen: { recordTypes: number[]; fin: boolean; rst: boolean };
  /** Resolves when the server's side closed. */
  serverSideClosed: Promise<void>;
  close(): void;
}

async function relayTo(targetPort: number): Promise<Watched> {
  const seen = { recordTypes: [] as number[], fin: false, rst: false };
  let closed!: () => void;
  const serverSideClosed = new Promise<void>((r) => (closed = r));
  const proxy = net.createServer((down) => {
    const up = net.connect(targetPort, '127.0.0.1');
    let pending = Buffer.alloc(0);
    up.on('data', (chunk: Buffer) => {
      down.write(chunk);
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 5 && pending.length >= 5 + pending.readUInt16BE(3)) {
        seen.recordTypes.push(pending[0]!);
        pending = pending.subarray(5 + pending.readUInt16BE(3));
      }
    });
    up.on('end', () => {
      seen.fin = true;
      down.end();
    });
    up.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNRESET') seen.rst = true;
      down.destroy();
    });
    up.on('close', () => closed());
    down.on('data', (chunk: Buffer) => up.write(chunk));
    down.on('end', () => up.end());
    down.on('error', () => up.destroy());
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  return { port: (proxy.address() as net.AddressInfo).port, seen, serverSideClosed, close: () => proxy.close() };
}

/** A device logged in over TLS 1.2 through the relay; resolves after its CONNACK. */
async function tlsSession(server: TestServer, targetPort: number, c: SignedConnect): Promise<{ socket: tls.TLSSocket; relay: Watched }> {
  const relay = await relayTo(targetPort);
  const socket = tls.connect({ host: '127.0.0.1', port: relay.port, ca: caOf(server), servername: 'localhost', maxVersion: 'TLSv1.2' }, () => {
    socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 60, clientId: c.clientId, username: c.username, password: Buffer.from(c.password) }));
  });
  socket.on('error', () => undefined);
  await new Promise((r) => socket.once('data', r));
  return { socket, relay };
}

function assertClosedWithCloseNotify(relay: Watched, what: string): void {
  assert.ok(relay.seen.recordTypes.includes(TLS_ALERT), `${what}: no close_notify alert from the server (records ${relay.seen.recordTypes.join(',')})`);
  assert.equal(relay.seen.fin, true, `${what}: the server's side did not end with FIN`);
  assert.equal(relay.seen.rst, false, `${what}: the server reset the connection`);
}

describe('TLS sessions end with close_notify and FIN', () => {
  const relays: Watched[] = [];
  after(() => relays.forEach((r) => r.close()));

  it('when the device closes, sends DISCONNECT, or is kicked (TLS on the MQTT port and MQTTS)', async () => {
    const server = await startTestServer();
    try {
      const d = await createDevice(server);
      for (const listener of ['mqtt', 'mqtts'] as const) {
        const port = server.running.listeners[listener]!.port;
        const cases: [string, (s: tls.TLSSocket) => Promise<unknown>][] = [
          ['device closes', async (s) => s.end()],
          ['DISCONNECT', async (s) => s.write(mqttPacket.generate({ cmd: 'disconnect' }))],
          ['DISCONNECT and close', async (s) => s.end(mqttPacket.generate({ cmd: 'disconnect' }))],
          ['kicked (device disabled)', () => server.request('POST', `/api/v1/products/${d.productKey}/devices/${d.deviceName}/disable`)],
        ];
        for (const [what, end] of cases) {
          await server.request('POST', `/api/v1/products/${d.productKey}/devices/${d.deviceName}/enable`);
          const { socket, relay } = await tlsSession(server, port, signedConnect(d));
          relays.push(relay);
          await end(socket);
          await relay.serverSideClosed;
          assertClosedWithCloseNotify(relay, `${listener}, ${what}`);
        }
      }
    } finally {
      await server.stop();
    }
  });

  it('when the server shuts down: TLS on the MQTT port, MQTTS and WSS', async () => {
    const server = await startTestServer();
    let stopped = false;
    try {
      const d = await createDevice(server);
      const other = await createDevice(server, { productKey: d.productKey });
      const third = await createDevice(server, { productKey: d.productKey });
      const onPlainPort = await tlsSession(server, server.running.listeners.mqtt!.port, signedConnect(d));
      const onMqtts = await tlsSession(server, server.running.listeners.mqtts!.port, signedConnect(other));
      const wssRelay = await relayTo(server.running.listeners['mqtt-wss']!.port);
      relays.push(onPlainPort.relay, onMqtts.relay, wssRelay);
      const c = signedConnect(third);
      const wss = mqtt.connect(`wss://127.0.0.1:${wssRelay.port}/mqtt`, {
        ...c, ca: caOf(server), servername: 'localhost', reconnectPeriod: 0, protocolVersion: 4, keepalive: 60,
        // TLS 1.2, so the alert record shows on the wire (TLS 1.3 encrypts its type).
        wsOptions: { ca: caOf(server), servername: 'localhost', maxVersion: 'TLSv1.2' },
      } as mqtt.IClientOptions);
      wss.on('error', () => undefined);
      await new Promise<void>((resolve, reject) => {
        wss.once('connect', () => resolve());
        wss.once('error', reject);
      });
      await server.stop();
      stopped = true;
      await Promise.all([onPlainPort.relay.serverSideClosed, onMqtts.relay.serverSideClosed, wssRelay.serverSideClosed]);
      assertClosedWithCloseNotify(onPlainPort.relay, 'shutdown, TLS on the MQTT port');
      assertClosedWithCloseNotify(onMqtts.relay, 'shutdown, MQTTS');
      assertClosedWithCloseNotify(wssRelay, 'shutdown, WSS');
      wss.end(true);
    } finally {
      if (!stopped) await server.stop();
    }
  });
});
