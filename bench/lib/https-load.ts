/** Closed-loop HTTPS POSTs over keep-alive connections (https.Agent keepAlive, one socket per in-flight request). */
import https from 'node:https';
import { performance } from 'node:perf_hooks';
import { LatencyRecorder } from './histogram.js';
import type { ExchangeResult } from './loadgen.js';

export interface HttpsLoadOptions {
  host: string;
  port: number;
  path: string;
  ca: string;
  /** One request body per attempt (form-encoded). */
  bodies: string[];
  concurrency: number;
  timeLimitMs: number;
  /** Decides from the parsed JSON reply whether the request succeeded. */
  ok: (reply: unknown) => boolean;
}

export interface HttpsLoadResult extends ExchangeResult {
  /** TCP+TLS connections the agent opened (keep-alive reuse makes this about C). */
  connectionsOpened: number;
}

export function httpsLoad(opts: HttpsLoadOptions): Promise<HttpsLoadResult> {
  const agent = new https.Agent({ keepAlive: true, maxSockets: opts.concurrency, ca: opts.ca, servername: 'localhost' });
  let connectionsOpened = 0;
  const lat = new LatencyRecorder(opts.bodies.length);
  const res = { attempted: 0, ok: 0, failed: 0, failures: {} as Record<string, number> };
  const fail = (why: string) => {
    res.failed++;
    res.failures[why] = (res.failures[why] ?? 0) + 1;
  };
  return new Promise((resolve) => {
    const t0 = performance.now();
    let next = 0;
    let inFlight = 0;
    let lastDone = t0;
    const launch = () => {
      while (inFlight < opts.concurrency && next < opts.bodies.length && performance.now() - t0 <= opts.timeLimitMs) {
        const body = opts.bodies[next++]!;
        inFlight++;
        res.attempted++;
        const s = performance.now();
        const req = https.request(
          {
            host: opts.host,
            port: opts.port,
            path: opts.path,
            method: 'POST',
            agent,
            headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) },
          },
          (resp) => {
            const chunks: Buffer[] = [];
            resp.on('data', (c: Buffer) => chunks.push(c));
            resp.on('end', () => {
              let parsed: unknown;
              try {
                parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
              } catch {
                parsed = undefined;
              }
              if (resp.statusCode === 200 && opts.ok(parsed)) {
                res.ok++;
                lat.record(performance.now() - s);
              } else {
                const code = parsed && typeof parsed === 'object' && 'code' in parsed ? String((parsed as { code: unknown }).code) : `http ${resp.statusCode}`;
                fail(code);
              }
              done();
            });
          },
        );
        req.on('socket', (sock) => {
          if (!(sock as unknown as { __counted?: boolean }).__counted) {
            (sock as unknown as { __counted?: boolean }).__counted = true;
            connectionsOpened++;
          }
        });
        req.on('error', (e: NodeJS.ErrnoException) => {
          fail(e.code ?? e.message);
          done();
        });
        req.end(body);
      }
      if (inFlight === 0) {
        agent.destroy();
        const elapsedMs = lastDone - t0;
        resolve({ ...res, elapsedMs, perSec: elapsedMs > 0 ? res.ok / (elapsedMs / 1000) : 0, ...lat.summary(), connectionsOpened });
      }
    };
    const done = () => {
      inFlight--;
      lastDone = performance.now();
      launch();
    };
    launch();
  });
}
