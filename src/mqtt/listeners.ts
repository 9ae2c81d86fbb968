/**
 * The MQTT listeners, each a starter for main.ts's LISTENERS:
 * - `startMqttTcp`  (mqttPort): plain MQTT, and TLS on the same port like the cloud's 1883
 *   (spec 0.4): the first byte 0x16 is a TLS handshake record, anything else is MQTT.
 * - `startMqtts`    (mqttsPort): MQTT over TLS.
 * - `startMqttWs`   (wsPort) / `startMqttWss` (wssPort): MQTT over WebSocket, path `/mqtt`
 *   (and `/`, which the Node SDK's browser build uses).
 * TLS uses the server certificate from ctx.tls and the configured profile (tls/profiles.ts).
 * Every connection is tagged with the transport actually used before aedes reads it.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { AppContext, Listener } from '../context.js';
import { tlsOptionsFor } from '../tls/profiles.js';
import { clientCertOptions, peerChainOf } from '../tls/client-certs.js';
import { acquireMqttBroker, type MqttBroker } from './broker.js';
import { attachConnectionInfo, type Transport } from './connection-info.js';
import { MAX_PACKET_SIZE } from './packet-limits.js';
import { guardPacketSize } from './packet-size-guard.js';
import { pendingConnectionsOf, transportSocketOf } from './pending-connections.js';
import { proxiedConnection } from './proxied-connection.js';
import { proxyProtocolFor } from '../net/proxy-protocol-listener.js';

const TLS_HANDSHAKE = 0x16;
const WS_PATHS = new Set(['/mqtt', '/']);
/** A peer that opens a socket and says nothing is dropped after this long. */
const FIRST_BYTE_TIMEOUT_MS = 15_000;

function serverTlsOptions(ctx: AppContext): tls.TlsOptions {
  return { cert: ctx.tls.cert, key: ctx.tls.key, ...tlsOptionsFor(ctx.config.tlsProfile), ...clientCertOptions(ctx.config) };
}

function handOver(broker: MqttBroker, conn: Duplex, direct: Transport, directAddress: string | undefined, req?: http.IncomingMessage, tlsSocket?: tls.TLSSocket): void {
  const socket = transportSocketOf(conn, req);
  // Through a trusted load balancer: the client's address and TLS from its PROXY header.
  const { transport, remoteAddress } = proxiedConnection(socket, direct, directAddress);
  // A client certificate reaches the CONNECT decision only from a TLS session thingauth ended itself.
  const chain = tlsSocket ? peerChainOf(tlsSocket) : undefined;
  attachConnectionInfo(conn, { transport, remoteAddress: remoteAddress ?? '', ...(chain ? { clientCertChain: chain } : {}) });
  broker.aedes.handle(conn, req);
  // Packet size limit at the fixed header; a CONNACK 0 ends the socket's count as pending.
  const pending = pendingConnectionsOf(broker.handlerContext.app);
  guardPacketSize(broker, conn, remoteAddress ?? '', () => pending.release(socket));
}

/** How long a TLS peer gets for our close_notify to go out before its socket is cut. */
const TLS_CLOSE_GRACE_MS = 500;

/**
 * A TLS session the server ends (DISCONNECT, takeover, kick, keep-alive expiry, the device's
 * own close, shutdown) ends with close_notify and FIN: aedes and the listeners end a connection
 * with destroy(), which on a TLS socket cuts it without close_notify. Here destroy() without an
 * error first ends the TLS session, then releases the socket once that went out (or after
 * TLS_CLOSE_GRACE_MS when the peer reads nothing).
 */
function endWithCloseNotify(s: tls.TLSSocket): void {
  const destroyNow = s.destroy.bind(s);
  let ending = false;
  s.destroy = ((err?: Error) => {
    if (err || s.destroyed) return destroyNow(err);
    // close_notify is on its way (a second destroy, e.g. from ws, would cut it off): the end
    // callback or the grace releases the socket.
    if (ending) return s;
    if (s.writableEnded || !s.writable) return destroyNow();
    ending = true;
    s.end(() => destroyNow());
    setTimeout(() => destroyNow(), TLS_CLOSE_GRACE_MS).unref();
    return s;
  }) as typeof s.destroy;
}

