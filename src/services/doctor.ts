/**
 * The connection doctor (issue 17), the parts that need no MQTT code: a device's recent
 * refusals decoded in plain words, a dynamic registration request judged by the real
 * registration checks (RegistrationService.diagnose: same order, same errors, no effect), and
 * the extra findings a refused signature gets (a rotated secret, a sign method that does not
 * match the one announced). The pasted-CONNECT diagnosis runs the real CONNECT authenticators
 * and lives with them (mqtt/connect-doctor.ts).
 *
 * Never a secret out: findings say THAT a signature does not match, never what would match.
 * Every comparison against a secret is the constant-time one the login uses (core/sign.ts).
 */
import { ThingAuthError } from '../core/errors.js';
import { finding, findingCodeOfRefusal, findingCodeOfSubDeviceReason, refusalOfReason, timestampSkewOf, type Diagnosis, type Finding } from '../core/doctor.js';
import { refusalOfError, type RefusalKind } from '../core/refusals.js';
import { previousSecretInGrace } from '../core/secret-rotation.js';
import { parseSignMethod, verifySignature, type SignAlgorithm } from '../core/sign.js';
import type { Device, Product } from '../core/records.js';
import type { AuditEntry, Store } from '../store/store.js';
import type { AuditLog } from './audit.js';
import type { LoginThrottle } from './login-throttle.js';
import { sourceKey } from './login-throttle.js';
import type { RegistrationService } from './registration.js';

export interface DoctorOptions {
  /**
   * Whether findings about the device's previous secret may be given (it would have matched,
   * or its grace ended): they tell which secret a device holds, so admin scope only.
   */
  revealRotation: boolean;
}

export interface RegistrationDiagnosisInput {
  productKey: string;
  deviceName: string;
  random: string;
  signMethod?: string;
  sign: string;
  /** register (pre-registered device, default) or regnwl (pre-registration-free). */
  kind?: 'register' | 'regnwl';
}

/** Audit actions that are login or registration attempts of a device. */
const ATTEMPT_ACTION = /^(mqtt\.connect\.|http\.auth$|register\.|regnwl\.|session\.sub\.login$)/;
/** Audit actions of a gateway's requests for its sub-devices: reasons are `<reply code> <message>`. */
const SUB_DEVICE_ACTION = /^(session\.sub\.login|register\.sub)$/;
/** How many of a device's audit entries the history diagnosis reads. */
const HISTORY_ENTRIES = 200;

