/**
 * X.509 device certificates end to end (issue 16): an x509 product, a device created with its
 * certificate and key, the PEM bundle, and real mqtt.js clients logging in with mutual TLS on
 * MQTTS, the TLS-detected MQTT port and WSS; the refusals (foreign CA, expired, mismatching
 * username, revoked, garbage, too deep, weak key, secret login on an x509 product) with their
 * CONNACK codes and audit reasons; revocation closing a live session.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { connectClient, createDevice, endClient, eventually, signedConnect, waitForClose } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { certConnect, certRefusal, deviceSubject, identityResponse, keyPair, makeCa, pkcs8, signCert, x509Device, x509Product, type X509Device } from './x509-helpers.js';

async function caWithKey(server: TestServer, productKey: string): Promise<{ cert: x509.X509Certificate; keys: CryptoKeyPair }> {
  const ca = (await server.running.ctx.store.getProductCa(productKey))!;
  const der = x509.PemConverter.decodeFirst(ca.privateKey!);
  const privateKey = (await crypto.subtle.importKey('pkcs8', der, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, true, ['sign'])) as CryptoKey;
  return { cert: new x509.X509Certificate(ca.certificate), keys: { privateKey, publicKey: undefined as unknown as CryptoKey } };
}

async function lastAudit(server: TestServer, productKey: string, deviceName: string): Promise<{ action: string; result: string; reason: string }> {
  await server.settle();
  const r = await server.request('GET', `/api/v1/audit?productKey=${productKey}&deviceName=${encodeURIComponent(deviceName)}&limit=1`);
  return r.body.items[0];
}

async function signCertWithSans(issuer: { cert: x509.X509Certificate; keys: CryptoKeyPair }, uris: string[]): Promise<{ pem: string; keyPem: string }> {
  const keys = await keyPair();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '0c01',
    subject: 'CN=padded',
    issuer: issuer.cert.subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    signingKey: issuer.keys.privateKey,
    publicKey: keys.publicKey,
    signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
    extensions: [new x509.SubjectAlternativeNameExtension(uris.map((value) => ({ type: 'url' as const, value })))],
  });
  return { pem: cert.toString('pem') + '\n', keyPem: await pkcs8(keys.privateKey) };
}

describe('X.509 device login', () => {
  let server: TestServer;
  let pk: string;
  let dev: X509Device;

  before(async () => {
    server = await startTestServer({ loginFailThreshold: '0' });
    pk = await x509Product(server);
    dev = await x509Device(server, pk, 'x509-dev-01');
  });
  after(async () => {
    await server.stop();
  });

  it('issues the device a certificate naming it (subject and SAN) and a key, downloadable as a bundle', async () => {
    const cert = new X509Certificate(dev.cert);
    const years = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / (365.25 * 86_400_000);
    assert.ok(years > 99.9 && years < 100.1, `valid ${years} years (the cloud: 100)`);
    assert.match(cert.subject, new RegExp(`CN=${dev.deviceName}\\nOU=${pk}`));
    assert.equal(cert.subjectAltName, `URI:urn:thingauth:device:${pk}:${dev.deviceName}`);
    assert.ok(cert.checkIssued(new X509Certificate(dev.ca)) && cert.verify(new X509Certificate(dev.ca).publicKey));
    assert.equal(cert.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
    assert.match(dev.key, /BEGIN PRIVATE KEY/);
    const pem = await fetch(`${server.api}/api/v1/products/${pk}/devices/${dev.deviceName}/certificate-bundle?format=pem`, { headers: { authorization: `Bearer ${server.adminToken}` } });
    assert.equal(pem.status, 200);
    const text = await pem.text();
    assert.equal(text, dev.cert + dev.key + dev.ca);
    // The key never appears in lists.
    const list = await server.request('GET', `/api/v1/products/${pk}/devices/${dev.deviceName}/certificates`);
    assert.equal(list.body.items.length, 1);
    assert.equal(list.body.items[0].state, 'valid');
    assert.ok(!JSON.stringify(list.body).includes('PRIVATE KEY'));
    // A read-scope token may not download keys.
    const tok = await server.request('POST', '/api/v1/tokens', { name: 'reader', scope: 'read' });
    const denied = await server.request('GET', `/api/v1/products/${pk}/devices/${dev.deviceName}/certificate-bundle`, undefined, tok.body.token);
    assert.equal(denied.status, 403);
  });

  it('chooses the mode at product creation (refusing x509 with dynamic registration, creating nothing) and fixes it once the product has devices', async () => {
    const before = (await server.request('GET', '/api/v1/products')).body.total;
    const bad = await server.request('POST', '/api/v1/products', { productName: 'x509 dyn', authMode: 'x509', dynamicRegistration: true });
    assert.equal(bad.status, 400);
    assert.equal((await server.request('GET', '/api/v1/products')).body.total, before);
    const empty = await server.request('POST', '/api/v1/products', { productName: 'switchable' });
    assert.equal(empty.body.authMode, 'secret');
    assert.equal((await server.request('PUT', `/api/v1/products/${empty.body.productKey}/auth`, { authMode: 'x509' })).body.authMode, 'x509');
    assert.equal((await server.request('PUT', `/api/v1/products/${empty.body.productKey}/auth`, { authMode: 'secret' })).body.authMode, 'secret');
    const r = await server.request('PUT', `/api/v1/products/${pk}/auth`, { authMode: 'secret' });
    assert.equal(r.status, 409);
    assert.equal((await server.request('GET', `/api/v1/products/${pk}/auth`)).body.authMode, 'x509');
  });

  for (const which of ['mqtts', 'mqtt-tls', 'mqtt-wss'] as const) {
    it(`logs the device in on ${which} with its certificate (empty username and password) and tells it who it is`, async () => {
      const client = await certConnect(server, which, { cert: dev.cert, key: dev.key });
      try {
        assert.deepEqual(await identityResponse(client), { productKey: pk, deviceName: dev.deviceName });
        await eventually(async () => (await server.request('GET', `/api/v1/products/${pk}/devices/${dev.deviceName}`)).body.status === 'ONLINE');
      } finally {
        await endClient(client);
      }
    });
  }

  it("accepts the C SDK's CONNECT (username '&', HMAC password under an empty secret) and deviceName&productKey once known", async () => {
    const sdk = await certConnect(server, 'mqtts', {
      cert: dev.cert,
      key: dev.key,
      clientId: '.|timestamp=2524608000000,_v=sdk-c-3.0.1,securemode=2,signmethod=hmacsha256,lan=C,_ss=1,gw=0,ext=0|',
      username: '&',
      password: 'B36DABAE2EBB7B8FA6FFD92B217E13D97C1AB196441561B0F71B3C3BF1DACA0',
    });
    await endClient(sdk);
    const known = await certConnect(server, 'mqtts', { cert: dev.cert, key: dev.key, clientId: 'sn123|securemode=2,signmethod=hmacsha1,timestamp=132323232|', username: `${dev.deviceName}&${pk}` });
    // The session is the device's own: it may publish to its topics.
    await new Promise<void>((resolve, reject) => known.publish(`/${pk}/${dev.deviceName}/user/update`, 'hi', { qos: 1 }, (e) => (e ? reject(e) : resolve())));
    await endClient(known);
    assert.match((await lastAudit(server, pk, dev.deviceName)).reason, /X\.509 certificate/);
  });

  it('refuses a username naming another device (CONNACK 4) and records why', async () => {
    const other = await x509Device(server, pk, 'x509-dev-02');
    const r = await certRefusal(server, 'mqtts', { cert: dev.cert, key: dev.key, username: `${other.deviceName}&${pk}` });
    assert.equal(r.code, 4);
    const a = await lastAudit(server, pk, dev.deviceName);
    assert.equal(a.action, 'mqtt.connect.x509');
    assert.match(a.reason, /CONNACK 4: username names x509-dev-02.* but the certificate is x509-dev-01/);
    // MQTT 5: Bad User Name or Password (0x86); a certificate login over MQTT 5 works.
    const v5 = await certRefusal(server, 'mqtts', { cert: dev.cert, key: dev.key, username: `${other.deviceName}&${pk}`, protocolVersion: 5 });
    assert.equal(v5.code, 0x86);
    await endClient(await certConnect(server, 'mqtts', { cert: dev.cert, key: dev.key, protocolVersion: 5 }));
  });

  it('refuses a certificate with the right subject from a foreign CA (CONNACK 5)', async () => {
    const foreign = await makeCa('attacker CA');
    const names = deviceSubject(pk, dev.deviceName);
    const forged = await signCert({ issuer: foreign, subject: names.subject, san: names.san });
    const r = await certRefusal(server, 'mqtts', { cert: forged.pem, key: forged.keyPem });
    assert.equal(r.code, 5);
    assert.match((await lastAudit(server, pk, dev.deviceName)).reason, /CONNACK 5: client certificate does not chain to the product's device CA/);
  });

  it('refuses an expired and a not-yet-valid certificate from the right CA, saying which', async () => {
    const ca = await caWithKey(server, pk);
    const names = deviceSubject(pk, dev.deviceName);
    const expired = await signCert({ issuer: ca, ...names, notBefore: new Date(Date.now() - 10 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
    assert.equal((await certRefusal(server, 'mqtts', { cert: expired.pem, key: expired.keyPem })).code, 5);
    assert.match((await lastAudit(server, pk, dev.deviceName)).reason, /client certificate expired at/);
    const early = await signCert({ issuer: ca, ...names, notBefore: new Date(Date.now() + 86_400_000), notAfter: new Date(Date.now() + 10 * 86_400_000) });
    assert.equal((await certRefusal(server, 'mqtts', { cert: early.pem, key: early.keyPem })).code, 5);
    assert.match((await lastAudit(server, pk, dev.deviceName)).reason, /not valid before/);
    // Signed by our CA but never issued (not on record): refused too.
    const unissued = await signCert({ issuer: ca, ...names });
    assert.equal((await certRefusal(server, 'mqtts', { cert: unissued.pem, key: unissued.keyPem })).code, 5);
    assert.match((await lastAudit(server, pk, dev.deviceName)).reason, /not on record/);
  });

  it('refuses weak keys, certificates naming no device, and chains deeper than 4, the server serving on', async () => {
    const foreign = await makeCa('junk CA');
    const weak = await signCert({ issuer: foreign, ...deviceSubject(pk, dev.deviceName), modulusLength: 1024 });
    assert.equal((await certRefusal(server, 'mqtts', { cert: weak.pem, key: weak.keyPem })).code, 5);
    assert.match((await lastAudit(server, pk, dev.deviceName)).reason, /RSA key of 1024 bits/);
    const nobody = await signCert({ issuer: foreign, subject: 'CN=someone' });
    assert.equal((await certRefusal(server, 'mqtts', { cert: nobody.pem, key: nobody.keyPem })).code, 5);
    // A chain of 5 intermediates above the leaf.
    let issuer: { cert: x509.X509Certificate; keys: CryptoKeyPair } = foreign;
    const chain: string[] = [];
    for (let i = 0; i < 5; i++) {
      const mid = await signCert({ issuer, subject: `CN=mid ${i}`, ca: true });
      chain.unshift(mid.pem);
      issuer = { cert: mid.cert, keys: mid.keys };
    }
    const leaf = await signCert({ issuer, ...deviceSubject(pk, dev.deviceName) });
    assert.equal((await certRefusal(server, 'mqtts', { cert: leaf.pem + chain.join(''), key: leaf.keyPem })).code, 5);
    assert.match((await lastAudit(server, pk, dev.deviceName)).reason, /chain of \d+ certificates: at most 4/);
    // An oversized certificate (300 SAN URIs, about 20 KiB): refused before it is parsed.
    const big = await signCertWithSans(foreign, Array.from({ length: 300 }, (_, i) => `urn:example:padding:${String(i).padStart(4, '0')}:${'x'.repeat(40)}`));
    assert.equal((await certRefusal(server, 'mqtts', { cert: big.pem, key: big.keyPem })).code, 5);
    await server.settle();
    const lastX509 = (await server.request('GET', '/api/v1/audit?action=mqtt.connect.x509&limit=1')).body.items[0];
    assert.match(lastX509.reason, /client certificate of \d+ bytes: at most 16384/);
    // Still serving the real device.
    await endClient(await certConnect(server, 'mqtts', { cert: dev.cert, key: dev.key }));
  });

  it('refuses a device-secret login for an x509 product; secret devices without certificates share the TLS listeners', async () => {
    const rec = await server.running.ctx.store.getDevice(pk, dev.deviceName);
    const r = await certRefusal(server, 'mqtts', { cert: undefined as unknown as string, key: undefined as unknown as string, ...signedConnect({ productKey: pk, deviceName: dev.deviceName, deviceSecret: rec!.deviceSecret }) });
    assert.equal(r.code, 5);
    assert.match((await lastAudit(server, pk, dev.deviceName)).reason, /authenticates devices with X\.509 certificates/);
    const secretDev = await createDevice(server);
    for (const which of ['mqtts', 'mqtt-tls', 'mqtt-wss'] as const) {
      await endClient(await connectClient(server, which, signedConnect({ ...secretDev, securemode: '2' })));
    }
  });

  it('revoking the certificate closes the live session within a second and refuses it from then on', async () => {
    const d = await x509Device(server, pk, 'x509-dev-03');
    const client = await certConnect(server, 'mqtts', { cert: d.cert, key: d.key });
    const closed = waitForClose(client, 1_000);
    const t0 = Date.now();
    const r = await server.request('POST', `/api/v1/products/${pk}/devices/${d.deviceName}/certificates/${d.serial}/revoke`, { reason: 'stolen unit' });
    assert.equal(r.status, 200);
    assert.equal(r.body.state, 'revoked');
    await closed;
    assert.ok(Date.now() - t0 < 1_000);
    await endClient(client);
    const again = await certRefusal(server, 'mqtts', { cert: d.cert, key: d.key });
    assert.equal(again.code, 5);
    assert.match((await lastAudit(server, pk, d.deviceName)).reason, /certificate [0-9a-f]+ revoked at .*stolen unit/);
    // The CRL of the product's CA lists it.
    const crlRes = await fetch(`${server.api}/api/v1/products/${pk}/x509/crl`, { headers: { authorization: `Bearer ${server.adminToken}` } });
    const crl = new x509.X509Crl(await crlRes.text());
    assert.ok(await crl.verify({ publicKey: await new x509.X509Certificate(d.ca).publicKey.export() }));
    assert.ok(crl.entries.some((e) => e.serialNumber.toLowerCase().replace(/^0+/, '') === d.serial));
  });

  it('disabling the device closes its certificate session and refuses it (disabled)', async () => {
    const d = await x509Device(server, pk, 'x509-dev-04', 'ec-p256');
    assert.equal(new X509Certificate(d.cert).publicKey.asymmetricKeyType, 'ec');
    const client = await certConnect(server, 'mqtts', { cert: d.cert, key: d.key });
    const closed = waitForClose(client, 2_000);
    await server.request('POST', `/api/v1/products/${pk}/devices/${d.deviceName}/disable`);
    await closed;
    await endClient(client);
    assert.equal((await certRefusal(server, 'mqtts', { cert: d.cert, key: d.key })).code, 5);
    assert.match((await lastAudit(server, pk, d.deviceName)).reason, /device disabled/);
  });

  it('signs a CSR naming the device (the key stays with the device); refuses wrong identities and weak keys, writing nothing', async () => {
    const c = await server.request('POST', `/api/v1/products/${pk}/devices`, { deviceName: 'x509-csr-01' });
    assert.equal(c.status, 201);
    const keys = await keyPair();
    const csrFor = async (subject: string, k: CryptoKeyPair) =>
      (await x509.Pkcs10CertificateRequestGenerator.create({ name: subject, keys: k, signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } })).toString('pem');
    const before = (await server.request('GET', `/api/v1/products/${pk}/devices/x509-csr-01/certificates`)).body.items.length;
    const wrong = await server.request('POST', `/api/v1/products/${pk}/devices/x509-csr-01/certificates`, { csr: await csrFor(`CN=x509-dev-01, OU=${pk}`, keys) });
    assert.equal(wrong.status, 400);
    assert.match(wrong.body.message, /names x509-dev-01/);
    const weak = await server.request('POST', `/api/v1/products/${pk}/devices/x509-csr-01/certificates`, { csr: await csrFor(`CN=x509-csr-01, OU=${pk}`, await keyPair(1024)) });
    assert.equal(weak.status, 400);
    assert.match(weak.body.message, /1024 bits/);
    const garbage = await server.request('POST', `/api/v1/products/${pk}/devices/x509-csr-01/certificates`, { csr: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n' });
    assert.equal(garbage.status, 400);
    assert.equal((await server.request('GET', `/api/v1/products/${pk}/devices/x509-csr-01/certificates`)).body.items.length, before);
    const ok = await server.request('POST', `/api/v1/products/${pk}/devices/x509-csr-01/certificates`, { csr: await csrFor(`CN=x509-csr-01, OU=${pk}`, keys) });
    assert.equal(ok.status, 201);
    assert.equal(ok.body.source, 'csr');
    const bundle = await server.request('GET', `/api/v1/products/${pk}/devices/x509-csr-01/certificate-bundle?serial=${ok.body.serial}`);
    assert.equal(bundle.body.privateKey, null);
    await endClient(await certConnect(server, 'mqtts', { cert: ok.body.certificate, key: await pkcs8(keys.privateKey) }));
  });

  it('rotates: both certificates log in until the set time; the expiring report and metric see certificates', async () => {
    const d = await x509Device(server, pk, 'x509-rot-01');
    const r = await server.request('POST', `/api/v1/products/${pk}/devices/${d.deviceName}/certificates/rotate`, { graceSeconds: 3600 });
    assert.equal(r.status, 201);
    const fresh = await server.request('GET', `/api/v1/products/${pk}/devices/${d.deviceName}/certificate-bundle`);
    assert.equal(fresh.body.serial, r.body.serial);
    await endClient(await certConnect(server, 'mqtts', { cert: d.cert, key: d.key }));
    await endClient(await certConnect(server, 'mqtts', { cert: fresh.body.certificate, key: fresh.body.privateKey }));
    const states = (await server.request('GET', `/api/v1/products/${pk}/devices/${d.deviceName}/certificates`)).body.items.map((c: { state: string }) => c.state);
    assert.deepEqual(states, ['valid', 'retiring']);
    // Rotating with no grace ends the old one at once.
    const r2 = await server.request('POST', `/api/v1/products/${pk}/devices/${d.deviceName}/certificates/rotate`, { graceSeconds: 0 });
    assert.equal(r2.status, 201);
    assert.equal((await certRefusal(server, 'mqtts', { cert: fresh.body.certificate, key: fresh.body.privateKey })).code, 5);
    // Issued certificates are valid for 100 years, as the cloud's: none within 30 days, all within 36500.
    assert.deepEqual((await server.request('GET', `/api/v1/x509/expiring?days=30&productKey=${pk}`)).body.items, []);
    const soon = await server.request('GET', `/api/v1/x509/expiring?days=36500&productKey=${pk}`);
    assert.ok(soon.body.items.some((c: { serial: string }) => c.serial === r2.body.serial));
    assert.ok(!soon.body.items.some((c: { serial: string }) => c.serial === d.serial), 'revoked certificates are not reported');
    const metrics = await (await fetch(`${server.api}/metrics`, { headers: { authorization: `Bearer ${server.adminToken}` } })).text();
    assert.match(metrics, /thingauth_device_certificates_expiring\{days="30"\} 0/);
    assert.match(metrics, /thingauth_logins_total\{channel="mqtt",result="refused",reason="certificate_revoked"\}/);
  });
});
