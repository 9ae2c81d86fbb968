/** Shared by the registration e2e tests: real HTTPS and MQTTS clients trusting the generated CA, signing. */
import { createHmac } from 'node:crypto';
import mqtt from 'mqtt';
import { deviceHttpsPort, deviceHttpsPost, type HttpsAnswer } from '../helpers/https.js';
import { listenerUrl, type ListenerName } from '../helpers/mqtt.js';
import type { TestServer } from '../helpers/server.js';


/** POST over real HTTPS (verifying the server certificate against the generated CA). */
export function httpsPost(server: TestServer, path: string, body: string, contentType: string, port = deviceHttpsPort(server)): Promise<HttpsAnswer> {
  return deviceHttpsPost(server, path, body, { 'content-type': contentType, accept: 'text/xml,text/javascript,text/html,application/json' }, { port });
}

export function form(fields: Record<string, string>): string {
  return new URLSearchParams(fields).toString();
}

/** Spec 0.1 over deviceName, productKey, random with the ProductSecret, computed independently of src/. */
export function registrationSign(alg: 'md5' | 'sha1' | 'sha256', productSecret: string, productKey: string, deviceName: string, random: string): string {
  return createHmac(alg, productSecret).update(`deviceName${deviceName}productKey${productKey}random${random}`).digest('hex');
}

export function registerForm(productKey: string, deviceName: string, productSecret: string, random: string, signMethod = 'hmacsha256'): string {
  const alg = signMethod.toLowerCase().replace('hmac', '') as 'md5' | 'sha1' | 'sha256';
  return form({ productKey, deviceName, random, sign: registrationSign(alg, productSecret, productKey, deviceName, random), signMethod });
}

export function postRegister(server: TestServer, body: string, contentType = 'application/x-www-form-urlencoded'): Promise<HttpsAnswer> {
  return httpsPost(server, '/auth/register/device', body, contentType);
}

// ---- MQTT registration ----


export interface RegistrationConnectInput {
  productKey: string;
  deviceName: string;
  productSecret: string;
  authType: 'register' | 'regnwl';
  random?: string;
  /** Wire name; null omits it. */
  signMethod?: string | null;
  /** null omits it. */
  securemode?: string | null;
  /** The part before `|`; defaults to the C SDK's `{dn}.{pk}`. */
  clientId?: string;
  extra?: string[];
  upperHex?: boolean;
  /** Sign with another secret (wrong-sign tests). */
  signSecret?: string;
}

export interface MqttFields {
  clientId: string;
  username: string;
  password: string;
}

/** A registration CONNECT as the SDKs build it (spec 3.1). */
export function registrationConnect(i: RegistrationConnectInput): MqttFields {
  const random = i.random ?? String(Math.floor(Math.random() * 4294967295));
  const signMethod = i.signMethod === undefined ? 'hmacsha256' : i.signMethod;
  const securemode = i.securemode === undefined ? '2' : i.securemode;
  const items = [`random=${random}`, `authType=${i.authType}`];
  if (securemode !== null) items.push(`securemode=${securemode}`);
  if (signMethod !== null) items.push(`signmethod=${signMethod}`);
  items.push(...(i.extra ?? []));
  const alg = (signMethod ?? 'hmacmd5').toLowerCase().replace('hmac', '') as 'md5' | 'sha1' | 'sha256';
  let password = registrationSign(alg, i.signSecret ?? i.productSecret, i.productKey, i.deviceName, random);
  if (i.upperHex) password = password.toUpperCase();
  return { clientId: `${i.clientId ?? `${i.deviceName}.${i.productKey}`}|${items.join(',')}|`, username: `${i.deviceName}&${i.productKey}`, password };
}

export interface RegistrationOutcome {
  /** CONNACK accepted. */
  accepted: boolean;
  /** CONNACK refusal code when refused. */
  code: number | undefined;
  messages: { topic: string; payload: string }[];
  /** SUBACK codes when `subscribe` was given. */
  granted?: number[];
  /** ms from CONNACK to the server closing the connection. */
  closedAfterMs?: number;
}

/**
 * Runs one registration connection to its end: resolves when the server closed it (after
 * the push, or after a refusal). The client never subscribes unless asked, never
 * disconnects by itself: it proves the server pushes unsolicited and closes.
 */
export function mqttRegistration(
  server: TestServer,
  which: ListenerName,
  c: MqttFields,
  o: { keepalive?: number; protocolVersion?: 3 | 4 | 5; subscribe?: string[]; publish?: { topic: string; payload: string }; timeoutMs?: number } = {},
): Promise<RegistrationOutcome> {
  const { url, tls } = listenerUrl(server, which);
  return new Promise((resolve, reject) => {
    const out: RegistrationOutcome = { accepted: false, code: undefined, messages: [] };
    let connectedAt = 0;
    const client = mqtt.connect(url, {
      ...tls,
      clientId: c.clientId,
      username: c.username,
      password: c.password,
      keepalive: o.keepalive ?? 1200,
      protocolVersion: o.protocolVersion ?? 4,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
    });
    const timer = setTimeout(() => {
      client.end(true);
      reject(new Error(`server did not close the registration connection within ${o.timeoutMs ?? 10_000} ms: ${JSON.stringify(out)}`));
    }, o.timeoutMs ?? 10_000);
    client.on('connect', () => {
      out.accepted = true;
      connectedAt = Date.now();
      if (o.subscribe) {
        client.subscribe(o.subscribe, (err, granted) => {
          const suback = (err as (Error & { packet?: { granted?: (number | { qos: number })[] } }) | null)?.packet;
          const codes = suback?.granted ?? (granted ?? []).map((g) => g.qos);
          out.granted = codes.map((g) => (typeof g === 'number' ? g : g.qos));
        });
      }
      if (o.publish) client.publish(o.publish.topic, o.publish.payload);
    });
    client.on('message', (topic, payload) => out.messages.push({ topic, payload: payload.toString('utf8') }));
    client.on('error', (err: Error & { code?: number }) => {
      if (typeof err.code === 'number') out.code = err.code;
    });
    client.once('close', () => {
      clearTimeout(timer);
      if (out.accepted) out.closedAfterMs = Date.now() - connectedAt;
      client.end(true);
      resolve(out);
    });
  });
}
