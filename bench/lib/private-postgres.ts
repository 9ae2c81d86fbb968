/**
 * A PRIVATE PostgreSQL server for a test file or a benchmark run: initdb in a temporary
 * directory, a free port on 127.0.0.1, its unix socket in the same directory, torn down
 * afterwards (pg_ctl stop -m immediate, the directory removed). Never the system service,
 * never a fixed port. Tests run it with fsync off (speed; nothing to keep); the bench asks for
 * `durable: true` (fsync, synchronous_commit and full_page_writes at their defaults, as a
 * production server runs) so its figures compare with SQLite at synchronous=FULL.
 *
 * initdb refuses to run as root: as root the server runs as the `postgres` system user (the
 * Debian package creates it; `scripts/test-services.sh install` does too) through runuser.
 *
 * Shared by test/helpers/postgres.ts (which adds the skip-unless-CI rule) and bench/run.ts.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

export interface PrivatePostgres {
  host: string;
  port: number;
  /** The superuser (trust authentication on loopback and the socket). */
  user: string;
  /** URL of a database on this server. */
  url(database: string): string;
  /** A new empty database (from `template`, default template1); returns its URL. */
  createDatabase(name: string, template?: string): Promise<string>;
  /** Runs SQL on the maintenance database. */
  admin(sql: string): Promise<pg.QueryResult>;
  /** pg_dump of one database as SQL text (what an operator's backup holds). */
  dump(database: string): string;
  /** Directory of initdb, pg_ctl, pg_dump. */
  binDir: string;
  /** The postmaster's process id while it runs (its backends are its children). */
  postmasterPid(): number | undefined;
  /** Stops the server (immediate) and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
  /** Turns TLS on (this certificate and key, PEM) for new connections; plaintext stays allowed. */
  enableTls(cert: string, key: string): Promise<void>;
  /** Shuts the server down (fast: sessions cut) but keeps its data (outage tests); `start` brings it back on the same port. */
  pause(): void;
  start(): void;
}

/**
 * The directory holding initdb: THINGAUTH_TEST_POSTGRES_BIN when set (another installation;
 * nothing else is tried), else on PATH, else the newest /usr/lib/postgresql/<v>/bin.
 */
export function findPostgresBinDir(): string | undefined {
  const chosen = process.env.THINGAUTH_TEST_POSTGRES_BIN;
  if (chosen !== undefined) return fs.existsSync(path.join(chosen, 'initdb')) ? chosen : undefined;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && fs.existsSync(path.join(dir, 'initdb'))) {
      // Debian puts symlinks on PATH; pg_ctl finds postgres next to itself, so use the real dir.
      return path.dirname(fs.realpathSync(path.join(dir, 'initdb')));
    }
  }
  const base = '/usr/lib/postgresql';
  if (!fs.existsSync(base)) return undefined;
  const versions = fs.readdirSync(base).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  for (const v of versions) if (fs.existsSync(path.join(base, v, 'bin', 'initdb'))) return path.join(base, v, 'bin');
  return undefined;
}

/** A port nobody listens on right now (postgres cannot bind port 0 itself). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** As root, the OS user the server runs as; undefined when the tests already run as another user. */
function serverUser(): { name: string; uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = spawnSync('getent', ['passwd', 'postgres'], { encoding: 'utf8' }).stdout.trim();
  if (!line) throw new Error('running as root and there is no "postgres" user for initdb (run: bash scripts/test-services.sh install)');
  const [, , uid, gid] = line.split(':');
  return { name: 'postgres', uid: Number(uid), gid: Number(gid) };
}

function run(binDir: string, user: ReturnType<typeof serverUser>, cmd: string, args: string[]): string {
  const exe = path.join(binDir, cmd);
  const [file, argv] = user ? ['runuser', ['-u', user.name, '--', exe, ...args]] : [exe, args];
  return execFileSync(file, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], cwd: os.tmpdir() });
}

export interface PostgresServerOptions {
  /** fsync, synchronous_commit and full_page_writes on (their defaults); off when false (tests). */
  durable?: boolean;
  /** Further `-c name=value` settings, e.g. shared_buffers for a benchmark. */
  settings?: Record<string, string>;
}

