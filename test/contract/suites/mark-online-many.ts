/**
 * Store contract for markOnlineMany (a gateway's batch login of sub-devices).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deviceStatus, type Product } from '../../../src/core/records.js';
import { namedProduct, T0 as created, withStore, type MakeStore } from '../fixtures.js';

function product(productKey: string): Product {
  return namedProduct(productKey, { nodeType: 'SUB_DEVICE' });
}

export function markOnlineManyContract(makeStore: MakeStore): void {
  describe('markOnlineMany', () => {
    it('marks every device online, activates only the never-activated ones, ignores unknown ids', withStore(makeStore, async (store) => {
      await store.createProduct(product('a1ContractM'));
      await store.createDevices(
        'a1ContractM',
        [
          { iotId: 'iotContractMany01', deviceName: 'sub-m1', deviceSecret: 'DeviceSecret0000000000000000001' },
          { iotId: 'iotContractMany02', deviceName: 'sub-m2', deviceSecret: 'DeviceSecret0000000000000000002' },
          { iotId: 'iotContractMany03', deviceName: 'sub-m3', deviceSecret: 'DeviceSecret0000000000000000003' },
        ],
        10,
        created,
      );
      await store.markOnline('iotContractMany02', '2024-01-02T00:00:00.000Z');
      await store.markOffline(['iotContractMany02'], '2024-01-02T00:00:01.000Z');

      const at = '2024-01-03T00:00:00.000Z';
      const activated = await store.markOnlineMany(['iotContractMany01', 'iotContractMany02', 'iotNoSuchDevice01'], at);
      assert.deepEqual(activated, ['iotContractMany01']);

      const d1 = (await store.getDeviceByIotId('iotContractMany01'))!;
      assert.equal(deviceStatus(d1), 'ONLINE');
      assert.equal(d1.activatedAt, at);
      assert.equal(d1.lastOnlineAt, at);
      const d2 = (await store.getDeviceByIotId('iotContractMany02'))!;
      assert.equal(deviceStatus(d2), 'ONLINE');
      assert.equal(d2.activatedAt, '2024-01-02T00:00:00.000Z');
      const d3 = (await store.getDeviceByIotId('iotContractMany03'))!;
      assert.equal(deviceStatus(d3), 'UNACTIVE');

      assert.deepEqual(await store.markOnlineMany([], at), []);
    }));
  });
}
