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
    cursor: Type.Optional(Type.String({ maxLength: 64, description: 'nextCursor of the previous page: the entries after it (older), same filters' })),
  },
  { additionalProperties: false },
);

/** The stores answer at most this many entries per query. */
const MAX_AUDIT_QUERY = 10_000;
const CURSOR_PREFIX = 'a1.';

/**
 * The paging cursor: opaque to clients (they only hand back what they got), keyset on the
 * entry id, which is the order the trail is listed in (newest first).
 */
export function encodeAuditCursor(id: number): string {
  return Buffer.from(CURSOR_PREFIX + id.toString(10), 'utf8').toString('base64url');
}

export function decodeAuditCursor(cursor: string): number {
  const text = /^[A-Za-z0-9_-]{1,64}$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
  const m = /^a1\.(\d{1,15})$/.exec(text);
  if (!m) throw new ThingAuthError('INVALID_ARGUMENT', 'cursor: not a cursor this server gave out (use nextCursor from the previous page)', { field: 'cursor' });
  return Number(m[1]);
}

export async function auditRoutes(app: ManagementApp, ctx: AppContext): Promise<void> {
  app.get(
    '/audit',
    {
      schema: {
        tags: ['audit'],
        summary: 'Query the audit trail, newest first',
        querystring: AuditQuery,
        response: {
          200: Type.Object({
            items: Type.Array(AuditEntrySchema),
            nextCursor: Nullable(Type.String({ description: 'pass as ?cursor= for the next (older) page; null on the last page' })),
          }),
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const q = req.query;
      if (q.since !== undefined && Number.isNaN(Date.parse(q.since))) {
        throw new ThingAuthError('INVALID_ARGUMENT', 'since: must be an ISO 8601 date-time, e.g. 2024-05-01T00:00:00Z', { field: 'since' });
      }
      const since = q.since !== undefined ? new Date(q.since).toISOString() : undefined;
      const beforeId = q.cursor !== undefined ? decodeAuditCursor(q.cursor) : undefined;
      const limit = q.limit ?? 100;
      // One entry more than asked tells whether another page exists (the store caps a query at
      // MAX_AUDIT_QUERY; a full page at the cap gets a cursor, which may lead to an empty page).
      const rows = await ctx.services.audit.query({
        productKey: q.productKey,
        deviceName: q.deviceName,
        action: q.action,
        since,
        ...(beforeId !== undefined ? { beforeId } : {}),
        limit: Math.min(limit + 1, MAX_AUDIT_QUERY),
      });
      const more = rows.length > limit || (rows.length === limit && limit === MAX_AUDIT_QUERY);
      const items = rows.slice(0, limit);
      const lastId = items[items.length - 1]?.id;
      return { items, nextCursor: more && lastId !== undefined ? encodeAuditCursor(lastId) : null };
    },
  );
}
