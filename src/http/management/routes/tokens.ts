/** /tokens: management API tokens (admin only). The token itself is in the create response only. */
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../../../context.js';
import { errorResponses } from '../schemas.js';
import type { ManagementApp } from '../server.js';

const Scope = Type.Union([Type.Literal('read'), Type.Literal('admin')], { description: 'read: GET only; admin: everything' });
const PublicToken = Type.Object({ id: Type.String(), name: Type.String(), scope: Scope, createdAt: Type.String() });
const CreatedToken = Type.Object({
  id: Type.String(),
  name: Type.String(),
  scope: Scope,
  createdAt: Type.String(),
  token: Type.String({ description: 'the bearer token; shown only in this response' }),
});
const CreateTokenBody = Type.Object(
  { name: Type.String({ minLength: 1, maxLength: 64, description: 'what the token is for (shown in the audit)' }), scope: Scope },
  { additionalProperties: false },
);
const TokenParams = Type.Object({ id: Type.String({ maxLength: 64 }) }, { additionalProperties: false });

export async function tokenRoutes(app: ManagementApp, ctx: AppContext): Promise<void> {
  const tokens = ctx.services.tokens;
  const tags = ['tokens'];
  const config = { adminOnly: true };

  app.post(
    '/tokens',
    { config, schema: { tags, summary: 'Create a management token; the token is shown once', body: CreateTokenBody, response: { 201: CreatedToken, ...errorResponses } } },
    async (req, reply) => {
      const { token, record } = await tokens.create(req.body.name, req.body.scope);
      return reply.code(201).send({ ...record, token });
    },
  );

  app.get(
    '/tokens',
    { config, schema: { tags, summary: 'List management tokens (never the tokens themselves)', response: { 200: Type.Object({ items: Type.Array(PublicToken) }), ...errorResponses } } },
    async () => ({ items: await tokens.list() }),
  );

  app.delete(
    '/tokens/:id',
    { config, schema: { tags, summary: 'Revoke a management token (effective on its next request)', params: TokenParams, response: { 204: Type.Null(), ...errorResponses } } },
    async (req, reply) => {
      await tokens.revoke(req.params.id);
      return reply.code(204).send(null);
    },
  );
}
