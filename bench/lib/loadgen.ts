/**
 * The load generator: raw sockets, prebuilt CONNECT bytes, closed-loop concurrency C.
 * Lean on purpose, because it shares a 2-core machine with the broker it measures: no MQTT
 * client library, a 4-byte CONNACK check on the hot path (the mqtt-packet parser only for
 * anything else), one timer per connection attempt.
 */
import net from 'node:net';
import tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import mqttPacket from 'mqtt-packet';
import { LatencyRecorder } from './histogram.js';
import { DISCONNECT } from './fleet.js';

export interface Target {
  host: string;
  port: number;
  /** TLS: trust this CA (PEM), check the server name. */
  tls?: { ca: string; servername: string };
}

export interface StormOptions {
  target: Target;
  /** One CONNECT per attempt, in order; the run stops after packets.length attempts. */
  packets: Buffer[];
  concurrency: number;
  /** Hard stop: no new attempt starts after this. */
  timeLimitMs: number;
  /** An attempt without CONNACK after this long counts as an error. */
  attemptTimeoutMs?: number;
}

export interface StormResult {
  attempted: number;
  accepted: number;
  /** CONNACK with a non-zero return code. */
  refused: number;
  refusedCodes: Record<string, number>;
  /** Socket errors, timeouts, and connections closed without a CONNACK. */
  errors: number;
  errorKinds: Record<string, number>;
  elapsedMs: number;
  connectsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** True when the time limit cut the run short. */
  timeLimited: boolean;
}

type Outcome = { kind: 'accepted'; ms: number; socket: net.Socket } | { kind: 'refused'; code: number } | { kind: 'error'; what: string };

/**
 * One device: open a socket, send its CONNECT, wait for CONNACK. The caller decides what to
 * do with an accepted socket (close it, or hold it).
 */
export function attemptConnect(target: Target, packet: Buffer, timeoutMs: number, done: (o: Outcome) => void): void {
  const t0 = performance.now();
  let finished = false;
  let buf: Buffer | undefined;
  const socket: net.Socket = target.tls
    ? tls.connect({ host: target.host, port: target.port, ca: target.tls.ca, servername: target.tls.servername })
    : net.connect({ host: target.host, port: target.port });
  const finish = (o: Outcome) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    if (o.kind !== 'accepted') socket.destroy();
    done(o);
  };
  const timer = setTimeout(() => finish({ kind: 'error', what: 'timeout' }), timeoutMs);
  socket.setNoDelay(true);
  socket.once(target.tls ? 'secureConnect' : 'connect', () => socket.write(packet));
  socket.on('data', (chunk: Buffer) => {
    if (finished) return;
    buf = buf ? Buffer.concat([buf, chunk]) : chunk;
    if (buf.length < 4) return;
    // MQTT 3.1.1 CONNACK: 0x20 0x02 <session present> <return code>.
    if (buf[0] === 0x20 && buf[1] === 0x02) {
      const rc = buf[3]!;
      if (rc === 0) finish({ kind: 'accepted', ms: performance.now() - t0, socket });
      else finish({ kind: 'refused', code: rc });
      return;
    }
    finish({ kind: 'error', what: `unexpected packet ${describePacket(buf)}` });
  });
  socket.on('error', (e: NodeJS.ErrnoException) => finish({ kind: 'error', what: e.code ?? e.message }));
  socket.on('close', () => finish({ kind: 'error', what: 'closed before CONNACK' }));
}

function describePacket(buf: Buffer): string {
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  let cmd = `first byte 0x${buf[0]!.toString(16)}`;
  parser.on('packet', (p) => (cmd = p.cmd));
  parser.on('error', () => undefined);
  parser.parse(buf);
  return cmd;
}

/** Drops a socket after CONNACK the way a well-behaved client does: DISCONNECT, then FIN. */
function closeGracefully(socket: net.Socket): void {
  socket.on('error', () => undefined);
  socket.end(DISCONNECT);
  // Do not wait for the server's FIN: the next attempt starts now.
  setTimeout(() => socket.destroy(), 2_000).unref();
}

/** The connect storm: packets.length attempts, at most C in flight, each closed after CONNACK. */
export function connectStorm(opts: StormOptions): Promise<StormResult> {
  const { target, packets, concurrency, timeLimitMs } = opts;
  const attemptTimeoutMs = opts.attemptTimeoutMs ?? 10_000;
  const lat = new LatencyRecorder(packets.length);
  const res = { attempted: 0, accepted: 0, refused: 0, errors: 0, refusedCodes: {} as Record<string, number>, errorKinds: {} as Record<string, number> };
  return new Promise((resolve) => {
    const t0 = performance.now();
    let next = 0;
    let inFlight = 0;
    let timeLimited = false;
    let lastDone = t0;
    const launch = () => {
      while (inFlight < concurrency && next < packets.length) {
        if (performance.now() - t0 > timeLimitMs) {
          timeLimited = true;
          break;
        }
        const packet = packets[next++]!;
        inFlight++;
        res.attempted++;
        attemptConnect(target, packet, attemptTimeoutMs, onDone);
      }
      if (inFlight === 0) {
        const elapsedMs = lastDone - t0;
        const s = lat.summary();
        resolve({
          ...res,
          elapsedMs,
          connectsPerSec: elapsedMs > 0 ? res.accepted / (elapsedMs / 1000) : 0,
          ...s,
          timeLimited,
        });
      }
    };
    const onDone = (o: Outcome) => {
      inFlight--;
      lastDone = performance.now();
      if (o.kind === 'accepted') {
        res.accepted++;
        lat.record(o.ms);
        closeGracefully(o.socket);
      } else if (o.kind === 'refused') {
        res.refused++;
        res.refusedCodes[o.code] = (res.refusedCodes[o.code] ?? 0) + 1;
      } else {
        res.errors++;
        res.errorKinds[o.what] = (res.errorKinds[o.what] ?? 0) + 1;
      }
      launch();
    };
    launch();
  });
}

