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

export interface Services {
  events: RegistryEvents;
  registry: Registry;
  registration: RegistrationService;
  importer: Importer;
  authenticator: DeviceAuthenticator;
  presence: PresenceService;
  applications: ApplicationService;
}

export function createServices(store: Store, config: Config, logger: Logger): Services {
  const events = new RegistryEvents();
  const registry = new Registry(store, events, { deviceLimit: config.deviceLimit, subDeviceLimit: config.subDeviceLimit });
  const registration = new RegistrationService(store, events, {
    ratePerSecond: config.registrationRatePerSecond,
    defaultDeviceLimit: config.deviceLimit,
  }, logger);
  const importer = new Importer(store, registry, events);
  const authenticator = new DeviceAuthenticator(store, events, logger);
  const presence = new PresenceService(store, logger);
  const applications = new ApplicationService(store);
  return { events, registry, registration, importer, authenticator, presence, applications };
}
