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
import { compileAclFor, mayPublish, maySubscribe, type CompiledIdentityAcl } from '../../src/mqtt/acl.js';
import type { Session, SessionIdentity } from '../../src/mqtt/sessions.js';

function sessionOf(identities: SessionIdentity[]): Session {
  const acl = new Map<string, CompiledIdentityAcl>(identities.map((i) => [i.iotId, compileAclFor(i)]));
  return { acl } as unknown as Session;
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
  const session = sessionOf([gw, ...subs]);
  const topic = (i: number) => `/sys/a1Sub/sub${String(i).padStart(4, '0')}/thing/service/property/set`;
  assert.equal(maySubscribe(session, topic(5)), true);
  // Removed: no longer allowed, even though the index saw it.
  session.acl.delete('s5');
  assert.equal(maySubscribe(session, topic(5)), false);
  assert.equal(mayPublish(session, `/sys/a1Sub/sub0005/thing/event/property/post`), false);
  // Replaced at the same map size: the new identity is allowed, the old one not.
  const late: SessionIdentity = { kind: 'device', productKey: 'a1Sub', deviceName: 'sub0099', iotId: 's99' };
  session.acl.delete('s6');
  session.acl.set('s99', compileAclFor(late));
  assert.equal(maySubscribe(session, topic(99)), true);
  assert.equal(maySubscribe(session, topic(6)), false);
  assert.equal(maySubscribe(session, topic(7)), true);
  // Another device's topics and wildcards across devices stay refused.
  assert.equal(maySubscribe(session, '/sys/a1Sub/+/thing/service/property/set'), false);
  assert.equal(maySubscribe(session, '/sys/a1Sub/nobody/thing/service/property/set'), false);
  assert.equal(maySubscribe(session, '#'), false);
});
