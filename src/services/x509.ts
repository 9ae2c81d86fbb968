/**
 * X.509 device certificates (issue 16): a product's authentication mode, its device CA
 * (generated on first use, or a customer CA uploaded with proof of possession), issuing
 * (key made here, or a CSR signed), the PEM bundle, revocation (live sessions closed through
 * the 'device.certificate.revoked' event), rotation, the CRL, the expiring report, and the
 * login decision for a presented certificate chain.
 */
import { randomBytes, X509Certificate as NodeCert } from 'node:crypto';
import { ThingAuthError } from '../core/errors.js';
import { assertDeviceName, generateDeviceSecret, IotIdSequence } from '../core/names.js';
import type { Device, Product } from '../core/records.js';
import { refusalOfError, type RefusalKind } from '../core/refusals.js';
import {
  buildCrl,
  checkCustomerCa,
  DEFAULT_CERT_VALIDITY_DAYS,
  fingerprintOf,
  generateDeviceCa,
  issueDeviceCertificate,
  KEY_ALGORITHMS,
  MAX_CERT_VALIDITY_DAYS,
  readCsr,
  readPresentedLeaf,
  verifyChainToCa,
  type AuthMode,
  type CertIdentity,
  type KeyAlgorithm,
} from '../core/x509.js';
import type { Logger } from '../logger.js';
import type { ProductAuthPatch, ProductAuthSettings, Store, StoredDeviceCertificate, StoredProductCa } from '../store/store.js';
import type { RegistryEvents } from './events.js';
import type { Registry } from './registry.js';

/** A certificate as the API shows it: never the private key. */
export interface PublicCertificate {
  serial: string;
  productKey: string;
  deviceName: string;
  source: StoredDeviceCertificate['source'];
  fingerprint: string;
  notBefore: string;
  notAfter: string;
  createdAt: string;
  revokedAt: string | null;
  revocationReason: string | null;
  /** valid | expired | not-yet-valid | revoked | retiring (revocation scheduled). */
  state: 'valid' | 'expired' | 'not-yet-valid' | 'revoked' | 'retiring';
}

export interface CertificateBundle {
  productKey: string;
  deviceName: string;
  serial: string;
  notAfter: string;
  certificate: string;
  /** PKCS#8 PEM; null when the key never was here (CSR, customer CA). */
  privateKey: string | null;
  /** The product's device CA (what the certificate chains to). */
  caCertificate: string;
}

export type X509LoginResult =
  | { ok: true; device: Device; product: Product; certificate: StoredDeviceCertificate; enrolled: boolean }
  | { ok: false; refusal: RefusalKind; reason: string; identity?: CertIdentity; device?: Device };

/** At most this many certificates in one expiring report. */
export const MAX_EXPIRING_REPORT = 10_000;
const REGISTRATION_CODE_META = 'x509.registration-code.';
/** Up to when revocations were announced at a start (startGraceEnds). */
const GRACE_SWEPT_META = 'x509.grace-ends-announced-until';
/** Without a record of the last start: announce revocations of the last day. */
const DEFAULT_GRACE_LOOKBACK_MS = 86_400_000;
const GRACE_PAGE = 1_000;
const MAX_GRACE_PAGES = 1_000;
const MAX_TIMER_MS = 2 ** 31 - 1;

function publicCert(c: StoredDeviceCertificate, nowMs: number): PublicCertificate {
  const revokedMs = c.revokedAt ? Date.parse(c.revokedAt) : undefined;
  const state: PublicCertificate['state'] =
    revokedMs !== undefined && revokedMs <= nowMs
      ? 'revoked'
      : nowMs > Date.parse(c.notAfter)
        ? 'expired'
        : nowMs < Date.parse(c.notBefore)
          ? 'not-yet-valid'
          : revokedMs !== undefined
            ? 'retiring'
            : 'valid';
  return {
    serial: c.serial,
    productKey: c.productKey,
    deviceName: c.deviceName,
    source: c.source,
    fingerprint: c.fingerprint,
    notBefore: c.notBefore,
    notAfter: c.notAfter,
    createdAt: c.createdAt,
    revokedAt: c.revokedAt,
    revocationReason: c.revocationReason,
    state,
  };
}

