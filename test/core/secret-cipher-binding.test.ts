/**
 * Secrets at rest are bound to where they are stored (issue 11 item 14): the GCM associated
 * data names the place, the tag is pinned to 16 bytes, and the unbound v1 form is read only by
 * the migration (test/helpers/v1-cipher.ts writes v1 the way the old code did).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RotatingCipher } from '../../src/core/rotating-cipher.js';
import { generateMasterKey, isUnboundForm, KeyringCipher } from '../../src/core/secret-cipher.js';
import { encryptV1 } from '../helpers/v1-cipher.js';

const A = '["thingauth","devices","device_secret","iotA","a1Pk","devA"]';
const B = '["thingauth","devices","device_secret","iotB","a1Pk","devB"]';

describe('KeyringCipher binds values to their context', () => {
  it('writes v2 and reads a value back only under the context it was written for', () => {
    const cipher = new KeyringCipher(generateMasterKey());
    const stored = cipher.encrypt('DeviceSecretOfA0123456789abcdef', A);
    assert.match(stored, new RegExp(`^v2\\.${cipher.currentKeyId}\\.`));
    assert.equal(cipher.decrypt(stored, A), 'DeviceSecretOfA0123456789abcdef');
    for (const other of [B, '["thingauth","devices","device_token","iotA","a1Pk","devA"]', '["thingauth","products","product_secret","a1Pk"]', '']) {
      assert.throws(() => cipher.decrypt(stored, other), (e: Error) => {
        assert.match(e.message, /integrity check/);
        assert.ok(!e.message.includes('DeviceSecretOfA'), 'the error never holds the value');
        return true;
      });
    }
  });

  it('refuses a tag shorter than 16 bytes, even the true tag truncated (GCM would accept it unpinned)', () => {
    const cipher = new KeyringCipher(generateMasterKey());
    const [v, kid, iv, tag, ct] = cipher.encrypt('SomeSecretValue01', A).split('.');
    for (const bytes of [4, 8, 12, 15]) {
      const short = Buffer.from(tag!, 'base64url').subarray(0, bytes).toString('base64url');
      assert.throws(() => cipher.decrypt([v, kid, iv, short, ct].join('.'), A), /malformed IV or authentication tag/, `${bytes}-byte tag`);
    }
    const long = Buffer.concat([Buffer.from(tag!, 'base64url'), Buffer.alloc(1)]).toString('base64url');
    assert.throws(() => cipher.decrypt([v, kid, iv, long, ct].join('.'), A), /malformed/);
  });

  it('reads v1 only through decryptUnbound (the migration); decrypt refuses v1 whatever the context', () => {
    const key = generateMasterKey();
    const cipher = new KeyringCipher(key);
    const v1 = encryptV1(key, 'LegacySecret0001');
    assert.ok(isUnboundForm(v1));
    assert.equal(cipher.decryptUnbound(v1), 'LegacySecret0001');
    assert.throws(() => cipher.decrypt(v1, A), /unbound v1 form/);
    assert.throws(() => cipher.decrypt(v1, ''), /unbound v1 form/);
    // And decryptUnbound does not read v2 values (they need their context).
    assert.throws(() => cipher.decryptUnbound(cipher.encrypt('x', A)), /unknown format/);
  });

  it('a rotating keyring binds and checks the same way under the old and the new key', () => {
    const k1 = generateMasterKey();
    const rc = new RotatingCipher([k1]);
    const old = rc.encrypt('BeforeRotation01', A);
    rc.use([generateMasterKey(), k1]);
    assert.equal(rc.needsReencrypt(old), true);
    assert.equal(rc.decrypt(old, A), 'BeforeRotation01');
    assert.throws(() => rc.decrypt(old, B), /integrity check/);
    const moved = rc.encrypt(rc.decrypt(old, A), A);
    assert.equal(rc.needsReencrypt(moved), false);
    assert.throws(() => rc.decrypt(moved, B), /integrity check/);
    assert.equal(rc.decryptUnbound(encryptV1(k1, 'OldV1UnderK1')), 'OldV1UnderK1');
  });
});
