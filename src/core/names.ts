/** Identifier rules and generators (spec 6.2). Pure apart from the random source. */
import { randomBytes } from 'node:crypto';
import { ThingAuthError } from './errors.js';

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

export const DEVICE_NAME_RE = /^[A-Za-z0-9\-_@.:]{4,32}$/;
/** Imported keys may be up to 20 alphanumerics (SDK buffers); generated ones are 11. */
export const PRODUCT_KEY_RE = /^[A-Za-z0-9]{4,20}$/;
/** Imported secrets: SDK buffers hold at most 64 characters. */
export const SECRET_RE = /^[A-Za-z0-9]{8,64}$/;
export const IOT_ID_RE = /^[A-Za-z0-9]{8,64}$/;

/**
 * Uniform random alphanumerics from a pooled CSPRNG buffer. Per-character randomInt cost
 * ~0.5 µs a call, which dominated bulk provisioning (62 characters a device). Bytes >= 248
 * (4 x 62) are rejected so every character stays uniform.
 */
let pool = Buffer.alloc(0);
let poolPos = 0;
export function randomAlnum(length: number): string {
  let out = '';
  while (out.length < length) {
    if (poolPos >= pool.length) {
      pool = randomBytes(4096);
      poolPos = 0;
    }
    const b = pool[poolPos++]!;
    if (b < 248) out += ALNUM[b % 62];
  }
  return out;
}

/** ProductKey as the platform issues them: 11 alphanumerics starting with a lower-case letter. */
export function generateProductKey(): string {
  return 'a1' + randomAlnum(9);
}
export function generateProductSecret(): string {
  return randomAlnum(16);
}
export function generateDeviceSecret(): string {
  return randomAlnum(32);
}
/** 30 characters like the cloud's IotId. */
export function generateIotId(): string {
  return randomAlnum(30);
}

/** Base 62 in ASCII order, so counters compare as strings the way they do as numbers. */
const ORDERED_ALNUM = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const IOT_ID_PREFIX = 14;
const IOT_ID_COUNTER = 16;

/**
 * iotIds for many new devices: 30 alphanumerics like generateIotId, made of a random prefix
 * per sequence (62^14 values) and an increasing counter. Ids of one sequence are therefore
 * unique and ascending, so inserts append to one spot of the iotId index instead of
 * dirtying a random page per row: at 500,000 rows that halves the store's work. Used by the
 * migration import (one sequence per import) and the registry's creates (one per process).
 */
export class IotIdSequence {
  private readonly prefix = randomAlnum(IOT_ID_PREFIX);
  private n = 0;

  next(): string {
    let v = this.n++;
    let counter = '';
    for (let i = 0; i < IOT_ID_COUNTER; i++) {
      counter = ORDERED_ALNUM[v % 62] + counter;
      v = Math.floor(v / 62);
    }
    return this.prefix + counter;
  }
}
export function generateDeviceName(): string {
  return randomBytes(10).toString('hex');
}
export function generateDeviceToken(): string {
  return randomAlnum(40);
}

export function isValidDeviceName(name: unknown): name is string {
  return typeof name === 'string' && DEVICE_NAME_RE.test(name);
}

export function assertDeviceName(name: unknown, field = 'deviceName'): asserts name is string {
  if (!isValidDeviceName(name)) {
    throw new ThingAuthError(
      'INVALID_ARGUMENT',
      `${field} must be 4-32 characters of A-Z a-z 0-9 - _ @ . :`,
      { field },
    );
  }
}

/** ProductName: 4-30 "width" where a CJK character counts 2; letters, digits, CJK, underscore (we also allow - and space). */
export function productNameWidth(name: string): number {
  let w = 0;
  for (const ch of name) w += /[\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]/.test(ch) ? 2 : 1;
  return w;
}

export function assertProductName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !/^[\p{L}\p{N}_\- ]+$/u.test(name)) {
    throw new ThingAuthError('INVALID_ARGUMENT', 'productName must contain only letters, digits, CJK, "_", "-" or space', { field: 'productName' });
  }
  const w = productNameWidth(name);
  if (w < 4 || w > 30) {
    throw new ThingAuthError('INVALID_ARGUMENT', 'productName must be 4-30 characters wide (a CJK character counts 2)', { field: 'productName' });
  }
}

export function assertProductKey(pk: unknown, field = 'productKey'): asserts pk is string {
  if (typeof pk !== 'string' || !PRODUCT_KEY_RE.test(pk)) {
    throw new ThingAuthError('INVALID_ARGUMENT', `${field} must be 4-20 alphanumerics`, { field });
  }
}

export function assertSecret(secret: unknown, field: string): asserts secret is string {
  if (typeof secret !== 'string' || !SECRET_RE.test(secret)) {
    throw new ThingAuthError('INVALID_ARGUMENT', `${field} must be 8-64 alphanumerics`, { field });
  }
}
