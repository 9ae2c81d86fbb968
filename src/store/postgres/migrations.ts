/**
 * Versioned schema for the PostgreSQL adapter. Append only: never edit a released migration.
 *
 * The tables, columns and secret contexts are those of the SQLite adapter (same names, same
 * ciphertext binding in ../secret-binding.ts), in one first migration: PostgreSQL has no data
 * from before secrets were bound or before credential slots, so none of SQLite's data steps.
 * Differences: flags are BOOLEAN; times stay ISO-8601 TEXT (they round-trip exactly as
 * written, like SQLite); keys and names are COLLATE "C" so order is byte order whatever the
 * database's locale; devices.seq gives list order (SQLite's rowid); no devices.client_id /
 * device_token (SQLite keeps them only for its own migration 8).
 * Only plain SQL (no extensions, triggers or stored procedures), so a PostgreSQL-compatible
 * engine has a chance: see README "PostgreSQL".
 */
export const POSTGRES_MIGRATIONS: { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: 'registry',
    sql: `
CREATE TABLE products (
  product_key TEXT COLLATE "C" PRIMARY KEY,
  product_name TEXT NOT NULL,
  product_secret TEXT NOT NULL,
  node_type TEXT NOT NULL CHECK (node_type IN ('DEVICE','GATEWAY','SUB_DEVICE')),
  dynamic_registration BOOLEAN NOT NULL DEFAULT FALSE,
  pre_registration_free BOOLEAN NOT NULL DEFAULT FALSE,
  require_tls BOOLEAN NOT NULL DEFAULT FALSE,
  replay_protection BOOLEAN NOT NULL DEFAULT FALSE,
  device_limit INTEGER,
  description TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  timestamp_window_seconds INTEGER CHECK (timestamp_window_seconds IS NULL OR timestamp_window_seconds > 0)
);
CREATE TABLE product_counts (
  product_key TEXT COLLATE "C" PRIMARY KEY REFERENCES products(product_key) ON DELETE CASCADE,
  devices INTEGER NOT NULL DEFAULT 0 CHECK (devices >= 0)
);
CREATE TABLE devices (
  iot_id TEXT COLLATE "C" PRIMARY KEY,
  seq BIGINT GENERATED ALWAYS AS IDENTITY,
  product_key TEXT COLLATE "C" NOT NULL REFERENCES products(product_key),
  device_name TEXT COLLATE "C" NOT NULL,
  device_secret TEXT NOT NULL,
  previous_device_secret TEXT,
  previous_expires_at TEXT,
  nickname TEXT,
  enabled BOOLEAN NOT NULL DEFAULT TRUE,
  online BOOLEAN NOT NULL DEFAULT FALSE,
  created_at TEXT NOT NULL,
  activated_at TEXT,
  last_online_at TEXT,
  gateway_iot_id TEXT COLLATE "C" REFERENCES devices(iot_id) ON DELETE SET NULL,
  registered_by_gateway_iot_id TEXT COLLATE "C" REFERENCES devices(iot_id) ON DELETE SET NULL,
  last_auth_error TEXT,
  last_auth_error_at TEXT,
  last_auth_error_source TEXT,
  CONSTRAINT devices_product_name UNIQUE (product_key, device_name)
);
CREATE INDEX devices_product_seq ON devices(product_key, seq);
CREATE INDEX devices_gateway ON devices(gateway_iot_id) WHERE gateway_iot_id IS NOT NULL;
CREATE INDEX devices_registrar ON devices(registered_by_gateway_iot_id) WHERE registered_by_gateway_iot_id IS NOT NULL;
CREATE INDEX devices_online ON devices(iot_id) WHERE online;
CREATE TABLE registration_randoms (
  iot_id TEXT COLLATE "C" NOT NULL REFERENCES devices(iot_id) ON DELETE CASCADE,
  random TEXT NOT NULL,
  used_at TEXT NOT NULL,
  PRIMARY KEY (iot_id, random)
);
CREATE TABLE device_tokens (
  iot_id TEXT COLLATE "C" NOT NULL REFERENCES devices(iot_id) ON DELETE CASCADE,
  product_key TEXT COLLATE "C" NOT NULL,
  device_name TEXT COLLATE "C" NOT NULL,
  slot INTEGER NOT NULL CHECK (slot >= 1),
  client_id TEXT NOT NULL,
  device_token TEXT,
  created_at TEXT NOT NULL,
  activated_at TEXT,
  revoked_at TEXT,
  PRIMARY KEY (iot_id, slot),
  CHECK ((revoked_at IS NULL) = (device_token IS NOT NULL))
);
CREATE TABLE applications (
  app_key TEXT COLLATE "C" PRIMARY KEY,
  app_secret TEXT NOT NULL,
  name TEXT NOT NULL,
  product_keys TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE TABLE audit (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
  key TEXT COLLATE "C" PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE management_tokens (
  id TEXT COLLATE "C" PRIMARY KEY,
  name TEXT NOT NULL,
  scope TEXT NOT NULL CHECK (scope IN ('read','admin')),
  token_hash TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE TABLE secret_settings (
  key TEXT COLLATE "C" PRIMARY KEY,
  value TEXT NOT NULL
);
`,
  },
  {
    version: 2,
    name: 'presence per node',
    // Several nodes share the registry: a device's ONLINE row names the node holding its
    // session, a starting or stopping node clears only its own, and the nodes' heartbeats
    // (database clock, so node clocks may differ) let the others clear a dead node's devices.
    sql: `
ALTER TABLE devices ADD COLUMN online_node TEXT;
CREATE INDEX devices_online_node ON devices(online_node) WHERE online;
CREATE TABLE presence_nodes (
  node_id TEXT COLLATE "C" PRIMARY KEY,
  started_at TEXT NOT NULL,
  last_seen TIMESTAMPTZ NOT NULL
);
`,
  },
  {
    version: 3,
    name: 'x509 device certificates',
    // As SQLite migration 10 (issue 16): product_auth (no row = secret), product_cas,
    // device_certificates; private_key columns hold ciphertext bound to their row.
    sql: `
CREATE TABLE product_auth (
  product_key TEXT COLLATE "C" PRIMARY KEY REFERENCES products(product_key) ON DELETE CASCADE,
  auth_mode TEXT NOT NULL CHECK (auth_mode IN ('secret','x509')),
  enroll_on_first_contact BOOLEAN NOT NULL DEFAULT FALSE,
  cert_validity_days INTEGER CHECK (cert_validity_days IS NULL OR cert_validity_days > 0),
  updated_at TEXT NOT NULL
);
CREATE TABLE product_cas (
  product_key TEXT COLLATE "C" PRIMARY KEY REFERENCES products(product_key) ON DELETE CASCADE,
  source TEXT NOT NULL CHECK (source IN ('platform','customer')),
  certificate TEXT NOT NULL,
  private_key TEXT,
  fingerprint TEXT NOT NULL,
  created_at TEXT NOT NULL,
  CHECK ((source = 'platform') = (private_key IS NOT NULL))
);
CREATE TABLE device_certificates (
  serial TEXT COLLATE "C" NOT NULL,
  iot_id TEXT COLLATE "C" NOT NULL REFERENCES devices(iot_id) ON DELETE CASCADE,
  product_key TEXT COLLATE "C" NOT NULL,
  device_name TEXT COLLATE "C" NOT NULL,
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
