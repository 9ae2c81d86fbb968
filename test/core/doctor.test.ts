/**
 * The doctor's vocabulary (src/core/doctor.ts): every refusal kind has a finding whose code is
 * in the exported list; stored reasons decode to their kind only from the server's own
 * wording (a client-chosen name cannot change the kind); the verdict rule.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DOCTOR_FINDING_CODES, finding, findingCodeOfRefusal, refusalOfReason, timestampSkewOf, verdictOf } from '../../src/core/doctor.js';
import { REFUSALS, type RefusalKind } from '../../src/core/refusals.js';
import { RecentCounts } from '../../src/services/metrics.js';

describe('doctor vocabulary', () => {
  it('every refusal kind becomes a listed code; every code has a message, a hint and a severity', () => {
    for (const kind of Object.keys(REFUSALS) as RefusalKind[]) {
      const code = findingCodeOfRefusal(kind);
      assert.ok(DOCTOR_FINDING_CODES.includes(code), `${kind} -> ${code}`);
    }
    assert.equal(new Set(DOCTOR_FINDING_CODES).size, DOCTOR_FINDING_CODES.length);
    for (const code of DOCTOR_FINDING_CODES) {
      const f = finding(code, {});
      assert.ok(f.message.length > 10 && f.hint.length > 10, code);
      assert.ok(['error', 'warning', 'info'].includes(f.severity));
      assert.ok(!/undefined/.test(f.message + f.hint), `${code}: ${f.message} ${f.hint}`);
    }
  });

  it('stored reasons as the server writes them decode to their refusal kind', () => {
    const cases: [string, RefusalKind, string?][] = [
      ['CONNACK 5: bad signature (hmacsha256)', 'bad-signature'],
      ['http /auth: bad signature (hmacmd5)', 'bad-signature'],
      ['CONNACK 5: unknown device', 'unknown-device'],
      ['CONNACK 5: unknown product', 'unknown-product'],
      ['CONNACK 5: device disabled', 'disabled'],
      ['CONNACK 5: product requires TLS; login arrived over a plain transport', 'tls-required'],
      ['CONNACK 2: dynamic registration is accepted over TLS only', 'tls-required'],
      ['CONNACK 5: timestamp outside window: 3600 s from the server clock (window 300 s)', 'timestamp-outside-window'],
      ['CONNACK 2: unsupported signmethod "hmacsha512"', 'unsupported-sign-method'],
      ['CONNACK 2: ClientId has no |...| extension section', 'malformed'],
      ['CONNACK 2: unsupported authType', 'unsupported-auth-type'],
      ['CONNACK 4: username is not deviceName&productKey', 'missing-credentials', 'username'],
      ['CONNACK 4: empty password', 'missing-credentials', 'password'],
      ['CONNACK 2: unsupported securemode 9', 'bad-securemode'],
      ['CONNACK 3: keep-alive 5s outside 30..1200', 'bad-keepalive'],
      ['CONNACK 5: source throttled: too many failed logins from this address; retry in 60 s', 'throttled'],
      ['CONNACK 5: too many connects for this device: at most 30 per minute; retry later', 'device-connect-rate'],
      ['sign does not match: HMAC over deviceName, productKey, random with the ProductSecret', 'bad-signature'],
      ['device d1 is already activated; an operator must reset it before it can register again', 'already-activated'],
      ['device d1 not found in product a1P; pre-registration needs the device created first', 'unknown-device'],
      ['product a1P not found', 'unknown-product'],
      ['dynamic registration is switched off for product a1P', 'registration-off'],
      ['random was already used for this device; send a fresh random', 'replayed'],
      ['clientId and deviceToken do not match a credential issued by regnwl', 'bad-token'],
      ['server unavailable (store error)', 'server-error'],
    ];
    for (const [reason, kind, detail] of cases) {
      const got = refusalOfReason(reason);
      assert.equal(got?.kind, kind, reason);
      assert.equal(got?.detail, detail, reason);
    }
    assert.equal(refusalOfReason('something else entirely'), undefined);
    assert.equal(refusalOfReason(null), undefined);
  });

  it('what a client chose cannot make a reason read as another kind', () => {
    // A sign method or DeviceName quoted in the reason comes after the server's own words.
    assert.equal(refusalOfReason('CONNACK 2: unsupported signmethod "device disabled"')?.kind, 'unsupported-sign-method');
    assert.equal(refusalOfReason('device unknown product is disabled')?.kind, undefined);
    assert.equal(refusalOfReason('CONNACK 5: bad signature (device disabled)')?.kind, 'bad-signature');
    assert.equal(refusalOfReason('xCONNACK 5: device disabled'), undefined);
  });

  it('timestamp skew numbers; the verdict', () => {
    assert.deepEqual(timestampSkewOf('CONNACK 5: timestamp outside window: 4000 s from the server clock (window 300 s)'), { skewSeconds: 4000, windowSeconds: 300 });
    assert.equal(timestampSkewOf('timestamp outside window: "abc" is not a time in ms or s'), undefined);
    assert.equal(verdictOf([finding('credentials-ok')], true), 'ok');
    assert.equal(verdictOf([finding('timestamp-missing', { windowSeconds: 1 })], true), 'ok');
    assert.equal(verdictOf([finding('sign-mismatch')], true), 'refused');
    assert.equal(verdictOf([finding('no-recent-activity')], false), 'unknown');
  });
});

describe('RecentCounts (live stats)', () => {
  it('counts per result over the last 60 s, forgets older seconds', () => {
    let now = 1_000_000_000;
    const c = new RecentCounts(() => now);
    c.count('accepted');
    c.count('accepted');
    c.count('refused');
    assert.equal(c.lastMinute('accepted'), 2);
    assert.equal(c.lastMinute('refused'), 1);
    now += 30_000;
    c.count('accepted');
    assert.equal(c.lastMinute('accepted'), 3);
    now += 31_000;
    assert.equal(c.lastMinute('accepted'), 1);
    assert.equal(c.lastMinute('refused'), 0);
    now += 60_000 * 10;
    // The ring slot of the earlier second is reused: its old counts are gone.
    c.count('refused');
    assert.equal(c.lastMinute('accepted'), 0);
    assert.equal(c.lastMinute('refused'), 1);
  });
});
