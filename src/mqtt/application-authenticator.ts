/**
 * The 'application' CONNECT authenticator. A business application logs in with
 *   Username `app:{appKey}`
 *   Password  either the appSecret itself (over TLS), or the hex HMAC of the sign content
 *             `appKey{appKey}clientId{clientId}[timestamp{timestamp}]` under the appSecret,
 *             method from the ClientId's `signmethod` item (default hmacsha256) - the same
 *             primitive devices use (spec 0.1), so the secret need not cross the wire.
 *   ClientId  free; `id|signmethod=...,timestamp=...|` items are read when present.
 * Keep-alive is not restricted for applications.
 */
import type { AppContext } from '../context.js';
import { buildSignContent, constantTimeEquals, parseSignMethod, verifySignature } from '../core/sign.js';
import type { ConnectAttempt, ConnectDecision } from './connect-authenticators.js';

export const APPLICATION_USERNAME_PREFIX = 'app:';

export async function authenticateApplication(attempt: ConnectAttempt, ctx: AppContext): Promise<ConnectDecision> {
  const appKey = (attempt.username ?? '').slice(APPLICATION_USERNAME_PREFIX.length);
  if (appKey === '' || attempt.password === '') return { ok: false, returnCode: 4, reason: 'application login needs app:{appKey} and a password' };
  const app = await ctx.services.applications.forLogin(appKey);
  if (!app) return { ok: false, returnCode: 5, reason: `unknown application ${appKey.slice(0, 40)}` };
  let good = constantTimeEquals(app.appSecret, attempt.password);
  if (!good) {
    const ext = attempt.parsed?.ext ?? {};
    const algorithm = ext.signmethod ? parseSignMethod(ext.signmethod) : 'sha256';
    if (!algorithm) return { ok: false, returnCode: 2, reason: 'unsupported signmethod' };
    const content = buildSignContent({
      appKey,
      clientId: attempt.parsed?.clientId ?? attempt.rawClientId,
      timestamp: ext.timestamp,
    });
    good = verifySignature(algorithm, app.appSecret, content, attempt.password);
  }
  if (!good) return { ok: false, returnCode: 5, reason: `bad application credential (${appKey.slice(0, 40)})` };
  return {
    ok: true,
    identity: { kind: 'application', productKey: '', deviceName: '', iotId: 'app:' + app.appKey, productKeys: app.productKeys },
  };
}
