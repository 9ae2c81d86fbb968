/**
 * Store contract for what `thingauth store copy` needs from every adapter: reading every slot
 * of many devices with its token (getDeviceTokenSlotsOf), writing devices exactly as given
 * (putDevices: insert or overwrite in place, slots replaced, counts kept, conflicts refused),
 * setting gateway bindings (setDeviceBindings), audit in id order and inserted with its ids
 * (listAuditAfter, putAuditEntries), and secret settings listed and overwritten
 * (listSecretSettingKeys, putSecretSetting).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DeviceCopy } from '../../../src/store/store.js';
import { makeDevice, namedProduct, rejectsWith, T0, T1, T2, withStore, type MakeStore } from '../fixtures.js';

function copyOf(iotId: string, deviceName: string, overrides: Partial<DeviceCopy> = {}): DeviceCopy {
  return {
    iotId,
    productKey: 'a1Copy',
    deviceName,
    deviceSecret: `Secret${deviceName}`.padEnd(32, 'x'),
    previousDeviceSecret: `Prev${deviceName}`.padEnd(32, 'y'),
    previousSecretExpiresAt: T2,
    nickname: 'nick',
    enabled: false,
    createdAt: T0,
    activatedAt: T1,
    lastOnlineAt: T1,
    lastAuthError: 'bad sign',
    lastAuthErrorAt: T1,
    lastAuthErrorSource: 'mqtt/tcp 192.0.2.1',
    slots: [
      { slot: 1, clientId: `${deviceName}.c1`, deviceToken: 'TokenOne000000000000', createdAt: T0, activatedAt: T1, revokedAt: null },
      { slot: 3, clientId: `${deviceName}.c3`, deviceToken: null, createdAt: T0, activatedAt: null, revokedAt: T2 },
    ],
    ...overrides,
  };
}

export function storeCopyContract(makeStore: MakeStore): void {
  describe('store copy', () => {
    it('putDevices writes every field and slot as given; reads give them back; the kept count follows', withStore(makeStore, async (store) => {
      await store.createProduct(namedProduct('a1Copy'));
      const a = copyOf('iotCopyA', 'copy-a');
      const b = copyOf('iotCopyB', 'copy-b', { slots: [], previousDeviceSecret: null, previousSecretExpiresAt: null, enabled: true });
      await store.putDevices('a1Copy', [a, b]);
      const { slots, ...fields } = a;
      assert.deepEqual(await store.getDevice('a1Copy', 'copy-a'), { ...fields, online: false, gatewayIotId: null, registeredByGatewayIotId: null });
      assert.deepEqual(await store.getDeviceTokenSlotsOf(['iotCopyB', 'iotCopyA', 'unknown']), slots.map((s) => ({ iotId: 'iotCopyA', ...s })));
      assert.deepEqual((await store.getLiveDeviceTokens('iotCopyA')).map((t) => t.deviceToken), ['TokenOne000000000000']);
      assert.equal(await store.countDevices('a1Copy'), 2);
      assert.deepEqual(await store.productCountMismatches(), []);

      // Overwritten in place: same count, slots replaced, bindings kept.
      await store.createDevices('a1Copy', [makeDevice('copy-gw', { iotId: 'iotCopyGw' })], 10, T0);
      await store.setDeviceBindings([{ iotId: 'iotCopyA', gatewayIotId: 'iotCopyGw', registeredByGatewayIotId: 'iotCopyGw' }]);
      await store.putDevices('a1Copy', [{ ...a, deviceSecret: 'ChangedSecret0000', enabled: true, slots: [] }]);
      const back = await store.getDevice('a1Copy', 'copy-a');
      assert.equal(back?.deviceSecret, 'ChangedSecret0000');
      assert.equal(back?.enabled, true);
      assert.equal(back?.gatewayIotId, 'iotCopyGw');
      assert.deepEqual(await store.getDeviceTokenSlotsOf(['iotCopyA']), []);
      assert.equal(await store.countDevices('a1Copy'), 3);
    }));

    it('putDevices refuses, writing nothing: another iotId under the name, an iotId stored elsewhere, an unknown product', withStore(makeStore, async (store) => {
      await store.createProduct(namedProduct('a1Copy'));
      await store.createProduct(namedProduct('a1Other'));
      await store.createDevices('a1Copy', [makeDevice('taken-name', { iotId: 'iotTaken' })], 10, T0);
      await rejectsWith(store.putDevices('a1Copy', [copyOf('iotFresh1', 'fresh-1'), copyOf('iotNew', 'taken-name')]), 'CONFLICT');
      await rejectsWith(store.putDevices('a1Other', [copyOf('iotTaken', 'taken-name')]), 'CONFLICT');
      await rejectsWith(store.putDevices('a1Nope', [copyOf('iotFresh2', 'fresh-2')]), 'PRODUCT_NOT_FOUND');
      assert.equal(await store.getDevice('a1Copy', 'fresh-1'), undefined, 'all or nothing');
      assert.equal(await store.countDevices('a1Copy'), 1);
      assert.equal(await store.countDevices('a1Other'), 0);
    }));

    it('setDeviceBindings sets and clears both references; an unknown device or gateway is DEVICE_NOT_FOUND', withStore(makeStore, async (store) => {
      await store.createProduct(namedProduct('a1Copy'));
      await store.createDevices('a1Copy', ['gw-1', 'sub-1', 'sub-2'].map((n) => makeDevice(n, { iotId: `iot-${n}` })), 10, T0);
      await store.setDeviceBindings([
        { iotId: 'iot-sub-1', gatewayIotId: 'iot-gw-1', registeredByGatewayIotId: null },
        { iotId: 'iot-sub-2', gatewayIotId: null, registeredByGatewayIotId: 'iot-gw-1' },
      ]);
      assert.equal(await store.countSubDevices('iot-gw-1'), 1);
      assert.equal((await store.getDeviceByIotId('iot-sub-2'))?.registeredByGatewayIotId, 'iot-gw-1');
      await rejectsWith(store.setDeviceBindings([{ iotId: 'iot-sub-2', gatewayIotId: null, registeredByGatewayIotId: null }, { iotId: 'iot-none', gatewayIotId: null, registeredByGatewayIotId: null }]), 'DEVICE_NOT_FOUND');
      assert.equal((await store.getDeviceByIotId('iot-sub-2'))?.registeredByGatewayIotId, 'iot-gw-1', 'nothing written');
      await rejectsWith(store.setDeviceBindings([{ iotId: 'iot-sub-2', gatewayIotId: 'iot-none', registeredByGatewayIotId: null }]), 'DEVICE_NOT_FOUND');
      await store.setDeviceBindings([{ iotId: 'iot-sub-1', gatewayIotId: null, registeredByGatewayIotId: null }]);
      assert.equal(await store.countSubDevices('iot-gw-1'), 0);
    }));

    it('audit: listAuditAfter pages in id order; putAuditEntries keeps ids, later appends go above, a taken id is CONFLICT', withStore(makeStore, async (store) => {
      const entry = (i: number) => ({ at: T0, action: `a.${i}`, actor: 'x', productKey: null, deviceName: null, sourceAddress: null, result: 'ok' as const, reason: null });
      await store.putAuditEntries([{ id: 10, ...entry(10) }, { id: 20, ...entry(20) }, { id: 30, ...entry(30) }]);
      assert.deepEqual(await store.listAuditAfter(null, 2), [{ id: 10, ...entry(10) }, { id: 20, ...entry(20) }]);
      assert.deepEqual(await store.listAuditAfter(20, 2), [{ id: 30, ...entry(30) }]);
      await rejectsWith(store.putAuditEntries([{ id: 40, ...entry(40) }, { id: 20, ...entry(99) }]), 'CONFLICT');
      assert.deepEqual((await store.listAuditAfter(null, 10)).map((e) => e.id), [10, 20, 30], 'nothing written');
      await store.appendAudit([entry(50)]);
      const all = await store.listAuditAfter(null, 10);
      assert.equal(all.length, 4);
      assert.ok(all[3]!.id! > 30, 'appended after the copied ids');
      assert.equal(all[3]!.action, 'a.50');
    }));

    it('secret settings: keys listed in order; putSecretSetting replaces', withStore(makeStore, async (store) => {
      assert.deepEqual(await store.listSecretSettingKeys(), []);
      await store.setSecretSettingIfAbsent('k2', 'SecondValue000000');
      await store.putSecretSetting('k1', 'FirstValue0000000');
      await store.putSecretSetting('k2', 'ReplacedValue0000');
      assert.deepEqual(await store.listSecretSettingKeys(), ['k1', 'k2']);
      assert.equal(await store.getSecretSetting('k2'), 'ReplacedValue0000');
    }));
  });
}
