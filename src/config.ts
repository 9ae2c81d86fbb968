/**
 * One typed configuration from environment variables and (overriding them) CLI flags,
 * validated at start. A bad value stops the server with a message naming the variable.
 */
import net from 'node:net';
import path from 'node:path';
import { KEEPALIVE_MAX, KEEPALIVE_MIN } from './core/credentials.js';
import { isValidPublicHost } from './core/bootstrap.js';
import { isPostgresUrl, postgresUrlProblem } from './store/postgres/connection.js';
import { TrustedSources } from './net/trusted-sources.js';
import { redisUrlProblem } from './services/limits/redis-url.js';

export type TlsProfile = 'compat' | 'strict';

/** A DNS host name (RFC 1123 labels): what a bind address may be besides an IP address. */
const HOSTNAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i;

export interface Config {
  dataDir: string;
  /** Address the device listeners (MQTT, MQTTS, WS, WSS, device HTTPS) bind. */
  host: string;
  /** Address the management API binds: loopback unless the operator opens it. */
  managementHost: string;
  httpPort: number;
  httpsPort: number;
  mqttPort: number;
  mqttsPort: number;
  wsPort: number;
  wssPort: number;
  adminToken: string | undefined;
  databaseUrl: string | undefined;
  /** PEM file of the CA that signed the PostgreSQL server's certificate (TLS to the database). */
  databaseCaFile: string | undefined;
  /** PostgreSQL: connections this process keeps open to the database at most. */
  databasePoolSize: number;
  /** PostgreSQL: a node silent this long is dead; the others mark its devices offline. */
  presenceLeaseSeconds: number;
  /** How long a cached device/product record is trusted (0 = until a change in this process drops it); default 5 s on PostgreSQL, 0 on SQLite. */
  cacheTtlSeconds: number;
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  hostnames: string[];
  tlsProfile: TlsProfile;
  masterKey: string | undefined;
  /** With masterKey from the environment: older keys (comma-separated) values may still be under, during a key rotation. */
  masterKeyPrevious: string | undefined;
  /** Devices per product unless the product sets its own limit. */
  deviceLimit: number;
  subDeviceLimit: number;
  /** Dynamic registration requests per product per second (token bucket, burst = 2x). */
  registrationRatePerSecond: number;
  /** Dynamic registration requests per source address per second (token bucket, burst = 2x); 0 = off. */
  registrationRatePerSourcePerSecond: number;
  sqliteSynchronous: 'FULL' | 'NORMAL';
  logLevel: string;
  /** Days an audit record is kept. */
  auditRetentionDays: number;
  /** Failed logins per source address within loginFailWindowSeconds before it is refused for the cool-down; 0 = off. */
  loginFailThreshold: number;
  loginFailWindowSeconds: number;
  /** How long a throttled source is refused. */
  loginCooldownSeconds: number;
  /** Accepted connects per device per minute (spec 1.5's platform allows 5); 0 = off. */
  deviceConnectRatePerMinute: number;
  /** On SIGTERM: how long in-flight work may take before the process exits anyway. */
  shutdownTimeoutSeconds: number;
  /** Smallest keep-alive a device may ask for (spec 1.5: 30 s); lower only for tests. */
  keepaliveMinSeconds: number;
  /** MQTT connections open but not logged in yet, per source address (IPv6: per /64); 0 = no cap. */
  mqttPendingPerSource: number;
  /** MQTT connections open but not logged in yet, over all MQTT listeners; 0 = no cap. */
  mqttPendingTotal: number;
  /** MQTT host the bootstrap endpoint advertises; unset: first of hostnames, else the request's Host. */
  publicMqttHost: string | undefined;
  /** MQTT port the bootstrap endpoint advertises; unset: the MQTT listener's real port. */
  publicMqttPort: number | undefined;
  /** Retained messages one identity may hold (distinct topics); 0 = retain refused. Issue 11 item 4. */
  retainedPerIdentity: number;
  /** Retained payload bytes one identity may hold. */
  retainedBytesPerIdentity: number;
  /** Retained messages the whole broker holds. */
  retainedTotal: number;
  /** Retained payload bytes the whole broker holds. */
  retainedBytesTotal: number;
  /** Both HTTP listeners: the TLS handshake and a request's headers must arrive within this. */
  httpHeadersTimeoutSeconds: number;
  /** Device HTTPS: a whole request (headers and body) must arrive within this. */
  httpRequestTimeoutSeconds: number;
  /** Management API: a whole request must arrive within this (an import of up to 200 MB). */
  managementRequestTimeoutSeconds: number;
  /** Device HTTPS: open connections per source address; 0 = no cap. */
  httpConnectionsPerSource: number;
  /** Open connections per source address on the management API; 0 = no cap. */
  managementConnectionsPerSource: number;
  /** Redis of a cluster (redis:// or rediss://): shared routing, sessions, events, limits. Unset: one node. */
  redisUrl: string | undefined;
  /** This node's name in the cluster (presence rows, session owner, drain); default host-pid-random. */
  nodeId: string | undefined;
  /** Draining: connections closed per second at most (the fleet reconnects elsewhere without a storm). */
  drainRatePerSecond: number;
  /** Addresses/CIDRs (a load balancer) whose connections to the device listeners must start with a PROXY v2 header; empty = off. */
  proxyProtocolFrom: string[];
  /** How long a PROXY header (or, from elsewhere, the first bytes) may take to arrive. */
  proxyProtocolTimeoutSeconds: number;
  /** TLS listeners ask devices for a client certificate (optional: devices without one still connect). Issue 16. */
  tlsClientCerts: 'request' | 'off';
  /** thingauth_device_certificates_expiring counts certificates ending within this many days. */
  certExpiryWarnDays: number;
  /** TLS on the management API: on, off, or auto (on when managementHost is not a loopback address). */
  managementTls: 'on' | 'off' | 'auto';
}

