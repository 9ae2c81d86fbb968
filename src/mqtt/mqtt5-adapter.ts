/**
 * MQTT 5.0 clients on an MQTT 3.1.1 broker. aedes 1.2 speaks 3.1/3.1.1 only and refuses
 * protocol level 5 with CONNACK 1, while the platform accepts 5.0 (spec 1.1). This adapter,
 * installed from preConnect for a level-5 CONNECT, lets aedes run the session as 3.1.1:
 * - incoming packets keep being decoded as MQTT 5 (the parser's settings are detached from
 *   the CONNECT packet, whose level aedes then sees as 4); v5 properties are ignored;
 * - outgoing packets, written by aedes in 3.1.1 encoding, are decoded again and re-encoded
 *   as MQTT 5: CONNACK return codes become reason codes (spec 1.7: 0x85/0x86/0x87/0x88, or
 *   the authenticator's own choice such as 0x8A for a disabled device), a refused SUBACK
 *   entry becomes 0x87 (not authorized), UNSUBACK gets one reason code per filter (0x00
 *   removed, 0x11 no subscription existed), and a DISCONNECT the broker sends before closing
 *   (setV5DisconnectReason) carries its reason (e.g. 0x97 quota exceeded).
 * Topic aliases, session expiry and other v5-only features are not offered.
 */
import mqttPacket from 'mqtt-packet';
import type { Client } from 'aedes';
import type { Duplex } from 'node:stream';
import { MAX_PACKET_SIZE } from './packet-limits.js';

/** MQTT 3.1.1 CONNACK return code -> MQTT 5 reason code. */
export const V5_CONNACK_REASON: Record<number, number> = {
  0: 0x00,
  1: 0x84, // unsupported protocol version
  2: 0x85, // client identifier not valid
  3: 0x88, // server unavailable
  4: 0x86, // bad user name or password
  5: 0x87, // not authorized
};

interface ClientInternals {
  _parser: { settings: Record<string, unknown>; prependListener(event: 'packet', cb: (p: mqttPacket.Packet) => void): void };
  subscriptions: Record<string, unknown>;
  conn: Duplex;
}

const reasonOverrides = new WeakMap<Client, number>();

/** The authenticator's MQTT 5 reason code for this client's CONNACK (used only for v5 clients). */
export function setV5ConnackReason(client: Client, reasonCode: number): void {
  reasonOverrides.set(client, reasonCode);
}

const disconnectReasons = new WeakMap<Client, number>();
const mqtt5Clients = new WeakSet<Client>();

/** Whether the client connected with MQTT 5 (its packets go through this adapter). */
export function isMqtt5Client(client: Client): boolean {
  return mqtt5Clients.has(client);
}

/**
 * Refuses an MQTT 5 client's packet the way MQTT 5 says: a DISCONNECT with this reason code
 * is written before aedes closes the connection (MQTT 3.1.1 has none: the socket just closes).
 */
export function setV5DisconnectReason(client: Client, reasonCode: number): void {
  if (client.closed || disconnectReasons.has(client)) return;
  disconnectReasons.set(client, reasonCode);
  // Written in 3.1.1 encoding like everything aedes writes; re-encoded as v5 with the reason.
  client.conn.write(Buffer.from([0xe0, 0x00]));
}

export function adaptMqtt5Client(client: Client, connect: { protocolVersion?: number }): void {
  mqtt5Clients.add(client);
  const internals = client as unknown as ClientInternals;
  // The parser's settings object is the CONNECT packet itself: give it its own, still at level 5.
  internals._parser.settings = { protocolVersion: 5 };
  connect.protocolVersion = 4;

  // Per filter of each UNSUBSCRIBE, whether the client held that subscription, read before
  // aedes handles the packet (prepended): 0x00 success, 0x11 no subscription existed.
  const pendingUnsubscribes = new Map<number, number[]>();
  internals._parser.prependListener('packet', (p) => {
    if (p.cmd === 'unsubscribe' && p.messageId !== undefined) {
      const held = internals.subscriptions ?? {};
      pendingUnsubscribes.set(p.messageId, p.unsubscriptions.map((f) => (Object.hasOwn(held, f) ? 0x00 : 0x11)));
    }
  });

  const conn = internals.conn;
  const write = conn.write.bind(conn) as (chunk: Buffer) => boolean;
  const v4 = mqttPacket.parser({ protocolVersion: 4 });
  let result = true;
  v4.on('packet', (p: mqttPacket.Packet & Record<string, any>) => {
    switch (p.cmd) {
      case 'connack':
        // The largest packet the server takes (packet-size-guard.ts closes on anything larger).
        if (p.returnCode === 0) p.properties = { ...p.properties, maximumPacketSize: MAX_PACKET_SIZE };
        p.reasonCode = p.returnCode === 0 ? 0 : (reasonOverrides.get(client) ?? V5_CONNACK_REASON[p.returnCode as number] ?? 0x80);
        delete p.returnCode;
        break;
      case 'suback':
        p.granted = (p.granted as number[]).map((g) => (g === 0x80 ? 0x87 : g));
        break;
      case 'unsuback': {
        const id = p.messageId as number;
        p.granted = pendingUnsubscribes.get(id) ?? [0x00];
        pendingUnsubscribes.delete(id);
        break;
      }
      case 'disconnect':
        p.reasonCode = disconnectReasons.get(client) ?? 0x00;
        break;
    }
    result = write(mqttPacket.generate(p, { protocolVersion: 5 }));
  });
  v4.on('error', (err: Error) => conn.destroy(err));
  // aedes writes each packet with mqtt-packet's writeToStream (several write calls per packet).
  (conn as { write: unknown }).write = (chunk: Buffer | string, encOrCb?: unknown, cb?: unknown) => {
    result = true;
    v4.parse(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    const done = typeof encOrCb === 'function' ? encOrCb : cb;
    if (typeof done === 'function') process.nextTick(done as () => void);
    return result;
  };
}
