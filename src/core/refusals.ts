/**
 * Why a login or registration was refused, as one typed kind, and everything an edge needs
 * to know about that kind in ONE table: the MQTT CONNACK code (3.1.1, and the MQTT 5 reason
 * code where it is more precise than the 3.1.1 mapping), the reply codes of HTTPS
 * registration and of the HTTP channel, the metrics label, and whether it counts against
 * the source throttle (services/login-throttle.ts).
 *
 * Before this table the throttle decided "was this a wrong credential?" by matching the
 * wording of reason strings, which quote what the client sent: a DeviceName containing
 * "disabled" turned a failed registration into a refusal that did not count. Reasons are
 * now free text for people only; decisions read the kind.
 */
import { ThingAuthError, type ErrorKind } from './errors.js';
import { SubDeviceCodes } from './sub-device-protocol.js';

export type RefusalKind =
  /** Shape of the request: ClientId without `|...|`, a bad field, username not `dn&pk` in registration. */
  | 'malformed'
  /** A login without the credential itself: username not `dn&pk`, empty password, `app:` without key. */
  | 'missing-credentials'
  | 'bad-securemode'
  | 'unsupported-auth-type'
  | 'unsupported-sign-method'
  | 'bad-keepalive'
  | 'unknown-product'
  | 'unknown-device'
  | 'unknown-application'
  | 'bad-signature'
  /** connwl: ClientID/DeviceToken not the issued pair (or none issued). */
  | 'bad-token'
  /** A registration `random` used before (replay protection on). */
  | 'replayed'
  | 'timestamp-outside-window'
  | 'disabled'
  /** The product (or registration) requires TLS and the transport is plain. */
  | 'tls-required'
  /** An application's raw appSecret as password over a plain transport (issue 11 item 12). */
  | 'raw-secret-needs-tls'
  | 'registration-off'
  | 'already-activated'
  | 'device-limit'
  /** A pre-registration-free device name whose five regnwl slots are all activated (spec 3.2, issue 12 item 2). */
  | 'slots-full'
  /** A sub-device bound to another gateway (spec 4.1 code 6619, issue 11 item 8). */
  | 'sub-device-bound'
  | 'forbidden'
  | 'conflict'
  /** A registration bucket (per product or per source) is empty. */
  | 'rate-limited'
  /** Accepted connects of one device over THINGAUTH_DEVICE_CONNECT_RATE_PER_MINUTE. */
  | 'device-connect-rate'
  /** The source is in its cool-down after repeated failures. */
  | 'throttled'
  | 'server-error';

/** MQTT 3.1.1 CONNACK refusal codes (spec 1.7). */
export type ConnackCode = 1 | 2 | 3 | 4 | 5;

/**
 * Which refused attempts count as failures of the source (login-throttle.ts recordFailure):
 * - 'always': a wrong credential, on every path;
 * - 'registration': only on the registration paths (HTTPS /auth/register/device, MQTT
 *   register/regnwl), where EVERY refusal counts (issue 11 item 7): a source holding the
 *   ProductSecret has no reason to be refused repeatedly, and one without it must not be
 *   able to probe or flood for free. A device login refused for a setting (disabled, TLS
 *   required, bad keep-alive) does not count: honest firmware retries those, possibly behind
 *   one NAT with its neighbours;
 * - 'never': the refusal is the throttle itself, a rate limit of an identity that passed
 *   verification, or our own failure.
 */
export type ThrottleRule = 'always' | 'registration' | 'never';

export interface RefusalInfo {
  /** CONNACK for a device or application login (sign, connwl, application). */
  connack: ConnackCode;
  /** CONNACK for MQTT dynamic registration (register/regnwl, spec 3.1: 2 parameters, 3 server, 4 auth). */
  registrationConnack: ConnackCode;
  /** MQTT 5 reason code when it says more than the 3.1.1 code's mapping (mqtt5-adapter.ts). */
  v5?: number;
  /** HTTPS registration reply `code` (spec 2). */
  alink: number;
  /** HTTP channel `/auth` reply `code` (spec 5.1). */
  httpChannel: number;
  /** Metrics label (`thingauth_logins_total{reason}`): a small fixed set. */
  label: string;
  throttle: ThrottleRule;
}

const HTTP_PARAM = 10001;
const HTTP_AUTH_FAILED = 20000;
const HTTP_COMMON = 10000;

