/**
 * How the CLI reaches a running server: the management API over HTTP or HTTPS with the admin
 * token. Connection settings come from flags, then the environment, then the data dir, so
 * `thingauth device list ...` works unchanged on the machine the server runs on. Over HTTPS
 * (THINGAUTH_MANAGEMENT_TLS) the server's certificate is checked against the system's CAs and
 * the data dir's generated CA (<dataDir>/tls/ca.pem), never skipped.
 */
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { Readable } from 'node:stream';
import tls from 'node:tls';
import { managementTlsEnabled } from '../config.js';
import { ADMIN_TOKEN_FILE } from '../data-dir.js';

export const DEFAULT_URL = 'http://127.0.0.1:8080';
/** The default with the management API on TLS (THINGAUTH_MANAGEMENT_TLS=on, or auto with a non-loopback THINGAUTH_MANAGEMENT_HOST). */
export const DEFAULT_TLS_URL = 'https://127.0.0.1:8080';
/** Where the server writes the CA of its generated certificate, under the data dir. */
const DATA_DIR_CA = path.join('tls', 'ca.pem');

export interface ConnectionOptions {
  url?: string;
  token?: string;
  dataDir?: string;
}

export interface Connection {
  url: string;
  token: string;
  /** PEM of the CAs an https URL is checked against (system CAs plus the data dir's), when https. */
  ca?: string[];
}

/** A refusal from the server, carrying its {code, message}. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly body?: unknown,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The URL when none is given: https when this environment's server settings put the API on TLS. */
export function defaultUrl(env: NodeJS.ProcessEnv): string {
  const mode = (env.THINGAUTH_MANAGEMENT_TLS ?? 'auto').toLowerCase();
  const onTls = (mode === 'on' || mode === 'off' || mode === 'auto') && managementTlsEnabled({ managementTls: mode, managementHost: env.THINGAUTH_MANAGEMENT_HOST || '127.0.0.1' });
  return onTls ? DEFAULT_TLS_URL : DEFAULT_URL;
}

export function resolveConnection(opts: ConnectionOptions, env: NodeJS.ProcessEnv = process.env): Connection {
  const url = (opts.url ?? env.THINGAUTH_URL ?? defaultUrl(env)).replace(/\/+$/, '');
  if (!/^https?:\/\//.test(url)) throw new Error(`--url must start with http:// or https://, got "${url}"`);
  const dataDir = path.resolve(opts.dataDir ?? env.THINGAUTH_DATA_DIR ?? './data');
  let ca: string[] | undefined;
  if (url.startsWith('https://')) {
    ca = [...tls.rootCertificates];
    try {
      ca.push(fs.readFileSync(path.join(dataDir, DATA_DIR_CA), 'utf8'));
    } catch {
      /* no generated CA here: the system's CAs only */
    }
  }
  let token = opts.token ?? env.THINGAUTH_ADMIN_TOKEN;
  if (!token) {
    const file = path.join(dataDir, ADMIN_TOKEN_FILE);
    try {
      token = fs.readFileSync(file, 'utf8').trim();
    } catch {
      throw new Error(`no admin token: pass --token, set THINGAUTH_ADMIN_TOKEN, or point --data-dir at the server's data dir (${file} not readable)`);
    }
  }
  return { url, token, ...(ca ? { ca } : {}) };
}

/**
 * fetch() for an https URL with our own trust list (Node's fetch takes no CA option): the
 * response as a web Response, its body streamed.
 */
export interface FetchInit {
  method: string;
  headers: Record<string, string>;
  /** Text, or chunks streamed as they come (an import file). */
  body?: string | AsyncIterable<Uint8Array>;
}

/** fetch() the way this connection needs: Node's own for http, ours (with the CA list) for https. */
export function connectionFetch(conn: Connection, url: string, init: FetchInit): Promise<Response> {
  if (conn.ca) return httpsFetch(url, init, conn.ca);
  const body = typeof init.body === 'string' || init.body === undefined ? init.body : (init.body as unknown as BodyInit);
  return fetch(url, { method: init.method, headers: init.headers, body, ...(typeof init.body === 'object' ? { duplex: 'half' } : {}) } as RequestInit);
}

function httpsFetch(url: string, init: FetchInit, ca: string[]): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: init.method, headers: init.headers, ca }, (res) => {
      const headers = new Headers();
      for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
      const status = res.statusCode ?? 500;
      const noBody = status === 204 || status === 304 || init.method === 'HEAD';
      if (noBody) res.resume();
      const body = noBody ? null : (Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>);
      resolve(new Response(body, { status, statusText: res.statusMessage ?? '', headers }));
    });
    req.on('error', (e) => reject(Object.assign(new Error('fetch failed'), { cause: e })));
    const body = init.body;
    if (body === undefined || typeof body === 'string') {
      if (body !== undefined) req.write(body);
      req.end();
      return;
    }
    Readable.from(body).on('error', (e) => req.destroy(e)).pipe(req);
  });
}

export class ApiClient {
  constructor(readonly conn: Connection) {}

  private async send(method: string, urlPath: string, body?: unknown): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.conn.token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      const init = { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) };
      res = await connectionFetch(this.conn, this.conn.url + urlPath, init);
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      const code = cause?.code ?? cause?.message ?? String(e);
      // A plain request to a TLS listener is cut off at once (socket hang up / reset).
      const hint = this.conn.url.startsWith('http://') && /ECONNRESET|UND_ERR_SOCKET|other side closed|socket hang up/i.test(`${code} ${cause?.message ?? ''}`)
        ? ' If the management API runs with TLS (THINGAUTH_MANAGEMENT_TLS), use an https:// URL.'
        : '';
      throw new Error(`cannot reach thingauth at ${this.conn.url} (${code}); is the server running? Set --url or THINGAUTH_URL.${hint}`);
    }
    if (!res.ok) {
      const text = await res.text();
      let parsed: { code?: string; message?: string } | undefined;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* not JSON */
      }
      throw new ApiError(res.status, parsed?.code ?? `HTTP_${res.status}`, parsed?.message ?? (text.slice(0, 200) || res.statusText), parsed);
    }
    return res;
  }

  async request<T = any>(method: string, urlPath: string, body?: unknown): Promise<T> {
    const res = await this.send(method, urlPath, body);
    if (res.status === 204) return undefined as T;
    return (await res.json()) as T;
  }

  /** The response body as a node stream (large downloads such as the credentials export). */
  async download(urlPath: string): Promise<Readable> {
    const res = await this.send('GET', urlPath);
    if (!res.body) return Readable.from([]);
    return Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
  }
}

/** `/api/v1/products/{pk}` with each segment escaped (DeviceNames may hold `:` and `@`). */
export function apiPath(...segments: string[]): string {
  return '/api/v1/' + segments.map(encodeURIComponent).join('/');
}
