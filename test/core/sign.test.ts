/** The signing primitive against every vector of the spec (test/fixtures/sign-vectors.json). */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import {
  buildSignContent,
  constantTimeEquals,
  hexDigestEquals,
  hmacHex,
  parseSignMethod,
  signPairs,
  verifySignature,
} from '../../src/core/sign.js';

interface Vector {
  id: string;
  what: string;
  method: string;
  key: string;
  content: string;
  expected: string;
}

const vectors: Vector[] = JSON.parse(fs.readFileSync(new URL('../../../test/fixtures/sign-vectors.json', import.meta.url), 'utf8')).vectors;

/** Flips one hex digit (keeps length and hex-ness). */
function flip(hex: string, at: number): string {
  const c = hex[at]!;
  const replacement = c.toLowerCase() === '0' ? '1' : '0';
  return hex.slice(0, at) + replacement + hex.slice(at + 1);
}

describe('sign vectors', () => {
  it('the fixture holds the vectors', () => {
    assert.ok(vectors.length >= 15);
  });

  for (const v of vectors) {
    it(`${v.id}: ${v.what} (${v.method})`, () => {
      const alg = parseSignMethod(v.method);
      assert.ok(alg, `method ${v.method} is known`);
      assert.equal(hmacHex(alg, v.key, v.content), v.expected.toLowerCase());
      assert.equal(verifySignature(alg, v.key, v.content, v.expected.toLowerCase()), true, 'lower-case hex');
      assert.equal(verifySignature(alg, v.key, v.content, v.expected.toUpperCase()), true, 'upper-case hex');
      assert.equal(verifySignature(alg, v.key, v.content, flip(v.expected, 0)), false, 'first digit changed');
      assert.equal(verifySignature(alg, v.key, v.content, flip(v.expected, v.expected.length - 1)), false, 'last digit changed');
      assert.equal(verifySignature(alg, v.key, v.content, v.expected.slice(1)), false, 'too short');
      assert.equal(verifySignature(alg, v.key, v.content, v.expected + '0'), false, 'too long');
      assert.equal(verifySignature(alg, v.key + 'x', v.content, v.expected), false, 'other key');
      assert.equal(verifySignature(alg, v.key, v.content + 'x', v.expected), false, 'other content');
      assert.equal(verifySignature(alg, v.key, v.content, 'z'.repeat(v.expected.length)), false, 'not hex');
    });
  }

  it('V0 content is rebuilt from its pairs in any order', () => {
    const v0 = vectors.find((v) => v.id === 'V0')!;
    const pairs = { timestamp: '789', productKey: 'pk', deviceName: 'device', clientId: '12345' };
    assert.equal(buildSignContent(pairs), v0.content);
    assert.equal(signPairs('sha1', v0.key, pairs), v0.expected);
  });

  it('V4b: an absent timestamp is left out of the content', () => {
    const v = vectors.find((x) => x.id === 'V4b')!;
    const pairs = { clientId: 'a1TestPK001&dev-001', deviceName: 'dev-001', productKey: 'a1TestPK001', timestamp: undefined };
    assert.equal(buildSignContent(pairs), v.content);
    assert.equal(signPairs('sha1', v.key, pairs), v.expected);
  });

  it('names are sorted byte-wise (upper case before lower case)', () => {
    assert.equal(buildSignContent({ b: '2', a: '1', B: '3' }), 'B3a1b2');
    assert.equal(buildSignContent({}), '');
  });
});

describe('sign method names', () => {
  const cases: [string, string][] = [
    ['hmacsha1', 'sha1'],
    ['HmacSHA1', 'sha1'],
    ['hmacSha1', 'sha1'],
    ['HMACSHA1', 'sha1'],
    ['hmacsha256', 'sha256'],
    ['HmacSHA256', 'sha256'],
    ['hmacSha256', 'sha256'],
    ['hmacmd5', 'md5'],
    ['HmacMD5', 'md5'],
    ['hmacMd5', 'md5'],
  ];
  for (const [name, alg] of cases) {
    it(`${name} -> ${alg}`, () => assert.equal(parseSignMethod(name), alg));
  }
  it('unknown or missing methods are undefined', () => {
    for (const bad of ['hmacsha512', 'sha1', 'hmac-sha1', 'hmacsha1 ', '', undefined, null]) {
      assert.equal(parseSignMethod(bad as string | undefined), undefined, String(bad));
    }
  });
});

describe('constant-time comparisons', () => {
  it('constantTimeEquals: equal, different, different length, non-string', () => {
    assert.equal(constantTimeEquals('token-abcdef', 'token-abcdef'), true);
    assert.equal(constantTimeEquals('token-abcdef', 'token-abcdeg'), false);
    assert.equal(constantTimeEquals('token-abcdef', 'token-abcde'), false);
    assert.equal(constantTimeEquals('token-abcdef', ''), false);
    assert.equal(constantTimeEquals('', ''), true);
    assert.equal(constantTimeEquals('token', undefined as unknown as string), false);
    assert.equal(constantTimeEquals('tökén', 'tökén'), true, 'multi-byte characters compare by bytes');
    assert.equal(constantTimeEquals('tökén', 'token'), false);
  });

  it('hexDigestEquals: case-insensitive on the presented digest, strict on length and alphabet', () => {
    assert.equal(hexDigestEquals('abcdef0123', 'ABCDEF0123'), true);
    assert.equal(hexDigestEquals('abcdef0123', 'abcdef0123'), true);
    assert.equal(hexDigestEquals('abcdef0123', 'abcdef0124'), false);
    assert.equal(hexDigestEquals('abcdef0123', 'abcdef012'), false);
    assert.equal(hexDigestEquals('abcdef0123', 'abcdef012g'), false);
    assert.equal(hexDigestEquals('abcdef0123', 42 as unknown as string), false);
  });

  it('verifySignature refuses a non-string signature without throwing', () => {
    assert.equal(verifySignature('sha1', 'k', 'c', undefined as unknown as string), false);
    assert.equal(verifySignature('sha1', 'k', 'c', {} as unknown as string), false);
  });
});
