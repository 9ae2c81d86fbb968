/**
 * Copies one store into another through the Store port only, so any pair of adapters works
 * (SQLite -> PostgreSQL is the point): products, devices with their secrets and regnwl slots,
 * topology, applications, management tokens (hashes), secret settings and audit. Secrets are
 * read decrypted from the source and written through the destination, which encrypts them
 * under its own key and binding.
 *
 * Every record is compared with its counterpart in the destination first and written only
 * when it is missing or differs, in batches of one transaction each: running the copy again
 * writes nothing and reports every record identical, and a copy interrupted between batches
 * resumes by running it again. `verify` runs the same walk without writing and lists every
 * difference, plus the tables whose counts differ on the two sides.
 */
import type { Device, Product } from '../core/records.js';
import type { Application, AuditEntry, DeviceBindings, DeviceCopy, ManagementTokenRecord, ProductAuthSettings, Store, StoredDeviceCertificate, StoredDeviceTokenSlot, StoredProductCa } from '../store/store.js';

export const COPY_TABLES = [
  'products', 'devices', 'device_tokens', 'topology', 'applications', 'management_tokens', 'secret_settings',
  // X.509 (issue 16): walked right after products (modes, CAs) and after devices (certificates).
  'product_auth', 'product_cas', 'device_certificates',
  'audit',
] as const;
export type CopyTable = (typeof COPY_TABLES)[number];

export interface TableReport {
  /** Records in the source. */
  source: number;
  /** Records in the destination (after the copy). */
  destination: number;
  created: number;
  updated: number;
  identical: number;
}

export interface CopyMismatch {
  table: CopyTable;
  /** Which record: a ProductKey, `pk/dn`, an appKey, a token id, a setting key, an audit id; absent for a count. */
  key?: string;
  problem: string;
}

export interface CopyReport {
  tables: Record<CopyTable, TableReport>;
  /** Up to MAX_MISMATCHES differences; `mismatchCount` is the total. */
  mismatches: CopyMismatch[];
  mismatchCount: number;
}

export interface CopyProgress {
  /** A table's walk begins; total is the number of source records when known cheaply. */
  start(table: CopyTable, total: number | undefined): void;
  advance(table: CopyTable, n: number): void;
  done(table: CopyTable): void;
}

export interface CopyOptions {
  /** Records per read and per write transaction. */
  batchSize: number;
  /** false: compare only (verify), write nothing. */
  write: boolean;
  progress?: CopyProgress;
}

export const MAX_MISMATCHES = 1000;
const PAGE = 1000;

function emptyReport(): CopyReport {
  const tables = {} as Record<CopyTable, TableReport>;
  for (const t of COPY_TABLES) tables[t] = { source: 0, destination: 0, created: 0, updated: 0, identical: 0 };
  return { tables, mismatches: [], mismatchCount: 0 };
}

/** A stable text of a record for comparison: the same builder on both sides gives the same key order. */
const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

function productView(p: Product): unknown {
  return {
    productKey: p.productKey, productName: p.productName, productSecret: p.productSecret, nodeType: p.nodeType,
    dynamicRegistration: p.dynamicRegistration, preRegistrationFree: p.preRegistrationFree, requireTls: p.requireTls,
    replayProtection: p.replayProtection, deviceLimit: p.deviceLimit, timestampWindowSeconds: p.timestampWindowSeconds ?? null,
    description: p.description, createdAt: p.createdAt, updatedAt: p.updatedAt,
  };
}

/** A page's slots by device, so each device finds its own without a scan. */
function slotsByDevice(slots: StoredDeviceTokenSlot[]): Map<string, StoredDeviceTokenSlot[]> {
  const m = new Map<string, StoredDeviceTokenSlot[]>();
  for (const s of slots) m.set(s.iotId, [...(m.get(s.iotId) ?? []), s]);
  return m;
}

