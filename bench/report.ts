/**
 * Turns the bench's JSON lines into markdown tables and the connect chart.
 *   node dist/bench/report.js bench/results/full.jsonl                 # tables to stdout
 *   node dist/bench/report.js bench/results/full.jsonl --write docs/benchmarks.md --svg docs/benchmarks-connect.svg
 * With --write, the text between `<!-- results:start -->` and `<!-- results:end -->` in that
 * file is replaced; the rest of the document (the prose) is left alone.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Figure } from './lib/emit.js';
import { lineChartSvg, type Series } from './lib/svg-chart.js';

export const START = '<!-- results:start -->';
export const END = '<!-- results:end -->';

type F = Figure & Record<string, any>;

function n(v: unknown, digits = 0): string {
  if (typeof v !== 'number' || !Number.isFinite(v)) return '–';
  return v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

function table(head: string[], rows: string[][]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

const live = (fs: F[], bench: string) => fs.filter((f) => f.bench === bench && !f.skipped);

interface TargetCheck {
  target: string;
  goal: string;
  measured: string;
  met: boolean | undefined;
}

export function targetChecks(figs: F[]): TargetCheck[] {
  const out: TargetCheck[] = [];
  const ratio200 = live(figs, 'connect-storm-ratio').find((f) => f.transport === 'tcp' && f.c === 200);
  out.push({ target: 'Connect storm rate, TCP, C = 200', goal: 'thingauth/Mosquitto ≥ 1.0', measured: ratio200 ? `${n(ratio200.ratio, 2)}` : 'not measured', met: ratio200 ? ratio200.ratio >= 1 : undefined });
  const ta200 = live(figs, 'connect-storm').find((f) => f.target === 'thingauth' && f.transport === 'tcp' && f.c === 200);
  out.push({ target: 'Connect storm p99, TCP, C = 200', goal: '< 50 ms', measured: ta200 ? `${n(ta200.p99Ms, 1)} ms` : 'not measured', met: ta200 ? ta200.p99Ms < 50 : undefined });
  const refused = live(figs, 'connect-storm').filter((f) => f.target === 'thingauth');
  const totalRefused = refused.reduce((s, f) => s + (f.refused ?? 0) + (f.errors ?? 0), 0);
  out.push({ target: 'Connect storm refusals (all runs)', goal: '0', measured: refused.length ? String(totalRefused) : 'not measured', met: refused.length ? totalRefused === 0 : undefined });
  const ratioTls = live(figs, 'connect-storm-ratio').find((f) => f.transport === 'tls');
  out.push({ target: 'Connect storm rate, TLS', goal: 'thingauth/Mosquitto ≥ 1.0', measured: ratioTls ? `${n(ratioTls.ratio, 2)}` : 'not measured', met: ratioTls ? ratioTls.ratio >= 1 : undefined });
  const held = live(figs, 'held-connections').find((f) => f.target === 'thingauth');
  out.push({ target: 'Held connection RSS', goal: '≤ 8 KiB per connection', measured: held ? `${n(held.kibPerConnection, 2)} KiB` : 'not measured', met: held ? held.kibPerConnection <= 8 : undefined });
  const warm = live(figs, 'auth-decision').find((f) => f.cache === 'warm');
  out.push({
    target: 'Auth decision, cache warm',
    goal: '≥ 200,000/s on one core',
    measured: warm ? `${n(warm.opsPerSec)}/s wall clock, ${n(warm.opsPerCpuSec)} per CPU-second (${n(warm.devicesInStore)} devices)` : 'not measured',
    met: warm ? Math.max(warm.opsPerSec, warm.opsPerCpuSec ?? 0) >= 200_000 : undefined,
  });
  const cold = live(figs, 'auth-decision').find((f) => f.cache === 'cold');
  out.push({
    target: 'Auth decision, cache cold, p99',
    goal: '< 100 µs with 1,000,000 devices',
    measured: cold ? `${n(cold.p99Us, 1)} µs wall clock, ${n(cold.cpuP99Us, 1)} µs CPU (${n(cold.devicesInStore)} devices)` : 'not measured',
    met: cold ? Math.min(cold.p99Us, cold.cpuP99Us ?? Infinity) < 100 && cold.devicesInStore >= 1_000_000 : undefined,
  });
  const reg = live(figs, 'register-https')[0];
  out.push({ target: 'HTTPS registration, keep-alive', goal: '≥ 3,000/s', measured: reg ? `${n(reg.registrationsPerSec)}/s` : 'not measured', met: reg ? reg.registrationsPerSec >= 3000 && reg.failed === 0 : undefined });
  const bulk = live(figs, 'bulk-provision')[0];
  out.push({ target: 'Bulk provisioning, 500,000 devices', goal: '< 20 s', measured: bulk ? `${n(bulk.seconds, 1)} s for ${n(bulk.n)}` : 'not measured', met: bulk && !bulk.failed ? bulk.n >= 500_000 && bulk.seconds < 20 : bulk ? false : undefined });
  const imp = live(figs, 'migration-import')[0];
  out.push({ target: 'Migration import, 500,000 rows', goal: '< 20 s', measured: imp ? (imp.failed ? `failed: ${imp.failed}` : `${n(imp.seconds, 1)} s for ${n(imp.n)}`) : 'not measured', met: imp && !imp.failed ? imp.n >= 500_000 && imp.created === imp.n && imp.seconds < 20 : imp ? false : undefined });
  const gw = live(figs, 'gateway-batch-login')[0];
  out.push({ target: 'Gateway, 1,500 sub-devices online', goal: '< 2 s', measured: gw ? `${n(gw.seconds, 2)} s` : 'not measured', met: gw ? gw.seconds < 2 && (gw.failed ?? 0) === 0 : undefined });
  return out;
}

/** The tables; a run with several stores (--store sqlite,postgres) gets one set per store under one header. */
export function markdownReport(figs: F[]): string {
  const stores = [...new Set(figs.map((f) => f.store).filter((s): s is string => typeof s === 'string'))];
  if (stores.length <= 1) return storeReport(figs, true);
  const run = figs.filter((f) => f.bench === 'machine' || f.bench === 'machine-end');
  return [runHeader(run), ...stores.map((s) => `## Store: ${s}\n\n` + storeReport(figs.filter((f) => f.store === s), false))].filter(Boolean).join('\n\n');
}

