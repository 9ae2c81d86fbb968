/**
 * The core of the Store contract: products, devices, presence, topology, applications, audit,
 * meta, and secrets at rest. Each case gets a fresh, migrated store from `makeStore` and closes it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ThingAuthError } from '../../../src/core/errors.js';
import { deviceStatus, type Product } from '../../../src/core/records.js';
import type { Store } from '../../../src/store/store.js';
import { makeDevice, makeProduct, rejectsWith, T0, T1, T2, uid, withStore as withFreshStore, type MakeStore, type StoreContractOptions } from '../fixtures.js';

export function coreContract(makeStore: MakeStore, opts: StoreContractOptions): void {
  /** Runs `fn` on a fresh store and always closes it. */
  const withStore = (fn: (store: Store) => Promise<void>) => withFreshStore(makeStore, fn);

  /** A product with `n` devices named `${prefix}-000`..., for tests that need some. */
  async function seeded(store: Store, n: number, prefix = 'dev', product: Partial<Product> = {}) {
    const p = makeProduct(product);
    await store.createProduct(p);
    const devices = n === 0 ? [] : await store.createDevices(p.productKey, Array.from({ length: n }, (_, i) => makeDevice(`${prefix}-${String(i).padStart(3, '0')}`)), 1000, T0);
    return { product: p, devices };
  }

  describe('core', () => {
    describe('migrations', () => {
      it('migrate is idempotent', withStore(async (store) => {
        await store.migrate();
        await store.migrate();
        const { product } = await seeded(store, 1);
        assert.ok(await store.getProduct(product.productKey));
      }));
    });

    describe('products', () => {
      it('create, get (all fields round-trip), list with paging', withStore(async (store) => {
        const a = makeProduct({ productName: 'First one', nodeType: 'GATEWAY', dynamicRegistration: true, preRegistrationFree: true, requireTls: true, replayProtection: true, deviceLimit: 42, description: 'desc' });
        const b = makeProduct({ createdAt: T1, updatedAt: T1 });
        const c = makeProduct({ createdAt: T2, updatedAt: T2 });
        for (const p of [a, b, c]) await store.createProduct(p);
        assert.deepEqual(await store.getProduct(a.productKey), a);
        assert.deepEqual(await store.getProduct(b.productKey), b);
        assert.equal(await store.getProduct('a1Missing000'), undefined);

        const all = await store.listProducts(0, 100);
        assert.equal(all.total, 3);
        assert.deepEqual(all.items.map((p) => p.productKey), [a.productKey, b.productKey, c.productKey]);
        const page = await store.listProducts(1, 1);
        assert.deepEqual(page, { items: [b], total: 3, offset: 1, limit: 1 });
      }));

      it('a duplicate ProductKey is PRODUCT_KEY_TAKEN and changes nothing', withStore(async (store) => {
        const a = makeProduct({ productName: 'Original name' });
        await store.createProduct(a);
        await rejectsWith(store.createProduct({ ...a, productName: 'Other name', productSecret: 'OtherSecret0001' }), 'PRODUCT_KEY_TAKEN');
        assert.deepEqual(await store.getProduct(a.productKey), a);
        assert.equal((await store.listProducts(0, 10)).total, 1);
      }));

      it('update applies only the given fields and sets updatedAt', withStore(async (store) => {
        const a = makeProduct();
        await store.createProduct(a);
        const u = await store.updateProduct(a.productKey, { productName: 'Renamed', dynamicRegistration: true, deviceLimit: 7 }, T1);
        assert.deepEqual(u, { ...a, productName: 'Renamed', dynamicRegistration: true, deviceLimit: 7, updatedAt: T1 });
        assert.deepEqual(await store.getProduct(a.productKey), u);
        const back = await store.updateProduct(a.productKey, { deviceLimit: null, dynamicRegistration: false }, T2);
        assert.equal(back.deviceLimit, null);
        assert.equal(back.dynamicRegistration, false);
        assert.equal(back.productName, 'Renamed');
        await rejectsWith(store.updateProduct('a1Missing000', { productName: 'x' }, T1), 'PRODUCT_NOT_FOUND');
      }));

      it('delete is refused while devices exist, then works', withStore(async (store) => {
        const { product, devices } = await seeded(store, 2);
        const e = await rejectsWith(store.deleteProduct(product.productKey), 'PRODUCT_HAS_DEVICES');
        assert.match(e.message, /2/);
        assert.ok(await store.getProduct(product.productKey));
        for (const d of devices) assert.equal(await store.deleteDevice(d.iotId), true);
        await store.deleteProduct(product.productKey);
        assert.equal(await store.getProduct(product.productKey), undefined);
        await rejectsWith(store.deleteProduct(product.productKey), 'PRODUCT_NOT_FOUND');
        // The key is free again.
        await store.createProduct(product);
        assert.equal(await store.countDevices(product.productKey), 0);
      }));
    });

    describe('devices', () => {
      it('createDevices returns stored devices with secrets; get by name and by iotId', withStore(async (store) => {
        const p = makeProduct();
        await store.createProduct(p);
        const news = [makeDevice('dev-a', { nickname: 'Kitchen' }), makeDevice('dev-b')];
        const created = await store.createDevices(p.productKey, news, 10, T0);
        assert.equal(created.length, 2);
        for (const [i, d] of created.entries()) {
          assert.equal(d.iotId, news[i]!.iotId);
          assert.equal(d.productKey, p.productKey);
          assert.equal(d.deviceName, news[i]!.deviceName);
          assert.equal(d.deviceSecret, news[i]!.deviceSecret);
          assert.equal(d.enabled, true);
          assert.equal(d.online, false);
          assert.equal(d.createdAt, T0);
          assert.equal(d.activatedAt, null);
          assert.equal(d.lastOnlineAt, null);
          assert.equal(d.gatewayIotId, null);
          assert.equal(deviceStatus(d), 'UNACTIVE');
        }
        assert.equal(created[0]!.nickname, 'Kitchen');
        assert.deepEqual(await store.getDevice(p.productKey, 'dev-a'), created[0]);
        assert.deepEqual(await store.getDeviceByIotId(created[1]!.iotId), created[1]);
        assert.equal(await store.getDevice(p.productKey, 'dev-zz'), undefined);
        assert.equal(await store.getDeviceByIotId('iotMissing'), undefined);
        assert.equal(await store.countDevices(p.productKey), 2);
      }));

      it('DeviceName is unique per product, not across products', withStore(async (store) => {
        const { product } = await seeded(store, 1, 'same');
        const other = makeProduct();
        await store.createProduct(other);
        await store.createDevices(other.productKey, [makeDevice('same-000')], 10, T0);
        const e = await rejectsWith(store.createDevices(product.productKey, [makeDevice('same-000')], 10, T0), 'DEVICE_NAME_TAKEN');
        assert.deepEqual(e.details?.names, ['same-000']);
        assert.equal(await store.countDevices(product.productKey), 1);
        assert.equal(await store.countDevices(other.productKey), 1);
      }));

      it('createDevices is all or nothing: a taken or repeated name writes none', withStore(async (store) => {
        const { product } = await seeded(store, 1, 'old');
        const batch = [makeDevice('new-1'), makeDevice('old-000'), makeDevice('new-2')];
        const e = await rejectsWith(store.createDevices(product.productKey, batch, 100, T0), 'DEVICE_NAME_TAKEN');
        assert.deepEqual(e.details?.names, ['old-000']);
        assert.equal(await store.getDevice(product.productKey, 'new-1'), undefined);
        assert.equal(await store.getDevice(product.productKey, 'new-2'), undefined);
        await rejectsWith(store.createDevices(product.productKey, [makeDevice('rep-1'), makeDevice('rep-1')], 100, T0), 'DEVICE_NAME_TAKEN');
        assert.equal(await store.getDevice(product.productKey, 'rep-1'), undefined);
        assert.equal(await store.countDevices(product.productKey), 1);
        await rejectsWith(store.createDevices('a1Missing000', [makeDevice('x-001')], 100, T0), 'PRODUCT_NOT_FOUND');
      }));

      it('the device limit is enforced: a batch that would exceed it writes nothing', withStore(async (store) => {
        const { product } = await seeded(store, 3);
        const e = await rejectsWith(store.createDevices(product.productKey, [makeDevice('lim-1'), makeDevice('lim-2')], 4, T0), 'DEVICE_LIMIT_REACHED');
        assert.equal(e.details?.limit, 4);
        assert.equal(await store.countDevices(product.productKey), 3);
        assert.equal(await store.getDevice(product.productKey, 'lim-1'), undefined);
        await store.createDevices(product.productKey, [makeDevice('lim-1')], 4, T0);
        await rejectsWith(store.createDevices(product.productKey, [makeDevice('lim-2')], 4, T0), 'DEVICE_LIMIT_REACHED');
        assert.equal(await store.countDevices(product.productKey), 4);
      }));

      it('concurrent creates never exceed the limit nor duplicate a name', withStore(async (store) => {
        const p = makeProduct();
        await store.createProduct(p);
        const results = await Promise.allSettled(Array.from({ length: 30 }, (_, i) => store.createDevices(p.productKey, [makeDevice(`conc-${i}`)], 10, T0)));
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 10);
        for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as ThingAuthError).kind, 'DEVICE_LIMIT_REACHED');
        assert.equal(await store.countDevices(p.productKey), 10);
        assert.equal((await store.listDevices(p.productKey, {}, 0, 100)).total, 10);

        const same = await Promise.allSettled(Array.from({ length: 20 }, () => store.createDevices(p.productKey, [makeDevice('same-name')], 1000, T0)));
        assert.equal(same.filter((r) => r.status === 'fulfilled').length, 1);
        assert.equal(await store.countDevices(p.productKey), 11);
      }));

      it('listDevices filters by status and name substring, pages, and counts', withStore(async (store) => {
        const { product, devices } = await seeded(store, 6, 'lst');
        const [d0, d1, d2, d3] = devices;
        await store.updateDevice(d0!.iotId, { enabled: false });
        await store.markOnline(d1!.iotId, T1);
        await store.markOnline(d2!.iotId, T1);
        await store.markOffline([d2!.iotId], T2);
        const names = async (filter: Parameters<Store['listDevices']>[1]) =>
          (await store.listDevices(product.productKey, filter, 0, 100)).items.map((d) => d.deviceName);
        assert.deepEqual(await names({ status: 'DISABLE' }), [d0!.deviceName]);
        assert.deepEqual(await names({ status: 'ONLINE' }), [d1!.deviceName]);
        assert.deepEqual(await names({ status: 'OFFLINE' }), [d2!.deviceName]);
        assert.deepEqual(await names({ status: 'UNACTIVE' }), ['lst-003', 'lst-004', 'lst-005']);
        assert.deepEqual(await names({ nameContains: '-00' }), devices.map((d) => d.deviceName));
        assert.deepEqual(await names({ nameContains: '5' }), ['lst-005']);
        assert.deepEqual(await names({ nameContains: '%' }), [], 'the substring is literal, not a pattern');
        assert.deepEqual(await names({ nameContains: '_' }), [], 'the substring is literal, not a pattern');
        assert.deepEqual(await names({ status: 'UNACTIVE', nameContains: '4' }), ['lst-004']);
        const page = await store.listDevices(product.productKey, {}, 2, 2);
        assert.equal(page.total, 6);
        assert.equal(page.offset, 2);
        assert.equal(page.limit, 2);
        assert.deepEqual(page.items.map((d) => d.deviceName), [d2!.deviceName, d3!.deviceName]);
        assert.equal((await store.listDevices(product.productKey, {}, 10, 5)).items.length, 0);
      }));

      it('listDevicesAfter walks a product in DeviceName order', withStore(async (store) => {
        const p = makeProduct();
        await store.createProduct(p);
        const names = ['m-node', 'a-node', 'z-node', 'b-node', 'A-node'];
        await store.createDevices(p.productKey, names.map((n) => makeDevice(n)), 100, T0);
        const other = makeProduct();
        await store.createProduct(other);
        await store.createDevices(other.productKey, [makeDevice('c-node')], 100, T0);
        const seen: string[] = [];
        let after: string | null = null;
        for (;;) {
          const items = await store.listDevicesAfter(p.productKey, after, 2);
          if (items.length === 0) break;
          assert.ok(items.length <= 2);
          for (const d of items) {
            assert.equal(d.productKey, p.productKey);
            assert.ok(d.deviceSecret.length > 0, 'carries the secret (for the export)');
          }
          seen.push(...items.map((d) => d.deviceName));
          after = items[items.length - 1]!.deviceName;
        }
        assert.deepEqual(seen, [...names].sort());
        assert.deepEqual(await store.listDevicesAfter('a1Missing000', null, 10), []);
      }));

      it('updateDevice changes the given fields only; unknown iotId gives undefined', withStore(async (store) => {
        const { product, devices } = await seeded(store, 1);
        const d = devices[0]!;
        const u = await store.updateDevice(d.iotId, { enabled: false, nickname: 'Renamed', deviceSecret: 'NewSecret1234567890', lastAuthError: 'bad signature' });
        assert.deepEqual(u, { ...d, enabled: false, nickname: 'Renamed', deviceSecret: 'NewSecret1234567890', lastAuthError: 'bad signature' });
        assert.deepEqual(await store.getDevice(product.productKey, d.deviceName), u);
        assert.equal(deviceStatus(u!), 'DISABLE');
        assert.deepEqual(await store.updateDevice(d.iotId, {}), u);
        assert.equal(await store.updateDevice('iotMissing', { enabled: true }), undefined);
      }));

      it('lastAuthError keeps its time and source; a new device has none (issue 11 item 16)', withStore(async (store) => {
        const { product, devices } = await seeded(store, 1);
        const d = devices[0]!;
        assert.equal(d.lastAuthError, null);
        assert.equal(d.lastAuthErrorAt, null);
        assert.equal(d.lastAuthErrorSource, null);
        const patch = { lastAuthError: 'signature does not match', lastAuthErrorAt: T1, lastAuthErrorSource: 'mqtt/tcp 203.0.113.7' };
        const u = await store.updateDevice(d.iotId, patch);
        assert.deepEqual(u, { ...d, ...patch });
        assert.deepEqual(await store.getDevice(product.productKey, d.deviceName), u);
        // A later refusal from elsewhere replaces all three.
        const later = { lastAuthError: 'device is disabled', lastAuthErrorAt: T2, lastAuthErrorSource: 'https 198.51.100.2' };
        assert.deepEqual(await store.updateDevice(d.iotId, later), { ...d, ...later });
      }));

      it('deleteDevice removes it, lowers the count, and detaches its sub-devices', withStore(async (store) => {
        const { product, devices } = await seeded(store, 3);
        const [gw, sub1, sub2] = devices;
        await store.attachSubDevices(gw!.iotId, [sub1!.iotId, sub2!.iotId], 10);
        assert.equal(await store.deleteDevice(gw!.iotId), true);
        assert.equal(await store.deleteDevice(gw!.iotId), false);
        assert.equal(await store.getDeviceByIotId(gw!.iotId), undefined);
        assert.equal((await store.getDeviceByIotId(sub1!.iotId))!.gatewayIotId, null);
        assert.equal((await store.getDeviceByIotId(sub2!.iotId))!.gatewayIotId, null);
        assert.equal(await store.countDevices(product.productKey), 2);
        // The name is free again.
        await store.createDevices(product.productKey, [makeDevice(gw!.deviceName)], 10, T1);
      }));

      it('getOrCreateDevice creates once, then returns the existing device; respects the limit', withStore(async (store) => {
        const p = makeProduct();
        await store.createProduct(p);
        const first = await store.getOrCreateDevice(p.productKey, makeDevice('goc-1'), 2, T0);
        assert.equal(first.created, true);
        const again = await store.getOrCreateDevice(p.productKey, makeDevice('goc-1'), 2, T1);
        assert.equal(again.created, false);
        assert.deepEqual(again.device, first.device, 'the existing device (and its secret) is returned untouched');
        await store.getOrCreateDevice(p.productKey, makeDevice('goc-2'), 2, T0);
        await rejectsWith(store.getOrCreateDevice(p.productKey, makeDevice('goc-3'), 2, T0), 'DEVICE_LIMIT_REACHED');
        assert.equal((await store.getOrCreateDevice(p.productKey, makeDevice('goc-2'), 2, T0)).created, false, 'existing devices are found even at the limit');
        assert.equal(await store.countDevices(p.productKey), 2);
        const race = await Promise.all(Array.from({ length: 10 }, () => store.getOrCreateDevice(p.productKey, makeDevice('goc-r'), 100, T0)));
        assert.equal(race.filter((r) => r.created).length, 1);
        assert.equal(new Set(race.map((r) => r.device.iotId)).size, 1);
        await rejectsWith(store.getOrCreateDevice('a1Missing000', makeDevice('goc-x'), 10, T0), 'PRODUCT_NOT_FOUND');
      }));

      it('importDevices: created, identical, conflicts (kept), overwrite, limit', withStore(async (store) => {
        const p = makeProduct();
        await store.createProduct(p);
        const rows = [
          { deviceName: 'imp-1', deviceSecret: 'Secret1aaaaaaaaa', iotId: uid('iot') },
          { deviceName: 'imp-2', deviceSecret: 'Secret2aaaaaaaaa', iotId: uid('iot'), nickname: 'Two', activatedAt: T1 },
        ];
        assert.deepEqual(await store.importDevices(p.productKey, rows, 10, false, T0), { created: 2, identical: 0, overwritten: 0, conflicts: [] });
        const two = await store.getDevice(p.productKey, 'imp-2');
        assert.equal(two?.iotId, rows[1]!.iotId, 'the given iotId is kept');
        assert.equal(two?.nickname, 'Two');
        assert.equal(two?.activatedAt, T1);
        assert.deepEqual(await store.importDevices(p.productKey, rows, 10, false, T0), { created: 0, identical: 2, overwritten: 0, conflicts: [] });

        const changed = [{ ...rows[0]!, deviceSecret: 'Changed1aaaaaaaa' }, { deviceName: 'imp-3', deviceSecret: 'Secret3aaaaaaaaa', iotId: uid('iot') }];
        assert.deepEqual(await store.importDevices(p.productKey, changed, 10, false, T0), { created: 1, identical: 0, overwritten: 0, conflicts: ['imp-1'] });
        assert.equal((await store.getDevice(p.productKey, 'imp-1'))!.deviceSecret, 'Secret1aaaaaaaaa', 'a conflict is not written');
        assert.deepEqual(await store.importDevices(p.productKey, changed, 10, true, T0), { created: 0, identical: 1, overwritten: 1, conflicts: [] });
        assert.equal((await store.getDevice(p.productKey, 'imp-1'))!.deviceSecret, 'Changed1aaaaaaaa');
        assert.equal(await store.countDevices(p.productKey), 3);

        const over = [{ deviceName: 'imp-4', deviceSecret: 'Secret4aaaaaaaaa', iotId: uid('iot') }, { deviceName: 'imp-5', deviceSecret: 'Secret5aaaaaaaaa', iotId: uid('iot') }];
        await rejectsWith(store.importDevices(p.productKey, over, 4, false, T0), 'DEVICE_LIMIT_REACHED');
        assert.equal(await store.getDevice(p.productKey, 'imp-4'), undefined, 'all or nothing');
        assert.equal(await store.countDevices(p.productKey), 3);
        await rejectsWith(store.importDevices(p.productKey, [{ deviceName: 'imp-6', deviceSecret: 'Secret6aaaaaaaaa', iotId: rows[0]!.iotId }], 10, false, T0), 'CONFLICT');
        assert.equal(await store.getDevice(p.productKey, 'imp-6'), undefined);
      }));
    });

    describe('presence and lifecycle', () => {
      it('markOnline activates once; offline keeps activation; markAllOffline', withStore(async (store) => {
        const { devices } = await seeded(store, 2);
        const [a, b] = devices;
        assert.deepEqual(await store.markOnline(a!.iotId, T1), { activated: true });
        let got = (await store.getDeviceByIotId(a!.iotId))!;
        assert.equal(got.activatedAt, T1);
        assert.equal(got.lastOnlineAt, T1);
        assert.equal(deviceStatus(got), 'ONLINE');
        assert.deepEqual(await store.markOnline(a!.iotId, T2), { activated: false });
        got = (await store.getDeviceByIotId(a!.iotId))!;
        assert.equal(got.activatedAt, T1, 'activation time is the first one');
        assert.equal(got.lastOnlineAt, T2);
        await store.markOffline([a!.iotId], T2);
        assert.equal(deviceStatus((await store.getDeviceByIotId(a!.iotId))!), 'OFFLINE');
        await store.markOffline([], T2);
        await store.markOnline(a!.iotId, T2);
        await store.markOnline(b!.iotId, T2);
        await store.markAllOffline(T2);
        for (const d of devices) assert.equal((await store.getDeviceByIotId(d.iotId))!.online, false);
        assert.deepEqual(await store.markOnline('iotMissing', T1), { activated: false });
      }));

      it('resetDevice: back to UNACTIVE, credential slots and randoms cleared, secret kept', withStore(async (store) => {
        const { devices } = await seeded(store, 1);
        const d = devices[0]!;
        await store.issueDeviceTokenSlot(d.iotId, { clientId: 'dev-000.cid', deviceToken: 'TokenTokenTokenToken' }, 5, T1);
        await store.updateDevice(d.iotId, { lastAuthError: 'x', lastAuthErrorAt: T1, lastAuthErrorSource: 'mqtt/tcp 203.0.113.7' });
        await store.markOnline(d.iotId, T1);
        assert.equal(await store.useRegistrationRandom(d.iotId, 'r-123', T1), true);
        assert.equal(await store.useRegistrationRandom(d.iotId, 'r-123', T1), false, 'a random is single-use');
        assert.equal(await store.useRegistrationRandom(d.iotId, 'r-456', T1), true);
        const r = (await store.resetDevice(d.iotId))!;
        assert.equal(deviceStatus(r), 'UNACTIVE');
        assert.equal(r.activatedAt, null);
        assert.equal(r.online, false);
        assert.deepEqual(await store.listDeviceTokenSlots(d.iotId), []);
        assert.equal(r.deviceSecret, d.deviceSecret);
        assert.equal(r.lastAuthError, null);
        assert.equal(r.lastAuthErrorAt, null);
        assert.equal(r.lastAuthErrorSource, null);
        assert.equal(await store.useRegistrationRandom(d.iotId, 'r-123', T2), true, 'randoms are forgotten on reset');
        assert.equal(await store.resetDevice('iotMissing'), undefined);
      }));
    });

    describe('registration randoms', () => {
      it('racing uses of one random: exactly one wins (a pool of connections must not let two through)', withStore(async (store) => {
        const { devices } = await seeded(store, 1);
        const d = devices[0]!;
        const results = await Promise.all(Array.from({ length: 20 }, () => store.useRegistrationRandom(d.iotId, 'raced-random', T1)));
        assert.equal(results.filter(Boolean).length, 1);
        assert.equal(await store.useRegistrationRandom(d.iotId, 'raced-random', T2), false);
      }));
    });

    describe('topology', () => {
      it('attach within the limit, count, move between gateways, detach', withStore(async (store) => {
        const { devices } = await seeded(store, 6);
        const [gw1, gw2, s1, s2, s3, s4] = devices;
        await store.attachSubDevices(gw1!.iotId, [s1!.iotId, s2!.iotId], 3);
        assert.equal(await store.countSubDevices(gw1!.iotId), 2);
        assert.equal((await store.getDeviceByIotId(s1!.iotId))!.gatewayIotId, gw1!.iotId);
        // Re-attaching what is already attached does not count twice.
        await store.attachSubDevices(gw1!.iotId, [s1!.iotId, s1!.iotId, s3!.iotId], 3);
        assert.equal(await store.countSubDevices(gw1!.iotId), 3);
        const e = await rejectsWith(store.attachSubDevices(gw1!.iotId, [s4!.iotId], 3), 'SUB_DEVICE_LIMIT_REACHED');
        assert.equal(e.details?.limit, 3);
        assert.equal((await store.getDeviceByIotId(s4!.iotId))!.gatewayIotId, null, 'nothing written over the limit');
        // A sub-device has one gateway: attaching elsewhere moves it.
        await store.attachSubDevices(gw2!.iotId, [s1!.iotId], 3);
        assert.equal((await store.getDeviceByIotId(s1!.iotId))!.gatewayIotId, gw2!.iotId);
        assert.equal(await store.countSubDevices(gw1!.iotId), 2);
        const subs = await store.listDevices(devices[0]!.productKey, { gatewayIotId: gw1!.iotId }, 0, 10);
        assert.deepEqual(subs.items.map((d) => d.iotId).sort(), [s2!.iotId, s3!.iotId].sort());
        assert.equal(await store.detachSubDevices(gw1!.iotId, [s2!.iotId, s1!.iotId]), 1, 'only its own sub-devices');
        assert.equal(await store.countSubDevices(gw1!.iotId), 1);
        assert.equal((await store.getDeviceByIotId(s1!.iotId))!.gatewayIotId, gw2!.iotId);
      }));

      it('attaching an unknown sub-device is DEVICE_NOT_FOUND and attaches nothing', withStore(async (store) => {
        const { devices } = await seeded(store, 2);
        const [gw, s1] = devices;
        await rejectsWith(store.attachSubDevices(gw!.iotId, [s1!.iotId, 'iotMissing'], 10), 'DEVICE_NOT_FOUND');
        assert.equal((await store.getDeviceByIotId(s1!.iotId))!.gatewayIotId, null);
        assert.equal(await store.countSubDevices(gw!.iotId), 0);
      }));

      it('concurrent attaches never exceed the sub-device limit', withStore(async (store) => {
        const { devices } = await seeded(store, 21);
        const [gw, ...subs] = devices;
        const results = await Promise.allSettled(subs.map((s) => store.attachSubDevices(gw!.iotId, [s.iotId], 5)));
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 5);
        assert.equal(await store.countSubDevices(gw!.iotId), 5);
      }));
    });

    describe('applications, audit, meta', () => {
      it('applications: create, get, list, delete, duplicate refused', withStore(async (store) => {
        const app = { appKey: uid('app'), appSecret: 'AppSecret' + uid(''), name: 'Backend', productKeys: ['a1One', 'a1Two'], createdAt: T0 };
        await store.createApplication(app);
        assert.deepEqual(await store.getApplication(app.appKey), app);
        await rejectsWith(store.createApplication({ ...app, name: 'Other' }), 'CONFLICT');
        const second = { ...app, appKey: uid('app'), createdAt: T1, productKeys: [] };
        await store.createApplication(second);
        assert.deepEqual(await store.listApplications(), [app, second]);
        assert.equal(await store.deleteApplication(app.appKey), true);
        assert.equal(await store.deleteApplication(app.appKey), false);
        assert.equal(await store.getApplication(app.appKey), undefined);
      }));

      it('audit: append, query by each filter newest first, prune', withStore(async (store) => {
        await store.appendAudit([]);
        await store.appendAudit([
          { at: T0, action: 'mqtt.connect', actor: 'device', productKey: 'a1P', deviceName: 'd1', sourceAddress: '10.0.0.1', result: 'allow' },
          { at: T1, action: 'mqtt.connect', actor: 'device', productKey: 'a1P', deviceName: 'd2', result: 'deny', reason: 'bad signature' },
          { at: T2, action: 'api.device.disable', actor: 'admin', productKey: 'a1Q', deviceName: 'd1', result: 'ok' },
        ]);
        const all = await store.queryAudit({});
        assert.deepEqual(all.map((e) => e.at), [T2, T1, T0]);
        assert.equal(all[2]!.sourceAddress, '10.0.0.1');
        assert.equal(all[1]!.reason, 'bad signature');
        assert.equal(all[0]!.sourceAddress, null);
        assert.deepEqual((await store.queryAudit({ productKey: 'a1P' })).map((e) => e.deviceName), ['d2', 'd1']);
        assert.deepEqual((await store.queryAudit({ productKey: 'a1P', deviceName: 'd1' })).map((e) => e.at), [T0]);
        assert.deepEqual((await store.queryAudit({ action: 'api.device.disable' })).map((e) => e.result), ['ok']);
        assert.deepEqual((await store.queryAudit({ since: T1 })).map((e) => e.at), [T2, T1]);
        assert.equal((await store.queryAudit({ limit: 1 })).length, 1);
        assert.equal(await store.pruneAudit(T1), 1);
        assert.deepEqual((await store.queryAudit({})).map((e) => e.at), [T2, T1]);
      }));

      it('meta: get, set, overwrite', withStore(async (store) => {
        assert.equal(await store.getMeta('k'), undefined);
        await store.setMeta('k', 'v1');
        assert.equal(await store.getMeta('k'), 'v1');
        await store.setMeta('k', 'v2');
        assert.equal(await store.getMeta('k'), 'v2');
      }));
    });

    if (opts.rawContents) {
      const raw = opts.rawContents;
      it('secrets are not stored in plaintext', withStore(async (store) => {
        const p = makeProduct({ productSecret: 'PlainProductSecretZ1' });
        await store.createProduct(p);
        await store.createDevices(p.productKey, [makeDevice('sec-dev', { deviceSecret: 'PlainDeviceSecretQ7x9Kk2' })], 10, T0);
        await store.importDevices(p.productKey, [{ deviceName: 'sec-imp', deviceSecret: 'PlainImportedSecretW3', iotId: uid('iot') }], 10, false, T0);
        const d = (await store.getDevice(p.productKey, 'sec-dev'))!;
        await store.issueDeviceTokenSlot(d.iotId, { clientId: 'sec-dev.cid', deviceToken: 'PlainDeviceTokenV8m2' }, 5, T0);
        await store.createApplication({ appKey: uid('app'), appSecret: 'PlainAppSecretJ5n', name: 'App', productKeys: [], createdAt: T0 });
        const dumped = await raw(store);
        assert.ok(dumped.includes(p.productKey), 'the dump is real (it holds the ProductKey)');
        assert.ok(dumped.includes('sec-dev'), 'the dump is real (it holds the DeviceName)');
        for (const secret of ['PlainProductSecretZ1', 'PlainDeviceSecretQ7x9Kk2', 'PlainImportedSecretW3', 'PlainDeviceTokenV8m2', 'PlainAppSecretJ5n']) {
          assert.ok(!dumped.includes(secret), `${secret} is not stored in plaintext`);
        }
        // ...and they still read back.
        assert.equal((await store.getProduct(p.productKey))!.productSecret, 'PlainProductSecretZ1');
        assert.equal((await store.getLiveDeviceTokens(d.iotId))[0]!.deviceToken, 'PlainDeviceTokenV8m2');
      }));
    }
  });
}
