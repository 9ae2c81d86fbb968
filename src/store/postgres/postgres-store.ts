/**
 * PostgreSQL adapter of the Store port (node-postgres, a pool). Several thingauth processes
 * may share one database, so every invariant is held by the database, never by this process:
 * - DeviceName unique per product: the UNIQUE (product_key, device_name) constraint, checked
 *   first under the product's count-row lock so the answer names the taken names;
 * - the per-product device limit: every write that adds or removes devices locks the
 *   product's product_counts row (SELECT ... FOR UPDATE) first, then checks and moves the count
 *   in the same transaction;
 * - the per-gateway sub-device limit: attaches lock the gateway's device row first;
 * - one gateway per sub-device: it is one column; claims are one conditional UPDATE (PostgreSQL
 *   re-checks the condition on the newest row version after waiting for a concurrent writer);
 * - regnwl slots: issuing locks the device row; registration randoms: a primary key.
 * Transactions run at READ COMMITTED and are retried on deadlock or serialization failure.
 * Secrets are sealed exactly as the SQLite adapter seals them (../secret-binding.ts).
 */
import { auditEntryOf, DEVICE_COLUMNS, deviceIds, managementTokenOf, newDeviceRecord, PRODUCT_COLUMNS, tokenSlotOf } from '../columns.js';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { ThingAuthError } from '../../core/errors.js';
import type { Device, DeviceTokenCredential, DeviceTokenSlot, NodeType, Product } from '../../core/records.js';
import type { SecretCipher } from '../../core/secret-cipher.js';
import { ENCRYPTED_COLUMNS, openSecret, sealSecret, type EncryptedTable } from '../secret-binding.js';
import type {
  Application,
  AuditEntry,
  AuditQuery,
  DeviceBindings,
  DeviceCopy,
  DeviceFilter,
  DeviceKeysetFilter,
  DevicePatch,
  ImportResult,
  ImportRow,
  ManagementTokenRecord,
  NewDevice,
  Page,
  ProductPatch,
  ReencryptCursor,
  Store,
  StoredDeviceTokenSlot,
  ProductAuthPatch,
  ProductAuthSettings,
  StoredDeviceCertificate,
  StoredProductCa,
} from '../store.js';
import { freeWithoutDynamic, nodeTypeLocked, slotRefusal } from '../product-rules.js';
import { x509SettingsConflict } from '../../core/x509-settings.js';
import { POSTGRES_MIGRATIONS } from './migrations.js';
import { authModeLocked, CERT_COLUMNS, certValues, defaultProductAuth, deviceCertOf, productAuthOf, productCaOf, sealCaKey } from '../x509-rows.js';

type Row = Record<string, any>;
type Db = pg.Pool | pg.PoolClient;

export interface PostgresStoreOptions {
  connectionString: string;
  ssl?: pg.PoolConfig['ssl'];
  cipher: SecretCipher;
  /** Connections in the pool (default 10). */
  poolSize?: number;
  /** "host:port/database" for error messages (never the password). */
  where?: string;
  /** How long to wait for a connection to the server (default 10 s). */
  connectTimeoutMs?: number;
  /** This process's name in presence rows (default: a new random id per start). */
  nodeId?: string;
  /**
   * A node whose heartbeat is older than this is dead: the others mark its devices offline
   * (default 30 s). Heartbeats run every third of it.
   */
  presenceLeaseMs?: number;
}

/** Key for pg_advisory_lock while migrating: any fixed 64-bit number ("thingaut" in ASCII). */
const MIGRATION_LOCK = '8388333287089583476';

/**
 * The encrypted columns as this adapter stores them: SQLite's list without devices.device_token
 * (a column SQLite keeps only for its own slot migration; here tokens live in device_tokens).
 */
const PG_ENCRYPTED: EncryptedTable[] = ENCRYPTED_COLUMNS.map((t) =>
  t.table === 'devices' ? { ...t, columns: t.columns.filter((c) => c !== 'device_token') } : t,
);
/** Primary key of each encrypted table, for the re-encryption cursor (keyset paging). */
const PRIMARY_KEYS: Record<string, string[]> = {
  products: ['product_key'],
  devices: ['iot_id'],
  applications: ['app_key'],
  secret_settings: ['key'],
  device_tokens: ['iot_id', 'slot'],
  product_cas: ['product_key'],
  device_certificates: ['product_key', 'serial'],
};


/** deadlock_detected, serialization_failure: the transaction is safe to run again. */
function isRetryable(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return code === '40P01' || code === '40001';
}

function pgCode(e: unknown): string | undefined {
  return (e as { code?: string }).code;
}

/** The error for a server that cannot be reached, with where and why (never the password). */
export class DatabaseUnreachableError extends ThingAuthError {
  constructor(where: string, cause: unknown) {
    const c = cause as { code?: string; message?: string };
    super('INTERNAL', `cannot reach the PostgreSQL database at ${where}: ${c.message || c.code || String(cause)}${c.code && c.message && !c.message.includes(c.code) ? ` (${c.code})` : ''}`);
    this.name = 'DatabaseUnreachableError';
    this.stack = `${this.name}: ${this.message}`;
  }
}

/**
 * The keyset page query (exported so a test can EXPLAIN the very statement the store runs): a
 * range on the UNIQUE (product_key, device_name) index (COLLATE "C": byte order, as SQLite),
 * in its order; the filters are checked on the rows the range walks.
 */
/** Name search and status of a device filter as WHERE terms (the list and the keyset page share it). */
function postgresDeviceFilter(filter: DeviceKeysetFilter, where: string[], arg: (v: unknown) => string): void {
  if (filter.nameContains) where.push(`strpos(device_name, ${arg(filter.nameContains)}) > 0`);
  switch (filter.status) {
    case 'DISABLE':
      where.push('NOT enabled');
      break;
    case 'ONLINE':
      where.push('enabled AND online');
      break;
    case 'OFFLINE':
      where.push('enabled AND NOT online AND activated_at IS NOT NULL');
      break;
    case 'UNACTIVE':
      where.push('enabled AND NOT online AND activated_at IS NULL');
      break;
    default:
      break;
  }
}

export function postgresDevicesAfterQuery(productKey: string, afterDeviceName: string | null, limit: number, filter: DeviceKeysetFilter = {}): { sql: string; args: unknown[] } {
  const where = ['product_key = $1', 'device_name > $2'];
  const args: unknown[] = [productKey, afterDeviceName ?? ''];
  const arg = (v: unknown) => (args.push(v), `$${args.length}`);
  postgresDeviceFilter(filter, where, arg);
  return { sql: `SELECT * FROM devices WHERE ${where.join(' AND ')} ORDER BY device_name LIMIT ${arg(limit)}`, args };
}

export class PostgresStore implements Store {
  readonly pool: pg.Pool;
  /** This process's name in presence rows: a starting or stopping node clears only its own devices. */
  readonly nodeId: string;
  private readonly cipher: SecretCipher;
  private readonly where: string;
  private readonly leaseMs: number;
  private heartbeat?: NodeJS.Timeout;

  constructor(opts: PostgresStoreOptions) {
    this.cipher = opts.cipher;
    this.where = opts.where ?? 'the configured server';
    this.nodeId = opts.nodeId ?? randomUUID();
    this.leaseMs = opts.presenceLeaseMs ?? 30_000;
    this.pool = new pg.Pool({
      connectionString: opts.connectionString,
      ssl: opts.ssl,
      max: opts.poolSize ?? 10,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
      application_name: 'thingauth',
    });
    // An idle connection the server drops (restart, failover) must not crash the process.
    this.pool.on('error', () => undefined);
  }

  // ---- plumbing ----

  /** A query on the pool (or the transaction's client); a lost database becomes UNAVAILABLE. */
  private async exec(sql: string, values: unknown[] = [], db: Db = this.pool): Promise<pg.QueryResult> {
    try {
      return await db.query(sql, values);
    } catch (e) {
      throw this.unavailable(e);
    }
  }

  private async q(sql: string, values: unknown[] = [], db: Db = this.pool): Promise<Row[]> {
    return (await this.exec(sql, values, db)).rows as Row[];
  }

