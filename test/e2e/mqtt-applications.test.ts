/**
 * Application credentials end to end: created through the management API and the CLI
 * (real HTTP, real child process), used over MQTT, deleted (sessions closed). The secret is
 * shown once and never listed.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connectClient, connectRefusal, createDevice, endClient, nextMessage, signedConnect, subscribe, waitForClose } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function cli(server: TestServer, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args, '--url', server.api, '--token', server.adminToken], { timeout: 20_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('applications: API, CLI and MQTT access', () => {
  let server: TestServer;
  let pk: string;

  before(async () => {
    server = await startTestServer();
    pk = (await createDevice(server)).productKey;
  });
  after(async () => {
    await server.stop();
  });

  it('creates through the API (secret once), lists and gets without the secret', async () => {
    const created = await server.request('POST', '/api/v1/applications', { name: 'dashboard', productKeys: [pk] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(typeof created.body.appSecret, 'string');
    assert.deepEqual(created.body.productKeys, [pk]);
    const list = await server.request('GET', '/api/v1/applications');
    assert.equal(list.status, 200);
    const mine = list.body.items.find((a: { appKey: string }) => a.appKey === created.body.appKey);
    assert.ok(mine);
    assert.ok(!('appSecret' in mine));
    assert.ok(!JSON.stringify(list.body).includes(created.body.appSecret));
    const one = await server.request('GET', `/api/v1/applications/${created.body.appKey}`);
    assert.equal(one.status, 200);
    assert.ok(!('appSecret' in one.body));
  });

  it('refuses bad input with 4xx naming the field and writes nothing', async () => {
    const before = (await server.request('GET', '/api/v1/applications')).body.items.length;
    const unknownProduct = await server.request('POST', '/api/v1/applications', { name: 'x', productKeys: ['a1NoSuchPK00'] });
    assert.equal(unknownProduct.status, 404);
    assert.equal(unknownProduct.body.field, 'productKeys[0]');
    const empty = await server.request('POST', '/api/v1/applications', { name: 'x', productKeys: [] });
    assert.equal(empty.status, 400);
    assert.match(empty.body.message, /productKeys/);
    const extra = await server.request('POST', '/api/v1/applications', { name: 'x', productKeys: [pk], appSecret: 'chosen' });
    assert.equal(extra.status, 400);
    const badName = await server.request('POST', '/api/v1/applications', { name: 'x/y', productKeys: [pk] });
    assert.equal(badName.status, 400);
    assert.equal(badName.body.field, 'name');
    assert.equal((await server.request('GET', '/api/v1/applications')).body.items.length, before);
    assert.equal((await server.request('GET', '/api/v1/applications/appNope')).status, 404);
    assert.equal((await server.request('DELETE', '/api/v1/applications/appNope')).status, 404);
    assert.equal((await server.request('GET', '/api/v1/applications', undefined, null)).status, 401);
  });

  it('CLI: app create/list/get/delete against the running server', async () => {
    const created = await cli(server, ['app', 'create', 'cli-app', '--product', pk, '--json']);
    assert.equal(created.code, 0, created.stderr);
    const app = JSON.parse(created.stdout);
    assert.equal(app.name, 'cli-app');
    assert.ok(app.appSecret);
    const listed = await cli(server, ['app', 'list']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.ok(listed.stdout.includes(app.appKey));
    assert.ok(!listed.stdout.includes(app.appSecret));
    const got = await cli(server, ['app', 'get', app.appKey, '--json']);
    assert.equal(JSON.parse(got.stdout).appKey, app.appKey);
    const bad = await cli(server, ['app', 'create', 'x', '--product', 'a1NoSuchPK00']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr + bad.stdout, /a1NoSuchPK00/);
    const deleted = await cli(server, ['app', 'delete', app.appKey]);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal((await server.request('GET', `/api/v1/applications/${app.appKey}`)).status, 404);
  });

  it('an API-created application reads and commands devices over WSS; deleting it closes the session', async () => {
    const d = await createDevice(server, { productKey: pk });
    const created = (await server.request('POST', '/api/v1/applications', { name: 'ops', productKeys: [pk] })).body;
    const app = await connectClient(server, 'mqtt-wss', { clientId: 'ops-1', username: `app:${created.appKey}`, password: created.appSecret });
    const device = await connectClient(server, 'mqtt', signedConnect(d));
    assert.deepEqual(await subscribe(app, `/${pk}/+/user/#`), [0]);
    const up = nextMessage(app, (t) => t === `/${pk}/${d.deviceName}/user/data`);
    device.publish(`/${pk}/${d.deviceName}/user/data`, 'hello');
    assert.equal((await up).payload.toString(), 'hello');

    const closed = waitForClose(app);
    const del = await server.request('DELETE', `/api/v1/applications/${created.appKey}`);
    assert.equal(del.status, 204);
    await closed;
    await endClient(app);
    await endClient(device);
    assert.equal((await connectRefusal(server, 'mqtt', { clientId: 'ops-1', username: `app:${created.appKey}`, password: created.appSecret })).code, 5);
  });

  it('a device credential cannot pose as an application', async () => {
    const d = await createDevice(server, { productKey: pk });
    const c = signedConnect(d);
    assert.equal((await connectRefusal(server, 'mqtt', { ...c, username: `app:${d.deviceName}` })).code, 5);
  });
});
