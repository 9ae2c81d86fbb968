/**
 * `thingauth x509 ...` (issue 16), over the management API (http/management/routes/x509.ts):
 *   auth <pk> [--mode secret|x509] [--enroll true|false] [--validity-days N]
 *   ca <pk> [--out file]                       the product's device CA (made on first use)
 *   registration-code <pk>                     CN for a customer CA's verification certificate
 *   upload-ca <pk> --cert ca.pem --verification verify.pem
 *   issue <pk> <dn> [--key-algorithm rsa2048|ec-p256] [--csr file]
 *   bundle <pk> <dn> [--serial S] [--out file.pem]   certificate + key (if made here) + CA, 0600
 *   certs <pk> <dn>                            the device's certificates
 *   revoke <pk> <dn> <serial> [--reason text]
 *   rotate <pk> <dn> --grace <seconds> [--key-algorithm ...] [--csr file]
 *   crl <pk> [--out file]
 *   expiring --days N [--product pk]
 *   batch-issue <pk> (--count N | --names file) --out file.csv|file.zip [--key-algorithm ...]
 *       creates the devices in chunks (each gets its certificate) with a progress bar, then
 *       writes every device's certificate and key as CSV, or a ZIP of one PEM per device (0600).
 */
import fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import cliProgress from 'cli-progress';
import { Option, type Command } from 'commander';
import { DEVICE_NAME_RE } from '../core/names.js';
import { apiPath } from './api-client.js';
import { apiCommand, boolOption, clientFor, formatRecord, formatTable, intOption, print, type ApiCommandOptions } from './common.js';

const KEY_ALGS = ['rsa2048', 'ec-p256'];

