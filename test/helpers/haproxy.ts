/**
 * A PRIVATE HAProxy for a test file (the launcher lives in bench/lib/private-haproxy.ts, shared
 * with the benchmarks). When none can be started, `startPrivateHaproxy` returns the reason and
 * the caller skips, unless CI is set: under CI=true it throws, so the HAProxy tests never
 * silently vanish from a CI run.
 */
import { startHaproxy, type HaproxyStart, type PrivateHaproxy } from '../../bench/lib/private-haproxy.js';

export type { PrivateHaproxy } from '../../bench/lib/private-haproxy.js';

export async function startPrivateHaproxy<P extends string>(opts: HaproxyStart<P>): Promise<{ server: PrivateHaproxy } | { skip: string }> {
  try {
    return { server: await startHaproxy(opts) };
  } catch (e) {
    const reason = `no private HAProxy: ${(e as Error).message}`;
    if (process.env.CI) throw new Error(`${reason} (CI is set, so the HAProxy tests may not be skipped)`);
    return { skip: reason };
  }
}
