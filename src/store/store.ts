/**
 * The Store port. Every adapter (SQLite, PostgreSQL) implements this and passes
 * test/contract/. Methods are async so network-backed adapters fit the same shape.
 * Invariants the adapters enforce atomically: DeviceName unique per product, the per-product
 * device limit, the per-gateway sub-device limit, one gateway per sub-device, a product's
 * nodeType fixed while it has devices. "Atomically" means with several processes writing to
 * one database too: the decision is taken in the transaction that writes, never from a value
 * the caller read before.
 * Secrets cross this port in plaintext; adapters keep them encrypted with the SecretCipher.
 */
import type { AuthMode } from '../core/x509.js';
import type { Device, DeviceStatus, DeviceTokenCredential, DeviceTokenSlot, Product } from '../core/records.js';

export interface Page<T> {
  items: T[];
  total: number;
  offset: number;
  limit: number;
}

export interface NewDevice {
  iotId: string;
  deviceName: string;
  deviceSecret: string;
  nickname?: string | null;
  activatedAt?: string | null;
}

export interface DeviceFilter {
  status?: DeviceStatus;
  /** Substring of the DeviceName. */
  nameContains?: string;
  /** Only sub-devices of this gateway. */
  gatewayIotId?: string;
}

/** The filters keyset paging keeps (a gateway's sub-devices span products: offset paging only). */
export type DeviceKeysetFilter = Pick<DeviceFilter, 'status' | 'nameContains'>;

export type ProductPatch = Partial<
  Pick<
    Product,
    'productName' | 'description' | 'dynamicRegistration' | 'preRegistrationFree' | 'requireTls' | 'replayProtection' | 'deviceLimit' | 'nodeType'
  >
> & {
  /** Seconds; 0 switches the replay window off. */
  timestampWindowSeconds?: number;
};

export type DevicePatch = Partial<
  Pick<Device, 'enabled' | 'deviceSecret' | 'nickname' | 'activatedAt' | 'lastAuthError' | 'lastAuthErrorAt' | 'lastAuthErrorSource'>
>;

export interface ImportRow {
  deviceName: string;
  deviceSecret: string;
  iotId: string;
  nickname?: string | null;
  activatedAt?: string | null;
}

export interface ImportResult {
  created: number;
  /** Already present with the same secret. */
  identical: number;
  overwritten: number;
  /** Present with a different secret (not written unless overwrite). */
  conflicts: string[];
}

export interface Application {
  appKey: string;
  appSecret: string;
  name: string;
  /** ProductKeys whose device topics the application may read and write. */
  productKeys: string[];
  createdAt: string;
}

export interface AuditEntry {
  id?: number;
  at: string;
  /** e.g. 'mqtt.connect', 'register.https', 'api.device.disable' */
  action: string;
  actor: string;
  productKey?: string | null;
  deviceName?: string | null;
  sourceAddress?: string | null;
  result: 'allow' | 'deny' | 'ok' | 'error';
  reason?: string | null;
}

export interface AuditQuery {
  productKey?: string;
  deviceName?: string;
  action?: string;
  since?: string;
  /** Keyset paging: only entries with an id below this (the last id of the previous page). */
  beforeId?: number;
  limit?: number;
}

/** A management API token as stored: only its SHA-256 (hex), never the token itself. */
export interface ManagementTokenRecord {
  id: string;
  name: string;
  scope: 'read' | 'admin';
  tokenHash: string;
  createdAt: string;
}

/** One regnwl credential slot as stored, for copying between stores: the token (null once revoked) included. */
export interface StoredDeviceTokenSlot extends DeviceTokenSlot {
  iotId: string;
  deviceToken: string | null;
}

/**
 * A device exactly as `putDevices` writes it (store copy): every stored field but presence
 * (`online`, always written as offline) and the gateway bindings (written by
 * `setDeviceBindings` once every device exists, since they refer to other devices).
 */
export type DeviceCopy = Omit<Device, 'online' | 'gatewayIotId' | 'registeredByGatewayIotId'> & {
  /** Every slot of the device, revoked ones included; replaces the slots stored. */
  slots: Omit<StoredDeviceTokenSlot, 'iotId'>[];
};

/** The two gateway references of a device (topology and registrar), as `setDeviceBindings` writes them. */
export interface DeviceBindings {
  iotId: string;
  gatewayIotId: string | null;
  registeredByGatewayIotId: string | null;
}

