/**
 * Bootstrap (C Link SDK 4.x `components/bootstrap`; formats and sources in docs/devices.md):
 *
 * - `POST /auth/bootstrap`, form `productKey`, `deviceName`, `clientId=<pk>.<dn>`,
 *   `resources=mqtt` (unsigned): the MQTT endpoint this device should use;
 * - `GET /auth/bootstrap/regionId/<region>` (the SDK's form when a region is set; it names no
 *   device): the endpoint of this server.
 *
 * Every answer is HTTP 200 with the outcome in `code`, as on the other protocol routes:
 * `{"code":200,"data":{"resources":{"mqtt":{"host":..,"port":..}}},"message":"success"}`, or a
 * refusal without any `host` (the SDK then stops with STATE_BOOTSTRAP_INVALID_CONNECTION_INFO).
 * Unknown product, unknown device and disabled device get one and the same refusal (6100),
 * and count as a failed attempt of the source address (services/login-throttle.ts), so the
 * unsigned request is no cheap oracle for which DeviceNames exist.
 */
import type { TLSSocket } from 'node:tls';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AppContext } from '../../../context.js';
import { BOOTSTRAP_PATH, REGION_ID_RE, bootstrapAnswer, bootstrapRefusal, hostFromHostHeader, isValidPublicHost, type MqttEndpoint } from '../../../core/bootstrap.js';
import { ErrorKinds } from '../../../core/errors.js';
import { PRODUCT_KEY_RE, isValidDeviceName } from '../../../core/names.js';

function send(reply: FastifyReply, body: string) {
  // Compact JSON: the SDK's key scanner allows nothing between `"host"`, `:` and the value.
  return reply.code(200).header('content-type', 'application/json; charset=utf-8').send(body);
}

const FORM_HINT = 'send productKey, deviceName, clientId, resources=mqtt form-encoded';
/** One answer for unknown product, unknown device and disabled device: it tells nothing more. */
const REFUSAL = bootstrapRefusal(ErrorKinds.DEVICE_NOT_FOUND.alink, 'device not found');

/**
 * The endpoint a device is sent to: a stored override (device, then product: set by an
 * operator's notify), else THINGAUTH_PUBLIC_MQTT_HOST / _PORT, else the first of
 * THINGAUTH_HOSTNAMES (names the certificate holds), else the name the device reached this
 * server under (Host header, then TLS SNI); the port falls back to the MQTT listener's real
 * port (TCP, TLS detected on the same port, like the cloud's 1883).
 */
function endpointFor(ctx: AppContext, req: FastifyRequest, override: Partial<MqttEndpoint>): MqttEndpoint | undefined {
  const c = ctx.config;
  const sni = (req.raw.socket as TLSSocket).servername;
  const host =
    override.host ??
    c.publicMqttHost ??
    c.hostnames.find(isValidPublicHost) ??
    hostFromHostHeader(req.headers.host) ??
    (typeof sni === 'string' && isValidPublicHost(sni) ? sni : undefined);
  const port = override.port ?? c.publicMqttPort ?? ctx.listenerPorts?.mqtt ?? c.mqttPort;
  if (host === undefined || port < 1 || port > 65535) return undefined;
  return { host, port };
}

export async function bootstrapRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  const log = ctx.logger.child({ component: 'bootstrap' });
  const noEndpoint = () => {
    log.warn('bootstrap request answered 500: no MQTT host to advertise; set THINGAUTH_PUBLIC_MQTT_HOST');
    return bootstrapRefusal(ErrorKinds.INTERNAL.alink, 'no public MQTT endpoint configured');
  };

  await app.register(async (scope) => {
    scope.setErrorHandler((err: FastifyError, _req, reply) => {
      // Unparsable body, unknown content type, body too large: nothing we can read.
      if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
        return send(reply, bootstrapRefusal(ErrorKinds.INVALID_ARGUMENT.alink, `request body could not be read (${err.code ?? err.statusCode}); ${FORM_HINT}`));
      }
      log.error({ err }, 'bootstrap route failed');
      return send(reply, bootstrapRefusal(ErrorKinds.INTERNAL.alink, 'internal error'));
    });

    scope.post(BOOTSTRAP_PATH, async (req, reply) => {
      const body = req.body;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        return send(reply, bootstrapRefusal(ErrorKinds.INVALID_ARGUMENT.alink, `productKey is required (${FORM_HINT})`));
      }
      const f = body as Record<string, unknown>;
      if (typeof f.productKey !== 'string' || f.productKey === '') return send(reply, bootstrapRefusal(ErrorKinds.INVALID_ARGUMENT.alink, `productKey is required (${FORM_HINT})`));
      if (typeof f.deviceName !== 'string' || f.deviceName === '') return send(reply, bootstrapRefusal(ErrorKinds.INVALID_ARGUMENT.alink, `deviceName is required (${FORM_HINT})`));
      if (!PRODUCT_KEY_RE.test(f.productKey)) return send(reply, bootstrapRefusal(ErrorKinds.INVALID_ARGUMENT.alink, 'productKey is malformed (4-20 letters and digits)'));
      if (!isValidDeviceName(f.deviceName)) return send(reply, bootstrapRefusal(ErrorKinds.INVALID_ARGUMENT.alink, 'deviceName is malformed (4-32 of A-Z a-z 0-9 - _ @ . :)'));
      const productKey = f.productKey;
      const deviceName = f.deviceName;
      const audit = (result: 'allow' | 'deny', reason: string) =>
        ctx.services.audit.record({ action: 'bootstrap.https', actor: 'device', productKey, deviceName, sourceAddress: req.ip, result, reason });

      const throttle = ctx.services.loginThrottle;
      const gate = await throttle.checkSource(req.ip);
      if (!gate.ok) {
        const reason = `source throttled: too many failed requests from this address; retry in ${Math.ceil(gate.retryAfterMs / 1000)} s`;
        audit('deny', reason);
        return send(reply, bootstrapRefusal(ErrorKinds.RATE_LIMITED.alink, reason));
      }
      if (!(await ctx.services.bootstrap.admits(productKey, deviceName))) {
        await throttle.recordFailure(req.ip, { productKey, deviceName });
        audit('deny', 'unknown product or device, or device disabled');
        return send(reply, REFUSAL);
      }
      const endpoint = endpointFor(ctx, req, await ctx.services.bootstrap.overrideFor(productKey, deviceName));
      if (!endpoint) return send(reply, noEndpoint());
      audit('allow', `mqtt endpoint ${endpoint.host}:${endpoint.port}`);
      return send(reply, bootstrapAnswer(endpoint));
    });

    scope.get<{ Params: { region: string } }>(`${BOOTSTRAP_PATH}/regionId/:region`, async (req, reply) => {
      if (!REGION_ID_RE.test(req.params.region)) {
        return send(reply, bootstrapRefusal(ErrorKinds.INVALID_ARGUMENT.alink, 'regionId is malformed (letters, digits and -, e.g. cn-shanghai)'));
      }
      // No device is named: the answer is this server's public endpoint, whatever the region.
      const endpoint = endpointFor(ctx, req, {});
      return send(reply, endpoint ? bootstrapAnswer(endpoint) : noEndpoint());
    });
  });
}
