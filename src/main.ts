/**
 * The composition root: config -> data dir -> store -> services -> servers.
 * `startThingAuth` is what `thingauth serve` and the end-to-end tests run.
 */
import path from 'node:path';
import type { Config } from './config.js';
import { sqlitePath } from './config.js';
import type { AppContext, Listener } from './context.js';
import { resolveNodeId, SingleNode, type ClusterControl } from './cluster/control.js';
import { RedisCluster } from './cluster/cluster.js';
import { RotatingCipher } from './core/rotating-cipher.js';
import { KeyringCipher, type SecretCipher } from './core/secret-cipher.js';
import { ADMIN_TOKEN_FILE, ensureDataDir, loadAdminToken, loadKeyring } from './data-dir.js';
import { startDeviceHttps } from './http/device/server.js';
import { startManagementApi } from './http/management/server.js';
import { startMqttTcp, startMqtts, startMqttWs, startMqttWss } from './mqtt/listeners.js';
import { connectDecisionsSettled } from './mqtt/connect-authenticators.js';
import { PUSH_CLOSE_GRACE_MS } from './mqtt/registration-connect.js';
import { createLogger, type Logger } from './logger.js';
import { createServices } from './services/index.js';
import { openStoreByUrl } from './store/open-store.js';
import { isPostgresUrl } from './store/postgres/connection.js';
import type { Store } from './store/store.js';
import { ensureTlsMaterial } from './tls/local-ca.js';
import { THINGAUTH_VERSION } from './version.js';

/** Listener starters, in start order. The MQTT listeners join this list. */
const LISTENERS: ((ctx: AppContext) => Promise<Listener>)[] = [
  startManagementApi,
  startDeviceHttps,
  startMqttTcp,
  startMqtts,
  startMqttWs,
  startMqttWss,
];

/** At start, how long to wait for Redis (shared limits) before serving with local limits. */
const LIMITER_CONNECT_WAIT_MS = 3_000;

export interface RunningThingAuth {
  ctx: AppContext;
  listeners: Record<string, Listener>;
  /**
   * Graceful stop: every listener stops accepting at once, requests and CONNECT decisions in
   * flight (registrations) finish, connected devices are marked offline, the audit and
   * presence buffers are written, the store closes.
   */
  close(): Promise<void>;
}

/** The store the database URL names (PostgreSQL for postgres://, else the SQLite file), migrated. */
/** The version a node reports to its cluster (package.json's). */
export { THINGAUTH_VERSION };

export async function openStore(config: Config, masterKey: Buffer | SecretCipher, nodeId?: string): Promise<Store> {
  const url = isPostgresUrl(config.databaseUrl) ? config.databaseUrl! : `sqlite:${sqlitePath(config)}`;
  return openStoreByUrl(url, Buffer.isBuffer(masterKey) ? new KeyringCipher(masterKey) : masterKey, {
    sqliteSynchronous: config.sqliteSynchronous,
    databaseCaFile: config.databaseCaFile,
    poolSize: config.databasePoolSize,
    presenceLeaseMs: config.presenceLeaseSeconds * 1000,
    ...(nodeId !== undefined ? { nodeId } : {}),
  });
}

