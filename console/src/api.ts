/**
 * The console's only way to the management API. Shapes come from api-types.ts (generated
 * from the server's /openapi.json, `npm run console:types`), so a request or a response the
 * server does not document does not type-check.
 *
 * The bearer token lives in session.ts (memory only) and goes in the Authorization header,
 * never in a URL. A 401 on any call ends the session (expired or revoked token): session.ts
 * sends the operator back to sign-in with a message.
 */
import type { paths } from './api-types';
import { session } from './session';

export type Method = 'get' | 'post' | 'patch' | 'delete';
type Op<P extends keyof paths, M extends Method> = paths[P][M];
type PathOf<O> = O extends { parameters: { path: infer X } } ? ([X] extends [never | undefined] ? undefined : X) : undefined;
type QueryOf<O> = O extends { parameters: { query?: infer Q } } ? Q : undefined;
type BodyOf<O> = O extends { requestBody?: { content: { 'application/json': infer B } } } ? B : undefined;
type OkOf<R> = 200 extends keyof R ? R[200] : 201 extends keyof R ? R[201] : 202 extends keyof R ? R[202] : 204 extends keyof R ? R[204] : never;
type JsonOf<X> = X extends { content: { 'application/json': infer B } } ? B : null;

/** The JSON an operation answers with on success. */
export type Res<P extends keyof paths, M extends Method> = Op<P, M> extends { responses: infer R } ? JsonOf<OkOf<R>> : never;
/** The JSON body an operation takes. */
export type Req<P extends keyof paths, M extends Method> = BodyOf<Op<P, M>>;

export type Product = Res<'/api/v1/products/{productKey}', 'get'>;
export type ProductPatch = Req<'/api/v1/products/{productKey}', 'patch'>;
export type Device = Res<'/api/v1/products/{productKey}/devices/{deviceName}', 'get'>;
export type DeviceStatus = Device['status'];
export type AuditEntry = Res<'/api/v1/audit', 'get'>['items'][number];
export type ImportSummary = Res<'/api/v1/import/devices', 'post'>;

export interface CallOptions<P extends keyof paths, M extends Method> {
  path?: PathOf<Op<P, M>>;
  query?: QueryOf<Op<P, M>>;
  body?: BodyOf<Op<P, M>>;
  signal?: AbortSignal;
}

/** A refusal from the API: code and message as the server sent them, and the field at fault. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

export function buildUrl(template: string, pathParams?: object, query?: object): string {
  const params = (pathParams ?? {}) as Record<string, string | number>;
  let url = template.replace(/\{(\w+)\}/g, (_m, name: string) => {
    const v = params[name];
    if (v === undefined) throw new Error(`missing path parameter ${name}`);
    return encodeURIComponent(String(v));
  });
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries((query ?? {}) as Record<string, unknown>)) {
    // An empty value is left out, except an empty `cursor`: "the first page, by cursor".
    if (v === undefined || v === null || (v === '' && k !== 'cursor')) continue;
    q.set(k, String(v));
  }
  const qs = q.toString();
  if (qs) url += `?${qs}`;
  return url;
}

async function errorOf(res: Response): Promise<ApiError> {
  let body: { code?: unknown; message?: unknown; field?: unknown } = {};
  try {
    body = (await res.json()) as typeof body;
  } catch {
    /* not JSON */
  }
  return new ApiError(
    res.status,
    typeof body.code === 'string' ? body.code : `HTTP_${res.status}`,
    typeof body.message === 'string' ? body.message : res.statusText || `HTTP ${res.status}`,
    typeof body.field === 'string' ? body.field : undefined,
  );
}

/** fetch with the session's token; a 401 ends the session. Answers the raw Response. */
export async function authorizedFetch(url: string, init: RequestInit = {}): Promise<Response> {
  const token = session.token();
  if (!token) throw new ApiError(401, 'UNAUTHENTICATED', 'not signed in');
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${token}`);
  const res = await fetch(url, { ...init, headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' });
  if (res.status === 401) {
    const err = await errorOf(res);
    session.expire(err.message);
    throw err;
  }
  return res;
}

/** One typed API call: answers the parsed JSON or throws ApiError. */
export async function call<P extends keyof paths, M extends Method>(method: M, template: P, opts: CallOptions<P, M> = {}): Promise<Res<P, M>> {
  const init: RequestInit = { method: method.toUpperCase(), signal: opts.signal };
  if (opts.body !== undefined) {
    init.body = JSON.stringify(opts.body);
    init.headers = { 'content-type': 'application/json' };
  }
  const res = await authorizedFetch(buildUrl(template, opts.path, opts.query), init);
  if (!res.ok) throw await errorOf(res);
  if (res.status === 204) return null as Res<P, M>;
  return (await res.json()) as Res<P, M>;
}

/** A text body (CSV, JSON lines) to an import route, or a text download. */
export async function callText(method: 'GET' | 'POST', url: string, body?: string, contentType?: string, signal?: AbortSignal): Promise<Response> {
  const res = await authorizedFetch(url, { method, body, signal, headers: contentType ? { 'content-type': contentType } : {} });
  if (!res.ok) throw await errorOf(res);
  return res;
}
