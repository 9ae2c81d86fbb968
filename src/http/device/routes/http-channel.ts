/**
 * The HTTP(S) device channel (spec 5.1, 5.2):
 *   POST /auth                 JSON {productKey, deviceName, clientId, sign, signmethod?, timestamp?}
 *                              -> {"code":0,"message":"success","info":{"token":"..."}}; activates the device
 *   POST /topic/<own topic>    header `password: <token>`, body = payload (any content type)
 *                              -> {"code":0,"message":"success","info":{"messageId":N}}; published into the broker
 * Every answer is HTTP 200 with the outcome in `code`, as the cloud does: 10000 common error,
 * 10001 parameter error, 20000 auth check failed, 20001 token expired, 20002 token missing,
 * 20003 token invalid (bad, foreign, revoked, or not valid for this topic), 30001 publish failed.
 * Tokens: services/http-channel-tokens.ts (HMAC-signed, 7 days); a disabled, deleted or
 * re-keyed device's tokens stop working at once because every use checks the device record
 * (after a rotation with a grace period, a token issued under the previous secret works until
 * the grace ends, like the previous secret itself).
 */
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import type { AppContext } from '../../../context.js';
import { identityMayPublish } from '../../../mqtt/acl.js';
import { acquireMqttBroker } from '../../../mqtt/broker.js';
import { HttpChannelTokens } from '../../../services/http-channel-tokens.js';
import { PREVIOUS_SECRET_REASON, previousSecretInGrace } from '../../../core/secret-rotation.js';
import { countsAgainstSource, REFUSALS, type RefusalKind } from '../../../core/refusals.js';
import type { TLSSocket } from 'node:tls';
import { peerChainOf } from '../../../tls/client-certs.js';
import { presentsDeviceCertificate } from '../../../mqtt/x509-authenticator.js';

export const HTTP_CHANNEL_CODES = {
  OK: 0,
  COMMON: 10000,
  PARAM: 10001,
  AUTH_FAILED: 20000,
  TOKEN_EXPIRED: 20001,
  TOKEN_MISSING: 20002,
  TOKEN_INVALID: 20003,
  PUBLISH_FAILED: 30001,
} as const;

const TOPIC_PREFIX = '/topic';
const MAX_UPLOAD_BYTES = 128 * 1024;

function send(reply: FastifyReply, code: number, message: string, info?: unknown) {
  return reply
    .code(200)
    .header('content-type', 'application/json; charset=utf-8')
    .send(JSON.stringify(info === undefined ? { code, message } : { code, message, info }));
}

function str(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v); // timestamps sent as numbers
  return undefined;
}

let messageCounter = 0;
/** Numeric, increasing, unique within this process (the cloud returns a 64-bit number). */
function nextMessageId(): number {
  messageCounter = (messageCounter + 1) % 1000;
  return Date.now() * 1000 + messageCounter;
}

