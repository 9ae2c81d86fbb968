/** Shared by the X.509 e2e tests: an x509 product and device, and real mqtt.js clients presenting certificates. */
import { webcrypto } from 'node:crypto';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import * as x509 from '@peculiar/x509';
import { listenerUrl, type ListenerName, refusalAt } from '../helpers/mqtt.js';
import type { TestServer } from '../helpers/server.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export interface CertLogin {
  cert: string;
  key: string;
  clientId?: string;
  username?: string;
  password?: string;
  keepalive?: number;
  protocolVersion?: 4 | 5;
}

export async function x509Product(server: TestServer, body: Record<string, unknown> = {}): Promise<string> {
  const p = await server.request('POST', '/api/v1/products', { productName: 'x509 product', authMode: 'x509', ...body });
  if (p.status !== 201 || p.body.authMode !== 'x509') throw new Error(`product: ${p.status} ${JSON.stringify(p.body)}`);
  return p.body.productKey as string;
}

export interface X509Device {
  productKey: string;
  deviceName: string;
  serial: string;
  cert: string;
  key: string;
  ca: string;
}

export async function x509Device(server: TestServer, productKey: string, deviceName?: string, keyAlgorithm?: string): Promise<X509Device> {
  const c = await server.request('POST', `/api/v1/products/${productKey}/devices`, { ...(deviceName ? { deviceName } : {}), ...(keyAlgorithm ? { keyAlgorithm } : {}) });
  if (c.status !== 201) throw new Error(`device: ${c.status} ${JSON.stringify(c.body)}`);
  const b = await server.request('GET', `/api/v1/products/${productKey}/devices/${c.body.deviceName}/certificate-bundle`);
  if (b.status !== 200) throw new Error(`bundle: ${b.status} ${JSON.stringify(b.body)}`);
  return { productKey, deviceName: c.body.deviceName, serial: b.body.serial, cert: b.body.certificate, key: b.body.privateKey, ca: b.body.caCertificate };
}

function options(server: TestServer, which: ListenerName, l: CertLogin): { url: string; opts: IClientOptions } {
  const { url, tls } = listenerUrl(server, which);
  return {
    url,
    opts: {
      ...tls,
      cert: l.cert,
      key: l.key,
      clientId: l.clientId ?? '.|securemode=2|',
      username: l.username ?? '',
      password: l.password ?? '',
      keepalive: l.keepalive ?? 60,
      protocolVersion: l.protocolVersion ?? 4,
      reconnectPeriod: 0,
      connectTimeout: 5_000,
    },
  };
}

const identities = new WeakMap<MqttClient, Promise<unknown>>();

/** What the server sent on /ext/auth/identity/response to a client of certConnect (rejects after ms). */
export function identityResponse(client: MqttClient, ms = 3_000): Promise<unknown> {
  const p = identities.get(client) ?? Promise.reject(new Error('not a certConnect client'));
  return Promise.race([p, new Promise((_, reject) => setTimeout(() => reject(new Error(`no identity response within ${ms} ms`)), ms).unref())]);
}

/** Connects and resolves once CONNACK 0 arrived (the client already listens for messages). */
export function certConnect(server: TestServer, which: ListenerName, l: CertLogin): Promise<MqttClient> {
  const { url, opts } = options(server, which, l);
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, opts);
    // The identity response can arrive in the same read as CONNACK: kept from the start.
    const identity = new Promise<unknown>((res) => client.on('message', (topic, payload) => topic === '/ext/auth/identity/response' && res(JSON.parse(payload.toString()))));
    identities.set(client, identity);
    const fail = (err: Error) => {
      client.end(true);
      reject(err);
    };
    client.once('connect', () => {
      client.off('error', fail);
      resolve(client);
    });
    client.once('error', fail);
    client.once('close', () => fail(new Error('closed before CONNACK')));
  });
}

/** Connects expecting a refusal: the CONNACK code (undefined when the socket closed without one). */
export async function certRefusal(server: TestServer, which: ListenerName, l: CertLogin): Promise<{ code: number | undefined }> {
  const { url, opts } = options(server, which, l);
  return { code: (await refusalAt(url, opts)).code };
}

const RSA = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 } as const;

export async function keyPair(modulusLength = 2048): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey({ ...RSA, modulusLength }, true, ['sign', 'verify'])) as unknown as CryptoKeyPair;
}

export async function pkcs8(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key as webcrypto.CryptoKey));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END PRIVATE KEY-----\n`;
}

/** A CA of our own (as a customer, or an attacker, would make one). */
export async function makeCa(name: string): Promise<{ cert: x509.X509Certificate; keys: CryptoKeyPair; pem: string }> {
  const keys = await keyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '0a' + Buffer.from(webcrypto.getRandomValues(new Uint8Array(8))).toString('hex'),
    name: `CN=${name}`,
    notBefore: new Date(Date.now() - 86_400_000),
    notAfter: new Date(Date.now() + 365 * 86_400_000),
    keys,
    signingAlgorithm: RSA,
    extensions: [new x509.BasicConstraintsExtension(true, 2, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
  });
  return { cert, keys, pem: cert.toString('pem') + '\n' };
}

/** A certificate signed by `issuer` (subject and SAN as thingauth names devices unless given). */
export async function signCert(opts: {
  issuer: { cert: x509.X509Certificate; keys: CryptoKeyPair };
  subject: string;
  san?: string;
  publicKey?: CryptoKey;
  notBefore?: Date;
  notAfter?: Date;
  ca?: boolean;
  modulusLength?: number;
}): Promise<{ cert: x509.X509Certificate; pem: string; keys: CryptoKeyPair; keyPem: string }> {
  const keys = opts.publicKey ? ({ publicKey: opts.publicKey } as CryptoKeyPair) : await keyPair(opts.modulusLength ?? 2048);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '0b' + Buffer.from(webcrypto.getRandomValues(new Uint8Array(8))).toString('hex'),
    subject: opts.subject,
    issuer: opts.issuer.cert.subject,
    notBefore: opts.notBefore ?? new Date(Date.now() - 60_000),
    notAfter: opts.notAfter ?? new Date(Date.now() + 30 * 86_400_000),
    signingKey: opts.issuer.keys.privateKey,
    publicKey: keys.publicKey,
    signingAlgorithm: RSA,
    extensions: [
      new x509.BasicConstraintsExtension(opts.ca ?? false, undefined, true),
      ...(opts.san ? [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: opts.san }])] : []),
    ],
  });
  return { cert, pem: cert.toString('pem') + '\n', keys, keyPem: keys.privateKey ? await pkcs8(keys.privateKey) : '' };
}

export function deviceSubject(productKey: string, deviceName: string): { subject: string; san: string } {
  return { subject: `CN=${deviceName}, OU=${productKey}`, san: `urn:thingauth:device:${productKey}:${deviceName}` };
}
