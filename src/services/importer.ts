/**
 * Migration use cases: import products and devices with the keys they already hold, and
 * export them (with secrets) as JSON lines that import back unchanged.
 *
 * Devices stream through in chunks (default 5,000 rows per product) written by
 * store.importDevices, so memory stays bounded by the chunk, not the file. Each chunk is one
 * transaction: a re-run finds the committed rows identical and carries on (idempotent).
 * A dry run walks the same path with read-only checks against the store and writes nothing.
 */
import { isThingAuthError, ThingAuthError } from '../core/errors.js';
import {
  readImportRows,
  toDeviceExportLine,
  type DeviceImportRow,
  type ImportFormat,
  type ImportKind,
  type ProductImportRow,
  type RowError,
} from '../core/import-formats.js';
import { IotIdSequence } from '../core/names.js';
import type { Device, Product } from '../core/records.js';
import type { ImportRow, ProductPatch, Store } from '../store/store.js';
import type { RegistryEvents } from './events.js';
import type { Registry } from './registry.js';

export interface ImportOptions {
  /** Validate and classify every row against the store, write nothing. */
  dryRun?: boolean;
  /** Replace the secret (and, for products, the settings) of existing entries that differ. */
  overwrite?: boolean;
}

export interface ImportConflict {
  line: number;
  productKey: string;
  deviceName?: string;
  /** What differs (field names only, never values). */
  message: string;
}

export interface ImportSummary {
  kind: ImportKind;
  format: ImportFormat;
  dryRun: boolean;
  overwrite: boolean;
  /** Data rows read (valid and invalid; header and blank lines not counted). */
  rows: number;
  created: number;
  /** Already present and identical: skipped. */
  identical: number;
  overwritten: number;
  conflictCount: number;
  /** The first MAX_LISTED conflicts, in file order. */
  conflicts: ImportConflict[];
  invalidCount: number;
  /** The first MAX_LISTED invalid rows, in file order. */
  invalid: RowError[];
  /** Set when the file became unreadable part-way: rows before `line` were processed, none after. */
  aborted?: RowError;
}

/** Lists in a summary stop growing here (counts keep counting) so a bad 500,000-row file still answers in kilobytes. */
export const MAX_LISTED = 1000;
export const IMPORT_CHUNK_ROWS = 5000;

interface ProductState {
  product: Product;
  /**
   * The device limit as last seen: for the dry run and the messages. A real write passes the
   * server default and the store applies the limit in force when it commits (issue 13).
   */
  limit: number;
  /** Devices in the store when first seen (dry run: plus the ones this run would create). */
  count: number;
  /** A write hit the device limit: later new rows are refused without trying. */
  full: boolean;
}

function newSummary(kind: ImportKind, format: ImportFormat, opts: ImportOptions): ImportSummary {
  return {
    kind,
    format,
    dryRun: opts.dryRun === true,
    overwrite: opts.overwrite === true,
    rows: 0,
    created: 0,
    identical: 0,
    overwritten: 0,
    conflictCount: 0,
    conflicts: [],
    invalidCount: 0,
    invalid: [],
  };
}

function addInvalid(s: ImportSummary, e: RowError): void {
  s.invalidCount++;
  if (s.invalid.length < MAX_LISTED) s.invalid.push(e);
}

function addConflict(s: ImportSummary, c: ImportConflict): void {
  s.conflictCount++;
  if (s.conflicts.length < MAX_LISTED) s.conflicts.push(c);
}

/** Lists are filled chunk by chunk per product; put them back in file order for the reader. */
function sortSummary(s: ImportSummary): ImportSummary {
  s.conflicts.sort((a, b) => a.line - b.line);
  s.invalid.sort((a, b) => a.line - b.line);
  return s;
}

/**
 * An import brings DeviceSecrets; an X.509 product's devices log in with certificates only, so
 * imported devices could never log in. Refused (nothing written) rather than half-done.
 */
