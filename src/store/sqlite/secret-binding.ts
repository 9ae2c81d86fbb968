/**
 * The SQLite adapter's part of the secret binding: the one-time migration of v1 (unbound)
 * values. Where values live and how they are bound is shared by every adapter
 * (../secret-binding.ts).
 */
import Database from 'better-sqlite3';
import { isUnboundForm, type SecretCipher } from '../../core/secret-cipher.js';
import { ENCRYPTED_COLUMNS, sealSecret, StoredSecretError } from '../secret-binding.js';

type Row = Record<string, unknown>;

/**
 * The migration to bound values: re-encrypts every v1 value (no context) as v2 under its
 * row's context and the current key. Reads the tables in rowid batches so memory stays flat
 * on a 500,000-device database; the caller runs it inside the migration's transaction, so it
 * is all or nothing, and values already in v2 are left alone (running it twice is harmless).
 * A v1 value that does not decrypt stops the migration with its place named: it would be
 * unreadable anyway, and an operator must decide (reset that secret) before the server starts.
 */
export function bindUnboundSecrets(db: Database.Database, cipher: SecretCipher, batchSize = 2000): number {
  let rewritten = 0;
  for (const { table, identity, columns } of ENCRYPTED_COLUMNS) {
    // A table a later migration creates does not exist yet when this runs on an older file
    // (and everything ever written to it is bound already).
    if (!db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(table)) continue;
    const select = db.prepare(
      `SELECT rowid AS rid, ${[...identity, ...columns].join(', ')} FROM ${table} WHERE rowid > ? ORDER BY rowid LIMIT ?`,
    );
    const update = db.prepare(`UPDATE ${table} SET ${columns.map((c) => `${c} = ?`).join(', ')} WHERE rowid = ?`);
    let after = 0;
    for (;;) {
      const rows = select.all(after, batchSize) as Row[];
      for (const r of rows) {
        let changed = false;
        const ids = identity.map((c) => r[c]);
        const values = columns.map((c) => {
          const v = r[c];
          if (typeof v !== 'string' || !isUnboundForm(v)) return v;
          let plain: string;
          try {
            plain = cipher.decryptUnbound(v);
          } catch (e) {
            throw new StoredSecretError(table, c, ids, e);
          }
          changed = true;
          rewritten++;
          return sealSecret(cipher, table, c, ids, plain);
        });
        if (changed) update.run(...values, r.rid);
      }
      if (rows.length < batchSize) break;
      after = rows[rows.length - 1]!.rid as number;
    }
  }
  return rewritten;
}
