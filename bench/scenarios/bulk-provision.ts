/**
 * Bulk provisioning as a factory does it: a file of N DeviceNames, `thingauth device import
 * <pk> --file names.txt` against a running server (the CLI sends batches to the management
 * API; the server generates and encrypts each secret). Reports wall-clock seconds of the CLI
 * and the peak RSS (VmHWM) of both processes. Then the migration import of the same size
 * (runMigrationImport below): devices that bring their own secrets, from the console's CSV.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FigureSink, note } from '../lib/emit.js';
import { deviceNameAt } from '../lib/fleet.js';
import { round } from '../lib/histogram.js';
import { PeakRssSampler, readProcCpuMs } from '../lib/proc.js';
import { CLI_MAIN, benchProduct, provision, startThingAuthProcess, type RunningThingAuthProcess } from '../lib/thingauth.js';

export interface BulkSizes {
  devices: number;
  timeLimitMs: number;
}

const PRODUCT_KEY = 'a1BenchBulk';
const IMPORT_PRODUCT_KEY = 'a1BenchImport';

/** Both figures of the `bulk` key: generated secrets (`device import`), then imported ones (`import devices`). */
export async function runBulkProvision(sink: FigureSink, sizes: BulkSizes, workDir: string): Promise<void> {
  await runDeviceImport(sink, sizes, workDir);
  await runMigrationImport(sink, sizes, workDir);
}

async function runDeviceImport(sink: FigureSink, sizes: BulkSizes, workDir: string): Promise<void> {
  const cliSource = fs.readFileSync(CLI_MAIN.replace(/main\.js$/, 'program.js'), 'utf8');
  if (!fs.existsSync(path.join(path.dirname(CLI_MAIN), 'device-import.js')) || !/addDeviceCommands/.test(cliSource)) {
    sink.skip('bulk-provision', 'the CLI has no `device import` command in this build', { target: 'thingauth', n: sizes.devices });
    return;
  }
  const dataDir = path.join(workDir, 'thingauth-bulk');
  await provision(dataDir, [{ product: benchProduct(PRODUCT_KEY, 'benchBulkSecret001', { deviceLimit: sizes.devices + 10 }), devices: [] }]);
  const namesFile = path.join(workDir, 'bulk-names.txt');
  const lines: string[] = new Array(sizes.devices);
  for (let i = 0; i < sizes.devices; i++) lines[i] = deviceNameAt('bulk', i);
  fs.writeFileSync(namesFile, lines.join('\n') + '\n');

  const server = await startThingAuthProcess({ dataDir });
  try {
    const serverBefore = server.memory();
    note(`bulk: importing ${sizes.devices} devices through the CLI`);
    const r = await timeCli(server, ['device', 'import', PRODUCT_KEY, '--file', namesFile], sizes.timeLimitMs);
    const created = (r.json as { created?: number } | undefined)?.created;
    if (r.code !== 0) {
      sink.emit({ bench: 'bulk-provision', target: 'thingauth', n: sizes.devices, failed: `CLI exited with ${r.code}: ${r.stderrTail}`, seconds: round(r.seconds, 2) });
      return;
    }
    sink.emit({
      bench: 'bulk-provision',
      target: 'thingauth',
      n: sizes.devices,
      created,
      ...cliFigures(r, sizes.devices),
      serverRssBeforeKiB: serverBefore?.rssKiB,
    });
  } finally {
    await server.stop();
  }
}

/**
 * Issue 8's migration figure: a console-format CSV of N devices that already hold their own
 * secrets, `thingauth import devices --file devices.csv` against a fresh server (its own data
 * dir, so its peak RSS is this import's alone). The product is created through the API first,
 * as an operator would. created must equal N; anything else is reported as a failure, never
 * as a time.
 */
