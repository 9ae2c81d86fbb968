/**
 * The end of a rotation's grace (issue 16): a live MQTT session on the old certificate is closed
 * when the grace ends (within ~1 s), the new certificate keeps working, and the old one is
 * refused; across a restart the running grace is scheduled again, and a grace that ended while
 * the server was down is treated as ended (refused, and announced once at start).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, describe, it } from 'node:test';
import { endClient, waitForClose } from '../helpers/mqtt.js';
import { makeTempDir, startTestServer, type TestServer } from '../helpers/server.js';
import { certConnect, certRefusal, identityResponse, x509Device, x509Product, type X509Device } from './x509-helpers.js';

async function rotate(server: TestServer, d: X509Device, graceSeconds: number): Promise<{ cert: string; key: string; endsMs: number }> {
  const r = await server.request('POST', `/api/v1/products/${d.productKey}/devices/${d.deviceName}/certificates/rotate`, { graceSeconds });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const b = await server.request('GET', `/api/v1/products/${d.productKey}/devices/${d.deviceName}/certificate-bundle?serial=${r.body.serial}`);
  assert.equal(b.status, 200, JSON.stringify(b.body));
  return { cert: b.body.certificate, key: b.body.privateKey, endsMs: Date.parse(r.body.previousValidUntil) };
}

/** Resolves with the time the client's connection closed (rejects if not by `byMs`). */
function closedAt(client: Awaited<ReturnType<typeof certConnect>>, byMs: number): Promise<number> {
  return waitForClose(client, Math.max(1, byMs - Date.now())).then(() => Date.now());
}

describe('X.509 rotation grace end', () => {
  const dataDir = makeTempDir('thingauth-x509-grace-');
  let server: TestServer | undefined;
  after(async () => {
    await server?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('closes a live session on the old certificate when the grace ends; the new certificate logs in, the old is refused', async () => {
    server = await startTestServer({ loginFailThreshold: '0' }, { dataDir });
    const pk = await x509Product(server);
    const d = await x509Device(server, pk, 'grace-dev-01');
    const old = await certConnect(server, 'mqtts', { cert: d.cert, key: d.key });
    assert.deepEqual(await identityResponse(old), { productKey: pk, deviceName: d.deviceName });
    const fresh = await rotate(server, d, 3);
    const closed = closedAt(old, fresh.endsMs + 2_000);
    assert.ok(old.connected, 'the session on the old certificate serves during the grace');
    const at = await closed;
    assert.ok(at >= fresh.endsMs - 50, `closed ${fresh.endsMs - at} ms before the grace ended`);
    assert.ok(at - fresh.endsMs <= 1_000, `closed ${at - fresh.endsMs} ms after the grace ended`);
    await endClient(old);
    const now = await certConnect(server, 'mqtts', { cert: fresh.cert, key: fresh.key });
    assert.deepEqual(await identityResponse(now), { productKey: pk, deviceName: d.deviceName });
    assert.equal((await certRefusal(server, 'mqtts', { cert: d.cert, key: d.key })).code, 5);
    assert.ok(now.connected, 'the refused old certificate did not take the session over');
    await endClient(now);
    const audit = await server.request('GET', `/api/v1/audit?productKey=${pk}&deviceName=${d.deviceName}&limit=1`);
    assert.match(audit.body.items[0].reason, /revoked/);
  });

  it('after a restart: a running grace is scheduled again (its session closed at the end), and a grace that ended while down is refused and announced', async () => {
    const pk = await x509Product(server!);
    const running = await x509Device(server!, pk, 'grace-dev-02');
    const ended = await x509Device(server!, pk, 'grace-dev-03');
    const endedNew = await rotate(server!, ended, 1);
    const runningNew = await rotate(server!, running, 5);
    await server!.stop();
    server = undefined;
    // Down past the first grace.
    await new Promise((r) => setTimeout(r, Math.max(0, endedNew.endsMs + 100 - Date.now())));
    server = await startTestServer({ loginFailThreshold: '0' }, { dataDir });
    assert.ok(server.running.ctx.services.x509.pendingGraceEnds >= 1, 'the running grace has its timer again');
    const start = server.logs.map((l) => JSON.parse(l)).find((l) => l.event === 'x509.grace.start');
    assert.ok(start && start.announced >= 1 && start.scheduled >= 1, JSON.stringify(start));
    assert.equal((await certRefusal(server, 'mqtts', { cert: ended.cert, key: ended.key })).code, 5);
    await endClient(await certConnect(server, 'mqtts', { cert: endedNew.cert, key: endedNew.key }));
    // The old certificate of the running grace still logs in until its end, then its session is cut.
    assert.ok(Date.now() < runningNew.endsMs - 500, 'the restart took longer than the grace: test timing');
    const old = await certConnect(server, 'mqtts', { cert: running.cert, key: running.key });
    const at = await closedAt(old, runningNew.endsMs + 2_000);
    assert.ok(at >= runningNew.endsMs - 50 && at - runningNew.endsMs <= 1_000, `closed ${at - runningNew.endsMs} ms after the grace end`);
    await endClient(old);
    await endClient(await certConnect(server, 'mqtts', { cert: runningNew.cert, key: runningNew.key }));
  });
});
