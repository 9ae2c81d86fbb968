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
}

export function createServices(store: Store, config: Config, logger: Logger): Services {
  const events = new RegistryEvents();
  const registry = new Registry(store, events, { deviceLimit: config.deviceLimit, subDeviceLimit: config.subDeviceLimit });
  const registration = new RegistrationService(store, events, {
    ratePerSecond: config.registrationRatePerSecond,
    defaultDeviceLimit: config.deviceLimit,
  }, logger);
  const authenticator = new DeviceAuthenticator(store, events, logger);
  const presence = new PresenceService(store, logger);
  const applications = new ApplicationService(store);
  const importer = new Importer(store, registry, events);
  const topology = new TopologyService(store, events, { subDeviceLimit: config.subDeviceLimit }, logger);
  const subDeviceRegistration = new SubDeviceRegistrationService(store, topology, logger);
  const subDeviceSessions = new SubDeviceSessionService(store, events, presence, topology, { onlineLimitPerGateway: config.subDeviceLimit }, logger);
  return { events, registry, registration, importer, authenticator, presence, applications, topology, subDeviceRegistration, subDeviceSessions };
}