/** A product's X.509 settings (issue 16); a product without a stored row is 'secret' with defaults. */
export interface ProductAuthSettings {
  productKey: string;
  authMode: AuthMode;
  /** Customer CA only: an unknown device with a valid certificate is created at its first login. */
  enrollOnFirstContact: boolean;
  /** Validity of certificates issued here; null = DEFAULT_CERT_VALIDITY_DAYS. */
  certValidityDays: number | null;
}

export type ProductAuthPatch = Partial<Pick<ProductAuthSettings, 'authMode' | 'enrollOnFirstContact' | 'certValidityDays'>>;

/** A product's device CA: made here (with its key) or the customer's (certificate only). */
export interface StoredProductCa {
  productKey: string;
  source: 'platform' | 'customer';
  certificate: string;
  /** PKCS#8 PEM, plaintext across this port (sealed in the store); null for a customer CA. */
  privateKey: string | null;
  fingerprint: string;
  createdAt: string;
}

/** One device certificate, by product and serial (lower-case hex). */
export interface StoredDeviceCertificate {
  serial: string;
  iotId: string;
  productKey: string;
  deviceName: string;
  /** issued: key made here; csr: the device's key; enrolled: a customer-CA certificate seen at a login. */
  source: 'issued' | 'csr' | 'enrolled';
  certificate: string;
  privateKey: string | null;
  fingerprint: string;
  notBefore: string;
  notAfter: string;
  createdAt: string;
  /** Refused from this time on (may lie in the future after a rotation); null = not revoked. */
  revokedAt: string | null;
  revocationReason: string | null;
}

/** Where a re-encryption pass stopped; opaque to callers, pass it back to continue. */
export type ReencryptCursor = string;

export interface Store {
  /** Apply pending migrations. Idempotent. */
  migrate(): Promise<void>;
  close(): Promise<void>;
  /**
   * Network-backed stores: resolves when the database answers, rejects (UNAVAILABLE) when it
   * does not. /healthz reports "degraded" on a rejection. Embedded stores leave it out.
   */
  ping?(): Promise<void>;

  // products
  createProduct(p: Product): Promise<void>;
  getProduct(productKey: string): Promise<Product | undefined>;
  listProducts(offset: number, limit: number): Promise<Page<Product>>;
  /**
   * PRODUCT_NOT_FOUND when absent. Refused, nothing written, in the transaction that writes:
   * CONFLICT (details.field 'nodeType') when the patch changes nodeType while the product has
   * devices; INVALID_ARGUMENT (details.field 'preRegistrationFree') when the product as updated
   * would be preRegistrationFree without dynamicRegistration. Ordered with every device create
   * of the product: a create that commits after this update applies its deviceLimit.
   */
  updateProduct(productKey: string, patch: ProductPatch, updatedAt: string): Promise<Product>;
  /** Refused with PRODUCT_HAS_DEVICES while devices exist. */
  deleteProduct(productKey: string): Promise<void>;
  /** Replaces the ProductSecret (migration --overwrite); PRODUCT_NOT_FOUND when absent. */
  setProductSecret(productKey: string, productSecret: string, updatedAt: string): Promise<Product>;

