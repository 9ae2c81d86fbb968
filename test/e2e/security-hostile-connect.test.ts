/**
 * Hostile CONNECT packets on a raw TCP socket (hand-built bytes and mqtt-packet): truncated,
 * a 64 KiB ClientId, invalid UTF-8, zero-length fields, wrong protocol level and name, a
 * huge declared remaining length, garbage. Each gets a refusal (a non-zero CONNACK or the
 * connection closed, never CONNACK 0), nothing is written (no device, no accepted login in
 * the audit), and afterwards a good device still connects and gets its reply.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import mqttPacket from 'mqtt-packet';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { connectClient, nextMessage, signedConnect, type DeviceCredentials } from '../helpers/mqtt.js';

interface RawOutcome {
  /** CONNACK return code when one came back. */
  connack?: number;
  /** The server closed the socket. */
  closed: boolean;
}

/** Writes the bytes, then reads until the server closes or `waitMs` passes (then we close). */
function rawExchange(port: number, bytes: Buffer | Buffer[], waitMs = 1_500, endAfterWrite = false): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const s = net.createConnection({ host: '127.0.0.1', port });
    let got = Buffer.alloc(0);
    let closed = false;
    const timer = setTimeout(() => finish(), waitMs);
    const finish = () => {
      clearTimeout(timer);
      s.destroy();
      const out: RawOutcome = { closed };
      if (got.length >= 4 && got[0] === 0x20 && got[1] === 0x02) out.connack = got[3];
      resolve(out);
    };
    s.on('data', (d: Buffer) => (got = Buffer.concat([got, d])));
    s.on('close', () => {
      closed = true;
      finish();
    });
    s.on('error', () => undefined);
    s.on('connect', () => {
      for (const b of Array.isArray(bytes) ? bytes : [bytes]) s.write(b);
      if (endAfterWrite) s.end();
    });
  });
}

/** An MQTT UTF-8 string field from raw bytes (length prefix + bytes as given). */
function field(bytes: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(bytes.length);
  return Buffer.concat([len, bytes]);
}

function remainingLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

/** A CONNECT built byte by byte: protocol name/level, flags, and raw field bytes. */
function handConnect(o: { name?: Buffer; level?: number; clientId: Buffer; username?: Buffer; password?: Buffer; keepalive?: number }): Buffer {
  let flags = 0x02; // clean session
  if (o.username) flags |= 0x80;
  if (o.password) flags |= 0x40;
  const ka = Buffer.alloc(2);
  ka.writeUInt16BE(o.keepalive ?? 60);
  const body = Buffer.concat([
    field(o.name ?? Buffer.from('MQTT')),
    Buffer.from([o.level ?? 4, flags]),
    ka,
    field(o.clientId),
    ...(o.username ? [field(o.username)] : []),
    ...(o.password ? [field(o.password)] : []),
  ]);
  return Buffer.concat([Buffer.from([0x10]), remainingLength(body.length), body]);
}

