/**
 * Health: what the API tells about the server. /healthz (the store answers or not), the master
 * key and its last rotation (GET /keys, admin), the live feed, this console's build version and
 * the management address it talks to. The API exposes no list of device listeners, so none is
 * shown here (see docs/console.md).
 */
import { call } from '../api';
import { formatTime, t } from '../i18n';
import { lastStats, liveState } from '../live';
import { session } from '../session';
import { useObservable } from '../store';
import { ConfirmButton, Loading, Page, useLoad } from '../ui';

declare const __THINGAUTH_VERSION__: string;

const ROTATION_KEYS = { idle: 'health.rotation.idle', running: 'health.rotation.running', done: 'health.rotation.done', failed: 'health.rotation.failed' } as const;

export function Health() {
  const health = useLoad(async (signal) => {
    const res = await fetch('/healthz', { signal, cache: 'no-store', credentials: 'omit' });
    return (await res.json()) as { status: string; database?: string };
  }, []);
  const admin = session.isAdmin();
  const keys = useLoad(async (signal) => (admin ? call('get', '/api/v1/keys', { signal }) : undefined), [admin]);
  const live = useObservable(liveState);
  const stats = useObservable(lastStats);
  return (
    <Page title={t('nav.health')}>
      <section class="card" aria-labelledby="server-h">
        <h2 id="server-h">{t('health.server')}</h2>
        {health.error && <p class="error" role="alert">{health.error}</p>}
        {!health.data && !health.error && <Loading />}
        <dl class="facts">
          <dt>{t('health.status')}</dt>
          <dd data-field="health">{health.data ? (health.data.status === 'ok' ? t('health.ok') : t('health.degraded')) : '—'}</dd>
          <dt>{t('health.store')}</dt>
          <dd>{health.data ? (health.data.database === 'unavailable' ? t('health.storeDown') : t('health.storeOk')) : '—'}</dd>
          <dt>{t('health.managementAddress')}</dt>
          <dd>
            <code>{window.location.origin}</code>
          </dd>
          <dt>{t('health.version')}</dt>
          <dd>
            <code>{__THINGAUTH_VERSION__}</code>
          </dd>
          <dt>{t('health.liveFeed')}</dt>
          <dd>{live === 'live' ? t('live.live') : live === 'unavailable' ? t('live.unavailable') : live === 'connecting' ? t('live.connecting') : t('live.off')}</dd>
          <dt>{t('health.onlineNode')}</dt>
          <dd>{stats ? stats.online : '—'}</dd>
        </dl>
        <p class="muted small">{t('health.listenersNote')}</p>
      </section>
      {admin && (
        <section class="card" aria-labelledby="keys-h">
          <h2 id="keys-h">{t('health.keys')}</h2>
          {keys.error && <p class="error" role="alert">{keys.error}</p>}
          {keys.data && (
            <>
              <dl class="facts">
                <dt>{t('health.keySource')}</dt>
                <dd>{keys.data.keySource === 'file' ? t('health.keySource.file') : t('health.keySource.env')}</dd>
                <dt>{t('health.currentKey')}</dt>
                <dd>
                  <code>{keys.data.currentKeyId}</code>
                </dd>
                <dt>{t('health.olderKeys')}</dt>
                <dd>{keys.data.olderKeyIds.length ? keys.data.olderKeyIds.join(', ') : '—'}</dd>
                <dt>{t('health.rotation')}</dt>
                <dd>
                  {t(ROTATION_KEYS[keys.data.state])} {keys.data.finishedAt ? `(${formatTime(keys.data.finishedAt)})` : keys.data.startedAt ? `(${formatTime(keys.data.startedAt)})` : ''}
                </dd>
                <dt>{t('health.rewritten')}</dt>
                <dd>{keys.data.rewritten}</dd>
              </dl>
              {keys.data.error && <p class="error">{keys.data.error}</p>}
              <ConfirmButton
                label={t('health.rotate')}
                title={t('health.rotateTitle')}
                body={<p>{t('health.rotateBody')}</p>}
                action={async () => {
                  keys.setData(await call('post', '/api/v1/keys/rotate'));
                }}
              />
            </>
          )}
        </section>
      )}
    </Page>
  );
}