export function assertKeyAlgorithm(v: unknown): asserts v is KeyAlgorithm {
  if (!KEY_ALGORITHMS.includes(v as KeyAlgorithm)) throw new ThingAuthError('INVALID_ARGUMENT', `keyAlgorithm must be one of ${KEY_ALGORITHMS.join(', ')}`, { field: 'keyAlgorithm' });
}

export class X509Service {
  private readonly settingsCache = new Map<string, { s: ProductAuthSettings; atMs: number }>();
  private readonly caCache = new Map<string, { ca: StoredProductCa; atMs: number }>();
  private readonly caInFlight = new Map<string, Promise<StoredProductCa>>();
  private readonly iotIds = new IotIdSequence();
  private readonly graceTimers = new Map<string, { timer: NodeJS.Timeout; atMs: number }>();
  private graceStopped = false;
  /** What certificate logins read last, for a database outage (loginDevice, loginCertificate). */
  private readonly lastDevices = new Map<string, Device>();
  private readonly lastCerts = new Map<string, StoredDeviceCertificate>();
  private readonly maxLoginEntries = 200_000;
  /** Bumped on every invalidation so a read that raced with a change is not kept. */
  private loginEpoch = 0;
  /** Enrollment audit and metrics (services/index.ts). */
  observers?: { onEnrolled(device: Device, source: string): void };

  constructor(
    private readonly store: Store,
    private readonly events: RegistryEvents,
    private readonly registry: Registry,
    private readonly logger: Logger,
    private readonly opts: { cacheTtlMs: number; defaultDeviceLimit: number },
    private readonly clock: () => number = () => Date.now(),
  ) {
    events.on('product.changed', ({ productKey }) => {
      this.settingsCache.delete(productKey);
      this.caCache.delete(productKey);
    });
    // A revoked certificate and a changed or deleted device never serve from the outage fallback.
    events.on('device.certificate.revoked', ({ productKey, serial }) => {
      this.loginEpoch++;
      this.lastCerts.delete(productKey + '/' + serial);
    });
    events.on('device.changed', (ref) => this.forgetLoginDevice(ref.productKey, ref.deviceName));
    events.on('device.deleted', (ref) => this.forgetLoginDevice(ref.productKey, ref.deviceName));
  }

  private fresh(atMs: number): boolean {
    return this.opts.cacheTtlMs === 0 || this.clock() - atMs < this.opts.cacheTtlMs;
  }

  private iso(ms = this.clock()): string {
    return new Date(ms).toISOString();
  }

  // ---- settings ----

