/**
 * A PRIVATE HAProxy for a test file or a benchmark run: `haproxy` (Debian's package) in the
 * foreground (-db) with a configuration written into its own directory under the system temp
 * dir, on free ports of 127.0.0.1, torn down afterwards (process killed, directory removed).
 * Never the system service, never a fixed port.
 *
 * The caller names the ports it needs and renders the configuration from them (see
 * haproxy-cfg.ts); extra files (a certificate PEM) are written beside it. Readiness is seen in
 * /proc/net/tcp (every port LISTENing), not by connecting: a probe connection would reach the
 * backend as a real one.
 *
 * Shared by test/helpers/haproxy.ts (which adds the skip-unless-CI rule) and the benchmarks.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './private-redis.js';

export interface PrivateHaproxy {
  dir: string;
  cfgPath: string;
  /** The configuration as written. */
  cfg: string;
  ports: Record<string, number>;
  pid(): number | undefined;
  /** What HAProxy wrote to stderr so far (warnings, alerts). */
  output(): string;
  /** Sends one command to HAProxy's stats socket (e.g. `show stat`) and resolves with the answer. */
  command(cmd: string): Promise<string>;
  /** Stops HAProxy and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

export interface HaproxyStart<P extends string> {
  /** Names of the ports to allocate (each a free port of 127.0.0.1). */
  ports: readonly P[];
  /** Files to write into the directory first (name -> content). */
  files?: Record<string, string>;
  render(input: { dir: string; ports: Record<P, number> }): string;
}

/** The haproxy binary: THINGAUTH_TEST_HAPROXY when set, else on PATH, else /usr/sbin. */
export function findHaproxy(): string | undefined {
  const chosen = process.env.THINGAUTH_TEST_HAPROXY;
  if (chosen !== undefined) return fs.existsSync(chosen) ? chosen : undefined;
  for (const dir of [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/bin']) {
    if (dir && fs.existsSync(path.join(dir, 'haproxy'))) return path.join(dir, 'haproxy');
  }
  return undefined;
}

/** Ports of 127.0.0.1 (or any address) in LISTEN state, from /proc/net/tcp. */
function listeningPorts(): Set<number> {
  const out = new Set<number>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 4 || cols[3] !== '0A') continue; // 0A = LISTEN
      const port = parseInt(cols[1]!.split(':')[1] ?? '', 16);
      if (Number.isFinite(port)) out.add(port);
    }
  }
  return out;
}

export async function startHaproxy<P extends string>(opts: HaproxyStart<P>): Promise<PrivateHaproxy> {
  const bin = findHaproxy();
  if (!bin) throw new Error('haproxy not found (bash scripts/test-services.sh install)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thingauth-haproxy-'));
  const cleanupDir = () => fs.rmSync(dir, { recursive: true, force: true });
  try {
    const ports = {} as Record<P, number>;
    const taken = new Set<number>();
    for (const name of opts.ports) {
      let p = await freePort();
      while (taken.has(p)) p = await freePort();
      taken.add(p);
      ports[name] = p;
    }
    for (const [name, content] of Object.entries(opts.files ?? {})) fs.writeFileSync(path.join(dir, name), content, { mode: 0o600 });
    // The launcher's own stats socket (in the private directory) for command(); the rendered
    // configuration is otherwise written as it is.
    const statsSocket = path.join(dir, 'admin.sock');
    const rendered = opts.render({ dir, ports });
    if (!rendered.startsWith('global\n')) throw new Error('the configuration must start with its global section');
    const cfg = rendered.replace('global\n', `global\n    stats socket ${statsSocket} mode 600 level user\n`);
    const cfgPath = path.join(dir, 'haproxy.cfg');
    fs.writeFileSync(cfgPath, cfg);
    const check = spawnSync(bin, ['-c', '-q', '-f', cfgPath], { encoding: 'utf8' });
    if (check.status !== 0) throw new Error(`haproxy -c refused the configuration: ${(check.stderr || check.stdout).trim()}`);

    let stderr = '';
    const child: ChildProcess = spawn(bin, ['-f', cfgPath, '-db'], { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir });
    child.stderr!.on('data', (d: Buffer) => {
      if (stderr.length < 64 * 1024) stderr += d.toString('utf8');
    });
    child.unref();
    (child.stderr as unknown as { unref?: () => void }).unref?.();
    // A test process that ends without stop() still takes its HAProxy along.
    const onExit = (): void => {
      try { child.kill('SIGKILL'); } catch { /* already gone */ }
      cleanupDir();
    };
    process.once('exit', onExit);
    let stopped = false;
    const stop = async (): Promise<void> => {
      if (stopped) return;
      stopped = true;
      process.removeListener('exit', onExit);
      if (child.exitCode === null && child.signalCode === null) {
        child.ref();
        await new Promise<void>((resolve) => {
          child.once('exit', () => resolve());
          child.kill('SIGTERM');
          setTimeout(() => child.kill('SIGKILL'), 2_000).unref();
        });
      }
      cleanupDir();
    };
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null) {
        await stop();
        throw new Error(`haproxy exited with code ${child.exitCode}: ${stderr.trim()}`);
      }
      const open = listeningPorts();
      if (Object.values<number>(ports).every((p) => open.has(p))) break;
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`haproxy did not listen on ${JSON.stringify(ports)} within 10 s: ${stderr.trim()}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    const command = (cmd: string) =>
      new Promise<string>((resolve, reject) => {
        let answer = '';
        const s = net.connect(statsSocket, () => s.end(`${cmd}\n`));
        s.on('data', (d: Buffer) => (answer += d.toString('utf8')));
        s.once('error', reject);
        s.once('close', () => resolve(answer));
      });
    return { dir, cfgPath, cfg, ports, pid: () => child.pid, output: () => stderr, command, stop };
  } catch (e) {
    cleanupDir();
    throw e;
  }
}
