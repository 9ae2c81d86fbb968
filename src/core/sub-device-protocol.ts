/**
 * The gateway / sub-device part of the Alink protocol (spec 4): the reply codes, per-item
 * results, and the sign check shared by topo/add and combine/login. Pure: no I/O. (The
 * envelope itself is parsed and built at the MQTT edge, src/mqtt/handlers/alink.ts.)
 */
import { buildSignContent, parseSignMethod, verifySignature } from './sign.js';
import { previousSecretInGrace, type RotatableSecrets, type SecretMatch } from './secret-rotation.js';

/** Alink reply codes used by the gateway messages (spec 4.1-4.7, 2). */
export const SubDeviceCodes = {
  SUCCESS: 200,
  PARAM_ERROR: 460,
  /** topo/add: an entry's sign does not verify. */
  TOPO_SIGN_ERROR: 401,
  /** The publishing device is not of a GATEWAY product. */
  NOT_A_GATEWAY: 403,
  RATE_LIMITED: 429,
  TOO_MANY_ONLINE: 428,
  KICKED_ELSEWHERE: 427,
  NO_SESSION: 520,
  DELETED: 521,
  DISABLED: 522,
  DEVICE_NOT_FOUND: 6100,
  DEVICE_DISABLED: 6204,
  PRODUCT_NOT_FOUND: 6250,
  /** thing/list/found: a DeviceName that is not a valid name (spec 4.4). */
  BAD_DEVICE_NAME: 6280,
  LOGIN_SIGN_ERROR: 6287,
  DYNAMIC_REGISTRATION_OFF: 6288,
  ALREADY_ACTIVATED: 6289,
  UNSUPPORTED_SIGN_METHOD: 6292,
  TOPO_LIMIT: 6400,
  NOT_IN_TOPOLOGY: 6401,
  GATEWAY_ITSELF: 6402,
  REGISTER_SIGN_ERROR: 6600,
  BOUND_TO_OTHER_GATEWAY: 6619,
  INTERNAL: 500,
} as const;

/** What a use case answers to one device request; the edge wraps it in the envelope. */
export interface AlinkResult {
  code: number;
  message: string;
  data: unknown;
}

export function ok(data: unknown): AlinkResult {
  return { code: SubDeviceCodes.SUCCESS, message: 'success', data };
}

export function fail(code: number, message: string, data: unknown = {}): AlinkResult {
  return { code, message, data };
}

/**
 * A sign input as text: strings verbatim, JSON numbers in plain decimal (Node sends the
 * timestamp as a number), booleans as true/false. Anything else cannot be signed.
 */
export function signValueText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) {
    // toFixed avoids exponent notation for large integers (String(1e21) is "1e+21").
    return Number.isInteger(v) && Math.abs(v) < 1e21 ? v.toFixed(0) : String(v);
  }
  if (typeof v === 'boolean') return String(v);
  return undefined;
}

export const SIGN_METHOD_KEYS = ['signmethod', 'signMethod'] as const;

export type SignCheck = { ok: true } | { ok: false; reason: 'bad-method' | 'bad-param' | 'bad-sign'; message: string };

/**
 * Verifies a signed sub-device entry (topo/add entry, combine/login params): the pairs are
 * every field except `sign`, both spellings of the method key and `exclude`; values are signed
 * as sent (a login `clientId` keeps its `|...|` part). `methodOverride` is the batch-level
 * `signMethod` of batch_login. A missing method means hmacmd5 (spec 0.1).
 */
export function checkSubDeviceSign(
  entry: Record<string, unknown>,
  secret: string,
  opts: { exclude?: readonly string[]; methodOverride?: unknown } = {},
): SignCheck {
  const sign = entry.sign;
  if (typeof sign !== 'string' || sign === '') return { ok: false, reason: 'bad-param', message: 'sign is required' };
  const rawMethod = entry.signmethod ?? entry.signMethod ?? opts.methodOverride ?? 'hmacmd5';
  const algorithm = parseSignMethod(typeof rawMethod === 'string' ? rawMethod : undefined);
  if (!algorithm) return { ok: false, reason: 'bad-method', message: 'signMethod must be hmacmd5, hmacsha1 or hmacsha256 (any case)' };
  const skip = new Set<string>(['sign', ...SIGN_METHOD_KEYS, ...(opts.exclude ?? [])]);
  const pairs: Record<string, string> = {};
  for (const [k, v] of Object.entries(entry)) {
    if (skip.has(k) || v === undefined || v === null) continue;
    const text = signValueText(v);
    if (text === undefined) return { ok: false, reason: 'bad-param', message: `${k} must be a string or a number` };
    pairs[k] = text;
  }
  if (!verifySignature(algorithm, secret, buildSignContent(pairs), sign)) {
    return { ok: false, reason: 'bad-sign', message: 'sign does not match (HMAC over the entry fields with the sub-device DeviceSecret)' };
  }
  return { ok: true };
}

