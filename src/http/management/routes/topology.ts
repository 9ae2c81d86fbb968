/**
 * /products/{productKey}/devices/{deviceName}/sub-devices: a gateway's topology as the
 * operator sees and edits it. Unlike the gateway's own thing/topo/add, no signatures: the
 * admin token is the proof. Add and remove are all or nothing (a refusal writes nothing).
 * A sub-device's own GET shows its gateway (Registry.toPublic).
 */
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../../../context.js';
import type { Device } from '../../../core/records.js';
import { DeviceParams, PagingQuery, errorResponses, pageOf } from '../schemas.js';
import type { ManagementApp } from '../server.js';
import { PublicDeviceSchema } from './devices.js';

const SubDeviceName = Type.Object(
  {
    productKey: Type.String({ minLength: 1, maxLength: 64 }),
    deviceName: Type.String({ minLength: 1, maxLength: 64 }),
  },
  { additionalProperties: false },
);

const SubDevicesBody = (max: number) =>
  Type.Object(
    { subDevices: Type.Array(SubDeviceName, { minItems: 1, maxItems: max, description: `1 to ${max} sub-devices` }) },
    { additionalProperties: false },
  );

const DeviceRefSchema = Type.Object({ productKey: Type.String(), deviceName: Type.String(), iotId: Type.String() });

const SubDeviceParams = Type.Object(
  {
    productKey: Type.String({ maxLength: 64 }),
    deviceName: Type.String({ maxLength: 128 }),
    subProductKey: Type.String({ maxLength: 64 }),
    subDeviceName: Type.String({ maxLength: 128 }),
  },
  { additionalProperties: false },
);

function ref(d: Device) {
  return { productKey: d.productKey, deviceName: d.deviceName, iotId: d.iotId };
}

export async function topologyRoutes(app: ManagementApp, ctx: AppContext): Promise<void> {
  const { topology, registry } = ctx.services;
  const tags = ['topology'];
  const base = '/products/:productKey/devices/:deviceName/sub-devices';
  const limit = topology.subDeviceLimit;

  app.get(
    base,
    {
      schema: {
        tags,
        summary: 'List the sub-devices of a gateway (no secrets)',
        params: DeviceParams,
        querystring: Type.Object({ ...PagingQuery }, { additionalProperties: false }),
        response: { 200: pageOf(PublicDeviceSchema), ...errorResponses },
      },
    },
    async (req) => {
      const { offset, limit: pageLimit } = req.query;
      const page = await topology.list(req.params.productKey, req.params.deviceName, offset ?? 0, pageLimit ?? 100);
      return { ...page, items: await Promise.all(page.items.map((d) => registry.toPublic(d))) };
    },
  );

  app.post(
    base,
    {
      schema: {
        tags,
        summary: `Add sub-devices to a gateway (at most ${limit} per gateway). A sub-device under another gateway moves here and its login there ends. All or nothing.`,
        params: DeviceParams,
        body: SubDevicesBody(limit),
        response: {
          200: Type.Object({ gateway: DeviceRefSchema, added: Type.Array(DeviceRefSchema), moved: Type.Array(DeviceRefSchema), total: Type.Integer() }),
          ...errorResponses,
          422: Type.Ref('Error'),
        },
      },
    },
    async (req) => {
      const r = await topology.addByOperator(req.params.productKey, req.params.deviceName, req.body.subDevices);
      const total = (await topology.list(r.gateway.productKey, r.gateway.deviceName, 0, 1)).total;
      return { gateway: ref(r.gateway), added: r.added.map(ref), moved: r.moved.map(ref), total };
    },
  );

  app.delete(
    base,
    {
      schema: {
        tags,
        summary: 'Remove sub-devices from a gateway; their logins through it end. All or nothing.',
        params: DeviceParams,
        body: SubDevicesBody(limit),
        response: { 200: Type.Object({ gateway: DeviceRefSchema, removed: Type.Array(DeviceRefSchema) }), ...errorResponses },
      },
    },
    async (req) => {
      const r = await topology.removeByOperator(req.params.productKey, req.params.deviceName, req.body.subDevices);
      return { gateway: ref(r.gateway), removed: r.removed.map(ref) };
    },
  );

  // Issue 11 item 8: a sub-device is bound to the gateway that registered it (or whose
  // topology holds it); other gateways get 6619 until the operator releases it here.
  app.post(
    '/products/:productKey/devices/:deviceName/release',
    {
      schema: {
        tags,
        summary:
          'Release a sub-device from its gateway: forget which gateway registered it and take it out of its topology (that gateway gets a 6401 notice). Afterwards another gateway may register or add it.',
        params: DeviceParams,
        response: {
          200: Type.Object({ device: PublicDeviceSchema, releasedFrom: Type.Object({ gateway: Type.Union([DeviceRefSchema, Type.Null()]), registeredBy: Type.Union([DeviceRefSchema, Type.Null()]) }) }),
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const r = await topology.releaseByOperator(req.params.productKey, req.params.deviceName);
      return {
        device: await registry.toPublic(r.device),
        releasedFrom: { gateway: r.gateway ? ref(r.gateway) : null, registeredBy: r.registeredBy ? ref(r.registeredBy) : null },
      };
    },
  );

  app.delete(
    `${base}/:subProductKey/:subDeviceName`,
    {
      schema: {
        tags,
        summary: 'Remove one sub-device from a gateway',
        params: SubDeviceParams,
        response: { 200: Type.Object({ gateway: DeviceRefSchema, removed: Type.Array(DeviceRefSchema) }), ...errorResponses },
      },
    },
    async (req) => {
      const p = req.params;
      const r = await topology.removeByOperator(p.productKey, p.deviceName, [{ productKey: p.subProductKey, deviceName: p.subDeviceName }]);
      return { gateway: ref(r.gateway), removed: r.removed.map(ref) };
    },
  );
}
