/**
 * The device list's keyset page on PostgreSQL: 50,000 devices imported into a private server's
 * database through the store's bulk import, ANALYZEd, then the plan of the store's own
 * statement for a page near the end: an Index Scan of the UNIQUE (product_key, device_name)
 * index with the range as its condition, no Seq Scan and no Sort (the index gives the order),
 * so the rows read are the page, not the depth. No timing assertion.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { KeyringCipher, generateMasterKey } from '../../src/core/secret-cipher.js';
import { PostgresStore, postgresDevicesAfterQuery } from '../../src/store/postgres/postgres-store.js';
import type { DeviceKeysetFilter } from '../../src/store/store.js';
import { namedProduct } from '../contract/fixtures.js';
import { startPrivatePostgres, type PrivatePostgres } from '../helpers/postgres.js';

const DEVICES = 50_000;
const PK = 'a1DeepPg001';
const name = (i: number) => `deep-${String(i).padStart(6, '0')}`;

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Index Cond'?: string;
  Plans?: PlanNode[];
}
const nodesOf = (n: PlanNode): PlanNode[] => [n, ...(n.Plans ?? []).flatMap(nodesOf)];

const started = await startPrivatePostgres();

describe('device list keyset paging on PostgreSQL', { skip: 'skip' in started ? started.skip : false }, () => {
  let server: PrivatePostgres;
  let url: string;
  let store: PostgresStore;
  before(async () => {
    server = (started as { server: PrivatePostgres }).server;
    url = await server.createDatabase('keyset_deep');
    store = new PostgresStore({ connectionString: url, cipher: new KeyringCipher(generateMasterKey()), poolSize: 2 });
    await store.migrate();
    await store.createProduct(namedProduct(PK, { deviceLimit: DEVICES }));
    await store.createProduct(namedProduct('a1OtherPg01'));
    const at = new Date().toISOString();
    for (let i = 0; i < DEVICES; i += 10_000) {
      const rows = Array.from({ length: 10_000 }, (_, k) => ({ deviceName: name(i + k), deviceSecret: `DeepSecret${String(i + k).padStart(22, '0')}`, iotId: `iotDeepPg${String(i + k).padStart(11, '0')}` }));
      assert.equal((await store.importDevices(PK, rows, Number.MAX_SAFE_INTEGER, false, at)).created, 10_000);
    }
  });
  after(async () => {
    await store?.close();
    await server?.stop();
  });

  it('a page near the end is an index range scan in index order, with the right devices', async () => {
    const deep = name(DEVICES - 150);
    const page = await store.listDevicesAfter(PK, deep, 100);
    assert.deepEqual(page.map((d) => d.deviceName), Array.from({ length: 100 }, (_, k) => name(DEVICES - 149 + k)));
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await c.query('ANALYZE devices');
      const filters: DeviceKeysetFilter[] = [{}, { nameContains: '4999' }];
      for (const filter of filters) {
        const { sql, args } = postgresDevicesAfterQuery(PK, deep, 100, filter);
        const r = await c.query(`EXPLAIN (FORMAT JSON) ${sql}`, args);
        const plan = (r.rows[0]['QUERY PLAN'] as { Plan: PlanNode }[])[0]!.Plan;
        const nodes = nodesOf(plan);
        const text = JSON.stringify(nodes.map((n) => [n['Node Type'], n['Index Name'], n['Index Cond']]));
        assert.ok(nodes.some((n) => n['Node Type'] === 'Index Scan' && n['Index Name'] === 'devices_product_name' && /device_name > /.test(n['Index Cond'] ?? '')), `index range (${JSON.stringify(filter)}): ${text}`);
        assert.ok(!nodes.some((n) => n['Node Type'] === 'Seq Scan' || n['Node Type'] === 'Sort' || n['Node Type'] === 'Bitmap Heap Scan'), `no scan, no sort: ${text}`);
      }
    } finally {
      await c.end();
    }
  });
});
