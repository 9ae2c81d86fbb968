/**
 * X.509 devices in the rest of the platform (issue 16): an X.509 gateway logs its
 * secret-authenticated sub-devices in; takeover between two connections of one certificate;
 * the compat TLS profile with RSA key exchange (what the C SDK's mbedtls speaks) carrying a
 * client certificate; the CLI bundle download.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';
import { caOf, endClient, waitForClose } from '../helpers/mqtt.js';
import { makeTempDir, startTestServer, type TestServer } from '../helpers/server.js';
import { attachByApi, loginParams, request, sessionTopic, statusOf } from './gateway-helpers.js';
import { certConnect, certRefusal, identityResponse, x509Device, x509Product } from './x509-helpers.js';

const run = promisify(execFile);

function writeNames(dir: string, names: string[]): string {
  const f = path.join(dir, 'names.txt');
  fs.writeFileSync(f, names.join('\n') + '\n');
  return f;
}

/** The files of a stored (uncompressed) ZIP, read through its central directory, CRCs checked. */
function readZip(buf: Buffer): Map<string, string> {
  const eocd = buf.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  assert.ok(eocd >= 0, 'end of central directory');
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  const out = new Map<string, string>();
  for (let i = 0; i < count; i++) {
    assert.equal(buf.readUInt32LE(p), 0x02014b50);
    const crc = buf.readUInt32LE(p + 16);
    const size = buf.readUInt32LE(p + 24);
    const nameLen = buf.readUInt16LE(p + 28);
    const local = buf.readUInt32LE(p + 42);
    const name = buf.subarray(p + 46, p + 46 + nameLen).toString('utf8');
    assert.equal(buf.readUInt32LE(local), 0x04034b50);
    const dataAt = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    const data = buf.subarray(dataAt, dataAt + size);
    assert.equal(crc32(data), crc, `crc of ${name}`);
    out.set(name, data.toString('utf8'));
    p += 46 + nameLen + buf.readUInt16LE(p + 30) + buf.readUInt16LE(p + 32);
  }
  return out;
}