export function x509ImportRefusal(productKey: string): string {
  return `product ${productKey} authenticates its devices with X.509 certificates: imported DeviceSecrets could never log in; create its devices with their certificates instead (thingauth x509 batch-issue ${productKey} --names <file> --out <file.csv>, or POST /api/v1/products/${productKey}/devices/batch)`;
}

const SECRET_DIFFERS = 'deviceSecret differs from the existing device (use overwrite to replace it)';

export class Importer {
  constructor(
    private readonly store: Store,
    private readonly registry: Registry,
    private readonly events: RegistryEvents,
    private readonly now: () => Date = () => new Date(),
    private readonly chunkRows = IMPORT_CHUNK_ROWS,
  ) {}

  // ---- devices ----

  async importDevices(source: AsyncIterable<Uint8Array | string>, format: ImportFormat, opts: ImportOptions = {}): Promise<ImportSummary> {
    const summary = newSummary('devices', format, opts);
    const states = new Map<string, ProductState | null>();
    const buffers = new Map<string, DeviceImportRow[]>();
    const ids = new IotIdSequence();
    /** Products whose devices log in with X.509 certificates: their rows are refused (x509Refusal). */
    const x509Products = new Set<string>();

    const stateOf = async (productKey: string): Promise<ProductState | null> => {
      let st = states.get(productKey);
      if (st === undefined) {
        const product = await this.store.getProduct(productKey);
        if (product && (await this.store.getProductAuth(productKey))?.authMode === 'x509') x509Products.add(productKey);
        st = product
          ? { product, limit: this.registry.deviceLimitOf(product), count: opts.dryRun ? await this.store.countDevices(productKey) : 0, full: false }
          : null;
        states.set(productKey, st);
      }
      return st;
    };

    const flush = async (productKey: string) => {
      const rows = buffers.get(productKey);
      if (!rows || rows.length === 0) return;
      buffers.set(productKey, []);
      const st = (await stateOf(productKey))!;
      if (opts.dryRun) await this.classifyDevices(st, rows, summary, opts.overwrite === true);
      else await this.writeDevices(st, rows, summary, opts.overwrite === true, ids);
    };

    // Synchronous unless a chunk is due or a product is seen for the first time: a promise
    // per row is measurable at 500,000 rows.
    const onRow = (row: DeviceImportRow): Promise<void> | void => {
      const st = states.get(row.productKey);
      if (st === undefined) return stateOf(row.productKey).then(() => onRow(row));
      if (st === null) {
        addInvalid(summary, { line: row.line, message: `product ${row.productKey} does not exist; import or create the product first` });
        return;
      }
      if (x509Products.has(row.productKey)) {
        addInvalid(summary, { line: row.line, message: x509ImportRefusal(row.productKey) });
        return;
      }
      let buf = buffers.get(row.productKey);
      if (!buf) buffers.set(row.productKey, (buf = []));
      buf.push(row);
      if (buf.length >= this.chunkRows) return flush(row.productKey);
    };
    await this.consume<DeviceImportRow>(source, 'devices', format, summary, onRow);
    for (const pk of buffers.keys()) await flush(pk);
    return sortSummary(summary);
  }

  /**
   * Reads the file row by row; a file that becomes unreadable part-way (a runaway quote, bad
   * UTF-8) is refused outright when nothing was read yet, else reported as `aborted`.
   */
  private async consume<T extends DeviceImportRow | ProductImportRow>(
    source: AsyncIterable<Uint8Array | string>,
    kind: ImportKind,
    format: ImportFormat,
    summary: ImportSummary,
    onRow: (row: T) => Promise<void> | void,
  ): Promise<void> {
    try {
      for await (const batch of readImportRows<T>(source, kind, format)) {
        for (const p of batch) {
          summary.rows++;
          if (p.error) addInvalid(summary, p.error);
          else {
            const pending = onRow(p.row);
            if (pending) await pending;
          }
        }
      }
    } catch (e) {
      if (!isThingAuthError(e) || e.kind !== 'INVALID_ARGUMENT' || summary.rows === 0) throw e;
      const line = typeof e.details?.line === 'number' ? e.details.line : 0;
      summary.aborted = { line, message: e.message };
    }
  }

