/**
 * Store contract for the gateway binding of sub-devices (issue 11 item 8):
 * claimSubDeviceRegistration (the registrar, atomically), releaseSubDevice, and what deleting
 * the registrar gateway does.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { boundGatewayOf } from '../../../src/core/records.js';
import type { Store } from '../../../src/store/store.js';
import { makeDevice, makeProduct, T0 as at, withStore, type MakeStore } from '../fixtures.js';

async function gatewaysAndSub(store: Store) {
  const gwProduct = makeProduct({ nodeType: 'GATEWAY' });
  const subProduct = makeProduct({ nodeType: 'SUB_DEVICE', dynamicRegistration: true });
  await store.createProduct(gwProduct);
  await store.createProduct(subProduct);
  const [gwA, gwB] = await store.createDevices(gwProduct.productKey, [makeDevice('gw-a'), makeDevice('gw-b')], 10, at);
  const [sub] = await store.createDevices(subProduct.productKey, [makeDevice('sub-1')], 10, at);
  return { gwA: gwA!, gwB: gwB!, sub: sub!, subProduct };
}

export function subDeviceRegistrarContract(makeStore: MakeStore): void {
  describe('sub-device registrar (gateway binding)', () => {
    it('a new device has no registrar; the first gateway claims it, the same gateway again succeeds, another is refused', withStore(makeStore, async (store) => {
      const { gwA, gwB, sub, subProduct } = await gatewaysAndSub(store);
      assert.equal(sub.registeredByGatewayIotId, null);
      assert.equal(await store.claimSubDeviceRegistration(sub.iotId, gwA.iotId), true);
      assert.equal(await store.claimSubDeviceRegistration(sub.iotId, gwA.iotId), true);
      assert.equal(await store.claimSubDeviceRegistration(sub.iotId, gwB.iotId), false);
      const read = await store.getDevice(subProduct.productKey, 'sub-1');
      assert.equal(read?.registeredByGatewayIotId, gwA.iotId);
      assert.equal(boundGatewayOf(read!), gwA.iotId);
      assert.equal(await store.claimSubDeviceRegistration('iotNoSuchDevice01', gwA.iotId), false);
    }));

    it('a sub-device in a gateway topology can be claimed by that gateway only', withStore(makeStore, async (store) => {
      const { gwA, gwB, sub } = await gatewaysAndSub(store);
      await store.attachSubDevices(gwB.iotId, [sub.iotId], 10);
      assert.equal(await store.claimSubDeviceRegistration(sub.iotId, gwA.iotId), false);
      assert.equal(await store.claimSubDeviceRegistration(sub.iotId, gwB.iotId), true);
      assert.equal((await store.getDeviceByIotId(sub.iotId))?.registeredByGatewayIotId, gwB.iotId);
    }));

    it('racing gateways: exactly one claim wins', withStore(makeStore, async (store) => {
      const { gwA, gwB, sub } = await gatewaysAndSub(store);
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => store.claimSubDeviceRegistration(sub.iotId, i % 2 === 0 ? gwA.iotId : gwB.iotId)));
      const winner = (await store.getDeviceByIotId(sub.iotId))!.registeredByGatewayIotId;
      assert.ok(winner === gwA.iotId || winner === gwB.iotId);
      results.forEach((won, i) => assert.equal(won, (i % 2 === 0 ? gwA.iotId : gwB.iotId) === winner));
    }));

    it('releaseSubDevice returns the record as it was and clears registrar and topology; undefined when absent', withStore(makeStore, async (store) => {
      const { gwA, gwB, sub } = await gatewaysAndSub(store);
      await store.claimSubDeviceRegistration(sub.iotId, gwA.iotId);
      await store.attachSubDevices(gwA.iotId, [sub.iotId], 10);
      const before = await store.releaseSubDevice(sub.iotId);
      assert.equal(before?.registeredByGatewayIotId, gwA.iotId);
      assert.equal(before?.gatewayIotId, gwA.iotId);
      const after = await store.getDeviceByIotId(sub.iotId);
      assert.equal(after?.registeredByGatewayIotId, null);
      assert.equal(after?.gatewayIotId, null);
      assert.equal(await store.countSubDevices(gwA.iotId), 0);
      assert.equal(await store.claimSubDeviceRegistration(sub.iotId, gwB.iotId), true);
      assert.equal(await store.releaseSubDevice('iotNoSuchDevice01'), undefined);
    }));

    it('unactivatedOnly: an activated sub-device is not claimed (nothing written); without it, it is; reset makes it claimable again', withStore(makeStore, async (store) => {
      const { gwA, gwB, sub } = await gatewaysAndSub(store);
      await store.markOnline(sub.iotId, at);
      assert.equal(await store.claimSubDeviceRegistration(sub.iotId, gwA.iotId, { unactivatedOnly: true }), false);
      assert.equal((await store.getDeviceByIotId(sub.iotId))?.registeredByGatewayIotId, null, 'nothing written');
      assert.equal(await store.claimSubDeviceRegistration(sub.iotId, gwA.iotId), true);
      assert.equal(await store.claimSubDeviceRegistration(sub.iotId, gwA.iotId, { unactivatedOnly: true }), false);
      await store.resetDevice(sub.iotId);
      assert.equal(await store.claimSubDeviceRegistration(sub.iotId, gwA.iotId, { unactivatedOnly: true }), true);
      assert.equal(await store.claimSubDeviceRegistration(sub.iotId, gwB.iotId, { unactivatedOnly: true }), false, 'bound to another gateway');
    }));

    it('deleting the registrar gateway frees the sub-device; reset keeps the registrar', withStore(makeStore, async (store) => {
      const { gwA, gwB, sub } = await gatewaysAndSub(store);
      await store.claimSubDeviceRegistration(sub.iotId, gwA.iotId);
      await store.resetDevice(sub.iotId);
      assert.equal((await store.getDeviceByIotId(sub.iotId))?.registeredByGatewayIotId, gwA.iotId);
      assert.equal(await store.deleteDevice(gwA.iotId), true);
      assert.equal((await store.getDeviceByIotId(sub.iotId))?.registeredByGatewayIotId, null);
      assert.equal(await store.claimSubDeviceRegistration(sub.iotId, gwB.iotId), true);
    }));
  });
}
