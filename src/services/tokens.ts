/**
 * Management API tokens: several may exist, each with a scope. `read` may only use GET/HEAD;
 * `admin` may do everything. The store keeps a SHA-256 of each token (tokens are 256-bit
 * random, so a slow password hash buys nothing); the token itself is shown once, on create.
 * The bootstrap admin token (THINGAUTH_ADMIN_TOKEN or <dataDir>/admin-token) is always an
 * admin token.
 *
 * Token form: `tat_<id>_<secret>`. The id lets the lookup be one primary-key read; the secret
 * part is compared by hash in constant time.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ThingAuthError } from '../core/errors.js';
import { constantTimeEquals } from '../core/sign.js';
import type { ManagementTokenRecord, Store } from '../store/store.js';

export type TokenScope = 'read' | 'admin';
export const TOKEN_SCOPES: readonly TokenScope[] = ['read', 'admin'];

/** Who made a management call: recorded in the audit as `token:<id>`. */
export interface Caller {
  tokenId: string;
  name: string;
  scope: TokenScope;
}

export const BOOTSTRAP_CALLER: Caller = { tokenId: 'bootstrap', name: 'bootstrap admin token', scope: 'admin' };

/** A token as listed: never its secret, never its hash. */
export interface PublicToken {
  id: string;
  name: string;
  scope: TokenScope;
  createdAt: string;
}

const TOKEN_RE = /^tat_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{43})$/;
const NAME_RE = /^[\p{L}\p{N} ._:@-]{1,64}$/u;

function sha256Hex(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}

function newId(): string {
  // 12 alphanumerics: readable in lists and audit entries, 71 bits against collisions.
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = randomBytes(12);
  let id = '';
  for (const b of bytes) id += alphabet[b % alphabet.length];
  return id;
}

export function publicToken(t: ManagementTokenRecord): PublicToken {
  return { id: t.id, name: t.name, scope: t.scope, createdAt: t.createdAt };
}

/** Whether a scope may make a request with this HTTP method. */
export function scopeAllows(scope: TokenScope, method: string): boolean {
  return scope === 'admin' || method === 'GET' || method === 'HEAD';
}

export class TokenService {
  constructor(
    private readonly store: Store,
    private readonly bootstrapToken: () => string | undefined,
  ) {}

  async create(name: string, scope: TokenScope): Promise<{ token: string; record: PublicToken }> {
    if (typeof name !== 'string' || !NAME_RE.test(name)) {
      throw new ThingAuthError('INVALID_ARGUMENT', 'name must be 1-64 letters, digits, spaces or . _ : @ -');
    }
    if (!TOKEN_SCOPES.includes(scope)) throw new ThingAuthError('INVALID_ARGUMENT', `scope must be one of ${TOKEN_SCOPES.join(', ')}`);
    const id = newId();
    const token = `tat_${id}_${randomBytes(32).toString('base64url')}`;
    const record: ManagementTokenRecord = { id, name, scope, tokenHash: sha256Hex(token), createdAt: new Date().toISOString() };
    await this.store.createManagementToken(record);
    return { token, record: publicToken(record) };
  }

  async list(): Promise<PublicToken[]> {
    return (await this.store.listManagementTokens()).map(publicToken);
  }

  async revoke(id: string): Promise<void> {
    if (!(await this.store.deleteManagementToken(id))) throw new ThingAuthError('NOT_FOUND', `token ${id} not found`);
    for (const l of this.revokeListeners) l(id);
  }

  private readonly revokeListeners: ((tokenId: string) => void)[] = [];

  /** Called with a token's id once it is revoked (the live streams it holds end: services/live-events.ts). */
  onRevoked(listener: (tokenId: string) => void): void {
    this.revokeListeners.push(listener);
  }

  /** The caller a presented bearer token stands for, or undefined when it is not valid. */
  async authenticate(presented: string): Promise<Caller | undefined> {
    if (typeof presented !== 'string' || presented.length === 0 || presented.length > 256) return undefined;
    const m = TOKEN_RE.exec(presented);
    if (m) {
      const rec = await this.store.getManagementToken(m[1]!);
      // Compare hashes (equal length) so the time does not depend on the token's bytes.
      const expected = Buffer.from(rec?.tokenHash ?? '0'.repeat(64), 'hex');
      const ok = timingSafeEqual(expected, Buffer.from(sha256Hex(presented), 'hex'));
      if (rec && ok) return { tokenId: rec.id, name: rec.name, scope: rec.scope };
    }
    const bootstrap = this.bootstrapToken();
    if (bootstrap && constantTimeEquals(bootstrap, presented)) return BOOTSTRAP_CALLER;
    return undefined;
  }
}
