/**
 * A PRIVATE PostgreSQL server for a test file (the launcher lives in bench/lib/private-postgres.ts,
 * shared with the benchmarks): fsync off, torn down afterwards.
 *
 * When no server can be started, `startPrivatePostgres` returns the reason and the caller
 * skips, unless CI is set: under CI=true it throws, so the PostgreSQL tests never silently
 * vanish from a CI run.
 */
import { startPostgresServer, type PrivatePostgres } from '../../bench/lib/private-postgres.js';

export { findPostgresBinDir, type PrivatePostgres } from '../../bench/lib/private-postgres.js';

/**
 * Starts a private server, or says why not. Under CI=true a failure throws: the PostgreSQL
 * tests must run there.
 */
export async function startPrivatePostgres(): Promise<{ server: PrivatePostgres } | { skip: string }> {
  try {
    return { server: await startPostgresServer() };
  } catch (e) {
    const reason = `no private PostgreSQL server: ${(e as Error).message}`;
    if (process.env.CI) throw new Error(`${reason} (CI is set, so the PostgreSQL tests may not be skipped)`);
    return { skip: reason };
  }
}
