/**
 * The X.509 CONNECT authenticator (issue 16). A CONNECT over a TLS connection whose client
 * presented a certificate naming a device is decided by that certificate
 * (services/x509.ts verifyLogin), not by username and password, as on the cloud
 * (docs/x509.md "What the CONNECT carries"):
 * - ClientId `{anything}|securemode=2,...|` (the Java example sends `.|securemode=2|`, the C SDK
 *   3.x `.|timestamp=...,securemode=2,signmethod=hmacsha256,...|`); no extension section is
 *   tolerated; securemode other than 2 is refused;
 * - Username empty, `&` (the C SDK with empty ProductKey/DeviceName), or `deviceName&productKey`
 *   once the device knows its identity: then it must name the certificate's device;
 * - Password: anything (empty, or the C SDK's HMAC under an empty secret); never checked.
 * Once the session is live the device is told who it is on /ext/auth/identity/response
 * (`{"productKey":..,"deviceName":..}`), no subscription needed.
 */
import type { PublishPacket } from 'aedes';
import type { AppContext } from '../context.js';
import { KEEPALIVE_MAX, parseMqttUsername } from '../core/credentials.js';
import { readPresentedLeaf } from '../core/x509.js';
import type { ConnectAttempt, ConnectDecision } from './connect-authenticators.js';
import { refuseConnect } from './connect-refusal.js';
import type { Session } from './sessions.js';
import { TOPIC_RULES } from './acl.js';

export const IDENTITY_RESPONSE_TOPIC = '/ext/auth/identity/response';

// The cloud's docs: "no need to subscribe". The reply is written to its own connection only
// (pushIdentity) and nothing can publish to the topic, so a device subscribing it (or the
// broker forwarding the push to it) never sees another device's identity.
TOPIC_RULES.device.push({ pattern: IDENTITY_RESPONSE_TOPIC, access: 'sub', why: 'X.509 login: the platform tells the device its ProductKey and DeviceName (docs/x509.md)' });

/**
 * Whether a CONNECT goes to the X.509 path: its connection presented a client certificate,
 * unless that certificate names no device and the CONNECT carries a password (a secret device
 * whose TLS stack happens to send some certificate keeps logging in with its secret).
 */
export function presentsDeviceCertificate(attempt: Pick<ConnectAttempt, 'clientCertChain' | 'password'>): boolean {
  const chain = attempt.clientCertChain;
  if (!chain || chain.length === 0) return false;
  if (attempt.password === '') return true;
  const leaf = readPresentedLeaf(chain);
  return leaf.ok || leaf.namesNoDevice !== true;
}

function claimedDevice(username: string | undefined): { productKey: string; deviceName: string } | 'none' | 'invalid' {
  if (username === undefined || username === '' || username === '&') return 'none';
  return parseMqttUsername(username) ?? 'invalid';
}

export async function authenticateX509Device(attempt: ConnectAttempt, ctx: AppContext): Promise<ConnectDecision> {
  const securemode = attempt.parsed?.ext.securemode;
  if (securemode !== undefined && securemode !== '2') {
    return refuseConnect('bad-securemode', 'login', `securemode ${securemode.slice(0, 8)} with a client certificate: X.509 logins use securemode=2`);
  }
  const claim = claimedDevice(attempt.username);
  if (claim === 'invalid') {
    return refuseConnect('certificate-mismatch', 'login', 'username is neither empty nor deviceName&productKey');
  }
  const keepaliveMin = ctx.config.keepaliveMinSeconds;
  if (attempt.keepalive < keepaliveMin || attempt.keepalive > KEEPALIVE_MAX) {
    return refuseConnect('bad-keepalive', 'login', `keep-alive ${attempt.keepalive}s outside ${keepaliveMin}..${KEEPALIVE_MAX}`);
  }
  const result = await ctx.services.x509.verifyLogin(attempt.clientCertChain ?? []);
  if (!result.ok) {
    const who = result.identity ?? (claim !== 'none' ? claim : undefined);
    return refuseConnect(result.refusal, 'login', result.reason, {
      ...(who ? { productKey: who.productKey, deviceName: who.deviceName } : {}),
      ...(result.device ? { device: { iotId: result.device.iotId, productKey: result.device.productKey, deviceName: result.device.deviceName } } : {}),
    });
  }
  const d = result.device;
  const device = { iotId: d.iotId, productKey: d.productKey, deviceName: d.deviceName };
  if (claim !== 'none' && (claim.productKey !== d.productKey || claim.deviceName !== d.deviceName)) {
    return refuseConnect('certificate-mismatch', 'login', `username names ${claim.deviceName.slice(0, 32)}&${claim.productKey.slice(0, 20)} but the certificate is ${d.deviceName}&${d.productKey}`, { device });
  }
  const serial = result.certificate.serial;
  return {
    ok: true,
    identity: { kind: 'device', ...device, certSerial: serial },
    auditNote: `X.509 certificate ${serial}${result.enrolled ? ' (device enrolled on first contact)' : ''}`,
    onSessionReady: (session) => pushIdentity(session, ctx),
  };
}

/** /ext/auth/identity/response to this one client (QoS 0, no subscription, never routed through topics). */
function pushIdentity(session: Session, ctx: AppContext): void {
  const client = session.client;
  if (client.closed) return;
  const payload = JSON.stringify({ productKey: session.identity.productKey, deviceName: session.identity.deviceName });
  const packet = { cmd: 'publish', topic: IDENTITY_RESPONSE_TOPIC, payload: Buffer.from(payload, 'utf8'), qos: 0, retain: false, dup: false } as PublishPacket;
  client.publish(packet, (err?: Error | null) => {
    if (err) ctx.logger.debug({ err: err.message }, 'x509 identity response not delivered');
  });
}
