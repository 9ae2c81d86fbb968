/**
 * Property-based tests (fast-check) of CONNECT credential parsing: whatever a client sends,
 * parseMqttClientId / parseMqttUsername never throw, and what they return round-trips with
 * what a device builds.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { authTypeOf, parseMqttClientId, parseMqttUsername } from '../../src/core/credentials.js';

const RUNS = { numRuns: 2_000 };
/** Any string, including lone surrogates, NULs and `|`, `,`, `=`, `&` in abundance. */
const hostile = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.string({ unit: fc.constantFrom('|', ',', '=', '&', 'a', '\u0000', '\ud800', 'é'), maxLength: 60 }),
);
/** Text without the separators of the ClientId grammar. */
const token = (sep: string) => fc.string({ unit: 'grapheme', maxLength: 20 }).filter((s) => ![...sep].some((c) => s.includes(c)));
/** ASCII white space as SDKs put it around ClientId items (the parser drops it there). */
const asciiSpace = fc.string({ unit: fc.constantFrom(' ', '\t', '\n', '\r', '\v', '\f'), maxLength: 10 });
const trimAscii = (s: string) => s.replace(/^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g, '');

describe('parseMqttClientId', () => {
  it('never throws and returns undefined or a well-formed result, for any input', () => {
    fc.assert(
      fc.property(hostile, (raw) => {
        const p = parseMqttClientId(raw);
        if (p === undefined) return;
        assert.equal(typeof p.clientId, 'string');
        assert.ok(!p.clientId.includes('|'));
        assert.ok(raw.startsWith(p.clientId + '|'));
        for (const [k, v] of Object.entries(p.ext)) {
          assert.equal(typeof v, 'string');
          assert.ok(!k.includes(','));
        }
        assert.notEqual(authTypeOf(p.ext), undefined);
      }),
      RUNS,
    );
  });

  it('rejects non-strings without throwing', () => {
    for (const v of [undefined, null, 42, {}, [], Buffer.from('a|b|')]) assert.equal(parseMqttClientId(v as unknown as string), undefined);
  });

  it('round-trips what a device builds: id|k=v,...| -> the same id and the first value of each key', () => {
    fc.assert(
      fc.property(
        token('|'),
        fc.array(fc.tuple(token('|,=').filter((k) => k !== ''), token('|,')), { maxLength: 8 }),
        fc.boolean(),
        (id, items, trailingComma) => {
          const raw = `${id}|${items.map(([k, v]) => `${k}=${v}`).join(',')}${trailingComma ? ',' : ''}|`;
          const p = parseMqttClientId(raw);
          assert.ok(p);
          assert.equal(p.clientId, id);
          const expected: Record<string, string> = Object.create(null);
          for (const [k, v] of items) {
            const key = trimAscii(k) === 'authtype' ? 'authType' : trimAscii(k);
            if (!Object.hasOwn(expected, key)) expected[key] = trimAscii(v);
          }
          assert.deepEqual(Object.entries(p.ext), Object.entries(expected));
        },
      ),
      RUNS,
    );
  });

  it('ASCII white space around items, keys and values changes nothing but the signed client id stays verbatim', () => {
    const item = fc.tuple(fc.constantFrom('securemode', 'signmethod', 'timestamp', 'authType', '_v', 'lan'), token('|,= \t\n\r\v\f'));
    fc.assert(
      fc.property(
        token('|'),
        fc.array(fc.tuple(item, asciiSpace, asciiSpace, asciiSpace, asciiSpace), { maxLength: 6 }),
        (id, items) => {
          const plain = parseMqttClientId(`${id}|${items.map(([[k, v]]) => `${k}=${v}`).join(',')}|`);
          const padded = parseMqttClientId(`${id}|${items.map(([[k, v], a, b, c, d]) => `${a}${k}${b}=${c}${v}${d}`).join(',')}|`);
          assert.ok(plain && padded);
          assert.equal(padded.clientId, id);
          assert.deepEqual(Object.entries(padded.ext), Object.entries(plain.ext));
        },
      ),
      RUNS,
    );
  });

  it('the multi-line list of an npm Node SDK: signmethod and timestamp are recognised', () => {
    const p = parseMqttClientId('a1PK&dev|securemode=3,\n        signmethod=hmacsha1,\n        timestamp=1700000000000|');
    assert.ok(p);
    assert.equal(p.clientId, 'a1PK&dev');
    assert.deepEqual({ ...p.ext }, { securemode: '3', signmethod: 'hmacsha1', timestamp: '1700000000000' });
    const spaced = parseMqttClientId(' id \t|\tsecuremode = 2 , signmethod=hmacsha256\r\n|');
    assert.equal(spaced!.clientId, ' id \t', 'the signed client id is not trimmed');
    assert.deepEqual({ ...spaced!.ext }, { securemode: '2', signmethod: 'hmacsha256' });
  });

  it('a value may contain `|` (lan=JS|WX): everything up to the LAST `|` is the extension', () => {
    fc.assert(
      fc.property(token('|'), token('|,='), (id, lan) => {
        const p = parseMqttClientId(`${id}|securemode=3,lan=JS|${lan},_v=1|`);
        assert.ok(p);
        assert.equal(p.ext.lan, trimAscii(`JS|${lan}`));
        assert.equal(p.ext._v, '1');
      }),
      RUNS,
    );
  });
});

describe('parseMqttUsername', () => {
  it('never throws; a result always rebuilds the input as deviceName&productKey with both non-empty', () => {
    fc.assert(
      fc.property(fc.oneof(hostile, fc.constant(undefined)), (u) => {
        const p = parseMqttUsername(u);
        if (p === undefined) return;
        assert.ok(p.deviceName.length > 0 && p.productKey.length > 0);
        assert.ok(!p.productKey.includes('&'));
        assert.equal(`${p.deviceName}&${p.productKey}`, u);
      }),
      RUNS,
    );
  });

  it('round-trips dn&pk for any non-empty productKey without `&` (the DeviceName may contain one)', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 64 }), token('&').filter((s) => s !== ''), (dn, pk) => {
        assert.deepEqual(parseMqttUsername(`${dn}&${pk}`), { deviceName: dn, productKey: pk });
      }),
      RUNS,
    );
  });

  it('refuses usernames without a usable `&`', () => {
    fc.assert(
      fc.property(token('&'), (s) => {
        assert.equal(parseMqttUsername(s), undefined);
        assert.equal(parseMqttUsername(`${s}&`), undefined);
        assert.equal(parseMqttUsername(`&${s}`), s === '' ? undefined : parseMqttUsername(`&${s}`));
      }),
      RUNS,
    );
    assert.equal(parseMqttUsername('&pk'), undefined);
  });
});
