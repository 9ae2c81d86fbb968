/**
 * A raw POST to the test server's device HTTPS listener over real TLS, verifying the server
 * certificate against the generated CA. Never throws on the answer: status, headers and body
 * come back as they are (json is undefined when the body is not JSON) so tests can check
 * refusals too.
 */
import https from 'node:https';
import { caOf } from './mqtt.js';
import type { TestServer } from './server.js';

export interface HttpsAnswer {
  status: number;
  contentType: string | undefined;
  text: string;
  json: any;
}

export function deviceHttpsPort(server: TestServer): number {
  return server.running.listeners['device-https']!.port;
}

export interface DevicePostOptions {
  /** Another port on the same server (e.g. a second HTTPS listener); default device-https. */
  port?: number;
  /** The local address to send from (the throttle tests use 127.0.0.x as distinct sources). */
  localAddress?: string;
}

export function deviceHttpsPost(server: TestServer, path: string, body: string | Buffer, headers: Record<string, string>, opts: DevicePostOptions = {}): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: opts.port ?? deviceHttpsPort(server),
        path,
        method: 'POST',
        ca: caOf(server),
        servername: 'localhost',
        ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}),
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
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
