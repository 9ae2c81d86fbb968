/**
 * The whole Store contract against PostgresStore on a private PostgreSQL server (one for this
 * file, test/helpers/postgres.ts). Every case gets its own database, cloned from a migrated
 * template, so cases are isolated; the pool holds 4 connections so the concurrency cases
 * really interleave (SQLite's calls never do). Skipped only when no server can be started and
 * CI is unset.
 */
import { after, test } from 'node:test';
import pg from 'pg';
import { generateMasterKey, KeyringCipher } from '../../src/core/secret-cipher.js';
import { PostgresStore } from '../../src/store/postgres/postgres-store.js';
import type { Store } from '../../src/store/store.js';
import { startPrivatePostgres } from '../helpers/postgres.js';
import { runFullStoreContract, type StoredSecretRef } from './index.js';

/** The table, column and WHERE clause of one stored secret (same places as SQLite's). */
function placeOf(ref: StoredSecretRef): { table: string; column: string; where: string; args: unknown[] } {
  switch (ref.kind) {
    case 'productSecret':
      return { table: 'products', column: 'product_secret', where: 'product_key = $1', args: [ref.productKey] };
    case 'appSecret':
      return { table: 'applications', column: 'app_secret', where: 'app_key = $1', args: [ref.appKey] };
    case 'secretSetting':
      return { table: 'secret_settings', column: 'value', where: 'key = $1', args: [ref.key] };
    case 'deviceToken':
      return { table: 'device_tokens', column: 'device_token', where: 'product_key = $1 AND device_name = $2 AND slot = $3', args: [ref.productKey, ref.deviceName, ref.slot] };
    default: {
      const column = { deviceSecret: 'device_secret', previousDeviceSecret: 'previous_device_secret' }[ref.kind];
      return { table: 'devices', column, where: 'product_key = $1 AND device_name = $2', args: [ref.productKey, ref.deviceName] };
    }
  }
}

const started = await startPrivatePostgres();

if ('skip' in started) {
  test('Store contract: postgres', { skip: started.skip }, () => undefined);
} else {
  const server = started.server;
  after(() => server.stop());

  // One migrated template; each case's database is a copy of it (CREATE DATABASE ... TEMPLATE).
  const templateUrl = await server.createDatabase('contract_template');
  const migrator = new PostgresStore({ connectionString: templateUrl, cipher: new KeyringCipher(generateMasterKey()), poolSize: 1 });
  await migrator.migrate();
  await migrator.close();

  /** The database of each store this file made, for the hooks. */
  const databases = new WeakMap<Store, string>();
  let n = 0;

  /** A separate connection to the store's database, as another client with write access would have. */
  async function withClient<T>(store: Store, fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const c = new pg.Client({ connectionString: server.url(databases.get(store)!) });
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end();
    }
  }

  runFullStoreContract(
    'postgres',
    async (cipher) => {
      const name = `contract_${process.pid}_${++n}`;
      const url = await server.createDatabase(name, 'contract_template');
      const store = new PostgresStore({ connectionString: url, cipher, poolSize: 4 });
      await store.migrate();
      databases.set(store, name);
      return store;
    },
    {
      // What a reader of the rows sees, and what an operator's pg_dump holds.
      async rawContents(store: Store) {
        const rows = await withClient(store, async (c) => {
          const tables = (await c.query("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")).rows as { tablename: string }[];
          let out = '';
          for (const { tablename } of tables) out += JSON.stringify((await c.query(`SELECT * FROM "${tablename}"`)).rows) + '\n';
          return out;
        });
        return rows + server.dump(databases.get(store)!);
      },
      async overwriteDeviceCount(store: Store, productKey: string, devices: number) {
        await withClient(store, (c) => c.query('UPDATE product_counts SET devices = $1 WHERE product_key = $2', [devices, productKey]));
      },
      async copyStoredSecret(store: Store, from: StoredSecretRef, to: StoredSecretRef) {
        await withClient(store, async (c) => {
          const f = placeOf(from);
          const t = placeOf(to);
          const value = (await c.query(`SELECT ${f.column} AS v FROM ${f.table} WHERE ${f.where}`, f.args)).rows[0]?.v as string | null | undefined;
          if (typeof value !== 'string') throw new Error(`no stored secret at ${JSON.stringify(from)}`);
          const changed = (await c.query(`UPDATE ${t.table} SET ${t.column} = $${t.args.length + 1} WHERE ${t.where}`, [...t.args, value])).rowCount;
          if (changed !== 1) throw new Error(`no row at ${JSON.stringify(to)}`);
        });
      },
    },
  );
}