/**
 * checkSubDeviceSign against the sub-device's secrets: the current one first, and after a
 * rotation the previous one while its grace lasts (core/secret-rotation.ts). `secret` says
 * which one signed; a failure is the current secret's.
 */
export function checkSubDeviceSignRotating(
  entry: Record<string, unknown>,
  device: RotatableSecrets,
  nowMs: number,
  opts: { exclude?: readonly string[]; methodOverride?: unknown } = {},
): { ok: true; secret: SecretMatch } | Extract<SignCheck, { ok: false }> {
  const current = checkSubDeviceSign(entry, device.deviceSecret, opts);
  if (current.ok) return { ok: true, secret: 'current' };
  if (current.reason !== 'bad-sign') return current;
  const previous = previousSecretInGrace(device, nowMs);
  if (previous !== undefined && checkSubDeviceSign(entry, previous, opts).ok) return { ok: true, secret: 'previous' };
  return current;
}

/** Most entries one topo/add, topo/delete, list/found or sub/register message may carry. */
export const MAX_ITEMS_PER_MESSAGE = 1_500;

/** The list of a list-shaped request; a lone object counts as a list of one (lenient). */
export function itemsOf(params: unknown): unknown[] | undefined {
  if (Array.isArray(params)) return params;
  if (params !== null && typeof params === 'object') return [params];
  return undefined;
}

/**
 * The entries of a per-item request (itemsOf), or its 460 refusal: `emptyMessage` when there
 * is no list or it is empty (each message names its own entry shape), or more than
 * MAX_ITEMS_PER_MESSAGE entries.
 */
export function requestItems(params: unknown, emptyMessage: string): { items: unknown[] } | { refusal: AlinkResult } {
  const items = itemsOf(params);
  if (!items || items.length === 0) return { refusal: fail(SubDeviceCodes.PARAM_ERROR, emptyMessage) };
  if (items.length > MAX_ITEMS_PER_MESSAGE) return { refusal: fail(SubDeviceCodes.PARAM_ERROR, `at most ${MAX_ITEMS_PER_MESSAGE} entries per message`) };
  return { items };
}

/** The outcome of a list entry without a usable identity (subDeviceIdentity gave undefined). */
export function missingIdentity(): ItemOutcome {
  return { productKey: '', deviceName: '', code: SubDeviceCodes.PARAM_ERROR, message: 'each entry needs productKey and deviceName strings' };
}

/** The identity fields of a list item; undefined when they are not two non-empty strings. */
export function subDeviceIdentity(item: unknown): { productKey: string; deviceName: string } | undefined {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) return undefined;
  const { productKey, deviceName } = item as Record<string, unknown>;
  if (typeof productKey !== 'string' || typeof deviceName !== 'string' || productKey === '' || deviceName === '') return undefined;
  if (productKey.length > 64 || deviceName.length > 64) return undefined;
  return { productKey, deviceName };
}

/** One item's outcome in a list request; `extra` is merged on success (e.g. deviceSecret). */
export interface ItemOutcome {
  productKey: string;
  deviceName: string;
  code: number;
  message: string;
  extra?: Record<string, unknown>;
}

/**
 * Folds per-item outcomes into one reply: 200 when every item succeeded, otherwise the first
 * failure's code. `data` keeps request order: successes as {productKey, deviceName, ...extra},
 * failures as {productKey, deviceName, code, message} — so a gateway sees exactly which
 * items to retry while the good ones are already done.
 */
export function foldItems(items: ItemOutcome[]): AlinkResult {
  const data = items.map((i) =>
    i.code === SubDeviceCodes.SUCCESS
      ? { productKey: i.productKey, deviceName: i.deviceName, ...(i.extra ?? {}) }
      : { productKey: i.productKey, deviceName: i.deviceName, code: i.code, message: i.message },
  );
  const failed = items.filter((i) => i.code !== SubDeviceCodes.SUCCESS);
  if (failed.length === 0) return ok(data);
  const first = failed[0]!;
  const label = first.productKey || first.deviceName ? `${first.productKey}/${first.deviceName}: ` : '';
  return fail(first.code, `${failed.length} of ${items.length} failed; first: ${label}${first.message}`, data);
}
