/**
 * Without THINGAUTH_TLS_CERT/KEY the server makes a local CA and a server certificate
 * (RSA-2048, SHA-256: what embedded TLS stacks with RSA key exchange need) into
 * <dataDir>/tls/ on first start. Devices and tests trust ca.pem.
 */
import { webcrypto } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export interface TlsMaterial {
  cert: string;
  key: string;
  /** PEM of the CA that signed cert (the generated one), if known. */
  ca: string | undefined;
  caPath: string | undefined;
}

const RSA = {
  name: 'RSASSA-PKCS1-v1_5',
  hash: 'SHA-256',
  publicExponent: new Uint8Array([1, 0, 1]),
  modulusLength: 2048,
} as const;

async function pkcs8Pem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key as webcrypto.CryptoKey));
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----\n`;
}

function isIp(name: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(name) || name.includes(':');
}

export async function generateLocalCa(hostnames: string[]): Promise<{ caCert: string; caKey: string; cert: string; key: string }> {
  const now = new Date(Date.now() - 60_000);
  const caKeys = (await webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify'])) as unknown as CryptoKeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01' + Buffer.from(webcrypto.getRandomValues(new Uint8Array(8))).toString('hex'),
    name: 'CN=thingauth local CA',
    notBefore: now,
    notAfter: new Date(now.getTime() + 10 * 365 * 86_400_000),
    keys: caKeys,
    signingAlgorithm: RSA,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const serverKeys = (await webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify'])) as unknown as CryptoKeyPair;
  const names = Array.from(new Set(['localhost', '127.0.0.1', '::1', ...hostnames]));
  const server = await x509.X509CertificateGenerator.create({
    serialNumber: '02' + Buffer.from(webcrypto.getRandomValues(new Uint8Array(8))).toString('hex'),
    subject: 'CN=' + (hostnames[0] ?? 'localhost'),
    issuer: ca.subject,
    notBefore: now,
    notAfter: new Date(now.getTime() + 825 * 86_400_000),
    signingKey: caKeys.privateKey,
    publicKey: serverKeys.publicKey,
    signingAlgorithm: RSA,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names.map((n) => ({ type: isIp(n) ? ('ip' as const) : ('dns' as const), value: n }))),
      await x509.AuthorityKeyIdentifierExtension.create(ca),
    ],
  });
  return {
    caCert: ca.toString('pem') + '\n',
    caKey: await pkcs8Pem(caKeys.privateKey),
    cert: server.toString('pem') + '\n',
    key: await pkcs8Pem(serverKeys.privateKey),
  };
}

export async function ensureTlsMaterial(opts: {
  dataDir: string;
  hostnames: string[];
  certPath?: string;
  keyPath?: string;
}): Promise<TlsMaterial> {
  if (opts.certPath && opts.keyPath) {
    return { cert: fs.readFileSync(opts.certPath, 'utf8'), key: fs.readFileSync(opts.keyPath, 'utf8'), ca: undefined, caPath: undefined };
  }
  const dir = path.join(opts.dataDir, 'tls');
  const files = { caCert: 'ca.pem', caKey: 'ca-key.pem', cert: 'server.pem', key: 'server-key.pem' } as const;
  const p = (f: string) => path.join(dir, f);
  if (!fs.existsSync(p(files.cert)) || !fs.existsSync(p(files.key)) || !fs.existsSync(p(files.caCert))) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const made = await generateLocalCa(opts.hostnames);
    fs.writeFileSync(p(files.caKey), made.caKey, { mode: 0o600 });
    fs.writeFileSync(p(files.key), made.key, { mode: 0o600 });
    fs.writeFileSync(p(files.cert), made.cert, { mode: 0o644 });
    fs.writeFileSync(p(files.caCert), made.caCert, { mode: 0o644 });
  }
  return {
    cert: fs.readFileSync(p(files.cert), 'utf8'),
    key: fs.readFileSync(p(files.key), 'utf8'),
    ca: fs.readFileSync(p(files.caCert), 'utf8'),
    caPath: p(files.caCert),
  };
}