/** Tracks open sockets so close() does not wait for idle devices to leave. */
function socketTracker() {
  const sockets = new Set<net.Socket>();
  const tlsSessions = new Set<tls.TLSSocket>();
  return {
    add(s: net.Socket) {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
    },
    /** A TLS session over a tracked socket: it ends with close_notify (endWithCloseNotify). */
    addTls(s: tls.TLSSocket) {
      endWithCloseNotify(s);
      tlsSessions.add(s);
      s.once('close', () => tlsSessions.delete(s));
    },
    /** Ends every TLS session with close_notify, waits for them (at most the grace), then cuts what is left. */
    async endAll(): Promise<void> {
      const ended = [...tlsSessions].map((s) => new Promise<void>((resolve) => {
        s.once('close', () => resolve());
        s.destroy();
      }));
      if (ended.length > 0) await Promise.race([Promise.all(ended), new Promise((r) => setTimeout(r, TLS_CLOSE_GRACE_MS + 50))]);
      for (const s of sockets) s.destroy();
      sockets.clear();
      tlsSessions.clear();
    },
  };
}

function listen(server: net.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const addr = server.address();
      resolve(typeof addr === 'object' && addr ? addr.port : port);
    });
  });
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/**
 * Binds `server` and describes it as a Listener. A bind failure gives the broker back before
 * it throws; close() stops the server, ends the open connections at once (`endConnections`,
 * so idle devices do not hold shutdown up), waits for the server, then gives the broker back.
 */
async function serveAs(
  server: net.Server,
  port: number,
  ctx: AppContext,
  release: () => Promise<void>,
  describe: (port: number) => { name: string; url: string },
  endConnections: () => void | Promise<void>,
): Promise<Listener> {
  let bound: number;
  let name = '';
  // THINGAUTH_PROXY_PROTOCOL_FROM: the PROXY header is read before anything below sees the socket.
  proxyProtocolFor(ctx, server, () => name, ctx.config.mqttPendingPerSource);
  try {
    bound = await listen(server, port, ctx.config.host);
  } catch (e) {
    await release();
    throw e;
  }
  const described = describe(bound);
  name = described.name;
  // After the bind, a server 'error' (e.g. EMFILE while accepting) must not kill the process.
  server.on('error', (err) => ctx.logger.warn({ listener: described.name, err: err.message }, 'listener error'));
  return {
    ...described,
    port: bound,
    stopAccepting() {
      server.close();
    },
    async close() {
      const closing = closeServer(server);
      await endConnections();
      await closing;
      await release();
    },
  };
}

/**
 * Waits for the first chunk and puts it back, so whoever reads next sees the stream from its
 * first byte. ('data' + pause + unshift, not a 'readable' listener: a socket that had a
 * 'readable' listener removed may not signal the unshifted data to the next reader.)
 * Undefined when the peer closed first.
 */
function peekFirstByte(socket: net.Socket): Promise<number | undefined> {
  return new Promise((resolve) => {
    const onData = (chunk: Buffer) => {
      cleanup();
      socket.pause();
      socket.unshift(chunk);
      resolve(chunk[0]);
    };
    const onEnd = () => {
      cleanup();
      resolve(undefined);
    };
    const cleanup = () => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
  });
}

export async function startMqttTcp(ctx: AppContext): Promise<Listener> {
  const { broker, release } = await acquireMqttBroker(ctx);
  const tracker = socketTracker();
  // Never listens itself: receives the sockets whose first byte is a TLS handshake.
  const tlsSide = tls.createServer({ ...serverTlsOptions(ctx), handshakeTimeout: FIRST_BYTE_TIMEOUT_MS });
  tlsSide.on('secureConnection', (s) => {
    tracker.addTls(s);
    handOver(broker, s, 'tls', s.remoteAddress, undefined, s);
  });
  tlsSide.on('tlsClientError', (err, s) => {
    ctx.logger.debug({ err: err.message, remote: s.remoteAddress }, 'TLS handshake failed on the MQTT port');
    s.destroy();
  });
  const pending = pendingConnectionsOf(ctx);
  tlsSide.on('error', (err) => ctx.logger.warn({ err: err.message }, 'TLS side of the MQTT port failed'));
  const server = net.createServer((socket) => {
    tracker.add(socket);
    socket.on('error', () => socket.destroy());
    if (!pending.admit(socket)) return;
    socket.setNoDelay(true);
    socket.setTimeout(FIRST_BYTE_TIMEOUT_MS, () => socket.destroy());
    void peekFirstByte(socket).then((first) => {
      socket.setTimeout(0);
      if (first === undefined) {
        socket.destroy();
        return;
      }
      if (first === TLS_HANDSHAKE) tlsSide.emit('connection', socket);
      else handOver(broker, socket, 'tcp', socket.remoteAddress);
    }).catch((err: unknown) => {
      // Whatever went wrong with one peer's socket ends that socket, never the process.
      ctx.logger.debug({ err: err instanceof Error ? err.message : String(err), remote: socket.remoteAddress }, 'MQTT port: connection dropped');
      socket.destroy();
    });
  });
  return serveAs(
    server,
    ctx.config.mqttPort,
    ctx,
    release,
    (port) => ({ name: 'mqtt', url: `mqtt://${urlHost(ctx.config.host)}:${port} (also TLS)` }),
    () => tracker.endAll(),
  );
}

