/**
 * Store contract for the product rules the store decides in the transaction that writes
 * (issue 13), so they hold with several server processes on one database: a product's nodeType
 * is fixed while it has devices; preRegistrationFree needs dynamicRegistration on the row as
 * updated; a device create applies the product's deviceLimit as stored when it commits (the
 * limit passed is only the default for a product without one). The race cases can only fail
 * on an adapter whose calls interleave (the PostgreSQL fixture's pool holds several
 * connections); on SQLite they pass trivially.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Store } from '../../../src/store/store.js';
import { makeDevice, makeProduct, rejectsWith, T0 as at, T1, withStore, type MakeStore } from '../fixtures.js';

const DEFAULT_LIMIT = 1000;

type Outcome = { ok: true } | { ok: false; kind: string | undefined; error: unknown };

/** The call's outcome; never rejects, so a refusal is handled from the start however long the case waits. */
function outcome(p: Promise<unknown>): Promise<Outcome> {
  return p.then(
    () => ({ ok: true as const }),
    (error: unknown) => ({ ok: false as const, kind: (error as { kind?: string }).kind, error }),
  );
}

/** Counts the racing calls that succeeded; a failure other than the expected kinds fails the case. */
async function settle(calls: Promise<Outcome>[], allowedKinds: string[]): Promise<{ ok: number; refused: number }> {
  let ok = 0;
  let refused = 0;
  for (const r of await Promise.all(calls)) {
    if (r.ok) ok++;
    else {
      assert.ok(r.kind !== undefined && allowedKinds.includes(r.kind), `unexpected failure: ${String(r.error)}`);
      refused++;
    }
  }
  return { ok, refused };
}

/** `n` single-device creates of the product, issued at once. */
function racingCreates(store: Store, productKey: string, n: number, prefix: string): Promise<Outcome>[] {
  return Array.from({ length: n }, (_, i) => outcome(store.createDevices(productKey, [makeDevice(`${prefix}-${i}`)], DEFAULT_LIMIT, at)));
}

