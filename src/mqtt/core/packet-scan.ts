/**
 * Maximum packet size at the fixed header: reads only first byte + remaining-length varint of
 * each packet in the byte stream (split across chunks is fine) and skips bodies by count, so a
 * socket declaring a huge packet is refused before the parser buffers it.
 */
export interface ScanState {
  skip: number;
  header: number;
  length: number;
  mult: number;
}

export type ScanVerdict = 'ok' | 'too_large' | 'malformed';

export function newScanState(): ScanState {
  return { skip: 0, header: 0, length: 0, mult: 1 };
}

/** Feeds one chunk; `limit` is the largest allowed whole packet size in bytes. */
export function scanChunk(s: ScanState, chunk: Uint8Array, limit: number): ScanVerdict {
  let i = 0;
  while (i < chunk.length) {
    if (s.skip > 0) {
      const n = Math.min(s.skip, chunk.length - i);
      s.skip -= n;
      i += n;
      continue;
    }
    const b = chunk[i++]!;
    if (s.header === 0) {
      s.header = 1;
      s.length = 0;
      s.mult = 1;
      continue;
    }
    s.length += (b & 0x7f) * s.mult;
    s.mult *= 128;
    s.header++;
    if (b & 0x80) {
      if (s.header >= 5) return 'malformed';
      continue;
    }
    if (s.header + s.length > limit) return 'too_large';
    s.skip = s.length;
    s.header = 0;
  }
  return 'ok';
}
