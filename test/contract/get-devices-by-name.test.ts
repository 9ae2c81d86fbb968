/**
 * Store contract for getDevicesByName (an import's dry run and overwrite look up a whole
 * chunk of names at once). `getDevicesByNameContract` takes a store factory so every adapter runs it.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { Product } from '../../src/core/records.js';
import { generateMasterKey, KeyringCipher } from '../../src/core/secret-cipher.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { Store } from '../../src/store/store.js';

const at = '2024-01-01T00:00:00.000Z';

function product(productKey: string): Product {
  return {
    productKey,
    productName: 'contract product',
    productSecret: 'ContractSecret01',
    nodeType: 'DEVICE',
    dynamicRegistration: false,
    preRegistrationFree: false,
    requireTls: false,
    replayProtection: false,
    deviceLimit: null,
    description: '',
    createdAt: at,
    updatedAt: at,
  };
}

export function getDevicesByNameContract(name: string, makeStore: () => Promise<Store>) {
  describe(`${name}: getDevicesByName`, () => {
    it('returns exactly the existing devices of the product among the names, with their secrets', async () => {
      const store = await makeStore();
      try {
        await store.createProduct(product('a1Contract8'));
        await store.createProduct(product('a1Contract9'));
        const names = Array.from({ length: 1200 }, (_, i) => `dev-${String(i).padStart(4, '0')}`);
        await store.createDevices('a1Contract8', names.map((n, i) => ({ iotId: `iotC8${String(i).padStart(10, '0')}`, deviceName: n, deviceSecret: `Secret${String(i).padStart(26, '0')}` })), 5000, at);
        await store.createDevices('a1Contract9', [{ iotId: 'iotC9000000000001', deviceName: 'other-product', deviceSecret: 'OtherSecret00000' }], 10, at);

        const asked = [...names.filter((_, i) => i % 2 === 0), 'missing-1', 'other-product', 'dev-0000', "quote'name", 'a"b'];
        const found = await store.getDevicesByName('a1Contract8', asked);
        assert.deepEqual(found.map((d) => d.deviceName).sort(), names.filter((_, i) => i % 2 === 0));
        const d = found.find((x) => x.deviceName === 'dev-0010')!;
        assert.deepEqual([d.productKey, d.iotId, d.deviceSecret], ['a1Contract8', 'iotC80000000010', `Secret${'10'.padStart(26, '0')}`]);
        assert.deepEqual(await store.getDevicesByName('a1Contract8', []), []);
        assert.deepEqual(await store.getDevicesByName('a1NoSuchPK', ['dev-0000']), []);
      } finally {
        await store.close();
      }
    });
  });
}

getDevicesByNameContract('sqlite', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thingauth-contract-'));
  const store = new SqliteStore({ filename: path.join(dir, 'db.sqlite'), cipher: new KeyringCipher(generateMasterKey()), synchronous: 'NORMAL' });
  await store.migrate();
  return store;
});
