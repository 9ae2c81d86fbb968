/**
 * Tokens of the HTTP device channel (spec 5.1/5.2): stateless and HMAC-signed, so any
 * server holding the key can check them without a lookup table. A token names the device,
 * its expiry and a fingerprint of the device's secret: rotating the secret invalidates it.
 * Disabling or deleting the device is caught by the caller, which checks the device record
 * on every use. Well under the 192 characters iotkit's buffer holds.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { constantTimeEquals } from '../core/sign.js';
import type { Store } from '../store/store.js';

export const TOKEN_LIFETIME_MS = 7 * 24 * 3600 * 1000;
export const TOKEN_MAX_LENGTH = 192;
const META_KEY = 'http-channel-token-key';

export interface TokenClaims {
  productKey: string;
  deviceName: string;
  /** Expiry, epoch seconds. */
  exp: number;
  /** Fingerprint of the DeviceSecret the token was issued under. */
  fp: string;
}

export type TokenCheck = { ok: true; claims: TokenClaims } | { ok: false; why: 'malformed' | 'bad_mac' | 'expired' };

export class HttpChannelTokens {
  private key: Buffer | undefined;

  constructor(
    private readonly store: Store,
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** The signing key: created once, kept in the store so restarts keep issued tokens valid. */
  private async signingKey(): Promise<Buffer> {
    if (this.key) return this.key;
    // A secret setting: encrypted at rest under the master key, like device secrets.
    let hex = await this.store.getSecretSetting(META_KEY);
    if (!hex) hex = await this.store.setSecretSettingIfAbsent(META_KEY, randomBytes(32).toString('hex')); // another server may win the race
    this.key = Buffer.from(hex, 'hex');
    return this.key;
  }

  async secretFingerprint(deviceSecret: string): Promise<string> {
    return createHmac('sha256', await this.signingKey()).update('fp\n' + deviceSecret).digest('base64url').slice(0, 11);
  }

  async issue(productKey: string, deviceName: string, deviceSecret: string): Promise<{ token: string; expiresAt: Date }> {
    const exp = Math.floor((this.now() + TOKEN_LIFETIME_MS) / 1000);
    const body = Buffer.from([productKey, deviceName, String(exp), await this.secretFingerprint(deviceSecret)].join('\n'), 'utf8').toString('base64url');
    const mac = createHmac('sha256', await this.signingKey()).update(body).digest('base64url');
    return { token: `${body}.${mac}`, expiresAt: new Date(exp * 1000) };
  }

  async check(token: string): Promise<TokenCheck> {
    if (typeof token !== 'string' || token.length > TOKEN_MAX_LENGTH) return { ok: false, why: 'malformed' };
    const dot = token.indexOf('.');
    if (dot <= 0) return { ok: false, why: 'malformed' };
    const body = token.slice(0, dot);
    const mac = createHmac('sha256', await this.signingKey()).update(body).digest('base64url');
    if (!constantTimeEquals(mac, token.slice(dot + 1))) return { ok: false, why: 'bad_mac' };
    const parts = Buffer.from(body, 'base64url').toString('utf8').split('\n');
    if (parts.length !== 4) return { ok: false, why: 'malformed' };
    const [productKey, deviceName, expText, fp] = parts as [string, string, string, string];
    const exp = Number(expText);
    if (!Number.isInteger(exp)) return { ok: false, why: 'malformed' };
    if (exp * 1000 <= this.now()) return { ok: false, why: 'expired' };
    return { ok: true, claims: { productKey, deviceName, exp, fp } };
  }
}
