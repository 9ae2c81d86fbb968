/** What every edge receives from the composition root. */
import type { ClusterControl } from './cluster/control.js';
import type { Config } from './config.js';
import type { Logger } from './logger.js';
import type { Services } from './services/index.js';
import type { Store } from './store/store.js';
import type { TlsMaterial } from './tls/local-ca.js';

export interface AppContext {
  config: Config;
  logger: Logger;
  store: Store;
  services: Services;
  tls: TlsMaterial;
  adminToken: string;
  /** This node in its cluster (a node alone: a cluster of one). */
  cluster: ClusterControl;
  /** Real ports of the listeners started so far, by listener name (main.ts fills it; port 0 configs). */
  listenerPorts?: Record<string, number>;
  /** Their URLs as logged at start (scheme, host, real port), by listener name (main.ts fills it). */
  listenerUrls?: Record<string, string>;
}

/** A started listener: its real address and how to stop it. */
export interface Listener {
  name: string;
  url: string;
  port: number;
  /** Said after the address in the start log line (e.g. who can reach the listener). */
  note?: string;
  /** Graceful shutdown, first step: refuse new connections, keep the open ones (optional). */
  stopAccepting?(): void;
  close(): Promise<void>;
}
