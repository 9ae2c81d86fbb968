/**
 * Management tokens over real HTTP: several tokens with scopes, read = GET only, admin-only
 * routes, revocation, the bootstrap admin token, hashes only at rest, and the audit naming
 * who made each change.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('management tokens', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer();
  });
  after(async () => {
    await srv.stop();
  });

  it('creates admin and read tokens; the token is shown once and never listed', async () => {
    const created = await srv.request('POST', '/api/v1/tokens', { name: 'ci-reader', scope: 'read' });
    assert.equal(created.status, 201);
    assert.match(created.body.token, /^tat_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}$/);
    assert.equal(created.body.scope, 'read');
    const list = await srv.request('GET', '/api/v1/tokens');
    assert.equal(list.status, 200);
    const mine = list.body.items.find((t: { id: string }) => t.id === created.body.id);
    assert.deepEqual(Object.keys(mine).sort(), ['createdAt', 'id', 'name', 'scope']);
    assert.ok(!JSON.stringify(list.body).includes(created.body.token.slice(-43)), 'listing never shows the token');
  });

  it('a read token may GET but gets 403 on every write and on admin-only routes; nothing is written', async () => {
    const { body: t } = await srv.request('POST', '/api/v1/tokens', { name: 'reader', scope: 'read' });
    const get = await srv.request('GET', '/api/v1/products', undefined, t.token);
    assert.equal(get.status, 200);
    const post = await srv.request('POST', '/api/v1/products', { productName: 'ReadTokenProduct' }, t.token);
    assert.equal(post.status, 403);
    assert.equal(post.body.code, 'FORBIDDEN');
    assert.match(post.body.message, /scope read/);
    const after = await srv.request('GET', '/api/v1/products');
    assert.ok(!after.body.items.some((p: { productName: string }) => p.productName === 'ReadTokenProduct'));
    for (const [m, p] of [
      ['GET', '/api/v1/tokens'],
      ['POST', '/api/v1/tokens'],
      ['GET', '/api/v1/keys'],
      ['POST', '/api/v1/keys/rotate'],
    ] as const) {
      const r = await srv.request(m, p, m === 'POST' ? { name: 'x', scope: 'admin' } : undefined, t.token);
      assert.equal(r.status, 403, `${m} ${p}`);
    }
  });

  it('an admin token may write; the audit names the token that made each change', async () => {
    const { body: t } = await srv.request('POST', '/api/v1/tokens', { name: 'ops-bot', scope: 'admin' });
    const created = await srv.request('POST', '/api/v1/products', { productName: 'AdminTokenProduct' }, t.token);
    assert.equal(created.status, 201);
    const pk = created.body.productKey;
    assert.equal((await srv.request('PATCH', `/api/v1/products/${pk}`, { description: 'changed' }, t.token)).status, 200);
    const all = await srv.request('GET', '/api/v1/audit?action=' + encodeURIComponent('api.post /products') + '&limit=50');
    assert.equal(all.status, 200);
    const byBot = all.body.items.filter((e: { actor: string }) => e.actor === `token:${t.id} (ops-bot)`);
    assert.equal(byBot.length, 1);
    assert.equal(byBot[0].result, 'ok');
    assert.equal(byBot[0].reason, 'HTTP 201');
    assert.equal(byBot[0].sourceAddress, '127.0.0.1');
    // Path parameters land in productKey/deviceName, so a product's history is one query.
    const history = await srv.request('GET', `/api/v1/audit?productKey=${pk}`);
    assert.deepEqual(
      history.body.items.map((e: { action: string; actor: string; result: string }) => [e.action, e.actor, e.result]),
      [['api.patch /products/:productKey', `token:${t.id} (ops-bot)`, 'ok']],
    );
  });

  it('a revoked token stops working at once; unknown, malformed and missing tokens get 401', async () => {
    const { body: t } = await srv.request('POST', '/api/v1/tokens', { name: 'short-lived', scope: 'admin' });
    assert.equal((await srv.request('GET', '/api/v1/products', undefined, t.token)).status, 200);
    assert.equal((await srv.request('DELETE', `/api/v1/tokens/${t.id}`)).status, 204);
    const after = await srv.request('GET', '/api/v1/products', undefined, t.token);
    assert.equal(after.status, 401);
    assert.equal(after.body.code, 'UNAUTHENTICATED');
    assert.equal((await srv.request('DELETE', `/api/v1/tokens/${t.id}`)).status, 404);
    // Right id, wrong secret part.
    const forged = t.token.slice(0, -4) + (t.token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    assert.equal((await srv.request('GET', '/api/v1/products', undefined, forged)).status, 401);
    assert.equal((await srv.request('GET', '/api/v1/products', undefined, 'x'.repeat(5000))).status, 401);
    assert.equal((await srv.request('GET', '/api/v1/products', undefined, null)).status, 401);
    // The bootstrap admin token keeps working.
    assert.equal((await srv.request('GET', '/api/v1/tokens')).status, 200);
  });

  it('refuses bad create requests with the field named', async () => {
    const noScope = await srv.request('POST', '/api/v1/tokens', { name: 'x' });
    assert.equal(noScope.status, 400);
    assert.equal(noScope.body.field, 'scope');
    const badScope = await srv.request('POST', '/api/v1/tokens', { name: 'x', scope: 'root' });
    assert.equal(badScope.status, 400);
    const badName = await srv.request('POST', '/api/v1/tokens', { name: 'bad\nname', scope: 'read' });
    assert.equal(badName.status, 400);
    assert.match(badName.body.message, /name/);
  });

  it('keeps only SHA-256 hashes of tokens at rest', async () => {
    const { body: t } = await srv.request('POST', '/api/v1/tokens', { name: 'at-rest', scope: 'read' });
    const db = (srv.running.ctx.store as unknown as { db: import('better-sqlite3').Database }).db;
    const row = db.prepare('SELECT * FROM management_tokens WHERE id = ?').get(t.id) as Record<string, string>;
    assert.match(row.token_hash!, /^[0-9a-f]{64}$/);
    // The secret part is everything after `tat_<id>_` (base64url: it may itself contain `_`).
    const prefix = `tat_${t.id}_`;
    assert.ok(t.token.startsWith(prefix), t.token.slice(0, prefix.length));
    const secretPart = t.token.slice(prefix.length);
    assert.ok(secretPart.length >= 40);
    assert.ok(!Object.values(row).some((v) => String(v).includes(secretPart)));
  });
});
