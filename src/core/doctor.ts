/**
 * The connection doctor's vocabulary (issue 17), pure: the stable finding codes the console
 * translates, their English message and hint, the finding a refusal kind (core/refusals.ts)
 * becomes, the refusal kind a stored refusal reason stands for, and the verdict.
 *
 * The DECISIONS are never taken here: services/doctor.ts runs the real authenticators and
 * registration checks and only words their outcome. Nothing here ever holds a secret, an
 * expected signature or any part of one: findings name what failed, never what would pass.
 */
import { refusalOfSubDeviceCode, type RefusalKind } from './refusals.js';
import { SubDeviceCodes } from './sub-device-protocol.js';

export type FindingSeverity = 'error' | 'warning' | 'info';

export interface Finding {
  code: DoctorFindingCode;
  severity: FindingSeverity;
  message: string;
  hint: string;
  params?: Record<string, string | number | boolean | null>;
}

export type Verdict = 'ok' | 'refused' | 'unknown';

export interface Diagnosis {
  verdict: Verdict;
  findings: Finding[];
}

type Params = Record<string, string | number | boolean | null>;

interface CodeInfo {
  severity: FindingSeverity;
  message: (p: Params) => string;
  hint: (p: Params) => string;
}

const s = (v: unknown, fallback = '?'): string => (v === undefined || v === null ? fallback : String(v));

/**
 * Every finding the doctor can give, by its stable code. The console translates by code; the
 * English texts here are the reference wording. Append new codes; never rename one.
 */
