/**
 * X.509 device certificates (issue 16), the pure part: the identity a device certificate
 * carries, building CAs, device certificates and CRLs (@peculiar/x509 over Node's webcrypto),
 * reading CSRs, and verifying a presented chain against a product's CA (node:crypto).
 *
 * Identity: ProductKey and DeviceName, twice. The subject is `CN={DeviceName}, OU={ProductKey}`
 * and a SAN URI `urn:thingauth:device:{ProductKey}:{DeviceName}` (ProductKeys have no `:`, so
 * the first `:` after the prefix splits them). A customer CA's device certificates follow the
 * same scheme (docs/x509.md). When both are present they must agree.
 */
import { createPublicKey, webcrypto, X509Certificate as NodeCert, type KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { ThingAuthError } from './errors.js';
import { isValidDeviceName, PRODUCT_KEY_RE } from './names.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export type AuthMode = 'secret' | 'x509';
export const AUTH_MODES: readonly AuthMode[] = ['secret', 'x509'];

export type KeyAlgorithm = 'rsa2048' | 'ec-p256';
export const KEY_ALGORITHMS: readonly KeyAlgorithm[] = ['rsa2048', 'ec-p256'];

/**
 * The cloud's device certificates are valid for 100 years (its sample certificate: 2019-10-17
 * to 2119-10-17, issuer "Alibaba Cloud IoT Operation CA1"); ours default to the same.
 */
export const DEFAULT_CERT_VALIDITY_DAYS = 36500;
export const MAX_CERT_VALIDITY_DAYS = 36500;
/** Leaf plus at most this many certificates above it (intermediates, the CA itself). */
export const MAX_CHAIN_CERTS = 4;
/** One certificate (DER) larger than this is refused before it is parsed. */
export const MAX_CERT_BYTES = 16 * 1024;
/** PEM text an operator or a device may hand in (CSR, CA, verification certificate). */
export const MAX_PEM_CHARS = 64 * 1024;
const SAN_PREFIX = 'urn:thingauth:device:';

export interface CertIdentity {
  productKey: string;
  deviceName: string;
}

const RSA_ALG = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 } as const;
const EC_ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const EC_SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;

function subtle(): webcrypto.SubtleCrypto {
  return webcrypto.subtle;
}

export function identityUri(id: CertIdentity): string {
  return `${SAN_PREFIX}${id.productKey}:${id.deviceName}`;
}

export function identitySubject(id: CertIdentity): string {
  return `CN=${id.deviceName}, OU=${id.productKey}`;
}

function pem(der: ArrayBuffer | Buffer, label: string): string {
  const b64 = Buffer.from(der as ArrayBuffer).toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

async function pkcs8Pem(key: CryptoKey): Promise<string> {
  return pem(await subtle().exportKey('pkcs8', key as webcrypto.CryptoKey), 'PRIVATE KEY');
}

function randomSerial(): string {
  // 16 random bytes, first bit cleared: a positive INTEGER, unique per issuer for good.
  const b = Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)));
  b[0] = (b[0]! & 0x7f) | 0x10;
  return b.toString('hex');
}

/** The serial as thingauth keys it: lower-case hex without leading zeros. */
export function normalSerial(hex: string): string {
  return hex.toLowerCase().replace(/^0+(?=.)/, '');
}

async function generateKeys(alg: KeyAlgorithm): Promise<CryptoKeyPair> {
  return (await subtle().generateKey(alg === 'rsa2048' ? RSA_ALG : EC_ALG, true, ['sign', 'verify'])) as unknown as CryptoKeyPair;
}

/** Imports a PKCS#8 PEM signing key of either algorithm. */
async function importSigningKey(keyPem: string): Promise<{ key: CryptoKey; signingAlgorithm: Algorithm | EcdsaParams }> {
  const ko = createPublicKey(keyPem);
  const der = x509.PemConverter.decodeFirst(keyPem);
  if (ko.asymmetricKeyType === 'ec') {
    const key = (await subtle().importKey('pkcs8', der, EC_ALG, false, ['sign'])) as unknown as CryptoKey;
    return { key, signingAlgorithm: EC_SIGN };
  }
  const key = (await subtle().importKey('pkcs8', der, { name: RSA_ALG.name, hash: 'SHA-256' }, false, ['sign'])) as unknown as CryptoKey;
  return { key, signingAlgorithm: { name: RSA_ALG.name, hash: 'SHA-256' } as Algorithm };
}

