/**
 * `npm run bench` (--quick, small sizes, under 3 minutes on 2 cores) and `npm run bench:full`
 * (the issue's sizes). Prints one JSON line per figure on stdout; progress on stderr.
 * --full also writes the raw lines to bench/results/full.jsonl, the chart to
 * docs/benchmarks-connect.svg and the results block of docs/benchmarks.md (--no-docs to skip);
 * --quick writes them under bench/out/ (git-ignored). `node dist/bench/report.js <jsonl>`
 * turns any results file into the tables.
 * --store sqlite,postgres runs the chosen scenarios once per store in the same run (default:
 * sqlite only); the postgres pass starts a private PostgreSQL server (initdb in a temp dir,
 * fsync on) and gives every scenario's server its own database on it. Each figure carries
 * `store`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FigureSink, note } from './lib/emit.js';
import { connectChartSvg, markdownReport, writeIntoDoc } from './report.js';
import { startPostgresServer, type PrivatePostgres } from './lib/private-postgres.js';
import { makeBenchDir, useBenchDatabaseServer, type StoreKind } from './lib/thingauth.js';
import { runAuthDecision, type AuthSizes } from './scenarios/auth-decision.js';
import { runBulkProvision, type BulkSizes } from './scenarios/bulk-provision.js';
import { runConnectScenarios, type ConnectSizes } from './scenarios/connect.js';
import { runGateway, type GatewaySizes } from './scenarios/gateway.js';
import { runRegistration, type RegistrationSizes } from './scenarios/registration.js';
import { runClusterScenarios, type ClusterSizes } from './scenarios/cluster.js';

export type Mode = 'smoke' | 'quick' | 'full';

export interface Sizes {
  connect: ConnectSizes;
  auth: AuthSizes;
  register: RegistrationSizes;
  bulk: BulkSizes;
  gateway: GatewaySizes;
  cluster: ClusterSizes;
}

export const SIZES: Record<Mode, Sizes> = {
  // For the test suite: proves every scenario runs end to end; the numbers mean nothing.
  smoke: {
    connect: { stormN: 60, sweep: [10], tlsN: 20, tlsC: 5, heldN: 30, timeLimitMs: 20_000 },
    auth: { devices: 300, warmSet: 50, warmOps: 500, coldOps: 100 },
    register: { httpsN: 30, httpsC: 5, regnwlN: 10, regnwlC: 5, timeLimitMs: 20_000 },
    bulk: { devices: 200, timeLimitMs: 30_000 },
    gateway: { subDevices: 100, batch: 50, timeLimitMs: 20_000 },
    cluster: { stormN: 60, concurrency: 10, messages: 50, heldN: 30, timeLimitMs: 20_000 },
  },
  quick: {
    connect: { stormN: 2_000, sweep: [50, 100, 200, 400], tlsN: 1_000, tlsC: 200, heldN: 2_000, timeLimitMs: 20_000 },
    auth: { devices: 50_000, warmSet: 10_000, warmOps: 200_000, coldOps: 20_000 },
    register: { httpsN: 2_000, httpsC: 50, regnwlN: 500, regnwlC: 50, timeLimitMs: 20_000 },
    bulk: { devices: 20_000, timeLimitMs: 60_000 },
    gateway: { subDevices: 1_500, batch: 50, timeLimitMs: 30_000 },
    cluster: { stormN: 2_000, concurrency: 200, messages: 2_000, heldN: 2_000, timeLimitMs: 30_000 },
  },
  full: {
    // 19,000 held, not 20,000: the hard fd limit here is 20,000 per process and the server needs a few for itself.
    connect: { stormN: 20_000, sweep: [50, 100, 200, 400], tlsN: 10_000, tlsC: 200, heldN: 19_000, timeLimitMs: 120_000 },
    auth: { devices: 1_000_000, warmSet: 100_000, warmOps: 1_000_000, coldOps: 100_000 },
    register: { httpsN: 20_000, httpsC: 50, regnwlN: 5_000, regnwlC: 100, timeLimitMs: 120_000 },
    bulk: { devices: 500_000, timeLimitMs: 600_000 },
    gateway: { subDevices: 1_500, batch: 50, timeLimitMs: 60_000 },
    cluster: { stormN: 20_000, concurrency: 200, messages: 10_000, heldN: 19_000, timeLimitMs: 120_000 },
  },
};

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

interface Args {
  mode: Mode;
  only: Set<string> | undefined;
  keep: boolean;
  docs: boolean;
  mosquitto: boolean;
  out: string | undefined;
  stores: StoreKind[];
}

/**
 * The benchmark's PostgreSQL: durable (fsync on, as in production, so the figures compare with
 * SQLite at synchronous=FULL), with the memory a dedicated database host would give it instead
 * of initdb's 128 MB, and WAL room so a 500,000-row import is not paced by forced checkpoints.
 */
const BENCH_POSTGRES_SETTINGS = { shared_buffers: '2GB', max_wal_size: '8GB', checkpoint_timeout: '15min' };

