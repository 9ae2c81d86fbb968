/**
 * Import file formats, parsed incrementally so a 500,000-row file never has to be held
 * whole: text goes in by chunks, validated rows (or row errors with line numbers) come out.
 *
 * - CSV as the cloud console exports a product's devices: ProductKey, DeviceName,
 *   DeviceSecret in any order (header row required, matched case-insensitively), UTF-8 BOM,
 *   CRLF, RFC 4180 quoting (embedded commas, quotes, newlines), blank lines skipped.
 *   Products may also come as CSV with camelCase-named columns (productKey, productSecret...).
 * - JSON lines of our own: one object per line, exactly what our export writes.
 * - CSV we write (the credentials export) goes through `csvCell`, which neutralises formula
 *   triggers with a leading `'`; reading CSV undoes that for identifier columns (see there).
 *
 * Pure: no I/O. `readImportRows` adapts any async iterable of bytes (an HTTP request, a file
 * stream) to batches of parsed rows.
 */
import { ThingAuthError } from './errors.js';
import {
  assertDeviceName,
  assertProductKey,
  assertProductName,
  assertSecret,
  IOT_ID_RE,
} from './names.js';
import { NODE_TYPES, type NodeType, type ProductSettingsInput } from './records.js';

export type ImportFormat = 'csv' | 'jsonl';
export const IMPORT_FORMATS: readonly ImportFormat[] = ['csv', 'jsonl'];
export type ImportKind = 'products' | 'devices';

/** A record longer than this is refused: it keeps a runaway quote from buffering the whole upload. */
export const MAX_RECORD_CHARS = 1024 * 1024;

export interface RowError {
  line: number;
  message: string;
}

export interface DeviceImportRow {
  line: number;
  productKey: string;
  deviceName: string;
  deviceSecret: string;
  /** Absent: the importer generates one. */
  iotId?: string;
  nickname?: string | null;
  activatedAt?: string | null;
}

export interface ProductImportRow extends ProductSettingsInput {
  line: number;
  productKey: string;
  productSecret: string;
  productName: string;
}

export type ParsedRow<T> = { row: T; error?: undefined } | { row?: undefined; error: RowError };

function fileError(line: number, message: string): ThingAuthError {
  return new ThingAuthError('INVALID_ARGUMENT', `line ${line}: ${message}`, { field: 'body', line });
}

// ---------------------------------------------------------------------------------------
// CSV cells we write

/**
 * First characters a spreadsheet reads as the start of a formula (OWASP "CSV injection"):
 * `=`, `+`, `-`, `@`, tab and carriage return. DeviceNames may start with `-` or `@`
 * (names.ts), and a pre-registration-free device or a gateway chooses its own name.
 */
const FORMULA_TRIGGER = /^[=+\-@\t\r]/;

/**
 * One CSV cell as we write it: a value starting with a formula trigger gets a leading `'`
 * (OWASP's advice: spreadsheets then show it as text), then RFC 4180 quoting when needed.
 */
