/**
 * Size limits of MQTT packets, in one place so the broker (payload check), the packet-size
 * guard (packet-size-guard.ts: remaining length at the fixed header) and the MQTT 5 CONNACK
 * (mqtt5-adapter.ts: Maximum Packet Size) cannot disagree.
 */

/** Spec 1.5: MQTT payload at most 256 KB. */
export const MAX_PAYLOAD_BYTES = 256 * 1024;

/**
 * Largest remaining length accepted before the CONNECT is accepted (CONNACK 0 sent). A real
 * CONNECT is a few hundred bytes; this bounds what an unauthenticated socket can make the
 * server hold (issue 11 item 3).
 */
export const PRE_CONNACK_MAX_REMAINING_LENGTH = 64 * 1024;

/**
 * Largest remaining length accepted from a logged-in client: the payload limit plus room for
 * the topic (at most 65,535 bytes + 2 length bytes), the packet id and 4 KiB of MQTT 5
 * properties.
 */
export const MAX_REMAINING_LENGTH = MAX_PAYLOAD_BYTES + 68 * 1024;

/** The same limit as MQTT 5's Maximum Packet Size counts it: the whole packet, fixed header included. */
export const MAX_PACKET_SIZE = 1 + varintLength(MAX_REMAINING_LENGTH) + MAX_REMAINING_LENGTH;

function varintLength(n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4;
}
