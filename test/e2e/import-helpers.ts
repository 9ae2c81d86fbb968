/** Shared by the import e2e tests: upload a file to /api/v1/import/{kind} over real HTTP. */
import type { ImportSummary } from '../../src/services/importer.js';
import type { TestServer } from '../helpers/server.js';

export interface ImportResponse {
  status: number;
  /** The summary on 200, {code, message} otherwise. */
  body: ImportSummary & { code?: string; message?: string; field?: string };
}

export const CSV = 'text/csv; charset=utf-8';
export const JSONL = 'application/x-ndjson';

/** POSTs a file body (string, bytes, or an async iterable streamed with duplex: 'half'). */
export async function importFile(
  server: TestServer,
  kind: 'products' | 'devices',
  body: string | Uint8Array | AsyncIterable<Uint8Array>,
  opts: { contentType?: string; query?: Record<string, string> } = {},
): Promise<ImportResponse> {
  const q = new URLSearchParams(opts.query ?? {}).toString();
  const streamed = typeof body !== 'string' && !(body instanceof Uint8Array);
  const res = await fetch(`${server.api}/api/v1/import/${kind}${q ? '?' + q : ''}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': opts.contentType ?? CSV },
    body: body as BodyInit,
    ...(streamed ? { duplex: 'half' } : {}),
  } as RequestInit);
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) };
}

/** JSON lines of objects. */
export function jsonl(rows: object[]): string {
  return rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
}

export async function exportDevices(server: TestServer, productKey: string): Promise<{ status: number; contentType: string | null; text: string }> {
  const res = await fetch(`${server.api}/api/v1/export/products/${productKey}/devices?format=jsonl`, { headers: { authorization: `Bearer ${server.adminToken}` } });
  return { status: res.status, contentType: res.headers.get('content-type'), text: await res.text() };
}

export async function exportProducts(server: TestServer): Promise<{ status: number; text: string }> {
  const res = await fetch(`${server.api}/api/v1/export/products?format=jsonl`, { headers: { authorization: `Bearer ${server.adminToken}` } });
  return { status: res.status, text: await res.text() };
}

/** Everything about the device the store keeps that an import may set, for before/after comparisons. */
export async function deviceSnapshot(server: TestServer, productKey: string) {
  const out: Record<string, unknown>[] = [];
  for (let after: string | null = null; ; ) {
    const page = await server.running.ctx.store.listDevicesAfter(productKey, after, 1000);
    for (const d of page) out.push({ deviceName: d.deviceName, deviceSecret: d.deviceSecret, iotId: d.iotId, nickname: d.nickname, activatedAt: d.activatedAt, enabled: d.enabled });
    if (page.length < 1000) return out;
    after = page[page.length - 1]!.deviceName;
  }
}