  private toImportRows(rows: DeviceImportRow[], ids: IotIdSequence): ImportRow[] {
    return rows.map((r) => ({
      deviceName: r.deviceName,
      deviceSecret: r.deviceSecret,
      iotId: r.iotId ?? ids.next(),
      nickname: r.nickname ?? null,
      activatedAt: r.activatedAt ?? null,
    }));
  }

  /**
   * One chunk, one transaction. A chunk refused as a whole (device limit, an iotId taken by
   * another device) is split in halves until the offending rows stand alone, so every
   * other row still lands and each refusal carries its own line number.
   */
  private async writeDevices(st: ProductState, rows: DeviceImportRow[], summary: ImportSummary, overwrite: boolean, ids: IotIdSequence): Promise<void> {
    const pk = st.product.productKey;
    if (st.full) {
      // Only existing devices can still be classified; new ones would exceed the limit.
      const existing = await this.existingByName(pk, rows);
      const keep: DeviceImportRow[] = [];
      for (const r of rows) {
        if (existing.has(r.deviceName)) keep.push(r);
        else addInvalid(summary, { line: r.line, message: this.limitMessage(st) });
      }
      rows = keep;
      if (rows.length === 0) return;
    }
    // Overwritten devices are announced with their real iotId so caches keyed either way drop them.
    const existingIds = new Map<string, string>();
    if (overwrite) for (const d of (await this.existingByName(pk, rows)).values()) existingIds.set(d.deviceName, d.iotId);
    const importRows = this.toImportRows(rows, ids);
    let result;
    try {
      result = await this.store.importDevices(pk, importRows, this.registry.limits.deviceLimit, overwrite, this.now().toISOString());
    } catch (e) {
      if (!isThingAuthError(e) || (e.kind !== 'DEVICE_LIMIT_REACHED' && e.kind !== 'CONFLICT')) throw e;
      // The limit the store applied (it may have changed since this import read the product).
      const applied = e.kind === 'DEVICE_LIMIT_REACHED' ? e.details?.['limit'] : undefined;
      if (typeof applied === 'number') st.limit = applied;
      if (rows.length === 1) {
        if (e.kind === 'DEVICE_LIMIT_REACHED') st.full = true;
        addInvalid(summary, { line: rows[0]!.line, message: e.kind === 'DEVICE_LIMIT_REACHED' ? this.limitMessage(st) : e.message });
        return;
      }
      const half = rows.length >> 1;
      await this.writeDevices(st, rows.slice(0, half), summary, overwrite, ids);
      await this.writeDevices(st, rows.slice(half), summary, overwrite, ids);
      return;
    }
    summary.created += result.created;
    summary.identical += result.identical;
    summary.overwritten += result.overwritten;
    const conflicted = new Set(result.conflicts);
    for (const r of rows) {
      if (conflicted.has(r.deviceName)) addConflict(summary, { line: r.line, productKey: pk, deviceName: r.deviceName, message: SECRET_DIFFERS });
    }
    // After the commit: caches (the authenticator's, negative lookups included) must see the new keys.
    for (let i = 0; i < rows.length; i++) {
      const name = rows[i]!.deviceName;
      if (conflicted.has(name)) continue;
      this.events.emit('device.changed', { iotId: existingIds.get(name) ?? importRows[i]!.iotId, productKey: pk, deviceName: name });
    }
  }

  private limitMessage(st: ProductState): string {
    return `device limit reached: product ${st.product.productKey} may hold at most ${st.limit} devices`;
  }

  private async existingByName(productKey: string, rows: DeviceImportRow[]): Promise<Map<string, Device>> {
    const found = await this.store.getDevicesByName(productKey, rows.map((r) => r.deviceName));
    return new Map(found.map((d) => [d.deviceName, d]));
  }

