/**
 * Random bytes against a listening core (fast-check): every socket is closed or still
 * answering, the process survives, and a real client still connects afterwards.
 */
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import fc from 'fast-check';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { listenCore } from '../../src/mqtt/core/index.js';

let core: Awaited<ReturnType<typeof listenCore>>;

before(async () => {
  core = await listenCore({ maxPacketSize: 8192, connectTimeoutMs: 500 });
});
after(async () => {
  await core.close();
});

/** Sends chunks, then waits until the server closes the socket or answers a PINGREQ. */
async function throwBytes(chunks: Uint8Array[], afterConnect: boolean): Promise<'closed' | 'alive'> {
  const s = net.connect(core.port, '127.0.0.1');
  s.on('error', () => undefined);
  await once(s, 'connect');
  let alive = false;
  s.on('data', (d: Buffer) => {
    if (d.includes(0xd0)) alive = true; // PINGRESP type byte seen
  });
  const closedP = once(s, 'close').then(() => 'closed' as const);
  if (afterConnect) s.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: `fz${Math.random()}`, clean: true, keepalive: 0 } as mqttPacket.IConnectPacket));
  for (const c of chunks) s.write(c);
  // A stream that is still open must still be framed correctly: after the junk, a PINGREQ.
  s.write(Buffer.from([0xc0, 0x00]));
  const verdict = await Promise.race([closedP, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 2000))]);
  if (verdict === 'closed') return 'closed';
  s.destroy();
  return alive ? 'alive' : 'closed';
}

it('random bytes before and after CONNECT never crash the core; junk sockets end', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { minLength: 1, maxLength: 4 }), fc.boolean(), async (chunks, afterConnect) => {
      const outcome = await throwBytes(chunks, afterConnect);
      assert.ok(outcome === 'closed' || outcome === 'alive');
    }),
    { numRuns: 60 },
  );
  // Every junk socket is gone from the core (closed by the core or by us).
  const deadline = Date.now() + 3000;
  while (core.broker.connectionCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(core.broker.connectionCount, 0);
  const c = mqtt.connect({ host: '127.0.0.1', port: core.port, reconnectPeriod: 0 });
  c.on('error', () => undefined);
  await once(c as unknown as import('node:events').EventEmitter, 'connect');
  await c.endAsync();
});
