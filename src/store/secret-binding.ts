/**
 * Where each encrypted value of a store lives, and the GCM context (associated data) that
 * binds it there: table, column and the row's identity. Shared by every adapter (SQLite,
 * PostgreSQL): the same tables, columns and contexts, so a value encrypted by one adapter
 * decrypts in the other's row of the same identity. A ciphertext copied into
 * another row, another column or another table then fails to decrypt instead of being read
 * as that row's secret (issue 11 item 14). The identity columns are never updated by the
 * store, so a value stays readable for the life of its row.
 */
import { ThingAuthError } from '../core/errors.js';
import type { SecretCipher } from '../core/secret-cipher.js';

export interface EncryptedTable {
  table: string;
  /** Columns that identify the row for good (never updated); part of every value's context. */
  identity: string[];
  /** Columns that hold values encrypted with the SecretCipher. */
  columns: string[];
}

/**
 * Every column that holds a value encrypted with the SecretCipher, by table. Key rotation
 * re-encrypts exactly these; a new secret-bearing column must be added here (the security
 * e2e test checks every column named like *secret* or *token* holds ciphertext).
 * Devices are bound to iot_id and to (product_key, device_name), the name logins look up, so
 * renaming a row behind the server's back also breaks its secrets.
 */
export const ENCRYPTED_COLUMNS: EncryptedTable[] = [
  { table: 'products', identity: ['product_key'], columns: ['product_secret'] },
  { table: 'devices', identity: ['iot_id', 'product_key', 'device_name'], columns: ['device_secret', 'device_token', 'previous_device_secret'] },
  { table: 'applications', identity: ['app_key'], columns: ['app_secret'] },
  { table: 'secret_settings', identity: ['key'], columns: ['value'] },
  // regnwl slots (migration 7): a token copied to another slot or device does not decrypt.
  // Appended, not inserted: a key-rotation cursor names a table by its index in this list.
  { table: 'device_tokens', identity: ['iot_id', 'product_key', 'device_name', 'slot'], columns: ['device_token'] },
  // X.509 (migration 10 / PG 3): a product's platform CA key and generated device keys.
  { table: 'product_cas', identity: ['product_key'], columns: ['private_key'] },
  { table: 'device_certificates', identity: ['serial', 'iot_id', 'product_key', 'device_name'], columns: ['private_key'] },
];

/** The context a value of `table.column` in the row with this identity is encrypted under. */
export function secretContext(table: string, column: string, identity: readonly unknown[]): string {
  // JSON of an array: unambiguous whatever characters the identity holds.
  return JSON.stringify(['thingauth', table, column, ...identity]);
}

/**
 * A stored secret that cannot be read: altered, moved from another row or column, written in
 * the v1 form after the migration, or under a key the server does not have. Names the place
 * (never the value) so operators can find the row; an INTERNAL error, so the management API
 * answers a bare 500 and a login is refused as "server unavailable".
 */
export class StoredSecretError extends ThingAuthError {
  readonly event = 'store.secret_unreadable';
  readonly table: string;
  readonly column: string;
  readonly row: string;
  constructor(table: string, column: string, identity: readonly unknown[], cause: unknown) {
    const row = identity.map(String).join('/');
    const why = cause instanceof Error ? cause.message : String(cause);
    super('INTERNAL', `${table}.${column} of row ${row}: ${why}`);
    this.name = 'StoredSecretError';
    this.table = table;
    this.column = column;
    this.row = row;
    // The call stack says nothing an operator needs (the place is in the message), and a
    // login can trigger this error: keep error-level log lines free of stacks.
    this.stack = `${this.name}: ${this.message}`;
  }
}

/** Decrypts a value of `table.column` in the row with `identity`, as a StoredSecretError on failure. */
export function openSecret(cipher: SecretCipher, table: string, column: string, identity: readonly unknown[], stored: string): string {
  try {
    return cipher.decrypt(stored, secretContext(table, column, identity));
  } catch (e) {
    throw new StoredSecretError(table, column, identity, e);
  }
}

export function sealSecret(cipher: SecretCipher, table: string, column: string, identity: readonly unknown[], plain: string): string {
  return cipher.encrypt(plain, secretContext(table, column, identity));
}

