/**
 * What the listener knows about a connection before aedes parses a byte: the transport
 * actually used and the peer address. The authenticate hook reads it back through the
 * connection object aedes gives it (client.conn), so decisions such as a product's
 * requireTls rest on the real transport, not on the `securemode` a device claims.
 */
export type Transport = 'tcp' | 'tls' | 'ws' | 'wss';

export interface ConnectionInfo {
  transport: Transport;
  remoteAddress: string;
  /** The client certificate chain presented in the TLS handshake (DER, leaf first); absent when none (issue 16). */
  clientCertChain?: Buffer[];
}

const infos = new WeakMap<object, ConnectionInfo>();

export function attachConnectionInfo(conn: object, info: ConnectionInfo): void {
  infos.set(conn, info);
}

export function connectionInfoOf(conn: object): ConnectionInfo | undefined {
  return infos.get(conn);
}

export function isTlsTransport(t: Transport): boolean {
  return t === 'tls' || t === 'wss';
}