export async function httpChannelRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  const tokens = new HttpChannelTokens(ctx.store);
  const { broker, release } = await acquireMqttBroker(ctx);
  app.addHook('onClose', async () => {
    await release();
  });
  const log = ctx.logger.child({ component: 'http-channel' });

  // POST /auth: JSON only (spec 5.1: other content types are a parameter error).
  await app.register(async (scope) => {
    scope.setErrorHandler((err: FastifyError, _req, reply) => {
      if (typeof err.statusCode === 'number' && err.statusCode < 500) {
        return send(reply, HTTP_CHANNEL_CODES.PARAM, 'request body must be JSON: {productKey, deviceName, clientId, sign, signmethod, timestamp}');
      }
      log.error({ err }, 'http channel /auth failed');
      return send(reply, HTTP_CHANNEL_CODES.COMMON, 'internal error');
    });
    scope.post('/auth', async (req, reply) => {
      if (!(req.headers['content-type'] ?? '').toLowerCase().startsWith('application/json')) {
        return send(reply, HTTP_CHANNEL_CODES.PARAM, 'Content-Type must be application/json');
      }
      const body = req.body;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        return send(reply, HTTP_CHANNEL_CODES.PARAM, 'request body must be a JSON object');
      }
      const f = body as Record<string, unknown>;
      // X.509 (issue 16): a client certificate naming a device decides the login.
      const chain = req.protocol === 'https' ? peerChainOf(req.raw.socket as TLSSocket) : undefined;
      if (chain && presentsDeviceCertificate({ clientCertChain: chain, password: str(f.sign) ?? '' })) return certificateAuth(chain, f, req.ip, reply);
      const fields = { productKey: str(f.productKey), deviceName: str(f.deviceName), clientId: str(f.clientId), sign: str(f.sign) };
      for (const [name, value] of Object.entries(fields)) {
        if (!value) return send(reply, HTTP_CHANNEL_CODES.PARAM, `${name} is required`);
      }
      const signMethod = str(f.signmethod ?? f.signMethod);
      const claimed = { actor: `${fields.deviceName}&${fields.productKey}`, productKey: fields.productKey, deviceName: fields.deviceName, sourceAddress: req.ip };
      // Brute-force limits (services/login-throttle.ts), as for MQTT CONNECT.
      const throttle = ctx.services.loginThrottle;
      const gate = await throttle.checkSource(req.ip);
      if (!gate.ok) {
        const reason = `source throttled: too many failed logins from this address; retry in ${Math.ceil(gate.retryAfterMs / 1000)} s`;
        // One audit entry per cool-down, not one per attempt (issue 11 item 11); the metrics count them all.
        if (gate.firstRefusal) ctx.services.audit.record({ action: 'http.auth', ...claimed, result: 'deny', reason: `${reason} (further attempts in this cool-down are counted in the metrics, not audited one by one)` });
        ctx.services.metrics.login('https', 'refused', REFUSALS.throttled.label);
        return send(reply, REFUSALS.throttled.httpChannel, reason);
      }
      const result = await ctx.services.authenticator.verifyDeviceLogin({
        productKey: fields.productKey!,
        deviceName: fields.deviceName!,
        clientId: fields.clientId!,
        timestamp: f.timestamp === undefined || f.timestamp === null ? undefined : str(f.timestamp),
        signMethod,
        sign: fields.sign!,
        overTls: req.protocol === 'https',
      });
      if (!result.ok) {
        const refusal = REFUSALS[result.refusal];
        if (countsAgainstSource(result.refusal, 'login')) {
          await throttle.recordFailure(req.ip, { productKey: fields.productKey!, deviceName: fields.deviceName! });
        }
        ctx.services.audit.record({ action: 'http.auth', ...claimed, result: 'deny', reason: result.reason });
        ctx.services.metrics.login('https', 'refused', refusal.label);
        ctx.services.logLimiter.log('info', 'http.auth.deny', req.ip, { productKey: fields.productKey, deviceName: fields.deviceName, reason: result.reason, remote: req.ip }, 'http channel auth refused');
        if (result.device) ctx.services.authenticator.recordAuthError(result.device, `http /auth: ${result.reason}`, `${req.protocol} ${req.ip}`);
        return send(reply, refusal.httpChannel, refusal.httpChannel === HTTP_CHANNEL_CODES.PARAM ? 'unsupported signmethod' : 'auth check error');
      }
      await throttle.recordSuccess(result.device);
      const viaPrevious = result.secret === 'previous';
      ctx.services.audit.record({ action: 'http.auth', ...claimed, result: 'allow', reason: `over ${req.protocol}${viaPrevious ? `; ${PREVIOUS_SECRET_REASON}` : ''}` });
      ctx.services.metrics.login('https', 'accepted', '');
      const d = result.device;
      if (viaPrevious) {
        log.info({ event: 'http.auth.previous-secret', productKey: d.productKey, deviceName: d.deviceName, graceEndsAt: d.previousSecretExpiresAt, remote: req.ip }, `device authenticated with its ${PREVIOUS_SECRET_REASON}`);
      }
      // The token is bound to the secret that signed: one issued under the previous secret dies with its grace.
      const { token } = await tokens.issue(d.productKey, d.deviceName, viaPrevious ? d.previousDeviceSecret! : d.deviceSecret);
      ctx.services.presence.markSeen(d);
      log.debug({ productKey: d.productKey, deviceName: d.deviceName, remote: req.ip }, 'http channel auth ok');
      return send(reply, HTTP_CHANNEL_CODES.OK, 'success', { token });
    });
  });

  /**
   * /auth with a client certificate: the certificate names the device (productKey and
   * deviceName in the body, if given, must name the same one); the token is bound to the
   * certificate's serial, so revoking the certificate (or rotating past it) ends the token.
   */
  async function certificateAuth(chain: Buffer[], f: Record<string, unknown>, ip: string, reply: FastifyReply) {
    const throttle = ctx.services.loginThrottle;
    const gate = await throttle.checkSource(ip);
    if (!gate.ok) {
      ctx.services.metrics.login('https', 'refused', REFUSALS.throttled.label);
      return send(reply, REFUSALS.throttled.httpChannel, `source throttled: retry in ${Math.ceil(gate.retryAfterMs / 1000)} s`);
    }
    const result = await ctx.services.x509.verifyLogin(chain);
    const claimedPk = str(f.productKey);
    const claimedDn = str(f.deviceName);
    let refusal: RefusalKind | undefined;
    let reason = '';
    if (!result.ok) {
      refusal = result.refusal;
      reason = result.reason;
    } else if ((claimedPk !== undefined && claimedPk !== result.device.productKey) || (claimedDn !== undefined && claimedDn !== result.device.deviceName)) {
      refusal = 'certificate-mismatch';
      reason = `body names ${String(claimedDn).slice(0, 32)}&${String(claimedPk).slice(0, 20)} but the certificate is ${result.device.deviceName}&${result.device.productKey}`;
    }
    const who = result.ok ? result.device : result.identity;
    const audit = { action: 'http.auth.x509', actor: who ? `${who.deviceName}&${who.productKey}` : '(certificate)', productKey: who?.productKey ?? null, deviceName: who?.deviceName ?? null, sourceAddress: ip };
    if (refusal) {
      if (countsAgainstSource(refusal, 'login')) await throttle.recordFailure(ip, who ? { productKey: who.productKey, deviceName: who.deviceName } : undefined);
      ctx.services.audit.record({ ...audit, result: 'deny', reason });
      ctx.services.metrics.login('https', 'refused', REFUSALS[refusal].label);
      ctx.services.logLimiter.log('info', 'http.auth.deny', ip, { productKey: who?.productKey, deviceName: who?.deviceName, reason, remote: ip }, 'http channel auth refused');
      if (result.device) ctx.services.authenticator.recordAuthError(result.device, `http /auth: ${reason}`, `https ${ip}`);
      return send(reply, REFUSALS[refusal].httpChannel, 'auth check error');
    }
    if (!result.ok) return send(reply, HTTP_CHANNEL_CODES.COMMON, 'internal error');
    const d = result.device;
    await throttle.recordSuccess(d);
    ctx.services.audit.record({ ...audit, result: 'allow', reason: `over https; X.509 certificate ${result.certificate.serial}` });
    ctx.services.metrics.login('https', 'accepted', '');
    const { token } = await tokens.issue(d.productKey, d.deviceName, certTokenMaterial(result.certificate.serial));
    ctx.services.presence.markSeen(d);
    return send(reply, HTTP_CHANNEL_CODES.OK, 'success', { token });
  }

  // POST /topic/...: the body is the payload, whatever its content type.
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: MAX_UPLOAD_BYTES }, (_req, body, done) => done(null, body));
    scope.setErrorHandler((err: FastifyError, _req, reply) => {
      if (err.statusCode === 413) return send(reply, HTTP_CHANNEL_CODES.PARAM, `payload exceeds ${MAX_UPLOAD_BYTES} bytes`);
      if (typeof err.statusCode === 'number' && err.statusCode < 500) return send(reply, HTTP_CHANNEL_CODES.PARAM, 'request could not be read');
      log.error({ err }, 'http channel /topic failed');
      return send(reply, HTTP_CHANNEL_CODES.COMMON, 'internal error');
    });
    scope.post(`${TOPIC_PREFIX}/*`, async (req, reply) => {
      const raw = req.raw.url ?? '';
      if (raw.includes('?')) return send(reply, HTTP_CHANNEL_CODES.PARAM, 'no query string allowed: the path after /topic is the topic');
      let topic: string;
      try {
        topic = decodeURIComponent(raw.slice(TOPIC_PREFIX.length));
      } catch {
        return send(reply, HTTP_CHANNEL_CODES.PARAM, 'topic is not valid URL encoding');
      }
      if (topic.length < 2 || topic.includes('+') || topic.includes('#')) return send(reply, HTTP_CHANNEL_CODES.PARAM, 'topic must be a full topic without wildcards');
      // MQTT forbids U+0000 in topic names (MQTT 3.1.1 1.5.3); it must not reach the broker or the ACL.
      if (topic.includes('\u0000')) return send(reply, HTTP_CHANNEL_CODES.PARAM, 'topic must not contain U+0000');
      const token = req.headers.password;
      if (typeof token !== 'string' || token === '') return send(reply, HTTP_CHANNEL_CODES.TOKEN_MISSING, 'token is null: send the /auth token in the "password" header');
      const check = await tokens.check(token);
      if (!check.ok) {
        return check.why === 'expired'
          ? send(reply, HTTP_CHANNEL_CODES.TOKEN_EXPIRED, 'token is expired: call /auth again')
          : send(reply, HTTP_CHANNEL_CODES.TOKEN_INVALID, 'check token error');
      }
      const { productKey, deviceName, fp } = check.claims;
      const device = await ctx.services.authenticator.device(productKey, deviceName);
      // Deleted, disabled or re-keyed since the token was issued (and past any rotation grace): the token is dead.
      if (!device || !device.enabled || !((await tokenSecretStillValid(tokens, device, fp)) || (await tokenCertificateStillValid(ctx, tokens, device, fp)))) {
        return send(reply, HTTP_CHANNEL_CODES.TOKEN_INVALID, 'check token error');
      }
      const identity = { kind: 'device' as const, productKey, deviceName, iotId: device.iotId };
      if (!identityMayPublish(identity, topic)) {
        log.warn({ event: 'http.publish.deny', productKey, deviceName, topic: topic.slice(0, 200) }, 'http channel publish refused by topic ACL');
        return send(reply, HTTP_CHANNEL_CODES.TOKEN_INVALID, 'check token error: the token does not grant this topic');
      }
      const payload = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      try {
        await broker.publish(topic, payload);
      } catch (err) {
        log.error({ err, productKey, deviceName }, 'http channel publish failed');
        return send(reply, HTTP_CHANNEL_CODES.PUBLISH_FAILED, 'publish message error');
      }
      return send(reply, HTTP_CHANNEL_CODES.OK, 'success', { messageId: nextMessageId() });
    });
  });
}