export interface HeldConnections {
  accepted: number;
  refused: number;
  errors: number;
  errorKinds: Record<string, number>;
  elapsedMs: number;
  /** Sockets still open now (a server may drop some later). */
  open(): number;
  close(): Promise<void>;
}

/** Opens packets.length connections (C at a time) and keeps every accepted one open. */
export function holdConnections(opts: StormOptions): Promise<HeldConnections> {
  const { target, packets, concurrency, timeLimitMs } = opts;
  const attemptTimeoutMs = opts.attemptTimeoutMs ?? 10_000;
  const held = new Set<net.Socket>();
  const res = { accepted: 0, refused: 0, errors: 0, errorKinds: {} as Record<string, number> };
  return new Promise((resolve) => {
    const t0 = performance.now();
    let next = 0;
    let inFlight = 0;
    const launch = () => {
      while (inFlight < concurrency && next < packets.length && performance.now() - t0 <= timeLimitMs) {
        inFlight++;
        attemptConnect(target, packets[next++]!, attemptTimeoutMs, onDone);
      }
      if (inFlight === 0) {
        resolve({
          ...res,
          elapsedMs: performance.now() - t0,
          open: () => held.size,
          close: async () => {
            const all = [...held];
            held.clear();
            await Promise.all(
              all.map(
                (s) =>
                  new Promise<void>((r) => {
                    s.once('close', () => r());
                    s.end(DISCONNECT);
                    setTimeout(() => s.destroy(), 2_000).unref();
                  }),
              ),
            );
          },
        });
      }
    };
    const onDone = (o: Outcome) => {
      inFlight--;
      if (o.kind === 'accepted') {
        res.accepted++;
        const s = o.socket;
        held.add(s);
        s.removeAllListeners('data');
        s.on('data', () => undefined);
        s.on('error', () => undefined);
        s.on('close', () => held.delete(s));
      } else if (o.kind === 'refused') res.refused++;
      else {
        res.errors++;
        res.errorKinds[o.what] = (res.errorKinds[o.what] ?? 0) + 1;
      }
      launch();
    };
    launch();
  });
}

export interface ExchangeOptions {
  target: Target;
  packets: Buffer[];
  concurrency: number;
  timeLimitMs: number;
  attemptTimeoutMs?: number;
  /**
   * Called with every packet the server sends on one connection (parsed by mqtt-packet):
   * 'ok' ends the attempt as a success, a string ends it as that failure, undefined waits.
   */
  judge: (p: mqttPacket.Packet) => 'ok' | string | undefined;
}

export interface ExchangeResult {
  attempted: number;
  ok: number;
  failed: number;
  failures: Record<string, number>;
  elapsedMs: number;
  perSec: number;
  p50Ms: number;
  p99Ms: number;
}

/** Closed-loop MQTT exchanges (e.g. regnwl: CONNECT -> CONNACK -> server PUBLISH), each on a new connection. */
export function mqttExchanges(opts: ExchangeOptions): Promise<ExchangeResult> {
  const timeoutMs = opts.attemptTimeoutMs ?? 10_000;
  const lat = new LatencyRecorder(opts.packets.length);
  const res = { attempted: 0, ok: 0, failed: 0, failures: {} as Record<string, number> };
  return new Promise((resolve) => {
    const t0 = performance.now();
    let next = 0;
    let inFlight = 0;
    let lastDone = t0;
    const one = (packet: Buffer) => {
      const s = performance.now();
      let finished = false;
      const { target } = opts;
      const socket: net.Socket = target.tls
        ? tls.connect({ host: target.host, port: target.port, ca: target.tls.ca, servername: target.tls.servername })
        : net.connect({ host: target.host, port: target.port });
      const parser = mqttPacket.parser({ protocolVersion: 4 });
      const finish = (outcome: 'ok' | string) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        if (outcome === 'ok') {
          res.ok++;
          lat.record(performance.now() - s);
          socket.on('error', () => undefined);
          socket.end(DISCONNECT);
          setTimeout(() => socket.destroy(), 2_000).unref();
        } else {
          res.failed++;
          res.failures[outcome] = (res.failures[outcome] ?? 0) + 1;
          socket.destroy();
        }
        inFlight--;
        lastDone = performance.now();
        launch();
      };
      const timer = setTimeout(() => finish('timeout'), timeoutMs);
      parser.on('packet', (p) => {
        const verdict = opts.judge(p);
        if (verdict !== undefined) finish(verdict);
      });
      parser.on('error', (e) => finish(`parse error: ${e.message}`));
      socket.setNoDelay(true);
      socket.once(target.tls ? 'secureConnect' : 'connect', () => socket.write(packet));
      socket.on('data', (d: Buffer) => parser.parse(d));
      socket.on('error', (e: NodeJS.ErrnoException) => finish(e.code ?? e.message));
      socket.on('close', () => finish('closed early'));
    };
    const launch = () => {
      while (inFlight < opts.concurrency && next < opts.packets.length && performance.now() - t0 <= opts.timeLimitMs) {
        inFlight++;
        res.attempted++;
        one(opts.packets[next++]!);
      }
      if (inFlight === 0) {
        const elapsedMs = lastDone - t0;
        resolve({ ...res, elapsedMs, perSec: elapsedMs > 0 ? res.ok / (elapsedMs / 1000) : 0, ...lat.summary() });
      }
    };
    launch();
  });
}
