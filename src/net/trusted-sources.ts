/**
 * The addresses allowed to put a PROXY protocol header in front of a connection
 * (THINGAUTH_PROXY_PROTOCOL_FROM): single addresses and CIDR blocks, IPv4 and IPv6. An
 * IPv4-mapped IPv6 peer (::ffff:a.b.c.d, what a dual-stack listener reports) matches by its
 * IPv4 address.
 */
import net from 'node:net';

export class TrustedSources {
  private constructor(
    private readonly list: net.BlockList,
    /** The entries as configured (for logs and docs). */
    readonly entries: readonly string[],
  ) {}

  /** Parses the comma list's entries; problems name each bad entry. */
  static parse(entries: readonly string[]): { sources: TrustedSources; problems: string[] } {
    const list = new net.BlockList();
    const problems: string[] = [];
    for (const raw of entries) {
      const entry = raw.trim();
      const [address, prefix, extra] = entry.split('/');
      const family = net.isIP(address ?? '');
      if (!address || family === 0 || extra !== undefined) {
        problems.push(`"${entry}" is not an IP address or CIDR block (e.g. 10.0.0.5, 10.0.0.0/24, fd00::/64)`);
        continue;
      }
      const type = family === 4 ? 'ipv4' : 'ipv6';
      if (prefix === undefined) {
        list.addAddress(address, type);
        continue;
      }
      const max = family === 4 ? 32 : 128;
      if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > max) {
        problems.push(`"${entry}": the prefix length must be 0-${max}`);
        continue;
      }
      list.addSubnet(address, Number(prefix), type);
    }
    return { sources: new TrustedSources(list, entries.map((e) => e.trim())), problems };
  }

  get empty(): boolean {
    return this.entries.length === 0;
  }

  has(address: string | undefined): boolean {
    if (!address) return false;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return this.list.check(mapped[1]!, 'ipv4') || this.list.check(address, 'ipv6');
    const family = net.isIP(address);
    if (family === 0) return false;
    return this.list.check(address, family === 4 ? 'ipv4' : 'ipv6');
  }
}
