/**
 * One device: status (live), activation, last online, gateway or sub-devices, the last refused
 * login and the audit timeline; enable, disable, reset, rotate the secret, delete (each behind
 * a confirmation), reveal the secret. Read-scope operators see no secret and no action.
 */
import { useEffect, useState } from 'preact/hooks';
import { call, type Device } from '../api';
import { formatTime, t } from '../i18n';
import { onLive, withLiveStatus } from '../live';
import { deviceHref, navigate, productHref, withQuery } from '../router';
import { session } from '../session';
import { ConfirmButton, Link, Loading, Page, SecretReveal, StatusBadge, useLoad } from '../ui';
import { AuditTable } from './audit';

function SubDevices({ productKey, deviceName }: { productKey: string; deviceName: string }) {
  const subs = useLoad((signal) => call('get', '/api/v1/products/{productKey}/devices/{deviceName}/sub-devices', { path: { productKey, deviceName }, query: { limit: 100 }, signal }), [productKey, deviceName]);
  return (
    <section aria-labelledby="subs-h">
      <h2 id="subs-h">{t('device.subDevices')}</h2>
      {subs.error && <p class="error" role="alert">{subs.error}</p>}
      {subs.data && subs.data.items.length === 0 && <p class="muted">{t('topology.none')}</p>}
      {subs.data && subs.data.items.length > 0 && (
        <ul>
          {subs.data.items.map((s) => (
            <li key={s.iotId}>
              <Link href={deviceHref(s.productKey, s.deviceName)}>{`${s.productKey} / ${s.deviceName}`}</Link> <StatusBadge status={s.status} />
            </li>
          ))}
        </ul>
      )}
      <p>
        <Link href={withQuery('/topology', { product: productKey, device: deviceName })}>{t('device.editTopology')}</Link>
      </p>
    </section>
  );
}

