/**
 * Pre-registration-free credential slots (spec 3.2, issue 12 item 2): at most
 * MAX_REGNWL_SLOTS physical devices may activate per (ProductKey, ProductSecret, DeviceName)
 * through `regnwl`, each with its own ClientID and DeviceToken.
 *
 * Before a connwl login, a second physical device cannot be told from a retry of the first
 * (same name, same ProductSecret, any random). So:
 * - a slot issued but not yet activated is handed out again to whoever asks (retries and races
 *   of one device all get the same credential: the same-credential-until-activation rule);
 * - the first connwl login with a slot's token activates it; the next regnwl opens a new slot;
 * - once MAX_REGNWL_SLOTS slots are activated the next regnwl is refused (REGNWL_SLOTS_FULL,
 *   CONNACK 4) until an operator revokes a slot (its number becomes free) or resets the device;
 * - a device that was activated with its DeviceSecret and never used regnwl stays refused
 *   (DEVICE_ALREADY_ACTIVATED), as before slots: the ProductSecret must not add a login to a
 *   pre-registered device in the field.
 * The limit is enforced inside the store, in one transaction (Store.issueDeviceTokenSlot).
 * Sessions stay one per DeviceName (the platform's rule, spec 1.5): a login on another slot
 * takes the session over; presence is the device's.
 */
import { ThingAuthError } from '../core/errors.js';
import { generateDeviceSecret, generateDeviceToken, generateIotId, randomAlnum } from '../core/names.js';
import { MAX_REGNWL_SLOTS, type Device, type DeviceTokenSlot, type Product } from '../core/records.js';
import { constantTimeEquals } from '../core/sign.js';
import type { Store } from '../store/store.js';
import type { RegistryEvents } from './events.js';

/**
 * The issued ClientID: the DeviceName (readable in logs) plus 12 random alphanumerics, so each
 * slot and a reset device get a new one. At most 32 + 1 + 12 = 45 characters, never a `|`.
 */
export function generateIssuedClientId(deviceName: string): string {
  return `${deviceName}.${randomAlnum(12)}`;
}

export interface IssuedCredential {
  device: Device;
  slot: number;
  clientId: string;
  deviceToken: string;
}

export interface ConnwlMatch {
  device: Device;
  slot: number;
  clientId: string;
  /** Whether this slot had never been used to log in before. */
  firstLogin: boolean;
}

export class RegnwlSlots {
  constructor(
    private readonly store: Store,
    private readonly events: RegistryEvents,
    private readonly now: () => Date = () => new Date(),
    readonly maxSlots = MAX_REGNWL_SLOTS,
  ) {}

  private ts(): string {
    return this.now().toISOString();
  }

  private ref(d: Device) {
    return { iotId: d.iotId, productKey: d.productKey, deviceName: d.deviceName };
  }

  /**
   * The regnwl answer for a verified request: creates the device if needed (within the
   * product's deviceLimit as the store reads it when it creates; `defaultDeviceLimit` when the
   * product has none), then a slot.
   */
  async issue(product: Product, deviceName: string, defaultDeviceLimit: number): Promise<IssuedCredential> {
    const { device, created } = await this.store.getOrCreateDevice(
      product.productKey,
      { iotId: generateIotId(), deviceName, deviceSecret: generateDeviceSecret() },
      defaultDeviceLimit,
      this.ts(),
    );
    if (created) this.events.emit('device.changed', this.ref(device));
    if (!device.enabled) throw new ThingAuthError('DEVICE_DISABLED', `device ${deviceName} is disabled`);
    // A device activated with its DeviceSecret, or (issue 11 item 8) bound to a gateway, gets
    // no slot: the store decides it on the row it locks to issue, so a login or a binding on
    // another node cannot slip in between (issue 13).
    const r = await this.store.issueDeviceTokenSlot(device.iotId, { clientId: generateIssuedClientId(deviceName), deviceToken: generateDeviceToken() }, this.maxSlots, this.ts());
    if (!r) throw new ThingAuthError('DEVICE_NOT_FOUND', `device ${deviceName} was deleted during registration`);
    if (r.outcome === 'refused' && r.reason === 'activated') {
      throw new ThingAuthError(
        'DEVICE_ALREADY_ACTIVATED',
        `device ${deviceName} is already activated with its DeviceSecret; an operator must reset it before it can register again`,
      );
    }
    if (r.outcome === 'refused') {
      throw new ThingAuthError('SUB_DEVICE_BOUND', `device ${deviceName} is bound to a gateway; it registers through that gateway, or an operator releases it`);
    }
    if (r.outcome === 'full') {
      throw new ThingAuthError(
        'REGNWL_SLOTS_FULL',
        `all ${this.maxSlots} pre-registration-free slots of device ${deviceName} are activated (at most ${this.maxSlots} physical devices per DeviceName); an operator must revoke a slot or reset the device`,
        { slots: r.live },
      );
    }
    return { device, slot: r.credential.slot, clientId: r.credential.clientId, deviceToken: r.credential.deviceToken };
  }

