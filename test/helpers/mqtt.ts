/**
 * MQTT test helpers: build a signed device CONNECT the way the SDKs do (spec 1.1, 1.2),
 * connect a real mqtt.js client to any listener of a test server, and read refusals.
 */
import fs from 'node:fs';
import { createHmac } from 'node:crypto';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { TestServer } from './server.js';

export type ListenerName = 'mqtt' | 'mqtt-tls' | 'mqtts' | 'mqtt-ws' | 'mqtt-wss';

export interface DeviceCredentials {
  productKey: string;
  deviceName: string;
  deviceSecret: string;
  iotId?: string;
}

export interface SignedConnectInput extends DeviceCredentials {
  /** Wire name, e.g. hmacsha256, HmacSHA1; omitted from the ClientId when null. */
  signMethod?: string | null;
  /** Algorithm used to compute the password (defaults to the one signMethod names). */
  signWith?: 'md5' | 'sha1' | 'sha256';
  clientId?: string;
  /** Omitted from ClientId and sign content when null. */
  timestamp?: string | null;
  securemode?: string | null;
  /** Extra `k=v` items appended to the extension section. */
  extra?: string[];
  upperHex?: boolean;
}

export interface SignedConnect {
  clientId: string;
  username: string;
  password: string;
}

function algorithmOf(method: string): 'md5' | 'sha1' | 'sha256' {
  const m = method.toLowerCase();
  if (m === 'hmacmd5') return 'md5';
  if (m === 'hmacsha1') return 'sha1';
  if (m === 'hmacsha256') return 'sha256';
  throw new Error(`test helper: no algorithm for ${method}`);
}

/** The CONNECT fields a device SDK would send. */
export function signedConnect(input: SignedConnectInput): SignedConnect {
  const signMethod = input.signMethod === undefined ? 'hmacsha256' : input.signMethod;
  const clientId = input.clientId ?? `${input.productKey}.${input.deviceName}`;
  const timestamp = input.timestamp === undefined ? '2524608000000' : input.timestamp;
  const securemode = input.securemode === undefined ? '3' : input.securemode;
  const items: string[] = [];
  if (securemode !== null) items.push(`securemode=${securemode}`);
  if (signMethod !== null) items.push(`signmethod=${signMethod}`);
  if (timestamp !== null) items.push(`timestamp=${timestamp}`);
  items.push(...(input.extra ?? []));
  let content = `clientId${clientId}deviceName${input.deviceName}productKey${input.productKey}`;
  if (timestamp !== null) content += `timestamp${timestamp}`;
  const alg = input.signWith ?? (signMethod === null ? 'md5' : algorithmOf(signMethod));
  let password = createHmac(alg, input.deviceSecret).update(content).digest('hex');
  if (input.upperHex) password = password.toUpperCase();
  return { clientId: `${clientId}|${items.join(',')}|`, username: `${input.deviceName}&${input.productKey}`, password };
}

export function caOf(server: TestServer): string {
  const p = server.running.ctx.tls.caPath;
  if (!p) throw new Error('test server has no generated CA');
  return fs.readFileSync(p, 'utf8');
}

/** URL and TLS options of one listener of the test server. */
export function listenerUrl(server: TestServer, which: ListenerName): { url: string; tls: IClientOptions } {
  const l = server.running.listeners;
  const port = (name: string) => {
    const found = l[name];
    if (!found) throw new Error(`test server has no listener ${name}`);
    return found.port;
  };
  const tlsOpts: IClientOptions = { ca: caOf(server), rejectUnauthorized: true, servername: 'localhost' };
  switch (which) {
    case 'mqtt':
      return { url: `mqtt://127.0.0.1:${port('mqtt')}`, tls: {} };
    case 'mqtt-tls':
      return { url: `mqtts://127.0.0.1:${port('mqtt')}`, tls: tlsOpts };
    case 'mqtts':
      return { url: `mqtts://127.0.0.1:${port('mqtts')}`, tls: tlsOpts };
    case 'mqtt-ws':
      return { url: `ws://127.0.0.1:${port('mqtt-ws')}/mqtt`, tls: {} };
    case 'mqtt-wss':
      return { url: `wss://127.0.0.1:${port('mqtt-wss')}/mqtt`, tls: tlsOpts };
  }
}

export interface ConnectOptions {
  keepalive?: number;
  clean?: boolean;
  protocolVersion?: 3 | 4 | 5;
}

function clientOptions(server: TestServer, which: ListenerName, c: SignedConnect, o: ConnectOptions): { url: string; opts: IClientOptions } {
  const { url, tls } = listenerUrl(server, which);
  return {
    url,
    opts: {
      ...tls,
      clientId: c.clientId,
      username: c.username,
      password: c.password,
      keepalive: o.keepalive ?? 60,
      clean: o.clean ?? true,
      protocolVersion: o.protocolVersion ?? 4,
      reconnectPeriod: 0,
      connectTimeout: 5_000,
    },
  };
}

