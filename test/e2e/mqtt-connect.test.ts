/**
 * Device-secret CONNECT over real sockets: every sign method, every listener, the SDK quirks
 * of spec 1.6, and the refusals of spec 1.7 (CONNACK code, socket closed, reason recorded).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import {
  connectClient,
  connectRefusal,
  createDevice,
  endClient,
  eventually,
  listenerUrl,
  nextMessage,
  signedConnect,
  subscribe,
  type DeviceCredentials,
  type ListenerName,
} from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('MQTT CONNECT with a device secret', () => {
  let server: TestServer;
  let dev: DeviceCredentials & { iotId: string };

  before(async () => {
    server = await startTestServer();
    dev = await createDevice(server);
  });
  after(async () => {
    await server.stop();
  });

  for (const signMethod of ['hmacmd5', 'hmacsha1', 'hmacsha256', 'HmacMD5', 'HmacSHA1', 'HMACSHA256', 'hmacSha256']) {
    for (const upperHex of [false, true]) {
      it(`accepts ${signMethod} with ${upperHex ? 'upper' : 'lower'}-case hex`, async () => {
        const client = await connectClient(server, 'mqtt', signedConnect({ ...dev, signMethod, upperHex }));
        await endClient(client);
      });
    }
  }

  const listeners: ListenerName[] = ['mqtt', 'mqtt-tls', 'mqtts', 'mqtt-ws', 'mqtt-wss'];
  for (const which of listeners) {
    it(`accepts a signed login on the ${which} listener`, async () => {
      const client = await connectClient(server, which, signedConnect({ ...dev, securemode: which === 'mqtt' || which === 'mqtt-ws' ? '3' : '2' }));
      await endClient(client);
    });
  }

  it('accepts a login without timestamp, and a timestamp that is decades off (not freshness-checked)', async () => {
    await endClient(await connectClient(server, 'mqtt', signedConnect({ ...dev, signMethod: 'hmacsha1', timestamp: null })));
    await endClient(await connectClient(server, 'mqtt', signedConnect({ ...dev, timestamp: '32472115200' })));
    await endClient(await connectClient(server, 'mqtt', signedConnect({ ...dev, timestamp: '1' })));
  });

  it('treats a missing signmethod as hmacmd5 and ignores unknown extension keys', async () => {
    const c = signedConnect({ ...dev, signMethod: null, extra: ['lan=C', '_v=sdk-c-4.0.0', 'ext=3', 'gw=0', 'whatever=1', ''] });
    await endClient(await connectClient(server, 'mqtt', c));
  });

  it('accepts the Node SDK quirk: ClientId says hmacsha256, password is HMAC-SHA1, lan=NodeJS', async () => {
    const c = signedConnect({ ...dev, clientId: `${dev.productKey}&${dev.deviceName}`, signMethod: 'hmacsha256', signWith: 'sha1', extra: ['lan=NodeJS', '_v=1.2.8'] });
    await endClient(await connectClient(server, 'mqtt', c));
    const browser = signedConnect({ ...dev, signMethod: 'hmacmd5', signWith: 'sha1', extra: ['lan=JS|WX', '_v=1.2.8'] });
    await endClient(await connectClient(server, 'mqtt', browser));
  });

  it('accepts the multi-line parameter list of an npm Node SDK (white space around items)', async () => {
    // That SDK builds `${clientId}|securemode=3,\n        signmethod=hmacsha1,\n        timestamp=${ts}|`
    // and signs with HMAC-SHA1 over the timestamp: refused (md5 assumed) before the parser trimmed items.
    const ts = String(Date.now());
    const c = signedConnect({ ...dev, signMethod: 'hmacsha1', timestamp: ts });
    const id = `${dev.productKey}&${dev.deviceName}`;
    const signed = signedConnect({ ...dev, clientId: id, signMethod: 'hmacsha1', timestamp: ts });
    const multiLine = { ...c, clientId: `${id}|securemode=3,\n        signmethod=hmacsha1,\n        timestamp=${ts}|`, password: signed.password };
    await endClient(await connectClient(server, 'mqtt', multiLine));
  });

  it('refuses the same SHA1 mismatch from a client that is not the Node SDK', async () => {
    const c = signedConnect({ ...dev, signMethod: 'hmacsha256', signWith: 'sha1', extra: ['lan=C'] });
    const r = await connectRefusal(server, 'mqtt', c);
    assert.equal(r.code, 5);
  });

  it('accepts MQTT 3.1 (protocol level 3) with a ClientId longer than 23 characters', async () => {
    const client = await connectClient(server, 'mqtt', signedConnect(dev), { protocolVersion: 3 });
    await endClient(client);
  });

  it('refuses a wrong secret with CONNACK 5, closes the socket, records the reason without secrets', async () => {
    const bad = signedConnect({ ...dev, deviceSecret: 'WrongSecret0123456789abcdefABCDEF' });
    const r = await connectRefusal(server, 'mqtt', bad);
    assert.equal(r.code, 5);
    assert.equal(r.closed, true);
    const rec = await eventually(async () => {
      const d = await server.running.ctx.store.getDevice(dev.productKey, dev.deviceName);
      return d?.lastAuthError ? d : undefined;
    });
    assert.match(rec.lastAuthError!, /signature/);
    const logs = server.logs.join('');
    assert.match(logs, /mqtt connect refused/);
    assert.ok(!logs.includes(bad.password), 'the presented password never reaches the log');
    assert.ok(!logs.includes(dev.deviceSecret), 'the secret never reaches the log');
  });

  it('refuses an unknown device and an unknown product with CONNACK 5', async () => {
    assert.equal((await connectRefusal(server, 'mqtt', signedConnect({ ...dev, deviceName: 'nobody-here' }))).code, 5);
    assert.equal((await connectRefusal(server, 'mqtt', signedConnect({ ...dev, productKey: 'a1NoSuchPK0' }))).code, 5);
  });

  it('refuses keep-alive outside 30..1200 with CONNACK 3', async () => {
    assert.equal((await connectRefusal(server, 'mqtt', signedConnect(dev), { keepalive: 29 })).code, 3);
    assert.equal((await connectRefusal(server, 'mqtt', signedConnect(dev), { keepalive: 1201 })).code, 3);
    assert.equal((await connectRefusal(server, 'mqtt', signedConnect(dev), { keepalive: 0 })).code, 3);
    await endClient(await connectClient(server, 'mqtt', signedConnect(dev), { keepalive: 30 }));
    await endClient(await connectClient(server, 'mqtt', signedConnect(dev), { keepalive: 1200 }));
  });

  it('refuses malformed credentials: no extension (2), bad username (4), empty password (4), unknown signmethod (2), legacy securemode (2)', async () => {
    const good = signedConnect(dev);
    assert.equal((await connectRefusal(server, 'mqtt', { ...good, clientId: 'plain-client-id' })).code, 2);
    assert.equal((await connectRefusal(server, 'mqtt', { ...good, username: 'no-ampersand' })).code, 4);
    assert.equal((await connectRefusal(server, 'mqtt', { ...good, password: '' })).code, 4);
    assert.equal((await connectRefusal(server, 'mqtt', signedConnect({ ...dev, signMethod: 'hmacsha512', signWith: 'sha256' }))).code, 2);
    assert.equal((await connectRefusal(server, 'mqtt', signedConnect({ ...dev, securemode: '0' }))).code, 2);
    assert.equal((await connectRefusal(server, 'mqtt', { ...good, clientId: good.clientId.replace('|securemode', '|authType=id2,securemode') })).code, 2);
  });

  it('refuses a disabled device with CONNACK 5 and accepts it again once enabled', async () => {
    const d = await createDevice(server, { productKey: dev.productKey });
    await server.running.ctx.services.registry.setEnabled(d.productKey, d.deviceName, false);
    assert.equal((await connectRefusal(server, 'mqtt', signedConnect(d))).code, 5);
    await server.running.ctx.services.registry.setEnabled(d.productKey, d.deviceName, true);
    await endClient(await connectClient(server, 'mqtt', signedConnect(d)));
  });

  it('decides requireTls by the transport actually used, not by the securemode claimed', async () => {
    const d = await createDevice(server, { requireTls: true });
    // Claims TLS (securemode=2) but arrives over plain TCP / plain WebSocket: refused.
    assert.equal((await connectRefusal(server, 'mqtt', signedConnect({ ...d, securemode: '2' }))).code, 5);
    assert.equal((await connectRefusal(server, 'mqtt-ws', signedConnect({ ...d, securemode: '2' }))).code, 5);
    // Claims plain (securemode=3) but arrives over TLS on the plain port, MQTTS and WSS: accepted.
    for (const which of ['mqtt-tls', 'mqtts', 'mqtt-wss'] as const) {
      await endClient(await connectClient(server, which, signedConnect({ ...d, securemode: '3' })));
    }
    const rec = await server.running.ctx.store.getDevice(d.productKey, d.deviceName);
    assert.match(rec!.lastAuthError ?? '', /TLS/);
  });
});

describe('MQTT 5.0 clients', () => {
  let server: TestServer;
  let dev: DeviceCredentials & { iotId: string };

  before(async () => {
    server = await startTestServer();
    dev = await createDevice(server);
  });
  after(async () => {
    await server.stop();
  });

  it('are accepted over TCP and WSS, get their replies, and have foreign filters refused with 0x87', async () => {
    for (const which of ['mqtt', 'mqtt-wss'] as const) {
      const c = await connectClient(server, which, signedConnect(dev), { protocolVersion: 5 });
      const own = `/sys/${dev.productKey}/${dev.deviceName}/thing/event/+/post_reply`;
      assert.deepEqual(await subscribe(c, own, 1), [1]);
      assert.deepEqual(await subscribe(c, '#'), [0x87]);
      const topic = `/sys/${dev.productKey}/${dev.deviceName}/thing/event/property/post`;
      const reply = nextMessage(c, (t) => t === topic + '_reply');
      await new Promise<void>((resolve, reject) => c.publish(topic, JSON.stringify({ id: '9', params: {} }), { qos: 1 }, (e) => (e ? reject(e) : resolve())));
      assert.equal(JSON.parse((await reply).payload.toString()).id, '9');
      await new Promise<void>((resolve, reject) => c.unsubscribe([own, '/sys/x/y/z'], (e) => (e ? reject(e) : resolve())));
      assert.ok(c.connected);
      await endClient(c);
    }
  });

  it('get MQTT 5 reason codes on refusal: 0x87 bad signature, 0x8A disabled, 0x86 bad username, 0x85 no extension', async () => {
    assert.equal((await connectRefusal(server, 'mqtt', signedConnect({ ...dev, deviceSecret: 'Wrong000000000000000000000000000' }), { protocolVersion: 5 })).code, 0x87);
    const d = await createDevice(server, { productKey: dev.productKey });
    await server.running.ctx.services.registry.setEnabled(d.productKey, d.deviceName, false);
    assert.equal((await connectRefusal(server, 'mqtt', signedConnect(d), { protocolVersion: 5 })).code, 0x8a);
    const good = signedConnect(dev);
    assert.equal((await connectRefusal(server, 'mqtt', { ...good, username: 'nope' }, { protocolVersion: 5 })).code, 0x86);
    assert.equal((await connectRefusal(server, 'mqtt', { ...good, clientId: 'plain' }, { protocolVersion: 5 })).code, 0x85);
  });
});

describe('TLS profiles on the MQTT listeners', () => {
  /** Connects over TLS offering only the given TLS 1.2 suite; resolves true on CONNACK 0. */
  function tryCipher(server: TestServer, which: 'mqtt-tls' | 'mqtts', cipher: string, d: DeviceCredentials): Promise<boolean> {
    const { url, tls } = listenerUrl(server, which);
    const c = signedConnect(d);
    return new Promise((resolve) => {
      // mqtt.js passes unknown options through to tls.connect.
      const tlsOnly = { ciphers: cipher, maxVersion: 'TLSv1.2' } as Record<string, unknown>;
      const client = mqtt.connect(url, { ...tls, ...tlsOnly, clientId: c.clientId, username: c.username, password: c.password, reconnectPeriod: 0, connectTimeout: 5_000 });
      client.once('connect', () => {
        client.end(true);
        resolve(true);
      });
      client.once('error', () => {
        client.end(true);
        resolve(false);
      });
      client.once('close', () => resolve(false));
    });
  }

  it('compat (default) lets in the C Link SDK style TLS 1.2 RSA key exchange with AES-CBC, on 1883 and MQTTS', async () => {
    const server = await startTestServer();
    try {
      const d = await createDevice(server);
      for (const which of ['mqtt-tls', 'mqtts'] as const) {
        assert.equal(await tryCipher(server, which, 'AES128-SHA', d), true, which);
        assert.equal(await tryCipher(server, which, 'AES256-SHA256', d), true, which);
        assert.equal(await tryCipher(server, which, 'ECDHE-RSA-AES128-GCM-SHA256', d), true, which);
      }
    } finally {
      await server.stop();
    }
  });

  it('strict allows only forward-secret AEAD suites', async () => {
    const server = await startTestServer({ tlsProfile: 'strict' });
    try {
      const d = await createDevice(server);
      for (const which of ['mqtt-tls', 'mqtts'] as const) {
        assert.equal(await tryCipher(server, which, 'AES128-SHA', d), false, which);
        assert.equal(await tryCipher(server, which, 'ECDHE-RSA-AES128-SHA', d), false, which);
        assert.equal(await tryCipher(server, which, 'ECDHE-RSA-AES128-GCM-SHA256', d), true, which);
      }
    } finally {
      await server.stop();
    }
  });
});