  /** The dry-run twin of writeDevices: the same decisions, read-only, one lookup per chunk. */
  private async classifyDevices(st: ProductState, rows: DeviceImportRow[], summary: ImportSummary, overwrite: boolean): Promise<void> {
    const pk = st.product.productKey;
    const byName = await this.existingByName(pk, rows);
    for (const r of rows) {
      const existing = byName.get(r.deviceName);
      if (existing) {
        if (existing.deviceSecret === r.deviceSecret) summary.identical++;
        else if (overwrite) summary.overwritten++;
        else addConflict(summary, { line: r.line, productKey: pk, deviceName: r.deviceName, message: SECRET_DIFFERS });
        continue;
      }
      if (r.iotId !== undefined && (await this.store.getDeviceByIotId(r.iotId))) {
        addInvalid(summary, { line: r.line, message: `iotId ${r.iotId} is already used by another device` });
        continue;
      }
      if (st.count >= st.limit) {
        addInvalid(summary, { line: r.line, message: this.limitMessage(st) });
        continue;
      }
      st.count++;
      summary.created++;
    }
  }

  // ---- products ----

  async importProducts(source: AsyncIterable<Uint8Array | string>, format: ImportFormat, opts: ImportOptions = {}): Promise<ImportSummary> {
    const summary = newSummary('products', format, opts);
    await this.consume<ProductImportRow>(source, 'products', format, summary, async (row) => {
      try {
        await this.importProduct(row, summary, opts);
      } catch (e) {
        if (!isThingAuthError(e) || e.httpStatus >= 500) throw e;
        addInvalid(summary, { line: row.line, message: e.message });
      }
    });
    return sortSummary(summary);
  }

  private async importProduct(row: ProductImportRow, summary: ImportSummary, opts: ImportOptions): Promise<void> {
    const existing = await this.store.getProduct(row.productKey);
    if (!existing) {
      if (!opts.dryRun) {
        try {
          await this.registry.createProduct({
            productKey: row.productKey,
            productSecret: row.productSecret,
            productName: row.productName,
            nodeType: row.nodeType,
            dynamicRegistration: row.dynamicRegistration,
            preRegistrationFree: row.preRegistrationFree,
            requireTls: row.requireTls,
            replayProtection: row.replayProtection,
            deviceLimit: row.deviceLimit,
            timestampWindowSeconds: row.timestampWindowSeconds,
            description: row.description,
          });
        } catch (e) {
          // Created by someone else between our read and write: judge it like any existing product.
          if (isThingAuthError(e) && e.kind === 'PRODUCT_KEY_TAKEN') return this.importProduct(row, summary, opts);
          throw e;
        }
      }
      summary.created++;
      return;
    }
    const patch = productPatch(existing, row);
    const secretDiffers = existing.productSecret !== row.productSecret;
    const differing = [...(secretDiffers ? ['productSecret'] : []), ...Object.keys(patch)];
    if (differing.length === 0) {
      summary.identical++;
      return;
    }
    if (!opts.overwrite) {
      addConflict(summary, {
        line: row.line,
        productKey: row.productKey,
        message: `${differing.join(', ')} ${differing.length === 1 ? 'differs' : 'differ'} from the existing product (use overwrite to replace)`,
      });
      return;
    }
    // A dry run can only tell from the count as it is now; a real run is refused by the store
    // (updateProduct decides under the same lock as device creates).
    if (opts.dryRun && patch.nodeType !== undefined && (await this.store.countDevices(row.productKey)) > 0) {
      throw new ThingAuthError('CONFLICT', `nodeType of product ${row.productKey} cannot change while it has devices`, { field: 'nodeType' });
    }
    const dyn = patch.dynamicRegistration ?? existing.dynamicRegistration;
    const free = patch.preRegistrationFree ?? existing.preRegistrationFree;
    if (free && !dyn) throw new ThingAuthError('INVALID_ARGUMENT', 'preRegistrationFree requires dynamicRegistration', { field: 'preRegistrationFree' });
    // An X.509 product refuses dynamic registration (and SUB_DEVICE): the dry run says so too.
    if (opts.dryRun) await this.registry.assertFitsAuthMode(row.productKey, patch);
    if (!opts.dryRun) {
      // Settings first: if they are refused, the secret stays as it was.
      if (Object.keys(patch).length > 0) await this.registry.updateProduct(row.productKey, patch);
      if (secretDiffers) {
        await this.store.setProductSecret(row.productKey, row.productSecret, this.now().toISOString());
        this.events.emit('product.changed', { productKey: row.productKey });
      }
    }
    summary.overwritten++;
  }

