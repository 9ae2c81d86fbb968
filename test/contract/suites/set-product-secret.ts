/**
 * Store contract for setProductSecret (migration: an import with --overwrite replaces a
 * product's secret).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Product } from '../../../src/core/records.js';
import { namedProduct, T0 as at, withStore, type MakeStore } from '../fixtures.js';

function product(productKey: string): Product {
  return namedProduct(productKey, { productSecret: 'OldProductSecret', nodeType: 'GATEWAY', dynamicRegistration: true, deviceLimit: 42, description: 'kept' });
}

export function setProductSecretContract(makeStore: MakeStore): void {
  describe('setProductSecret', () => {
    it('replaces the secret and updatedAt, keeps every other field, and the new secret reads back', withStore(makeStore, async (store) => {
      await store.createProduct(product('a1Contract7'));
      const later = '2024-02-02T00:00:00.000Z';
      const updated = await store.setProductSecret('a1Contract7', 'NewProductSecret99', later);
      assert.equal(updated.productSecret, 'NewProductSecret99');
      assert.equal(updated.updatedAt, later);
      const read = await store.getProduct('a1Contract7');
      assert.deepEqual(read, { ...product('a1Contract7'), productSecret: 'NewProductSecret99', updatedAt: later });
    }));

    it('refuses an unknown product with PRODUCT_NOT_FOUND', withStore(makeStore, async (store) => {
      await assert.rejects(store.setProductSecret('a1NoSuchPK', 'NewProductSecret99', at), { kind: 'PRODUCT_NOT_FOUND' });
    }));
  });
}
