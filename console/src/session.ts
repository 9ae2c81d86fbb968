/**
 * The signed-in operator. The management token is kept in this module's memory ONLY: never in
 * a URL, a log, localStorage or sessionStorage (both are storage a script or a shared
 * profile can read later). A reload or a closed tab therefore signs out; that is the point.
 */
import { observable } from './store';

export type Scope = 'admin' | 'read';

export interface SessionInfo {
  scope: Scope;
  tokenId: string;
  name: string;
}

let token: string | undefined;
/** Who is signed in, or undefined. */
export const current = observable<SessionInfo | undefined>(undefined);
/** Why the last session ended (an i18n key or a server message), shown on the sign-in page. */
export const endedBecause = observable<{ key: string; detail?: string } | undefined>(undefined);

export const session = {
  token: (): string | undefined => token,
  begin(newToken: string, info: SessionInfo): void {
    token = newToken;
    endedBecause.set(undefined);
    current.set(info);
  },
  /** Signed out by the operator. */
  end(): void {
    token = undefined;
    current.set(undefined);
  },
  /** The server refused the token mid-session (expired or revoked): back to sign-in. */
  expire(detail: string): void {
    if (token === undefined) return;
    token = undefined;
    endedBecause.set({ key: 'signin.expired', detail });
    current.set(undefined);
  },
  isAdmin: (): boolean => current.get()?.scope === 'admin',
};