describe('X.509 gateways, takeover, TLS compat, CLI', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server.stop();
  });

  it('an X.509 gateway logs in secret-authenticated sub-devices through its session', async () => {
    const gwPk = await x509Product(server, { nodeType: 'GATEWAY' });
    const gw = await x509Device(server, gwPk, 'x509-gateway-01');
    const registry = server.running.ctx.services.registry;
    const subProduct = await registry.createProduct({ productName: 'sub device product', nodeType: 'SUB_DEVICE' });
    const [sub] = await registry.createDevices(subProduct.productKey, { count: 1 });
    const subCreds = { productKey: sub!.productKey, deviceName: sub!.deviceName, deviceSecret: sub!.deviceSecret };
    const gwCreds = { productKey: gwPk, deviceName: gw.deviceName, deviceSecret: 'unused' };
    await attachByApi(server, gwCreds, [subCreds]);
    const client = await certConnect(server, 'mqtts', { cert: gw.cert, key: gw.key, username: `${gw.deviceName}&${gwPk}` });
    try {
      const r = await request(client, sessionTopic(gwCreds, 'login'), { params: loginParams(subCreds) });
      assert.equal(r.body.code, 200, JSON.stringify(r.body));
      assert.equal(await statusOf(server, subCreds), 'ONLINE');
    } finally {
      await endClient(client);
    }
  });

  it('a SUB_DEVICE product cannot choose X.509 (sub-devices log in through their gateway)', async () => {
    const p = await server.request('POST', '/api/v1/products', { productName: 'subs', nodeType: 'SUB_DEVICE' });
    const r = await server.request('PUT', `/api/v1/products/${p.body.productKey}/auth`, { authMode: 'x509' });
    assert.equal(r.status, 409);
  });

  it('a second connection with the same certificate takes the device over', async () => {
    const pk = await x509Product(server);
    const d = await x509Device(server, pk, 'x509-take-01');
    const first = await certConnect(server, 'mqtts', { cert: d.cert, key: d.key });
    const closed = waitForClose(first, 3_000);
    const second = await certConnect(server, 'mqtt-tls', { cert: d.cert, key: d.key });
    await closed;
    assert.deepEqual(await identityResponse(second), { productKey: pk, deviceName: d.deviceName });
    await endClient(second);
    await endClient(first);
  });

  it('the compat profile accepts a client certificate over TLS 1.2 with RSA key exchange (AES128-SHA, as mbedtls)', async () => {
    const pk = await x509Product(server);
    const d = await x509Device(server, pk, 'x509-mbed-01');
    const port = server.running.listeners.mqtts!.port;
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: caOf(server), cert: d.cert, key: d.key, ciphers: 'AES128-SHA', maxVersion: 'TLSv1.2' });
    await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    assert.equal(socket.getCipher().name, 'AES128-SHA');
    // A raw MQTT 3.1.1 CONNECT: ClientId ".|securemode=2|", no username, no password, keep-alive 60.
    const clientId = Buffer.from('.|securemode=2|');
    const variable = Buffer.concat([Buffer.from([0, 4]), Buffer.from('MQTT'), Buffer.from([4, 0x02, 0, 60])]);
    const payload = Buffer.concat([Buffer.from([0, clientId.length]), clientId]);
    const body = Buffer.concat([variable, payload]);
    socket.write(Buffer.concat([Buffer.from([0x10, body.length]), body]));
    const connack = await new Promise<Buffer>((resolve, reject) => socket.once('data', resolve).once('error', reject));
    assert.deepEqual([...connack.subarray(0, 4)], [0x20, 2, 0, 0]);
    socket.destroy();
  });

  it('THINGAUTH_TLS_CLIENT_CERTS=off: listeners do not ask, so a certificate device cannot log in (secret devices can)', async () => {
    const off = await startTestServer({ tlsClientCerts: 'off' });
    try {
      const pk = await x509Product(off);
      const d = await x509Device(off, pk, 'x509-off-01');
      const r = await certRefusal(off, 'mqtts', { cert: d.cert, key: d.key });
      assert.equal(r.code, 4, 'no certificate reached the server: an empty username is a missing credential');
    } finally {
      await off.stop();
    }
  });

  it('thingauth x509 bundle writes certificate, key and CA to a 0600 file', async () => {
    const pk = await x509Product(server);
    const d = await x509Device(server, pk, 'x509-cli-01');
    const dir = makeTempDir('thingauth-x509-cli-');
    const out = path.join(dir, 'dev.pem');
    const cli = path.resolve('dist/src/cli/main.js');
    const env = { ...process.env, THINGAUTH_URL: server.api, THINGAUTH_ADMIN_TOKEN: server.adminToken };
    await run(process.execPath, [cli, 'x509', 'bundle', pk, d.deviceName, '--out', out], { env });
    assert.equal(fs.readFileSync(out, 'utf8'), d.cert + d.key + d.ca);
    assert.equal(fs.statSync(out).mode & 0o777, 0o600);
    const list = await run(process.execPath, [cli, 'x509', 'certs', pk, d.deviceName, '--json'], { env });
    assert.equal(JSON.parse(list.stdout).items[0].serial, d.serial);
    const auth = await run(process.execPath, [cli, 'x509', 'auth', pk, '--json'], { env });
    assert.equal(JSON.parse(auth.stdout).authMode, 'x509');
    const expiring = await run(process.execPath, [cli, 'x509', 'expiring', '--days', '36500', '--product', pk, '--json'], { env });
    assert.ok(JSON.parse(expiring.stdout).items.some((c: { serial: string }) => c.serial === d.serial));
    const none = await run(process.execPath, [cli, 'x509', 'expiring', '--days', '30', '--product', pk], { env });
    assert.match(none.stdout, /no certificate ends within 30 days/);
    const crlFile = path.join(dir, 'ca.crl');
    await run(process.execPath, [cli, 'x509', 'crl', pk, '--out', crlFile], { env });
    assert.match(fs.readFileSync(crlFile, 'utf8'), /^-----BEGIN X509 CRL-----/);
    // batch-issue: 3 devices, each with its certificate, all written as CSV.
    const csv = path.join(dir, 'batch.csv');
    await run(process.execPath, [cli, 'x509', 'batch-issue', pk, '--count', '3', '--key-algorithm', 'ec-p256', '--out', csv, '--no-progress'], { env });
    const lines = fs.readFileSync(csv, 'utf8');
    assert.match(lines, /^ProductKey,DeviceName,Serial,NotAfter,Certificate,PrivateKey,CaCertificate\n/);
    assert.equal((lines.match(/BEGIN PRIVATE KEY/g) ?? []).length, 4, 'x509-cli-01 and the 3 new devices');
    assert.equal(fs.statSync(csv).mode & 0o777, 0o600);
    // The same as a ZIP: ca.pem and one {DeviceName}.pem per device (certificate, key, CA).
    const zipFile = path.join(dir, 'batch.zip');
    await run(process.execPath, [cli, 'x509', 'batch-issue', pk, '--names', writeNames(dir, ['zip-unit-01', 'zip-unit-02']), '--out', zipFile, '--no-progress'], { env });
    const files = readZip(fs.readFileSync(zipFile));
    for (const n of ['ca.pem', 'x509-cli-01.pem', 'zip-unit-01.pem', 'zip-unit-02.pem']) assert.ok(files.has(n), n);
    assert.equal(files.size, 7, 'ca.pem, x509-cli-01, the 3 CSV devices, the 2 named ones');
    assert.equal(files.get('ca.pem'), d.ca);
    assert.equal(files.get('x509-cli-01.pem'), d.cert + d.key + d.ca);
    const unit = files.get('zip-unit-01.pem')!;
    await endClient(await certConnect(server, 'mqtts', { cert: unit.slice(0, unit.indexOf('-----END CERTIFICATE-----') + 26), key: unit.slice(unit.indexOf('-----BEGIN PRIVATE KEY-----'), unit.indexOf('-----END PRIVATE KEY-----') + 26) }));
  });
});
