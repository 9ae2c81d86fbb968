/**
 * core/x509.ts: the identity a certificate carries, reading a presented chain (garbage, size,
 * depth, weak keys), chain verification to a product CA (intermediates, validity, foreign CA),
 * CSR checks, and which CONNECTs go to the certificate path.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { generateDeviceCa, issueDeviceCertificate, MAX_CERT_BYTES, readCsr, readPresentedLeaf, verifyChainToCa } from '../../src/core/x509.js';
import { presentsDeviceCertificate } from '../../src/mqtt/x509-authenticator.js';
import { keyPair, makeCa, signCert } from '../e2e/x509-helpers.js';

const der = (pem: string) => new X509Certificate(pem).raw;

describe('X.509 core', () => {
  it('reads the identity from subject and SAN; a DeviceName with ":" and "@" survives; disagreement is refused', async () => {
    const ca = await makeCa('t');
    const both = await signCert({ issuer: ca, subject: 'CN=dev:01@x, OU=pk1234', san: 'urn:thingauth:device:pk1234:dev:01@x' });
    const r = readPresentedLeaf([der(both.pem)]);
    assert.ok(r.ok);
    assert.deepEqual(r.leaf.identity, { productKey: 'pk1234', deviceName: 'dev:01@x' });
    const sanOnly = readPresentedLeaf([der((await signCert({ issuer: ca, subject: 'CN=whatever', san: 'urn:thingauth:device:pk1234:dev-02' })).pem)]);
    assert.ok(sanOnly.ok && sanOnly.leaf.identity.deviceName === 'dev-02');
    const split = readPresentedLeaf([der((await signCert({ issuer: ca, subject: 'CN=dev-03, OU=pk1234', san: 'urn:thingauth:device:pk1234:dev-04' })).pem)]);
    assert.ok(!split.ok && /subject and SAN name different devices/.test(split.reason));
    const invalid = readPresentedLeaf([der((await signCert({ issuer: ca, subject: 'CN=x', san: 'urn:thingauth:device:pk-bad!:d' })).pem)]);
    assert.ok(!invalid.ok && /does not name a valid ProductKey/.test(invalid.reason));
    const none = readPresentedLeaf([der((await signCert({ issuer: ca, subject: 'CN=printer' })).pem)]);
    assert.ok(!none.ok && none.namesNoDevice);
  });

  it('refuses garbage, oversized and too deep chains and weak keys before any trust decision', async () => {
    assert.ok(!readPresentedLeaf([]).ok);
    const g = readPresentedLeaf([Buffer.from('garbage')]);
    assert.ok(!g.ok && /cannot be parsed/.test(g.reason));
    const big = readPresentedLeaf([Buffer.alloc(MAX_CERT_BYTES + 1, 0x30)]);
    assert.ok(!big.ok && /at most 16384/.test(big.reason));
    const ca = await makeCa('t');
    const leaf = der((await signCert({ issuer: ca, subject: 'CN=dev-01, OU=pk1234' })).pem);
    const deep = readPresentedLeaf([leaf, leaf, leaf, leaf, leaf]);
    assert.ok(!deep.ok && /at most 4/.test(deep.reason) && deep.identity?.deviceName === 'dev-01');
    const weak = readPresentedLeaf([der((await signCert({ issuer: ca, subject: 'CN=dev-01, OU=pk1234', modulusLength: 1024 })).pem)]);
    assert.ok(!weak.ok && /1024 bits/.test(weak.reason));
  });

  it('verifies a chain to the product CA directly or through intermediates; foreign, expired and non-CA intermediates are refused', async () => {
    const now = new Date();
    const made = await generateDeviceCa('pk1234', now);
    const issued = await issueDeviceCertificate({ ca: made, id: { productKey: 'pk1234', deviceName: 'dev-01' }, validityDays: 1, now });
    const leaf = readPresentedLeaf([der(issued.certificate)]);
    assert.ok(leaf.ok);
    assert.deepEqual(verifyChainToCa(leaf.certs, made.certificate, Date.now()), { ok: true });
    const later = verifyChainToCa(leaf.certs, made.certificate, Date.now() + 2 * 86_400_000);
    assert.ok(!later.ok && later.problem === 'certificate-expired');
    const other = await generateDeviceCa('pk1234', now);
    const foreign = verifyChainToCa(leaf.certs, other.certificate, Date.now());
    assert.ok(!foreign.ok && foreign.problem === 'foreign-ca');
    const ca = await makeCa('customer');
    const mid = await signCert({ issuer: ca, subject: 'CN=mid', ca: true });
    const viaMid = await signCert({ issuer: { cert: mid.cert, keys: mid.keys }, subject: 'CN=dev-02, OU=pk1234' });
    const chain = readPresentedLeaf([der(viaMid.pem), der(mid.pem)]);
    assert.ok(chain.ok);
    assert.deepEqual(verifyChainToCa(chain.certs, ca.pem, Date.now()), { ok: true });
    const notCa = await signCert({ issuer: ca, subject: 'CN=not a ca' });
    const viaLeaf = await signCert({ issuer: { cert: notCa.cert, keys: notCa.keys }, subject: 'CN=dev-03, OU=pk1234' });
    const bad = readPresentedLeaf([der(viaLeaf.pem), der(notCa.pem)]);
    assert.ok(bad.ok);
    const r = verifyChainToCa(bad.certs, ca.pem, Date.now());
    assert.ok(!r.ok && /not a CA certificate/.test(r.reason));
  });

  it('reads a CSR only for the device it names, signed by its key, with a strong key', async () => {
    x509.cryptoProvider.set(webcrypto as unknown as Crypto);
    const keys = await keyPair();
    const csr = async (name: string, k = keys) => (await x509.Pkcs10CertificateRequestGenerator.create({ name, keys: k, signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } })).toString('pem');
    const id = { productKey: 'pk1234', deviceName: 'dev-01' };
    await readCsr(await csr('CN=dev-01, OU=pk1234'), id);
    await assert.rejects(readCsr(await csr('CN=dev-02, OU=pk1234'), id), /names dev-02&pk1234/);
    await assert.rejects(readCsr(await csr('CN=dev-01, OU=pk1234', await keyPair(1024)), id), /1024 bits/);
    await assert.rejects(readCsr('not a csr', id), /not a PEM PKCS#10/);
    await assert.rejects(readCsr('x'.repeat(70_000), id), /larger than/);
    // Another key's signature over this CSR's content: the signature does not verify.
    const good = new x509.Pkcs10CertificateRequest(await csr('CN=dev-01, OU=pk1234'));
    const raw = Buffer.from(good.rawData);
    raw[raw.length - 5] ^= 0xff;
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${raw.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await assert.rejects(readCsr(tampered, id), /signature does not verify|not a PEM/);
  });

  it('sends a CONNECT to the certificate path unless its certificate names no device and it carries a password', async () => {
    const ca = await makeCa('t');
    const named = der((await signCert({ issuer: ca, subject: 'CN=dev-01, OU=pk1234' })).pem);
    const anonymous = der((await signCert({ issuer: ca, subject: 'CN=printer' })).pem);
    assert.equal(presentsDeviceCertificate({ password: '' }), false);
    assert.equal(presentsDeviceCertificate({ clientCertChain: [named], password: 'abc' }), true);
    assert.equal(presentsDeviceCertificate({ clientCertChain: [anonymous], password: 'abc' }), false);
    assert.equal(presentsDeviceCertificate({ clientCertChain: [anonymous], password: '' }), true);
    assert.equal(presentsDeviceCertificate({ clientCertChain: [Buffer.from('junk')], password: 'abc' }), true);
  });
});
