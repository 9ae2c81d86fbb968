/** Shared by the registration e2e tests: real HTTPS requests trusting the generated CA, signing. */
import fs from 'node:fs';
import https from 'node:https';
import { createHmac } from 'node:crypto';
import type { TestServer } from '../helpers/server.js';

export interface RawResponse {
  status: number;
  contentType: string | undefined;
  text: string;
  json: any;
}

export function caOf(server: TestServer): string {
  const p = server.running.ctx.tls.caPath;
  if (!p) throw new Error('test server has no generated CA');
  return fs.readFileSync(p, 'utf8');
}

export function deviceHttpsPort(server: TestServer): number {
  return server.running.listeners['device-https']!.port;
}

/** POST over real HTTPS (verifying the server certificate against the generated CA). */
export function httpsPost(server: TestServer, path: string, body: string, contentType: string, port = deviceHttpsPort(server)): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'POST',
        ca: caOf(server),
        servername: 'localhost',
        headers: { 'content-type': contentType, 'content-length': Buffer.byteLength(body), accept: 'text/xml,text/javascript,text/html,application/json' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: any;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

export function form(fields: Record<string, string>): string {
  return new URLSearchParams(fields).toString();
}

/** Spec 0.1 over deviceName, productKey, random with the ProductSecret, computed independently of src/. */
export function registrationSign(alg: 'md5' | 'sha1' | 'sha256', productSecret: string, productKey: string, deviceName: string, random: string): string {
  return createHmac(alg, productSecret).update(`deviceName${deviceName}productKey${productKey}random${random}`).digest('hex');
}

export function registerForm(productKey: string, deviceName: string, productSecret: string, random: string, signMethod = 'hmacsha256'): string {
  const alg = signMethod.toLowerCase().replace('hmac', '') as 'md5' | 'sha1' | 'sha256';
  return form({ productKey, deviceName, random, sign: registrationSign(alg, productSecret, productKey, deviceName, random), signMethod });
}

export function postRegister(server: TestServer, body: string, contentType = 'application/x-www-form-urlencoded'): Promise<RawResponse> {
  return httpsPost(server, '/auth/register/device', body, contentType);
}
