/**
 * Store contract for X.509 (issue 16): a product's auth mode (fixed once it has devices), its
 * device CA (first one stored wins, key sealed at rest), device certificates by serial,
 * revocation (now or at a later time), the CRL list and the expiring report.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StoredDeviceCertificate, StoredProductCa } from '../../../src/store/store.js';
import { makeDevice, makeProduct, rejectsWith, T0, T1, T2, withStore, type MakeStore, type StoreContractOptions } from '../fixtures.js';

const FAKE_KEY = '-----BEGIN PRIVATE KEY-----\nMIIContractKeyMaterial0123456789\n-----END PRIVATE KEY-----\n';

function ca(productKey: string, overrides: Partial<StoredProductCa> = {}): StoredProductCa {
  return { productKey, source: 'platform', certificate: '-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n', privateKey: FAKE_KEY, fingerprint: 'AA:BB', createdAt: T0, ...overrides };
}

function cert(d: { iotId: string; productKey: string; deviceName: string }, serial: string, overrides: Partial<StoredDeviceCertificate> = {}): StoredDeviceCertificate {
  return {
    serial,
    iotId: d.iotId,
    productKey: d.productKey,
    deviceName: d.deviceName,
    source: 'issued',
    certificate: `-----BEGIN CERTIFICATE-----\n${serial}\n-----END CERTIFICATE-----\n`,
    privateKey: FAKE_KEY.replace('0123456789', serial),
    fingerprint: serial.toUpperCase(),
    notBefore: T0,
    notAfter: '2030-01-01T00:00:00.000Z',
    createdAt: T0,
    revokedAt: null,
    revocationReason: null,
    ...overrides,
  };
}

export function x509Contract(makeStore: MakeStore, opts: StoreContractOptions = {}): void {
  describe('X.509 device certificates', () => {
    it('authMode defaults to secret, is set while the product has no device, then is fixed (CONFLICT, nothing written)', withStore(makeStore, async (store) => {
      const p = makeProduct();
      await store.createProduct(p);
      assert.deepEqual(await store.getProductAuth(p.productKey), { productKey: p.productKey, authMode: 'secret', enrollOnFirstContact: false, certValidityDays: null });
      assert.equal(await store.getProductAuth('a1NoSuchProduct'), undefined);
      await rejectsWith(store.setProductAuth('a1NoSuchProduct', { authMode: 'x509' }, T1), 'PRODUCT_NOT_FOUND');
      const set = await store.setProductAuth(p.productKey, { authMode: 'x509', certValidityDays: 30 }, T1);
      assert.deepEqual(set, { productKey: p.productKey, authMode: 'x509', enrollOnFirstContact: false, certValidityDays: 30 });
      await store.createDevices(p.productKey, [makeDevice('dev-0001')], 100, T1);
      const e = await rejectsWith(store.setProductAuth(p.productKey, { authMode: 'secret' }, T2), 'CONFLICT');
      assert.equal(e.details?.field, 'authMode');
      assert.equal((await store.getProductAuth(p.productKey))!.authMode, 'x509');
      // Other settings still change; the same mode again is no change.
      const again = await store.setProductAuth(p.productKey, { authMode: 'x509', enrollOnFirstContact: true, certValidityDays: null }, T2);
      assert.deepEqual(again, { productKey: p.productKey, authMode: 'x509', enrollOnFirstContact: true, certValidityDays: null });
    }));

    it('an x509 product keeps dynamic registration off and stays directly connected, decided in the writing transaction (CONFLICT, nothing written)', withStore(makeStore, async (store) => {
      const p = makeProduct();
      await store.createProduct(p);
      await store.setProductAuth(p.productKey, { authMode: 'x509' }, T1);
      const dyn = await rejectsWith(store.updateProduct(p.productKey, { dynamicRegistration: true, productName: 'renamed' }, T2), 'CONFLICT');
      assert.equal(dyn.details?.field, 'dynamicRegistration');
      const sub = await rejectsWith(store.updateProduct(p.productKey, { nodeType: 'SUB_DEVICE' }, T2), 'CONFLICT');
      assert.equal(sub.details?.field, 'nodeType');
      const now = (await store.getProduct(p.productKey))!;
      assert.equal(now.dynamicRegistration, false);
      assert.equal(now.nodeType, p.nodeType);
      assert.equal(now.productName, p.productName, 'the refused patch wrote nothing');
      assert.equal((await store.updateProduct(p.productKey, { productName: 'renamed' }, T2)).productName, 'renamed');
      // The other way round: a product with dynamic registration (or SUB_DEVICE) cannot choose x509.
      const q = makeProduct({ dynamicRegistration: true });
      await store.createProduct(q);
      const choose = await rejectsWith(store.setProductAuth(q.productKey, { authMode: 'x509' }, T1), 'CONFLICT');
      assert.equal(choose.details?.field, 'dynamicRegistration');
      assert.equal((await store.getProductAuth(q.productKey))!.authMode, 'secret');
      const r = makeProduct({ nodeType: 'SUB_DEVICE' });
      await store.createProduct(r);
      await rejectsWith(store.setProductAuth(r.productKey, { authMode: 'x509' }, T1), 'CONFLICT');
      assert.equal((await store.getProductAuth(r.productKey))!.authMode, 'secret');
    }));

    it('keeps the first CA stored for a product (racing servers agree) and reads its key back', withStore(makeStore, async (store) => {
      const p = makeProduct();
      await store.createProduct(p);
      assert.equal(await store.getProductCa(p.productKey), undefined);
      await rejectsWith(store.putProductCaIfAbsent(ca('a1NoSuchProduct')), 'PRODUCT_NOT_FOUND');
      const [a, b] = await Promise.all([store.putProductCaIfAbsent(ca(p.productKey)), store.putProductCaIfAbsent(ca(p.productKey, { fingerprint: 'CC:DD', privateKey: FAKE_KEY.replace('Contract', 'Other') }))]);
      assert.deepEqual(a, b);
      assert.deepEqual(await store.getProductCa(p.productKey), a);
      const customer = makeProduct();
      await store.createProduct(customer);
      const c = await store.putProductCaIfAbsent(ca(customer.productKey, { source: 'customer', privateKey: null }));
      assert.equal(c.privateKey, null);
      assert.equal(c.source, 'customer');
    }));

    it('stores certificates by serial, refuses a taken serial or an unknown device, lists a device\'s newest first', withStore(makeStore, async (store) => {
      const p = makeProduct();
      await store.createProduct(p);
      const [d] = await store.createDevices(p.productKey, [makeDevice('dev-0001')], 100, T0);
      const first = cert(d!, 'a1');
      await store.addDeviceCertificate(first);
      await store.addDeviceCertificate(cert(d!, 'b2', { createdAt: T1, source: 'csr', privateKey: null }));
      await rejectsWith(store.addDeviceCertificate(cert(d!, 'a1')), 'CONFLICT');
      await rejectsWith(store.addDeviceCertificate(cert({ ...d!, iotId: 'iotNoSuchDevice' }, 'c3')), 'DEVICE_NOT_FOUND');
      await rejectsWith(store.addDeviceCertificate(cert({ ...d!, deviceName: 'other-name' }, 'c4')), 'DEVICE_NOT_FOUND');
      // The same serial from another product's CA is another certificate.
      const q = makeProduct();
      await store.createProduct(q);
      const [e] = await store.createDevices(q.productKey, [makeDevice('dev-0001')], 100, T0);
      await store.addDeviceCertificate(cert(e!, 'a1'));
      assert.equal((await store.getDeviceCertificate(q.productKey, 'a1'))!.iotId, e!.iotId);
      assert.deepEqual(await store.getDeviceCertificate(p.productKey, 'a1'), first);
      assert.equal(await store.getDeviceCertificate(p.productKey, 'c3'), undefined);
      assert.deepEqual((await store.listDeviceCertificates(d!.iotId)).map((c) => [c.serial, c.privateKey === null]), [['b2', true], ['a1', false]]);
      // Deleting the device deletes its certificates.
      await store.deleteDevice(d!.iotId);
      assert.equal(await store.getDeviceCertificate(p.productKey, 'a1'), undefined);
    }));

    it('revokes now or at a later time; an earlier revocation is never postponed; CRL and expiring lists follow', withStore(makeStore, async (store) => {
      const p = makeProduct();
      await store.createProduct(p);
      const [d] = await store.createDevices(p.productKey, [makeDevice('dev-0001')], 100, T0);
      await store.addDeviceCertificate(cert(d!, '01', { notAfter: '2024-02-01T00:00:00.000Z' }));
      await store.addDeviceCertificate(cert(d!, '02', { notAfter: '2024-01-15T00:00:00.000Z' }));
      await store.addDeviceCertificate(cert(d!, '03', { notAfter: '2030-01-01T00:00:00.000Z' }));
      assert.equal(await store.revokeDeviceCertificate(p.productKey, 'ff', T1, 'x'), undefined);
      const r = await store.revokeDeviceCertificate(p.productKey, '01', T1, 'key compromise');
      assert.equal(r!.revokedAt, T1);
      assert.equal(r!.revocationReason, 'key compromise');
      // A later time does not postpone it.
      assert.equal((await store.revokeDeviceCertificate(p.productKey, '01', T2, 'superseded'))!.revokedAt, T1);
      // A scheduled revocation (rotation) can be brought forward.
      await store.revokeDeviceCertificate(p.productKey, '02', T2, 'superseded');
      assert.equal((await store.revokeDeviceCertificate(p.productKey, '02', T1, 'now'))!.revokedAt, T1);
      await store.revokeDeviceCertificate(p.productKey, '03', '2029-01-01T00:00:00.000Z', 'superseded');
      assert.deepEqual((await store.listRevokedCertificates(p.productKey, T2)).map((x) => x.serial), ['01', '02']);
      assert.deepEqual(await store.listRevokedCertificates(p.productKey, T0), []);
      // Revocations after a time, every product (a shared database may hold others): the scheduled end of 03 after T2.
      const mine = async (after: string) => (await store.listCertificatesRevokedAfter(after, 10_000)).filter((c) => c.productKey === p.productKey);
      assert.deepEqual((await mine(T2)).map((c) => c.serial), ['03']);
      assert.deepEqual((await mine(T0)).map((c) => c.serial).sort(), ['01', '02', '03']);
      assert.ok((await mine(T0)).every((c) => c.privateKey === null && c.revokedAt !== null));
      // Expiring before 2024-03: revoked ones left out (as of T2); 03 is scheduled, still live.
      assert.deepEqual((await store.listExpiringCertificates('2024-03-01T00:00:00.000Z', T2, 10)).filter((c) => c.productKey === p.productKey).map((c) => c.serial), []);
      assert.deepEqual((await store.listExpiringCertificates('2031-01-01T00:00:00.000Z', T2, 10, p.productKey)).map((c) => c.serial), ['03']);
      assert.deepEqual((await store.listExpiringCertificates('2024-03-01T00:00:00.000Z', T0, 10, p.productKey)).map((c) => c.serial), ['02', '01']);
      assert.deepEqual((await store.listExpiringCertificates('2024-03-01T00:00:00.000Z', T0, 1, p.productKey)).map((c) => c.serial), ['02']);
      // A report: no keys.
      assert.ok((await store.listExpiringCertificates('2031-01-01T00:00:00.000Z', T0, 10, p.productKey)).every((c) => c.privateKey === null));
      // The count (every product) follows the same rule; other products' rows may exist on a shared database.
      const base = await store.countExpiringCertificates('2024-03-01T00:00:00.000Z', T2);
      await store.addDeviceCertificate(cert(d!, '04', { notAfter: '2024-02-15T00:00:00.000Z' }));
      assert.equal(await store.countExpiringCertificates('2024-03-01T00:00:00.000Z', T2), base + 1);
      await store.revokeDeviceCertificate(p.productKey, '04', T1, 'x');
      assert.equal(await store.countExpiringCertificates('2024-03-01T00:00:00.000Z', T2), base);
    }));

    it('keeps CA and device private keys encrypted at rest', withStore(makeStore, async (store) => {
      if (!opts.rawContents) return;
      const p = makeProduct();
      await store.createProduct(p);
      const [d] = await store.createDevices(p.productKey, [makeDevice('dev-0001')], 100, T0);
      await store.putProductCaIfAbsent(ca(p.productKey, { privateKey: FAKE_KEY.replace('Contract', 'CaKeyPlain') }));
      await store.addDeviceCertificate(cert(d!, 'abcdef'));
      const raw = await opts.rawContents(store);
      assert.ok(!raw.includes('CaKeyPlain'), 'CA key stored in plaintext');
      assert.ok(!raw.includes('MIIContractKeyMaterialabcdef'), 'device key stored in plaintext');
      assert.ok(raw.includes('-----BEGIN CERTIFICATE-----'), 'certificates are stored as they are');
      // Key rotation reaches the new columns.
      assert.equal(await store.countSecretsNotUnderCurrentKey(), 0);
    }));
  });
}
