/**
 * X.509 device certificates (issue 16, services/x509.ts):
 * - /products/{pk}/auth: the product's authentication mode (secret | x509, fixed once it has
 *   devices), enrollment on first contact, certificate validity;
 * - /products/{pk}/x509/ca: its device CA (a platform CA is generated on first use), the
 *   registration code and the customer-CA upload with proof of possession; /x509/crl;
 *   /x509/credentials: every device's current certificate and key as CSV (production line);
 * - /products/{pk}/devices/{dn}/certificates: list, issue (key made here or CSR), rotate,
 *   revoke; /certificate-bundle: the explicit download of certificate, key and CA (admin only);
 * - /x509/expiring: certificates that end within N days.
 * Private keys leave only through certificate-bundle and credentials, both admin only.
 */
import { Readable } from 'node:stream';
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../../../context.js';
import { csvCell } from '../../../core/import-formats.js';
import { KEY_ALGORITHMS, MAX_CERT_VALIDITY_DAYS, MAX_PEM_CHARS, type KeyAlgorithm } from '../../../core/x509.js';
import type { PublicCertificate } from '../../../services/x509.js';
import type { StoredDeviceCertificate } from '../../../store/store.js';
import { MAX_ZIP_ENTRIES, zipStream, type ZipEntry } from '../../../core/zip.js';
import { DeviceParams, Nullable, ProductKeyParams, errorResponses } from '../schemas.js';
import type { ManagementApp } from '../server.js';

const KeyAlgorithmSchema = Type.Union(KEY_ALGORITHMS.map((k) => Type.Literal(k)), { description: 'key made here: rsa2048 (default, what the C SDK mbedtls build loads) or ec-p256' });
const Pem = (description: string) => Type.String({ minLength: 1, maxLength: MAX_PEM_CHARS, description });

const AuthSettings = Type.Object({
  productKey: Type.String(),
  authMode: Type.Union([Type.Literal('secret'), Type.Literal('x509')]),
  enrollOnFirstContact: Type.Boolean(),
  certValidityDays: Nullable(Type.Integer()),
});

const AuthPatch = Type.Object(
  {
    authMode: Type.Optional(Type.Union([Type.Literal('secret'), Type.Literal('x509')], { description: 'fixed once the product has devices (as on the cloud)' })),
    enrollOnFirstContact: Type.Optional(Type.Boolean({ description: 'customer CA only: an unknown device with a valid certificate is created at its first login (within the device limit, audited)' })),
    certValidityDays: Type.Optional(Nullable(Type.Integer({ minimum: 1, maximum: MAX_CERT_VALIDITY_DAYS, description: 'validity of certificates issued here; null = 36500 days (100 years, as the cloud)' }))),
  },
  { additionalProperties: false, minProperties: 1 },
);

const CaSchema = Type.Object({
  productKey: Type.String(),
  source: Type.Union([Type.Literal('platform'), Type.Literal('customer')]),
  certificate: Type.String({ description: 'PEM' }),
  fingerprint: Type.String({ description: 'SHA-256' }),
  createdAt: Type.String(),
});

const CertificateSchema = Type.Object({
  serial: Type.String(),
  productKey: Type.String(),
  deviceName: Type.String(),
  source: Type.Union([Type.Literal('issued'), Type.Literal('csr'), Type.Literal('enrolled')]),
  fingerprint: Type.String(),
  notBefore: Type.String(),
  notAfter: Type.String(),
  createdAt: Type.String(),
  revokedAt: Nullable(Type.String({ description: 'refused from this time on (a rotation sets it in the future)' })),
  revocationReason: Nullable(Type.String()),
  state: Type.Union(['valid', 'expired', 'not-yet-valid', 'revoked', 'retiring'].map((s) => Type.Literal(s))),
});

const IssuedSchema = Type.Object({ ...CertificateSchema.properties, certificate: Type.String({ description: 'PEM (the key, if made here, only through certificate-bundle)' }) });