function runHeader(figs: F[]): string {
  const m = figs.find((f) => f.bench === 'machine');
  if (!m) return '';
  const end = figs.find((f) => f.bench === 'machine-end');
  return (
    `Run ${m.date} · mode \`${m.mode}\` · ${m.cpus} cores (${m.cpuModel}) · ${m.memoryGiB} GiB RAM · Node ${m.node} · ${m.platform}  \n` +
    `Command: \`${m.command}\`` +
    (m.loadAvg1m !== undefined ? `  \nLoad average (other work on the machine): ${m.loadAvg1m} at the start` + (end ? `, ${end.loadAvg5m} over the last 5 minutes at the end (${end.seconds} s run)` : '') : '')
  );
}

function storeReport(figs: F[], withHeader: boolean): string {
  const parts: string[] = [];
  const m = withHeader ? figs.find((f) => f.bench === 'machine') : undefined;
  if (m) {
    const end = figs.find((f) => f.bench === 'machine-end');
    parts.push(
      `Run ${m.date} · mode \`${m.mode}\` · ${m.cpus} cores (${m.cpuModel}) · ${m.memoryGiB} GiB RAM · Node ${m.node} · ${m.platform}  \n` +
        `Command: \`${m.command}\`` +
        (m.loadAvg1m !== undefined ? `  \nLoad average (other work on the machine): ${m.loadAvg1m} at the start` + (end ? `, ${end.loadAvg5m} over the last 5 minutes at the end (${end.seconds} s run)` : '') : ''),
    );
  }
  parts.push('### Targets\n\n' + table(['target', 'goal', 'measured', 'met'], targetChecks(figs).map((t) => [t.target, t.goal, t.measured, t.met === undefined ? 'not measured' : t.met ? 'yes' : '**no**'])));

  const storms = live(figs, 'connect-storm');
  if (storms.length) {
    const ratios = live(figs, 'connect-storm-ratio');
    const rows = storms.map((f) => {
      const r = f.target === 'thingauth' ? ratios.find((x) => x.transport === f.transport && x.c === f.c) : undefined;
      return [f.target!, f.transport!, n(f.n), n(f.c), n(f.connectsPerSec), n(f.p50Ms, 1), n(f.p99Ms, 1), n(f.maxMs, 0), String(f.refused), String(f.errors), n(f.serverCpuUsPerConnect), n(f.serverCpuPct), n(f.generatorCpuPct), r ? n(r.ratio, 2) : ''];
    });
    parts.push(
      '### Connect storm (each device connects, gets CONNACK, disconnects)\n\n' +
        table(['target', 'transport', 'N', 'C', 'connects/s', 'p50 ms', 'p99 ms', 'max ms', 'refused', 'errors', 'server CPU µs/connect', 'server CPU %', 'load generator CPU %', 'ratio thingauth/Mosquitto'], rows) +
        '\n\nCPU % is of one core (100 % = one core busy for the whole run), from /proc/<pid>/stat.',
    );
  }
  const held = live(figs, 'held-connections');
  if (held.length) {
    const ratio = live(figs, 'held-connections-ratio')[0];
    parts.push(
      '### Held connections (idle, authenticated)\n\n' +
        table(['target', 'held', 'RSS before (MiB)', 'RSS after (MiB)', 'KiB per connection'], held.map((f) => [f.target!, n(f.held), n(f.rssBeforeKiB / 1024, 1), n(f.rssAfterKiB / 1024, 1), n(f.kibPerConnection, 2)])) +
        (ratio ? `\n\nRatio thingauth/Mosquitto per connection: ${n(ratio.ratio, 2)}` : ''),
    );
  }
  const auth = live(figs, 'auth-decision');
  if (auth.length) {
    parts.push(
      '### Auth decision in process (parse + lookup + HMAC-SHA256 verify, one event loop)\n\n' +
        table(
          ['cache', 'devices in store', 'distinct devices', 'ops', 'ops/s (wall clock)', 'ops per CPU-second', 'CPU share', 'p50 µs', 'p99 µs', 'CPU p50 µs', 'CPU p99 µs', 'denied'],
          auth.map((f) => [f.cache, n(f.devicesInStore), n(f.workingSet ?? f.ops), n(f.ops), n(f.opsPerSec), n(f.opsPerCpuSec), n(f.cpuShare, 2), n(f.p50Us, 1), n(f.p99Us, 1), n(f.cpuP50Us, 1), n(f.cpuP99Us, 1), String(f.denied)]),
        ) +
        '\n\nCPU share = the bench process\'s CPU time ÷ wall-clock time during the loop (1.00 = it had a core to itself). "Ops per CPU-second" is what one unshared core would do. CPU µs per decision are measured for the cold run only (getrusage per call).',
    );
  }
  const reg = [...live(figs, 'register-https'), ...live(figs, 'register-mqtt-regnwl')];
  if (reg.length) {
    parts.push('### Dynamic registration\n\n' + table(['kind', 'N', 'C', 'registrations/s', 'p50 ms', 'p99 ms', 'failed', 'server CPU µs/registration', 'server CPU %'], reg.map((f) => [f.bench === 'register-https' ? 'HTTPS /auth/register/device (keep-alive)' : 'MQTT regnwl over TLS (new TLS connection each)', n(f.n), n(f.c), n(f.registrationsPerSec), n(f.p50Ms, 1), n(f.p99Ms, 1), f.failed ? `${f.failed} ${JSON.stringify(f.failures ?? {})}` : '0', n(f.serverCpuUsPerRegistration), n(f.serverCpuPct)])));
  }
  const bulk = live(figs, 'bulk-provision');
  if (bulk.length) {
    parts.push('### Bulk provisioning (`thingauth device import`)\n\n' + table(['devices', 'seconds', 'devices/s', 'server CPU s', 'CLI CPU s (≥)', 'server peak RSS (MiB)', 'CLI peak RSS (MiB)'], bulk.map((f) => [n(f.n), f.failed ? `failed: ${f.failed}` : n(f.seconds, 2), n(f.devicesPerSec), n(f.serverCpuSeconds, 1), n(f.cliCpuSecondsAtLeast, 1), n(f.serverPeakRssKiB / 1024, 1), n(f.cliPeakRssKiB / 1024, 1)])));
  }
  const imp = live(figs, 'migration-import');
  if (imp.length) {
    parts.push(
      '### Migration import (`thingauth import devices`, console CSV with each device\'s own secret)\n\n' +
        table(['rows', 'created', 'seconds', 'devices/s', 'server CPU s', 'CLI CPU s (≥)', 'server peak RSS (MiB)', 'CLI peak RSS (MiB)'], imp.map((f) => [n(f.n), n(f.created), f.failed ? `failed: ${f.failed}` : n(f.seconds, 2), n(f.devicesPerSec), n(f.serverCpuSeconds, 1), n(f.cliCpuSecondsAtLeast, 1), n(f.serverPeakRssKiB / 1024, 1), n(f.cliPeakRssKiB / 1024, 1)])),
    );
  }
  const gw = live(figs, 'gateway-batch-login');
  if (gw.length) {
    parts.push('### Gateway sub-device login\n\n' + table(['sub-devices', 'batch', 'batches', 'seconds', 'p99 batch ms', 'failed'], gw.map((f) => [n(f.n), n(f.batch), n(f.batches), n(f.seconds, 3), n(f.p99BatchMs, 1), String(f.failed ?? 0)])));
  }
  const skipped = figs.filter((f) => f.skipped);
  if (skipped.length) {
    parts.push('### Not measured in this run\n\n' + skipped.map((f) => `- ${f.bench}${f.target ? ` (${f.target}${f.transport ? ', ' + f.transport : ''}${f.c ? ', C = ' + f.c : ''})` : ''}: ${f.skipped}`).join('\n'));
  }
  return parts.join('\n\n') + '\n';
}

