/**
 * PROXY protocol v2 on every device listener (MQTT with its TLS detection, MQTTS, WS, WSS,
 * device HTTPS), over raw sockets straight to a real server that trusts 127.0.0.1:
 * - from the trusted address, each bad header (none at all, version 1, another version or
 *   command, oversized, malformed TLV, bad CRC, truncated, too slow) closes the connection and
 *   is counted by reason; a PROXY header from an untrusted address (127.0.0.3) too;
 * - afterwards every listener serves on: a valid header's client address is what the audit
 *   records (MQTT login, HTTPS /auth), a LOCAL header keeps the socket's own address, and a
 *   device straight from an untrusted address logs in as without PROXY protocol;
 * - the pending-connection cap counts the header's client address, not the balancer's;
 * - a bad THINGAUTH_PROXY_PROTOCOL_FROM stops the start with a clear error.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import https from 'node:https';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { createWebSocketStream, WebSocket, type ClientOptions } from 'ws';
import { ConfigError, loadConfig } from '../../src/config.js';
import { caOf, createDevice, endClient, signedConnect } from '../helpers/mqtt.js';
import { proxyV2, sslTlv, tlv } from '../helpers/proxy-v2.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { auditOf, connectVia, headers, refused } from './proxy-protocol-helpers.js';

type Kind = 'mqtt' | 'mqtt-tls' | 'mqtts' | 'ws' | 'wss' | 'https';
const LISTENERS: { listener: string; kinds: Kind[] }[] = [
  { listener: 'mqtt', kinds: ['mqtt', 'mqtt-tls'] },
  { listener: 'mqtts', kinds: ['mqtts'] },
  { listener: 'mqtt-ws', kinds: ['ws'] },
  { listener: 'mqtt-wss', kinds: ['wss'] },
  { listener: 'device-https', kinds: ['https'] },
];

const CONNECT_START = Buffer.from([0x10, 0x1a, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02]);

/** Connects from `localAddress`, writes `bytes` (then FIN when `end`), resolves when the server closed the socket. */
function sendUntilClosed(port: number, bytes: Buffer, localAddress: string, end = false): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    s.on('error', () => undefined);
    s.on('data', () => undefined);
    const guard = setTimeout(() => {
      s.destroy();
      reject(new Error('the server did not close the connection within 5 s'));
    }, 5_000);
    s.once('connect', () => {
      s.write(bytes);
      if (end) s.end();
    });
    s.once('close', () => {
      clearTimeout(guard);
      resolve();
    });
  });
}

