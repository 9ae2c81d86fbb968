/**
 * CONNECT authentication, dispatched by what the client presents.
 *
 * Extension point: CONNECT_AUTHENTICATORS maps a kind of login to the function that decides
 * it. The kind is the ClientId's authType (src/core/credentials.ts authTypeOf: 'sign' when
 * absent), or 'application' when the username has the form `app:{appKey}`.
 * - 'sign' (device secret HMAC, spec 1) and 'application' are registered here (engineer B).
 * - 'register' | 'regnwl' | 'connwl' (spec 3) belong to engineer C, who adds one line below.
 * A kind without an entry is refused with CONNACK 2 (identifier rejected).
 *
 * An authenticator gets the parsed credentials, the transport actually used and the peer
 * address, and returns allow (the identity the session runs as, plus an optional hook that
 * runs once the session is live, e.g. to push a registration result) or deny (the CONNACK
 * return code and a reason for the log and the device record; never a secret).
 */
import type { AppContext } from '../context.js';
import { authTypeOf, type AuthType, type ParsedClientId } from '../core/credentials.js';
import type { Transport } from './connection-info.js';
import type { Session, SessionIdentity } from './sessions.js';
import type { MqttBroker } from './broker.js';
import { authenticateSignedDevice } from './sign-authenticator.js';
import { authenticateApplication, APPLICATION_USERNAME_PREFIX } from './application-authenticator.js';
import { authenticateConnwl, authenticateRegister, authenticateRegnwl } from './registration-connect.js';
import { countsAgainstSource, type ConnackCode, type RefusalKind, type RefusalPath } from '../core/refusals.js';
import { refuseConnect } from './connect-refusal.js';

/** MQTT 3.1.1 CONNACK refusal codes (spec 1.7); MQTT 5 equivalents in mqtt5-adapter.ts. */
export type ConnackRefusal = ConnackCode;

export interface ConnectAttempt {
  /** The MQTT ClientId exactly as sent. */
  rawClientId: string;
  /** Its `id|k=v,...|` parse; undefined when it has no extension section. */
  parsed: ParsedClientId | undefined;
  username: string | undefined;
  /** The password as UTF-8 text ('' when absent). */
  password: string;
  keepalive: number;
  protocolVersion: number;
  clean: boolean;
  transport: Transport;
  remoteAddress: string;
  /** Set by the connection doctor (connect-doctor.ts): decide only, log nothing as if a device had logged in. */
  diagnosis?: true;
}

export interface ConnectAllow {
  ok: true;
  identity: SessionIdentity;
  /** Runs after the session is registered (before CONNACK reaches the wire is not guaranteed). */
  onSessionReady?: (session: Session, broker: MqttBroker) => void;
  /** Appended to the audit reason, e.g. which DeviceSecret matched after a rotation. Never a secret. */
  auditNote?: string;
}

export interface ConnectDeny {
  ok: false;
  /** Why, as a kind: decides the codes, the metrics label and the throttle (core/refusals.ts). */
  refusal: RefusalKind;
  /** Derived from `refusal` by refuseConnect (connect-refusal.ts). */
  returnCode: ConnackRefusal;
  /** For MQTT 5 clients, a more precise reason code than the mapping of returnCode (mqtt5-adapter.ts). */
  v5ReasonCode?: number;
  /** Why, for the server log and the device record. Never contains a secret. */
  reason: string;
  /** The known device the refusal concerns: its record gets lastAuthError = reason. */
  device?: { iotId: string; productKey: string; deviceName: string };
  /** Known identity fields for the log line even when no device record exists. */
  productKey?: string;
  deviceName?: string;
  /**
   * Set on the refusals of a throttled source after the first one of its cool-down: they are
   * counted in the metrics but not audited one by one (issue 11 item 11), so an attacker
   * hammering during the cool-down cannot grow the audit trail.
   */
  skipAudit?: boolean;
}

export type ConnectDecision = ConnectAllow | ConnectDeny;

export type ConnectKind = AuthType | 'application';

export type ConnectAuthenticator = (attempt: ConnectAttempt, ctx: AppContext) => Promise<ConnectDecision> | ConnectDecision;

export const CONNECT_AUTHENTICATORS: Partial<Record<ConnectKind, ConnectAuthenticator>> = {
  sign: authenticateSignedDevice,
  application: authenticateApplication,
  register: authenticateRegister,
  regnwl: authenticateRegnwl,
  connwl: authenticateConnwl,
};

