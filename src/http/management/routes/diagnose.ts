/**
 * /diagnose: the connection doctor (issue 17), admin scope only. POST /diagnose/connect
 * takes one of three bodies and answers {verdict, findings}:
 * - {productKey, deviceName}: the device's record and recent attempts in plain words;
 * - {clientId, username, password[, transport, keepalive, sourceAddress]}: a pasted MQTT
 *   CONNECT, decided by the real CONNECT authenticators (mqtt/connect-doctor.ts);
 * - {registration: {productKey, deviceName, random, signMethod, sign[, kind, transport]}}: a
 *   dynamic registration request, judged by the real registration checks without effect.
 * Each run is audited (`doctor.connect`: which variant, for which device, the verdict; never
 * the body). Findings never carry a secret or an expected signature (services/doctor.ts).
 * GET /diagnose/codes lists every finding code with its severity and English texts.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { AppContext } from '../../../context.js';
import { parseMqttUsername } from '../../../core/credentials.js';
import { DOCTOR_FINDING_CODES, finding, severityOf, type Diagnosis } from '../../../core/doctor.js';
import { diagnoseConnect } from '../../../mqtt/connect-doctor.js';
import { actorOf } from '../caller-auth.js';
import { errorResponses } from '../schemas.js';
import type { ManagementApp } from '../server.js';

const TransportSchema = Type.Union([Type.Literal('tcp'), Type.Literal('tls'), Type.Literal('ws'), Type.Literal('wss')], {
  description: 'how the device connects: tcp/ws plain, tls/wss encrypted; unset = tls assumed',
});

const DeviceVariant = Type.Object(
  { productKey: Type.String({ minLength: 1, maxLength: 64 }), deviceName: Type.String({ minLength: 1, maxLength: 128 }) },
  { additionalProperties: false, title: 'device' },
);
const ConnectVariant = Type.Object(
  {
    clientId: Type.String({ maxLength: 512, description: 'the MQTT ClientId exactly as the device sends it' }),
    username: Type.String({ maxLength: 256 }),
    password: Type.String({ maxLength: 512, description: 'used for this diagnosis only; never stored, logged or echoed' }),
    transport: Type.Optional(TransportSchema),
    keepalive: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
    sourceAddress: Type.Optional(Type.String({ maxLength: 64, description: "the device's address as the server sees it (is it throttled?)" })),
  },
  { additionalProperties: false, title: 'connect' },
);
const RegistrationVariant = Type.Object(
  {
    registration: Type.Object(
      {
        productKey: Type.String({ minLength: 1, maxLength: 64 }),
        deviceName: Type.String({ minLength: 1, maxLength: 64 }),
        random: Type.String({ maxLength: 128 }),
        signMethod: Type.Optional(Type.String({ maxLength: 32 })),
        sign: Type.String({ maxLength: 128 }),
        kind: Type.Optional(Type.Union([Type.Literal('register'), Type.Literal('regnwl')], { description: 'register (default) or regnwl' })),
        transport: Type.Optional(Type.Union([Type.Literal('tls'), Type.Literal('plain')], { description: 'unset = tls' })),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false, title: 'registration' },
);
const DiagnoseBody = Type.Union([DeviceVariant, ConnectVariant, RegistrationVariant]);
type DiagnoseBody = Static<typeof DiagnoseBody>;

const Severity = Type.Union([Type.Literal('error'), Type.Literal('warning'), Type.Literal('info')]);
const FindingSchema = Type.Object({
  code: Type.String({ description: 'stable identifier; GET /diagnose/codes lists them' }),
  severity: Severity,
  message: Type.String(),
  hint: Type.String(),
  params: Type.Optional(Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean(), Type.Null()]))),
});
export const DiagnosisSchema = Type.Object({
  verdict: Type.Union([Type.Literal('ok'), Type.Literal('refused'), Type.Literal('unknown')]),
  findings: Type.Array(FindingSchema),
});

export async function diagnoseRoutes(app: ManagementApp, ctx: AppContext): Promise<void> {
  const tags = ['doctor'];
  app.post(
    '/diagnose/connect',
    {
      config: { adminOnly: true },
      schema: {
        tags,
        summary: 'Connection doctor: why a device cannot get in (admin)',
        description: 'Body: {productKey, deviceName} | {clientId, username, password} | {registration: {...}}. Audited; the body is never stored.',
        body: DiagnoseBody,
        response: { 200: DiagnosisSchema, 403: Type.Ref('Error'), ...errorResponses },
      },
    },
    async (req) => {
      const body = req.body as DiagnoseBody;
      const opts = { revealRotation: req.caller?.scope === 'admin' };
      let variant: string;
      let who: { productKey: string | null; deviceName: string | null };
      let result: Diagnosis;
      if ('registration' in body) {
        variant = 'registration';
        const r = body.registration;
        who = { productKey: r.productKey, deviceName: r.deviceName };
        result = await ctx.services.doctor.diagnoseRegistration(
          { productKey: r.productKey, deviceName: r.deviceName, random: r.random, sign: r.sign, ...(r.signMethod !== undefined ? { signMethod: r.signMethod } : {}), ...(r.kind ? { kind: r.kind } : {}) },
          r.transport !== 'plain',
        );
        if (r.transport === undefined) result.findings.unshift(finding('transport-assumed'));
      } else if ('clientId' in body) {
        variant = 'connect';
        const user = parseMqttUsername(body.username);
        who = { productKey: user?.productKey ?? null, deviceName: user?.deviceName ?? null };
        result = await diagnoseConnect(body, ctx, opts);
      } else {
        variant = 'device';
        who = { productKey: body.productKey, deviceName: body.deviceName };
        result = await ctx.services.doctor.diagnoseDevice(body.productKey, body.deviceName, opts);
      }
      ctx.services.audit.record({
        action: 'doctor.connect',
        actor: actorOf(req.caller),
        ...who,
        sourceAddress: req.ip,
        result: 'ok',
        reason: `diagnosis of a ${variant}: ${result.verdict} (${result.findings.map((f) => f.code).join(', ')})`,
      });
      return result;
    },
  );

  app.get(
    '/diagnose/codes',
    {
      schema: {
        tags,
        summary: 'Every finding code the doctor can answer with, its default severity and English texts',
        response: { 200: Type.Object({ items: Type.Array(Type.Object({ code: Type.String(), severity: Severity })) }), ...errorResponses },
      },
    },
    async () => ({ items: DOCTOR_FINDING_CODES.map((code) => ({ code, severity: severityOf(code) })) }),
  );
}
