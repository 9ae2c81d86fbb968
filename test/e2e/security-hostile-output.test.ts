/**
 * Issue 11 item 15, what hostile input can make the server write:
 * - the credentials CSV export neutralises cells a spreadsheet would run as a formula
 *   (DeviceNames may start with `-` or `@`, and pre-registration-free devices and gateways
 *   choose their own names), and the export still imports back unchanged;
 * - the HTTP device channel refuses U+0000 in a topic (10001);
 * - a client that cuts its request off (management upload, device HTTPS body) never produces
 *   an error-level log line or a stack: only server faults are errors.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { deviceHttpsPost as post, deviceHttpsPort } from '../helpers/https.js';
import { createDevice, type DeviceCredentials } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { CSV, importFile } from './import-helpers.js';

const JSON_CT = { 'content-type': 'application/json' };

function authBody(d: DeviceCredentials): string {
  const clientId = `${d.productKey}.${d.deviceName}`;
  const sign = createHmac('sha256', d.deviceSecret).update(`clientId${clientId}deviceName${d.deviceName}productKey${d.productKey}`).digest('hex');
  return JSON.stringify({ clientId, signmethod: 'hmacsha256', sign, productKey: d.productKey, deviceName: d.deviceName });
}

/** Sends `head` and part of a body, then resets the connection once the server has read it. */
function cutOff(socket: net.Socket, text: string): Promise<void> {
  return new Promise((resolve) => {
    socket.on('error', () => undefined);
    socket.once('close', () => resolve());
    const ready = socket instanceof tls.TLSSocket ? 'secureConnect' : 'connect';
    socket.once(ready, () => {
      socket.write(text, () => {
        // Give the server the bytes before the reset (it must be mid-body when the client leaves).
        setTimeout(() => (socket instanceof tls.TLSSocket ? socket.destroy() : socket.resetAndDestroy()), 100);
      });
    });
  });
}

function errorLines(logs: string[]): string[] {
  return logs.filter((l) => {
    try {
      const j = JSON.parse(l) as { level?: number };
      return (j.level ?? 0) >= 50 || l.includes('"stack"');
    } catch {
      return false;
    }
  });
}

describe('hostile output (issue 11 item 15)', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer();
  });
  after(async () => {
    await srv.stop();
  });

  it('the credentials CSV neutralises DeviceNames starting with - or @ and imports back to the same devices', async () => {
    const { registry } = srv.running.ctx.services;
    const p = await registry.createProduct({ productName: 'formula product' });
    const pk = p.productKey;
    const created = await registry.createDevices(pk, { deviceNames: ['-2-3:dev', '@SUM-dev', 'plain-dev'] });
    const secrets = new Map(created.map((d) => [d.deviceName, d.deviceSecret]));
    const res = await fetch(`${srv.api}/api/v1/products/${pk}/device-credentials?format=csv`, { headers: { authorization: `Bearer ${srv.adminToken}` } });
    assert.equal(res.status, 200);
    const csv = await res.text();
    const lines = csv.trim().split('\n').slice(1).sort();
    assert.deepEqual(lines, [`${pk},'-2-3:dev,${secrets.get('-2-3:dev')}`, `${pk},'@SUM-dev,${secrets.get('@SUM-dev')}`, `${pk},plain-dev,${secrets.get('plain-dev')}`].sort());
    for (const l of lines) for (const cell of l.split(',')) assert.doesNotMatch(cell, /^[=+\-@\t\r]/, `cell ${cell} starts a formula`);

    // Round trip: delete the devices, import the export, the same names and secrets come back.
    for (const name of secrets.keys()) await registry.deleteDevice(pk, name);
    const imported = await importFile(srv, 'devices', csv, { contentType: CSV });
    assert.equal(imported.status, 200, JSON.stringify(imported.body));
    assert.equal(imported.body.created, 3, JSON.stringify(imported.body));
    for (const [name, secret] of secrets) {
      const d = await srv.running.ctx.store.getDevice(pk, name);
      assert.equal(d?.deviceSecret, secret, `${name} is back with its secret`);
    }
  });

  it('the HTTP channel refuses U+0000 in a topic with 10001; the device still publishes on a clean topic', async () => {
    const dev = await createDevice(srv);
    const auth = await post(srv, '/auth', authBody(dev), JSON_CT);
    assert.equal(auth.json?.code, 0, auth.text);
    const token = auth.json.info.token as string;
    const base = `/topic/sys/${dev.productKey}/${dev.deviceName}/thing/event/property/post`;
    for (const path of [`${base}%00`, `/topic/${dev.productKey}/${dev.deviceName}/user/a%00b`, `${base}%00/x`]) {
      const r = await post(srv, path, '{"id":"1","params":{}}', { ...JSON_CT, password: token });
      assert.equal(r.json?.code, 10001, `${path}: ${r.text}`);
      assert.match(r.json.message, /U\+0000/);
    }
    const ok = await post(srv, base, '{"id":"1","params":{}}', { ...JSON_CT, password: token });
    assert.equal(ok.json?.code, 0, ok.text);
  });

  it('requests cut off mid-body (management import, JSON, device HTTPS) log no error and no stack; the server keeps serving', async () => {
    const mport = srv.running.listeners['management-http']!.port;
    const dport = deviceHttpsPort(srv);
    const auth = `authorization: Bearer ${srv.adminToken}\r\n`;
    const management = [
      `POST /api/v1/import/devices HTTP/1.1\r\nhost: x\r\n${auth}content-type: text/csv\r\ncontent-length: 100000\r\n\r\nProductKey,DeviceName,DeviceSecret\na1xx,dev-0001,`,
      `POST /api/v1/import/products HTTP/1.1\r\nhost: x\r\n${auth}content-type: application/x-ndjson\r\ncontent-length: 100000\r\n\r\n{"productKey":`,
      `POST /api/v1/products HTTP/1.1\r\nhost: x\r\n${auth}content-type: application/json\r\ncontent-length: 1000\r\n\r\n{"productName":`,
      `POST /api/v1/products HTTP/1.1\r\nhost: x\r\n${auth}content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{"pro\r\n`,
    ];
    const device = [
      `POST /auth HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"productKey":`,
      `POST /auth/register/device HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 1000\r\n\r\nproductKey=`,
      `POST /topic/sys/a1xx/dev/thing/event/property/post HTTP/1.1\r\nhost: x\r\npassword: abc\r\ncontent-type: application/octet-stream\r\ncontent-length: 1000\r\n\r\nabc`,
    ];
    for (const text of management) await cutOff(net.connect(mport, '127.0.0.1'), text);
    for (const text of device) await cutOff(tls.connect({ port: dport, host: '127.0.0.1', rejectUnauthorized: false, servername: 'localhost' }), text);
    // Hostile but complete bodies too.
    assert.equal((await srv.request('POST', '/api/v1/products', '{"productName": ')).status, 400);
    assert.equal((await post(srv, '/auth', '{not json', JSON_CT)).json?.code, 10001);
    // The aborted uploads were handled (logged at info as the client's doing) before we look.
    const aborted = () => srv.logs.filter((l) => l.includes('aborted by the client')).length;
    for (let i = 0; i < 400 && aborted() < 2; i++) await new Promise((r) => setTimeout(r, 25));
    assert.ok(aborted() >= 2, 'both cut-off uploads reached the error handler');
    assert.deepEqual(errorLines(srv.logs), []);
    const dev = await createDevice(srv);
    assert.equal((await post(srv, '/auth', authBody(dev), JSON_CT)).json?.code, 0);
    assert.equal((await srv.request('GET', '/api/v1/products')).status, 200);
  });
});