describe('PROXY protocol v2 on the device listeners: bad input', () => {
  let srv: TestServer;
  let ca: string;
  const port = (listener: string) => srv.running.listeners[listener]!.port;

  before(async () => {
    srv = await startTestServer({ proxyProtocolFrom: '127.0.0.1/32, 10.9.0.0/16', proxyProtocolTimeoutSeconds: '1', mqttPendingPerSource: '2', loginFailThreshold: '3' });
    ca = caOf(srv);
  });
  after(async () => {
    await srv?.stop();
  });

  const bad: { name: string; bytes: Buffer; reason: string; end?: boolean; from?: string }[] = [
    { name: 'no header (MQTT first)', bytes: CONNECT_START, reason: 'bad_signature' },
    { name: 'no header (HTTP first)', bytes: Buffer.from('GET /mqtt HTTP/1.1\r\n'), reason: 'bad_signature' },
    { name: 'version 1 text', bytes: Buffer.from('PROXY TCP4 203.0.113.7 127.0.0.1 5000 1883\r\n'), reason: 'unsupported_version' },
    { name: 'version 3', bytes: proxyV2({ verCmd: 0x31 }), reason: 'unsupported_version' },
    { name: 'command 15', bytes: proxyV2({ verCmd: 0x2f }), reason: 'unsupported_command' },
    { name: 'UDP family', bytes: proxyV2({ fam: 0x12 }), reason: 'unsupported_family' },
    { name: 'length 65535', bytes: proxyV2({ length: 0xffff }), reason: 'too_long' },
    { name: 'a TLV past the end', bytes: Buffer.concat([proxyV2({ length: 16 }).subarray(0, 28), Buffer.from([0x20, 0x00, 0x09, 0x01])]), reason: 'malformed' },
    { name: 'a bad CRC32C', bytes: proxyV2({ tlvs: [sslTlv(1)], crc: true, badCrc: true }), reason: 'bad_checksum' },
    { name: 'a truncated header then FIN', bytes: proxyV2().subarray(0, 20), reason: 'truncated', end: true },
    { name: 'a slow header (timeout)', bytes: proxyV2().subarray(0, 10), reason: 'timeout' },
    { name: 'a valid v2 header from an untrusted address', bytes: proxyV2({ tlvs: [sslTlv(1)] }), reason: 'untrusted', from: '127.0.0.3' },
    { name: 'a v1 header from an untrusted address', bytes: Buffer.from('PROXY TCP4 203.0.113.7 127.0.0.1 5000 1883\r\n'), reason: 'untrusted', from: '127.0.0.3' },
    { name: 'the start of a v2 signature, then FIN, from an untrusted address', bytes: proxyV2().subarray(0, 6), reason: 'untrusted', from: '127.0.0.3', end: true },
  ];

  for (const { listener } of LISTENERS) {
    it(`${listener}: each bad header is closed and counted by reason`, async () => {
      for (const b of bad) {
        const before = await refused(srv, { listener, reason: b.reason });
        await sendUntilClosed(port(listener), b.bytes, b.from ?? '127.0.0.1', b.end);
        assert.equal(await refused(srv, { listener, reason: b.reason }), before + 1, `${listener}: ${b.name}`);
      }
    });
  }

  /** A stream to `listener` that starts with `header` (then TLS when `secure`). */
  const rawWithHeader = (listener: string, header: Buffer, secure: boolean): Duplex => {
    const raw = net.connect({ host: '127.0.0.1', port: port(listener) });
    raw.write(header);
    return secure ? tls.connect({ socket: raw, ca, servername: 'localhost' }) : raw;
  };
  const mqttStream = (kind: Kind, header: Buffer) => (): Duplex => {
    switch (kind) {
      case 'mqtt':
        return rawWithHeader('mqtt', header, false);
      case 'mqtt-tls':
        return rawWithHeader('mqtt', header, true);
      case 'mqtts':
        return rawWithHeader('mqtts', header, true);
      case 'ws':
      case 'wss': {
        const listener = kind === 'ws' ? 'mqtt-ws' : 'mqtt-wss';
        const opts = { createConnection: () => rawWithHeader(listener, header, kind === 'wss') } as unknown as ClientOptions;
        return createWebSocketStream(new WebSocket(`${kind}://127.0.0.1:${port(listener)}/mqtt`, 'mqtt', opts));
      }
      default:
        throw new Error(kind);
    }
  };

  const httpsAuthVia = (header: Buffer, d: { productKey: string; deviceName: string; deviceSecret: string }) =>
    new Promise<{ status: number; body: any }>((resolve, reject) => {
      const clientId = `${d.productKey}.${d.deviceName}`;
      const sign = createHmac('sha256', d.deviceSecret).update(`clientId${clientId}deviceName${d.deviceName}productKey${d.productKey}`).digest('hex');
      const body = JSON.stringify({ version: 'default', clientId, signmethod: 'hmacsha256', sign, productKey: d.productKey, deviceName: d.deviceName });
      const req = https.request(
        {
          host: '127.0.0.1',
          port: port('device-https'),
          path: '/auth',
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) },
          createConnection: () => rawWithHeader('device-https', header, true) as tls.TLSSocket,
        },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });

  const MQTT_KINDS: Kind[] = ['mqtt', 'mqtt-tls', 'mqtts', 'ws', 'wss'];
  const TRANSPORT: Record<string, string> = { mqtt: 'tcp', 'mqtt-tls': 'tls', mqtts: 'tls', ws: 'ws', wss: 'wss' };

  it('afterwards every MQTT listener serves on: the header’s client address is what the audit records', async () => {
    let n = 1;
    for (const kind of MQTT_KINDS) {
      const d = await createDevice(srv);
      const client = `198.51.100.${n++}`;
      const r = await connectVia(mqttStream(kind, proxyV2({ src: client })), signedConnect(d));
      assert.ok(r.client, `${kind}: refused with ${r.code}`);
      const [entry] = await auditOf(srv, d.productKey, d.deviceName, 'mqtt.connect.sign');
      assert.equal(entry!.sourceAddress, client, kind);
      assert.match(entry!.reason, new RegExp(`over ${TRANSPORT[kind]}$`), kind);
      await endClient(r.client);
    }
    // IPv6 client address, and the SSL TLV on the plain port (TLS terminated by the balancer).
    const d = await createDevice(srv, { requireTls: true });
    const r = await connectVia(mqttStream('mqtt', proxyV2({ src: '2001:db8::7', tlvs: [sslTlv(0x01, 0, [tlv(0x21, 'TLSv1.3')])] })), signedConnect({ ...d, securemode: '2' }));
    assert.ok(r.client, `refused with ${r.code}`);
    const [entry] = await auditOf(srv, d.productKey, d.deviceName, 'mqtt.connect.sign');
    assert.equal(entry!.sourceAddress, '2001:db8::7');
    assert.match(entry!.reason, /over tls$/);
    await endClient(r.client);
    // An SSL TLV without the client bit is not TLS.
    const plain = await connectVia(mqttStream('mqtt', proxyV2({ src: '198.51.100.99', tlvs: [sslTlv(0x00, 1)] })), signedConnect({ ...d, securemode: '2' }));
    assert.equal(plain.client, undefined);
  });

  it('device HTTPS serves on: /auth with the header’s client address in the audit', async () => {
    const d = await createDevice(srv);
    const r = await httpsAuthVia(proxyV2({ src: '198.51.100.77' }), d);
    assert.equal(r.status, 200);
    assert.equal(r.body.code, 0);
    const [entry] = await auditOf(srv, d.productKey, d.deviceName, 'http.auth');
    assert.equal(entry!.sourceAddress, '198.51.100.77');
  });

  it('a LOCAL header (health check) keeps the socket’s own address; counted as local', async () => {
    const before = await headers(srv, { listener: 'mqtt', command: 'local' });
    const d = await createDevice(srv);
    const r = await connectVia(mqttStream('mqtt', proxyV2({ verCmd: 0x20, fam: 0x00 })), signedConnect(d));
    assert.ok(r.client, `refused with ${r.code}`);
    const [entry] = await auditOf(srv, d.productKey, d.deviceName, 'mqtt.connect.sign');
    assert.equal(entry!.sourceAddress, '127.0.0.1');
    assert.equal(await headers(srv, { listener: 'mqtt', command: 'local' }), before + 1);
    await endClient(r.client);
  });

  it('a device straight from an untrusted address logs in as without PROXY protocol', async () => {
    const d = await createDevice(srv);
    const r = await connectVia(() => net.connect({ host: '127.0.0.1', port: port('mqtt'), localAddress: '127.0.0.3' }), signedConnect(d));
    assert.ok(r.client, `refused with ${r.code}`);
    const [entry] = await auditOf(srv, d.productKey, d.deviceName, 'mqtt.connect.sign');
    assert.equal(entry!.sourceAddress, '127.0.0.3');
    await endClient(r.client);
    const t = await connectVia(() => tls.connect({ socket: net.connect({ host: '127.0.0.1', port: port('mqtts'), localAddress: '127.0.0.3' }), ca, servername: 'localhost' }), signedConnect(d));
    assert.ok(t.client, `refused with ${t.code}`);
    await endClient(t.client);
  });

  it('the pending-connection cap counts the client address from the header, not the balancer’s', async () => {
    // THINGAUTH_MQTT_PENDING_PER_SOURCE=2: two silent sockets for 198.51.100.200 fill its share.
    const open = (src: string) =>
      new Promise<net.Socket>((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port: port('mqtt') }, () => resolve(s));
        s.on('error', () => undefined);
        s.write(proxyV2({ src }));
      });
    const held = [await open('198.51.100.200'), await open('198.51.100.200')];
    const closed = (s: net.Socket) => new Promise<void>((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve())));
    // The third for the same client is closed at once ...
    await closed(await open('198.51.100.200'));
    // ... while another client behind the same balancer still logs in.
    const d = await createDevice(srv);
    const r = await connectVia(mqttStream('mqtt', proxyV2({ src: '198.51.100.201' })), signedConnect(d));
    assert.ok(r.client, `refused with ${r.code}`);
    await endClient(r.client);
    for (const s of held) s.destroy();
  });

  it('the login throttle counts the client address from the header: one client throttled, its neighbour behind the balancer not', async () => {
    const d = await createDevice(srv);
    const via = (src: string) => mqttStream('mqtt', proxyV2({ src }));
    const before = await metricsThrottled();
    // THINGAUTH_LOGIN_FAIL_THRESHOLD=3 failures from 198.51.100.150 ...
    for (let i = 0; i < 3; i++) assert.equal((await connectVia(via('198.51.100.150'), signedConnect({ ...d, deviceSecret: 'NotTheSecret0000' }))).client, undefined);
    // ... and it is refused even with the right secret (throttled),
    const throttled = await connectVia(via('198.51.100.150'), signedConnect(d));
    assert.equal(throttled.client, undefined);
    assert.ok((await metricsThrottled()) > before);
    // while the device from another client address behind the same balancer logs in.
    const ok = await connectVia(via('198.51.100.151'), signedConnect(d));
    assert.ok(ok.client, `refused with ${ok.code}`);
    await endClient(ok.client);
  });
  const metricsThrottled = async () => (await srv.running.ctx.services.metrics.logins.get()).values.filter((v) => v.labels.reason === 'throttled').reduce((n, v) => n + v.value, 0);

  it('sockets from one untrusted source waiting for their first bytes are capped (THINGAUTH_MQTT_PENDING_PER_SOURCE)', async () => {
    const before = await refused(srv, { listener: 'mqtt', reason: 'waiting_per_source' });
    const silent = () =>
      new Promise<net.Socket>((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port: port('mqtt'), localAddress: '127.0.0.4' }, () => resolve(s));
        s.on('error', () => undefined);
      });
    const held = [await silent(), await silent()];
    const third = await silent();
    await new Promise<void>((resolve) => (third.destroyed ? resolve() : third.once('close', () => resolve())));
    assert.equal(await refused(srv, { listener: 'mqtt', reason: 'waiting_per_source' }), before + 1);
    // Another source is not affected.
    const d = await createDevice(srv);
    const r = await connectVia(() => net.connect({ host: '127.0.0.1', port: port('mqtt'), localAddress: '127.0.0.5' }), signedConnect(d));
    assert.ok(r.client, `refused with ${r.code}`);
    await endClient(r.client);
    for (const s of held) s.destroy();
  });
});

