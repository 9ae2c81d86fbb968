/**
 * Device-secret login (spec 1.2, 5.1): one signed login -> allow with the device, or a
 * refusal with a reason for operators. Used by the MQTT CONNECT path and the HTTP `/auth`
 * channel. The hot path is a cache hit plus one HMAC: device and product records are cached
 * in memory and dropped when RegistryEvents say they changed.
 */
import { parseSignMethod, verifySignature, buildSignContent, type SignAlgorithm } from '../core/sign.js';
import type { Device, Product } from '../core/records.js';
import type { Logger } from '../logger.js';
import type { Store } from '../store/store.js';
import type { RegistryEvents } from './events.js';
import { timestampOutsideWindow } from '../core/timestamp-window.js';
import { matchDeviceSecret, type SecretMatch } from '../core/secret-rotation.js';
import type { RefusalKind } from '../core/refusals.js';

/** The refusals a device-secret login can end in (kinds and their codes: core/refusals.ts). */
export type LoginRefusal = Extract<
  RefusalKind,
  'unsupported-sign-method' | 'unknown-product' | 'unknown-device' | 'bad-signature' | 'disabled' | 'tls-required' | 'timestamp-outside-window' | 'certificate-required'
>;

export interface DeviceLoginInput {
  productKey: string;
  deviceName: string;
  /** The signed client id (the part before `|` on MQTT). */
  clientId: string;
  /** Present only when the device sent one; never freshness-checked (spec 0.2). */
  timestamp?: string;
  /** As sent (any case); absent means hmacmd5 (spec 0.1). */
  signMethod?: string;
  sign: string;
  /** The ClientId's `lan` item: the Node SDK signs with SHA1 whatever it advertises (spec 1.6). */
  lan?: string;
  /** Whether the transport actually used is TLS (for the product's requireTls). */
  overTls: boolean;
}

export interface LoginDevice {
  iotId: string;
  productKey: string;
  deviceName: string;
  deviceSecret: string;
  /** Accepted until previousSecretExpiresAt after a rotation (core/secret-rotation.ts). */
  previousDeviceSecret: string | null;
  previousSecretExpiresAt: string | null;
  enabled: boolean;
  lastAuthError: string | null;
  lastAuthErrorSource?: string | null;
  /** ms of the last lastAuthError write from this process (not persisted). */
  lastAuthErrorWrittenMs?: number;
  /** When this record was read from the store (ms; cache lifetime). */
  readAtMs?: number;
}

/** A repeated identical refusal (same reason, same source) refreshes its time at most this often. */
const AUTH_ERROR_REFRESH_MS = 60_000;

export type DeviceLoginResult =
  /** `secret`: which DeviceSecret signed it; 'previous' = the one before a rotation, in its grace. */
  | { ok: true; device: LoginDevice; product: Product; algorithm: SignAlgorithm; secret: SecretMatch }
  | { ok: false; refusal: LoginRefusal; reason: string; device?: LoginDevice };

const DEFAULT_MAX_ENTRIES = 200_000;

export interface AuthenticatorCacheOptions {
  maxEntries?: number;
  /**
   * How long a cached record is trusted before it is read again (0 = until an event of this
   * process drops it). A store shared by several nodes needs a bound: a change made through
   * another node reaches this node's login decisions within it. If the store cannot be read
   * when an entry expires (database outage), the expired entry keeps serving.
   */
  ttlMs?: number;
}

export class DeviceAuthenticator {
  private readonly devices = new Map<string, LoginDevice>();
  private readonly products = new Map<string, Product & { readAtMs?: number }>();
  private readonly maxEntries: number;
  private readonly ttlMs: number;
  private readonly inflight = new Map<string, Promise<LoginDevice | undefined>>();
  /** Bumped on every invalidation so a lookup that raced with a change is not cached. */
  private epoch = 0;
  /** The product's authentication mode (services/x509.ts); unset = every product uses secrets. */
  authModeOf?: (productKey: string) => Promise<'secret' | 'x509'>;

