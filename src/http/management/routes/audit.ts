/** /audit: the audit trail (authentication decisions and management changes), newest first. */
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../../../context.js';
import { ThingAuthError } from '../../../core/errors.js';
import { Nullable, errorResponses } from '../schemas.js';
import type { ManagementApp } from '../server.js';

const AuditEntrySchema = Type.Object({
  id: Type.Integer(),
  at: Type.String(),
  action: Type.String({ description: "e.g. mqtt.connect.sign, register.https, api.post /products/:productKey/devices" }),
  actor: Type.String({ description: 'token:<id> (<name>) for management calls; the identity claimed for logins' }),
  productKey: Nullable(Type.String()),
  deviceName: Nullable(Type.String()),
  sourceAddress: Nullable(Type.String()),
  result: Type.Union([Type.Literal('allow'), Type.Literal('deny'), Type.Literal('ok'), Type.Literal('error')]),
  reason: Nullable(Type.String()),
});

const AuditQuery = Type.Object(
  {
    productKey: Type.Optional(Type.String({ maxLength: 64 })),
    deviceName: Type.Optional(Type.String({ maxLength: 128 })),
    action: Type.Optional(Type.String({ maxLength: 128 })),
    since: Type.Optional(Type.String({ maxLength: 40, description: 'ISO 8601 time; entries at or after it' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, default: 100 })),
  },
  { additionalProperties: false },
);

export async function auditRoutes(app: ManagementApp, ctx: AppContext): Promise<void> {
  app.get(
    '/audit',
    {
      schema: {
        tags: ['audit'],
        summary: 'Query the audit trail, newest first',
        querystring: AuditQuery,
        response: { 200: Type.Object({ items: Type.Array(AuditEntrySchema) }), ...errorResponses },
      },
    },
    async (req) => {
      const q = req.query;
      if (q.since !== undefined && Number.isNaN(Date.parse(q.since))) {
        throw new ThingAuthError('INVALID_ARGUMENT', 'since: must be an ISO 8601 date-time, e.g. 2024-05-01T00:00:00Z', { field: 'since' });
      }
      const since = q.since !== undefined ? new Date(q.since).toISOString() : undefined;
      return { items: await ctx.services.audit.query({ ...q, since, limit: q.limit ?? 100 }) };
    },
  );
}
