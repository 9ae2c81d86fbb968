/** Management API reads that e2e tests use to check state the way an operator would. */
import assert from 'node:assert/strict';
import type { TestServer } from './server.js';

/** The device as GET /api/v1/products/{pk}/devices/{dn} shows it; anything but 200 fails the test. */
export async function apiDevice(server: TestServer, pk: string, dn: string): Promise<any> {
  const r = await server.request('GET', `/api/v1/products/${pk}/devices/${dn}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
}