  async settings(productKey: string): Promise<ProductAuthSettings> {
    const hit = this.settingsCache.get(productKey);
    if (hit && this.fresh(hit.atMs)) return hit.s;
    let s: ProductAuthSettings | undefined;
    try {
      s = await this.store.getProductAuth(productKey);
    } catch (e) {
      // Expired, but the store cannot answer (database outage): the last known settings serve,
      // as the authenticator's cached records do, so secret logins keep working from cache.
      if (hit) return hit.s;
      throw e;
    }
    if (!s) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${productKey} not found`);
    this.settingsCache.set(productKey, { s, atMs: this.clock() });
    return s;
  }

  /** Whether a product logs its devices in with certificates (for the secret login paths). */
  async authModeOf(productKey: string): Promise<AuthMode> {
    try {
      return (await this.settings(productKey)).authMode;
    } catch (e) {
      if (e instanceof ThingAuthError && e.kind === 'PRODUCT_NOT_FOUND') return 'secret';
      throw e;
    }
  }

  /**
   * Devices of an x509 product have no DeviceSecret to show: the store keeps the generated one
   * (its column is required) but every secret login refuses it, so it never leaves.
   */
  async assertShowsSecrets(productKey: string, deviceName?: string): Promise<void> {
    if ((await this.authModeOf(productKey)) !== 'x509') return;
    const who = deviceName !== undefined ? `device ${deviceName} of product ${productKey}` : `the devices of product ${productKey}`;
    const where = deviceName !== undefined ? `its certificate: GET /api/v1/products/${productKey}/devices/${deviceName}/certificate-bundle (thingauth x509 bundle)` : `their certificates: GET /api/v1/products/${productKey}/x509/credentials`;
    throw new ThingAuthError('CONFLICT', `${who} authenticate${deviceName !== undefined ? 's' : ''} with an X.509 certificate and ha${deviceName !== undefined ? 's' : 've'} no DeviceSecret; ${where}`, { field: 'authMode' });
  }

  async setSettings(productKey: string, patch: ProductAuthPatch): Promise<ProductAuthSettings> {
    if (patch.certValidityDays !== undefined && patch.certValidityDays !== null) {
      const d = patch.certValidityDays;
      if (!Number.isInteger(d) || d < 1 || d > MAX_CERT_VALIDITY_DAYS) {
        throw new ThingAuthError('INVALID_ARGUMENT', `certValidityDays must be 1..${MAX_CERT_VALIDITY_DAYS}`, { field: 'certValidityDays' });
      }
    }
    const product = await this.registry.getProduct(productKey);
    if (patch.authMode === 'x509') {
      // The cloud: X.509 is for directly connected devices; a sub-device logs in through its gateway with a secret.
      if (product.nodeType === 'SUB_DEVICE') throw new ThingAuthError('CONFLICT', 'a SUB_DEVICE product logs in through its gateway with device secrets; X.509 is for directly connected devices', { field: 'authMode' });
      if (product.dynamicRegistration) throw new ThingAuthError('CONFLICT', 'dynamic registration hands out device secrets; switch it off before choosing X.509', { field: 'authMode' });
    }
    const s = await this.store.setProductAuth(productKey, patch, this.iso());
    this.events.emit('product.changed', { productKey });
    return s;
  }

  // ---- the product's CA ----

  private async requireX509(productKey: string): Promise<ProductAuthSettings> {
    const s = await this.settings(productKey);
    if (s.authMode !== 'x509') throw new ThingAuthError('CONFLICT', `product ${productKey} authenticates with device secrets (authMode secret)`, { field: 'authMode' });
    return s;
  }

  /** The product's CA as stored; undefined when it has none yet. */
  async storedCa(productKey: string): Promise<StoredProductCa | undefined> {
    const hit = this.caCache.get(productKey);
    if (hit && this.fresh(hit.atMs)) return hit.ca;
    let ca: StoredProductCa | undefined;
    try {
      ca = await this.store.getProductCa(productKey);
    } catch (e) {
      if (hit) return hit.ca; // as settings(): the last known CA serves during an outage
      throw e;
    }
    if (ca) this.caCache.set(productKey, { ca, atMs: this.clock() });
    return ca;
  }

  /**
   * The product's CA as it is, never generating one (reads: a read-scope GET must not fix the
   * product's CA choice). NOT_FOUND until the first device is created, a certificate issued or
   * a customer CA uploaded.
   */
  async existingCa(productKey: string): Promise<StoredProductCa> {
    await this.requireX509(productKey);
    const ca = await this.storedCa(productKey);
    if (!ca) throw new ThingAuthError('NOT_FOUND', `product ${productKey} has no device CA yet: the platform CA is made with its first device (or upload a customer CA)`);
    return ca;
  }

  /** The product's CA, a platform CA generated on first use (racing servers keep the first stored). */
  async ca(productKey: string): Promise<StoredProductCa> {
    await this.requireX509(productKey);
    const have = await this.storedCa(productKey);
    if (have) return have;
    let p = this.caInFlight.get(productKey);
    if (!p) {
      p = (async () => {
        const made = await generateDeviceCa(productKey, new Date(this.clock()));
        const stored = await this.store.putProductCaIfAbsent({
          productKey,
          source: 'platform',
          certificate: made.certificate,
          privateKey: made.privateKey,
          fingerprint: fingerprintOf(made.certificate),
          createdAt: this.iso(),
        });
        this.caCache.set(productKey, { ca: stored, atMs: this.clock() });
        this.logger.info({ event: 'x509.ca.created', productKey, fingerprint: stored.fingerprint }, 'platform device CA created for the product');
        return stored;
      })().finally(() => this.caInFlight.delete(productKey));
      this.caInFlight.set(productKey, p);
    }
    return p;
  }

  /** The code a customer CA's verification certificate must carry as its CN (proof of possession). */
  async registrationCode(productKey: string): Promise<string> {
    await this.requireX509(productKey);
    const key = REGISTRATION_CODE_META + productKey;
    const have = await this.store.getMeta(key);
    if (have) return have;
    const code = randomBytes(16).toString('hex');
    await this.store.setMeta(key, code);
    return (await this.store.getMeta(key)) ?? code;
  }

  async uploadCustomerCa(productKey: string, certificate: string, verificationCertificate: string): Promise<StoredProductCa> {
    await this.requireX509(productKey);
    if (await this.store.getProductCa(productKey)) {
      throw new ThingAuthError('CONFLICT', `product ${productKey} already has a device CA; a product keeps one CA`, { field: 'certificate' });
    }
    const code = await this.registrationCode(productKey);
    const ca = checkCustomerCa(certificate, verificationCertificate, code, this.clock());
    const pemText = ca.toString();
    const stored = await this.store.putProductCaIfAbsent({ productKey, source: 'customer', certificate: pemText.endsWith('\n') ? pemText : pemText + '\n', privateKey: null, fingerprint: ca.fingerprint256, createdAt: this.iso() });
    if (stored.fingerprint !== ca.fingerprint256) throw new ThingAuthError('CONFLICT', `product ${productKey} already has a device CA; a product keeps one CA`, { field: 'certificate' });
    this.caCache.set(productKey, { ca: stored, atMs: this.clock() });
    this.events.emit('product.changed', { productKey });
    return stored;
  }

  // ---- issuing ----

  private async signingCa(productKey: string): Promise<{ ca: StoredProductCa; validityDays: number }> {
    const s = await this.requireX509(productKey);
    const ca = await this.ca(productKey);
    if (ca.privateKey === null) {
      throw new ThingAuthError('CONFLICT', `product ${productKey} trusts a customer CA: thingauth has no key to sign with; issue device certificates from your CA`, { field: 'ca' });
    }
    return { ca, validityDays: s.certValidityDays ?? DEFAULT_CERT_VALIDITY_DAYS };
  }

  /**
   * Issues a certificate for an existing device: a key made here (`keyAlgorithm`, default
   * RSA-2048) or the key of a CSR the device made (`csr`, its identity checked).
   */
  async issue(productKey: string, deviceName: string, opts: { keyAlgorithm?: KeyAlgorithm; csr?: string } = {}): Promise<StoredDeviceCertificate> {
    const d = await this.registry.getDeviceRecord(productKey, deviceName);
    return this.issueFor(d, opts);
  }

  async issueFor(d: Device, opts: { keyAlgorithm?: KeyAlgorithm; csr?: string } = {}): Promise<StoredDeviceCertificate> {
    if (opts.keyAlgorithm !== undefined) assertKeyAlgorithm(opts.keyAlgorithm);
    const { ca, validityDays } = await this.signingCa(d.productKey);
    const id = { productKey: d.productKey, deviceName: d.deviceName };
    const publicKey = opts.csr !== undefined ? await readCsr(opts.csr, id) : undefined;
    const issued = await issueDeviceCertificate({
      ca: { certificate: ca.certificate, privateKey: ca.privateKey! },
      id,
      validityDays,
      now: new Date(this.clock()),
      ...(publicKey ? { publicKey } : { keyAlgorithm: opts.keyAlgorithm ?? 'rsa2048' }),
    });
    const stored: StoredDeviceCertificate = {
      serial: issued.serial,
      iotId: d.iotId,
      productKey: d.productKey,
      deviceName: d.deviceName,
      source: publicKey ? 'csr' : 'issued',
      certificate: issued.certificate,
      privateKey: issued.privateKey,
      fingerprint: fingerprintOf(issued.certificate),
      notBefore: issued.notBefore,
      notAfter: issued.notAfter,
      createdAt: this.iso(),
      revokedAt: null,
      revocationReason: null,
    };
    await this.store.addDeviceCertificate(stored);
    return stored;
  }

  /**
   * Whether creating a device in this product issues its certificate: an x509 product whose
   * CA is (or will be) the platform's. A customer-CA product's devices bring their own.
   */
  async issuesOnCreate(productKey: string): Promise<boolean> {
    if ((await this.authModeOf(productKey)) !== 'x509') return false;
    const ca = await this.storedCa(productKey);
    return !ca || ca.source === 'platform';
  }

  /** Devices just created in an x509 product each get a certificate (and key). */
  async issueForNew(devices: Device[], keyAlgorithm: KeyAlgorithm = 'rsa2048', onProgress?: (done: number) => void): Promise<StoredDeviceCertificate[]> {
    const out: StoredDeviceCertificate[] = [];
    for (const d of devices) {
      out.push(await this.issueFor(d, { keyAlgorithm }));
      onProgress?.(out.length);
    }
    return out;
  }

  async certificates(productKey: string, deviceName: string): Promise<PublicCertificate[]> {
    const d = await this.registry.getDeviceRecord(productKey, deviceName);
    const now = this.clock();
    return (await this.store.listDeviceCertificates(d.iotId)).map((c) => publicCert(c, now));
  }

  /** The device's newest certificate in use (not revoked, not expired) with its key and the CA. */
  async bundle(productKey: string, deviceName: string, serial?: string): Promise<CertificateBundle> {
    await this.requireX509(productKey);
    const d = await this.registry.getDeviceRecord(productKey, deviceName);
    const now = this.clock();
    const certs = await this.store.listDeviceCertificates(d.iotId);
    const c = serial !== undefined ? certs.find((x) => x.serial === serial) : certs.find((x) => ['valid', 'retiring', 'not-yet-valid'].includes(publicCert(x, now).state));
    if (!c) throw new ThingAuthError('NOT_FOUND', serial !== undefined ? `device ${deviceName} has no certificate ${serial}` : `device ${deviceName} has no certificate in use; issue one`);
    const ca = await this.existingCa(productKey);
    return { productKey, deviceName, serial: c.serial, notAfter: c.notAfter, certificate: c.certificate, privateKey: c.privateKey, caCertificate: ca.certificate };
  }

  // ---- revocation, rotation, CRL, expiry ----

  async revoke(productKey: string, deviceName: string, serial: string, reason = 'revoked by operator'): Promise<PublicCertificate> {
    const d = await this.registry.getDeviceRecord(productKey, deviceName);
    const c = await this.store.getDeviceCertificate(productKey, serial.toLowerCase());
    if (!c || c.iotId !== d.iotId) throw new ThingAuthError('NOT_FOUND', `device ${deviceName} has no certificate ${serial}`);
    const revoked = (await this.store.revokeDeviceCertificate(productKey, c.serial, this.iso(), reason.slice(0, 200)))!;
    this.events.emit('device.certificate.revoked', { iotId: d.iotId, productKey, deviceName, serial: c.serial });
    return publicCert(revoked, this.clock());
  }

  /**
   * A new certificate for the device; every certificate it had in use stays valid until
   * `graceSeconds` from now (0 = revoked at once), then is refused.
   */
  async rotate(productKey: string, deviceName: string, opts: { graceSeconds: number; keyAlgorithm?: KeyAlgorithm; csr?: string }): Promise<{ certificate: StoredDeviceCertificate; previousValidUntil: string }> {
    if (!Number.isInteger(opts.graceSeconds) || opts.graceSeconds < 0 || opts.graceSeconds > 365 * 86_400) {
      throw new ThingAuthError('INVALID_ARGUMENT', 'graceSeconds must be 0..31536000', { field: 'graceSeconds' });
    }
    const d = await this.registry.getDeviceRecord(productKey, deviceName);
    const before = await this.store.listDeviceCertificates(d.iotId);
    const fresh = await this.issueFor(d, opts);
    const until = this.iso(this.clock() + opts.graceSeconds * 1000);
    for (const c of before) {
      if (c.revokedAt !== null && Date.parse(c.revokedAt) <= Date.parse(until)) continue;
      await this.store.revokeDeviceCertificate(productKey, c.serial, until, 'superseded');
      this.loginEpoch++;
      this.lastCerts.delete(productKey + '/' + c.serial); // its end is on record now: the outage fallback must not forget it
      if (opts.graceSeconds === 0) this.events.emit('device.certificate.revoked', { iotId: d.iotId, productKey, deviceName, serial: c.serial });
      else this.scheduleGraceEnd(c, Date.parse(until)); // its sessions close when the grace ends
    }
    return { certificate: fresh, previousValidUntil: until };
  }

  // ---- the end of a rotation's grace ----

  /**
   * Arms a timer that announces the end of a retiring certificate ('device.certificate.revoked':
   * its live sessions close, here and, relayed, on other nodes) at `atMs`. Timers longer than
   * setTimeout's 24.8 days re-arm. One timer per certificate; an earlier time replaces a later one.
   */
  scheduleGraceEnd(c: Pick<StoredDeviceCertificate, 'iotId' | 'productKey' | 'deviceName' | 'serial'>, atMs: number): void {
    if (this.graceStopped) return;
    const key = c.productKey + '/' + c.serial;
    const have = this.graceTimers.get(key);
    if (have && have.atMs <= atMs) return;
    if (have) clearTimeout(have.timer);
    const arm = (): void => {
      const left = atMs - this.clock();
      if (left <= 0) {
        this.graceTimers.delete(key);
        this.logger.info({ event: 'x509.grace.ended', productKey: c.productKey, deviceName: c.deviceName, serial: c.serial }, 'rotation grace ended: the old certificate is refused from now on and its sessions are closed');
        this.events.emit('device.certificate.revoked', { iotId: c.iotId, productKey: c.productKey, deviceName: c.deviceName, serial: c.serial });
        return;
      }
      const timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
      timer.unref();
      this.graceTimers.set(key, { timer, atMs });
    };
    arm();
  }

  /**
   * At start: every rotation grace still running gets its timer, and every revocation that took
   * effect since the last start (grace ends that passed while this server was down) is announced
   * once, so sessions other nodes still hold on those certificates close. Logins need none of
   * this: they compare the revocation time with the clock.
   */
  async startGraceEnds(): Promise<{ scheduled: number; announced: number }> {
    this.graceStopped = false;
    const now = this.clock();
    const swept = await this.store.getMeta(GRACE_SWEPT_META);
    let after = swept && !Number.isNaN(Date.parse(swept)) ? swept : this.iso(now - DEFAULT_GRACE_LOOKBACK_MS);
    const seen = new Set<string>();
    let scheduled = 0;
    let announced = 0;
    for (let page = 0; page < MAX_GRACE_PAGES; page++) {
      const rows = await this.store.listCertificatesRevokedAfter(after, GRACE_PAGE);
      let fresh = 0;
      for (const c of rows) {
        const key = c.productKey + '/' + c.serial;
        if (seen.has(key)) continue;
        seen.add(key);
        fresh++;
        const at = Date.parse(c.revokedAt!);
        if (at <= now) {
          this.events.emit('device.certificate.revoked', { iotId: c.iotId, productKey: c.productKey, deviceName: c.deviceName, serial: c.serial });
          announced++;
        } else {
          this.scheduleGraceEnd(c, at);
          scheduled++;
        }
      }
      if (rows.length < GRACE_PAGE || fresh === 0) break;
      // Pages overlap by one millisecond so equal revocation times are never skipped.
      after = this.iso(Date.parse(rows[rows.length - 1]!.revokedAt!) - 1);
    }
    await this.store.setMeta(GRACE_SWEPT_META, this.iso(now));
    if (scheduled + announced > 0) this.logger.info({ event: 'x509.grace.start', scheduled, announced }, 'certificate grace ends scheduled');
    return { scheduled, announced };
  }

  /** Graceful stop: no more grace-end timers. */
  stopGraceEnds(): void {
    this.graceStopped = true;
    for (const t of this.graceTimers.values()) clearTimeout(t.timer);
    this.graceTimers.clear();
  }

  /** For tests and the doctor: grace ends this process is waiting for. */
  get pendingGraceEnds(): number {
    return this.graceTimers.size;
  }

  async crl(productKey: string): Promise<string> {
    const ca = await this.existingCa(productKey);
    if (ca.privateKey === null) throw new ThingAuthError('CONFLICT', `product ${productKey} trusts a customer CA: its CRL is published by that CA; revocations made here are enforced at login`, { field: 'ca' });
    const revoked = await this.store.listRevokedCertificates(productKey, this.iso());
    return buildCrl({ certificate: ca.certificate, privateKey: ca.privateKey }, revoked, new Date(this.clock()));
  }

  async expiring(withinDays: number, productKey?: string, limit = MAX_EXPIRING_REPORT): Promise<PublicCertificate[]> {
    if (!Number.isInteger(withinDays) || withinDays < 0 || withinDays > MAX_CERT_VALIDITY_DAYS) throw new ThingAuthError('INVALID_ARGUMENT', `days must be 0..${MAX_CERT_VALIDITY_DAYS}`, { field: 'days' });
    if (productKey !== undefined) await this.registry.getProduct(productKey);
    const now = this.clock();
    const rows = await this.store.listExpiringCertificates(this.iso(now + withinDays * 86_400_000), this.iso(now), Math.min(limit, MAX_EXPIRING_REPORT), productKey);
    return rows.map((c) => publicCert(c, now));
  }

  /** For the gauge: certificates (not revoked) ending within `withinDays`, every product. */
  async countExpiring(withinDays: number): Promise<number> {
    const now = this.clock();
    return this.store.countExpiringCertificates(this.iso(now + withinDays * 86_400_000), this.iso(now));
  }

  // ---- login ----

  /**
   * The login decision for a presented chain (DER, leaf first), on every device transport:
   * the certificate names the device, chains to its product's CA, is in its validity, is not
   * revoked and belongs to that device. A customer-CA certificate seen for the first time is
   * recorded (so it can be revoked), and with enrollment on, an unknown device is created.
   */
  async verifyLogin(chain: readonly Buffer[]): Promise<X509LoginResult> {
    const presented = readPresentedLeaf(chain);
    if (!presented.ok) return { ok: false, refusal: presented.problem, reason: presented.reason, ...(presented.identity ? { identity: presented.identity } : {}) };
    const { leaf, certs } = presented;
    const id = leaf.identity;
    const product = await this.productOf(id.productKey);
    if (!product) return { ok: false, refusal: 'unknown-product', reason: 'certificate names an unknown product', identity: id };
    const settings = await this.settings(id.productKey);
    if (settings.authMode !== 'x509') return { ok: false, refusal: 'foreign-ca', reason: 'certificate names a product that authenticates with device secrets, not certificates', identity: id };
    const ca = await this.storedCa(id.productKey);
    if (!ca) return { ok: false, refusal: 'foreign-ca', reason: 'the product has no device CA yet', identity: id };
    const now = this.clock();
    const chainOk = verifyChainToCa(certs, ca.certificate, now);
    let device = await this.loginDevice(id.productKey, id.deviceName);
    if (!chainOk.ok) return { ok: false, refusal: chainOk.problem, reason: chainOk.reason, identity: id, ...(device ? { device } : {}) };
    let stored = await this.loginCertificate(id.productKey, leaf.serial);
    if (stored && stored.fingerprint !== leaf.fingerprint256) {
      return { ok: false, refusal: 'bad-certificate', reason: `certificate serial ${leaf.serial} is on record with another fingerprint`, identity: id, ...(device ? { device } : {}) };
    }
    if (stored?.revokedAt && Date.parse(stored.revokedAt) <= now) {
      return { ok: false, refusal: 'certificate-revoked', reason: `certificate ${leaf.serial} revoked at ${stored.revokedAt} (${stored.revocationReason ?? 'no reason given'})`, identity: id, ...(device ? { device } : {}) };
    }
    let enrolled = false;
    if (!device) {
      if (ca.source !== 'customer' || !settings.enrollOnFirstContact) {
        return { ok: false, refusal: 'unknown-device', reason: ca.source === 'customer' ? 'unknown device (enrollment on first contact is off for this product)' : 'unknown device', identity: id };
      }
      assertDeviceName(id.deviceName);
      let created: { device: Device; created: boolean };
      try {
        created = await this.store.getOrCreateDevice(id.productKey, { iotId: this.iotIds.next(), deviceName: id.deviceName, deviceSecret: generateDeviceSecret() }, this.opts.defaultDeviceLimit, this.iso(now));
      } catch (e) {
        const refusal = refusalOfError(e);
        if (refusal === 'server-error') throw e;
        return { ok: false, refusal, reason: `enrollment on first contact refused: ${(e as Error).message}`, identity: id };
      }
      device = created.device;
      enrolled = created.created;
      if (enrolled) this.observers?.onEnrolled(device, leaf.serial);
    }
    if (stored && stored.iotId !== device.iotId) {
      return { ok: false, refusal: 'certificate-mismatch', reason: `certificate ${leaf.serial} belongs to another device record`, identity: id, device };
    }
    if (!stored) {
      if (ca.source === 'platform') {
        // Every certificate our CA signs is on record: one that is not was never issued for this device (or its device was deleted).
        return { ok: false, refusal: 'certificate-revoked', reason: `certificate ${leaf.serial} is not on record for this device (deleted device or unknown issue)`, identity: id, device };
      }
      stored = {
        serial: leaf.serial,
        iotId: device.iotId,
        productKey: id.productKey,
        deviceName: id.deviceName,
        source: 'enrolled',
        certificate: leaf.cert.toString(),
        privateKey: null,
        fingerprint: leaf.fingerprint256,
        notBefore: new Date(leaf.cert.validFrom).toISOString(),
        notAfter: new Date(leaf.cert.validTo).toISOString(),
        createdAt: this.iso(now),
        revokedAt: null,
        revocationReason: null,
      };
      try {
        await this.store.addDeviceCertificate(stored);
      } catch (e) {
        // A racing login of the same certificate recorded it first.
        if (!(e instanceof ThingAuthError && e.kind === 'CONFLICT')) throw e;
      }
    }
    if (!device.enabled) return { ok: false, refusal: 'disabled', reason: 'device disabled', identity: id, device };
    return { ok: true, device, product, certificate: stored, enrolled };
  }

  // ---- what a login read last (served while the database cannot answer) ----

  /**
   * The device record for a certificate login: read from the store at every login (a change
   * made through another node is seen at once); when the store cannot answer (database outage)
   * the record this process read last serves, as the authenticator's cached records do for
   * secret logins. Dropped on this process's own changes and deletions.
   */
  private async loginDevice(productKey: string, deviceName: string): Promise<Device | undefined> {
    const key = productKey + '&' + deviceName;
    const epoch = this.loginEpoch;
    let d: Device | undefined;
    try {
      d = await this.store.getDevice(productKey, deviceName);
    } catch (e) {
      const hit = this.lastDevices.get(key);
      if (hit) return hit;
      throw e;
    }
    if (!d) this.lastDevices.delete(key);
    else if (epoch === this.loginEpoch) remember(this.lastDevices, key, d, this.maxLoginEntries);
    return d;
  }

  /** The certificate's record, likewise (kept without its private key: a login never needs it). */
  private async loginCertificate(productKey: string, serial: string): Promise<StoredDeviceCertificate | undefined> {
    const key = productKey + '/' + serial;
    const epoch = this.loginEpoch;
    let c: StoredDeviceCertificate | undefined;
    try {
      c = await this.store.getDeviceCertificate(productKey, serial);
    } catch (e) {
      const hit = this.lastCerts.get(key);
      if (hit) return hit;
      throw e;
    }
    if (!c) this.lastCerts.delete(key);
    else if (epoch === this.loginEpoch) remember(this.lastCerts, key, { ...c, privateKey: null }, this.maxLoginEntries);
    return c;
  }

  private forgetLoginDevice(productKey: string, deviceName: string): void {
    this.loginEpoch++;
    this.lastDevices.delete(productKey + '&' + deviceName);
  }

  /** Product lookup; services/index.ts points it at the authenticator's cache. */
  productOf: (productKey: string) => Promise<Product | undefined> = (productKey) => this.store.getProduct(productKey);
}

/** Keeps `v` under `key`, dropping the oldest entry beyond `max` (Map keeps insertion order). */
function remember<V>(m: Map<string, V>, key: string, v: V, max: number): void {
  m.delete(key);
  if (m.size >= max) {
    const oldest = m.keys().next().value;
    if (oldest !== undefined) m.delete(oldest);
  }
  m.set(key, v);
}

/** For tests and tools: the parsed leaf of a PEM certificate. */
export function certificateSerialOf(pem: string): string {
  return new NodeCert(pem).serialNumber.toLowerCase().replace(/^0+(?=.)/, '');
}
