/**
 * X.509 rows (migration SQLite 10 / PostgreSQL 3) as records, shared by both adapters: the same
 * columns, and private keys sealed to the same row identity (secret-binding.ts).
 */
import type { SecretCipher } from '../core/secret-cipher.js';
import { openSecret, sealSecret } from './secret-binding.js';
import type { ProductAuthSettings, StoredDeviceCertificate, StoredProductCa } from './store.js';

type Row = Record<string, unknown>;

export function defaultProductAuth(productKey: string): ProductAuthSettings {
  return { productKey, authMode: 'secret', enrollOnFirstContact: false, certValidityDays: null };
}

export function productAuthOf(r: Row): ProductAuthSettings {
  return {
    productKey: r.product_key as string,
    authMode: r.auth_mode as ProductAuthSettings['authMode'],
    enrollOnFirstContact: Boolean(r.enroll_on_first_contact),
    certValidityDays: (r.cert_validity_days as number | null) ?? null,
  };
}

export function caIds(productKey: unknown): unknown[] {
  return [productKey];
}

export function certIds(serial: unknown, iotId: unknown, productKey: unknown, deviceName: unknown): unknown[] {
  return [serial, iotId, productKey, deviceName];
}

export function productCaOf(r: Row, cipher: SecretCipher): StoredProductCa {
  const key = r.private_key as string | null;
  return {
    productKey: r.product_key as string,
    source: r.source as StoredProductCa['source'],
    certificate: r.certificate as string,
    privateKey: key === null ? null : openSecret(cipher, 'product_cas', 'private_key', caIds(r.product_key), key),
    fingerprint: r.fingerprint as string,
    createdAt: r.created_at as string,
  };
}

export function sealCaKey(cipher: SecretCipher, ca: StoredProductCa): string | null {
  return ca.privateKey === null ? null : sealSecret(cipher, 'product_cas', 'private_key', caIds(ca.productKey), ca.privateKey);
}

/** `withKey` false: privateKey null without decrypting (reports never need it). */
export function deviceCertOf(r: Row, cipher: SecretCipher, withKey = true): StoredDeviceCertificate {
  const key = withKey ? (r.private_key as string | null) : null;
  return {
    serial: r.serial as string,
    iotId: r.iot_id as string,
    productKey: r.product_key as string,
    deviceName: r.device_name as string,
    source: r.source as StoredDeviceCertificate['source'],
    certificate: r.certificate as string,
    privateKey: key === null ? null : openSecret(cipher, 'device_certificates', 'private_key', certIds(r.serial, r.iot_id, r.product_key, r.device_name), key),
    fingerprint: r.fingerprint as string,
    notBefore: r.not_before as string,
    notAfter: r.not_after as string,
    createdAt: r.created_at as string,
    revokedAt: (r.revoked_at as string | null) ?? null,
    revocationReason: (r.revocation_reason as string | null) ?? null,
  };
}

export function sealCertKey(cipher: SecretCipher, c: StoredDeviceCertificate): string | null {
  return c.privateKey === null ? null : sealSecret(cipher, 'device_certificates', 'private_key', certIds(c.serial, c.iotId, c.productKey, c.deviceName), c.privateKey);
}

/** The row values of a certificate, in the column order of CERT_COLUMNS. */
export const CERT_COLUMNS = [
  'serial', 'iot_id', 'product_key', 'device_name', 'source', 'certificate', 'private_key', 'fingerprint', 'not_before', 'not_after', 'created_at', 'revoked_at', 'revocation_reason',
] as const;

export function certValues(cipher: SecretCipher, c: StoredDeviceCertificate): unknown[] {
  return [c.serial, c.iotId, c.productKey, c.deviceName, c.source, c.certificate, sealCertKey(cipher, c), c.fingerprint, c.notBefore, c.notAfter, c.createdAt, c.revokedAt, c.revocationReason];
}

export function authModeLocked(productKey: string, devices: number) {
  return { message: `authMode of product ${productKey} cannot change once it has devices (${devices})`, details: { field: 'authMode', devices } };
}
