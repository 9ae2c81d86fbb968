/**
 * Connect storm and held connections, thingauth and Mosquitto side by side in one run with
 * the same devices and the same CONNECT bytes: provisions the fleet into a fresh thingauth
 * data dir and into a generated Mosquitto password_file, then runs, for each target in turn,
 * held connections (fresh processes, so RSS deltas are clean) and the storms.
 */
import path from 'node:path';
import { connectPackets, makeFleet, deviceCredentials } from '../lib/fleet.js';
import { FigureSink, note } from '../lib/emit.js';
import { round } from '../lib/histogram.js';
import { connectStorm, holdConnections, type StormResult, type Target } from '../lib/loadgen.js';
import { mosquittoMissingReason, startMosquitto, type RunningMosquitto } from '../lib/mosquitto.js';
import { readProcCpuMs } from '../lib/proc.js';
import { benchDatabaseCpuMs, benchProduct, benchTls, provision, startThingAuthProcess, type RunningThingAuthProcess } from '../lib/thingauth.js';

export interface ConnectSizes {
  /** Devices per storm run (the issue: 20,000). */
  stormN: number;
  /** Concurrency levels for the chart; the first-class figure is at 200. */
  sweep: number[];
  /** Devices per TLS storm run. */
  tlsN: number;
  tlsC: number;
  /** Connections held open (issue: 20,000; the fd hard limit here is 20,000 per process). */
  heldN: number;
  timeLimitMs: number;
}

export interface ConnectPoint {
  target: 'thingauth' | 'mosquitto';
  transport: 'tcp' | 'tls';
  c: number;
  r: StormResult;
}

const PRODUCT_KEY = 'a1BenchStorm';

/** CPU the server and the load generator spent during one storm. */
interface CpuSpent {
  serverMs: number;
  generatorMs: number;
  /** PostgreSQL's processes (undefined on SQLite, whose work is in serverMs). */
  databaseMs: number | undefined;
}

async function measured<T extends { elapsedMs: number }>(pid: number, run: () => Promise<T>): Promise<{ r: T; cpu: CpuSpent }> {
  const s0 = readProcCpuMs(pid) ?? NaN;
  const d0 = benchDatabaseCpuMs();
  const g0 = process.cpuUsage();
  const r = await run();
  const g = process.cpuUsage(g0);
  const d1 = benchDatabaseCpuMs();
  const databaseMs = d0 !== undefined && d1 !== undefined ? d1 - d0 : undefined;
  return { r, cpu: { serverMs: (readProcCpuMs(pid) ?? NaN) - s0, generatorMs: (g.user + g.system) / 1000, databaseMs } };
}

function cpuFields(cpu: CpuSpent, accepted: number, elapsedMs: number) {
  return {
    // CPU per accepted connect stays comparable when other work shares the machine.
    serverCpuUsPerConnect: accepted > 0 ? round((cpu.serverMs * 1000) / accepted, 0) : null,
    serverCpuPct: round((cpu.serverMs / elapsedMs) * 100, 0),
    generatorCpuPct: round((cpu.generatorMs / elapsedMs) * 100, 0),
    // On PostgreSQL the store's work (audit, presence, lookups) runs in its backends, not in the server.
    ...(cpu.databaseMs !== undefined ? { databaseCpuUsPerConnect: accepted > 0 ? round((cpu.databaseMs * 1000) / accepted, 0) : null, databaseCpuPct: round((cpu.databaseMs / elapsedMs) * 100, 0) } : {}),
  };
}

function stormFigure(target: string, transport: string, n: number, c: number, r: StormResult, cpu: CpuSpent) {
  return {
    bench: 'connect-storm',
    target,
    transport,
    n,
    c,
    accepted: r.accepted,
    connectsPerSec: round(r.connectsPerSec, 0),
    p50Ms: round(r.p50Ms, 2),
    p99Ms: round(r.p99Ms, 2),
    maxMs: round(r.maxMs, 1),
    refused: r.refused,
    errors: r.errors,
    ...(r.errors ? { errorKinds: r.errorKinds } : {}),
    ...(r.refused ? { refusedCodes: r.refusedCodes } : {}),
    ...cpuFields(cpu, r.accepted, r.elapsedMs),
    ...(r.timeLimited ? { timeLimited: true } : {}),
  };
}

