/**
 * The management API listener (HTTP, or HTTPS with THINGAUTH_MANAGEMENT_TLS: on by default when
 * it binds beyond loopback). Every route sits behind a bearer token with a
 * scope (caller-auth.ts, deny by default, decided on the matched route); only /healthz,
 * /openapi.json and the console's pages and assets (PUBLIC_ROUTES) do not. Route
 * plugins live in routes/, one per resource, listed in routes/index.ts (MANAGEMENT_ROUTES)
 * and mounted under /api/v1.
 */
import swagger from '@fastify/swagger';
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance } from 'fastify';
import { CONFIG_ENV, isLoopbackHost, managementTlsEnabled } from '../../config.js';
import { tlsOptionsFor } from '../../tls/profiles.js';
import type { AppContext, Listener } from '../../context.js';
import { capConnectionsPerSource } from '../connection-caps.js';
import { fastifyTimeoutOptions, serverTimeoutOptions, type RequestTimeouts } from '../request-timeouts.js';
import { installCallerAuth } from './caller-auth.js';
import { consoleRoutes } from './console-static.js';
import { installErrorHandling } from './errors.js';
import { MANAGEMENT_ROUTES } from './routes/index.js';
import { metricsRoute } from './routes/metrics.js';
import { ErrorBody } from './schemas.js';

export const API_PREFIX = '/api/v1';
/** Large enough for a 10,000-name batch; anything bigger is refused with 413. */
export const MANAGEMENT_BODY_LIMIT = 1024 * 1024;

export type ManagementApp = FastifyInstance<
  import('node:http').Server,
  import('node:http').IncomingMessage,
  import('node:http').ServerResponse,
  import('fastify').FastifyBaseLogger,
  TypeBoxTypeProvider
>;

/**
 * The management API's deadlines: headers as on the device listener; the whole request gets
 * THINGAUTH_MANAGEMENT_REQUEST_TIMEOUT_SECONDS (15 min by default: a 200 MB import at about
 * 230 KB/s), since Node's request deadline is one per server, not per route.
 */
export function managementRequestTimeouts(ctx: AppContext): RequestTimeouts {
  return { headersMs: ctx.config.httpHeadersTimeoutSeconds * 1000, requestMs: ctx.config.managementRequestTimeoutSeconds * 1000 };
}

