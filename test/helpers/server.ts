/** Starts a real thingauth on ephemeral ports with a fresh data dir (real SQLite file). */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { loadConfig, type ConfigInput } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startThingAuth, type RunningThingAuth } from '../../src/main.js';

export interface TestServer {
  running: RunningThingAuth;
  dataDir: string;
  adminToken: string;
  /** Every log line the server wrote (for leak checks). */
  logs: string[];
  /** Base URL of the management API, e.g. http://127.0.0.1:PORT */
  api: string;
  /** fetch against the management API with the admin token. */
  request(method: string, urlPath: string, body?: unknown, token?: string | null): Promise<{ status: number; body: any }>;
  /**
   * Writes what the batched writers hold (presence, audit), so a test can assert that
   * nothing changed without sleeping and hoping the batch has run.
   */
  settle(): Promise<void>;
  stop(): Promise<void>;
}

export function makeTempDir(prefix = 'thingauth-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/**
 * With THINGAUTH_TEST_LOG_DIR set, every test server of the run appends its log lines to
 * <dir>/thingauth-<pid>.log and, when stopped, the secrets it holds to
 * <dir>/thingauth-<pid>.secrets; `node dist/test/tools/scan-test-logs.js <dir>` then checks
 * that no log of the whole run holds any secret of any server (docs/security.md).
 */
function fullRunLog(): { log: string; secrets: string } | undefined {
  const dir = process.env.THINGAUTH_TEST_LOG_DIR;
  if (!dir) return undefined;
  fs.mkdirSync(dir, { recursive: true });
  const base = path.join(dir, `thingauth-${process.pid}`);
  return { log: `${base}.log`, secrets: `${base}.secrets` };
}

async function recordSecrets(running: RunningThingAuth, file: string): Promise<void> {
  const store = running.ctx.store;
  const out = [running.ctx.adminToken];
  const products = await store.listProducts(0, 1000);
  // PEM private keys (X.509): their base64 lines, each a secret a log must never hold.
  const keyLines = (pem: string | null | undefined) => (pem ? pem.split('\n').filter((l) => l.length >= 32 && !l.startsWith('-----')) : []);
  for (const p of products.items) {
    out.push(p.productSecret);
    out.push(...keyLines((await store.getProductCa(p.productKey))?.privateKey));
    const devices = await store.listDevices(p.productKey, {}, 0, 2000);
    for (const d of devices.items) {
      out.push(d.deviceSecret, ...(d.previousDeviceSecret ? [d.previousDeviceSecret] : []));
      for (const t of await store.getLiveDeviceTokens(d.iotId)) out.push(t.deviceToken);
      for (const c of await store.listDeviceCertificates(d.iotId)) out.push(...keyLines(c.privateKey));
    }
  }
  for (const a of await store.listApplications()) out.push(a.appSecret);
  const channelKey = await store.getSecretSetting('http-channel-token-key');
  if (channelKey) out.push(channelKey);
  fs.appendFileSync(file, out.filter((s) => s.length >= 8).join('\n') + '\n');
}

export async function startTestServer(overrides: ConfigInput = {}, opts: { dataDir?: string } = {}): Promise<TestServer> {
  const dataDir = opts.dataDir ?? makeTempDir();
  const config = loadConfig({
    dataDir,
    host: '127.0.0.1',
    httpPort: '0',
    httpsPort: '0',
    mqttPort: '0',
    mqttsPort: '0',
    wsPort: '0',
    wssPort: '0',
    adminToken: 'test-admin-token-0123456789',
    sqliteSynchronous: 'NORMAL',
    logLevel: 'debug',
    ...overrides,
  });
  const logs: string[] = [];
  const logFile = fullRunLog();
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      if (logFile) fs.appendFileSync(logFile.log, chunk);
      cb();
    },
  });
  const running = await startThingAuth(config, { logger: createLogger(config.logLevel, sink) });
  const api = `http://127.0.0.1:${running.listeners['management-http']!.port}`;
  const adminToken = running.ctx.adminToken;
  return {
    running,
    dataDir,
    adminToken,
    logs,
    api,
    async request(method, urlPath, body, token) {
      const headers: Record<string, string> = {};
      if (token !== null) headers.authorization = `Bearer ${token ?? adminToken}`;
      if (body !== undefined) headers['content-type'] = 'application/json';
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
    async settle() {
      await running.ctx.services.presence.flush();
      await running.ctx.services.audit.flush();
    },
    async stop() {
      if (logFile) await recordSecrets(running, logFile.secrets).catch(() => undefined);
      await running.close();
    },
  };
}
