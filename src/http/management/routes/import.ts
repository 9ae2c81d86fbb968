/**
 * /import and /export: move an existing fleet in (products and devices with the keys they
 * already hold) and out (JSON lines with secrets, which import back unchanged).
 *
 * Import bodies are the file itself (text/csv or application/x-ndjson). This plugin's own
 * content-type parsers hand the request STREAM to the importer instead of buffering it, so
 * a 500,000-row upload is read chunk by chunk; the byte limit is enforced here while reading.
 */
import { Readable } from 'node:stream';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AppContext } from '../../../context.js';
import { ThingAuthError } from '../../../core/errors.js';
import { formatFromContentType, type ImportFormat } from '../../../core/import-formats.js';
import type { ImportSummary } from '../../../services/importer.js';
import { ProductKeyParams, errorResponses } from '../schemas.js';
import type { ManagementApp } from '../server.js';

/** 500,000 JSON lines with every field are ~100 MB; twice that leaves room. Import routes only. */
export const IMPORT_BODY_LIMIT = 200 * 1024 * 1024;

const STREAMED_TYPES = ['text/csv', 'application/csv', 'application/x-ndjson', 'application/jsonl', 'application/x-jsonlines', 'text/plain'];

const ImportQuery = Type.Object(
  {
    dryRun: Type.Optional(Type.Boolean({ description: 'validate and classify every row; write nothing' })),
    overwrite: Type.Optional(Type.Boolean({ description: 'replace secrets (and product settings) that differ instead of reporting a conflict' })),
    format: Type.Optional(Type.Union([Type.Literal('csv'), Type.Literal('jsonl')], { description: 'default: from the content type' })),
  },
  { additionalProperties: false },
);
type ImportQuery = Static<typeof ImportQuery>;

const RowErrorSchema = Type.Object({ line: Type.Integer(), message: Type.String() });

export const ImportSummarySchema = Type.Object({
  kind: Type.Union([Type.Literal('products'), Type.Literal('devices')]),
  format: Type.Union([Type.Literal('csv'), Type.Literal('jsonl')]),
  dryRun: Type.Boolean(),
  overwrite: Type.Boolean(),
  rows: Type.Integer({ description: 'data rows read' }),
  created: Type.Integer(),
  identical: Type.Integer({ description: 'already present with the same keys: skipped' }),
  overwritten: Type.Integer(),
  conflictCount: Type.Integer(),
  conflicts: Type.Array(
    Type.Object({ line: Type.Integer(), productKey: Type.String(), deviceName: Type.Optional(Type.String()), message: Type.String() }),
    { description: 'the first 1,000 conflicts' },
  ),
  invalidCount: Type.Integer(),
  invalid: Type.Array(RowErrorSchema, { description: 'the first 1,000 invalid rows' }),
  aborted: Type.Optional(RowErrorSchema),
});

const ExportQuery = Type.Object({ format: Type.Optional(Type.Literal('jsonl')) }, { additionalProperties: false });

/** Counts bytes as they stream by and stops the upload once it passes the limit. */
async function* limitBytes(source: AsyncIterable<Buffer>, limit: number): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const chunk of source) {
    total += chunk.length;
    if (total > limit) throw tooLarge();
    yield chunk;
  }
}

function tooLarge(): ThingAuthError {
  return new ThingAuthError('PAYLOAD_TOO_LARGE', `import files may be at most ${IMPORT_BODY_LIMIT / (1024 * 1024)} MB; split the file and import the parts`, {
    field: 'body',
  });
}

/** The validated query (the schema helper below hides its type from the handlers). */
function queryOf(req: FastifyRequest): ImportQuery {
  return req.query as ImportQuery;
}

function importSource(req: FastifyRequest): { source: AsyncIterable<Buffer>; format: ImportFormat } {
  const body = req.body as unknown;
  if (!(body instanceof Readable)) {
    throw new ThingAuthError('INVALID_ARGUMENT', 'send the file as the request body with content-type text/csv or application/x-ndjson', {
      field: 'content-type',
    });
  }
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > IMPORT_BODY_LIMIT) throw tooLarge();
  const format = queryOf(req).format ?? formatFromContentType(req.headers['content-type']);
  if (!format) {
    throw new ThingAuthError('INVALID_ARGUMENT', 'format is unknown: pass ?format=csv or ?format=jsonl, or send content-type text/csv or application/x-ndjson', {
      field: 'format',
    });
  }
  return { source: limitBytes(body as AsyncIterable<Buffer>, IMPORT_BODY_LIMIT), format };
}

/**
 * A refusal sent while the upload is still coming (no header row, too large) closes the
 * connection: otherwise the client goes on sending up to 200 MB nobody reads, and the
 * socket keeps the server from shutting down.
 */
