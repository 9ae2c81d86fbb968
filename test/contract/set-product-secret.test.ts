/**
 * Store contract for setProductSecret (migration: an import with --overwrite replaces a
 * product's secret). `setProductSecretContract` takes a store factory so every adapter runs it.
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
    productSecret: 'OldProductSecret',
    nodeType: 'GATEWAY',
    dynamicRegistration: true,
    preRegistrationFree: false,
    requireTls: false,
    replayProtection: false,
    deviceLimit: 42,
    description: 'kept',
    createdAt: at,
    updatedAt: at,
  };
}

export function setProductSecretContract(name: string, makeStore: () => Promise<Store>) {
  describe(`${name}: setProductSecret`, () => {
    it('replaces the secret and updatedAt, keeps every other field, and the new secret reads back', async () => {
      const store = await makeStore();
      try {
        await store.createProduct(product('a1Contract7'));
        const later = '2024-02-02T00:00:00.000Z';
        const updated = await store.setProductSecret('a1Contract7', 'NewProductSecret99', later);
        assert.equal(updated.productSecret, 'NewProductSecret99');
        assert.equal(updated.updatedAt, later);
        const read = await store.getProduct('a1Contract7');
        assert.deepEqual(read, { ...product('a1Contract7'), productSecret: 'NewProductSecret99', updatedAt: later });
      } finally {
        await store.close();
      }
    });

    it('refuses an unknown product with PRODUCT_NOT_FOUND', async () => {
      const store = await makeStore();
      try {
        await assert.rejects(store.setProductSecret('a1NoSuchPK', 'NewProductSecret99', at), { kind: 'PRODUCT_NOT_FOUND' });
      } finally {
        await store.close();
      }
    });
  });
}

setProductSecretContract('sqlite', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thingauth-contract-'));
  const store = new SqliteStore({ filename: path.join(dir, 'db.sqlite'), cipher: new KeyringCipher(generateMasterKey()), synchronous: 'NORMAL' });
  await store.migrate();
  return store;
});
