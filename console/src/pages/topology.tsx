/** A gateway's topology: view its sub-devices, add some (all or nothing), remove one. */
import { useState } from 'preact/hooks';
import { call } from '../api';
import { t } from '../i18n';
import { deviceHref, navigate, withQuery } from '../router';
import { session } from '../session';
import { ConfirmButton, Field, FormError, Link, Loading, Page, StatusBadge, useFormErrors, useLoad } from '../ui';
import { ProductPicker, useProducts } from './devices';

export function Topology({ productKey, deviceName }: { productKey?: string; deviceName?: string }) {
  const products = useProducts();
  const gateways = products.data?.items.filter((p) => p.nodeType === 'GATEWAY');
  const subProducts = products.data?.items.filter((p) => p.nodeType === 'SUB_DEVICE');
  const [gwName, setGwName] = useState(deviceName ?? '');
  const pk = productKey ?? '';
  const subs = useLoad(
    async (signal) => (pk && deviceName ? call('get', '/api/v1/products/{productKey}/devices/{deviceName}/sub-devices', { path: { productKey: pk, deviceName }, query: { limit: 1000 }, signal }) : undefined),
    [pk, deviceName],
  );
  const [subPk, setSubPk] = useState('');
  const [subNames, setSubNames] = useState('');
  const [added, setAdded] = useState<string>();
  const f = useFormErrors(['subDevices']);
  const admin = session.isAdmin();
  return (
    <Page title={t('nav.topology')}>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          navigate(withQuery('/topology', { product: pk, device: gwName.trim() }));
        }}
      >
        <ProductPicker label={t('topology.gatewayProduct')} value={pk} products={gateways} onChange={(v) => navigate(withQuery('/topology', { product: v }), true)} />
        <Field label={t('topology.gatewayName')} name="gateway" value={gwName} onInput={setGwName} />
        <button type="submit">{t('topology.show')}</button>
      </form>
      {gateways && gateways.length === 0 && <p class="muted">{t('topology.noGatewayProducts')}</p>}
      {subs.error && <p class="error" role="alert">{subs.error}</p>}
      {pk && deviceName && !subs.data && !subs.error && <Loading />}
      {subs.data && deviceName && (
        <>
          <h2>
            {t('topology.subDevicesOf')} <Link href={deviceHref(pk, deviceName)}>{deviceName}</Link>
          </h2>
          {subs.data.items.length === 0 ? (
            <p class="muted">{t('topology.none')}</p>
          ) : (
            <table>
              <caption class="sr-only">{t('topology.subDevicesOf')}</caption>
              <thead>
                <tr>
                  <th scope="col">{t('device.product')}</th>
                  <th scope="col">{t('device.name')}</th>
                  <th scope="col">{t('device.status')}</th>
                  {admin && <th scope="col">{t('common.actions')}</th>}
                </tr>
              </thead>
              <tbody>
                {subs.data.items.map((s) => (
                  <tr key={s.iotId} data-sub={s.deviceName}>
                    <td>
                      <code>{s.productKey}</code>
                    </td>
                    <td>
                      <Link href={deviceHref(s.productKey, s.deviceName)}>{s.deviceName}</Link>
                    </td>
                    <td>
                      <StatusBadge status={s.status} />
                    </td>
                    {admin && (
                      <td>
                        <ConfirmButton
                          name="remove-sub"
                          danger
                          label={t('topology.remove')}
                          title={t('topology.removeTitle', { name: s.deviceName })}
                          body={<p>{t('topology.removeBody')}</p>}
                          action={async () => {
                            await call('delete', '/api/v1/products/{productKey}/devices/{deviceName}/sub-devices/{subProductKey}/{subDeviceName}', {
                              path: { productKey: pk, deviceName, subProductKey: s.productKey, subDeviceName: s.deviceName },
                            });
                            subs.reload();
                          }}
                        />
                      </td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {admin && (
            <form
              class="card"
              aria-labelledby="add-sub-h"
              onSubmit={async (e) => {
                e.preventDefault();
                f.clear();
                setAdded(undefined);
                try {
                  const names = subNames.split(/[\s,]+/).filter(Boolean);
                  const r = await call('post', '/api/v1/products/{productKey}/devices/{deviceName}/sub-devices', {
                    path: { productKey: pk, deviceName },
                    body: { subDevices: names.map((n) => ({ productKey: subPk, deviceName: n })) },
                  });
                  setAdded(t('topology.added', { added: r.added.length, moved: r.moved.length, total: r.total }));
                  setSubNames('');
                  subs.reload();
                } catch (ex) {
                  f.take(ex);
                }
              }}
            >
              <h2 id="add-sub-h">{t('topology.add')}</h2>
              <FormError message={f.errors._form} />
              <div class="row">
                <ProductPicker label={t('topology.subProduct')} name="subProductKey" value={subPk} products={subProducts} onChange={setSubPk} />
                <Field label={t('topology.subNames')} name="subDevices" value={subNames} onInput={setSubNames} error={f.errors.subDevices} hint={t('topology.subNamesHint')} />
              </div>
              <button type="submit" class="primary">
                {t('topology.addButton')}
              </button>
              {added && (
                <span role="status" class="ok">
                  {added}
                </span>
              )}
            </form>
          )}
        </>
      )}
    </Page>
  );
}
