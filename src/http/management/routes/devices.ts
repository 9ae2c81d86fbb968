/**
 * /products/{productKey}/devices: register (one, batch), list, get, switches, reset, delete,
 * the explicit secret endpoint, and the credentials export for the production line.
 * Device secrets leave only from create, batch, /secret and the export.
 */
import { Readable } from 'node:stream';
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../../../context.js';
import type { Device } from '../../../core/records.js';
import { ThingAuthError } from '../../../core/errors.js';
import { csvCell } from '../../../core/import-formats.js';
import { MAX_BATCH } from '../../../services/registry.js';
import { DeviceParams, DeviceStatusSchema, Nullable, PagingQuery, ProductKeyParams, errorResponses } from '../schemas.js';
import type { ManagementApp } from '../server.js';

const Nickname = Type.String({ minLength: 4, maxLength: 64 });

export const PublicDeviceSchema = Type.Object({
  iotId: Type.String(),
  productKey: Type.String(),
  deviceName: Type.String(),
  nickname: Nullable(Type.String()),
  status: DeviceStatusSchema,
  createdAt: Type.String(),
  activatedAt: Nullable(Type.String()),
  lastOnlineAt: Nullable(Type.String()),
  gateway: Nullable(Type.Object({ productKey: Type.String(), deviceName: Type.String(), iotId: Type.String() })),
  lastAuthError: Nullable(Type.String()),
  lastAuthErrorAt: Nullable(Type.String({ description: 'when the last refused login happened (ISO time)' })),
  lastAuthErrorSource: Nullable(Type.String({ description: 'where it came from: transport and source address, e.g. "mqtt/tcp 203.0.113.7", "https 203.0.113.7"' })),
});

const DeviceCredentials = Type.Object({
  iotId: Type.String(),
  productKey: Type.String(),
  deviceName: Type.String(),
  deviceSecret: Type.Optional(Type.String({ description: 'absent for the devices of an X.509 product (they log in with their certificate)' })),
  certificateSerial: Type.Optional(Type.String({ description: 'X.509 products: the certificate issued with the device' })),
});

const CreateDeviceBody = Type.Object(
  {
    deviceName: Type.Optional(Type.String({ description: '4-32 characters of A-Z a-z 0-9 - _ @ . : (generated when absent)' })),
    nickname: Type.Optional(Nickname),
    keyAlgorithm: Type.Optional(Type.Union([Type.Literal('rsa2048'), Type.Literal('ec-p256')], { description: 'X.509 products: the key made for the device (default rsa2048)' })),
  },
  { additionalProperties: false },
);

const BatchBody = Type.Object(
  {
    deviceNames: Type.Optional(Type.Array(Type.String(), { minItems: 1, maxItems: MAX_BATCH, description: `1 to ${MAX_BATCH} DeviceNames` })),
    count: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_BATCH, description: 'generate this many DeviceNames instead' })),
    nickname: Type.Optional(Nickname),
    keyAlgorithm: Type.Optional(Type.Union([Type.Literal('rsa2048'), Type.Literal('ec-p256')], { description: 'X.509 products: the key made for each device (default rsa2048)' })),
  },
  { additionalProperties: false },
);

const BatchQuery = Type.Object(
  {
    credentials: Type.Optional(
      Type.Boolean({ description: 'false: answer only the count (no devices, no secrets), for bulk imports that export the secrets later' }),
    ),
  },
  { additionalProperties: false },
);

const ListQuery = Type.Object(
  {
    status: Type.Optional(DeviceStatusSchema),
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 32, description: 'substring of the DeviceName' })),
    ...PagingQuery,
    cursor: Type.Optional(
      Type.String({
        maxLength: 200,
        description: 'keyset paging in DeviceName order: empty for the first page, then nextCursor of the previous page (same filters); not with offset',
      }),
    ),
  },
  { additionalProperties: false },
);

const DeviceListPage = Type.Object({
  items: Type.Array(PublicDeviceSchema),
  total: Type.Optional(Type.Integer({ description: 'offset paging: devices matching the filters; cursor paging: the product\'s device count, only without filters' })),
  offset: Type.Optional(Type.Integer({ description: 'offset paging only' })),
  limit: Type.Integer(),
  nextCursor: Type.Optional(Nullable(Type.String({ description: 'cursor paging: pass as ?cursor= for the next page; null on the last page' }))),
});

const CURSOR_PREFIX = 'd1.';

/** Opaque to clients: the last DeviceName of the page, which the next page starts after. */
export function encodeDeviceCursor(deviceName: string): string {
  return Buffer.from(CURSOR_PREFIX + deviceName, 'utf8').toString('base64url');
}