export function connectChartSvg(figs: F[]): string | undefined {
  const storms = live(figs, 'connect-storm').filter((f) => f.transport === 'tcp');
  if (storms.length === 0) return undefined;
  const targets = [...new Set(storms.map((f) => f.target!))];
  const series = (key: string): Series[] => targets.map((t) => ({ name: t, points: storms.filter((f) => f.target === t).map((f) => ({ x: f.c, y: f[key] })) }));
  const m = figs.find((f) => f.bench === 'machine');
  const N = storms[0]!.n;
  return lineChartSvg(
    [
      { title: 'Accepted connects per second', xLabel: 'concurrency C (connects in flight)', yLabel: 'connects/s', series: series('connectsPerSec') },
      { title: 'p99 CONNACK latency (log scale)', xLabel: 'concurrency C (connects in flight)', yLabel: 'p99 ms', log: true, series: series('p99Ms') },
      { title: 'Server CPU per accepted connect', xLabel: 'concurrency C (connects in flight)', yLabel: 'CPU µs / connect', series: series('serverCpuUsPerConnect') },
    ],
    {
      title: `Connect storm over TCP: ${N.toLocaleString('en-US')} distinct devices, hmacsha256 CONNECT, close after CONNACK`,
      subtitle: m ? `${m.date.slice(0, 10)} · ${m.cpus} cores ${m.cpuModel} · ${m.memoryGiB} GiB · Node ${m.node} · load generator on the same machine` : undefined,
      width: 1260,
    },
  );
}