const CODES = {
  'credentials-ok': {
    severity: 'info',
    message: () => 'These credentials pass every check the real login makes.',
    hint: () => 'If the device still cannot connect, look at the network path (port, firewall, TLS trust) and the device log.',
  },
  'sign-mismatch': {
    severity: 'error',
    message: (p) => `The signature does not match the current ${s(p.secret, 'DeviceSecret')} (${s(p.signMethod, 'hmacmd5')}).`,
    hint: (p) =>
      p.secret === 'ProductSecret'
        ? 'Sign with the ProductSecret: HMAC over deviceName, productKey and random (sorted by name, concatenated as name+value, no separators), hex. If the ProductSecret was changed, put the new one in the firmware.'
        : 'Sign with the DeviceSecret: HMAC over clientId, deviceName, productKey and timestamp (sorted by name, concatenated as name+value, no separators), hex. The clientId signed is the part of the MQTT ClientId before the first "|". If the secret was reset or rotated, put the new one on the device.',
  },
  'sign-method-mismatch': {
    severity: 'error',
    message: (p) => `The password is a valid ${s(p.usedAlgorithm)} signature, but the ClientId announces ${s(p.signMethod, 'hmacmd5')}.`,
    hint: (p) => `Set signmethod=${s(p.suggestedSignMethod)} in the ClientId, or sign with the algorithm it announces.`,
  },
  'sign-method-unsupported': {
    severity: 'error',
    message: (p) => `The sign method "${s(p.signMethod)}" is not supported.`,
    hint: () => 'Use signmethod=hmacsha256 (or hmacsha1, hmacmd5; any case).',
  },
  'secret-rotated-previous-matches': {
    severity: 'warning',
    message: (p) => `The device signs with its previous secret; it is accepted until ${s(p.graceEndsAt)} (grace after a rotation).`,
    hint: () => 'Deliver the current DeviceSecret to the device before the grace ends, or it will be refused from then on.',
  },
  'secret-rotated-previous-expired': {
    severity: 'error',
    message: (p) => `The device signs with its previous secret, whose grace ended at ${s(p.graceEndsAt)}.`,
    hint: () => 'Put the current DeviceSecret on the device (or rotate again with a grace period while the fleet updates).',
  },
  'secret-rotation-in-grace': {
    severity: 'info',
    message: (p) => `The secret was rotated; the previous one is still accepted until ${s(p.graceEndsAt)}.`,
    hint: () => 'Devices that have not picked up the new secret keep working until then.',
  },
  'timestamp-missing': {
    severity: 'warning',
    message: (p) => `The product has a ${s(p.windowSeconds)} s replay window but the login carries no timestamp, so the window cannot apply.`,
    hint: () => 'Send timestamp=<milliseconds since 1970> in the ClientId and sign it, so a recorded CONNECT cannot be replayed.',
  },
  'timestamp-outside-window': {
    severity: 'error',
    message: (p) =>
      p.skewSeconds !== undefined
        ? `The timestamp is ${s(p.skewSeconds)} s away from the server clock; the product accepts ${s(p.windowSeconds)} s.`
        : 'The timestamp is outside the product\'s replay window (or not a time).',
    hint: () => 'Set the device clock (NTP) and send the current time in milliseconds; a CONNECT recorded earlier is refused on purpose.',
  },
  'tls-required': {
    severity: 'error',
    message: () => 'The product accepts TLS connections only, and this one is (or was) plain.',
    hint: () => 'Connect with TLS (MQTT over TLS, port 8883 or the mqtts/wss listeners) and trust the server certificate.',
  },
  'tls-only-product': {
    severity: 'info',
    message: () => 'The product accepts TLS connections only; the doctor assumed the device uses TLS.',
    hint: () => 'Make sure the device connects with TLS (port 8883, mqtts or wss); a plain connection is refused.',
  },
  'device-disabled': {
    severity: 'error',
    message: () => 'The device is disabled; every login is refused.',
    hint: () => 'An operator enables it again (thingauth device enable, or the console).',
  },
  'source-throttled': {
    severity: 'error',
    message: (p) => `The source address ${s(p.source, '(unknown)')} is in a cool-down after repeated failed logins; every login from it is refused for now.`,
    hint: () => 'Fix the credentials of the devices behind that address first; the cool-down ends by itself (THINGAUTH_LOGIN_COOLDOWN_SECONDS).',
  },
  'device-connect-rate': {
    severity: 'error',
    message: () => 'The device connected more often than the per-device rate allows.',
    hint: () => 'Look for a reconnect loop in the firmware (two devices sharing one identity do this too); the limit is THINGAUTH_DEVICE_CONNECT_RATE_PER_MINUTE.',
  },
  'unknown-product': {
    severity: 'error',
    message: (p) => `There is no product "${s(p.productKey)}".`,
    hint: () => 'Check the ProductKey on the device (it is case sensitive) and that it was created on this server.',
  },
  'unknown-device': {
    severity: 'error',
    message: (p) => `Product "${s(p.productKey)}" has no device "${s(p.deviceName)}".`,
    hint: () => 'Check the DeviceName (case sensitive) or create the device; a deleted device has to be created again.',
  },
  'clientid-malformed': {
    severity: 'error',
    message: () => 'The MQTT ClientId has no "|...|" extension section.',
    hint: () => 'Send ClientId as <clientId>|securemode=3,signmethod=hmacsha256,timestamp=<ms>|.',
  },
  'username-malformed': {
    severity: 'error',
    message: () => 'The MQTT username is not deviceName&productKey.',
    hint: () => 'Send username <deviceName>&<productKey>.',
  },
  'username-mismatch': {
    severity: 'warning',
    message: (p) => `The ClientId names device "${s(p.clientIdDevice)}" but the username logs in as "${s(p.usernameDevice)}".`,
    hint: () => 'The username decides who logs in; make sure the device uses its own ProductKey and DeviceName everywhere.',
  },
  'password-missing': {
    severity: 'error',
    message: () => 'The password is empty.',
    hint: () => 'Send the signature (sign-based login) or the DeviceToken (connwl) as the MQTT password.',
  },
  'securemode-unsupported': {
    severity: 'error',
    message: (p) => `securemode=${s(p.securemode)} is not accepted for this kind of login.`,
    hint: () => 'Use securemode=2 (TLS) or 3 (plain) for a signed login, 2 or -2 for dynamic registration.',
  },
  'authtype-unsupported': {
    severity: 'error',
    message: (p) => `authType "${s(p.authType)}" is not supported.`,
    hint: () => 'Leave authType out for a signed login, or use register, regnwl or connwl.',
  },
  'keepalive-out-of-range': {
    severity: 'error',
    message: (p) => `The keep-alive ${s(p.keepalive)} s is outside ${s(p.min)}..${s(p.max)} s.`,
    hint: () => 'Use a keep-alive between 30 and 1200 seconds (60 is common).',
  },
  'device-token-mismatch': {
    severity: 'error',
    message: () => 'The ClientID and DeviceToken do not match a credential issued by pre-registration-free registration (or none is issued).',
    hint: () => 'Register again with authType=regnwl and use the ClientID and DeviceToken from that answer.',
  },
  'registration-off': {
    severity: 'error',
    message: (p) => `This kind of dynamic registration is switched off for product "${s(p.productKey)}".`,
    hint: () => 'Switch dynamic registration on for the product (or pre-registration-free for regnwl), or pre-register the device with its secret.',
  },
  'already-activated': {
    severity: 'error',
    message: () => 'The device is already activated; dynamic registration answers only once.',
    hint: () => 'Use the DeviceSecret the device already got, or have an operator reset the device so it can register again.',
  },
  'sub-device-bound': {
    severity: 'error',
    message: () => 'The device is a sub-device bound to a gateway; it gets its credentials through that gateway.',
    hint: () => 'Register it through its gateway, or release it from the gateway first.',
  },
  'device-limit': {
    severity: 'error',
    message: () => 'The product has reached its device limit.',
    hint: () => 'Delete unused devices or raise the product\'s device limit.',
  },
  'slots-full': {
    severity: 'error',
    message: () => 'All credential slots of this DeviceName are in use.',
    hint: () => 'Revoke a slot of the device (thingauth device slots) before another physical device registers under the name.',
  },
  'replayed': {
    severity: 'error',
    message: () => 'The registration reused a random value already used for this device.',
    hint: () => 'Send a fresh random on every registration request.',
  },
  'rate-limited': {
    severity: 'error',
    message: () => 'Too many registration requests (per product or per source address).',
    hint: () => 'Retry later with back-off; THINGAUTH_REGISTRATION_RATE and _PER_SOURCE set the rates.',
  },
  'wrong-node-type': {
    severity: 'error',
    message: (p) => `The device's product has the wrong node type for this: ${s(p.detail, 'a gateway cannot be its own sub-device')}.`,
    hint: () => 'Sub-devices belong to a SUB_DEVICE product and log in through a device of a GATEWAY product; check the products\' nodeType.',
  },
  'not-in-topology': {
    severity: 'error',
    message: () => 'The sub-device is not in its gateway\'s topology, so the gateway may not log it in.',
    hint: () => 'Add it to the gateway first (thing/topo/add from the gateway, or thingauth topology add).',
  },
  'too-many-sub-devices-online': {
    severity: 'error',
    message: () => 'The gateway already has as many sub-devices online as allowed.',
    hint: () => 'Log other sub-devices out, or raise THINGAUTH_SUB_DEVICE_LIMIT.',
  },
  'unknown-application': {
    severity: 'error',
    message: () => 'No application with that AppKey.',
    hint: () => 'Check the app:<AppKey> username.',
  },
  'raw-secret-needs-tls': {
    severity: 'error',
    message: () => 'An application sent its raw AppSecret as password over a plain connection.',
    hint: () => 'Connect with TLS, or sign the login instead of sending the secret.',
  },
  'server-error': {
    severity: 'error',
    message: () => 'The server could not decide (store unavailable or an internal error).',
    hint: () => 'Look at the server log and /healthz.',
  },
  'refused-other': {
    severity: 'error',
    message: (p) => `Refused: ${s(p.reason)}.`,
    hint: () => 'See the audit trail of the device for details.',
  },
  'refusal-history': {
    severity: 'info',
    message: (p) => `${s(p.count)} refused attempt(s) of this kind in the recent audit, the last at ${s(p.lastAt)} from ${s(p.source, 'an unknown address')}.`,
    hint: () => 'The findings above say what each one means.',
  },
  'no-recent-activity': {
    severity: 'info',
    message: () => 'The audit holds no recent login attempt of this device.',
    hint: () => 'If the device is trying, its attempts are not reaching this server: check the host name, port, firewall and TLS trust on the device; or paste its CONNECT fields into the doctor.',
  },
  'last-login-ok': {
    severity: 'info',
    message: (p) => `The last attempt (login or registration) succeeded, at ${s(p.at)}${p.source ? ` from ${s(p.source)}` : ''}.`,
    hint: () => 'The device can get in; a later problem is on the session (keep-alive, network) rather than the credentials.',
  },
  'transport-assumed': {
    severity: 'info',
    message: () => 'The transport was not given; the doctor assumed TLS.',
    hint: () => 'Pass transport "tcp" (or "ws") to check a plain connection.',
  },
} satisfies Record<string, CodeInfo>;