export function csvCell(v: string): string {
  const safe = FORMULA_TRIGGER.test(v) ? `'${v}` : v;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

/**
 * Columns whose values can never contain `'` (names.ts): there a leading `'` before a formula
 * trigger can only be csvCell's (or a spreadsheet's) neutralisation, so reading removes it and
 * export -> import round-trips. Free-text columns (names, descriptions) keep what they hold.
 */
const NEUTRALISED_COLUMNS: ReadonlySet<string> = new Set(['productKey', 'deviceName', 'deviceSecret', 'productSecret', 'iotId']);

function withoutNeutralisation(field: string, value: string): string {
  return NEUTRALISED_COLUMNS.has(field) && value.startsWith("'") && FORMULA_TRIGGER.test(value.slice(1)) ? value.slice(1) : value;
}

// ---------------------------------------------------------------------------------------
// CSV records

export interface CsvRecord {
  /** 1-based line on which the record starts. */
  line: number;
  fields: string[];
}

interface ScannedRecord {
  fields: string[];
  next: number;
  newlines: number;
}

function countNewlines(s: string, from: number, to: number): number {
  let n = 0;
  for (let i = s.indexOf('\n', from); i >= 0 && i < to; i = s.indexOf('\n', i + 1)) n++;
  return n;
}

/** Where unquoted field text starting at `pos` ends: at the next comma or newline, or the end of `s`. */
function unquotedEnd(s: string, pos: number): number {
  let end = pos;
  while (end < s.length) {
    const c = s.charCodeAt(end);
    if (c === 44 || c === 10) break;
    end++;
  }
  return end;
}

/** Field text without the \r of a CRLF line ending. */
function withoutCr(text: string): string {
  return text.endsWith('\r') ? text.slice(0, -1) : text;
}

/**
 * Scans one record starting at `pos`. Returns undefined when the text ends before the record
 * does and more text may follow (`final` false).
 */
function scanRecord(s: string, pos: number, final: boolean, line: number): ScannedRecord | undefined {
  const fields: string[] = [];
  let newlines = 0;
  for (;;) {
    let value: string;
    if (s.charCodeAt(pos) === 34 /* " */) {
      let i = pos + 1;
      value = '';
      for (;;) {
        const q = s.indexOf('"', i);
        if (q < 0) {
          if (!final) return undefined;
          throw fileError(line, 'quoted field is never closed (a " is missing)');
        }
        if (q + 1 === s.length && !final) return undefined; // "" may straddle chunks
        if (s.charCodeAt(q + 1) === 34) {
          value += s.slice(i, q + 1);
          i = q + 2;
          continue;
        }
        value += s.slice(i, q);
        newlines += countNewlines(s, pos, q);
        pos = q + 1;
        break;
      }
      // Lenient about text after the closing quote (`"a"b`): keep it, as spreadsheet tools do.
      const end = unquotedEnd(s, pos);
      if (end === s.length && !final) return undefined;
      value += withoutCr(s.slice(pos, end));
      pos = end;
    } else {
      const end = unquotedEnd(s, pos);
      if (end === s.length && !final) return undefined;
      value = withoutCr(s.slice(pos, end));
      pos = end;
    }
    fields.push(value);
    if (pos >= s.length) return { fields, next: pos, newlines };
    if (s.charCodeAt(pos) === 10) return { fields, next: pos + 1, newlines: newlines + 1 };
    pos++; // the comma
    if (pos >= s.length) {
      if (!final) return undefined;
      fields.push('');
      return { fields, next: pos, newlines };
    }
  }
}

/**
 * What both readers share: text is pushed as it arrives, a leading byte-order mark is
 * dropped, text that does not yet make a whole record waits for the next push (or end), and
 * a waiting record longer than MAX_RECORD_CHARS stops the file with `tooLongMessage`.
 */
abstract class IncrementalReader<T> {
  private pending = '';
  /** Line on which the pending (not yet complete) record starts. */
  line = 1;
  private started = false;

  constructor(private readonly tooLongMessage: string) {}

  push(text: string): T[] {
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    this.pending = this.pending.length === 0 ? text : this.pending + text;
    return this.take(false);
  }

  end(): T[] {
    return this.take(true);
  }

  /**
   * Reads the whole records at the start of `s` into `out`, advancing `line`; returns where
   * the unread rest begins. With `final`, the rest is the file's last record.
   */
  protected abstract drain(s: string, final: boolean, out: T[]): number;

  private take(final: boolean): T[] {
    const s = this.pending;
    const out: T[] = [];
    const pos = this.drain(s, final, out);
    this.pending = pos === 0 ? s : s.slice(pos);
    if (this.pending.length > MAX_RECORD_CHARS) throw fileError(this.line, this.tooLongMessage);
    return out;
  }
}

/** Incremental RFC 4180 reader: push text as it arrives, records come out with their line numbers. */
export class CsvRecordReader extends IncrementalReader<CsvRecord> {
  constructor() {
    super(`record is longer than ${MAX_RECORD_CHARS} characters (is a closing " missing?)`);
  }

  protected drain(s: string, final: boolean, out: CsvRecord[]): number {
    let pos = 0;
    while (pos < s.length) {
      const r = scanRecord(s, pos, final, this.line);
      if (!r) break;
      const blank = r.fields.length === 1 && r.fields[0]!.trim() === '';
      if (!blank) out.push({ line: this.line, fields: r.fields });
      this.line += r.newlines;
      pos = r.next;
    }
    return pos;
  }
}

// ---------------------------------------------------------------------------------------
// JSON lines

export interface JsonLine {
  line: number;
  value?: unknown;
  error?: string;
}

/** Incremental JSON-lines reader; blank lines are skipped, each other line must be one JSON value. */
export class JsonLinesReader extends IncrementalReader<JsonLine> {
  constructor() {
    super(`line is longer than ${MAX_RECORD_CHARS} characters`);
  }

  protected drain(s: string, final: boolean, out: JsonLine[]): number {
    let pos = 0;
    for (;;) {
      let nl = s.indexOf('\n', pos);
      if (nl < 0) {
        if (!final || pos >= s.length) break;
        nl = s.length;
      }
      const text = s.slice(pos, nl).trim();
      if (text !== '') {
        try {
          out.push({ line: this.line, value: JSON.parse(text) });
        } catch (e) {
          out.push({ line: this.line, error: `not valid JSON (${(e as Error).message})` });
        }
      }
      this.line++;
      pos = nl + 1;
    }
    return pos;
  }
}

// ---------------------------------------------------------------------------------------
// Field values

/** A raw row: field name (our camelCase) -> value as found (string from CSV, any JSON type from JSON lines). */
type RawRow = Record<string, unknown>;

const DEVICE_FIELDS = ['productKey', 'deviceName', 'deviceSecret', 'iotId', 'nickname', 'activatedAt'] as const;
const DEVICE_REQUIRED = ['productKey', 'deviceName', 'deviceSecret'] as const;
const PRODUCT_FIELDS = [
  'productKey',
  'productSecret',
  'productName',
  'nodeType',
  'dynamicRegistration',
  'preRegistrationFree',
  'requireTls',
  'replayProtection',
  'deviceLimit',
  'timestampWindowSeconds',
  'description',
] as const;
const PRODUCT_REQUIRED = ['productKey', 'productSecret', 'productName'] as const;
/** One year, the products API's own limit (routes/products.ts), so an import cannot set what the API refuses. */
const MAX_TIMESTAMP_WINDOW_SECONDS = 31_536_000;

/** "ProductKey", "product_key", "PRODUCTKEY" -> "productkey". */
function headerKey(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]/g, '');
}

