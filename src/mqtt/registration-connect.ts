/**
 * MQTT dynamic registration (spec 3): the CONNECT authenticators for `authType=register`,
 * `authType=regnwl` and `authType=connwl`.
 *
 * register / regnwl: TLS only (decided by the transport actually used; plain TCP gets
 * CONNACK 2), keep-alive not validated, securemode 2 or -2 (C Link SDK and Python send 2 for
 * both kinds, LuatOS and the docs -2), the ClientId may be anything (identity comes from the
 * username). After CONNACK 0 the result is pushed on `/ext/register` resp. `/ext/regnwl` to
 * that one connection, without it having subscribed, QoS 0, and the connection is closed.
 * These sessions run as a `provisioning` identity, which has no topic access at all: the
 * push is written to the client directly, never routed through topics, so no other client
 * can ever receive it.
 *
 * connwl: password = the DeviceToken issued by regnwl, verbatim; the session is a normal
 * device session from then on (presence, ACL, disable all apply).
 */
import type { AppContext } from '../context.js';
import { KEEPALIVE_MAX, parseMqttUsername } from '../core/credentials.js';
import { ThingAuthError } from '../core/errors.js';
import { refusalOfError, type RefusalKind, type RefusalPath } from '../core/refusals.js';
import { randomUUID } from 'node:crypto';
import type { PublishPacket } from 'aedes';
import { TOPIC_RULES } from './acl.js';
import type { ConnectAttempt, ConnectAuthenticator, ConnectDecision } from './connect-authenticators.js';
import { refuseConnect } from './connect-refusal.js';
import { isTlsTransport } from './connection-info.js';
import type { Session } from './sessions.js';

export const REGISTER_REPLY_TOPIC = '/ext/register';
export const REGNWL_REPLY_TOPIC = '/ext/regnwl';
/** Securemode values the registration CONNECT may carry (spec 3.1); absent is tolerated. */
const REGISTRATION_SECUREMODES = new Set(['2', '-2']);
/**
 * After the reply is written the device normally disconnects itself (the SDKs do); if it has
 * not after this long the server ends the connection (the cloud waits up to 15 s).
 */
export const PUSH_CLOSE_GRACE_MS = 200;
/** A peer that ignores the graceful end is dropped after this long. */
const FORCE_CLOSE_MS = 2_000;

// Spec 3.2: some clients subscribe to their reply topic; grant it (SUBACK success) so they
// do not treat the registration as failed. Nothing can ever publish to these topics (no
// identity has publish access), and the reply itself is written to the one connection
// directly, so a subscription never lets anyone see another device's credential.
TOPIC_RULES.provisioning.push(
  { pattern: '/ext/register', access: 'sub', why: 'dynamic registration reply (spec 3.2), delivered to its own connection only' },
  { pattern: '/ext/regnwl', access: 'sub', why: 'pre-registration-free registration reply (spec 3.2), delivered to its own connection only' },
);

/**
 * Writes the registration result to this one client (QoS 0, no subscription needed, never
 * routed through topics), then ends the connection: gracefully, so the reply is flushed
 * before TLS close_notify/FIN, and forcibly if the peer does not go away.
 */
export function pushAndClose(session: Session, topic: string, payload: string, ctx: AppContext): void {
  const client = session.client;
  if (client.closed) return;
  const packet = { cmd: 'publish', topic, payload: Buffer.from(payload, 'utf8'), qos: 0, retain: false, dup: false } as PublishPacket;
  client.publish(packet, (err?: Error | null) => {
    if (err) ctx.logger.debug({ err: err.message, topic }, 'registration reply not delivered');
    const end = setTimeout(() => {
      if (client.closed) return;
      session.closeReason = 'registration answered';
      client.conn.end();
      setTimeout(() => client.close(), FORCE_CLOSE_MS).unref();
    }, PUSH_CLOSE_GRACE_MS);
    end.unref();
  });
}

/** Spec 3.1 (2 = missing/bad parameters or TCP, 3 = server error, 4 = signature/auth failure) via core/refusals.ts. */
function deny(refusal: RefusalKind, reason: string, user?: { productKey: string; deviceName: string }, path: RefusalPath = 'registration'): ConnectDecision {
  return refuseConnect(refusal, path, reason, user ? { productKey: user.productKey, deviceName: user.deviceName } : {});
}

/** A use case's error as a refusal: its kind from the error, its reason the error's message (never a secret). */
function denyError(e: unknown, user: { productKey: string; deviceName: string }, path: RefusalPath): ConnectDecision {
  return deny(refusalOfError(e), e instanceof ThingAuthError ? e.message : 'internal error', user, path);
}

/** Checks shared by register and regnwl before the service runs. */
export function precheck(attempt: ConnectAttempt): { ok: true; user: { productKey: string; deviceName: string } } | { ok: false; decision: ConnectDecision } {
  const user = parseMqttUsername(attempt.username);
  if (!isTlsTransport(attempt.transport)) {
    return { ok: false, decision: deny('tls-required', 'dynamic registration is accepted over TLS only', user) };
  }
  if (!user) return { ok: false, decision: deny('malformed', 'username must be deviceName&productKey', user) };
  const securemode = attempt.parsed?.ext.securemode;
  if (securemode !== undefined && !REGISTRATION_SECUREMODES.has(securemode)) {
    return { ok: false, decision: deny('bad-securemode', `securemode ${securemode} is not a registration mode (use 2 or -2)`, user) };
  }
  return { ok: true, user };
}