export const REFUSALS: Readonly<Record<RefusalKind, RefusalInfo>> = {
  'malformed': { connack: 2, registrationConnack: 2, alink: 460, httpChannel: HTTP_PARAM, label: 'malformed_credentials', throttle: 'registration' },
  'missing-credentials': { connack: 4, registrationConnack: 2, alink: 460, httpChannel: HTTP_PARAM, label: 'malformed_credentials', throttle: 'always' },
  'bad-securemode': { connack: 2, registrationConnack: 2, alink: 460, httpChannel: HTTP_PARAM, label: 'bad_securemode', throttle: 'registration' },
  'unsupported-auth-type': { connack: 2, registrationConnack: 2, alink: 460, httpChannel: HTTP_PARAM, label: 'unsupported_auth_type', throttle: 'never' },
  'unsupported-sign-method': { connack: 2, registrationConnack: 2, alink: 6292, httpChannel: HTTP_PARAM, label: 'unsupported_sign_method', throttle: 'registration' },
  'bad-keepalive': { connack: 3, registrationConnack: 3, alink: 460, httpChannel: HTTP_PARAM, label: 'bad_keepalive', throttle: 'registration' },
  'unknown-product': { connack: 5, registrationConnack: 4, alink: 6250, httpChannel: HTTP_AUTH_FAILED, label: 'unknown_product', throttle: 'always' },
  'unknown-device': { connack: 5, registrationConnack: 4, alink: 6100, httpChannel: HTTP_AUTH_FAILED, label: 'unknown_device', throttle: 'always' },
  'unknown-application': { connack: 5, registrationConnack: 4, alink: 460, httpChannel: HTTP_AUTH_FAILED, label: 'unknown_application', throttle: 'always' },
  'bad-signature': { connack: 5, registrationConnack: 4, alink: 6600, httpChannel: HTTP_AUTH_FAILED, label: 'bad_signature', throttle: 'always' },
  'bad-token': { connack: 5, registrationConnack: 4, alink: 401, httpChannel: HTTP_AUTH_FAILED, label: 'bad_token', throttle: 'always' },
  'replayed': { connack: 5, registrationConnack: 4, alink: 460, httpChannel: HTTP_AUTH_FAILED, label: 'replayed', throttle: 'always' },
  'timestamp-outside-window': { connack: 5, registrationConnack: 4, alink: 460, httpChannel: HTTP_AUTH_FAILED, label: 'timestamp_outside_window', throttle: 'always' },
  'disabled': { connack: 5, registrationConnack: 4, v5: 0x8a /* Banned */, alink: 6204, httpChannel: HTTP_AUTH_FAILED, label: 'disabled', throttle: 'registration' },
  'tls-required': { connack: 5, registrationConnack: 2, alink: 460, httpChannel: HTTP_AUTH_FAILED, label: 'tls_required', throttle: 'registration' },
  'raw-secret-needs-tls': { connack: 5, registrationConnack: 4, alink: 460, httpChannel: HTTP_AUTH_FAILED, label: 'raw_secret_needs_tls', throttle: 'registration' },
  'registration-off': { connack: 5, registrationConnack: 4, alink: 6288, httpChannel: HTTP_AUTH_FAILED, label: 'registration_off', throttle: 'always' },
  'already-activated': { connack: 5, registrationConnack: 4, alink: 6289, httpChannel: HTTP_AUTH_FAILED, label: 'already_activated', throttle: 'always' },
  'device-limit': { connack: 5, registrationConnack: 4, alink: 6606, httpChannel: HTTP_AUTH_FAILED, label: 'device_limit', throttle: 'registration' },
  // The signature was right: a full name is a limit, not a failed credential.
  'slots-full': { connack: 4, registrationConnack: 4, alink: 6289, httpChannel: HTTP_AUTH_FAILED, label: 'slots_full', throttle: 'never' },
  'sub-device-bound': { connack: 5, registrationConnack: 4, alink: 6619, httpChannel: HTTP_AUTH_FAILED, label: 'sub_device_bound', throttle: 'registration' },
  'forbidden': { connack: 5, registrationConnack: 4, alink: 403, httpChannel: HTTP_AUTH_FAILED, label: 'forbidden', throttle: 'registration' },
  'conflict': { connack: 5, registrationConnack: 4, alink: 409, httpChannel: HTTP_AUTH_FAILED, label: 'conflict', throttle: 'registration' },
  'rate-limited': { connack: 3, registrationConnack: 3, alink: 429, httpChannel: HTTP_AUTH_FAILED, label: 'rate_limited', throttle: 'registration' },
  'device-connect-rate': { connack: 5, registrationConnack: 5, v5: 0x9f /* Connection rate exceeded */, alink: 429, httpChannel: HTTP_AUTH_FAILED, label: 'device_connect_rate', throttle: 'never' },
  'throttled': { connack: 5, registrationConnack: 5, v5: 0x9f /* Connection rate exceeded */, alink: 429, httpChannel: HTTP_AUTH_FAILED, label: 'throttled', throttle: 'never' },
  'server-error': { connack: 3, registrationConnack: 3, alink: 500, httpChannel: HTTP_COMMON, label: 'server_error', throttle: 'never' },
};

