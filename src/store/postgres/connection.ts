/**
 * From THINGAUTH_DATABASE_URL (postgres:// or postgresql://, optional ?sslmode=) and the CA
 * file setting to node-postgres pool options, plus a description of the server for messages
 * (host, port, database; never the password).
 *
 * sslmode, as libpq's: disable (no TLS), require (TLS; the certificate is verified only when a
 * CA file is given, like libpq with a root certificate), verify-ca (TLS, chain checked against
 * the CA file, any host name), verify-full (TLS, chain and host name checked). Without sslmode:
 * no TLS, unless a CA file is given (then verify-full). allow/prefer (fall back to plaintext)
 * are refused: node-postgres cannot fall back, and a silent downgrade is what they mean.
 */
import fs from 'node:fs';
import type { ConnectionOptions } from 'node:tls';

export const POSTGRES_URL = /^postgres(ql)?:\/\//i;
export const SSL_MODES = ['disable', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

export function isPostgresUrl(url: string | undefined): boolean {
  return url !== undefined && POSTGRES_URL.test(url);
}

export interface PostgresTarget {
  /** The URL without sslmode (TLS is passed as options). */
  connectionString: string;
  ssl: false | ConnectionOptions;
  /** "host:port/database" for messages. */
  where: string;
}

/** Why the URL or CA file cannot be used, or undefined when they can (config validation). */
export function postgresUrlProblem(url: string, caFile: string | undefined): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'is not a valid URL (postgres://user:password@host:port/database)';
  }
  if (!u.hostname) return 'names no host (postgres://user:password@host:port/database)';
  if (u.pathname.replace(/^\//, '') === '') return 'names no database (postgres://user:password@host:port/database)';
  const mode = u.searchParams.get('sslmode');
  if (mode !== null && !(SSL_MODES as readonly string[]).includes(mode)) {
    return `sslmode must be one of ${SSL_MODES.join(', ')}, got "${mode}"`;
  }
  if (mode === 'disable' && caFile !== undefined) return 'sslmode=disable contradicts the database CA file setting';
  if (mode === 'verify-ca' || mode === 'verify-full') {
    if (caFile === undefined) return `sslmode=${mode} needs the database CA file setting (THINGAUTH_DATABASE_CA_FILE)`;
  }
  if (caFile !== undefined && !fs.existsSync(caFile)) return `the database CA file ${caFile} does not exist`;
  return undefined;
}

export function postgresTarget(url: string, caFile: string | undefined): PostgresTarget {
  const u = new URL(url);
  const mode = (u.searchParams.get('sslmode') ?? (caFile ? 'verify-full' : 'disable')) as SslMode;
  u.searchParams.delete('sslmode');
  const ca = caFile ? fs.readFileSync(caFile) : undefined;
  let ssl: PostgresTarget['ssl'];
  switch (mode) {
    case 'disable':
      ssl = false;
      break;
    case 'require':
      ssl = ca ? { ca, checkServerIdentity: () => undefined } : { rejectUnauthorized: false };
      break;
    case 'verify-ca':
      ssl = { ca, checkServerIdentity: () => undefined };
      break;
    default:
      // Chain and host name (node-postgres passes the host to tls.connect; SNI only for names).
      ssl = { ca };
  }
  const where = `${u.hostname}:${u.port || '5432'}/${decodeURIComponent(u.pathname.replace(/^\//, ''))}`;
  return { connectionString: u.toString(), ssl, where };
}