function parseArgs(argv: string[]): Args {
  let mode: Mode = 'quick';
  let only: Set<string> | undefined;
  let keep = false;
  let docs = true;
  let mosquitto = true;
  let out: string | undefined;
  let stores: StoreKind[] = ['sqlite'];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') mode = 'quick';
    else if (a === '--full') mode = 'full';
    else if (a === '--smoke') mode = 'smoke';
    else if (a === '--no-mosquitto') mosquitto = false;
    else if (a === '--out') out = argv[++i];
    else if (a === '--only') only = new Set(argv[++i]!.split(','));
    else if (a === '--keep') keep = true;
    else if (a === '--no-docs') docs = false;
    else if (a === '--store') {
      const list = (argv[++i] ?? '').split(',').filter(Boolean);
      const bad = list.filter((x) => x !== 'sqlite' && x !== 'postgres');
      if (list.length === 0 || bad.length) throw new Error(`--store takes sqlite,postgres (got "${argv[i] ?? ''}")`);
      stores = [...new Set(list)] as StoreKind[];
    } else throw new Error(`unknown argument ${a} (use --quick | --full | --smoke [--only connect,auth,register,bulk,gateway,cluster] [--store sqlite,postgres] [--no-mosquitto] [--out <dir>] [--keep] [--no-docs])`);
  }
  return { mode, only, keep, docs, mosquitto, out, stores };
}

async function main(): Promise<void> {
  const { mode, only, keep, docs, mosquitto, out, stores } = parseArgs(process.argv.slice(2));
  const sizes = SIZES[mode];
  const sink = new FigureSink();
  const workDir = makeBenchDir();
  const started = Date.now();
  sink.emit({
    bench: 'machine',
    mode,
    date: new Date().toISOString(),
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    command: `node dist/bench/run.js ${process.argv.slice(2).join(' ')}`.trim(),
    // Other work on the machine skews every figure; say how busy it was.
    loadAvg1m: Math.round(os.loadavg()[0]! * 100) / 100,
    stores,
  });
  const want = (s: string) => !only || only.has(s);
  let postgres: PrivatePostgres | undefined;
  try {
    for (const store of stores) {
      const dir = stores.length > 1 ? path.join(workDir, store) : workDir;
      fs.mkdirSync(dir, { recursive: true });
      if (store === 'postgres') {
        postgres = await startPostgresServer({ durable: true, settings: BENCH_POSTGRES_SETTINGS });
        const version = (await postgres.admin('SHOW server_version')).rows[0]?.server_version as string | undefined;
        note(`postgres: private server ${version ?? '?'} on 127.0.0.1:${postgres.port} (fsync on)`);
        sink.emit({ bench: 'store', store, server: `PostgreSQL ${version ?? '?'}`, settings: { fsync: 'on', synchronous_commit: 'on', ...BENCH_POSTGRES_SETTINGS } });
      } else {
        sink.emit({ bench: 'store', store, server: 'SQLite (embedded)' });
      }
      useBenchDatabaseServer(postgres);
      sink.context = { store };
      sink.emit({ bench: 'pass-start', loadAvg1m: Math.round(os.loadavg()[0]! * 100) / 100 });
      try {
        if (want('connect')) await runConnectScenarios(sink, sizes.connect, dir, { mosquitto });
        if (want('auth')) await runAuthDecision(sink, sizes.auth, dir);
        if (want('register')) await runRegistration(sink, sizes.register, dir);
        if (want('bulk')) await runBulkProvision(sink, sizes.bulk, dir);
        if (want('gateway')) await runGateway(sink, sizes.gateway, dir);
        // Its own PostgreSQL, Redis and HAProxy: once per run, in the first (or only) store pass.
        if (want('cluster') && store === stores[0]) await runClusterScenarios(sink, sizes.cluster, dir, { mosquitto });
      } finally {
        sink.emit({ bench: 'pass-end', loadAvg1m: Math.round(os.loadavg()[0]! * 100) / 100 });
        sink.context = {};
        useBenchDatabaseServer(undefined);
        await postgres?.stop();
        postgres = undefined;
      }
    }
  } finally {
    if (!keep) fs.rmSync(workDir, { recursive: true, force: true });
    else note(`work dir kept: ${workDir}`);
  }
  sink.emit({ bench: 'machine-end', seconds: Math.round((Date.now() - started) / 1000), loadAvg1m: Math.round(os.loadavg()[0]! * 100) / 100, loadAvg5m: Math.round(os.loadavg()[1]! * 100) / 100 });
  note(`done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  // The docs' results block holds the default (SQLite) run; other stores' runs go to --out or bench/out/.
  writeOutputs(sink, mode, docs && !only && mosquitto && !out && stores.length === 1 && stores[0] === 'sqlite', out);
}

function writeOutputs(sink: FigureSink, mode: Mode, docs: boolean, outDir: string | undefined): void {
  const lines = sink.figures.map((f) => JSON.stringify(f)).join('\n') + '\n';
  const svg = connectChartSvg(sink.figures);
  if (mode === 'full' && docs) {
    const results = path.join(REPO_ROOT, 'bench', 'results');
    fs.mkdirSync(results, { recursive: true });
    fs.writeFileSync(path.join(results, 'full.jsonl'), lines);
    if (svg) fs.writeFileSync(path.join(REPO_ROOT, 'docs', 'benchmarks-connect.svg'), svg);
    writeIntoDoc(path.join(REPO_ROOT, 'docs', 'benchmarks.md'), markdownReport(sink.figures));
    note('wrote bench/results/full.jsonl, docs/benchmarks-connect.svg and the results block of docs/benchmarks.md');
  } else {
    const out = outDir ?? path.join(REPO_ROOT, 'bench', 'out');
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(path.join(out, `${mode}.jsonl`), lines);
    if (svg) fs.writeFileSync(path.join(out, `benchmarks-connect-${mode}.svg`), svg);
    fs.writeFileSync(path.join(out, `${mode}.md`), markdownReport(sink.figures));
    note(`wrote ${out}/${mode}.jsonl, ${mode}.md${svg ? ` and benchmarks-connect-${mode}.svg` : ''}`);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e: unknown) => {
    process.stderr.write(`bench failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  });
}
