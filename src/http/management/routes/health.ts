/**
 * /health: what the console's Health page shows, for any token (read scope too): the listeners
 * this node started with their real addresses (port 0 settings resolved), the store and whether
 * it answers, the master key rotation state (no key ids: GET /keys stays admin-only), the
 * version, this node in its cluster and the node list. /healthz stays the public, terse probe.
 */
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../../../context.js';
import { isPostgresUrl } from '../../../store/postgres/connection.js';
import { THINGAUTH_VERSION } from '../../../version.js';
import { Nullable, errorResponses } from '../schemas.js';
import type { ManagementApp } from '../server.js';

/** A store that does not answer within this is reported unreachable (the page must not hang). */
const PING_TIMEOUT_MS = 2000;

const HealthBody = Type.Object({
  version: Type.String(),
  listeners: Type.Array(
    Type.Object({
      name: Type.String({ description: 'mqtt, mqtts, mqtt-ws, mqtt-wss, device-http, device-https, management-http... as in the start log' }),
      url: Type.String({ description: 'the address it listens on, with the real port' }),
      port: Type.Integer(),
    }),
  ),
  store: Type.Object({
    kind: Type.Union([Type.Literal('sqlite'), Type.Literal('postgres')]),
    reachable: Type.Boolean({ description: 'postgres: answered a ping within 2 s; sqlite: the embedded file (always true while the server runs)' }),
  }),
  keys: Type.Object({
    state: Type.Union([Type.Literal('idle'), Type.Literal('running'), Type.Literal('done'), Type.Literal('failed')]),
    olderKeys: Type.Integer({ description: 'older master keys still present (more than 0: an unfinished rotation)' }),
    startedAt: Nullable(Type.String()),
    finishedAt: Nullable(Type.String()),
    rewritten: Type.Integer(),
  }),
  cluster: Type.Object({
    mode: Type.Union([Type.Literal('single'), Type.Literal('redis')]),
    nodeId: Type.String(),
    redis: Type.Union([Type.Literal('up'), Type.Literal('down'), Type.Literal('none')]),
    draining: Type.Boolean(),
  }),
  nodes: Nullable(
    Type.Array(
      Type.Object({
        nodeId: Type.String(),
        host: Type.String(),
        version: Type.String(),
        startedAt: Type.String(),
        beatAt: Type.String(),
        draining: Type.Boolean(),
        sessions: Type.Integer(),
      }),
      { description: 'null when the cluster\'s Redis cannot be read now' },
    ),
  ),
});

async function storeReachable(ctx: AppContext): Promise<boolean> {
  const ping = ctx.store.ping?.bind(ctx.store);
  if (!ping) return true;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), PING_TIMEOUT_MS);
  });
  try {
    return await Promise.race([ping().then(() => true, () => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export async function healthRoutes(app: ManagementApp, ctx: AppContext): Promise<void> {
  app.get('/health', { schema: { tags: ['console'], summary: "This node's listeners (real addresses), store, key rotation, version and cluster", response: { 200: HealthBody, ...errorResponses } } }, async () => {
    const ports = ctx.listenerPorts ?? {};
    const urls = ctx.listenerUrls ?? {};
    const listeners = Object.entries(ports).map(([name, port]) => ({ name, port, url: urls[name] ?? '' }));
    const rotation = ctx.services.keyRotation.current();
    const nodes = await ctx.cluster.nodes().then(
      (list) => list.map(({ nodeId, host, version, startedAt, beatAt, draining, sessions }) => ({ nodeId, host, version, startedAt, beatAt, draining, sessions })),
      () => null,
    );
    return {
      version: THINGAUTH_VERSION,
      listeners,
      store: { kind: isPostgresUrl(ctx.config.databaseUrl) ? ('postgres' as const) : ('sqlite' as const), reachable: await storeReachable(ctx) },
      keys: { state: rotation.state, olderKeys: rotation.olderKeyIds.length, startedAt: rotation.startedAt, finishedAt: rotation.finishedAt, rewritten: rotation.rewritten },
      cluster: ctx.cluster.status(),
      nodes,
    };
  });
}
