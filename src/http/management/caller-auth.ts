/**
 * Who may call the management API, and the audit record of what they changed.
 *
 * onRequest: every /api route and /metrics needs `Authorization: Bearer <token>`: the
 * bootstrap admin token or a token made with /api/v1/tokens (services/tokens.ts). A `read`
 * token may only GET/HEAD; routes with `config: { adminOnly: true }` (tokens, keys) need an
 * `admin` token even to read. The caller is kept on the request (req.caller).
 *
 * onResponse: every change (any method but GET/HEAD) and every refused credential is
 * appended to the audit: who (token id and name), the route pattern, its path parameters
 * and the status. Never the body or the query string, which may carry secrets (imports,
 * migration ProductSecrets).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AppContext } from '../../context.js';
import { scopeAllows, type Caller } from '../../services/tokens.js';

declare module 'fastify' {
  interface FastifyRequest {
    caller?: Caller;
  }
  interface FastifyContextConfig {
    /** Even GET needs an admin token (token and key management). */
    adminOnly?: boolean;
  }
}

function needsToken(url: string): boolean {
  return url.startsWith('/api/') || url === '/metrics' || url.startsWith('/metrics?');
}

function bearerOf(req: FastifyRequest): string {
  const h = req.headers.authorization;
  if (typeof h !== 'string') return '';
  return /^Bearer /i.test(h) ? h.slice(7).trim() : '';
}

/** `api.post /products/:productKey/devices`: the route pattern, never the concrete path or query. */
export function auditActionOf(req: FastifyRequest): string {
  const pattern = req.routeOptions.url ?? '(unknown route)';
  return `api.${req.method.toLowerCase()} ${pattern.replace(/^\/api\/v1/, '')}`;
}

export function actorOf(caller: Caller | undefined): string {
  return caller ? `token:${caller.tokenId} (${caller.name})` : 'anonymous';
}

export function installCallerAuth(app: FastifyInstance, ctx: AppContext): void {
  const { tokens, audit } = ctx.services;

  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    if (!needsToken(req.url)) return;
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
    if (!req.url.startsWith('/api/')) return;
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