function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function optionalString(raw: RawRow, field: string, max: number): string | null | undefined {
  const v = raw[field];
  if (v === undefined) return undefined;
  if (v === null || v === '') return null;
  if (typeof v !== 'string') throw new Error(`${field} must be a string`);
  if (v.length > max) throw new Error(`${field} must be at most ${max} characters`);
  return v;
}

function optionalBoolean(raw: RawRow, field: string): boolean | undefined {
  const v = raw[field];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string') {
    const t = v.trim().toLowerCase();
    if (t === 'true' || t === '1' || t === 'yes') return true;
    if (t === 'false' || t === '0' || t === 'no') return false;
  }
  throw new Error(`${field} must be true or false`);
}

/** ISO 8601 timestamps are kept as written when already canonical, so an export re-imports unchanged. */
function optionalTimestamp(raw: RawRow, field: string): string | null | undefined {
  const v = raw[field];
  if (v === undefined) return undefined;
  if (v === null || v === '') return null;
  if (typeof v !== 'string' || !/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(v) || Number.isNaN(Date.parse(v))) {
    throw new Error(`${field} must be an ISO 8601 timestamp such as 2024-01-31T08:00:00.000Z`);
  }
  return new Date(v).toISOString();
}

function requiredString(raw: RawRow, field: string): string {
  const v = raw[field];
  if (v === undefined || v === null || v === '') throw new Error(`${field} is required`);
  if (typeof v !== 'string') throw new Error(`${field} must be a string`);
  return v;
}

