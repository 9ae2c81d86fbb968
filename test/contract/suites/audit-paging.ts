/**
 * Store contract for keyset paging of the audit trail (the console's audit view, issue 17):
 * queryAudit with `beforeId` returns the entries below that id, newest first, with every
 * filter still applied, so walking pages by the last id seen visits each entry exactly once
 * even while new entries are appended.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AuditEntry } from '../../../src/store/store.js';
import { withStore, type MakeStore } from '../fixtures.js';

function entry(i: number, productKey = 'a1Page'): AuditEntry {
  return { at: new Date(Date.UTC(2024, 0, 1, 0, 0, i)).toISOString(), action: 'mqtt.connect.sign', actor: 'device', productKey, deviceName: `d${i}`, result: i % 2 ? 'deny' : 'allow' };
}

export function auditPagingContract(makeStore: MakeStore): void {
  describe('audit paging', () => {
    it('queryAudit beforeId pages newest first without gaps or repeats, filters kept, new entries not mixed in', withStore(makeStore, async (store) => {
      await store.appendAudit(Array.from({ length: 7 }, (_, i) => entry(i)));
      await store.appendAudit([entry(100, 'a1Other')]);
      const seen: string[] = [];
      let beforeId: number | undefined;
      for (let pages = 0; pages < 10; pages++) {
        const page = await store.queryAudit({ productKey: 'a1Page', limit: 3, ...(beforeId !== undefined ? { beforeId } : {}) });
        if (page.length === 0) break;
        for (const e of page) assert.equal(typeof e.id, 'number');
        seen.push(...page.map((e) => e.deviceName!));
        beforeId = page[page.length - 1]!.id;
        // Appended while paging: newer than every page, so never part of the walk.
        if (pages === 0) await store.appendAudit([entry(50)]);
      }
      assert.deepEqual(seen, ['d6', 'd5', 'd4', 'd3', 'd2', 'd1', 'd0']);
      const first = await store.queryAudit({ limit: 1 });
      assert.equal(first[0]!.deviceName, 'd50');
      assert.deepEqual(await store.queryAudit({ beforeId: 1 }), []);
    }));
  });
}