export function DeviceDetail({ productKey, deviceName }: { productKey: string; deviceName: string }) {
  const dev = useLoad((signal) => call('get', '/api/v1/products/{productKey}/devices/{deviceName}', { path: { productKey, deviceName }, signal }).then(withLiveStatus), [productKey, deviceName]);
  const product = useLoad((signal) => call('get', '/api/v1/products/{productKey}', { path: { productKey }, signal }), [productKey]);
  const audit = useLoad((signal) => call('get', '/api/v1/audit', { query: { productKey, deviceName, limit: 20 }, signal }), [productKey, deviceName]);
  const [rotated, setRotated] = useState<{ deviceSecret: string; previousSecretExpiresAt: string | null }>();
  const admin = session.isAdmin();

  useEffect(() => {
    const offStatus = onLive('device.status', (ev) => {
      if (ev.productKey !== productKey || ev.deviceName !== deviceName || !dev.data) return;
      dev.setData({ ...dev.data, status: ev.status, ...(ev.status === 'ONLINE' ? { lastOnlineAt: ev.at } : {}) });
    });
    const offChanged = onLive('device.changed', (ev) => {
      if (ev.productKey === productKey && ev.deviceName === deviceName) {
        dev.reload();
        audit.reload();
      }
    });
    const offResync = onLive('resync', () => dev.reload());
    return () => (offStatus(), offChanged(), offResync());
  }, [dev.data, productKey, deviceName]);

  const act = (action: 'enable' | 'disable' | 'reset') => async () => {
    const path = { productKey, deviceName };
    const d: Device =
      action === 'enable'
        ? await call('post', '/api/v1/products/{productKey}/devices/{deviceName}/enable', { path })
        : action === 'disable'
          ? await call('post', '/api/v1/products/{productKey}/devices/{deviceName}/disable', { path })
          : await call('post', '/api/v1/products/{productKey}/devices/{deviceName}/reset', { path });
    dev.setData(withLiveStatus(d));
    audit.reload();
  };

  const d = dev.data;
  return (
    <Page title={deviceName}>
      <p>
        <Link href={withQuery('/devices', { product: productKey })}>{t('common.back')}</Link>
      </p>
      {dev.error && <p class="error" role="alert">{dev.error}</p>}
      {!d && !dev.error && <Loading />}
      {d && (
        <>
          <dl class="facts">
            <dt>{t('device.status')}</dt>
            <dd data-field="status">
              <StatusBadge status={d.status} />
            </dd>
            <dt>{t('device.product')}</dt>
            <dd>
              <Link href={productHref(d.productKey)}>{product.data ? product.data.productName : d.productKey}</Link> <code>{d.productKey}</code>
            </dd>
            <dt>{t('device.iotId')}</dt>
            <dd>
              <code>{d.iotId}</code>
            </dd>
            <dt>{t('device.nickname')}</dt>
            <dd>{d.nickname ?? '—'}</dd>
            <dt>{t('common.createdAt')}</dt>
            <dd>{formatTime(d.createdAt)}</dd>
            <dt>{t('device.activatedAt')}</dt>
            <dd>{formatTime(d.activatedAt)}</dd>
            <dt>{t('device.lastOnline')}</dt>
            <dd>{formatTime(d.lastOnlineAt)}</dd>
            <dt>{t('device.gateway')}</dt>
            <dd>{d.gateway ? <Link href={deviceHref(d.gateway.productKey, d.gateway.deviceName)}>{`${d.gateway.productKey} / ${d.gateway.deviceName}`}</Link> : '—'}</dd>
          </dl>
          <section class="card" aria-labelledby="refusal-h">
            <h2 id="refusal-h">{t('device.lastRefusal')}</h2>
            {d.lastAuthError ? (
              <>
                <p data-field="lastAuthError">{d.lastAuthError}</p>
                <p class="muted">
                  {formatTime(d.lastAuthErrorAt)} {d.lastAuthErrorSource ?? ''}
                </p>
                {admin && <Link href={withQuery('/doctor', { product: productKey, device: deviceName })}>{t('device.diagnose')}</Link>}
              </>
            ) : (
              <p class="muted">{t('device.noRefusal')}</p>
            )}
          </section>
          {admin && (
            <section class="card" aria-labelledby="secret-h">
              <h2 id="secret-h">{t('device.secret')}</h2>
              <SecretReveal name="deviceSecret" label={t('device.secret')} load={async () => (await call('get', '/api/v1/products/{productKey}/devices/{deviceName}/secret', { path: { productKey, deviceName } })).deviceSecret ?? ''} />
              {rotated && (
                <p role="status" data-testid="rotated">
                  {t('device.rotated')} <code class="secret-value">{rotated.deviceSecret}</code>{' '}
                  {rotated.previousSecretExpiresAt ? t('device.previousUntil', { at: formatTime(rotated.previousSecretExpiresAt) }) : ''}
                </p>
              )}
            </section>
          )}
          {admin && (
            <section class="card actions" aria-labelledby="actions-h">
              <h2 id="actions-h">{t('device.actions')}</h2>
              {d.status === 'DISABLE' ? (
                <ConfirmButton name="enable" label={t('device.enable')} title={t('device.enableTitle', { name: deviceName })} body={<p>{t('device.enableBody')}</p>} action={act('enable')} />
              ) : (
                <ConfirmButton name="disable" danger label={t('device.disable')} title={t('device.disableTitle', { name: deviceName })} body={<p>{t('device.disableBody')}</p>} action={act('disable')} />
              )}
              <ConfirmButton name="reset" label={t('device.reset')} title={t('device.resetTitle', { name: deviceName })} body={<p>{t('device.resetBody')}</p>} action={act('reset')} />
              <ConfirmButton
                name="rotate"
                label={t('device.rotate')}
                title={t('device.rotateTitle', { name: deviceName })}
                body={<p>{t('device.rotateBody')}</p>}
                action={async () => {
                  const r = await call('post', '/api/v1/products/{productKey}/devices/{deviceName}/secret/rotate', { path: { productKey, deviceName }, body: {} });
                  setRotated({ deviceSecret: r.deviceSecret, previousSecretExpiresAt: r.previousSecretExpiresAt });
                  audit.reload();
                }}
              />
              <ConfirmButton
                name="delete"
                danger
                label={t('device.delete')}
                title={t('device.deleteTitle', { name: deviceName })}
                body={<p>{t('device.deleteBody')}</p>}
                action={async () => {
                  await call('delete', '/api/v1/products/{productKey}/devices/{deviceName}', { path: { productKey, deviceName } });
                  navigate(withQuery('/devices', { product: productKey }));
                }}
              />
            </section>
          )}
          {product.data?.nodeType === 'GATEWAY' && <SubDevices productKey={productKey} deviceName={deviceName} />}
          <section aria-labelledby="timeline-h">
            <h2 id="timeline-h">{t('device.timeline')}</h2>
            {audit.error && <p class="error" role="alert">{audit.error}</p>}
            {audit.data && <AuditTable items={audit.data.items} compact />}
          </section>
        </>
      )}
    </Page>
  );
}