/** Validates one device row against the spec's identifier formats (spec 6.2). Throws with a message naming the field. */
export function toDeviceRow(raw: RawRow, line: number): DeviceImportRow {
  const productKey = requiredString(raw, 'productKey');
  assertProductKey(productKey);
  const deviceName = requiredString(raw, 'deviceName');
  assertDeviceName(deviceName);
  const deviceSecret = requiredString(raw, 'deviceSecret');
  assertSecret(deviceSecret, 'deviceSecret');
  const row: DeviceImportRow = { line, productKey, deviceName, deviceSecret };
  const iotId = optionalString(raw, 'iotId', 64);
  if (iotId) {
    if (!IOT_ID_RE.test(iotId)) throw new Error('iotId must be 8-64 alphanumerics');
    row.iotId = iotId;
  }
  const nickname = optionalString(raw, 'nickname', 64);
  if (nickname !== undefined) row.nickname = nickname;
  const activatedAt = optionalTimestamp(raw, 'activatedAt');
  if (activatedAt !== undefined) row.activatedAt = activatedAt;
  return row;
}

export function toProductRow(raw: RawRow, line: number): ProductImportRow {
  const productKey = requiredString(raw, 'productKey');
  assertProductKey(productKey);
  const productSecret = requiredString(raw, 'productSecret');
  assertSecret(productSecret, 'productSecret');
  const productName = requiredString(raw, 'productName');
  assertProductName(productName);
  const row: ProductImportRow = { line, productKey, productSecret, productName };
  if (raw.nodeType !== undefined && raw.nodeType !== null && raw.nodeType !== '') {
    const nodeType = typeof raw.nodeType === 'string' ? raw.nodeType.trim().toUpperCase() : raw.nodeType;
    if (!NODE_TYPES.includes(nodeType as NodeType)) throw new Error(`nodeType must be one of ${NODE_TYPES.join(', ')}`);
    row.nodeType = nodeType as NodeType;
  }
  const dynamicRegistration = optionalBoolean(raw, 'dynamicRegistration');
  if (dynamicRegistration !== undefined) row.dynamicRegistration = dynamicRegistration;
  const preRegistrationFree = optionalBoolean(raw, 'preRegistrationFree');
  if (preRegistrationFree !== undefined) row.preRegistrationFree = preRegistrationFree;
  if (preRegistrationFree && !dynamicRegistration) throw new Error('preRegistrationFree requires dynamicRegistration');
  const requireTls = optionalBoolean(raw, 'requireTls');
  if (requireTls !== undefined) row.requireTls = requireTls;
  const replayProtection = optionalBoolean(raw, 'replayProtection');
  if (replayProtection !== undefined) row.replayProtection = replayProtection;
  if (raw.deviceLimit !== undefined) {
    const v = raw.deviceLimit;
    if (v === null || v === '') row.deviceLimit = null;
    else {
      const n = typeof v === 'string' ? Number(v.trim()) : v;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) throw new Error('deviceLimit must be a whole number of at least 1, or null');
      row.deviceLimit = n;
    }
  }
  if (raw.timestampWindowSeconds !== undefined) {
    const v = raw.timestampWindowSeconds;
    const n = v === null || v === '' ? 0 : typeof v === 'string' ? Number(v.trim()) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_TIMESTAMP_WINDOW_SECONDS) {
      throw new Error(`timestampWindowSeconds must be a whole number from 0 to ${MAX_TIMESTAMP_WINDOW_SECONDS}, or null (0 and null = off)`);
    }
    // 0 and null both mean "off", as in the products API; one spelling keeps comparison simple.
    row.timestampWindowSeconds = n === 0 ? null : n;
  }
  const description = optionalString(raw, 'description', 100);
  if (description !== undefined) row.description = description ?? '';
  return row;
}

