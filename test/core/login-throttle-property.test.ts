/**
 * LoginThrottle and the timestamp window, as properties over arbitrary event sequences with
 * an injected clock: a source is refused exactly while a cool-down it earned runs; a device's
 * failures never refuse anything; accepted connects per device never exceed the rate.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { LoginThrottle, sourceKey, type ThrottleEvent } from '../../src/services/login-throttle.js';
import { MemoryLimiter } from '../../src/services/limits/memory-limiter.js';
import { timestampOutsideWindow } from '../../src/core/timestamp-window.js';

const RUNS = { numRuns: 300 };
const source = fc.constantFrom('10.0.0.1', '10.0.0.2', '::ffff:10.0.0.1', '2001:db8::1', '2001:db8:0:0:ffff::2');
const device = fc.constantFrom({ productKey: 'pk1', deviceName: 'd1' }, { productKey: 'pk1', deviceName: 'd2' });
type Step = { dt: number; kind: 'fail' | 'ok' | 'check'; source: string; device: { productKey: string; deviceName: string } };
const step: fc.Arbitrary<Step> = fc.record({ dt: fc.integer({ min: 0, max: 5_000 }), kind: fc.constantFrom('fail', 'ok', 'check'), source, device });

describe('LoginThrottle', () => {
  it('a source is refused iff `threshold` failures fell in one window and its cool-down still runs (model check)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 6 }), fc.array(step, { maxLength: 120 }), async (threshold, steps) => {
        let t = 0;
        const events: ThrottleEvent[] = [];
        const th = new LoginThrottle({ failThreshold: threshold, failWindowMs: 10_000, cooldownMs: 7_000, deviceConnectRatePerMinute: 0, now: () => t, onEvent: (e) => events.push(e) });
        // The model: per source key, the window and the cool-down.
        const model = new Map<string, { count: number; start: number; until: number }>();
        for (const s of steps) {
          t += s.dt;
          const key = sourceKey(s.source)!;
          const m = model.get(key) ?? { count: 0, start: -Infinity, until: -Infinity };
          model.set(key, m);
          const refused = t < m.until;
          const check = await th.checkSource(s.source);
          assert.equal(!check.ok, refused, `t=${t} ${s.source}`);
          if (!check.ok) assert.equal(check.retryAfterMs, m.until - t);
          if (refused) continue; // the edges refuse before verifying: nothing else is recorded
          if (s.kind === 'fail') {
            await th.recordFailure(s.source, s.device);
            if (t - m.start >= 10_000) {
              m.count = 0;
              m.start = t;
            }
            m.count++;
            if (m.count >= threshold) {
              m.until = t + 7_000;
              m.count = 0;
              m.start = -Infinity;
            }
          } else if (s.kind === 'ok') {
            await th.recordSuccess(s.device);
          }
        }
        const throttledEvents = events.filter((e) => e.type === 'source_throttled');
        for (const e of throttledEvents) assert.equal(e.type === 'source_throttled' && e.failures, threshold);
      }),
      RUNS,
    );
  });

  it('failures counted against a device never refuse a login from a clean source, whatever their number', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.integer({ min: 0, max: 3_000 }), source), { maxLength: 200 }), async (fails) => {
        let t = 0;
        const th = new LoginThrottle({ failThreshold: 3, failWindowMs: 60_000, cooldownMs: 60_000, deviceConnectRatePerMinute: 5, now: () => t });
        const dev = { productKey: 'pk', deviceName: 'victim' };
        for (const [dt, s] of fails) {
          t += dt;
          await th.recordFailure(s, dev);
        }
        assert.deepEqual(await th.checkSource('192.0.2.77'), { ok: true });
        assert.equal(await th.takeDeviceConnect(dev, '192.0.2.77'), true);
      }),
      RUNS,
    );
  });

  it('the device alarm fires once per window when failures reach the threshold, and a success starts over', async () => {
    let t = 0;
    const events: ThrottleEvent[] = [];
    const th = new LoginThrottle({ failThreshold: 0, deviceAlarmThreshold: 3, failWindowMs: 1_000, cooldownMs: 1_000, deviceConnectRatePerMinute: 0, now: () => t, onEvent: (e) => events.push(e) });
    const dev = { productKey: 'pk', deviceName: 'd' };
    for (let i = 0; i < 5; i++) await th.recordFailure('10.0.0.9', dev);
    assert.equal(events.filter((e) => e.type === 'device_failures').length, 1);
    await th.recordSuccess(dev);
    await th.recordFailure('10.0.0.9', dev);
    await th.recordFailure('10.0.0.9', dev);
    assert.equal(events.length, 1);
    await th.recordFailure('10.0.0.9', dev);
    assert.equal(events.length, 2);
    // failThreshold 0: sources are never throttled.
    assert.deepEqual(await th.checkSource('10.0.0.9'), { ok: true });
    t += 1_000;
    // Absurdly long names are not tracked (no 64 KiB keys).
    await th.recordFailure('10.0.0.9', { productKey: 'pk', deviceName: 'x'.repeat(65_536) });
    await th.recordFailure('10.0.0.9', { productKey: 'pk', deviceName: 'x'.repeat(65_536) });
    await th.recordFailure('10.0.0.9', { productKey: 'pk', deviceName: 'x'.repeat(65_536) });
    assert.equal(events.length, 2);
  });

  it('accepted connects per device never exceed rate + rate * elapsed minutes (token bucket)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 10 }), fc.array(fc.integer({ min: 0, max: 20_000 }), { maxLength: 150 }), async (rate, gaps) => {
        let t = 0;
        const th = new LoginThrottle({ failThreshold: 0, failWindowMs: 1, cooldownMs: 1, deviceConnectRatePerMinute: rate, now: () => t });
        const dev = { productKey: 'pk', deviceName: 'flap' };
        let accepted = 0;
        for (const g of gaps) {
          t += g;
          if (await th.takeDeviceConnect(dev)) accepted++;
        }
        assert.ok(accepted <= rate + (rate * t) / 60_000 + 1e-9, `${accepted} > ${rate} + ${(rate * t) / 60_000}`);
        // Another device has its own budget.
        assert.equal(await th.takeDeviceConnect({ productKey: 'pk', deviceName: 'other' }), true);
      }),
      RUNS,
    );
    const off = new LoginThrottle({ failThreshold: 0, failWindowMs: 1, cooldownMs: 1, deviceConnectRatePerMinute: 0, now: () => 0 });
    for (let i = 0; i < 1_000; i++) assert.equal(await off.takeDeviceConnect({ productKey: 'pk', deviceName: 'd' }), true);
  });

  it('memory stays bounded under a flood of distinct sources and devices', async () => {
    let t = 0;
    const limiter = new MemoryLimiter({ now: () => t, maxKeys: 1_000 });
    const th = new LoginThrottle({ failThreshold: 2, failWindowMs: 60_000, cooldownMs: 60_000, deviceConnectRatePerMinute: 5, limiter });
    for (let i = 0; i < 20_000; i++) {
      t += 1;
      await th.recordFailure(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, { productKey: 'pk', deviceName: `d${i}` });
      await th.takeDeviceConnect({ productKey: 'pk', deviceName: `d${i}` });
    }
    // Each limit (source windows, device counters, connect buckets, cool-downs) within its bound.
    const sizes = limiter.sizes();
    for (const [k, n] of Object.entries(sizes)) assert.ok(n <= 1_000, `${k}: ${n}`);
    assert.ok(sizes.windows > 0 && sizes.counters > 0 && sizes.buckets > 0, JSON.stringify(sizes));
  });
});

describe('sourceKey', () => {
  it('IPv4 as is (also IPv4-mapped), IPv6 per /64 in any spelling, never throws', () => {
    assert.equal(sourceKey('::ffff:192.0.2.1'), '192.0.2.1');
    assert.equal(sourceKey('192.0.2.1'), '192.0.2.1');
    assert.equal(sourceKey('2001:db8:1:2::5'), '2001:db8:1:2::/64');
    assert.equal(sourceKey('2001:0DB8:0001:0002:aaaa:bbbb:cccc:dddd'), '2001:db8:1:2::/64');
    assert.equal(sourceKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.equal(sourceKey(''), undefined);
    assert.equal(sourceKey(undefined), undefined);
    fc.assert(
      fc.property(fc.oneof(fc.ipV6(), fc.ipV4(), fc.string({ maxLength: 60 })), (a) => {
        const k = sourceKey(a);
        assert.ok(k === undefined || typeof k === 'string');
      }),
      { numRuns: 2_000 },
    );
    fc.assert(
      fc.property(fc.ipV6(), (a) => {
        assert.match(sourceKey(a)!, /^([0-9a-f]{1,4}:){4}:\/64$|\./);
      }),
      { numRuns: 2_000 },
    );
  });
});

describe('timestampOutsideWindow', () => {
  it('accepts ms and s within the window, refuses beyond it and anything that is not digits', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1_500_000_000_000, max: 2_500_000_000_000 }), fc.integer({ min: -10_000, max: 10_000 }), fc.integer({ min: 1, max: 5_000 }), (now, skewS, window) => {
        const ms = String(now + skewS * 1000);
        const s = String(Math.round((now + skewS * 1000) / 1000));
        const within = Math.abs(skewS) <= window - 1;
        const beyond = Math.abs(skewS) > window + 1;
        if (within) {
          assert.equal(timestampOutsideWindow(ms, window, now), undefined);
          assert.equal(timestampOutsideWindow(s, window, now), undefined);
        }
        if (beyond) {
          assert.match(timestampOutsideWindow(ms, window, now)!, /^timestamp outside window/);
          assert.match(timestampOutsideWindow(s, window, now)!, /^timestamp outside window/);
        }
      }),
      { numRuns: 2_000 },
    );
    assert.equal(timestampOutsideWindow(undefined, 60, Date.now()), undefined);
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }).filter((x) => !/^\d{1,16}$/.test(x)), (junk) => {
        const r = timestampOutsideWindow(junk, 60, Date.now());
        assert.match(r!, /not a time in ms or s/);
        assert.ok(r!.length < 100);
      }),
    );
  });
});
