/** Sign-in with a management token (admin or read scope); the token stays in memory (session.ts). */
import { useState } from 'preact/hooks';
import { ApiError } from './api';
import { t } from './i18n';
import { endedBecause, session, type SessionInfo } from './session';
import { useObservable } from './store';
import { errorText, Field } from './ui';
import { LangSwitch } from './lang-switch';

/** GET /api/v1/whoami with the candidate token (not yet the session's). */
async function whoami(token: string): Promise<SessionInfo> {
  const res = await fetch('/api/v1/whoami', { headers: { authorization: `Bearer ${token}` }, cache: 'no-store', credentials: 'omit' });
  let body: { scope?: unknown; tokenId?: unknown; name?: unknown; code?: unknown; message?: unknown } = {};
  try {
    body = await res.json();
  } catch {
    /* not JSON */
  }
  if (res.status === 404) return probeScope(token);
  if (!res.ok) throw new ApiError(res.status, typeof body.code === 'string' ? body.code : `HTTP_${res.status}`, typeof body.message === 'string' ? body.message : res.statusText);
  if (body.scope !== 'admin' && body.scope !== 'read') throw new Error('unexpected /whoami answer');
  return { scope: body.scope, tokenId: String(body.tokenId ?? ''), name: String(body.name ?? '') };
}

/**
 * A server without /whoami (older than the console API): the token is valid if it may list
 * products, and admin if it may list tokens (an admin-only route).
 */
async function probeScope(token: string): Promise<SessionInfo> {
  const headers = { authorization: `Bearer ${token}` };
  const products = await fetch('/api/v1/products?limit=1', { headers, cache: 'no-store', credentials: 'omit' });
  if (!products.ok) throw new ApiError(products.status, `HTTP_${products.status}`, products.statusText);
  const tokens = await fetch('/api/v1/tokens', { headers, cache: 'no-store', credentials: 'omit' });
  return { scope: tokens.ok ? 'admin' : 'read', tokenId: '', name: '' };
}

export function SignIn() {
  const [token, setToken] = useState('');
  const [err, setErr] = useState<string>();
  const [busy, setBusy] = useState(false);
  const ended = useObservable(endedBecause);
  return (
    <main id="main" class="signin">
      <div class="signin-box">
        <div class="signin-top">
          <h1>{t('signin.title')}</h1>
          <LangSwitch />
        </div>
        <p class="muted">{t('signin.intro')}</p>
        {ended && (
          <p class="notice" role="alert" data-testid="session-ended">
            {t('signin.expired')} {ended.detail ? `(${ended.detail})` : ''}
          </p>
        )}
        {/* method=post: even a submit the script did not catch never puts the token in a URL. */}
        <form
          method="post"
          onSubmit={async (e) => {
            e.preventDefault();
            setBusy(true);
            setErr(undefined);
            try {
              const info = await whoami(token.trim());
              session.begin(token.trim(), info);
              setToken('');
            } catch (ex) {
              setErr(ex instanceof ApiError && ex.status === 401 ? t('signin.badToken') : errorText(ex));
            } finally {
              setBusy(false);
            }
          }}
        >
          <Field label={t('signin.token')} name="token" type="password" value={token} onInput={setToken} required autoComplete="off" hint={t('signin.tokenHint')} error={err} />
          <button type="submit" class="primary" disabled={busy || token.trim() === ''}>
            {t('signin.submit')}
          </button>
        </form>
        <p class="muted small">{t('signin.memoryOnly')}</p>
      </div>
    </main>
  );
}
