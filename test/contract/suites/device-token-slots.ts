/**
 * Store contract for the pre-registration-free credential slots (spec 3.2, issue 12 item 2):
 * issueDeviceTokenSlot (re-issue while unactivated, a new slot after activation, at most
 * maxSlots live, atomic under racing callers), activateDeviceTokenSlot, revokeDeviceTokenSlot
 * (token destroyed, number reused), listDeviceTokenSlots / getLiveDeviceTokens, and
 * resetDevice / deleteDevice clearing them; the refusal of an activated or bound device.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Product } from '../../../src/core/records.js';
import type { Store } from '../../../src/store/store.js';
import { namedProduct, T0, T1, T2, withStore, type MakeStore, type StoreContractOptions } from '../fixtures.js';

function product(productKey: string): Product {
  return namedProduct(productKey, { dynamicRegistration: true, preRegistrationFree: true });
}

async function oneDevice(store: Store, pk: string, iotId: string): Promise<void> {
  await store.createProduct(product(pk));
  await store.createDevices(pk, [{ iotId, deviceName: 'dev-slot', deviceSecret: 'DeviceSecret0000000000000000001' }], 10, T0);
}

const cand = (i: number) => ({ clientId: `dev-slot.C${i}`, deviceToken: `TokenNumber${i}xxxxxxxxxxxxxxx` });

export function deviceTokenSlotsContract(makeStore: MakeStore, opts: StoreContractOptions): void {
  describe('regnwl credential slots', () => {
    it('an unactivated slot is answered again; activation opens the next; at most maxSlots live; full after that', withStore(makeStore, async (store) => {
      await oneDevice(store, 'a1Slots1', 'iotSlots00000001');
      const first = await store.issueDeviceTokenSlot('iotSlots00000001', cand(1), 5, T0);
      assert.deepEqual(first, { outcome: 'new', credential: { slot: 1, ...cand(1), createdAt: T0, activatedAt: null, revokedAt: null } });
      const again = await store.issueDeviceTokenSlot('iotSlots00000001', cand(2), 5, T1);
      assert.equal(again?.outcome, 'existing');
      assert.deepEqual(again && 'credential' in again ? again.credential : undefined, first!.outcome === 'new' ? first.credential : undefined, 'same slot, same credential, same createdAt');
      for (let slot = 1; slot <= 5; slot++) {
        assert.equal(await store.activateDeviceTokenSlot('iotSlots00000001', slot, T1), true);
        assert.equal(await store.activateDeviceTokenSlot('iotSlots00000001', slot, T2), false, 'activation is recorded once');
        const next = await store.issueDeviceTokenSlot('iotSlots00000001', cand(10 + slot), 5, T1);
        if (slot < 5) {
          assert.equal(next?.outcome, 'new');
          assert.equal(next && 'credential' in next ? next.credential.slot : 0, slot + 1);
          assert.equal(next && 'credential' in next ? next.credential.deviceToken : '', cand(10 + slot).deviceToken);
        } else {
          assert.deepEqual(next, { outcome: 'full', live: 5 });
        }
      }
      const listed = await store.listDeviceTokenSlots('iotSlots00000001');
      assert.deepEqual(listed.map((s) => [s.slot, s.activatedAt, s.revokedAt]), [1, 2, 3, 4, 5].map((n) => [n, T1, null]));
      assert.ok(!JSON.stringify(listed).includes('TokenNumber'), 'the list holds no token');
      const live = await store.getLiveDeviceTokens('iotSlots00000001');
      assert.deepEqual(live.map((c) => c.deviceToken), [cand(1), cand(11), cand(12), cand(13), cand(14)].map((c) => c.deviceToken));
      assert.equal(await store.activateDeviceTokenSlot('iotSlots00000001', 6, T1), false);
    }));

    it('unknown device: issue answers undefined, lists are empty', withStore(makeStore, async (store) => {
      assert.equal(await store.issueDeviceTokenSlot('iotNoSuchDevice01', cand(1), 5, T0), undefined);
      assert.deepEqual(await store.listDeviceTokenSlots('iotNoSuchDevice01'), []);
      assert.deepEqual(await store.getLiveDeviceTokens('iotNoSuchDevice01'), []);
      assert.equal(await store.revokeDeviceTokenSlot('iotNoSuchDevice01', 1, T0), undefined);
    }));

    it('20 racing issues on a fresh device agree on one slot; after 4 activations 20 racing issues still open only slot 5', withStore(makeStore, async (store) => {
      await oneDevice(store, 'a1Slots2', 'iotSlots00000002');
      const race = (base: number) => Promise.all(Array.from({ length: 20 }, (_, i) => store.issueDeviceTokenSlot('iotSlots00000002', cand(base + i), 5, T0)));
      const firstRace = await race(0);
      const tokens = new Set(firstRace.map((r) => (r && 'credential' in r ? r.credential.deviceToken : 'none')));
      assert.equal(tokens.size, 1);
      assert.equal(firstRace.filter((r) => r?.outcome === 'new').length, 1, 'exactly one caller created the slot');
      for (let n = 0; n < 4; n++) {
        const live = await store.getLiveDeviceTokens('iotSlots00000002');
        await store.activateDeviceTokenSlot('iotSlots00000002', live[live.length - 1]!.slot, T1);
        if (n < 3) await store.issueDeviceTokenSlot('iotSlots00000002', cand(100 + n), 5, T1);
      }
      const lastRace = await race(200);
      assert.equal(new Set(lastRace.map((r) => (r && 'credential' in r ? `${r.credential.slot}/${r.credential.deviceToken}` : 'none'))).size, 1);
      assert.equal((lastRace[0] as { credential: { slot: number } }).credential.slot, 5);
      assert.equal((await store.listDeviceTokenSlots('iotSlots00000002')).length, 5);
    }));

    it('revoke destroys the token, keeps the row (revokedAt), frees the number for the lowest new slot; revoking twice changes nothing', withStore(makeStore, async (store) => {
      await oneDevice(store, 'a1Slots3', 'iotSlots00000003');
      for (let i = 1; i <= 3; i++) {
        await store.issueDeviceTokenSlot('iotSlots00000003', cand(i), 5, T0);
        await store.activateDeviceTokenSlot('iotSlots00000003', i, T0);
      }
      const revoked = await store.revokeDeviceTokenSlot('iotSlots00000003', 2, T1);
      assert.deepEqual(revoked, { slot: 2, clientId: cand(2).clientId, createdAt: T0, activatedAt: T0, revokedAt: T1 });
      assert.deepEqual(await store.revokeDeviceTokenSlot('iotSlots00000003', 2, T2), revoked, 'a second revoke keeps the first time');
      assert.equal(await store.revokeDeviceTokenSlot('iotSlots00000003', 4, T1), undefined, 'no such slot');
      assert.deepEqual((await store.getLiveDeviceTokens('iotSlots00000003')).map((c) => c.slot), [1, 3]);
      assert.equal(await store.activateDeviceTokenSlot('iotSlots00000003', 2, T2), false, 'a revoked slot cannot be activated');
      if (opts.rawContents) assert.ok(!(await opts.rawContents(store)).includes(cand(2).deviceToken), 'the token is gone, not only flagged');
      const reused = await store.issueDeviceTokenSlot('iotSlots00000003', cand(9), 5, T2);
      assert.deepEqual(reused, { outcome: 'new', credential: { slot: 2, ...cand(9), createdAt: T2, activatedAt: null, revokedAt: null } });
      assert.deepEqual((await store.getLiveDeviceTokens('iotSlots00000003')).map((c) => [c.slot, c.deviceToken]), [
        [1, cand(1).deviceToken],
        [2, cand(9).deviceToken],
        [3, cand(3).deviceToken],
      ]);
    }));

    it('reset clears every slot (a new regnwl starts at slot 1); deleting the device deletes its slots', withStore(makeStore, async (store) => {
      await oneDevice(store, 'a1Slots4', 'iotSlots00000004');
      await store.issueDeviceTokenSlot('iotSlots00000004', cand(1), 5, T0);
      await store.activateDeviceTokenSlot('iotSlots00000004', 1, T0);
      await store.issueDeviceTokenSlot('iotSlots00000004', cand(2), 5, T0);
      await store.resetDevice('iotSlots00000004');
      assert.deepEqual(await store.listDeviceTokenSlots('iotSlots00000004'), []);
      const fresh = await store.issueDeviceTokenSlot('iotSlots00000004', cand(3), 5, T1);
      assert.equal(fresh && 'credential' in fresh ? fresh.credential.slot : 0, 1);
      assert.equal(await store.deleteDevice('iotSlots00000004'), true);
      assert.deepEqual(await store.listDeviceTokenSlots('iotSlots00000004'), []);
      // A new device of the same name does not inherit anything.
      await store.createDevices('a1Slots4', [{ iotId: 'iotSlots00000005', deviceName: 'dev-slot', deviceSecret: 'DeviceSecret0000000000000000002' }], 10, T2);
      assert.deepEqual(await store.listDeviceTokenSlots('iotSlots00000005'), []);
    }));

    it('maxSlots is the caller\'s: a smaller limit refuses earlier', withStore(makeStore, async (store) => {
      await oneDevice(store, 'a1Slots6', 'iotSlots00000006');
      await store.issueDeviceTokenSlot('iotSlots00000006', cand(1), 1, T0);
      await store.activateDeviceTokenSlot('iotSlots00000006', 1, T0);
      assert.deepEqual(await store.issueDeviceTokenSlot('iotSlots00000006', cand(2), 1, T0), { outcome: 'full', live: 1 });
    }));

    it('refused, in the issuing transaction, for a device activated with its DeviceSecret (no slot ever) or bound to a gateway (issue 13)', withStore(makeStore, async (store) => {
      await oneDevice(store, 'a1Slots7', 'iotSlots00000007');
      // A login with the DeviceSecret activated it: no slot.
      assert.deepEqual(await store.markOnline('iotSlots00000007', T0), { activated: true });
      assert.deepEqual(await store.issueDeviceTokenSlot('iotSlots00000007', cand(1), 5, T1), { outcome: 'refused', reason: 'activated' });
      assert.deepEqual(await store.listDeviceTokenSlots('iotSlots00000007'), [], 'nothing written');
      // Reset: UNACTIVE again, a slot is issued; a login then (through that slot) does not close the door.
      await store.resetDevice('iotSlots00000007');
      assert.equal((await store.issueDeviceTokenSlot('iotSlots00000007', cand(2), 5, T1))?.outcome, 'new');
      await store.activateDeviceTokenSlot('iotSlots00000007', 1, T1);
      await store.markOnline('iotSlots00000007', T1);
      assert.equal((await store.issueDeviceTokenSlot('iotSlots00000007', cand(3), 5, T2))?.outcome, 'new');

      // Bound to a gateway (its registrar): refused until an operator releases it.
      await store.createProduct(namedProduct('a1SlotsGw', { nodeType: 'GATEWAY' }));
      await store.createDevices('a1SlotsGw', [{ iotId: 'iotSlotsGateway1', deviceName: 'gw', deviceSecret: 'DeviceSecret0000000000000000002' }], 10, T0);
      await store.createProduct(namedProduct('a1Slots8', { nodeType: 'SUB_DEVICE', dynamicRegistration: true, preRegistrationFree: true }));
      await store.createDevices('a1Slots8', [{ iotId: 'iotSlots00000008', deviceName: 'dev-slot', deviceSecret: 'DeviceSecret0000000000000000003' }], 10, T0);
      assert.equal(await store.claimSubDeviceRegistration('iotSlots00000008', 'iotSlotsGateway1'), true);
      assert.deepEqual(await store.issueDeviceTokenSlot('iotSlots00000008', cand(1), 5, T1), { outcome: 'refused', reason: 'bound' });
      await store.releaseSubDevice('iotSlots00000008');
      assert.equal((await store.issueDeviceTokenSlot('iotSlots00000008', cand(1), 5, T1))?.outcome, 'new');
      // Attached by topology (gatewayIotId): refused as well.
      await store.attachSubDevices('iotSlotsGateway1', ['iotSlots00000008'], 10);
      assert.deepEqual(await store.issueDeviceTokenSlot('iotSlots00000008', cand(2), 5, T1), { outcome: 'refused', reason: 'bound' });
    }));
  });
}
