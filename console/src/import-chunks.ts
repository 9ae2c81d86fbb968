/**
 * Splits an import file into parts the console sends one by one, so the operator sees progress
 * and can cancel between parts (one request of the whole file would show neither). CSV keeps
 * its header row in every part and never splits inside a quoted field; JSON lines split on
 * lines. Parts are contiguous slices of the file, so a line number the server reports for a
 * part (the physical line a record starts on, header = line 1) maps back to the file's line.
 */
export interface Part {
  text: string;
  /** The file line of the part's line `n` (as the server numbers the part). */
  fileLine(n: number): number;
  rows: number;
}

/** Logical CSV records with the physical line each starts on (a quoted field may hold newlines). */
function csvRecords(text: string): { record: string; line: number; lines: number }[] {
  const out: { record: string; line: number; lines: number }[] = [];
  let start = 0;
  let line = 1;
  let recordLine = 1;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') quoted = !quoted;
    else if (c === '\n') {
      line++;
      if (!quoted) {
        out.push({ record: text.slice(start, i).replace(/\r$/, ''), line: recordLine, lines: line - recordLine });
        start = i + 1;
        recordLine = line;
      }
    }
  }
  if (start < text.length) out.push({ record: text.slice(start).replace(/\r$/, ''), line: recordLine, lines: line - recordLine + 1 });
  return out;
}

export function splitImport(text: string, format: 'csv' | 'jsonl', rowsPerPart: number): Part[] {
  const parts: Part[] = [];
  if (format === 'csv') {
    const recs = csvRecords(text.replace(/^\uFEFF/, ''));
    const header = recs[0];
    if (!header) return [];
    const data = recs.slice(1);
    for (let i = 0; i < data.length; i += rowsPerPart) {
      const chunk = data.slice(i, i + rowsPerPart);
      const map = new Map<number, number>();
      let partLine = header.lines + 1;
      for (const r of chunk) {
        map.set(partLine, r.line);
        partLine += Math.max(1, r.lines);
      }
      parts.push({
        text: [header.record, ...chunk.map((r) => r.record)].join('\n') + '\n',
        fileLine: (n) => map.get(n) ?? n,
        rows: chunk.filter((r) => r.record.trim() !== '').length,
      });
    }
    return parts;
  }
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  for (let i = 0; i < lines.length; i += rowsPerPart) {
    const chunk = lines.slice(i, i + rowsPerPart);
    parts.push({ text: chunk.join('\n') + '\n', fileLine: (n) => n + i, rows: chunk.filter((l) => l.trim() !== '').length });
  }
  return parts;
}
