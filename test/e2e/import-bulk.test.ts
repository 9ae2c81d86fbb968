/**
 * A 100,000-row device import through the API, streamed: the client generates the CSV as it
 * sends it and holds back the second half until the server has committed rows from the first.
 * A server that buffered the whole body before importing would never commit early, and the
 * test would fail on its deadline instead of deadlocking silently.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectClient, endClient, eventually, signedConnect } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { JSONL, importFile, jsonl } from './import-helpers.js';

const ROWS = 100_000;
const PK = 'a1BulkPK001';
const name = (i: number) => `bulk-${String(i).padStart(6, '0')}`;
// Secrets are derived from the index so any row can be checked without keeping the file.
const secret = (i: number) => `Bulk${(i * 2654435761 >>> 0).toString(36).padStart(8, '0')}${String(i).padStart(20, '0')}`;

async function* csvRows(from: number, to: number): AsyncGenerator<Uint8Array> {
  const step = 2_000;
  for (let i = from; i < to; i += step) {
    let chunk = '';
    for (let j = i; j < Math.min(i + step, to); j++) chunk += `${PK},${name(j)},${secret(j)}\r\n`;
    yield Buffer.from(chunk);
  }
}

describe('100,000-row import streamed through the API', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ logLevel: 'info' });
    const p = await importFile(server, 'products', jsonl([{ productKey: PK, productSecret: 'BulkProductSecret1', productName: 'bulk product' }]), { contentType: JSONL });
    assert.equal(p.body.created, 1);
  });
  after(async () => {
    await server.stop();
  });

  it('imports every row while the upload is still open, then a re-run finds them all identical', { timeout: 240_000 }, async () => {
    const store = server.running.ctx.store;
    let committedBeforeEnd = 0;
    async function* body(): AsyncGenerator<Uint8Array> {
      yield Buffer.from('ProductKey,DeviceName,DeviceSecret\r\n');
      yield* csvRows(0, ROWS / 2);
      // Rows are committed in chunks of 5,000 as they arrive, not after the body ends.
      committedBeforeEnd = await eventually(async () => {
        const n = await store.countDevices(PK);
        return n >= 5_000 ? n : undefined;
      }, 60_000);
      yield* csvRows(ROWS / 2, ROWS);
    }
    const r = await importFile(server, 'devices', body());
    assert.equal(r.status, 200, JSON.stringify(r.body).slice(0, 500));
    assert.deepEqual([r.body.rows, r.body.created, r.body.invalidCount, r.body.conflictCount], [ROWS, ROWS, 0, 0]);
    assert.ok(committedBeforeEnd >= 5_000 && committedBeforeEnd <= ROWS / 2, `committed before the upload ended: ${committedBeforeEnd}`);
    assert.equal(await store.countDevices(PK), ROWS);

    for (const i of [0, 1, 4_999, 5_000, 49_999, 50_000, 77_777, ROWS - 1]) {
      const d = await store.getDevice(PK, name(i));
      assert.equal(d?.deviceSecret, secret(i), name(i));
    }
    // Generated iotIds are unique across chunks.
    const ids = new Set<string>();
    for (let after: string | null = null; ; ) {
      const page = await store.listDevicesAfter(PK, after, 10_000);
      for (const d of page) ids.add(d.iotId);
      if (page.length < 10_000) break;
      after = page[page.length - 1]!.deviceName;
    }
    assert.equal(ids.size, ROWS);

    const last = { productKey: PK, deviceName: name(ROWS - 1), deviceSecret: secret(ROWS - 1) };
    await endClient(await connectClient(server, 'mqtt', signedConnect(last)));

    const again = await importFile(server, 'devices', (async function* () {
      yield Buffer.from('ProductKey,DeviceName,DeviceSecret\r\n');
      yield* csvRows(0, ROWS);
    })(), { query: { dryRun: 'true' } });
    assert.deepEqual([again.body.identical, again.body.created], [ROWS, 0]);
  });
});