// ---------------------------------------------------------------------------------------
// Rows: records -> validated rows, with duplicate detection across the whole file

/**
 * Turns text chunks into validated rows of one kind. Keeps only what duplicate detection
 * needs (one map entry per key seen), never the rows themselves.
 */
export class ImportRowReader<T extends DeviceImportRow | ProductImportRow> {
  private readonly csv?: CsvRecordReader;
  private readonly jsonl?: JsonLinesReader;
  /** CSV: column index -> our field name (undefined = ignored column). */
  private columns?: (string | undefined)[];
  private readonly seenKeys = new Map<string, number>();
  private readonly seenIotIds = new Map<string, number>();
  rows = 0;

  constructor(
    readonly kind: ImportKind,
    readonly format: ImportFormat,
  ) {
    if (format === 'csv') this.csv = new CsvRecordReader();
    else this.jsonl = new JsonLinesReader();
  }

  /** The first line not yet turned into rows. */
  get line(): number {
    return this.csv ? this.csv.line : this.jsonl!.line;
  }

  push(text: string): ParsedRow<T>[] {
    return this.csv ? this.fromCsv(this.csv.push(text)) : this.fromJson(this.jsonl!.push(text));
  }

  end(): ParsedRow<T>[] {
    const out = this.csv ? this.fromCsv(this.csv.end()) : this.fromJson(this.jsonl!.end());
    if (this.csv && !this.columns) throw fileError(1, `the file is empty; expected a header row naming ${this.requiredHeaders()}`);
    return out;
  }

  private fields(): readonly string[] {
    return this.kind === 'devices' ? DEVICE_FIELDS : PRODUCT_FIELDS;
  }

  private required(): readonly string[] {
    return this.kind === 'devices' ? DEVICE_REQUIRED : PRODUCT_REQUIRED;
  }

  private requiredHeaders(): string {
    return this.required().map((f) => f[0]!.toUpperCase() + f.slice(1)).join(', ');
  }

  private readHeader(rec: CsvRecord): void {
    const byKey = new Map(this.fields().map((f) => [f.toLowerCase(), f]));
    const columns: (string | undefined)[] = [];
    const seen = new Set<string>();
    for (const name of rec.fields) {
      const field = byKey.get(headerKey(name));
      if (field && seen.has(field)) throw fileError(rec.line, `column ${name.trim()} appears twice in the header`);
      if (field) seen.add(field);
      columns.push(field);
    }
    const missing = this.required().filter((f) => !seen.has(f));
    if (missing.length > 0) {
      const show = missing.map((f) => f[0]!.toUpperCase() + f.slice(1)).join(', ');
      throw fileError(
        rec.line,
        `the first row must be a header naming the columns ${this.requiredHeaders()} (any order); missing: ${show}`,
      );
    }
    this.columns = columns;
  }

  private fromCsv(records: CsvRecord[]): ParsedRow<T>[] {
    const out: ParsedRow<T>[] = [];
    for (const rec of records) {
      if (!this.columns) {
        this.readHeader(rec);
        continue;
      }
      const raw: RawRow = {};
      const cols = this.columns;
      for (let i = 0; i < cols.length; i++) {
        const f = cols[i];
        if (f !== undefined && i < rec.fields.length) raw[f] = withoutNeutralisation(f, rec.fields[i]!.trim());
      }
      if (rec.fields.length > cols.length && rec.fields.slice(cols.length).some((v) => v.trim() !== '')) {
        out.push({ error: { line: rec.line, message: `row has ${rec.fields.length} fields but the header has ${cols.length}` } });
        continue;
      }
      out.push(this.toRow(raw, rec.line));
    }
    return out;
  }

  private fromJson(lines: JsonLine[]): ParsedRow<T>[] {
    const out: ParsedRow<T>[] = [];
    for (const l of lines) {
      if (l.error !== undefined) out.push({ error: { line: l.line, message: l.error } });
      else if (typeof l.value !== 'object' || l.value === null || Array.isArray(l.value)) {
        out.push({ error: { line: l.line, message: 'each line must be one JSON object' } });
      } else out.push(this.toRow(l.value as RawRow, l.line));
    }
    return out;
  }