export function connectKindOf(attempt: Pick<ConnectAttempt, 'parsed' | 'username'>): ConnectKind | 'unknown' {
  if (attempt.username !== undefined && attempt.username.startsWith(APPLICATION_USERNAME_PREFIX)) return 'application';
  if (!attempt.parsed) return 'unknown';
  return authTypeOf(attempt.parsed.ext);
}

/**
 * Every CONNECT, of every kind, passes the brute-force and flood limits here
 * (services/login-throttle.ts): a throttled source is refused before anything is verified,
 * failed credentials count against the source and the claimed device, and an accepted
 * device login takes one of the device's connects for this minute.
 */
export function authenticateConnect(attempt: ConnectAttempt, ctx: AppContext): Promise<ConnectDecision> {
  const p = authenticateConnectNow(attempt, ctx);
  // Tracked so a graceful shutdown lets decisions in flight (a registration writing its
  // device) finish before the store closes.
  let set = inFlight.get(ctx);
  if (!set) inFlight.set(ctx, (set = new Set()));
  const s = set;
  s.add(p);
  p.then(() => s.delete(p), () => s.delete(p));
  return p;
}

const inFlight = new WeakMap<AppContext, Set<Promise<unknown>>>();

/** Resolves when every CONNECT decision started so far has finished (graceful shutdown); true if any was pending. */
export async function connectDecisionsSettled(ctx: AppContext): Promise<boolean> {
  const set = inFlight.get(ctx);
  let waited = false;
  while (set && set.size > 0) {
    waited = true;
    await Promise.allSettled([...set]);
  }
  return waited;
}

async function authenticateConnectNow(attempt: ConnectAttempt, ctx: AppContext): Promise<ConnectDecision> {
  const throttle = ctx.services.loginThrottle;
  const gate = throttle.checkSource(attempt.remoteAddress);
  if (!gate.ok) {
    const retry = Math.ceil(gate.retryAfterMs / 1000);
    const reason = gate.firstRefusal
      ? `source throttled: too many failed logins from this address; retry in ${retry} s (further attempts in this cool-down are counted in the metrics, not audited one by one)`
      : `source throttled: too many failed logins from this address; retry in ${retry} s`;
    return { ...refuseConnect('throttled', 'login', reason, usernameFields(attempt.username)), ...(gate.firstRefusal ? {} : { skipAudit: true }) };
  }
  const decision = await decideConnect(attempt, ctx);
  if (!decision.ok) {
    if (countsAgainstSource(decision.refusal, refusalPathOf(attempt))) {
      const d = decision.device ?? (decision.productKey !== undefined && decision.deviceName !== undefined ? { productKey: decision.productKey, deviceName: decision.deviceName } : undefined);
      throttle.recordFailure(attempt.remoteAddress, d);
    }
    return decision;
  }
  const id = decision.identity;
  if (id.kind === 'device') {
    throttle.recordSuccess(id);
    if (!throttle.takeDeviceConnect(id, attempt.remoteAddress)) {
      return refuseConnect('device-connect-rate', 'login', `too many connects for this device: at most ${ctx.config.deviceConnectRatePerMinute} per minute; retry later`, {
        device: { iotId: id.iotId, productKey: id.productKey, deviceName: id.deviceName },
      });
    }
  }
  return decision;
}

/** Dynamic registration CONNECTs follow the registration rules of the refusal table; every other kind is a login. */
export function refusalPathOf(attempt: Pick<ConnectAttempt, 'parsed' | 'username'>): RefusalPath {
  const kind = connectKindOf(attempt);
  return kind === 'register' || kind === 'regnwl' ? 'registration' : 'login';
}

/** The decision of one CONNECT without the throttle (exported for the connection doctor, mqtt/connect-doctor.ts). */
export async function decideConnect(attempt: ConnectAttempt, ctx: AppContext): Promise<ConnectDecision> {
  const kind = connectKindOf(attempt);
  if (kind === 'unknown') {
    const reason = attempt.parsed ? 'unsupported authType' : 'ClientId has no |...| extension section';
    return refuseConnect(attempt.parsed ? 'unsupported-auth-type' : 'malformed', 'login', reason, usernameFields(attempt.username));
  }
  const authenticator = CONNECT_AUTHENTICATORS[kind];
  if (!authenticator) return refuseConnect('unsupported-auth-type', 'login', `authType ${kind} is not enabled`, usernameFields(attempt.username));
  return authenticator(attempt, ctx);
}

function usernameFields(username: string | undefined): { productKey?: string; deviceName?: string } {
  if (typeof username !== 'string') return {};
  const amp = username.lastIndexOf('&');
  return amp > 0 ? { deviceName: username.slice(0, amp), productKey: username.slice(amp + 1) } : {};
}
