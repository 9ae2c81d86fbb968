/**
 * Bulk provisioning as a factory does it: a file of N DeviceNames, `thingauth device import
 * <pk> --file names.txt` against a running server (the CLI sends batches to the management
 * API; the server generates and encrypts each secret). Reports wall-clock seconds of the CLI
 * and the peak RSS (VmHWM) of both processes.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FigureSink, note } from '../lib/emit.js';
import { deviceNameAt } from '../lib/fleet.js';
import { round } from '../lib/histogram.js';
import { PeakRssSampler, readProcCpuMs } from '../lib/proc.js';
import { CLI_MAIN, benchProduct, provision, startThingAuthProcess } from '../lib/thingauth.js';

export interface BulkSizes {
  devices: number;
  timeLimitMs: number;
}

const PRODUCT_KEY = 'a1BenchBulk';

export async function runBulkProvision(sink: FigureSink, sizes: BulkSizes, workDir: string): Promise<void> {
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
    const serverPeak = new PeakRssSampler(server.pid);
    const serverCpu0 = readProcCpuMs(server.pid) ?? NaN;
    note(`bulk: importing ${sizes.devices} devices through the CLI`);
    const t0 = performance.now();
    const child = spawn(
      process.execPath,
      [CLI_MAIN, 'device', 'import', PRODUCT_KEY, '--file', namesFile, '--url', `http://127.0.0.1:${server.ports.http}`, '--token', server.adminToken, '--no-progress', '--json'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const cliPeak = new PeakRssSampler(child.pid!, 20);
    // The CLI's CPU time, read until it exits (the last poll is at most 50 ms before exit).
    let cliCpuMs = 0;
    const cliCpuTimer = setInterval(() => (cliCpuMs = readProcCpuMs(child.pid!) ?? cliCpuMs), 50);
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2_000)));
    const killer = setTimeout(() => child.kill('SIGKILL'), sizes.timeLimitMs);
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    clearTimeout(killer);
    clearInterval(cliCpuTimer);
    const seconds = (performance.now() - t0) / 1000;
    const serverCpuMs = (readProcCpuMs(server.pid) ?? NaN) - serverCpu0;
    const cliPeakKiB = cliPeak.stop();
    const serverPeakKiB = serverPeak.stop();
    let created: number | undefined;
    try {
      created = (JSON.parse(out) as { created?: number }).created;
    } catch {
      created = undefined;
    }
    if (code !== 0) {
      sink.emit({ bench: 'bulk-provision', target: 'thingauth', n: sizes.devices, failed: `CLI exited with ${code}: ${err.trim().slice(-300)}`, seconds: round(seconds, 2) });
      return;
    }
    sink.emit({
      bench: 'bulk-provision',
      target: 'thingauth',
      n: sizes.devices,
      created,
      seconds: round(seconds, 2),
      devicesPerSec: round(sizes.devices / seconds, 0),
      serverCpuSeconds: round(serverCpuMs / 1000, 2),
      cliCpuSecondsAtLeast: round(cliCpuMs / 1000, 2),
      serverRssBeforeKiB: serverBefore?.rssKiB,
      serverPeakRssKiB: serverPeakKiB,
      cliPeakRssKiB: cliPeakKiB,
    });
  } finally {
    await server.stop();
  }
}
