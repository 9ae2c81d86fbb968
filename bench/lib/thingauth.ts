/**
 * thingauth for benchmarks: a fresh data dir provisioned through the Store port (the same
 * adapter the server uses), then `thingauth serve` as a child process so its CPU and RSS
 * are its own and not the load generator's.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, sqlitePath } from '../../src/config.js';
import type { Product } from '../../src/core/records.js';
import { KeyringCipher } from '../../src/core/secret-cipher.js';
import { ensureDataDir, loadMasterKey } from '../../src/data-dir.js';
import { openStoreByUrl } from '../../src/store/open-store.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { Store } from '../../src/store/store.js';
import { ensureTlsMaterial, type TlsMaterial } from '../../src/tls/local-ca.js';
import type { VirtualDevice } from './fleet.js';
import { freePorts, isListening, waitForPort } from './ports.js';
import type { PrivatePostgres } from './private-postgres.js';
import { readProcMemory, readProcTreeCpuMs, type ProcMemory } from './proc.js';

export const CLI_MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
export const BENCH_ADMIN_TOKEN = 'bench-admin-token-0123456789abcdef';

export function makeBenchDir(prefix = 'thingauth-bench-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function benchProduct(productKey: string, productSecret: string, extra: Partial<Product> = {}): Product {
  const at = new Date().toISOString();
  return {
    productKey,
    productName: `bench ${productKey}`,
    productSecret,
    nodeType: 'DEVICE',
    dynamicRegistration: false,
    preRegistrationFree: false,
    requireTls: false,
    replayProtection: false,
    deviceLimit: null,
    description: 'benchmark fleet',
    createdAt: at,
    updatedAt: at,
    ...extra,
  };
}

export type StoreKind = 'sqlite' | 'postgres';

/**
 * The PostgreSQL server of the run's postgres pass (bench/run.ts sets it, and clears it for the
 * sqlite pass). While set, every bench data dir gets its own database on it: provisioning
 * writes there and the server child is started with THINGAUTH_DATABASE_URL pointing at it.
 */
let databaseServer: PrivatePostgres | undefined;
const databaseOf = new Map<string, Promise<string>>();

export function useBenchDatabaseServer(server: PrivatePostgres | undefined): void {
  databaseServer = server;
  databaseOf.clear();
}

/** The database URL of a data dir in the postgres pass (created on first use), else undefined (SQLite in the data dir). */
export async function benchDatabaseUrl(dataDir: string): Promise<string | undefined> {
  const server = databaseServer;
  if (!server) return undefined;
  let url = databaseOf.get(dataDir);
  if (!url) {
    url = server.createDatabase(`bench_${databaseOf.size + 1}_${path.basename(dataDir).replace(/[^a-z0-9]/gi, '_')}`);
    databaseOf.set(dataDir, url);
  }
  return url;
}

/**
 * CPU time (ms) the run's PostgreSQL server has used so far (postmaster and backends), or
 * undefined on SQLite, whose work runs inside the thingauth process and is counted there.
 */
export function benchDatabaseCpuMs(): number | undefined {
  const pid = databaseServer?.postmasterPid();
  return pid === undefined ? undefined : readProcTreeCpuMs(pid);
}

/** The store a bench data dir's server will use (SQLite file, or its PostgreSQL database in the postgres pass), migrated. */
export async function openBenchStore(dataDir: string, synchronous: 'FULL' | 'NORMAL' = 'NORMAL'): Promise<Store> {
  ensureDataDir(dataDir);
  const cipher = new KeyringCipher(loadMasterKey(dataDir, undefined));
  const url = await benchDatabaseUrl(dataDir);
  if (url) return openStoreByUrl(url, cipher);
  const config = loadConfig({ dataDir });
  const store = new SqliteStore({ filename: sqlitePath(config), cipher, synchronous });
  await store.migrate();
  return store;
}

/** Creates products and imports their devices (with the fleet's secrets) into the data dir's store. */
export async function provision(dataDir: string, items: { product: Product; devices: VirtualDevice[] }[], onProgress?: (done: number) => void): Promise<void> {
  const store = await openBenchStore(dataDir);
  try {
    let done = 0;
    for (const { product, devices } of items) {
      await store.createProduct({ ...product, deviceLimit: product.deviceLimit ?? Math.max(devices.length, 1) });
      const at = new Date().toISOString();
      for (let i = 0; i < devices.length; i += 10_000) {
        const rows = devices.slice(i, i + 10_000).map((d) => ({ deviceName: d.deviceName, deviceSecret: d.deviceSecret, iotId: d.iotId }));
        await store.importDevices(product.productKey, rows, Number.MAX_SAFE_INTEGER, false, at);
        done += rows.length;
        onProgress?.(done);
      }
    }
  } finally {
    await store.close();
  }
}

