/**
 * Caps on MQTT connections that are open but not logged in yet (issue 11 item 3): from the
 * socket's accept (before any TLS handshake, WebSocket upgrade or byte of MQTT) until its
 * CONNECT is accepted (CONNACK 0) or it closes. Without a cap one source could hold any
 * number of such sockets, each with its timers, TLS state and buffers.
 * - per source (login-throttle.ts's sourceKey: IPv4 address, IPv6 /64): `perSource`;
 * - over all listeners of the server: `total`.
 * 0 switches a cap off. Over a cap the new socket is destroyed at once. Logged-in
 * connections do not count, so a NAT with many devices is limited only in how many of them
 * can be mid-login at the same moment.
 */
import type net from 'node:net';
import type { AppContext } from '../context.js';
import { sourceKey } from '../services/login-throttle.js';

export interface PendingLimits {
  perSource: number;
  total: number;
}

export type PendingRefusal = 'per_source' | 'total';

export class PendingConnections {
  private readonly bySource = new Map<string, number>();
  /** Socket -> its source key ('' when unknown); present while the socket counts. */
  private readonly held = new WeakMap<object, string>();
  private count = 0;

  constructor(
    private readonly limits: PendingLimits,
    private readonly onRefused?: (refusal: PendingRefusal, source: string) => void,
  ) {}

  /** Counts a newly accepted socket; false (and the socket destroyed) when over a cap. */
  admit(socket: net.Socket): boolean {
    const source = sourceKey(socket.remoteAddress) ?? '';
    const n = source ? (this.bySource.get(source) ?? 0) : 0;
    const refusal: PendingRefusal | undefined =
      this.limits.total > 0 && this.count >= this.limits.total ? 'total' : this.limits.perSource > 0 && source && n >= this.limits.perSource ? 'per_source' : undefined;
    if (refusal) {
      socket.destroy();
      this.onRefused?.(refusal, source);
      return false;
    }
    this.count++;
    if (source) this.bySource.set(source, n + 1);
    this.held.set(socket, source);
    socket.once('close', () => this.release(socket));
    return true;
  }

  /** The socket logged in or closed: it no longer counts (idempotent). */
  release(socket: object): void {
    const source = this.held.get(socket);
    if (source === undefined) return;
    this.held.delete(socket);
    this.count--;
    if (!source) return;
    const n = (this.bySource.get(source) ?? 1) - 1;
    if (n <= 0) this.bySource.delete(source);
    else this.bySource.set(source, n);
  }

  /** Pending connections in total, or from one address's source. */
  size(remoteAddress?: string): number {
    if (remoteAddress === undefined) return this.count;
    const source = sourceKey(remoteAddress);
    return source ? (this.bySource.get(source) ?? 0) : 0;
  }
}

const perContext = new WeakMap<AppContext, PendingConnections>();

/** The one gate of this server (shared by the MQTT, MQTTS, WS and WSS listeners). */
export function pendingConnectionsOf(ctx: AppContext): PendingConnections {
  let gate = perContext.get(ctx);
  if (!gate) {
    const logger = ctx.logger.child({ component: 'mqtt' });
    gate = new PendingConnections({ perSource: ctx.config.mqttPendingPerSource, total: ctx.config.mqttPendingTotal }, (refusal, source) =>
      // debug: anyone can open sockets; a line per refusal would let them fill the log.
      logger.debug({ event: 'mqtt.pending.refused', refusal, source }, 'too many connections not logged in yet; socket closed'),
    );
    perContext.set(ctx, gate);
  }
  return gate;
}

/**
 * The accepted socket a connection handed to aedes runs on, for release(): for WebSocket the
 * HTTP request's socket, for TLS (MQTTS, TLS on the MQTT port, WSS) the TLS socket's
 * transport socket (`_parent`, set by Node for server-side TLS sockets), else the connection.
 */
export function transportSocketOf(conn: object, req?: { socket: object }): object {
  const s = req?.socket ?? conn;
  return (s as { _parent?: object | null })._parent ?? s;
}
