/**
 * The one signing primitive of the protocol family (spec 0.1): sort name/value pairs by
 * name, concatenate name+value, HMAC under the secret, hex. Verification is
 * case-insensitive on hex and method name, and constant-time.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export type SignAlgorithm = 'md5' | 'sha1' | 'sha256';

const HEX_LENGTH: Record<SignAlgorithm, number> = { md5: 32, sha1: 40, sha256: 64 };

/** Maps `hmacsha256`, `HmacSHA256`, `hmacSha1`... to an algorithm; undefined when unknown. */
export function parseSignMethod(method: string | undefined | null): SignAlgorithm | undefined {
  if (typeof method !== 'string') return undefined;
  switch (method.toLowerCase()) {
    case 'hmacmd5':
      return 'md5';
    case 'hmacsha1':
      return 'sha1';
    case 'hmacsha256':
      return 'sha256';
    default:
      return undefined;
  }
}

/** Builds the sign content from pairs: sorted by name (byte-wise), name+value, no separators. */
export function buildSignContent(pairs: Record<string, string | undefined>): string {
  const names = Object.keys(pairs).filter((k) => pairs[k] !== undefined);
  names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  let out = '';
  for (const n of names) out += n + pairs[n];
  return out;
}

export function hmacHex(algorithm: SignAlgorithm, key: string, content: string): string {
  return createHmac(algorithm, Buffer.from(key, 'utf8')).update(content, 'utf8').digest('hex');
}

export function signPairs(algorithm: SignAlgorithm, key: string, pairs: Record<string, string | undefined>): string {
  return hmacHex(algorithm, key, buildSignContent(pairs));
}

const HEX_RE = /^[0-9a-fA-F]*$/;

/** Constant-time, case-insensitive comparison of a presented hex digest against the expected one. */
export function hexDigestEquals(expectedLowerHex: string, presented: string): boolean {
  if (typeof presented !== 'string' || presented.length !== expectedLowerHex.length || !HEX_RE.test(presented)) {
    return false;
  }
  const a = Buffer.from(expectedLowerHex, 'latin1');
  const b = Buffer.from(presented.toLowerCase(), 'latin1');
  return timingSafeEqual(a, b);
}

export function verifySignature(
  algorithm: SignAlgorithm,
  key: string,
  content: string,
  presented: string,
): boolean {
  if (typeof presented !== 'string' || presented.length !== HEX_LENGTH[algorithm]) return false;
  return hexDigestEquals(hmacHex(algorithm, key, content), presented);
}

/** Constant-time equality for opaque tokens (DeviceToken, admin tokens) of any length. */
export function constantTimeEquals(expected: string, presented: string): boolean {
  const a = Buffer.from(expected, 'utf8');
  const b = Buffer.from(typeof presented === 'string' ? presented : '', 'utf8');
  if (a.length !== b.length) {
    // Still spend a comparison so the timing does not depend on where strings differ.
    timingSafeEqual(a, a);
    return false;
  }
  return timingSafeEqual(a, b);
}
