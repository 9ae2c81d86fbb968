/**
 * Gateway: one gateway (C Link SDK style CONNECT, `_ss=1`) logs in N sub-devices that are in
 * its topology, with /ext/session/{pk}/{dn}/combine/batch_login in batches of 50 (spec 4.5),
 * one batch at a time as the SDKs do (send, wait for batch_login_reply). Reports the seconds
 * from the first request to the last reply.
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { signPairs } from '../../src/core/sign.js';
import { FigureSink, note } from '../lib/emit.js';
import { C_SDK_TIMESTAMP, connectPacket, deviceCredentials, makeFleet } from '../lib/fleet.js';
import { LatencyRecorder, round } from '../lib/histogram.js';
import { RawMqttClient } from '../lib/raw-mqtt.js';
import { benchProduct, openBenchStore, provision, startThingAuthProcess } from '../lib/thingauth.js';

export interface GatewaySizes {
  subDevices: number;
  batch: number;
  timeLimitMs: number;
}

const GW_PK = 'a1BenchGw';
const SUB_PK = 'a1BenchSub';

export async function runGateway(sink: FigureSink, sizes: GatewaySizes, workDir: string): Promise<void> {
  const dataDir = path.join(workDir, 'thingauth-gateway');
  const [gw] = makeFleet(GW_PK, 1, 'bench-gw-seed', 'gw');
  const subs = makeFleet(SUB_PK, sizes.subDevices, 'bench-gw-seed', 'sub');
  await provision(dataDir, [
    { product: benchProduct(GW_PK, 'benchGwSecret0001', { nodeType: 'GATEWAY' }), devices: [gw!] },
    { product: benchProduct(SUB_PK, 'benchSubSecret001', { nodeType: 'SUB_DEVICE' }), devices: subs },
  ]);
  const store = await openBenchStore(dataDir);
  try {
    for (let i = 0; i < subs.length; i += 500) {
      await store.attachSubDevices(gw!.iotId, subs.slice(i, i + 500).map((s) => s.iotId), Math.max(sizes.subDevices, 1_500));
    }
  } finally {
    await store.close();
  }
  const server = await startThingAuthProcess({ dataDir, env: { THINGAUTH_SUB_DEVICE_LIMIT: String(Math.max(sizes.subDevices, 1_500)) } });
  let client: RawMqttClient | undefined;
  try {
    if (!server.hasMqtt) {
      sink.skip('gateway-batch-login', 'thingauth has no MQTT listener in this build', { target: 'thingauth', n: sizes.subDevices, batch: sizes.batch });
      return;
    }
    client = await RawMqttClient.connect({ host: '127.0.0.1', port: server.ports.mqtt }, connectPacket(deviceCredentials(gw!, 3), 300));
    const requestTopic = `/ext/session/${GW_PK}/${gw!.deviceName}/combine/batch_login`;
    const replyTopic = `${requestTopic}_reply`;
    const pending = new Map<string, (reply: { code?: number; message?: string }) => void>();
    client.onPublish((p) => {
      if (p.topic !== replyTopic) return;
      try {
        const body = JSON.parse(p.payload.toString()) as { id?: string; code?: number; message?: string };
        const cb = pending.get(String(body.id));
        if (cb) {
          pending.delete(String(body.id));
          cb(body);
        }
      } catch {
        /* not ours */
      }
    });
    const batches: string[] = [];
    for (let i = 0, id = 1; i < subs.length; i += sizes.batch, id++) {
      const deviceList = subs.slice(i, i + sizes.batch).map((s) => {
        const clientId = `${s.productKey}.${s.deviceName}`;
        const sign = signPairs('sha256', s.deviceSecret, { clientId, deviceName: s.deviceName, productKey: s.productKey, timestamp: C_SDK_TIMESTAMP });
        return { productKey: s.productKey, deviceName: s.deviceName, clientId, timestamp: C_SDK_TIMESTAMP, cleanSession: 'false', sign };
      });
      batches.push(JSON.stringify({ id: String(id), version: '1.0', params: { signMethod: 'hmacSha256', deviceList }, method: 'combine.batch_login' }));
    }
    note(`gateway: ${subs.length} sub-devices in ${batches.length} batches`);
    const lat = new LatencyRecorder(batches.length);
    let failed = 0;
    const failures: Record<string, number> = {};
    const t0 = performance.now();
    for (let b = 0; b < batches.length; b++) {
      if (performance.now() - t0 > sizes.timeLimitMs) break;
      const s = performance.now();
      const reply = await new Promise<{ code?: number; message?: string }>((resolve) => {
        const timer = setTimeout(() => {
          pending.delete(String(b + 1));
          resolve({ code: -1, message: 'no reply within 10 s' });
        }, 10_000);
        pending.set(String(b + 1), (r) => {
          clearTimeout(timer);
          resolve(r);
        });
        client!.publish(requestTopic, batches[b]!);
      });
      lat.record(performance.now() - s);
      if (reply.code !== 200) {
        failed++;
        const k = `${reply.code}: ${String(reply.message).slice(0, 80)}`;
        failures[k] = (failures[k] ?? 0) + 1;
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    sink.emit({
      bench: 'gateway-batch-login',
      target: 'thingauth',
      transport: 'tcp',
      n: subs.length,
      batch: sizes.batch,
      batches: lat.count,
      seconds: round(seconds, 3),
      subDevicesPerSec: round(subs.length / seconds, 0),
      p50BatchMs: round(lat.summary().p50Ms, 2),
      p99BatchMs: round(lat.summary().p99Ms, 2),
      failed,
      ...(failed ? { failures } : {}),
    });
  } finally {
    await client?.close().catch(() => undefined);
    await server.stop();
  }
}
