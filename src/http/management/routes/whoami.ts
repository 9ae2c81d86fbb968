/**
 * /whoami: which token the caller holds (the console shows it and hides what the scope may not
 * do). Any valid token may ask; the bootstrap admin token (THINGAUTH_ADMIN_TOKEN or
 * <dataDir>/admin-token) has no id: tokenId null, name "admin".
 */
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../../../context.js';
import { BOOTSTRAP_CALLER, type Caller } from '../../../services/tokens.js';
import { Nullable, errorResponses } from '../schemas.js';
import type { ManagementApp } from '../server.js';

export const WhoamiBody = Type.Object({
  scope: Type.Union([Type.Literal('admin'), Type.Literal('read')], { description: 'read: GET only; admin: everything' }),
  tokenId: Nullable(Type.String({ description: 'id of the token (as in GET /tokens); null for the bootstrap admin token' })),
  name: Nullable(Type.String({ description: 'the name the token was created with; "admin" for the bootstrap admin token' })),
});

export function whoamiOf(caller: Caller): { scope: 'admin' | 'read'; tokenId: string | null; name: string | null } {
  if (caller === BOOTSTRAP_CALLER) return { scope: 'admin', tokenId: null, name: 'admin' };
  return { scope: caller.scope, tokenId: caller.tokenId, name: caller.name };
}

export async function whoamiRoutes(app: ManagementApp, _ctx: AppContext): Promise<void> {
  app.get(
    '/whoami',
    { schema: { tags: ['console'], summary: 'The scope, id and name of the token making this request', response: { 200: WhoamiBody, ...errorResponses } } },
    async (req) => whoamiOf(req.caller!),
  );
}
