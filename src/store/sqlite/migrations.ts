/**
 * Versioned schema for the SQLite adapter. Append only: never edit a released migration.
 * `bindSecrets`: after the SQL, re-encrypt every v1 secret as v2, bound to its row
 * (secret-binding.ts), in the same transaction.
 * `moveTokensToSlots`: after the SQL, move each device's single regnwl credential into slot 1
 * of device_tokens (device-token-slots.ts), in the same transaction.
 */
export const SQLITE_MIGRATIONS: { version: number; name: string; sql: string; bindSecrets?: true; moveTokensToSlots?: true }[] = [
  {
    version: 1,
    name: 'registry',
    sql: `
CREATE TABLE products (
  product_key TEXT PRIMARY KEY,
  product_name TEXT NOT NULL,
  product_secret TEXT NOT NULL,
  node_type TEXT NOT NULL CHECK (node_type IN ('DEVICE','GATEWAY','SUB_DEVICE')),
  dynamic_registration INTEGER NOT NULL DEFAULT 0,
  pre_registration_free INTEGER NOT NULL DEFAULT 0,
  require_tls INTEGER NOT NULL DEFAULT 0,
  replay_protection INTEGER NOT NULL DEFAULT 0,
  device_limit INTEGER,
  description TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE devices (
  iot_id TEXT PRIMARY KEY,
  product_key TEXT NOT NULL REFERENCES products(product_key),
  device_name TEXT NOT NULL,
  device_secret TEXT NOT NULL,
  nickname TEXT,
  enabled INTEGER NOT NULL DEFAULT 1,
  online INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  activated_at TEXT,
  last_online_at TEXT,
  gateway_iot_id TEXT REFERENCES devices(iot_id) ON DELETE SET NULL,
  client_id TEXT,
  device_token TEXT,
  last_auth_error TEXT,
  UNIQUE (product_key, device_name)
);
CREATE INDEX devices_gateway ON devices(gateway_iot_id) WHERE gateway_iot_id IS NOT NULL;
CREATE TABLE product_counts (
  product_key TEXT PRIMARY KEY REFERENCES products(product_key) ON DELETE CASCADE,
  devices INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE registration_randoms (
  iot_id TEXT NOT NULL REFERENCES devices(iot_id) ON DELETE CASCADE,
  random TEXT NOT NULL,
  used_at TEXT NOT NULL,
  PRIMARY KEY (iot_id, random)
);
CREATE TABLE applications (
  app_key TEXT PRIMARY KEY,
  app_secret TEXT NOT NULL,
  name TEXT NOT NULL,
  product_keys TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE TABLE audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at TEXT NOT NULL,
  action TEXT NOT NULL,
  actor TEXT NOT NULL,
  product_key TEXT,
  device_name TEXT,
  source_address TEXT,
  result TEXT NOT NULL,
  reason TEXT
);
CREATE INDEX audit_device ON audit(product_key, device_name, id);
CREATE INDEX audit_at ON audit(at);
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
`,
  },
  {
    version: 2,
    name: 'management tokens',
    // Only a SHA-256 of each token is kept: tokens are 256-bit random, so a fast hash is enough.
    sql: `
CREATE TABLE management_tokens (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  scope TEXT NOT NULL CHECK (scope IN ('read','admin')),
  token_hash TEXT NOT NULL,
  created_at TEXT NOT NULL
);
`,
  },
  {
    version: 3,
    name: 'secret settings',
    // Server-side keys (e.g. the HTTP channel token key): encrypted like every other secret.
    sql: `
CREATE TABLE secret_settings (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
`,
  },
  {
    version: 4,
    name: 'product timestamp window',
    // Replay window for login timestamps in seconds; NULL = off (spec 0.2: SDKs send fixed timestamps).
    sql: `
ALTER TABLE products ADD COLUMN timestamp_window_seconds INTEGER CHECK (timestamp_window_seconds IS NULL OR timestamp_window_seconds > 0);
`,
  },
  {
    version: 5,
    name: 'device secret rotation',
    // The secret before the last rotation (ciphertext, like device_secret) and when it stops
    // working. The expiry column avoids "secret" in its name: columns named like *secret*
    // hold ciphertext (the security e2e test checks exactly that).
    sql: `
ALTER TABLE devices ADD COLUMN previous_device_secret TEXT;
ALTER TABLE devices ADD COLUMN previous_expires_at TEXT;
`,
  },
  {
    version: 6,
    name: 'secrets bound to their rows',
    // No schema change: every v1 value (no associated data) becomes v2, bound to its table,
    // column and row (issue 11 item 14). Once recorded here, v1 values are refused on read.
    sql: '',
    bindSecrets: true,
  },
  {
    version: 7,
    name: 'sub-device registrar',
    // The gateway that received a sub-device's DeviceSecret through thing/sub/register or
    // product_register: the sub-device stays bound to it (another gateway gets 6619) until an
    // operator releases it. Deleting that gateway frees the sub-device (ON DELETE SET NULL).
    sql: `
ALTER TABLE devices ADD COLUMN registered_by_gateway_iot_id TEXT REFERENCES devices(iot_id) ON DELETE SET NULL;
`,
  },
  {
    version: 8,
    name: 'regnwl credential slots',
    // Spec 3.2: up to 5 physical devices may activate per DeviceName through regnwl, each with
    // its own ClientID and DeviceToken (issue 12 item 2). One row per slot; the token is
    // ciphertext bound to (iot_id, product_key, device_name, slot) and NULL once revoked.
    // devices.client_id/device_token are emptied by moveTokensToSlots and no longer used
    // (kept: migration 6 of an older file still reads them).
    sql: `
CREATE TABLE device_tokens (
  iot_id TEXT NOT NULL REFERENCES devices(iot_id) ON DELETE CASCADE,
  product_key TEXT NOT NULL,
  device_name TEXT NOT NULL,
  slot INTEGER NOT NULL CHECK (slot >= 1),
  client_id TEXT NOT NULL,
  device_token TEXT,
  created_at TEXT NOT NULL,
  activated_at TEXT,
  revoked_at TEXT,
  PRIMARY KEY (iot_id, slot),
  CHECK ((revoked_at IS NULL) = (device_token IS NOT NULL))
);
`,
    moveTokensToSlots: true,
  },
  {
    version: 9,
    name: 'last auth error time and source',
    // When the last refused login happened and from where (transport and source address), so
    // an operator tells a stranger failing under a device's name from the device itself.
    sql: `
ALTER TABLE devices ADD COLUMN last_auth_error_at TEXT;
ALTER TABLE devices ADD COLUMN last_auth_error_source TEXT;
`,
  },
  {
    version: 10,
    name: 'x509 device certificates',
    // Issue 16: a product's authentication mode and enrollment switch (product_auth: no row =
    // secret), its device CA (platform-made with its key sealed like every secret, or a
    // customer CA without key), and every device certificate by (product, serial): one CA per product, so that is its issuer and serial. private_key columns
    // hold ciphertext bound to their row (secret-binding.ts); NULL when the key never was here.
    // revoked_at may lie in the future: a rotated certificate stays valid until then.
    sql: `
CREATE TABLE product_auth (
  product_key TEXT PRIMARY KEY REFERENCES products(product_key) ON DELETE CASCADE,
  auth_mode TEXT NOT NULL CHECK (auth_mode IN ('secret','x509')),
  enroll_on_first_contact INTEGER NOT NULL DEFAULT 0,
  cert_validity_days INTEGER CHECK (cert_validity_days IS NULL OR cert_validity_days > 0),
  updated_at TEXT NOT NULL
);
CREATE TABLE product_cas (
  product_key TEXT PRIMARY KEY REFERENCES products(product_key) ON DELETE CASCADE,
  source TEXT NOT NULL CHECK (source IN ('platform','customer')),
  certificate TEXT NOT NULL,
  private_key TEXT,
  fingerprint TEXT NOT NULL,
  created_at TEXT NOT NULL,
  CHECK ((source = 'platform') = (private_key IS NOT NULL))
);
CREATE TABLE device_certificates (
  serial TEXT NOT NULL,
  iot_id TEXT NOT NULL REFERENCES devices(iot_id) ON DELETE CASCADE,
  product_key TEXT NOT NULL,
  device_name TEXT NOT NULL,
  source TEXT NOT NULL CHECK (source IN ('issued','csr','enrolled')),
  certificate TEXT NOT NULL,
  private_key TEXT,
  fingerprint TEXT NOT NULL,
  not_before TEXT NOT NULL,
  not_after TEXT NOT NULL,
  created_at TEXT NOT NULL,
  revoked_at TEXT,
  revocation_reason TEXT,
  PRIMARY KEY (product_key, serial)
);
CREATE INDEX device_certificates_device ON device_certificates(iot_id);
CREATE INDEX device_certificates_expiry ON device_certificates(product_key, not_after);
`,
  },
];
