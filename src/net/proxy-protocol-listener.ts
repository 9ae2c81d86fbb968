/**
 * PROXY protocol v2 on a listener (THINGAUTH_PROXY_PROTOCOL_FROM). Installed on a server before
 * it listens, it stands between the accept and the server's own 'connection' handlers (TLS,
 * HTTP, the MQTT port's TLS detection, the per-source caps), so they run as before, only later:
 *
 * - a connection from a trusted address MUST start with a v2 header (proxy-protocol.ts). The
 *   header is read off (bounded in size and time), the client's address from it becomes the
 *   socket's remoteAddress/remotePort/remoteFamily, and the header is kept for
 *   proxiedFactsOf() (the SSL TLV: the client reached the balancer over TLS). A LOCAL header
 *   (the balancer's health check) keeps the socket's own address.
 * - a connection from anywhere else is handed over untouched, unless its first bytes are a
 *   PROXY header (v2 signature or v1 "PROXY "): refused. The wait for those first bytes is
 *   bounded like the header's and capped per source address.
 *
 * Whatever is refused is destroyed and counted (thingauth_proxy_protocol_refused_total); the
 * listener serves on. Because the header precedes everything, it is read before a TLS
 * handshake: TLS passthrough and the MQTT port's TLS detection see the client's first byte.
 *
 * How the hand-over works: the server's emit('connection') is wrapped. After the header the
 * socket is paused and the client's bytes that came with it are unshifted; a TLS server reads
 * them from the paused socket when it wraps it, any other server gets the socket resumed so
 * its 'data' listeners (HTTP parser, MQTT first-byte peek) see them.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { AppContext } from '../context.js';
import { sourceKey } from '../services/login-throttle.js';
import { mayBeProxyHeader, parseProxyV2, startsWithProxyHeader, type ProxyHeader, type ProxyRefusal } from './proxy-protocol.js';
import { TrustedSources } from './trusted-sources.js';

export type ProxyListenerRefusal =
  | ProxyRefusal
  /** A trusted peer sent nothing complete within the timeout; an untrusted one nothing at all. */
  | 'timeout'
  /** A trusted peer closed before its header was complete. */
  | 'truncated'
  /** A PROXY header from an address that is not trusted. */
  | 'untrusted'
  /** Too many sockets from one untrusted source waiting for their first bytes. */
  | 'waiting_per_source';

export interface ProxiedFacts {
  header: ProxyHeader;
  /** The balancer's own address (the socket's real peer). */
  via: string;
}

export interface ProxyProtocolOptions {
  trusted: TrustedSources;
  timeoutMs: number;
  /** Sockets one untrusted source may have waiting for their first bytes; 0 = no cap. */
  waitingPerSource: number;
  /** The listener's name, for the counters (known once it is bound). */
  listener: () => string;
  onHeader?(listener: string, header: ProxyHeader): void;
  onRefused?(listener: string, reason: ProxyListenerRefusal, remote: string | undefined): void;
}

const facts = new WeakMap<object, ProxiedFacts>();

/**
 * What a trusted balancer said about the connection on `socket`: the accepted socket, or a TLS
 * socket over it (server side, `_parent`). Undefined for a connection without a header.
 */
export function proxiedFactsOf(socket: object): ProxiedFacts | undefined {
  return facts.get(socket) ?? facts.get((socket as { _parent?: object | null })._parent ?? socket);
}

function setPeer(socket: net.Socket, address: string, port: number, family: string): void {
  for (const [key, value] of [['remoteAddress', address], ['remotePort', port], ['remoteFamily', family]] as const) {
    Object.defineProperty(socket, key, { value, configurable: true, enumerable: true });
  }
}

