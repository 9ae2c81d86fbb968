/**
 * One way to open a store from its URL, for the server and for `thingauth store copy`:
 * `sqlite:<path>` (also `sqlite://<path>`, `file:<path>`) and `postgres://` / `postgresql://`
 * (`?sslmode=`). The store comes back migrated.
 */
import path from 'node:path';
import { ThingAuthError } from '../core/errors.js';
import type { SecretCipher } from '../core/secret-cipher.js';
import { isPostgresUrl, postgresTarget } from './postgres/connection.js';
import { PostgresStore } from './postgres/postgres-store.js';
import { SqliteStore } from './sqlite/sqlite-store.js';
import type { Store } from './store.js';

export interface OpenStoreOptions {
  /** SQLite durability (THINGAUTH_SQLITE_SYNCHRONOUS); other adapters ignore it. */
  sqliteSynchronous?: 'FULL' | 'NORMAL';
  /** Refuse a store that does not exist yet instead of creating it (a copy's source). */
  mustExist?: boolean;
  /** PostgreSQL: CA file for TLS to the database (THINGAUTH_DATABASE_CA_FILE). */
  databaseCaFile?: string;
  /** PostgreSQL: connections in the pool (THINGAUTH_DATABASE_POOL_SIZE). */
  poolSize?: number;
  /** PostgreSQL: a node silent this long loses its devices' presence (THINGAUTH_PRESENCE_LEASE_SECONDS). */
  presenceLeaseMs?: number;
}

async function migrated(store: Store): Promise<Store> {
  try {
    await store.migrate();
  } catch (e) {
    await store.close().catch(() => undefined);
    throw e;
  }
  return store;
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
    return migrated(new SqliteStore({ filename: file, cipher, synchronous: opts.sqliteSynchronous }));
  }
  if (isPostgresUrl(url)) {
    const target = postgresTarget(url, opts.databaseCaFile);
    return migrated(
      new PostgresStore({
        connectionString: target.connectionString,
        ssl: target.ssl,
        where: target.where,
        cipher,
        ...(opts.poolSize !== undefined ? { poolSize: opts.poolSize } : {}),
        ...(opts.presenceLeaseMs !== undefined ? { presenceLeaseMs: opts.presenceLeaseMs } : {}),
      }),
    );
  }
  const scheme = url.split(':')[0];
  throw new ThingAuthError('INVALID_ARGUMENT', `unsupported store URL "${scheme}:..." (this version knows sqlite:<path> and postgres://)`);
}