async function closeIfRefusedEarly<T>(req: FastifyRequest, reply: FastifyReply, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    if (!req.raw.complete) reply.header('connection', 'close');
    throw e;
  }
}

export async function importRoutes(app: ManagementApp, ctx: AppContext): Promise<void> {
  const importer = ctx.services.importer;
  const tags = ['import'];

  // Scoped to this plugin: other routes keep fastify's buffered parsers and 1 MB limit.
  if (app.hasContentTypeParser('text/plain')) app.removeContentTypeParser('text/plain');
  app.addContentTypeParser(STREAMED_TYPES, { bodyLimit: IMPORT_BODY_LIMIT }, (_req, payload, done) => done(null, payload));

  const importSchema = (summary: string, description: string) => ({
    tags,
    summary,
    description,
    querystring: ImportQuery,
    consumes: ['text/csv', 'application/x-ndjson'],
    response: { 200: ImportSummarySchema, 413: Type.Ref('Error'), ...errorResponses },
  });

  app.post(
    '/import/products',
    {
      bodyLimit: IMPORT_BODY_LIMIT,
      config: { adminOnly: true },
      schema: importSchema(
        'Import products with their existing ProductKey and ProductSecret',
        'Body: JSON lines (productKey, productSecret, productName, nodeType, dynamicRegistration, preRegistrationFree, requireTls, replayProtection, deviceLimit, description) or CSV with those column names. Identical products are skipped; a product whose secret or settings differ is a conflict unless overwrite=true.',
      ),
    },
    async (req, reply): Promise<ImportSummary> =>
      closeIfRefusedEarly(req, reply, () => {
        const { source, format } = importSource(req);
        const q = queryOf(req);
        return importer.importProducts(source, format, { dryRun: q.dryRun, overwrite: q.overwrite });
      }),
  );

  app.post(
    '/import/devices',
    {
      bodyLimit: IMPORT_BODY_LIMIT,
      config: { adminOnly: true },
      schema: importSchema(
        'Import devices with their existing DeviceName and DeviceSecret (streamed; up to 200 MB)',
        'Body: the cloud console CSV (ProductKey, DeviceName, DeviceSecret in any order, header row required) or JSON lines (productKey, deviceName, deviceSecret, iotId, nickname, activatedAt). Products must exist. Identical devices are skipped; a different secret is a conflict unless overwrite=true.',
      ),
    },
    async (req, reply): Promise<ImportSummary> =>
      closeIfRefusedEarly(req, reply, () => {
        const { source, format } = importSource(req);
        const q = queryOf(req);
        return importer.importDevices(source, format, { dryRun: q.dryRun, overwrite: q.overwrite });
      }),
  );

  // Exports carry every secret: admin tokens only, even though they are GETs.
  app.get(
    '/export/products',
    {
      config: { adminOnly: true },
      schema: {
        tags,
        summary: 'Every product as JSON lines WITH its ProductSecret (for POST /import/products)',
        querystring: ExportQuery,
        produces: ['application/x-ndjson'],
        response: { 200: Type.String({ description: 'application/x-ndjson' }), ...errorResponses },
      },
    },
    async (_req, reply) =>
      reply
        .type('application/x-ndjson; charset=utf-8')
        .header('content-disposition', 'attachment; filename="products.jsonl"')
        .header('cache-control', 'no-store')
        .send(Readable.from(importer.exportProducts())),
  );

  app.get(
    '/export/products/:productKey/devices',
    {
      config: { adminOnly: true },
      schema: {
        tags,
        summary: "Every device of a product as JSON lines WITH its DeviceSecret, iotId and activation (for POST /import/devices)",
        params: ProductKeyParams,
        querystring: ExportQuery,
        produces: ['application/x-ndjson'],
        response: { 200: Type.String({ description: 'application/x-ndjson' }), ...errorResponses },
      },
    },
    async (req, reply) => {
      const pk = req.params.productKey;
      // Secrets are the point of this export: an x509 product's devices have none to show (409, its certificates: x509/credentials).
      await ctx.services.x509.assertShowsSecrets(pk);
      const lines = importer.exportDevices(pk);
      // Pull the first page before answering so an unknown product is a 404, not a broken stream.
      const first = await lines.next();
      async function* all() {
        if (!first.done) yield first.value;
        yield* lines;
      }
      return reply
        .type('application/x-ndjson; charset=utf-8')
        .header('content-disposition', `attachment; filename="${pk}-devices.jsonl"`)
        .header('cache-control', 'no-store')
        .send(Readable.from(all()));
    },
  );
}
