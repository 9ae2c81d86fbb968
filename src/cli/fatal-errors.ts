/**
 * The last line of defence of `thingauth serve`: an exception nobody caught or a promise
 * rejection nobody handled is logged (what failed and where, never request data or secrets)
 * and the process exits with status 1, so a supervisor restarts it and the operator can see
 * why. Only the serve command installs this: library code and tests keep Node's behaviour.
 * Exiting, not carrying on: after an uncaught exception the process state is unknown. The
 * store is crash-safe (SQLite WAL); what a crash can lose is listed in docs/security.md.
 */
import type { Logger } from '../logger.js';

/** What a fatal error is logged with: its kind, code and stack, not arbitrary properties it may carry. */
export function describeFatal(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { type: typeof err };
  const e = err as Error & { code?: unknown; syscall?: unknown };
  return {
    name: e.name,
    ...(typeof e.code === 'string' || typeof e.code === 'number' ? { code: e.code } : {}),
    ...(typeof e.syscall === 'string' ? { syscall: e.syscall } : {}),
    message: e.message,
    stack: e.stack,
  };
}

/**
 * A Redis command failure that a library (aedes-persistence-redis, mqemitter-redis) let escape
 * from a fire-and-forget command or callback while Redis was unreachable: ioredis' own errors,
 * raised by ioredis. The process state is intact (the outage is handled by the cluster's Redis
 * link: logins refused, local routing, recovery), so such an error is logged, not fatal.
 */
export function isEscapedRedisCommandError(err: unknown): boolean {
  if (!(err instanceof Error) || !(err.stack ?? '').includes('/ioredis/')) return false;
  return err.name === 'MaxRetriesPerRequestError' || /^(Command timed out|Connection is closed\.|Stream isn't writeable and enableOfflineQueue options is false)$/.test(err.message);
}

/**
 * Installs the handlers. `logger()` is read when an error happens: before the server has its
 * logger (start-up), the line goes to stderr.
 */
export function exitOnFatalErrors(logger: () => Logger | undefined): void {
  let exiting = false;
  let escapedRedisErrors = 0;
  const fatal = (kind: 'uncaughtException' | 'unhandledRejection', err: unknown) => {
    if (isEscapedRedisCommandError(err)) {
      if (escapedRedisErrors++ % 100 === 0) logger()?.warn({ kind, err: describeFatal(err), count: escapedRedisErrors }, 'a Redis command failed while Redis was unreachable (not fatal)');
      return;
    }
    if (exiting) return;
    exiting = true;
    const fields = { kind, err: describeFatal(err) };
    const log = logger();
    try {
      if (log) log.fatal(fields, `fatal error (${kind}): exiting`);
      else process.stderr.write(`thingauth: fatal error (${kind}): ${JSON.stringify(fields)}\n`);
    } finally {
      process.exit(1);
    }
  };
  process.on('uncaughtException', (err) => fatal('uncaughtException', err));
  process.on('unhandledRejection', (reason) => fatal('unhandledRejection', reason));
}
