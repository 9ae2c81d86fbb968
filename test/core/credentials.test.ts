/** Parsing what devices present in CONNECT: clientId extensions, username, authtype. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import {
  authTypeOf,
  connectSignPairs,
  parseMqttClientId,
  parseMqttUsername,
  registrationSignPairs,
} from '../../src/core/credentials.js';
import { buildSignContent, parseSignMethod, signPairs, verifySignature } from '../../src/core/sign.js';

interface Sample {
  name: string;
  kind: string;
  deviceSecret?: string;
  productSecret?: string;
  connect?: { clientId: string; username: string; password: string };
}

const samples: Sample[] = JSON.parse(fs.readFileSync(new URL('../../../test/fixtures/wire-samples.json', import.meta.url), 'utf8')).samples;

describe('parseMqttClientId', () => {
  it('splits id|k=v,...| into the signed id and the items', () => {
    const p = parseMqttClientId('a1PK.dev|securemode=3,signmethod=hmacsha256,timestamp=789|');
    assert.ok(p);
    assert.equal(p.clientId, 'a1PK.dev');
    assert.deepEqual({ ...p.ext }, { securemode: '3', signmethod: 'hmacsha256', timestamp: '789' });
  });

  it('keeps a | inside an item (lan=JS|WX from the browser builds)', () => {
    const p = parseMqttClientId('cid123|securemode=3,lan=JS|WX,signmethod=hmacsha1,_v=1.0|');
    assert.ok(p);
    assert.equal(p.clientId, 'cid123');
    assert.equal(p.ext.lan, 'JS|WX');
    assert.equal(p.ext.securemode, '3');
    assert.equal(p.ext.signmethod, 'hmacsha1');
    assert.equal(p.ext._v, '1.0');
  });

  it('skips empty items, keeps items without = as empty values, splits at the first =', () => {
    const p = parseMqttClientId('cid|,securemode=2,,flag,ext=a=b,|');
    assert.ok(p);
    assert.deepEqual({ ...p.ext }, { securemode: '2', flag: '', ext: 'a=b' });
    const empty = parseMqttClientId('cid||');
    assert.ok(empty);
    assert.equal(empty.clientId, 'cid');
    assert.deepEqual({ ...empty.ext }, {});
  });

  it('an empty signed id is kept as empty', () => {
    const p = parseMqttClientId('|securemode=3|');
    assert.ok(p);
    assert.equal(p.clientId, '');
  });

  it('authtype and authType both mean authType; the first occurrence wins', () => {
    assert.equal(parseMqttClientId('c|authtype=register|')!.ext.authType, 'register');
    assert.equal(parseMqttClientId('c|authType=regnwl|')!.ext.authType, 'regnwl');
    assert.equal(parseMqttClientId('c|authtype=regnwl,authType=register|')!.ext.authType, 'regnwl');
    assert.equal(parseMqttClientId('c|securemode=3,securemode=2|')!.ext.securemode, '3');
  });

  it('no extension (no | or a single |) is undefined', () => {
    assert.equal(parseMqttClientId('plain-client-id'), undefined);
    assert.equal(parseMqttClientId('half|securemode=3'), undefined);
    assert.equal(parseMqttClientId(''), undefined);
    assert.equal(parseMqttClientId(undefined as unknown as string), undefined);
  });

  it('does not let an item named like an Object.prototype member confuse the lookup', () => {
    const p = parseMqttClientId('c|__proto__=x,constructor=y|');
    assert.ok(p);
    assert.equal(p.ext.__proto__, 'x');
    assert.equal(p.ext.constructor, 'y');
    assert.equal(authTypeOf(p.ext), 'sign');
  });
});

describe('parseMqttUsername', () => {
  it('splits deviceName&productKey', () => {
    assert.deepEqual(parseMqttUsername('dev-001&a1TestPK001'), { deviceName: 'dev-001', productKey: 'a1TestPK001' });
    assert.deepEqual(parseMqttUsername('a:b@c.d&a1PK'), { deviceName: 'a:b@c.d', productKey: 'a1PK' });
  });
  it('refuses a missing half or a missing &', () => {
    for (const bad of ['&a1PK', 'dev-001&', 'dev-001', '', undefined]) assert.equal(parseMqttUsername(bad), undefined, String(bad));
  });
});

describe('authTypeOf', () => {
  it('absent or empty is sign; register, regnwl, connwl are themselves; anything else is unknown', () => {
    assert.equal(authTypeOf({}), 'sign');
    assert.equal(authTypeOf({ authType: '' }), 'sign');
    assert.equal(authTypeOf({ authType: 'register' }), 'register');
    assert.equal(authTypeOf({ authType: 'regnwl' }), 'regnwl');
    assert.equal(authTypeOf({ authType: 'connwl' }), 'connwl');
    assert.equal(authTypeOf({ authType: 'Register' }), 'unknown');
    assert.equal(authTypeOf({ authType: 'password' }), 'unknown');
  });
});

describe('every CONNECT captured from real SDKs (wire-samples.json)', () => {
  const connects = samples.filter((s) => s.connect);
  it('the fixture holds CONNECT samples', () => assert.ok(connects.length >= 4));

  for (const s of connects) {
    it(`${s.name}: clientId parses and the password verifies`, () => {
      const c = s.connect!;
      const parsed = parseMqttClientId(c.clientId);
      assert.ok(parsed, 'has an extension');
      assert.ok(parsed.ext.securemode !== undefined, 'securemode present');
      const alg = parseSignMethod(parsed.ext.signmethod);
      assert.ok(alg, `signmethod ${parsed.ext.signmethod} is known`);
      const user = parseMqttUsername(c.username);
      assert.ok(user, 'username parses');

      if (s.kind === 'mqtt-connect') {
        assert.equal(authTypeOf(parsed.ext), 'sign');
        const pairs = connectSignPairs(parsed.clientId, user.deviceName, user.productKey, parsed.ext.timestamp);
        assert.equal(verifySignature(alg, s.deviceSecret!, buildSignContent(pairs), c.password), true);
        assert.equal(signPairs(alg, s.deviceSecret!, pairs), c.password.toLowerCase());
      } else {
        assert.equal(s.kind, 'mqtt-register');
        assert.ok(['register', 'regnwl'].includes(authTypeOf(parsed.ext)));
        assert.ok(parsed.ext.random, 'random present');
        const pairs = registrationSignPairs(user.deviceName, user.productKey, parsed.ext.random!);
        assert.equal(verifySignature(alg, s.productSecret!, buildSignContent(pairs), c.password), true);
      }
    });
  }
});