  // devices
  /*
   * Device limit of the three creating methods below: the limit is the product's deviceLimit
   * as stored when the write commits (read in the same transaction, under the lock that orders
   * the product's device writes and updateProduct), or `defaultLimit` when the product has none
   * (deviceLimit null). DEVICE_LIMIT_REACHED carries details.limit (the limit applied) and
   * details.devices (the count then). PRODUCT_NOT_FOUND when the product is absent.
   */
  /** All or nothing: DEVICE_NAME_TAKEN (details.names) or DEVICE_LIMIT_REACHED and nothing written. */
  createDevices(productKey: string, devices: NewDevice[], defaultLimit: number, createdAt: string): Promise<Device[]>;
  /** Returns the existing device of that name, or creates it within the limit (pre-registration-free). */
  getOrCreateDevice(productKey: string, device: NewDevice, defaultLimit: number, createdAt: string): Promise<{ device: Device; created: boolean }>;
  /** Import with given keys; idempotent for identical rows; conflicts reported, written only with overwrite. */
  importDevices(productKey: string, rows: ImportRow[], defaultLimit: number, overwrite: boolean, createdAt: string): Promise<ImportResult>;
  getDevice(productKey: string, deviceName: string): Promise<Device | undefined>;
  /** The devices of those names that exist (any order; unknown names are left out). One round trip for a whole import chunk. */
  getDevicesByName(productKey: string, deviceNames: string[]): Promise<Device[]>;
  getDeviceByIotId(iotId: string): Promise<Device | undefined>;
  /** In creation order (a batch in its given order): the contract asserts it, every adapter keeps it. */
  listDevices(productKey: string, filter: DeviceFilter, offset: number, limit: number): Promise<Page<Device>>;
  /**
   * Devices of a product in DeviceName order, strictly after `afterDeviceName` (null = from the
   * start): keyset paging for full scans such as the credentials export and the device list's
   * cursor, cheap at any depth: a range scan of the UNIQUE (product_key, device_name) index.
   * `filter` (status, name substring) is checked on the rows the scan walks.
   */
  listDevicesAfter(productKey: string, afterDeviceName: string | null, limit: number, filter?: DeviceKeysetFilter): Promise<Device[]>;
  countDevices(productKey: string): Promise<number>;
  /**
   * Products whose kept device count (used for the device limit) differs from the devices
   * actually stored; empty when consistent. Checked at start (and by the crash tests).
   */
  productCountMismatches(): Promise<{ productKey: string; counted: number; actual: number }[]>;
  updateDevice(iotId: string, patch: DevicePatch): Promise<Device | undefined>;
  /** Deletes the device and detaches its sub-devices. */
  deleteDevice(iotId: string): Promise<boolean>;
  /** Back to UNACTIVE: clears activation and every pre-registration-free slot; keeps the secret. */
  resetDevice(iotId: string): Promise<Device | undefined>;

  // pre-registration-free credential slots (spec 3.2: up to 5 physical devices per name)
  /**
   * The regnwl answer, atomically (racing callers agree): first 'refused' when the device was
   * activated with its DeviceSecret (activatedAt set and no slot at all, revoked ones included:
   * reason 'activated') or is bound to a gateway (gatewayIotId or registeredByGatewayIotId set:
   * reason 'bound'), judged in the same transaction (an activation or a binding on another
   * node cannot slip in before the slot); else the live slot not yet activated if there is one,
   * as stored ('existing'); else, when fewer than `maxSlots` slots are live (not revoked),
   * `candidate` in a new slot at the lowest free number, a revoked slot's number included
   * ('new'); else 'full'. undefined when the device does not exist.
   */
  issueDeviceTokenSlot(
    iotId: string,
    candidate: { clientId: string; deviceToken: string },
    maxSlots: number,
    at: string,
  ): Promise<
    | { outcome: 'existing' | 'new'; credential: DeviceTokenCredential }
    | { outcome: 'full'; live: number }
    | { outcome: 'refused'; reason: 'activated' | 'bound' }
    | undefined
  >;
  /** Every slot of the device (revoked ones included), by slot number, without tokens. */
  listDeviceTokenSlots(iotId: string): Promise<DeviceTokenSlot[]>;
  /** The live (not revoked) slots with their tokens, by slot number: the connwl check. */
  getLiveDeviceTokens(iotId: string): Promise<DeviceTokenCredential[]>;
  /** Records the slot's first connwl login; false when it was already activated, revoked or is gone. */
  activateDeviceTokenSlot(iotId: string, slot: number, at: string): Promise<boolean>;
  /**
   * Revokes a slot: its token is destroyed (refused from now on) and `revokedAt` set; the slot
   * number becomes free for a later regnwl. Revoking a revoked slot changes nothing. undefined
   * when the device has no such slot.
   */
  revokeDeviceTokenSlot(iotId: string, slot: number, at: string): Promise<DeviceTokenSlot | undefined>;
  /**
   * Secret rotation, atomically: the current secret becomes the previous one, valid until
   * `previousExpiresAt` (null = not kept at all: the old secret stops working at once), and
   * `newSecret` becomes current. A previous secret from an earlier rotation is replaced.
   * undefined when the device does not exist. (Setting deviceSecret through updateDevice or
   * an import overwrite clears any previous secret.)
   */
  rotateDeviceSecret(iotId: string, newSecret: string, previousExpiresAt: string | null): Promise<Device | undefined>;

