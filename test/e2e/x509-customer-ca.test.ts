/**
 * X.509 with the customer's own CA (issue 16): upload with proof of possession (a
 * verification certificate whose CN is the registration code, signed by the CA key), devices
 * logging in with certificates from that CA (also through an intermediate), enrollment on
 * first contact (on: created within the product's limit and audited; off: refused), revoking
 * a customer certificate, and the refusals of bad uploads, writing nothing.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { endClient } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { certConnect, certRefusal, deviceSubject, identityResponse, makeCa, signCert, x509Product } from './x509-helpers.js';

describe('X.509 with a customer CA', () => {
  let server: TestServer;
  let pk: string;
  let ca: Awaited<ReturnType<typeof makeCa>>;

  before(async () => {
    server = await startTestServer({ loginFailThreshold: '0' });
    pk = await x509Product(server, { deviceLimit: 3 });
    ca = await makeCa('customer fleet CA');
  });
  after(async () => {
    await server.stop();
  });

  const code = async () => (await server.request('GET', `/api/v1/products/${pk}/x509/ca/registration-code`)).body.registrationCode as string;

  it('refuses an upload without proof of possession, or of something that is no CA, and writes nothing', async () => {
    const regCode = await code();
    assert.match(regCode, /^[0-9a-f]{32}$/);
    // Reading the CA never makes one (a read-scope token must not fix the product's CA choice).
    assert.equal((await server.request('GET', `/api/v1/products/${pk}/x509/ca`)).status, 404);
    assert.equal((await server.request('GET', `/api/v1/products/${pk}/x509/crl`)).status, 404);
    const stranger = await makeCa('someone else');
    const wrongSigner = await signCert({ issuer: stranger, subject: `CN=${regCode}` });
    let r = await server.request('POST', `/api/v1/products/${pk}/x509/ca`, { certificate: ca.pem, verificationCertificate: wrongSigner.pem });
    assert.equal(r.status, 400);
    assert.match(r.body.message, /proof of possession failed/);
    const wrongCode = await signCert({ issuer: ca, subject: 'CN=0123456789abcdef0123456789abcdef' });
    r = await server.request('POST', `/api/v1/products/${pk}/x509/ca`, { certificate: ca.pem, verificationCertificate: wrongCode.pem });
    assert.equal(r.status, 400);
    assert.match(r.body.message, /registration code/);
    const leaf = await signCert({ issuer: ca, subject: 'CN=not a ca' });
    const leafProof = await signCert({ issuer: { cert: leaf.cert, keys: leaf.keys }, subject: `CN=${regCode}` });
    r = await server.request('POST', `/api/v1/products/${pk}/x509/ca`, { certificate: leaf.pem, verificationCertificate: leafProof.pem });
    assert.equal(r.status, 400);
    assert.match(r.body.message, /not a CA certificate/);
    r = await server.request('POST', `/api/v1/products/${pk}/x509/ca`, { certificate: 'garbage', verificationCertificate: 'garbage' });
    assert.equal(r.status, 400);
    assert.equal(await server.running.ctx.store.getProductCa(pk), undefined);
  });

  it('accepts the CA with a verification certificate signed by its key; a second CA is refused', async () => {
    const proof = await signCert({ issuer: ca, subject: `CN=${await code()}` });
    const r = await server.request('POST', `/api/v1/products/${pk}/x509/ca`, { certificate: ca.pem, verificationCertificate: proof.pem });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal(r.body.source, 'customer');
    const other = await makeCa('second');
    const again = await server.request('POST', `/api/v1/products/${pk}/x509/ca`, { certificate: other.pem, verificationCertificate: (await signCert({ issuer: other, subject: `CN=${await code()}` })).pem });
    assert.equal(again.status, 409);
    // thingauth holds no key of this CA: it issues nothing and publishes no CRL for it.
    const created = await server.request('POST', `/api/v1/products/${pk}/devices`, { deviceName: 'pre-made-01' });
    assert.equal(created.status, 201);
    assert.equal(created.body.certificateSerial, undefined);
    assert.equal((await server.request('POST', `/api/v1/products/${pk}/devices/pre-made-01/certificates`, {})).status, 409);
  });

  it('logs in a pre-created device with a certificate from the customer CA (also via an intermediate), recording it', async () => {
    const leaf = await signCert({ issuer: ca, ...deviceSubject(pk, 'pre-made-01') });
    const client = await certConnect(server, 'mqtts', { cert: leaf.pem, key: leaf.keyPem });
    assert.deepEqual(await identityResponse(client), { productKey: pk, deviceName: 'pre-made-01' });
    await endClient(client);
    const certs = (await server.request('GET', `/api/v1/products/${pk}/devices/pre-made-01/certificates`)).body.items;
    assert.equal(certs.length, 1);
    assert.equal(certs[0].source, 'enrolled');
    const mid = await signCert({ issuer: ca, subject: 'CN=factory line 2', ca: true });
    const viaMid = await signCert({ issuer: { cert: mid.cert, keys: mid.keys }, ...deviceSubject(pk, 'pre-made-01') });
    await endClient(await certConnect(server, 'mqtts', { cert: viaMid.pem + mid.pem, key: viaMid.keyPem }));
    // Revoking a customer certificate is enforced here at login.
    const serial = certs[0].serial;
    const rev = await server.request('POST', `/api/v1/products/${pk}/devices/pre-made-01/certificates/${serial}/revoke`, {});
    assert.equal(rev.status, 200);
    assert.equal((await certRefusal(server, 'mqtts', { cert: leaf.pem, key: leaf.keyPem })).code, 5);
    // The CRL of a customer CA is the customer's to publish.
    assert.equal((await server.request('GET', `/api/v1/products/${pk}/x509/crl`)).status, 409);
  });

  it('refuses unknown devices while enrollment is off; creates them at first login when on, within the limit, audited', async () => {
    const fresh = await signCert({ issuer: ca, ...deviceSubject(pk, 'field-unit-01') });
    assert.equal((await certRefusal(server, 'mqtts', { cert: fresh.pem, key: fresh.keyPem })).code, 5);
    assert.equal((await server.request('GET', `/api/v1/products/${pk}/devices/field-unit-01`)).status, 404);
    assert.equal((await server.request('PUT', `/api/v1/products/${pk}/auth`, { enrollOnFirstContact: true })).status, 200);
    const client = await certConnect(server, 'mqtts', { cert: fresh.pem, key: fresh.keyPem });
    await endClient(client);
    const d = await server.request('GET', `/api/v1/products/${pk}/devices/field-unit-01`);
    assert.equal(d.status, 200);
    await server.settle();
    const audit = await server.request('GET', `/api/v1/audit?productKey=${pk}&deviceName=field-unit-01&action=x509.enroll`);
    assert.equal(audit.body.items.length, 1);
    // deviceLimit 3: pre-made-01, field-unit-01, field-unit-02; the fourth is refused.
    const second = await signCert({ issuer: ca, ...deviceSubject(pk, 'field-unit-02') });
    await endClient(await certConnect(server, 'mqtts', { cert: second.pem, key: second.keyPem }));
    const third = await signCert({ issuer: ca, ...deviceSubject(pk, 'field-unit-03') });
    assert.equal((await certRefusal(server, 'mqtts', { cert: third.pem, key: third.keyPem })).code, 5);
    assert.equal((await server.request('GET', `/api/v1/products/${pk}/devices/field-unit-03`)).status, 404);
    // A foreign CA's certificate naming a new device does not enroll it.
    const stranger = await makeCa('stranger');
    const forged = await signCert({ issuer: stranger, ...deviceSubject(pk, 'field-unit-09') });
    assert.equal((await certRefusal(server, 'mqtts', { cert: forged.pem, key: forged.keyPem })).code, 5);
    assert.equal((await server.request('GET', `/api/v1/products/${pk}/devices/field-unit-09`)).status, 404);
  });
});
