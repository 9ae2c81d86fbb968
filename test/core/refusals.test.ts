/**
 * The refusal table (core/refusals.ts) and the log limiter (services/log-limiter.ts): the
 * codes each kind answers with on each path, which kinds count against the source, that a
 * use-case error maps to the kind whose registration code the error kind always had, and
 * that the limiter writes at most N lines per key and interval and counts the rest.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { ErrorKinds, ThingAuthError, type ErrorKind } from '../../src/core/errors.js';
import { connackFor, countsAgainstSource, REFUSALS, refusalOfError, type RefusalKind } from '../../src/core/refusals.js';
import { createLogger } from '../../src/logger.js';
import { LogLimiter } from '../../src/services/log-limiter.js';

describe('refusal table', () => {
  it('CONNACK codes: spec 1.7 for logins, spec 3.1 for registration', () => {
    const login: [RefusalKind, number][] = [
      ['malformed', 2], ['missing-credentials', 4], ['unsupported-sign-method', 2], ['bad-keepalive', 3],
      ['unknown-product', 5], ['unknown-device', 5], ['bad-signature', 5], ['disabled', 5], ['tls-required', 5],
      ['raw-secret-needs-tls', 5], ['throttled', 5], ['device-connect-rate', 5], ['server-error', 3],
    ];
    for (const [k, c] of login) assert.equal(connackFor(k, 'login'), c, k);
    const registration: [RefusalKind, number][] = [
      ['malformed', 2], ['tls-required', 2], ['bad-securemode', 2], ['unsupported-sign-method', 2], ['rate-limited', 3],
      ['server-error', 3], ['unknown-product', 4], ['bad-signature', 4], ['replayed', 4], ['registration-off', 4], ['disabled', 4],
    ];
    for (const [k, c] of registration) assert.equal(connackFor(k, 'registration'), c, k);
    assert.equal(REFUSALS.disabled.v5, 0x8a);
    assert.equal(REFUSALS.throttled.v5, 0x9f);
  });

  it('a use-case error maps to the kind whose registration code its ErrorKind always had', () => {
    // The kinds the registration use cases throw.
    const thrown: ErrorKind[] = ['INVALID_ARGUMENT', 'PRODUCT_NOT_FOUND', 'DEVICE_NOT_FOUND', 'DYNAMIC_REGISTRATION_OFF', 'DEVICE_ALREADY_ACTIVATED', 'UNSUPPORTED_SIGN_METHOD', 'BAD_SIGNATURE', 'DEVICE_DISABLED', 'RATE_LIMITED', 'DEVICE_LIMIT_REACHED', 'INTERNAL'];
    for (const k of thrown) assert.equal(REFUSALS[refusalOfError(new ThingAuthError(k, 'x'))].alink, ErrorKinds[k].alink, k);
    assert.equal(refusalOfError(new ThingAuthError('INVALID_ARGUMENT', 'x', { refusal: 'replayed' })), 'replayed');
    assert.equal(refusalOfError(new ThingAuthError('INVALID_ARGUMENT', 'x', { refusal: 'toString' })), 'malformed');
    assert.equal(refusalOfError(new Error('boom')), 'server-error');
    assert.equal(refusalOfError('disabled'), 'server-error');
  });

  it('which refusals count against the source', () => {
    for (const k of ['bad-signature', 'unknown-product', 'unknown-device', 'unknown-application', 'bad-token', 'replayed', 'missing-credentials'] as const) {
      assert.ok(countsAgainstSource(k, 'login') && countsAgainstSource(k, 'registration'), k);
    }
    // Settings and limits do not count for a device login (honest firmware retries them) ...
    for (const k of ['disabled', 'tls-required', 'raw-secret-needs-tls', 'unsupported-sign-method', 'malformed', 'bad-securemode', 'rate-limited'] as const) {
      assert.ok(!countsAgainstSource(k, 'login'), k);
      // ... but every registration refusal does (issue 11 item 7).
      assert.ok(countsAgainstSource(k, 'registration'), k);
    }
    for (const k of ['throttled', 'device-connect-rate', 'server-error'] as const) {
      assert.ok(!countsAgainstSource(k, 'login') && !countsAgainstSource(k, 'registration'), k);
    }
  });

  it('labels are a small fixed set of snake_case words', () => {
    for (const [k, info] of Object.entries(REFUSALS)) assert.match(info.label, /^[a-z_]{3,32}$/, k);
  });
});

describe('LogLimiter', () => {
  function capture() {
    const lines: any[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        for (const l of String(chunk).split('\n')) if (l.trim()) lines.push(JSON.parse(l));
        cb();
      },
    });
    return { lines, logger: createLogger('info', sink) };
  }
  const tick = () => new Promise((r) => setImmediate(r));

  it('N lines per key and interval, then one summary with the count; keys are independent', async () => {
    const { lines, logger } = capture();
    let t = 0;
    const lim = new LogLimiter(logger, { perInterval: 3, intervalMs: 1000, now: () => t });
    let written = 0;
    for (let i = 0; i < 50; i++) if (lim.log('info', 'ev', '10.0.0.1', { i }, 'refused')) written++;
    assert.equal(lim.log('info', 'ev', '10.0.0.2', {}, 'refused'), true);
    assert.equal(written, 3);
    t = 1500; // next interval: the summary of the last one is written first
    assert.equal(lim.log('info', 'ev', '10.0.0.1', {}, 'refused'), true);
    await tick();
    const summary = lines.filter((l) => l.suppressed !== undefined);
    assert.equal(summary.length, 1);
    assert.equal(summary[0].suppressed, 47);
    assert.equal(summary[0].source, '10.0.0.1');
    assert.match(summary[0].msg, /ev: suppressed 47 similar/);
    lim.close();
  });

  it('flush writes pending summaries; memory stays bounded under many sources', async () => {
    const { lines, logger } = capture();
    let t = 0;
    const lim = new LogLimiter(logger, { perInterval: 1, intervalMs: 1000, maxKeys: 100, now: () => t });
    for (let i = 0; i < 1000; i++) lim.log('info', 'ev', `10.0.${i >> 8}.${i & 255}`, {}, 'x');
    for (let i = 0; i < 5; i++) lim.log('info', 'ev', '10.0.0.0', {}, 'x');
    lim.flush();
    await tick();
    const written = lines.filter((l) => l.msg === 'x').length;
    const suppressed = lines.filter((l) => l.suppressed !== undefined).reduce((n, l) => n + l.suppressed, 0);
    assert.equal(written + suppressed, 1005);
    assert.ok(written <= 102, `written ${written}`);
    lim.close();
  });
});