  /**
   * The `connwl` check (spec 3.3): the (ClientID, DeviceToken) pair must be one live slot of
   * (pk, dn). Works whatever the product's registration switches say now.
   */
  async verifyConnwl(req: { productKey: string; deviceName: string; clientId: string; deviceToken: string }, product: Product | undefined): Promise<ConnwlMatch> {
    if (!product) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${req.productKey} not found`);
    const device = await this.store.getDevice(req.productKey, req.deviceName);
    if (!device) throw new ThingAuthError('DEVICE_NOT_FOUND', `device ${req.deviceName} not found in product ${req.productKey}`);
    const live = await this.store.getLiveDeviceTokens(device.iotId);
    if (live.length === 0) {
      throw new ThingAuthError('UNAUTHENTICATED', 'no pre-registration-free credential is issued for this device; register with authType=regnwl first');
    }
    // Every slot compared, each field in constant time: timing tells neither which slot nor which field failed.
    let match: (typeof live)[number] | undefined;
    for (const c of live) {
      const clientOk = constantTimeEquals(c.clientId, req.clientId);
      const tokenOk = constantTimeEquals(c.deviceToken, req.deviceToken);
      if (clientOk && tokenOk && !match) match = c;
    }
    if (!match) throw new ThingAuthError('UNAUTHENTICATED', 'clientId and deviceToken do not match a credential issued by regnwl');
    if (!device.enabled) throw new ThingAuthError('DEVICE_DISABLED', `device ${req.deviceName} is disabled`);
    return { device, slot: match.slot, clientId: match.clientId, firstLogin: match.activatedAt === null };
  }

  /**
   * Once a connwl session is live: records the slot's activation (so the next regnwl opens a
   * new slot) and says whether the slot is still live, closing the gap between the check at
   * CONNECT and a revoke or reset that committed just after it.
   */
  async sessionStarted(iotId: string, slot: number, clientId: string): Promise<boolean> {
    await this.store.activateDeviceTokenSlot(iotId, slot, this.ts());
    const s = (await this.store.listDeviceTokenSlots(iotId)).find((x) => x.slot === slot);
    return s !== undefined && s.revokedAt === null && s.clientId === clientId;
  }

  // ---- operator ----

  private async deviceOf(productKey: string, deviceName: string): Promise<Device> {
    const d = await this.store.getDevice(productKey, deviceName);
    if (d) return d;
    if (!(await this.store.getProduct(productKey))) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${productKey} not found`);
    throw new ThingAuthError('DEVICE_NOT_FOUND', `device ${deviceName} not found in product ${productKey}`);
  }

  /** Every slot of the device, revoked ones included; never a token. */
  async list(productKey: string, deviceName: string): Promise<{ device: Device; slots: DeviceTokenSlot[] }> {
    const device = await this.deviceOf(productKey, deviceName);
    return { device, slots: await this.store.listDeviceTokenSlots(device.iotId) };
  }

  /** Revokes one slot: its token is destroyed, a session running on it is closed (device.slot.revoked). */
  async revoke(productKey: string, deviceName: string, slot: number): Promise<{ device: Device; slot: DeviceTokenSlot }> {
    if (!Number.isInteger(slot) || slot < 1 || slot > this.maxSlots) {
      throw new ThingAuthError('INVALID_ARGUMENT', `slot must be a whole number from 1 to ${this.maxSlots}`, { field: 'slot' });
    }
    const device = await this.deviceOf(productKey, deviceName);
    const revoked = await this.store.revokeDeviceTokenSlot(device.iotId, slot, this.ts());
    if (!revoked) throw new ThingAuthError('NOT_FOUND', `device ${deviceName} has no pre-registration-free slot ${slot}`, { field: 'slot' });
    this.events.emit('device.changed', this.ref(device));
    this.events.emit('device.slot.revoked', { ...this.ref(device), slot });
    return { device, slot: revoked };
  }
}
