/**
 * The console API (issue 17) over a real server and real sockets: GET /api/v1/whoami for both
 * scopes, audit paging with ?cursor= over more than two pages, and the live event stream
 * (GET /api/v1/events/stream, Server-Sent Events read with fetch() as the console does):
 * device.status ONLINE then OFFLINE when a real mqtt.js device logs in and out,
 * device.changed on disable, the productKey filter, stats, refusal without a token, the cap
 * per token, and the end of the stream when its token is revoked.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MAX_STREAMS_PER_TOKEN } from '../../src/services/live-events.js';
import { connectClient, createDevice, endClient, signedConnect } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

interface SseEvent {
  event: string;
  data: any;
}

interface Stream {
  status: number;
  contentType: string | null;
  events: SseEvent[];
  comments: string[];
  /** Resolves with the first event (seen or coming) matching `pred`; rejects after `ms`. */
  next(pred: (e: SseEvent) => boolean, ms?: number): Promise<SseEvent>;
  /** Resolves when the server ended the stream. */
  closed: Promise<void>;
  close(): void;
}

/** Reads an SSE stream with fetch() and a streaming reader (no EventSource: the token stays in a header). */
async function openStream(srv: TestServer, token: string | null, query = ''): Promise<Stream> {
  const ac = new AbortController();
  const headers: Record<string, string> = token === null ? {} : { authorization: `Bearer ${token}` };
  const res = await fetch(`${srv.api}/api/v1/events/stream${query}`, { headers, signal: ac.signal });
  const events: SseEvent[] = [];
  const comments: string[] = [];
  const waiters: { pred: (e: SseEvent) => boolean; resolve: (e: SseEvent) => void }[] = [];
  let closedResolve!: () => void;
  const closed = new Promise<void>((r) => (closedResolve = r));
  if (res.ok && res.body) {
    void (async () => {
      const reader = res.body!.getReader();
      const dec = new TextDecoder();
      let buf = '';
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let event = 'message';
            let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith(':')) comments.push(line.slice(1).trim());
              else if (line.startsWith('event: ')) event = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
            }
            if (data === '') continue;
            const e = { event, data: JSON.parse(data) };
            events.push(e);
            for (const w of [...waiters]) if (w.pred(e)) (waiters.splice(waiters.indexOf(w), 1), w.resolve(e));
          }
        }
      } catch {
        /* aborted */
      }
      closedResolve();
    })();
  } else {
    await res.text();
    closedResolve();
  }
  return {
    status: res.status,
    contentType: res.headers.get('content-type'),
    events,
    comments,
    closed,
    next(pred, ms = 5_000) {
      const seen = events.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve: (e: SseEvent) => (clearTimeout(t), resolve(e)) };
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`no matching event within ${ms} ms; got ${JSON.stringify(events)}`));
        }, ms);
        waiters.push(w);
      });
    },
    close: () => ac.abort(),
  };
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what} not within ${ms} ms`)), ms))]);
}

describe('console API: whoami, audit paging, live events', () => {
  let srv: TestServer;

  before(async () => {
    srv = await startTestServer();
  });
  after(async () => {
    await srv?.stop();
  });

  async function token(name: string, scope: 'read' | 'admin'): Promise<{ id: string; token: string }> {
    const t = await srv.request('POST', '/api/v1/tokens', { name, scope });
    assert.equal(t.status, 201);
    return { id: t.body.id, token: t.body.token };
  }

  it('whoami: the bootstrap admin token, an admin token and a read token; none without a token', async () => {
    const boot = await srv.request('GET', '/api/v1/whoami');
    assert.equal(boot.status, 200);
    assert.deepEqual(boot.body, { scope: 'admin', tokenId: null, name: 'admin' });
    const a = await token('ops admin', 'admin');
    assert.deepEqual((await srv.request('GET', '/api/v1/whoami', undefined, a.token)).body, { scope: 'admin', tokenId: a.id, name: 'ops admin' });
    const r = await token('wallboard', 'read');
    assert.deepEqual((await srv.request('GET', '/api/v1/whoami', undefined, r.token)).body, { scope: 'read', tokenId: r.id, name: 'wallboard' });
    assert.equal((await srv.request('GET', '/api/v1/whoami', undefined, null)).status, 401);
    assert.equal((await srv.request('GET', '/api/v1/whoami', undefined, 'tat_AAAAAAAAAAAA_' + 'x'.repeat(43))).status, 401);
  });

  it('audit paging: ?cursor= walks more than two pages newest first, each entry once; old parameters still work', async () => {
    const p = await srv.request('POST', '/api/v1/products', { productName: 'paged' });
    const pk = p.body.productKey;
    const made = await srv.running.ctx.services.registry.createDevices(pk, { count: 7 });
    // 7 disables: 7 audit entries of this product.
    const names: string[] = made.map((d) => d.deviceName);
    for (const dn of names) assert.equal((await srv.request('POST', `/api/v1/products/${pk}/devices/${dn}/disable`)).status, 200);
    await srv.settle();
    const whole = await srv.request('GET', `/api/v1/audit?productKey=${pk}&limit=1000`);
    assert.equal(whole.status, 200);
    assert.equal(whole.body.nextCursor, null);
    const total = whole.body.items.length;
    assert.ok(total >= 7, String(total));

    const seen: number[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = `/api/v1/audit?productKey=${pk}&limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const page = await srv.request('GET', q);
      assert.equal(page.status, 200, JSON.stringify(page.body));
      assert.ok(page.body.items.length <= 3);
      seen.push(...page.body.items.map((e: any) => e.id));
      cursor = page.body.nextCursor;
      pages++;
      if (pages === 1) {
        // An entry appended while paging is newer than every page: it never shows up in the walk.
        await srv.request('POST', `/api/v1/products/${pk}/devices/${names[0]}/enable`);
        await srv.settle();
      }
    } while (cursor !== null && pages < 20);
    assert.ok(pages > 2, `only ${pages} pages`);
    assert.deepEqual(seen, whole.body.items.map((e: any) => e.id));
    assert.equal(new Set(seen).size, seen.length);

    const bad = await srv.request('GET', '/api/v1/audit?cursor=not-a-cursor');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.field, 'cursor');
    const old = await srv.request('GET', `/api/v1/audit?productKey=${pk}&action=${encodeURIComponent('api.post /products/:productKey/devices/:deviceName/disable')}&limit=2`);
    assert.equal(old.status, 200);
    assert.equal(old.body.items.length, 2);
    assert.equal(typeof old.body.nextCursor, 'string');
  });

  it('stream: text/event-stream, stats at once, device.status ONLINE then OFFLINE for a real MQTT login and logout', async () => {
    const r = await token('console', 'read');
    const s = await openStream(srv, r.token);
    try {
      assert.equal(s.status, 200);
      assert.match(s.contentType ?? '', /^text\/event-stream/);
      const stats = await s.next((e) => e.event === 'stats');
      assert.equal(typeof stats.data.connectsPerMinute, 'number');
      assert.equal(typeof stats.data.online, 'number');

      const d = await createDevice(srv);
      const client = await connectClient(srv, 'mqtt', signedConnect(d));
      const on = await s.next((e) => e.event === 'device.status' && e.data.iotId === d.iotId);
      assert.deepEqual({ ...on.data, at: undefined }, { productKey: d.productKey, deviceName: d.deviceName, iotId: d.iotId, status: 'ONLINE', at: undefined });
      assert.ok(!Number.isNaN(Date.parse(on.data.at)));
      await endClient(client);
      const off = await s.next((e) => e.event === 'device.status' && e.data.iotId === d.iotId && e.data.status === 'OFFLINE');
      assert.equal(off.data.deviceName, d.deviceName);
      const order = s.events.filter((e) => e.event === 'device.status' && e.data.iotId === d.iotId).map((e) => e.data.status);
      assert.deepEqual(order, ['ONLINE', 'OFFLINE']);
    } finally {
      s.close();
    }
  });

  it('stream: device.changed once per change with its kind; ?productKey= keeps other products out', async () => {
    const a = await createDevice(srv);
    const b = await createDevice(srv);
    const s = await openStream(srv, srv.adminToken, `?productKey=${a.productKey}`);
    try {
      await s.next((e) => e.event === 'stats');
      await srv.request('POST', `/api/v1/products/${b.productKey}/devices/${b.deviceName}/disable`);
      await srv.request('POST', `/api/v1/products/${a.productKey}/devices/${a.deviceName}/disable`);
      const changed = await s.next((e) => e.event === 'device.changed');
      assert.deepEqual(changed.data, { productKey: a.productKey, deviceName: a.deviceName, iotId: a.iotId, change: 'disabled' });
      await srv.request('POST', `/api/v1/products/${a.productKey}/devices/${a.deviceName}/enable`);
      await s.next((e) => e.event === 'device.changed' && e.data.change === 'enabled');
      await srv.request('POST', `/api/v1/products/${a.productKey}/devices/${a.deviceName}/secret/rotate`, { graceSeconds: 0 });
      await s.next((e) => e.event === 'device.changed' && e.data.change === 'changed');
      await srv.request('DELETE', `/api/v1/products/${a.productKey}/devices/${a.deviceName}`);
      await s.next((e) => e.event === 'device.changed' && e.data.change === 'deleted');
      const kinds = s.events.filter((e) => e.event === 'device.changed').map((e) => e.data.change);
      assert.deepEqual(kinds, ['disabled', 'enabled', 'changed', 'deleted']);
      assert.ok(s.events.every((e) => e.event === 'stats' || e.data.productKey === a.productKey));
    } finally {
      s.close();
    }
  });

  it('stream: refused without a token (401) or with a bad one; at most 4 streams per token (429)', async () => {
    const none = await openStream(srv, null);
    assert.equal(none.status, 401);
    const bad = await openStream(srv, 'tat_AAAAAAAAAAAA_' + 'x'.repeat(43));
    assert.equal(bad.status, 401);
    const t = await token('many', 'read');
    const open: Stream[] = [];
    try {
      for (let i = 0; i < MAX_STREAMS_PER_TOKEN; i++) {
        const s = await openStream(srv, t.token);
        assert.equal(s.status, 200);
        open.push(s);
      }
      const over = await openStream(srv, t.token);
      assert.equal(over.status, 429);
      // Another token is not affected.
      const other = await openStream(srv, srv.adminToken);
      assert.equal(other.status, 200);
      other.close();
      // A closed stream frees its place.
      open.pop()!.close();
      const again = await (async () => {
        for (let i = 0; i < 50; i++) {
          const s = await openStream(srv, t.token);
          if (s.status === 200) return s;
          await new Promise((r) => setTimeout(r, 20));
        }
        throw new Error('place not freed');
      })();
      open.push(again);
    } finally {
      for (const s of open) s.close();
    }
  });

  it('stream: ends with event end when its token is revoked; other streams go on', async () => {
    const t = await token('to revoke', 'read');
    const s = await openStream(srv, t.token);
    const keep = await openStream(srv, srv.adminToken);
    try {
      await s.next((e) => e.event === 'stats');
      assert.equal((await srv.request('DELETE', `/api/v1/tokens/${t.id}`)).status, 204);
      const end = await s.next((e) => e.event === 'end');
      assert.deepEqual(end.data, { reason: 'token revoked' });
      await within(s.closed, 3_000, 'stream end');
      // The stream of the other token still delivers.
      const d = await createDevice(srv);
      await srv.request('POST', `/api/v1/products/${d.productKey}/devices/${d.deviceName}/disable`);
      await keep.next((e) => e.event === 'device.changed' && e.data.iotId === d.iotId);
      // And the revoked token cannot open a new one.
      assert.equal((await openStream(srv, t.token)).status, 401);
    } finally {
      s.close();
      keep.close();
    }
  });

  it('stream: stats count logins of the last minute and devices online', async () => {
    const s = await openStream(srv, srv.adminToken);
    try {
      const first = await s.next((e) => e.event === 'stats');
      const d = await createDevice(srv);
      const client = await connectClient(srv, 'mqtt', signedConnect(d));
      try {
        // A periodic stats event (every 5 s) after the login counts it and the session.
        const next = await s.next((e) => e.event === 'stats' && e.data.online >= 1 && e.data.connectsPerMinute >= first.data.connectsPerMinute + 1, 11_000);
        assert.ok(Date.parse(next.data.at) > Date.parse(first.data.at));
      } finally {
        await endClient(client);
      }
    } finally {
      s.close();
    }
  });

  it('stream: a reader that falls behind loses events (counted in a dropped event), the server buffers nothing for it', async () => {
    const s = await openStream(srv, srv.adminToken, '?productKey=a1Burst');
    try {
      await s.next((e) => e.event === 'stats');
      // 50,000 changes in one tick (about 5 MB of events): far more than the socket holds.
      const events = srv.running.ctx.services.events;
      const N = 50_000;
      for (let i = 0; i < N; i++) events.emit('device.changed', { iotId: `burst-${i}`, productKey: 'a1Burst', deviceName: `d${i}` });
      const dropped = await s.next((e) => e.event === 'dropped', 15_000);
      assert.ok(dropped.data.count > 0 && dropped.data.count < N, JSON.stringify(dropped.data));
      const delivered = s.events.filter((e) => e.event === 'device.changed' && e.data.productKey === 'a1Burst').length;
      assert.equal(delivered + dropped.data.count, N);
      // Events still flow after the reader caught up.
      events.emit('device.changed', { iotId: 'after-burst', productKey: 'a1Burst', deviceName: 'after' });
      await s.next((e) => e.event === 'device.changed' && e.data.iotId === 'after-burst');
    } finally {
      s.close();
    }
  });

  it('the new routes are in /openapi.json', async () => {
    const r = await fetch(`${srv.api}/openapi.json`);
    const doc: any = await r.json();
    for (const p of ['/api/v1/whoami', '/api/v1/events/stream', '/api/v1/diagnose/connect', '/api/v1/diagnose/codes']) assert.ok(doc.paths[p], `${p} missing`);
    assert.ok(doc.paths['/api/v1/audit'].get.parameters.some((x: any) => x.name === 'cursor'));
  });
});

describe('live events and shutdown', () => {
  it('stopping the server ends open streams with event end (server closing) instead of waiting for them', async () => {
    const srv = await startTestServer();
    let stopped = false;
    try {
      const s = await openStream(srv, srv.adminToken);
      await s.next((e) => e.event === 'stats');
      const stop = srv.stop().then(() => (stopped = true));
      const end = await s.next((e) => e.event === 'end');
      assert.deepEqual(end.data, { reason: 'server closing' });
      await within(stop, 10_000, 'server stop');
      await within(s.closed, 3_000, 'stream close');
    } finally {
      if (!stopped) await srv.stop();
    }
  });
});
