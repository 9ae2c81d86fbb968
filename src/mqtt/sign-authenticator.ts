/**
 * The 'sign' CONNECT authenticator (spec 1): ClientId `id|k=v,...|`, Username
 * `deviceName&productKey`, Password = HMAC of the sign content under the DeviceSecret.
 * Maps the device-login use case (services/authenticator.ts) onto CONNACK codes (spec 1.7).
 */
import type { AppContext } from '../context.js';
import { KEEPALIVE_MAX, parseMqttUsername } from '../core/credentials.js';
import { PREVIOUS_SECRET_REASON } from '../core/secret-rotation.js';
import { isTlsTransport } from './connection-info.js';
import type { ConnectAttempt, ConnectDecision } from './connect-authenticators.js';
import { refuseConnect } from './connect-refusal.js';

/** securemode values a device-secret login may carry (spec 1.4); absent is tolerated. */
const SIGN_SECUREMODES = new Set(['2', '3']);

export async function authenticateSignedDevice(attempt: ConnectAttempt, ctx: AppContext): Promise<ConnectDecision> {
  const parsed = attempt.parsed;
  if (!parsed) return refuseConnect('malformed', 'login', 'ClientId has no |...| extension section');
  const user = parseMqttUsername(attempt.username);
  if (!user) return refuseConnect('missing-credentials', 'login', 'username is not deviceName&productKey');
  const who = { productKey: user.productKey, deviceName: user.deviceName };
  if (attempt.password === '') return refuseConnect('missing-credentials', 'login', 'empty password', who);
  const securemode = parsed.ext.securemode;
  if (securemode !== undefined && !SIGN_SECUREMODES.has(securemode)) {
    return refuseConnect('bad-securemode', 'login', `unsupported securemode ${securemode.slice(0, 8)}`, who);
  }
  const keepaliveMin = ctx.config.keepaliveMinSeconds;
  if (attempt.keepalive < keepaliveMin || attempt.keepalive > KEEPALIVE_MAX) {
    const reason = `keep-alive ${attempt.keepalive}s outside ${keepaliveMin}..${KEEPALIVE_MAX}`;
    // Record it on a device that exists: operators need to see why firmware keeps failing.
    const device = await ctx.services.authenticator.device(user.productKey, user.deviceName);
    return refuseConnect('bad-keepalive', 'login', reason, { ...who, ...(device ? { device } : {}) });
  }
  const result = await ctx.services.authenticator.verifyDeviceLogin({
    productKey: user.productKey,
    deviceName: user.deviceName,
    clientId: parsed.clientId,
    timestamp: parsed.ext.timestamp,
    signMethod: parsed.ext.signmethod,
    sign: attempt.password,
    lan: parsed.ext.lan,
    overTls: isTlsTransport(attempt.transport),
  });
  if (!result.ok) {
    return refuseConnect(result.refusal, 'login', result.reason, { ...who, ...(result.device ? { device: result.device } : {}) });
  }
  const d = result.device;
  const identity = { kind: 'device' as const, productKey: d.productKey, deviceName: d.deviceName, iotId: d.iotId };
  if (result.secret === 'previous') {
    if (attempt.diagnosis) return { ok: true, identity, auditNote: PREVIOUS_SECRET_REASON };
    // Operators watch for these to see which devices still have to pick up the new secret.
    ctx.logger.info(
      { event: 'mqtt.connect.previous-secret', productKey: d.productKey, deviceName: d.deviceName, graceEndsAt: d.previousSecretExpiresAt, remote: attempt.remoteAddress },
      `device logged in with its ${PREVIOUS_SECRET_REASON}`,
    );
    return { ok: true, identity, auditNote: PREVIOUS_SECRET_REASON };
  }
  return { ok: true, identity };
}
