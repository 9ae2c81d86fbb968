/**
 * First measurements of the MQTT connection core (issue 15) against a bare aedes, both as a
 * separate process on a free port with allow-all policies and plain TCP:
 *  - server CPU per accepted CONNECT (connect storm, each connection closed after CONNACK);
 *  - RSS per held connection (N connections held open, RSS delta over the idle process / N).
 * Not a benchmark suite: one run each, numbers for docs/conformance.md.
 *   node dist/bench/core-compare.js [--connections 5000] [--concurrency 50]
 *   node dist/bench/core-compare.js --serve-aedes --port <n>   (the bare aedes child)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import mqttPacket from 'mqtt-packet';
import { connectStorm, holdConnections } from './lib/loadgen.js';
import { readProcCpuMs, readProcMemory } from './lib/proc.js';
import { freePort, waitForPort } from './lib/ports.js';

function arg(name: string, def?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
}

if (process.argv.includes('--serve-aedes')) {
  const { Aedes } = await import('aedes');
  const broker = await Aedes.createBroker();
  const server = net.createServer((s) => broker.handle(s));
  server.listen(Number(arg('port')), '127.0.0.1', () => console.log('listening'));
  process.on('SIGTERM', () => process.exit(0));
} else {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const N = Number(arg('connections', '5000'));
  const C = Number(arg('concurrency', '50'));
  const packets = (prefix: string) =>
    Array.from({ length: N }, (_, i) =>
      mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 600, clientId: `${prefix}-${i}` } as mqttPacket.IConnectPacket),
    );
  const settle = () => new Promise((r) => setTimeout(r, 1500));

  async function measure(name: string, start: (port: number) => ChildProcess) {
    const port = await freePort();
    const child = start(port);
    try {
      await waitForPort(port);
      await settle();
      const target = { host: '127.0.0.1', port };
      // Memory first, on the fresh process: RSS idle, then with N connections held.
      const idle = readProcMemory(child.pid!)!.rssKiB;
      const held = await holdConnections({ target, packets: packets('held'), concurrency: C, timeLimitMs: 120_000 });
      await settle();
      const loaded = readProcMemory(child.pid!)!.rssKiB;
      const open = held.open();
      await held.close();
      await settle();
      // Then CPU: a warm-up storm (JIT), then the measured storm.
      await connectStorm({ target, packets: packets('warm').slice(0, 500), concurrency: C, timeLimitMs: 60_000 });
      await settle();
      const cpu0 = readProcCpuMs(child.pid!)!;
      const storm = await connectStorm({ target, packets: packets('storm'), concurrency: C, timeLimitMs: 120_000 });
      const cpu1 = readProcCpuMs(child.pid!)!;
      return {
        name,
        accepted: storm.accepted,
        errors: storm.errors + storm.refused,
        cpuUsPerConnect: ((cpu1 - cpu0) * 1000) / Math.max(1, storm.accepted),
        connectsPerSec: Math.round(storm.connectsPerSec),
        held: open,
        idleRssKiB: idle,
        loadedRssKiB: loaded,
        kibPerConnection: (loaded - idle) / Math.max(1, open),
      };
    } finally {
      child.kill('SIGTERM');
    }
  }

  const results = [];
  results.push(
    await measure('core (open-broker)', (port) =>
      spawn(process.execPath, [path.join(here, '../test/conformance/open-broker.js'), '--port', String(port)], { stdio: 'ignore' }),
    ),
  );
  if (arg('only') !== 'core') results.push(await measure('bare aedes', (port) => spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve-aedes', '--port', String(port)], { stdio: 'ignore' })));
  console.log(JSON.stringify({ date: new Date().toISOString(), node: process.version, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, connections: N, concurrency: C, results }, null, 2));
}
