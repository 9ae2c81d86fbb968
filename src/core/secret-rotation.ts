/**
 * DeviceSecret rotation, the pure part: after a rotation the device's previous secret stays
 * valid until its grace period ends, so a fleet can be re-keyed over the air without losing
 * the devices that have not picked up the new secret yet. Only one previous secret is kept:
 * rotating again during a grace period makes the then-current secret the previous one (with
 * the new grace) and the older one stops working at once.
 */
import { ThingAuthError } from './errors.js';

/** Default grace period: a week, long enough for a fleet that reconnects daily. */
export const DEFAULT_SECRET_GRACE_SECONDS = 7 * 24 * 3600;
/** Longest grace period accepted: a previous secret should not outlive a year. */
export const MAX_SECRET_GRACE_SECONDS = 366 * 24 * 3600;

/** Audit/log wording when a login was accepted with the previous secret (never the secret itself). */
export const PREVIOUS_SECRET_REASON = 'previous secret (grace)';

/** The secret fields of a device record that take part in verification. */
export interface RotatableSecrets {
  deviceSecret: string;
  /** The secret before the last rotation; null when there is none or the grace was 0. */
  previousDeviceSecret: string | null;
  /** ISO time the previous secret stops working. */
  previousSecretExpiresAt: string | null;
}

export type SecretMatch = 'current' | 'previous';

/** The previous secret while its grace lasts (strictly before the expiry), else undefined. */
export function previousSecretInGrace(d: RotatableSecrets, nowMs: number): string | undefined {
  if (!d.previousDeviceSecret || !d.previousSecretExpiresAt) return undefined;
  const until = Date.parse(d.previousSecretExpiresAt);
  return Number.isFinite(until) && nowMs < until ? d.previousDeviceSecret : undefined;
}

/**
 * Which of the device's secrets `verify` accepts. The current secret is tried first and
 * alone when it matches (the common case costs what it did before rotation existed); the
 * previous one only when the current one fails and its grace has not ended.
 */
export function matchDeviceSecret(d: RotatableSecrets, nowMs: number, verify: (secret: string) => boolean): SecretMatch | undefined {
  if (verify(d.deviceSecret)) return 'current';
  const previous = previousSecretInGrace(d, nowMs);
  return previous !== undefined && verify(previous) ? 'previous' : undefined;
}

/** Checks a grace period in seconds (API body, service input). */
export function assertGraceSeconds(v: unknown, field = 'graceSeconds'): asserts v is number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_SECRET_GRACE_SECONDS) {
    throw new ThingAuthError('INVALID_ARGUMENT', `${field} must be a whole number of seconds from 0 to ${MAX_SECRET_GRACE_SECONDS}`, { field });
  }
}

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };

/**
 * A grace period as an operator types it: `7d`, `12h`, `30m`, `3600s`, `2w`, or plain
 * seconds (`3600`, `0`). Returns seconds; INVALID_ARGUMENT naming the field otherwise.
 */
export function parseGraceText(text: string, field = 'grace'): number {
  const m = /^\s*(\d{1,12})\s*([smhdw]?)\s*$/i.exec(text);
  if (!m) throw new ThingAuthError('INVALID_ARGUMENT', `${field} must be a number with an optional unit s, m, h, d or w (e.g. 7d, 3600s, 0); got "${text.slice(0, 32)}"`, { field });
  const seconds = Number(m[1]) * UNIT_SECONDS[(m[2] || 's').toLowerCase()]!;
  assertGraceSeconds(seconds, field);
  return seconds;
}
