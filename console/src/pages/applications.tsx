/** Application credentials (MQTT username app:{appKey}): list, create (the AppSecret is shown once), delete. */
import { useState } from 'preact/hooks';
import { call } from '../api';
import { formatTime, t } from '../i18n';
import { session } from '../session';
import { ConfirmButton, Field, FormError, Loading, Page, useFormErrors, useLoad } from '../ui';
import { useProducts } from './devices';

export function Applications() {
  const apps = useLoad((signal) => call('get', '/api/v1/applications', { signal }), []);
  const products = useProducts();
  const [name, setName] = useState('');
  const [chosen, setChosen] = useState<string[]>([]);
  const [created, setCreated] = useState<{ appKey: string; appSecret: string }>();
  const f = useFormErrors(['name', 'productKeys']);
  const admin = session.isAdmin();
  return (
    <Page title={t('nav.applications')}>
      <p class="muted">{t('app.intro')}</p>
      {admin && (
        <form
          class="card"
          aria-labelledby="create-app-h"
          onSubmit={async (e) => {
            e.preventDefault();
            f.clear();
            try {
              const r = await call('post', '/api/v1/applications', { body: { name, productKeys: chosen } });
              setCreated({ appKey: r.appKey, appSecret: r.appSecret });
              setName('');
              setChosen([]);
              apps.reload();
            } catch (ex) {
              f.take(ex);
            }
          }}
        >
          <h2 id="create-app-h">{t('app.create')}</h2>
          <FormError message={f.errors._form} />
          <Field label={t('app.name')} name="name" value={name} onInput={setName} error={f.errors.name} />
          <fieldset>
            <legend>{t('app.products')}</legend>
            {(products.data?.items ?? []).map((p) => (
              <label key={p.productKey} class="check">
                <input
                  type="checkbox"
                  name="productKeys"
                  value={p.productKey}
                  checked={chosen.includes(p.productKey)}
                  onChange={(e) => {
                    const on = (e.currentTarget as HTMLInputElement).checked;
                    setChosen(on ? [...chosen, p.productKey] : chosen.filter((x) => x !== p.productKey));
                  }}
                />{' '}
                {`${p.productName} (${p.productKey})`}
              </label>
            ))}
            {f.errors.productKeys && (
              <span class="field-error" role="alert">
                {f.errors.productKeys}
              </span>
            )}
          </fieldset>
          <button type="submit" class="primary">
            {t('app.createButton')}
          </button>
        </form>
      )}
      {created && (
        <div class="card notice-card" role="status">
          <p>{t('app.createdNote')}</p>
          <p>
            AppKey <code>{created.appKey}</code>
          </p>
          <p>
            AppSecret <code class="secret-value">{created.appSecret}</code>
          </p>
          <button type="button" onClick={() => setCreated(undefined)}>
            {t('common.close')}
          </button>
        </div>
      )}
      {apps.error && <p class="error" role="alert">{apps.error}</p>}
      {!apps.data && !apps.error && <Loading />}
      {apps.data && (
        <table>
          <caption class="sr-only">{t('nav.applications')}</caption>
          <thead>
            <tr>
              <th scope="col">{t('app.name')}</th>
              <th scope="col">AppKey</th>
              <th scope="col">{t('app.products')}</th>
              <th scope="col">{t('common.createdAt')}</th>
              {admin && <th scope="col">{t('common.actions')}</th>}
            </tr>
          </thead>
          <tbody>
            {apps.data.items.map((a) => (
              <tr key={a.appKey}>
                <td>{a.name}</td>
                <td>
                  <code>{a.appKey}</code>
                </td>
                <td>{a.productKeys.join(', ')}</td>
                <td>{formatTime(a.createdAt)}</td>
                {admin && (
                  <td>
                    <ConfirmButton
                      danger
                      label={t('common.delete')}
                      title={t('app.deleteTitle', { name: a.name })}
                      body={<p>{t('app.deleteBody')}</p>}
                      action={async () => {
                        await call('delete', '/api/v1/applications/{appKey}', { path: { appKey: a.appKey } });
                        apps.reload();
                      }}
                    />
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {apps.data && apps.data.items.length === 0 && <p class="muted">{t('app.none')}</p>}
    </Page>
  );
}
