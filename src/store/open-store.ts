/**
 * One way to open a store from its URL, for the server and for `thingauth store copy`:
 * `sqlite:<path>` (also `sqlite://<path>`, `file:<path>`) today; `postgres://` joins here with
 * its adapter. The store comes back migrated.
 */
import path from 'node:path';
import { ThingAuthError } from '../core/errors.js';
import type { SecretCipher } from '../core/secret-cipher.js';
import { SqliteStore } from './sqlite/sqlite-store.js';
import type { Store } from './store.js';

export interface OpenStoreOptions {
  /** SQLite durability (THINGAUTH_SQLITE_SYNCHRONOUS); other adapters ignore it. */
  sqliteSynchronous?: 'FULL' | 'NORMAL';
  /** Refuse a store that does not exist yet instead of creating it (a copy's source). */
  mustExist?: boolean;
}

/** The SQLite file a sqlite:/file: URL names, or undefined for any other URL. */
export function sqliteFileOf(url: string): string | undefined {
  if (!/^(sqlite|file):/.test(url)) return undefined;
  const p = url.replace(/^(sqlite|file):(\/\/)?/, '');
  return p === ':memory:' ? p : path.resolve(p);
}

/** The URL without a password, for output and errors. */
export function redactStoreUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*):[^@/]*@/i, '$1:***@');
}

export async function openStoreByUrl(url: string, cipher: SecretCipher, opts: OpenStoreOptions = {}): Promise<Store> {
  const file = sqliteFileOf(url);
  if (file !== undefined) {
    if (file === '') throw new ThingAuthError('INVALID_ARGUMENT', `store URL ${redactStoreUrl(url)} names no file`);
    if (opts.mustExist && file !== ':memory:') {
      const fs = await import('node:fs');
      if (!fs.existsSync(file)) throw new ThingAuthError('INVALID_ARGUMENT', `no SQLite database at ${file}`);
    }
    const store = new SqliteStore({ filename: file, cipher, synchronous: opts.sqliteSynchronous });
    try {
      await store.migrate();
    } catch (e) {
      await store.close();
      throw e;
    }
    return store;
  }
  const scheme = url.split(':')[0];
  throw new ThingAuthError('INVALID_ARGUMENT', `unsupported store URL "${scheme}:..." (this version knows sqlite:<path>; PostgreSQL comes with its adapter)`);
}