export async function startThingAuth(config: Config, opts: { logger?: Logger } = {}): Promise<RunningThingAuth> {
  const logger = opts.logger ?? createLogger(config.logLevel);
  const dir = ensureDataDir(config.dataDir);
  if (dir.tightenedFrom !== undefined) {
    logger.warn({ dataDir: config.dataDir, was: dir.tightenedFrom.toString(8), now: '700' }, 'data dir was open to other users; tightened to 0700');
  }
  const keyring = loadKeyring(config.dataDir, config.masterKey, config.masterKeyPrevious);
  // One cipher for the store's whole life: key rotation swaps the keyring inside it.
  const cipher = new RotatingCipher(keyring.keys);
  const admin = loadAdminToken(config.dataDir, config.adminToken);
  if (admin.created) {
    // Where it is, never the token itself: a start log ends up in terminals, journals and
    // log shipping (issue 11 item 13).
    process.stderr.write(`thingauth: generated an admin token in ${path.join(config.dataDir, ADMIN_TOKEN_FILE)} (mode 0600); use it with --token, THINGAUTH_ADMIN_TOKEN or --data-dir\n`);
  }
  const nodeId = resolveNodeId(config);
  // A cluster node joins first: a duplicate node id or a master key the cluster does not use
  // stops the start before anything is written.
  const cluster: ClusterControl = config.redisUrl
    ? await RedisCluster.join({ url: config.redisUrl, nodeId, version: THINGAUTH_VERSION, keyIds: cipher.keyIds, logger })
    : new SingleNode(nodeId, THINGAUTH_VERSION);
  let store: Store;
  try {
    store = await openStore(config, cipher, nodeId);
  } catch (e) {
    await cluster.close().catch(() => undefined);
    throw e;
  }
  // On PostgreSQL only this node's own devices (a starting node never clears the others').
  await store.markAllOffline(new Date().toISOString());
  // Every write keeps product_counts in the same transaction as the rows; a mismatch means the
  // file was changed outside thingauth (or a bug): say so loudly, limits rely on the count.
  const mismatches = await store.productCountMismatches();
  if (mismatches.length > 0) {
    logger.error({ mismatches: mismatches.slice(0, 20) }, 'stored device counts disagree with the devices stored: device limits may be wrong');
  }
  const services = createServices(store, config, logger, { cipher, keySource: keyring.source, adminToken: admin.token });
  if (cluster instanceof RedisCluster) {
    await cluster.startEvents(services.events, services.applications);
    services.metrics.useClusterSource(() => cluster.status());
  }
  services.audit.start();
  // Shared limits (THINGAUTH_REDIS_URL): a node that starts while Redis is down serves all the
  // same, counting alone until Redis answers (services/limits/shared-limiter.ts).
  if (config.redisUrl && !(await services.limiter.connected(LIMITER_CONNECT_WAIT_MS))) {
    logger.warn({ event: 'limits.redis.unavailable-at-start' }, `Redis did not answer within ${LIMITER_CONNECT_WAIT_MS} ms: limits are counted by this node alone until it does`);
  }
  if (keyring.keys.length > 1) {
    logger.warn({ olderKeyIds: cipher.keyIds.slice(1) }, 'older master keys are present (an unfinished key rotation?): run `thingauth keys rotate` to finish');
  }
  const tls = await ensureTlsMaterial({
    dataDir: config.dataDir,
    hostnames: config.hostnames,
    certPath: config.tlsCert,
    keyPath: config.tlsKey,
  });
  const ctx: AppContext = { config, logger, store, services, tls, adminToken: admin.token, cluster, listenerPorts: {} };
  if (cluster.mode === 'redis') logger.info({ nodeId }, `cluster node ${nodeId} joined`);

  const listeners: Record<string, Listener> = {};
  const started: Listener[] = [];
  try {
    for (const start of LISTENERS) {
      const l = await start(ctx);
      listeners[l.name] = l;
      ctx.listenerPorts![l.name] = l.port;
      (ctx.listenerUrls ??= {})[l.name] = l.url;
      started.push(l);
      logger.info({ listener: l.name, url: l.url }, `listening ${l.name} on ${l.url}${l.note ? ` (${l.note})` : ''}`);
    }
  } catch (e) {
    for (const l of started.reverse()) await l.close().catch(() => undefined);
    await services.audit.close().catch(() => undefined);
    await services.limiter.close().catch(() => undefined);
    await store.close();
    await cluster.close().catch(() => undefined);
    throw e;
  }
  // X.509 rotation grace ends (issue 16): timers for running graces, and the ends passed while down are announced.
  await services.x509.startGraceEnds().catch((e) => logger.warn({ err: e }, 'certificate grace ends could not be scheduled (store unavailable?): old certificates are still refused at login'));

  let closing: Promise<void> | undefined;
  return {
    ctx,
    listeners,
    close() {
      closing ??= (async () => {
        // No listener accepts a new connection from here on.
        for (const l of started) l.stopAccepting?.();
        services.x509.stopGraceEnds();
        // CONNECT decisions in flight (a registration writing its device) finish, and their
        // answers (pushed right after CONNACK) get onto the wire before sessions are cut.
        if (await connectDecisionsSettled(ctx).catch(() => false)) await new Promise((r) => setTimeout(r, PUSH_CLOSE_GRACE_MS + 50));
        // All at once: HTTP listeners finish requests in flight; MQTT listeners end their
        // sessions (presence is flushed).
        await Promise.all(started.slice().reverse().map((l) => l.close().catch((e) => logger.warn({ err: e }, 'listener close failed'))));
        await connectDecisionsSettled(ctx).catch(() => undefined);
        await services.keyRotation.stop().catch(() => undefined);
        services.logLimiter.close();
        // The audit buffer is written before the store closes: the last decisions are kept.
        await services.audit.close().catch((e) => logger.warn({ err: e }, 'audit flush failed'));
        await store.markAllOffline(new Date().toISOString()).catch(() => undefined);
        await services.limiter.close().catch(() => undefined);
        await store.close();
        await cluster.close().catch((e) => logger.warn({ err: e }, 'leaving the cluster failed'));
      })();
      return closing;
    },
  };
}
