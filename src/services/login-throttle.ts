/**
 * Brute force and flood limits for every login path (MQTT CONNECT of any kind, HTTPS /auth,
 * HTTPS /auth/register/device). Pure bookkeeping with an injected clock: the edges ask before
 * they verify and report what happened after; this class decides and emits events that the
 * composition root turns into audit entries, metrics and log lines.
 *
 * Three rules, chosen so that no rule can lock out a legitimate device that stopped failing:
 * 1. Per SOURCE address: `failThreshold` failed logins within `failWindowMs` refuse every
 *    login from that address for `cooldownMs` (an attacker guessing secrets must not get in
 *    even with a right guess, so a throttled source is refused before verification). The
 *    source is the remote address; IPv6 addresses count per /64, the block one host holds.
 * 2. Per DEVICE, failures only raise an alarm (event `device_failures`, once per window); they
 *    never refuse anything. Anyone can claim any device's name, so refusing a device after
 *    failures would let a stranger lock out that device from elsewhere. A correct login
 *    clears the device's count.
 * 3. Per DEVICE, ACCEPTED connects are limited to `deviceConnectRatePerMinute` (token bucket,
 *    burst = one minute's worth), like the platform's 5 connects per device per minute
 *    (spec 1.5). Only logins that passed verification take a token, so failed attempts in
 *    the device's name cannot use up the real device's budget; what it damps is two devices
 *    sharing one secret and taking the session from each other in a loop.
 * 0 switches a rule off. State is in memory, per process, bounded by `maxKeys`.
 */

export interface LoginThrottleOptions {
  /** Failed logins per source within the window before the source is refused; 0 = off. */
  failThreshold: number;
  failWindowMs: number;
  cooldownMs: number;
  /** Failed logins per device within the window before an alarm; defaults to failThreshold. */
  deviceAlarmThreshold?: number;
  /** Accepted connects per device per minute; 0 = off. */
  deviceConnectRatePerMinute: number;
  /** Injected clock (ms). */
  now?: () => number;
  /** Bound on tracked sources and devices each; expired entries are swept when reached. */
  maxKeys?: number;
  onEvent?: (event: ThrottleEvent) => void;
}

export interface DeviceRef {
  productKey: string;
  deviceName: string;
}

export type ThrottleEvent =
  | { type: 'source_throttled'; source: string; failures: number; cooldownMs: number }
  | { type: 'device_failures'; device: DeviceRef; failures: number; source: string }
  | { type: 'device_connect_rate'; device: DeviceRef; source: string };

/**
 * `firstRefusal`: this is the first refusal of the source's current cool-down. Edges audit
 * that one and only count the rest (issue 11 item 11): the cool-down itself is audited once
 * (`security.source.throttled`), so an attacker hammering on cannot grow the audit trail.
 */
export type SourceCheck = { ok: true } | { ok: false; retryAfterMs: number; firstRefusal: boolean };

interface Window {
  count: number;
  start: number;
  /** The device alarm fires once per window. */
  alarmed?: boolean;
}

interface Cooldown {
  until: number;
  /** Attempts refused during this cool-down. */
  refused: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

const DEFAULT_MAX_KEYS = 100_000;

export class LoginThrottle {
  private readonly sourceFailures = new Map<string, Window>();
  private readonly cooldowns = new Map<string, Cooldown>();
  private readonly deviceFailures = new Map<string, Window>();
  private readonly connectBuckets = new Map<string, Bucket>();
  private readonly now: () => number;
  private readonly maxKeys: number;
  private readonly deviceAlarmThreshold: number;

  constructor(private readonly opts: LoginThrottleOptions) {
    for (const k of ['failThreshold', 'failWindowMs', 'cooldownMs', 'deviceConnectRatePerMinute'] as const) {
      if (!(opts[k] >= 0) || !Number.isFinite(opts[k])) throw new RangeError(`${k} must be a finite number >= 0`);
    }
    this.now = opts.now ?? (() => performance.now());
    this.maxKeys = opts.maxKeys ?? DEFAULT_MAX_KEYS;
    this.deviceAlarmThreshold = opts.deviceAlarmThreshold ?? opts.failThreshold;
  }

  /** Whether a login from this address may be verified at all. */
  checkSource(remoteAddress: string | null | undefined): SourceCheck {
    if (this.opts.failThreshold === 0) return { ok: true };
    const source = sourceKey(remoteAddress);
    if (source === undefined) return { ok: true };
    const c = this.cooldowns.get(source);
    if (!c) return { ok: true };
    const t = this.now();
    if (t >= c.until) {
      this.cooldowns.delete(source);
      return { ok: true };
    }
    c.refused++;
    return { ok: false, retryAfterMs: c.until - t, firstRefusal: c.refused === 1 };
  }

