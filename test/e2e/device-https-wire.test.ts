/**
 * The bytes of every kind of device HTTPS answer, as the C Link SDK 4.x reads them: its HTTP
 * reader looks for `Content-Length: ` case-sensitively and cannot read a chunked body, and its
 * header buffer is small. So every answer — success, refusal, 404, 413, framework errors —
 * has the status line `HTTP/1.1 <code> <reason>`, canonical header names, a Content-Length
 * that matches the body, no Transfer-Encoding, and header lines under 128 bytes.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { canonicalHeaderName } from '../../src/http/device/canonical-headers.js';
import { caOf, createDevice, type DeviceCredentials } from '../helpers/mqtt.js';
import { deviceHttpsPort } from '../helpers/https.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { registerForm } from './registration-helpers.js';

const PS = 'PsWireBytes123456';

interface RawAnswer {
  statusLine: string;
  headerLines: string[];
  headers: Map<string, string>;
  body: Buffer;
}

/** Sends `head` (+ body) verbatim over TLS and reads until the server closes. */
function rawExchange(server: TestServer, head: string, body: string | Buffer = ''): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: deviceHttpsPort(server), ca: caOf(server), servername: 'localhost' }, () => {
      socket.write(head);
      if (body.length > 0) socket.write(body);
    });
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined); // the server may reset after answering a refusal
    socket.on('close', () => {
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      if (end < 0) return reject(new Error(`no complete response head: ${JSON.stringify(all.toString('latin1').slice(0, 200))}`));
      const [statusLine, ...headerLines] = all.subarray(0, end).toString('latin1').split('\r\n');
      const headers = new Map<string, string>();
      for (const line of headerLines) headers.set(line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1).trim());
      resolve({ statusLine: statusLine!, headerLines, headers, body: all.subarray(end + 4) });
    });
    socket.setTimeout(10_000, () => socket.destroy());
  });
}

