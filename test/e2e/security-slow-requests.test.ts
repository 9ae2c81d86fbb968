/**
 * Slow requests (issue 11 item 6): the HTTP listeners close connections that trickle their
 * body one byte at a time or their headers a line at a time (slowloris), and cap the
 * connections one source address holds open. While such an attack runs, an honest device
 * still gets a token from HTTPS /auth and still logs in over MQTT.
 *
 * The deadlines are shortened through configuration (THINGAUTH_HTTP_HEADERS_TIMEOUT_SECONDS,
 * THINGAUTH_HTTP_REQUEST_TIMEOUT_SECONDS, THINGAUTH_MANAGEMENT_REQUEST_TIMEOUT_SECONDS) so the
 * test takes seconds. Each trickle would take minutes to finish: a closed socket before that
 * is the server's doing. Before the fix (no deadlines) none of them was ever closed.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { deviceHttpsPost, deviceHttpsPort } from '../helpers/https.js';
import { caOf, connectClient, createDevice, endClient, signedConnect, type DeviceCredentials } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/** The management cap this file's second server runs with (the default is 128). */
const MANAGEMENT_CONNECTIONS_PER_SOURCE = 8;

const HEADERS_S = 1;
const REQUEST_S = 3;
/** Far above the deadlines (a loaded machine), far below what a trickle needs to finish. */
const CLOSED_WITHIN_MS = 20_000;
const TRICKLE_EVERY_MS = 400;
const noop = () => undefined;

function authBody(d: DeviceCredentials): string {
  const clientId = `${d.productKey}.${d.deviceName}`;
  const sign = createHmac('sha256', d.deviceSecret).update(`clientId${clientId}deviceName${d.deviceName}productKey${d.productKey}`).digest('hex');
  return JSON.stringify({ clientId, signmethod: 'hmacsha256', sign, productKey: d.productKey, deviceName: d.deviceName });
}

function open(server: TestServer, target: 'device-https' | 'management-http', localAddress = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const port = server.running.listeners[target]!.port;
    const s =
      target === 'device-https'
        ? tls.connect({ host: '127.0.0.1', port, localAddress, ca: caOf(server), servername: 'localhost' } as tls.ConnectionOptions)
        : net.connect({ host: '127.0.0.1', port, localAddress });
    s.on('error', noop);
    s.once(target === 'device-https' ? 'secureConnect' : 'connect', () => resolve(s));
    s.once('close', () => reject(new Error('closed before it was open')));
  });
}

/**
 * Sends `head`, then one byte of `trickle` every TRICKLE_EVERY_MS until the server closes the
 * socket; resolves with how long the socket lived after `head` and whether it ran out of bytes
 * (which would mean the server never closed it).
 */
function trickle(socket: net.Socket, head: string, bytes: string): { started: Promise<void>; closed: Promise<{ ms: number; exhausted: boolean }> } {
  let i = 0;
  let exhausted = false;
  const t0 = Date.now();
  const started = new Promise<void>((r) => socket.write(head, () => r()));
  const timer = setInterval(() => {
    if (i >= bytes.length) {
      exhausted = true;
      clearInterval(timer);
      return;
    }
    socket.write(bytes[i++]!);
  }, TRICKLE_EVERY_MS);
  const closed = new Promise<{ ms: number; exhausted: boolean }>((resolve) =>
    socket.once('close', () => {
      clearInterval(timer);
      resolve({ ms: Date.now() - t0, exhausted });
    }),
  );
  return { started, closed };
}

/** A POST whose declared body is 10,000 bytes: at one byte per TRICKLE_EVERY_MS, over an hour. */
const SLOW_BODY_HEAD = (path: string, extra = '') => `POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n${extra}\r\n{`;
const BODY_BYTES = '"x":"' + 'a'.repeat(9_990);
/** Headers that never end: one more header byte at a time. */
const SLOW_HEADER_HEAD = 'GET /healthz HTTP/1.1\r\nHost: localhost\r\n';
const HEADER_BYTES = 'X-Slow: ' + 'b'.repeat(9_000);

