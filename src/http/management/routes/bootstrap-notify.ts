/**
 * POST /products/{productKey}/devices/{deviceName}/bootstrap-notify and
 * POST /products/{productKey}/bootstrap-notify: ask one connected device, or every connected
 * device of a product, to run bootstrap again (`thing/bootstrap/notify`, cmd 0; services/
 * bootstrap.ts). The order carries no endpoint (the SDK reads only `id` and `cmd`): a
 * `host`/`port` given here is stored for the device or product and answered by its next
 * `POST /auth/bootstrap`; `useDefault: true` removes the stored one. Admin only: it moves
 * devices.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { AppContext } from '../../../context.js';
import { isValidPublicHost } from '../../../core/bootstrap.js';
import { ThingAuthError } from '../../../core/errors.js';
import type { NotifyRequest } from '../../../services/bootstrap.js';
import { DeviceParams, Nullable, ProductKeyParams, errorResponses } from '../schemas.js';
import type { ManagementApp } from '../server.js';

const NotifyBody = Type.Object(
  {
    host: Type.Optional(Type.String({ minLength: 1, maxLength: 253, description: 'MQTT host name or IP address the devices are sent to (stored; default: the configured public endpoint)' })),
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: 'MQTT port the devices are sent to (stored)' })),
    useDefault: Type.Optional(Type.Boolean({ description: 'true: remove the stored host/port, so the configured endpoint applies again' })),
  },
  { additionalProperties: false },
);

const NotifyResponse = Type.Object({
  productKey: Type.String(),
  deviceName: Nullable(Type.String({ description: 'null: every device of the product' })),
  notified: Type.Integer({ description: 'connected devices handed the order' }),
  endpoint: Nullable(
    Type.Object(
      { host: Type.Optional(Type.String()), port: Type.Optional(Type.Integer()) },
      { description: 'the host/port stored for this device or product (null: none, the configured endpoint applies)' },
    ),
  ),
});

function endpointOf(body: Static<typeof NotifyBody>): NotifyRequest['endpoint'] {
  if (body.useDefault === true) {
    if (body.host !== undefined || body.port !== undefined) throw new ThingAuthError('INVALID_ARGUMENT', 'give host/port or useDefault, not both', { field: 'useDefault' });
    return null;
  }
  if (body.host !== undefined && !isValidPublicHost(body.host)) throw new ThingAuthError('INVALID_ARGUMENT', 'host must be a host name or an IP address', { field: 'host' });
  if (body.host === undefined && body.port === undefined) return undefined;
  return { ...(body.host !== undefined ? { host: body.host } : {}), ...(body.port !== undefined ? { port: body.port } : {}) };
}

export async function bootstrapNotifyRoutes(app: ManagementApp, ctx: AppContext): Promise<void> {
  const bootstrap = ctx.services.bootstrap;
  // A bare POST (no body) is an order without a new endpoint.
  const emptyBody = async (req: { body: unknown }) => {
    if (req.body === undefined) req.body = {};
  };
  const summary = 'Ask connected devices to run bootstrap again (thing/bootstrap/notify); host/port, if given, are what their next bootstrap answers';

  app.post(
    '/products/:productKey/devices/:deviceName/bootstrap-notify',
    {
      config: { adminOnly: true },
      schema: { tags: ['devices'], summary, params: DeviceParams, body: NotifyBody, response: { 200: NotifyResponse, ...errorResponses } },
      preValidation: emptyBody,
    },
    async (req) => {
      const { productKey, deviceName } = req.params;
      const r = await bootstrap.notify({ productKey, deviceName, endpoint: endpointOf(req.body) });
      return { productKey, deviceName, ...r };
    },
  );

  app.post(
    '/products/:productKey/bootstrap-notify',
    {
      config: { adminOnly: true },
      schema: { tags: ['products'], summary, params: ProductKeyParams, body: NotifyBody, response: { 200: NotifyResponse, ...errorResponses } },
      preValidation: emptyBody,
    },
    async (req) => {
      const { productKey } = req.params;
      const r = await bootstrap.notify({ productKey, endpoint: endpointOf(req.body) });
      return { productKey, deviceName: null, ...r };
    },
  );
}
