/**
 * Hostile sockets against `thingauth serve` running as a CHILD PROCESS (issue 11 item 0), so a
 * crash shows as the process exiting rather than as a failed assertion inside the test runner.
 * On every listener (MQTT TCP, TLS on the plain MQTT port, MQTTS, WS, WSS, device HTTPS,
 * management HTTP) a raw socket is brought to each stage a peer can stop at (before any byte,
 * after garbage, part-way through a TLS ClientHello, in the middle of the TLS handshake, after a
 * partial HTTP (upgrade) header, after the 404 for a bad WebSocket path, after the upgrade, after
 * a partial MQTT CONNECT, after a partial HTTP body) and then ended three ways: a reset (RST), a
 * half-close (FIN, still reading) and garbage followed by a half-close. Afterwards the process is
 * alive and an honest device still logs in on every MQTT listener and gets an HTTPS /auth token.
 * Before the fix, the WS bad-path + reset case killed the process (unhandled ECONNRESET).
 *
 * Also: the process-level handler of `thingauth serve` logs an uncaught exception and an
 * unhandled rejection (kind, message, stack) and exits 1. The error is raised in the child by a
 * module preloaded through NODE_OPTIONS on a signal, so no test hook is needed in the server.
 */
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { signedConnect, type DeviceCredentials } from '../helpers/mqtt.js';
import { makeTempDir } from '../helpers/server.js';
import { ADMIN_TOKEN, spawnServer, type ChildServer } from './security-child-server.js';

type Finish = 'reset' | 'half-close' | 'garbage';
const FINISHES: Finish[] = ['reset', 'half-close', 'garbage'];

/** A socket brought to some stage: `raw` is the TCP socket, `out` where the peer writes (TLS on top, or raw). */
interface Peer {
  raw: net.Socket;
  out: Duplex;
}

type Transport = 'tcp' | 'tls';
interface Target {
  name: string;
  port: () => number;
  transport: Transport;
  stages: Stage[];
}
interface Stage {
  name: string;
  reach(port: number, transport: Transport): Promise<Peer>;
}

const noop = () => undefined;

function connectRaw(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    // The server may cut a hostile peer at any stage: that is its right, not a test failure.
    s.on('error', noop);
    s.once('connect', () => resolve(s));
    s.once('close', () => reject(new Error('closed before connect')));
  });
}

function startTls(raw: net.Socket): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const t = tls.connect({ socket: raw, servername: 'localhost', rejectUnauthorized: false });
    t.on('error', noop);
    t.once('secureConnect', () => resolve(t));
    t.once('close', () => reject(new Error('closed during the TLS handshake')));
  });
}

/** Resolves once what `stream` received so far satisfies `done` (rejects when it closes first). */
function receive(stream: Duplex, done: (text: string) => boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (c: Buffer) => {
      text += c.toString('latin1');
      if (done(text)) {
        stream.off('data', onData);
        resolve();
      }
    };
    stream.on('data', onData);
    stream.once('close', () => reject(new Error(`closed before the expected answer; got ${JSON.stringify(text.slice(0, 80))}`)));
  });
}

/** A real TLS ClientHello, captured from Node's TLS client by a listener that only records. */
async function captureClientHello(): Promise<Buffer> {
  const srv = net.createServer();
  const hello = new Promise<Buffer>((resolve) =>
    srv.once('connection', (s) => {
      s.on('error', noop);
      s.once('data', (c: Buffer) => {
        resolve(c);
        s.destroy();
      });
    }),
  );
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const t = tls.connect({ port: (srv.address() as net.AddressInfo).port, host: '127.0.0.1', servername: 'localhost', rejectUnauthorized: false });
  t.on('error', noop);
  const h = await hello;
  t.destroy();
  srv.close();
  return h;
}

let CLIENT_HELLO: Buffer;

function upgradeRequest(path: string): string {
  return `GET ${path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n`;
}

/** A client-to-server WebSocket binary frame (masked, as RFC 6455 requires of clients). */
function wsFrame(payload: Buffer): Buffer {
  const mask = randomBytes(4);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x82, 0x80 | len]) : Buffer.from([0x82, 0x80 | 126, len >> 8, len & 0xff]);
  return Buffer.concat([head, mask, masked]);
}