const TLS_FILES = ['ca.pem', 'ca-key.pem', 'server.pem', 'server-key.pem'] as const;
let sharedTls: Map<string, string> | undefined;

/**
 * The local CA and server certificate of a bench data dir. Generated once per bench process
 * (two RSA-2048 keys take a while) and copied into every further data dir, so all servers of
 * one run present the same certificate, which Mosquitto's TLS listener uses too.
 */
export async function benchTls(dataDir: string): Promise<TlsMaterial> {
  const dir = path.join(dataDir, 'tls');
  if (sharedTls && !fs.existsSync(path.join(dir, 'server.pem'))) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const [f, text] of sharedTls) fs.writeFileSync(path.join(dir, f), text, { mode: f.includes('key') ? 0o600 : 0o644 });
  }
  const material = await ensureTlsMaterial({ dataDir, hostnames: [] });
  sharedTls ??= new Map(TLS_FILES.map((f) => [f, fs.readFileSync(path.join(dir, f), 'utf8')]));
  return material;
}

export interface ThingAuthPorts {
  http: number;
  https: number;
  mqtt: number;
  mqtts: number;
  ws: number;
  wss: number;
}

export interface RunningThingAuthProcess {
  pid: number;
  ports: ThingAuthPorts;
  /** Whether this build has an MQTT listener (the broker may not have landed). */
  hasMqtt: boolean;
  adminToken: string;
  memory(): ProcMemory | undefined;
  stop(): Promise<void>;
}

export interface StartOptions {
  dataDir: string;
  /** Extra THINGAUTH_* variables, e.g. THINGAUTH_SQLITE_SYNCHRONOUS. */
  env?: Record<string, string>;
  /** Node flags such as --cpu-prof. */
  nodeArgs?: string[];
  /** Arguments after `serve`, e.g. --workers 2. */
  serveArgs?: string[];
  logLevel?: string;
}

export async function startThingAuthProcess(opts: StartOptions): Promise<RunningThingAuthProcess> {
  await benchTls(opts.dataDir);
  const [http, https, mqtt, mqtts, ws, wss] = await freePorts(6);
  const databaseUrl = await benchDatabaseUrl(opts.dataDir);
  const ports: ThingAuthPorts = { http: http!, https: https!, mqtt: mqtt!, mqtts: mqtts!, ws: ws!, wss: wss! };
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    THINGAUTH_DATA_DIR: opts.dataDir,
    THINGAUTH_HOST: '127.0.0.1',
    THINGAUTH_HTTP_PORT: String(ports.http),
    THINGAUTH_HTTPS_PORT: String(ports.https),
    THINGAUTH_MQTT_PORT: String(ports.mqtt),
    THINGAUTH_MQTTS_PORT: String(ports.mqtts),
    THINGAUTH_WS_PORT: String(ports.ws),
    THINGAUTH_WSS_PORT: String(ports.wss),
    THINGAUTH_ADMIN_TOKEN: BENCH_ADMIN_TOKEN,
    THINGAUTH_LOG_LEVEL: opts.logLevel ?? 'info',
    // The load generator is one address standing for a whole fleet: storms run up to 400
    // logins at once from 127.0.0.1, over the default 64 per source still logging in.
    THINGAUTH_MQTT_PENDING_PER_SOURCE: '0',
    ...(databaseUrl ? { THINGAUTH_DATABASE_URL: databaseUrl } : {}),
    ...opts.env,
  };
  // BENCH_SERVER_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir bench/out/profile") profiles any scenario's server.
  const extraArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child: ChildProcess = spawn(process.execPath, [...extraArgs, ...(opts.nodeArgs ?? []), CLI_MAIN, 'serve', ...(opts.serveArgs ?? [])], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let tail = '';
  const keepTail = (d: Buffer) => {
    tail = (tail + d.toString()).slice(-4_000);
  };
  // Logs are drained (the server pays for writing them, as in production) and dropped.
  child.stdout!.on('data', keepTail);
  child.stderr!.on('data', keepTail);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    await Promise.race([
      waitForPort(ports.http, '127.0.0.1', 30_000),
      exited.then(() => {
        throw new Error(`thingauth exited at start:\n${tail}`);
      }),
    ]);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  // Listeners start in order after the management API; give the MQTT one a moment.
  let hasMqtt = false;
  for (let i = 0; i < 40 && !hasMqtt; i++) {
    hasMqtt = await isListening(ports.mqtt);
    if (!hasMqtt) await new Promise((r) => setTimeout(r, 50));
  }
  if (hasMqtt) await waitForPort(ports.mqtts, '127.0.0.1', 5_000).catch(() => undefined);
  const pid = child.pid!;
  return {
    pid,
    ports,
    hasMqtt,
    adminToken: BENCH_ADMIN_TOKEN,
    memory: () => readProcMemory(pid),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Waits until the server process is accepting on the port (used after provisioning). */
export { waitForPort };
