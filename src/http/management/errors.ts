/**
 * One error handler for the management API: every refusal leaves as JSON {code, message}
 * with the field named where there is one. Domain errors carry their own HTTP status
 * (core/errors.ts); schema failures become INVALID_ARGUMENT; anything unexpected is logged
 * and answered with a bare INTERNAL so no internals (or secrets) reach the caller.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isThingAuthError, type ErrorKind } from '../../core/errors.js';
import type { Logger } from '../../logger.js';
import type { ErrorBody } from './schemas.js';

/** "/deviceNames/3" -> "deviceNames[3]", "/a/b" -> "a.b". */
export function fieldFromPath(path: string): string {
  const parts = path.split('/').filter(Boolean);
  let out = '';
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out ? `.${p}` : p;
  return out;
}

interface ValidationItem {
  instancePath?: string;
  message?: string;
  params?: Record<string, unknown>;
}

function validationBody(err: FastifyError): ErrorBody {
  const items = (err.validation ?? []) as ValidationItem[];
  const first = items[0] ?? {};
  const part = err.validationContext ?? 'body';
  let field = fieldFromPath(first.instancePath ?? '');
  // ajv (if a plugin swaps the compiler back) names unknown/missing properties in params.
  const extra = first.params?.additionalProperty ?? first.params?.missingProperty;
  if (typeof extra === 'string') field = field ? `${field}.${extra}` : extra;
  let message = first.message ?? 'invalid value';
  if (/unexpected property/i.test(message) || first.params?.additionalProperty !== undefined) message = 'unknown field';
  if (/required property/i.test(message)) message = 'is required';
  const where = field || part;
  return { code: 'INVALID_ARGUMENT', message: `${where}: ${message}`, field: field || part };
}

const STATUS_CODES: Record<number, ErrorKind | 'UNSUPPORTED_MEDIA_TYPE' | 'METHOD_NOT_ALLOWED'> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  409: 'CONFLICT',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  429: 'RATE_LIMITED',
};

/** The request stream failed because the client closed or reset the connection. */
function isClientAbort(err: FastifyError | undefined, req?: FastifyRequest): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ECONNRESET' || code === 'ECONNABORTED' || code === 'ERR_STREAM_PREMATURE_CLOSE') return true;
  return req?.raw.readableAborted === true;
}

export function toErrorReply(err: unknown, logger: Logger, req?: FastifyRequest): { status: number; body: ErrorBody } {
  if (isThingAuthError(err)) {
    const body: ErrorBody = { code: err.kind, message: err.message };
    const { field, ...rest } = err.details ?? {};
    if (typeof field === 'string') body.field = field;
    if (Object.keys(rest).length > 0) body.details = rest;
    if (err.kind === 'UNAVAILABLE') {
      // The database is down or unreachable: the caller may retry; the log says where and why.
      logger.warn({ err: { kind: err.kind, message: err.message }, url: req?.routeOptions?.url }, 'management request failed: registry database unavailable');
      return { status: 503, body: { code: 'UNAVAILABLE', message: 'the registry database is unavailable; retry later' } };
    }
    if (err.httpStatus >= 500) {
      logger.error({ err: { kind: err.kind, message: err.message }, url: req?.routeOptions?.url }, 'management request failed');
      return { status: err.httpStatus, body: { code: 'INTERNAL', message: 'internal error; see the server log' } };
    }
    return { status: err.httpStatus, body };
  }
  const fe = err as FastifyError;
  if (fe && Array.isArray(fe.validation)) return { status: 400, body: validationBody(fe) };
  if (isClientAbort(fe, req)) {
    // The client went away mid-request (an upload cut off): its doing, not a server failure, so
    // no error-level line and no stack for anyone who can open a connection (issue 11 item 15).
    logger.info({ url: req?.routeOptions?.url, remote: req?.ip, reason: fe.message }, 'management request aborted by the client');
    return { status: 400, body: { code: 'INVALID_ARGUMENT', message: 'the request was cut off before its body ended', field: 'body' } };
  }
  const status = typeof fe?.statusCode === 'number' ? fe.statusCode : 500;
  if (status >= 400 && status < 500) {
    if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return { status, body: { code: 'PAYLOAD_TOO_LARGE', message: 'request body is larger than the server accepts', field: 'body' } };
    }
    return { status, body: { code: STATUS_CODES[status] ?? 'INVALID_ARGUMENT', message: fe.message, ...(status === 400 ? { field: 'body' } : {}) } };
  }
  // Only the error's class and message: request bodies may hold secrets.
  logger.error({ err: { name: fe?.name, message: fe?.message, stack: fe?.stack }, url: req?.routeOptions?.url }, 'management request failed');
  return { status: 500, body: { code: 'INTERNAL', message: 'internal error; see the server log' } };
}

export function installErrorHandling(app: FastifyInstance, logger: Logger): void {
  app.setErrorHandler((err, req, reply: FastifyReply) => {
    const { status, body } = toErrorReply(err, logger, req);
    return reply.code(status).type('application/json').send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    return reply.code(404).send({ code: 'NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` });
  });
}
