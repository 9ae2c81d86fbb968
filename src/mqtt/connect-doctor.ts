/**
 * The connection doctor for a pasted MQTT CONNECT (clientId, username, password): runs the
 * REAL decision (connect-authenticators.ts decideConnect: the same authenticators, the same
 * order, the same refusal kinds as a device's CONNECT) and words its outcome as findings
 * (core/doctor.ts). What the real CONNECT path does around the decision is left out on
 * purpose: nothing is counted against the throttle, nothing audited as a login, no session
 * starts, no lastAuthError is written. Registration CONNECTs (authType=register/regnwl) are
 * judged by the registration checks without effect (services/doctor.ts), never run.
 *
 * Never a secret out: a refused signature says it does not match the current secret; the
 * doctor's own extra tries (previous secret, another algorithm) use the login's constant-time
 * comparison and answer yes or no only.
 */
import type { AppContext } from '../context.js';
import { connectSignPairs, KEEPALIVE_MAX, parseMqttClientId, parseMqttUsername } from '../core/credentials.js';
import { finding, findingCodeOfRefusal, timestampSkewOf, verdictOf, type Diagnosis, type Finding } from '../core/doctor.js';
import { PREVIOUS_SECRET_REASON } from '../core/secret-rotation.js';
import { buildSignContent } from '../core/sign.js';
import { signatureFindings, type DoctorOptions } from '../services/doctor.js';
import { connectKindOf, decideConnect, type ConnectAttempt, type ConnectDeny } from './connect-authenticators.js';
import { isTlsTransport, type Transport } from './connection-info.js';
import { precheck } from './registration-connect.js';

export interface ConnectDiagnosisInput {
  clientId: string;
  username: string;
  password: string;
  /** The transport the device uses; unset: TLS is assumed (and said). */
  transport?: Transport;
  /** Keep-alive the device asks for; unset: 60 s. */
  keepalive?: number;
  /** The device's address as the server sees it: tells whether it is throttled right now. */
  sourceAddress?: string;
}

const DEFAULT_KEEPALIVE = 60;

export async function diagnoseConnect(input: ConnectDiagnosisInput, ctx: AppContext, opts: DoctorOptions): Promise<Diagnosis> {
  const findings: Finding[] = [];
  const transport = input.transport ?? 'tls';
  if (input.transport === undefined) findings.push(finding('transport-assumed'));
  const attempt: ConnectAttempt = {
    rawClientId: input.clientId,
    parsed: parseMqttClientId(input.clientId),
    username: input.username,
    password: input.password,
    keepalive: input.keepalive ?? DEFAULT_KEEPALIVE,
    protocolVersion: 4,
    clean: true,
    transport,
    remoteAddress: input.sourceAddress ?? '',
    diagnosis: true,
  };
  const doctor = ctx.services.doctor;
  // The real path refuses a throttled source before verifying anything.
  if (input.sourceAddress && doctor.sourceThrottled(input.sourceAddress)) findings.push(finding('source-throttled', { source: input.sourceAddress }));

  const kind = connectKindOf(attempt);
  if (kind === 'register' || kind === 'regnwl') {
    const pre = precheck(attempt);
    if (!pre.ok) {
      findings.push(denyFinding(pre.decision as ConnectDeny, attempt));
      return { verdict: 'refused', findings };
    }
    const ext = attempt.parsed?.ext ?? {};
    const reg = await doctor.diagnoseRegistration(
      { productKey: pre.user.productKey, deviceName: pre.user.deviceName, random: ext.random ?? '', sign: input.password, signMethod: ext.signmethod ?? ext.signMethod, kind },
      isTlsTransport(transport),
    );
    findings.push(...reg.findings);
    return { verdict: verdictOf(findings, true), findings };
  }

  const decision = await decideConnect(attempt, ctx);
  const user = parseMqttUsername(input.username);
  if (decision.ok) {
    if (decision.auditNote === PREVIOUS_SECRET_REASON && opts.revealRotation) {
      const d = await ctx.store.getDevice(decision.identity.productKey, decision.identity.deviceName);
      findings.push(finding('secret-rotated-previous-matches', { graceEndsAt: d?.previousSecretExpiresAt ?? null }));
    }
    findings.push(finding('credentials-ok'));
  } else if (decision.refusal === 'bad-signature' && decision.device && attempt.parsed && user) {
    const device = await ctx.store.getDevice(decision.device.productKey, decision.device.deviceName);
    const content = buildSignContent(connectSignPairs(attempt.parsed.clientId, user.deviceName, user.productKey, attempt.parsed.ext.timestamp));
    findings.push(device ? signatureFindings(device, content, input.password, attempt.parsed.ext.signmethod, opts, Date.now()) : denyFinding(decision, attempt));
  } else {
    findings.push(denyFinding(decision, attempt));
  }

  // Advice beside the decision, for a sign login of a known product.
  if (kind === 'sign' && user && attempt.parsed) {
    const product = await ctx.services.authenticator.product(user.productKey);
    if (product?.timestampWindowSeconds && attempt.parsed.ext.timestamp === undefined) {
      findings.push(finding('timestamp-missing', { windowSeconds: product.timestampWindowSeconds }));
    }
    if (product?.requireTls && input.transport === undefined) findings.push(finding('tls-only-product'));
    const named = clientIdNames(attempt.parsed.clientId, user);
    if (named) findings.push(finding('username-mismatch', { clientIdDevice: named, usernameDevice: `${user.productKey}.${user.deviceName}` }));
  }
  return { verdict: verdictOf(findings, true), findings };
}