export type DoctorFindingCode = keyof typeof CODES;

/** Every code the doctor can answer with (exported for the console's translations and the API docs). */
export const DOCTOR_FINDING_CODES: readonly DoctorFindingCode[] = Object.keys(CODES) as DoctorFindingCode[];

/** The default severity of each code. */
export function severityOf(code: DoctorFindingCode): FindingSeverity {
  return (CODES[code] as CodeInfo).severity;
}

export function finding(code: DoctorFindingCode, params?: Params, severity?: FindingSeverity): Finding {
  const info = CODES[code] as CodeInfo;
  const p = params ?? {};
  return {
    code,
    severity: severity ?? info.severity,
    message: info.message(p),
    hint: info.hint(p),
    ...(params && Object.keys(params).length > 0 ? { params } : {}),
  };
}

/**
 * The finding a refusal kind becomes. `missing-credentials` and `malformed` have several
 * causes; the caller passes which one it saw on the input (`detail`).
 */
export function findingCodeOfRefusal(kind: RefusalKind, detail?: 'username' | 'password'): DoctorFindingCode {
  switch (kind) {
    case 'malformed':
      return detail === 'username' ? 'username-malformed' : 'clientid-malformed';
    case 'missing-credentials':
      return detail === 'password' ? 'password-missing' : 'username-malformed';
    case 'bad-securemode':
      return 'securemode-unsupported';
    case 'unsupported-auth-type':
      return 'authtype-unsupported';
    case 'unsupported-sign-method':
      return 'sign-method-unsupported';
    case 'bad-keepalive':
      return 'keepalive-out-of-range';
    case 'unknown-product':
      return 'unknown-product';
    case 'unknown-device':
      return 'unknown-device';
    case 'unknown-application':
      return 'unknown-application';
    case 'bad-signature':
      return 'sign-mismatch';
    case 'bad-token':
      return 'device-token-mismatch';
    case 'replayed':
      return 'replayed';
    case 'timestamp-outside-window':
      return 'timestamp-outside-window';
    case 'disabled':
      return 'device-disabled';
    case 'tls-required':
      return 'tls-required';
    case 'raw-secret-needs-tls':
      return 'raw-secret-needs-tls';
    case 'registration-off':
      return 'registration-off';
    case 'already-activated':
      return 'already-activated';
    case 'device-limit':
      return 'device-limit';
    case 'slots-full':
      return 'slots-full';
    case 'sub-device-bound':
      return 'sub-device-bound';
    case 'rate-limited':
      return 'rate-limited';
    case 'device-connect-rate':
      return 'device-connect-rate';
    case 'throttled':
      return 'source-throttled';
    case 'server-error':
      return 'server-error';
    case 'forbidden':
    case 'conflict':
      return 'refused-other';
  }
}