/** '' = the first page; else the DeviceName the page starts after. */
export function decodeDeviceCursor(cursor: string): string | null {
  if (cursor === '') return null;
  const text = /^[A-Za-z0-9_-]{1,200}$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
  const m = /^d1\.([\x21-\x7e]{1,128})$/.exec(text);
  if (!m) throw new ThingAuthError('INVALID_ARGUMENT', 'cursor: not a cursor this server gave out (use nextCursor from the previous page, or an empty cursor for the first)', { field: 'cursor' });
  return m[1]!;
}

function credentials(d: Device) {
  return { iotId: d.iotId, productKey: d.productKey, deviceName: d.deviceName, deviceSecret: d.deviceSecret };
}

/** An X.509 product's device: its certificate instead of the DeviceSecret it never uses. */
function certificateCredentials(d: Device, serial: string | undefined) {
  return { iotId: d.iotId, productKey: d.productKey, deviceName: d.deviceName, ...(serial !== undefined ? { certificateSerial: serial } : {}) };
}


export async function deviceRoutes(app: ManagementApp, ctx: AppContext): Promise<void> {
  const registry = ctx.services.registry;
  const tags = ['devices'];
  const base = '/products/:productKey/devices';

  app.post(
    base,
    {
      schema: {
        tags,
        summary: 'Register one device (name given or generated); the response carries its DeviceSecret',
        params: ProductKeyParams,
        body: CreateDeviceBody,
        response: {
          201: Type.Object({
            ...PublicDeviceSchema.properties,
            deviceSecret: Type.Optional(Type.String({ description: 'absent for the devices of an X.509 product (they log in with their certificate)' })),
            certificateSerial: Type.Optional(Type.String({ description: 'X.509 products: the certificate issued with the device' })),
            certificateNotAfter: Type.Optional(Type.String()),
          }),
          ...errorResponses,
        },
      },
      // A bare POST (no body at all) registers a device with a generated name.
      preValidation: async (req) => {
        if (req.body === undefined || req.body === null) req.body = {};
      },
    },
    async (req, reply) => {
      const body = req.body;
      const [d] = await registry.createDevices(req.params.productKey, {
        ...(body.deviceName !== undefined ? { deviceNames: [body.deviceName] } : { count: 1 }),
        nickname: body.nickname ?? null,
      });
      // An X.509 product issues the device its certificate and key (download: certificate-bundle).
      const cert = (await ctx.services.x509.issuesOnCreate(req.params.productKey)) ? (await ctx.services.x509.issueForNew([d!], body.keyAlgorithm ?? 'rsa2048'))[0] : undefined;
      // The DeviceSecret is shown only where it can log in: an x509 product's device gets its certificate instead.
      const x509 = (await ctx.services.x509.authModeOf(req.params.productKey)) === 'x509';
      return reply.code(201).send({ ...(await registry.toPublic(d!)), ...(x509 ? {} : { deviceSecret: d!.deviceSecret }), ...(cert ? { certificateSerial: cert.serial, certificateNotAfter: cert.notAfter } : {}) });
    },
  );

  app.post(
    `${base}/batch`,
    {
      schema: {
        tags,
        summary: `Register up to ${MAX_BATCH} devices at once, by name or by count; all or nothing`,
        params: ProductKeyParams,
        querystring: BatchQuery,
        body: BatchBody,
        response: {
          201: Type.Object({ created: Type.Integer(), devices: Type.Optional(Type.Array(DeviceCredentials, { description: 'absent with credentials=false' })) }),
          ...errorResponses,
        },
      },
    },
    async (req, reply) => {
      const { deviceNames, count, nickname } = req.body;
      if ((deviceNames === undefined) === (count === undefined)) {
        return reply.code(400).send({ code: 'INVALID_ARGUMENT', message: 'give exactly one of deviceNames or count', field: 'deviceNames' });
      }
      const created = await registry.createDevices(req.params.productKey, { deviceNames, count, nickname: nickname ?? null });
      // An X.509 product issues each device its certificate and key (download: x509/credentials).
      const certs = (await ctx.services.x509.issuesOnCreate(req.params.productKey)) ? await ctx.services.x509.issueForNew(created, req.body.keyAlgorithm ?? 'rsa2048') : undefined;
      // 10,000 credentials are 1.5 MB of JSON to build, send and parse; `device import` never reads them.
      if (req.query.credentials === false) return reply.code(201).send({ created: created.length });
      if ((await ctx.services.x509.authModeOf(req.params.productKey)) === 'x509') {
        return reply.code(201).send({ created: created.length, devices: created.map((d, i) => certificateCredentials(d, certs?.[i]?.serial)) });
      }
      return reply.code(201).send({ created: created.length, devices: created.map(credentials) });
    },
  );

  app.get(
    base,
    {
      schema: {
        tags,
        summary: 'List devices (no secrets), filtered by status and DeviceName substring',
        params: ProductKeyParams,
        querystring: ListQuery,
        response: { 200: DeviceListPage, ...errorResponses },
      },
    },
    async (req) => {
      const { status, name, offset, limit, cursor } = req.query;
      if (cursor === undefined) return registry.listDevices(req.params.productKey, { status, nameContains: name }, offset ?? 0, limit ?? 100);
      // Keyset paging: a range of the (product, DeviceName) index, as cheap deep in 500,000
      // devices as on the first page; no COUNT over the filters.
      if ((offset ?? 0) > 0) throw new ThingAuthError('INVALID_ARGUMENT', 'give cursor or offset, not both', { field: 'offset' });
      const after = decodeDeviceCursor(cursor);
      const size = limit ?? 100;
      const page = await registry.listDevicesAfter(req.params.productKey, after, size, { status, nameContains: name });
      const total = status === undefined && name === undefined ? await ctx.store.countDevices(req.params.productKey) : undefined;
      return {
        items: page.items,
        limit: size,
        nextCursor: page.more && page.last !== null ? encodeDeviceCursor(page.last) : null,
        ...(total !== undefined ? { total } : {}),
      };
    },
  );

  app.get(
    '/products/:productKey/device-credentials',
    {
      // Every secret of the product: a read-scope token may not fetch it.
      config: { adminOnly: true },
      schema: {
        tags,
        summary: 'Every device of the product as CSV: ProductKey,DeviceName,DeviceSecret (credentials for the production line)',
        params: ProductKeyParams,
        querystring: Type.Object({ format: Type.Optional(Type.Literal('csv')) }, { additionalProperties: false }),
        produces: ['text/csv'],
        response: { 200: Type.String({ description: 'text/csv with a header line' }), ...errorResponses },
      },
    },
    async (req, reply) => {
      const pk = req.params.productKey;
      await registry.getProduct(pk); // 404 before the stream starts
      // An x509 product's devices have no DeviceSecret to show: the column stays empty (certificates: x509/credentials).
      const x509 = (await ctx.services.x509.authModeOf(pk)) === 'x509';
      async function* lines() {
        yield 'ProductKey,DeviceName,DeviceSecret\n';
        for await (const page of registry.deviceCredentials(pk)) {
          yield page.map((d) => `${csvCell(pk)},${csvCell(d.deviceName)},${x509 ? '' : csvCell(d.deviceSecret)}\n`).join('');
        }
      }
      return reply
        .type('text/csv; charset=utf-8')
        .header('content-disposition', `attachment; filename="${pk}-devices.csv"`)
        .header('cache-control', 'no-store')
        .send(Readable.from(lines()));
    },
  );

  app.get(
    `${base}/:deviceName`,
    { schema: { tags, summary: 'Get a device (no secret)', params: DeviceParams, response: { 200: PublicDeviceSchema, ...errorResponses } } },
    async (req) => registry.getDevice(req.params.productKey, req.params.deviceName),
  );

  app.get(
    `${base}/:deviceName/secret`,
    { config: { adminOnly: true }, schema: { tags, summary: "The device's DeviceSecret (409 for a device of an X.509 product: it authenticates with its certificate)", params: DeviceParams, response: { 200: DeviceCredentials, ...errorResponses } } },
    async (req) => {
      const found = await registry.getDeviceSecret(req.params.productKey, req.params.deviceName); // 404 first
      await ctx.services.x509.assertShowsSecrets(req.params.productKey, req.params.deviceName); // 409 for an x509 product's device
      return found;
    },
  );

  app.delete(
    `${base}/:deviceName`,
    { schema: { tags, summary: 'Delete a device (its sub-devices are detached)', params: DeviceParams, response: { 204: Type.Null(), ...errorResponses } } },
    async (req, reply) => {
      await registry.deleteDevice(req.params.productKey, req.params.deviceName);
      return reply.code(204).send(null);
    },
  );

  const actions = {
    enable: { summary: 'Enable a device', run: (pk: string, dn: string) => registry.setEnabled(pk, dn, true) },
    disable: { summary: 'Disable a device: its logins are refused and its sessions closed', run: (pk: string, dn: string) => registry.setEnabled(pk, dn, false) },
    reset: { summary: 'Back to UNACTIVE so dynamic registration can run again (secret kept)', run: (pk: string, dn: string) => registry.resetDevice(pk, dn) },
  };
  for (const [action, { summary, run }] of Object.entries(actions)) {
    app.post(
      `${base}/:deviceName/${action}`,
      { schema: { tags, summary, params: DeviceParams, response: { 200: PublicDeviceSchema, ...errorResponses } } },
      async (req) => run(req.params.productKey, req.params.deviceName),
    );
  }
}
