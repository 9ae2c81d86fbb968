/**
 * /nodes: the nodes of the cluster (a node alone lists itself) and draining one of them
 * (thingauth node list|drain|undrain). Draining stops new logins on that node and moves its
 * devices away (mqtt/drain.ts); undrain takes logins again.
 */
import { Type } from '@sinclair/typebox';
import { ThingAuthError } from '../../../core/errors.js';
import type { AppContext } from '../../../context.js';
import { actorOf } from '../caller-auth.js';
import { errorResponses } from '../schemas.js';
import type { ManagementApp } from '../server.js';

const NodeInfo = Type.Object({
  nodeId: Type.String(),
  host: Type.String(),
  pid: Type.Integer(),
  version: Type.String(),
  startedAt: Type.String(),
  beatAt: Type.String(),
  draining: Type.Boolean(),
  sessions: Type.Integer(),
});

const NodeList = Type.Object({
  mode: Type.Union([Type.Literal('single'), Type.Literal('redis')]),
  self: Type.String(),
  redis: Type.Union([Type.Literal('up'), Type.Literal('down'), Type.Literal('none')]),
  nodes: Type.Array(NodeInfo),
});

const DrainResult = Type.Object({ nodeId: Type.String(), draining: Type.Boolean() });
const NodeIdParams = Type.Object({ nodeId: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' }) });

export async function nodeRoutes(app: ManagementApp, ctx: AppContext): Promise<void> {
  const tags = ['nodes'];

  app.get('/nodes', { schema: { tags, summary: 'The nodes of the cluster and their state', response: { 200: NodeList, ...errorResponses } } }, async () => {
    const status = ctx.cluster.status();
    let nodes;
    try {
      nodes = await ctx.cluster.nodes();
    } catch {
      throw new ThingAuthError('UNAVAILABLE', "the cluster's Redis is unreachable from this node: the node list cannot be read now");
    }
    return { mode: status.mode, self: status.nodeId, redis: status.redis, nodes };
  });

  for (const [path, on] of [['drain', true], ['undrain', false]] as const) {
    app.post(
      `/nodes/:nodeId/${path}`,
      {
        config: { adminOnly: true },
        schema: {
          tags,
          summary: on ? 'Drain a node: no new logins there, its devices are moved away at a bounded rate' : 'Let a drained node take logins again',
          params: NodeIdParams,
          response: { 202: DrainResult, ...errorResponses },
        },
      },
      async (req, reply) => {
        const { nodeId } = req.params;
        let found: boolean;
        try {
          found = await ctx.cluster.drain(nodeId, on);
        } catch {
          throw new ThingAuthError('UNAVAILABLE', "the cluster's Redis is unreachable from this node: the order cannot be given now");
        }
        if (!found) throw new ThingAuthError('NOT_FOUND', `no live node "${nodeId}" (see GET /api/v1/nodes)`);
        ctx.services.audit.record({ action: on ? 'node.drain' : 'node.undrain', actor: actorOf(req.caller), result: 'ok', reason: `node ${nodeId}` });
        return reply.code(202).send({ nodeId, draining: on });
      },
    );
  }
}
