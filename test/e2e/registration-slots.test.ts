/**
 * Pre-registration-free: up to five physical devices per DeviceName (spec 3.2, issue 12
 * item 2), over real MQTTS with mqtt.js, state read through the management API and the CLI.
 *
 * The rule under test (README "Pre-registration-free over MQTT"): a slot issued by regnwl and
 * not yet used by a connwl login is answered again to whoever asks (a retry and a second
 * physical device cannot be told apart before activation); once a connwl login used it, the
 * next regnwl gets a new slot; after five activated slots regnwl is refused with CONNACK 4
 * (audited "all 5 pre-registration-free slots ... are activated"). Each token logs in only with
 * its own ClientID; one session per DeviceName (a login on another slot takes over).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { apiDevice } from '../helpers/api.js';
import { connectClient, connectRefusal, endClient, eventually, waitForClose } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { mqttRegistration, registrationConnect, type RegistrationOutcome } from './registration-helpers.js';

const PS = 'PsRegSlots123456';
const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

interface Cred {
  clientId: string;
  deviceToken: string;
}

describe('regnwl: up to five physical devices per DeviceName', () => {
  let server: TestServer;
  let pk: string;

  before(async () => {
    // The concurrency case stands for many physical devices on one address: no per-source caps.
    server = await startTestServer({ mqttPendingPerSource: '0', registrationRatePerSourcePerSecond: '0' });
    pk = (await server.running.ctx.services.registry.createProduct({ productName: 'five slots', dynamicRegistration: true, preRegistrationFree: true, productSecret: PS })).productKey;
  });
  after(async () => {
    await server.stop();
  });

  /** One regnwl connection to its end; `i` makes the (free) MQTT ClientId distinct per physical device. */
  const regnwl = (dn: string, i = 0): Promise<RegistrationOutcome> =>
    mqttRegistration(server, 'mqtts', registrationConnect({ productKey: pk, productSecret: PS, deviceName: dn, authType: 'regnwl', clientId: `phys-${i}` }), { timeoutMs: 60_000 });

  const credOf = (r: RegistrationOutcome): Cred => {
    assert.equal(r.accepted, true, `regnwl refused with ${r.code}`);
    assert.equal(r.messages[0]?.topic, '/ext/regnwl', JSON.stringify(r.messages));
    const body = JSON.parse(r.messages[0]!.payload);
    return { clientId: body.clientId, deviceToken: body.deviceToken };
  };

  const connwl = (dn: string, c: Cred) => ({ clientId: `${c.clientId}|securemode=-2,authType=connwl|`, username: `${dn}&${pk}`, password: c.deviceToken });

  /** Logs in once with the credential (activating its slot) and disconnects. */
  const activate = async (dn: string, c: Cred): Promise<void> => {
    await endClient(await connectClient(server, 'mqtts', connwl(dn, c)));
  };

  const slotsOf = async (dn: string): Promise<any> => {
    const r = await server.request('GET', `/api/v1/products/${pk}/devices/${dn}/slots`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body;
  };

  it('five physical devices in turn: each regnwl + connwl gets its own ClientID/DeviceToken and logs in; the sixth is refused with CONNACK 4', async () => {
    const dn = 'five-in-turn';
    const creds: Cred[] = [];
    for (let i = 1; i <= 5; i++) {
      const c = credOf(await regnwl(dn, i));
      // Before its connwl login a slot is answered again (a retry of the same device).
      assert.deepEqual(credOf(await regnwl(dn, i)), c, `slot ${i}: a retry before activation gets the same credential`);
      await activate(dn, c);
      creds.push(c);
    }
    assert.equal(new Set(creds.map((c) => c.clientId)).size, 5, 'five distinct ClientIDs');
    assert.equal(new Set(creds.map((c) => c.deviceToken)).size, 5, 'five distinct DeviceTokens');
    const sixth = await regnwl(dn, 6);
    assert.deepEqual([sixth.accepted, sixth.code, sixth.messages.length], [false, 4, 0]);
    await server.settle();
    const denied = await server.running.ctx.store.queryAudit({ productKey: pk, deviceName: dn, action: 'regnwl.mqtt' });
    assert.ok(
      denied.some((e) => e.result === 'deny' && /all 5 pre-registration-free slots of device five-in-turn are activated/.test(e.reason ?? '')),
      'the refusal says why',
    );
    // Every one of the five still logs in (each with its own token on its own ClientID).
    for (const c of creds) await activate(dn, c);
    const listed = await slotsOf(dn);
    assert.equal(listed.maxSlots, 5);
    assert.deepEqual(
      listed.items.map((s: any) => [s.slot, s.status, s.clientId]),
      creds.map((c, i) => [i + 1, 'ACTIVE', c.clientId]),
    );
    for (const c of creds) assert.ok(!JSON.stringify(listed).includes(c.deviceToken), 'the list never holds a token');
  });

  it('a token logs in only with its own ClientID: slot 1 token with slot 2 ClientID, and the reverse, are refused (CONNACK 5)', async () => {
    const dn = 'own-client-id';
    const a = credOf(await regnwl(dn, 1));
    await activate(dn, a);
    const b = credOf(await regnwl(dn, 2));
    await activate(dn, b);
    assert.equal((await connectRefusal(server, 'mqtts', connwl(dn, { clientId: b.clientId, deviceToken: a.deviceToken }))).code, 5);
    assert.equal((await connectRefusal(server, 'mqtts', connwl(dn, { clientId: a.clientId, deviceToken: b.deviceToken }))).code, 5);
    await activate(dn, a);
    await activate(dn, b);
  });

  it('one session per DeviceName: a login on another slot takes the session over; presence is the device\'s', async () => {
    const dn = 'takeover-slots';
    const a = credOf(await regnwl(dn, 1));
    const ca = await connectClient(server, 'mqtts', connwl(dn, a));
    const b = credOf(await regnwl(dn, 2));
    assert.notEqual(b.deviceToken, a.deviceToken, 'slot 1 is in use: slot 2 is issued');
    const aClosed = waitForClose(ca);
    const cb = await connectClient(server, 'mqtts', connwl(dn, b));
    try {
      await aClosed;
      await eventually(async () => (await apiDevice(server, pk, dn)).status === 'ONLINE');
      await server.settle();
      assert.equal((await apiDevice(server, pk, dn)).status, 'ONLINE', 'the device stays ONLINE across the takeover');
      assert.equal(cb.connected, true);
    } finally {
      await endClient(ca);
      await endClient(cb);
    }
    await eventually(async () => (await apiDevice(server, pk, dn)).status === 'OFFLINE');
  });

  it('20 concurrent regnwl: on a fresh name all get slot 1; after each activation 20 more all get the next slot; never more than five slots', async (t) => {
    const dn = 'twenty-racing';
    const race = (base: number) => Promise.all(Array.from({ length: 20 }, (_, i) => regnwl(dn, base + i)));
    const seen = new Set<string>();
    for (let slot = 1; slot <= 4; slot++) {
      const results = await race(slot * 100);
      const answers = results.filter((r) => r.messages.length > 0).map((r) => JSON.stringify(credOf(r)));
      for (const r of results) assert.ok(r.accepted || r.code === 3, `only accepted or server-busy refusals: ${r.code}`);
      assert.ok(answers.length >= 1);
      assert.equal(new Set(answers).size, 1, `slot ${slot}: every racing device got the same (unactivated) slot`);
      seen.add(answers[0]!);
      assert.equal(seen.size, slot, 'a new slot only after the previous one was activated');
      await activate(dn, JSON.parse(answers[0]!));
    }
    // Four slots active, the fifth not yet issued: 20 race, and the first answer logs in (activates
    // slot 5) while the second wave is still racing. Whatever the interleaving, every answer is
    // slot 5's credential and every refusal is CONNACK 4 (full): a sixth slot is never issued.
    const firstWave = Array.from({ length: 10 }, (_, i) => regnwl(dn, 500 + i));
    const first = await Promise.any(
      firstWave.map(async (p) => {
        const r = await p;
        if (r.messages.length === 0) throw new Error(`not answered: ${r.code}`);
        return credOf(r);
      }),
    );
    const firstAnswer = JSON.stringify(first);
    const secondWave = Array.from({ length: 10 }, (_, i) => regnwl(dn, 600 + i));
    await activate(dn, first);
    const last = await Promise.all([...firstWave, ...secondWave]);
    for (const r of last) {
      if (r.messages.length > 0) assert.equal(JSON.stringify(credOf(r)), firstAnswer, 'only slot 5 is ever answered');
      else assert.ok(!r.accepted && (r.code === 4 || r.code === 3), `refused with ${r.code}`);
    }
    t.diagnostic(`after four active: ${last.filter((r) => r.messages.length > 0).length} answered with slot 5, ${last.filter((r) => r.code === 4).length} refused as full`);
    seen.add(firstAnswer);
    assert.equal(seen.size, 5);
    // Now full: 20 more are all refused, nothing is issued.
    const full = await race(700);
    for (const r of full) assert.deepEqual([r.accepted, r.code, r.messages.length], [false, 4, 0]);
    const listed = await slotsOf(dn);
    assert.deepEqual(listed.items.map((s: any) => [s.slot, s.status]), [1, 2, 3, 4, 5].map((n) => [n, 'ACTIVE']));
    assert.deepEqual(new Set(listed.items.map((s: any) => s.clientId)), new Set([...seen].map((a) => JSON.parse(a).clientId)));
    // The refusals were settings, not wrong credentials: this source is not throttled.
    await activate(dn, JSON.parse(firstAnswer));
  });

  it('revoke one slot (API and CLI): its session is closed, its token refused, other slots untouched; the number is reused by the next regnwl', async () => {
    const dn = 'revoke-slot';
    const s1 = credOf(await regnwl(dn, 1));
    await activate(dn, s1);
    const s2 = credOf(await regnwl(dn, 2));
    await activate(dn, s2);
    const live = await connectClient(server, 'mqtts', connwl(dn, s1));
    try {
      // Revoking slot 2 leaves the session on slot 1 alone.
      const r2 = await server.request('POST', `/api/v1/products/${pk}/devices/${dn}/slots/2/revoke`);
      assert.equal(r2.status, 200, JSON.stringify(r2.body));
      assert.equal(r2.body.status, 'REVOKED');
      assert.equal(r2.body.slot, 2);
      assert.ok(!JSON.stringify(r2.body).includes(s2.deviceToken));
      assert.equal((await connectRefusal(server, 'mqtts', connwl(dn, s2))).code, 5, 'the revoked token is refused');
      await server.settle();
      assert.equal(live.connected, true, 'the session on slot 1 is untouched');
      assert.equal((await apiDevice(server, pk, dn)).status, 'ONLINE');

      // Revoking slot 1 through the CLI closes the session running on it.
      const closed = waitForClose(live, 10_000);
      const out = await runCli(['device', 'revoke-slot', pk, dn, '1']);
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stdout, /REVOKED/);
      await closed;
      assert.equal((await connectRefusal(server, 'mqtts', connwl(dn, s1))).code, 5);
    } finally {
      await endClient(live);
    }
    const text = await runCli(['device', 'slots', pk, dn]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /REVOKED/);
    assert.ok(!text.stdout.includes(s1.deviceToken) && !text.stdout.includes(s2.deviceToken));

    // Bad input: a slot out of range (CLI and API), a slot never issued, an unknown device.
    const bad = await runCli(['device', 'revoke-slot', pk, dn, '6']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /1 to 5/);
    assert.equal((await server.request('POST', `/api/v1/products/${pk}/devices/${dn}/slots/0/revoke`)).status, 400);
    assert.equal((await server.request('POST', `/api/v1/products/${pk}/devices/${dn}/slots/x/revoke`)).status, 400);
    const never = await server.request('POST', `/api/v1/products/${pk}/devices/${dn}/slots/4/revoke`);
    assert.equal(never.status, 404);
    assert.equal((await server.request('GET', `/api/v1/products/${pk}/devices/no-such-dev/slots`)).status, 404);

    // Both numbers are free again: the next regnwl gets slot 1 with a new credential.
    const fresh = credOf(await regnwl(dn, 3));
    assert.ok(fresh.deviceToken !== s1.deviceToken && fresh.clientId !== s1.clientId);
    await activate(dn, fresh);
    const listed = await slotsOf(dn);
    assert.deepEqual(listed.items.map((s: any) => [s.slot, s.status]), [[1, 'ACTIVE'], [2, 'REVOKED']]);
    assert.equal(listed.items[0].clientId, fresh.clientId);
  });

  it('reset clears every slot: the live session ends, every token is refused, the next regnwl starts at slot 1', async () => {
    const dn = 'reset-slots';
    const creds: Cred[] = [];
    for (let i = 1; i <= 3; i++) {
      creds.push(credOf(await regnwl(dn, i)));
      await activate(dn, creds[i - 1]!);
    }
    const live = await connectClient(server, 'mqtts', connwl(dn, creds[2]!));
    const closed = waitForClose(live);
    const r = await server.request('POST', `/api/v1/products/${pk}/devices/${dn}/reset`);
    assert.equal(r.status, 200);
    await closed;
    await endClient(live);
    assert.deepEqual((await slotsOf(dn)).items, []);
    for (const c of creds) assert.equal((await connectRefusal(server, 'mqtts', connwl(dn, c))).code, 5);
    const fresh = credOf(await regnwl(dn, 9));
    assert.ok(!creds.some((c) => c.deviceToken === fresh.deviceToken));
    assert.deepEqual((await slotsOf(dn)).items.map((s: any) => [s.slot, s.status]), [[1, 'ISSUED']]);
  });

  function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('THINGAUTH_') && v !== undefined) env[k] = v;
    return new Promise((resolve) => {
      execFile(process.execPath, [CLI, ...args, '--url', server.api, '--token', server.adminToken], { env }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
        resolve({ code, stdout, stderr });
      });
    });
  }
});
