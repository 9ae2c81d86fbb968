/**
 * Store contract for setDeviceTokenIfAbsent (pre-registration-free credential issuance).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Product } from '../../../src/core/records.js';
import { namedProduct, T0 as at, withStore, type MakeStore } from '../fixtures.js';

function product(productKey: string): Product {
  return namedProduct(productKey, { dynamicRegistration: true, preRegistrationFree: true });
}

export function setDeviceTokenIfAbsentContract(makeStore: MakeStore): void {
  describe('setDeviceTokenIfAbsent', () => {
    it('sets the credential when absent and keeps the first one afterwards', withStore(makeStore, async (store) => {
      await store.createProduct(product('a1Contract1'));
      await store.createDevices('a1Contract1', [{ iotId: 'iotContract000001', deviceName: 'dev-c1', deviceSecret: 'DeviceSecret0000000000000000001' }], 10, at);
      const first = await store.setDeviceTokenIfAbsent('iotContract000001', 'dev-c1.AAAA', 'TokenAAAAAAAAAAAAAAAA');
      assert.equal(first?.clientId, 'dev-c1.AAAA');
      assert.equal(first?.deviceToken, 'TokenAAAAAAAAAAAAAAAA');
      const second = await store.setDeviceTokenIfAbsent('iotContract000001', 'dev-c1.BBBB', 'TokenBBBBBBBBBBBBBBBB');
      assert.equal(second?.clientId, 'dev-c1.AAAA');
      assert.equal(second?.deviceToken, 'TokenAAAAAAAAAAAAAAAA');
      const read = await store.getDevice('a1Contract1', 'dev-c1');
      assert.equal(read?.deviceToken, 'TokenAAAAAAAAAAAAAAAA');
      // After a reset the device has no credential, so a new one can be issued.
      await store.resetDevice('iotContract000001');
      const third = await store.setDeviceTokenIfAbsent('iotContract000001', 'dev-c1.CCCC', 'TokenCCCCCCCCCCCCCCCC');
      assert.equal(third?.clientId, 'dev-c1.CCCC');
      assert.equal(third?.deviceToken, 'TokenCCCCCCCCCCCCCCCC');
    }));

    it('returns undefined for an unknown device', withStore(makeStore, async (store) => {
      assert.equal(await store.setDeviceTokenIfAbsent('iotNoSuchDevice01', 'x', 'y'), undefined);
    }));

    it('racing callers all see the same credential', withStore(makeStore, async (store) => {
      await store.createProduct(product('a1Contract2'));
      await store.createDevices('a1Contract2', [{ iotId: 'iotContract000002', deviceName: 'dev-c2', deviceSecret: 'DeviceSecret0000000000000000002' }], 10, at);
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => store.setDeviceTokenIfAbsent('iotContract000002', `dev-c2.${i}`, `Token${i}xxxxxxxxxxxxxxxx`)),
      );
      const distinct = new Set(results.map((d) => `${d?.clientId}/${d?.deviceToken}`));
      assert.equal(distinct.size, 1);
    }));
  });
}