export async function runConnectScenarios(sink: FigureSink, sizes: ConnectSizes, workDir: string, opts: { mosquitto: boolean } = { mosquitto: true }): Promise<ConnectPoint[]> {
  const points: ConnectPoint[] = [];
  const fleetSize = Math.max(sizes.stormN, sizes.tlsN, sizes.heldN);
  const dataDir = path.join(workDir, 'thingauth-connect');
  note(`connect: provisioning ${fleetSize} devices`);
  const fleet = makeFleet(PRODUCT_KEY, fleetSize, 'bench-connect-seed');
  await provision(dataDir, [{ product: benchProduct(PRODUCT_KEY, 'benchProductSecret01'), devices: fleet }]);
  const tls = await benchTls(dataDir);
  const plain = connectPackets(fleet, 3);
  const secure = connectPackets(fleet, 2);
  // Held connections keep alive 1200 s so nobody sends PINGREQ during the measurement.
  const heldPackets = connectPackets(fleet.slice(0, sizes.heldN), 3, 1200);

  const mosquittoMissing = opts.mosquitto ? mosquittoMissingReason() : 'Mosquitto comparison switched off for this run (--no-mosquitto)';
  const users = mosquittoMissing ? [] : fleet.map((d) => {
    const c = deviceCredentials(d, 3);
    return { username: c.username, password: c.password };
  });

  const startTa = () => startThingAuthProcess({ dataDir });
  const startMq = () =>
    startMosquitto({
      dir: path.join(workDir, 'mosquitto'),
      users,
      tls: { certFile: path.join(dataDir, 'tls', 'server.pem'), keyFile: path.join(dataDir, 'tls', 'server-key.pem') },
    });

  let ta: RunningThingAuthProcess | undefined;
  let mq: RunningMosquitto | undefined;
  try {
    ta = await startTa();
    if (!ta.hasMqtt) {
      const reason = 'thingauth has no MQTT listener yet (the broker, src/mqtt, has not landed)';
      sink.skip('held-connections', reason, { target: 'thingauth', transport: 'tcp' });
      for (const c of sizes.sweep) sink.skip('connect-storm', reason, { target: 'thingauth', transport: 'tcp', n: sizes.stormN, c });
      sink.skip('connect-storm', reason, { target: 'thingauth', transport: 'tls', n: sizes.tlsN, c: sizes.tlsC });
      await ta.stop();
      ta = undefined;
    }
    if (mosquittoMissing) {
      sink.skip('held-connections', mosquittoMissing, { target: 'mosquitto', transport: 'tcp' });
      sink.skip('connect-storm', mosquittoMissing, { target: 'mosquitto' });
      sink.skip('connect-storm-ratio', mosquittoMissing);
    } else {
      mq = await startMq();
    }

    const targets: { name: 'thingauth' | 'mosquitto'; pid: number; plain: Target; secure: Target; memory: () => { rssKiB: number } | undefined }[] = [];
    if (ta) {
      const t = ta;
      targets.push({
        name: 'thingauth',
        pid: t.pid,
        plain: { host: '127.0.0.1', port: t.ports.mqtt },
        secure: { host: '127.0.0.1', port: t.ports.mqtts, tls: { ca: tls.ca!, servername: 'localhost' } },
        memory: () => t.memory(),
      });
    }
    if (mq) {
      const m = mq;
      targets.push({
        name: 'mosquitto',
        pid: m.pid,
        plain: { host: '127.0.0.1', port: m.port },
        secure: { host: '127.0.0.1', port: m.tlsPort!, tls: { ca: tls.ca!, servername: 'localhost' } },
        memory: () => m.memory(),
      });
    }

    // 1. Held connections, on freshly started processes.
    const heldKiB: Record<string, number> = {};
    for (const t of targets) {
      await new Promise((r) => setTimeout(r, 500));
      const before = t.memory()!.rssKiB;
      note(`held: ${t.name} opening ${sizes.heldN} connections`);
      const held = await holdConnections({ target: t.plain, packets: heldPackets, concurrency: 100, timeLimitMs: sizes.timeLimitMs });
      await new Promise((r) => setTimeout(r, 2_000));
      const after = t.memory()!.rssKiB;
      const open = held.open();
      const perConnKiB = open > 0 ? (after - before) / open : NaN;
      heldKiB[t.name] = perConnKiB;
      sink.emit({
        bench: 'held-connections',
        target: t.name,
        transport: 'tcp',
        n: sizes.heldN,
        held: open,
        refused: held.refused,
        errors: held.errors,
        ...(held.errors ? { errorKinds: held.errorKinds } : {}),
        rssBeforeKiB: before,
        rssAfterKiB: after,
        kibPerConnection: round(perConnKiB, 2),
      });
      await held.close();
    }
    if (heldKiB.thingauth !== undefined && heldKiB.mosquitto !== undefined) {
      sink.emit({ bench: 'held-connections-ratio', transport: 'tcp', n: sizes.heldN, ratio: round(heldKiB.thingauth / heldKiB.mosquitto, 2), note: 'thingauth KiB/connection ÷ Mosquitto KiB/connection' });
    }

    // 2. Warm-up (JIT, caches of the accept path), not reported.
    for (const t of targets) {
      await connectStorm({ target: t.plain, packets: plain.slice(0, Math.min(1_000, plain.length)), concurrency: 50, timeLimitMs: sizes.timeLimitMs });
    }

    // 3. Connect storms over TCP at each concurrency, alternating targets so both see the same machine state.
    const stormPackets = plain.slice(0, sizes.stormN);
    for (const c of sizes.sweep) {
      const byTarget: Record<string, StormResult> = {};
      for (const t of targets) {
        note(`storm: ${t.name} tcp n=${stormPackets.length} c=${c}`);
        const { r, cpu } = await measured(t.pid, () => connectStorm({ target: t.plain, packets: stormPackets, concurrency: c, timeLimitMs: sizes.timeLimitMs }));
        byTarget[t.name] = r;
        points.push({ target: t.name, transport: 'tcp', c, r });
        sink.emit(stormFigure(t.name, 'tcp', stormPackets.length, c, r, cpu));
      }
      if (byTarget.thingauth && byTarget.mosquitto) {
        sink.emit({ bench: 'connect-storm-ratio', transport: 'tcp', n: stormPackets.length, c, ratio: round(byTarget.thingauth.connectsPerSec / byTarget.mosquitto.connectsPerSec, 2) });
      }
    }

    // 4. The same over TLS (full handshakes, no session resumption, as devices after an outage).
    const tlsPackets = secure.slice(0, sizes.tlsN);
    const byTarget: Record<string, StormResult> = {};
    for (const t of targets) {
      note(`storm: ${t.name} tls n=${tlsPackets.length} c=${sizes.tlsC}`);
      const { r, cpu } = await measured(t.pid, () => connectStorm({ target: t.secure, packets: tlsPackets, concurrency: sizes.tlsC, timeLimitMs: sizes.timeLimitMs }));
      byTarget[t.name] = r;
      points.push({ target: t.name, transport: 'tls', c: sizes.tlsC, r });
      sink.emit(stormFigure(t.name, 'tls', tlsPackets.length, sizes.tlsC, r, cpu));
    }
    if (byTarget.thingauth && byTarget.mosquitto) {
      sink.emit({ bench: 'connect-storm-ratio', transport: 'tls', n: tlsPackets.length, c: sizes.tlsC, ratio: round(byTarget.thingauth.connectsPerSec / byTarget.mosquitto.connectsPerSec, 2) });
    }
  } finally {
    await ta?.stop();
    await mq?.stop();
  }
  return points;
}
