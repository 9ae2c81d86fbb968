/**
 * Helpers of the PROXY protocol tests: an MQTT client over any stream (so the test chooses the
 * local address, through HAProxy or straight to thingauth), the PROXY counters of a server,
 * and the audit entries of one device.
 */
import type { Duplex } from 'node:stream';
import { MqttClient } from 'mqtt';
import type { TestServer } from '../helpers/server.js';

export interface MqttLogin {
  clientId: string;
  username: string;
  password: string;
}

export interface MqttOutcome {
  client?: MqttClient;
  /** CONNACK refusal code, when refused with one. */
  code?: number;
  messages: { topic: string; payload: string }[];
  closed: Promise<void>;
}

/** Connects over the stream `build` makes; resolves at CONNACK 0 (client set) or at the close. */
export function connectVia(build: () => Duplex, c: MqttLogin, keepalive = 60): Promise<MqttOutcome> {
  return new Promise((resolve) => {
    const client = new MqttClient(build, {
      clientId: c.clientId,
      username: c.username,
      password: c.password,
      keepalive,
      protocolVersion: 4,
      protocolId: 'MQTT',
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 5_000,
    });
    let closedResolve: () => void = () => undefined;
    const out: MqttOutcome = { messages: [], closed: new Promise((r) => (closedResolve = r)) };
    client.on('message', (topic, payload) => out.messages.push({ topic, payload: payload.toString('utf8') }));
    client.on('error', (err: Error & { code?: number }) => {
      if (typeof err.code === 'number') out.code = err.code;
    });
    client.once('connect', () => resolve({ ...out, client }));
    client.once('close', () => {
      client.end(true);
      closedResolve();
      resolve(out);
    });
  });
}

type Labels = Record<string, string>;

async function counter(c: { get(): Promise<{ values: { labels: Labels; value: number }[] }> }, labels: Labels): Promise<number> {
  const { values } = await c.get();
  return values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((n, v) => n + v.value, 0);
}

/** thingauth_proxy_protocol_refused_total summed over the series matching `labels`. */
export function refused(srv: TestServer, labels: Labels = {}): Promise<number> {
  return counter(srv.running.ctx.services.metrics.proxyProtocolRefused as never, labels);
}

/** thingauth_proxy_protocol_headers_total summed over the series matching `labels`. */
export function headers(srv: TestServer, labels: Labels = {}): Promise<number> {
  return counter(srv.running.ctx.services.metrics.proxyProtocolHeaders as never, labels);
}

export interface AuditItem {
  action: string;
  sourceAddress: string;
  result: string;
  reason: string;
}

/** A device's audit entries (newest first) after the batched writers ran. */
export async function auditOf(srv: TestServer, productKey: string, deviceName: string, action?: string): Promise<AuditItem[]> {
  await srv.settle();
  const q = `/api/v1/audit?productKey=${productKey}&deviceName=${encodeURIComponent(deviceName)}${action ? `&action=${action}` : ''}`;
  const r = await srv.request('GET', q);
  if (r.status !== 200) throw new Error(`audit: ${r.status}`);
  return r.body.items as AuditItem[];
}