describe('PROXY protocol v2: shutdown', () => {
  it('a socket still owing its header does not hold the listeners’ close up to its timeout', async () => {
    const srv = await startTestServer({ proxyProtocolFrom: '127.0.0.1', proxyProtocolTimeoutSeconds: '60' });
    const sockets = await Promise.all(
      ['mqtt', 'mqtts', 'mqtt-ws', 'mqtt-wss', 'device-https'].map(
        (l) =>
          new Promise<net.Socket>((resolve) => {
            const s = net.connect({ host: '127.0.0.1', port: srv.running.listeners[l]!.port }, () => {
              s.write(proxyV2().subarray(0, 10));
              resolve(s);
            });
            s.on('error', () => undefined);
          }),
      ),
    );
    const closed = sockets.map((s) => new Promise<void>((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve()))));
    const started = Date.now();
    await srv.stop();
    await Promise.all(closed);
    assert.ok(Date.now() - started < 5_000, `stop took ${Date.now() - started} ms`);
    assert.equal(await refused(srv), 0, 'the close is not counted as a refusal');
  });
});

describe('THINGAUTH_PROXY_PROTOCOL_FROM validation', () => {
  it('refuses a bad entry with a message naming the variable and the entry', () => {
    assert.throws(
      () => loadConfig({ proxyProtocolFrom: '10.0.0.1, haproxy.internal, 10.0.0.0/40' }),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.problems.length === 2 &&
        /THINGAUTH_PROXY_PROTOCOL_FROM.*"haproxy\.internal" is not an IP address or CIDR block/.test(e.problems[0]!) &&
        /THINGAUTH_PROXY_PROTOCOL_FROM.*"10\.0\.0\.0\/40": the prefix length must be 0-32/.test(e.problems[1]!),
    );
    assert.deepEqual(loadConfig({ proxyProtocolFrom: ' 10.0.0.1 ,fd00::/8,' }).proxyProtocolFrom, ['10.0.0.1', 'fd00::/8']);
    assert.deepEqual(loadConfig({}).proxyProtocolFrom, []);
  });
});