function deviceCopyOf(d: Device, slotsOf: Map<string, StoredDeviceTokenSlot[]>): DeviceCopy {
  return {
    iotId: d.iotId, productKey: d.productKey, deviceName: d.deviceName, deviceSecret: d.deviceSecret,
    previousDeviceSecret: d.previousDeviceSecret, previousSecretExpiresAt: d.previousSecretExpiresAt, nickname: d.nickname,
    enabled: d.enabled, createdAt: d.createdAt, activatedAt: d.activatedAt, lastOnlineAt: d.lastOnlineAt,
    lastAuthError: d.lastAuthError, lastAuthErrorAt: d.lastAuthErrorAt, lastAuthErrorSource: d.lastAuthErrorSource,
    slots: [...(slotsOf.get(d.iotId) ?? [])]
      .sort((a, b) => a.slot - b.slot)
      .map((s) => ({ slot: s.slot, clientId: s.clientId, deviceToken: s.deviceToken, createdAt: s.createdAt, activatedAt: s.activatedAt, revokedAt: s.revokedAt })),
  };
}

function authView(a: ProductAuthSettings): unknown {
  return { productKey: a.productKey, authMode: a.authMode, enrollOnFirstContact: a.enrollOnFirstContact, certValidityDays: a.certValidityDays };
}

function caView(c: StoredProductCa): unknown {
  return { productKey: c.productKey, source: c.source, certificate: c.certificate, privateKey: c.privateKey, fingerprint: c.fingerprint, createdAt: c.createdAt };
}

function certView(c: StoredDeviceCertificate): unknown {
  return {
    serial: c.serial, iotId: c.iotId, productKey: c.productKey, deviceName: c.deviceName, source: c.source, certificate: c.certificate, privateKey: c.privateKey,
    fingerprint: c.fingerprint, notBefore: c.notBefore, notAfter: c.notAfter, createdAt: c.createdAt, revokedAt: c.revokedAt, revocationReason: c.revocationReason,
  };
}

function bindingsOf(d: Device): DeviceBindings {
  return { iotId: d.iotId, gatewayIotId: d.gatewayIotId, registeredByGatewayIotId: d.registeredByGatewayIotId };
}

function appView(a: Application): unknown {
  return { appKey: a.appKey, appSecret: a.appSecret, name: a.name, productKeys: a.productKeys, createdAt: a.createdAt };
}

function tokenView(t: ManagementTokenRecord): unknown {
  return { id: t.id, name: t.name, scope: t.scope, tokenHash: t.tokenHash, createdAt: t.createdAt };
}

function auditView(e: AuditEntry): unknown {
  return {
    id: e.id, at: e.at, action: e.action, actor: e.actor, productKey: e.productKey ?? null, deviceName: e.deviceName ?? null,
    sourceAddress: e.sourceAddress ?? null, result: e.result, reason: e.reason ?? null,
  };
}

async function allProducts(store: Store): Promise<Product[]> {
  const out: Product[] = [];
  for (let offset = 0; ; offset += PAGE) {
    const page = await store.listProducts(offset, PAGE);
    out.push(...page.items);
    if (page.items.length < PAGE) break;
  }
  // Key order, whatever order the adapter lists in: the walk is the same on every run.
  return out.sort((a, b) => (a.productKey < b.productKey ? -1 : a.productKey > b.productKey ? 1 : 0));
}

/** Each page of a product's devices, in DeviceName order (keyset paging, cheap at any depth). */
async function* devicePages(store: Store, productKey: string, batchSize: number): AsyncGenerator<Device[]> {
  let after: string | null = null;
  for (;;) {
    const page = await store.listDevicesAfter(productKey, after, batchSize);
    if (page.length > 0) yield page;
    if (page.length < batchSize) return;
    after = page[page.length - 1]!.deviceName;
  }
}

