/**
 * Property-based tests (fast-check) of sign verification: verifySignature accepts exactly the
 * right digest, in any letter case, and refuses every mutation of it (one changed character,
 * truncation, extension, another algorithm, another key or content), without ever throwing.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { buildSignContent, constantTimeEquals, parseSignMethod, verifySignature, type SignAlgorithm } from '../../src/core/sign.js';

const RUNS = { numRuns: 1_000 };
const algorithm = fc.constantFrom<SignAlgorithm>('md5', 'sha1', 'sha256');
const secret = fc.string({ minLength: 1, maxLength: 64 });
const content = fc.string({ unit: 'binary', maxLength: 200 });

function reference(alg: SignAlgorithm, key: string, text: string): string {
  return createHmac(alg, Buffer.from(key, 'utf8')).update(text, 'utf8').digest('hex');
}

/** Each character upper- or lower-cased by the mask. */
function mixCase(hex: string, mask: boolean[]): string {
  return [...hex].map((c, i) => (mask[i % mask.length] ? c.toUpperCase() : c)).join('');
}

describe('verifySignature', () => {
  it('accepts the right digest in any mix of letter case', () => {
    fc.assert(
      fc.property(algorithm, secret, content, fc.array(fc.boolean(), { minLength: 1, maxLength: 64 }), (alg, key, text, mask) => {
        const hex = reference(alg, key, text);
        assert.equal(verifySignature(alg, key, text, hex), true);
        assert.equal(verifySignature(alg, key, text, hex.toUpperCase()), true);
        assert.equal(verifySignature(alg, key, text, mixCase(hex, mask)), true);
      }),
      RUNS,
    );
  });

  it('refuses any single-character change, truncation or extension', () => {
    fc.assert(
      fc.property(algorithm, secret, content, fc.nat(), fc.constantFrom(...'0123456789abcdefxyz-_ \u0000é'), (alg, key, text, at, ch) => {
        const hex = reference(alg, key, text);
        const i = at % hex.length;
        if (ch.toLowerCase() !== hex[i]) {
          assert.equal(verifySignature(alg, key, text, hex.slice(0, i) + ch + hex.slice(i + 1)), false);
        }
        assert.equal(verifySignature(alg, key, text, hex.slice(0, i)), false);
        assert.equal(verifySignature(alg, key, text, hex + ch), false);
        assert.equal(verifySignature(alg, key, text, ''), false);
      }),
      RUNS,
    );
  });

  it('refuses the digest of another algorithm, key or content', () => {
    fc.assert(
      fc.property(algorithm, algorithm, secret, secret, content, content, (a1, a2, k1, k2, t1, t2) => {
        const hex = reference(a1, k1, t1);
        assert.equal(verifySignature(a2, k2, t2, hex), a1 === a2 && k1 === k2 && t1 === t2);
      }),
      RUNS,
    );
  });

  it('never throws on hostile presented values', () => {
    fc.assert(
      fc.property(algorithm, secret, content, fc.oneof(fc.string({ unit: 'binary', maxLength: 100 }), fc.anything()), (alg, key, text, presented) => {
        const r = verifySignature(alg, key, text, presented as string);
        assert.equal(typeof r, 'boolean');
        if (typeof presented !== 'string' || !/^[0-9a-f]+$/i.test(presented)) assert.equal(r, false);
      }),
      RUNS,
    );
  });
});

describe('buildSignContent, parseSignMethod, constantTimeEquals', () => {
  it('the content is independent of the order pairs are given in and skips undefined values', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 10 }), fc.option(fc.string({ maxLength: 20 }), { nil: undefined })), (pairs) => {
        const reversed = Object.fromEntries(Object.entries(pairs).reverse());
        assert.equal(buildSignContent(reversed), buildSignContent(pairs));
        const defined = Object.entries(pairs).filter(([, v]) => v !== undefined);
        assert.equal(buildSignContent(pairs).length, defined.reduce((n, [k, v]) => n + k.length + v!.length, 0));
      }),
      RUNS,
    );
  });

  it('parseSignMethod is case-insensitive for the three methods and undefined for anything else', () => {
    fc.assert(
      fc.property(fc.constantFrom('hmacmd5', 'hmacsha1', 'hmacsha256'), fc.array(fc.boolean(), { minLength: 1, maxLength: 10 }), (m, mask) => {
        assert.ok(parseSignMethod(mixCase(m, mask)));
      }),
      RUNS,
    );
    fc.assert(
      fc.property(fc.anything(), (v) => {
        const known = typeof v === 'string' && ['hmacmd5', 'hmacsha1', 'hmacsha256'].includes(v.toLowerCase());
        assert.equal(parseSignMethod(v as string) !== undefined, known);
      }),
      RUNS,
    );
  });

  it('constantTimeEquals is string equality, for any strings', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 50 }), fc.string({ unit: 'binary', maxLength: 50 }), (a, b) => {
        assert.equal(constantTimeEquals(a, b), a === b || Buffer.from(a, 'utf8').equals(Buffer.from(b, 'utf8')));
        assert.equal(constantTimeEquals(a, a), true);
      }),
      RUNS,
    );
  });
});
