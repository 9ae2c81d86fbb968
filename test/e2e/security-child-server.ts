/**
 * Runs `thingauth serve` as a CHILD PROCESS (node dist/src/cli/main.js serve) on port 0 with a
 * data dir of the test's choosing, for the crash-safety and shutdown tests: the real ports
 * come from the "listening" log lines the server prints, one per listener.
 * Also: an MQTT regnwl client over TLS, and a direct read of what a data dir holds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { RotatingCipher } from '../../src/core/rotating-cipher.js';
import { loadKeyring } from '../../src/data-dir.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { registrationConnect } from './registration-helpers.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');
export const ADMIN_TOKEN = 'child-admin-token-0123456789';
const LISTENERS = ['management-http', 'device-https', 'mqtt', 'mqtts', 'mqtt-ws', 'mqtt-wss'];

export interface ChildServer {
  proc: ChildProcess;
  dataDir: string;
  ports: Record<string, number>;
  api: string;
  ca: string;
  /** Every stdout/stderr line so far. */
  logs: string[];
  request(method: string, urlPath: string, body?: unknown): Promise<{ status: number; body: any }>;
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export async function spawnServer(dataDir: string, env: Record<string, string> = {}, args: string[] = []): Promise<ChildServer> {
  const proc = spawn(process.execPath, [MAIN, 'serve', ...args], {
    env: {
      ...process.env,
      THINGAUTH_DATA_DIR: dataDir,
      THINGAUTH_HOST: '127.0.0.1',
      THINGAUTH_HTTP_PORT: '0',
      THINGAUTH_HTTPS_PORT: '0',
      THINGAUTH_MQTT_PORT: '0',
      THINGAUTH_MQTTS_PORT: '0',
      THINGAUTH_WS_PORT: '0',
      THINGAUTH_WSS_PORT: '0',
      THINGAUTH_ADMIN_TOKEN: ADMIN_TOKEN,
      THINGAUTH_LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const ports: Record<string, number> = {};
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const ready = new Promise<void>((resolve, reject) => {
    let buf = '';
    const onData = (chunk: Buffer) => {
      buf += chunk.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        logs.push(line);
        try {
          const j = JSON.parse(line) as { listener?: string; url?: string; msg?: string };
          if (j.listener && j.url && /^listening /.test(j.msg ?? '')) {
            const m = /:(\d+)(?:\/|\s|$)/.exec(j.url.replace(/^[a-z]+:\/\//, ''));
            if (m) ports[j.listener] = Number(m[1]);
            if (LISTENERS.every((l) => ports[l])) resolve();
          }
        } catch {
          /* not a JSON log line */
        }
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', (c: Buffer) => logs.push(...c.toString('utf8').split('\n').filter(Boolean)));
    exited.then(({ code, signal }) => reject(new Error(`server exited before listening (code ${code}, signal ${signal}):\n${logs.slice(-20).join('\n')}`)));
  });
  const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
  try {
    await ready;
  } finally {
    clearTimeout(timer);
  }
  const api = `http://127.0.0.1:${ports['management-http']}`;
  return {
    proc,
    dataDir,
    ports,
    api,
    ca: fs.readFileSync(path.join(dataDir, 'tls', 'ca.pem'), 'utf8'),
    logs,
    exited,
    async request(method, urlPath, body) {
      const headers: Record<string, string> = { authorization: `Bearer ${ADMIN_TOKEN}` };
      if (body !== undefined && typeof body !== 'string') headers['content-type'] = 'application/json';
      const res = await fetch(api + urlPath, { method, headers, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        /* not JSON */
      }
      return { status: res.status, body: parsed };
    },
  };
}

/**
 * One MQTT regnwl over TLS (spec 3.1): resolves with the credential the server pushed, or
 * with `error` when the connection was refused or cut (e.g. the server died).
 */
export function regnwl(server: { ports: Record<string, number>; ca: string }, productKey: string, deviceName: string, productSecret: string): Promise<{ clientId?: string; deviceToken?: string; error?: string }> {
  // The C SDK's form: {dn}.{pk}|random=..,authType=regnwl,securemode=2,signmethod=hmacsha256|
  const fields = registrationConnect({ productKey, deviceName, productSecret, authType: 'regnwl' });
  return new Promise((resolve) => {
    const client = mqtt.connect(`mqtts://127.0.0.1:${server.ports['mqtts']}`, {
      ca: server.ca,
      servername: 'localhost',
      ...fields,
      keepalive: 60,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
    });
    let done = false;
    const finish = (r: { clientId?: string; deviceToken?: string; error?: string }) => {
      if (done) return;
      done = true;
      client.end(true);
      resolve(r);
    };
    client.on('message', (topic, payload) => {
      if (topic !== '/ext/regnwl') return;
      try {
        const j = JSON.parse(payload.toString('utf8')) as { clientId: string; deviceToken: string };
        finish({ clientId: j.clientId, deviceToken: j.deviceToken });
      } catch (e) {
        finish({ error: `bad push: ${String(e)}` });
      }
    });
    client.on('error', (e) => finish({ error: e.message }));
    client.on('close', () => finish({ error: 'closed without a credential' }));
  });
}

/** Opens a stopped server's store (same data dir, same master key file) for inspection. */
export async function openStoreOf(dataDir: string): Promise<SqliteStore> {
  const { keys } = loadKeyring(dataDir, undefined, undefined);
  const store = new SqliteStore({ filename: path.join(dataDir, 'thingauth.db'), cipher: new RotatingCipher(keys) });
  return store;
}
