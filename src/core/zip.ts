/**
 * A streaming ZIP writer for small files (stored, no compression): the production-line
 * certificate download (issue 16). Each entry is written as it comes; the central directory
 * (about 60 bytes + the name per entry) is kept until the end. Plain ZIP, not ZIP64: at most
 * MAX_ZIP_ENTRIES entries and 4 GiB, refused beyond with a clear error (use the CSV).
 */
import { crc32 } from 'node:zlib';
import { ThingAuthError } from './errors.js';

export const MAX_ZIP_ENTRIES = 65_535;
const MAX_OFFSET = 0xffffffff;

export interface ZipEntry {
  name: string;
  data: Buffer;
  /** Unix permission bits (default 0o600: these files hold private keys). */
  mode?: number;
}

function dosTime(d: Date): { time: number; date: number } {
  return {
    time: (d.getHours() << 11) | (d.getMinutes() << 5) | Math.floor(d.getSeconds() / 2),
    date: ((d.getFullYear() - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate(),
  };
}

export async function* zipStream(entries: AsyncIterable<ZipEntry> | Iterable<ZipEntry>, now = new Date()): AsyncGenerator<Buffer> {
  const { time, date } = dosTime(now);
  const central: Buffer[] = [];
  let offset = 0;
  let count = 0;
  for await (const e of entries) {
    if (++count > MAX_ZIP_ENTRIES) throw new ThingAuthError('PAYLOAD_TOO_LARGE', `a ZIP holds at most ${MAX_ZIP_ENTRIES} files here; download the CSV instead`);
    const name = Buffer.from(e.name, 'utf8');
    const crc = crc32(e.data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4); // version needed
    local.writeUInt16LE(0x0800, 6); // UTF-8 names
    local.writeUInt16LE(0, 8); // stored
    local.writeUInt16LE(time, 10);
    local.writeUInt16LE(date, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(e.data.length, 18);
    local.writeUInt32LE(e.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(0, 28);
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(0x031e, 4); // made by: Unix, 3.0
    cd.writeUInt16LE(20, 6);
    cd.writeUInt16LE(0x0800, 8);
    cd.writeUInt16LE(0, 10);
    cd.writeUInt16LE(time, 12);
    cd.writeUInt16LE(date, 14);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(e.data.length, 20);
    cd.writeUInt32LE(e.data.length, 24);
    cd.writeUInt16LE(name.length, 28);
    cd.writeUInt16LE(0, 30); // extra
    cd.writeUInt16LE(0, 32); // comment
    cd.writeUInt16LE(0, 34); // disk
    cd.writeUInt16LE(0, 36); // internal attributes
    cd.writeUInt32LE(((0o100000 | (e.mode ?? 0o600)) << 16) >>> 0, 38); // regular file, permissions
    cd.writeUInt32LE(offset, 42);
    central.push(cd, name);
    const size = local.length + name.length + e.data.length;
    if (offset + size > MAX_OFFSET) throw new ThingAuthError('PAYLOAD_TOO_LARGE', 'the ZIP would exceed 4 GiB; download the CSV instead');
    offset += size;
    yield Buffer.concat([local, name, e.data]);
  }
  const dir = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(0, 4);
  end.writeUInt16LE(0, 6);
  end.writeUInt16LE(count, 8);
  end.writeUInt16LE(count, 10);
  end.writeUInt32LE(dir.length, 12);
  end.writeUInt32LE(offset, 16);
  end.writeUInt16LE(0, 20);
  yield Buffer.concat([dir, end]);
}
