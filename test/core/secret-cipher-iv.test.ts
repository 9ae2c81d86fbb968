/**
 * The cipher draws IVs from a pooled random buffer (bulk imports encrypt 500,000 secrets):
 * every encryption must still get its own IV, across pool refills, and decrypt back.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { generateMasterKey, KeyringCipher } from '../../src/core/secret-cipher.js';

describe('KeyringCipher IVs', () => {
  it('never repeats an IV across 5,000 encryptions (several pool refills), and every value decrypts', () => {
    const cipher = new KeyringCipher(generateMasterKey());
    const ivs = new Set<string>();
    for (let i = 0; i < 5000; i++) {
      const plain = `Secret${String(i).padStart(26, '0')}`;
      const stored = cipher.encrypt(plain, 'ctx');
      const iv = stored.split('.')[2]!;
      assert.equal(Buffer.from(iv, 'base64url').length, 12);
      assert.ok(!ivs.has(iv), `IV repeated at encryption ${i}`);
      ivs.add(iv);
      assert.equal(cipher.decrypt(stored, 'ctx'), plain);
    }
  });

  it('two ciphers (two keys) in one process do not share IVs', () => {
    const a = new KeyringCipher(generateMasterKey());
    const b = new KeyringCipher(generateMasterKey());
    const ivs = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      for (const c of [a, b]) {
        const iv = c.encrypt('SameSecret000000', 'ctx').split('.')[2]!;
        assert.ok(!ivs.has(iv));
        ivs.add(iv);
      }
    }
  });
});
