/**
 * The MQTT connection core (src/mqtt/core) end to end: a real listener, real mqtt.js clients
 * (3.1.1 and 5.0) over real TCP sockets.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once, type EventEmitter } from 'node:events';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { listenCore } from '../../src/mqtt/core/index.js';

type Core = Awaited<ReturnType<typeof listenCore>>;
let core: Core;
const clients: MqttClient[] = [];
let seq = 0;
const onceC = (e: MqttClient, name: string) => once(e as unknown as EventEmitter, name);

function uid(p: string): string {
  return `${p}-${process.pid}-${seq++}`;
}

async function connect(opts: IClientOptions = {}): Promise<MqttClient> {
  const c = mqtt.connect({ host: '127.0.0.1', port: core.port, reconnectPeriod: 0, connectTimeout: 5000, ...opts });
  clients.push(c);
  c.on('error', () => undefined);
  await onceC(c, 'connect');
  return c;
}

function nextMessage(c: MqttClient, timeoutMs = 5000): Promise<{ topic: string; payload: Buffer; packet: mqttPacket.IPublishPacket }> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no message')), timeoutMs);
    c.once('message', (topic, payload, packet) => {
      clearTimeout(t);
      resolve({ topic, payload, packet });
    });
  });
}

function closed(s: net.Socket, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (s.destroyed) return resolve();
    s.resume(); // read, so the server's FIN is seen
    const t = setTimeout(() => reject(new Error('socket still open')), timeoutMs);
    s.once('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

before(async () => {
  core = await listenCore({
    topicAliasMaximum: 4,
    maxPacketSize: 4096,
    authenticate: async (_c, p) => (p.username === 'bad' ? { ok: false, reasonCode: 0x86 } : { ok: true }),
    authorizeSubscribe: async (_c, s) => (s.topic === 'forbidden/#' ? { ok: false, reasonCode: 0x87 } : { ok: true }),
  });
});

after(async () => {
  for (const c of clients) c.end(true);
  await core.close();
});

for (const protocolVersion of [4, 5] as const) {
  describe(`MQTT ${protocolVersion === 5 ? '5.0' : '3.1.1'}`, () => {
    for (const qos of [0, 1, 2] as const) {
      it(`publish and subscribe at QoS ${qos}`, async () => {
        const sub = await connect({ protocolVersion, clientId: uid('sub') });
        const pub = await connect({ protocolVersion, clientId: uid('pub') });
        const topic = `t/${uid('q')}`;
        await sub.subscribeAsync(topic, { qos });
        const got = nextMessage(sub);
        await pub.publishAsync(topic, `hello ${qos}`, { qos });
        const m = await got;
        assert.equal(m.topic, topic);
        assert.equal(m.payload.toString(), `hello ${qos}`);
        assert.equal(m.packet.qos, qos);
      });
    }

    it('retained message to a later subscriber, cleared by an empty payload', async () => {
      const pub = await connect({ protocolVersion });
      const topic = `r/${uid('ret')}`;
      await pub.publishAsync(topic, 'kept', { qos: 1, retain: true });
      const sub = await connect({ protocolVersion });
      const got = nextMessage(sub);
      await sub.subscribeAsync(topic, { qos: 1 });
      const m = await got;
      assert.equal(m.payload.toString(), 'kept');
      assert.equal(m.packet.retain, true);
      await pub.publishAsync(topic, '', { qos: 1, retain: true });
      assert.equal(core.broker.retainedFor(topic).length, 0);
    });

    it('will message on an abrupt close, none after DISCONNECT', async () => {
      const topic = `will/${uid('w')}`;
      const watcher = await connect({ protocolVersion });
      await watcher.subscribeAsync(`${topic}/#`, { qos: 1 });
      const polite = await connect({ protocolVersion, will: { topic: `${topic}/polite`, payload: Buffer.from('x'), qos: 1, retain: false } });
      await polite.endAsync();
      const rude = await connect({ protocolVersion, will: { topic: `${topic}/rude`, payload: Buffer.from('gone'), qos: 1, retain: false } });
      const got = nextMessage(watcher);
      (rude as unknown as { stream: net.Socket }).stream.destroy();
      const m = await got;
      assert.equal(m.topic, `${topic}/rude`, 'the first will seen is the abrupt one');
      assert.equal(m.payload.toString(), 'gone');
    });

    it('persistent session: QoS 1 queued while offline arrives on resume', async () => {
      const clientId = uid('persist');
      const topic = `p/${uid('t')}`;
      const extra: IClientOptions = protocolVersion === 5 ? { properties: { sessionExpiryInterval: 300 } } : {};
      const a = await connect({ protocolVersion, clientId, clean: false, ...extra });
      await a.subscribeAsync(topic, { qos: 1 });
      await a.endAsync();
      const pub = await connect({ protocolVersion });
      await pub.publishAsync(topic, 'while away', { qos: 1 });
      const b = mqtt.connect({ host: '127.0.0.1', port: core.port, reconnectPeriod: 0, protocolVersion, clientId, clean: false, ...extra });
      clients.push(b);
      const got = nextMessage(b);
      const [connack] = (await onceC(b, 'connect')) as [mqttPacket.IConnackPacket];
      assert.equal(connack.sessionPresent, true);
      const m = await got;
      assert.equal(m.payload.toString(), 'while away');
    });

    it('takeover: the second connection with a client id closes the first', async () => {
      const clientId = uid('take');
      const first = await connect({ protocolVersion, clientId });
      const gone = onceC(first, 'close');
      const second = await connect({ protocolVersion, clientId });
      await gone;
      assert.equal(second.connected, true);
      assert.equal(core.broker.clients.get(clientId)?.remoteAddress !== undefined, true);
    });

    it('keep-alive: a silent client is closed after 1.5x its keep-alive', async () => {
      const s = net.connect(core.port, '127.0.0.1');
      s.on('error', () => undefined);
      await once(s, 'connect');
      s.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion, clientId: uid('ka'), clean: true, keepalive: 1 } as mqttPacket.IConnectPacket));
      const t0 = Date.now();
      await closed(s, 5000);
      const ms = Date.now() - t0;
      assert.ok(ms >= 1400, `closed after ${ms} ms, expected about 1500`);
    });

    it('a subscription the policy refuses gets a failure code', async () => {
      const c = await connect({ protocolVersion });
      const expected = protocolVersion === 5 ? 0x87 : 0x80;
      await assert.rejects(c.subscribeAsync('forbidden/#', { qos: 1 }), (e: { packet?: { granted?: number[] } }) => e.packet?.granted?.[0] === expected);
      assert.equal(c.connected, true);
    });
  });
}

describe('MQTT 5 specifics', () => {
  it('refused CONNECT carries the hook reason code (v5 0x86, 3.1.1 return code 4)', async () => {
    for (const [protocolVersion, code] of [
      [5, 0x86],
      [4, 4],
    ] as const) {
      const c = mqtt.connect({ host: '127.0.0.1', port: core.port, reconnectPeriod: 0, protocolVersion, username: 'bad', password: 'x' });
      clients.push(c);
      const [err] = (await onceC(c, 'error')) as [Error & { code?: number }];
      assert.equal(err.code, code);
    }
  });

  it('assigned client identifier for an empty client id', async () => {
    const c = mqtt.connect({ host: '127.0.0.1', port: core.port, reconnectPeriod: 0, protocolVersion: 5, clientId: '', clean: true });
    clients.push(c);
    const [connack] = (await onceC(c, 'connect')) as [mqttPacket.IConnackPacket];
    assert.match(String(connack.properties?.assignedClientIdentifier), /^auto-/);
    assert.equal(connack.properties?.topicAliasMaximum, 4);
  });

  it('user properties, response topic and correlation data are forwarded', async () => {
    const sub = await connect({ protocolVersion: 5 });
    const pub = await connect({ protocolVersion: 5 });
    const topic = `req/${uid('rr')}`;
    await sub.subscribeAsync(topic, { qos: 1 });
    const got = nextMessage(sub);
    await pub.publishAsync(topic, 'q', {
      qos: 1,
      properties: { userProperties: { a: 'b' }, responseTopic: 'resp/1', correlationData: Buffer.from('cid'), contentType: 'text/plain' },
    });
    const m = await got;
    assert.deepEqual({ ...m.packet.properties?.userProperties }, { a: 'b' });
    assert.equal(m.packet.properties?.responseTopic, 'resp/1');
    assert.equal(Buffer.from(m.packet.properties!.correlationData!).toString(), 'cid');
    assert.equal(m.packet.properties?.contentType, 'text/plain');
  });

  it('topic alias from the client is resolved; an alias over the maximum disconnects with 0x94', async () => {
    const sub = await connect({ protocolVersion: 5 });
    const topic = `alias/${uid('a')}`;
    await sub.subscribeAsync(topic, { qos: 0 });
    const s = net.connect(core.port, '127.0.0.1');
    s.on('error', () => undefined);
    await once(s, 'connect');
    const gen = (p: object) => mqttPacket.generate(p as mqttPacket.Packet, { protocolVersion: 5 });
    s.write(gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: uid('raw'), clean: true, keepalive: 30 }));
    s.write(gen({ cmd: 'publish', topic, payload: Buffer.from('one'), qos: 0, retain: false, dup: false, properties: { topicAlias: 1 } }));
    const first = nextMessage(sub);
    assert.equal((await first).payload.toString(), 'one');
    const second = nextMessage(sub);
    s.write(gen({ cmd: 'publish', topic: '', payload: Buffer.from('two'), qos: 0, retain: false, dup: false, properties: { topicAlias: 1 } }));
    const m2 = await second;
    assert.equal(m2.topic, topic);
    assert.equal(m2.payload.toString(), 'two');
    const parser = mqttPacket.parser({ protocolVersion: 5 });
    const disconnect = new Promise<number | undefined>((resolve) =>
      parser.on('packet', (p: mqttPacket.Packet) => {
        if (p.cmd === 'disconnect') resolve(p.reasonCode);
      }),
    );
    s.on('data', (d) => parser.parse(d));
    s.write(gen({ cmd: 'publish', topic, payload: Buffer.from('x'), qos: 0, retain: false, dup: false, properties: { topicAlias: 9 } }));
    assert.equal(await disconnect, 0x94);
    await closed(s);
  });

  it('server topic aliases towards a client that allows them', async () => {
    const sub = await connect({ protocolVersion: 5, properties: { topicAliasMaximum: 2 } });
    const pub = await connect({ protocolVersion: 5 });
    const topic = `salias/${uid('s')}`;
    await sub.subscribeAsync(topic, { qos: 0 });
    const aliases: (number | undefined)[] = [];
    const topics: string[] = [];
    sub.on('packetreceive', (p) => {
      if (p.cmd === 'publish') aliases.push(p.properties?.topicAlias);
    });
    for (let i = 0; i < 2; i++) {
      const got = nextMessage(sub);
      await pub.publishAsync(topic, String(i), { qos: 0 });
      topics.push((await got).topic);
    }
    assert.deepEqual(aliases, [1, 1]);
    assert.deepEqual(topics, [topic, topic], 'mqtt.js resolved the alias to the topic');
  });

  it('Receive Maximum of the client bounds QoS 1 in flight; the rest is delivered after acks', async () => {
    const sub = await connect({ protocolVersion: 5, properties: { receiveMaximum: 2 } });
    const pub = await connect({ protocolVersion: 5 });
    const topic = `flow/${uid('f')}`;
    await sub.subscribeAsync(topic, { qos: 1 });
    const got: string[] = [];
    const all = new Promise<void>((resolve) =>
      sub.on('message', (_t, p) => {
        got.push(p.toString());
        if (got.length === 10) resolve();
      }),
    );
    for (let i = 0; i < 10; i++) await pub.publishAsync(topic, String(i), { qos: 1 });
    await all;
    assert.deepEqual(got, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
  });
});

describe('bad input', () => {
  it('a malformed packet closes the connection', async () => {
    const s = net.connect(core.port, '127.0.0.1');
    s.on('error', () => undefined);
    await once(s, 'connect');
    s.write(Buffer.from([0x10, 0x04, 0x00, 0x04, 0x4d, 0x51])); // CONNECT with a truncated protocol name
    s.write(Buffer.from([0x10, 0x02, 0xff, 0xff]));
    await closed(s);
  });

  it('a first packet that is not CONNECT closes the connection', async () => {
    const s = net.connect(core.port, '127.0.0.1');
    s.on('error', () => undefined);
    await once(s, 'connect');
    s.write(mqttPacket.generate({ cmd: 'pingreq' }));
    await closed(s);
  });

  it('an oversized packet is refused at its fixed header (v5: DISCONNECT 0x95)', async () => {
    const c = await connect({ protocolVersion: 5 });
    const reason = new Promise<number | undefined>((resolve) => c.once('disconnect', (p) => resolve(p.reasonCode)));
    c.publish('big', Buffer.alloc(8192, 1), { qos: 0 });
    assert.equal(await reason, 0x95);
  });

  it('an oversized CONNECT declared in the header closes before the body arrives', async () => {
    const s = net.connect(core.port, '127.0.0.1');
    s.on('error', () => undefined);
    await once(s, 'connect');
    s.write(Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f])); // remaining length 268435455
    await closed(s);
  });
});

describe('backpressure', () => {
  it('a consumer that never acknowledges is disconnected with 0x97 once its queue is full; memory stays bounded', async () => {
    const small = await listenCore({ maxQueuedMessages: 5 });
    try {
      const gen = (p: object) => mqttPacket.generate(p as mqttPacket.Packet, { protocolVersion: 5 });
      const s = net.connect(small.port, '127.0.0.1');
      s.on('error', () => undefined);
      await once(s, 'connect');
      const parser = mqttPacket.parser({ protocolVersion: 5 });
      const seen: mqttPacket.Packet[] = [];
      const suback = new Promise<void>((resolve) =>
        parser.on('packet', (p: mqttPacket.Packet) => {
          seen.push(p);
          if (p.cmd === 'suback') resolve();
        }),
      );
      s.on('data', (d) => parser.parse(d));
      s.write(gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: uid('slow'), clean: true, keepalive: 0, properties: { receiveMaximum: 1 } }));
      s.write(gen({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'flood', qos: 1 }] }));
      await suback;
      const pub = mqtt.connect({ host: '127.0.0.1', port: small.port, reconnectPeriod: 0, protocolVersion: 5 });
      clients.push(pub);
      pub.on('error', () => undefined);
      await onceC(pub, 'connect');
      const gone = closed(s, 5000);
      for (let i = 0; i < 10; i++) await pub.publishAsync('flood', String(i), { qos: 1 });
      await gone;
      const publishes = seen.filter((p) => p.cmd === 'publish');
      const disconnect = seen.find((p) => p.cmd === 'disconnect') as mqttPacket.IDisconnectPacket | undefined;
      assert.equal(publishes.length, 1, 'only Receive Maximum (1) message in flight');
      assert.equal(disconnect?.reasonCode, 0x97);
      assert.equal(pub.connected, true, 'the publisher is not affected');
    } finally {
      await small.close();
    }
  });
});
