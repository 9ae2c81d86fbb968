/** The pure part of DeviceSecret rotation: which secret matches, when the grace ends, grace parsing. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isThingAuthError } from '../../src/core/errors.js';
import {
  assertGraceSeconds,
  matchDeviceSecret,
  MAX_SECRET_GRACE_SECONDS,
  parseGraceText,
  previousSecretInGrace,
  type RotatableSecrets,
} from '../../src/core/secret-rotation.js';

const T = Date.parse('2024-05-01T12:00:00.000Z');
const rotated: RotatableSecrets = { deviceSecret: 'NewSecret', previousDeviceSecret: 'OldSecret', previousSecretExpiresAt: '2024-05-01T12:00:10.000Z' };

describe('secret rotation (core)', () => {
  it('the previous secret counts strictly before its expiry, never without one', () => {
    assert.equal(previousSecretInGrace(rotated, T), 'OldSecret');
    assert.equal(previousSecretInGrace(rotated, T + 9_999), 'OldSecret');
    assert.equal(previousSecretInGrace(rotated, T + 10_000), undefined);
    assert.equal(previousSecretInGrace({ ...rotated, previousSecretExpiresAt: null }, T), undefined);
    assert.equal(previousSecretInGrace({ ...rotated, previousDeviceSecret: null }, T), undefined);
    assert.equal(previousSecretInGrace({ ...rotated, previousSecretExpiresAt: 'not a date' }, T), undefined);
  });

  it('tries the current secret first and the previous one only when the current fails within the grace', () => {
    const tried: string[] = [];
    const verifyAs = (good: string) => (s: string) => (tried.push(s), s === good);
    assert.equal(matchDeviceSecret(rotated, T, verifyAs('NewSecret')), 'current');
    assert.deepEqual(tried.splice(0), ['NewSecret'], 'a current match costs one verification');
    assert.equal(matchDeviceSecret(rotated, T, verifyAs('OldSecret')), 'previous');
    assert.deepEqual(tried.splice(0), ['NewSecret', 'OldSecret']);
    assert.equal(matchDeviceSecret(rotated, T + 10_000, verifyAs('OldSecret')), undefined);
    assert.deepEqual(tried.splice(0), ['NewSecret'], 'an expired previous secret is not even tried');
    assert.equal(matchDeviceSecret(rotated, T, verifyAs('Other')), undefined);
  });

  it('parses grace periods as operators type them', () => {
    assert.equal(parseGraceText('0'), 0);
    assert.equal(parseGraceText('3600'), 3600);
    assert.equal(parseGraceText('3600s'), 3600);
    assert.equal(parseGraceText('30m'), 1800);
    assert.equal(parseGraceText('12h'), 43_200);
    assert.equal(parseGraceText('7d'), 604_800);
    assert.equal(parseGraceText('7D'), 604_800);
    assert.equal(parseGraceText('2w'), 1_209_600);
    for (const bad of ['', '7 days', '-1', '1.5h', 'h', '7y', `${MAX_SECRET_GRACE_SECONDS + 1}`, '9999999999999d']) {
      assert.throws(() => parseGraceText(bad, '--grace'), (e: unknown) => isThingAuthError(e) && e.kind === 'INVALID_ARGUMENT' && e.details?.field === '--grace', bad);
    }
  });

  it('checks grace seconds: whole, 0..max', () => {
    assertGraceSeconds(0);
    assertGraceSeconds(MAX_SECRET_GRACE_SECONDS);
    for (const bad of [-1, 1.5, NaN, '60', null, MAX_SECRET_GRACE_SECONDS + 1]) {
      assert.throws(() => assertGraceSeconds(bad), (e: unknown) => isThingAuthError(e) && e.details?.field === 'graceSeconds', String(bad));
    }
  });
});
