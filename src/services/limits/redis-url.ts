/** THINGAUTH_REDIS_URL validation (config.ts), kept apart from the client so reading the config does not load ioredis. */
/** What is wrong with a THINGAUTH_REDIS_URL, or undefined. Never echoes the URL (it may hold a password). */
export function redisUrlProblem(raw: string): string | undefined {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return 'must be a URL: redis://[user:password@]host[:port][/db] or rediss:// for TLS';
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') return `must start with redis:// or rediss:// (TLS), got "${u.protocol}//..."`;
  if (!u.hostname) return 'has no host: redis://host[:port][/db]';
  const db = u.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d{1,2}$/.test(db)) return 'database must be a number (redis://host:port/0)';
  return undefined;
}
