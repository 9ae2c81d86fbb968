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
 * 0 switches a rule off. The counts are kept by a limiter (limits/limiter.ts): in this
 * process (bounded by `maxKeys`) by default, in Redis with THINGAUTH_REDIS_URL so that every
 * node of a cluster counts the same failures and connects. The limiter is asynchronous, so is
 * this class; the in-memory limiter still changes its counts when called.
 */
import type { BucketSpec, CooldownSpec, CounterSpec, Limiter } from './limits/limiter.js';
import { MemoryLimiter } from './limits/memory-limiter.js';

export interface LoginThrottleOptions {
  /** Failed logins per source within the window before the source is refused; 0 = off. */
  failThreshold: number;
  failWindowMs: number;
  cooldownMs: number;
  /** Failed logins per device within the window before an alarm; defaults to failThreshold. */
  deviceAlarmThreshold?: number;
  /** Accepted connects per device per minute; 0 = off. */
  deviceConnectRatePerMinute: number;
  /** Where the counts are kept; default an in-memory limiter with `now` and `maxKeys`. */
  limiter?: Limiter;
  /** Injected clock (ms) of the default in-memory limiter. */
  now?: () => number;
  /** Bound on tracked sources and devices each (in-memory limiter); expired entries are swept when reached. */
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

const DEFAULT_MAX_KEYS = 100_000;

export class LoginThrottle {
  readonly limiter: Limiter;
  private readonly deviceAlarmThreshold: number;
  private readonly sourceSpec: CooldownSpec | undefined;
  private readonly deviceSpec: CounterSpec | undefined;
  private readonly connectSpec: BucketSpec | undefined;

  constructor(private readonly opts: LoginThrottleOptions) {
    for (const k of ['failThreshold', 'failWindowMs', 'cooldownMs', 'deviceConnectRatePerMinute'] as const) {
      if (!(opts[k] >= 0) || !Number.isFinite(opts[k])) throw new RangeError(`${k} must be a finite number >= 0`);
    }
    // A bound set here applies to each limit; unset, the limiter's own default does.
    const maxKeys = opts.maxKeys;
    this.limiter = opts.limiter ?? new MemoryLimiter({ now: opts.now, maxKeys: maxKeys ?? DEFAULT_MAX_KEYS });
    this.deviceAlarmThreshold = opts.deviceAlarmThreshold ?? opts.failThreshold;
    // A window or cool-down of 0 ms (only ever in tests of rule 3) is 1 ms to the limiter.
    const windowMs = Math.max(1, opts.failWindowMs);
    if (opts.failThreshold > 0) this.sourceSpec = { name: 'login.source', threshold: opts.failThreshold, windowMs, cooldownMs: Math.max(1, opts.cooldownMs), maxKeys };
    if (this.deviceAlarmThreshold > 0) this.deviceSpec = { name: 'login.device', windowMs, maxKeys };
    const rate = opts.deviceConnectRatePerMinute;
    if (rate > 0) this.connectSpec = { name: 'connect.device', ratePerSecond: rate / 60, burst: rate, maxKeys };
  }

  /** Whether a login from this address may be verified at all. */
  async checkSource(remoteAddress: string | null | undefined): Promise<SourceCheck> {
    if (!this.sourceSpec) return { ok: true };
    const source = sourceKey(remoteAddress);
    if (source === undefined) return { ok: true };
    const c = await this.limiter.checkCooldown(this.sourceSpec, source);
    return c.ok ? c : { ok: false, retryAfterMs: c.retryAfterMs, firstRefusal: c.refusals === 1 };
  }

  /**
   * A failed login (wrong secret, unknown device or product, bad token): counts against the
   * source (may start its cool-down) and the claimed device (may raise the alarm).
   */
  async recordFailure(remoteAddress: string | null | undefined, device?: DeviceRef): Promise<void> {
    const source = sourceKey(remoteAddress);
    const sourceSpec = this.sourceSpec;
    const deviceSpec = this.deviceSpec;
    // A source in its cool-down is refused before verification anyway; a failure reported for
    // it all the same (a request refused before the gate, e.g. an unreadable body) must not
    // start a new cool-down and announce it again (the limiter does not count it): one audit
    // entry per cool-down.
    const bySource = sourceSpec && source !== undefined ? this.limiter.recordFailure(sourceSpec, source) : undefined;
    // Names longer than any valid one cannot be a device: not worth a key (and not 64 KiB of memory each).
    const tracked = device && deviceSpec && device.productKey.length <= 64 && device.deviceName.length <= 128 ? device : undefined;
    const byDevice = tracked && deviceSpec ? this.limiter.increment(deviceSpec, deviceKey(tracked)) : undefined;
    const [s, d] = await Promise.all([bySource, byDevice]);
    if (s?.state === 'tripped') this.opts.onEvent?.({ type: 'source_throttled', source: source!, failures: s.failures, cooldownMs: this.opts.cooldownMs });
    // Once per window: the count passes the threshold exactly once.
    if (tracked && d === this.deviceAlarmThreshold) this.opts.onEvent?.({ type: 'device_failures', device: tracked, failures: d, source: source ?? '' });
  }

  /** A login that passed verification: the device's failure count starts over. */
  async recordSuccess(device: DeviceRef): Promise<void> {
    if (this.deviceSpec) await this.limiter.reset(this.deviceSpec, deviceKey(device));
  }

  /**
   * Takes one of the device's connects for this minute; false = over the rate (the caller
   * refuses this connect; the device's earlier session is untouched).
   */
  async takeDeviceConnect(device: DeviceRef, remoteAddress?: string | null): Promise<boolean> {
    if (!this.connectSpec) return true;
    const r = await this.limiter.take(this.connectSpec, deviceKey(device));
    if (r.ok) return true;
    this.opts.onEvent?.({ type: 'device_connect_rate', device, source: sourceKey(remoteAddress) ?? '' });
    return false;
  }

  /** Sources currently refused (for tests and diagnostics). */
  async throttledSources(): Promise<string[]> {
    return this.sourceSpec ? this.limiter.cooling(this.sourceSpec) : [];
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