/** Builds the app with every route registered, without listening (tests and tools use inject or their own listen). */
export async function buildManagementApp(ctx: AppContext): Promise<ManagementApp> {
  const timeouts = managementRequestTimeouts(ctx);
  // One spelling per route: the router's defaults, stated so nobody loosens them by accident
  // (caller-auth decides on the matched route anyway, so a looser router would not open a hole).
  // TLS (THINGAUTH_MANAGEMENT_TLS, on by default when the API is open beyond loopback) with the
  // server certificate the device listeners use; only forward-secret AEAD suites (browsers and
  // the CLI, no embedded TLS stacks here).
  const transport = managementTlsEnabled(ctx.config)
    ? { https: { cert: ctx.tls.cert, key: ctx.tls.key, ...tlsOptionsFor('strict'), ...serverTimeoutOptions(timeouts) } }
    : { http: serverTimeoutOptions(timeouts) };
  const app = Fastify({
    logger: false,
    bodyLimit: MANAGEMENT_BODY_LIMIT,
    ...fastifyTimeoutOptions(timeouts),
    ...transport,
    routerOptions: { ignoreTrailingSlash: false, ignoreDuplicateSlashes: false, caseSensitive: true },
  }).withTypeProvider<TypeBoxTypeProvider>() as unknown as ManagementApp;
  // TypeBox's compiler never coerces or strips a body: wrong types and unknown fields are
  // refused, not silently fixed. Query strings and params are converted (they arrive as text).
  app.setValidatorCompiler(TypeBoxValidatorCompiler);
  installErrorHandling(app, ctx.logger);
  // Bearer token with scopes (read: GET only), deny by default, and the audit of every change:
  // caller-auth.ts. Installed before any route so its route table sees every one.
  installCallerAuth(app, ctx);
  app.addSchema(ErrorBody);
  // A JSON `null` body skips schema validation (fastify validates only a present body), so a
  // create route whose fields are all optional would act on it: refuse it like any non-object.
  app.addHook('preValidation', async (req, reply) => {
    if (req.body === null) {
      return reply.code(400).send({ code: 'INVALID_ARGUMENT', message: 'request body must be a JSON object, not null', field: 'body' });
    }
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'thingauth management API',
        version: '1',
        description: 'Products, devices and their credentials. Every /api route needs `Authorization: Bearer <token>`: the admin token or a token from /api/v1/tokens (scope read: GET only).',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });

  // "degraded" while the registry database does not answer (PostgreSQL): the process is up
  // (200), but writes fail until it is back. Asked at most once a second, however often
  // /healthz (public) is polled.
  let dbCheck: { at: number; ok: Promise<boolean> } | undefined;
  // A draining node answers 503, so a load balancer's health check takes it out of rotation.
  app.get('/healthz', { schema: { hide: true } }, async (_req, reply) => {
    const cluster = ctx.cluster.status();
    const node = cluster.mode === 'redis' ? { nodeId: cluster.nodeId, redis: cluster.redis } : {};
    const ping = ctx.store.ping?.bind(ctx.store);
    let dbOk = true;
    if (ping) {
      if (!dbCheck || Date.now() - dbCheck.at >= 1000) {
        dbCheck = { at: Date.now(), ok: ping().then(() => true, () => false) };
      }
      dbOk = await dbCheck.ok;
    }
    // With THINGAUTH_REDIS_URL: "shared" while the limits are in Redis; "local" (degraded)
    // while Redis does not answer and this node counts alone (services/limits/shared-limiter.ts).
    const limitsMode = ctx.services.limiter.health().mode;
    const limits = limitsMode === 'memory' ? {} : { limits: limitsMode === 'redis' ? 'shared' : 'local: redis unavailable' };
    if (cluster.draining) return reply.code(503).send({ status: 'draining', ...node, ...limits });
    const degraded = !dbOk || cluster.redis === 'down' || limitsMode === 'fallback';
    return { status: degraded ? 'degraded' : 'ok', ...(dbOk ? {} : { database: 'unavailable' }), ...node, ...limits };
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  await metricsRoute(app, ctx);
  // The operator console at / (public HTML and scripts; its API calls carry a token).
  await consoleRoutes(app);

  for (const plugin of MANAGEMENT_ROUTES) {
    await app.register(async (scope) => plugin(scope as ManagementApp, ctx), { prefix: API_PREFIX });
  }
  return app;
}

export async function startManagementApi(ctx: AppContext): Promise<Listener> {
  const app = await buildManagementApp(ctx);
  // An operator's CLI, a dashboard and Prometheus need a handful, a script creating devices in
  // parallel more; the cap (THINGAUTH_MANAGEMENT_CONNECTIONS_PER_SOURCE) keeps one host from holding all sockets.
  capConnectionsPerSource(app.server, ctx.config.managementConnectionsPerSource, ctx.logger, 'management-http');
  // Its own bind address (loopback by default), not the device listeners' THINGAUTH_HOST.
  const host = ctx.config.managementHost;
  await app.listen({ host, port: ctx.config.httpPort });
  app.server.on('error', (err) => ctx.logger.warn({ listener: 'management-http', err: err.message }, 'listener error'));
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : ctx.config.httpPort;
  const tls = managementTlsEnabled(ctx.config);
  const note = isLoopbackHost(host)
    ? `only this machine can reach it; set ${CONFIG_ENV.managementHost}=0.0.0.0 (or an interface address) to open it to the network${tls ? '; over TLS' : ''}`
    : tls
      ? `reachable from the network over TLS (${CONFIG_ENV.managementTls}); clients trust ${ctx.tls.caPath ?? 'the CA of ' + CONFIG_ENV.tlsCert}`
      : `reachable from the network over plain HTTP (${CONFIG_ENV.managementTls}=off); keep it on a private network or behind a TLS proxy (${CONFIG_ENV.managementHost}=127.0.0.1 keeps it local)`;
  // The listener keeps its name with TLS on (tools and tests find it by name); the URL says https.
  return { name: 'management-http', url: `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`, port, note, close: () => app.close() };
}
