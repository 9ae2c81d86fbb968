/**
 * Prometheus metrics (prom-client) in a registry of this server's own, so several servers in
 * one process (the tests) never share counters. Served by GET /metrics on the management
 * listener (http/management/routes/metrics.ts).
 *
 * Where each is counted:
 * - logins: at the single MQTT CONNECT decision point (mqtt/broker.ts authenticate) and the
 *   other login decision points (HTTPS /auth, sub-device login), by result and reason;
 * - registrations: in the registration paths, by method and result;
 * - throttled sources: by the brute-force / flood limiter (engineer F2);
 * - store latency: every Store call the services make (timeStore below);
 * - connected devices: read from the broker's session registry at scrape time.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Store } from '../store/store.js';

/** What the gauge needs from the broker's SessionRegistry (kept structural: services do not import mqtt/). */
export interface SessionSource {
  all(): Iterable<{ identity: { kind: string }; actingFor: { size: number } }>;
}

export type LoginResult = 'accepted' | 'refused';

/** Refusal labels come from the refusal table (core/refusals.ts), never from reason text. */

export class Metrics {
  readonly registry = new Registry();
  private sessions: SessionSource | undefined;

  readonly logins = new Counter({
    name: 'thingauth_logins_total',
    help: 'Device and application logins by channel, result and refusal reason',
    labelNames: ['channel', 'result', 'reason'] as const,
    registers: [this.registry],
  });

  readonly registrations = new Counter({
    name: 'thingauth_registrations_total',
    help: 'Dynamic and sub-device registrations by method and result',
    labelNames: ['method', 'result'] as const,
    registers: [this.registry],
  });