function post(path: string, body: string, contentType: string): string {
  return `POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: ${contentType}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

function assertCSdkReadable(a: RawAnswer, status: number, what: string): void {
  assert.match(a.statusLine, /^HTTP\/1\.1 \d{3} [A-Za-z][A-Za-z -]*$/, `${what}: status line ${a.statusLine}`);
  assert.equal(Number(a.statusLine.split(' ')[1]), status, `${what}: ${a.statusLine} ${a.body.toString()}`);
  for (const line of a.headerLines) {
    assert.ok(Buffer.byteLength(line) + 2 < 128, `${what}: header line of ${Buffer.byteLength(line)} bytes: ${line}`);
    const name = line.slice(0, line.indexOf(':'));
    assert.equal(name, canonicalHeaderName(name), `${what}: header name not canonical: ${line}`);
  }
  assert.ok(a.headers.has('Content-Length'), `${what}: no Content-Length in ${JSON.stringify(a.headerLines)}`);
  assert.equal(a.headers.has('Transfer-Encoding'), false, `${what}: chunked`);
  assert.equal(Number(a.headers.get('Content-Length')), a.body.length, `${what}: Content-Length does not match the body`);
}

describe('device HTTPS answers on the wire (C Link SDK reader)', () => {
  let server: TestServer;
  let pk: string;
  let dev: DeviceCredentials;

  before(async () => {
    server = await startTestServer();
    pk = (await server.running.ctx.services.registry.createProduct({ productName: 'wire bytes', dynamicRegistration: true, productSecret: PS })).productKey;
    await server.running.ctx.services.registry.createDevices(pk, { deviceNames: ['wire-001'] });
    dev = await createDevice(server);
  });
  after(async () => {
    await server.stop();
  });

  it('canonicalHeaderName spells each word with a capital', () => {
    assert.equal(canonicalHeaderName('content-length'), 'Content-Length');
    assert.equal(canonicalHeaderName('CONTENT-TYPE'), 'Content-Type');
    assert.equal(canonicalHeaderName('date'), 'Date');
    assert.equal(canonicalHeaderName('x-request-id'), 'X-Request-Id');
  });

  it('dynamic registration: success and refusal', async () => {
    const ok = await rawExchange(server, post('/auth/register/device', registerForm(pk, 'wire-001', PS, 'r-wire-1'), 'application/x-www-form-urlencoded'));
    assertCSdkReadable(ok, 200, 'registration');
    assert.equal(JSON.parse(ok.body.toString()).code, 200);
    assert.equal(ok.headers.get('Content-Type')?.startsWith('application/json'), true);
    const refused = await rawExchange(server, post('/auth/register/device', registerForm(pk, 'wire-001', 'NotTheProductSecret', 'r-wire-2'), 'application/x-www-form-urlencoded'));
    assertCSdkReadable(refused, 200, 'registration refusal');
    assert.notEqual(JSON.parse(refused.body.toString()).code, 200);
  });

  it('HTTP channel: /auth success and refusal, /topic with and without a token', async () => {
    const clientId = `${dev.productKey}.${dev.deviceName}`;
    const sign = createHmac('sha256', dev.deviceSecret).update(`clientId${clientId}deviceName${dev.deviceName}productKey${dev.productKey}`).digest('hex');
    const body = JSON.stringify({ productKey: dev.productKey, deviceName: dev.deviceName, clientId, sign, signmethod: 'hmacsha256' });
    const auth = await rawExchange(server, post('/auth', body, 'application/json'));
    assertCSdkReadable(auth, 200, '/auth');
    const token = JSON.parse(auth.body.toString()).info.token as string;
    const bad = await rawExchange(server, post('/auth', body.replace(sign, '0'.repeat(64)), 'application/json'));
    assertCSdkReadable(bad, 200, '/auth refusal');
    assert.equal(JSON.parse(bad.body.toString()).code, 20000);

    const topic = `/topic/sys/${dev.productKey}/${dev.deviceName}/thing/event/property/post`;
    const payload = '{"id":"1","params":{"t":1}}';
    const published = await rawExchange(
      server,
      `POST ${topic} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\npassword: ${token}\r\nContent-Length: ${payload.length}\r\nConnection: close\r\n\r\n${payload}`,
    );
    assertCSdkReadable(published, 200, '/topic');
    assert.equal(JSON.parse(published.body.toString()).code, 0);
    const noToken = await rawExchange(server, post(topic, payload, 'application/octet-stream'));
    assertCSdkReadable(noToken, 200, '/topic without token');
    assert.equal(JSON.parse(noToken.body.toString()).code, 20002);
  });

  it('404, 413 and the framework errors (bad JSON, unsupported media type)', async () => {
    assertCSdkReadable(await rawExchange(server, 'GET /no/such/path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'), 404, '404');
    const big = 'x'.repeat(300 * 1024);
    // Over the body limit: the protocol routes answer in their own codes, others with 413.
    const tooBigAuth = await rawExchange(server, post('/auth', big, 'application/json'));
    assertCSdkReadable(tooBigAuth, 200, '/auth body over the limit');
    assert.equal(JSON.parse(tooBigAuth.body.toString()).code, 10001);
    assertCSdkReadable(await rawExchange(server, post('/no/such/route', big, 'application/json')), 413, '413');
    // Body errors of the protocol routes are answered in the protocol's codes (460), still readable.
    for (const [body, type] of [['{not json', 'application/json'], ['abc', 'text/x-unknown']] as const) {
      const a = await rawExchange(server, post('/auth/register/device', body, type));
      assertCSdkReadable(a, 200, `registration body ${type}`);
      assert.equal(JSON.parse(a.body.toString()).code, 460);
    }
  });

  it('an unparsable request gets a readable 400 too', async () => {
    assertCSdkReadable(await rawExchange(server, 'THIS IS NOT HTTP\r\n\r\n'), 400, 'garbage request');
  });
});
