/**
 * thingauth behind a REAL private HAProxy (Debian's haproxy, started by the test on free ports),
 * with the haproxy.cfg that docs/deployment.md shows (bench/lib/haproxy-cfg.ts). thingauth
 * trusts 127.0.0.1 (HAProxy's address towards it); each client sends from its own loopback
 * address (127.0.0.2, .3, ...) so the address thingauth records is provably the client's, not
 * HAProxy's.
 * - (a) plain MQTT passed through, and TLS on the same port passed through (the PROXY header
 *   precedes the ClientHello: TLS detection still works);
 * - (b) TLS terminated by HAProxy (send-proxy-v2-ssl) to the plain MQTT port: a requireTls
 *   product's device with securemode=2 logs in and dynamic registration over MQTT works; the
 *   same device over plain TCP (through HAProxy's plain frontend, or straight) is refused;
 *   MQTT over WSS terminated by HAProxy counts as wss;
 * - (c) MQTTS passed through (TLS by thingauth);
 * - (d) device HTTPS passed through: /auth, the audit has the client's address;
 * - HAProxy's health checks (check-send-proxy: LOCAL headers) are accepted, and nothing HAProxy
 *   sent was refused.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it, type TestContext } from 'node:test';
import { createWebSocketStream, WebSocket, type ClientOptions } from 'ws';
import { DOC_EXAMPLE, renderHaproxyCfg } from '../../bench/lib/haproxy-cfg.js';
import { startPrivateHaproxy, type PrivateHaproxy } from '../helpers/haproxy.js';
import { deviceHttpsPost } from '../helpers/https.js';
import { caOf, createDevice, endClient, eventually, signedConnect } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { registrationConnect } from './registration-helpers.js';
import { auditOf, connectVia, headers, refused } from './proxy-protocol-helpers.js';

const FRONTS = ['mqtt', 'mqtts', 'mqttsOffload', 'wssOffload', 'deviceHttps'] as const;

describe('thingauth behind a real HAProxy (PROXY protocol v2)', () => {
  let srv: TestServer;
  let hap: PrivateHaproxy | undefined;
  let skip: string | undefined;
  let ca: string;

  const need = (t: TestContext): PrivateHaproxy | undefined => {
    if (!hap) t.skip(skip);
    return hap;
  };
  const plainVia = (port: number, localAddress: string) => () => net.connect({ host: '127.0.0.1', port, localAddress });
  const tlsVia = (port: number, localAddress: string) => () => tls.connect({ socket: net.connect({ host: '127.0.0.1', port, localAddress }), ca, servername: 'localhost' });

  before(async () => {
    srv = await startTestServer({ proxyProtocolFrom: '127.0.0.1', proxyProtocolTimeoutSeconds: '2' });
    ca = caOf(srv);
    const l = srv.running.listeners;
    const started = await startPrivateHaproxy({
      ports: FRONTS,
      files: { 'thingauth.pem': `${srv.running.ctx.tls.cert.trim()}\n${srv.running.ctx.tls.key.trim()}\n` },
      render: ({ dir, ports }) =>
        renderHaproxyCfg({
          bind: '127.0.0.1',
          front: { mqtt: String(ports.mqtt), mqtts: String(ports.mqtts), mqttsOffload: String(ports.mqttsOffload), wssOffload: String(ports.wssOffload), deviceHttps: String(ports.deviceHttps) },
          thingauth: { host: '127.0.0.1', mqtt: String(l.mqtt!.port), mqtts: String(l.mqtts!.port), ws: String(l['mqtt-ws']!.port), deviceHttps: String(l['device-https']!.port) },
          certFile: path.join(dir, 'thingauth.pem'),
        }),
    });
    if ('skip' in started) skip = started.skip;
    else hap = started.server;
  });

  after(async () => {
    await hap?.stop();
    await srv?.stop();
  });

  it('(a) plain MQTT passed through: the device logs in, the audit has its own address and tcp', async (t) => {
    const h = need(t);
    if (!h) return;
    const d = await createDevice(srv);
    const r = await connectVia(plainVia(h.ports.mqtt, '127.0.0.2'), signedConnect(d));
    assert.ok(r.client, `refused with ${r.code}`);
    const [entry] = await auditOf(srv, d.productKey, d.deviceName, 'mqtt.connect.sign');
    assert.equal(entry!.result, 'allow');
    assert.equal(entry!.sourceAddress, '127.0.0.2');
    assert.match(entry!.reason, /over tcp/);
    // The session's log line carries it too.
    const line = srv.logs.find((l) => l.includes('mqtt connect allowed') && l.includes(d.deviceName));
    assert.match(line ?? '', /"transport":"tcp","remote":"127\.0\.0\.2"/);
    await endClient(r.client);
  });

  it('(a) TLS on the MQTT port passed through: the header comes before the ClientHello, TLS is still detected', async (t) => {
    const h = need(t);
    if (!h) return;
    const d = await createDevice(srv);
    const r = await connectVia(tlsVia(h.ports.mqtt, '127.0.0.3'), signedConnect({ ...d, securemode: '2' }));
    assert.ok(r.client, `refused with ${r.code}`);
    const [entry] = await auditOf(srv, d.productKey, d.deviceName, 'mqtt.connect.sign');
    assert.equal(entry!.sourceAddress, '127.0.0.3');
    assert.match(entry!.reason, /over tls/);
    await endClient(r.client);
  });

  it('(b) TLS terminated by HAProxy (send-proxy-v2-ssl): a requireTls device logs in over TLS; over plain TCP it is refused', async (t) => {
    const h = need(t);
    if (!h) return;
    const d = await createDevice(srv, { requireTls: true });
    const login = signedConnect({ ...d, securemode: '2' });
    const ok = await connectVia(tlsVia(h.ports.mqttsOffload, '127.0.0.4'), login);
    assert.ok(ok.client, `refused with ${ok.code}`);
    const [entry] = await auditOf(srv, d.productKey, d.deviceName, 'mqtt.connect.sign');
    assert.equal(entry!.result, 'allow');
    assert.equal(entry!.sourceAddress, '127.0.0.4');
    assert.match(entry!.reason, /over tls/);
    await endClient(ok.client);

    // Through HAProxy's plain frontend: a PROXY header without the SSL TLV, so plain TCP.
    const viaPlain = await connectVia(plainVia(h.ports.mqtt, '127.0.0.4'), login);
    assert.equal(viaPlain.client, undefined);
    assert.notEqual(viaPlain.code, undefined);
    // Straight to thingauth from an address it does not trust: handled as without HAProxy.
    const direct = await connectVia(plainVia(srv.running.listeners.mqtt!.port, '127.0.0.5'), login);
    assert.equal(direct.client, undefined);
    assert.notEqual(direct.code, undefined);
    const [plainRefusal, directRefusal] = [(await auditOf(srv, d.productKey, d.deviceName, 'mqtt.connect.sign'))[1]!, (await auditOf(srv, d.productKey, d.deviceName, 'mqtt.connect.sign'))[0]!];
    assert.equal(plainRefusal.result, 'deny');
    assert.equal(plainRefusal.sourceAddress, '127.0.0.4');
    assert.match(plainRefusal.reason, /TLS/i);
    assert.equal(directRefusal.result, 'deny');
    assert.equal(directRefusal.sourceAddress, '127.0.0.5');
  });

  it('(b) dynamic registration over MQTT: accepted when HAProxy terminated TLS, refused over its plain frontend', async (t) => {
    const h = need(t);
    if (!h) return;
    const PS = 'proxyProtocolProductSecret0123';
    const reg = srv.running.ctx.services.registry;
    const { productKey } = await reg.createProduct({ productName: 'proxy dynreg', dynamicRegistration: true, productSecret: PS });
    await reg.createDevices(productKey, { deviceNames: ['behind-haproxy-1', 'behind-haproxy-2'] });
    const login = registrationConnect({ productKey, deviceName: 'behind-haproxy-1', productSecret: PS, authType: 'register' });
    const overTls = await connectVia(tlsVia(h.ports.mqttsOffload, '127.0.0.6'), login, 1200);
    assert.ok(overTls.client, `refused with ${overTls.code}`);
    await overTls.closed; // the server pushes the secret, then closes
    const pushed = overTls.messages.find((m) => m.topic === '/ext/register');
    assert.ok(pushed, 'no /ext/register push');
    assert.equal(JSON.parse(pushed.payload).deviceSecret, (await reg.getDeviceSecret(productKey, 'behind-haproxy-1')).deviceSecret);

    const plain = await connectVia(plainVia(h.ports.mqtt, '127.0.0.6'), registrationConnect({ productKey, deviceName: 'behind-haproxy-2', productSecret: PS, authType: 'register' }), 1200);
    assert.equal(plain.client, undefined);
    assert.notEqual(plain.code, undefined);
    const [refusal] = await auditOf(srv, productKey, 'behind-haproxy-2', 'mqtt.connect.register');
    assert.equal(refusal!.result, 'deny');
    assert.equal(refusal!.sourceAddress, '127.0.0.6');
    assert.match(refusal!.reason, /TLS/);
  });

  it('(b) MQTT over WebSocket with TLS terminated by HAProxy counts as wss', async (t) => {
    const h = need(t);
    if (!h) return;
    const d = await createDevice(srv, { requireTls: true });
    const build = () => createWebSocketStream(new WebSocket(`wss://127.0.0.1:${h.ports.wssOffload}/mqtt`, 'mqtt', { ca, servername: 'localhost', localAddress: '127.0.0.7' } as ClientOptions));
    const r = await connectVia(build, signedConnect({ ...d, securemode: '2' }));
    assert.ok(r.client, `refused with ${r.code}`);
    const [entry] = await auditOf(srv, d.productKey, d.deviceName, 'mqtt.connect.sign');
    assert.equal(entry!.sourceAddress, '127.0.0.7');
    assert.match(entry!.reason, /over wss/);
    await endClient(r.client);
  });

  it('(c) MQTTS passed through: thingauth does the TLS, the audit has the client address', async (t) => {
    const h = need(t);
    if (!h) return;
    const d = await createDevice(srv, { requireTls: true });
    const r = await connectVia(tlsVia(h.ports.mqtts, '127.0.0.8'), signedConnect({ ...d, securemode: '2' }));
    assert.ok(r.client, `refused with ${r.code}`);
    const [entry] = await auditOf(srv, d.productKey, d.deviceName, 'mqtt.connect.sign');
    assert.equal(entry!.sourceAddress, '127.0.0.8');
    assert.match(entry!.reason, /over tls/);
    await endClient(r.client);
  });

  it('(d) device HTTPS passed through: /auth answers, the audit has the client address', async (t) => {
    const h = need(t);
    if (!h) return;
    const d = await createDevice(srv);
    const clientId = `${d.productKey}.${d.deviceName}`;
    const sign = createHmac('sha256', d.deviceSecret).update(`clientId${clientId}deviceName${d.deviceName}productKey${d.productKey}`).digest('hex');
    const body = JSON.stringify({ version: 'default', clientId, signmethod: 'hmacsha256', sign, productKey: d.productKey, deviceName: d.deviceName });
    const r = await deviceHttpsPost(srv, '/auth', body, { 'content-type': 'application/json' }, { port: h.ports.deviceHttps, localAddress: '127.0.0.9' });
    assert.equal(r.status, 200);
    assert.equal(r.json.code, 0);
    const [entry] = await auditOf(srv, d.productKey, d.deviceName, 'http.auth');
    assert.equal(entry!.result, 'allow');
    assert.equal(entry!.sourceAddress, '127.0.0.9');
  });

  it("HAProxy's health checks (check-send-proxy: LOCAL headers) pass, and nothing HAProxy sent was refused", async (t) => {
    const h = need(t);
    if (!h) return;
    // Every backend's server checked and up (checks every 2 s; L4OK once one has run).
    const states = async () => {
      const [head, ...rows] = (await h.command('show stat')).trim().split('\n');
      const cols = head!.replace(/^# /, '').split(',');
      const at = (row: string, name: string) => row.split(',')[cols.indexOf(name)];
      return rows.filter((r) => at(r, 'svname') === 'thingauth').map((r) => `${at(r, 'pxname')} ${at(r, 'status')} ${at(r, 'check_status')}`);
    };
    const ok = await eventually(async () => {
      const s = await states();
      return s.length === 5 && s.every((x) => x.endsWith(' UP L4OK')) && s;
    }, 8_000);
    assert.equal(ok.length, 5);
    assert.ok((await headers(srv, { command: 'proxy' })) >= 8);
    assert.equal(await refused(srv), 0, 'a connection from HAProxy was refused');
    assert.doesNotMatch(h.output(), /\[ALERT\]|is DOWN/);
  });
});

describe('docs/deployment.md', () => {
  it('shows the haproxy.cfg these tests run (bench/lib/haproxy-cfg.ts, rendered with the example addresses)', () => {
    const doc = fs.readFileSync(path.resolve('docs/deployment.md'), 'utf8');
    assert.ok(doc.includes(renderHaproxyCfg(DOC_EXAMPLE)), 'docs/deployment.md does not hold renderHaproxyCfg(DOC_EXAMPLE) verbatim');
  });
});