export function readFigures(file: string): F[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim().startsWith('{'))
    .map((l) => JSON.parse(l) as F);
}

export function writeIntoDoc(doc: string, markdown: string): void {
  const text = fs.existsSync(doc) ? fs.readFileSync(doc, 'utf8') : `# Benchmarks\n\n${START}\n${END}\n`;
  const a = text.indexOf(START);
  const b = text.indexOf(END);
  if (a < 0 || b < a) throw new Error(`${doc} has no ${START} ... ${END} block to replace`);
  fs.writeFileSync(doc, text.slice(0, a + START.length) + '\n\n' + markdown + '\n' + text.slice(b));
}

function main(argv: string[]): void {
  const file = argv[0];
  if (!file) throw new Error('usage: report.js <results.jsonl> [--write <doc.md>] [--svg <chart.svg>]');
  const figs = readFigures(file);
  const md = markdownReport(figs);
  const wi = argv.indexOf('--write');
  const si = argv.indexOf('--svg');
  if (wi >= 0) writeIntoDoc(argv[wi + 1]!, md);
  else process.stdout.write(md);
  if (si >= 0) {
    const svg = connectChartSvg(figs);
    if (svg) fs.writeFileSync(argv[si + 1]!, svg);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`report: ${(e as Error).message}\n`);
    process.exit(1);
  }
}
