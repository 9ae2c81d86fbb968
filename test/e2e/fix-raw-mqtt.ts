/**
 * A bare MQTT 3.1.1 connection over net/tls + mqtt-packet, for tests that need control the
 * mqtt.js client does not give: a TLS session established before CONNECT is sent (to hit a
 * timing window), or a client that never sends PINGREQ (keep-alive expiry).
 */
import net from 'node:net';
import tls from 'node:tls';
import mqttPacket, { type IConnackPacket, type IConnectPacket, type Packet } from 'mqtt-packet';

export interface RawMqtt {
  /** Every packet the server sent so far, in order. */
  readonly packets: Packet[];
  send(packet: Packet): void;
  /** The first packet of this kind not returned before (waits up to `ms`). */
  next(cmd: Packet['cmd'], ms?: number): Promise<Packet>;
  /** Sends CONNECT and resolves with the CONNACK. */
  connect(fields: { clientId: string; username?: string; password?: string; keepalive: number }): Promise<IConnackPacket>;
  /** Resolves when the socket is closed (by either side). */
  readonly closed: Promise<void>;
  isClosed(): boolean;
  destroy(): void;
}

export function openRawMqtt(port: number, tlsOptions?: { ca: string; servername: string }): Promise<RawMqtt> {
  return new Promise((resolve, reject) => {
    const socket: net.Socket = tlsOptions
      ? tls.connect({ host: '127.0.0.1', port, ca: tlsOptions.ca, servername: tlsOptions.servername, rejectUnauthorized: true })
      : net.connect({ host: '127.0.0.1', port });
    const packets: Packet[] = [];
    const taken = new Set<Packet>();
    const waiters: (() => void)[] = [];
    let isClosed = false;
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p: Packet) => {
      packets.push(p);
      for (const w of waiters.splice(0)) w();
    });
    socket.on('data', (chunk: Buffer) => parser.parse(chunk));
    const closed = new Promise<void>((r) =>
      socket.once('close', () => {
        isClosed = true;
        for (const w of waiters.splice(0)) w();
        r();
      }),
    );
    socket.on('error', () => undefined);

    const raw: RawMqtt = {
      packets,
      send(packet) {
        socket.write(mqttPacket.generate(packet));
      },
      next(cmd, ms = 5_000) {
        return new Promise((res, rej) => {
          let done = false;
          const look = () => {
            if (done) return;
            const p = packets.find((x) => x.cmd === cmd && !taken.has(x));
            if (p) {
              taken.add(p);
              done = true;
              clearTimeout(timer);
              return res(p);
            }
            if (isClosed) {
              done = true;
              clearTimeout(timer);
              return rej(new Error(`connection closed before a ${cmd} arrived`));
            }
            waiters.push(look);
          };
          const timer = setTimeout(() => {
            done = true;
            rej(new Error(`no ${cmd} within ${ms} ms`));
          }, ms);
          look();
        });
      },
      async connect(f) {
        const packet: IConnectPacket = {
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 4,
          clean: true,
          clientId: f.clientId,
          keepalive: f.keepalive,
          ...(f.username !== undefined ? { username: f.username } : {}),
          ...(f.password !== undefined ? { password: Buffer.from(f.password, 'utf8') } : {}),
        };
        raw.send(packet);
        return (await raw.next('connack')) as IConnackPacket;
      },
      closed,
      isClosed: () => isClosed,
      destroy: () => socket.destroy(),
    };
    socket.once(tlsOptions ? 'secureConnect' : 'connect', () => resolve(raw));
    socket.once('error', reject);
  });
}
