/** All use cases, created once over one store. Edges (HTTP, MQTT, CLI) receive this. */
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import type { Store } from '../store/store.js';
import { RegistryEvents } from './events.js';
import { RegistrationService } from './registration.js';
import { Registry } from './registry.js';
import { Importer } from './importer.js';
import { DeviceAuthenticator } from './authenticator.js';
import { PresenceService } from './presence.js';
import { ApplicationService } from './applications.js';
import { SubDeviceRegistrationService } from './sub-device-registration.js';
import { SubDeviceSessionService } from './sub-device-sessions.js';
import { TopologyService } from './topology.js';
import { AuditLog } from './audit.js';
import { Metrics } from './metrics.js';
import { TokenService } from './tokens.js';
import { KeyRotationService } from './key-rotation.js';
import type { RotatingCipher } from '../core/rotating-cipher.js';
import { LoginThrottle, type ThrottleEvent } from './login-throttle.js';
import { LogLimiter } from './log-limiter.js';
import { BootstrapService } from './bootstrap.js';
import { DoctorService } from './doctor.js';
import { LiveEvents } from './live-events.js';

export interface Services {
  events: RegistryEvents;
  registry: Registry;
  registration: RegistrationService;
  importer: Importer;
  authenticator: DeviceAuthenticator;
  presence: PresenceService;
  applications: ApplicationService;
  topology: TopologyService;
  subDeviceRegistration: SubDeviceRegistrationService;
  subDeviceSessions: SubDeviceSessionService;
  audit: AuditLog;
  metrics: Metrics;
  tokens: TokenService;
  keyRotation: KeyRotationService;
  loginThrottle: LoginThrottle;
  /** Refusal log lines an outsider can trigger (CONNECT, SUBSCRIBE, registration) go through this. */
  logLimiter: LogLimiter;
  bootstrap: BootstrapService;
  /** The connection doctor (issue 17): why a device cannot get in. */
  doctor: DoctorService;
  /** What the console's live stream sends (issue 17): presence, device changes, login rates. */
  live: LiveEvents;
}

/** Refusal log lines per (event, source) per minute before they are only counted (log-limiter.ts). */
export const REFUSAL_LOG_LINES_PER_MINUTE = 10;

/** What the security services need from the composition root (main.ts). */
export interface SecurityWiring {
  /** The cipher the store was opened with: key rotation swaps its keyring. */
  cipher: RotatingCipher;
  keySource: 'file' | 'env';
  /** The bootstrap admin token (always valid, scope admin). */
  adminToken: string;
}

export function createServices(rawStore: Store, config: Config, logger: Logger, security: SecurityWiring): Services {
  const metrics = new Metrics();
  // Services see a store whose calls are timed (thingauth_store_operation_seconds).
  const store = metrics.timeStore(rawStore);
  const audit = new AuditLog(rawStore, logger, { retentionDays: config.auditRetentionDays });
  const tokens = new TokenService(store, () => security.adminToken);
  const keyRotation = new KeyRotationService(rawStore, security.cipher, audit, logger, {
    dataDir: config.dataDir,
    keySource: security.keySource,
  });
  const events = new RegistryEvents(logger);
  const registry = new Registry(store, events, { deviceLimit: config.deviceLimit, subDeviceLimit: config.subDeviceLimit });
  const logLimiter = new LogLimiter(logger, { perInterval: REFUSAL_LOG_LINES_PER_MINUTE, intervalMs: 60_000 });
  const registration = new RegistrationService(store, events, {
    ratePerSecond: config.registrationRatePerSecond,
    ratePerSourcePerSecond: config.registrationRatePerSourcePerSecond,
    defaultDeviceLimit: config.deviceLimit,
  }, logger);
  registration.observers = { audit, metrics, logLimiter };
  const authenticator = new DeviceAuthenticator(store, events, logger, { ttlMs: config.cacheTtlSeconds * 1000 });
  registration.products = (productKey) => authenticator.product(productKey);
  const presence = new PresenceService(store, logger);
  const applications = new ApplicationService(store);
  const importer = new Importer(store, registry, events);
  const topology = new TopologyService(store, events, { subDeviceLimit: config.subDeviceLimit }, logger);
  const subDeviceRegistration = new SubDeviceRegistrationService(store, topology, logger);
  const subDeviceSessions = new SubDeviceSessionService(store, events, presence, topology, { onlineLimitPerGateway: config.subDeviceLimit }, logger);
  subDeviceRegistration.observers = { audit, metrics };
  subDeviceSessions.observers = { audit, metrics };
  const loginThrottle = new LoginThrottle({
    failThreshold: config.loginFailThreshold,
    failWindowMs: config.loginFailWindowSeconds * 1000,
    cooldownMs: config.loginCooldownSeconds * 1000,
    deviceConnectRatePerMinute: config.deviceConnectRatePerMinute,
    onEvent: (e) => recordThrottleEvent(e, audit, metrics, logger),
  });
  const bootstrap = new BootstrapService(store, events, authenticator);
  const doctor = new DoctorService(store, audit, loginThrottle, registration);
  const live = new LiveEvents(events, presence, metrics, tokens);
  return { events, registry, registration, importer, authenticator, presence, applications, topology, subDeviceRegistration, subDeviceSessions, audit, metrics, tokens, keyRotation, loginThrottle, logLimiter, bootstrap, doctor, live };
}

/** Brute-force and flood events (login-throttle.ts) into the audit, the metrics and the log. */
function recordThrottleEvent(e: ThrottleEvent, audit: AuditLog, metrics: Metrics, logger: Logger): void {
  switch (e.type) {
    case 'source_throttled':
      metrics.throttledSources.inc({ kind: 'source' });
      audit.record({ action: 'security.source.throttled', actor: 'server', sourceAddress: e.source, result: 'deny', reason: `${e.failures} failed logins; every login from this source refused for ${Math.round(e.cooldownMs / 1000)} s` });
      logger.warn({ event: 'security.source.throttled', source: e.source, failures: e.failures, cooldownMs: e.cooldownMs }, 'source throttled after repeated failed logins');
      return;
    case 'device_failures':
      metrics.throttledSources.inc({ kind: 'device_alarm' });
      audit.record({ action: 'security.device.failures', actor: 'server', productKey: e.device.productKey, deviceName: e.device.deviceName, sourceAddress: e.source, result: 'deny', reason: `${e.failures} failed logins for this device within the window (alarm only: the device is not locked out)` });
      logger.warn({ event: 'security.device.failures', productKey: e.device.productKey, deviceName: e.device.deviceName, failures: e.failures }, 'repeated failed logins for one device');
      return;
    case 'device_connect_rate':
      metrics.throttledSources.inc({ kind: 'device_connect_rate' });
      return;
  }
}