  constructor(
    private readonly store: Store,
    events: RegistryEvents,
    private readonly logger: Logger,
    cache: AuthenticatorCacheOptions = {},
    /** Wall clock (ms) for the product's replay window and the cache lifetime. */
    private readonly clock: () => number = () => Date.now(),
  ) {
    this.maxEntries = cache.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.ttlMs = cache.ttlMs ?? 0;
    events.on('device.changed', (ref) => this.forgetDevice(ref.productKey, ref.deviceName));
    events.on('device.deleted', (ref) => this.forgetDevice(ref.productKey, ref.deviceName));
    events.on('product.changed', ({ productKey }) => {
      this.epoch++;
      this.products.delete(productKey);
    });
  }

  forgetDevice(productKey: string, deviceName: string): void {
    this.epoch++;
    this.devices.delete(productKey + '&' + deviceName);
  }

  private fresh(readAtMs: number | undefined): boolean {
    return this.ttlMs === 0 || (readAtMs !== undefined && this.clock() - readAtMs < this.ttlMs);
  }

  async product(productKey: string): Promise<Product | undefined> {
    const hit = this.products.get(productKey);
    if (hit && this.fresh(hit.readAtMs)) return hit;
    const epoch = this.epoch;
    let p: Product | undefined;
    try {
      p = await this.store.getProduct(productKey);
    } catch (e) {
      if (hit) return hit; // expired, but the store cannot answer: the last known record serves
      throw e;
    }
    if (!p) this.products.delete(productKey);
    else if (epoch === this.epoch) this.products.set(productKey, { ...p, readAtMs: this.clock() });
    return p;
  }

  /** The device's login record, from cache or the store. */
  device(productKey: string, deviceName: string): Promise<LoginDevice | undefined> {
    const key = productKey + '&' + deviceName;
    const hit = this.devices.get(key);
    if (hit && this.fresh(hit.readAtMs)) return Promise.resolve(hit);
    let p = this.inflight.get(key);
    if (!p) {
      const epoch = this.epoch;
      p = this.store.getDevice(productKey, deviceName).then(
        (d) => {
          this.inflight.delete(key);
          if (!d) {
            this.devices.delete(key);
            return undefined;
          }
          const rec = toLoginDevice(d);
          rec.readAtMs = this.clock();
          if (hit) {
            rec.lastAuthErrorWrittenMs = hit.lastAuthErrorWrittenMs;
          }
          if (epoch === this.epoch) this.remember(key, rec);
          return rec;
        },
        (e) => {
          this.inflight.delete(key);
          if (hit) return hit; // expired, but the store cannot answer: the last known record serves
          throw e;
        },
      );
      this.inflight.set(key, p);
    }
    return p;
  }

  private remember(key: string, rec: LoginDevice): void {
    if (this.devices.size >= this.maxEntries) {
      // Map keeps insertion order: drop the oldest entry.
      const oldest = this.devices.keys().next().value;
      if (oldest !== undefined) this.devices.delete(oldest);
    }
    this.devices.set(key, rec);
  }

