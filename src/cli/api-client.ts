/**
 * How the CLI reaches a running server: the management API over HTTP with the admin token.
 * Connection settings come from flags, then the environment, then the data dir, so
 * `thingauth device list ...` works unchanged on the machine the server runs on.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { ADMIN_TOKEN_FILE } from '../data-dir.js';

export const DEFAULT_URL = 'http://127.0.0.1:8080';

export interface ConnectionOptions {
  url?: string;
  token?: string;
  dataDir?: string;
}

export interface Connection {
  url: string;
  token: string;
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

export function resolveConnection(opts: ConnectionOptions, env: NodeJS.ProcessEnv = process.env): Connection {
  const url = (opts.url ?? env.THINGAUTH_URL ?? DEFAULT_URL).replace(/\/+$/, '');
  if (!/^https?:\/\//.test(url)) throw new Error(`--url must start with http:// or https://, got "${url}"`);
  let token = opts.token ?? env.THINGAUTH_ADMIN_TOKEN;
  if (!token) {
    const file = path.join(path.resolve(opts.dataDir ?? env.THINGAUTH_DATA_DIR ?? './data'), ADMIN_TOKEN_FILE);
    try {
      token = fs.readFileSync(file, 'utf8').trim();
    } catch {
      throw new Error(`no admin token: pass --token, set THINGAUTH_ADMIN_TOKEN, or point --data-dir at the server's data dir (${file} not readable)`);
    }
  }
  return { url, token };
}

export class ApiClient {
  constructor(readonly conn: Connection) {}

  private async send(method: string, urlPath: string, body?: unknown): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.conn.token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(this.conn.url + urlPath, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new Error(`cannot reach thingauth at ${this.conn.url} (${cause?.code ?? cause?.message ?? String(e)}); is the server running? Set --url or THINGAUTH_URL`);
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
