/**
 * Bootstrap (issue 12 item 3; docs/devices.md "Bootstrap"): the C Link SDK 4.x asks
 * `POST /auth/bootstrap` (and `GET /auth/bootstrap/regionId/<r>`) for its MQTT endpoint and
 * scans the answer for `"host"` and `"port"`; an operator's `thing/bootstrap/notify` makes a
 * connected device ask again and reconnect where it is told. Real TLS sockets, real mqtt.js
 * clients, a real SQLite file.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import { caOf, connectClient, createDevice, endClient, eventually, nextMessage, signedConnect, subscribe, waitForClose, type DeviceCredentials } from '../helpers/mqtt.js';
import { deviceHttpsPort } from '../helpers/https.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

interface RawAnswer {
  statusLine: string;
  headers: Map<string, string>;
  body: string;
}

/**
 * Sends `request` verbatim over TLS and reads one answer the way the C SDK does: the head,
 * then exactly `Content-Length: ` bytes (it sends no `Connection: close`, so the server keeps
 * the socket open and only the length tells where the body ends).
 */
function rawExchange(server: TestServer, request: string): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: deviceHttpsPort(server), ca: caOf(server), servername: 'localhost' }, () => socket.write(request));
    let all = Buffer.alloc(0);
    const fail = (e: Error) => {
      socket.destroy();
      reject(e);
    };
    socket.on('data', (c: Buffer) => {
      all = Buffer.concat([all, c]);
      const end = all.indexOf('\r\n\r\n');
      if (end < 0) return;
      const [statusLine, ...lines] = all.subarray(0, end).toString('latin1').split('\r\n');
      const headers = new Map<string, string>();
      for (const line of lines) headers.set(line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1).trim());
      // Case-sensitive, as the SDK's memcmp.
      const length = headers.get('Content-Length');
      if (length === undefined) return fail(new Error(`no "Content-Length" header: ${JSON.stringify(lines)}`));
      if (all.length - end - 4 < Number(length)) return;
      socket.destroy();
      resolve({ statusLine: statusLine!, headers, body: all.subarray(end + 4, end + 4 + Number(length)).toString('utf8') });
    });
    socket.on('error', fail);
    socket.setTimeout(10_000, () => fail(new Error('no complete answer within 10 s')));
  });
}