export async function startMqtts(ctx: AppContext): Promise<Listener> {
  const { broker, release } = await acquireMqttBroker(ctx);
  const tracker = socketTracker();
  const server = tls.createServer({ ...serverTlsOptions(ctx), handshakeTimeout: FIRST_BYTE_TIMEOUT_MS }, (s) => {
    s.setNoDelay(true);
    tracker.addTls(s);
    handOver(broker, s, 'tls', s.remoteAddress, undefined, s);
  });
  const pending = pendingConnectionsOf(ctx);
  server.on('connection', (s: net.Socket) => {
    tracker.add(s);
    // The TLS layer reports handshake failures (tlsClientError); this keeps a reset of the raw
    // socket from ever being an unhandled 'error'.
    s.on('error', () => s.destroy());
    pending.admit(s);
  });
  server.on('tlsClientError', (err, s) => {
    ctx.logger.debug({ err: err.message, remote: s.remoteAddress }, 'TLS handshake failed on the MQTTS port');
    s.destroy();
  });
  return serveAs(
    server,
    ctx.config.mqttsPort,
    ctx,
    release,
    (port) => ({ name: 'mqtts', url: `mqtts://${urlHost(ctx.config.host)}:${port}` }),
    () => tracker.endAll(),
  );
}

async function startWebSocket(ctx: AppContext, secure: boolean): Promise<Listener> {
  const { broker, release } = await acquireMqttBroker(ctx);
  const tracker = socketTracker();
  const notFound = (_req: http.IncomingMessage, res: http.ServerResponse) => {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ code: 'NOT_FOUND', message: 'MQTT over WebSocket is served on /mqtt' }));
  };
  const server = secure ? https.createServer(serverTlsOptions(ctx), notFound) : http.createServer(notFound);
  if (secure) server.on('secureConnection', (s: tls.TLSSocket) => tracker.addTls(s));
  const pending = pendingConnectionsOf(ctx);
  server.on('connection', (s: net.Socket) => {
    tracker.add(s);
    s.on('error', () => s.destroy());
    pending.admit(s);
  });
  // One WebSocket message carries one MQTT packet (mqtt.js, the Node SDK's browser build): a
  // frame larger than the largest packet thingauth accepts is refused by ws (close 1009) before
  // it is buffered, so a socket not yet logged in holds at most that much.
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_PACKET_SIZE });
  wss.on('error', (err) => ctx.logger.warn({ err: err.message }, 'WebSocket server error'));
  const transport: Transport = secure ? 'wss' : 'ws';
  server.on('upgrade', (req, socket, head) => {
    // The HTTP server takes its own 'error' listener off a socket it hands to 'upgrade': from
    // here a reset by the peer (ECONNRESET) would be an unhandled 'error' that kills the process.
    socket.on('error', () => socket.destroy());
    const path = (req.url ?? '/').split('?')[0]!;
    if (!WS_PATHS.has(path)) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      // Closed once the answer is written, so a peer that never closes its side holds nothing.
      (socket as net.Socket).destroySoon();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const stream = createWebSocketStream(ws);
      stream.on('error', () => stream.destroy());
      handOver(broker, stream, transport, req.socket.remoteAddress, req, secure ? (req.socket as tls.TLSSocket) : undefined);
    });
  });
  return serveAs(
    server,
    secure ? ctx.config.wssPort : ctx.config.wsPort,
    ctx,
    release,
    (port) => ({ name: secure ? 'mqtt-wss' : 'mqtt-ws', url: `${secure ? 'wss' : 'ws'}://${urlHost(ctx.config.host)}:${port}/mqtt` }),
    async () => {
      for (const c of wss.clients) c.terminate();
      await tracker.endAll();
      wss.close();
    },
  );
}

export function startMqttWs(ctx: AppContext): Promise<Listener> {
  return startWebSocket(ctx, false);
}

export function startMqttWss(ctx: AppContext): Promise<Listener> {
  return startWebSocket(ctx, true);
}
