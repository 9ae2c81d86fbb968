/**
 * `thingauth import products|devices --file F`: move an existing fleet in with the keys its
 * devices already hold. The file is streamed to POST /api/v1/import/{kind} as it is read
 * (never held whole), with a progress bar of bytes sent on stderr; the server validates,
 * writes in chunks and answers with a summary. Exit code 3 when rows were refused
 * (conflicts, invalid rows, or a file unreadable part-way), so scripts can stop.
 */
import fs from 'node:fs';
import cliProgress from 'cli-progress';
import { Option, type Command } from 'commander';
import { formatFromFileName, type ImportFormat, type ImportKind } from '../core/import-formats.js';
import type { ImportSummary } from '../services/importer.js';
import { ApiError, connectionFetch, resolveConnection } from './api-client.js';
import { apiCommand, print, type ApiCommandOptions } from './common.js';

interface ImportCommandOptions extends ApiCommandOptions {
  file: string;
  format?: ImportFormat;
  dryRun?: boolean;
  overwrite?: boolean;
  progress: boolean;
}

const CONTENT_TYPES: Record<ImportFormat, string> = { csv: 'text/csv; charset=utf-8', jsonl: 'application/x-ndjson; charset=utf-8' };
/** Lines of conflicts / invalid rows shown in the human summary; --json carries up to 1,000 of each. */
const SHOWN = 20;

export function exitCodeOf(s: ImportSummary): number {
  return s.conflictCount > 0 || s.invalidCount > 0 || s.aborted ? 3 : 0;
}

export function formatSummary(s: ImportSummary, file: string): string {
  const out: string[] = [];
  out.push(`${s.dryRun ? 'dry run: ' : ''}${s.kind} from ${file} (${s.format}): ${s.rows} rows read`);
  const pad = (k: string, v: number) => `  ${k.padEnd(22)}${v}`;
  out.push(pad(s.dryRun ? 'would be created' : 'created', s.created));
  out.push(pad('identical (skipped)', s.identical));
  out.push(pad(s.dryRun ? 'would be overwritten' : 'overwritten', s.overwritten));
  out.push(pad('conflicts', s.conflictCount));
  out.push(pad('invalid rows', s.invalidCount));
  const more = (shown: number, total: number) => (total > shown ? [`  ... and ${total - shown} more (--json lists up to 1,000)`] : []);
  if (s.conflictCount > 0) {
    out.push('conflicts (not written; --overwrite replaces them):');
    for (const c of s.conflicts.slice(0, SHOWN)) out.push(`  line ${c.line}: ${c.productKey}${c.deviceName ? '/' + c.deviceName : ''}: ${c.message}`);
    out.push(...more(Math.min(SHOWN, s.conflicts.length), s.conflictCount));
  }
  if (s.invalidCount > 0) {
    out.push('invalid rows (not written):');
    for (const e of s.invalid.slice(0, SHOWN)) out.push(`  line ${e.line}: ${e.message}`);
    out.push(...more(Math.min(SHOWN, s.invalid.length), s.invalidCount));
  }
  if (s.aborted) out.push(`stopped at line ${s.aborted.line}: ${s.aborted.message}; rows from there on were not read. Fix the file and run the import again (re-runs skip what is already in).`);
  if (s.dryRun) out.push('dry run: nothing was written');
  return out.join('\n');
}

/** Streams the file with a byte counter feeding the progress bar. */
async function* fileChunks(file: string, onBytes: (n: number) => void): AsyncGenerator<Uint8Array> {
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 256 * 1024 })) {
    onBytes((chunk as Buffer).length);
    yield chunk as Buffer;
  }
}

export async function runImport(kind: ImportKind, o: ImportCommandOptions): Promise<ImportSummary> {
  const conn = resolveConnection(o);
  let size: number;
  try {
    size = (await fs.promises.stat(o.file)).size;
    await fs.promises.access(o.file, fs.constants.R_OK);
  } catch {
    throw new Error(`cannot read --file ${o.file}`);
  }
  const format = o.format ?? formatFromFileName(o.file);
  if (!format) throw new Error(`cannot tell the format of ${o.file} from its name; pass --format csv or --format jsonl`);

  const bar =
    o.progress && !o.json && process.stderr.isTTY
      ? new cliProgress.SingleBar(
          { stream: process.stderr, format: 'uploading [{bar}] {percentage}% | {value}/{total} bytes | {eta_formatted} left', hideCursor: true },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
  bar?.start(size, 0);
  const query = new URLSearchParams({ format });
  if (o.dryRun) query.set('dryRun', 'true');
  if (o.overwrite) query.set('overwrite', 'true');
  let res: Response;
  try {
    res = await connectionFetch(conn, `${conn.url}/api/v1/import/${kind}?${query}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${conn.token}`, 'content-type': CONTENT_TYPES[format], 'content-length': String(size) },
      body: fileChunks(o.file, (n) => bar?.increment(n)) as AsyncIterable<Uint8Array>,
    });
  } catch (e) {
    bar?.stop();
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(`cannot reach thingauth at ${conn.url} (${cause?.code ?? cause?.message ?? String(e)}); is the server running? Set --url or THINGAUTH_URL`);
  }
  bar?.stop();
  const text = await res.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!res.ok) throw new ApiError(res.status, body?.code ?? `HTTP_${res.status}`, body?.message ?? (text.slice(0, 200) || res.statusText), body);
  return body as ImportSummary;
}

export function addImportCommand(program: Command): void {
  apiCommand(program, 'import <kind>', 'import products or devices with the keys they already hold (kind: products | devices)')
    .requiredOption('--file <path>', 'the file: the cloud console device CSV, or JSON lines as `thingauth device export --format jsonl` writes')
    .addOption(new Option('--format <format>', 'file format (default: from the file name, .csv or .jsonl/.ndjson)').choices(['csv', 'jsonl']))
    .option('--dry-run', 'check every row against the server and report; write nothing')
    .option('--overwrite', 'replace the secret of existing entries that differ instead of reporting a conflict')
    .option('--no-progress', 'no progress bar')
    .action(async (kind: string, o: ImportCommandOptions) => {
      if (kind !== 'products' && kind !== 'devices') throw new Error(`import what? expected "products" or "devices", got "${kind}"`);
      const summary = await runImport(kind, o);
      print(o, summary, () => formatSummary(summary, o.file));
      process.exitCode = exitCodeOf(summary);
    });
}