/** Environment variable for each setting; flags use the kebab-case of the key (e.g. --http-port). */
export const CONFIG_ENV: Record<keyof Config, string> = {
  dataDir: 'THINGAUTH_DATA_DIR',
  host: 'THINGAUTH_HOST',
  managementHost: 'THINGAUTH_MANAGEMENT_HOST',
  httpPort: 'THINGAUTH_HTTP_PORT',
  httpsPort: 'THINGAUTH_HTTPS_PORT',
  mqttPort: 'THINGAUTH_MQTT_PORT',
  mqttsPort: 'THINGAUTH_MQTTS_PORT',
  wsPort: 'THINGAUTH_WS_PORT',
  wssPort: 'THINGAUTH_WSS_PORT',
  adminToken: 'THINGAUTH_ADMIN_TOKEN',
  databaseUrl: 'THINGAUTH_DATABASE_URL',
  databaseCaFile: 'THINGAUTH_DATABASE_CA_FILE',
  databasePoolSize: 'THINGAUTH_DATABASE_POOL_SIZE',
  presenceLeaseSeconds: 'THINGAUTH_PRESENCE_LEASE_SECONDS',
  cacheTtlSeconds: 'THINGAUTH_CACHE_TTL_SECONDS',
  tlsCert: 'THINGAUTH_TLS_CERT',
  tlsKey: 'THINGAUTH_TLS_KEY',
  hostnames: 'THINGAUTH_HOSTNAMES',
  tlsProfile: 'THINGAUTH_TLS_PROFILE',
  masterKey: 'THINGAUTH_MASTER_KEY',
  masterKeyPrevious: 'THINGAUTH_MASTER_KEY_PREVIOUS',
  deviceLimit: 'THINGAUTH_DEVICE_LIMIT',
  subDeviceLimit: 'THINGAUTH_SUB_DEVICE_LIMIT',
  registrationRatePerSecond: 'THINGAUTH_REGISTRATION_RATE',
  registrationRatePerSourcePerSecond: 'THINGAUTH_REGISTRATION_RATE_PER_SOURCE',
  sqliteSynchronous: 'THINGAUTH_SQLITE_SYNCHRONOUS',
  logLevel: 'THINGAUTH_LOG_LEVEL',
  auditRetentionDays: 'THINGAUTH_AUDIT_RETENTION_DAYS',
  loginFailThreshold: 'THINGAUTH_LOGIN_FAIL_THRESHOLD',
  loginFailWindowSeconds: 'THINGAUTH_LOGIN_FAIL_WINDOW_SECONDS',
  loginCooldownSeconds: 'THINGAUTH_LOGIN_COOLDOWN_SECONDS',
  deviceConnectRatePerMinute: 'THINGAUTH_DEVICE_CONNECT_RATE_PER_MINUTE',
  shutdownTimeoutSeconds: 'THINGAUTH_SHUTDOWN_TIMEOUT_SECONDS',
  keepaliveMinSeconds: 'THINGAUTH_KEEPALIVE_MIN_SECONDS',
  mqttPendingPerSource: 'THINGAUTH_MQTT_PENDING_PER_SOURCE',
  mqttPendingTotal: 'THINGAUTH_MQTT_PENDING_TOTAL',
  publicMqttHost: 'THINGAUTH_PUBLIC_MQTT_HOST',
  publicMqttPort: 'THINGAUTH_PUBLIC_MQTT_PORT',
  retainedPerIdentity: 'THINGAUTH_RETAINED_PER_IDENTITY',
  retainedBytesPerIdentity: 'THINGAUTH_RETAINED_BYTES_PER_IDENTITY',
  retainedTotal: 'THINGAUTH_RETAINED_TOTAL',
  retainedBytesTotal: 'THINGAUTH_RETAINED_BYTES_TOTAL',
  httpHeadersTimeoutSeconds: 'THINGAUTH_HTTP_HEADERS_TIMEOUT_SECONDS',
  httpRequestTimeoutSeconds: 'THINGAUTH_HTTP_REQUEST_TIMEOUT_SECONDS',
  managementRequestTimeoutSeconds: 'THINGAUTH_MANAGEMENT_REQUEST_TIMEOUT_SECONDS',
  httpConnectionsPerSource: 'THINGAUTH_HTTP_CONNECTIONS_PER_SOURCE',
  managementConnectionsPerSource: 'THINGAUTH_MANAGEMENT_CONNECTIONS_PER_SOURCE',
  redisUrl: 'THINGAUTH_REDIS_URL',
  nodeId: 'THINGAUTH_NODE_ID',
  drainRatePerSecond: 'THINGAUTH_DRAIN_RATE',
  proxyProtocolFrom: 'THINGAUTH_PROXY_PROTOCOL_FROM',
  proxyProtocolTimeoutSeconds: 'THINGAUTH_PROXY_PROTOCOL_TIMEOUT_SECONDS',
  tlsClientCerts: 'THINGAUTH_TLS_CLIENT_CERTS',
  certExpiryWarnDays: 'THINGAUTH_CERT_EXPIRY_WARN_DAYS',
  managementTls: 'THINGAUTH_MANAGEMENT_TLS',
};

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

