/**
 * The stored form of secrets before issue 11 item 14 (`v1.`, no associated data), written the
 * way the old KeyringCipher.encrypt did. Only tests use it, to build the databases that the
 * migration to v2 must convert; src never writes v1.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { keyIdOf } from '../../src/core/secret-cipher.js';

export function encryptV1(key: Buffer, plain: string): string {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  const ct = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
  return ['v1', keyIdOf(key), iv.toString('base64url'), c.getAuthTag().toString('base64url'), ct.toString('base64url')].join('.');
}
