/**
 * GET /metrics (Prometheus text format) on the management listener, outside /api/v1. It
 * needs a bearer token like the API (a `read` token is enough): Prometheus sends one with
 * `authorization: { credentials_file: ... }` in its scrape config.
 */
import type { AppContext } from '../../../context.js';
import type { ManagementApp } from '../server.js';

export async function metricsRoute(app: ManagementApp, ctx: AppContext): Promise<void> {
  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
    const { contentType, body } = await ctx.services.metrics.render();
    return reply.header('content-type', contentType).send(body);
  });
}
