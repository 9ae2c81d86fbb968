/**
 * Store contract for Product.timestampWindowSeconds (the replay window, absent = off) and
 * productCountMismatches (the device count kept for limits agrees with the rows).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { makeDevice, makeProduct, T0 as at, withStore, type MakeStore, type StoreContractOptions } from '../fixtures.js';

export function productWindowAndCountsContract(makeStore: MakeStore, opts: StoreContractOptions): void {
  describe('timestampWindowSeconds and productCountMismatches', () => {
    it('timestampWindowSeconds round-trips on create and update; 0 switches it off (absent again)', withStore(makeStore, async (store) => {
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
    }));

    it('productCountMismatches is empty through creates, imports, a refused batch and deletes', withStore(makeStore, async (store) => {
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
    }));

    // Corrupting the count needs the adapter's help; without the hook the case shows as skipped.
    const overwriteDeviceCount = opts.overwriteDeviceCount;
    const noHook = overwriteDeviceCount ? false : 'the adapter gives no overwriteDeviceCount hook';
    it('productCountMismatches reports a count that disagrees with the rows (the check can fail)', { skip: noHook }, withStore(makeStore, async (store) => {
      const p = makeProduct();
      await store.createProduct(p);
      await store.createDevices(p.productKey, [makeDevice('dev-x')], 100, at);
      await overwriteDeviceCount!(store, p.productKey, 7);
      assert.deepEqual(await store.productCountMismatches(), [{ productKey: p.productKey, counted: 7, actual: 1 }]);
    }));
  });
}