/** What an X.509 login's token is bound to: the certificate, by serial. */
function certTokenMaterial(serial: string): string {
  return `x509:${serial}`;
}

/** An X.509 token: its fingerprint names one of the device's certificates that is still in use (not revoked, not expired). */
async function tokenCertificateStillValid(ctx: AppContext, tokens: HttpChannelTokens, device: { iotId: string; productKey: string }, fp: string): Promise<boolean> {
  if ((await ctx.services.x509.authModeOf(device.productKey)) !== 'x509') return false;
  const now = Date.now();
  for (const c of await ctx.store.listDeviceCertificates(device.iotId)) {
    if ((c.revokedAt !== null && Date.parse(c.revokedAt) <= now) || Date.parse(c.notAfter) < now) continue;
    if (fp === (await tokens.secretFingerprint(certTokenMaterial(c.serial)))) return true;
  }
  return false;
}

/** The token's secret fingerprint names the device's current secret, or its previous one within the grace. */
async function tokenSecretStillValid(
  tokens: HttpChannelTokens,
  device: { deviceSecret: string; previousDeviceSecret: string | null; previousSecretExpiresAt: string | null },
  fp: string,
): Promise<boolean> {
  if (fp === (await tokens.secretFingerprint(device.deviceSecret))) return true;
  const previous = previousSecretInGrace(device, Date.now());
  return previous !== undefined && fp === (await tokens.secretFingerprint(previous));
}
