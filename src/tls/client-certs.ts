/**
 * Client certificates on thingauth's TLS listeners (issue 16). Requested, never required: a
 * listener serves secret devices (no certificate) and X.509 devices alike, so the handshake
 * accepts any certificate (rejectUnauthorized false; the TLS layer still checks the client's
 * CertificateVerify, i.e. that it holds the certificate's key) and the login path verifies
 * the chain against the device's product CA itself (services/x509.ts). No CA list is sent in
 * the CertificateRequest: the product is known only from the certificate.
 */
import type { TLSSocket, TlsOptions } from 'node:tls';
import type { Config } from '../config.js';

/** Certificates collected from a peer at most (the login refuses chains above MAX_CHAIN_CERTS). */
const MAX_COLLECTED = 8;

export function clientCertOptions(config: Pick<Config, 'tlsClientCerts'>): Pick<TlsOptions, 'requestCert' | 'rejectUnauthorized'> {
  return config.tlsClientCerts === 'request' ? { requestCert: true, rejectUnauthorized: false } : {};
}

/**
 * The chain the peer presented (DER, leaf first, following issuers as the peer sent them);
 * undefined when it presented none. One more than MAX_COLLECTED is kept so a deeper chain is
 * still seen as too deep.
 */
export function peerChainOf(socket: TLSSocket): Buffer[] | undefined {
  let cert;
  try {
    cert = socket.getPeerCertificate(true);
  } catch {
    return undefined;
  }
  if (!cert || !cert.raw) return undefined;
  const out: Buffer[] = [];
  const seen = new Set<unknown>();
  let c: typeof cert | undefined = cert;
  while (c && c.raw && !seen.has(c) && out.length <= MAX_COLLECTED) {
    seen.add(c);
    out.push(c.raw);
    const next: typeof cert | undefined = (c as { issuerCertificate?: typeof cert }).issuerCertificate;
    if (!next || next === c || (next.raw && next.raw.equals(c.raw))) break;
    c = next;
  }
  return out;
}
