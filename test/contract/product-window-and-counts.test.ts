/**
 * Store contract for Product.timestampWindowSeconds (the replay window, absent = off) and
 * productCountMismatches (the device count kept for limits agrees with the rows).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { generateMasterKey, KeyringCipher } from '../../src/core/secret-cipher.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { Store } from '../../src/store/store.js';
import { makeDevice, makeProduct } from './store-contract.js';

const at = '2024-01-01T00:00:00.000Z';

export function productWindowAndCountsContract(name: string, makeStore: () => Promise<Store>) {
  describe(`${name}: timestampWindowSeconds and productCountMismatches`, () => {
    it('timestampWindowSeconds round-trips on create and update; 0 switches it off (absent again)', async () => {
      const store = await makeStore();
      try {
        const withWindow = makeProduct({ timestampWindowSeconds: 300 });
        const without = makeProduct();
        await store.createProduct(withWindow);
        await store.createProduct(without);
        assert.deepEqual(await store.getProduct(withWindow.productKey), withWindow);
        assert.deepEqual(await store.getProduct(without.productKey), without);
        assert.equal('timestampWindowSeconds' in (await store.getProduct(without.productKey))!, false);

        const set = await store.updateProduct(without.productKey, { timestampWindowSeconds: 60 }, at);
        assert.equal(set.timestampWindowSeconds, 60);
        const off = await store.updateProduct(withWindow.productKey, { timestampWindowSeconds: 0 }, at);
        assert.equal(off.timestampWindowSeconds, undefined);
        assert.equal((await store.getProduct(withWindow.productKey))!.timestampWindowSeconds, undefined);
        // Other settings are untouched by the window.
        assert.equal(off.replayProtection, withWindow.replayProtection);
      } finally {
        await store.close();
      }
    });

    it('productCountMismatches is empty through creates, imports, a refused batch and deletes', async () => {
      const store = await makeStore();
      try {
        const p = makeProduct();
        const q = makeProduct();
        await store.createProduct(p);
        await store.createProduct(q);
        assert.deepEqual(await store.productCountMismatches(), []);
        const created = await store.createDevices(p.productKey, [makeDevice('dev-a'), makeDevice('dev-b')], 100, at);
        await store.importDevices(q.productKey, [{ deviceName: 'imp-1', deviceSecret: 'S'.repeat(32), iotId: 'iotImp1' + Date.now() }], 100, false, at);
        // All or nothing: a batch with a taken name writes nothing, count included.
        await assert.rejects(store.createDevices(p.productKey, [makeDevice('dev-c'), makeDevice('dev-a')], 100, at), { kind: 'DEVICE_NAME_TAKEN' });
        await assert.rejects(store.createDevices(p.productKey, [makeDevice('dev-d'), makeDevice('dev-e')], 3, at), { kind: 'DEVICE_LIMIT_REACHED' });
        await store.deleteDevice(created[0]!.iotId);
        assert.deepEqual(await store.productCountMismatches(), []);
        assert.equal(await store.countDevices(p.productKey), 1);
        assert.equal(await store.countDevices(q.productKey), 1);
      } finally {
        await store.close();
      }
    });

    it('productCountMismatches reports a count that disagrees with the rows (the check can fail)', async () => {
      const store = await makeStore();
      try {
        const p = makeProduct();
        await store.createProduct(p);
        await store.createDevices(p.productKey, [makeDevice('dev-x')], 100, at);
        if (!(store instanceof SqliteStore)) return; // corrupting needs adapter access
        store.db.prepare('UPDATE product_counts SET devices = 7 WHERE product_key = ?').run(p.productKey);
        assert.deepEqual(await store.productCountMismatches(), [{ productKey: p.productKey, counted: 7, actual: 1 }]);
      } finally {
        await store.close();
      }
    });
  });
}

productWindowAndCountsContract('sqlite', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thingauth-contract-'));
  const store = new SqliteStore({ filename: path.join(dir, 'db.sqlite'), cipher: new KeyringCipher(generateMasterKey()), synchronous: 'NORMAL' });
  await store.migrate();
  return store;
});
