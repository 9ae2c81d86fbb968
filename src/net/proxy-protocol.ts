/**
 * A strict reader of the PROXY protocol version 2 header (HAProxy's proxy-protocol.txt, section
 * 2.2): what a trusted load balancer (HAProxy `send-proxy-v2`, `send-proxy-v2-ssl`,
 * `send-proxy-v2-ssl-cn`) writes before the client's bytes, telling the client's real address
 * and, in its SSL TLV, whether the client reached the balancer over TLS.
 *
 * Pure: bytes in, a verdict out. The socket side (who must send one, timeouts, metrics) is
 * proxy-protocol-listener.ts.
 *
 * Layout: 12-byte signature, ver/cmd (0x20 LOCAL, 0x21 PROXY), family/protocol, 16-bit length
 * of what follows, the addresses (12 bytes for TCP over IPv4, 36 for IPv6), then TLVs
 * (type, 16-bit length, value) up to the length. Refused: any other signature, version or
 * command; a header longer than MAX_PROXY_HEADER_BYTES; addresses or TLVs that do not fit the
 * length exactly; a UNIX or datagram family; a CRC32C TLV that does not match.
 */

export const PROXY_V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** The fixed part: signature, ver/cmd, family, length. */
export const PROXY_V2_FIXED_BYTES = 16;
/** The version 1 header starts so (text); only version 2 is accepted. */
const PROXY_V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** Largest whole header accepted (HAProxy's own are a few hundred bytes, TLVs included). */
export const MAX_PROXY_HEADER_BYTES = 2048;

const CMD_LOCAL = 0x0;
const CMD_PROXY = 0x1;
const AF_UNSPEC = 0x0;
const AF_INET = 0x1;
const AF_INET6 = 0x2;
const PROTO_UNSPEC = 0x0;
const PROTO_STREAM = 0x1;

export const PP2_TYPE_ALPN = 0x01;
export const PP2_TYPE_AUTHORITY = 0x02;
export const PP2_TYPE_CRC32C = 0x03;
export const PP2_TYPE_SSL = 0x20;
export const PP2_SUBTYPE_SSL_VERSION = 0x21;
export const PP2_SUBTYPE_SSL_CN = 0x22;
export const PP2_SUBTYPE_SSL_CIPHER = 0x23;
export const PP2_CLIENT_SSL = 0x01;
export const PP2_CLIENT_CERT_CONN = 0x02;
export const PP2_CLIENT_CERT_SESS = 0x04;

/** What the balancer says about the client's TLS (the SSL TLV). */
export interface ProxiedTls {
  /** PP2_CLIENT_SSL: the client connected to the balancer over SSL/TLS. */
  client: boolean;
  /** PP2_CLIENT_CERT_CONN / _SESS: the client presented a certificate (on this connection / in the session). */
  certificatePresented: boolean;
  /** The `verify` field was 0: the balancer verified the client's certificate. */
  certificateVerified: boolean;
  version?: string;
  commonName?: string;
  cipher?: string;
}

export interface ProxyAddress {
  address: string;
  port: number;
  family: 'IPv4' | 'IPv6';
}

export interface ProxyHeader {
  /** 'local': the balancer's own connection (health check); the socket's own addresses stand. */
  command: 'local' | 'proxy';
  /** The client; absent for LOCAL and for an UNSPEC family. */
  source?: ProxyAddress;
  destination?: ProxyAddress;
  tls?: ProxiedTls;
  alpn?: string;
  authority?: string;
}

export type ProxyRefusal =
  | 'bad_signature'
  | 'unsupported_version'
  | 'unsupported_command'
  | 'unsupported_family'
  | 'too_long'
  | 'malformed'
  | 'bad_checksum';

export type ProxyParse =
  | { kind: 'incomplete' }
  | { kind: 'header'; header: ProxyHeader; bytes: number }
  | { kind: 'refused'; reason: ProxyRefusal };

/** True while `buf` (possibly short) is a prefix of the v2 signature or of a v1 header: a PROXY header may be starting. */
export function mayBeProxyHeader(buf: Buffer): boolean {
  return isPrefixOf(buf, PROXY_V2_SIGNATURE) || isPrefixOf(buf, PROXY_V1_PREFIX);
}

/** True once `buf` starts with a whole v2 signature or v1 prefix. */
export function startsWithProxyHeader(buf: Buffer): boolean {
  return startsWith(buf, PROXY_V2_SIGNATURE) || startsWith(buf, PROXY_V1_PREFIX);
}

function isPrefixOf(buf: Buffer, sig: Buffer): boolean {
  const n = Math.min(buf.length, sig.length);
  return buf.subarray(0, n).equals(sig.subarray(0, n));
}

function startsWith(buf: Buffer, sig: Buffer): boolean {
  return buf.length >= sig.length && buf.subarray(0, sig.length).equals(sig);
}

/**
 * Reads a v2 header from the start of `buf`: 'incomplete' while more bytes are needed (the
 * caller bounds the wait), 'refused' as soon as the bytes so far cannot start a valid header,
 * else the header and how many bytes it took (what follows belongs to the client).
 */
export function parseProxyV2(buf: Buffer, maxBytes = MAX_PROXY_HEADER_BYTES): ProxyParse {
  if (!isPrefixOf(buf, PROXY_V2_SIGNATURE)) {
    return { kind: 'refused', reason: isPrefixOf(buf, PROXY_V1_PREFIX) ? 'unsupported_version' : 'bad_signature' };
  }
  if (buf.length < PROXY_V2_FIXED_BYTES) {
    // The version/command byte may already be here: refuse early rather than wait.
    if (buf.length > 12 && buf[12]! >> 4 !== 0x2) return { kind: 'refused', reason: 'unsupported_version' };
    return { kind: 'incomplete' };
  }
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 0x2) return { kind: 'refused', reason: 'unsupported_version' };
  const cmd = verCmd & 0x0f;
  if (cmd !== CMD_LOCAL && cmd !== CMD_PROXY) return { kind: 'refused', reason: 'unsupported_command' };
  const fam = buf[13]!;
  const len = buf.readUInt16BE(14);
  const total = PROXY_V2_FIXED_BYTES + len;
  if (total > maxBytes) return { kind: 'refused', reason: 'too_long' };
  if (buf.length < total) return { kind: 'incomplete' };
  const body = buf.subarray(PROXY_V2_FIXED_BYTES, total);

  const af = fam >> 4;
  const proto = fam & 0x0f;
  let addrBytes: number;
  if (af === AF_UNSPEC && proto === PROTO_UNSPEC) addrBytes = 0;
  else if (af === AF_INET && proto === PROTO_STREAM) addrBytes = 12;
  else if (af === AF_INET6 && proto === PROTO_STREAM) addrBytes = 36;
  else if (cmd === CMD_LOCAL && (af <= AF_INET6 || af === 0x3) && proto <= 0x2) addrBytes = -1; // LOCAL: addresses ignored
  else return { kind: 'refused', reason: 'unsupported_family' };
  if (addrBytes === -1) {
    // LOCAL over a UNIX or datagram family: the addresses are ignored (spec), and with an
    // address block of unknown size the TLVs cannot be told apart: nothing of it is used.
    return { kind: 'header', header: { command: 'local' }, bytes: total };
  }
  if (body.length < addrBytes) return { kind: 'refused', reason: 'malformed' };

  const header: ProxyHeader = { command: cmd === CMD_LOCAL ? 'local' : 'proxy' };
  if (cmd === CMD_PROXY && addrBytes === 12) {
    header.source = { address: ipv4(body.subarray(0, 4)), port: body.readUInt16BE(8), family: 'IPv4' };
    header.destination = { address: ipv4(body.subarray(4, 8)), port: body.readUInt16BE(10), family: 'IPv4' };
  } else if (cmd === CMD_PROXY && addrBytes === 36) {
    header.source = { address: ipv6(body.subarray(0, 16)), port: body.readUInt16BE(32), family: 'IPv6' };
    header.destination = { address: ipv6(body.subarray(16, 32)), port: body.readUInt16BE(34), family: 'IPv6' };
  }

  const tlvs = readTlvs(body.subarray(addrBytes));
  if (!tlvs) return { kind: 'refused', reason: 'malformed' };
  for (const t of tlvs) {
    switch (t.type) {
      case PP2_TYPE_CRC32C: {
        if (t.value.length !== 4) return { kind: 'refused', reason: 'malformed' };
        const expected = t.value.readUInt32BE(0);
        const copy = Buffer.from(buf.subarray(0, total));
        copy.fill(0, PROXY_V2_FIXED_BYTES + t.valueOffset + addrBytes, PROXY_V2_FIXED_BYTES + t.valueOffset + addrBytes + 4);
        if (crc32c(copy) !== expected) return { kind: 'refused', reason: 'bad_checksum' };
        break;
      }
      case PP2_TYPE_SSL: {
        const ssl = readSsl(t.value);
        if (!ssl) return { kind: 'refused', reason: 'malformed' };
        header.tls = ssl;
        break;
      }
      case PP2_TYPE_ALPN:
        header.alpn = t.value.toString('latin1');
        break;
      case PP2_TYPE_AUTHORITY:
        header.authority = t.value.toString('utf8');
        break;
      default:
        // NOOP, UNIQUE_ID, NETNS, custom types: nothing we use.
        break;
    }
  }
  return { kind: 'header', header, bytes: total };
}

