/**
 * Timeouts of the HTTP listeners (device HTTPS, management API), so a slow or silent peer
 * cannot hold a socket forever (slowloris headers, a body trickled a byte at a time, a
 * connection that never finishes its TLS handshake or sits idle). docs/security.md
 * "Slow requests" has the values and their reasons.
 */

export interface RequestTimeouts {
  /** TLS handshake and request headers must arrive within this. */
  headersMs: number;
  /** The whole request (headers and body) must arrive within this. */
  requestMs: number;
}

/** How long a keep-alive connection may sit idle between requests (Node's own default). */
export const KEEP_ALIVE_TIMEOUT_MS = 5_000;

/**
 * Options for http(s).createServer. Node checks the header and request deadlines on a timer
 * (every 30 s by default, far coarser than the deadlines themselves): checked at least twice
 * per header deadline, and at least every second.
 */
export function serverTimeoutOptions(t: RequestTimeouts): { headersTimeout: number; requestTimeout: number; connectionsCheckingInterval: number; handshakeTimeout: number } {
  return {
    headersTimeout: t.headersMs,
    requestTimeout: t.requestMs,
    connectionsCheckingInterval: Math.max(100, Math.min(1_000, Math.floor(t.headersMs / 2))),
    // https only (a plain http server ignores it): a peer that stalls its TLS handshake.
    handshakeTimeout: t.headersMs,
  };
}

/**
 * Fastify's own timeout options (it sets them on the server after creating it, overriding
 * the createServer ones): the request deadline, the keep-alive idle limit, and no socket
 * inactivity limit of its own (a response that takes long to compute is not an attack; a peer
 * that stops sending is caught by the request deadline).
 */
export function fastifyTimeoutOptions(t: RequestTimeouts): { requestTimeout: number; keepAliveTimeout: number } {
  return { requestTimeout: t.requestMs, keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS };
}