export interface GeneratedCa {
  certificate: string;
  privateKey: string;
}

/** A product's platform device CA: RSA-2048 (what every embedded TLS stack verifies), valid longer than any certificate it issues. */
export async function generateDeviceCa(productKey: string, now: Date): Promise<GeneratedCa> {
  const keys = await generateKeys('rsa2048');
  const notBefore = new Date(now.getTime() - 60_000);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=thingauth device CA ${productKey}, OU=${productKey}`,
    notBefore,
    notAfter: new Date(notBefore.getTime() + (MAX_CERT_VALIDITY_DAYS + 366) * 86_400_000),
    keys,
    signingAlgorithm: RSA_ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certificate: ca.toString('pem') + '\n', privateKey: await pkcs8Pem(keys.privateKey) };
}

export interface IssuedCertificate {
  serial: string;
  certificate: string;
  /** PKCS#8 PEM; null when the device made its own key (CSR). */
  privateKey: string | null;
  notBefore: string;
  notAfter: string;
}

/**
 * A device certificate for `id`, signed by the CA: for a key generated here (`keyAlgorithm`)
 * or for the public key of a verified CSR (`publicKey`).
 */
export async function issueDeviceCertificate(opts: {
  ca: GeneratedCa;
  id: CertIdentity;
  validityDays: number;
  now: Date;
  keyAlgorithm?: KeyAlgorithm;
  publicKey?: x509.PublicKey;
}): Promise<IssuedCertificate> {
  const caCert = new x509.X509Certificate(opts.ca.certificate);
  const signer = await importSigningKey(opts.ca.privateKey);
  let keys: CryptoKeyPair | undefined;
  let publicKey: CryptoKey;
  if (opts.publicKey) {
    publicKey = await opts.publicKey.export();
  } else {
    keys = await generateKeys(opts.keyAlgorithm ?? 'rsa2048');
    publicKey = keys.publicKey;
  }
  const notBefore = new Date(opts.now.getTime() - 60_000);
  const notAfter = new Date(opts.now.getTime() + opts.validityDays * 86_400_000);
  const serial = randomSerial();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: identitySubject(opts.id),
    issuer: caCert.subject,
    notBefore,
    notAfter,
    signingKey: signer.key,
    publicKey,
    signingAlgorithm: signer.signingAlgorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: identityUri(opts.id) }]),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return {
    serial: normalSerial(serial),
    certificate: cert.toString('pem') + '\n',
    privateKey: keys ? await pkcs8Pem(keys.privateKey) : null,
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
  };
}

function invalid(message: string, field: string): ThingAuthError {
  return new ThingAuthError('INVALID_ARGUMENT', message, { field });
}

/** Key strength rule for device and CA keys: RSA of at least 2048 bits, EC P-256 or P-384. */
export function weakKeyReason(key: KeyObject): string | undefined {
  const type = key.asymmetricKeyType;
  const d = key.asymmetricKeyDetails ?? {};
  if (type === 'rsa') return (d.modulusLength ?? 0) < 2048 ? `RSA key of ${d.modulusLength ?? '?'} bits: at least 2048 required` : undefined;
  if (type === 'ec') return d.namedCurve === 'prime256v1' || d.namedCurve === 'secp384r1' ? undefined : `EC curve ${d.namedCurve ?? '?'} not accepted: P-256 or P-384 required`;
  return `key type ${type ?? 'unknown'} not accepted: RSA (2048+) or EC (P-256, P-384) required`;
}

/**
 * A CSR a device or factory made for `expected`: its signature must verify (the maker holds
 * the key), its subject (and SAN URI, if any) must name exactly this device, its key must be
 * strong enough. Returns its public key for issueDeviceCertificate.
 */
export async function readCsr(csrPem: string, expected: CertIdentity): Promise<x509.PublicKey> {
  if (typeof csrPem !== 'string' || csrPem.length === 0) throw invalid('csr: a PEM certificate request is required', 'csr');
  if (csrPem.length > MAX_PEM_CHARS) throw invalid(`csr: larger than ${MAX_PEM_CHARS} characters`, 'csr');
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem.trim());
  } catch {
    throw invalid('csr: not a PEM PKCS#10 certificate request', 'csr');
  }
  let verified = false;
  try {
    verified = await csr.verify();
  } catch {
    verified = false;
  }
  if (!verified) throw invalid('csr: its signature does not verify (not signed by the key it carries)', 'csr');
  let ko: KeyObject;
  try {
    ko = createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: 'der', type: 'spki' });
  } catch {
    throw invalid('csr: its public key cannot be read', 'csr');
  }
  const weak = weakKeyReason(ko);
  if (weak) throw invalid(`csr: ${weak}`, 'csr');
  const id = identityOfNames(nameParts(csr.subjectName), sanUrisOf((csr.extensions.find((e) => e instanceof x509.SubjectAlternativeNameExtension) as x509.SubjectAlternativeNameExtension | undefined) ?? null));
  if (!id.ok) throw invalid(`csr: ${id.reason}`, 'csr');
  if (id.identity.productKey !== expected.productKey || id.identity.deviceName !== expected.deviceName) {
    throw invalid(`csr: it names ${id.identity.deviceName}&${id.identity.productKey}, not ${expected.deviceName}&${expected.productKey}`, 'csr');
  }
  return csr.publicKey;
}

function nameParts(name: x509.Name): { cn: string[]; ou: string[] } {
  const json = name.toJSON();
  const cn: string[] = [];
  const ou: string[] = [];
  for (const rdn of json) {
    for (const [k, vs] of Object.entries(rdn)) {
      if (k === 'CN') cn.push(...vs);
      if (k === 'OU') ou.push(...vs);
    }
  }
  return { cn, ou };
}

function sanUrisOf(ext: x509.SubjectAlternativeNameExtension | null): string[] {
  if (!ext) return [];
  return ext.names.items.filter((n) => n.type === 'url').map((n) => n.value);
}

/** `noIdentity`: the certificate does not try to name a device (no thingauth SAN, no CN+OU pair that is one). */
type IdentityResult = { ok: true; identity: CertIdentity } | { ok: false; reason: string; noIdentity?: true };

function identityOfNames(subject: { cn: string[]; ou: string[] }, uris: string[]): IdentityResult {
  const ours = uris.filter((u) => u.startsWith(SAN_PREFIX));
  if (ours.length > 1) return { ok: false, reason: 'certificate identity ambiguous: more than one thingauth SAN URI' };
  let fromSan: CertIdentity | undefined;
  if (ours.length === 1) {
    const rest = ours[0]!.slice(SAN_PREFIX.length);
    const colon = rest.indexOf(':');
    const productKey = colon > 0 ? rest.slice(0, colon) : '';
    const deviceName = colon > 0 ? rest.slice(colon + 1) : '';
    if (!PRODUCT_KEY_RE.test(productKey) || !isValidDeviceName(deviceName)) return { ok: false, reason: 'certificate SAN URI does not name a valid ProductKey and DeviceName' };
    fromSan = { productKey, deviceName };
  }
  let fromSubject: CertIdentity | undefined;
  if (subject.cn.length === 1 && subject.ou.length === 1) {
    const [deviceName, productKey] = [subject.cn[0]!, subject.ou[0]!];
    if (PRODUCT_KEY_RE.test(productKey) && isValidDeviceName(deviceName)) fromSubject = { productKey, deviceName };
  }
  if (fromSan && fromSubject && (fromSan.productKey !== fromSubject.productKey || fromSan.deviceName !== fromSubject.deviceName)) {
    return { ok: false, reason: 'certificate identity ambiguous: subject and SAN name different devices' };
  }
  const identity = fromSan ?? fromSubject;
  if (!identity) return { ok: false, noIdentity: true, reason: 'certificate names no device: subject CN=DeviceName, OU=ProductKey or SAN URI urn:thingauth:device:{ProductKey}:{DeviceName} required' };
  return { ok: true, identity };
}

/** Node's "CN=a\nOU=b" subject text as its CN and OU values. */
function nodeSubjectParts(subject: string): { cn: string[]; ou: string[] } {
  const cn: string[] = [];
  const ou: string[] = [];
  for (const line of subject.split('\n')) {
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    const k = line.slice(0, eq);
    const v = line.slice(eq + 1);
    if (k === 'CN') cn.push(v);
    if (k === 'OU') ou.push(v);
  }
  return { cn, ou };
}

/** Node's "URI:x, DNS:y" SAN text as its URIs (quoted entries, which ours never need, are skipped). */
function nodeSanUris(san: string | undefined): string[] {
  if (!san) return [];
  return san.split(', ').filter((e) => e.startsWith('URI:')).map((e) => e.slice(4));
}

export function identityOfCertificate(cert: NodeCert): IdentityResult {
  return identityOfNames(nodeSubjectParts(cert.subject), nodeSanUris(cert.subjectAltName));
}

/** Why a presented chain is refused, as the refusal kinds of core/refusals.ts name them. */
export type ChainProblem = 'bad-certificate' | 'certificate-expired' | 'certificate-not-yet-valid' | 'foreign-ca';

export interface PresentedLeaf {
  cert: NodeCert;
  identity: CertIdentity;
  serial: string;
  fingerprint256: string;
}

/**
 * The leaf of a presented chain (DER, leaf first) and the identity it claims, before any trust
 * decision: sizes, depth and parse checked here, so garbage never reaches the store.
 */
export function readPresentedLeaf(
  chain: readonly Buffer[],
): { ok: true; leaf: PresentedLeaf; certs: NodeCert[] } | { ok: false; problem: ChainProblem; reason: string; identity?: CertIdentity; namesNoDevice?: true } {
  if (chain.length === 0) return { ok: false, problem: 'bad-certificate', reason: 'no client certificate' };
  if (chain.length > MAX_CHAIN_CERTS) {
    let identity: CertIdentity | undefined;
    try {
      const id = chain[0]!.length <= MAX_CERT_BYTES ? identityOfCertificate(new NodeCert(chain[0]!)) : undefined;
      if (id?.ok) identity = id.identity;
    } catch {
      // the depth is the reason given
    }
    return { ok: false, problem: 'bad-certificate', reason: `client certificate chain of ${chain.length} certificates: at most ${MAX_CHAIN_CERTS}`, ...(identity ? { identity } : {}) };
  }
  const certs: NodeCert[] = [];
  for (const der of chain) {
    if (der.length > MAX_CERT_BYTES) return { ok: false, problem: 'bad-certificate', reason: `client certificate of ${der.length} bytes: at most ${MAX_CERT_BYTES}` };
    try {
      certs.push(new NodeCert(der));
    } catch {
      return { ok: false, problem: 'bad-certificate', reason: 'client certificate cannot be parsed' };
    }
  }
  const leaf = certs[0]!;
  const id = identityOfCertificate(leaf);
  if (!id.ok) return { ok: false, problem: 'bad-certificate', reason: id.reason, ...(id.noIdentity ? { namesNoDevice: true as const } : {}) };
  const weak = weakKeyReason(leaf.publicKey);
  if (weak) return { ok: false, problem: 'bad-certificate', reason: `client certificate: ${weak}`, identity: id.identity };
  return { ok: true, leaf: { cert: leaf, identity: id.identity, serial: normalSerial(leaf.serialNumber), fingerprint256: leaf.fingerprint256 }, certs };
}

/**
 * Whether the presented chain leads to `caPem`: each certificate is issued and signed by the
 * next (intermediates must be CAs), the last by the CA; every certificate in its validity.
 */
export function verifyChainToCa(certs: readonly NodeCert[], caPem: string, nowMs: number): { ok: true } | { ok: false; problem: ChainProblem; reason: string } {
  const ca = caOf(caPem);
  for (let i = 0; i < certs.length; i++) {
    const c = certs[i]!;
    const from = Date.parse(c.validFrom);
    const to = Date.parse(c.validTo);
    const which = i === 0 ? 'client certificate' : `chain certificate ${i}`;
    if (nowMs < from) return { ok: false, problem: 'certificate-not-yet-valid', reason: `${which} not valid before ${new Date(from).toISOString()}` };
    if (nowMs > to) return { ok: false, problem: 'certificate-expired', reason: `${which} expired at ${new Date(to).toISOString()}` };
    if (i > 0 && !c.ca) return { ok: false, problem: 'bad-certificate', reason: `${which} is not a CA certificate` };
    // Signed by the product's CA itself: the chain ends here (a CA copy the client sent on top is ignored).
    if (c.checkIssued(ca) && c.verify(ca.publicKey)) return { ok: true };
    const next = certs[i + 1];
    if (!next || !c.checkIssued(next) || !c.verify(next.publicKey)) break;
  }
  return { ok: false, problem: 'foreign-ca', reason: "client certificate does not chain to the product's device CA" };
}

const caCache = new Map<string, NodeCert>();
function caOf(caPem: string): NodeCert {
  let c = caCache.get(caPem);
  if (!c) {
    c = new NodeCert(caPem);
    if (caCache.size > 1000) caCache.clear();
    caCache.set(caPem, c);
  }
  return c;
}

/**
 * A customer CA certificate as an operator uploads it: a CA (basicConstraints cA), in its
 * validity, a strong key. Proof of possession: `verificationPem` is a certificate whose CN is
 * the registration code thingauth gave out, signed by that CA's key (as AWS IoT requires).
 */
export function checkCustomerCa(caPem: string, verificationPem: string, registrationCode: string, nowMs: number): NodeCert {
  if (typeof caPem !== 'string' || caPem.length > MAX_PEM_CHARS) throw invalid('certificate: a PEM CA certificate of at most 64 KiB is required', 'certificate');
  let ca: NodeCert;
  try {
    ca = new NodeCert(caPem);
  } catch {
    throw invalid('certificate: not a PEM X.509 certificate', 'certificate');
  }
  if (!ca.ca) throw invalid('certificate: not a CA certificate (basicConstraints cA is not set)', 'certificate');
  if (nowMs > Date.parse(ca.validTo) || nowMs < Date.parse(ca.validFrom)) throw invalid('certificate: the CA certificate is outside its validity', 'certificate');
  const weak = weakKeyReason(ca.publicKey);
  if (weak) throw invalid(`certificate: ${weak}`, 'certificate');
  if (typeof verificationPem !== 'string' || verificationPem.length > MAX_PEM_CHARS) throw invalid('verificationCertificate: a PEM certificate is required', 'verificationCertificate');
  let v: NodeCert;
  try {
    v = new NodeCert(verificationPem);
  } catch {
    throw invalid('verificationCertificate: not a PEM X.509 certificate', 'verificationCertificate');
  }
  if (!v.checkIssued(ca) || !v.verify(ca.publicKey)) throw invalid('verificationCertificate: not signed by the uploaded CA (proof of possession failed)', 'verificationCertificate');
  const cn = nodeSubjectParts(v.subject).cn;
  if (cn.length !== 1 || cn[0] !== registrationCode) throw invalid('verificationCertificate: its CN is not the current registration code', 'verificationCertificate');
  return ca;
}

/** A CRL of the CA's revoked serials, signed by its key; valid for `nextUpdateHours`. */
export async function buildCrl(ca: GeneratedCa, revoked: { serial: string; revokedAt: string }[], now: Date, nextUpdateHours = 24): Promise<string> {
  const caCert = new x509.X509Certificate(ca.certificate);
  const signer = await importSigningKey(ca.privateKey);
  const crl = await x509.X509CrlGenerator.create({
    issuer: caCert.subject,
    thisUpdate: now,
    nextUpdate: new Date(now.getTime() + nextUpdateHours * 3_600_000),
    signingKey: signer.key,
    signingAlgorithm: signer.signingAlgorithm,
    entries: revoked.map((r) => ({ serialNumber: r.serial.length % 2 ? '0' + r.serial : r.serial, revocationDate: new Date(r.revokedAt) })),
    extensions: [await x509.AuthorityKeyIdentifierExtension.create(caCert)],
  });
  // RFC 7468's label (what OpenSSL reads); @peculiar/x509 writes "CRL".
  return pem(crl.rawData, 'X509 CRL');
}

export function fingerprintOf(certPem: string): string {
  return new NodeCert(certPem).fingerprint256;
}