async function runMigrationImport(sink: FigureSink, sizes: BulkSizes, workDir: string): Promise<void> {
  const n = sizes.devices;
  if (!fs.existsSync(path.join(path.dirname(CLI_MAIN), 'import.js'))) {
    sink.skip('migration-import', 'the CLI has no `import devices` command in this build', { target: 'thingauth', n });
    return;
  }
  const csvFile = path.join(workDir, 'import-devices.csv');
  writeConsoleCsv(csvFile, IMPORT_PRODUCT_KEY, n);
  const server = await startThingAuthProcess({ dataDir: path.join(workDir, 'thingauth-import') });
  try {
    const res = await fetch(`http://127.0.0.1:${server.ports.http}/api/v1/products`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ productName: 'bench import', productKey: IMPORT_PRODUCT_KEY, deviceLimit: n + 10 }),
    });
    if (!res.ok) throw new Error(`creating product ${IMPORT_PRODUCT_KEY}: HTTP ${res.status} ${(await res.text()).slice(0, 300)}`);
    const serverBefore = server.memory();
    note(`bulk: importing ${n} devices with their secrets (console CSV, ${(fs.statSync(csvFile).size / 2 ** 20).toFixed(1)} MiB) through the CLI`);
    const r = await timeCli(server, ['import', 'devices', '--file', csvFile], sizes.timeLimitMs);
    const summary = r.json as { created?: number; identical?: number; conflictCount?: number; invalidCount?: number; aborted?: unknown } | undefined;
    if (r.code !== 0 || summary?.created !== n) {
      const why = r.code !== 0 && !summary ? `CLI exited with ${r.code}: ${r.stderrTail}` : `created ${summary?.created} of ${n} (exit ${r.code}; identical ${summary?.identical}, conflicts ${summary?.conflictCount}, invalid ${summary?.invalidCount}${summary?.aborted ? ', aborted ' + JSON.stringify(summary.aborted) : ''})`;
      sink.emit({ bench: 'migration-import', target: 'thingauth', n, failed: why, seconds: round(r.seconds, 2) });
      return;
    }
    sink.emit({
      bench: 'migration-import',
      target: 'thingauth',
      n,
      created: summary.created,
      csvBytes: fs.statSync(csvFile).size,
      ...cliFigures(r, n),
      serverRssBeforeKiB: serverBefore?.rssKiB,
    });
  } finally {
    await server.stop();
  }
}

/** The cloud console's device CSV: a header, then one row per device with its own random 32-char secret. */
function writeConsoleCsv(file: string, productKey: string, n: number): void {
  const random = randomBytes(16 * n).toString('hex');
  const lines: string[] = new Array(n + 1);
  lines[0] = 'ProductKey,DeviceName,DeviceSecret';
  for (let i = 0; i < n; i++) lines[i + 1] = `${productKey},${deviceNameAt('imp', i)},${random.slice(32 * i, 32 * i + 32)}`;
  fs.writeFileSync(file, lines.join('\n') + '\n');
}

interface CliRun {
  code: number | null;
  json: unknown;
  stderrTail: string;
  seconds: number;
  serverCpuMs: number;
  cliCpuMs: number;
  serverPeakKiB: number;
  cliPeakKiB: number;
}

/** Runs one CLI command (with --no-progress --json) against the server: wall clock, CPU and peak RSS of both processes. */
async function timeCli(server: RunningThingAuthProcess, args: string[], timeLimitMs: number): Promise<CliRun> {
  const serverPeak = new PeakRssSampler(server.pid);
  const serverCpu0 = readProcCpuMs(server.pid) ?? NaN;
  const t0 = performance.now();
  const child = spawn(process.execPath, [CLI_MAIN, ...args, '--url', `http://127.0.0.1:${server.ports.http}`, '--token', server.adminToken, '--no-progress', '--json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const cliPeak = new PeakRssSampler(child.pid!, 20);
  // The CLI's CPU time, read until it exits (the last poll is at most 50 ms before exit).
  let cliCpuMs = 0;
  const cliCpuTimer = setInterval(() => (cliCpuMs = readProcCpuMs(child.pid!) ?? cliCpuMs), 50);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2_000)));
  const killer = setTimeout(() => child.kill('SIGKILL'), timeLimitMs);
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  clearTimeout(killer);
  clearInterval(cliCpuTimer);
  const seconds = (performance.now() - t0) / 1000;
  const serverCpuMs = (readProcCpuMs(server.pid) ?? NaN) - serverCpu0;
  let json: unknown;
  try {
    json = JSON.parse(out);
  } catch {
    json = undefined;
  }
  return { code, json, stderrTail: err.trim().slice(-300), seconds, serverCpuMs, cliCpuMs, serverPeakKiB: serverPeak.stop(), cliPeakKiB: cliPeak.stop() };
}

function cliFigures(r: CliRun, n: number): Record<string, number> {
  return {
    seconds: round(r.seconds, 2),
    devicesPerSec: round(n / r.seconds, 0),
    serverCpuSeconds: round(r.serverCpuMs / 1000, 2),
    cliCpuSecondsAtLeast: round(r.cliCpuMs / 1000, 2),
    serverPeakRssKiB: r.serverPeakKiB,
    cliPeakRssKiB: r.cliPeakKiB,
  };
}
