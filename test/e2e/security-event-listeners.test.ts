/**
 * Issue 11 item 17: a RegistryEvents listener that throws (or rejects) must not turn an already
 * committed change into an HTTP 500, nor keep the listeners after it (the broker's kick, the
 * authenticator's cache drop) from running; its failure is logged with references only. And
 * no log line carries a secret at any nesting depth: code logs references, and the logger
 * redacts a record riding inside another object (`{ decision: { device } }`, an error's
 * `details.device`), which it did only one level down before.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Device } from '../../src/core/records.js';
import { connectClient, connectRefusal, createDevice, endClient, signedConnect, waitForClose } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('registry event listeners that fail (issue 11 item 17)', () => {
  let srv: TestServer;
  const secrets: string[] = [];
  /** The full records the failing listeners saw, to make their failures as leaky as possible. */
  let seen: Device | undefined;

  before(async () => {
    srv = await startTestServer();
    secrets.push(srv.adminToken);
  });
  after(async () => {
    await srv.stop();
  });

  function leaks(): string[] {
    return srv.logs.filter((l) => secrets.some((s) => l.includes(s)));
  }

  it('a throwing and a rejecting listener, placed first: the HTTP change answers 2xx, is committed, and the listeners after them still run', async () => {
    const { events } = srv.running.ctx.services;
    const dev = await createDevice(srv);
    const product = await srv.running.ctx.store.getProduct(dev.productKey);
    secrets.push(dev.deviceSecret, product!.productSecret);
    seen = (await srv.running.ctx.store.getDevice(dev.productKey, dev.deviceName))!;
    // A failure carrying the whole record, nested, as a careless listener would throw it.
    const thrower = () => {
      throw Object.assign(new Error('listener exploded'), { details: { device: seen }, device: seen });
    };
    const rejecter = async () => {
      throw Object.assign(new Error('async listener exploded'), { device: seen });
    };
    events.prependListener('device.changed', thrower);
    events.prependListener('device.disabled', rejecter);
    events.prependListener('device.disabled', thrower);
    events.prependListener('device.deleted', thrower);
    events.prependListener('product.changed', thrower);
    const laterCalls: string[] = [];
    events.on('device.disabled', (ref) => laterCalls.push(`disabled ${ref.deviceName}`));
    try {
      // The device is online: the broker's kick (a listener after ours) must still close it.
      const client = await connectClient(srv, 'mqtt', signedConnect(dev));
      const closed = waitForClose(client, 10_000);
      const disabled = await srv.request('POST', `/api/v1/products/${dev.productKey}/devices/${dev.deviceName}/disable`);
      assert.equal(disabled.status, 200, JSON.stringify(disabled.body));
      assert.equal(disabled.body.status, 'DISABLE');
      assert.equal((await srv.running.ctx.store.getDevice(dev.productKey, dev.deviceName))?.enabled, false, 'committed');
      assert.deepEqual(laterCalls, [`disabled ${dev.deviceName}`]);
      await closed;
      await endClient(client);
      // The authenticator dropped its cached record (a listener after ours): the login is refused now.
      assert.equal((await connectRefusal(srv, 'mqtt', signedConnect(dev))).code, 5);

      const patched = await srv.request('PATCH', `/api/v1/products/${dev.productKey}`, { description: 'changed under a failing listener' });
      assert.equal(patched.status, 200, JSON.stringify(patched.body));
      assert.equal((await srv.running.ctx.store.getProduct(dev.productKey))?.description, 'changed under a failing listener');

      const deleted = await srv.request('DELETE', `/api/v1/products/${dev.productKey}/devices/${dev.deviceName}`);
      assert.equal(deleted.status, 204, JSON.stringify(deleted.body));
      assert.equal(await srv.running.ctx.store.getDevice(dev.productKey, dev.deviceName), undefined, 'deleted');
    } finally {
      events.off('device.changed', thrower);
      events.off('device.disabled', rejecter);
      events.off('device.disabled', thrower);
      events.off('device.deleted', thrower);
      events.off('product.changed', thrower);
    }
    // Each failure is logged once as the listener's, with references, never the record.
    const failures = srv.logs.filter((l) => l.includes('registry event listener failed'));
    assert.ok(failures.some((l) => l.includes('async listener exploded')), 'the rejection is logged');
    assert.ok(failures.some((l) => l.includes('"event":"device.deleted"') && l.includes(`"deviceName":"${dev.deviceName}"`)), 'logged with the device reference');
    assert.deepEqual(leaks(), []);
  });

  it('a record nested two and three levels deep in a log object is redacted (the net under "log references, not records")', () => {
    assert.ok(seen, 'the previous test captured a record');
    const logger = srv.running.ctx.logger;
    const err = Object.assign(new Error('wrapped'), { details: { device: seen } });
    logger.info({ decision: { ok: false, device: seen } }, 'decision with its record');
    logger.warn({ outer: { decision: { device: seen } }, err }, 'deeper still');
    const lines = srv.logs.filter((l) => l.includes('decision with its record') || l.includes('deeper still'));
    assert.equal(lines.length, 2);
    assert.ok(lines.every((l) => l.includes('[redacted]')));
    assert.deepEqual(leaks(), []);
  });

  it('refused logins of an existing device (the decision holds its record) log no secret', async () => {
    const dev = await createDevice(srv);
    secrets.push(dev.deviceSecret);
    assert.equal((await connectRefusal(srv, 'mqtt', signedConnect({ ...dev, deviceSecret: 'WrongSecret00000000000000000000a' }))).code, 5);
    await srv.running.ctx.services.audit.flush();
    assert.ok(srv.logs.some((l) => l.includes('mqtt connect refused') && l.includes(dev.deviceName)));
    assert.deepEqual(leaks(), []);
  });
});
