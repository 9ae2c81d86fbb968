/**
 * `thingauth serve --workers N|auto`: N processes on one machine sharing the listeners
 * (node:cluster hands each accepted connection to a worker) and, through Redis and
 * PostgreSQL, one platform: every worker is a node of the cluster (node id `<base>-w<i>`),
 * so sessions, routing, events and limits work across them exactly as across machines.
 *
 * The primary prepares the data dir once (master key, admin token, TLS material) before any
 * worker starts, so the workers never race to create them; it restarts a worker that dies
 * (after 1 s, at most 5 times a minute), and on SIGTERM/SIGINT stops them all gracefully.
 */
import cluster from 'node:cluster';
import os from 'node:os';
import path from 'node:path';
import type { Config } from '../config.js';
import { ADMIN_TOKEN_FILE, ensureDataDir, loadAdminToken, loadKeyring } from '../data-dir.js';
import { ensureTlsMaterial } from '../tls/local-ca.js';

export const WORKER_INDEX_ENV = 'THINGAUTH_WORKER_INDEX';

/** Parses --workers: a whole number from 1 to 64, or auto (one per core). */
export function parseWorkers(raw: string): number {
  if (raw === 'auto') return Math.max(1, os.availableParallelism());
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > 64) {
    throw new Error(`--workers must be a whole number from 1 to 64 or "auto", got "${raw}"`);
  }
  return Number(raw);
}

/** Why workers cannot run with this configuration, or undefined. */
export function workersProblem(config: Config): string | undefined {
  if (config.redisUrl === undefined) {
    return '--workers runs several processes that must share sessions, routing and limits: set THINGAUTH_REDIS_URL (and THINGAUTH_DATABASE_URL=postgres://...); docs/deployment.md "All cores of one machine"';
  }
  return undefined;
}

/** This process is a worker started by runWorkers: its node id. */
export function workerNodeId(config: Config): string | undefined {
  const index = process.env[WORKER_INDEX_ENV];
  if (!cluster.isWorker || index === undefined) return undefined;
  const base = config.nodeId ?? `${os.hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 40)}-${process.ppid}`;
  return `${base}-w${index}`.slice(0, 64);
}

export async function runWorkers(config: Config, count: number, shutdownTimeoutSeconds: number): Promise<void> {
  ensureDataDir(config.dataDir);
  loadKeyring(config.dataDir, config.masterKey, config.masterKeyPrevious);
  const admin = loadAdminToken(config.dataDir, config.adminToken);
  if (admin.created) {
    process.stderr.write(`thingauth: generated an admin token in ${path.join(config.dataDir, ADMIN_TOKEN_FILE)} (mode 0600); use it with --token, THINGAUTH_ADMIN_TOKEN or --data-dir\n`);
  }
  await ensureTlsMaterial({ dataDir: config.dataDir, hostnames: config.hostnames, certPath: config.tlsCert, keyPath: config.tlsKey });

  let stopping = false;
  const restarts: number[] = [];
  const fork = (index: number) => {
    const w = cluster.fork({ [WORKER_INDEX_ENV]: String(index) });
    w.on('exit', (code, signal) => {
      if (stopping) return;
      const now = Date.now();
      while (restarts.length > 0 && restarts[0]! < now - 60_000) restarts.shift();
      if (restarts.length >= 5) {
        process.stderr.write(`thingauth: worker ${index} exited (code ${code}, signal ${signal}); too many restarts in a minute, stopping\n`);
        void stopAll(1);
        return;
      }
      restarts.push(now);
      process.stderr.write(`thingauth: worker ${index} exited (code ${code}, signal ${signal}); restarting in 1 s\n`);
      setTimeout(() => fork(index), 1_000);
    });
  };
  const stopAll = async (exitCode: number) => {
    if (stopping) return;
    stopping = true;
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is NonNullable<typeof w> => w !== undefined);
    const timer = setTimeout(() => {
      for (const w of workers) w.process.kill('SIGKILL');
      process.exit(1);
    }, (shutdownTimeoutSeconds + 5) * 1000);
    timer.unref();
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.isDead()) return resolve();
            w.once('exit', () => resolve());
            w.process.kill('SIGTERM');
          }),
      ),
    );
    process.exit(exitCode);
  };
  for (let i = 0; i < count; i++) fork(i);
  process.on('SIGTERM', () => void stopAll(0));
  process.on('SIGINT', () => void stopAll(0));
}