/** Writes a file only the owner may read (it may hold private keys), tightening an existing one first. */
function writePrivate(file: string): fs.WriteStream {
  const fd = fs.openSync(file, 'w', 0o600);
  try {
    fs.fchmodSync(fd, 0o600);
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
  return fs.createWriteStream(file, { fd });
}

async function writeText(file: string, text: string, secret: boolean): Promise<void> {
  if (!secret) return fs.promises.writeFile(file, text);
  const ws = writePrivate(file);
  await new Promise<void>((resolve, reject) => ws.end(text, (e?: Error | null) => (e ? reject(e) : resolve())));
}

const certColumns = ['serial', 'source', 'state', 'notAfter', 'revokedAt'];

export function addX509Commands(program: Command): void {
  const x = program.command('x509').description('X.509 device certificates: product mode, CA, issue, bundle, revoke, rotate, CRL, expiring report');

  apiCommand(x, 'auth <productKey>', "show or set the product's authentication mode (fixed once it has devices) and X.509 settings")
    .addOption(new Option('--mode <mode>', 'secret or x509').choices(['secret', 'x509']))
    .option('--enroll <bool>', 'customer CA: create unknown devices with a valid certificate at their first login', boolOption('--enroll'))
    .option('--validity-days <n>', 'validity of certificates issued here (default 36500 = 100 years, as the cloud)', intOption('--validity-days', 1, 36500))
    .action(async (pk: string, o: ApiCommandOptions & { mode?: string; enroll?: boolean; validityDays?: number }) => {
      const patch = { ...(o.mode ? { authMode: o.mode } : {}), ...(o.enroll !== undefined ? { enrollOnFirstContact: o.enroll } : {}), ...(o.validityDays !== undefined ? { certValidityDays: o.validityDays } : {}) };
      const c = clientFor(o);
      const r = Object.keys(patch).length > 0 ? await c.request('PUT', apiPath('products', pk, 'auth'), patch) : await c.request('GET', apiPath('products', pk, 'auth'));
      print(o, r, () => formatRecord(r));
    });

  apiCommand(x, 'ca <productKey>', "the product's device CA certificate (made with the first device)")
    .option('--out <file>', 'write the PEM to this file')
    .action(async (pk: string, o: ApiCommandOptions & { out?: string }) => {
      const r = await clientFor(o).request('GET', apiPath('products', pk, 'x509', 'ca'));
      if (o.out) await writeText(o.out, r.certificate, false);
      print(o, r, () => (o.out ? formatRecord({ source: r.source, fingerprint: r.fingerprint, file: o.out }) : r.certificate.trimEnd()));
    });

  apiCommand(x, 'registration-code <productKey>', "the CN a customer CA's verification certificate must carry (proof of possession)").action(async (pk: string, o: ApiCommandOptions) => {
    const r = await clientFor(o).request('GET', apiPath('products', pk, 'x509', 'ca', 'registration-code'));
    print(o, r, () => r.registrationCode);
  });

  apiCommand(x, 'upload-ca <productKey>', 'trust a customer CA for the product (before any platform CA was made)')
    .requiredOption('--cert <file>', 'the CA certificate (PEM)')
    .requiredOption('--verification <file>', 'a certificate with CN = the registration code, signed by the CA key (PEM)')
    .action(async (pk: string, o: ApiCommandOptions & { cert: string; verification: string }) => {
      const body = { certificate: fs.readFileSync(o.cert, 'utf8'), verificationCertificate: fs.readFileSync(o.verification, 'utf8') };
      const r = await clientFor(o).request('POST', apiPath('products', pk, 'x509', 'ca'), body);
      print(o, r, () => formatRecord({ productKey: r.productKey, source: r.source, fingerprint: r.fingerprint }));
    });

  apiCommand(x, 'issue <productKey> <deviceName>', 'issue a certificate for an existing device: key made here, or signed from the device\'s CSR')
    .addOption(new Option('--key-algorithm <alg>', 'key made here').choices(KEY_ALGS))
    .option('--csr <file>', 'PKCS#10 request the device made (its key never leaves it)')
    .action(async (pk: string, dn: string, o: ApiCommandOptions & { keyAlgorithm?: string; csr?: string }) => {
      const body = { ...(o.keyAlgorithm ? { keyAlgorithm: o.keyAlgorithm } : {}), ...(o.csr ? { csr: fs.readFileSync(o.csr, 'utf8') } : {}) };
      const r = await clientFor(o).request('POST', apiPath('products', pk, 'devices', dn, 'certificates'), body);
      print(o, r, () => formatRecord({ serial: r.serial, source: r.source, notAfter: r.notAfter, next: `thingauth x509 bundle ${pk} ${dn} --out ${dn}.pem` }));
    });

  apiCommand(x, 'bundle <productKey> <deviceName>', "download the device's certificate, its key (if made here) and the CA as one PEM file")
    .option('--serial <serial>', 'a given certificate instead of the one in use')
    .requiredOption('--out <file>', 'PEM file to write (mode 0600: it holds the private key)')
    .action(async (pk: string, dn: string, o: ApiCommandOptions & { serial?: string; out: string }) => {
      const q = o.serial ? `?serial=${encodeURIComponent(o.serial)}` : '';
      const r = await clientFor(o).request('GET', apiPath('products', pk, 'devices', dn, 'certificate-bundle') + q);
      await writeText(o.out, r.certificate + (r.privateKey ?? '') + r.caCertificate, true);
      print(o, { productKey: pk, deviceName: dn, serial: r.serial, notAfter: r.notAfter, file: o.out, key: r.privateKey !== null }, () =>
        `wrote certificate ${r.serial}${r.privateKey ? ', its private key' : ' (the device holds its key)'} and the CA to ${o.out}`,
      );
    });

  apiCommand(x, 'certs <productKey> <deviceName>', "the device's certificates, newest first").action(async (pk: string, dn: string, o: ApiCommandOptions) => {
    const r = await clientFor(o).request('GET', apiPath('products', pk, 'devices', dn, 'certificates'));
    print(o, r, () => formatTable(r.items, certColumns));
  });

  apiCommand(x, 'revoke <productKey> <deviceName> <serial>', 'revoke a certificate: refused from now on, a live session on it closed')
    .option('--reason <text>', 'why (kept in the record and the audit)')
    .action(async (pk: string, dn: string, serial: string, o: ApiCommandOptions & { reason?: string }) => {
      const r = await clientFor(o).request('POST', apiPath('products', pk, 'devices', dn, 'certificates', serial, 'revoke'), o.reason ? { reason: o.reason } : {});
      print(o, r, () => formatRecord({ serial: r.serial, state: r.state, revokedAt: r.revokedAt }));
    });

  apiCommand(x, 'rotate <productKey> <deviceName>', 'issue a new certificate; the ones in use stay valid for --grace seconds')
    .requiredOption('--grace <seconds>', '0 = revoke the old ones at once', intOption('--grace', 0, 31_536_000))
    .addOption(new Option('--key-algorithm <alg>', 'key made here').choices(KEY_ALGS))
    .option('--csr <file>', 'PKCS#10 request for the new certificate')
    .action(async (pk: string, dn: string, o: ApiCommandOptions & { grace: number; keyAlgorithm?: string; csr?: string }) => {
      const body = { graceSeconds: o.grace, ...(o.keyAlgorithm ? { keyAlgorithm: o.keyAlgorithm } : {}), ...(o.csr ? { csr: fs.readFileSync(o.csr, 'utf8') } : {}) };
      const r = await clientFor(o).request('POST', apiPath('products', pk, 'devices', dn, 'certificates', 'rotate'), body);
      print(o, r, () => formatRecord({ serial: r.serial, notAfter: r.notAfter, previousValidUntil: r.previousValidUntil }));
    });

  apiCommand(x, 'crl <productKey>', "CRL of the product's platform CA (PEM)")
    .option('--out <file>', 'write to this file')
    .action(async (pk: string, o: ApiCommandOptions & { out?: string }) => {
      const body = await clientFor(o).download(apiPath('products', pk, 'x509', 'crl'));
      if (o.out) await pipeline(body, fs.createWriteStream(o.out));
      else await pipeline(body, process.stdout, { end: false });
    });

  apiCommand(x, 'expiring', 'certificates (not revoked) whose validity ends within --days, soonest first')
    .requiredOption('--days <n>', 'window in days', intOption('--days', 0, 36500))
    .option('--product <productKey>', 'only this product')
    .action(async (o: ApiCommandOptions & { days: number; product?: string }) => {
      const q = `?days=${o.days}${o.product ? `&productKey=${encodeURIComponent(o.product)}` : ''}`;
      const r = await clientFor(o).request('GET', apiPath('x509', 'expiring') + q);
      print(o, r, () => (r.items.length === 0 ? `no certificate ends within ${o.days} days` : formatTable(r.items, ['productKey', 'deviceName', 'serial', 'notAfter', 'state'])));
    });

  apiCommand(x, 'batch-issue <productKey>', 'production line: create devices (each with its certificate and key) and write them all as CSV')
    .option('--count <n>', 'generate this many DeviceNames', intOption('--count', 1, 1_000_000))
    .option('--names <file>', 'one DeviceName per line')
    .requiredOption('--out <file>', 'file to write (mode 0600): a .zip gets one {DeviceName}.pem per device (certificate, key, CA); anything else the CSV ProductKey,DeviceName,Serial,NotAfter,Certificate,PrivateKey,CaCertificate')
    .addOption(new Option('--key-algorithm <alg>', 'key made for each device').choices(KEY_ALGS).default('rsa2048'))
    .option('--chunk <n>', 'devices per request', intOption('--chunk', 1, 1000), 50)
    .option('--no-progress', 'no progress bar')
    .action(async (pk: string, o: ApiCommandOptions & { count?: number; names?: string; out: string; keyAlgorithm: string; chunk: number; progress: boolean }) => {
      if ((o.count === undefined) === (o.names === undefined)) throw new Error('give exactly one of --count or --names');
      let names: string[] | undefined;
      if (o.names) {
        names = fs.readFileSync(o.names, 'utf8').split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
        const bad = names.findIndex((n) => !DEVICE_NAME_RE.test(n));
        if (bad >= 0) throw new Error(`${o.names} line ${bad + 1}: not a valid DeviceName`);
      }
      const total = names ? names.length : o.count!;
      const client = clientFor(o);
      const bar = o.progress && !o.json
        ? new cliProgress.SingleBar({ stream: process.stderr, format: 'issuing [{bar}] {percentage}% | {value}/{total} devices | {eta_formatted} left', hideCursor: true }, cliProgress.Presets.shades_classic)
        : undefined;
      bar?.start(total, 0);
      let done = 0;
      try {
        while (done < total) {
          const n = Math.min(o.chunk, total - done);
          const body = names ? { deviceNames: names.slice(done, done + n), keyAlgorithm: o.keyAlgorithm } : { count: n, keyAlgorithm: o.keyAlgorithm };
          await client.request('POST', apiPath('products', pk, 'devices', 'batch') + '?credentials=false', body);
          done += n;
          bar?.update(done);
        }
      } finally {
        bar?.stop();
      }
      const zip = o.out.toLowerCase().endsWith('.zip');
      const body = await client.download(apiPath('products', pk, 'x509', 'credentials') + (zip ? '?format=zip' : ''));
      await pipeline(body, writePrivate(o.out));
      print(o, { productKey: pk, created: done, file: o.out }, () => `created ${done} devices with certificates; every device's certificate and key of ${pk} written to ${o.out}`);
    });
}