export class DoctorService {
  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
    private readonly throttle: LoginThrottle,
    private readonly registration: RegistrationService,
    private readonly clock: () => number = () => Date.now(),
  ) {}

  /** Whether a source address is in its cool-down right now (read only: nothing is counted). */
  sourceThrottled(address: string): boolean {
    const key = sourceKey(address);
    return key !== undefined && this.throttle.throttledSources().includes(key);
  }

  /**
   * `{productKey, deviceName}`: what the device's record and its recent attempts in the audit
   * say. The verdict is the outcome of its latest attempt (refused while it is disabled).
   */
  async diagnoseDevice(productKey: string, deviceName: string, opts: DoctorOptions): Promise<Diagnosis> {
    const product = await this.store.getProduct(productKey);
    if (!product) return { verdict: 'refused', findings: [finding('unknown-product', { productKey })] };
    const device = await this.store.getDevice(productKey, deviceName);
    if (!device) return { verdict: 'refused', findings: [finding('unknown-device', { productKey, deviceName })] };

    const findings: Finding[] = [];
    if (!device.enabled) findings.push(finding('device-disabled'));
    if (product.requireTls) findings.push(finding('tls-only-product'));
    const grace = previousSecretInGrace(device, this.clock());
    if (grace !== undefined && opts.revealRotation) findings.push(finding('secret-rotation-in-grace', { graceEndsAt: device.previousSecretExpiresAt }));

    const entries = (await this.audit.query({ productKey, deviceName, limit: HISTORY_ENTRIES })).filter((e) => ATTEMPT_ACTION.test(e.action));
    const latest = entries[0];
    const refusals = new Map<string, { entry: AuditEntry; count: number; finding: Finding }>();
    for (const e of entries) {
      if (succeeded(e)) continue;
      const sub = SUB_DEVICE_ACTION.test(e.action) ? findingCodeOfSubDeviceReason(e.reason) : undefined;
      const decoded = SUB_DEVICE_ACTION.test(e.action) ? undefined : refusalOfReason(e.reason);
      const f = sub
        ? finding(sub, sub === 'wrong-node-type' ? { detail: clip((e.reason ?? '').replace(/^\d+ /, '')) } : sub === 'unknown-device' ? { productKey, deviceName } : undefined)
        : decoded
          ? refusalFinding(decoded.kind, decoded.detail, e.reason ?? '', product, device, opts, e.sourceAddress ?? null)
          : finding('refused-other', { reason: clip(e.reason ?? e.result) });
      const key = f.code === 'refused-other' ? `other:${f.message}` : f.code;
      const seen = refusals.get(key);
      if (seen) seen.count++;
      else refusals.set(key, { entry: e, count: 1, finding: f });
    }
    // The lastAuthError on the record may be older than the audit kept (retention) or from
    // another node; it counts when the audit has nothing of that kind.
    if (device.lastAuthError) {
      const decoded = refusalOfReason(device.lastAuthError);
      const f = decoded ? refusalFinding(decoded.kind, decoded.detail, device.lastAuthError, product, device, opts, device.lastAuthErrorSource) : finding('refused-other', { reason: clip(device.lastAuthError) });
      const key = f.code === 'refused-other' ? `other:${f.message}` : f.code;
      if (!refusals.has(key)) {
        refusals.set(key, {
          entry: { at: device.lastAuthErrorAt ?? '', action: 'lastAuthError', actor: 'device', sourceAddress: device.lastAuthErrorSource ?? null, result: 'deny', reason: device.lastAuthError },
          count: 1,
          finding: f,
        });
      }
    }
    for (const { entry, count, finding: f } of refusals.values()) {
      // Refusals older than the device's last successful attempt no longer stop it: a warning.
      const stale = latest !== undefined && succeeded(latest) && entry.at < latest.at;
      findings.push(stale && f.severity === 'error' ? { ...f, severity: 'warning' } : f);
      findings.push(finding('refusal-history', { count, lastAt: entry.at || null, source: entry.sourceAddress ?? null, code: f.code }));
    }
    if (!latest && refusals.size === 0) findings.push(finding('no-recent-activity'));
    if (latest && succeeded(latest)) {
      if (latest.reason?.includes('previous secret') && opts.revealRotation) {
        findings.push(finding('secret-rotated-previous-matches', { graceEndsAt: device.previousSecretExpiresAt }));
      }
      findings.push(finding('last-login-ok', { at: latest.at, source: latest.sourceAddress ?? null }));
    }
    if (latest === undefined) {
      // Nothing attempted recently: only the record's state can refuse (disabled); else unknown.
      return { verdict: findings.some((f) => f.code === 'device-disabled') ? 'refused' : 'unknown', findings };
    }
    const refused = !succeeded(latest) || !device.enabled;
    return { verdict: refused ? 'refused' : 'ok', findings: refused ? findings : findings.map(demoteErrors) };
  }

  /** A dynamic registration request (HTTPS /auth/register/device or MQTT register/regnwl), judged over TLS unless `tls` is false. */
  async diagnoseRegistration(input: RegistrationDiagnosisInput, tls = true): Promise<Diagnosis> {
    const kind = input.kind ?? 'register';
    try {
      await this.registration.diagnose(
        {
          productKey: input.productKey,
          deviceName: input.deviceName,
          random: input.random,
          sign: input.sign,
          signMethod: input.signMethod,
          transport: { channel: 'https', tls },
        },
        kind,
      );
    } catch (e) {
      const refusal = refusalOfError(e);
      const field = e instanceof ThingAuthError && typeof e.details?.field === 'string' ? e.details.field : undefined;
      const params: Record<string, string> = { productKey: input.productKey, deviceName: input.deviceName };
      if (refusal === 'bad-signature') Object.assign(params, { secret: 'ProductSecret', signMethod: input.signMethod ?? 'hmacmd5' });
      if (refusal === 'unsupported-sign-method') params.signMethod = clip(input.signMethod ?? '');
      if (refusal === 'malformed' && field) params.field = field;
      const f =
        refusal === 'malformed'
          ? finding('refused-other', { reason: e instanceof ThingAuthError ? clip(e.message) : 'malformed request', ...(field ? { field } : {}) })
          : finding(findingCodeOfRefusal(refusal), params);
      return { verdict: 'refused', findings: [f] };
    }
    return { verdict: 'ok', findings: [finding('credentials-ok')] };
  }
}