  private toRow(raw: RawRow, line: number): ParsedRow<T> {
    this.rows++;
    let row: T;
    try {
      row = (this.kind === 'devices' ? toDeviceRow(raw, line) : toProductRow(raw, line)) as T;
    } catch (e) {
      return { error: { line, message: errMessage(e) } };
    }
    const key = this.kind === 'devices' ? `${row.productKey}/${(row as DeviceImportRow).deviceName}` : row.productKey;
    const first = this.seenKeys.get(key);
    if (first !== undefined) {
      const what = this.kind === 'devices' ? `device ${key}` : `product ${key}`;
      return { error: { line, message: `${what} already appears on line ${first}` } };
    }
    const iotId = (row as DeviceImportRow).iotId;
    if (iotId !== undefined) {
      const firstId = this.seenIotIds.get(iotId);
      if (firstId !== undefined) return { error: { line, message: `iotId ${iotId} already appears on line ${firstId}` } };
      this.seenIotIds.set(iotId, line);
    }
    this.seenKeys.set(key, line);
    return { row };
  }
}

/** Picks the format from a content type: CSV for text/csv, JSON lines for ndjson/jsonl; undefined otherwise. */
export function formatFromContentType(contentType: string | undefined): ImportFormat | undefined {
  const t = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (t === 'text/csv' || t === 'application/csv') return 'csv';
  if (t === 'application/x-ndjson' || t === 'application/jsonl' || t === 'application/x-jsonlines' || t === 'application/jsonlines') return 'jsonl';
  return undefined;
}

/** Picks the format from a file name: .csv -> csv, .jsonl/.ndjson -> jsonl. */
export function formatFromFileName(name: string): ImportFormat | undefined {
  const n = name.toLowerCase();
  if (n.endsWith('.csv')) return 'csv';
  if (n.endsWith('.jsonl') || n.endsWith('.ndjson')) return 'jsonl';
  return undefined;
}

/**
 * Adapts a byte stream to batches of parsed rows (one batch per chunk). Bytes that are not
 * UTF-8 stop the file at the line holding them (rows before it are yielded first): a file
 * in another encoding is refused rather than imported with mangled names. A literal U+FFFD
 * counts as such a byte: it is what a bad conversion leaves behind.
 */
export async function* readImportRows<T extends DeviceImportRow | ProductImportRow>(
  source: AsyncIterable<Uint8Array | string>,
  kind: ImportKind,
  format: ImportFormat,
): AsyncGenerator<ParsedRow<T>[]> {
  const reader = new ImportRowReader<T>(kind, format);
  // Not fatal: bad bytes become U+FFFD, found below with the text before them intact.
  // ignoreBOM keeps the BOM in the text so the readers strip it once, whatever the source.
  const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
  function* feed(text: string): Generator<ParsedRow<T>[]> {
    const bad = text.indexOf('\uFFFD');
    const batch = reader.push(bad < 0 ? text : text.slice(0, bad));
    if (batch.length > 0) yield batch;
    if (bad >= 0) throw fileError(reader.line, 'the file is not valid UTF-8; save it as UTF-8 and retry');
  }
  for await (const chunk of source) yield* feed(typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true }));
  yield* feed(decoder.decode());
  const batch = reader.end();
  if (batch.length > 0) yield batch;
}

export function toDeviceExportLine(d: {
  productKey: string;
  deviceName: string;
  deviceSecret: string;
  iotId: string;
  nickname: string | null;
  activatedAt: string | null;
}): string {
  // Field order fixed so exports diff cleanly.
  return (
    JSON.stringify({
      productKey: d.productKey,
      deviceName: d.deviceName,
      deviceSecret: d.deviceSecret,
      iotId: d.iotId,
      nickname: d.nickname,
      activatedAt: d.activatedAt,
    }) + '\n'
  );
}
