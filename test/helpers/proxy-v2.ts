/**
 * Builds PROXY protocol v2 headers byte by byte from the format's description (HAProxy's
 * proxy-protocol.txt 2.2), independently of src/net/proxy-protocol.ts, for raw-socket tests:
 * valid ones and every kind of broken one.
 */
import net from 'node:net';

const SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

export interface Tlv {
  type: number;
  value: Buffer;
}

export interface HeaderSpec {
  /** 0x20 LOCAL, 0x21 PROXY (default), or anything to break it. */
  verCmd?: number;
  /** 0x11 TCP/IPv4 (default with an IPv4 src), 0x21 TCP/IPv6, 0x00 UNSPEC. */
  fam?: number;
  src?: string;
  dst?: string;
  srcPort?: number;
  dstPort?: number;
  tlvs?: Tlv[];
  /** Add a CRC32C TLV (correct unless `badCrc`). */
  crc?: boolean;
  badCrc?: boolean;
  /** Override the length field. */
  length?: number;
}

function addressBytes(a: string): Buffer {
  if (net.isIPv4(a)) return Buffer.from(a.split('.').map(Number));
  // IPv6: expand ::
  const [head, tail] = a.includes('::') ? a.split('::') : [a, undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

export function tlv(type: number, value: Buffer | string): Tlv {
  return { type, value: typeof value === 'string' ? Buffer.from(value, 'utf8') : value };
}

/** PP2_TYPE_SSL: client bits, verify, sub-TLVs. */
export function sslTlv(client: number, verify = 0, subs: Tlv[] = []): Tlv {
  const head = Buffer.alloc(5);
  head[0] = client;
  head.writeUInt32BE(verify, 1);
  return tlv(0x20, Buffer.concat([head, ...subs.map(encodeTlv)]));
}

function encodeTlv(t: Tlv): Buffer {
  const h = Buffer.alloc(3);
  h[0] = t.type;
  h.writeUInt16BE(t.value.length, 1);
  return Buffer.concat([h, t.value]);
}

function crc32c(data: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? 0x82f63b78 ^ (crc >>> 1) : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

export function proxyV2(spec: HeaderSpec = {}): Buffer {
  const src = spec.src ?? '203.0.113.7';
  const v6 = net.isIPv6(src);
  const fam = spec.fam ?? (v6 ? 0x21 : 0x11);
  let addr = Buffer.alloc(0);
  if (fam === 0x11 || fam === 0x21) {
    const ports = Buffer.alloc(4);
    ports.writeUInt16BE(spec.srcPort ?? 50000, 0);
    ports.writeUInt16BE(spec.dstPort ?? 1883, 2);
    addr = Buffer.concat([addressBytes(src), addressBytes(spec.dst ?? (v6 ? '::1' : '127.0.0.1')), ports]);
  }
  const tlvs = (spec.tlvs ?? []).map(encodeTlv);
  if (spec.crc) tlvs.push(encodeTlv(tlv(0x03, Buffer.alloc(4))));
  const body = Buffer.concat([addr, ...tlvs]);
  const fixed = Buffer.alloc(4);
  fixed[0] = spec.verCmd ?? 0x21;
  fixed[1] = fam;
  fixed.writeUInt16BE(spec.length ?? body.length, 2);
  const out = Buffer.concat([SIGNATURE, fixed, body]);
  if (spec.crc) {
    const sum = crc32c(out);
    out.writeUInt32BE(spec.badCrc ? (sum ^ 1) >>> 0 : sum, out.length - 4);
  }
  return out;
}