/** Runs one walk over every table; with `write` it copies what is missing or different. */
export async function copyStore(from: Store, to: Store, opts: CopyOptions): Promise<CopyReport> {
  const report = emptyReport();
  const { tables } = report;
  const mismatch = (m: CopyMismatch) => {
    report.mismatchCount++;
    if (report.mismatches.length < MAX_MISMATCHES) report.mismatches.push(m);
  };
  const progress = opts.progress;
  /** Counts one compared record; in verify mode a difference is a mismatch. */
  const tally = (table: CopyTable, key: string, state: 'missing' | 'different' | 'identical') => {
    if (state === 'identical') tables[table].identical++;
    else if (opts.write) tables[table][state === 'missing' ? 'created' : 'updated']++;
    else mismatch({ table, key, problem: state === 'missing' ? 'missing in the destination' : 'differs in the destination' });
  };

  // ---- products ----
  const products = await allProducts(from);
  progress?.start('products', products.length);
  for (const p of products) {
    tables.products.source++;
    const d = await to.getProduct(p.productKey);
    const state = !d ? 'missing' : same(productView(p), productView(d)) ? 'identical' : 'different';
    tally('products', p.productKey, state);
    if (opts.write && state === 'missing') await to.createProduct(p);
    if (opts.write && state === 'different') {
      const { productKey, productSecret, updatedAt, createdAt: _c, productName, description, dynamicRegistration, preRegistrationFree, requireTls, replayProtection, deviceLimit, nodeType } = p;
      await to.updateProduct(productKey, { productName, description, dynamicRegistration, preRegistrationFree, requireTls, replayProtection, deviceLimit, nodeType, timestampWindowSeconds: p.timestampWindowSeconds ?? 0 }, updatedAt);
      await to.setProductSecret(productKey, productSecret, updatedAt);
      // createdAt is not writable through the port: a product created differently stays a mismatch (verify says so).
    }
    progress?.advance('products', 1);
  }
  progress?.done('products');

  // ---- X.509 product modes and CAs: before devices (a mode is fixed once a product has devices) ----
  progress?.start('product_auth', products.length);
  for (const p of products) {
    const a = await from.getProductAuth(p.productKey);
    const d = await to.getProductAuth(p.productKey);
    progress?.advance('product_auth', 1);
    // A product in the default mode with default settings has no row worth a copy.
    if (!a || same(authView(a), authView({ productKey: p.productKey, authMode: 'secret', enrollOnFirstContact: false, certValidityDays: null }))) {
      if (d && !same(authView(d), authView({ productKey: p.productKey, authMode: 'secret', enrollOnFirstContact: false, certValidityDays: null }))) {
        mismatch({ table: 'product_auth', key: p.productKey, problem: 'the destination has X.509 settings the source does not' });
      }
      continue;
    }
    tables.product_auth.source++;
    const state = !d ? 'missing' : same(authView(a), authView(d)) ? 'identical' : 'different';
    tally('product_auth', p.productKey, state === 'different' && d!.authMode === 'secret' && !d!.enrollOnFirstContact && d!.certValidityDays === null ? 'missing' : state);
    if (opts.write && state !== 'identical') {
      try {
        await to.setProductAuth(p.productKey, { authMode: a.authMode, enrollOnFirstContact: a.enrollOnFirstContact, certValidityDays: a.certValidityDays }, p.updatedAt);
      } catch (e) {
        mismatch({ table: 'product_auth', key: p.productKey, problem: `not written: ${(e as Error).message}` });
      }
    }
  }
  progress?.done('product_auth');
  progress?.start('product_cas', products.length);
  for (const p of products) {
    const c = await from.getProductCa(p.productKey);
    progress?.advance('product_cas', 1);
    if (!c) continue;
    tables.product_cas.source++;
    const d = await to.getProductCa(p.productKey);
    if (d && !same(caView(c), caView(d))) {
      mismatch({ table: 'product_cas', key: p.productKey, problem: 'the destination holds another device CA for this product; not copied (a product keeps one CA)' });
      continue;
    }
    tally('product_cas', p.productKey, d ? 'identical' : 'missing');
    if (opts.write && !d) await to.putProductCaIfAbsent(c);
  }
  progress?.done('product_cas');

  // ---- devices (with their slots) ----
  let deviceTotal = 0;
  for (const p of products) deviceTotal += await from.countDevices(p.productKey);
  progress?.start('devices', deviceTotal);
  for (const p of products) {
    for await (const page of devicePages(from, p.productKey, opts.batchSize)) {
      const srcSlots = slotsByDevice(await from.getDeviceTokenSlotsOf(page.map((d) => d.iotId)));
      const dstDevices = new Map((await to.getDevicesByName(p.productKey, page.map((d) => d.deviceName))).map((d) => [d.deviceName, d]));
      const dstSlots = slotsByDevice(await to.getDeviceTokenSlotsOf([...dstDevices.values()].map((d) => d.iotId)));
      const toWrite: DeviceCopy[] = [];
      for (const d of page) {
        const key = `${p.productKey}/${d.deviceName}`;
        const copy = deviceCopyOf(d, srcSlots);
        tables.devices.source++;
        tables.device_tokens.source += copy.slots.length;
        const dst = dstDevices.get(d.deviceName);
        if (dst && dst.iotId !== d.iotId) {
          tables.device_tokens.destination += dstSlots.get(dst.iotId)?.length ?? 0;
          mismatch({ table: 'devices', key, problem: `the destination holds this DeviceName under another iotId (${dst.iotId}); not copied` });
          continue;
        }
        const dstCopy = dst ? deviceCopyOf(dst, dstSlots) : undefined;
        const state = !dstCopy ? 'missing' : same(copy, dstCopy) ? 'identical' : 'different';
        tally('devices', key, state);
        // Slots travel with their device; counted on their own so the summary shows them.
        const slotState = copy.slots.length === 0 && (dstCopy?.slots.length ?? 0) === 0 ? undefined : !dstCopy || dstCopy.slots.length === 0 ? 'missing' : same(copy.slots, dstCopy.slots) ? 'identical' : 'different';
        if (slotState === 'identical') tables.device_tokens.identical += copy.slots.length;
        else if (slotState && opts.write) tables.device_tokens[slotState === 'missing' ? 'created' : 'updated'] += copy.slots.length;
        else if (slotState) mismatch({ table: 'device_tokens', key, problem: 'slots differ in the destination' });
        if (state !== 'identical' && opts.write) toWrite.push(copy);
        tables.device_tokens.destination += state !== 'identical' && opts.write ? copy.slots.length : (dstCopy?.slots.length ?? 0);
      }
      if (opts.write) await to.putDevices(p.productKey, toWrite);
      progress?.advance('devices', page.length);
    }
  }
  progress?.done('devices');

  // ---- X.509 device certificates: after their devices ----
  // Only x509 products can hold certificates (issuing and enrollment need the mode, fixed once devices exist).
  const x509Products: Product[] = [];
  for (const p of products) if ((await from.getProductAuth(p.productKey))?.authMode === 'x509') x509Products.push(p);
  progress?.start('device_certificates', undefined);
  for (const p of x509Products) {
    for await (const page of devicePages(from, p.productKey, opts.batchSize)) {
      const dstDevices = new Map((await to.getDevicesByName(p.productKey, page.map((d) => d.deviceName))).map((d) => [d.deviceName, d]));
      for (const dev of page) {
        const certs = await from.listDeviceCertificates(dev.iotId);
        const dst = dstDevices.get(dev.deviceName);
        const dstCerts = dst && dst.iotId === dev.iotId ? new Map((await to.listDeviceCertificates(dst.iotId)).map((c) => [c.serial, c])) : new Map<string, StoredDeviceCertificate>();
        for (const c of certs) {
          tables.device_certificates.source++;
          const key = `${p.productKey}/${c.serial}`;
          if (!dst || dst.iotId !== dev.iotId) {
            mismatch({ table: 'device_certificates', key, problem: 'its device is not in the destination under the same iotId; not copied' });
            continue;
          }
          const d = dstCerts.get(c.serial);
          if (!d) {
            tally('device_certificates', key, 'missing');
            if (opts.write) await to.addDeviceCertificate(c);
            continue;
          }
          if (same(certView(c), certView(d))) {
            tables.device_certificates.identical++;
            continue;
          }
          // Only a revocation can differ on a certificate: written when the source's is earlier.
          const onlyRevocation = same(certView({ ...c, revokedAt: null, revocationReason: null }), certView({ ...d, revokedAt: null, revocationReason: null }));
          if (onlyRevocation && c.revokedAt !== null && (d.revokedAt === null || c.revokedAt < d.revokedAt)) {
            tally('device_certificates', key, 'different');
            if (opts.write) await to.revokeDeviceCertificate(c.productKey, c.serial, c.revokedAt, c.revocationReason ?? '');
          } else {
            mismatch({ table: 'device_certificates', key, problem: 'the destination holds this serial with other contents; not copied' });
          }
        }
      }
      progress?.advance('device_certificates', page.length);
    }
  }
  progress?.done('device_certificates');

  // ---- topology: after every device exists, as bindings refer to other devices ----
  progress?.start('topology', deviceTotal);
  for (const p of products) {
    for await (const page of devicePages(from, p.productKey, opts.batchSize)) {
      const dstDevices = new Map((await to.getDevicesByName(p.productKey, page.map((d) => d.deviceName))).map((d) => [d.deviceName, d]));
      const toWrite: DeviceBindings[] = [];
      for (const d of page) {
        const b = bindingsOf(d);
        const dst = dstDevices.get(d.deviceName);
        const bound = b.gatewayIotId !== null || b.registeredByGatewayIotId !== null;
        if (bound) tables.topology.source++;
        if (!dst || dst.iotId !== d.iotId) continue; // reported under devices
        const dstB = bindingsOf(dst);
        if (dstB.gatewayIotId !== null || dstB.registeredByGatewayIotId !== null) tables.topology.destination++;
        if (same(b, dstB)) {
          if (bound) tables.topology.identical++;
          continue;
        }
        tally('topology', `${p.productKey}/${d.deviceName}`, !bound || dstB.gatewayIotId !== null || dstB.registeredByGatewayIotId !== null ? 'different' : 'missing');
        toWrite.push(b);
      }
      if (opts.write && toWrite.length > 0) {
        await to.setDeviceBindings(toWrite);
        // Counted as written: the destination now holds the source's bindings.
        for (const b of toWrite) {
          const dst = dstDevices.get(page.find((d) => d.iotId === b.iotId)!.deviceName)!;
          const had = dst.gatewayIotId !== null || dst.registeredByGatewayIotId !== null;
          const has = b.gatewayIotId !== null || b.registeredByGatewayIotId !== null;
          tables.topology.destination += (has ? 1 : 0) - (had ? 1 : 0);
        }
      }
      progress?.advance('topology', page.length);
    }
  }
  progress?.done('topology');

  // ---- applications ----
  const apps = await from.listApplications();
  const dstApps = new Map((await to.listApplications()).map((a) => [a.appKey, a]));
  progress?.start('applications', apps.length);
  for (const a of apps) {
    tables.applications.source++;
    const d = dstApps.get(a.appKey);
    const state = !d ? 'missing' : same(appView(a), appView(d)) ? 'identical' : 'different';
    tally('applications', a.appKey, state);
    if (opts.write && state !== 'identical') {
      if (d) await to.deleteApplication(a.appKey);
      await to.createApplication(a);
    }
    progress?.advance('applications', 1);
  }
  progress?.done('applications');

  // ---- management tokens (hashes only: a token itself is never stored anywhere) ----
  const tokens = await from.listManagementTokens();
  const dstTokens = new Map((await to.listManagementTokens()).map((t) => [t.id, t]));
  progress?.start('management_tokens', tokens.length);
  for (const t of tokens) {
    tables.management_tokens.source++;
    const d = dstTokens.get(t.id);
    const state = !d ? 'missing' : same(tokenView(t), tokenView(d)) ? 'identical' : 'different';
    tally('management_tokens', t.id, state);
    if (opts.write && state !== 'identical') {
      if (d) await to.deleteManagementToken(t.id);
      await to.createManagementToken(t);
    }
    progress?.advance('management_tokens', 1);
  }
  progress?.done('management_tokens');

  // ---- secret settings (e.g. the HTTP channel token key: tokens issued before the move stay valid) ----
  const keys = await from.listSecretSettingKeys();
  progress?.start('secret_settings', keys.length);
  for (const k of keys) {
    tables.secret_settings.source++;
    const v = await from.getSecretSetting(k);
    const d = await to.getSecretSetting(k);
    const state = d === undefined ? 'missing' : d === v ? 'identical' : 'different';
    tally('secret_settings', k, state);
    if (opts.write && state !== 'identical' && v !== undefined) await to.putSecretSetting(k, v);
    progress?.advance('secret_settings', 1);
  }
  progress?.done('secret_settings');

  // ---- audit: a merge of both sides in id order (ids are kept) ----
  progress?.start('audit', undefined);
  let srcAfter: number | null = null;
  let dstAfter: number | null = null;
  let dstBuf: AuditEntry[] = [];
  /** The next destination entry not yet walked past is dstBuf[dstPos]. */
  let dstPos = 0;
  let dstDone = false;
  /**
   * Reads the destination up to `id` (or its end) into dstBuf. Called before a page is
   * written, so entries this walk writes are never read back as the destination's own.
   */
  const fillDst = async (id: number) => {
    while (!dstDone && (dstPos >= dstBuf.length || dstBuf[dstBuf.length - 1]!.id! < id)) {
      const more = await to.listAuditAfter(dstAfter, opts.batchSize);
      if (more.length < opts.batchSize) dstDone = true;
      if (more.length > 0) dstAfter = more[more.length - 1]!.id!;
      dstBuf = [...dstBuf.slice(dstPos), ...more];
      dstPos = 0;
    }
  };
  /** Destination entries walked past (matching or not) and the ones written. */
  let dstSeen = 0;
  let written = 0;
  for (;;) {
    const page = await from.listAuditAfter(srcAfter, opts.batchSize);
    if (page.length === 0) break;
    srcAfter = page[page.length - 1]!.id!;
    await fillDst(srcAfter);
    const toWrite: (AuditEntry & { id: number })[] = [];
    for (const e of page) {
      tables.audit.source++;
      let d = dstBuf[dstPos];
      while (d && d.id! < e.id!) {
        dstSeen++;
        d = dstBuf[++dstPos];
      }
      if (d && d.id === e.id) {
        dstSeen++;
        dstPos++;
        if (same(auditView(e), auditView(d))) tables.audit.identical++;
        else mismatch({ table: 'audit', key: String(e.id), problem: 'the destination holds another entry under this id; not copied' });
      } else {
        tally('audit', String(e.id), 'missing');
        toWrite.push(e as AuditEntry & { id: number });
      }
    }
    if (opts.write) {
      await to.putAuditEntries(toWrite);
      written += toWrite.length;
    }
    progress?.advance('audit', page.length);
  }
  // Entries only the destination holds, past the source's last: counted, not kept in memory.
  dstSeen += dstBuf.length - dstPos;
  while (!dstDone) {
    const more = await to.listAuditAfter(dstAfter, opts.batchSize);
    if (more.length < opts.batchSize) dstDone = true;
    if (more.length > 0) dstAfter = more[more.length - 1]!.id!;
    dstSeen += more.length;
  }
  progress?.done('audit');

  // ---- counts in the destination ----
  const dstProducts = await allProducts(to);
  tables.products.destination = dstProducts.length;
  for (const p of dstProducts) tables.devices.destination += await to.countDevices(p.productKey);
  tables.applications.destination = (await to.listApplications()).length;
  tables.management_tokens.destination = (await to.listManagementTokens()).length;
  tables.secret_settings.destination = (await to.listSecretSettingKeys()).length;
  for (const p of dstProducts) {
    const a = await to.getProductAuth(p.productKey);
    if (a && !same(authView(a), authView({ productKey: p.productKey, authMode: 'secret', enrollOnFirstContact: false, certValidityDays: null }))) tables.product_auth.destination++;
    if (await to.getProductCa(p.productKey)) tables.product_cas.destination++;
    if (a?.authMode !== 'x509') continue;
    for await (const page of devicePages(to, p.productKey, opts.batchSize)) {
      for (const d of page) tables.device_certificates.destination += (await to.listDeviceCertificates(d.iotId)).length;
    }
  }
  tables.audit.destination = dstSeen + written;
  for (const t of COPY_TABLES) {
    const { source, destination } = tables[t];
    if (source !== destination) mismatch({ table: t, problem: `counts differ: ${source} in the source, ${destination} in the destination` });
  }
  return report;
}
