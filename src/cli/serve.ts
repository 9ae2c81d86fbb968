/** `thingauth serve`: start every listener on the configured (or embedded default) store. */
import type { Command } from 'commander';
import { CONFIG_ENV, ConfigError, configInputFromEnv, loadConfig, type Config, type ConfigInput } from '../config.js';

function flagName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

export function addServeCommand(program: Command): void {
  const serve = program.command('serve').description('start the server (management API, device HTTPS, MQTT listeners)');
  for (const [key, env] of Object.entries(CONFIG_ENV)) {
    serve.option(`--${flagName(key)} <value>`, `overrides ${env}`);
  }
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
    // Loaded here, not at the top: the server pulls in every listener and the store, which
    // the API-client commands (product, device, ...) do not need at their start-up.
    const { startThingAuth } = await import('../main.js');
    const running = await startThingAuth(config);
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      running.ctx.logger.info({ signal }, 'shutting down');
      const timer = setTimeout(() => process.exit(1), 15_000);
      timer.unref();
      running.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}
