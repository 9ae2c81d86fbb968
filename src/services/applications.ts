/**
 * Application credentials: a business application (appKey/appSecret) scoped to products,
 * allowed over MQTT to read and command the devices of those products (see src/mqtt/acl.ts,
 * TOPIC_RULES.application). Device credentials never get that power. The secret leaves the
 * server once, in the create result.
 */
import { EventEmitter } from 'node:events';
import { ThingAuthError } from '../core/errors.js';
import { assertProductKey, randomAlnum } from '../core/names.js';
import type { Application, Store } from '../store/store.js';

export type PublicApplication = Omit<Application, 'appSecret'>;

export interface CreateApplicationInput {
  name: string;
  productKeys: string[];
}

const APP_NAME_RE = /^[\p{L}\p{N}_\- .]{1,64}$/u;
export const MAX_APPLICATION_PRODUCTS = 1000;

interface ApplicationEvents {
  'application.deleted': [{ appKey: string }];
}

export function publicApplication(a: Application): PublicApplication {
  const { appSecret: _omit, ...rest } = a;
  return rest;
}

export class ApplicationService extends EventEmitter<ApplicationEvents> {
  private readonly cache = new Map<string, Application>();

  constructor(
    private readonly store: Store,
    private readonly now: () => Date = () => new Date(),
  ) {
    super();
    // Also when another node of a cluster deleted it (the event bus re-emits it here).
    this.on('application.deleted', ({ appKey }) => this.cache.delete(appKey));
  }

  async create(input: CreateApplicationInput): Promise<Application> {
    if (typeof input.name !== 'string' || !APP_NAME_RE.test(input.name)) {
      throw new ThingAuthError('INVALID_ARGUMENT', 'name must be 1-64 letters, digits, space, "_", "-" or "."', { field: 'name' });
    }
    if (!Array.isArray(input.productKeys) || input.productKeys.length === 0 || input.productKeys.length > MAX_APPLICATION_PRODUCTS) {
      throw new ThingAuthError('INVALID_ARGUMENT', `productKeys must list 1 to ${MAX_APPLICATION_PRODUCTS} products`, { field: 'productKeys' });
    }
    const productKeys = [...new Set(input.productKeys)];
    for (const [i, pk] of productKeys.entries()) {
      assertProductKey(pk, `productKeys[${i}]`);
      if (!(await this.store.getProduct(pk))) {
        throw new ThingAuthError('PRODUCT_NOT_FOUND', `product ${pk} not found`, { field: `productKeys[${i}]` });
      }
    }
    const app: Application = {
      appKey: 'app' + randomAlnum(17),
      appSecret: randomAlnum(32),
      name: input.name,
      productKeys,
      createdAt: this.now().toISOString(),
    };
    await this.store.createApplication(app);
    return app;
  }

  async list(): Promise<PublicApplication[]> {
    return (await this.store.listApplications()).map(publicApplication);
  }

  async get(appKey: string): Promise<PublicApplication> {
    const app = await this.store.getApplication(appKey);
    if (!app) throw new ThingAuthError('NOT_FOUND', `application ${appKey} not found`, { field: 'appKey' });
    return publicApplication(app);
  }

  /** For the MQTT login: the full record, cached (applications change only by delete). */
  async forLogin(appKey: string): Promise<Application | undefined> {
    const hit = this.cache.get(appKey);
    if (hit) return hit;
    const app = await this.store.getApplication(appKey);
    if (app) this.cache.set(appKey, app);
    return app;
  }

  async delete(appKey: string): Promise<void> {
    this.cache.delete(appKey);
    if (!(await this.store.deleteApplication(appKey))) {
      throw new ThingAuthError('NOT_FOUND', `application ${appKey} not found`, { field: 'appKey' });
    }
    this.cache.delete(appKey);
    this.emit('application.deleted', { appKey });
  }
}
