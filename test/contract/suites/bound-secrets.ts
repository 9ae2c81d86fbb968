/**
 * Store contract: every stored secret is bound to its place (issue 11 item 14). A ciphertext
 * copied into another row, another column or another table, by someone who can write the
 * database but has no key, is refused on read with an INTERNAL error that names the problem
 * ("integrity") and never holds a secret; the row it came from still reads, and setting a new
 * secret repairs the row. Key rotation keeps the binding.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ThingAuthError } from '../../../src/core/errors.js';
import { RotatingCipher } from '../../../src/core/rotating-cipher.js';
import { generateMasterKey } from '../../../src/core/secret-cipher.js';
import type { Store } from '../../../src/store/store.js';
import { namedProduct, T0 as at, withStore, type MakeStore, type StoreContractOptions } from '../fixtures.js';

const SECRET_A = 'DeviceSecretOfA0000000000000001';
const SECRET_B = 'DeviceSecretOfB0000000000000002';

/** Rejects as an integrity failure whose message holds none of `secrets`. */
async function refusedAsTampered(p: Promise<unknown>, ...secrets: string[]): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof ThingAuthError, `expected ThingAuthError, got ${String(e)}`);
    assert.equal(e.kind, 'INTERNAL');
    assert.match(e.message, /integrity/);
    for (const s of secrets) assert.ok(!e.message.includes(s) && !String(e.stack).includes(s), 'the error never holds a secret');
    return true;
  });
}

async function twoDevices(store: Store, pk: string): Promise<void> {
  await store.createProduct(namedProduct(pk, { productSecret: 'ProductSecretBound01' }));
  await store.createDevices(
    pk,
    [
      { iotId: `${pk}-iotA`, deviceName: 'devA', deviceSecret: SECRET_A },
      { iotId: `${pk}-iotB`, deviceName: 'devB', deviceSecret: SECRET_B },
    ],
    10,
    at,
  );
  await store.issueDeviceTokenSlot(`${pk}-iotA`, { clientId: 'cidA', deviceToken: 'DeviceTokenOfA000001' }, 5, at);
  await store.issueDeviceTokenSlot(`${pk}-iotB`, { clientId: 'cidB', deviceToken: 'DeviceTokenOfB000002' }, 5, at);
}

async function tokenOf(store: Store, iotId: string, slot = 1): Promise<string | undefined> {
  return (await store.getLiveDeviceTokens(iotId)).find((c) => c.slot === slot)?.deviceToken;
}