/** Starts a private server; throws with the reason when it cannot. */
export async function startPostgresServer(opts: PostgresServerOptions = {}): Promise<PrivatePostgres> {
  const binDir = findPostgresBinDir();
  if (!binDir) throw new Error('no initdb found (install PostgreSQL: bash scripts/test-services.sh install)');
  const user = serverUser();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thingauth-pg-'));
  const data = path.join(dir, 'data');
  const log = path.join(dir, 'server.log');
  if (user) fs.chownSync(dir, user.uid, user.gid);
  const cleanup = () => fs.rmSync(dir, { recursive: true, force: true });
  try {
    run(binDir, user, 'initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync']);
  } catch (e) {
    cleanup();
    throw new Error(`initdb failed: ${(e as { stderr?: string }).stderr ?? String(e)}`);
  }
  let port = 0;
  const durability = opts.durable ? '' : ' -c fsync=off -c synchronous_commit=off -c full_page_writes=off';
  const extra = Object.entries(opts.settings ?? {})
    .map(([k, v]) => ` -c ${k}=${v}`)
    .join('');
  const options = () => `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1${durability} -c max_connections=300${extra}`;
  const startServer = () => run(binDir, user, 'pg_ctl', ['-D', data, '-l', log, '-w', '-t', '60', '-o', options(), 'start']);
  // Another process may take the port between our probe and the server's bind: try again.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      startServer();
      break;
    } catch (e) {
      if (attempt >= 3) {
        const tail = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').slice(-2000) : '';
        cleanup();
        throw new Error(`pg_ctl start failed: ${(e as { stderr?: string }).stderr ?? String(e)}\n${tail}`);
      }
    }
  }
  let stopped = false;
  const stopServer = (mode: 'immediate' | 'fast' = 'immediate') => {
    try {
      run(binDir, user, 'pg_ctl', ['-D', data, '-m', mode, '-w', 'stop']);
    } catch {
      // Already stopped.
    }
  };
  // If the test process exits without after() (a crash), the server still goes.
  const onExit = () => {
    if (!stopped) (stopServer(), cleanup());
  };
  process.once('exit', onExit);
  const host = '127.0.0.1';
  const url = (database: string) => `postgres://postgres@${host}:${port}/${database}`;
  const admin = async (sql: string) => {
    const c = new pg.Client({ connectionString: url('postgres') });
    await c.connect();
    try {
      return await c.query(sql);
    } finally {
      await c.end();
    }
  };
  return {
    host,
    port,
    user: 'postgres',
    binDir,
    url,
    admin,
    postmasterPid() {
      try {
        return Number(fs.readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]) || undefined;
      } catch {
        return undefined;
      }
    },
    async createDatabase(name, template = 'template1') {
      await admin(`CREATE DATABASE "${name}" TEMPLATE "${template}"`);
      return url(name);
    },
    dump(database) {
      return execFileSync(path.join(binDir, 'pg_dump'), ['-h', host, '-p', String(port), '-U', 'postgres', database], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
    },
    async enableTls(cert, key) {
      for (const [name, pem] of [['server.crt', cert], ['server.key', key]] as const) {
        const f = path.join(data, name);
        fs.writeFileSync(f, pem, { mode: 0o600 });
        if (user) fs.chownSync(f, user.uid, user.gid);
      }
      await admin('ALTER SYSTEM SET ssl = on');
      await admin('SELECT pg_reload_conf()');
      // The reload is asynchronous: wait until the server says TLS is on.
      for (let i = 0; i < 200; i++) {
        if ((await admin('SHOW ssl')).rows[0]?.ssl === 'on') return;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`TLS did not come on: ${fs.readFileSync(log, 'utf8').slice(-1000)}`);
    },
    pause() {
      // A clean shutdown (connections cut, like a restart or failover): with fsync and
      // synchronous_commit off, a crash would also lose the last commits, which no real outage does.
      stopServer('fast');
    },
    start() {
      startServer();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      process.removeListener('exit', onExit);
      stopServer();
      cleanup();
    },
  };
}