/** The two families of paths the throttle rule distinguishes. */
export type RefusalPath = 'login' | 'registration';

/** Whether a refusal of this kind on this path counts as a failure of the source. */
export function countsAgainstSource(kind: RefusalKind, path: RefusalPath): boolean {
  const rule = REFUSALS[kind].throttle;
  return rule === 'always' || (rule === 'registration' && path === 'registration');
}

/** The CONNACK code of a refusal on an MQTT path. */
export function connackFor(kind: RefusalKind, path: RefusalPath): ConnackCode {
  return path === 'registration' ? REFUSALS[kind].registrationConnack : REFUSALS[kind].connack;
}

/**
 * The refusal kind of a use-case error (services throw ThingAuthError with an ErrorKind).
 * Exhaustive on purpose: a new ErrorKind does not compile until it is placed here.
 */
const BY_ERROR_KIND: Readonly<Record<ErrorKind, RefusalKind>> = {
  INVALID_ARGUMENT: 'malformed',
  UNAUTHENTICATED: 'bad-token',
  FORBIDDEN: 'forbidden',
  PRODUCT_NOT_FOUND: 'unknown-product',
  DEVICE_NOT_FOUND: 'unknown-device',
  NOT_FOUND: 'unknown-device',
  DEVICE_NAME_TAKEN: 'conflict',
  PRODUCT_KEY_TAKEN: 'conflict',
  CONFLICT: 'conflict',
  PRODUCT_HAS_DEVICES: 'conflict',
  DEVICE_LIMIT_REACHED: 'device-limit',
  SUB_DEVICE_LIMIT_REACHED: 'device-limit',
  SUB_DEVICE_BOUND: 'sub-device-bound',
  REGNWL_SLOTS_FULL: 'slots-full',
  DYNAMIC_REGISTRATION_OFF: 'registration-off',
  DEVICE_ALREADY_ACTIVATED: 'already-activated',
  UNSUPPORTED_SIGN_METHOD: 'unsupported-sign-method',
  BAD_SIGNATURE: 'bad-signature',
  DEVICE_DISABLED: 'disabled',
  RATE_LIMITED: 'rate-limited',
  PAYLOAD_TOO_LARGE: 'malformed',
  INTERNAL: 'server-error',
  // The database is down: to a device it is the server being unavailable (CONNACK 3).
  UNAVAILABLE: 'server-error',
};

/**
 * A thrown error as a refusal kind: a ThingAuthError by its kind, refined by the typed
 * `details.refusal` a service may set (e.g. a replayed random is INVALID_ARGUMENT to the
 * management API but 'replayed' here); anything else is our failure.
 */
export function refusalOfError(e: unknown): RefusalKind {
  if (!(e instanceof ThingAuthError)) return 'server-error';
  const explicit = e.details?.refusal;
  if (typeof explicit === 'string' && Object.hasOwn(REFUSALS, explicit)) return explicit as RefusalKind;
  return BY_ERROR_KIND[e.kind] ?? 'server-error';
}

/**
 * A sub-device login's refusal (thing/combine/login, batch_login), by its reply code, as a
 * refusal kind for the metrics label. Sub-device logins travel over an authenticated gateway
 * session and are limited per sub-device (sub-device-sessions.ts), not by the source throttle.
 */
const BY_SUB_DEVICE_CODE: Readonly<Record<number, RefusalKind>> = {
  [SubDeviceCodes.PARAM_ERROR]: 'malformed',
  [SubDeviceCodes.DEVICE_NOT_FOUND]: 'unknown-device',
  [SubDeviceCodes.PRODUCT_NOT_FOUND]: 'unknown-product',
  [SubDeviceCodes.LOGIN_SIGN_ERROR]: 'bad-signature',
  [SubDeviceCodes.UNSUPPORTED_SIGN_METHOD]: 'unsupported-sign-method',
  [SubDeviceCodes.DISABLED]: 'disabled',
  [SubDeviceCodes.DEVICE_DISABLED]: 'disabled',
  [SubDeviceCodes.RATE_LIMITED]: 'rate-limited',
  [SubDeviceCodes.INTERNAL]: 'server-error',
};

/** The refusal kind of a sub-device reply code, when it has one (the connection doctor's history). */
export function refusalOfSubDeviceCode(code: number): RefusalKind | undefined {
  return BY_SUB_DEVICE_CODE[code];
}

/** Metrics label of a sub-device login outcome; codes without a refusal kind keep their own label. */
export function subDeviceLoginLabel(code: number): string {
  const kind = BY_SUB_DEVICE_CODE[code];
  if (kind) return REFUSALS[kind].label;
  if (code === SubDeviceCodes.NOT_IN_TOPOLOGY) return 'not_in_topology';
  if (code === SubDeviceCodes.TOO_MANY_ONLINE) return 'too_many_online';
  return `code_${code}`;
}