interface Tlv {
  type: number;
  value: Buffer;
  /** Offset of the value inside the TLV block (for the CRC32C check). */
  valueOffset: number;
}

/** The TLVs of a block that they must fill exactly; undefined when one runs past its end. */
function readTlvs(block: Buffer): Tlv[] | undefined {
  const out: Tlv[] = [];
  let at = 0;
  while (at < block.length) {
    if (block.length - at < 3) return undefined;
    const type = block[at]!;
    const len = block.readUInt16BE(at + 1);
    if (block.length - at - 3 < len) return undefined;
    out.push({ type, value: block.subarray(at + 3, at + 3 + len), valueOffset: at + 3 });
    at += 3 + len;
  }
  return out;
}

/** PP2_TYPE_SSL: client (1 byte), verify (4 bytes), then sub-TLVs. */
function readSsl(value: Buffer): ProxiedTls | undefined {
  if (value.length < 5) return undefined;
  const client = value[0]!;
  const verify = value.readUInt32BE(1);
  const subs = readTlvs(value.subarray(5));
  if (!subs) return undefined;
  const tls: ProxiedTls = {
    client: (client & PP2_CLIENT_SSL) !== 0,
    certificatePresented: (client & (PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS)) !== 0,
    certificateVerified: (client & (PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS)) !== 0 && verify === 0,
  };
  for (const s of subs) {
    if (s.type === PP2_SUBTYPE_SSL_VERSION) tls.version = s.value.toString('latin1');
    else if (s.type === PP2_SUBTYPE_SSL_CN) tls.commonName = s.value.toString('utf8');
    else if (s.type === PP2_SUBTYPE_SSL_CIPHER) tls.cipher = s.value.toString('latin1');
  }
  return tls;
}

function ipv4(b: Buffer): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

/** RFC 5952 text (lower case, longest run of zero groups as ::), like Node's remoteAddress. */
function ipv6(b: Buffer): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i));
  // An IPv4-mapped address reads as ::ffff:a.b.c.d, as Node shows one.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) return `::ffff:${ipv4(b.subarray(12, 16))}`;
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

let crcTable: Uint32Array | undefined;

/** CRC32C (Castagnoli), as PP2_TYPE_CRC32C uses. */
export function crc32c(data: Buffer): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (const byte of data) crc = crcTable[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