/**
 * Stored refusal reasons (audit `reason`, a device's lastAuthError) are free text written by
 * the server: `CONNACK 5: bad signature (hmacsha256)`, `http /auth: device disabled`,
 * `device d1 is already activated; ...`. Each pattern is anchored at the start of the text
 * the server wrote (after its `CONNACK n: ` or `http /auth: ` prefix), so what a client chose
 * (a DeviceName, a sign method, quoted later in the text) cannot make it read as another kind.
 * Used only to EXPLAIN history; no decision is ever taken on it.
 */
const REASON_PATTERNS: readonly [RegExp, RefusalKind, ('username' | 'password')?][] = [
  [/^bad signature\b/, 'bad-signature'],
  [/^sign does not match\b/, 'bad-signature'],
  [/^unknown device$/, 'unknown-device'],
  [/^unknown product$/, 'unknown-product'],
  [/^device disabled$/, 'disabled'],
  [/^product requires TLS\b/, 'tls-required'],
  [/^dynamic registration is accepted over TLS only\b/, 'tls-required'],
  [/^timestamp outside window\b/, 'timestamp-outside-window'],
  [/^unsupported signmethod\b/, 'unsupported-sign-method'],
  [/^signMethod must be\b/, 'unsupported-sign-method'],
  [/^ClientId has no \|\.\.\.\| extension section$/, 'malformed'],
  [/^unsupported authType$/, 'unsupported-auth-type'],
  [/^authType \S+ is not enabled$/, 'unsupported-auth-type'],
  [/^username is not deviceName&productKey$/, 'missing-credentials', 'username'],
  [/^username must be deviceName&productKey$/, 'missing-credentials', 'username'],
  [/^empty password$/, 'missing-credentials', 'password'],
  [/^password \(the DeviceToken\) is empty$/, 'missing-credentials', 'password'],
  [/^unsupported securemode\b/, 'bad-securemode'],
  [/^securemode \S* ?is not a registration mode\b/, 'bad-securemode'],
  [/^keep-alive\b/, 'bad-keepalive'],
  [/^source throttled\b/, 'throttled'],
  [/^too many connects for this device\b/, 'device-connect-rate'],
  [/^too many registration requests\b/, 'rate-limited'],
  [/^clientId and deviceToken do not match\b/, 'bad-token'],
  [/^no pre-registration-free credential is issued\b/, 'bad-token'],
  [/^dynamic registration is switched off\b/, 'registration-off'],
  [/^pre-registration-free registration is switched off\b/, 'registration-off'],
  [/^product \S+ is pre-registration-free\b/, 'registration-off'],
  [/^device \S+ is already activated\b/, 'already-activated'],
  [/^device \S+ is disabled$/, 'disabled'],
  [/^device \S+ is bound to a gateway\b/, 'sub-device-bound'],
  [/^device \S+ not found in product\b/, 'unknown-device'],
  [/^product \S+ not found$/, 'unknown-product'],
  [/^random was already used\b/, 'replayed'],
  [/^server unavailable\b/, 'server-error'],
];