  readonly throttledSources = new Counter({
    name: 'thingauth_throttled_sources_total',
    help: 'Times a source address or device was refused for a cool-down after repeated failures or floods',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly storeLatency = new Histogram({
    name: 'thingauth_store_operation_seconds',
    help: 'Latency of store operations made by the services',
    labelNames: ['operation'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });

  readonly storeErrors = new Counter({
    name: 'thingauth_store_errors_total',
    help: 'Store operations that failed (including refusals such as a taken DeviceName)',
    labelNames: ['operation'] as const,
    registers: [this.registry],
  });

  /** Device listeners behind a load balancer (THINGAUTH_PROXY_PROTOCOL_FROM): net/proxy-protocol-listener.ts. */
  readonly proxyProtocolHeaders = new Counter({
    name: 'thingauth_proxy_protocol_headers_total',
    help: 'PROXY protocol v2 headers accepted from a trusted address, by listener and command (proxy, local)',
    labelNames: ['listener', 'command'] as const,
    registers: [this.registry],
  });

  readonly proxyProtocolRefused = new Counter({
    name: 'thingauth_proxy_protocol_refused_total',
    help: 'Connections closed by the PROXY protocol reader, by listener and reason (bad header, timeout, header from an untrusted address, ...)',
    labelNames: ['listener', 'reason'] as const,
    registers: [this.registry],
  });

  constructor() {
    const self = this;
    new Gauge({
      name: 'thingauth_connected_devices',
      help: 'Live MQTT sessions: directly connected devices, sub-devices logged in through a gateway, applications',
      labelNames: ['kind'] as const,
      registers: [this.registry],
      collect() {
        const counts: Record<string, number> = { device: 0, sub_device: 0, application: 0, provisioning: 0 };
        for (const s of self.sessions?.all() ?? []) {
          counts[s.identity.kind] = (counts[s.identity.kind] ?? 0) + 1;
          counts.sub_device! += s.actingFor.size;
        }
        for (const [kind, n] of Object.entries(counts)) this.set({ kind }, n);
      },
    });
  }

  /** Window of thingauth_device_certificates_expiring (THINGAUTH_CERT_EXPIRY_WARN_DAYS). */
  certExpiryDays = 30;
  private certificatesExpiring: (() => Promise<number>) | undefined;

  /** The X.509 service counts the certificates expiring within certExpiryDays (at scrape time). */
  useCertificateSource(count: () => Promise<number>): void {
    this.certificatesExpiring = count;
    const self = this;
    new Gauge({
      name: 'thingauth_device_certificates_expiring',
      help: 'Device certificates (not revoked) whose validity ends within THINGAUTH_CERT_EXPIRY_WARN_DAYS days, expired ones included',
      labelNames: ['days'] as const,
      registers: [this.registry],
      async collect() {
        if (!self.certificatesExpiring) return;
        try {
          this.set({ days: String(self.certExpiryDays) }, await self.certificatesExpiring());
        } catch {
          // The store cannot answer right now: the scrape shows no sample rather than failing.
        }
      },
    });
  }

  /** A cluster node reports whether its Redis connections are up and whether it drains (issue 14). */
  useClusterSource(status: () => { redis: 'up' | 'down' | 'none'; draining: boolean }): void {
    new Gauge({
      name: 'thingauth_cluster_redis_up',
      help: "1 while this node's cluster connections to Redis (routing, sessions, events) are up, 0 while they are not",
      registers: [this.registry],
      collect() {
        this.set(status().redis === 'up' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'thingauth_node_draining',
      help: '1 while this node is draining (thingauth node drain)',
      registers: [this.registry],
      collect() {
        this.set(status().draining ? 1 : 0);
      },
    });
  }

  /** The broker registers its session registry here when it starts. */
  useSessionSource(source: SessionSource | undefined): void {
    this.sessions = source;
  }

  login(channel: string, result: LoginResult, reason: string): void {
    this.logins.inc({ channel, result, reason: result === 'accepted' ? '' : reason });
    this.recentLogins.count(result);
  }

  /** Logins of the last minute, by result (the console's live stats). */
  readonly recentLogins = new RecentCounts();

  /** Devices online now: direct device sessions plus sub-devices logged in through gateways. */
  onlineDevices(): number {
    let n = 0;
    for (const s of this.sessions?.all() ?? []) {
      if (s.identity.kind === 'device') n++;
      n += s.actingFor.size;
    }
    return n;
  }

  registration(method: string, result: string): void {
    this.registrations.inc({ method, result });
  }

  /**
   * The store with every async call timed. Services get this one; what they measure is what
   * a login or registration waits for.
   */
  timeStore(store: Store): Store {
    const metrics = this;
    const wrapped = new Map<PropertyKey, unknown>();
    return new Proxy(store, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver);
        if (typeof value !== 'function' || typeof prop !== 'string' || prop === 'constructor') return value;
        let fn = wrapped.get(prop);
        if (!fn) {
          const hist = metrics.storeLatency;
          const errors = metrics.storeErrors;
          fn = function timed(this: unknown, ...args: unknown[]) {
            const end = hist.startTimer({ operation: prop });
            let out: unknown;
            try {
              out = (value as (...a: unknown[]) => unknown).apply(target, args);
            } catch (e) {
              end();
              errors.inc({ operation: prop });
              throw e;
            }
            if (out instanceof Promise) {
              return out.then(
                (v) => (end(), v),
                (e) => {
                  end();
                  errors.inc({ operation: prop });
                  throw e;
                },
              );
            }
            end();
            return out;
          };
          wrapped.set(prop, fn);
        }
        return fn;
      },
    });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/**
 * Counts per result over the last minute in one-second slots (a ring of 60): O(1) to count,
 * O(60) to read, whatever the login rate.
 */
export class RecentCounts {
  private readonly slots = new Map<LoginResult, Float64Array>();
  private readonly stamps = new Float64Array(60);

  constructor(private readonly clock: () => number = () => Date.now()) {}

  count(result: LoginResult): void {
    const second = Math.floor(this.clock() / 1000);
    const i = second % 60;
    if (this.stamps[i] !== second) {
      this.stamps[i] = second;
      for (const ring of this.slots.values()) ring[i] = 0;
    }
    let ring = this.slots.get(result);
    if (!ring) this.slots.set(result, (ring = new Float64Array(60)));
    ring[i]! += 1;
  }

  /** How many of this result in the last 60 seconds. */
  lastMinute(result: LoginResult): number {
    const ring = this.slots.get(result);
    if (!ring) return 0;
    const now = Math.floor(this.clock() / 1000);
    let n = 0;
    for (let i = 0; i < 60; i++) if (now - this.stamps[i]! < 60) n += ring[i]!;
    return n;
  }
}
