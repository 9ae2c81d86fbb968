/**
 * Store contract for setDeviceTokenIfAbsent (pre-registration-free credential issuance).
 * `setDeviceTokenIfAbsentContract` takes a store factory so every adapter runs the same cases.
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
    dynamicRegistration: true,
    preRegistrationFree: true,
    requireTls: false,
    replayProtection: false,
    deviceLimit: null,
    description: '',
    createdAt: at,
    updatedAt: at,
  };
}

export function setDeviceTokenIfAbsentContract(name: string, makeStore: () => Promise<Store>) {
  describe(`${name}: setDeviceTokenIfAbsent`, () => {
    it('sets the credential when absent and keeps the first one afterwards', async () => {
      const store = await makeStore();
      try {
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
      } finally {
        await store.close();
      }
    });

    it('returns undefined for an unknown device', async () => {
      const store = await makeStore();
      try {
        assert.equal(await store.setDeviceTokenIfAbsent('iotNoSuchDevice01', 'x', 'y'), undefined);
      } finally {
        await store.close();
      }
    });

    it('racing callers all see the same credential', async () => {
      const store = await makeStore();
      try {
        await store.createProduct(product('a1Contract2'));
        await store.createDevices('a1Contract2', [{ iotId: 'iotContract000002', deviceName: 'dev-c2', deviceSecret: 'DeviceSecret0000000000000000002' }], 10, at);
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) => store.setDeviceTokenIfAbsent('iotContract000002', `dev-c2.${i}`, `Token${i}xxxxxxxxxxxxxxxx`)),
        );
        const distinct = new Set(results.map((d) => `${d?.clientId}/${d?.deviceToken}`));
        assert.equal(distinct.size, 1);
      } finally {
        await store.close();
      }
    });
  });
}

setDeviceTokenIfAbsentContract('sqlite', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thingauth-contract-'));
  const store = new SqliteStore({ filename: path.join(dir, 'db.sqlite'), cipher: new KeyringCipher(generateMasterKey()), synchronous: 'NORMAL' });
  await store.migrate();
  return store;
});
