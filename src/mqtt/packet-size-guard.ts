/**
 * Maximum MQTT packet size, checked at the fixed header (issue 11 item 3).
 *
 * mqtt-packet (inside aedes) buffers a packet until all the bytes its fixed header declares
 * have arrived: a socket declaring a 256 MB CONNECT made the server hold whatever it sent.
 * This guard reads only the fixed headers of the byte stream (first byte + remaining-length
 * varint, which may be split across chunks) and skips packet bodies by count, without
 * copying. A declared remaining length over the limit, or a varint with a 5th byte, closes
 * the connection at once and counts as a failure against the source (login-throttle.ts):
 * - before the CONNECT is accepted (CONNACK 0 sent): PRE_CONNACK_MAX_REMAINING_LENGTH (64 KiB);
 * - after it: MAX_REMAINING_LENGTH (the 256 KB payload limit plus topic and header room).
 *
 * It is a 'data' listener next to aedes' 'readable' listener: while a 'readable' listener
 * exists the stream is not flowing and 'data' fires inside the read() aedes makes, with the
 * chunk aedes is about to parse, so the guard sees every byte before the parser does.
 */
import type { Aedes, Client } from 'aedes';
import type { Duplex } from 'node:stream';
import type { MqttBroker } from './broker.js';
import { MAX_REMAINING_LENGTH, PRE_CONNACK_MAX_REMAINING_LENGTH } from './packet-limits.js';
import { isMqtt5Client, setV5DisconnectReason } from './mqtt5-adapter.js';
import { sessionOf } from './sessions.js';

/** Where the scanner is in the byte stream of one connection; starts at a packet boundary. */
export interface PacketScanState {
  /** Body bytes of the current packet not seen yet. */
  skip: number;
  /** Fixed-header bytes of the current packet seen so far: 0 at a packet boundary, else 1 (type byte) + length bytes. */
  header: number;
  /** Remaining length decoded so far. */
  length: number;
  /** Fixed headers completed so far. */
  packets: number;
}

export type ScanVerdict = 'ok' | 'too_large' | 'malformed';

export function newPacketScanState(): PacketScanState {
  return { skip: 0, header: 0, length: 0, packets: 0 };
}

/** Weight of the n-th remaining-length byte (MQTT 3.1.1 2.2.3: at most 4 bytes, 7 bits each). */
const VARINT_WEIGHT = [1, 128, 16_384, 2_097_152];

/**
 * Advances `s` over `chunk`. 'too_large' as soon as the remaining length declared (or its
 * part decoded so far, which can only grow) exceeds `limit`; 'malformed' when a 4th length
 * byte still has its continuation bit set. The packet type byte is not judged here (the
 * parser does that). Pure apart from updating `s`: no I/O, no allocation, no copy.
 */
export function scanPackets(s: PacketScanState, chunk: Uint8Array, limit: number): ScanVerdict {
  const n = chunk.length;
  let i = 0;
  while (i < n) {
    if (s.skip > 0) {
      const left = n - i;
      if (left <= s.skip) {
        s.skip -= left;
        return 'ok';
      }
      i += s.skip;
      s.skip = 0;
      continue;
    }
    if (s.header === 0) {
      s.header = 1;
      s.length = 0;
      i++;
      continue;
    }
    const b = chunk[i++]!;
    s.length += (b & 0x7f) * VARINT_WEIGHT[s.header - 1]!;
    if (s.length > limit) return 'too_large';
    if (b & 0x80) {
      if (s.header === 4) return 'malformed';
      s.header++;
      continue;
    }
    s.header = 0;
    s.packets++;
    s.skip = s.length;
  }
  return 'ok';
}

interface Guard {
  accepted: boolean;
  onAccepted: () => void;
}

const guards = new WeakMap<object, Guard>();
const hooked = new WeakSet<Aedes>();

/** One 'connackSent' listener per broker: a CONNACK 0 lifts the connection to the full limit. */
function hookConnack(aedes: Aedes): void {
  if (hooked.has(aedes)) return;
  hooked.add(aedes);
  aedes.on('connackSent', (packet, client) => {
    if (packet.returnCode !== 0) return;
    const g = guards.get(client.conn);
    if (!g || g.accepted) return;
    g.accepted = true;
    g.onAccepted();
  });
}

/**
 * Watches `conn` (after broker.aedes.handle took it) for packets over the limit.
 * `onAccepted` runs once when the CONNECT on it is accepted (CONNACK 0 written).
 */
export function guardPacketSize(broker: MqttBroker, conn: Duplex, remoteAddress: string, onAccepted: () => void = () => undefined): void {
  hookConnack(broker.aedes);
  const g: Guard = { accepted: false, onAccepted };
  guards.set(conn, g);
  const state = newPacketScanState();
  const onData = (chunk: Buffer) => {
    const limit = g.accepted ? MAX_REMAINING_LENGTH : PRE_CONNACK_MAX_REMAINING_LENGTH;
    const verdict = scanPackets(state, chunk, limit);
    if (verdict === 'ok') return;
    conn.off('data', onData);
    // A logged-in MQTT 5 client is told why (DISCONNECT 0x95 Packet too large, 0x81 Malformed
    // Packet); MQTT 3.1.1 has no server DISCONNECT: the socket just closes.
    const client = (conn as { client?: Client }).client;
    if (g.accepted && client && isMqtt5Client(client)) setV5DisconnectReason(client, verdict === 'too_large' ? 0x95 : 0x81);
    conn.destroy();
    refused(broker, conn, remoteAddress, verdict, state.length, limit, g.accepted);
  };
  conn.on('data', onData);
}

function refused(broker: MqttBroker, conn: Duplex, remoteAddress: string, verdict: ScanVerdict, declared: number, limit: number, accepted: boolean): void {
  const { app, logger } = broker.handlerContext;
  // Not awaited (the connection is already gone); counted in call order, never rejects on an outage.
  app.services.loginThrottle.recordFailure(remoteAddress).catch((e) => logger.warn({ err: e }, 'failure not counted'));
  const fields = {
    event: 'mqtt.packet.refused',
    reason: verdict === 'too_large' ? 'packet too large' : 'malformed remaining length',
    ...(verdict === 'too_large' ? { declared, limit } : {}),
    remote: remoteAddress,
  };
  const session = sessionOf((conn as { client?: Client }).client);
  if (accepted && session) {
    const id = session.identity;
    // A logged-in client: worth a line with who it is (its source is throttled like a failed login).
    logger.warn({ ...fields, ...(id.kind === 'application' ? { app: id.iotId } : { productKey: id.productKey, deviceName: id.deviceName }) }, 'mqtt packet refused; disconnecting');
  } else {
    // Before login anyone can send this as often as they like: debug, counted by the throttle.
    logger.debug(fields, 'mqtt packet refused before login; connection closed');
  }
}