  // presence
  /** online=1, activatedAt set if null, lastOnlineAt=at. Returns whether this was the activation. */
  markOnline(iotId: string, at: string): Promise<{ activated: boolean }>;
  /** markOnline for many devices in one transaction (a gateway's batch login); returns the iotIds this call activated. */
  markOnlineMany(iotIds: string[], at: string): Promise<string[]>;
  markOffline(iotIds: string[], at: string): Promise<void>;
  /**
   * After a restart nobody is connected (and at a clean stop). A store shared by several
   * processes (PostgreSQL) clears only the devices this process marked online.
   */
  markAllOffline(at: string): Promise<void>;

  /** Records a dynamic-registration random; false if it was already used for this device. */
  useRegistrationRandom(iotId: string, random: string, at: string): Promise<boolean>;

  // topology
  /** Attaches sub-devices to a gateway atomically within the limit; a sub-device already under another gateway moves. */
  attachSubDevices(gatewayIotId: string, subIotIds: string[], limit: number): Promise<void>;
  detachSubDevices(gatewayIotId: string, subIotIds: string[]): Promise<number>;
  countSubDevices(gatewayIotId: string): Promise<number>;
  /**
   * Gateway registration's binding, atomically: when the sub-device is bound to no gateway
   * (gatewayIotId and registeredByGatewayIotId both null) or to this one (boundGatewayOf),
   * records this gateway as its registrar and returns true; false when it is bound to another
   * gateway or does not exist. Racing gateways: exactly one wins.
   */
  /**
   * With `unactivatedOnly`, also false when the sub-device is activated (activatedAt set),
   * decided in the same statement: an activation on another node cannot slip in between a
   * caller's read and the claim. The caller reads the device again to tell why.
   */
  claimSubDeviceRegistration(subIotId: string, gatewayIotId: string, opts?: { unactivatedOnly?: boolean }): Promise<boolean>;
  /**
   * The operator's release, atomically: forgets the registrar and detaches the sub-device
   * from its gateway. Returns the device as it was before (so the caller can tell the old
   * gateway); undefined when it does not exist.
   */
  releaseSubDevice(subIotId: string): Promise<Device | undefined>;

  // applications
  createApplication(app: Application): Promise<void>;
  getApplication(appKey: string): Promise<Application | undefined>;
  listApplications(): Promise<Application[]>;
  deleteApplication(appKey: string): Promise<boolean>;

  // audit
  appendAudit(entries: AuditEntry[]): Promise<void>;
  queryAudit(q: AuditQuery): Promise<AuditEntry[]>;
  pruneAudit(before: string): Promise<number>;

  // management API tokens (hashed)
  /** CONFLICT when the id exists. */
  createManagementToken(t: ManagementTokenRecord): Promise<void>;
  getManagementToken(id: string): Promise<ManagementTokenRecord | undefined>;
  listManagementTokens(): Promise<ManagementTokenRecord[]>;
  deleteManagementToken(id: string): Promise<boolean>;

  // key rotation
  /**
   * Re-encrypts up to `batchSize` stored secrets (every encrypted column of every table) that
   * are not under the cipher's current key, starting after `cursor` (undefined = from the
   * start), in one short transaction so the server keeps serving between batches. Returns the
   * number rewritten and the cursor to continue from; cursor undefined = the pass is complete.
   */
  reencryptSecrets(cursor: ReencryptCursor | undefined, batchSize: number): Promise<{ rewritten: number; cursor: ReencryptCursor | undefined }>;
  /** How many stored secrets are encrypted under a key other than the current one (0 = a key may retire). */
  countSecretsNotUnderCurrentKey(): Promise<number>;

  // server-side secrets (e.g. the HTTP channel token key): encrypted at rest, re-encrypted by key rotation
  getSecretSetting(key: string): Promise<string | undefined>;
  /** Stores the value unless the key has one already; returns the value that is stored (racing servers agree). */
  setSecretSettingIfAbsent(key: string, value: string): Promise<string>;

  // small key/value settings, in plaintext: never put a secret here (use setSecretSettingIfAbsent)
  getMeta(key: string): Promise<string | undefined>;
  setMeta(key: string, value: string): Promise<void>;

