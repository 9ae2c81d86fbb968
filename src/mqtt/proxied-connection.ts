/**
 * A connection that came through a trusted load balancer (PROXY protocol v2,
 * net/proxy-protocol-listener.ts): the client's address is the one in the header, and when
 * the balancer terminated the client's TLS (SSL TLV, PP2_CLIENT_SSL) the transport counts as
 * TLS, so a product's requireTls, `securemode=2` and the registration-over-TLS rule hold on
 * what the client really used to reach us. Only a trusted address's header gets this far.
 */
import { proxiedFactsOf } from '../net/proxy-protocol-listener.js';
import type { Transport } from './connection-info.js';

export function proxiedConnection(
  socket: object,
  transport: Transport,
  remoteAddress: string | undefined,
): { transport: Transport; remoteAddress: string | undefined } {
  const facts = proxiedFactsOf(socket);
  if (!facts) return { transport, remoteAddress };
  const tls = facts.header.tls?.client === true;
  return {
    transport: tls && transport === 'tcp' ? 'tls' : tls && transport === 'ws' ? 'wss' : transport,
    remoteAddress: facts.header.source?.address ?? remoteAddress,
  };
}
