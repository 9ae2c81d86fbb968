/**
 * The device-facing HTTPS listener: dynamic registration (/auth/register/device), the HTTP
 * device channel (/auth, /topic/...). Device routes live in routes/, one file per family,
 * and are listed in DEVICE_ROUTES below.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import formbody from '@fastify/formbody';
import type { AppContext, Listener } from '../../context.js';
import { tlsOptionsFor } from '../../tls/profiles.js';
import { clientCertOptions } from '../../tls/client-certs.js';
import { installCanonicalHeaderNames } from './canonical-headers.js';
import { capConnectionsPerSource } from '../connection-caps.js';
import { proxyProtocolFor } from '../../net/proxy-protocol-listener.js';
import { fastifyTimeoutOptions, serverTimeoutOptions, type RequestTimeouts } from '../request-timeouts.js';
import { registerRoutes } from './routes/register.js';
import { httpChannelRoutes } from './routes/http-channel.js';
import { bootstrapRoutes } from './routes/bootstrap.js';

export type DeviceRoutePlugin = (app: FastifyInstance, ctx: AppContext) => Promise<void> | void;

/** Route families registered on the device listener. Each owner appends its plugin here. */
export const DEVICE_ROUTES: DeviceRoutePlugin[] = [registerRoutes, httpChannelRoutes, bootstrapRoutes];

/** The device listener's deadlines (request-timeouts.ts): a device request is small and quick. */
export function deviceRequestTimeouts(ctx: AppContext): RequestTimeouts {
  return { headersMs: ctx.config.httpHeadersTimeoutSeconds * 1000, requestMs: ctx.config.httpRequestTimeoutSeconds * 1000 };
}

export async function buildDeviceApp(ctx: AppContext, https: boolean): Promise<FastifyInstance> {
  const timeouts = deviceRequestTimeouts(ctx);
  const app = Fastify({
    logger: false,
    bodyLimit: 256 * 1024,
    ...fastifyTimeoutOptions(timeouts),
    ...(https
      ? { https: { cert: ctx.tls.cert, key: ctx.tls.key, ...tlsOptionsFor(ctx.config.tlsProfile), ...clientCertOptions(ctx.config), ...serverTimeoutOptions(timeouts) } }
      : { http: serverTimeoutOptions(timeouts) }),
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;
  // The C Link SDK finds Content-Length only when it is spelled so (canonical-headers.ts).
  installCanonicalHeaderNames(app.server as import('node:http').Server);
  await app.register(formbody);
  for (const plugin of DEVICE_ROUTES) await plugin(app, ctx);
  return app;
}

export async function startDeviceHttps(ctx: AppContext): Promise<Listener> {
  const app = await buildDeviceApp(ctx, true);
  capConnectionsPerSource(app.server, ctx.config.httpConnectionsPerSource, ctx.logger, 'device-https');
  proxyProtocolFor(ctx, app.server, () => 'device-https', ctx.config.httpConnectionsPerSource);
  await app.listen({ host: ctx.config.host, port: ctx.config.httpsPort });
  // After the bind, a server 'error' (e.g. EMFILE while accepting) must not kill the process.
  app.server.on('error', (err) => ctx.logger.warn({ listener: 'device-https', err: err.message }, 'listener error'));
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : ctx.config.httpsPort;
  return { name: 'device-https', url: `https://${ctx.config.host}:${port}`, port, close: () => app.close() };
}
