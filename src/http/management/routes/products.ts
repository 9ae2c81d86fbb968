/** /products: create, list, get, update, delete, and the explicit secret endpoint. */
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../../../context.js';
import { publicProduct } from '../../../core/records.js';
import { Nullable, NodeTypeSchema, PagingQuery, ProductKeyParams, errorResponses, pageOf } from '../schemas.js';
import type { ManagementApp } from '../server.js';

const settings = {
  nodeType: Type.Optional(NodeTypeSchema),
  dynamicRegistration: Type.Optional(Type.Boolean({ description: 'devices may fetch their secret with the ProductSecret (default false)' })),
  preRegistrationFree: Type.Optional(Type.Boolean({ description: 'dynamic registration creates unknown devices (requires dynamicRegistration)' })),
  requireTls: Type.Optional(Type.Boolean({ description: 'refuse device logins that do not arrive over TLS' })),
  replayProtection: Type.Optional(Type.Boolean({ description: 'dynamic registration randoms are single-use per device' })),
  deviceLimit: Type.Optional(Nullable(Type.Integer({ minimum: 1, maximum: 100_000_000, description: 'null = server default' }))),
  description: Type.Optional(Type.String({ maxLength: 100 })),
  timestampWindowSeconds: Type.Optional(
    Nullable(
      Type.Integer({
        minimum: 0,
        maximum: 31_536_000,
        description: 'replay window: a login carrying a timestamp (ms or s) must be this close to the server clock; null or 0 = off (default: official SDKs send fixed timestamps)',
      }),
    ),
  ),
};

const CreateProductBody = Type.Object(
  {
    productName: Type.String({ description: '4-30 characters wide (CJK counts 2): letters, digits, CJK, _ - space' }),
    ...settings,
    productKey: Type.Optional(Type.String({ description: 'migration only: keep an existing ProductKey (4-20 alphanumerics)' })),
    productSecret: Type.Optional(Type.String({ description: 'migration only: keep an existing ProductSecret (8-64 alphanumerics)' })),
    authMode: Type.Optional(Type.Union([Type.Literal('secret'), Type.Literal('x509')], { description: 'how devices authenticate: device secrets (default) or X.509 certificates (docs/x509.md); fixed once the product has devices; GET/PUT /products/{pk}/auth' })),
  },
  { additionalProperties: false },
);

const UpdateProductBody = Type.Object(
  { productName: Type.Optional(Type.String()), ...settings },
  { additionalProperties: false, minProperties: 1 },
);

const productFields = {
  productKey: Type.String(),
  productName: Type.String(),
  nodeType: NodeTypeSchema,
  dynamicRegistration: Type.Boolean(),
  preRegistrationFree: Type.Boolean(),
  requireTls: Type.Boolean(),
  replayProtection: Type.Boolean(),
  deviceLimit: Nullable(Type.Integer()),
  timestampWindowSeconds: Nullable(Type.Integer()),
  description: Type.String(),
  createdAt: Type.String(),
  updatedAt: Type.String(),
};
export const PublicProductSchema = Type.Object(productFields);
const ProductWithSecret = Type.Object({ ...productFields, productSecret: Type.String(), authMode: Type.Optional(Type.Union([Type.Literal('secret'), Type.Literal('x509')])) });
const ProductSecret = Type.Object({ productKey: Type.String(), productSecret: Type.String() });

export async function productRoutes(app: ManagementApp, ctx: AppContext): Promise<void> {
  const registry = ctx.services.registry;
  const tags = ['products'];

  app.post(
    '/products',
    {
      schema: {
        tags,
        summary: 'Create a product; the response is the only one (with the secret endpoint) that carries productSecret',
        body: CreateProductBody,
        response: { 201: ProductWithSecret, ...errorResponses },
      },
    },
    async (req, reply) => {
      const { authMode, ...input } = req.body;
      // X.509 (issue 16): refused before anything is created (services/x509.ts setSettings says why).
      if (authMode === 'x509' && (input.dynamicRegistration || input.nodeType === 'SUB_DEVICE')) {
        return reply.code(400).send({ code: 'INVALID_ARGUMENT', message: 'authMode x509 is for directly connected devices without dynamic registration (no SUB_DEVICE, no dynamicRegistration)', field: 'authMode' });
      }
      const p = await registry.createProduct(input);
      if (authMode === 'x509') await ctx.services.x509.setSettings(p.productKey, { authMode });
      return reply.code(201).send({ ...p, timestampWindowSeconds: p.timestampWindowSeconds ?? null, authMode: authMode ?? 'secret' });
    },
  );

  app.get(
    '/products',
    {
      schema: {
        tags,
        summary: 'List products (no secrets)',
        querystring: Type.Object(PagingQuery, { additionalProperties: false }),
        response: { 200: pageOf(PublicProductSchema), ...errorResponses },
      },
    },
    async (req) => {
      const page = await registry.listProducts(req.query.offset ?? 0, req.query.limit ?? 100);
      return { ...page, items: page.items.map(publicProduct) };
    },
  );

  app.get(
    '/products/:productKey',
    { schema: { tags, summary: 'Get a product (no secret)', params: ProductKeyParams, response: { 200: PublicProductSchema, ...errorResponses } } },
    async (req) => publicProduct(await registry.getProduct(req.params.productKey)),
  );

  app.patch(
    '/products/:productKey',
    {
      schema: {
        tags,
        summary: 'Change a product; nodeType only while it has no devices',
        params: ProductKeyParams,
        body: UpdateProductBody,
        response: { 200: PublicProductSchema, ...errorResponses },
      },
    },
    async (req) => {
      const { timestampWindowSeconds: window, ...rest } = req.body;
      // null and 0 both switch the window off.
      return publicProduct(await registry.updateProduct(req.params.productKey, window === undefined ? rest : { ...rest, timestampWindowSeconds: window ?? 0 }));
    },
  );

  app.delete(
    '/products/:productKey',
    { schema: { tags, summary: 'Delete a product (refused with 409 while it has devices)', params: ProductKeyParams, response: { 204: Type.Null(), ...errorResponses } } },
    async (req, reply) => {
      await registry.deleteProduct(req.params.productKey);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/products/:productKey/secret',
    { config: { adminOnly: true }, schema: { tags, summary: "The product's ProductSecret", params: ProductKeyParams, response: { 200: ProductSecret, ...errorResponses } } },
    async (req) => {
      const p = await registry.getProduct(req.params.productKey);
      return { productKey: p.productKey, productSecret: p.productSecret };
    },
  );
}
