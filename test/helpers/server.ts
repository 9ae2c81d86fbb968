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
  stop(): Promise<void>;
}

export function makeTempDir(prefix = 'thingauth-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
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
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
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
    async stop() {
      await running.close();
    },
  };
}