export function acceptProxyProtocol(server: net.Server, opts: ProxyProtocolOptions): void {
  const isTls = server instanceof tls.Server;
  const waiting = new Map<string, number>();
  /** Sockets whose header (or first bytes) has not come yet: closing the server ends them. */
  const unread = new Set<net.Socket>();
  let closing = false;
  const emit = server.emit as (this: net.Server, event: string | symbol, ...args: unknown[]) => boolean;
  const handOver = (socket: net.Socket) => {
    emit.call(server, 'connection', socket);
    // A TLS server took the buffered bytes when it wrapped the socket; anyone else reads events.
    if (!isTls && !socket.destroyed) socket.resume();
  };

  const take = (socket: net.Socket) => {
    const remote = socket.remoteAddress;
    if (remote === undefined) {
      socket.destroy(); // already gone
      return;
    }
    socket.on('error', () => socket.destroy());
    const trusted = opts.trusted.has(remote);
    const source = trusted ? undefined : sourceKey(remote);
    const refuse = (reason: ProxyListenerRefusal) => {
      finish();
      socket.destroy();
      opts.onRefused?.(opts.listener(), reason, remote);
    };
    if (source !== undefined) {
      const n = waiting.get(source) ?? 0;
      if (opts.waitingPerSource > 0 && n >= opts.waitingPerSource) {
        socket.destroy();
        opts.onRefused?.(opts.listener(), 'waiting_per_source', remote);
        return;
      }
      waiting.set(source, n + 1);
    }
    let buf: Buffer = Buffer.alloc(0);
    let done = false;
    unread.add(socket);
    const timer = setTimeout(() => refuse('timeout'), opts.timeoutMs);
    timer.unref();
    const finish = () => {
      if (done) return;
      done = true;
      unread.delete(socket);
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      if (source !== undefined) {
        const left = (waiting.get(source) ?? 1) - 1;
        if (left <= 0) waiting.delete(source);
        else waiting.set(source, left);
      }
    };
    const pass = (rest: Buffer, header?: ProxyHeader) => {
      finish();
      socket.pause();
      if (rest.length > 0) socket.unshift(rest);
      if (header) {
        facts.set(socket, { header, via: remote });
        if (header.source) setPeer(socket, header.source.address, header.source.port, header.source.family);
        opts.onHeader?.(opts.listener(), header);
      }
      handOver(socket);
    };
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (trusted) {
        const r = parseProxyV2(buf);
        if (r.kind === 'refused') refuse(r.reason);
        else if (r.kind === 'header') pass(buf.subarray(r.bytes), r.header);
        return;
      }
      if (startsWithProxyHeader(buf)) refuse('untrusted');
      else if (!mayBeProxyHeader(buf)) pass(buf);
      // else: the bytes so far may start a PROXY header; wait for more (bounded by the timer).
    };
    const onEnd = () => {
      if (closing) {
        finish(); // ended by the server's close, not the peer's doing
        socket.destroy();
      } else if (trusted) refuse('truncated');
      else if (buf.length > 0) refuse('untrusted'); // the start of a PROXY header, then gone
      else {
        finish();
        socket.destroy();
      }
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
  };

  server.emit = function (this: net.Server, event: string | symbol, ...args: unknown[]): boolean {
    if (event !== 'connection') return emit.call(this, event, ...args);
    take(args[0] as net.Socket);
    return true;
  } as typeof server.emit;

  // server.close() waits for every accepted socket: those still owing their first bytes end
  // now rather than at their timeout (the listeners end their handed-over sockets themselves).
  const close = server.close;
  server.close = function (this: net.Server, cb?: (err?: Error) => void): net.Server {
    closing = true;
    for (const s of unread) s.destroy();
    return close.call(this, cb);
  } as typeof server.close;

  // A TLS server's own socket reports the balancer's address (Node asks the TCP handle): the
  // TLS socket gets the client's too, before the server's handlers (HTTPS req.ip, MQTTS) see it.
  if (isTls) {
    server.prependListener('secureConnection', (t: tls.TLSSocket) => {
      const f = proxiedFactsOf(t);
      if (f?.header.source) setPeer(t, f.header.source.address, f.header.source.port, f.header.source.family);
    });
  }
}

/** THINGAUTH_PROXY_PROTOCOL_FROM applied to one of this server's device listeners (no-op when unset). */
export function proxyProtocolFor(ctx: AppContext, server: net.Server, listener: () => string, waitingPerSource: number): void {
  if (ctx.config.proxyProtocolFrom.length === 0) return;
  const { sources } = TrustedSources.parse(ctx.config.proxyProtocolFrom); // validated in config.ts
  const metrics = ctx.services.metrics;
  const logger = ctx.logger.child({ component: 'proxy-protocol' });
  acceptProxyProtocol(server, {
    trusted: sources,
    timeoutMs: ctx.config.proxyProtocolTimeoutSeconds * 1000,
    waitingPerSource,
    listener,
    onHeader: (name, header) => metrics.proxyProtocolHeaders.inc({ listener: name, command: header.command }),
    onRefused: (name, reason, remote) => {
      metrics.proxyProtocolRefused.inc({ listener: name, reason });
      // debug: anyone can open sockets; a line per refusal would let them fill the log.
      logger.debug({ event: 'proxy-protocol.refused', listener: name, reason, remote }, 'connection refused: PROXY protocol');
    },
  });
}
