/**
 * Caps the connections one source address holds open on a listener. A connection over the cap
 * is closed at once, before TLS or HTTP sees it, so one host cannot use up the server's file
 * descriptors and sockets with slow or idle connections (docs/security.md "Slow requests").
 * A source is what the login throttle counts (sourceKey: IPv4, IPv6 by /64).
 */
import type net from 'node:net';
import type { Logger } from '../logger.js';
import { sourceKey } from '../services/login-throttle.js';

export function capConnectionsPerSource(server: net.Server, maxPerSource: number, logger: Logger, listener: string): void {
  if (maxPerSource <= 0) return;
  const open = new Map<string, number>();
  server.on('connection', (socket: net.Socket) => {
    const source = sourceKey(socket.remoteAddress);
    if (source === undefined) return; // already gone
    const n = open.get(source) ?? 0;
    if (n >= maxPerSource) {
      logger.debug({ listener, source, open: n }, 'connection refused: too many open connections from this source');
      socket.destroy();
      return;
    }
    open.set(source, n + 1);
    socket.once('close', () => {
      const left = (open.get(source) ?? 1) - 1;
      if (left <= 0) open.delete(source);
      else open.set(source, left);
    });
  });
}