/** A refusal of the real decision as a finding, with what the input shows about it. */
function denyFinding(decision: ConnectDeny, attempt: ConnectAttempt): Finding {
  const user = parseMqttUsername(attempt.username);
  const who = { productKey: decision.device?.productKey ?? decision.productKey ?? user?.productKey ?? null, deviceName: decision.device?.deviceName ?? decision.deviceName ?? user?.deviceName ?? null };
  const ext = attempt.parsed?.ext ?? {};
  switch (decision.refusal) {
    case 'missing-credentials':
      return finding(findingCodeOfRefusal('missing-credentials', user && attempt.password === '' ? 'password' : 'username'));
    case 'malformed':
      return finding(findingCodeOfRefusal('malformed', attempt.parsed ? 'username' : undefined));
    case 'unknown-product':
    case 'unknown-device':
      return finding(findingCodeOfRefusal(decision.refusal), who);
    case 'timestamp-outside-window':
      return finding('timestamp-outside-window', timestampSkewOf(decision.reason) ?? {});
    case 'bad-securemode':
      return finding('securemode-unsupported', { securemode: clip(ext.securemode ?? '') });
    case 'unsupported-auth-type':
      return finding('authtype-unsupported', { authType: clip(ext.authType ?? '') });
    case 'unsupported-sign-method':
      return finding('sign-method-unsupported', { signMethod: clip(ext.signmethod ?? '') });
    case 'bad-keepalive':
      return finding('keepalive-out-of-range', { keepalive: attempt.keepalive, min: null, max: KEEPALIVE_MAX });
    case 'bad-signature':
      return finding('sign-mismatch', { signMethod: clip(ext.signmethod ?? 'hmacmd5') });
    default:
      return finding(findingCodeOfRefusal(decision.refusal), decision.refusal === 'registration-off' ? { productKey: who.productKey } : undefined);
  }
}

/**
 * `pk.dn` ClientIds (what most SDKs send) that name another device than the username: the
 * username decides, but the mix-up usually means credentials copied from another device.
 */
function clientIdNames(clientId: string, user: { productKey: string; deviceName: string }): string | undefined {
  const dot = clientId.indexOf('.');
  if (dot <= 0) return undefined;
  const pk = clientId.slice(0, dot);
  const dn = clientId.slice(dot + 1);
  if (pk === user.productKey && dn !== user.deviceName && dn !== '') return clip(clientId);
  if (dn === user.deviceName && pk !== user.productKey) return clip(clientId);
  return undefined;
}

function clip(s: string): string {
  return s.length > 64 ? s.slice(0, 64) + '…' : s;
}
