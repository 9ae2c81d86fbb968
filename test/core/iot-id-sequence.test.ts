/**
 * IotIdSequence (core/names.ts) gives bulk creates and imports ascending iotIds so SQLite
 * appends to the iotId index: every id must still look like the cloud's (30 alphanumerics),
 * be unique, and sort (as a string, which is how the index compares) in creation order,
 * including across the counter's carries; two sequences must not share a prefix.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IOT_ID_RE, IotIdSequence } from '../../src/core/names.js';

describe('IotIdSequence', () => {
  it('30 alphanumerics, unique and strictly ascending as strings over 10,000 ids (carries at 62 and 3,844)', () => {
    const seq = new IotIdSequence();
    let prev = '';
    const seen = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      const id = seq.next();
      assert.equal(id.length, 30);
      assert.match(id, /^[A-Za-z0-9]{30}$/);
      assert.ok(IOT_ID_RE.test(id));
      assert.ok(id > prev, `id ${i} (${id}) does not sort after ${prev}`);
      assert.ok(!seen.has(id));
      seen.add(id);
      prev = id;
    }
  });

  it('two sequences have different random prefixes', () => {
    const a = new IotIdSequence().next();
    const b = new IotIdSequence().next();
    assert.notEqual(a.slice(0, 14), b.slice(0, 14));
  });
});
