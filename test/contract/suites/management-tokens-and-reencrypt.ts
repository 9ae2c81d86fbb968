/**
 * Store contract for management tokens (create/get/list/delete, hashes only), secret settings,
 * and key rotation (reencryptSecrets / countSecretsNotUnderCurrentKey). The key-rotation cases
 * build the store with a RotatingCipher and swap its keys while the store is open.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RotatingCipher } from '../../../src/core/rotating-cipher.js';
import { generateMasterKey } from '../../../src/core/secret-cipher.js';
import { namedProduct, T0 as at, withStore, type MakeStore } from '../fixtures.js';

export function managementTokensContract(makeStore: MakeStore): void {
  describe('management tokens', () => {
    it('creates, reads, lists in creation order and deletes; duplicate id is CONFLICT', withStore(makeStore, async (store) => {
      const a = { id: 'tokA', name: 'ci', scope: 'read' as const, tokenHash: 'a'.repeat(64), createdAt: at };
      const b = { id: 'tokB', name: 'ops', scope: 'admin' as const, tokenHash: 'b'.repeat(64), createdAt: '2024-01-02T00:00:00.000Z' };
      await store.createManagementToken(b);
      await store.createManagementToken(a);
      assert.deepEqual(await store.getManagementToken('tokA'), a);
      assert.deepEqual(await store.listManagementTokens(), [a, b]);
      await assert.rejects(store.createManagementToken({ ...a, name: 'other' }), { kind: 'CONFLICT' });
      assert.equal(await store.deleteManagementToken('tokA'), true);
      assert.equal(await store.deleteManagementToken('tokA'), false);
      assert.equal(await store.getManagementToken('tokA'), undefined);
      assert.deepEqual(await store.listManagementTokens(), [b]);
    }));
  });
}

export function secretSettingsContract(makeStore: MakeStore): void {
  describe('secret settings', () => {
    it('set-if-absent keeps the first value (racing servers agree) and reads back; unknown keys are undefined', withStore(makeStore, async (store) => {
      assert.equal(await store.getSecretSetting('k'), undefined);
      assert.equal(await store.setSecretSettingIfAbsent('k', 'FirstSecretValue1'), 'FirstSecretValue1');
      assert.equal(await store.setSecretSettingIfAbsent('k', 'SecondSecretValue2'), 'FirstSecretValue1');
      assert.equal(await store.getSecretSetting('k'), 'FirstSecretValue1');
      assert.equal(await store.getMeta('k'), undefined, 'secret settings are not plaintext meta');
    }));

    it('racing set-if-absent calls all get the one value that is stored', withStore(makeStore, async (store) => {
      const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => store.setSecretSettingIfAbsent('raced', `RacedSecretValue${i}`)));
      assert.equal(new Set(answers).size, 1, 'every caller agrees');
      assert.equal(await store.getSecretSetting('raced'), answers[0]);
    }));
  });
}

export function reencryptContract(makeStore: MakeStore): void {
  describe('reencryptSecrets', () => {
    it('moves every secret to the new key in batches, values unchanged, and the old key can then retire', async () => {
      const k1 = generateMasterKey();
      const cipher = new RotatingCipher([k1]);
      const store = await makeStore(cipher);
      try {
        await store.createProduct(namedProduct('a1Rot', { productName: 'p', productSecret: 'ProductSecretRot1' }));
        const devices = Array.from({ length: 25 }, (_, i) => ({
          iotId: `iot-${i}`,
          deviceName: `dev${i}`,
          deviceSecret: `DeviceSecret${i}`,
        }));
        await store.createDevices('a1Rot', devices, 1000, at);
        // Every other device holds a regnwl slot token, encrypted like every other secret.
        for (let i = 0; i < 25; i += 2) await store.issueDeviceTokenSlot(`iot-${i}`, { clientId: `cid${i}`, deviceToken: `DeviceToken${i}` }, 5, at);
        await store.createApplication({ appKey: 'app1', appSecret: 'AppSecret1', name: 'a', productKeys: ['a1Rot'], createdAt: at });
        await store.setSecretSettingIfAbsent('server-key', 'ServerSideKey123');
        const secretsBefore = 1 + 25 + 13 + 1 + 1;
        assert.equal(await store.countSecretsNotUnderCurrentKey(), 0);

        const k2 = generateMasterKey();
        cipher.use([k2, k1]);
        assert.equal(await store.countSecretsNotUnderCurrentKey(), secretsBefore);

        // A write during the rotation is already under the new key.
        await store.updateDevice('iot-3', { deviceSecret: 'ChangedDuringRotation' });

        let cursor: string | undefined;
        let total = 0;
        let batches = 0;
        do {
          const r = await store.reencryptSecrets(cursor, 7);
          total += r.rewritten;
          cursor = r.cursor;
          batches++;
          assert.ok(batches < 100, 'the pass terminates');
        } while (cursor !== undefined);
        assert.equal(total, secretsBefore - 1);
        assert.ok(batches >= 4, 'work was split into batches');
        assert.equal(await store.countSecretsNotUnderCurrentKey(), 0);

        cipher.use([k2]);
        assert.equal((await store.getProduct('a1Rot'))!.productSecret, 'ProductSecretRot1');
        const d0 = (await store.getDevice('a1Rot', 'dev0'))!;
        assert.equal(d0.deviceSecret, 'DeviceSecret0');
        assert.equal((await store.getLiveDeviceTokens(d0.iotId))[0]!.deviceToken, 'DeviceToken0');
        assert.deepEqual(await store.getLiveDeviceTokens('iot-1'), []);
        assert.equal((await store.getDevice('a1Rot', 'dev3'))!.deviceSecret, 'ChangedDuringRotation');
        assert.equal((await store.getDevice('a1Rot', 'dev24'))!.deviceSecret, 'DeviceSecret24');
        assert.equal((await store.getApplication('app1'))!.appSecret, 'AppSecret1');
        assert.equal(await store.getSecretSetting('server-key'), 'ServerSideKey123');

        // A second pass finds nothing to do.
        const again = await store.reencryptSecrets(undefined, 1000);
        assert.equal(again.rewritten, 0);
      } finally {
        await store.close();
      }
    });

    it('refuses a cursor it did not produce', withStore(makeStore, async (store) => {
      await assert.rejects(store.reencryptSecrets('garbage', 10), { kind: 'INVALID_ARGUMENT' });
    }, new RotatingCipher([generateMasterKey()])));
  });
}
