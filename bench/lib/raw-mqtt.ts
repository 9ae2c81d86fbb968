/** A minimal MQTT 3.1.1 client over a raw socket (mqtt-packet), for scenarios that talk after CONNACK. */
import net from 'node:net';
import tls from 'node:tls';
import mqttPacket from 'mqtt-packet';
import { DISCONNECT } from './fleet.js';
import type { Target } from './loadgen.js';

export class RawMqttClient {
  private socket!: net.Socket;
  private readonly parser = mqttPacket.parser({ protocolVersion: 4 });
  private readonly listeners = new Set<(p: mqttPacket.IPublishPacket) => void>();

  /** Connects and resolves on CONNACK 0; rejects with the return code otherwise. */
  static connect(target: Target, connectPacket: Buffer, timeoutMs = 10_000): Promise<RawMqttClient> {
    const c = new RawMqttClient();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        c.socket.destroy();
        reject(new Error('no CONNACK'));
      }, timeoutMs);
      c.socket = target.tls
        ? tls.connect({ host: target.host, port: target.port, ca: target.tls.ca, servername: target.tls.servername })
        : net.connect({ host: target.host, port: target.port });
      c.socket.setNoDelay(true);
      c.socket.once(target.tls ? 'secureConnect' : 'connect', () => c.socket.write(connectPacket));
      c.socket.on('data', (d: Buffer) => c.parser.parse(d));
      c.socket.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      c.parser.on('packet', (p) => {
        if (p.cmd === 'connack') {
          clearTimeout(timer);
          if (p.returnCode === 0) resolve(c);
          else {
            c.socket.destroy();
            reject(new Error(`CONNACK ${p.returnCode}`));
          }
        } else if (p.cmd === 'publish') {
          for (const l of c.listeners) l(p);
        }
      });
    });
  }

  onPublish(l: (p: mqttPacket.IPublishPacket) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  publish(topic: string, payload: string | Buffer): void {
    this.socket.write(mqttPacket.generate({ cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false }));
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.end(DISCONNECT);
      setTimeout(() => this.socket.destroy(), 2_000).unref();
    });
  }
}
