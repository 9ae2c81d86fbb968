/**
 * Store contract for markOnlineMany (a gateway's batch login of sub-devices).
 * `markOnlineManyContract` takes a store factory so every adapter runs the same cases.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { Product } from '../../src/core/records.js';
import { deviceStatus } from '../../src/core/records.js';
import { generateMasterKey, KeyringCipher } from '../../src/core/secret-cipher.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { Store } from '../../src/store/store.js';

const created = '2024-01-01T00:00:00.000Z';

function product(productKey: string): Product {
  return {
    productKey,
    productName: 'contract product',
    productSecret: 'ContractSecret01',
    nodeType: 'SUB_DEVICE',
    dynamicRegistration: false,
    preRegistrationFree: false,
    requireTls: false,
    replayProtection: false,
    deviceLimit: null,
    description: '',
    createdAt: created,
    updatedAt: created,
  };
}

export function markOnlineManyContract(name: string, makeStore: () => Promise<Store>) {
  describe(`${name}: markOnlineMany`, () => {
    it('marks every device online, activates only the never-activated ones, ignores unknown ids', async () => {
      const store = await makeStore();
      try {
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
      } finally {
        await store.close();
      }
    });
  });
}

markOnlineManyContract('sqlite', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thingauth-contract-'));
  const store = new SqliteStore({ filename: path.join(dir, 'db.sqlite'), cipher: new KeyringCipher(generateMasterKey()), synchronous: 'NORMAL' });
  await store.migrate();
  return store;
});
