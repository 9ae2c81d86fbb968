/**
 * Registry use cases: products and devices, their secrets and switches. Validation of names
 * and limits lives in core; invariants that need atomicity live in the store.
 */
import { ThingAuthError } from '../core/errors.js';
import {
  assertDeviceName,
  assertProductKey,
  assertProductName,
  assertSecret,
  generateDeviceName,
  generateDeviceSecret,
  generateProductKey,
  generateProductSecret,
  IotIdSequence,
} from '../core/names.js';
import { deviceStatus, type Device, type NodeType, type Product, type ProductSettingsInput, type PublicDevice } from '../core/records.js';
import { assertGraceSeconds, DEFAULT_SECRET_GRACE_SECONDS } from '../core/secret-rotation.js';
import { constantTimeEquals } from '../core/sign.js';
import { x509SettingsConflict } from '../core/x509-settings.js';
import type { DeviceFilter, DeviceKeysetFilter, NewDevice, Page, ProductPatch, Store } from '../store/store.js';
import type { RegistryEvents } from './events.js';

export interface RegistryLimits {
  deviceLimit: number;
  subDeviceLimit: number;
}

export interface CreateProductInput extends ProductSettingsInput {
  productName: string;
  /** Migration: keep an existing ProductKey/ProductSecret. */
  productKey?: string;
  productSecret?: string;
}

export const MAX_BATCH = 10_000;

export class Registry {
  /** One ascending sequence for every device this process creates (see IotIdSequence). */
  private readonly iotIds = new IotIdSequence();

  constructor(
    private readonly store: Store,
    private readonly events: RegistryEvents,
    readonly limits: RegistryLimits,
    private readonly now: () => Date = () => new Date(),
  ) {}

  private ts(): string {
    return this.now().toISOString();
  }

  // ---- products ----

  async createProduct(input: CreateProductInput): Promise<Product> {
    assertProductName(input.productName);
    if (input.productKey !== undefined) assertProductKey(input.productKey);
    if (input.productSecret !== undefined) assertSecret(input.productSecret, 'productSecret');
    if (input.preRegistrationFree && !input.dynamicRegistration) {
      throw new ThingAuthError('INVALID_ARGUMENT', 'preRegistrationFree requires dynamicRegistration', { field: 'preRegistrationFree' });
    }
    const at = this.ts();
    const product: Product = {
      productKey: input.productKey ?? generateProductKey(),
      productName: input.productName,
      productSecret: input.productSecret ?? generateProductSecret(),
      nodeType: input.nodeType ?? 'DEVICE',
      dynamicRegistration: input.dynamicRegistration ?? false,
      preRegistrationFree: input.preRegistrationFree ?? false,
      requireTls: input.requireTls ?? false,
      replayProtection: input.replayProtection ?? false,
      deviceLimit: input.deviceLimit ?? null,
      description: input.description ?? '',
      createdAt: at,
      updatedAt: at,
      ...(input.timestampWindowSeconds ? { timestampWindowSeconds: input.timestampWindowSeconds } : {}),
    };
    await this.store.createProduct(product);
    return product;
  }