export type ConfigInput = Partial<Record<keyof Config, string | undefined>>;

/** Reads the environment into raw strings keyed like Config. */
export function configInputFromEnv(env: NodeJS.ProcessEnv): ConfigInput {
  const out: ConfigInput = {};
  for (const [key, name] of Object.entries(CONFIG_ENV)) {
    const v = env[name];
    if (v !== undefined && v !== '') out[key as keyof Config] = v;
  }
  return out;
}

export function loadConfig(input: ConfigInput): Config {
  const problems: string[] = [];
  const label = (k: keyof Config) => `${CONFIG_ENV[k]} (--${k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())})`;

  const port = (k: keyof Config, def: number): number => {
    const raw = input[k];
    if (raw === undefined) return def;
    if (!/^\d+$/.test(raw) || Number(raw) > 65535) {
      problems.push(`${label(k)} must be a port number 0-65535 (0 = ephemeral), got "${raw}"`);
      return def;
    }
    return Number(raw);
  };
  const int = (k: keyof Config, def: number, min: number, max: number): number => {
    const raw = input[k];
    if (raw === undefined) return def;
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || n < min || n > max) {
      problems.push(`${label(k)} must be a whole number from ${min} to ${max}, got "${raw}"`);
      return def;
    }
    return n;
  };
  const oneOf = <T extends string>(k: keyof Config, values: readonly T[], def: T): T => {
    const raw = input[k];
    if (raw === undefined) return def;
    const v = (k === 'sqliteSynchronous' ? raw.toUpperCase() : raw.toLowerCase()) as T;
    if (!values.includes(v)) {
      problems.push(`${label(k)} must be one of ${values.join(', ')}, got "${raw}"`);
      return def;
    }
    return v;
  };

  const bindAddress = (k: keyof Config, def: string): string => {
    const raw = input[k];
    if (raw === undefined) return def;
    if (net.isIP(raw) === 0 && !HOSTNAME.test(raw)) {
      problems.push(`${label(k)} must be an IP address or a host name (no port), e.g. 127.0.0.1, 0.0.0.0 or ::, got "${raw}"`);
      return def;
    }
    return raw;
  };

  const dataDir = path.resolve(input.dataDir ?? './data');
  const config: Config = {
    dataDir,
    host: bindAddress('host', '0.0.0.0'),
    managementHost: bindAddress('managementHost', '127.0.0.1'),
    httpPort: port('httpPort', 8080),
    httpsPort: port('httpsPort', 8443),
    mqttPort: port('mqttPort', 1883),
    mqttsPort: port('mqttsPort', 8883),
    wsPort: port('wsPort', 8083),
    wssPort: port('wssPort', 8084),
    adminToken: input.adminToken,
    databaseUrl: input.databaseUrl,
    databaseCaFile: input.databaseCaFile,
    databasePoolSize: int('databasePoolSize', 10, 1, 1000),
    // In a cluster a dead node's devices must be OFFLINE within 15 s: lease 10 s, checked every 2 s at most.
    presenceLeaseSeconds: int('presenceLeaseSeconds', input.redisUrl !== undefined ? 10 : 30, 1, 3600),
    // A store shared by several nodes: changes made through another node reach this node's
    // login decisions within this. One process on SQLite sees every change as an event.
    cacheTtlSeconds: int('cacheTtlSeconds', input.databaseUrl !== undefined && /^postgres(ql)?:/i.test(input.databaseUrl) ? 5 : 0, 0, 86_400),
    tlsCert: input.tlsCert,
    tlsKey: input.tlsKey,
    hostnames: (input.hostnames ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    tlsProfile: oneOf('tlsProfile', ['compat', 'strict'] as const, 'compat'),
    masterKey: input.masterKey,
    masterKeyPrevious: input.masterKeyPrevious,
    deviceLimit: int('deviceLimit', 500_000, 1, 100_000_000),
    subDeviceLimit: int('subDeviceLimit', 1_500, 1, 1_000_000),
    registrationRatePerSecond: int('registrationRatePerSecond', 1_000, 1, 1_000_000),
    registrationRatePerSourcePerSecond: int('registrationRatePerSourcePerSecond', 20, 0, 1_000_000),
    sqliteSynchronous: oneOf('sqliteSynchronous', ['FULL', 'NORMAL'] as const, 'FULL'),
    logLevel: oneOf('logLevel', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info'),
    auditRetentionDays: int('auditRetentionDays', 30, 1, 3650),
    // Defaults and their reasons: docs/security.md "Brute force and floods".
    loginFailThreshold: int('loginFailThreshold', 30, 0, 1_000_000),
    loginFailWindowSeconds: int('loginFailWindowSeconds', 60, 1, 86_400),
    loginCooldownSeconds: int('loginCooldownSeconds', 60, 1, 86_400),
    deviceConnectRatePerMinute: int('deviceConnectRatePerMinute', 30, 0, 100_000),
    shutdownTimeoutSeconds: int('shutdownTimeoutSeconds', 10, 1, 600),
    keepaliveMinSeconds: int('keepaliveMinSeconds', KEEPALIVE_MIN, 1, KEEPALIVE_MAX),
    // Reasons: docs/security.md "Maximum MQTT packet size, pending connections".
    mqttPendingPerSource: int('mqttPendingPerSource', 64, 0, 1_000_000),
    mqttPendingTotal: int('mqttPendingTotal', 10_000, 0, 10_000_000),
    publicMqttHost: input.publicMqttHost,
    // A device cannot connect to port 0: the advertised port is a real one.
    publicMqttPort: input.publicMqttPort === undefined ? undefined : int('publicMqttPort', 1883, 1, 65535),
    retainedPerIdentity: int('retainedPerIdentity', 16, 0, 10_000),
    retainedBytesPerIdentity: int('retainedBytesPerIdentity', 1_048_576, 0, 1_073_741_824),
    retainedTotal: int('retainedTotal', 10_000, 0, 10_000_000),
    retainedBytesTotal: int('retainedBytesTotal', 67_108_864, 0, 17_179_869_184),
    // Slow requests (slowloris, trickled bodies) and their reasons: docs/security.md "Slow requests".
    httpHeadersTimeoutSeconds: int('httpHeadersTimeoutSeconds', 10, 1, 600),
    httpRequestTimeoutSeconds: int('httpRequestTimeoutSeconds', 30, 1, 3600),
    managementRequestTimeoutSeconds: int('managementRequestTimeoutSeconds', 900, 1, 86_400),
    httpConnectionsPerSource: int('httpConnectionsPerSource', 64, 0, 1_000_000),
    managementConnectionsPerSource: int('managementConnectionsPerSource', 128, 0, 1_000_000),
    redisUrl: input.redisUrl,
    nodeId: input.nodeId,
    drainRatePerSecond: int('drainRatePerSecond', 100, 1, 1_000_000),
    // Behind HAProxy: docs/deployment.md "Behind HAProxy".
    proxyProtocolFrom: (input.proxyProtocolFrom ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    proxyProtocolTimeoutSeconds: int('proxyProtocolTimeoutSeconds', 10, 1, 600),
    tlsClientCerts: oneOf('tlsClientCerts', ['request', 'off'] as const, 'request'),
    certExpiryWarnDays: int('certExpiryWarnDays', 30, 0, 36_500),
    // Reasons: docs/security.md "Management API over TLS".
    managementTls: oneOf('managementTls', ['on', 'off', 'auto'] as const, 'auto'),
  };
  const trusted = TrustedSources.parse(config.proxyProtocolFrom);
  for (const p of trusted.problems) problems.push(`${label('proxyProtocolFrom')}: ${p}`);
  if (config.redisUrl !== undefined) {
    if (!isPostgresUrl(config.databaseUrl)) {
      problems.push(`${label('redisUrl')} makes this node part of a cluster, whose nodes share one registry: set ${CONFIG_ENV.databaseUrl}=postgres://... (SQLite is one machine's file and cannot be shared by nodes)`);
    }
  }
  if (config.nodeId !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(config.nodeId)) {
    problems.push(`${label('nodeId')} must be 1-64 characters of letters, digits, '.', '_' or '-', got "${config.nodeId}"`);
  }
  if (config.publicMqttHost !== undefined && !isValidPublicHost(config.publicMqttHost)) {
    problems.push(`${label('publicMqttHost')} must be a host name or an IP address (what devices connect to), got "${config.publicMqttHost}"`);
  }
  for (const k of ['httpRequestTimeoutSeconds', 'managementRequestTimeoutSeconds'] as const) {
    if (config[k] < config.httpHeadersTimeoutSeconds) {
      problems.push(`${label(k)} (${config[k]}) must not be shorter than ${label('httpHeadersTimeoutSeconds')} (${config.httpHeadersTimeoutSeconds})`);
    }
  }
  if (config.adminToken !== undefined && config.adminToken.length < 16) {
    problems.push(`${label('adminToken')} must be at least 16 characters`);
  }
  if (config.masterKeyPrevious !== undefined && config.masterKey === undefined) {
    problems.push(`${CONFIG_ENV.masterKeyPrevious} only applies with ${CONFIG_ENV.masterKey} (a master.key file in the data dir holds its own previous keys)`);
  }
  if ((config.tlsCert === undefined) !== (config.tlsKey === undefined)) {
    problems.push(`${CONFIG_ENV.tlsCert} and ${CONFIG_ENV.tlsKey} must be set together`);
  }
  if (isPostgresUrl(config.databaseUrl)) {
    // The message never echoes the URL: it may hold the database password.
    const problem = postgresUrlProblem(config.databaseUrl!, config.databaseCaFile);
    if (problem) problems.push(`${label('databaseUrl')} ${problem}`);
  } else if (config.databaseUrl !== undefined && !/^(sqlite|file):/.test(config.databaseUrl)) {
    problems.push(`${label('databaseUrl')}: use sqlite:<path> or postgres://user:password@host:port/database, got "${config.databaseUrl.split(':')[0]}:..."`);
  }
  if (config.databaseCaFile !== undefined && !isPostgresUrl(config.databaseUrl)) {
    problems.push(`${CONFIG_ENV.databaseCaFile} only applies with a postgres:// ${CONFIG_ENV.databaseUrl}`);
  }
  if (config.redisUrl !== undefined) {
    // The message never echoes the URL: it may hold the Redis password.
    const problem = redisUrlProblem(config.redisUrl);
    if (problem) problems.push(`${label('redisUrl')} ${problem}`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** Whether a bind address is this machine only (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return net.isIPv4(host) && host.startsWith('127.');
}

/** Whether the management API listens with TLS: THINGAUTH_MANAGEMENT_TLS, auto = when it is open beyond loopback. */
export function managementTlsEnabled(config: Pick<Config, 'managementTls' | 'managementHost'>): boolean {
  return config.managementTls === 'on' || (config.managementTls === 'auto' && !isLoopbackHost(config.managementHost));
}

/** Path of the SQLite file from the database URL or the data dir. */
export function sqlitePath(config: Config): string {
  if (config.databaseUrl) {
    const p = config.databaseUrl.replace(/^(sqlite|file):(\/\/)?/, '');
    return p === ':memory:' ? p : path.resolve(p);
  }
  return path.join(config.dataDir, 'thingauth.db');
}
