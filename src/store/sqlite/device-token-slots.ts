/**
 * Migration 7's data step: each device's single pre-registration-free credential
 * (devices.client_id + devices.device_token, the only one before slots) becomes slot 1 of
 * device_tokens. The token is re-encrypted for its new place (a ciphertext is bound to its
 * table, column and row: a copied one would not decrypt). Slot 1 counts as activated when the
 * device is: before slots, an activated device refused further regnwl, so the next regnwl
 * now opens slot 2 instead of handing out slot 1's token again. Runs inside the migration's
 * transaction, after migration 6, so every value it reads is in the bound (v2) form.
 */
import type Database from 'better-sqlite3';
import type { SecretCipher } from '../../core/secret-cipher.js';
import { openSecret, sealSecret } from '../secret-binding.js';

interface LegacyRow {
  iot_id: string;
  product_key: string;
  device_name: string;
  client_id: string;
  device_token: string;
  created_at: string;
  activated_at: string | null;
}

export function moveDeviceTokensToSlots(db: Database.Database, cipher: SecretCipher, batchSize = 2000): number {
  const select = db.prepare(
    `SELECT rowid AS rid, iot_id, product_key, device_name, client_id, device_token, created_at, activated_at FROM devices
     WHERE rowid > ? AND client_id IS NOT NULL AND device_token IS NOT NULL ORDER BY rowid LIMIT ?`,
  );
  const insert = db.prepare(
    `INSERT INTO device_tokens (iot_id, product_key, device_name, slot, client_id, device_token, created_at, activated_at)
     VALUES (?, ?, ?, 1, ?, ?, ?, ?)`,
  );
  let moved = 0;
  let after = 0;
  for (;;) {
    const rows = select.all(after, batchSize) as (LegacyRow & { rid: number })[];
    for (const r of rows) {
      const token = openSecret(cipher, 'devices', 'device_token', [r.iot_id, r.product_key, r.device_name], r.device_token);
      const sealed = sealSecret(cipher, 'device_tokens', 'device_token', [r.iot_id, r.product_key, r.device_name, 1], token);
      insert.run(r.iot_id, r.product_key, r.device_name, r.client_id, sealed, r.created_at, r.activated_at);
      moved++;
    }
    if (rows.length < batchSize) break;
    after = rows[rows.length - 1]!.rid;
  }
  db.exec('UPDATE devices SET client_id = NULL, device_token = NULL WHERE client_id IS NOT NULL OR device_token IS NOT NULL');
  return moved;
}