  async getProduct(productKey: string): Promise<Product> {
    const p = await this.store.getProduct(productKey);
    if (!p) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${productKey} not found`);
    return p;
  }

  listProducts(offset: number, limit: number): Promise<Page<Product>> {
    return this.store.listProducts(offset, limit);
  }

  async updateProduct(productKey: string, patch: ProductPatch): Promise<Product> {
    if (patch.productName !== undefined) assertProductName(patch.productName);
    const current = await this.getProduct(productKey);
    const dyn = patch.dynamicRegistration ?? current.dynamicRegistration;
    const free = patch.preRegistrationFree ?? current.preRegistrationFree;
    if (free && !dyn) {
      throw new ThingAuthError('INVALID_ARGUMENT', 'preRegistrationFree requires dynamicRegistration', { field: 'preRegistrationFree' });
    }
    await this.assertFitsAuthMode(productKey, patch);
    // nodeType is refused while the product has devices, and preRegistrationFree without
    // dynamicRegistration, by the store itself: decided in the transaction that writes, so a
    // create or another update on another node cannot slip in between (issue 13).
    const updated = await this.store.updateProduct(productKey, patch, this.ts());
    this.events.emit('product.changed', { productKey });
    return updated;
  }

  /**
   * An X.509 product (docs/x509.md) keeps dynamic registration off and stays directly
   * connected: registration would hand out DeviceSecrets that every secret login of the
   * product refuses (`certificate_required`), and sub-devices log in with secrets.
   */
  async assertFitsAuthMode(productKey: string, patch: Pick<ProductPatch, 'dynamicRegistration' | 'nodeType'>): Promise<void> {
    if (patch.dynamicRegistration !== true && patch.nodeType !== 'SUB_DEVICE') return;
    // Also decided by the store inside the writing transaction (racing nodes); checked here first for the dry run of imports.
    const refused = x509SettingsConflict(productKey, (await this.store.getProductAuth(productKey))?.authMode ?? 'secret', patch.dynamicRegistration === true, patch.nodeType ?? 'DEVICE');
    if (refused) throw refused;
  }

  async deleteProduct(productKey: string): Promise<void> {
    await this.store.deleteProduct(productKey);
    this.events.emit('product.changed', { productKey });
  }

  deviceLimitOf(product: Product): number {
    return product.deviceLimit ?? this.limits.deviceLimit;
  }

  // ---- devices ----

  /** Creates devices by name (or generated names). All or nothing. Returned devices carry their secrets. */
  async createDevices(productKey: string, input: { deviceNames?: string[]; count?: number; nickname?: string | null }): Promise<Device[]> {
    await this.getProduct(productKey);
    let names: string[];
    if (input.deviceNames !== undefined) {
      names = input.deviceNames;
      names.forEach((n, i) => assertDeviceName(n, input.deviceNames!.length === 1 ? 'deviceName' : `deviceNames[${i}]`));
    } else {
      const count = input.count ?? 1;
      names = Array.from({ length: count }, () => generateDeviceName());
    }
    if (names.length === 0 || names.length > MAX_BATCH) {
      throw new ThingAuthError('INVALID_ARGUMENT', `a batch holds 1 to ${MAX_BATCH} devices`, { field: 'deviceNames' });
    }
    const news: NewDevice[] = names.map((deviceName) => ({
      iotId: this.iotIds.next(),
      deviceName,
      deviceSecret: generateDeviceSecret(),
      nickname: input.nickname ?? null,
    }));
    // The store applies the product's deviceLimit as it is when the create commits (this
    // default only when the product has none), not a value read here before.
    return this.store.createDevices(productKey, news, this.limits.deviceLimit, this.ts());
  }

  async getDeviceRecord(productKey: string, deviceName: string): Promise<Device> {
    const d = await this.store.getDevice(productKey, deviceName);
    if (!d) {
      if (!(await this.store.getProduct(productKey))) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${productKey} not found`);
      throw new ThingAuthError('DEVICE_NOT_FOUND', `device ${deviceName} not found in product ${productKey}`);
    }
    return d;
  }

  async toPublic(d: Device): Promise<PublicDevice> {
    let gateway: PublicDevice['gateway'] = null;
    if (d.gatewayIotId) {
      const gw = await this.store.getDeviceByIotId(d.gatewayIotId);
      if (gw) gateway = { productKey: gw.productKey, deviceName: gw.deviceName, iotId: gw.iotId };
    }
    return {
      iotId: d.iotId,
      productKey: d.productKey,
      deviceName: d.deviceName,
      nickname: d.nickname,
      status: deviceStatus(d),
      createdAt: d.createdAt,
      activatedAt: d.activatedAt,
      lastOnlineAt: d.lastOnlineAt,
      gateway,
      lastAuthError: d.lastAuthError,
      lastAuthErrorAt: d.lastAuthErrorAt,
      lastAuthErrorSource: d.lastAuthErrorSource,
    };
  }

  async getDevice(productKey: string, deviceName: string): Promise<PublicDevice> {
    return this.toPublic(await this.getDeviceRecord(productKey, deviceName));
  }

  async listDevices(productKey: string, filter: DeviceFilter, offset: number, limit: number): Promise<Page<PublicDevice>> {
    await this.getProduct(productKey);
    const page = await this.store.listDevices(productKey, filter, offset, limit);
    const items = await Promise.all(page.items.map((d) => this.toPublic(d)));
    return { ...page, items };
  }

  /**
   * One keyset page of a product's devices in DeviceName order, strictly after `after` (null =
   * from the start). One row more than asked tells whether a next page exists.
   */
  async listDevicesAfter(productKey: string, after: string | null, limit: number, filter: DeviceKeysetFilter): Promise<{ items: PublicDevice[]; last: string | null; more: boolean }> {
    await this.getProduct(productKey);
    const rows = await this.store.listDevicesAfter(productKey, after, limit + 1, filter);
    const page = rows.slice(0, limit);
    const items = await Promise.all(page.map((d) => this.toPublic(d)));
    return { items, last: page[page.length - 1]?.deviceName ?? null, more: rows.length > limit };
  }

  private ref(d: Device) {
    return { iotId: d.iotId, productKey: d.productKey, deviceName: d.deviceName };
  }

  async setEnabled(productKey: string, deviceName: string, enabled: boolean): Promise<PublicDevice> {
    const d = await this.getDeviceRecord(productKey, deviceName);
    const updated = (await this.store.updateDevice(d.iotId, { enabled }))!;
    this.events.emit('device.changed', this.ref(d));
    this.events.emit(enabled ? 'device.enabled' : 'device.disabled', this.ref(d));
    return this.toPublic(updated);
  }

  async resetDevice(productKey: string, deviceName: string): Promise<PublicDevice> {
    const d = await this.getDeviceRecord(productKey, deviceName);
    const updated = (await this.store.resetDevice(d.iotId))!;
    this.events.emit('device.changed', this.ref(d));
    this.events.emit('device.reset', this.ref(d));
    return this.toPublic(updated);
  }

  async deleteDevice(productKey: string, deviceName: string): Promise<void> {
    const d = await this.getDeviceRecord(productKey, deviceName);
    // A sub-device leaves its gateway's topology with it; the gateway is told (topology.changed).
    const gateway = d.gatewayIotId ? await this.store.getDeviceByIotId(d.gatewayIotId) : undefined;
    // A gateway's sub-devices are detached by the store with it: read them first, so their
    // loss of the gateway can be announced (and their sessions through it ended).
    const subs = await this.subDevicesOf(d);
    await this.store.deleteDevice(d.iotId);
    this.events.emit('device.changed', this.ref(d));
    this.events.emit('device.deleted', this.ref(d));
    if (gateway) this.events.emit('topology.changed', { gateway: this.ref(gateway), removed: [this.ref(d)], added: [], byGateway: false });
    if (subs.length > 0) {
      for (const sub of subs) this.events.emit('device.changed', this.ref(sub));
      this.events.emit('topology.changed', { gateway: this.ref(d), removed: subs.map((sub) => this.ref(sub)), added: [], byGateway: false });
    }
  }

  /** Every sub-device attached to this gateway (of any product), read in pages. */
  private async subDevicesOf(gateway: Device): Promise<Device[]> {
    const out: Device[] = [];
    for (let offset = 0; ; offset += 1000) {
      // As TopologyService.allSubDevices: with gatewayIotId the store lists sub-devices of any product.
      const page = await this.store.listDevices(gateway.productKey, { gatewayIotId: gateway.iotId }, offset, 1000);
      out.push(...page.items);
      if (page.items.length < 1000) return out;
    }
  }

  /**
   * Every device's credentials of a product, page by page in DeviceName order (for the
   * production-line export). Keyset paging keeps each page cheap, so a 500,000-device export
   * never holds the store for long; devices created meanwhile may or may not be included.
   */
  async *deviceCredentials(productKey: string, pageSize = 2000): AsyncGenerator<{ iotId: string; deviceName: string; deviceSecret: string }[]> {
    await this.getProduct(productKey);
    let after: string | null = null;
    for (;;) {
      const items = await this.store.listDevicesAfter(productKey, after, pageSize);
      if (items.length === 0) return;
      yield items.map((d) => ({ iotId: d.iotId, deviceName: d.deviceName, deviceSecret: d.deviceSecret }));
      if (items.length < pageSize) return;
      after = items[items.length - 1]!.deviceName;
    }
  }

  /**
   * Issues a new DeviceSecret (generated, or `newSecret` from the operator) and keeps the old
   * one valid for `graceSeconds` (default 7 days; 0 = the old one stops working at once), so
   * a fleet can be re-keyed over the air: both secrets log in until the grace ends. Only one
   * previous secret is kept: rotating again during a grace makes the then-current secret the
   * previous one and the one before it stops working at once. Live sessions are not closed
   * (they were authenticated when they connected); 'device.changed' drops cached records.
   */
  async rotateDeviceSecret(
    productKey: string,
    deviceName: string,
    opts: { graceSeconds?: number; newSecret?: string } = {},
  ): Promise<{ device: Device; previousSecretExpiresAt: string | null }> {
    const graceSeconds = opts.graceSeconds ?? DEFAULT_SECRET_GRACE_SECONDS;
    assertGraceSeconds(graceSeconds);
    if (opts.newSecret !== undefined) assertSecret(opts.newSecret, 'deviceSecret');
    const d = await this.getDeviceRecord(productKey, deviceName);
    if (opts.newSecret !== undefined && constantTimeEquals(d.deviceSecret, opts.newSecret)) {
      throw new ThingAuthError('INVALID_ARGUMENT', 'deviceSecret must differ from the current secret', { field: 'deviceSecret' });
    }
    const expiresAt = graceSeconds > 0 ? new Date(this.now().getTime() + graceSeconds * 1000).toISOString() : null;
    const updated = await this.store.rotateDeviceSecret(d.iotId, opts.newSecret ?? generateDeviceSecret(), expiresAt);
    if (!updated) throw new ThingAuthError('DEVICE_NOT_FOUND', `device ${deviceName} not found in product ${productKey}`);
    this.events.emit('device.changed', this.ref(d));
    return { device: updated, previousSecretExpiresAt: expiresAt };
  }

  async getDeviceSecret(productKey: string, deviceName: string) {
    const d = await this.getDeviceRecord(productKey, deviceName);
    return { productKey: d.productKey, deviceName: d.deviceName, iotId: d.iotId, deviceSecret: d.deviceSecret };
  }
}