  /**
   * A failed login (wrong secret, unknown device or product, bad token): counts against the
   * source (may start its cool-down) and the claimed device (may raise the alarm).
   */
  recordFailure(remoteAddress: string | null | undefined, device?: DeviceRef): void {
    const t = this.now();
    const source = sourceKey(remoteAddress);
    // A source in its cool-down is refused before verification anyway; a failure reported for
    // it all the same (a request refused before the gate, e.g. an unreadable body) must not
    // start a new cool-down and announce it again: one audit entry per cool-down.
    const cooling = source !== undefined && (this.cooldowns.get(source)?.until ?? -Infinity) > t;
    if (this.opts.failThreshold > 0 && source !== undefined && !cooling) {
      const w = this.bump(this.sourceFailures, source, t);
      if (w.count >= this.opts.failThreshold) {
        this.sourceFailures.delete(source);
        if (this.cooldowns.size >= this.maxKeys) this.sweepCooldowns(t);
        this.cooldowns.set(source, { until: t + this.opts.cooldownMs, refused: 0 });
        this.opts.onEvent?.({ type: 'source_throttled', source, failures: w.count, cooldownMs: this.opts.cooldownMs });
      }
    }
    // Names longer than any valid one cannot be a device: not worth a key (and not 64 KiB of memory each).
    if (device && this.deviceAlarmThreshold > 0 && device.productKey.length <= 64 && device.deviceName.length <= 128) {
      const w = this.bump(this.deviceFailures, deviceKey(device), t);
      if (w.count >= this.deviceAlarmThreshold && !w.alarmed) {
        w.alarmed = true;
        this.opts.onEvent?.({ type: 'device_failures', device, failures: w.count, source: source ?? '' });
      }
    }
  }

  /** A login that passed verification: the device's failure count starts over. */
  recordSuccess(device: DeviceRef): void {
    this.deviceFailures.delete(deviceKey(device));
  }

  /**
   * Takes one of the device's connects for this minute; false = over the rate (the caller
   * refuses this connect; the device's earlier session is untouched).
   */
  takeDeviceConnect(device: DeviceRef, remoteAddress?: string | null): boolean {
    const rate = this.opts.deviceConnectRatePerMinute;
    if (rate === 0) return true;
    const t = this.now();
    const key = deviceKey(device);
    const perMs = rate / 60_000;
    let b = this.connectBuckets.get(key);
    if (!b) {
      if (this.connectBuckets.size >= this.maxKeys) this.sweepBuckets(t);
      b = { tokens: rate, at: t };
      this.connectBuckets.set(key, b);
    } else {
      b.tokens = Math.min(rate, b.tokens + (t - b.at) * perMs);
      b.at = t;
    }
    if (b.tokens < 1) {
      this.opts.onEvent?.({ type: 'device_connect_rate', device, source: sourceKey(remoteAddress) ?? '' });
      return false;
    }
    b.tokens -= 1;
    return true;
  }

  /** Sources currently refused (for tests and diagnostics). */
  throttledSources(): string[] {
    const t = this.now();
    return [...this.cooldowns].filter(([, c]) => c.until > t).map(([s]) => s);
  }

  private bump(map: Map<string, Window>, key: string, t: number): Window {
    let w = map.get(key);
    if (!w || t - w.start >= this.opts.failWindowMs) {
      if (!w && map.size >= this.maxKeys) this.sweepWindows(map, t);
      w = { count: 0, start: t };
      map.set(key, w);
    }
    w.count++;
    return w;
  }

  private sweepWindows(map: Map<string, Window>, t: number): void {
    for (const [k, w] of map) if (t - w.start >= this.opts.failWindowMs) map.delete(k);
    // Still full (a flood of distinct keys within one window): drop the oldest half rather
    // than grow without bound; under such a flood the source rule is what protects.
    if (map.size >= this.maxKeys) {
      let n = Math.floor(map.size / 2);
      for (const k of map.keys()) {
        if (n-- <= 0) break;
        map.delete(k);
      }
    }
  }

  private sweepCooldowns(t: number): void {
    for (const [k, c] of this.cooldowns) if (c.until <= t) this.cooldowns.delete(k);
  }

  private sweepBuckets(t: number): void {
    const rate = this.opts.deviceConnectRatePerMinute;
    for (const [k, b] of this.connectBuckets) {
      if (b.tokens + ((t - b.at) * rate) / 60_000 >= rate) this.connectBuckets.delete(k);
    }
    if (this.connectBuckets.size >= this.maxKeys) {
      let n = Math.floor(this.connectBuckets.size / 2);
      for (const k of this.connectBuckets.keys()) {
        if (n-- <= 0) break;
        this.connectBuckets.delete(k);
      }
    }
  }
}

function deviceKey(d: DeviceRef): string {
  return d.productKey + '&' + d.deviceName;
}

/**
 * The address a limit applies to: IPv4 as is (also when IPv4-mapped), IPv6 by its /64 prefix
 * (one host usually holds a whole /64, so per-address counting would be trivial to evade).
 * undefined when the address is unknown (the connection is already gone): nothing to count.
 */
export function sourceKey(remoteAddress: string | null | undefined): string | undefined {
  if (!remoteAddress) return undefined;
  let a = remoteAddress.trim().toLowerCase();
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  if (a.startsWith('::ffff:') && a.includes('.')) return a.slice(7);
  if (!a.includes(':')) return a;
  const groups = expandIpv6(a);
  return groups ? `${groups.slice(0, 4).join(':')}::/64` : a;
}

/** The 8 groups of an IPv6 address (no leading zeros), or undefined when it is not one. */
function expandIpv6(a: string): string[] | undefined {
  const halves = a.split('::');
  if (halves.length > 2) return undefined;
  const part = (s: string) => (s === '' ? [] : s.split(':'));
  const head = part(halves[0]!);
  const tail = halves.length === 2 ? part(halves[1]!) : [];
  // An embedded IPv4 tail (e.g. 64:ff9b::1.2.3.4) stands for two groups.
  const last = tail.length > 0 ? tail : head;
  if (last.length > 0 && last[last.length - 1]!.includes('.')) last.splice(last.length - 1, 1, '0', '0');
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail];
  if (!groups.every((g) => /^[0-9a-f]{1,4}$/.test(g))) return undefined;
  return groups.map((g) => g.replace(/^0+(?=.)/, ''));
}
