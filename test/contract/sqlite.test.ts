/** The whole Store contract against SqliteStore on a real temporary file. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { Store } from '../../src/store/store.js';
import { runFullStoreContract, type StoredSecretRef } from './index.js';

/** The table, column and WHERE clause of one stored secret. */
function placeOf(ref: StoredSecretRef): { table: string; column: string; where: string; args: string[] } {
  switch (ref.kind) {
    case 'productSecret':
      return { table: 'products', column: 'product_secret', where: 'product_key = ?', args: [ref.productKey] };
    case 'appSecret':
      return { table: 'applications', column: 'app_secret', where: 'app_key = ?', args: [ref.appKey] };
    case 'secretSetting':
      return { table: 'secret_settings', column: 'value', where: 'key = ?', args: [ref.key] };
    case 'deviceToken':
      return { table: 'device_tokens', column: 'device_token', where: 'product_key = ? AND device_name = ? AND slot = ?', args: [ref.productKey, ref.deviceName, String(ref.slot)] };
    default: {
      const column = { deviceSecret: 'device_secret', previousDeviceSecret: 'previous_device_secret' }[ref.kind];
      return { table: 'devices', column, where: 'product_key = ? AND device_name = ?', args: [ref.productKey, ref.deviceName] };
    }
  }
}

runFullStoreContract(
  'sqlite',
  async (cipher) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thingauth-contract-'));
    const store = new SqliteStore({ filename: path.join(dir, 'thingauth.db'), cipher, synchronous: 'NORMAL' });
    await store.migrate();
    return store;
  },
  {
    // Both what a reader of the rows sees and the bytes on disk (main file and WAL).
    async rawContents(store: Store) {
      const file = (store as SqliteStore).db.name;
      const reader = new Database(file, { readonly: true });
      let rows = '';
      try {
        const tables = reader.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[];
        for (const { name } of tables) rows += JSON.stringify(reader.prepare(`SELECT * FROM "${name}"`).all()) + '\n';
      } finally {
        reader.close();
      }
      let bytes = '';
      for (const f of [file, `${file}-wal`]) if (fs.existsSync(f)) bytes += fs.readFileSync(f).toString('latin1');
      return rows + bytes;
    },
    async overwriteDeviceCount(store: Store, productKey: string, devices: number) {
      (store as SqliteStore).db.prepare('UPDATE product_counts SET devices = ? WHERE product_key = ?').run(devices, productKey);
    },
    // A second connection to the file, as another process with write access would have.
    async copyStoredSecret(store: Store, from: StoredSecretRef, to: StoredSecretRef) {
      const writer = new Database((store as SqliteStore).db.name);
      try {
        const f = placeOf(from);
        const t = placeOf(to);
        const value = (writer.prepare(`SELECT ${f.column} AS v FROM ${f.table} WHERE ${f.where}`).get(...f.args) as { v: string | null } | undefined)?.v;
        if (typeof value !== 'string') throw new Error(`no stored secret at ${JSON.stringify(from)}`);
        const changed = writer.prepare(`UPDATE ${t.table} SET ${t.column} = ? WHERE ${t.where}`).run(value, ...t.args).changes;
        if (changed !== 1) throw new Error(`no row at ${JSON.stringify(to)}`);
      } finally {
        writer.close();
      }
    },
  },
);