  // store copy (`thingauth store copy`): reading everything out and writing it back exactly
  /** Every slot (revoked ones included, token null) of these devices, by iotId then slot number; unknown iotIds are left out. */
  getDeviceTokenSlotsOf(iotIds: string[]): Promise<StoredDeviceTokenSlot[]>;
  /**
   * Writes these devices of the product exactly as given, in one transaction: a device whose
   * iotId is stored is overwritten in place (bindings kept), a new one is inserted (no
   * bindings); their slots are replaced by `slots`; online is written as offline. No device
   * limit applies (the source enforced it); the kept count follows. PRODUCT_NOT_FOUND when the
   * product is absent; CONFLICT (nothing written) when an iotId is stored under another
   * product or DeviceName, or a DeviceName is held by another iotId.
   */
  putDevices(productKey: string, devices: DeviceCopy[]): Promise<void>;
  /** Sets both gateway references of each device exactly as given, in one transaction; DEVICE_NOT_FOUND (nothing written) when a device or a referenced gateway is absent. */
  setDeviceBindings(bindings: DeviceBindings[]): Promise<void>;
  /** Audit entries with an id above `afterId` (null = from the start), in id order, each with its id. */
  listAuditAfter(afterId: number | null, limit: number): Promise<AuditEntry[]>;
  /** Inserts audit entries keeping their ids, in one transaction (entries appended later get larger ids); CONFLICT when an id is taken. */
  putAuditEntries(entries: (AuditEntry & { id: number })[]): Promise<void>;
  /** The keys of every secret setting, in key order. */
  listSecretSettingKeys(): Promise<string[]>;
  /** Stores the value, replacing any (store copy only: servers use setSecretSettingIfAbsent). */
  putSecretSetting(key: string, value: string): Promise<void>;

  // X.509 device certificates (issue 16)
  /** The product's settings (defaults when never set); undefined when the product does not exist. */
  getProductAuth(productKey: string): Promise<ProductAuthSettings | undefined>;
  /**
   * Applies the patch. PRODUCT_NOT_FOUND when absent; CONFLICT (details.field 'authMode'),
   * nothing written, when it changes authMode while the product has devices: decided under
   * the lock that orders the product's device creates.
   */
  setProductAuth(productKey: string, patch: ProductAuthPatch, at: string): Promise<ProductAuthSettings>;
  getProductCa(productKey: string): Promise<StoredProductCa | undefined>;
  /** Stores the CA unless the product has one; returns the one stored (racing servers agree). PRODUCT_NOT_FOUND when absent. */
  putProductCaIfAbsent(ca: StoredProductCa): Promise<StoredProductCa>;
  /** Certificates are keyed by (productKey, serial): one CA per product. CONFLICT when taken; DEVICE_NOT_FOUND when the device does not exist. */
  addDeviceCertificate(cert: StoredDeviceCertificate): Promise<void>;
  getDeviceCertificate(productKey: string, serial: string): Promise<StoredDeviceCertificate | undefined>;
  /** The device's certificates, newest first. */
  listDeviceCertificates(iotId: string): Promise<StoredDeviceCertificate[]>;
  /**
   * Sets revokedAt (and the reason) unless the certificate is already revoked at or before
   * `at`; returns the certificate as stored after, undefined when the serial is unknown.
   */
  revokeDeviceCertificate(productKey: string, serial: string, at: string, reason: string): Promise<StoredDeviceCertificate | undefined>;
  /** Serials of the product's certificates revoked at or before `asOf`, oldest revocation first. */
  listRevokedCertificates(productKey: string, asOf: string): Promise<{ serial: string; revokedAt: string; reason: string | null }[]>;
  /**
   * Every product's certificates whose revocation time is after `after` (scheduled ends of a
   * rotation's grace, and recent revocations), soonest first, at most `limit`; without keys.
   */
  listCertificatesRevokedAfter(after: string, limit: number): Promise<StoredDeviceCertificate[]>;
  /**
   * Certificates not revoked (as of `asOf`) whose notAfter is before `before`, soonest first;
   * productKey undefined = every product. Without keys (privateKey null): a report.
   */
  listExpiringCertificates(before: string, asOf: string, limit: number, productKey?: string): Promise<StoredDeviceCertificate[]>;
  /** How many certificates listExpiringCertificates would list without a limit (every product). */
  countExpiringCertificates(before: string, asOf: string): Promise<number>;
}
