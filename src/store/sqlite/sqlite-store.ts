/**
 * SQLite adapter of the Store port (better-sqlite3 12.x, WAL). better-sqlite3 is
 * synchronous, so every transaction here runs to completion without interleaving; writes
 * that check a limit use BEGIN IMMEDIATE so a second process on the same file waits.
 */
import fs from 'node:fs';
import Database from 'better-sqlite3';
import { auditEntryOf, DEVICE_COLUMNS, deviceIds, managementTokenOf, newDeviceRecord, PRODUCT_COLUMNS, tokenSlotOf } from '../columns.js';
import { ThingAuthError } from '../../core/errors.js';
import type { Device, DeviceTokenCredential, DeviceTokenSlot, NodeType, Product } from '../../core/records.js';
import type { SecretCipher } from '../../core/secret-cipher.js';
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
import { authModeLocked, CERT_COLUMNS, certValues, defaultProductAuth, deviceCertOf, productAuthOf, productCaOf, sealCaKey } from '../x509-rows.js';
import { SQLITE_MIGRATIONS } from './migrations.js';
import { ENCRYPTED_COLUMNS, openSecret, sealSecret } from '../secret-binding.js';
import { bindUnboundSecrets } from './secret-binding.js';
import { moveDeviceTokensToSlots } from './device-token-slots.js';

type Row = Record<string, unknown>;

export interface SqliteStoreOptions {
  /** File path, or ':memory:'. */
  filename: string;
  cipher: SecretCipher;
  /** 'FULL' survives power loss; 'NORMAL' (WAL default) may lose the last commits on power loss, never on a process crash. */
  synchronous?: 'FULL' | 'NORMAL';
}


/**
 * The database file, and its WAL and shared-memory files, readable by the owner only (0600):
 * they hold every record (secrets encrypted, but names, audit and token hashes not). The file
 * is created 0600 before SQLite opens it, and an existing one (or WAL/SHM left by an older
 * version) is tightened. SQLite creates the -wal and -shm files lazily and gives them the mode
 * of the database file (unix VFS, findCreateFileMode), so they follow; after the journal mode
 * is set they are tightened once more in case the file system or a build does otherwise.
 */