const IssueBody = Type.Object(
  {
    keyAlgorithm: Type.Optional(KeyAlgorithmSchema),
    csr: Type.Optional(Pem('PKCS#10 request the device or factory made: subject CN=DeviceName, OU=ProductKey; the key never leaves the device')),
  },
  { additionalProperties: false },
);

const RotateBody = Type.Object(
  {
    graceSeconds: Type.Integer({ minimum: 0, maximum: 31_536_000, description: 'how long the certificates in use stay valid next to the new one (0 = revoked at once, live sessions closed)' }),
    keyAlgorithm: Type.Optional(KeyAlgorithmSchema),
    csr: Type.Optional(Pem('PKCS#10 request for the new certificate')),
  },
  { additionalProperties: false },
);

const SerialParams = Type.Object(
  { productKey: Type.String({ maxLength: 64 }), deviceName: Type.String({ maxLength: 128 }), serial: Type.String({ pattern: '^[0-9A-Fa-f]{1,64}$' }) },
  { additionalProperties: false },
);

const BundleSchema = Type.Object({
  productKey: Type.String(),
  deviceName: Type.String(),
  serial: Type.String(),
  notAfter: Type.String(),
  certificate: Type.String(),
  privateKey: Nullable(Type.String({ description: 'PKCS#8 PEM; null when the key never was here (CSR, customer CA)' })),
  caCertificate: Type.String(),
});

function withPem(c: StoredDeviceCertificate, pub: PublicCertificate) {
  return { ...pub, certificate: c.certificate };
}

