/**
 * Store contract for rotateDeviceSecret (DeviceSecret rotation with a grace period) and for
 * what ends a grace (setting the secret outright, an import overwrite), plus key rotation
 * covering the previous secret.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Product } from '../../../src/core/records.js';
import { RotatingCipher } from '../../../src/core/rotating-cipher.js';
import { generateMasterKey } from '../../../src/core/secret-cipher.js';
import { namedProduct, T0 as at, withStore, type MakeStore, type StoreContractOptions } from '../fixtures.js';

const until1 = '2024-01-08T00:00:00.000Z';
const until2 = '2024-01-09T00:00:00.000Z';

function product(productKey: string): Product {
  return namedProduct(productKey, { productSecret: 'ContractProductSecret1' });
}

export function rotateDeviceSecretContract(makeStore: MakeStore, opts: StoreContractOptions): void {
  const rawContents = opts.rawContents;
  describe('rotateDeviceSecret', () => {
    it('a new device has no previous secret', withStore(makeStore, async (store) => {
      await store.createProduct(product('a1RotA'));
      const [d] = await store.createDevices('a1RotA', [{ iotId: 'iotRotA0001', deviceName: 'rot-a', deviceSecret: 'FirstSecret0001' }], 10, at);
      assert.equal(d!.previousDeviceSecret, null);
      assert.equal(d!.previousSecretExpiresAt, null);
    }, new RotatingCipher([generateMasterKey()])));

    it('moves the current secret to previous with its expiry, sets the new one, keeps every other field', withStore(makeStore, async (store) => {
      await store.createProduct(product('a1RotB'));
      const [d] = await store.createDevices('a1RotB', [{ iotId: 'iotRotB0001', deviceName: 'rot-b', deviceSecret: 'FirstSecret0001', nickname: 'kept' }], 10, at);
      const rotated = await store.rotateDeviceSecret('iotRotB0001', 'SecondSecret002', until1);
      assert.deepEqual(rotated, { ...d!, deviceSecret: 'SecondSecret002', previousDeviceSecret: 'FirstSecret0001', previousSecretExpiresAt: until1 });
      assert.deepEqual(await store.getDevice('a1RotB', 'rot-b'), rotated, 'reads back as returned');
      assert.deepEqual(await store.getDeviceByIotId('iotRotB0001'), rotated);

      // A second rotation during the grace: the then-current secret becomes the previous one,
      // the first secret is gone.
      const again = await store.rotateDeviceSecret('iotRotB0001', 'ThirdSecret0003', until2);
      assert.equal(again!.deviceSecret, 'ThirdSecret0003');
      assert.equal(again!.previousDeviceSecret, 'SecondSecret002');
      assert.equal(again!.previousSecretExpiresAt, until2);

      // No grace: nothing previous is kept.
      const hard = await store.rotateDeviceSecret('iotRotB0001', 'FourthSecret004', null);
      assert.equal(hard!.deviceSecret, 'FourthSecret004');
      assert.equal(hard!.previousDeviceSecret, null);
      assert.equal(hard!.previousSecretExpiresAt, null);
      assert.deepEqual(await store.getDevice('a1RotB', 'rot-b'), hard);
    }, new RotatingCipher([generateMasterKey()])));

    it('answers undefined for an unknown device and writes nothing', withStore(makeStore, async (store) => {
      await store.createProduct(product('a1RotC'));
      await store.createDevices('a1RotC', [{ iotId: 'iotRotC0001', deviceName: 'rot-c', deviceSecret: 'FirstSecret0001' }], 10, at);
      assert.equal(await store.rotateDeviceSecret('iotNoSuchDevice', 'SecondSecret002', until1), undefined);
      const d = await store.getDevice('a1RotC', 'rot-c');
      assert.equal(d!.deviceSecret, 'FirstSecret0001');
      assert.equal(d!.previousDeviceSecret, null);
    }, new RotatingCipher([generateMasterKey()])));

    it('setting the secret outright (updateDevice, import overwrite) ends the grace; other updates keep it', withStore(makeStore, async (store) => {
      await store.createProduct(product('a1RotD'));
      await store.createDevices(
        'a1RotD',
        [
          { iotId: 'iotRotD0001', deviceName: 'rot-d1', deviceSecret: 'FirstSecret0001' },
          { iotId: 'iotRotD0002', deviceName: 'rot-d2', deviceSecret: 'FirstSecret0002' },
        ],
        10,
        at,
      );
      await store.rotateDeviceSecret('iotRotD0001', 'SecondSecret001', until1);
      await store.rotateDeviceSecret('iotRotD0002', 'SecondSecret002', until1);
      const renamed = await store.updateDevice('iotRotD0001', { nickname: 'renamed', lastAuthError: 'x' });
      assert.equal(renamed!.previousDeviceSecret, 'FirstSecret0001', 'an unrelated update keeps the previous secret');
      const set = await store.updateDevice('iotRotD0001', { deviceSecret: 'OutrightSecret1' });
      assert.equal(set!.deviceSecret, 'OutrightSecret1');
      assert.equal(set!.previousDeviceSecret, null);
      assert.equal(set!.previousSecretExpiresAt, null);

      const imported = await store.importDevices('a1RotD', [{ iotId: 'iotRotD0002', deviceName: 'rot-d2', deviceSecret: 'ImportedSecret2' }], 10, true, at);
      assert.equal(imported.overwritten, 1);
      const d2 = await store.getDevice('a1RotD', 'rot-d2');
      assert.equal(d2!.deviceSecret, 'ImportedSecret2');
      assert.equal(d2!.previousDeviceSecret, null);
      assert.equal(d2!.previousSecretExpiresAt, null);
    }, new RotatingCipher([generateMasterKey()])));

    it('keeps the previous secret encrypted at rest, and key rotation re-encrypts it', async () => {
      const k1 = generateMasterKey();
      const cipher = new RotatingCipher([k1]);
      const store = await makeStore(cipher);
      try {
        await store.createProduct(product('a1RotE'));
        await store.createDevices('a1RotE', [{ iotId: 'iotRotE0001', deviceName: 'rot-e', deviceSecret: 'PlainOldSecretE1' }], 10, at);
        await store.rotateDeviceSecret('iotRotE0001', 'PlainNewSecretE2', until1);
        if (rawContents) {
          const raw = await rawContents(store);
          assert.ok(raw.includes('iotRotE0001'), 'the raw dump holds the row');
          assert.ok(!raw.includes('PlainOldSecretE1') && !raw.includes('PlainNewSecretE2'), 'no plaintext secret in the rows');
        }
        const before = await store.countSecretsNotUnderCurrentKey();
        assert.equal(before, 0);
        const k2 = generateMasterKey();
        cipher.use([k2, k1]);
        // product secret + current + previous device secret
        assert.equal(await store.countSecretsNotUnderCurrentKey(), 3);
        let cursor: string | undefined;
        let rewritten = 0;
        do {
          const r = await store.reencryptSecrets(cursor, 100);
          rewritten += r.rewritten;
          cursor = r.cursor;
        } while (cursor !== undefined);
        assert.equal(rewritten, 3);
        assert.equal(await store.countSecretsNotUnderCurrentKey(), 0);
        cipher.use([k2]);
        const d = await store.getDevice('a1RotE', 'rot-e');
        assert.equal(d!.deviceSecret, 'PlainNewSecretE2');
        assert.equal(d!.previousDeviceSecret, 'PlainOldSecretE1', 'the previous secret reads back under the new key alone');
      } finally {
        await store.close();
      }
    });
  });
}