export function restrictDatabaseFiles(filename: string): void {
  if (filename === '' || filename === ':memory:' || filename.startsWith('file:')) return;
  fs.closeSync(fs.openSync(filename, 'a', 0o600));
  for (const f of [filename, `${filename}-wal`, `${filename}-shm`]) {
    try {
      if ((fs.statSync(f).mode & 0o777) !== 0o600) fs.chmodSync(f, 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
}

function sqliteDeviceFilter(filter: DeviceKeysetFilter, where: string[], args: unknown[]): void {
  if (filter.nameContains) {
    where.push('instr(device_name, ?) > 0');
    args.push(filter.nameContains);
  }
  switch (filter.status) {
    case 'DISABLE':
      where.push('enabled = 0');
      break;
    case 'ONLINE':
      where.push('enabled = 1 AND online = 1');
      break;
    case 'OFFLINE':
      where.push('enabled = 1 AND online = 0 AND activated_at IS NOT NULL');
      break;
    case 'UNACTIVE':
      where.push('enabled = 1 AND online = 0 AND activated_at IS NULL');
      break;
    default:
      break;
  }
}

/**
 * The keyset page query (exported so the 500,000-device test can EXPLAIN the very statement
 * the store runs): a range on the UNIQUE (product_key, device_name) index, in its order.
 */
export function sqliteDevicesAfterQuery(productKey: string, afterDeviceName: string | null, limit: number, filter: DeviceKeysetFilter = {}): { sql: string; args: unknown[] } {
  const where = ['product_key = ?', 'device_name > ?'];
  const args: unknown[] = [productKey, afterDeviceName ?? ''];
  sqliteDeviceFilter(filter, where, args);
  return { sql: `SELECT * FROM devices WHERE ${where.join(' AND ')} ORDER BY device_name LIMIT ?`, args: [...args, limit] };
}

export class SqliteStore implements Store {
  readonly db: Database.Database;
  private readonly cipher: SecretCipher;
  private readonly stmt: ReturnType<SqliteStore['prepareAll']> | undefined;
  private prepared?: ReturnType<SqliteStore['prepareAll']>;

  constructor(opts: SqliteStoreOptions) {
    restrictDatabaseFiles(opts.filename);
    this.db = new Database(opts.filename);
    this.cipher = opts.cipher;
    this.db.pragma('journal_mode = WAL');
    restrictDatabaseFiles(opts.filename);
    this.db.pragma(`synchronous = ${opts.synchronous ?? 'FULL'}`);
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    // Lets SQL ask the cipher whether a stored value is under an older key (key rotation).
    this.db.function('thingauth_stale_secret', { deterministic: false }, (v: unknown) =>
      typeof v === 'string' && this.cipher.needsReencrypt(v) ? 1 : 0,
    );
    this.stmt = undefined;
  }

  private get s() {
    if (!this.prepared) this.prepared = this.prepareAll();
    return this.prepared;
  }

  private prepareAll() {
    const db = this.db;
    return {
      getProduct: db.prepare('SELECT * FROM products WHERE product_key = ?'),
      insertProduct: db.prepare(`INSERT INTO products (product_key, product_name, product_secret, node_type, dynamic_registration,
        pre_registration_free, require_tls, replay_protection, device_limit, description, created_at, updated_at, timestamp_window_seconds)
        VALUES (@productKey, @productName, @productSecret, @nodeType, @dynamicRegistration, @preRegistrationFree, @requireTls,
        @replayProtection, @deviceLimit, @description, @createdAt, @updatedAt, @timestampWindowSeconds)`),
      insertCount: db.prepare('INSERT INTO product_counts (product_key, devices) VALUES (?, 0)'),
      getCount: db.prepare('SELECT devices FROM product_counts WHERE product_key = ?'),
      addCount: db.prepare('UPDATE product_counts SET devices = devices + ? WHERE product_key = ?'),
      deleteProduct: db.prepare('DELETE FROM products WHERE product_key = ?'),
      getDevice: db.prepare('SELECT * FROM devices WHERE product_key = ? AND device_name = ?'),
      getDeviceById: db.prepare('SELECT * FROM devices WHERE iot_id = ?'),
      getDeviceIds: db.prepare('SELECT iot_id, product_key, device_name FROM devices WHERE iot_id = ?'),
      insertDevice: db.prepare(`INSERT INTO devices (iot_id, product_key, device_name, device_secret, nickname, created_at, activated_at)
        VALUES (@iotId, @productKey, @deviceName, @deviceSecret, @nickname, @createdAt, @activatedAt)`),
      existingDeviceNames: db.prepare('SELECT device_name FROM devices WHERE product_key = ? AND device_name IN (SELECT value FROM json_each(?))'),
      deleteDevice: db.prepare('DELETE FROM devices WHERE iot_id = ?'),
      detachAllSubs: db.prepare('UPDATE devices SET gateway_iot_id = NULL WHERE gateway_iot_id = ?'),
      resetDevice: db.prepare('UPDATE devices SET activated_at = NULL, client_id = NULL, device_token = NULL, online = 0, last_auth_error = NULL, last_auth_error_at = NULL, last_auth_error_source = NULL WHERE iot_id = ?'),
      clearRandoms: db.prepare('DELETE FROM registration_randoms WHERE iot_id = ?'),
      clearSlots: db.prepare('DELETE FROM device_tokens WHERE iot_id = ?'),
      listSlots: db.prepare('SELECT * FROM device_tokens WHERE iot_id = ? ORDER BY slot'),
      liveSlots: db.prepare('SELECT * FROM device_tokens WHERE iot_id = ? AND revoked_at IS NULL ORDER BY slot'),
      markOnline: db.prepare('UPDATE devices SET online = 1, last_online_at = @at, activated_at = COALESCE(activated_at, @at) WHERE iot_id = @iotId RETURNING activated_at'),
      markOffline: db.prepare('UPDATE devices SET online = 0, last_online_at = ? WHERE iot_id = ? AND online = 1'),
      markAllOffline: db.prepare('UPDATE devices SET online = 0, last_online_at = ? WHERE online = 1'),
      insertRandom: db.prepare('INSERT OR IGNORE INTO registration_randoms (iot_id, random, used_at) VALUES (?, ?, ?)'),
      countSubs: db.prepare('SELECT COUNT(*) AS n FROM devices WHERE gateway_iot_id = ?'),
      subInGateway: db.prepare('SELECT 1 FROM devices WHERE iot_id = ? AND gateway_iot_id = ?'),
      attachSub: db.prepare('UPDATE devices SET gateway_iot_id = ? WHERE iot_id = ?'),
      detachSub: db.prepare('UPDATE devices SET gateway_iot_id = NULL WHERE iot_id = ? AND gateway_iot_id = ?'),
      insertApp: db.prepare('INSERT INTO applications (app_key, app_secret, name, product_keys, created_at) VALUES (?, ?, ?, ?, ?)'),
      getApp: db.prepare('SELECT * FROM applications WHERE app_key = ?'),
      listApps: db.prepare('SELECT * FROM applications ORDER BY created_at, app_key'),
      deleteApp: db.prepare('DELETE FROM applications WHERE app_key = ?'),
      insertAudit: db.prepare(`INSERT INTO audit (at, action, actor, product_key, device_name, source_address, result, reason)
        VALUES (@at, @action, @actor, @productKey, @deviceName, @sourceAddress, @result, @reason)`),
      pruneAudit: db.prepare('DELETE FROM audit WHERE at < ?'),
      getMeta: db.prepare('SELECT value FROM meta WHERE key = ?'),
      setMeta: db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value'),
    };
  }

  async migrate(): Promise<void> {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
    const applied = new Set(
      (this.db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map((r) => r.version),
    );
    for (const m of SQLITE_MIGRATIONS) {
      if (applied.has(m.version)) continue;
      this.db.transaction(() => {
        if (m.sql) this.db.exec(m.sql);
        if (m.bindSecrets) bindUnboundSecrets(this.db, this.cipher);
        if (m.moveTokensToSlots) moveDeviceTokensToSlots(this.db, this.cipher);
        this.db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(m.version, m.name, new Date().toISOString());
      }).immediate();
    }
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  // ---- mapping ----

  private toProduct(r: Row): Product {
    return {
      productKey: r.product_key as string,
      productName: r.product_name as string,
      productSecret: openSecret(this.cipher, 'products', 'product_secret', [r.product_key], r.product_secret as string),
      nodeType: r.node_type as NodeType,
      dynamicRegistration: r.dynamic_registration === 1,
      preRegistrationFree: r.pre_registration_free === 1,
      requireTls: r.require_tls === 1,
      replayProtection: r.replay_protection === 1,
      deviceLimit: (r.device_limit as number | null) ?? null,
      description: r.description as string,
      createdAt: r.created_at as string,
      updatedAt: r.updated_at as string,
      // Absent when off (NULL), so a product without the setting reads back exactly as written.
      ...(typeof r.timestamp_window_seconds === 'number' && r.timestamp_window_seconds > 0 ? { timestampWindowSeconds: r.timestamp_window_seconds } : {}),
    };
  }

  private toDevice(r: Row): Device {
    const ids = deviceIds(r.iot_id, r.product_key, r.device_name);
    return {
      iotId: r.iot_id as string,
      productKey: r.product_key as string,
      deviceName: r.device_name as string,
      deviceSecret: openSecret(this.cipher, 'devices', 'device_secret', ids, r.device_secret as string),
      previousDeviceSecret: r.previous_device_secret ? openSecret(this.cipher, 'devices', 'previous_device_secret', ids, r.previous_device_secret as string) : null,
      previousSecretExpiresAt: (r.previous_expires_at as string | null) ?? null,
      nickname: (r.nickname as string | null) ?? null,
      enabled: r.enabled === 1,
      online: r.online === 1,
      createdAt: r.created_at as string,
      activatedAt: (r.activated_at as string | null) ?? null,
      lastOnlineAt: (r.last_online_at as string | null) ?? null,
      gatewayIotId: (r.gateway_iot_id as string | null) ?? null,
      registeredByGatewayIotId: (r.registered_by_gateway_iot_id as string | null) ?? null,
      lastAuthError: (r.last_auth_error as string | null) ?? null,
      lastAuthErrorAt: (r.last_auth_error_at as string | null) ?? null,
      lastAuthErrorSource: (r.last_auth_error_source as string | null) ?? null,
    };
  }

  /** Encrypts a device's secret-bearing column for its row; null stays null. */
  private sealDevice(column: 'device_secret' | 'previous_device_secret', ids: unknown[], v: string | null | undefined): string | null {
    return v === null || v === undefined ? null : sealSecret(this.cipher, 'devices', column, ids, v);
  }

  /** The identity of a device row, read in the caller's transaction (for writes that know only the iotId). */
  private deviceIdsOf(iotId: string): unknown[] | undefined {
    const r = this.s.getDeviceIds.get(iotId) as Row | undefined;
    return r ? deviceIds(r.iot_id, r.product_key, r.device_name) : undefined;
  }

  // ---- products ----

  async createProduct(p: Product): Promise<void> {
    this.db.transaction(() => {
      if (this.s.getProduct.get(p.productKey)) {
        throw new ThingAuthError('PRODUCT_KEY_TAKEN', `productKey ${p.productKey} already exists`);
      }
      this.s.insertProduct.run({
        ...p,
        productSecret: sealSecret(this.cipher, 'products', 'product_secret', [p.productKey], p.productSecret),
        dynamicRegistration: p.dynamicRegistration ? 1 : 0,
        preRegistrationFree: p.preRegistrationFree ? 1 : 0,
        requireTls: p.requireTls ? 1 : 0,
        replayProtection: p.replayProtection ? 1 : 0,
        timestampWindowSeconds: p.timestampWindowSeconds ? p.timestampWindowSeconds : null,
      });
      this.s.insertCount.run(p.productKey);
    }).immediate();
  }

  async getProduct(productKey: string): Promise<Product | undefined> {
    const r = this.s.getProduct.get(productKey) as Row | undefined;
    return r ? this.toProduct(r) : undefined;
  }

  async listProducts(offset: number, limit: number): Promise<Page<Product>> {
    const total = (this.db.prepare('SELECT COUNT(*) AS n FROM products').get() as { n: number }).n;
    const rows = this.db.prepare('SELECT * FROM products ORDER BY created_at, product_key LIMIT ? OFFSET ?').all(limit, offset) as Row[];
    return { items: rows.map((r) => this.toProduct(r)), total, offset, limit };
  }

  async updateProduct(productKey: string, patch: ProductPatch, updatedAt: string): Promise<Product> {
    return this.db.transaction(() => {
      const sets: string[] = [];
      const values: unknown[] = [];
      for (const [k, v] of Object.entries(patch)) {
        const col = PRODUCT_COLUMNS[k as keyof ProductPatch];
        if (!col || v === undefined) continue;
        sets.push(`${col} = ?`);
        // timestampWindowSeconds 0 = off, stored as NULL like a product that never had one.
        values.push(typeof v === 'boolean' ? (v ? 1 : 0) : k === 'timestampWindowSeconds' && v === 0 ? null : v);
      }
      sets.push('updated_at = ?');
      values.push(updatedAt);
      // Decided in this (immediate) transaction, as every device write is: no create slips in
      // between the check and the update.
      if (patch.nodeType !== undefined) {
        const cur = this.s.getProduct.get(productKey) as Row | undefined;
        const count = cur ? this.deviceCount(productKey) : 0;
        if (cur && cur.node_type !== patch.nodeType && count > 0) throw nodeTypeLocked(productKey, count);
      }
      const res = this.db.prepare(`UPDATE products SET ${sets.join(', ')} WHERE product_key = ?`).run(...values, productKey);
      if (res.changes === 0) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${productKey} not found`);
      const updated = this.toProduct(this.s.getProduct.get(productKey) as Row);
      // Judged on the row as updated (throwing rolls the update back).
      if (updated.preRegistrationFree && !updated.dynamicRegistration) throw freeWithoutDynamic();
      if (patch.dynamicRegistration === true || patch.nodeType === 'SUB_DEVICE') {
        const auth = this.db.prepare('SELECT auth_mode FROM product_auth WHERE product_key = ?').get(productKey) as Row | undefined;
        const refused = x509SettingsConflict(productKey, (auth?.auth_mode as string | undefined) ?? 'secret', patch.dynamicRegistration === true && updated.dynamicRegistration, patch.nodeType === 'SUB_DEVICE' ? updated.nodeType : 'DEVICE');
        if (refused) throw refused;
      }
      return updated;
    }).immediate();
  }

  async setProductSecret(productKey: string, productSecret: string, updatedAt: string): Promise<Product> {
    const r = this.db
      .prepare('UPDATE products SET product_secret = ?, updated_at = ? WHERE product_key = ? RETURNING *')
      .get(sealSecret(this.cipher, 'products', 'product_secret', [productKey], productSecret), updatedAt, productKey) as Row | undefined;
    if (!r) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${productKey} not found`);
    return this.toProduct(r);
  }

  async deleteProduct(productKey: string): Promise<void> {
    this.db.transaction(() => {
      if (!this.s.getProduct.get(productKey)) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${productKey} not found`);
      const n = (this.s.getCount.get(productKey) as { devices: number } | undefined)?.devices ?? 0;
      if (n > 0) throw new ThingAuthError('PRODUCT_HAS_DEVICES', `product ${productKey} still has ${n} devices; delete them first`, { devices: n });
      this.s.deleteProduct.run(productKey);
    }).immediate();
  }

  // ---- devices ----

  private deviceCount(productKey: string): number {
    const r = this.s.getCount.get(productKey) as { devices: number } | undefined;
    if (!r) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${productKey} not found`);
    return r.devices;
  }

  /**
   * The device limit in force, read in the caller's transaction (the same one that reads the
   * count and writes): the product's own deviceLimit, else `defaultLimit`.
   */
  private limitOf(productKey: string, defaultLimit: number): number {
    const r = this.s.getProduct.get(productKey) as Row | undefined;
    if (!r) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${productKey} not found`);
    return (r.device_limit as number | null) ?? defaultLimit;
  }

  private insertDeviceRow(productKey: string, d: NewDevice, createdAt: string): void {
    const ids = deviceIds(d.iotId, productKey, d.deviceName);
    this.s.insertDevice.run({
      iotId: d.iotId,
      productKey,
      deviceName: d.deviceName,
      deviceSecret: this.sealDevice('device_secret', ids, d.deviceSecret),
      nickname: d.nickname ?? null,
      createdAt,
      activatedAt: d.activatedAt ?? null,
    });
  }

  private limitError(limit: number, productKey: string, count: number, adding: number) {
    return new ThingAuthError(
      'DEVICE_LIMIT_REACHED',
      `device limit reached: product ${productKey} may hold at most ${limit} devices; it has ${count} and ${adding} more would exceed the limit`,
      { limit, devices: count },
    );
  }

  async createDevices(productKey: string, devices: NewDevice[], defaultLimit: number, createdAt: string): Promise<Device[]> {
    return this.db.transaction(() => {
      const count = this.deviceCount(productKey);
      const limit = this.limitOf(productKey, defaultLimit);
      if (count + devices.length > limit) throw this.limitError(limit, productKey, count, devices.length);
      // One statement finds every name of the batch that exists (a query per name was 1 s of a 500,000-device import).
      const existing = new Set(
        (this.s.existingDeviceNames.all(productKey, JSON.stringify(devices.map((d) => d.deviceName))) as { device_name: string }[]).map((r) => r.device_name),
      );
      const seen = new Set<string>();
      const taken: string[] = [];
      for (const d of devices) {
        if (seen.has(d.deviceName) || existing.has(d.deviceName)) taken.push(d.deviceName);
        seen.add(d.deviceName);
      }
      if (taken.length > 0) {
        throw new ThingAuthError('DEVICE_NAME_TAKEN', `deviceName already exists in product ${productKey}: ${taken.slice(0, 10).join(', ')}${taken.length > 10 ? ` and ${taken.length - 10} more` : ''}`, { names: taken.slice(0, 100) });
      }
      for (const d of devices) this.insertDeviceRow(productKey, d, createdAt);
      this.s.addCount.run(devices.length, productKey);
      // The rows hold exactly what was just written: built from the inputs, not read back
      // (reading and decrypting each row again was a fifth of a bulk import's CPU).
      return devices.map((d) => newDeviceRecord(productKey, d, createdAt));
    }).immediate();
  }

  async getOrCreateDevice(productKey: string, device: NewDevice, defaultLimit: number, createdAt: string) {
    return this.db.transaction(() => {
      const existing = this.s.getDevice.get(productKey, device.deviceName) as Row | undefined;
      if (existing) return { device: this.toDevice(existing), created: false };
      const count = this.deviceCount(productKey);
      const limit = this.limitOf(productKey, defaultLimit);
      if (count + 1 > limit) throw this.limitError(limit, productKey, count, 1);
      this.insertDeviceRow(productKey, device, createdAt);
      this.s.addCount.run(1, productKey);
      return { device: this.toDevice(this.s.getDeviceById.get(device.iotId) as Row), created: true };
    }).immediate();
  }

  async importDevices(productKey: string, rows: ImportRow[], defaultLimit: number, overwrite: boolean, createdAt: string): Promise<ImportResult> {
    return this.db.transaction(() => {
      const result: ImportResult = { created: 0, identical: 0, overwritten: 0, conflicts: [] };
      let count = this.deviceCount(productKey);
      const limit = this.limitOf(productKey, defaultLimit);
      // An overwrite sets the secret outright: a previous secret from a rotation stops working.
      const updateSecret = this.db.prepare('UPDATE devices SET device_secret = ?, previous_device_secret = NULL, previous_expires_at = NULL WHERE iot_id = ?');
      for (const row of rows) {
        const existing = this.s.getDevice.get(productKey, row.deviceName) as Row | undefined;
        if (existing) {
          const ids = deviceIds(existing.iot_id, existing.product_key, existing.device_name);
          const secret = openSecret(this.cipher, 'devices', 'device_secret', ids, existing.device_secret as string);
          if (secret === row.deviceSecret) {
            result.identical++;
          } else if (overwrite) {
            updateSecret.run(this.sealDevice('device_secret', ids, row.deviceSecret), existing.iot_id);
            result.overwritten++;
          } else {
            result.conflicts.push(row.deviceName);
          }
          continue;
        }
        if (count + 1 > limit) throw this.limitError(limit, productKey, count, 1);
        if (this.s.getDeviceById.get(row.iotId)) {
          throw new ThingAuthError('CONFLICT', `iotId ${row.iotId} is already used by another device`, { iotId: row.iotId });
        }
        this.insertDeviceRow(productKey, row, createdAt);
        count++;
        result.created++;
      }
      this.s.addCount.run(result.created, productKey);
      return result;
    }).immediate();
  }

  async getDevice(productKey: string, deviceName: string): Promise<Device | undefined> {
    const r = this.s.getDevice.get(productKey, deviceName) as Row | undefined;
    return r ? this.toDevice(r) : undefined;
  }

  async getDevicesByName(productKey: string, deviceNames: string[]): Promise<Device[]> {
    if (deviceNames.length === 0) return [];
    // One statement for any number of names (repeats collapse): the UNIQUE index finds each.
    const rows = this.db
      .prepare('SELECT * FROM devices WHERE product_key = ? AND device_name IN (SELECT value FROM json_each(?))')
      .all(productKey, JSON.stringify(deviceNames)) as Row[];
    return rows.map((r) => this.toDevice(r));
  }

  async getDeviceByIotId(iotId: string): Promise<Device | undefined> {
    const r = this.s.getDeviceById.get(iotId) as Row | undefined;
    return r ? this.toDevice(r) : undefined;
  }

  async listDevices(productKey: string, filter: DeviceFilter, offset: number, limit: number): Promise<Page<Device>> {
    const where: string[] = ['product_key = ?'];
    const args: unknown[] = [productKey];
    if (filter.gatewayIotId) {
      // Sub-devices of a gateway may belong to any product.
      where.length = 0;
      args.length = 0;
      where.push('gateway_iot_id = ?');
      args.push(filter.gatewayIotId);
    }
    sqliteDeviceFilter(filter, where, args);
    const w = where.join(' AND ');
    const total = (this.db.prepare(`SELECT COUNT(*) AS n FROM devices WHERE ${w}`).get(...args) as { n: number }).n;
    const rows = this.db.prepare(`SELECT * FROM devices WHERE ${w} ORDER BY rowid LIMIT ? OFFSET ?`).all(...args, limit, offset) as Row[];
    return { items: rows.map((r) => this.toDevice(r)), total, offset, limit };
  }

  async listDevicesAfter(productKey: string, afterDeviceName: string | null, limit: number, filter: DeviceKeysetFilter = {}): Promise<Device[]> {
    // Walks the UNIQUE (product_key, device_name) index: no OFFSET scan, no COUNT.
    const { sql, args } = sqliteDevicesAfterQuery(productKey, afterDeviceName, limit, filter);
    const rows = this.db.prepare(sql).all(...args) as Row[];
    return rows.map((r) => this.toDevice(r));
  }

  async countDevices(productKey: string): Promise<number> {
    return this.deviceCount(productKey);
  }

  async updateDevice(iotId: string, patch: DevicePatch): Promise<Device | undefined> {
    const setsSecret = patch.deviceSecret !== undefined && patch.deviceSecret !== null;
    const update = (): Device | undefined => {
      // A secret is encrypted for its row: read the row's identity first (same transaction).
      const ids = setsSecret ? this.deviceIdsOf(iotId) : undefined;
      if (setsSecret && !ids) return undefined;
      const sets: string[] = [];
      const values: unknown[] = [];
      for (const [k, v] of Object.entries(patch)) {
        const col = DEVICE_COLUMNS[k as keyof DevicePatch];
        if (!col || v === undefined) continue;
        let value: unknown = v;
        if (typeof v === 'boolean') value = v ? 1 : 0;
        if (k === 'deviceSecret' && v !== null) value = this.sealDevice('device_secret', ids!, v as string);
        sets.push(`${col} = ?`);
        values.push(value);
        // Setting the secret outright ends any rotation grace (rotateDeviceSecret keeps one).
        if (k === 'deviceSecret') sets.push('previous_device_secret = NULL', 'previous_expires_at = NULL');
      }
      if (sets.length === 0) {
        const r = this.s.getDeviceById.get(iotId) as Row | undefined;
        return r ? this.toDevice(r) : undefined;
      }
      const r = this.db.prepare(`UPDATE devices SET ${sets.join(', ')} WHERE iot_id = ? RETURNING *`).get(...values, iotId) as Row | undefined;
      return r ? this.toDevice(r) : undefined;
    };
    return setsSecret ? this.db.transaction(update).immediate() : update();
  }

  async deleteDevice(iotId: string): Promise<boolean> {
    return this.db.transaction(() => {
      const r = this.s.getDeviceById.get(iotId) as Row | undefined;
      if (!r) return false;
      this.s.detachAllSubs.run(iotId);
      this.s.deleteDevice.run(iotId);
      this.s.addCount.run(-1, r.product_key);
      return true;
    }).immediate();
  }

  async resetDevice(iotId: string): Promise<Device | undefined> {
    return this.db.transaction(() => {
      this.s.resetDevice.run(iotId);
      this.s.clearRandoms.run(iotId);
      this.s.clearSlots.run(iotId);
      const r = this.s.getDeviceById.get(iotId) as Row | undefined;
      return r ? this.toDevice(r) : undefined;
    }).immediate();
  }

  // ---- regnwl credential slots ----

  private toCredential(r: Row): DeviceTokenCredential {
    const ids = [r.iot_id, r.product_key, r.device_name, r.slot];
    return { ...tokenSlotOf(r), deviceToken: openSecret(this.cipher, 'device_tokens', 'device_token', ids, r.device_token as string) };
  }

  async issueDeviceTokenSlot(iotId: string, candidate: { clientId: string; deviceToken: string }, maxSlots: number, at: string) {
    return this.db.transaction(() => {
      const d = this.s.getDeviceById.get(iotId) as Row | undefined;
      if (!d) return undefined;
      const ids = deviceIds(d.iot_id, d.product_key, d.device_name);
      const rows = this.s.listSlots.all(iotId) as Row[];
      const refused = slotRefusal(d.activated_at !== null, rows.length, (d.gateway_iot_id ?? d.registered_by_gateway_iot_id) as string | null);
      if (refused) return { outcome: 'refused' as const, reason: refused };
      const live = rows.filter((r) => r.revoked_at === null);
      // Unactivated = not told apart from a retry of the device it was issued to: same answer.
      const pending = live.find((r) => r.activated_at === null);
      if (pending) return { outcome: 'existing' as const, credential: this.toCredential(pending) };
      if (live.length >= maxSlots) return { outcome: 'full' as const, live: live.length };
      const taken = new Set(live.map((r) => r.slot as number));
      let slot = 1;
      while (taken.has(slot)) slot++;
      const token = sealSecret(this.cipher, 'device_tokens', 'device_token', [...ids, slot], candidate.deviceToken);
      // A revoked slot's row is reused in place: same identity, so the new token binds the same way.
      this.db
        .prepare(
          `INSERT INTO device_tokens (iot_id, product_key, device_name, slot, client_id, device_token, created_at, activated_at, revoked_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)
           ON CONFLICT (iot_id, slot) DO UPDATE SET client_id = excluded.client_id, device_token = excluded.device_token,
             created_at = excluded.created_at, activated_at = NULL, revoked_at = NULL`,
        )
        .run(...ids, slot, candidate.clientId, token, at);
      return { outcome: 'new' as const, credential: { slot, clientId: candidate.clientId, deviceToken: candidate.deviceToken, createdAt: at, activatedAt: null, revokedAt: null } };
    }).immediate();
  }

  async listDeviceTokenSlots(iotId: string): Promise<DeviceTokenSlot[]> {
    return (this.s.listSlots.all(iotId) as Row[]).map((r) => tokenSlotOf(r));
  }

  async getLiveDeviceTokens(iotId: string): Promise<DeviceTokenCredential[]> {
    return (this.s.liveSlots.all(iotId) as Row[]).map((r) => this.toCredential(r));
  }

  async activateDeviceTokenSlot(iotId: string, slot: number, at: string): Promise<boolean> {
    return (
      this.db
        .prepare('UPDATE device_tokens SET activated_at = ? WHERE iot_id = ? AND slot = ? AND activated_at IS NULL AND revoked_at IS NULL')
        .run(at, iotId, slot).changes === 1
    );
  }

  async revokeDeviceTokenSlot(iotId: string, slot: number, at: string): Promise<DeviceTokenSlot | undefined> {
    return this.db.transaction(() => {
      // The token itself is dropped, not just flagged: nothing is left that could log in.
      this.db.prepare('UPDATE device_tokens SET device_token = NULL, revoked_at = ? WHERE iot_id = ? AND slot = ? AND revoked_at IS NULL').run(at, iotId, slot);
      const r = this.db.prepare('SELECT * FROM device_tokens WHERE iot_id = ? AND slot = ?').get(iotId, slot) as Row | undefined;
      return r ? tokenSlotOf(r) : undefined;
    }).immediate();
  }

  async rotateDeviceSecret(iotId: string, newSecret: string, previousExpiresAt: string | null): Promise<Device | undefined> {
    return this.db.transaction(() => {
      const old = this.s.getDeviceById.get(iotId) as Row | undefined;
      if (!old) return undefined;
      const ids = deviceIds(old.iot_id, old.product_key, old.device_name);
      // Each column's value is bound to its column: the old secret is re-encrypted for
      // previous_device_secret, not copied (a copied ciphertext would not decrypt there).
      const previous =
        previousExpiresAt === null
          ? null
          : this.sealDevice('previous_device_secret', ids, openSecret(this.cipher, 'devices', 'device_secret', ids, old.device_secret as string));
      const r = this.db
        .prepare('UPDATE devices SET previous_device_secret = @previous, previous_expires_at = @expires, device_secret = @secret WHERE iot_id = @iotId RETURNING *')
        .get({ iotId, previous, expires: previousExpiresAt, secret: this.sealDevice('device_secret', ids, newSecret) }) as Row;
      return this.toDevice(r);
    }).immediate();
  }

  // ---- presence ----

  async markOnline(iotId: string, at: string): Promise<{ activated: boolean }> {
    const r = this.s.markOnline.get({ iotId, at }) as { activated_at: string } | undefined;
    return { activated: r?.activated_at === at };
  }

  async markOnlineMany(iotIds: string[], at: string): Promise<string[]> {
    if (iotIds.length === 0) return [];
    // One transaction: with synchronous=FULL each commit is an fsync, so 50 logins cost one.
    return this.db.transaction(() => {
      const activated: string[] = [];
      for (const iotId of iotIds) {
        const r = this.s.markOnline.get({ iotId, at }) as { activated_at: string } | undefined;
        if (r?.activated_at === at) activated.push(iotId);
      }
      return activated;
    }).immediate();
  }

  async markOffline(iotIds: string[], at: string): Promise<void> {
    if (iotIds.length === 0) return;
    this.db.transaction(() => {
      for (const id of iotIds) this.s.markOffline.run(at, id);
    })();
  }

  async markAllOffline(at: string): Promise<void> {
    this.s.markAllOffline.run(at);
  }

  async useRegistrationRandom(iotId: string, random: string, at: string): Promise<boolean> {
    return this.s.insertRandom.run(iotId, random, at).changes === 1;
  }

  // ---- topology ----

  async attachSubDevices(gatewayIotId: string, subIotIds: string[], limit: number): Promise<void> {
    this.db.transaction(() => {
      let count = (this.s.countSubs.get(gatewayIotId) as { n: number }).n;
      const toAttach = subIotIds.filter((id, i) => subIotIds.indexOf(id) === i && !this.s.subInGateway.get(id, gatewayIotId));
      if (count + toAttach.length > limit) {
        throw new ThingAuthError('SUB_DEVICE_LIMIT_REACHED', `gateway already has ${count} sub-devices; the limit is ${limit}`, { limit });
      }
      for (const id of toAttach) {
        if (this.s.attachSub.run(gatewayIotId, id).changes === 0) {
          throw new ThingAuthError('DEVICE_NOT_FOUND', `sub-device ${id} not found`);
        }
        count++;
      }
    }).immediate();
  }

  async detachSubDevices(gatewayIotId: string, subIotIds: string[]): Promise<number> {
    return this.db.transaction(() => {
      let n = 0;
      for (const id of subIotIds) n += this.s.detachSub.run(id, gatewayIotId).changes;
      return n;
    }).immediate();
  }

  async countSubDevices(gatewayIotId: string): Promise<number> {
    return (this.s.countSubs.get(gatewayIotId) as { n: number }).n;
  }

  async claimSubDeviceRegistration(subIotId: string, gatewayIotId: string, opts: { unactivatedOnly?: boolean } = {}): Promise<boolean> {
    // One statement: the bound gateway is read and the registrar written under the same lock.
    const r = this.db
      .prepare(
        `UPDATE devices SET registered_by_gateway_iot_id = @gw
           WHERE iot_id = @sub AND COALESCE(gateway_iot_id, registered_by_gateway_iot_id, @gw) = @gw
             AND (@unact = 0 OR activated_at IS NULL)`,
      )
      .run({ sub: subIotId, gw: gatewayIotId, unact: opts.unactivatedOnly === true ? 1 : 0 });
    return r.changes === 1;
  }

  async releaseSubDevice(subIotId: string): Promise<Device | undefined> {
    return this.db.transaction(() => {
      const r = this.s.getDeviceById.get(subIotId) as Row | undefined;
      if (!r) return undefined;
      this.db.prepare('UPDATE devices SET gateway_iot_id = NULL, registered_by_gateway_iot_id = NULL WHERE iot_id = ?').run(subIotId);
      return this.toDevice(r);
    }).immediate();
  }

  // ---- applications ----

  private toApp(r: Row): Application {
    return {
      appKey: r.app_key as string,
      appSecret: openSecret(this.cipher, 'applications', 'app_secret', [r.app_key], r.app_secret as string),
      name: r.name as string,
      productKeys: JSON.parse(r.product_keys as string) as string[],
      createdAt: r.created_at as string,
    };
  }

  async createApplication(app: Application): Promise<void> {
    try {
      this.s.insertApp.run(app.appKey, sealSecret(this.cipher, 'applications', 'app_secret', [app.appKey], app.appSecret), app.name, JSON.stringify(app.productKeys), app.createdAt);
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new ThingAuthError('CONFLICT', `application ${app.appKey} already exists`);
      throw e;
    }
  }

  async getApplication(appKey: string): Promise<Application | undefined> {
    const r = this.s.getApp.get(appKey) as Row | undefined;
    return r ? this.toApp(r) : undefined;
  }

  async listApplications(): Promise<Application[]> {
    return (this.s.listApps.all() as Row[]).map((r) => this.toApp(r));
  }

  async deleteApplication(appKey: string): Promise<boolean> {
    return this.s.deleteApp.run(appKey).changes === 1;
  }

  // ---- audit ----

  async appendAudit(entries: AuditEntry[]): Promise<void> {
    if (entries.length === 0) return;
    this.db.transaction(() => {
      for (const e of entries) {
        this.s.insertAudit.run({
          at: e.at,
          action: e.action,
          actor: e.actor,
          productKey: e.productKey ?? null,
          deviceName: e.deviceName ?? null,
          sourceAddress: e.sourceAddress ?? null,
          result: e.result,
          reason: e.reason ?? null,
        });
      }
    })();
  }

  async queryAudit(q: AuditQuery): Promise<AuditEntry[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.productKey) (where.push('product_key = ?'), args.push(q.productKey));
    if (q.deviceName) (where.push('device_name = ?'), args.push(q.deviceName));
    if (q.action) (where.push('action = ?'), args.push(q.action));
    if (q.since) (where.push('at >= ?'), args.push(q.since));
    if (q.beforeId !== undefined) (where.push('id < ?'), args.push(q.beforeId));
    const sql = `SELECT * FROM audit ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY id DESC LIMIT ?`;
    const rows = this.db.prepare(sql).all(...args, Math.min(q.limit ?? 100, 10_000)) as Row[];
    return rows.map((r) => auditEntryOf(r));
  }

  async pruneAudit(before: string): Promise<number> {
    return this.s.pruneAudit.run(before).changes;
  }

  // ---- management tokens ----

  async createManagementToken(t: ManagementTokenRecord): Promise<void> {
    try {
      this.db
        .prepare('INSERT INTO management_tokens (id, name, scope, token_hash, created_at) VALUES (?, ?, ?, ?, ?)')
        .run(t.id, t.name, t.scope, t.tokenHash, t.createdAt);
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new ThingAuthError('CONFLICT', `token ${t.id} already exists`);
      throw e;
    }
  }

  async getManagementToken(id: string): Promise<ManagementTokenRecord | undefined> {
    const r = this.db.prepare('SELECT * FROM management_tokens WHERE id = ?').get(id) as Row | undefined;
    return r ? managementTokenOf(r) : undefined;
  }

  async listManagementTokens(): Promise<ManagementTokenRecord[]> {
    return (this.db.prepare('SELECT * FROM management_tokens ORDER BY created_at, id').all() as Row[]).map((r) => managementTokenOf(r));
  }

  async deleteManagementToken(id: string): Promise<boolean> {
    return this.db.prepare('DELETE FROM management_tokens WHERE id = ?').run(id).changes === 1;
  }

  // ---- key rotation ----

  async reencryptSecrets(cursor: ReencryptCursor | undefined, batchSize: number): Promise<{ rewritten: number; cursor: ReencryptCursor | undefined }> {
    const m = /^(\d+):(\d+)$/.exec(cursor ?? '0:0');
    if (!m) throw new ThingAuthError('INVALID_ARGUMENT', `bad re-encryption cursor "${cursor}"`);
    const ti = Number(m[1]);
    const after = Number(m[2]);
    const spec = ENCRYPTED_COLUMNS[ti];
    if (!spec) return { rewritten: 0, cursor: undefined };
    const cols = spec.columns;
    return this.db.transaction(() => {
      // Keyset paging on rowid: each batch costs the same however far the pass has got.
      const rows = this.db
        .prepare(`SELECT rowid AS rid, ${[...spec.identity, ...cols].join(', ')} FROM ${spec.table} WHERE rowid > ? ORDER BY rowid LIMIT ?`)
        .all(after, batchSize) as Row[];
      const update = this.db.prepare(`UPDATE ${spec.table} SET ${cols.map((c) => `${c} = ?`).join(', ')} WHERE rowid = ?`);
      let rewritten = 0;
      for (const r of rows) {
        let changed = false;
        const ids = spec.identity.map((c) => r[c]);
        const values = cols.map((c) => {
          const v = r[c];
          if (typeof v !== 'string' || !this.cipher.needsReencrypt(v)) return v;
          changed = true;
          rewritten++;
          // Same place, same context: the new value is bound exactly as the old one was.
          return sealSecret(this.cipher, spec.table, c, ids, openSecret(this.cipher, spec.table, c, ids, v));
        });
        if (changed) update.run(...values, r.rid);
      }
      const next = rows.length < batchSize ? (ti + 1 < ENCRYPTED_COLUMNS.length ? `${ti + 1}:0` : undefined) : `${ti}:${rows[rows.length - 1]!.rid}`;
      return { rewritten, cursor: next };
    }).immediate();
  }

  async countSecretsNotUnderCurrentKey(): Promise<number> {
    let n = 0;
    for (const { table, columns } of ENCRYPTED_COLUMNS) {
      for (const c of columns) {
        n += (this.db.prepare(`SELECT COUNT(*) AS n FROM ${table} WHERE thingauth_stale_secret(${c}) = 1`).get() as { n: number }).n;
      }
    }
    return n;
  }

  async productCountMismatches(): Promise<{ productKey: string; counted: number; actual: number }[]> {
    return this.db
      .prepare(
        `SELECT p.product_key AS productKey, COALESCE(c.devices, -1) AS counted,
           (SELECT COUNT(*) FROM devices d WHERE d.product_key = p.product_key) AS actual
         FROM products p LEFT JOIN product_counts c ON c.product_key = p.product_key
         WHERE counted != actual`,
      )
      .all() as { productKey: string; counted: number; actual: number }[];
  }

  // ---- secret settings ----

  async getSecretSetting(key: string): Promise<string | undefined> {
    const r = this.db.prepare('SELECT value FROM secret_settings WHERE key = ?').get(key) as { value: string } | undefined;
    return r ? openSecret(this.cipher, 'secret_settings', 'value', [key], r.value) : undefined;
  }

  async setSecretSettingIfAbsent(key: string, value: string): Promise<string> {
    return this.db.transaction(() => {
      this.db.prepare('INSERT OR IGNORE INTO secret_settings (key, value) VALUES (?, ?)').run(key, sealSecret(this.cipher, 'secret_settings', 'value', [key], value));
      return openSecret(this.cipher, 'secret_settings', 'value', [key], (this.db.prepare('SELECT value FROM secret_settings WHERE key = ?').get(key) as { value: string }).value);
    }).immediate();
  }

  // ---- meta ----

  async getMeta(key: string): Promise<string | undefined> {
    return (this.s.getMeta.get(key) as { value: string } | undefined)?.value;
  }

  async setMeta(key: string, value: string): Promise<void> {
    this.s.setMeta.run(key, value);
  }

  // ---- store copy ----

  async getDeviceTokenSlotsOf(iotIds: string[]): Promise<StoredDeviceTokenSlot[]> {
    if (iotIds.length === 0) return [];
    const rows = this.db
      .prepare('SELECT * FROM device_tokens WHERE iot_id IN (SELECT value FROM json_each(?)) ORDER BY iot_id, slot')
      .all(JSON.stringify(iotIds)) as Row[];
    return rows.map((r) => ({
      iotId: r.iot_id as string,
      ...tokenSlotOf(r),
      deviceToken: r.device_token === null ? null : this.toCredential(r).deviceToken,
    }));
  }

  async putDevices(productKey: string, devices: DeviceCopy[]): Promise<void> {
    if (devices.length === 0) return;
    this.db.transaction(() => {
      this.deviceCount(productKey);
      const update = this.db.prepare(`UPDATE devices SET device_secret = @deviceSecret, previous_device_secret = @previous,
        previous_expires_at = @previousSecretExpiresAt, nickname = @nickname, enabled = @enabled, online = 0, created_at = @createdAt,
        activated_at = @activatedAt, last_online_at = @lastOnlineAt, last_auth_error = @lastAuthError, last_auth_error_at = @lastAuthErrorAt,
        last_auth_error_source = @lastAuthErrorSource WHERE iot_id = @iotId`);
      const insert = this.db.prepare(`INSERT INTO devices (iot_id, product_key, device_name, device_secret, previous_device_secret,
        previous_expires_at, nickname, enabled, online, created_at, activated_at, last_online_at, last_auth_error, last_auth_error_at,
        last_auth_error_source) VALUES (@iotId, @productKey, @deviceName, @deviceSecret, @previous, @previousSecretExpiresAt, @nickname,
        @enabled, 0, @createdAt, @activatedAt, @lastOnlineAt, @lastAuthError, @lastAuthErrorAt, @lastAuthErrorSource)`);
      const insertSlot = this.db.prepare(`INSERT INTO device_tokens (iot_id, product_key, device_name, slot, client_id, device_token,
        created_at, activated_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
      let inserted = 0;
      for (const d of devices) {
        const byId = this.s.getDeviceIds.get(d.iotId) as Row | undefined;
        if (byId && (byId.product_key !== productKey || byId.device_name !== d.deviceName)) {
          throw new ThingAuthError('CONFLICT', `iotId ${d.iotId} is stored for ${String(byId.product_key)}/${String(byId.device_name)}, not ${productKey}/${d.deviceName}`, { iotId: d.iotId });
        }
        const byName = this.s.getDevice.get(productKey, d.deviceName) as Row | undefined;
        if (byName && byName.iot_id !== d.iotId) {
          throw new ThingAuthError('CONFLICT', `deviceName ${d.deviceName} of product ${productKey} is held by another iotId`, { deviceName: d.deviceName });
        }
        const ids = deviceIds(d.iotId, productKey, d.deviceName);
        const row = {
          ...d,
          productKey,
          deviceSecret: this.sealDevice('device_secret', ids, d.deviceSecret),
          previous: this.sealDevice('previous_device_secret', ids, d.previousDeviceSecret),
          enabled: d.enabled ? 1 : 0,
        };
        delete (row as Partial<typeof row>).slots;
        if (byId) update.run(row);
        else (insert.run(row), inserted++);
        this.s.clearSlots.run(d.iotId);
        for (const t of d.slots) {
          const token = t.deviceToken === null ? null : sealSecret(this.cipher, 'device_tokens', 'device_token', [...ids, t.slot], t.deviceToken);
          insertSlot.run(...ids, t.slot, t.clientId, token, t.createdAt, t.activatedAt, t.revokedAt);
        }
      }
      this.s.addCount.run(inserted, productKey);
    }).immediate();
  }

  async setDeviceBindings(bindings: DeviceBindings[]): Promise<void> {
    if (bindings.length === 0) return;
    this.db.transaction(() => {
      const set = this.db.prepare('UPDATE devices SET gateway_iot_id = ?, registered_by_gateway_iot_id = ? WHERE iot_id = ?');
      for (const b of bindings) {
        let changes = 0;
        try {
          changes = set.run(b.gatewayIotId, b.registeredByGatewayIotId, b.iotId).changes;
        } catch (e) {
          if ((e as { code?: string }).code !== 'SQLITE_CONSTRAINT_FOREIGNKEY') throw e;
          throw new ThingAuthError('DEVICE_NOT_FOUND', `gateway ${b.gatewayIotId ?? b.registeredByGatewayIotId} of device ${b.iotId} not found`);
        }
        if (changes === 0) throw new ThingAuthError('DEVICE_NOT_FOUND', `device ${b.iotId} not found`);
      }
    }).immediate();
  }

  async listAuditAfter(afterId: number | null, limit: number): Promise<AuditEntry[]> {
    const rows = this.db.prepare('SELECT * FROM audit WHERE id > ? ORDER BY id LIMIT ?').all(afterId ?? 0, limit) as Row[];
    return rows.map((r) => auditEntryOf(r));
  }

  async putAuditEntries(entries: (AuditEntry & { id: number })[]): Promise<void> {
    if (entries.length === 0) return;
    this.db.transaction(() => {
      // AUTOINCREMENT keeps the largest id ever inserted, so later appends go above these.
      const insert = this.db.prepare(`INSERT INTO audit (id, at, action, actor, product_key, device_name, source_address, result, reason)
        VALUES (@id, @at, @action, @actor, @productKey, @deviceName, @sourceAddress, @result, @reason)`);
      for (const e of entries) {
        try {
          insert.run({ id: e.id, at: e.at, action: e.action, actor: e.actor, productKey: e.productKey ?? null, deviceName: e.deviceName ?? null, sourceAddress: e.sourceAddress ?? null, result: e.result, reason: e.reason ?? null });
        } catch (err) {
          if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new ThingAuthError('CONFLICT', `audit entry ${e.id} already exists`, { id: e.id });
          throw err;
        }
      }
    }).immediate();
  }

  async listSecretSettingKeys(): Promise<string[]> {
    return (this.db.prepare('SELECT key FROM secret_settings ORDER BY key').all() as { key: string }[]).map((r) => r.key);
  }

  async putSecretSetting(key: string, value: string): Promise<void> {
    this.db
      .prepare('INSERT INTO secret_settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value')
      .run(key, sealSecret(this.cipher, 'secret_settings', 'value', [key], value));
  }
  // ---- X.509 (issue 16) ----

  async getProductAuth(productKey: string): Promise<ProductAuthSettings | undefined> {
    const r = this.db.prepare('SELECT * FROM product_auth WHERE product_key = ?').get(productKey) as Row | undefined;
    if (r) return productAuthOf(r);
    return this.s.getProduct.get(productKey) ? defaultProductAuth(productKey) : undefined;
  }

  async setProductAuth(productKey: string, patch: ProductAuthPatch, at: string): Promise<ProductAuthSettings> {
    return this.db.transaction(() => {
      const product = this.s.getProduct.get(productKey) as Row | undefined;
      if (!product) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${productKey} not found`);
      if (patch.authMode === 'x509') {
        const refused = x509SettingsConflict(productKey, 'x509', Boolean(product.dynamic_registration), product.node_type as string);
        if (refused) throw refused;
      }
      const r = this.db.prepare('SELECT * FROM product_auth WHERE product_key = ?').get(productKey) as Row | undefined;
      const cur = r ? productAuthOf(r) : defaultProductAuth(productKey);
      // Decided in this (immediate) transaction, as every device write is.
      if (patch.authMode !== undefined && patch.authMode !== cur.authMode) {
        const count = this.deviceCount(productKey);
        if (count > 0) {
          const e = authModeLocked(productKey, count);
          throw new ThingAuthError('CONFLICT', e.message, e.details);
        }
      }
      const next: ProductAuthSettings = {
        productKey,
        authMode: patch.authMode ?? cur.authMode,
        enrollOnFirstContact: patch.enrollOnFirstContact ?? cur.enrollOnFirstContact,
        certValidityDays: patch.certValidityDays !== undefined ? patch.certValidityDays : cur.certValidityDays,
      };
      this.db
        .prepare(
          `INSERT INTO product_auth (product_key, auth_mode, enroll_on_first_contact, cert_validity_days, updated_at) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT(product_key) DO UPDATE SET auth_mode = excluded.auth_mode, enroll_on_first_contact = excluded.enroll_on_first_contact,
           cert_validity_days = excluded.cert_validity_days, updated_at = excluded.updated_at`,
        )
        .run(productKey, next.authMode, next.enrollOnFirstContact ? 1 : 0, next.certValidityDays, at);
      return next;
    }).immediate();
  }

  async getProductCa(productKey: string): Promise<StoredProductCa | undefined> {
    const r = this.db.prepare('SELECT * FROM product_cas WHERE product_key = ?').get(productKey) as Row | undefined;
    return r ? productCaOf(r, this.cipher) : undefined;
  }

  async putProductCaIfAbsent(ca: StoredProductCa): Promise<StoredProductCa> {
    return this.db.transaction(() => {
      if (!this.s.getProduct.get(ca.productKey)) throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${ca.productKey} not found`);
      this.db
        .prepare('INSERT INTO product_cas (product_key, source, certificate, private_key, fingerprint, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(product_key) DO NOTHING')
        .run(ca.productKey, ca.source, ca.certificate, sealCaKey(this.cipher, ca), ca.fingerprint, ca.createdAt);
      return productCaOf(this.db.prepare('SELECT * FROM product_cas WHERE product_key = ?').get(ca.productKey) as Row, this.cipher);
    }).immediate();
  }

  async addDeviceCertificate(cert: StoredDeviceCertificate): Promise<void> {
    this.db.transaction(() => {
      const d = this.db.prepare('SELECT product_key, device_name FROM devices WHERE iot_id = ?').get(cert.iotId) as Row | undefined;
      if (!d || d.product_key !== cert.productKey || d.device_name !== cert.deviceName) {
        throw new ThingAuthError('DEVICE_NOT_FOUND', `device ${cert.deviceName} not found in product ${cert.productKey}`);
      }
      if (this.db.prepare('SELECT 1 FROM device_certificates WHERE product_key = ? AND serial = ?').get(cert.productKey, cert.serial)) {
        throw new ThingAuthError('CONFLICT', `a certificate with serial ${cert.serial} exists`, { field: 'serial' });
      }
      this.db.prepare(`INSERT INTO device_certificates (${CERT_COLUMNS.join(', ')}) VALUES (${CERT_COLUMNS.map(() => '?').join(', ')})`).run(...certValues(this.cipher, cert));
    }).immediate();
  }

  async getDeviceCertificate(productKey: string, serial: string): Promise<StoredDeviceCertificate | undefined> {
    const r = this.db.prepare('SELECT * FROM device_certificates WHERE product_key = ? AND serial = ?').get(productKey, serial) as Row | undefined;
    return r ? deviceCertOf(r, this.cipher) : undefined;
  }

  async listDeviceCertificates(iotId: string): Promise<StoredDeviceCertificate[]> {
    const rows = this.db.prepare('SELECT * FROM device_certificates WHERE iot_id = ? ORDER BY created_at DESC, rowid DESC').all(iotId) as Row[];
    return rows.map((r) => deviceCertOf(r, this.cipher));
  }

  async revokeDeviceCertificate(productKey: string, serial: string, at: string, reason: string): Promise<StoredDeviceCertificate | undefined> {
    return this.db.transaction(() => {
      this.db
        .prepare('UPDATE device_certificates SET revoked_at = ?, revocation_reason = ? WHERE product_key = ? AND serial = ? AND (revoked_at IS NULL OR revoked_at > ?)')
        .run(at, reason, productKey, serial, at);
      const r = this.db.prepare('SELECT * FROM device_certificates WHERE product_key = ? AND serial = ?').get(productKey, serial) as Row | undefined;
      return r ? deviceCertOf(r, this.cipher) : undefined;
    }).immediate();
  }

  async listRevokedCertificates(productKey: string, asOf: string): Promise<{ serial: string; revokedAt: string; reason: string | null }[]> {
    const rows = this.db
      .prepare('SELECT serial, revoked_at, revocation_reason FROM device_certificates WHERE product_key = ? AND revoked_at IS NOT NULL AND revoked_at <= ? ORDER BY revoked_at, serial')
      .all(productKey, asOf) as Row[];
    return rows.map((r) => ({ serial: r.serial as string, revokedAt: r.revoked_at as string, reason: (r.revocation_reason as string | null) ?? null }));
  }

  async listCertificatesRevokedAfter(after: string, limit: number): Promise<StoredDeviceCertificate[]> {
    const rows = this.db.prepare('SELECT * FROM device_certificates WHERE revoked_at IS NOT NULL AND revoked_at > ? ORDER BY revoked_at, serial LIMIT ?').all(after, limit) as Row[];
    return rows.map((r) => deviceCertOf(r, this.cipher, false));
  }

  async listExpiringCertificates(before: string, asOf: string, limit: number, productKey?: string): Promise<StoredDeviceCertificate[]> {
    const rows = this.db
      .prepare(
        `SELECT * FROM device_certificates WHERE not_after < ? AND (revoked_at IS NULL OR revoked_at > ?) ${productKey !== undefined ? 'AND product_key = ?' : ''}
         ORDER BY not_after, serial LIMIT ?`,
      )
      .all(...[before, asOf, ...(productKey !== undefined ? [productKey] : []), limit]) as Row[];
    return rows.map((r) => deviceCertOf(r, this.cipher, false));
  }

  async countExpiringCertificates(before: string, asOf: string): Promise<number> {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM device_certificates WHERE not_after < ? AND (revoked_at IS NULL OR revoked_at > ?)').get(before, asOf) as { n: number }).n;
  }
}
