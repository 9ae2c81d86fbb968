/**
 * Pre-registration-free credential slots of a device (services/regnwl-slots.ts; spec 3.2: up
 * to 5 physical devices per DeviceName through regnwl):
 *   GET  /products/{pk}/devices/{dn}/slots                 every slot, revoked ones included; never a token
 *   POST /products/{pk}/devices/{dn}/slots/{slot}/revoke   token destroyed, refused from now on; a session on it is closed
 * A device reset (POST .../reset) clears every slot.
 */
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../../../context.js';
import { MAX_REGNWL_SLOTS } from '../../../core/records.js';
import { Nullable, errorResponses } from '../schemas.js';
import type { ManagementApp } from '../server.js';

const SlotSchema = Type.Object({
  slot: Type.Integer({ minimum: 1, maximum: MAX_REGNWL_SLOTS }),
  clientId: Type.String({ description: 'the ClientID issued with this slot (devices send it in clear; not a secret)' }),
  status: Type.Union([Type.Literal('ISSUED'), Type.Literal('ACTIVE'), Type.Literal('REVOKED')], {
    description: 'ISSUED: answered to regnwl, no connwl login yet (the next regnwl gets it again); ACTIVE: used to log in; REVOKED: refused',
  }),
  createdAt: Type.String(),
  activatedAt: Nullable(Type.String()),
  revokedAt: Nullable(Type.String()),
});

const SlotParams = Type.Object(
  {
    productKey: Type.String({ maxLength: 64 }),
    deviceName: Type.String({ maxLength: 128 }),
    slot: Type.Integer({ minimum: 1, maximum: MAX_REGNWL_SLOTS }),
  },
  { additionalProperties: false },
);

const DeviceParams = Type.Object({ productKey: Type.String({ maxLength: 64 }), deviceName: Type.String({ maxLength: 128 }) }, { additionalProperties: false });

function withStatus<T extends { activatedAt: string | null; revokedAt: string | null }>(s: T) {
  return { ...s, status: s.revokedAt ? ('REVOKED' as const) : s.activatedAt ? ('ACTIVE' as const) : ('ISSUED' as const) };
}

export async function deviceSlotRoutes(app: ManagementApp, ctx: AppContext): Promise<void> {
  const slots = ctx.services.registration.slots;
  const tags = ['devices'];
  app.get(
    '/products/:productKey/devices/:deviceName/slots',
    {
      schema: {
        tags,
        summary: 'Pre-registration-free credential slots (regnwl): at most 5 per DeviceName; no tokens',
        params: DeviceParams,
        response: {
          200: Type.Object({
            productKey: Type.String(),
            deviceName: Type.String(),
            maxSlots: Type.Integer(),
            items: Type.Array(SlotSchema),
          }),
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const { device, slots: items } = await slots.list(req.params.productKey, req.params.deviceName);
      return { productKey: device.productKey, deviceName: device.deviceName, maxSlots: slots.maxSlots, items: items.map(withStatus) };
    },
  );

  app.post(
    '/products/:productKey/devices/:deviceName/slots/:slot/revoke',
    {
      schema: {
        tags,
        summary: "Revoke one slot: its DeviceToken is destroyed and refused, a session running on it is closed; the slot's number is free for a later regnwl",
        params: SlotParams,
        response: { 200: Type.Object({ productKey: Type.String(), deviceName: Type.String(), ...SlotSchema.properties }), ...errorResponses },
      },
    },
    async (req) => {
      const { device, slot } = await slots.revoke(req.params.productKey, req.params.deviceName, req.params.slot);
      return { productKey: device.productKey, deviceName: device.deviceName, ...withStatus(slot) };
    },
  );
}
