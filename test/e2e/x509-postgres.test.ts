/**
 * X.509 on the PostgreSQL store (issue 16): the same end to end path as on SQLite — an x509
 * product, a device with its certificate, a mutual-TLS login with the identity push, a CSR, a
 * customer-CA enrollment, and revocation closing the live session — on a private PostgreSQL.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it, test } from 'node:test';
import { endClient, eventually, waitForClose } from '../helpers/mqtt.js';
import { startPrivatePostgres } from '../helpers/postgres.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { certConnect, certRefusal, deviceSubject, identityResponse, makeCa, signCert, x509Device, x509Product } from './x509-helpers.js';

const started = await startPrivatePostgres();

if ('skip' in started) {
  test('X.509 on PostgreSQL', { skip: started.skip }, () => undefined);
} else {
  const pg = started.server;
  after(() => pg.stop());

  describe('X.509 on PostgreSQL', () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer({ databaseUrl: await pg.createDatabase(`x509_${process.pid}`) });
    });
    after(async () => {
      await server.stop();
    });

    it('issues, logs in with the certificate, refuses the mode change, revokes (live session closed, login refused)', async () => {
      const pk = await x509Product(server);
      const d = await x509Device(server, pk, 'pg-x509-01');
      assert.equal((await server.request('PUT', `/api/v1/products/${pk}/auth`, { authMode: 'secret' })).status, 409);
      const client = await certConnect(server, 'mqtts', { cert: d.cert, key: d.key });
      assert.deepEqual(await identityResponse(client), { productKey: pk, deviceName: d.deviceName });
      const closed = waitForClose(client, 1_000);
      assert.equal((await server.request('POST', `/api/v1/products/${pk}/devices/${d.deviceName}/certificates/${d.serial}/revoke`, {})).status, 200);
      await closed;
      await endClient(client);
      assert.equal((await certRefusal(server, 'mqtts', { cert: d.cert, key: d.key })).code, 5);
    });

    it('a customer CA with proof of possession enrolls an unknown device at its first login', async () => {
      const pk = await x509Product(server);
      const ca = await makeCa('pg customer CA');
      const code = (await server.request('GET', `/api/v1/products/${pk}/x509/ca/registration-code`)).body.registrationCode;
      const proof = await signCert({ issuer: ca, subject: `CN=${code}` });
      assert.equal((await server.request('POST', `/api/v1/products/${pk}/x509/ca`, { certificate: ca.pem, verificationCertificate: proof.pem })).status, 201);
      assert.equal((await server.request('PUT', `/api/v1/products/${pk}/auth`, { enrollOnFirstContact: true })).status, 200);
      const leaf = await signCert({ issuer: ca, ...deviceSubject(pk, 'pg-field-01') });
      await endClient(await certConnect(server, 'mqtts', { cert: leaf.pem, key: leaf.keyPem }));
      const certs = await server.request('GET', `/api/v1/products/${pk}/devices/pg-field-01/certificates`);
      assert.equal(certs.body.items[0].source, 'enrolled');
    });
  });

  describe('X.509 logins during a PostgreSQL outage', () => {
    let server: TestServer;
    before(async () => {
      // A short cache lifetime: product, mode and CA entries have expired when the outage starts.
      server = await startTestServer({ databaseUrl: await pg.createDatabase(`x509_outage_${process.pid}`), cacheTtlSeconds: '1', loginFailThreshold: '0' });
    });
    after(async () => {
      await server.stop();
    });

    it('a device whose product CA and certificate were read before keeps logging in; a revoked one stays refused; an unseen one gets CONNACK 3; all back after', async () => {
      const pk = await x509Product(server);
      const known = await x509Device(server, pk, 'pg-outage-01');
      const revoked = await x509Device(server, pk, 'pg-outage-02');
      const unseen = await x509Device(server, pk, 'pg-outage-03');
      await endClient(await certConnect(server, 'mqtts', { cert: known.cert, key: known.key }));
      await endClient(await certConnect(server, 'mqtts', { cert: revoked.cert, key: revoked.key }));
      assert.equal((await server.request('POST', `/api/v1/products/${pk}/devices/${revoked.deviceName}/certificates/${revoked.serial}/revoke`, {})).status, 200);
      assert.equal((await certRefusal(server, 'mqtts', { cert: revoked.cert, key: revoked.key })).code, 5);
      await server.settle();
      await new Promise((r) => setTimeout(r, 1_100)); // past the 1 s cache lifetime
      pg.pause();
      let online: Awaited<ReturnType<typeof certConnect>> | undefined;
      try {
        online = await certConnect(server, 'mqtts', { cert: known.cert, key: known.key });
        assert.deepEqual(await identityResponse(online), { productKey: pk, deviceName: known.deviceName });
        assert.equal((await certRefusal(server, 'mqtts', { cert: revoked.cert, key: revoked.key })).code, 5, 'the revocation read before the outage holds');
        assert.equal((await certRefusal(server, 'mqtts', { cert: unseen.cert, key: unseen.key })).code, 3, 'never read: server unavailable');
      } finally {
        pg.start();
      }
      await endClient(online);
      await endClient(
        await eventually(async () => {
          try {
            return await certConnect(server, 'mqtts', { cert: unseen.cert, key: unseen.key });
          } catch {
            return undefined;
          }
        }, 15_000),
      );
      assert.equal((await certRefusal(server, 'mqtts', { cert: revoked.cert, key: revoked.key })).code, 5);
    });
  });
}