  // ---- export ----

  /** JSON lines, one device per line with its secret, in DeviceName order (keyset pages, so 500,000 devices stay linear). */
  async *exportDevices(productKey: string, pageSize = 5000): AsyncGenerator<string> {
    await this.registry.getProduct(productKey);
    let after: string | null = null;
    for (;;) {
      const page: Device[] = await this.store.listDevicesAfter(productKey, after, pageSize);
      if (page.length > 0) yield page.map((d) => toDeviceExportLine(d)).join('');
      if (page.length < pageSize) return;
      after = page[page.length - 1]!.deviceName;
    }
  }

  /**
   * JSON lines, one product per line with its secret and settings, in ProductKey order so an
   * export of an imported copy is byte-identical. Products are few (1,000 per account), so
   * they are collected before sorting.
   */
  async *exportProducts(pageSize = 500): AsyncGenerator<string> {
    const all: Product[] = [];
    for (let offset = 0; ; offset += pageSize) {
      const page = await this.store.listProducts(offset, pageSize);
      all.push(...page.items);
      if (page.items.length < pageSize) break;
    }
    all.sort((a, b) => (a.productKey < b.productKey ? -1 : a.productKey > b.productKey ? 1 : 0));
    if (all.length > 0) yield all.map((p) => toProductExportLine(p)).join('');
  }
}

/** Settings of an import row that differ from the product (fields absent from the row are not compared). */
function productPatch(p: Product, row: ProductImportRow): ProductPatch {
  const patch: ProductPatch = {};
  if (row.productName !== p.productName) patch.productName = row.productName;
  if (row.nodeType !== undefined && row.nodeType !== p.nodeType) patch.nodeType = row.nodeType;
  if (row.dynamicRegistration !== undefined && row.dynamicRegistration !== p.dynamicRegistration) patch.dynamicRegistration = row.dynamicRegistration;
  if (row.preRegistrationFree !== undefined && row.preRegistrationFree !== p.preRegistrationFree) patch.preRegistrationFree = row.preRegistrationFree;
  if (row.requireTls !== undefined && row.requireTls !== p.requireTls) patch.requireTls = row.requireTls;
  if (row.replayProtection !== undefined && row.replayProtection !== p.replayProtection) patch.replayProtection = row.replayProtection;
  if (row.deviceLimit !== undefined && row.deviceLimit !== p.deviceLimit) patch.deviceLimit = row.deviceLimit;
  if (row.timestampWindowSeconds !== undefined && row.timestampWindowSeconds !== (p.timestampWindowSeconds ?? null)) {
    // The store's patch says "off" with 0; the row says it with null.
    patch.timestampWindowSeconds = row.timestampWindowSeconds ?? 0;
  }
  if (row.description !== undefined && row.description !== p.description) patch.description = row.description;
  return patch;
}

export function toProductExportLine(p: Product): string {
  return (
    JSON.stringify({
      productKey: p.productKey,
      productSecret: p.productSecret,
      productName: p.productName,
      nodeType: p.nodeType,
      dynamicRegistration: p.dynamicRegistration,
      preRegistrationFree: p.preRegistrationFree,
      requireTls: p.requireTls,
      replayProtection: p.replayProtection,
      deviceLimit: p.deviceLimit,
      timestampWindowSeconds: p.timestampWindowSeconds ?? null,
      description: p.description,
    }) + '\n'
  );
}