export interface DecodedReason {
  kind: RefusalKind;
  detail?: 'username' | 'password';
}

/** The refusal kind a stored reason stands for, or undefined when it is not one the server writes. */
export function refusalOfReason(reason: string | null | undefined): DecodedReason | undefined {
  if (typeof reason !== 'string') return undefined;
  const text = reason.replace(/^CONNACK \d+: /, '').replace(/^http \/auth: /, '');
  for (const [re, kind, detail] of REASON_PATTERNS) {
    if (re.test(text)) return detail ? { kind, detail } : { kind };
  }
  return undefined;
}

/**
 * A refused sub-device item as the audit keeps it (`session.sub.login`, `register.sub`):
 * `<reply code> <message>`. Decided by the code the server wrote first, never by the message.
 */
export function findingCodeOfSubDeviceReason(reason: string | null | undefined): DoctorFindingCode | undefined {
  const m = typeof reason === 'string' ? /^(\d{3,4}) /.exec(reason) : null;
  if (!m) return undefined;
  const code = Number(m[1]);
  if (code === SubDeviceCodes.GATEWAY_ITSELF || code === SubDeviceCodes.NOT_A_GATEWAY) return 'wrong-node-type';
  if (code === SubDeviceCodes.NOT_IN_TOPOLOGY) return 'not-in-topology';
  if (code === SubDeviceCodes.TOO_MANY_ONLINE) return 'too-many-sub-devices-online';
  if (code === SubDeviceCodes.BOUND_TO_OTHER_GATEWAY) return 'sub-device-bound';
  if (code === SubDeviceCodes.REGISTER_SIGN_ERROR || code === SubDeviceCodes.TOPO_SIGN_ERROR) return 'sign-mismatch';
  if (code === SubDeviceCodes.DYNAMIC_REGISTRATION_OFF) return 'registration-off';
  if (code === SubDeviceCodes.ALREADY_ACTIVATED) return 'already-activated';
  const kind = refusalOfSubDeviceCode(code);
  return kind ? findingCodeOfRefusal(kind) : undefined;
}

/** `timestamp outside window: 4000 s from the server clock (window 300 s)` -> its numbers. */
export function timestampSkewOf(reason: string): { skewSeconds: number; windowSeconds: number } | undefined {
  const m = /timestamp outside window: (\d+) s from the server clock \(window (\d+) s\)/.exec(reason);
  return m ? { skewSeconds: Number(m[1]), windowSeconds: Number(m[2]) } : undefined;
}

/** refused when any finding is an error; otherwise ok when the decision was taken, else unknown. */
export function verdictOf(findings: readonly Finding[], decided: boolean): Verdict {
  if (findings.some((f) => f.severity === 'error')) return 'refused';
  return decided ? 'ok' : 'unknown';
}
