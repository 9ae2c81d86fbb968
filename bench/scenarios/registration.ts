/**
 * Dynamic registration: HTTPS `/auth/register/device` with keep-alive connections for
 * pre-created devices, and MQTT `authType=regnwl` over TLS (CONNECT -> CONNACK -> the
 * server's PUBLISH on /ext/regnwl), each device once.
 * The per-product registration rate limit (THINGAUTH_REGISTRATION_RATE, default 1,000/s) is
 * raised and the per-source one (THINGAUTH_REGISTRATION_RATE_PER_SOURCE, default 20/s; the load
 * generator is one address for a whole fleet) switched off for this run, so the figure is the
 * server's capacity, not the configured quota.
 */
import path from 'node:path';
import mqttPacket from 'mqtt-packet';
import { registrationSignPairs } from '../../src/core/credentials.js';
import { signPairs } from '../../src/core/sign.js';
import { CONNECT_AUTHENTICATORS } from '../../src/mqtt/connect-authenticators.js';
import { FigureSink, note } from '../lib/emit.js';
import { deviceNameAt, makeFleet } from '../lib/fleet.js';
import { round } from '../lib/histogram.js';
import { httpsLoad } from '../lib/https-load.js';
import { mqttExchanges } from '../lib/loadgen.js';
import { readProcCpuMs } from '../lib/proc.js';
import { benchDatabaseCpuMs, benchProduct, benchTls, provision, startThingAuthProcess } from '../lib/thingauth.js';

export interface RegistrationSizes {
  httpsN: number;
  httpsC: number;
  regnwlN: number;
  regnwlC: number;
  timeLimitMs: number;
}

const PRE_PK = 'a1BenchRegPre';
const PRE_PS = 'benchRegSecret0001';
const FREE_PK = 'a1BenchRegFree';
const FREE_PS = 'benchRegSecret0002';
const RANDOM = '8Ygb7ULYh53B6OA'; // the constant iotkit 3.x sends