  /**
   * A connection-level failure (server down, restarting, unreachable, connection cut) as the
   * retryable UNAVAILABLE; anything else unchanged. The pool drops broken connections and opens
   * new ones on the next call, so the store recovers by itself when the server is back.
   */
  private unavailable(e: unknown): unknown {
    if (e instanceof ThingAuthError) return e;
    const code = pgCode(e) ?? '';
    const message = (e as Error | undefined)?.message ?? '';
    const lost =
      ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EPIPE', '57P01', '57P02', '57P03'].includes(code) ||
      code.startsWith('08') ||
      /Connection terminated|timeout exceeded when trying to connect|connection error|Client was closed/i.test(message);
    if (!lost) return e;
    const err = new ThingAuthError('UNAVAILABLE', `the registry database at ${this.where} is unavailable (${code || message}); retry later`, { retryable: true });
    err.stack = `${err.name}: ${err.message}`;
    return err;
  }

  private async one(sql: string, values: unknown[] = [], db: Db = this.pool): Promise<Row | undefined> {
    return (await this.q(sql, values, db))[0];
  }

  private async count(sql: string, values: unknown[] = [], db: Db = this.pool): Promise<number> {
    const r = await this.one(sql, values, db);
    return r ? Number(r.n) : 0;
  }

  /** Runs `fn` in one transaction on one connection; retried on deadlock or serialization failure. */
  private async tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let c: pg.PoolClient;
      try {
        c = await this.pool.connect();
      } catch (e) {
        throw this.unavailable(e);
      }
      let broken: Error | undefined;
      try {
        await c.query('BEGIN');
        const r = await fn(c);
        await c.query('COMMIT');
        return r;
      } catch (e) {
        await c.query('ROLLBACK').catch((re: Error) => {
          broken = re;
        });
        if (attempt < 8 && isRetryable(e)) {
          await new Promise((r) => setTimeout(r, Math.random() * 10 * attempt));
          continue;
        }
        throw this.unavailable(e);
      } finally {
        c.release(broken);
      }
    }
  }

  async migrate(): Promise<void> {
    let c: pg.PoolClient;
    try {
      c = await this.pool.connect();
    } catch (e) {
      throw new DatabaseUnreachableError(this.where, e);
    }
    let broken: Error | undefined;
    try {
      // Several nodes starting at once: one migrates, the others wait here and then find nothing to do.
      await c.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
      try {
        await c.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
        const applied = new Set((await c.query('SELECT version FROM schema_migrations')).rows.map((r: Row) => Number(r.version)));
        const known = Math.max(...POSTGRES_MIGRATIONS.map((m) => m.version));
        const newest = Math.max(0, ...applied);
        if (newest > known) {
          throw new ThingAuthError(
            'INTERNAL',
            `the database at ${this.where} has schema version ${newest}, newer than this thingauth knows (${known}): it was migrated by a newer thingauth; run that version (or newer) instead`,
          );
        }
        for (const m of POSTGRES_MIGRATIONS) {
          if (applied.has(m.version)) continue;
          await c.query('BEGIN');
          try {
            await c.query(m.sql);
            await c.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [m.version, m.name, new Date().toISOString()]);
            await c.query('COMMIT');
          } catch (e) {
            await c.query('ROLLBACK');
            throw e;
          }
        }
      } finally {
        await c.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch((e: Error) => {
          broken = e;
        });
      }
    } finally {
      c.release(broken);
    }
    await this.beat();
    if (!this.heartbeat) {
      // At least three beats per lease, and at most 2 s apart: a dead node's devices are
      // marked offline within the lease plus one beat (12 s with a cluster's 10 s lease).
      this.heartbeat = setInterval(() => void this.beat().catch(() => undefined), Math.max(50, Math.min(2_000, Math.floor(this.leaseMs / 3))));
      this.heartbeat.unref();
    }
  }

  /**
   * Presence lease: records that this node is alive, then marks offline the devices of nodes
   * whose heartbeat is older than the lease (they died without clearing their own) and forgets
   * those nodes. Database time throughout. A failure (database down) is retried next beat.
   */
  private async beat(): Promise<void> {
    const lease = `${this.leaseMs} milliseconds`;
    await this.exec(
      `INSERT INTO presence_nodes (node_id, started_at, last_seen) VALUES ($1, $2, now())
       ON CONFLICT (node_id) DO UPDATE SET last_seen = now()`,
      [this.nodeId, new Date().toISOString()],
    );
    await this.exec(
      `UPDATE devices SET online = FALSE, online_node = NULL, last_online_at = $2
       WHERE online AND online_node IN (SELECT node_id FROM presence_nodes WHERE last_seen < now() - $1::interval)`,
      [lease, new Date().toISOString()],
    );
    await this.exec('DELETE FROM presence_nodes WHERE last_seen < now() - $1::interval', [lease]);
  }

  async ping(): Promise<void> {
    await this.exec('SELECT 1');
  }

  async close(): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    if (this.pool.ended) return;
    // A clean stop: the others need not wait for the lease (its devices were cleared by markAllOffline).
    await this.exec('DELETE FROM presence_nodes WHERE node_id = $1', [this.nodeId]).catch(() => undefined);
    await this.pool.end();
  }

  // ---- mapping ----

  private toProduct(r: Row): Product {
    return {
      productKey: r.product_key,
      productName: r.product_name,
      productSecret: openSecret(this.cipher, 'products', 'product_secret', [r.product_key], r.product_secret),
      nodeType: r.node_type as NodeType,
      dynamicRegistration: r.dynamic_registration,
      preRegistrationFree: r.pre_registration_free,
      requireTls: r.require_tls,
      replayProtection: r.replay_protection,
      deviceLimit: r.device_limit ?? null,
      description: r.description,
      createdAt: r.created_at,
      updatedAt: r.updated_at,
      ...(typeof r.timestamp_window_seconds === 'number' && r.timestamp_window_seconds > 0 ? { timestampWindowSeconds: r.timestamp_window_seconds } : {}),
    };
  }

  private toDevice(r: Row): Device {
    const ids = deviceIds(r.iot_id, r.product_key, r.device_name);
    return {
      iotId: r.iot_id,
      productKey: r.product_key,
      deviceName: r.device_name,
      deviceSecret: openSecret(this.cipher, 'devices', 'device_secret', ids, r.device_secret),
      previousDeviceSecret: r.previous_device_secret ? openSecret(this.cipher, 'devices', 'previous_device_secret', ids, r.previous_device_secret) : null,
      previousSecretExpiresAt: r.previous_expires_at ?? null,
      nickname: r.nickname ?? null,
      enabled: r.enabled,
      online: r.online,
      createdAt: r.created_at,
      activatedAt: r.activated_at ?? null,
      lastOnlineAt: r.last_online_at ?? null,
      gatewayIotId: r.gateway_iot_id ?? null,
      registeredByGatewayIotId: r.registered_by_gateway_iot_id ?? null,
      lastAuthError: r.last_auth_error ?? null,
      lastAuthErrorAt: r.last_auth_error_at ?? null,
      lastAuthErrorSource: r.last_auth_error_source ?? null,
    };
  }

  private sealDevice(column: 'device_secret' | 'previous_device_secret', ids: unknown[], v: string | null | undefined): string | null {
    return v === null || v === undefined ? null : sealSecret(this.cipher, 'devices', column, ids, v);
  }

  // ---- products ----

  async createProduct(p: Product): Promise<void> {
    try {
      await this.tx(async (c) => {
        await c.query(
          `INSERT INTO products (product_key, product_name, product_secret, node_type, dynamic_registration, pre_registration_free,
             require_tls, replay_protection, device_limit, description, created_at, updated_at, timestamp_window_seconds)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
          [
            p.productKey,
            p.productName,
            sealSecret(this.cipher, 'products', 'product_secret', [p.productKey], p.productSecret),
            p.nodeType,
            p.dynamicRegistration,
            p.preRegistrationFree,
            p.requireTls,
            p.replayProtection,
            p.deviceLimit,
            p.description,
            p.createdAt,
            p.updatedAt,
            p.timestampWindowSeconds ? p.timestampWindowSeconds : null,
          ],
        );
        await c.query('INSERT INTO product_counts (product_key, devices) VALUES ($1, 0)', [p.productKey]);
      });
    } catch (e) {
      if (pgCode(e) === '23505') throw new ThingAuthError('PRODUCT_KEY_TAKEN', `productKey ${p.productKey} already exists`);
      throw e;
    }
  }

  async getProduct(productKey: string): Promise<Product | undefined> {
    const r = await this.one('SELECT * FROM products WHERE product_key = $1', [productKey]);
    return r ? this.toProduct(r) : undefined;
  }

  async listProducts(offset: number, limit: number): Promise<Page<Product>> {
    const total = await this.count('SELECT COUNT(*) AS n FROM products');
    const rows = await this.q('SELECT * FROM products ORDER BY created_at, product_key LIMIT $1 OFFSET $2', [limit, offset]);
    return { items: rows.map((r) => this.toProduct(r)), total, offset, limit };
  }

  async updateProduct(productKey: string, patch: ProductPatch, updatedAt: string): Promise<Product> {
    const sets: string[] = [];
    const values: unknown[] = [];
    for (const [k, v] of Object.entries(patch)) {
      const col = PRODUCT_COLUMNS[k as keyof ProductPatch];
      if (!col || v === undefined) continue;
      values.push(k === 'timestampWindowSeconds' && v === 0 ? null : v);
      sets.push(`${col} = $${values.length}`);
    }
    values.push(updatedAt);
    sets.push(`updated_at = $${values.length}`);
    values.push(productKey);
    return this.tx(async (c) => {
      // The count row's lock orders this update with every device write of the product (they
      // all take it first): a create on any node sees the deviceLimit and nodeType either from
      // before or from after this update, and the nodeType check below sees its devices.
      const count = await this.lockCount(c, productKey);
      if (patch.nodeType !== undefined && count > 0) {
        const cur = await this.one('SELECT node_type FROM products WHERE product_key = $1', [productKey], c);
        if (cur && cur.node_type !== patch.nodeType) throw nodeTypeLocked(productKey, count);
      }
      const r = await this.one(`UPDATE products SET ${sets.join(', ')} WHERE product_key = $${values.length} RETURNING *`, values, c);
      if (!r) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${productKey} not found`);
      // Judged on the row as updated, so two patches racing from different nodes cannot combine into it.
      if (r.pre_registration_free && !r.dynamic_registration) throw freeWithoutDynamic();
      if (patch.dynamicRegistration === true || patch.nodeType === 'SUB_DEVICE') {
        const auth = await this.one('SELECT auth_mode FROM product_auth WHERE product_key = $1', [productKey], c);
        const refused = x509SettingsConflict(productKey, (auth?.auth_mode as string | undefined) ?? 'secret', patch.dynamicRegistration === true && Boolean(r.dynamic_registration), patch.nodeType === 'SUB_DEVICE' ? (r.node_type as string) : 'DEVICE');
        if (refused) throw refused;
      }
      return this.toProduct(r);
    });
  }

  async setProductSecret(productKey: string, productSecret: string, updatedAt: string): Promise<Product> {
    const r = await this.one('UPDATE products SET product_secret = $1, updated_at = $2 WHERE product_key = $3 RETURNING *', [
      sealSecret(this.cipher, 'products', 'product_secret', [productKey], productSecret),
      updatedAt,
      productKey,
    ]);
    if (!r) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${productKey} not found`);
    return this.toProduct(r);
  }

  async deleteProduct(productKey: string): Promise<void> {
    await this.tx(async (c) => {
      const n = await this.lockCount(c, productKey);
      if (n > 0) throw new ThingAuthError('PRODUCT_HAS_DEVICES', `product ${productKey} still has ${n} devices; delete them first`, { devices: n });
      await c.query('DELETE FROM products WHERE product_key = $1', [productKey]);
    });
  }

  // ---- devices ----

  /**
   * Locks the product's count row for this transaction and returns the count: every write that
   * changes a product's devices takes this lock first, so they run one after another per
   * product, on any node.
   */
  private async lockCount(c: pg.PoolClient, productKey: string): Promise<number> {
    const r = await this.one('SELECT devices FROM product_counts WHERE product_key = $1 FOR UPDATE', [productKey], c);
    if (!r) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${productKey} not found`);
    return r.devices as number;
  }

  /**
   * Locks the count row (lockCount) and reads the device limit in force under that lock: the
   * product's own deviceLimit, else `defaultLimit`. updateProduct takes the same lock, so a limit
   * changed on another node applies to every create that commits after it.
   */
  private async lockCountAndLimit(c: pg.PoolClient, productKey: string, defaultLimit: number): Promise<{ count: number; limit: number }> {
    const count = await this.lockCount(c, productKey);
    const r = await this.one('SELECT device_limit FROM products WHERE product_key = $1', [productKey], c);
    if (!r) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${productKey} not found`);
    return { count, limit: (r.device_limit as number | null) ?? defaultLimit };
  }

  private limitError(limit: number, productKey: string, count: number, adding: number) {
    return new ThingAuthError(
      'DEVICE_LIMIT_REACHED',
      `device limit reached: product ${productKey} may hold at most ${limit} devices; it has ${count} and ${adding} more would exceed the limit`,
      { limit, devices: count },
    );
  }

  /** Inserts the rows in the given order (that order is the list order) in one statement. */
  private async insertDeviceRows(c: pg.PoolClient, productKey: string, devices: NewDevice[], createdAt: string): Promise<void> {
    if (devices.length === 0) return;
    await c.query(
      `INSERT INTO devices (iot_id, product_key, device_name, device_secret, nickname, created_at, activated_at)
       SELECT i, $2, n, s, nk, $6, a FROM unnest($1::text[], $3::text[], $4::text[], $5::text[], $7::text[]) WITH ORDINALITY AS t(i, n, s, nk, a, ord)
       ORDER BY ord`,
      [
        devices.map((d) => d.iotId),
        productKey,
        devices.map((d) => d.deviceName),
        devices.map((d) => this.sealDevice('device_secret', deviceIds(d.iotId, productKey, d.deviceName), d.deviceSecret)),
        devices.map((d) => d.nickname ?? null),
        createdAt,
        devices.map((d) => d.activatedAt ?? null),
      ],
    );
  }

  /** A unique violation from a device insert, as the Store's error. */
  private insertConflict(e: unknown, productKey: string, names: string[]): unknown {
    if (pgCode(e) !== '23505') return e;
    const constraint = (e as { constraint?: string }).constraint;
    if (constraint === 'devices_product_name') {
      return new ThingAuthError('DEVICE_NAME_TAKEN', `deviceName already exists in product ${productKey}`, { names: names.slice(0, 100) });
    }
    return new ThingAuthError('CONFLICT', 'iotId is already used by another device');
  }

  async createDevices(productKey: string, devices: NewDevice[], defaultLimit: number, createdAt: string): Promise<Device[]> {
    return this.tx(async (c) => {
      const { count, limit } = await this.lockCountAndLimit(c, productKey, defaultLimit);
      if (count + devices.length > limit) throw this.limitError(limit, productKey, count, devices.length);
      const names = devices.map((d) => d.deviceName);
      const existing = new Set(
        (await this.q('SELECT device_name FROM devices WHERE product_key = $1 AND device_name = ANY($2::text[])', [productKey, names], c)).map((r) => r.device_name as string),
      );
      const seen = new Set<string>();
      const taken: string[] = [];
      for (const n of names) {
        if (seen.has(n) || existing.has(n)) taken.push(n);
        seen.add(n);
      }
      if (taken.length > 0) {
        throw new ThingAuthError('DEVICE_NAME_TAKEN', `deviceName already exists in product ${productKey}: ${taken.slice(0, 10).join(', ')}${taken.length > 10 ? ` and ${taken.length - 10} more` : ''}`, { names: taken.slice(0, 100) });
      }
      try {
        await this.insertDeviceRows(c, productKey, devices, createdAt);
      } catch (e) {
        throw this.insertConflict(e, productKey, names);
      }
      await c.query('UPDATE product_counts SET devices = devices + $1 WHERE product_key = $2', [devices.length, productKey]);
      return devices.map((d) => newDeviceRecord(productKey, d, createdAt));
    });
  }

  async getOrCreateDevice(productKey: string, device: NewDevice, defaultLimit: number, createdAt: string) {
    // Found without a lock in the common case (the device exists): a login must not queue behind writes.
    const found = await this.one('SELECT * FROM devices WHERE product_key = $1 AND device_name = $2', [productKey, device.deviceName]);
    if (found) return { device: this.toDevice(found), created: false };
    return this.tx(async (c) => {
      const { count, limit } = await this.lockCountAndLimit(c, productKey, defaultLimit);
      const existing = await this.one('SELECT * FROM devices WHERE product_key = $1 AND device_name = $2', [productKey, device.deviceName], c);
      if (existing) return { device: this.toDevice(existing), created: false };
      if (count + 1 > limit) throw this.limitError(limit, productKey, count, 1);
      try {
        await this.insertDeviceRows(c, productKey, [device], createdAt);
      } catch (e) {
        throw this.insertConflict(e, productKey, [device.deviceName]);
      }
      await c.query('UPDATE product_counts SET devices = devices + 1 WHERE product_key = $1', [productKey]);
      return { device: this.toDevice((await this.one('SELECT * FROM devices WHERE iot_id = $1', [device.iotId], c))!), created: true };
    });
  }

  async importDevices(productKey: string, rows: ImportRow[], defaultLimit: number, overwrite: boolean, createdAt: string): Promise<ImportResult> {
    return this.tx(async (c) => {
      const result: ImportResult = { created: 0, identical: 0, overwritten: 0, conflicts: [] };
      const locked = await this.lockCountAndLimit(c, productKey, defaultLimit);
      let count = locked.count;
      const limit = locked.limit;
      const existingRows = await this.q('SELECT * FROM devices WHERE product_key = $1 AND device_name = ANY($2::text[])', [productKey, rows.map((r) => r.deviceName)], c);
      const existing = new Map(existingRows.map((r) => [r.device_name as string, r]));
      const toCreate: ImportRow[] = [];
      // A name repeated within the import meets its earlier row as it would meet a stored one.
      const pending = new Map<string, number>();
      for (const row of rows) {
        const p = pending.get(row.deviceName);
        if (p !== undefined) {
          if (toCreate[p]!.deviceSecret === row.deviceSecret) result.identical++;
          else if (overwrite) (toCreate[p] = { ...toCreate[p]!, deviceSecret: row.deviceSecret }), result.overwritten++;
          else result.conflicts.push(row.deviceName);
          continue;
        }
        const e = existing.get(row.deviceName);
        if (e) {
          const ids = deviceIds(e.iot_id, e.product_key, e.device_name);
          const secret = openSecret(this.cipher, 'devices', 'device_secret', ids, e.device_secret);
          if (secret === row.deviceSecret) {
            result.identical++;
          } else if (overwrite) {
            const sealed = this.sealDevice('device_secret', ids, row.deviceSecret);
            await c.query('UPDATE devices SET device_secret = $1, previous_device_secret = NULL, previous_expires_at = NULL WHERE iot_id = $2', [sealed, e.iot_id]);
            e.device_secret = sealed;
            result.overwritten++;
          } else {
            result.conflicts.push(row.deviceName);
          }
          continue;
        }
        if (count + 1 > limit) throw this.limitError(limit, productKey, count, 1);
        count++;
        pending.set(row.deviceName, toCreate.length);
        toCreate.push(row);
      }
      if (toCreate.length > 0) {
        const used = await this.q('SELECT iot_id FROM devices WHERE iot_id = ANY($1::text[])', [toCreate.map((r) => r.iotId)], c);
        if (used.length > 0) throw new ThingAuthError('CONFLICT', `iotId ${used[0]!.iot_id} is already used by another device`, { iotId: used[0]!.iot_id });
        try {
          await this.insertDeviceRows(c, productKey, toCreate, createdAt);
        } catch (e) {
          throw this.insertConflict(e, productKey, toCreate.map((r) => r.deviceName));
        }
        await c.query('UPDATE product_counts SET devices = devices + $1 WHERE product_key = $2', [toCreate.length, productKey]);
      }
      result.created = toCreate.length;
      return result;
    });
  }

  async getDevice(productKey: string, deviceName: string): Promise<Device | undefined> {
    const r = await this.one('SELECT * FROM devices WHERE product_key = $1 AND device_name = $2', [productKey, deviceName]);
    return r ? this.toDevice(r) : undefined;
  }

  async getDevicesByName(productKey: string, deviceNames: string[]): Promise<Device[]> {
    if (deviceNames.length === 0) return [];
    return (await this.q('SELECT * FROM devices WHERE product_key = $1 AND device_name = ANY($2::text[])', [productKey, deviceNames])).map((r) => this.toDevice(r));
  }

  async getDeviceByIotId(iotId: string): Promise<Device | undefined> {
    const r = await this.one('SELECT * FROM devices WHERE iot_id = $1', [iotId]);
    return r ? this.toDevice(r) : undefined;
  }

  async listDevices(productKey: string, filter: DeviceFilter, offset: number, limit: number): Promise<Page<Device>> {
    const where: string[] = [];
    const args: unknown[] = [];
    const arg = (v: unknown) => (args.push(v), `$${args.length}`);
    // Sub-devices of a gateway may belong to any product.
    if (filter.gatewayIotId) where.push(`gateway_iot_id = ${arg(filter.gatewayIotId)}`);
    else where.push(`product_key = ${arg(productKey)}`);
    postgresDeviceFilter(filter, where, arg);
    const w = where.join(' AND ');
    const total = await this.count(`SELECT COUNT(*) AS n FROM devices WHERE ${w}`, args);
    // Creation order (seq), as SQLite's rowid order.
    const rows = await this.q(`SELECT * FROM devices WHERE ${w} ORDER BY seq LIMIT ${arg(limit)} OFFSET ${arg(offset)}`, args);
    return { items: rows.map((r) => this.toDevice(r)), total, offset, limit };
  }

  async listDevicesAfter(productKey: string, afterDeviceName: string | null, limit: number, filter: DeviceKeysetFilter = {}): Promise<Device[]> {
    const { sql, args } = postgresDevicesAfterQuery(productKey, afterDeviceName, limit, filter);
    const rows = await this.q(sql, args);
    return rows.map((r) => this.toDevice(r));
  }

  async countDevices(productKey: string): Promise<number> {
    const r = await this.one('SELECT devices FROM product_counts WHERE product_key = $1', [productKey]);
    if (!r) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${productKey} not found`);
    return r.devices as number;
  }

  async productCountMismatches(): Promise<{ productKey: string; counted: number; actual: number }[]> {
    const rows = await this.q(
      `SELECT * FROM (
         SELECT p.product_key AS "productKey", COALESCE(c.devices, -1) AS counted,
           (SELECT COUNT(*) FROM devices d WHERE d.product_key = p.product_key)::int AS actual
         FROM products p LEFT JOIN product_counts c ON c.product_key = p.product_key) x
       WHERE counted <> actual ORDER BY "productKey"`,
    );
    return rows as { productKey: string; counted: number; actual: number }[];
  }

  async updateDevice(iotId: string, patch: DevicePatch): Promise<Device | undefined> {
    const setsSecret = patch.deviceSecret !== undefined && patch.deviceSecret !== null;
    const update = async (db: Db): Promise<Device | undefined> => {
      // A secret is sealed for its row: read the row's identity first (locked, same transaction).
      let ids: unknown[] | undefined;
      if (setsSecret) {
        const r = await this.one('SELECT iot_id, product_key, device_name FROM devices WHERE iot_id = $1 FOR UPDATE', [iotId], db);
        if (!r) return undefined;
        ids = deviceIds(r.iot_id, r.product_key, r.device_name);
      }
      const sets: string[] = [];
      const values: unknown[] = [];
      for (const [k, v] of Object.entries(patch)) {
        const col = DEVICE_COLUMNS[k as keyof DevicePatch];
        if (!col || v === undefined) continue;
        values.push(k === 'deviceSecret' && v !== null ? this.sealDevice('device_secret', ids!, v as string) : v);
        sets.push(`${col} = $${values.length}`);
        if (k === 'deviceSecret') sets.push('previous_device_secret = NULL', 'previous_expires_at = NULL');
      }
      if (sets.length === 0) return this.getDeviceByIotId(iotId);
      values.push(iotId);
      const r = await this.one(`UPDATE devices SET ${sets.join(', ')} WHERE iot_id = $${values.length} RETURNING *`, values, db);
      return r ? this.toDevice(r) : undefined;
    };
    return setsSecret ? this.tx(update) : update(this.pool);
  }

  async deleteDevice(iotId: string): Promise<boolean> {
    const d = await this.one('SELECT product_key FROM devices WHERE iot_id = $1', [iotId]);
    if (!d) return false;
    return this.tx(async (c) => {
      // Count row first (the order every device write takes its locks in), then the device.
      await this.lockCount(c, d.product_key);
      await c.query('UPDATE devices SET gateway_iot_id = NULL WHERE gateway_iot_id = $1', [iotId]);
      const gone = await c.query('DELETE FROM devices WHERE iot_id = $1 AND product_key = $2', [iotId, d.product_key]);
      if (gone.rowCount !== 1) return false;
      await c.query('UPDATE product_counts SET devices = devices - 1 WHERE product_key = $1', [d.product_key]);
      return true;
    });
  }

  async resetDevice(iotId: string): Promise<Device | undefined> {
    return this.tx(async (c) => {
      const r = await this.one(
        `UPDATE devices SET activated_at = NULL, online = FALSE, online_node = NULL, last_auth_error = NULL, last_auth_error_at = NULL, last_auth_error_source = NULL
         WHERE iot_id = $1 RETURNING *`,
        [iotId],
        c,
      );
      if (!r) return undefined;
      await c.query('DELETE FROM registration_randoms WHERE iot_id = $1', [iotId]);
      await c.query('DELETE FROM device_tokens WHERE iot_id = $1', [iotId]);
      return this.toDevice(r);
    });
  }

  // ---- regnwl credential slots ----

  private toCredential(r: Row): DeviceTokenCredential {
    const ids = [r.iot_id, r.product_key, r.device_name, r.slot];
    return { ...tokenSlotOf(r), deviceToken: openSecret(this.cipher, 'device_tokens', 'device_token', ids, r.device_token) };
  }

  async issueDeviceTokenSlot(iotId: string, candidate: { clientId: string; deviceToken: string }, maxSlots: number, at: string) {
    return this.tx(async (c) => {
      // The device row's lock serializes racing regnwl requests for it, on any node.
      const d = await this.one(
        'SELECT iot_id, product_key, device_name, activated_at, gateway_iot_id, registered_by_gateway_iot_id FROM devices WHERE iot_id = $1 FOR UPDATE',
        [iotId],
        c,
      );
      if (!d) return undefined;
      const ids = deviceIds(d.iot_id, d.product_key, d.device_name);
      const rows = await this.q('SELECT * FROM device_tokens WHERE iot_id = $1 ORDER BY slot', [iotId], c);
      // Under the row lock a login that activates (an UPDATE of this row) or a binding is either
      // before (seen here) or after the slot.
      const refused = slotRefusal(d.activated_at !== null, rows.length, d.gateway_iot_id ?? d.registered_by_gateway_iot_id);
      if (refused) return { outcome: 'refused' as const, reason: refused };
      const live = rows.filter((r) => r.revoked_at === null);
      const pending = live.find((r) => r.activated_at === null);
      if (pending) return { outcome: 'existing' as const, credential: this.toCredential(pending) };
      if (live.length >= maxSlots) return { outcome: 'full' as const, live: live.length };
      const taken = new Set(live.map((r) => r.slot as number));
      let slot = 1;
      while (taken.has(slot)) slot++;
      const token = sealSecret(this.cipher, 'device_tokens', 'device_token', [...ids, slot], candidate.deviceToken);
      await c.query(
        `INSERT INTO device_tokens (iot_id, product_key, device_name, slot, client_id, device_token, created_at, activated_at, revoked_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL)
         ON CONFLICT (iot_id, slot) DO UPDATE SET client_id = excluded.client_id, device_token = excluded.device_token,
           created_at = excluded.created_at, activated_at = NULL, revoked_at = NULL`,
        [...ids, slot, candidate.clientId, token, at],
      );
      return { outcome: 'new' as const, credential: { slot, clientId: candidate.clientId, deviceToken: candidate.deviceToken, createdAt: at, activatedAt: null, revokedAt: null } };
    });
  }

  async listDeviceTokenSlots(iotId: string): Promise<DeviceTokenSlot[]> {
    return (await this.q('SELECT * FROM device_tokens WHERE iot_id = $1 ORDER BY slot', [iotId])).map((r) => tokenSlotOf(r));
  }

  async getLiveDeviceTokens(iotId: string): Promise<DeviceTokenCredential[]> {
    return (await this.q('SELECT * FROM device_tokens WHERE iot_id = $1 AND revoked_at IS NULL ORDER BY slot', [iotId])).map((r) => this.toCredential(r));
  }

  async activateDeviceTokenSlot(iotId: string, slot: number, at: string): Promise<boolean> {
    const r = await this.exec('UPDATE device_tokens SET activated_at = $1 WHERE iot_id = $2 AND slot = $3 AND activated_at IS NULL AND revoked_at IS NULL', [at, iotId, slot]);
    return r.rowCount === 1;
  }

  async revokeDeviceTokenSlot(iotId: string, slot: number, at: string): Promise<DeviceTokenSlot | undefined> {
    return this.tx(async (c) => {
      // The token itself is dropped, not just flagged: nothing is left that could log in.
      await c.query('UPDATE device_tokens SET device_token = NULL, revoked_at = $1 WHERE iot_id = $2 AND slot = $3 AND revoked_at IS NULL', [at, iotId, slot]);
      const r = await this.one('SELECT * FROM device_tokens WHERE iot_id = $1 AND slot = $2', [iotId, slot], c);
      return r ? tokenSlotOf(r) : undefined;
    });
  }

  async rotateDeviceSecret(iotId: string, newSecret: string, previousExpiresAt: string | null): Promise<Device | undefined> {
    return this.tx(async (c) => {
      const old = await this.one('SELECT iot_id, product_key, device_name, device_secret FROM devices WHERE iot_id = $1 FOR UPDATE', [iotId], c);
      if (!old) return undefined;
      const ids = deviceIds(old.iot_id, old.product_key, old.device_name);
      const previous =
        previousExpiresAt === null ? null : this.sealDevice('previous_device_secret', ids, openSecret(this.cipher, 'devices', 'device_secret', ids, old.device_secret));
      const r = await this.one(
        'UPDATE devices SET previous_device_secret = $1, previous_expires_at = $2, device_secret = $3 WHERE iot_id = $4 RETURNING *',
        [previous, previousExpiresAt, this.sealDevice('device_secret', ids, newSecret), iotId],
        c,
      );
      return this.toDevice(r!);
    });
  }

  // ---- presence ----

  async markOnline(iotId: string, at: string): Promise<{ activated: boolean }> {
    const r = await this.one(
      'UPDATE devices SET online = TRUE, online_node = $3, last_online_at = $2, activated_at = COALESCE(activated_at, $2) WHERE iot_id = $1 RETURNING activated_at',
      [iotId, at, this.nodeId],
    );
    return { activated: r?.activated_at === at };
  }

  async markOnlineMany(iotIds: string[], at: string): Promise<string[]> {
    if (iotIds.length === 0) return [];
    // Rows locked in iot_id order: two batches that overlap cannot deadlock.
    const rows = await this.q(
      `WITH l AS (SELECT iot_id FROM devices WHERE iot_id = ANY($1::text[]) ORDER BY iot_id FOR UPDATE)
       UPDATE devices d SET online = TRUE, online_node = $3, last_online_at = $2, activated_at = COALESCE(d.activated_at, $2)
       FROM l WHERE d.iot_id = l.iot_id RETURNING d.iot_id, d.activated_at`,
      [iotIds, at, this.nodeId],
    );
    const activated = new Set(rows.filter((r) => r.activated_at === at).map((r) => r.iot_id as string));
    return iotIds.filter((id, i) => activated.has(id) && iotIds.indexOf(id) === i);
  }

  async markOffline(iotIds: string[], at: string): Promise<void> {
    if (iotIds.length === 0) return;
    // Only sessions this node holds: a device that has reconnected to another node meanwhile stays ONLINE.
    await this.q(
      `WITH l AS (SELECT iot_id FROM devices WHERE iot_id = ANY($1::text[]) AND online AND (online_node = $3 OR online_node IS NULL) ORDER BY iot_id FOR UPDATE)
       UPDATE devices d SET online = FALSE, online_node = NULL, last_online_at = $2 FROM l WHERE d.iot_id = l.iot_id AND d.online`,
      [iotIds, at, this.nodeId],
    );
  }

  /** This node's devices only (other nodes' sessions are theirs; a dead node's go with its lease). */
  async markAllOffline(at: string): Promise<void> {
    await this.q('UPDATE devices SET online = FALSE, online_node = NULL, last_online_at = $1 WHERE online AND (online_node = $2 OR online_node IS NULL)', [at, this.nodeId]);
  }

  async useRegistrationRandom(iotId: string, random: string, at: string): Promise<boolean> {
    const r = await this.exec('INSERT INTO registration_randoms (iot_id, random, used_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [iotId, random, at]);
    return r.rowCount === 1;
  }

  // ---- topology ----

  async attachSubDevices(gatewayIotId: string, subIotIds: string[], limit: number): Promise<void> {
    await this.tx(async (c) => {
      // The gateway's row lock serializes attaches to it, on any node; the count is read under it.
      const gw = await this.one('SELECT iot_id FROM devices WHERE iot_id = $1 FOR UPDATE', [gatewayIotId], c);
      if (!gw) throw new ThingAuthError('DEVICE_NOT_FOUND', `gateway ${gatewayIotId} not found`);
      const count = await this.count('SELECT COUNT(*) AS n FROM devices WHERE gateway_iot_id = $1', [gatewayIotId], c);
      const unique = [...new Set(subIotIds)];
      const already = new Set(
        (await this.q('SELECT iot_id FROM devices WHERE iot_id = ANY($1::text[]) AND gateway_iot_id = $2', [unique, gatewayIotId], c)).map((r) => r.iot_id as string),
      );
      const toAttach = unique.filter((id) => !already.has(id));
      if (count + toAttach.length > limit) {
        throw new ThingAuthError('SUB_DEVICE_LIMIT_REACHED', `gateway already has ${count} sub-devices; the limit is ${limit}`, { limit });
      }
      if (toAttach.length === 0) return;
      const r = await c.query('UPDATE devices SET gateway_iot_id = $1 WHERE iot_id = ANY($2::text[])', [gatewayIotId, toAttach]);
      if (r.rowCount !== toAttach.length) {
        const found = new Set((await this.q('SELECT iot_id FROM devices WHERE iot_id = ANY($1::text[])', [toAttach], c)).map((x) => x.iot_id as string));
        const missing = toAttach.find((id) => !found.has(id)) ?? toAttach[0];
        throw new ThingAuthError('DEVICE_NOT_FOUND', `sub-device ${missing} not found`);
      }
    });
  }

  async detachSubDevices(gatewayIotId: string, subIotIds: string[]): Promise<number> {
    const r = await this.exec('UPDATE devices SET gateway_iot_id = NULL WHERE iot_id = ANY($1::text[]) AND gateway_iot_id = $2', [[...new Set(subIotIds)], gatewayIotId]);
    return r.rowCount ?? 0;
  }

  async countSubDevices(gatewayIotId: string): Promise<number> {
    return this.count('SELECT COUNT(*) AS n FROM devices WHERE gateway_iot_id = $1', [gatewayIotId]);
  }

  async claimSubDeviceRegistration(subIotId: string, gatewayIotId: string, opts: { unactivatedOnly?: boolean } = {}): Promise<boolean> {
    // One statement: after waiting for a racing writer, PostgreSQL re-checks the WHERE on the new row.
    const r = await this.exec(
      `UPDATE devices SET registered_by_gateway_iot_id = $2
         WHERE iot_id = $1 AND COALESCE(gateway_iot_id, registered_by_gateway_iot_id, $2) = $2
           AND (NOT $3::boolean OR activated_at IS NULL)`,
      [subIotId, gatewayIotId, opts.unactivatedOnly === true],
    );
    return r.rowCount === 1;
  }

  async releaseSubDevice(subIotId: string): Promise<Device | undefined> {
    return this.tx(async (c) => {
      const r = await this.one('SELECT * FROM devices WHERE iot_id = $1 FOR UPDATE', [subIotId], c);
      if (!r) return undefined;
      await c.query('UPDATE devices SET gateway_iot_id = NULL, registered_by_gateway_iot_id = NULL WHERE iot_id = $1', [subIotId]);
      return this.toDevice(r);
    });
  }

  // ---- applications ----

  private toApp(r: Row): Application {
    return {
      appKey: r.app_key,
      appSecret: openSecret(this.cipher, 'applications', 'app_secret', [r.app_key], r.app_secret),
      name: r.name,
      productKeys: JSON.parse(r.product_keys) as string[],
      createdAt: r.created_at,
    };
  }

  async createApplication(app: Application): Promise<void> {
    try {
      await this.exec('INSERT INTO applications (app_key, app_secret, name, product_keys, created_at) VALUES ($1, $2, $3, $4, $5)', [
        app.appKey,
        sealSecret(this.cipher, 'applications', 'app_secret', [app.appKey], app.appSecret),
        app.name,
        JSON.stringify(app.productKeys),
        app.createdAt,
      ]);
    } catch (e) {
      if (pgCode(e) === '23505') throw new ThingAuthError('CONFLICT', `application ${app.appKey} already exists`);
      throw e;
    }
  }

  async getApplication(appKey: string): Promise<Application | undefined> {
    const r = await this.one('SELECT * FROM applications WHERE app_key = $1', [appKey]);
    return r ? this.toApp(r) : undefined;
  }

  async listApplications(): Promise<Application[]> {
    return (await this.q('SELECT * FROM applications ORDER BY created_at, app_key')).map((r) => this.toApp(r));
  }

  async deleteApplication(appKey: string): Promise<boolean> {
    return (await this.exec('DELETE FROM applications WHERE app_key = $1', [appKey])).rowCount === 1;
  }

  // ---- audit ----

  async appendAudit(entries: AuditEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const col = <K extends keyof AuditEntry>(k: K) => entries.map((e) => e[k] ?? null);
    await this.exec(
      `INSERT INTO audit (at, action, actor, product_key, device_name, source_address, result, reason)
       SELECT a, b, c, d, e, f, g, h
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) WITH ORDINALITY AS t(a, b, c, d, e, f, g, h, ord)
       ORDER BY ord`,
      [col('at'), col('action'), col('actor'), col('productKey'), col('deviceName'), col('sourceAddress'), col('result'), col('reason')],
    );
  }

  async queryAudit(q: AuditQuery): Promise<AuditEntry[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    const arg = (v: unknown) => (args.push(v), `$${args.length}`);
    if (q.productKey) where.push(`product_key = ${arg(q.productKey)}`);
    if (q.deviceName) where.push(`device_name = ${arg(q.deviceName)}`);
    if (q.action) where.push(`action = ${arg(q.action)}`);
    if (q.since) where.push(`at >= ${arg(q.since)}`);
    if (q.beforeId !== undefined) where.push(`id < ${arg(q.beforeId)}`);
    const sql = `SELECT * FROM audit ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY id DESC LIMIT ${arg(Math.min(q.limit ?? 100, 10_000))}`;
    return (await this.q(sql, args)).map((r) => auditEntryOf(r));
  }

  async pruneAudit(before: string): Promise<number> {
    return (await this.exec('DELETE FROM audit WHERE at < $1', [before])).rowCount ?? 0;
  }

  // ---- management tokens ----

  async createManagementToken(t: ManagementTokenRecord): Promise<void> {
    try {
      await this.exec('INSERT INTO management_tokens (id, name, scope, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)', [t.id, t.name, t.scope, t.tokenHash, t.createdAt]);
    } catch (e) {
      if (pgCode(e) === '23505') throw new ThingAuthError('CONFLICT', `token ${t.id} already exists`);
      throw e;
    }
  }

  async getManagementToken(id: string): Promise<ManagementTokenRecord | undefined> {
    const r = await this.one('SELECT * FROM management_tokens WHERE id = $1', [id]);
    return r ? managementTokenOf(r) : undefined;
  }

  async listManagementTokens(): Promise<ManagementTokenRecord[]> {
    return (await this.q('SELECT * FROM management_tokens ORDER BY created_at, id')).map((r) => managementTokenOf(r));
  }

  async deleteManagementToken(id: string): Promise<boolean> {
    return (await this.exec('DELETE FROM management_tokens WHERE id = $1', [id])).rowCount === 1;
  }

  // ---- key rotation ----

  /**
   * Cursor: `<table index>:<primary key of the last row, base64url JSON>`. Keyset paging on the
   * primary key, one short transaction per batch; only the batch's rows are locked.
   */
  async reencryptSecrets(cursor: ReencryptCursor | undefined, batchSize: number): Promise<{ rewritten: number; cursor: ReencryptCursor | undefined }> {
    const m = /^(\d+):([A-Za-z0-9_-]*)$/.exec(cursor ?? '0:');
    let after: unknown[] | undefined;
    if (m && m[2]) {
      try {
        const v = JSON.parse(Buffer.from(m[2], 'base64url').toString('utf8')) as unknown;
        if (Array.isArray(v)) after = v;
      } catch {
        // refused below
      }
    }
    const ti = m ? Number(m[1]) : -1;
    const spec = PG_ENCRYPTED[ti];
    if (!m || (m[2] && !after) || (spec && after && after.length !== PRIMARY_KEYS[spec.table]!.length)) {
      throw new ThingAuthError('INVALID_ARGUMENT', `bad re-encryption cursor "${cursor}"`);
    }
    if (!spec) return { rewritten: 0, cursor: undefined };
    const pk = PRIMARY_KEYS[spec.table]!;
    const cols = [...new Set([...pk, ...spec.identity, ...spec.columns])];
    const keyset = after ? `WHERE (${pk.join(', ')}) > (${pk.map((_, i) => `$${i + 2}`).join(', ')})` : '';
    return this.tx(async (c) => {
      const rows = await this.q(`SELECT ${cols.join(', ')} FROM ${spec.table} ${keyset} ORDER BY ${pk.join(', ')} LIMIT $1 FOR UPDATE`, [batchSize, ...(after ?? [])], c);
      let rewritten = 0;
      for (const r of rows) {
        const ids = spec.identity.map((col) => r[col]);
        const sets: string[] = [];
        const values: unknown[] = [];
        for (const col of spec.columns) {
          const v = r[col];
          if (typeof v !== 'string' || !this.cipher.needsReencrypt(v)) continue;
          values.push(sealSecret(this.cipher, spec.table, col, ids, openSecret(this.cipher, spec.table, col, ids, v)));
          sets.push(`${col} = $${values.length}`);
          rewritten++;
        }
        if (sets.length === 0) continue;
        const where = pk.map((k) => (values.push(r[k]), `${k} = $${values.length}`)).join(' AND ');
        await c.query(`UPDATE ${spec.table} SET ${sets.join(', ')} WHERE ${where}`, values);
      }
      const last = rows[rows.length - 1];
      const next =
        rows.length < batchSize
          ? ti + 1 < PG_ENCRYPTED.length
            ? `${ti + 1}:`
            : undefined
          : `${ti}:${Buffer.from(JSON.stringify(pk.map((k) => last![k]))).toString('base64url')}`;
      return { rewritten, cursor: next };
    });
  }

  async countSecretsNotUnderCurrentKey(): Promise<number> {
    // The stored form is v2.<keyId>.…: the key id is the second dot-separated part.
    let n = 0;
    for (const { table, columns } of PG_ENCRYPTED) {
      for (const col of columns) {
        n += await this.count(`SELECT COUNT(*) AS n FROM ${table} WHERE ${col} IS NOT NULL AND split_part(${col}, '.', 2) <> $1`, [this.cipher.currentKeyId]);
      }
    }
    return n;
  }

  // ---- secret settings ----

  async getSecretSetting(key: string): Promise<string | undefined> {
    const r = await this.one('SELECT value FROM secret_settings WHERE key = $1', [key]);
    return r ? openSecret(this.cipher, 'secret_settings', 'value', [key], r.value) : undefined;
  }

  async setSecretSettingIfAbsent(key: string, value: string): Promise<string> {
    // A racing insert waits for the first one's commit and then does nothing; the read sees the winner.
    await this.exec('INSERT INTO secret_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING', [key, sealSecret(this.cipher, 'secret_settings', 'value', [key], value)]);
    const r = await this.one('SELECT value FROM secret_settings WHERE key = $1', [key]);
    return openSecret(this.cipher, 'secret_settings', 'value', [key], r!.value);
  }

  // ---- meta ----

  async getMeta(key: string): Promise<string | undefined> {
    return (await this.one('SELECT value FROM meta WHERE key = $1', [key]))?.value;
  }

  async setMeta(key: string, value: string): Promise<void> {
    await this.exec('INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [key, value]);
  }

  // ---- store copy ----

  async getDeviceTokenSlotsOf(iotIds: string[]): Promise<StoredDeviceTokenSlot[]> {
    if (iotIds.length === 0) return [];
    const rows = await this.q('SELECT * FROM device_tokens WHERE iot_id = ANY($1::text[]) ORDER BY iot_id, slot', [iotIds]);
    return rows.map((r) => ({ iotId: r.iot_id as string, ...tokenSlotOf(r), deviceToken: r.device_token === null ? null : this.toCredential(r).deviceToken }));
  }

  async putDevices(productKey: string, devices: DeviceCopy[]): Promise<void> {
    if (devices.length === 0) return;
    await this.tx(async (c) => {
      // The count row's lock orders this write with every other create of the product.
      await this.lockCount(c, productKey);
      let inserted = 0;
      for (const d of devices) {
        const byId = await this.one('SELECT product_key, device_name FROM devices WHERE iot_id = $1 FOR UPDATE', [d.iotId], c);
        if (byId && (byId.product_key !== productKey || byId.device_name !== d.deviceName)) {
          throw new ThingAuthError('CONFLICT', `iotId ${d.iotId} is stored for ${String(byId.product_key)}/${String(byId.device_name)}, not ${productKey}/${d.deviceName}`, { iotId: d.iotId });
        }
        const byName = await this.one('SELECT iot_id FROM devices WHERE product_key = $1 AND device_name = $2', [productKey, d.deviceName], c);
        if (byName && byName.iot_id !== d.iotId) {
          throw new ThingAuthError('CONFLICT', `deviceName ${d.deviceName} of product ${productKey} is held by another iotId`, { deviceName: d.deviceName });
        }
        const ids = deviceIds(d.iotId, productKey, d.deviceName);
        const values = [
          d.iotId,
          this.sealDevice('device_secret', ids, d.deviceSecret),
          this.sealDevice('previous_device_secret', ids, d.previousDeviceSecret),
          d.previousSecretExpiresAt,
          d.nickname,
          d.enabled,
          d.createdAt,
          d.activatedAt,
          d.lastOnlineAt,
          d.lastAuthError,
          d.lastAuthErrorAt,
          d.lastAuthErrorSource,
        ];
        if (byId) {
          await c.query(
            `UPDATE devices SET device_secret = $2, previous_device_secret = $3, previous_expires_at = $4, nickname = $5, enabled = $6,
               online = FALSE, online_node = NULL, created_at = $7, activated_at = $8, last_online_at = $9, last_auth_error = $10,
               last_auth_error_at = $11, last_auth_error_source = $12 WHERE iot_id = $1`,
            values,
          );
        } else {
          await c.query(
            `INSERT INTO devices (iot_id, device_secret, previous_device_secret, previous_expires_at, nickname, enabled, created_at,
               activated_at, last_online_at, last_auth_error, last_auth_error_at, last_auth_error_source, product_key, device_name)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
            [...values, productKey, d.deviceName],
          );
          inserted++;
        }
        await c.query('DELETE FROM device_tokens WHERE iot_id = $1', [d.iotId]);
        for (const t of d.slots) {
          const token = t.deviceToken === null ? null : sealSecret(this.cipher, 'device_tokens', 'device_token', [...ids, t.slot], t.deviceToken);
          await c.query(
            `INSERT INTO device_tokens (iot_id, product_key, device_name, slot, client_id, device_token, created_at, activated_at, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
            [...ids, t.slot, t.clientId, token, t.createdAt, t.activatedAt, t.revokedAt],
          );
        }
      }
      if (inserted > 0) await c.query('UPDATE product_counts SET devices = devices + $1 WHERE product_key = $2', [inserted, productKey]);
    });
  }

  async setDeviceBindings(bindings: DeviceBindings[]): Promise<void> {
    if (bindings.length === 0) return;
    await this.tx(async (c) => {
      for (const b of bindings) {
        let changed: number;
        try {
          changed = (await c.query('UPDATE devices SET gateway_iot_id = $1, registered_by_gateway_iot_id = $2 WHERE iot_id = $3', [b.gatewayIotId, b.registeredByGatewayIotId, b.iotId])).rowCount ?? 0;
        } catch (e) {
          if (pgCode(e) !== '23503') throw e;
          throw new ThingAuthError('DEVICE_NOT_FOUND', `gateway ${b.gatewayIotId ?? b.registeredByGatewayIotId} of device ${b.iotId} not found`);
        }
        if (changed === 0) throw new ThingAuthError('DEVICE_NOT_FOUND', `device ${b.iotId} not found`);
      }
    });
  }

  async listAuditAfter(afterId: number | null, limit: number): Promise<AuditEntry[]> {
    return (await this.q('SELECT * FROM audit WHERE id > $1 ORDER BY id LIMIT $2', [afterId ?? 0, limit])).map((r) => auditEntryOf(r));
  }

  async putAuditEntries(entries: (AuditEntry & { id: number })[]): Promise<void> {
    if (entries.length === 0) return;
    await this.tx(async (c) => {
      for (const e of entries) {
        try {
          await c.query(
            `INSERT INTO audit (id, at, action, actor, product_key, device_name, source_address, result, reason)
             OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
            [e.id, e.at, e.action, e.actor, e.productKey ?? null, e.deviceName ?? null, e.sourceAddress ?? null, e.result, e.reason ?? null],
          );
        } catch (err) {
          if (pgCode(err) === '23505') throw new ThingAuthError('CONFLICT', `audit entry ${e.id} already exists`, { id: e.id });
          throw err;
        }
      }
      // Entries appended later get larger ids than every id inserted here.
      await c.query(`SELECT setval(pg_get_serial_sequence('audit', 'id'), GREATEST((SELECT max(id) FROM audit), 1))`);
    });
  }

  async listSecretSettingKeys(): Promise<string[]> {
    return (await this.q('SELECT key FROM secret_settings ORDER BY key COLLATE "C"')).map((r) => r.key as string);
  }

  async putSecretSetting(key: string, value: string): Promise<void> {
    await this.exec('INSERT INTO secret_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [
      key,
      sealSecret(this.cipher, 'secret_settings', 'value', [key], value),
    ]);
  }
  // ---- X.509 (issue 16) ----

  async getProductAuth(productKey: string): Promise<ProductAuthSettings | undefined> {
    const r = await this.one('SELECT * FROM product_auth WHERE product_key = $1', [productKey]);
    if (r) return productAuthOf(r);
    return (await this.one('SELECT 1 FROM products WHERE product_key = $1', [productKey])) ? defaultProductAuth(productKey) : undefined;
  }

  async setProductAuth(productKey: string, patch: ProductAuthPatch, at: string): Promise<ProductAuthSettings> {
    return this.tx(async (c) => {
      // The count-row lock orders this with every device create of the product.
      const count = await this.lockCount(c, productKey);
      const product = await this.one('SELECT dynamic_registration, node_type FROM products WHERE product_key = $1', [productKey], c);
      if (!product) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${productKey} not found`);
      if (patch.authMode === 'x509') {
        const refused = x509SettingsConflict(productKey, 'x509', Boolean(product.dynamic_registration), product.node_type as string);
        if (refused) throw refused;
      }
      const r = await this.one('SELECT * FROM product_auth WHERE product_key = $1', [productKey], c);
      const cur = r ? productAuthOf(r) : defaultProductAuth(productKey);
      if (patch.authMode !== undefined && patch.authMode !== cur.authMode && count > 0) {
        const e = authModeLocked(productKey, count);
        throw new ThingAuthError('CONFLICT', e.message, e.details);
      }
      const next: ProductAuthSettings = {
        productKey,
        authMode: patch.authMode ?? cur.authMode,
        enrollOnFirstContact: patch.enrollOnFirstContact ?? cur.enrollOnFirstContact,
        certValidityDays: patch.certValidityDays !== undefined ? patch.certValidityDays : cur.certValidityDays,
      };
      await c.query(
        `INSERT INTO product_auth (product_key, auth_mode, enroll_on_first_contact, cert_validity_days, updated_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (product_key) DO UPDATE SET auth_mode = excluded.auth_mode, enroll_on_first_contact = excluded.enroll_on_first_contact,
         cert_validity_days = excluded.cert_validity_days, updated_at = excluded.updated_at`,
        [productKey, next.authMode, next.enrollOnFirstContact, next.certValidityDays, at],
      );
      return next;
    });
  }

  async getProductCa(productKey: string): Promise<StoredProductCa | undefined> {
    const r = await this.one('SELECT * FROM product_cas WHERE product_key = $1', [productKey]);
    return r ? productCaOf(r, this.cipher) : undefined;
  }

  async putProductCaIfAbsent(ca: StoredProductCa): Promise<StoredProductCa> {
    return this.tx(async (c) => {
      if (!(await this.one('SELECT 1 FROM products WHERE product_key = $1', [ca.productKey], c))) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${ca.productKey} not found`);
      await c.query(
        'INSERT INTO product_cas (product_key, source, certificate, private_key, fingerprint, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (product_key) DO NOTHING',
        [ca.productKey, ca.source, ca.certificate, sealCaKey(this.cipher, ca), ca.fingerprint, ca.createdAt],
      );
      return productCaOf((await this.one('SELECT * FROM product_cas WHERE product_key = $1', [ca.productKey], c))!, this.cipher);
    });
  }

  async addDeviceCertificate(cert: StoredDeviceCertificate): Promise<void> {
    await this.tx(async (c) => {
      const d = await this.one('SELECT product_key, device_name FROM devices WHERE iot_id = $1 FOR SHARE', [cert.iotId], c);
      if (!d || d.product_key !== cert.productKey || d.device_name !== cert.deviceName) {
        throw new ThingAuthError('DEVICE_NOT_FOUND', `device ${cert.deviceName} not found in product ${cert.productKey}`);
      }
      const res = await c.query(
        `INSERT INTO device_certificates (${CERT_COLUMNS.join(', ')}) VALUES (${CERT_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')}) ON CONFLICT (product_key, serial) DO NOTHING`,
        certValues(this.cipher, cert),
      );
      if (res.rowCount === 0) throw new ThingAuthError('CONFLICT', `a certificate with serial ${cert.serial} exists`, { field: 'serial' });
    });
  }

  async getDeviceCertificate(productKey: string, serial: string): Promise<StoredDeviceCertificate | undefined> {
    const r = await this.one('SELECT * FROM device_certificates WHERE product_key = $1 AND serial = $2', [productKey, serial]);
    return r ? deviceCertOf(r, this.cipher) : undefined;
  }

  async listDeviceCertificates(iotId: string): Promise<StoredDeviceCertificate[]> {
    const rows = await this.q('SELECT * FROM device_certificates WHERE iot_id = $1 ORDER BY created_at DESC, serial DESC', [iotId]);
    return rows.map((r) => deviceCertOf(r, this.cipher));
  }

  async revokeDeviceCertificate(productKey: string, serial: string, at: string, reason: string): Promise<StoredDeviceCertificate | undefined> {
    await this.exec('UPDATE device_certificates SET revoked_at = $1, revocation_reason = $2 WHERE product_key = $3 AND serial = $4 AND (revoked_at IS NULL OR revoked_at > $1)', [at, reason, productKey, serial]);
    return this.getDeviceCertificate(productKey, serial);
  }

  async listRevokedCertificates(productKey: string, asOf: string): Promise<{ serial: string; revokedAt: string; reason: string | null }[]> {
    const rows = await this.q(
      'SELECT serial, revoked_at, revocation_reason FROM device_certificates WHERE product_key = $1 AND revoked_at IS NOT NULL AND revoked_at <= $2 ORDER BY revoked_at, serial',
      [productKey, asOf],
    );
    return rows.map((r) => ({ serial: r.serial as string, revokedAt: r.revoked_at as string, reason: (r.revocation_reason as string | null) ?? null }));
  }

  async listCertificatesRevokedAfter(after: string, limit: number): Promise<StoredDeviceCertificate[]> {
    const rows = await this.q('SELECT * FROM device_certificates WHERE revoked_at IS NOT NULL AND revoked_at > $1 ORDER BY revoked_at, serial LIMIT $2', [after, limit]);
    return rows.map((r) => deviceCertOf(r, this.cipher, false));
  }

  async listExpiringCertificates(before: string, asOf: string, limit: number, productKey?: string): Promise<StoredDeviceCertificate[]> {
    const rows = await this.q(
      `SELECT * FROM device_certificates WHERE not_after < $1 AND (revoked_at IS NULL OR revoked_at > $2) ${productKey !== undefined ? 'AND product_key = $4' : ''}
       ORDER BY not_after, serial LIMIT $3`,
      [before, asOf, limit, ...(productKey !== undefined ? [productKey] : [])],
    );
    return rows.map((r) => deviceCertOf(r, this.cipher, false));
  }

  async countExpiringCertificates(before: string, asOf: string): Promise<number> {
    return this.count('SELECT COUNT(*) AS n FROM device_certificates WHERE not_after < $1 AND (revoked_at IS NULL OR revoked_at > $2)', [before, asOf]);
  }
}
