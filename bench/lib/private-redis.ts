/**
 * A PRIVATE Redis server for a test file or a benchmark run: `redis-server` (Debian's package)
 * on a free port of 127.0.0.1, its directory under the system temp dir, no persistence unless
 * asked, torn down afterwards (process killed, directory removed). Never the system service,
 * never a fixed port.
 *
 * Shared by test/helpers/redis.ts (which adds the skip-unless-CI rule) and bench/run.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface PrivateRedis {
  host: string;
  port: number;
  /** redis://127.0.0.1:<port> */
  url: string;
  /** The server's process id while it runs. */
  pid(): number | undefined;
  /** Kills the server (SIGKILL: an outage as a crash looks); `start` brings it back on the same port, data lost. */
  kill(): Promise<void>;
  /** Starts it again on the same port after `kill`. */
  start(): Promise<void>;
  /** Stops the server and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

/** The redis-server binary: THINGAUTH_TEST_REDIS_SERVER when set, else on PATH, else /usr/bin. */
export function findRedisServer(): string | undefined {
  const chosen = process.env.THINGAUTH_TEST_REDIS_SERVER;
  if (chosen !== undefined) return fs.existsSync(chosen) ? chosen : undefined;
  for (const dir of [...(process.env.PATH ?? '').split(path.delimiter), '/usr/bin', '/usr/sbin']) {
    if (dir && fs.existsSync(path.join(dir, 'redis-server'))) return path.join(dir, 'redis-server');
  }
  return undefined;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        // A PING proves it serves, not only listens.
        s.write('PING\r\n');
        s.once('data', (d) => {
          s.destroy();
          resolve(d.toString().startsWith('+PONG'));
        });
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startRedisServer(options: { maxmemory?: string } = {}): Promise<PrivateRedis> {
  const bin = findRedisServer();
  if (!bin) throw new Error('redis-server not found (bash scripts/test-services.sh install)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thingauth-redis-'));
  const port = await freePort();
  let child: ChildProcess | undefined;
  let stopped = false;
  const launch = async (): Promise<void> => {
    const args = [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
      '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--protected-mode', 'yes',
      '--logfile', path.join(dir, 'redis.log'), '--unixsocket', '',
    ];
    if (options.maxmemory) args.push('--maxmemory', options.maxmemory);
    child = spawn(bin, args, { stdio: 'ignore' });
    child.unref();
    await waitForPort(port, child, 10_000);
  };
  // A test process that ends without stop() still takes its server along.
  const onExit = (): void => {
    try { child?.kill('SIGKILL'); } catch { /* already gone */ }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  await launch();
  const killChild = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    c.ref(); // keep the loop alive until the exit is seen
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGKILL');
    });
  };
  return {
    host: '127.0.0.1',
    port,
    url: `redis://127.0.0.1:${port}`,
    pid: () => child?.pid,
    kill: killChild,
    start: async () => {
      if (stopped) throw new Error('stopped');
      if (!child) await launch();
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      process.removeListener('exit', onExit);
      await killChild();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