export function productRulesInTheStoreContract(makeStore: MakeStore): void {
  describe('product rules decided in the store (nodeType, preRegistrationFree, deviceLimit)', () => {
    it('updateProduct refuses a nodeType change while the product has devices (CONFLICT, nothing written); the same nodeType and other fields pass', withStore(makeStore, async (store) => {
      const p = makeProduct({ nodeType: 'DEVICE' });
      await store.createProduct(p);
      // No devices: the change is allowed.
      assert.equal((await store.updateProduct(p.productKey, { nodeType: 'GATEWAY' }, T1)).nodeType, 'GATEWAY');
      const [d] = await store.createDevices(p.productKey, [makeDevice('only-one')], DEFAULT_LIMIT, at);
      const e = await rejectsWith(store.updateProduct(p.productKey, { nodeType: 'SUB_DEVICE', productName: 'Not applied' }, at), 'CONFLICT');
      assert.equal(e.details?.['field'], 'nodeType');
      const after = (await store.getProduct(p.productKey))!;
      assert.equal(after.nodeType, 'GATEWAY');
      assert.equal(after.productName, p.productName, 'nothing of a refused patch is written');
      // Naming the nodeType it already has is no change.
      assert.equal((await store.updateProduct(p.productKey, { nodeType: 'GATEWAY', productName: 'Renamed' }, at)).productName, 'Renamed');
      await store.deleteDevice(d!.iotId);
      assert.equal((await store.updateProduct(p.productKey, { nodeType: 'DEVICE' }, at)).nodeType, 'DEVICE');
      await rejectsWith(store.updateProduct('a1NoSuchProduct0', { nodeType: 'GATEWAY' }, at), 'PRODUCT_NOT_FOUND');
    }));

    it('updateProduct refuses a row that would be preRegistrationFree without dynamicRegistration, judged on the row as updated', withStore(makeStore, async (store) => {
      const p = makeProduct({ dynamicRegistration: true, preRegistrationFree: true });
      await store.createProduct(p);
      // Each patch alone looks harmless; the row it would produce is not.
      const e = await rejectsWith(store.updateProduct(p.productKey, { dynamicRegistration: false, productName: 'Not applied' }, T1), 'INVALID_ARGUMENT');
      assert.equal(e.details?.['field'], 'preRegistrationFree');
      assert.deepEqual(await store.getProduct(p.productKey), p, 'nothing written');
      const q = makeProduct({ dynamicRegistration: false, preRegistrationFree: false });
      await store.createProduct(q);
      await rejectsWith(store.updateProduct(q.productKey, { preRegistrationFree: true }, T1), 'INVALID_ARGUMENT');
      const both = await store.updateProduct(q.productKey, { preRegistrationFree: true, dynamicRegistration: true }, T1);
      assert.equal(both.preRegistrationFree && both.dynamicRegistration, true);
    }));

    it("creates apply the product's own deviceLimit over the default passed (createDevices, getOrCreateDevice, importDevices)", withStore(makeStore, async (store) => {
      const p = makeProduct({ deviceLimit: 2 });
      await store.createProduct(p);
      await store.createDevices(p.productKey, [makeDevice('d1')], DEFAULT_LIMIT, at);
      await store.getOrCreateDevice(p.productKey, makeDevice('d2'), DEFAULT_LIMIT, at);
      const e = await rejectsWith(store.createDevices(p.productKey, [makeDevice('d3')], DEFAULT_LIMIT, at), 'DEVICE_LIMIT_REACHED');
      assert.equal(e.details?.['limit'], 2, 'the limit applied is the product\'s');
      await rejectsWith(store.getOrCreateDevice(p.productKey, makeDevice('d3'), DEFAULT_LIMIT, at), 'DEVICE_LIMIT_REACHED');
      await rejectsWith(store.importDevices(p.productKey, [{ deviceName: 'd3', deviceSecret: 'S'.repeat(32), iotId: makeDevice('x').iotId }], DEFAULT_LIMIT, false, at), 'DEVICE_LIMIT_REACHED');
      assert.equal(await store.countDevices(p.productKey), 2);
      // Raised on the product: the next create sees it at once.
      await store.updateProduct(p.productKey, { deviceLimit: 3 }, T1);
      await store.createDevices(p.productKey, [makeDevice('d3')], DEFAULT_LIMIT, at);
      // No limit of its own: the default passed applies.
      await store.updateProduct(p.productKey, { deviceLimit: null }, T1);
      const f = await rejectsWith(store.createDevices(p.productKey, [makeDevice('d4')], 3, at), 'DEVICE_LIMIT_REACHED');
      assert.equal(f.details?.['limit'], 3);
      await store.createDevices(p.productKey, [makeDevice('d4')], 4, at);
      assert.equal(await store.countDevices(p.productKey), 4);
    }));

    it('racing creates and a nodeType change: either the change is refused or no device was created under the old type', withStore(makeStore, async (store) => {
      for (let round = 0; round < 5; round++) {
        const p = makeProduct({ nodeType: 'DEVICE', deviceLimit: null });
        await store.createProduct(p);
        const creates = racingCreates(store, p.productKey, 20, `r${round}`);
        // The change also closes the product (deviceLimit 0): a create that commits after it
        // is refused, so a device that exists alongside an accepted change was created before
        // it, under the old nodeType, which is what the store must not let happen.
        const flip = store.updateProduct(p.productKey, { nodeType: 'GATEWAY', deviceLimit: 0 }, T1);
        const flipped = await flip.then(
          () => true,
          (e: { kind?: string }) => {
            assert.equal(e.kind, 'CONFLICT', String(e));
            return false;
          },
        );
        const { ok } = await settle(creates, ['DEVICE_LIMIT_REACHED']);
        const count = await store.countDevices(p.productKey);
        assert.equal(count, ok, 'the count kept agrees with the creates that succeeded');
        const product = (await store.getProduct(p.productKey))!;
        if (flipped) {
          assert.equal(count, 0, `round ${round}: nodeType changed to GATEWAY but ${count} devices were created under DEVICE`);
          assert.equal(product.nodeType, 'GATEWAY');
        } else {
          assert.ok(count > 0, 'refused only because devices existed');
          assert.equal(product.nodeType, 'DEVICE');
          assert.equal(product.deviceLimit, null, 'the refused patch wrote nothing');
        }
      }
      assert.deepEqual(await store.productCountMismatches(), []);
    }));

    it('racing creates and a lowered deviceLimit: no create commits past the limit in force when it commits', withStore(makeStore, async (store) => {
      for (let round = 0; round < 5; round++) {
        const p = makeProduct({ deviceLimit: 100 });
        await store.createProduct(p);
        const creates = racingCreates(store, p.productKey, 20, `l${round}`);
        // Lowered to 0: every create that commits after the update must be refused.
        await store.updateProduct(p.productKey, { deviceLimit: 0 }, T1);
        // Everything committed before the update is visible now; nothing may be added after.
        const atUpdate = await store.countDevices(p.productKey);
        const late = racingCreates(store, p.productKey, 5, `late${round}`);
        const { ok } = await settle([...creates, ...late], ['DEVICE_LIMIT_REACHED']);
        const count = await store.countDevices(p.productKey);
        assert.equal(count, atUpdate, `round ${round}: ${count - atUpdate} devices were created after the limit was lowered to 0`);
        assert.equal(count, ok);
      }
      // Lowered to a positive limit while creates race: the product ends at most at that limit
      // plus what was already there when the limit changed.
      const q = makeProduct({ deviceLimit: 100 });
      await store.createProduct(q);
      const creates = racingCreates(store, q.productKey, 30, 'q');
      await store.updateProduct(q.productKey, { deviceLimit: 5 }, T1);
      const atUpdate = await store.countDevices(q.productKey);
      await settle(creates, ['DEVICE_LIMIT_REACHED']);
      assert.ok((await store.countDevices(q.productKey)) <= Math.max(5, atUpdate));
      assert.deepEqual(await store.productCountMismatches(), []);
    }));
  });
}
