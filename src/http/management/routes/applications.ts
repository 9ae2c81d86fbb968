/**
 * /applications: credentials for business applications that read device data and send
 * commands over MQTT (username `app:{appKey}`), scoped to products. The appSecret appears
 * only in the create response.
 */
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../../../context.js';
import { MAX_APPLICATION_PRODUCTS } from '../../../services/applications.js';
import { errorResponses } from '../schemas.js';
import type { ManagementApp } from '../server.js';

const appFields = {
  appKey: Type.String(),
  name: Type.String(),
  productKeys: Type.Array(Type.String()),
  createdAt: Type.String(),
};
const PublicApplicationSchema = Type.Object(appFields);
const ApplicationWithSecret = Type.Object({ ...appFields, appSecret: Type.String() });

const CreateApplicationBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 64, description: 'a label: letters, digits, space, _ - .' }),
    productKeys: Type.Array(Type.String({ maxLength: 64 }), {
      minItems: 1,
      maxItems: MAX_APPLICATION_PRODUCTS,
      description: 'products whose device topics the application may subscribe to and publish on',
    }),
  },
  { additionalProperties: false },
);

const AppKeyParams = Type.Object({ appKey: Type.String({ maxLength: 64 }) }, { additionalProperties: false });

export async function applicationRoutes(app: ManagementApp, ctx: AppContext): Promise<void> {
  const applications = ctx.services.applications;
  const tags = ['applications'];

  app.post(
    '/applications',
    {
      schema: {
        tags,
        summary: 'Create an application credential; the only response that carries appSecret',
        body: CreateApplicationBody,
        response: { 201: ApplicationWithSecret, ...errorResponses },
      },
    },
    async (req, reply) => reply.code(201).send(await applications.create(req.body)),
  );

  app.get(
    '/applications',
    { schema: { tags, summary: 'List applications (no secrets)', response: { 200: Type.Object({ items: Type.Array(PublicApplicationSchema) }), ...errorResponses } } },
    async () => ({ items: await applications.list() }),
  );

  app.get(
    '/applications/:appKey',
    { schema: { tags, summary: 'Get an application (no secret)', params: AppKeyParams, response: { 200: PublicApplicationSchema, ...errorResponses } } },
    async (req) => applications.get(req.params.appKey),
  );

  app.delete(
    '/applications/:appKey',
    {
      schema: {
        tags,
        summary: 'Delete an application: its MQTT sessions are closed and its logins refused',
        params: AppKeyParams,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (req, reply) => {
      await applications.delete(req.params.appKey);
      return reply.code(204).send(null);
    },
  );
}
