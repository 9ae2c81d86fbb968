/** Management tokens (admin only): list, create (the token is shown once), revoke. */
import { useState } from 'preact/hooks';
import { call } from '../api';
import { formatTime, t } from '../i18n';
import { session } from '../session';
import { ConfirmButton, Field, FormError, Loading, Page, Select, useFormErrors, useLoad } from '../ui';

export function Tokens() {
  const admin = session.isAdmin();
  const list = useLoad(async (signal) => (admin ? call('get', '/api/v1/tokens', { signal }) : undefined), [admin]);
  const [name, setName] = useState('');
  const [scope, setScope] = useState<'admin' | 'read'>('read');
  const [created, setCreated] = useState<string>();
  const f = useFormErrors(['name', 'scope']);
  if (!admin) {
    return (
      <Page title={t('nav.tokens')}>
        <p class="notice">{t('tokens.adminOnly')}</p>
      </Page>
    );
  }
  return (
    <Page title={t('nav.tokens')}>
      <form
        class="card"
        aria-labelledby="create-token-h"
        onSubmit={async (e) => {
          e.preventDefault();
          f.clear();
          try {
            const r = await call('post', '/api/v1/tokens', { body: { name, scope } });
            setCreated(r.token);
            setName('');
            list.reload();
          } catch (ex) {
            f.take(ex);
          }
        }}
      >
        <h2 id="create-token-h">{t('tokens.create')}</h2>
        <FormError message={f.errors._form} />
        <div class="row">
          <Field label={t('tokens.name')} name="name" value={name} onInput={setName} error={f.errors.name} />
          <Select
            label={t('tokens.scope')}
            name="scope"
            value={scope}
            options={[
              { value: 'read', label: t('scope.read') },
              { value: 'admin', label: t('scope.admin') },
            ]}
            onChange={setScope}
            error={f.errors.scope}
          />
        </div>
        <button type="submit" class="primary">
          {t('tokens.createButton')}
        </button>
      </form>
      {created && (
        <div class="card notice-card" role="status">
          <p>{t('tokens.createdNote')}</p>
          <code class="secret-value" data-testid="new-token">
            {created}
          </code>{' '}
          <button type="button" onClick={() => setCreated(undefined)}>
            {t('common.close')}
          </button>
        </div>
      )}
      {list.error && <p class="error" role="alert">{list.error}</p>}
      {!list.data && !list.error && <Loading />}
      {list.data && (
        <table>
          <caption class="sr-only">{t('nav.tokens')}</caption>
          <thead>
            <tr>
              <th scope="col">{t('tokens.name')}</th>
              <th scope="col">{t('tokens.id')}</th>
              <th scope="col">{t('tokens.scope')}</th>
              <th scope="col">{t('common.createdAt')}</th>
              <th scope="col">{t('common.actions')}</th>
            </tr>
          </thead>
          <tbody>
            {list.data.items.map((tk) => (
              <tr key={tk.id} data-token={tk.id}>
                <td>{tk.name}</td>
                <td>
                  <code>{tk.id}</code>
                </td>
                <td>{tk.scope === 'admin' ? t('scope.admin') : t('scope.read')}</td>
                <td>{formatTime(tk.createdAt)}</td>
                <td>
                  <ConfirmButton
                    danger
                    name="revoke"
                    label={t('tokens.revoke')}
                    title={t('tokens.revokeTitle', { name: tk.name })}
                    body={<p>{t('tokens.revokeBody')}</p>}
                    action={async () => {
                      await call('delete', '/api/v1/tokens/{id}', { path: { id: tk.id } });
                      list.reload();
                    }}
                  />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Page>
  );
}
