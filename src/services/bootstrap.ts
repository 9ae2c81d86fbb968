/**
 * Bootstrap (docs/devices.md "Bootstrap"): who gets an MQTT endpoint, which endpoint, and the
 * operator's order to connected devices to ask again.
 *
 * The device's request is unsigned (the SDK sends only productKey, deviceName, clientId), so
 * the answer must not tell more than the request proves: an unknown product, an unknown
 * device and a disabled device get one and the same refusal. The endpoint itself is public.
 *
 * Endpoint overrides set with a notify are kept in the store's meta table (they must survive
 * a restart: a device that reboots asks again), per device and per product; a device's
 * override wins over its product's, which wins over the configuration.
 */
import { randomInt } from 'node:crypto';
import { bootstrapNotifyMessage, bootstrapNotifyTopic, type MqttEndpoint } from '../core/bootstrap.js';
import { ThingAuthError } from '../core/errors.js';
import type { Store } from '../store/store.js';
import type { DeviceAuthenticator } from './authenticator.js';
import type { BootstrapNotifyOrder, RegistryEvents } from './events.js';

export type EndpointOverride = Partial<MqttEndpoint>;

export interface NotifyRequest {
  productKey: string;
  /** Absent: every device of the product. */
  deviceName?: string;
  /** Stored for the scope (device or product) before the order goes out; null = remove the stored one. */
  endpoint?: EndpointOverride | null;
}

export interface NotifyResult {
  /** Devices with a live MQTT session that were handed the order. */
  notified: number;
  /** The override now stored for the scope (null = none: the configured endpoint applies). */
  endpoint: EndpointOverride | null;
}

const productKeyOf = (pk: string) => `bootstrap-endpoint:${pk}`;
const deviceKeyOf = (pk: string, dn: string) => `bootstrap-endpoint:${pk}/${dn}`;

/** Message ids: the cloud documents 0..4294967295, unique per device; a counter from a random start. */
let nextId = randomInt(0, 2 ** 31);

/** The order the broker hands to live sessions (also rebuilt on other nodes of a cluster from its scope). */
export function bootstrapNotifyOrder(productKey: string, deviceName?: string): BootstrapNotifyOrder {
  return {
    productKey,
    ...(deviceName !== undefined ? { deviceName } : {}),
    messageFor: (dn) => {
      nextId = (nextId + 1) % 2 ** 32;
      return { topic: bootstrapNotifyTopic(productKey, dn), payload: bootstrapNotifyMessage(String(nextId)) };
    },
    delivered: 0,
  };
}

export class BootstrapService {
  constructor(
    private readonly store: Store,
    private readonly events: RegistryEvents,
    private readonly authenticator: DeviceAuthenticator,
  ) {
    // A device made again under the same name must not inherit the old one's override.
    events.on('device.deleted', (ref) => {
      const key = deviceKeyOf(ref.productKey, ref.deviceName);
      void this.store
        .getMeta(key)
        .then((v) => (v ? this.store.setMeta(key, '') : undefined))
        .catch(() => undefined);
    });
  }

  /**
   * Whether a bootstrap request for this name gets an endpoint: an enabled device, or any
   * name of a product whose devices register without pre-registration (any name may become
   * a device there, so the answer says nothing about a name).
   */
  async admits(productKey: string, deviceName: string): Promise<boolean> {
    const device = await this.authenticator.device(productKey, deviceName);
    if (device) return device.enabled;
    const product = await this.authenticator.product(productKey);
    return product !== undefined && product.dynamicRegistration && product.preRegistrationFree;
  }

  /** The stored override for a device (its own, else its product's), field by field. */
  async overrideFor(productKey: string, deviceName?: string): Promise<EndpointOverride> {
    const product = await this.read(productKeyOf(productKey));
    const device = deviceName === undefined ? {} : await this.read(deviceKeyOf(productKey, deviceName));
    return { ...product, ...device };
  }

  async notify(req: NotifyRequest): Promise<NotifyResult> {
    const { productKey, deviceName } = req;
    if (deviceName !== undefined) {
      if (!(await this.store.getDevice(productKey, deviceName))) throw new ThingAuthError('DEVICE_NOT_FOUND', `device ${productKey}/${deviceName} not found`);
    } else if (!(await this.store.getProduct(productKey))) {
      throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${productKey} not found`);
    }
    const key = deviceName === undefined ? productKeyOf(productKey) : deviceKeyOf(productKey, deviceName);
    if (req.endpoint === null) await this.store.setMeta(key, '');
    else if (req.endpoint !== undefined && (req.endpoint.host !== undefined || req.endpoint.port !== undefined)) {
      await this.store.setMeta(key, JSON.stringify(req.endpoint));
    }
    const stored = await this.read(key);
    const order = bootstrapNotifyOrder(productKey, deviceName);
    this.events.emit('bootstrap.notify', order);
    return { notified: order.delivered, endpoint: Object.keys(stored).length > 0 ? stored : null };
  }

  private async read(key: string): Promise<EndpointOverride> {
    const raw = await this.store.getMeta(key);
    if (!raw) return {};
    try {
      const v = JSON.parse(raw) as EndpointOverride;
      return {
        ...(typeof v.host === 'string' ? { host: v.host } : {}),
        ...(typeof v.port === 'number' ? { port: v.port } : {}),
      };
    } catch {
      return {};
    }
  }
}
