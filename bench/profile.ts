/**
 * Profiles a hot path: starts thingauth under `node --cpu-prof`, runs a load against it,
 * stops it, and prints where the server's CPU went (self time by function and by module:
 * aedes, our src/, node internals, GC, idle).
 *   node dist/bench/profile.js [--what connect|register|bulk] [--n 10000] [--c 200] [--out bench/out/profile]
 * connect: TCP connect storm (C SDK CONNECT, close after CONNACK); register: HTTPS
 * /auth/register/device with keep-alive for pre-created devices; bulk: `thingauth device
 * import` of n new DeviceNames (the server side is profiled).
 * Any scenario's server can be profiled too:
 *   BENCH_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir bench/out/profile" node dist/bench/run.js --quick --only gateway
 *   node dist/bench/profile.js --summarize bench/out/profile/<file>.cpuprofile
 */
import fs from 'node:fs';
import path from 'node:path';
import { connectPackets, makeFleet } from './lib/fleet.js';
import { note } from './lib/emit.js';
import { connectStorm } from './lib/loadgen.js';
import { httpsLoad } from './lib/https-load.js';
import { registrationSignPairs } from '../src/core/credentials.js';
import { signPairs } from '../src/core/sign.js';
import { execFileSync } from 'node:child_process';
import { CLI_MAIN, benchProduct, makeBenchDir, provision, startThingAuthProcess } from './lib/thingauth.js';
import { fileURLToPath } from 'node:url';

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: CpuProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  totalMs: number;
  byFunction: { name: string; ms: number; pct: number }[];
  byModule: { module: string; ms: number; pct: number }[];
}

function moduleOf(url: string, fn: string): string {
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(idle)') return 'idle';
  if (fn === '(program)') return 'native (program)';
  if (!url) return 'native/builtin';
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const src = url.indexOf('/dist/src/');
  if (src >= 0) return `thingauth src/${url.slice(src + '/dist/src/'.length)}`;
  return url;
}

export function summarizeProfile(p: CpuProfile, top = 25): ProfileSummary {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0) / 1000);
  let total = 0;
  const fnMs = new Map<string, number>();
  const modMs = new Map<string, number>();
  for (const [id, ms] of self) {
    const n = byId.get(id)!;
    total += ms;
    const cf = n.callFrame;
    const mod = moduleOf(cf.url, cf.functionName);
    const name = `${cf.functionName || '(anonymous)'} ${mod}${cf.url ? `:${cf.lineNumber + 1}` : ''}`;
    fnMs.set(name, (fnMs.get(name) ?? 0) + ms);
    modMs.set(mod, (modMs.get(mod) ?? 0) + ms);
  }
  const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
  return {
    totalMs: total,
    byFunction: sorted(fnMs).slice(0, top).map(([name, ms]) => ({ name, ms: Math.round(ms), pct: Math.round((ms / total) * 1000) / 10 })),
    byModule: sorted(modMs).slice(0, top).map(([module, ms]) => ({ module, ms: Math.round(ms), pct: Math.round((ms / total) * 1000) / 10 })),
  };
}

function printSummary(s: ProfileSummary): void {
  process.stdout.write('\nself time by module:\n');
  for (const m of s.byModule) process.stdout.write(`  ${m.pct.toFixed(1).padStart(5)}%  ${String(m.ms).padStart(6)} ms  ${m.module}\n`);
  process.stdout.write('\nself time by function:\n');
  for (const f of s.byFunction) process.stdout.write(`  ${f.pct.toFixed(1).padStart(5)}%  ${String(f.ms).padStart(6)} ms  ${f.name}\n`);
}