export async function runRegistration(sink: FigureSink, sizes: RegistrationSizes, workDir: string): Promise<void> {
  const dataDir = path.join(workDir, 'thingauth-register');
  const fleet = makeFleet(PRE_PK, sizes.httpsN, 'bench-reg-seed', 'reg');
  await provision(dataDir, [
    { product: benchProduct(PRE_PK, PRE_PS, { dynamicRegistration: true }), devices: fleet },
    { product: benchProduct(FREE_PK, FREE_PS, { dynamicRegistration: true, preRegistrationFree: true, deviceLimit: sizes.regnwlN + 10 }), devices: [] },
  ]);
  const tls = await benchTls(dataDir);
  const server = await startThingAuthProcess({ dataDir, env: { THINGAUTH_REGISTRATION_RATE: '1000000', THINGAUTH_REGISTRATION_RATE_PER_SOURCE: '0' } });
  try {
    const bodies = fleet.map((d) => {
      const sign = signPairs('sha256', PRE_PS, registrationSignPairs(d.deviceName, PRE_PK, RANDOM));
      return new URLSearchParams({ productKey: PRE_PK, deviceName: d.deviceName, random: RANDOM, sign, signMethod: 'hmacsha256' }).toString();
    });
    note(`register: https n=${bodies.length} c=${sizes.httpsC}`);
    const cpu0 = readProcCpuMs(server.pid) ?? NaN;
    const db0 = benchDatabaseCpuMs();
    const r = await httpsLoad({
      host: '127.0.0.1',
      port: server.ports.https,
      path: '/auth/register/device',
      ca: tls.ca!,
      bodies,
      concurrency: sizes.httpsC,
      timeLimitMs: sizes.timeLimitMs,
      ok: (b) => typeof b === 'object' && b !== null && (b as { code?: unknown }).code === 200 && typeof (b as { data?: { deviceSecret?: unknown } }).data?.deviceSecret === 'string',
    });
    const httpsCpuMs = (readProcCpuMs(server.pid) ?? NaN) - cpu0;
    const db1 = benchDatabaseCpuMs();
    // PostgreSQL's own processes (on SQLite the store's work is inside the server's figure).
    const dbMs = db0 !== undefined && db1 !== undefined ? db1 - db0 : undefined;
    sink.emit({
      bench: 'register-https',
      target: 'thingauth',
      transport: 'https',
      n: bodies.length,
      c: sizes.httpsC,
      ok: r.ok,
      registrationsPerSec: round(r.perSec, 0),
      p50Ms: round(r.p50Ms, 2),
      p99Ms: round(r.p99Ms, 2),
      failed: r.failed,
      ...(r.failed ? { failures: r.failures } : {}),
      tlsConnections: r.connectionsOpened,
      serverCpuUsPerRegistration: r.ok > 0 ? round((httpsCpuMs * 1000) / r.ok, 0) : null,
      serverCpuPct: round((httpsCpuMs / r.elapsedMs) * 100, 0),
      ...(dbMs !== undefined ? { databaseCpuUsPerRegistration: r.ok > 0 ? round((dbMs * 1000) / r.ok, 0) : null, databaseCpuPct: round((dbMs / r.elapsedMs) * 100, 0) } : {}),
    });

    if (!CONNECT_AUTHENTICATORS.regnwl) {
      sink.skip('register-mqtt-regnwl', 'MQTT regnwl registration has not landed (no regnwl entry in CONNECT_AUTHENTICATORS)', { target: 'thingauth', transport: 'tls' });
    } else if (!server.hasMqtt) {
      sink.skip('register-mqtt-regnwl', 'thingauth has no MQTT listener in this build', { target: 'thingauth', transport: 'tls' });
    } else {
      const packets: Buffer[] = [];
      for (let i = 0; i < sizes.regnwlN; i++) {
        const dn = deviceNameAt('nwl', i);
        const password = signPairs('sha256', FREE_PS, registrationSignPairs(dn, FREE_PK, RANDOM));
        // As the C Link SDK 4.x sends it (spec 3.1): dn.pk, securemode=2 even for regnwl.
        packets.push(
          mqttPacket.generate({
            cmd: 'connect',
            protocolId: 'MQTT',
            protocolVersion: 4,
            clean: true,
            keepalive: 60,
            clientId: `${dn}.${FREE_PK}|random=${RANDOM},authType=regnwl,securemode=2,signmethod=hmacsha256|`,
            username: `${dn}&${FREE_PK}`,
            password: Buffer.from(password),
          }),
        );
      }
      note(`register: mqtt regnwl n=${packets.length} c=${sizes.regnwlC}`);
      const mCpu0 = readProcCpuMs(server.pid) ?? NaN;
      const m = await mqttExchanges({
        target: { host: '127.0.0.1', port: server.ports.mqtts, tls: { ca: tls.ca!, servername: 'localhost' } },
        packets,
        concurrency: sizes.regnwlC,
        timeLimitMs: sizes.timeLimitMs,
        judge: (p) => {
          if (p.cmd === 'connack') return p.returnCode === 0 ? undefined : `connack ${p.returnCode}`;
          if (p.cmd === 'publish' && p.topic === '/ext/regnwl') {
            try {
              const body = JSON.parse(p.payload.toString()) as { clientId?: unknown; deviceToken?: unknown };
              return typeof body.clientId === 'string' && typeof body.deviceToken === 'string' ? 'ok' : 'publish without clientId/deviceToken';
            } catch {
              return 'publish not JSON';
            }
          }
          return undefined;
        },
      });
      const mCpuMs = (readProcCpuMs(server.pid) ?? NaN) - mCpu0;
      sink.emit({
        bench: 'register-mqtt-regnwl',
        target: 'thingauth',
        transport: 'tls',
        n: packets.length,
        c: sizes.regnwlC,
        ok: m.ok,
        registrationsPerSec: round(m.perSec, 0),
        p50Ms: round(m.p50Ms, 2),
        p99Ms: round(m.p99Ms, 2),
        failed: m.failed,
        ...(m.failed ? { failures: m.failures } : {}),
        serverCpuUsPerRegistration: m.ok > 0 ? round((mCpuMs * 1000) / m.ok, 0) : null,
        serverCpuPct: round((mCpuMs / m.elapsedMs) * 100, 0),
      });
    }
  } finally {
    await server.stop();
  }
}