/** A refusal kind from the history as a finding, with the numbers its stored reason carries. */
function refusalFinding(kind: RefusalKind, detail: 'username' | 'password' | undefined, reason: string, product: Product, device: Device, opts: DoctorOptions, source: string | null): Finding {
  const code = findingCodeOfRefusal(kind, detail);
  switch (code) {
    case 'timestamp-outside-window': {
      const skew = timestampSkewOf(reason);
      return finding(code, skew ?? { windowSeconds: product.timestampWindowSeconds ?? null });
    }
    case 'sign-mismatch': {
      const m = /^(?:CONNACK \d+: )?(?:http \/auth: )?bad signature \(([A-Za-z0-9]{1,16})\)/.exec(reason);
      // A rotation whose grace has ended is the likeliest cause when the device had one.
      if (opts.revealRotation && device.previousDeviceSecret && device.previousSecretExpiresAt && Date.parse(device.previousSecretExpiresAt) <= Date.now()) {
        return finding('sign-mismatch', { signMethod: m?.[1] ?? null, previousSecretExpiredAt: device.previousSecretExpiresAt });
      }
      return finding(code, { signMethod: m?.[1] ?? null });
    }
    case 'unknown-device':
      return finding(code, { productKey: device.productKey, deviceName: device.deviceName });
    case 'unknown-product':
      return finding(code, { productKey: product.productKey });
    case 'registration-off':
      return finding(code, { productKey: product.productKey });
    case 'source-throttled':
      // lastAuthErrorSource reads `mqtt/tcp 203.0.113.7`: the address is its last word.
      return finding(code, { source: source ? source.split(' ').pop()! : null });
    default:
      return finding(code);
  }
}

/**
 * Extra findings for a signature that did not match the current secret (or the previous one
 * in its grace): was it made with the previous secret after its grace (admin only), or with
 * another algorithm than the one announced? Each try is the login's constant-time check.
 */
export function signatureFindings(
  device: Pick<Device, 'deviceSecret' | 'previousDeviceSecret' | 'previousSecretExpiresAt'>,
  content: string,
  sign: string,
  announced: string | undefined,
  opts: DoctorOptions,
  nowMs: number,
): Finding {
  const algorithm: SignAlgorithm | undefined = announced === undefined || announced === '' ? 'md5' : parseSignMethod(announced);
  // In its grace the previous secret was already tried by the login itself (and failed).
  const expired = device.previousSecretExpiresAt !== null && previousSecretInGrace(device, nowMs) === undefined;
  if (opts.revealRotation && algorithm && device.previousDeviceSecret && expired) {
    if (verifySignature(algorithm, device.previousDeviceSecret, content, sign)) {
      return finding('secret-rotated-previous-expired', { graceEndsAt: device.previousSecretExpiresAt });
    }
  }
  const other = HEX_ALGORITHM[sign.length];
  if (other && other !== algorithm && verifySignature(other, device.deviceSecret, content, sign)) {
    return finding('sign-method-mismatch', { signMethod: announced ?? 'hmacmd5', usedAlgorithm: `hmac${other}`, suggestedSignMethod: `hmac${other}` });
  }
  return finding('sign-mismatch', { signMethod: announced ?? 'hmacmd5' });
}

/** The only algorithm whose hex digest has this length. */
const HEX_ALGORITHM: Record<number, SignAlgorithm> = { 32: 'md5', 40: 'sha1', 64: 'sha256' };

/** A login allowed (`allow`) or a registration answered (`ok`). */
function succeeded(e: AuditEntry): boolean {
  return e.result === 'allow' || e.result === 'ok';
}

function demoteErrors(f: Finding): Finding {
  return f.severity === 'error' ? { ...f, severity: 'warning' } : f;
}

function clip(s: string): string {
  return s.length > 160 ? s.slice(0, 160) + '…' : s;
}
