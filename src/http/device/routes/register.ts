/**
 * `POST /auth/register/device` (spec 2): HTTPS dynamic registration, pre-registration kind.
 * Form-encoded as the SDKs send it; JSON accepted too. Replies are compact JSON, every answer
 * with HTTP 200 and the outcome in `code` (the SDKs read only the body; iotkit 3.x scans a
 * 256-byte buffer and needs `"key":` with nothing between the quote and the colon).
 */
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import type { AppContext } from '../../../context.js';
import { ErrorKinds, isThingAuthError } from '../../../core/errors.js';
import { countsAgainstSource, REFUSALS, refusalOfError } from '../../../core/refusals.js';

export const REGISTER_PATH = '/auth/register/device';

function sendJson(reply: FastifyReply, body: unknown) {
  // JSON.stringify without spacing is the compact form the C SDK scanners need.
  return reply.code(200).header('content-type', 'application/json; charset=utf-8').send(JSON.stringify(body));
}

export function errorBody(code: number, message: string) {
  return { code, message, data: null };
}

export async function registerRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  // Encapsulated so the error handler below applies to this route only.
  await app.register(async (scope) => {
    scope.setErrorHandler((err: FastifyError, req, reply) => {
      if (isThingAuthError(err)) return sendJson(reply, errorBody(REFUSALS[refusalOfError(err)].alink, err.message));
      // Unparsable body, wrong content type, body too large: the device sent something we cannot read.
      if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
        // A refused registration like any other (issue 11 item 7). Not awaited in this
        // synchronous handler; the limiter counts it in call order and never rejects on an outage.
        ctx.services.loginThrottle.recordFailure(req.ip).catch((e) => ctx.logger.warn({ err: e }, 'failure not counted'));
        return sendJson(reply, errorBody(ErrorKinds.INVALID_ARGUMENT.alink, `request body could not be read (${err.code ?? err.statusCode}); send productKey, deviceName, random, sign, signMethod form-encoded`));
      }
      ctx.logger.error({ err }, 'registration route failed');
      return sendJson(reply, errorBody(ErrorKinds.INTERNAL.alink, 'internal error'));
    });

    scope.post(REGISTER_PATH, async (req, reply) => {
      const body = req.body;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        await ctx.services.loginThrottle.recordFailure(req.ip);
        return sendJson(reply, errorBody(ErrorKinds.INVALID_ARGUMENT.alink, 'productKey is required (send productKey, deviceName, random, sign, signMethod form-encoded)'));
      }
      const f = body as Record<string, unknown>;
      // Brute-force limits (services/login-throttle.ts), as for MQTT CONNECT.
      const throttle = ctx.services.loginThrottle;
      const gate = await throttle.checkSource(req.ip);
      if (!gate.ok) {
        const reason = `source throttled: too many failed requests from this address; retry in ${Math.ceil(gate.retryAfterMs / 1000)} s`;
        ctx.services.metrics.registration('register.https', 'deny');
        // One audit entry per cool-down, not one per attempt (issue 11 item 11); the metrics count them all.
        if (gate.firstRefusal) ctx.services.audit.record({
          action: 'register.https',
          actor: 'device',
          productKey: typeof f.productKey === 'string' ? f.productKey : null,
          deviceName: typeof f.deviceName === 'string' ? f.deviceName : null,
          sourceAddress: req.ip,
          result: 'deny',
          reason: `${reason} (further attempts in this cool-down are counted in the metrics, not audited one by one)`,
        });
        return sendJson(reply, errorBody(REFUSALS.throttled.alink, reason));
      }
      let result;
      try {
        result = await ctx.services.registration.registerPreRegistered({
          productKey: f.productKey,
          deviceName: f.deviceName,
          random: f.random,
          sign: f.sign,
          // Some firmware writes the field in lower case, as in the MQTT ClientId.
          signMethod: f.signMethod ?? f.signmethod,
          transport: { channel: 'https', tls: req.protocol === 'https', sourceAddress: req.ip },
        });
      } catch (e) {
        // Every refusal of a registration counts against the source (core/refusals.ts, issue 11 item 7).
        if (countsAgainstSource(refusalOfError(e), 'registration')) {
          const claimed = typeof f.productKey === 'string' && typeof f.deviceName === 'string' ? { productKey: f.productKey, deviceName: f.deviceName } : undefined;
          await throttle.recordFailure(req.ip, claimed);
        }
        throw e;
      }
      return sendJson(reply, {
        code: 200,
        data: { productKey: result.productKey, deviceName: result.deviceName, deviceSecret: result.deviceSecret },
        message: 'success',
      });
    });
  });
}