async function main(argv: string[]): Promise<void> {
  const arg = (name: string, def: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1]! : def;
  };
  const summarize = argv.indexOf('--summarize');
  if (summarize >= 0) {
    printSummary(summarizeProfile(JSON.parse(fs.readFileSync(argv[summarize + 1]!, 'utf8')) as CpuProfile, 40));
    return;
  }
  const what = arg('--what', 'connect');
  if (what !== 'connect' && what !== 'register' && what !== 'bulk') throw new Error('--what must be connect, register or bulk');
  const n = Number(arg('--n', '10000'));
  const c = Number(arg('--c', what === 'connect' ? '200' : '50'));
  const outDir = path.resolve(arg('--out', 'bench/out/profile'));
  fs.mkdirSync(outDir, { recursive: true });
  const work = makeBenchDir();
  try {
    const dataDir = path.join(work, 'ta');
    const fleet = what === 'bulk' ? [] : makeFleet('a1BenchProf', n, 'bench-profile-seed');
    const ps = 'benchProfSecret01';
    await provision(dataDir, [{ product: benchProduct('a1BenchProf', ps, { dynamicRegistration: true, deviceLimit: n + 10 }), devices: fleet }]);
    const before = new Set(fs.readdirSync(outDir));
    const server = await startThingAuthProcess({ dataDir, nodeArgs: ['--cpu-prof', '--cpu-prof-dir', outDir], env: { THINGAUTH_REGISTRATION_RATE: '1000000' } });
    let perSec: number;
    if (what === 'connect') {
      if (!server.hasMqtt) throw new Error('thingauth has no MQTT listener in this build');
      const packets = connectPackets(fleet, 3);
      // Warm-up, then the measured storm.
      await connectStorm({ target: { host: '127.0.0.1', port: server.ports.mqtt }, packets: packets.slice(0, 1_000), concurrency: 50, timeLimitMs: 60_000 });
      const r = await connectStorm({ target: { host: '127.0.0.1', port: server.ports.mqtt }, packets, concurrency: c, timeLimitMs: 120_000 });
      note(`storm: ${r.accepted} accepted, ${Math.round(r.connectsPerSec)}/s, p99 ${r.p99Ms.toFixed(1)} ms, refused ${r.refused}, errors ${r.errors}`);
      perSec = r.connectsPerSec;
    } else if (what === 'bulk') {
      const names = path.join(work, 'names.txt');
      fs.writeFileSync(names, Array.from({ length: n }, (_, i) => `bulk${String(i).padStart(7, '0')}`).join('\n') + '\n');
      const t0 = Date.now();
      const out = execFileSync(process.execPath, [CLI_MAIN, 'device', 'import', 'a1BenchProf', '--file', names, '--url', `http://127.0.0.1:${server.ports.http}`, '--token', server.adminToken, '--no-progress', '--json'], { encoding: 'utf8' });
      perSec = n / ((Date.now() - t0) / 1000);
      note(`bulk: ${out.trim()}`);
    } else {
      const bodies = fleet.map((d) =>
        new URLSearchParams({ productKey: d.productKey, deviceName: d.deviceName, random: 'r1', sign: signPairs('sha256', ps, registrationSignPairs(d.deviceName, d.productKey, 'r1')), signMethod: 'hmacsha256' }).toString(),
      );
      const tls = { ca: fs.readFileSync(path.join(dataDir, 'tls', 'ca.pem'), 'utf8') };
      const r = await httpsLoad({ host: '127.0.0.1', port: server.ports.https, path: '/auth/register/device', ca: tls.ca, bodies, concurrency: c, timeLimitMs: 120_000, ok: (b) => (b as { code?: number })?.code === 200 });
      note(`register: ${r.ok} ok, ${Math.round(r.perSec)}/s, p99 ${r.p99Ms.toFixed(1)} ms, failed ${r.failed}`);
      perSec = r.perSec;
    }
    await server.stop();
    const file = fs.readdirSync(outDir).find((f) => f.endsWith('.cpuprofile') && !before.has(f));
    if (!file) throw new Error(`no .cpuprofile written to ${outDir}`);
    const s = summarizeProfile(JSON.parse(fs.readFileSync(path.join(outDir, file), 'utf8')) as CpuProfile);
    process.stdout.write(JSON.stringify({ bench: `profile-${what}`, n, c, perSec: Math.round(perSec), profile: path.join(outDir, file), totalMs: Math.round(s.totalMs) }) + '\n');
    printSummary(s);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`profile failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  });
}