function registrationRequest(attempt: ConnectAttempt, user: { productKey: string; deviceName: string }) {
  const ext = attempt.parsed?.ext ?? {};
  return {
    productKey: user.productKey,
    deviceName: user.deviceName,
    random: ext.random,
    sign: attempt.password,
    signMethod: ext.signmethod ?? ext.signMethod,
    transport: { channel: 'mqtt' as const, tls: isTlsTransport(attempt.transport), sourceAddress: attempt.remoteAddress },
  };
}

/**
 * Registration sessions run as `provisioning`: no topic access but their reply topic. The
 * iotId is a per-connection nonce (the device may not exist yet, and it keeps aedes from
 * treating two registering connections as the same client).
 */
function provisioningIdentity(productKey: string, deviceName: string, authType: 'register' | 'regnwl') {
  return { kind: 'provisioning' as const, productKey, deviceName, iotId: `${authType}:${randomUUID()}` };
}

export const authenticateRegister: ConnectAuthenticator = async (attempt, ctx: AppContext) => {
  const pre = precheck(attempt);
  if (!pre.ok) return pre.decision;
  try {
    const result = await ctx.services.registration.registerPreRegistered(registrationRequest(attempt, pre.user));
    const payload = JSON.stringify({ productKey: result.productKey, deviceName: result.deviceName, deviceSecret: result.deviceSecret });
    return {
      ok: true,
      identity: provisioningIdentity(result.productKey, result.deviceName, 'register'),
      onSessionReady: (session) => pushAndClose(session, REGISTER_REPLY_TOPIC, payload, ctx),
    };
  } catch (e) {
    return denyError(e, pre.user, 'registration');
  }
};

export const authenticateRegnwl: ConnectAuthenticator = async (attempt, ctx: AppContext) => {
  const pre = precheck(attempt);
  if (!pre.ok) return pre.decision;
  try {
    const result = await ctx.services.registration.registerWithoutPreRegistration(registrationRequest(attempt, pre.user));
    const payload = JSON.stringify({ productKey: result.productKey, deviceName: result.deviceName, clientId: result.clientId, deviceToken: result.deviceToken });
    return {
      ok: true,
      identity: provisioningIdentity(result.productKey, result.deviceName, 'regnwl'),
      onSessionReady: (session) => pushAndClose(session, REGNWL_REPLY_TOPIC, payload, ctx),
    };
  } catch (e) {
    return denyError(e, pre.user, 'registration');
  }
};

/** The login after regnwl (spec 3.3): ClientId `<issued clientId>|securemode=-2,authType=connwl|`, password = DeviceToken. */
export const authenticateConnwl: ConnectAuthenticator = async (attempt, ctx: AppContext) => {
  const user = parseMqttUsername(attempt.username);
  if (!user) return deny('missing-credentials', 'username must be deviceName&productKey', undefined, 'login');
  if (attempt.password === '') return deny('missing-credentials', 'password (the DeviceToken) is empty', user, 'login');
  const keepaliveMin = ctx.config.keepaliveMinSeconds;
  if (attempt.keepalive < keepaliveMin || attempt.keepalive > KEEPALIVE_MAX) {
    return deny('bad-keepalive', `keep-alive must be ${keepaliveMin}..${KEEPALIVE_MAX} s, got ${attempt.keepalive}`, user, 'login');
  }
  const clientId = attempt.parsed?.clientId ?? '';
  try {
    const { device, slot } = await ctx.services.registration.verifyConnwl({
      productKey: user.productKey,
      deviceName: user.deviceName,
      clientId,
      deviceToken: attempt.password,
    });
    const product = await ctx.store.getProduct(device.productKey);
    if (product?.requireTls && !isTlsTransport(attempt.transport)) {
      return refuseConnect('tls-required', 'login', 'product requires TLS', { device: { iotId: device.iotId, productKey: device.productKey, deviceName: device.deviceName } });
    }
    return {
      ok: true,
      // One session per DeviceName whatever the slot (a login on another slot takes over); the
      // slot is kept so revoking it closes exactly this session (regnwl-slots.ts).
      identity: { kind: 'device', productKey: device.productKey, deviceName: device.deviceName, iotId: device.iotId, slot },
      onSessionReady: (session) => connwlSessionStarted(session, clientId, ctx),
    };
  } catch (e) {
    // Spec 1.7: unknown product/device, bad credential, disabled -> 5 (core/refusals.ts).
    return denyError(e, user, 'login');
  }
};

/**
 * A connwl session is live: its slot counts as activated from now on, and if a revoke or reset
 * removed the slot between the check at CONNECT and now, the session ends at once.
 */
function connwlSessionStarted(session: Session, clientId: string, ctx: AppContext): void {
  const { iotId, slot } = session.identity;
  if (slot === undefined) return;
  ctx.services.registration.slots.sessionStarted(iotId, slot, clientId).then(
    (live) => {
      if (live || session.client.closed) return;
      session.closeReason = 'credential slot revoked';
      session.client.close();
    },
    (err) => ctx.logger.error({ err, productKey: session.identity.productKey, deviceName: session.identity.deviceName }, 'recording a regnwl slot login failed'),
  );
}
