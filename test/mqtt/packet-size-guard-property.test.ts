/**
 * The packet-size scanner (packet-size-guard.ts) against mqtt-packet's own encoder: for any
 * sequence of real packets cut into chunks at any points it follows the packet boundaries
 * exactly (as many fixed headers as packets, none invented inside bodies), refuses at the
 * fixed header of the first packet over the limit (never later, in its body) and refuses a
 * remaining length with a 5th varint byte.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import mqttPacket from 'mqtt-packet';
import { newPacketScanState, scanPackets, type ScanVerdict } from '../../src/mqtt/packet-size-guard.js';
import { MAX_PACKET_SIZE, MAX_REMAINING_LENGTH, PRE_CONNACK_MAX_REMAINING_LENGTH } from '../../src/mqtt/packet-limits.js';

const payloadSize = fc.oneof(
  { weight: 10, arbitrary: fc.integer({ min: 0, max: 200 }) },
  { weight: 6, arbitrary: fc.integer({ min: 100, max: 20_000 }) }, // 2- and 3-byte remaining lengths
  { weight: 1, arbitrary: fc.integer({ min: 2_097_000, max: 2_097_300 }) }, // around the 4-byte boundary
);
const topic = fc.string({ minLength: 1, maxLength: 40 }).map((s) => s.replace(/[#+\u0000]/g, 'x'));

const packetArb: fc.Arbitrary<Buffer> = fc.oneof(
  fc.record({ topic, size: payloadSize, qos: fc.constantFrom(0, 1) }).map(({ topic, size, qos }) =>
    mqttPacket.generate({ cmd: 'publish', topic, payload: Buffer.alloc(size, 0x61), qos: qos as 0 | 1, messageId: qos ? 7 : undefined, retain: false, dup: false }),
  ),
  fc.record({ clientId: fc.string({ maxLength: 300 }), v: fc.constantFrom(4, 5) }).map(({ clientId, v }) =>
    mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: v as 4 | 5, clean: true, keepalive: 60, clientId, username: 'dev&pk', password: Buffer.from('0123456789abcdef') }),
  ),
  fc.array(topic, { minLength: 1, maxLength: 5 }).map((ts) => mqttPacket.generate({ cmd: 'subscribe', messageId: 3, subscriptions: ts.map((t) => ({ topic: t, qos: 0 as const })) })),
  fc.array(topic, { minLength: 1, maxLength: 5 }).map((ts) => mqttPacket.generate({ cmd: 'unsubscribe', messageId: 4, unsubscriptions: ts })),
  fc.constantFrom(
    mqttPacket.generate({ cmd: 'pingreq' }),
    mqttPacket.generate({ cmd: 'pingresp' }),
    mqttPacket.generate({ cmd: 'disconnect' }),
    mqttPacket.generate({ cmd: 'puback', messageId: 9 }),
    mqttPacket.generate({ cmd: 'connack', returnCode: 0, sessionPresent: false }),
  ),
);

interface Framed {
  bytes: Buffer;
  /** Per packet: where it starts, where its fixed header ends, its remaining length. */
  packets: { start: number; headerEnd: number; remaining: number }[];
}

/** Decodes each generated packet's fixed header independently of the scanner. */
function frame(packets: Buffer[]): Framed {
  const out: Framed['packets'] = [];
  let start = 0;
  for (const p of packets) {
    let i = 1;
    let remaining = 0;
    let mul = 1;
    for (;;) {
      const b = p[i++]!;
      remaining += (b & 0x7f) * mul;
      mul *= 128;
      if (!(b & 0x80)) break;
    }
    assert.equal(p.length, i + remaining, 'generate() wrote what its header declares');
    out.push({ start, headerEnd: start + i, remaining });
    start += p.length;
  }
  return { bytes: Buffer.concat(packets), packets: out };
}

