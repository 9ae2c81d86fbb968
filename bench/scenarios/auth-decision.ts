/**
 * Auth decision in process, on one core: what the broker does with a CONNECT's credentials,
 * minus the socket: parse the ClientId and Username (src/core/credentials.ts), look the
 * device up and verify the HMAC through the DeviceAuthenticator service (its record cache in
 * front of the SQLite store). Warm = the device's record is in the authenticator's cache;
 * cold = first lookup of that device since the service was created (a SQLite read and a
 * secret decryption; the OS page cache holds the file since it was just written).
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseMqttClientId, parseMqttUsername } from '../../src/core/credentials.js';
import { createLogger } from '../../src/logger.js';
import { DeviceAuthenticator } from '../../src/services/authenticator.js';
import { RegistryEvents } from '../../src/services/events.js';
import { FigureSink, note } from '../lib/emit.js';
import { deviceCredentials, makeFleet, type MqttCredentials } from '../lib/fleet.js';
import { LatencyRecorder, round } from '../lib/histogram.js';
import { benchProduct, openBenchStore, provision } from '../lib/thingauth.js';

export interface AuthSizes {
  /** Devices in the store (issue: 1,000,000). */
  devices: number;
  /** Distinct devices cycled through in the warm runs (all fit in the cache). */
  warmSet: number;
  warmOps: number;
  /** Distinct devices looked up once each in the cold run. */
  coldOps: number;
}

const PRODUCT_KEY = 'a1BenchAuth';

/** The decision for one CONNECT's credentials; resolves true when allowed. */
async function decide(auth: DeviceAuthenticator, c: MqttCredentials): Promise<boolean> {
  const parsed = parseMqttClientId(c.clientId);
  const user = parseMqttUsername(c.username);
  if (!parsed || !user) return false;
  const r = await auth.verifyDeviceLogin({
    productKey: user.productKey,
    deviceName: user.deviceName,
    clientId: parsed.clientId,
    timestamp: parsed.ext.timestamp,
    signMethod: parsed.ext.signmethod,
    sign: c.password,
    lan: parsed.ext.lan,
    overTls: false,
  });
  return r.ok;
}

function shuffledIndexes(n: number, take: number, seed: number): number[] {
  // Deterministic Fisher-Yates prefix (xorshift), so runs pick the same devices.
  const idx = Array.from({ length: n }, (_, i) => i);
  let s = seed >>> 0 || 1;
  const rnd = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
  for (let i = 0; i < take; i++) {
    const j = i + Math.floor(rnd() * (n - i));
    [idx[i], idx[j]] = [idx[j]!, idx[i]!];
  }
  return idx.slice(0, take);
}

function cpuMs(u: NodeJS.CpuUsage): number {
  return (u.user + u.system) / 1000;
}

export async function runAuthDecision(sink: FigureSink, sizes: AuthSizes, workDir: string): Promise<void> {
  const dataDir = path.join(workDir, 'thingauth-auth');
  note(`auth: provisioning ${sizes.devices} devices`);
  const t0 = performance.now();
  const fleet = makeFleet(PRODUCT_KEY, sizes.devices, 'bench-auth-seed');
  let lastNote = 0;
  await provision(dataDir, [{ product: benchProduct(PRODUCT_KEY, 'benchProductSecret02'), devices: fleet }], (done) => {
    if (done - lastNote >= 200_000) {
      lastNote = done;
      note(`auth: ${done} devices stored`);
    }
  });
  note(`auth: provisioned in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const store = await openBenchStore(dataDir);
  const auth = new DeviceAuthenticator(store, new RegistryEvents(), createLogger('silent'));
  try {
    // Cold: each device once, in random order, on a service whose cache is empty.
    const coldIdx = shuffledIndexes(fleet.length, Math.min(sizes.coldOps, fleet.length), 0xc01d);
    const coldCreds = coldIdx.map((i) => deviceCredentials(fleet[i]!, 3));
    const coldLat = new LatencyRecorder(coldCreds.length);
    // CPU time per decision as well: on a shared machine the wall clock also counts the
    // time this process waited for a core.
    const coldCpu = new LatencyRecorder(coldCreds.length);
    let denied = 0;
    const c0 = performance.now();
    const cpu0 = process.cpuUsage();
    for (const c of coldCreds) {
      const s = performance.now();
      const u = process.cpuUsage();
      if (!(await decide(auth, c))) denied++;
      const du = process.cpuUsage(u);
      coldLat.record(performance.now() - s);
      coldCpu.record((du.user + du.system) / 1000);
    }
    const coldMs = performance.now() - c0;
    const coldCpuMs = cpuMs(process.cpuUsage(cpu0));
    sink.emit({
      bench: 'auth-decision',
      target: 'thingauth',
      cache: 'cold',
      devicesInStore: fleet.length,
      ops: coldCreds.length,
      opsPerSec: round(coldCreds.length / (coldMs / 1000), 0),
      p50Us: round(coldLat.summary().p50Ms * 1000, 1),
      p99Us: round(coldLat.summary().p99Ms * 1000, 1),
      cpuP50Us: round(coldCpu.summary().p50Ms * 1000, 1),
      cpuP99Us: round(coldCpu.summary().p99Ms * 1000, 1),
      opsPerCpuSec: round(coldCreds.length / (coldCpuMs / 1000), 0),
      cpuShare: round(coldCpuMs / coldMs, 2),
      denied,
    });

    // Warm: a working set that fits in the cache, primed once, then cycled.
    const warmIdx = shuffledIndexes(fleet.length, Math.min(sizes.warmSet, fleet.length), 0x3a3a);
    const warmCreds = warmIdx.map((i) => deviceCredentials(fleet[i]!, 3));
    for (const c of warmCreds) await decide(auth, c);
    denied = 0;
    // Throughput without per-operation clocks...
    const w0 = performance.now();
    const wc0 = process.cpuUsage();
    for (let i = 0; i < sizes.warmOps; i++) if (!(await decide(auth, warmCreds[i % warmCreds.length]!))) denied++;
    const warmMs = performance.now() - w0;
    const warmCpuMs = cpuMs(process.cpuUsage(wc0));
    // ...then latency with them.
    const warmLat = new LatencyRecorder(sizes.warmOps);
    for (let i = 0; i < sizes.warmOps; i++) {
      const s = performance.now();
      if (!(await decide(auth, warmCreds[i % warmCreds.length]!))) denied++;
      warmLat.record(performance.now() - s);
    }
    sink.emit({
      bench: 'auth-decision',
      target: 'thingauth',
      cache: 'warm',
      devicesInStore: fleet.length,
      workingSet: warmCreds.length,
      ops: sizes.warmOps,
      opsPerSec: round(sizes.warmOps / (warmMs / 1000), 0),
      // Decisions per second of this process's CPU time: what one core would do if it were
      // not shared (GC helper threads count against it, so it is if anything low).
      opsPerCpuSec: round(sizes.warmOps / (warmCpuMs / 1000), 0),
      cpuShare: round(warmCpuMs / warmMs, 2),
      p50Us: round(warmLat.summary().p50Ms * 1000, 1),
      p99Us: round(warmLat.summary().p99Ms * 1000, 1),
      denied,
    });
  } finally {
    await store.close();
  }
}
