/**
 * A fleet of virtual devices with deterministic DeviceSecrets, and the MQTT CONNECT each
 * one sends, built the way the C Link SDK 4.x builds it (spec 1.2, 1.6): ClientId
 * `pk.dn|timestamp=2524608000000,_ss=1,_v=sdk-c-4.0.0,securemode=N,signmethod=hmacsha256,ext=3|`,
 * Username `dn&pk`, Password = UPPER hex HMAC-SHA256 under the DeviceSecret.
 * The constant timestamp makes each device's CONNECT identical from run to run, so packets
 * are built once before the clock starts and the same bytes go to every broker.
 */
import { createHmac } from 'node:crypto';
import mqttPacket from 'mqtt-packet';
import { connectSignPairs } from '../../src/core/credentials.js';
import { signPairs } from '../../src/core/sign.js';

/** What every C SDK sends as timestamp (2050-01-01). */
export const C_SDK_TIMESTAMP = '2524608000000';

export interface VirtualDevice {
  productKey: string;
  deviceName: string;
  deviceSecret: string;
  iotId: string;
}

function derive(seed: string, label: string, length: number): string {
  return createHmac('sha256', seed).update(label).digest('hex').slice(0, length);
}

export function deviceNameAt(prefix: string, i: number): string {
  return `${prefix}${String(i).padStart(7, '0')}`;
}

/** Devices `${prefix}0000000`..; secrets and iotIds derived from the seed (32 and 30 hex chars). */
export function makeFleet(productKey: string, count: number, seed: string, prefix = 'dev', first = 0): VirtualDevice[] {
  const out: VirtualDevice[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const deviceName = deviceNameAt(prefix, first + i);
    out[i] = {
      productKey,
      deviceName,
      deviceSecret: derive(seed, `secret/${productKey}/${deviceName}`, 32),
      iotId: derive(seed, `iotid/${productKey}/${deviceName}`, 30),
    };
  }
  return out;
}

export interface MqttCredentials {
  clientId: string;
  username: string;
  password: string;
}

/** securemode 3 = plain TCP, 2 = TLS (spec 1.4). The signature does not cover securemode. */
export function deviceCredentials(d: VirtualDevice, securemode: 2 | 3): MqttCredentials {
  const signedId = `${d.productKey}.${d.deviceName}`;
  const password = signPairs('sha256', d.deviceSecret, connectSignPairs(signedId, d.deviceName, d.productKey, C_SDK_TIMESTAMP)).toUpperCase();
  return {
    clientId: `${signedId}|timestamp=${C_SDK_TIMESTAMP},_ss=1,_v=sdk-c-4.0.0,securemode=${securemode},signmethod=hmacsha256,ext=3|`,
    username: `${d.deviceName}&${d.productKey}`,
    password,
  };
}

export function connectPacket(c: MqttCredentials, keepalive = 60): Buffer {
  return mqttPacket.generate({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    keepalive,
    clientId: c.clientId,
    username: c.username,
    password: Buffer.from(c.password, 'utf8'),
  });
}

/** The CONNECT packet of every device of the fleet, built before any clock starts. */
export function connectPackets(fleet: VirtualDevice[], securemode: 2 | 3, keepalive = 60): Buffer[] {
  return fleet.map((d) => connectPacket(deviceCredentials(d, securemode), keepalive));
}

export const DISCONNECT = Buffer.from([0xe0, 0x00]);