describe('slow requests: deadlines on the HTTP listeners, an honest device served during the attack', () => {
  let server: TestServer;
  let dev: DeviceCredentials;

  before(async () => {
    server = await startTestServer({
      httpHeadersTimeoutSeconds: String(HEADERS_S),
      httpRequestTimeoutSeconds: String(REQUEST_S),
      managementRequestTimeoutSeconds: String(REQUEST_S),
      deviceConnectRatePerMinute: '0',
    });
    dev = await createDevice(server);
  });
  after(async () => {
    await server?.stop();
  });

  it('device HTTPS: trickled bodies and trickled headers are closed within the deadlines; meanwhile a device gets a token and logs in over MQTT', async () => {
    // 24 attackers, each reopening at once when the server closes it, until the honest
    // device has been served: the attack runs the whole time.
    let stop = false;
    let openNow = 0;
    const results: { ms: number; exhausted: boolean }[] = [];
    const firstWave: Promise<void>[] = [];
    const attacker = async (head: string, bytes: string, firstStarted: () => void) => {
      let first = true;
      while (!stop) {
        const socket = await open(server, 'device-https');
        openNow++;
        const t = trickle(socket, head, bytes);
        if (first) void t.started.then(firstStarted);
        first = false;
        const r = await t.closed;
        openNow--;
        results.push(r);
      }
    };
    const attackers: Promise<void>[] = [];
    for (let i = 0; i < 12; i++) {
      for (const [head, bytes] of [[SLOW_BODY_HEAD('/auth'), BODY_BYTES], [SLOW_HEADER_HEAD, HEADER_BYTES]] as const) {
        let started!: () => void;
        firstWave.push(new Promise<void>((r) => (started = r)));
        attackers.push(attacker(head, bytes, started));
      }
    }
    await Promise.all(firstWave);

    // During the attack, from the same source address as the attackers.
    const auth = await deviceHttpsPost(server, '/auth', authBody(dev), { 'content-type': 'application/json' });
    assert.equal(auth.json?.code, 0, auth.text);
    assert.equal(typeof auth.json.info.token, 'string');
    const client = await connectClient(server, 'mqtt', signedConnect(dev));
    await endClient(client);
    assert.ok(openNow > 0, 'the attack was still running while the honest device was served');
    // Until every attacker has been closed by the server at least once.
    await Promise.race([
      (async () => {
        while (results.length < attackers.length) await new Promise((r) => setTimeout(r, 50));
      })(),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`slow connections not closed within ${CLOSED_WITHIN_MS} ms`)), CLOSED_WITHIN_MS)),
    ]);
    stop = true;
    await Promise.all(attackers);
    for (const r of results) {
      assert.equal(r.exhausted, false, 'the server closed it, not the end of the trickle');
      assert.ok(r.ms < CLOSED_WITHIN_MS, `closed after ${r.ms} ms`);
    }
    // After the attack, still served.
    assert.equal((await deviceHttpsPost(server, '/auth', authBody(dev), { 'content-type': 'application/json' })).json?.code, 0);
  });

  it('management API: a trickled body (also an authenticated import) and trickled headers are closed within the deadlines', async () => {
    const closing = [
      trickle(await open(server, 'management-http'), SLOW_BODY_HEAD('/api/v1/products'), BODY_BYTES).closed,
      trickle(await open(server, 'management-http'), SLOW_BODY_HEAD('/api/v1/import/devices', `Authorization: Bearer ${server.adminToken}\r\n`).replace('application/json', 'text/csv').replace('\r\n\r\n{', '\r\n\r\nproductKey,deviceName\n'), 'a1xxxxxxxxx,dev-' + 'c'.repeat(9_000)).closed,
      trickle(await open(server, 'management-http'), SLOW_HEADER_HEAD, HEADER_BYTES).closed,
    ];
    const results = await Promise.race([
      Promise.all(closing),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`slow connections not closed within ${CLOSED_WITHIN_MS} ms`)), CLOSED_WITHIN_MS)),
    ]);
    for (const r of results) assert.equal(r.exhausted, false);
    const health = await fetch(`${server.api}/healthz`);
    assert.equal(health.status, 200);
    assert.ok(!server.logs.some((l) => /"level":(50|60)/.test(l)), 'no error-level log from a slow peer');
  });
});

describe('connections per source address', () => {
  let server: TestServer;
  let dev: DeviceCredentials;
  const sockets: net.Socket[] = [];

  before(async () => {
    server = await startTestServer({ httpConnectionsPerSource: '4', managementConnectionsPerSource: String(MANAGEMENT_CONNECTIONS_PER_SOURCE) });
    dev = await createDevice(server);
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await server?.stop();
  });

  /** Opens `n` plain TCP connections from `localAddress`; resolves once each is connected (or closed at once). */
  async function flood(port: number, localAddress: string, n: number): Promise<{ socket: net.Socket; closed: boolean }[]> {
    const out: { socket: net.Socket; closed: boolean }[] = [];
    for (let i = 0; i < n; i++) {
      const socket = net.connect({ host: '127.0.0.1', port, localAddress });
      socket.on('error', noop);
      sockets.push(socket);
      const entry = { socket, closed: false };
      socket.once('close', () => (entry.closed = true));
      await new Promise((r) => socket.once('connect', r));
      out.push(entry);
    }
    return out;
  }

  const closedOf = (s: net.Socket) => new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())));

  it('device HTTPS: the connection over THINGAUTH_HTTP_CONNECTIONS_PER_SOURCE is closed at once; other sources are served', async () => {
    const held = await flood(deviceHttpsPort(server), '127.0.0.3', 5);
    await closedOf(held[4]!.socket);
    assert.deepEqual(held.slice(0, 4).map((h) => h.closed), [false, false, false, false], 'the first four are held, not timed out');
    // Another source gets a token at once; the flooding source does not get a fifth socket.
    const auth = await deviceHttpsPost(server, '/auth', authBody(dev), { 'content-type': 'application/json' }, { localAddress: '127.0.0.4' });
    assert.equal(auth.json?.code, 0, auth.text);
    await assert.rejects(deviceHttpsPost(server, '/auth', authBody(dev), { 'content-type': 'application/json' }, { localAddress: '127.0.0.3' }));
    // Once the flooding source lets go, it is served again.
    for (const h of held) h.socket.destroy();
    await Promise.all(held.map((h) => closedOf(h.socket)));
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) {
      ok = await deviceHttpsPost(server, '/auth', authBody(dev), { 'content-type': 'application/json' }, { localAddress: '127.0.0.3' }).then((r) => r.json?.code === 0, () => false);
      if (!ok) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(ok, 'served again after its connections closed');
  });

  it(`management API: at most ${MANAGEMENT_CONNECTIONS_PER_SOURCE} connections per source`, async () => {
    const port = server.running.listeners['management-http']!.port;
    const held = await flood(port, '127.0.0.5', MANAGEMENT_CONNECTIONS_PER_SOURCE + 1);
    await closedOf(held[MANAGEMENT_CONNECTIONS_PER_SOURCE]!.socket);
    assert.equal(held.slice(0, MANAGEMENT_CONNECTIONS_PER_SOURCE).filter((h) => h.closed).length, 0);
    assert.equal((await fetch(`${server.api}/healthz`)).status, 200, 'another source (127.0.0.1) is served');
    for (const h of held) h.socket.destroy();
  });
});
