/**
 * Device HTTPS answers with canonical header names (`Content-Length`, `Content-Type`).
 *
 * The C Link SDK 4.x reads the response head itself and looks for `Content-Length: ` with
 * a case-sensitive compare; fastify writes lower-case names, so the SDK found no length,
 * read no body and reported STATE_HTTP_READ_BODY_EMPTY while the server had recorded a
 * success. HTTP header names are case-insensitive, so every other client is unaffected.
 *
 * Installed on the raw server ahead of fastify's request listener, so every response of the
 * listener goes through it: route answers, refusals, 404s, body-limit 413s and the errors
 * fastify writes on its own. (fastify's clientError answer for unparsable requests is
 * written straight to the socket and already spells its names this way.)
 */
import type { IncomingMessage, OutgoingHttpHeaders, Server, ServerResponse } from 'node:http';

/** `content-length` -> `Content-Length`; `etag` -> `Etag` (header names are case-insensitive). */
export function canonicalHeaderName(name: string): string {
  return name.toLowerCase().replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase());
}

function canonicalHeaders(headers: OutgoingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) out[canonicalHeaderName(name)] = value;
  return out;
}

type WriteHead = ServerResponse['writeHead'];

function canonicaliseResponse(res: ServerResponse): void {
  const writeHead = res.writeHead as (this: ServerResponse, ...args: unknown[]) => ServerResponse;
  res.writeHead = function (this: ServerResponse, statusCode: number, ...rest: unknown[]) {
    // Headers set earlier with setHeader() keep the spelling they were set with: respell them.
    for (const name of this.getHeaderNames()) {
      const canonical = canonicalHeaderName(name);
      const value = this.getHeader(name);
      this.removeHeader(name);
      if (value !== undefined) this.setHeader(canonical, value);
    }
    const last = rest.length - 1;
    if (last >= 0 && rest[last] && typeof rest[last] === 'object' && !Array.isArray(rest[last])) {
      rest[last] = canonicalHeaders(rest[last] as OutgoingHttpHeaders);
    }
    return writeHead.call(this, statusCode, ...rest);
  } as WriteHead;
}

/** Respells the header names of every response `server` writes. */
export function installCanonicalHeaderNames(server: Server): void {
  server.prependListener('request', (_req: IncomingMessage, res: ServerResponse) => canonicaliseResponse(res));
}
