/** `thingauth serve`: start every listener on the configured (or embedded default) store. */
import type { Command } from 'commander';
import { CONFIG_ENV, ConfigError, configInputFromEnv, loadConfig, type Config, type ConfigInput } from '../config.js';
import type { Logger } from '../logger.js';
import cluster from 'node:cluster';
import { exitOnFatalErrors } from './fatal-errors.js';
import { parseWorkers, runWorkers, workerNodeId, workersProblem } from './workers.js';

function flagName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

export function addServeCommand(program: Command): void {
  const serve = program.command('serve').description('start the server (management API, device HTTPS, MQTT listeners)');
  for (const [key, env] of Object.entries(CONFIG_ENV)) {
    serve.option(`--${flagName(key)} <value>`, `overrides ${env}`);
  }
  serve.option('--workers <n>', 'run N worker processes sharing the listeners (a number or "auto" = one per core; needs THINGAUTH_REDIS_URL)');
  serve.action(async (opts: Record<string, string>) => {
    const input: ConfigInput = configInputFromEnv(process.env);
    for (const key of Object.keys(CONFIG_ENV) as (keyof Config)[]) {
      const v = opts[key];
      if (v !== undefined) input[key] = v;
    }
    let config: Config;
    try {
      config = loadConfig(input);
    } catch (e) {
      if (e instanceof ConfigError) {
        process.stderr.write(`thingauth: ${e.message}\n`);
        process.exit(2);
      }
      throw e;
    }
    if (opts.workers !== undefined && !cluster.isWorker) {
      let count: number;
      try {
        count = parseWorkers(opts.workers);
      } catch (e) {
        process.stderr.write(`thingauth: ${(e as Error).message}\n`);
        process.exit(2);
      }
      const problem = workersProblem(config);
      if (problem) {
        process.stderr.write(`thingauth: ${problem}\n`);
        process.exit(2);
      }
      await runWorkers(config, count, config.shutdownTimeoutSeconds);
      return;
    }
    const nodeId = workerNodeId(config);
    if (nodeId !== undefined) config = { ...config, nodeId };
    // Loaded here, not at the top: the server pulls in every listener and the store, which
    // the API-client commands (product, device, ...) do not need at their start-up.
    const { startThingAuth } = await import('../main.js');
    let logger: Logger | undefined;
    exitOnFatalErrors(() => logger);
    const running = await startThingAuth(config);
    logger = running.ctx.logger;
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      const boundMs = config.shutdownTimeoutSeconds * 1000;
      running.ctx.logger.info({ signal, timeoutSeconds: config.shutdownTimeoutSeconds }, 'shutting down: no new connections; finishing work in flight');
      // Bounded: a peer that never lets go cannot keep the process alive past the limit.
      const timer = setTimeout(() => {
        running.ctx.logger.error({ timeoutSeconds: config.shutdownTimeoutSeconds }, 'shutdown did not finish in time; exiting');
        process.exit(1);
      }, boundMs);
      timer.unref();
      running.close().then(
        () => {
          running.ctx.logger.info('shut down cleanly');
          process.exit(0);
        },
        (err: unknown) => {
          running.ctx.logger.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}
