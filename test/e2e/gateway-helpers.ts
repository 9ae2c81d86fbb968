/**
 * Shared by the gateway e2e tests: products and devices for a gateway with sub-devices,
 * signing the way the SDKs do (spec 4.3, 4.5), and request/reply over a real MQTT client.
 */
import { createHmac } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import type { Device } from '../../src/core/records.js';
import { connectClient, signedConnect, type DeviceCredentials } from '../helpers/mqtt.js';
import type { TestServer } from '../helpers/server.js';

export interface GatewaySetup {
  gateway: DeviceCredentials & { iotId: string };
  subProductKey: string;
  subProductSecret: string;
  subs: (DeviceCredentials & { iotId: string })[];
}

/** A GATEWAY product with one gateway, and a SUB_DEVICE product with `subCount` sub-devices. */
export async function setupGateway(
  server: TestServer,
  opts: { subCount?: number; dynamicRegistration?: boolean; gatewayNodeType?: 'GATEWAY' | 'DEVICE' } = {},
): Promise<GatewaySetup> {
  const registry = server.running.ctx.services.registry;
  const gwProduct = await registry.createProduct({ productName: 'gateway product', nodeType: opts.gatewayNodeType ?? 'GATEWAY' });
  const [gw] = await registry.createDevices(gwProduct.productKey, { count: 1 });
  const subProduct = await registry.createProduct({
    productName: 'sub device product',
    nodeType: 'SUB_DEVICE',
    dynamicRegistration: opts.dynamicRegistration ?? false,
  });
  const count = opts.subCount ?? 3;
  const subs = count > 0 ? await registry.createDevices(subProduct.productKey, { count }) : [];
  return {
    gateway: creds(gw!),
    subProductKey: subProduct.productKey,
    subProductSecret: subProduct.productSecret,
    subs: subs.map(creds),
  };
}

export function creds(d: Device): DeviceCredentials & { iotId: string } {
  return { productKey: d.productKey, deviceName: d.deviceName, deviceSecret: d.deviceSecret, iotId: d.iotId };
}

export async function connectGateway(server: TestServer, gw: DeviceCredentials, extra: string[] = []): Promise<MqttClient> {
  return connectClient(server, 'mqtt', signedConnect({ ...gw, extra }));
}

function hmac(alg: 'md5' | 'sha1' | 'sha256', key: string, content: string): string {
  return createHmac(alg, key).update(content).digest('hex');
}

const ALG: Record<string, 'md5' | 'sha1' | 'sha256'> = { hmacmd5: 'md5', hmacsha1: 'sha1', hmacsha256: 'sha256' };

/** A topo/add entry the way C SDK 4.x signs it (`signmethod` key, clientId pk.dn). */
export function topoEntry(sub: DeviceCredentials, opts: { signmethod?: string; secret?: string; timestamp?: string | number; upper?: boolean } = {}) {
  const signmethod = opts.signmethod ?? 'hmacSha256';
  const clientId = `${sub.productKey}.${sub.deviceName}`;
  const timestamp = opts.timestamp ?? '1524448722000';
  let sign = hmac(ALG[signmethod.toLowerCase()]!, opts.secret ?? sub.deviceSecret, `clientId${clientId}deviceName${sub.deviceName}productKey${sub.productKey}timestamp${timestamp}`);
  if (opts.upper) sign = sign.toUpperCase();
  return { productKey: sub.productKey, deviceName: sub.deviceName, clientId, timestamp, signmethod, sign };
}

/** combine/login params (spec 4.5); clientId signed verbatim, cleanSession unsigned. */
export function loginParams(
  sub: DeviceCredentials,
  opts: { signMethod?: string; secret?: string; clientId?: string; timestamp?: string | number; withMethod?: boolean } = {},
) {
  const signMethod = opts.signMethod ?? 'hmacsha1';
  const clientId = opts.clientId ?? `${sub.productKey}&${sub.deviceName}`;
  const timestamp = opts.timestamp ?? String(Date.now());
  const sign = hmac(ALG[signMethod.toLowerCase()]!, opts.secret ?? sub.deviceSecret, `clientId${clientId}deviceName${sub.deviceName}productKey${sub.productKey}timestamp${timestamp}`);
  const params: Record<string, unknown> = { productKey: sub.productKey, deviceName: sub.deviceName, clientId, timestamp, sign, cleanSession: 'true' };
  if (opts.withMethod !== false) params.signMethod = signMethod;
  return params;
}

