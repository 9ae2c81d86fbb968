/**
 * Store contract for getDevicesByName (an import's dry run and overwrite look up a whole
 * chunk of names at once).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { namedProduct as product, T0 as at, withStore, type MakeStore } from '../fixtures.js';

export function getDevicesByNameContract(makeStore: MakeStore): void {
  describe('getDevicesByName', () => {
    it('returns exactly the existing devices of the product among the names, with their secrets', withStore(makeStore, async (store) => {
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
    }));
  });
}