/** Cuts bytes at the given points (any, deduplicated, in range); chunks are views, not copies. */
function cut(bytes: Buffer, points: number[]): { from: number; chunk: Buffer }[] {
  const at = [...new Set(points.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: { from: number; chunk: Buffer }[] = [];
  let prev = 0;
  for (const p of [...at, bytes.length]) {
    if (p > prev) out.push({ from: prev, chunk: bytes.subarray(prev, p) });
    prev = p;
  }
  return out;
}

const scenario = fc.record({
  packets: fc.array(packetArb, { minLength: 1, maxLength: 12 }),
  cuts: fc.array(fc.nat(), { maxLength: 30 }),
  singleBytes: fc.boolean(),
});

function chunksOf(f: Framed, cuts: number[], singleBytes: boolean) {
  // Sometimes one byte per chunk around the first headers: every split of a fixed header.
  const points = singleBytes ? [...cuts, ...Array.from({ length: Math.min(f.bytes.length, 16) }, (_, i) => i)] : cuts;
  return cut(f.bytes, points);
}

describe('packet-size scanner (property, against mqtt-packet generate())', () => {
  it('follows packet boundaries across any chunking when nothing is over the limit', () => {
    fc.assert(
      fc.property(scenario, ({ packets, cuts, singleBytes }) => {
        const f = frame(packets);
        const s = newPacketScanState();
        for (const { from, chunk } of chunksOf(f, cuts, singleBytes)) {
          assert.equal(scanPackets(s, chunk, Number.MAX_SAFE_INTEGER), 'ok');
          const seen = from + chunk.length;
          assert.equal(s.packets, f.packets.filter((p) => p.headerEnd <= seen).length, `headers completed after ${seen} bytes`);
        }
        assert.deepEqual({ skip: s.skip, header: s.header, packets: s.packets }, { skip: 0, header: 0, packets: packets.length });
      }),
      { numRuns: 300 },
    );
  });

  it('refuses at the fixed header of the first packet over the limit, never in its body', () => {
    fc.assert(
      fc.property(scenario, fc.nat(), fc.integer({ min: -2, max: 2 }), ({ packets, cuts, singleBytes }, pick, delta) => {
        const f = frame(packets);
        // A limit right at one packet's remaining length (+-2), so boundaries are hit.
        const limit = Math.max(0, f.packets[pick % f.packets.length]!.remaining + delta);
        const firstBig = f.packets.findIndex((p) => p.remaining > limit);
        const s = newPacketScanState();
        let verdict: ScanVerdict = 'ok';
        let at: { from: number; to: number } | undefined;
        for (const { from, chunk } of chunksOf(f, cuts, singleBytes)) {
          verdict = scanPackets(s, chunk, limit);
          if (verdict !== 'ok') {
            at = { from, to: from + chunk.length };
            break;
          }
        }
        if (firstBig < 0) {
          assert.equal(verdict, 'ok');
          return;
        }
        assert.equal(verdict, 'too_large');
        assert.equal(s.packets, firstBig, 'every packet before the big one passed');
        const big = f.packets[firstBig]!;
        // The refusing chunk holds a remaining-length byte of the big packet.
        assert.ok(at!.from < big.headerEnd && at!.to > big.start + 1, `refused in chunk [${at!.from}, ${at!.to}) for header [${big.start}, ${big.headerEnd})`);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses a remaining length with a 5th varint byte, wherever the chunks are cut', () => {
    fc.assert(
      fc.property(scenario, fc.array(fc.integer({ min: 0x80, max: 0xff }), { minLength: 4, maxLength: 4 }), fc.integer({ min: 0, max: 0x7f }), ({ packets, cuts, singleBytes }, four, fifth) => {
        const good = frame(packets);
        const bad = Buffer.from([0x30, ...four, fifth, 0, 0, 0]);
        const f = { bytes: Buffer.concat([good.bytes, bad]), packets: good.packets };
        const s = newPacketScanState();
        let verdict: ScanVerdict = 'ok';
        for (const { chunk } of chunksOf(f, cuts, singleBytes)) {
          verdict = scanPackets(s, chunk, Number.MAX_SAFE_INTEGER);
          if (verdict !== 'ok') break;
        }
        assert.equal(verdict, 'malformed');
        assert.equal(s.packets, packets.length);
      }),
      { numRuns: 200 },
    );
  });

  it('the limits: 64 KiB before login, 256 KB payload + 68 KiB after, Maximum Packet Size counts the fixed header', () => {
    assert.equal(PRE_CONNACK_MAX_REMAINING_LENGTH, 65_536);
    assert.equal(MAX_REMAINING_LENGTH, 256 * 1024 + 68 * 1024);
    // A publish with the largest topic and a 256 KB payload fits; its whole packet is <= MAX_PACKET_SIZE.
    const p = mqttPacket.generate({ cmd: 'publish', topic: 't'.repeat(65_535), payload: Buffer.alloc(256 * 1024), qos: 1, messageId: 1, retain: false, dup: false });
    assert.ok(p.length <= MAX_PACKET_SIZE);
    assert.equal(scanPackets(newPacketScanState(), p, MAX_REMAINING_LENGTH), 'ok');
    assert.equal(scanPackets(newPacketScanState(), p, PRE_CONNACK_MAX_REMAINING_LENGTH), 'too_large');
    assert.equal(MAX_PACKET_SIZE, MAX_REMAINING_LENGTH + 4);
  });
});
