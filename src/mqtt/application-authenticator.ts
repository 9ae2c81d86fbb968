/**
 * The 'application' CONNECT authenticator. A business application logs in with
 *   Username `app:{appKey}`
 *   Password  either the appSecret itself (over TLS only: tls and wss; refused on tcp and ws,
 *             where it would cross the network in clear), or the hex HMAC of the sign content
 *             `appKey{appKey}clientId{clientId}[timestamp{timestamp}]` under the appSecret,
 *             method from the ClientId's `signmethod` item (default hmacsha256) - the same
 *             primitive devices use (spec 0.1), so the secret need not cross the wire.
 *   ClientId  free; `id|signmethod=...,timestamp=...|` items are read when present.
 * Keep-alive is not restricted for applications.
 */
import type { AppContext } from '../context.js';
import { buildSignContent, constantTimeEquals, parseSignMethod, verifySignature } from '../core/sign.js';
import type { ConnectAttempt, ConnectDecision } from './connect-authenticators.js';
import { refuseConnect } from './connect-refusal.js';
import { isTlsTransport } from './connection-info.js';

export const APPLICATION_USERNAME_PREFIX = 'app:';

export async function authenticateApplication(attempt: ConnectAttempt, ctx: AppContext): Promise<ConnectDecision> {
  const appKey = (attempt.username ?? '').slice(APPLICATION_USERNAME_PREFIX.length);
  if (appKey === '' || attempt.password === '') return refuseConnect('missing-credentials', 'login', 'application login needs app:{appKey} and a password');
  const app = await ctx.services.applications.forLogin(appKey);
  if (!app) return refuseConnect('unknown-application', 'login', `unknown application ${appKey.slice(0, 40)}`);
  let good = constantTimeEquals(app.appSecret, attempt.password);
  if (good && !isTlsTransport(attempt.transport)) {
    // The secret itself must not cross a plain connection (issue 11 item 12); the signed
    // form proves it without sending it and stays allowed everywhere.
    return refuseConnect(
      'raw-secret-needs-tls',
      'login',
      `raw appSecret needs TLS (${appKey.slice(0, 40)} over ${attempt.transport}): connect with mqtts/wss, or send the signed password`,
    );
  }
  if (!good) {
    const ext = attempt.parsed?.ext ?? {};
    const algorithm = ext.signmethod ? parseSignMethod(ext.signmethod) : 'sha256';
    if (!algorithm) return refuseConnect('unsupported-sign-method', 'login', 'unsupported signmethod');
    const content = buildSignContent({
      appKey,
      clientId: attempt.parsed?.clientId ?? attempt.rawClientId,
      timestamp: ext.timestamp,
    });
    good = verifySignature(algorithm, app.appSecret, content, attempt.password);
  }
  if (!good) return refuseConnect('bad-signature', 'login', `bad application credential (${appKey.slice(0, 40)})`);
  return {
    ok: true,
    identity: { kind: 'application', productKey: '', deviceName: '', iotId: 'app:' + app.appKey, productKeys: app.productKeys },
  };
}
