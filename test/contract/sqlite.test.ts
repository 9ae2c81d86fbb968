/** The whole Store contract against SqliteStore on a real temporary file. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { Store } from '../../src/store/store.js';
import { runFullStoreContract } from './index.js';

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
  },
);
