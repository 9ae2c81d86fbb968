/**
 * The ACL's device index (a gateway session acting for many sub-devices looks up the identity
 * a topic names instead of trying them all) must answer exactly what trying every identity
 * answers: for any set of identities and any topic or filter, the session allows it iff some
 * single-identity session of its identities allows it. Also checks the index follows
 * identities added and removed between checks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { Client } from 'aedes';
import { IdentityAclMap, mayPublish, maySubscribe } from '../../src/mqtt/acl.js';
import { newSession, SessionRegistry, type Session, type SessionIdentity } from '../../src/mqtt/sessions.js';

const info = { transport: 'tcp' as const, remoteAddress: '127.0.0.1', ext: {} };

/** A real session (sessions.ts) acting for every identity after the first, as a gateway does. */
function sessionOf(identities: SessionIdentity[], registry = new SessionRegistry()): Session {
  const session = newSession({ id: identities[0]!.iotId } as unknown as Client, identities[0]!, info);
  for (const i of identities.slice(1)) registry.addActingFor(session, i);
  return session;
}

const pks = ['a1Gw', 'a1Sub', 'a1Other'];
const dns = ['gw01', 'sub0001', 'sub0002', 'sub0003', 'dev-x', 'dev.y'];

const identityArb = fc.oneof(
  { weight: 8, arbitrary: fc.record({ pk: fc.constantFrom(...pks), dn: fc.constantFrom(...dns) }).map(({ pk, dn }) => ({ kind: 'device' as const, productKey: pk, deviceName: dn, iotId: `id-${pk}-${dn}` })) },
  { weight: 1, arbitrary: fc.subarray(pks, { minLength: 1 }).map((keys) => ({ kind: 'application' as const, productKey: '', deviceName: '', iotId: `app:${keys.join(',')}`, productKeys: keys })) },
);

const level = fc.constantFrom(...pks, ...dns, 'sys', 'thing', 'event', 'property', 'post', 'user', 'get', 'update', 'shadow', 'ext', 'session', 'combine', 'login', 'error', 'ota', 'device', 'upgrade', 'rrpc', 'request', '+', '#', '');
const topicArb = fc.array(level, { minLength: 1, maxLength: 8 }).map((l) => l.join('/'));
// Topics shaped like the real rules, so that many of them are allowed.
const shapedArb = fc
  .record({ pk: fc.constantFrom(...pks, '+'), dn: fc.constantFrom(...dns, '+'), shape: fc.integer({ min: 0, max: 5 }), tail: fc.constantFrom('thing/event/property/post', 'thing/service/+', '#', 'user/get', 'x') })
  .map(({ pk, dn, shape, tail }) =>
    [`/sys/${pk}/${dn}/${tail}`, `/${pk}/${dn}/user/${tail}`, `/ext/session/${pk}/${dn}/combine/login`, `/ext/error/${pk}/${dn}`, `/shadow/get/${pk}/${dn}`, `/ota/device/upgrade/${pk}/${dn}`][shape]!,
  );

test('indexed ACL answers exactly like trying every identity', () => {
  fc.assert(
    fc.property(fc.uniqueArray(identityArb, { minLength: 1, maxLength: 30, selector: (i) => i.iotId }), fc.array(fc.oneof(topicArb, shapedArb), { minLength: 1, maxLength: 20 }), (identities, topics) => {
      const session = sessionOf(identities);
      assert.ok(session.acl instanceof IdentityAclMap);
      const singles = identities.map((i) => sessionOf([i]));
      for (const t of topics) {
        assert.equal(mayPublish(session, t), singles.some((s) => mayPublish(s, t)), `publish ${t}`);
        assert.equal(maySubscribe(session, t), singles.some((s) => maySubscribe(s, t)), `subscribe ${t}`);
      }
    }),
    { numRuns: 3_000 },
  );
});

test('the index follows identities added and removed between checks', () => {
  const gw: SessionIdentity = { kind: 'device', productKey: 'a1Gw', deviceName: 'gw01', iotId: 'gw' };
  const subs: SessionIdentity[] = Array.from({ length: 20 }, (_, i) => ({ kind: 'device', productKey: 'a1Sub', deviceName: `sub${String(i).padStart(4, '0')}`, iotId: `s${i}` }));
  const registry = new SessionRegistry();
  const session = sessionOf([gw, ...subs], registry);
  const topic = (i: number) => `/sys/a1Sub/sub${String(i).padStart(4, '0')}/thing/service/property/set`;
  assert.equal(maySubscribe(session, topic(5)), true);
  // Logged out: no longer allowed, even though the index saw it.
  registry.removeActingFor(session, 's5', 'logged out');
  assert.equal(maySubscribe(session, topic(5)), false);
  assert.equal(mayPublish(session, `/sys/a1Sub/sub0005/thing/event/property/post`), false);
  // Replaced at the same map size: the new identity is allowed, the old one not.
  const late: SessionIdentity = { kind: 'device', productKey: 'a1Sub', deviceName: 'sub0099', iotId: 's99' };
  registry.removeActingFor(session, 's6', 'logged out');
  registry.addActingFor(session, late);
  assert.equal(maySubscribe(session, topic(99)), true);
  assert.equal(maySubscribe(session, topic(6)), false);
  assert.equal(maySubscribe(session, topic(7)), true);
  // Another device's topics and wildcards across devices stay refused.
  assert.equal(maySubscribe(session, '/sys/a1Sub/+/thing/service/property/set'), false);
  assert.equal(maySubscribe(session, '/sys/a1Sub/nobody/thing/service/property/set'), false);
  assert.equal(maySubscribe(session, '#'), false);
  // Taken over by another gateway: gone from this one.
  const other = sessionOf([{ kind: 'device', productKey: 'a1Gw', deviceName: 'gw02', iotId: 'gw2' }], registry);
  registry.addActingFor(other, subs[7]!);
  assert.equal(maySubscribe(session, topic(7)), false);
  assert.equal(maySubscribe(other, topic(7)), true);
});