export function boundSecretsContract(makeStore: MakeStore, opts: StoreContractOptions): void {
  const copy = opts.copyStoredSecret;
  const noHook = copy ? false : 'the adapter gives no copyStoredSecret hook';
  describe('secrets bound to their place', () => {
    it('a DeviceSecret copied from one device row into another is refused on read; the source still reads; a new secret repairs the row', { skip: noHook }, withStore(makeStore, async (store) => {
      await twoDevices(store, 'a1Bound1');
      await copy!(store, { kind: 'deviceSecret', productKey: 'a1Bound1', deviceName: 'devA' }, { kind: 'deviceSecret', productKey: 'a1Bound1', deviceName: 'devB' });
      await refusedAsTampered(store.getDevice('a1Bound1', 'devB'), SECRET_A, SECRET_B);
      await refusedAsTampered(store.getDeviceByIotId('a1Bound1-iotB'), SECRET_A, SECRET_B);
      await refusedAsTampered(store.getDevicesByName('a1Bound1', ['devB']), SECRET_A, SECRET_B);
      assert.equal((await store.getDevice('a1Bound1', 'devA'))!.deviceSecret, SECRET_A);
      const repaired = await store.updateDevice('a1Bound1-iotB', { deviceSecret: 'FreshSecretForB0000000000000003' });
      assert.equal(repaired!.deviceSecret, 'FreshSecretForB0000000000000003');
      assert.equal(await tokenOf(store, 'a1Bound1-iotB'), 'DeviceTokenOfB000002');
    }));

    it('a value moved to another column or table is refused: ProductSecret into a DeviceSecret, a DeviceToken into the DeviceSecret, the current secret into the previous one', { skip: noHook }, withStore(makeStore, async (store) => {
      await twoDevices(store, 'a1Bound2');
      await copy!(store, { kind: 'productSecret', productKey: 'a1Bound2' }, { kind: 'deviceSecret', productKey: 'a1Bound2', deviceName: 'devA' });
      await refusedAsTampered(store.getDevice('a1Bound2', 'devA'), 'ProductSecretBound01');
      await copy!(store, { kind: 'deviceToken', productKey: 'a1Bound2', deviceName: 'devB', slot: 1 }, { kind: 'deviceSecret', productKey: 'a1Bound2', deviceName: 'devB' });
      await refusedAsTampered(store.getDevice('a1Bound2', 'devB'), 'DeviceTokenOfB000002');
      // A rotated device: its current secret written over the previous one (or the reverse).
      await store.createDevices('a1Bound2', [{ iotId: 'a1Bound2-iotC', deviceName: 'devC', deviceSecret: 'DeviceSecretOfC0000000000000004' }], 10, at);
      await store.rotateDeviceSecret('a1Bound2-iotC', 'DeviceSecretOfC0000000000000005', '2024-02-01T00:00:00.000Z');
      const c = (await store.getDevice('a1Bound2', 'devC'))!;
      assert.equal(c.previousDeviceSecret, 'DeviceSecretOfC0000000000000004', 'rotation re-binds the old secret to the previous column');
      await copy!(store, { kind: 'deviceSecret', productKey: 'a1Bound2', deviceName: 'devC' }, { kind: 'previousDeviceSecret', productKey: 'a1Bound2', deviceName: 'devC' });
      await refusedAsTampered(store.getDevice('a1Bound2', 'devC'), 'DeviceSecretOfC0000000000000005');
    }));

    it('a regnwl slot token copied to another device\'s slot or to another slot of the same device is refused; the source still reads', { skip: noHook }, withStore(makeStore, async (store) => {
      await twoDevices(store, 'a1Bound5');
      await copy!(store, { kind: 'deviceToken', productKey: 'a1Bound5', deviceName: 'devA', slot: 1 }, { kind: 'deviceToken', productKey: 'a1Bound5', deviceName: 'devB', slot: 1 });
      await refusedAsTampered(store.getLiveDeviceTokens('a1Bound5-iotB'), 'DeviceTokenOfA000001');
      assert.equal(await tokenOf(store, 'a1Bound5-iotA'), 'DeviceTokenOfA000001');
      await store.activateDeviceTokenSlot('a1Bound5-iotA', 1, at);
      await store.issueDeviceTokenSlot('a1Bound5-iotA', { clientId: 'cidA2', deviceToken: 'DeviceTokenOfA2000003' }, 5, at);
      await copy!(store, { kind: 'deviceToken', productKey: 'a1Bound5', deviceName: 'devA', slot: 1 }, { kind: 'deviceToken', productKey: 'a1Bound5', deviceName: 'devA', slot: 2 });
      await refusedAsTampered(store.getLiveDeviceTokens('a1Bound5-iotA'), 'DeviceTokenOfA000001');
    }));

    it('an appSecret or a server-side key copied to another row is refused', { skip: noHook }, withStore(makeStore, async (store) => {
      await store.createApplication({ appKey: 'appOne', appSecret: 'AppSecretOne0001', name: 'one', productKeys: [], createdAt: at });
      await store.createApplication({ appKey: 'appTwo', appSecret: 'AppSecretTwo0002', name: 'two', productKeys: [], createdAt: at });
      await copy!(store, { kind: 'appSecret', appKey: 'appOne' }, { kind: 'appSecret', appKey: 'appTwo' });
      await refusedAsTampered(store.getApplication('appTwo'), 'AppSecretOne0001');
      assert.equal((await store.getApplication('appOne'))!.appSecret, 'AppSecretOne0001');
      await store.setSecretSettingIfAbsent('key-one', 'ServerKeyOne0001');
      await store.setSecretSettingIfAbsent('key-two', 'ServerKeyTwo0002');
      await copy!(store, { kind: 'secretSetting', key: 'key-one' }, { kind: 'secretSetting', key: 'key-two' });
      await refusedAsTampered(store.getSecretSetting('key-two'), 'ServerKeyOne0001');
      assert.equal(await store.getSecretSetting('key-one'), 'ServerKeyOne0001');
    }));

    it('master key rotation re-encrypts each value for the same place: values read under the new key alone, a copy is still refused', { skip: noHook }, async () => {
      const k1 = generateMasterKey();
      const cipher = new RotatingCipher([k1]);
      const store = await makeStore(cipher);
      try {
        await twoDevices(store, 'a1Bound4');
        const k2 = generateMasterKey();
        cipher.use([k2, k1]);
        let cursor: string | undefined;
        do cursor = (await store.reencryptSecrets(cursor, 1)).cursor;
        while (cursor !== undefined);
        cipher.use([k2]);
        assert.equal((await store.getDevice('a1Bound4', 'devA'))!.deviceSecret, SECRET_A);
        assert.equal(await tokenOf(store, 'a1Bound4-iotB'), 'DeviceTokenOfB000002');
        assert.equal((await store.getProduct('a1Bound4'))!.productSecret, 'ProductSecretBound01');
        await copy!(store, { kind: 'deviceSecret', productKey: 'a1Bound4', deviceName: 'devA' }, { kind: 'deviceSecret', productKey: 'a1Bound4', deviceName: 'devB' });
        await refusedAsTampered(store.getDevice('a1Bound4', 'devB'), SECRET_A);
      } finally {
        await store.close();
      }
    });
  });
}
