/** /keys: master key status and rotation (admin only). Key ids are hash prefixes, never keys. */
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../../../context.js';
import { Nullable, errorResponses } from '../schemas.js';
import type { ManagementApp } from '../server.js';

const RotationStatus = Type.Object({
  state: Type.Union([Type.Literal('idle'), Type.Literal('running'), Type.Literal('done'), Type.Literal('failed')]),
  keySource: Type.Union([Type.Literal('file'), Type.Literal('env')]),
  currentKeyId: Type.String(),
  olderKeyIds: Type.Array(Type.String()),
  startedAt: Nullable(Type.String()),
  finishedAt: Nullable(Type.String()),
  rewritten: Type.Integer(),
  retiredKeyIds: Type.Array(Type.String()),
  error: Nullable(Type.String()),
  note: Nullable(Type.String()),
});

export async function keyRoutes(app: ManagementApp, ctx: AppContext): Promise<void> {
  const rotation = ctx.services.keyRotation;
  const tags = ['keys'];
  const config = { adminOnly: true };

  app.get(
    '/keys',
    { config, schema: { tags, summary: 'Master key status and the last rotation', response: { 200: RotationStatus, ...errorResponses } } },
    async () => rotation.current(),
  );

  app.post(
    '/keys/rotate',
    {
      config,
      schema: {
        tags,
        summary: 'Rotate the master key: new key in force at once, secrets re-encrypted in the background (poll GET /keys)',
        response: { 202: RotationStatus, 409: Type.Ref('Error'), ...errorResponses },
      },
    },
    async (_req, reply) => reply.code(202).send(rotation.start()),
  );
}
