/**
 * Store contract for keyset paging of a product's devices (the device list's ?cursor=): pages
 * in DeviceName order (byte order, the same in both adapters), strictly after the name given,
 * with the status and name-substring filters applied, never a row of another product.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Store } from '../../../src/store/store.js';
import type { DeviceKeysetFilter } from '../../../src/store/store.js';
import { namedProduct as product, T0 as at, withStore, type MakeStore } from '../fixtures.js';

async function walk(store: Store, pk: string, pageSize: number, filter?: DeviceKeysetFilter): Promise<string[][]> {
  const pages: string[][] = [];
  let after: string | null = null;
  for (;;) {
    const page = await store.listDevicesAfter(pk, after, pageSize, filter);
    if (page.length === 0) return pages;
    pages.push(page.map((d) => d.deviceName));
    after = page[page.length - 1]!.deviceName;
  }
}

export function deviceKeysetPagingContract(makeStore: MakeStore): void {
  describe('device keyset paging', () => {
    it('walks DeviceName order with status and name filters, no repeats, no skips', withStore(makeStore, async (store) => {
      await store.createProduct(product('a1Keyset001'));
      await store.createProduct(product('a1Keyset002'));
      // Created out of name order, with upper case, digits and punctuation (byte order: '-' < '0' < 'A' < '_' < 'a').
      const names = Array.from({ length: 57 }, (_, i) => `${['zz', 'Ab', 'a_', 'a-', '09'][i % 5]}dev${String((i * 37) % 57).padStart(3, '0')}`);
      const created = await store.createDevices('a1Keyset001', names.map((n, i) => ({ iotId: `iotKS${String(i).padStart(10, '0')}`, deviceName: n, deviceSecret: `Secret${String(i).padStart(26, '0')}` })), 1000, at);
      await store.createDevices('a1Keyset002', [{ iotId: 'iotKSother000001', deviceName: 'Abdev000x', deviceSecret: 'OtherSecret00000' }], 10, at);
      const sorted = [...names].sort((a, b) => (Buffer.from(a) < Buffer.from(b) ? -1 : 1));

      const pages = await walk(store, 'a1Keyset001', 10);
      assert.deepEqual(pages.map((p) => p.length), [10, 10, 10, 10, 10, 7]);
      assert.deepEqual(pages.flat(), sorted);
      // A page starts strictly after the name given, even a name that is not stored.
      assert.deepEqual((await store.listDevicesAfter('a1Keyset001', sorted[19]!, 3)).map((d) => d.deviceName), sorted.slice(20, 23));
      assert.deepEqual((await store.listDevicesAfter('a1Keyset001', `${sorted[19]!}~`, 2)).map((d) => d.deviceName), sorted.slice(20, 22));
      assert.deepEqual(await store.listDevicesAfter('a1Keyset001', sorted[sorted.length - 1]!, 10), []);

      // Status: disable some, activate some, put one online.
      const byName = new Map(created.map((d) => [d.deviceName, d]));
      const disabled = sorted.filter((_, i) => i % 7 === 0);
      for (const n of disabled) await store.updateDevice(byName.get(n)!.iotId, { enabled: false });
      const activated = sorted.filter((_, i) => i % 7 === 3);
      for (const n of activated) await store.updateDevice(byName.get(n)!.iotId, { activatedAt: at });
      const online = sorted.filter((_, i) => i % 7 === 5);
      for (const n of online) await store.markOnline(byName.get(n)!.iotId, at);

      assert.deepEqual((await walk(store, 'a1Keyset001', 3, { status: 'DISABLE' })).flat(), disabled);
      assert.deepEqual((await walk(store, 'a1Keyset001', 4, { status: 'OFFLINE' })).flat(), activated);
      assert.deepEqual((await walk(store, 'a1Keyset001', 2, { status: 'ONLINE' })).flat(), online);
      const unactive = sorted.filter((n) => !disabled.includes(n) && !activated.includes(n) && !online.includes(n));
      assert.deepEqual((await walk(store, 'a1Keyset001', 9, { status: 'UNACTIVE' })).flat(), unactive);

      // Name substring (literal: '_' and '-' are not wildcards), combined with status.
      assert.deepEqual((await walk(store, 'a1Keyset001', 5, { nameContains: 'a_' })).flat(), sorted.filter((n) => n.includes('a_')));
      assert.deepEqual((await walk(store, 'a1Keyset001', 5, { nameContains: 'Ab', status: 'DISABLE' })).flat(), disabled.filter((n) => n.includes('Ab')));
      assert.deepEqual(await store.listDevicesAfter('a1Keyset001', null, 10, { nameContains: 'nothing-like-this' }), []);
      assert.deepEqual(await store.listDevicesAfter('a1Missing000', null, 10, { status: 'ONLINE' }), []);
    }));
  });
}
