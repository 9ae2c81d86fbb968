/**
 * `thingauth store copy` carries the X.509 data (issue 16): product modes, device CAs with
 * their keys, device certificates with keys and revocations; a second run writes nothing; a
 * server on the copy (another master key) logs the certificate device in.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { generateMasterKey, KeyringCipher } from '../../src/core/secret-cipher.js';
import { copyStore } from '../../src/services/store-copy.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { endClient } from '../helpers/mqtt.js';
import { makeTempDir, startTestServer, type TestServer } from '../helpers/server.js';
import { certConnect, certRefusal, x509Device, x509Product, type X509Device } from './x509-helpers.js';

describe('store copy of X.509 data', () => {
  let server: TestServer;
  let pk: string;
  let dev: X509Device;
  let revoked: X509Device;
  let dst: SqliteStore;
  const dstKey = generateMasterKey();
  const dstDir = makeTempDir('thingauth-x509-copy-');

  before(async () => {
    server = await startTestServer();
    pk = await x509Product(server);
    await server.request('PUT', `/api/v1/products/${pk}/auth`, { certValidityDays: 400 });
    dev = await x509Device(server, pk, 'copy-x509-01');
    revoked = await x509Device(server, pk, 'copy-x509-02');
    await server.request('POST', `/api/v1/products/${pk}/devices/${revoked.deviceName}/certificates/${revoked.serial}/revoke`, { reason: 'lost' });
    dst = new SqliteStore({ filename: path.join(dstDir, 'thingauth.db'), cipher: new KeyringCipher(dstKey), synchronous: 'NORMAL' });
    await dst.migrate();
  });
  after(async () => {
    await server.stop();
  });

  it('copies modes, CAs and certificates (keys and revocations included); a second run is identical', async () => {
    const src = server.running.ctx.store;
    const first = await copyStore(src, dst, { batchSize: 100, write: true });
    assert.deepEqual(first.mismatches, []);
    assert.equal(first.tables.product_auth.created, 1);
    assert.equal(first.tables.product_cas.created, 1);
    assert.equal(first.tables.device_certificates.created, 2);
    assert.deepEqual(await dst.getProductAuth(pk), await src.getProductAuth(pk));
    assert.deepEqual(await dst.getProductCa(pk), await src.getProductCa(pk));
    const d = (await dst.getDevice(pk, dev.deviceName))!;
    assert.deepEqual(await dst.listDeviceCertificates(d.iotId), await src.listDeviceCertificates(d.iotId));
    assert.equal((await dst.getDeviceCertificate(pk, revoked.serial))!.revocationReason, 'lost');
    const again = await copyStore(src, dst, { batchSize: 100, write: true });
    assert.deepEqual(again.mismatches, []);
    for (const t of ['product_auth', 'product_cas', 'device_certificates'] as const) {
      assert.equal(again.tables[t].created + again.tables[t].updated, 0, t);
      assert.equal(again.tables[t].source, again.tables[t].destination, t);
    }
    const verify = await copyStore(src, dst, { batchSize: 100, write: false });
    assert.equal(verify.mismatchCount, 0);
  });

  it('a server on the copy (another master key) logs the certificate device in and refuses the revoked one', async () => {
    await dst.close();
    const copyServer = await startTestServer({ masterKey: dstKey.toString('hex') }, { dataDir: dstDir });
    try {
      await endClient(await certConnect(copyServer, 'mqtts', { cert: dev.cert, key: dev.key }));
      assert.equal((await certRefusal(copyServer, 'mqtts', { cert: revoked.cert, key: revoked.key })).code, 5);
      // The copied CA key signs on the new server: a new device gets a certificate from the same CA.
      const fresh = await x509Device(copyServer, pk, 'copy-x509-03');
      assert.equal(fresh.ca, dev.ca);
    } finally {
      await copyServer.stop();
    }
  });
});
