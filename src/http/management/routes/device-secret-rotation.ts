/**
 * POST /products/{productKey}/devices/{deviceName}/secret/rotate: issue a new DeviceSecret and
 * keep the old one valid for a grace period (services/registry.ts rotateDeviceSecret), so a
 * fleet can be re-keyed over the air. Admin only: the response carries the new secret. The
 * previous secret is never returned by any endpoint (the caller had it already).
 */
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../../../context.js';
import { DEFAULT_SECRET_GRACE_SECONDS, MAX_SECRET_GRACE_SECONDS } from '../../../core/secret-rotation.js';
import { DeviceParams, Nullable, errorResponses } from '../schemas.js';
import type { ManagementApp } from '../server.js';

const RotateBody = Type.Object(
  {
    graceSeconds: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: MAX_SECRET_GRACE_SECONDS,
        description: `how long the old secret keeps working, in seconds (default ${DEFAULT_SECRET_GRACE_SECONDS} = 7 days; 0 = it stops at once)`,
      }),
    ),
    deviceSecret: Type.Optional(Type.String({ description: 'the new secret (8-64 alphanumerics); generated when absent' })),
  },
  { additionalProperties: false },
);

const RotateResponse = Type.Object({
  iotId: Type.String(),
  productKey: Type.String(),
  deviceName: Type.String(),
  deviceSecret: Type.String({ description: 'the new DeviceSecret' }),
  previousSecretExpiresAt: Nullable(Type.String({ description: 'when the old secret stops working (ISO 8601); null = it already has' })),
});

export async function deviceSecretRotationRoutes(app: ManagementApp, ctx: AppContext): Promise<void> {
  const registry = ctx.services.registry;
  app.post(
    '/products/:productKey/devices/:deviceName/secret/rotate',
    {
      config: { adminOnly: true },
      schema: {
        tags: ['devices'],
        summary: 'Issue a new DeviceSecret; the old one keeps working for graceSeconds (both accepted), then is refused',
        params: DeviceParams,
        body: RotateBody,
        response: { 200: RotateResponse, ...errorResponses },
      },
      // A bare POST (no body at all) rotates with the default grace; a JSON `null` is refused like any non-object.
      preValidation: async (req) => {
        if (req.body === undefined) req.body = {};
      },
    },
    async (req) => {
      const { productKey, deviceName } = req.params;
      await registry.getDevice(productKey, deviceName); // 404 first
      await ctx.services.x509.assertShowsSecrets(productKey, deviceName); // an x509 product's device has no secret to rotate
      const { device, previousSecretExpiresAt } = await registry.rotateDeviceSecret(productKey, deviceName, {
        ...(req.body.graceSeconds !== undefined ? { graceSeconds: req.body.graceSeconds } : {}),
        ...(req.body.deviceSecret !== undefined ? { newSecret: req.body.deviceSecret } : {}),
      });
      return { iotId: device.iotId, productKey: device.productKey, deviceName: device.deviceName, deviceSecret: device.deviceSecret, previousSecretExpiresAt };
    },
  );
}