/** The first half of a CONNECT packet a device would send. */
function partialConnect(): Buffer {
  const full = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'a1Hostile.dev|securemode=3,signmethod=hmacsha256|', keepalive: 60, username: 'dev&a1Hostile', password: Buffer.from('0'.repeat(64)) });
  return full.subarray(0, Math.floor(full.length / 2));
}

// ---- stages -----------------------------------------------------------------------------

/** Connected over the target's transport (TLS handshake done when it is a TLS target). */
async function opened(port: number, transport: Transport): Promise<Peer> {
  const raw = await connectRaw(port);
  return { raw, out: transport === 'tls' ? await startTls(raw) : raw };
}

const beforeAnyByte: Stage = {
  name: 'before any byte',
  reach: async (port) => {
    const raw = await connectRaw(port);
    return { raw, out: raw };
  },
};

const partialClientHello: Stage = {
  name: 'part-way through the TLS ClientHello',
  reach: async (port) => {
    const raw = await connectRaw(port);
    raw.write(CLIENT_HELLO.subarray(0, 40));
    return { raw, out: raw };
  },
};

const midHandshake: Stage = {
  name: 'mid TLS handshake (after the server hello)',
  reach: async (port) => {
    const raw = await connectRaw(port);
    const answered = receive(raw, (t) => t.length > 0);
    raw.write(CLIENT_HELLO);
    await answered;
    return { raw, out: raw };
  },
};

const partialHttpHeader = (path: string): Stage => ({
  name: `after a partial HTTP header (${path})`,
  reach: async (port, transport) => {
    const peer = await opened(port, transport);
    peer.out.write(upgradeRequest(path).slice(0, 60));
    return peer;
  },
});

const afterWsNotFound: Stage = {
  name: 'after the 404 on a bad WebSocket path',
  reach: async (port, transport) => {
    const peer = await opened(port, transport);
    const answered = receive(peer.out, (t) => /^HTTP\/1\.1 404/.test(t));
    peer.out.write(upgradeRequest('/not-mqtt'));
    await answered;
    return peer;
  },
};

const afterWsUpgrade = (then?: Buffer): Stage => ({
  name: then ? 'after a partial MQTT CONNECT in a WebSocket frame' : 'after the WebSocket upgrade',
  reach: async (port, transport) => {
    const peer = await opened(port, transport);
    const answered = receive(peer.out, (t) => /^HTTP\/1\.1 101/.test(t) && t.includes('\r\n\r\n'));
    peer.out.write(upgradeRequest('/mqtt'));
    await answered;
    if (then) peer.out.write(wsFrame(then));
    return peer;
  },
});

const afterPartialConnect: Stage = {
  name: 'after a partial MQTT CONNECT',
  reach: async (port, transport) => {
    const peer = await opened(port, transport);
    peer.out.write(partialConnect());
    return peer;
  },
};

const afterTlsHandshake: Stage = { name: 'after the TLS handshake', reach: (port) => opened(port, 'tls') };

const partialHttpBody: Stage = {
  name: 'after a partial HTTP body',
  reach: async (port, transport) => {
    const peer = await opened(port, transport);
    peer.out.write('POST /auth HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"productKey":');
    return peer;
  },
};

const garbageFirst: Stage = {
  name: 'after garbage',
  reach: async (port, transport) => {
    const peer = await opened(port, transport);
    // Never 0x16 first on a plain socket: that would be taken for TLS (tested above).
    peer.out.write(Buffer.concat([Buffer.from('G\x00\xff'), randomBytes(200)]));
    return peer;
  },
};

async function finish(peer: Peer, how: Finish): Promise<void> {
  if (peer.raw.destroyed) return;
  if (how === 'reset') {
    peer.raw.resetAndDestroy();
  } else if (how === 'half-close') {
    // FIN only: this side still reads. Destroyed at the end of the test.
    peer.out.end();
  } else {
    // Garbage, then FIN. (Not garbage then RST under a client TLS socket: Node's TLS client can
    // spin on a raw socket reset under it, which hangs the test process, not the server.)
    peer.out.end(randomBytes(512));
  }
}

// ---- honest clients ---------------------------------------------------------------------