/** The SDK's POST, byte for byte (aiot_bootstrap_api.c _bootstrap_send_post_request + core_http_send). */
function sdkPost(host: string, pk: string, dn: string): string {
  const body = `productKey=${pk}&deviceName=${dn}&clientId=${pk}.${dn}&resources=mqtt`;
  return (
    `POST /auth/bootstrap HTTP/1.1\r\nHost: ${host}\r\n` +
    'Accept: text/xml,text/javascript,text/html,application/json\r\n' +
    'Content-Type: application/x-www-form-urlencoded;charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

function sdkGet(host: string, region: string): string {
  return `GET /auth/bootstrap/regionId/${region} HTTP/1.1\r\nHost: ${host}\r\nAccept: text/xml,text/javascript,text/html,application/json\r\nContent-Length: 0\r\n\r\n`;
}

function rawForm(host: string, body: string, contentType: string): string {
  return `POST /auth/bootstrap HTTP/1.1\r\nHost: ${host}\r\nContent-Type: ${contentType}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

/**
 * What the SDK finds for a key: the first `"key"` followed directly by `:`, the value up to the
 * closing quote (strings) or to `,` `}` `]` (numbers). Written for this test from the behaviour
 * docs/devices.md describes.
 */
function sdkScan(body: string, key: string): string | undefined {
  const at = body.indexOf(`"${key}":`);
  if (at < 0) return undefined;
  const rest = body.slice(at + key.length + 3);
  if (rest.startsWith('"')) return rest.slice(1, rest.indexOf('"', 1));
  const m = /^[^,}\]]*/.exec(rest);
  return m ? m[0] : undefined;
}

/** The SDK's success test: HTTP 200, then "host" and a decimal "port". */
function sdkEndpoint(a: RawAnswer): { host: string; port: number } | undefined {
  if (Number(a.statusLine.split(' ')[1]) !== 200) return undefined;
  const host = sdkScan(a.body, 'host');
  const port = sdkScan(a.body, 'port');
  if (host === undefined || port === undefined || !/^\d+$/.test(port)) return undefined;
  return { host, port: Number(port) };
}

describe('bootstrap endpoint (configured public endpoint)', () => {
  let server: TestServer;
  let dev: DeviceCredentials;

  before(async () => {
    server = await startTestServer({ publicMqttHost: 'mqtt.example.test', publicMqttPort: '18830', hostnames: 'other.example.test', loginFailThreshold: '1000' });
    dev = await createDevice(server);
  });
  after(async () => {
    await server.stop();
  });

  it("answers the SDK's exact POST with the configured public host and port", async () => {
    const a = await rawExchange(server, sdkPost('iot-auth-global.aliyuncs.com', dev.productKey, dev.deviceName));
    assert.match(a.statusLine, /^HTTP\/1\.1 200 OK$/);
    assert.deepEqual(sdkEndpoint(a), { host: 'mqtt.example.test', port: 18830 }, a.body);
    assert.deepEqual(JSON.parse(a.body), { code: 200, data: { resources: { mqtt: { host: 'mqtt.example.test', port: 18830 } } }, message: 'success' });
    assert.match(a.headers.get('Content-Type') ?? '', /^application\/json/);
  });

  it('answers the GET /auth/bootstrap/regionId/<region> form with the same endpoint', async () => {
    const a = await rawExchange(server, sdkGet('iot-auth-global.aliyuncs.com', 'cn-shanghai'));
    assert.deepEqual(sdkEndpoint(a), { host: 'mqtt.example.test', port: 18830 }, a.body);
  });

  it('refuses an unknown product, an unknown device and a disabled device with one identical answer', async () => {
    const disabled = await createDevice(server, { productKey: dev.productKey });
    await server.running.ctx.services.registry.setEnabled(disabled.productKey, disabled.deviceName, false);
    const answers = [
      await rawExchange(server, sdkPost('h', 'NoSuchProduct1', 'some-device')),
      await rawExchange(server, sdkPost('h', dev.productKey, 'no-such-device')),
      await rawExchange(server, sdkPost('h', disabled.productKey, disabled.deviceName)),
    ];
    for (const a of answers) {
      assert.match(a.statusLine, /^HTTP\/1\.1 200 OK$/);
      assert.equal(sdkEndpoint(a), undefined, `no endpoint for a refused device: ${a.body}`);
      assert.deepEqual(JSON.parse(a.body), { code: 6100, message: 'device not found', data: null });
      assert.equal(a.body, answers[0]!.body, 'byte-identical refusals');
      assert.equal(a.headers.get('Content-Length'), answers[0]!.headers.get('Content-Length'));
    }
    // Enabled again, the same device gets its endpoint.
    await server.running.ctx.services.registry.setEnabled(disabled.productKey, disabled.deviceName, true);
    assert.deepEqual(sdkEndpoint(await rawExchange(server, sdkPost('h', disabled.productKey, disabled.deviceName))), { host: 'mqtt.example.test', port: 18830 });
  });

  it('answers any name of a product whose devices register without pre-registration (the name tells nothing there)', async () => {
    const p = await server.running.ctx.services.registry.createProduct({ productName: 'regnwl product', dynamicRegistration: true, preRegistrationFree: true });
    const a = await rawExchange(server, sdkPost('h', p.productKey, 'not-yet-registered'));
    assert.deepEqual(sdkEndpoint(a), { host: 'mqtt.example.test', port: 18830 }, a.body);
  });

  it('answers malformed forms with 460 and no endpoint', async () => {
    const cases: [string, string][] = [
      ['missing deviceName', rawForm('h', `productKey=${dev.productKey}&clientId=x&resources=mqtt`, 'application/x-www-form-urlencoded')],
      ['missing productKey', rawForm('h', `deviceName=${dev.deviceName}`, 'application/x-www-form-urlencoded')],
      ['malformed productKey', rawForm('h', `productKey=a%22b&deviceName=${dev.deviceName}`, 'application/x-www-form-urlencoded')],
      ['malformed deviceName', rawForm('h', `productKey=${dev.productKey}&deviceName=${'x'.repeat(40)}`, 'application/x-www-form-urlencoded')],
      ['unknown content type', rawForm('h', `productKey=${dev.productKey}&deviceName=${dev.deviceName}`, 'text/plain')],
      ['unparsable JSON', rawForm('h', '{"productKey":', 'application/json')],
      ['empty body', rawForm('h', '', 'application/x-www-form-urlencoded')],
      ['malformed regionId', sdkGet('h', 'r'.repeat(65))],
    ];
    for (const [what, request] of cases) {
      const a = await rawExchange(server, request);
      assert.match(a.statusLine, /^HTTP\/1\.1 200 OK$/, what);
      const body = JSON.parse(a.body);
      assert.equal(body.code, 460, `${what}: ${a.body}`);
      assert.equal(typeof body.message, 'string', what);
      assert.equal(sdkEndpoint(a), undefined, what);
    }
  });
});

describe('bootstrap refusals count against the source address', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ loginFailThreshold: '3', publicMqttHost: '127.0.0.1' });
  });
  after(async () => {
    await server.stop();
  });

  it('stops answering a source that probed three unknown names, even for a real device', async () => {
    const dev = await createDevice(server);
    assert.ok(sdkEndpoint(await rawExchange(server, sdkPost('h', dev.productKey, dev.deviceName))), 'a real device is answered at first');
    for (const name of ['guess-0001', 'guess-0002', 'guess-0003']) {
      assert.equal(JSON.parse((await rawExchange(server, sdkPost('h', dev.productKey, name))).body).code, 6100);
    }
    const a = await rawExchange(server, sdkPost('h', dev.productKey, dev.deviceName));
    assert.equal(JSON.parse(a.body).code, 429, a.body);
    assert.equal(sdkEndpoint(a), undefined);
  });
});

describe('bootstrap notify makes a connected device reconnect where it is told', () => {
  let server: TestServer;
  let a: DeviceCredentials;
  let b: DeviceCredentials;
  let other: DeviceCredentials;
  const clients: MqttClient[] = [];

  before(async () => {
    // Nothing configured: the answer names the host the device reached (Host header) and the MQTT listener's real port.
    server = await startTestServer();
    a = await createDevice(server);
    b = await createDevice(server, { productKey: a.productKey });
    other = await createDevice(server);
  });
  after(async () => {
    for (const c of clients) await endClient(c);
    await server.stop();
  });

  const connect = async (d: DeviceCredentials, which: 'mqtt' | 'mqtts', extra: string[] = []) => {
    const c = await connectClient(server, which, signedConnect({ ...d, extra }));
    clients.push(c);
    return c;
  };

  it('defaults to the Host the device asked and the real MQTT port', async () => {
    const answer = await rawExchange(server, sdkPost('127.0.0.1', a.productKey, a.deviceName));
    assert.deepEqual(sdkEndpoint(answer), { host: '127.0.0.1', port: server.running.listeners.mqtt!.port }, answer.body);
  });

  it('delivers the order (API), the device replies, bootstraps again and reconnects to the endpoint given with the order', async () => {
    const first = await connect(a, 'mqtt');
    const notifyTopic = `/sys/${a.productKey}/${a.deviceName}/thing/bootstrap/notify`;
    assert.deepEqual(await subscribe(first, notifyTopic), [0], 'the device may subscribe to its notify topic');
    // An application watching the product sees the device's reply.
    const app = await server.request('POST', '/api/v1/applications', { name: 'bootstrap watcher', productKeys: [a.productKey] });
    assert.equal(app.status, 201, JSON.stringify(app.body));
    // A plain appSecret is accepted over TLS only.
    const watcher = await connectClient(server, 'mqtts', { clientId: 'watcher', username: `app:${app.body.appKey}`, password: app.body.appSecret });
    clients.push(watcher);
    const replyTopic = `/sys/${a.productKey}/${a.deviceName}/thing/bootstrap/notify_reply`;
    assert.deepEqual(await subscribe(watcher, replyTopic), [0]);

    const mqttsPort = server.running.listeners.mqtts!.port;
    const order = nextMessage(first, (t) => t === notifyTopic, 10_000);
    const res = await server.request('POST', `/api/v1/products/${a.productKey}/devices/${a.deviceName}/bootstrap-notify`, { host: '127.0.0.1', port: mqttsPort });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body, { productKey: a.productKey, deviceName: a.deviceName, notified: 1, endpoint: { host: '127.0.0.1', port: mqttsPort } });

    // What the SDK reads from the order: id and cmd (0 = ask bootstrap again).
    const msg = JSON.parse((await order).payload.toString());
    assert.equal(msg.method, 'thing.bootstrap.notify');
    assert.equal(msg.params.cmd, 0);
    assert.match(msg.id, /^\d+$/);

    // The SDK's reply (aiot_bootstrap_api.c _bootstrap_alink_reply): allowed, and seen by the application.
    const seen = nextMessage(watcher, (t) => t === replyTopic, 10_000);
    first.publish(replyTopic, JSON.stringify({ id: msg.id, code: 200, data: {} }));
    assert.deepEqual(JSON.parse((await seen).payload.toString()), { id: msg.id, code: 200, data: {} });
    assert.equal(first.connected, true, 'the reply did not cost the device its connection');

    // It asks bootstrap again and follows the answer.
    const endpoint = sdkEndpoint(await rawExchange(server, sdkPost('127.0.0.1', a.productKey, a.deviceName)));
    assert.deepEqual(endpoint, { host: '127.0.0.1', port: mqttsPort });
    const closed = waitForClose(first, 10_000);
    const c = signedConnect({ ...a, securemode: '2' });
    const moved = mqtt.connect(`mqtts://${endpoint!.host}:${endpoint!.port}`, {
      ca: caOf(server),
      servername: 'localhost',
      clientId: c.clientId,
      username: c.username,
      password: c.password,
      reconnectPeriod: 0,
      protocolVersion: 4,
    });
    clients.push(moved);
    await new Promise<void>((resolve, reject) => {
      moved.once('connect', () => resolve());
      moved.once('error', reject);
    });
    await closed; // the new login took the device over from its old connection
    // Presence is written in batches: wait for the write, not a fixed time.
    await eventually(async () => (await server.request('GET', `/api/v1/products/${a.productKey}/devices/${a.deviceName}`)).body.status === 'ONLINE', 10_000);

    // useDefault removes the stored endpoint: the configured (default) one applies again.
    const reset = await server.request('POST', `/api/v1/products/${a.productKey}/devices/${a.deviceName}/bootstrap-notify`, { useDefault: true });
    assert.equal(reset.status, 200, JSON.stringify(reset.body));
    assert.equal(reset.body.endpoint, null);
    assert.deepEqual(sdkEndpoint(await rawExchange(server, sdkPost('127.0.0.1', a.productKey, a.deviceName))), { host: '127.0.0.1', port: server.running.listeners.mqtt!.port });
  });

  it("notifies every connected device of a product (an _ss=1 device that never subscribed too), and no other product's", async () => {
    const onB = await connect(b, 'mqtt', ['_ss=1']);
    const onOther = await connect(other, 'mqtt');
    const otherTopic = `/sys/${other.productKey}/${other.deviceName}/thing/bootstrap/notify`;
    await subscribe(onOther, otherTopic);
    const toOther: string[] = [];
    onOther.on('message', (t, p) => {
      if (t === otherTopic) toOther.push(p.toString());
    });
    const gotB = nextMessage(onB, (t) => t === `/sys/${b.productKey}/${b.deviceName}/thing/bootstrap/notify`, 10_000);
    const res = await server.request('POST', `/api/v1/products/${a.productKey}/bootstrap-notify`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    // a (on its new connection) and b.
    assert.equal(res.body.notified, 2);
    assert.equal(res.body.deviceName, null);
    assert.equal(JSON.parse((await gotB).payload.toString()).params.cmd, 0);
    // The other product's device got nothing: an order to it, sent after, is the first thing it receives.
    const gotOther = nextMessage(onOther, (t) => t === otherTopic, 10_000);
    const own = await server.request('POST', `/api/v1/products/${other.productKey}/devices/${other.deviceName}/bootstrap-notify`);
    assert.equal(own.body.notified, 1);
    await gotOther;
    assert.equal(toOther.length, 1, JSON.stringify(toOther));
  });

  it('refuses unknown targets, bad endpoints and read-only tokens', async () => {
    assert.equal((await server.request('POST', `/api/v1/products/${a.productKey}/devices/no-such-device/bootstrap-notify`)).status, 404);
    assert.equal((await server.request('POST', '/api/v1/products/NoSuchProduct1/bootstrap-notify')).status, 404);
    for (const body of [{ host: 'bad host"' }, { port: 0 }, { port: 70000 }, { host: 'x.test', useDefault: true }, { what: 1 }]) {
      const r = await server.request('POST', `/api/v1/products/${a.productKey}/bootstrap-notify`, body);
      assert.equal(r.status, 400, JSON.stringify(body));
    }
    const token = await server.request('POST', '/api/v1/tokens', { name: 'reader', scope: 'read' });
    assert.equal(token.status, 201, JSON.stringify(token.body));
    assert.equal((await server.request('POST', `/api/v1/products/${a.productKey}/bootstrap-notify`, {}, token.body.token)).status, 403);
  });

  it('thingauth device bootstrap-notify (CLI) sends the order', async () => {
    const onB = clients.find((c) => c.options.username === `${b.deviceName}&${b.productKey}` && c.connected)!;
    const got = nextMessage(onB, (t) => t.endsWith('/thing/bootstrap/notify'), 10_000);
    const out = await runCli(['device', 'bootstrap-notify', b.productKey, b.deviceName, '--url', server.api, '--token', server.adminToken, '--json']);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(JSON.parse(out.stdout).notified, 1);
    await got;
  });
});

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