describe('hostile CONNECT packets (raw sockets)', () => {
  let server: TestServer;
  let port: number;
  let good: DeviceCredentials;
  let pk: string;

  before(async () => {
    server = await startTestServer();
    port = server.running.listeners['mqtt']!.port;
    const reg = server.running.ctx.services.registry;
    const p = await reg.createProduct({ productName: 'hostile connect' });
    pk = p.productKey;
    const [d] = await reg.createDevices(pk, { deviceNames: ['good-one'] });
    good = { productKey: pk, deviceName: d!.deviceName, deviceSecret: d!.deviceSecret };
  });
  after(async () => {
    await server.stop();
  });

  async function acceptedLogins(): Promise<number> {
    const items = await server.running.ctx.services.audit.query({ productKey: pk, limit: 10_000 });
    return items.filter((e) => e.result === 'allow').length;
  }

  /** The good device connects and its property post is answered. */
  async function stillServes(): Promise<void> {
    const c = await connectClient(server, 'mqtt', signedConnect(good));
    try {
      const topic = `/sys/${pk}/${good.deviceName}/thing/event/property/post`;
      const reply = nextMessage(c, (t) => t === topic + '_reply');
      c.publish(topic, JSON.stringify({ id: '7', version: '1.0', params: { t: 1 }, method: 'thing.event.property.post' }));
      assert.equal(JSON.parse((await reply).payload.toString()).code, 200);
    } finally {
      await c.endAsync();
    }
  }

  const valid = () => {
    const c = signedConnect(good);
    return mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 60, clientId: c.clientId, username: c.username, password: Buffer.from(c.password) });
  };

  const cases: [string, () => Buffer | Buffer[], { endAfterWrite?: boolean; wait?: number }?][] = [
    ['truncated CONNECT (first half, then FIN)', () => valid().subarray(0, Math.floor(valid().length / 2)), { endAfterWrite: true }],
    ['truncated CONNECT (header only)', () => valid().subarray(0, 2), { endAfterWrite: true }],
    ['64 KiB ClientId without extension', () => handConnect({ clientId: Buffer.alloc(65_535, 0x41), username: Buffer.from(`good-one&${'x'}`), password: Buffer.from('00') })],
    [
      '64 KiB ClientId with a valid-looking extension and the right username',
      () => {
        const c = signedConnect(good);
        const id = Buffer.from('A'.repeat(65_535 - 40) + '|securemode=3,signmethod=hmacsha256|');
        return handConnect({ clientId: id.subarray(0, 65_535), username: Buffer.from(c.username), password: Buffer.from(c.password) });
      },
    ],
    ['invalid UTF-8 in ClientId, username and password', () => handConnect({ clientId: Buffer.from([0xff, 0xfe, 0x7c, 0xc3, 0x28, 0x7c]), username: Buffer.from([0x67, 0xed, 0xa0, 0x80, 0x26, 0x70]), password: Buffer.from([0xf8, 0x88, 0x80]) })],
    ['zero-length ClientId, username and password', () => handConnect({ clientId: Buffer.alloc(0), username: Buffer.alloc(0), password: Buffer.alloc(0) })],
    ['zero-length username with a good ClientId', () => handConnect({ clientId: Buffer.from(signedConnect(good).clientId), username: Buffer.alloc(0), password: Buffer.from(signedConnect(good).password) })],
    ['zero-length password', () => handConnect({ clientId: Buffer.from(signedConnect(good).clientId), username: Buffer.from(signedConnect(good).username), password: Buffer.alloc(0) })],
    ['protocol level 6', () => handConnect({ level: 6, clientId: Buffer.from(signedConnect(good).clientId), username: Buffer.from(signedConnect(good).username), password: Buffer.from(signedConnect(good).password) })],
    ['protocol level 0', () => handConnect({ level: 0, clientId: Buffer.from('x|securemode=3|') })],
    ['protocol name MQTX', () => handConnect({ name: Buffer.from('MQTX'), clientId: Buffer.from(signedConnect(good).clientId), username: Buffer.from(signedConnect(good).username), password: Buffer.from(signedConnect(good).password) })],
    ['empty protocol name', () => handConnect({ name: Buffer.alloc(0), clientId: Buffer.from('x') })],
    ['huge declared remaining length (256 MB) with a few bytes', () => Buffer.concat([Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]), Buffer.from('\u0000\u0004MQTT\u0004\u0002\u0000\u003c')]), { wait: 1_000 }],
    ['a malformed remaining length (5 continuation bytes)', () => Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])],
    ['a PUBLISH before any CONNECT', () => mqttPacket.generate({ cmd: 'publish', topic: `/sys/${'x'}/y/thing/event/property/post`, payload: Buffer.from('{}'), qos: 0, retain: false, dup: false })],
    ['random garbage', () => Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256))],
    ['keep-alive 0 on a signed login', () => handConnect({ keepalive: 0, clientId: Buffer.from(signedConnect(good).clientId), username: Buffer.from(signedConnect(good).username), password: Buffer.from(signedConnect(good).password) })],
  ];

  for (const [name, bytes, opts] of cases) {
    it(`${name}: refused, nothing written, the server keeps serving`, async () => {
      const devicesBefore = await server.running.ctx.store.countDevices(pk);
      const allowedBefore = await acceptedLogins();
      const out = await rawExchange(port, bytes(), opts?.wait ?? 1_500, opts?.endAfterWrite ?? false);
      assert.notEqual(out.connack, 0, 'never accepted');
      assert.ok(out.connack !== undefined || out.closed || opts?.wait !== undefined, `neither refused nor closed: ${JSON.stringify(out)}`);
      assert.equal(await server.running.ctx.store.countDevices(pk), devicesBefore);
      assert.equal(await acceptedLogins(), allowedBefore);
      await stillServes();
      const rec = await server.running.ctx.store.getDevice(pk, 'good-one');
      assert.equal(rec?.enabled, true);
    });
  }

  it('60,000-byte ClientId + matching username: refused with a CONNACK code, not just a drop', async () => {
    const c = signedConnect(good);
    const out = await rawExchange(port, handConnect({ clientId: Buffer.alloc(60_000, 0x42), username: Buffer.from(c.username), password: Buffer.from(c.password) }));
    assert.equal(out.connack, 2);
  });

  it('64 KiB ClientId: the CONNECT is over the 64 KiB limit before login, closed without a CONNACK (issue 11 item 3)', async () => {
    const c = signedConnect(good);
    const out = await rawExchange(port, handConnect({ clientId: Buffer.alloc(65_535, 0x42), username: Buffer.from(c.username), password: Buffer.from(c.password) }));
    assert.equal(out.connack, undefined);
    assert.equal(out.closed, true);
  });

  it('keep-alive 0 is refused with CONNACK 3 and recorded on the device (not a crash, not an accept)', async () => {
    const c = signedConnect(good);
    const out = await rawExchange(port, handConnect({ keepalive: 0, clientId: Buffer.from(c.clientId), username: Buffer.from(c.username), password: Buffer.from(c.password) }));
    assert.equal(out.connack, 3);
  });

  it('zero-length password: CONNACK 4', async () => {
    const c = signedConnect(good);
    const out = await rawExchange(port, handConnect({ clientId: Buffer.from(c.clientId), username: Buffer.from(c.username), password: Buffer.alloc(0) }));
    assert.equal(out.connack, 4);
  });
});