function mqttLogin(server: ChildServer, url: string, dev: DeviceCredentials): Promise<void> {
  const fields = signedConnect(dev);
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { ...fields, ca: server.ca, servername: 'localhost', keepalive: 60, reconnectPeriod: 0, connectTimeout: 10_000 });
    c.once('connect', () => {
      c.end(true);
      resolve();
    });
    c.once('error', (e) => {
      c.end(true);
      reject(e);
    });
    c.once('close', () => reject(new Error(`${url}: closed before CONNACK`)));
  });
}

function httpsAuth(server: ChildServer, dev: DeviceCredentials): Promise<{ code: number; token?: string }> {
  const clientId = `${dev.productKey}.${dev.deviceName}`;
  const sign = createHmac('sha256', dev.deviceSecret).update(`clientId${clientId}deviceName${dev.deviceName}productKey${dev.productKey}`).digest('hex');
  const body = JSON.stringify({ clientId, signmethod: 'hmacsha256', sign, productKey: dev.productKey, deviceName: dev.deviceName });
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port: server.ports['device-https'], path: '/auth', method: 'POST', ca: server.ca, servername: 'localhost', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString('utf8')));
        res.on('end', () => {
          const j = JSON.parse(text) as { code: number; info?: { token: string } };
          resolve({ code: j.code, ...(j.info ? { token: j.info.token } : {}) });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function alive(server: ChildServer): boolean {
  return server.proc.exitCode === null && server.proc.signalCode === null;
}

describe('hostile sockets on every listener (thingauth serve as a child process)', () => {
  const dirs: string[] = [];
  const leftovers: Duplex[] = [];
  let server: ChildServer;
  let dev: DeviceCredentials;

  before(async () => {
    CLIENT_HELLO = await captureClientHello();
    const dataDir = makeTempDir('thingauth-hostile-sockets-');
    dirs.push(dataDir);
    // Many honest logins of one device in a minute: the per-device connect rate is not what is tested here.
    server = await spawnServer(dataDir, { THINGAUTH_DEVICE_CONNECT_RATE_PER_MINUTE: '0' });
    const p = await server.request('POST', '/api/v1/products', { productName: 'hostile sockets' });
    assert.equal(p.status, 201, JSON.stringify(p.body));
    const d = await server.request('POST', `/api/v1/products/${p.body.productKey}/devices`, { deviceName: 'honest-1' });
    assert.equal(d.status, 201, JSON.stringify(d.body));
    dev = { productKey: p.body.productKey, deviceName: 'honest-1', deviceSecret: d.body.deviceSecret };
  });
  after(() => {
    for (const s of leftovers) s.destroy();
    if (server && alive(server)) server.proc.kill('SIGKILL');
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  const port = (name: string) => () => server.ports[name]!;
  const targets: Target[] = [
    { name: 'MQTT TCP', port: port('mqtt'), transport: 'tcp', stages: [beforeAnyByte, garbageFirst, afterPartialConnect] },
    { name: 'TLS on the plain MQTT port', port: port('mqtt'), transport: 'tls', stages: [partialClientHello, midHandshake, afterTlsHandshake, garbageFirst, afterPartialConnect] },
    { name: 'MQTTS', port: port('mqtts'), transport: 'tls', stages: [beforeAnyByte, partialClientHello, midHandshake, afterTlsHandshake, garbageFirst, afterPartialConnect] },
    { name: 'WS', port: port('mqtt-ws'), transport: 'tcp', stages: [beforeAnyByte, garbageFirst, partialHttpHeader('/mqtt'), afterWsNotFound, afterWsUpgrade(), afterWsUpgrade(partialConnect())] },
    { name: 'WSS', port: port('mqtt-wss'), transport: 'tls', stages: [beforeAnyByte, partialClientHello, midHandshake, afterTlsHandshake, garbageFirst, partialHttpHeader('/mqtt'), afterWsNotFound, afterWsUpgrade(), afterWsUpgrade(partialConnect())] },
    { name: 'device HTTPS', port: port('device-https'), transport: 'tls', stages: [beforeAnyByte, partialClientHello, midHandshake, afterTlsHandshake, garbageFirst, partialHttpHeader('/auth'), partialHttpBody] },
    { name: 'management HTTP', port: port('management-http'), transport: 'tcp', stages: [beforeAnyByte, garbageFirst, partialHttpHeader('/api/v1/products'), partialHttpBody] },
  ];

  for (const target of targets) {
    it(`${target.name}: resets, half-closes and garbage at every stage leave the server alive and serving`, async () => {
      for (const stage of target.stages) {
        await Promise.all(
          FINISHES.map(async (how) => {
            const peer = await stage.reach(target.port(), target.transport).catch((e: Error) => {
              throw new Error(`${target.name}, ${stage.name}: could not reach the stage: ${e.message}`);
            });
            leftovers.push(peer.out, peer.raw);
            await finish(peer, how);
          }),
        );
        assert.ok(alive(server), `${target.name}, ${stage.name}: the server died:\n${server.logs.slice(-15).join('\n')}`);
      }
      // The server is still serving: an honest device logs in on every MQTT listener and gets
      // an HTTPS token; the management API answers.
      const p = server.ports;
      await mqttLogin(server, `mqtt://127.0.0.1:${p['mqtt']}`, dev);
      await mqttLogin(server, `mqtts://127.0.0.1:${p['mqtt']}`, dev);
      await mqttLogin(server, `mqtts://127.0.0.1:${p['mqtts']}`, dev);
      await mqttLogin(server, `ws://127.0.0.1:${p['mqtt-ws']}/mqtt`, dev);
      await mqttLogin(server, `wss://127.0.0.1:${p['mqtt-wss']}/mqtt`, dev);
      const auth = await httpsAuth(server, dev);
      assert.equal(auth.code, 0);
      assert.equal((await server.request('GET', '/api/v1/products')).status, 200);
      assert.ok(alive(server), `${target.name}: the server died:\n${server.logs.slice(-15).join('\n')}`);
    });
  }

  it('no hostile socket produced an error-level log line or a stack', () => {
    const bad = server.logs.filter((l) => /"level":(50|60)/.test(l) || /\n\s+at /.test(l) || /^\s+at /.test(l));
    assert.deepEqual(bad, []);
    assert.ok(!server.logs.some((l) => l.includes(ADMIN_TOKEN)), 'no token in the logs');
  });
});

/**
 * A preloaded module (NODE_OPTIONS --import, a data: URL) that makes the child throw on SIGUSR2
 * and reject a promise on SIGHUP, outside any handler of ours: what a bug would do.
 */
const RAISE_ON_SIGNAL = `data:text/javascript,${encodeURIComponent(
  "process.on('SIGUSR2', () => { setImmediate(() => { throw new Error('planted uncaught failure'); }); });" +
    "process.on('SIGHUP', () => { Promise.reject(new Error('planted unhandled rejection')); });",
)}`;

describe('thingauth serve: a fatal error is logged, then the process exits 1', () => {
  const dirs: string[] = [];
  const children: ChildServer[] = [];
  after(() => {
    for (const c of children) if (alive(c)) c.proc.kill('SIGKILL');
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  for (const [signal, kind, message] of [
    ['SIGUSR2', 'uncaughtException', 'planted uncaught failure'],
    ['SIGHUP', 'unhandledRejection', 'planted unhandled rejection'],
  ] as const) {
    it(`${kind}: one fatal log line with the kind and the error, exit status 1`, async () => {
      const dataDir = makeTempDir('thingauth-fatal-');
      dirs.push(dataDir);
      const child = await spawnServer(dataDir, { NODE_OPTIONS: `--import=${RAISE_ON_SIGNAL}` });
      children.push(child);
      child.proc.kill(signal);
      const { code } = await child.exited;
      assert.equal(code, 1);
      const fatal = child.logs.map((l) => { try { return JSON.parse(l) as Record<string, any>; } catch { return undefined; } }).filter((j) => j?.level === 60);
      assert.equal(fatal.length, 1, child.logs.slice(-10).join('\n'));
      assert.equal(fatal[0]!.kind, kind);
      assert.equal(fatal[0]!.err.message, message);
      assert.match(fatal[0]!.err.stack, /planted/);
      assert.ok(!child.logs.some((l) => l.includes(ADMIN_TOKEN)), 'no token in the logs');
    });
  }
});
