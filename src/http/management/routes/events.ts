/**
 * /events/stream: the console's live feed as Server-Sent Events (text/event-stream), from
 * services/live-events.ts. Authenticated like every route, by the bearer token in the
 * Authorization header (the console reads the stream with fetch(), so the token never goes
 * into a URL); read scope is enough.
 *
 *   event: device.status    data: {productKey, deviceName, iotId, status: ONLINE|OFFLINE, at}
 *   event: device.changed   data: {productKey, deviceName, iotId, change: disabled|enabled|deleted|reset|changed}
 *   event: stats            data: {connectsPerMinute, refusalsPerMinute, online, at}   (at open, then every 5 s)
 *   event: dropped          data: {count}   (events a slow reader missed, once it reads again)
 *   event: end              data: {reason}  (then the stream closes: token revoked, server closing)
 *   : ping                  (a comment every 15 s)
 *
 * Bounded: nothing is queued for a reader that does not keep up. While the socket's buffer is
 * full, events are dropped and counted; a reader stuck for STUCK_MS is disconnected. Streams
 * per token and in all are capped (429). The token is checked again at every ping, so a
 * revocation made through another node ends the stream too.
 */
import { Type } from '@sinclair/typebox';
import type { ServerResponse } from 'node:http';
import type { AppContext } from '../../../context.js';
import type { LiveEvent, LiveSubscription } from '../../../services/live-events.js';
import { bearerOf } from '../caller-auth.js';
import { errorResponses } from '../schemas.js';
import type { ManagementApp } from '../server.js';

export const PING_INTERVAL_MS = 15_000;
/** A reader whose socket stayed full this long is cut off. */
const STUCK_MS = 60_000;

const StreamQuery = Type.Object(
  { productKey: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'only events of this product (stats always)' })) },
  { additionalProperties: false },
);

function frame(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

export async function eventStreamRoutes(app: ManagementApp, ctx: AppContext): Promise<void> {
  const live = ctx.services.live;
  const open = new Set<(reason: string) => void>();
  // Streams never end by themselves: the server's close would wait for them forever.
  app.addHook('preClose', async () => {
    for (const end of [...open]) end('server closing');
  });

  app.get(
    '/events/stream',
    {
      schema: {
        tags: ['console'],
        summary: 'Live events (Server-Sent Events): device presence, device changes, login rates',
        description:
          'text/event-stream. Events: device.status, device.changed, stats (every 5 s), dropped, end; `: ping` comments every 15 s. Send the token in the Authorization header (read with fetch(), not EventSource). At most 4 streams per token (429).',
        querystring: StreamQuery,
        produces: ['text/event-stream'],
        response: { 200: Type.String({ description: 'the event stream' }), 429: Type.Ref('Error'), ...errorResponses },
      },
    },
    async (req, reply) => {
      // HEAD (fastify's automatic one): the headers of a stream, without opening one.
      if (req.method === 'HEAD') return reply.code(200).header('cache-control', 'no-store').type('text/event-stream; charset=utf-8').send('');
      const caller = req.caller!;
      const presented = bearerOf(req);
      const res: ServerResponse = reply.raw;
      let ended = false;
      let congestedSince = 0;
      let dropped = 0;
      let ping: NodeJS.Timeout | undefined;

      const write = (text: string): void => {
        if (ended) return;
        if (congestedSince !== 0) {
          dropped++;
          return;
        }
        if (!res.write(text)) congestedSince = Date.now();
      };
      const end = (reason: string): void => {
        if (ended) return;
        if (congestedSince === 0) res.write(frame('end', { reason }));
        ended = true;
        cleanup();
        res.end();
      };
      const sub: LiveSubscription = {
        caller,
        ...(req.query.productKey !== undefined ? { productKey: req.query.productKey } : {}),
        deliver: (e: LiveEvent) => write(frame(e.event, e.data)),
        end,
      };
      // May refuse with 429 (too many streams): before anything is written.
      const unsubscribe = live.subscribe(sub);
      const cleanup = (): void => {
        unsubscribe();
        open.delete(end);
        if (ping) clearInterval(ping);
      };
      open.add(end);

      reply.hijack();
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        'x-accel-buffering': 'no',
        connection: 'keep-alive',
      });
      res.on('drain', () => {
        congestedSince = 0;
        if (dropped > 0) {
          const n = dropped;
          dropped = 0;
          write(frame('dropped', { count: n }));
        }
      });
      res.on('close', () => {
        ended = true;
        cleanup();
      });
      write(': thingauth live events\n\n');
      write(frame('stats', live.stats()));
      ping = setInterval(() => {
        if (congestedSince !== 0 && Date.now() - congestedSince > STUCK_MS) {
          ended = true;
          cleanup();
          res.destroy();
          return;
        }
        write(': ping\n\n');
        // A revocation made through another node (or a token store change) ends the stream too.
        ctx.services.tokens.authenticate(presented).then(
          (still) => {
            if (!still || still.tokenId !== caller.tokenId || still.scope !== caller.scope) end('token revoked');
          },
          () => undefined,
        );
      }, PING_INTERVAL_MS);
      ping.unref();
    },
  );
}