export async function x509Routes(app: ManagementApp, ctx: AppContext): Promise<void> {
  const x509 = ctx.services.x509;
  const tags = ['x509'];
  const dev = '/products/:productKey/devices/:deviceName';

  app.get('/products/:productKey/auth', { schema: { tags, summary: "The product's authentication mode and X.509 settings", params: ProductKeyParams, response: { 200: AuthSettings, ...errorResponses } } }, async (req) =>
    x509.settings(req.params.productKey),
  );

  app.put(
    '/products/:productKey/auth',
    { schema: { tags, summary: 'Set the authentication mode (fixed once the product has devices), enrollment, certificate validity', params: ProductKeyParams, body: AuthPatch, response: { 200: AuthSettings, ...errorResponses } } },
    async (req) => x509.setSettings(req.params.productKey, req.body),
  );

  const caOut = (ca: { productKey: string; source: 'platform' | 'customer'; certificate: string; fingerprint: string; createdAt: string }) => ({
    productKey: ca.productKey,
    source: ca.source,
    certificate: ca.certificate,
    fingerprint: ca.fingerprint,
    createdAt: ca.createdAt,
  });

  app.get(
    '/products/:productKey/x509/ca',
    { schema: { tags, summary: "The product's device CA (404 until its first device, certificate or customer CA upload)", params: ProductKeyParams, response: { 200: CaSchema, ...errorResponses } } },
    async (req) => caOut(await x509.existingCa(req.params.productKey)),
  );

  app.get(
    '/products/:productKey/x509/ca/registration-code',
    { schema: { tags, summary: 'The code a customer CA proves possession with: the CN of a verification certificate signed by that CA', params: ProductKeyParams, response: { 200: Type.Object({ registrationCode: Type.String() }), ...errorResponses } } },
    async (req) => ({ registrationCode: await x509.registrationCode(req.params.productKey) }),
  );

  app.post(
    '/products/:productKey/x509/ca',
    {
      config: { adminOnly: true },
      schema: {
        tags,
        summary: 'Upload a customer CA (before any platform CA exists): its certificate and a verification certificate (CN = registration code) signed by its key',
        params: ProductKeyParams,
        body: Type.Object({ certificate: Pem('the CA certificate'), verificationCertificate: Pem('CN = the registration code, signed by the CA key') }, { additionalProperties: false }),
        response: { 201: CaSchema, ...errorResponses },
      },
    },
    async (req, reply) => reply.code(201).send(caOut(await x509.uploadCustomerCa(req.params.productKey, req.body.certificate, req.body.verificationCertificate))),
  );

  app.get(
    '/products/:productKey/x509/crl',
    { schema: { tags, summary: "CRL of the product's platform CA (PEM)", params: ProductKeyParams, produces: ['application/x-pem-file'], response: { 200: Type.String(), ...errorResponses } } },
    async (req, reply) => reply.type('application/x-pem-file').header('cache-control', 'no-cache').send(await x509.crl(req.params.productKey)),
  );

  app.get(
    '/products/:productKey/x509/credentials',
    {
      config: { adminOnly: true },
      schema: {
        tags,
        summary:
          "Every device's current certificate and key (production line): CSV ProductKey,DeviceName,Serial,NotAfter,Certificate,PrivateKey,CaCertificate, or ?format=zip: one {DeviceName}.pem (certificate, key, CA) per device and ca.pem",
        params: ProductKeyParams,
        querystring: Type.Object({ format: Type.Optional(Type.Union([Type.Literal('csv'), Type.Literal('zip')])) }, { additionalProperties: false }),
        produces: ['text/csv', 'application/zip'],
        response: { 200: Type.String(), 413: Type.Ref('Error'), ...errorResponses },
      },
    },
    async (req, reply) => {
      const pk = req.params.productKey;
      const ca = await x509.existingCa(pk); // 404/409 before the stream starts
      const zip = req.query.format === 'zip';
      if (zip && (await ctx.store.countDevices(pk)) >= MAX_ZIP_ENTRIES) {
        return reply.code(413).send({ code: 'PAYLOAD_TOO_LARGE', message: `a ZIP holds at most ${MAX_ZIP_ENTRIES - 1} devices here; download the CSV instead` });
      }
      /** Each device with its certificate in use (not revoked, not expired), in DeviceName order. */
      async function* current() {
        for await (const page of ctx.services.registry.deviceCredentials(pk, 500)) {
          for (const d of page) {
            const now = Date.now();
            const c = (await ctx.store.listDeviceCertificates(d.iotId)).find((x) => (x.revokedAt === null || Date.parse(x.revokedAt) > now) && Date.parse(x.notAfter) > now);
            if (c) yield { deviceName: d.deviceName, c };
          }
        }
      }
      reply.header('cache-control', 'no-store');
      if (zip) {
        async function* entries(): AsyncGenerator<ZipEntry> {
          yield { name: 'ca.pem', data: Buffer.from(ca.certificate), mode: 0o644 };
          for await (const { deviceName, c } of current()) yield { name: `${deviceName}.pem`, data: Buffer.from(c.certificate + (c.privateKey ?? '') + ca.certificate) };
        }
        return reply.type('application/zip').header('content-disposition', `attachment; filename="${pk}-certificates.zip"`).send(Readable.from(zipStream(entries())));
      }
      async function* lines() {
        yield 'ProductKey,DeviceName,Serial,NotAfter,Certificate,PrivateKey,CaCertificate\n';
        for await (const { deviceName, c } of current()) yield [pk, deviceName, c.serial, c.notAfter, c.certificate, c.privateKey ?? '', ca.certificate].map(csvCell).join(',') + '\n';
      }
      return reply.type('text/csv; charset=utf-8').header('content-disposition', `attachment; filename="${pk}-certificates.csv"`).send(Readable.from(lines()));
    },
  );

  app.get(
    '/x509/expiring',
    {
      schema: {
        tags,
        summary: 'Certificates (not revoked) whose validity ends within `days` (expired ones included), soonest first',
        querystring: Type.Object(
          { days: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_CERT_VALIDITY_DAYS, description: 'window in days (default THINGAUTH_CERT_EXPIRY_WARN_DAYS)' })), productKey: Type.Optional(Type.String({ maxLength: 64 })), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ items: Type.Array(CertificateSchema) }), ...errorResponses },
      },
    },
    async (req) => ({ items: await x509.expiring(req.query.days ?? ctx.config.certExpiryWarnDays, req.query.productKey, req.query.limit) }),
  );

  app.get(`${dev}/certificates`, { schema: { tags, summary: "The device's certificates, newest first (no keys)", params: DeviceParams, response: { 200: Type.Object({ items: Type.Array(CertificateSchema) }), ...errorResponses } } }, async (req) => ({
    items: await x509.certificates(req.params.productKey, req.params.deviceName),
  }));

  app.post(
    `${dev}/certificates`,
    {
      schema: { tags, summary: 'Issue a certificate: key made here (keyAlgorithm) or signed from a CSR', params: DeviceParams, body: IssueBody, response: { 201: IssuedSchema, ...errorResponses } },
      preValidation: async (req) => {
        if (req.body === undefined) req.body = {};
      },
    },
    async (req, reply) => {
      const opts: { keyAlgorithm?: KeyAlgorithm; csr?: string } = {};
      if (req.body.keyAlgorithm !== undefined) opts.keyAlgorithm = req.body.keyAlgorithm as KeyAlgorithm;
      if (req.body.csr !== undefined) opts.csr = req.body.csr;
      const c = await x509.issue(req.params.productKey, req.params.deviceName, opts);
      const pub = (await x509.certificates(req.params.productKey, req.params.deviceName)).find((p) => p.serial === c.serial)!;
      return reply.code(201).send(withPem(c, pub));
    },
  );

  app.post(
    `${dev}/certificates/rotate`,
    { schema: { tags, summary: 'Issue a new certificate; the ones in use stay valid for graceSeconds, then are refused', params: DeviceParams, body: RotateBody, response: { 201: Type.Object({ ...IssuedSchema.properties, previousValidUntil: Type.String() }), ...errorResponses } } },
    async (req, reply) => {
      const { graceSeconds, keyAlgorithm, csr } = req.body;
      const r = await x509.rotate(req.params.productKey, req.params.deviceName, { graceSeconds, ...(keyAlgorithm ? { keyAlgorithm: keyAlgorithm as KeyAlgorithm } : {}), ...(csr !== undefined ? { csr } : {}) });
      const pub = (await x509.certificates(req.params.productKey, req.params.deviceName)).find((p) => p.serial === r.certificate.serial)!;
      return reply.code(201).send({ ...withPem(r.certificate, pub), previousValidUntil: r.previousValidUntil });
    },
  );

  app.post(
    `${dev}/certificates/:serial/revoke`,
    {
      schema: {
        tags,
        summary: 'Revoke a certificate: refused from now on, a live session logged in with it is closed',
        params: SerialParams,
        body: Type.Object({ reason: Type.Optional(Type.String({ maxLength: 200 })) }, { additionalProperties: false }),
        response: { 200: CertificateSchema, ...errorResponses },
      },
      preValidation: async (req) => {
        if (req.body === undefined) req.body = {};
      },
    },
    async (req) => x509.revoke(req.params.productKey, req.params.deviceName, req.params.serial, req.body.reason),
  );

  app.get(
    `${dev}/certificate-bundle`,
    {
      // The device's private key: a read-scope token may not fetch it.
      config: { adminOnly: true },
      schema: {
        tags,
        summary: "The device's certificate in use (or ?serial=), its key if made here, and the CA; ?format=pem for one PEM file",
        params: DeviceParams,
        querystring: Type.Object({ serial: Type.Optional(Type.String({ pattern: '^[0-9A-Fa-f]{1,64}$' })), format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('pem')])) }, { additionalProperties: false }),
        response: { 200: BundleSchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const b = await x509.bundle(req.params.productKey, req.params.deviceName, req.query.serial?.toLowerCase());
      reply.header('cache-control', 'no-store');
      if (req.query.format === 'pem') {
        return reply
          .type('application/x-pem-file')
          .header('content-disposition', `attachment; filename="${b.productKey}-${b.deviceName}.pem"`)
          .serializer((x: unknown) => String(x))
          .send(b.certificate + (b.privateKey ?? '') + b.caCertificate);
      }
      return b;
    },
  );
}