/** Connects and resolves once CONNACK 0 arrived; rejects with the refusal otherwise. */
export function connectClient(server: TestServer, which: ListenerName, c: SignedConnect, o: ConnectOptions = {}): Promise<MqttClient> {
  const { url, opts } = clientOptions(server, which, c, o);
  return connectUrl(url, opts);
}

/** Connects expecting a refusal; resolves with the CONNACK return code and whether the socket closed. */
export function connectRefusal(server: TestServer, which: ListenerName, c: SignedConnect, o: ConnectOptions = {}): Promise<{ code: number | undefined; closed: boolean }> {
  const { url, opts } = clientOptions(server, which, c, o);
  return refusalAt(url, opts);
}

/** Connects an mqtt.js client to a URL; resolves once CONNACK 0 arrived, rejects with the refusal otherwise. */
export function connectUrl(url: string, opts: IClientOptions): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, opts);
    const fail = (err: Error) => {
      client.end(true);
      reject(err);
    };
    client.once('connect', () => {
      client.off('error', fail);
      resolve(client);
    });
    client.once('error', fail);
    client.once('close', () => fail(new Error('closed before CONNACK')));
  });
}

/** Connects expecting a refusal at a URL; resolves with the CONNACK return code once the socket closed. */
export function refusalAt(url: string, opts: IClientOptions): Promise<{ code: number | undefined; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, opts);
    let code: number | undefined;
    client.once('connect', () => {
      client.end(true);
      reject(new Error('connection was accepted'));
    });
    client.on('error', (err: Error & { code?: number }) => {
      if (typeof err.code === 'number') code = err.code;
    });
    client.once('close', () => {
      client.end(true);
      resolve({ code, closed: true });
    });
  });
}

/**
 * SUBSCRIBE and resolve with the granted codes (0x80 = refused). mqtt.js 5 reports a refused
 * filter as an error carrying the SUBACK; that is an answer here, not a failure.
 */
export function subscribe(client: MqttClient, topic: string | Record<string, { qos: 0 | 1 }>, qos: 0 | 1 = 0): Promise<number[]> {
  const subs = typeof topic === 'string' ? { [topic]: { qos } } : topic;
  return new Promise((resolve, reject) => {
    client.subscribe(subs, (err, granted) => {
      const suback = (err as (Error & { packet?: { granted?: (number | { qos: number })[] } }) | null)?.packet;
      if (err && !suback?.granted) return reject(err);
      const codes = suback?.granted ?? (granted ?? []).map((g) => g.qos);
      resolve(codes.map((g) => (typeof g === 'number' ? g : g.qos)));
    });
  });
}

/** Resolves with the next message on a topic matching `predicate`, or rejects after `ms`. */
export function nextMessage(client: MqttClient, predicate: (topic: string) => boolean, ms = 3_000): Promise<{ topic: string; payload: Buffer }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('message', onMessage);
      reject(new Error('no message within ' + ms + 'ms'));
    }, ms);
    const onMessage = (topic: string, payload: Buffer) => {
      if (!predicate(topic)) return;
      clearTimeout(timer);
      client.off('message', onMessage);
      resolve({ topic, payload });
    };
    client.on('message', onMessage);
  });
}

export function waitForClose(client: MqttClient, ms = 3_000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!client.connected && client.disconnected) return resolve();
    const timer = setTimeout(() => reject(new Error('client not closed within ' + ms + 'ms')), ms);
    client.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export function endClient(client: MqttClient | undefined): Promise<void> {
  if (!client) return Promise.resolve();
  return new Promise((resolve) => client.end(true, {}, () => resolve()));
}

/** Creates a product and one device through the registry; returns the credentials. */
export async function createDevice(server: TestServer, opts: { requireTls?: boolean; productKey?: string } = {}): Promise<DeviceCredentials & { iotId: string }> {
  const registry = server.running.ctx.services.registry;
  const productKey = opts.productKey ?? (await registry.createProduct({ productName: 'mqtt test product', requireTls: opts.requireTls ?? false })).productKey;
  const [d] = await registry.createDevices(productKey, { count: 1 });
  return { productKey, deviceName: d!.deviceName, deviceSecret: d!.deviceSecret, iotId: d!.iotId };
}

/** Polls until `check` returns a truthy value (store writes are batched a few ms after CONNACK). */
export async function eventually<T>(check: () => Promise<T | undefined | false> | T | undefined | false, ms = 3_000): Promise<T> {
  const until = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > until) throw new Error('condition not met within ' + ms + 'ms' + (last ? `: ${String(last)}` : ''));
    await new Promise((r) => setTimeout(r, 20));
  }
}