  async verifyDeviceLogin(input: DeviceLoginInput): Promise<DeviceLoginResult> {
    const algorithm = input.signMethod === undefined || input.signMethod === '' ? 'md5' : parseSignMethod(input.signMethod);
    if (!algorithm) return { ok: false, refusal: 'unsupported-sign-method', reason: `unsupported signmethod "${clip(input.signMethod)}"` };
    const device = await this.device(input.productKey, input.deviceName);
    if (!device) {
      const product = await this.product(input.productKey);
      return product
        ? { ok: false, refusal: 'unknown-device', reason: 'unknown device' }
        : { ok: false, refusal: 'unknown-product', reason: 'unknown product' };
    }
    const content = buildSignContent({
      clientId: input.clientId,
      deviceName: input.deviceName,
      productKey: input.productKey,
      timestamp: input.timestamp,
    });
    let used: SignAlgorithm = algorithm;
    const nodeSdk = algorithm !== 'sha1' && isNodeSdk(input.lan);
    const verify = (secret: string): boolean => {
      if (verifySignature(algorithm, secret, content, input.sign)) {
        used = algorithm;
        return true;
      }
      // Node SDK 1.2.8 advertises hmac{signAlgorithm} but always signs with SHA1 (spec 1.6, V1b).
      if (nodeSdk && verifySignature('sha1', secret, content, input.sign)) {
        used = 'sha1';
        return true;
      }
      return false;
    };
    // The previous secret (after a rotation, within its grace) is tried only when the current one fails.
    const secret = matchDeviceSecret(device, this.clock(), verify);
    if (secret === undefined) return { ok: false, refusal: 'bad-signature', reason: `bad signature (${input.signMethod ?? 'hmacmd5'})`, device };
    if (!device.enabled) return { ok: false, refusal: 'disabled', reason: 'device disabled', device };
    const product = await this.product(input.productKey);
    if (!product) return { ok: false, refusal: 'unknown-product', reason: 'unknown product', device };
    if (this.authModeOf && (await this.authModeOf(input.productKey)) === 'x509') {
      return { ok: false, refusal: 'certificate-required', reason: 'product authenticates devices with X.509 certificates: present the device certificate over TLS', device };
    }
    if (product.requireTls && !input.overTls) {
      return { ok: false, refusal: 'tls-required', reason: 'product requires TLS; login arrived over a plain transport', device };
    }
    if (product.timestampWindowSeconds) {
      // Checked after the signature: the timestamp is signed, so only a replayed (or very
      // late) CONNECT of the real device lands here, never a forged one.
      const outside = timestampOutsideWindow(input.timestamp, product.timestampWindowSeconds, this.clock());
      if (outside) return { ok: false, refusal: 'timestamp-outside-window', reason: outside, device };
    }
    return { ok: true, device, product, algorithm: used, secret };
  }

  /**
   * Remembers why a login of a known device was refused, when, and from where (`source`:
   * transport and address, e.g. `mqtt/tcp 203.0.113.7`), on its record (lastAuthError,
   * lastAuthErrorAt, lastAuthErrorSource): a stranger failing logins under a device's name
   * shows up with its own address. The same reason from the same source is written again
   * at most once a minute, so a device retrying with a wrong secret (or a flood) does not
   * turn into a write per attempt.
   */
  recordAuthError(device: { iotId: string; productKey: string; deviceName: string }, reason: string, source: string): void {
    const cached = this.devices.get(device.productKey + '&' + device.deviceName);
    const now = this.clock();
    if (
      cached &&
      cached.lastAuthError === reason &&
      cached.lastAuthErrorSource === source &&
      cached.lastAuthErrorWrittenMs !== undefined &&
      now - cached.lastAuthErrorWrittenMs < AUTH_ERROR_REFRESH_MS
    ) {
      return;
    }
    if (cached) {
      cached.lastAuthError = reason;
      cached.lastAuthErrorSource = source;
      cached.lastAuthErrorWrittenMs = now;
    }
    const at = new Date(now).toISOString();
    this.store.updateDevice(device.iotId, { lastAuthError: reason, lastAuthErrorAt: at, lastAuthErrorSource: source.slice(0, 128) }).catch((err) => {
      this.logger.warn({ err, iotId: device.iotId }, 'could not record lastAuthError');
    });
  }
}

function toLoginDevice(d: Device): LoginDevice {
  return {
    iotId: d.iotId,
    productKey: d.productKey,
    deviceName: d.deviceName,
    deviceSecret: d.deviceSecret,
    previousDeviceSecret: d.previousDeviceSecret,
    previousSecretExpiresAt: d.previousSecretExpiresAt,
    enabled: d.enabled,
    lastAuthError: d.lastAuthError,
  };
}

export function isNodeSdk(lan: string | undefined): boolean {
  return lan !== undefined && (lan === 'NodeJS' || lan.startsWith('JS|'));
}

function clip(s: string | undefined): string {
  return (s ?? '').slice(0, 32);
}
