/** The management API listener (plain HTTP, every /api route behind the admin bearer token). */
import Fastify from 'fastify';
import type { AppContext, Listener } from '../../context.js';
import { constantTimeEquals } from '../../core/sign.js';

export async function startManagementApi(ctx: AppContext): Promise<Listener> {
  const app = Fastify({ logger: false, bodyLimit: 1024 * 1024 });
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.addHook('onRequest', async (req, reply) => {
    if (!req.url.startsWith('/api/')) return;
    const h = req.headers.authorization ?? '';
    const token = h.startsWith('Bearer ') ? h.slice(7) : '';
    if (!constantTimeEquals(ctx.adminToken, token)) {
      return reply.code(401).send({ code: 'UNAUTHENTICATED', message: 'missing or invalid bearer token' });
    }
  });
  await app.listen({ host: ctx.config.host, port: ctx.config.httpPort });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : ctx.config.httpPort;
  return { name: 'management-http', url: `http://${ctx.config.host}:${port}`, port, close: () => app.close() };
}
