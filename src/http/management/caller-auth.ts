/**
 * Who may call the management API, and the audit record of what they changed.
 *
 * Deny by default. onRequest: every request needs `Authorization: Bearer <token>` (the
 * bootstrap admin token or a token made with /api/v1/tokens, services/tokens.ts) unless the
 * route it MATCHED is in PUBLIC_ROUTES. The decision is taken on the matched route pattern
 * (req.routeOptions.url), never on the raw URL: the router decodes and normalises the path
 * (`/%61pi/v1/...` matches `/api/v1/...`), so any test on the raw text can be spelled around
 * (issue 11 item 1). A request that matched no route is not public either: without a token it
 * gets 401, never the 404 body. A `read` token may only GET/HEAD; routes with
 * `config: { adminOnly: true }` (tokens, keys) need an `admin` token even to read. The caller
 * is kept on the request (req.caller).
 *
 * onResponse: every change (any method but GET/HEAD) and every refused credential on a
 * non-public route is appended to the audit: who (token id and name), the matched route
 * pattern, its path parameters and the status. Never the body or the query string, which may
 * carry secrets (imports, migration ProductSecrets).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AppContext } from '../../context.js';
import { scopeAllows, type Caller } from '../../services/tokens.js';
import { CONSOLE_ROUTES } from './console-static.js';

declare module 'fastify' {
  interface FastifyRequest {
    caller?: Caller;
  }
  interface FastifyContextConfig {
    /** Even GET needs an admin token (token and key management). */
    adminOnly?: boolean;
  }
  interface FastifyInstance {
    /** Every route registered after installCallerAuth, as `METHOD pattern` (tests cover each one). */
    routeTable: ManagementRoute[];
  }
}

export interface ManagementRoute {
  method: string;
  url: string;
  public: boolean;
}

/**
 * The only route patterns anyone may call without a token (with their automatic HEAD). Compared
 * with the matched route pattern; everything else, matched or not, needs a token. The console's
 * pages and built assets (console-static.ts CONSOLE_ROUTES) are public: HTML and scripts, no
 * data; the console's API calls carry the operator's token.
 */
export const PUBLIC_ROUTES: ReadonlySet<string> = new Set(['/healthz', '/openapi.json', ...CONSOLE_ROUTES]);

/** True only for a request that matched a route on the public list. */
export function isPublicRequest(req: FastifyRequest): boolean {
  if (req.is404) return false;
  const pattern = req.routeOptions.url;
  return pattern !== undefined && PUBLIC_ROUTES.has(pattern);
}

export function bearerOf(req: FastifyRequest): string {
  const h = req.headers.authorization;
  if (typeof h !== 'string') return '';
  return /^Bearer /i.test(h) ? h.slice(7).trim() : '';
}

/** `api.post /products/:productKey/devices`: the route pattern, never the concrete path or query. */
export function auditActionOf(req: FastifyRequest): string {
  const pattern = req.is404 ? '(no route)' : req.routeOptions.url ?? '(no route)';
  return `api.${req.method.toLowerCase()} ${pattern.replace(/^\/api\/v1/, '')}`;
}

export function actorOf(caller: Caller | undefined): string {
  return caller ? `token:${caller.tokenId} (${caller.name})` : 'anonymous';
}

/** Installed before any route is declared, so the route table holds every route. */
export function installCallerAuth(app: FastifyInstance, ctx: AppContext): void {
  const { tokens, audit } = ctx.services;

  const routeTable: ManagementRoute[] = [];
  app.decorate('routeTable', routeTable);
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) routeTable.push({ method, url: route.url, public: PUBLIC_ROUTES.has(route.url) });
  });

  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    if (isPublicRequest(req)) return;
    const caller = await tokens.authenticate(bearerOf(req));
    if (!caller) {
      return reply.code(401).send({ code: 'UNAUTHENTICATED', message: 'missing or invalid bearer token (Authorization: Bearer <token>)' });
    }
    req.caller = caller;
    if (caller.scope !== 'admin' && (req.routeOptions.config?.adminOnly || !scopeAllows(caller.scope, req.method))) {
      return reply.code(403).send({ code: 'FORBIDDEN', message: `token ${caller.tokenId} has scope ${caller.scope}; this request needs an admin token` });
    }
  });

  app.addHook('onResponse', async (req: FastifyRequest, reply: FastifyReply) => {
    if (isPublicRequest(req)) return;
    const status = reply.statusCode;
    const denied = status === 401 || status === 403;
    const change = req.method !== 'GET' && req.method !== 'HEAD';
    if (!denied && !change) return;
    const params = { ...((req.params ?? {}) as Record<string, unknown>) };
    const productKey = typeof params.productKey === 'string' ? params.productKey : null;
    const deviceName = typeof params.deviceName === 'string' ? params.deviceName : null;
    delete params.productKey;
    delete params.deviceName;
    const rest = Object.keys(params).length > 0 ? ` ${JSON.stringify(params)}` : '';
    audit.record({
      action: auditActionOf(req),
      actor: actorOf(req.caller),
      productKey,
      deviceName,
      sourceAddress: req.ip,
      result: denied ? 'deny' : status < 400 ? 'ok' : 'error',
      reason: `HTTP ${status}${rest}`,
    });
  });
}