let seq = 1000;

export interface Reply {
  topic: string;
  body: any;
}

/**
 * Publishes `body` (an id is added when absent) and resolves with the first message on
 * `replyTopic` (default: topic + "_reply") whose id matches. No SUBSCRIBE: replies must be
 * delivered anyway (spec 1.3).
 */
export function request(client: MqttClient, topic: string, body: Record<string, unknown> | string, opts: { replyTopic?: string; ms?: number } = {}): Promise<Reply> {
  const replyTopic = opts.replyTopic ?? `${topic}_reply`;
  const payload = typeof body === 'string' ? body : JSON.stringify({ id: String(++seq), version: '1.0', ...body });
  const id = typeof body === 'string' ? undefined : (JSON.parse(payload) as { id: unknown }).id;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('message', onMessage);
      reject(new Error(`no reply on ${replyTopic} within ${opts.ms ?? 5000}ms`));
    }, opts.ms ?? 5000);
    const onMessage = (t: string, p: Buffer) => {
      if (t !== replyTopic) return;
      let parsed: any;
      try {
        parsed = JSON.parse(p.toString('utf8'));
      } catch {
        return;
      }
      if (id !== undefined && parsed.id !== id) return;
      clearTimeout(timer);
      client.off('message', onMessage);
      resolve({ topic: t, body: parsed });
    };
    client.on('message', onMessage);
    client.publish(topic, payload, { qos: 0 });
  });
}

/** Collects every message on `topic` until stopped. */
export function collect(client: MqttClient, topic: string): { messages: any[]; stop(): void } {
  const messages: any[] = [];
  const on = (t: string, p: Buffer) => {
    if (t !== topic) return;
    try {
      messages.push(JSON.parse(p.toString('utf8')));
    } catch {
      messages.push(p.toString('utf8'));
    }
  };
  client.on('message', on);
  return { messages, stop: () => client.off('message', on) };
}

export const sysTopic = (gw: DeviceCredentials, suffix: string) => `/sys/${gw.productKey}/${gw.deviceName}/${suffix}`;
export const sessionTopic = (gw: DeviceCredentials, op: string) => `/ext/session/${gw.productKey}/${gw.deviceName}/combine/${op}`;
export const errorTopic = (gw: DeviceCredentials) => `/ext/error/${gw.productKey}/${gw.deviceName}`;

/** Attaches sub-devices through the management API (the operator's way, no signatures). */
export async function attachByApi(server: TestServer, gw: DeviceCredentials, subs: DeviceCredentials[]) {
  const r = await server.request('POST', `/api/v1/products/${gw.productKey}/devices/${gw.deviceName}/sub-devices`, {
    subDevices: subs.map((s) => ({ productKey: s.productKey, deviceName: s.deviceName })),
  });
  if (r.status !== 200) throw new Error(`attach failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

export async function statusOf(server: TestServer, d: DeviceCredentials): Promise<string> {
  const r = await server.request('GET', `/api/v1/products/${d.productKey}/devices/${encodeURIComponent(d.deviceName)}`);
  return r.body.status;
}

/** Resolves true if nothing arrives on `topic` within `ms`. */
export function silenceOn(client: MqttClient, topic: string, ms = 300): Promise<boolean> {
  return new Promise((resolve) => {
    const on = (t: string) => {
      if (t !== topic) return;
      client.off('message', on);
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      client.off('message', on);
      resolve(true);
    }, ms);
    client.on('message', on);
  });
}

/** A business application (credential scoped to `productKeys`) connected over real MQTT. */
export async function connectApp(server: TestServer, productKeys: string[]): Promise<MqttClient> {
  const { default: mqtt } = await import('mqtt');
  const app = await server.running.ctx.services.applications.create({ name: `gw-test-app-${++seq}`, productKeys });
  const { createHmac } = await import('node:crypto');
  const clientId = `app-${app.appKey}`;
  return new Promise((resolve, reject) => {
    // Plain MQTT: the signed password (the raw appSecret is refused on plain transports).
    const c = mqtt.connect(`mqtt://127.0.0.1:${server.running.listeners.mqtt!.port}`, {
      clientId,
      username: `app:${app.appKey}`,
      password: createHmac('sha256', app.appSecret).update(`appKey${app.appKey}clientId${clientId}`).digest('hex'),
      reconnectPeriod: 0,
    });
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}
