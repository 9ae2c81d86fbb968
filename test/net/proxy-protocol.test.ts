/**
 * The PROXY v2 parser (src/net/proxy-protocol.ts) on headers built independently from the
 * format's description (test/helpers/proxy-v2.ts): addresses, TLVs (SSL with its client bits and
 * version/CN sub-TLVs, CRC32C), what follows the header, and every refusal; and the trusted
 * address list.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MAX_PROXY_HEADER_BYTES, mayBeProxyHeader, parseProxyV2, startsWithProxyHeader } from '../../src/net/proxy-protocol.js';
import { TrustedSources } from '../../src/net/trusted-sources.js';
import { proxyV2, sslTlv, tlv } from '../helpers/proxy-v2.js';

describe('PROXY v2 parser', () => {
  it('reads a TCP/IPv4 header and says where the client bytes start', () => {
    const h = proxyV2({ src: '203.0.113.7', srcPort: 40001, dst: '10.0.0.10', dstPort: 1883 });
    const r = parseProxyV2(Buffer.concat([h, Buffer.from([0x10, 0x0c])]));
    assert.equal(r.kind, 'header');
    if (r.kind !== 'header') return;
    assert.equal(r.bytes, h.length);
    assert.deepEqual(r.header.source, { address: '203.0.113.7', port: 40001, family: 'IPv4' });
    assert.deepEqual(r.header.destination, { address: '10.0.0.10', port: 1883, family: 'IPv4' });
    assert.equal(r.header.command, 'proxy');
    assert.equal(r.header.tls, undefined);
  });

  it('reads TCP/IPv6 addresses in their usual text form', () => {
    for (const [src, text] of [['2001:db8:0:0:0:0:0:1', '2001:db8::1'], ['fd00:1:2:3:4:5:6:7', 'fd00:1:2:3:4:5:6:7'], ['0:0:0:0:0:ffff:c000:0201', '::ffff:192.0.2.1'], ['::1', '::1']] as const) {
      const r = parseProxyV2(proxyV2({ src }));
      assert.equal(r.kind, 'header');
      if (r.kind === 'header') assert.equal(r.header.source?.address, text);
    }
  });

  it('reads the SSL TLV: client bit, certificate bits, verify, version and CN', () => {
    const plain = parseProxyV2(proxyV2({ tlvs: [sslTlv(0x01, 0, [tlv(0x21, 'TLSv1.3')])] }));
    assert.equal(plain.kind, 'header');
    if (plain.kind === 'header') assert.deepEqual(plain.header.tls, { client: true, certificatePresented: false, certificateVerified: false, version: 'TLSv1.3' });
    const cert = parseProxyV2(proxyV2({ tlvs: [tlv(0x04, 'noop'), sslTlv(0x07, 0, [tlv(0x21, 'TLSv1.2'), tlv(0x22, 'dev-1')])], crc: true }));
    assert.equal(cert.kind, 'header');
    if (cert.kind === 'header') assert.deepEqual(cert.header.tls, { client: true, certificatePresented: true, certificateVerified: true, version: 'TLSv1.2', commonName: 'dev-1' });
    const notTls = parseProxyV2(proxyV2({ tlvs: [sslTlv(0x00, 1)] }));
    if (notTls.kind === 'header') assert.equal(notTls.header.tls?.client, false);
  });

  it('LOCAL (health check) has no address; UNSPEC neither', () => {
    const local = parseProxyV2(proxyV2({ verCmd: 0x20, fam: 0x00 }));
    assert.deepEqual(local, { kind: 'header', header: { command: 'local' }, bytes: 16 });
    const unspec = parseProxyV2(proxyV2({ fam: 0x00 }));
    assert.equal(unspec.kind === 'header' && unspec.header.source, undefined);
  });

  it('waits while the bytes may still become a header', () => {
    const h = proxyV2({ tlvs: [sslTlv(0x01)] });
    for (let n = 0; n < h.length; n++) assert.deepEqual(parseProxyV2(h.subarray(0, n)), { kind: 'incomplete' }, `at ${n}`);
  });

  const refusals: [string, Buffer, string][] = [
    ['MQTT instead of a header', Buffer.from([0x10, 0x2a, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54]), 'bad_signature'],
    ['a TLS ClientHello', Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), 'bad_signature'],
    ['a signature off by one byte', Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x55]), 'bad_signature'],
    ['version 1 text', Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 5000 1883\r\n'), 'unsupported_version'],
    ['version 3', proxyV2({ verCmd: 0x31 }), 'unsupported_version'],
    ['version 3, only 13 bytes so far', proxyV2({ verCmd: 0x31 }).subarray(0, 13), 'unsupported_version'],
    ['command 2', proxyV2({ verCmd: 0x22 }), 'unsupported_command'],
    ['UDP', proxyV2({ fam: 0x12 }), 'unsupported_family'],
    ['UNIX stream', proxyV2({ fam: 0x31 }), 'unsupported_family'],
    ['a length over the cap', proxyV2({ length: MAX_PROXY_HEADER_BYTES }), 'too_long'],
    ['a length of 65535', proxyV2({ length: 0xffff }), 'too_long'],
    ['IPv4 addresses cut short', proxyV2({ length: 8 }), 'malformed'],
    ['a TLV running past the end', Buffer.concat([proxyV2({ length: 12 + 3 + 1 }).subarray(0, 28), Buffer.from([0x20, 0x00, 0x09, 0x01])]), 'malformed'],
    ['a two-byte TLV stub', Buffer.concat([proxyV2({ length: 14 }).subarray(0, 28), Buffer.from([0x04, 0x00])]), 'malformed'],
    ['an SSL TLV shorter than 5 bytes', proxyV2({ tlvs: [tlv(0x20, Buffer.from([1, 0, 0]))] }), 'malformed'],
    ['an SSL sub-TLV running past its TLV', proxyV2({ tlvs: [tlv(0x20, Buffer.from([1, 0, 0, 0, 0, 0x21, 0x00, 0x09, 0x41]))] }), 'malformed'],
    ['a CRC32C that does not match', proxyV2({ tlvs: [sslTlv(1)], crc: true, badCrc: true }), 'bad_checksum'],
    ['a CRC32C TLV of 3 bytes', proxyV2({ tlvs: [tlv(0x03, Buffer.from([1, 2, 3]))] }), 'malformed'],
  ];
  for (const [name, bytes, reason] of refusals) {
    it(`refuses ${name} (${reason})`, () => {
      assert.deepEqual(parseProxyV2(bytes), { kind: 'refused', reason });
    });
  }

  it('never throws and never reads past a header it accepts (random bytes after a valid signature)', () => {
    const sig = proxyV2().subarray(0, 12);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (tail) => {
        const buf = Buffer.concat([sig, Buffer.from(tail)]);
        const r = parseProxyV2(buf);
        if (r.kind === 'header') assert.ok(r.bytes <= buf.length && r.bytes >= 16);
      }),
      { numRuns: 2000 },
    );
  });

  it('tells a starting PROXY header (v2 or v1) from other first bytes', () => {
    assert.ok(mayBeProxyHeader(Buffer.from([0x0d, 0x0a])));
    assert.ok(mayBeProxyHeader(Buffer.from('PRO')));
    assert.ok(!mayBeProxyHeader(Buffer.from([0x10])));
    assert.ok(!mayBeProxyHeader(Buffer.from([0x16, 0x03])));
    assert.ok(!mayBeProxyHeader(Buffer.from('GET / HTTP/1.1')));
    assert.ok(startsWithProxyHeader(proxyV2()));
    assert.ok(startsWithProxyHeader(Buffer.from('PROXY TCP4 ')));
    assert.ok(!startsWithProxyHeader(proxyV2().subarray(0, 11)));
  });
});

describe('trusted sources (THINGAUTH_PROXY_PROTOCOL_FROM)', () => {
  it('matches addresses and CIDR blocks of both families, IPv4-mapped peers by their IPv4', () => {
    const { sources, problems } = TrustedSources.parse(['10.0.0.5', '192.168.8.0/22', 'fd00::/64', '::1']);
    assert.deepEqual(problems, []);
    for (const a of ['10.0.0.5', '192.168.11.254', '::ffff:192.168.8.1', 'fd00::abcd', '::1']) assert.ok(sources.has(a), a);
    for (const a of ['10.0.0.6', '192.168.12.1', 'fd00:0:0:1::1', '::2', '', undefined, 'localhost']) assert.ok(!sources.has(a), String(a));
  });

  it('names each bad entry', () => {
    const { problems } = TrustedSources.parse(['10.0.0.0/33', 'haproxy.local', '10.0.0.1/8/1', 'fd00::/129', '1.2.3.4/x']);
    assert.equal(problems.length, 5);
    assert.match(problems[0]!, /10\.0\.0\.0\/33.*0-32/);
    assert.match(problems[1]!, /haproxy\.local/);
  });
});
