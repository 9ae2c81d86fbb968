/**
 * Health: what the API tells about the server. /healthz (ok, degraded), GET /api/v1/health (any
 * token: the listeners with their real addresses, the store and whether it answers, key
 * rotation state, version, this node in its cluster and the node list), the master key in
 * detail (GET /keys, admin), the live feed and the management address the console talks to.
 */
import { call } from '../api';
import { formatTime, t } from '../i18n';
import { lastStats, liveState } from '../live';
import { session } from '../session';
import { useObservable } from '../store';
import { ConfirmButton, Loading, Page, useLoad } from '../ui';

declare const __THINGAUTH_VERSION__: string;

const ROTATION_KEYS = { idle: 'health.rotation.idle', running: 'health.rotation.running', done: 'health.rotation.done', failed: 'health.rotation.failed' } as const;
const CLUSTER_MODE_KEYS = { single: 'health.clusterMode.single', redis: 'health.clusterMode.redis' } as const;
const REDIS_KEYS = { up: 'health.redis.up', down: 'health.redis.down', none: 'health.redis.none' } as const;

export function Health() {
  const health = useLoad(async (signal) => {
    const res = await fetch('/healthz', { signal, cache: 'no-store', credentials: 'omit' });
    return (await res.json()) as { status: string; database?: string };
  }, []);
  const info = useLoad((signal) => call('get', '/api/v1/health', { signal }), []);
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
          <dd data-field="store">
            {info.data ? (info.data.store.reachable ? t('health.storeOk') : t('health.storeDown')) : health.data ? (health.data.database === 'unavailable' ? t('health.storeDown') : t('health.storeOk')) : '—'}
          </dd>
          <dt>{t('health.storeKind')}</dt>
          <dd data-field="store-kind">{info.data ? (info.data.store.kind === 'postgres' ? t('health.storeKind.postgres') : t('health.storeKind.sqlite')) : '—'}</dd>
          <dt>{t('health.managementAddress')}</dt>
          <dd>
            <code>{window.location.origin}</code>
          </dd>
          <dt>{t('health.version')}</dt>
          <dd>
            <code data-field="version">{info.data?.version ?? __THINGAUTH_VERSION__}</code>
          </dd>
          <dt>{t('health.liveFeed')}</dt>
          <dd>{live === 'live' ? t('live.live') : live === 'unavailable' ? t('live.unavailable') : live === 'connecting' ? t('live.connecting') : t('live.off')}</dd>
          <dt>{t('health.onlineNode')}</dt>
          <dd>{stats ? stats.online : '—'}</dd>
          <dt>{t('health.rotation')}</dt>
          <dd data-field="rotation">{info.data ? t(ROTATION_KEYS[info.data.keys.state]) : '—'}</dd>
          <dt>{t('health.olderKeyCount')}</dt>
          <dd>{info.data ? info.data.keys.olderKeys : '—'}</dd>
        </dl>
      </section>
      <section class="card" aria-labelledby="listeners-h">
        <h2 id="listeners-h">{t('health.listeners')}</h2>
        {info.error && <p class="error" role="alert">{info.error}</p>}
        {!info.data && !info.error && <Loading />}
        {info.data && info.data.listeners.length === 0 && <p class="muted">{t('health.noListeners')}</p>}
        {info.data && info.data.listeners.length > 0 && (
          <table class="listeners">
            <caption class="sr-only">{t('health.listeners')}</caption>
            <thead>
              <tr>
                <th scope="col">{t('health.listener.name')}</th>
                <th scope="col">{t('health.listener.url')}</th>
                <th scope="col">{t('health.listener.port')}</th>
              </tr>
            </thead>
            <tbody>
              {info.data.listeners.map((l) => (
                <tr key={l.name} data-listener={l.name}>
                  <td>{l.name}</td>
                  <td>
                    <code>{l.url}</code>
                  </td>
                  <td data-field="port">{l.port}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <section class="card" aria-labelledby="cluster-h">
        <h2 id="cluster-h">{t('health.cluster')}</h2>
        {info.data && (
          <>
            <dl class="facts">
              <dt>{t('health.clusterMode')}</dt>
              <dd data-field="cluster-mode">{t(CLUSTER_MODE_KEYS[info.data.cluster.mode])}</dd>
              <dt>{t('health.nodeId')}</dt>
              <dd>
                <code>{info.data.cluster.nodeId}</code>
              </dd>
              <dt>{t('health.redis')}</dt>
              <dd>{t(REDIS_KEYS[info.data.cluster.redis])}</dd>
              <dt>{t('health.draining')}</dt>
              <dd>{info.data.cluster.draining ? t('health.yes') : t('health.no')}</dd>
            </dl>
            {info.data.nodes === null && <p class="muted">{t('health.nodesUnavailable')}</p>}
            {info.data.nodes && (
              <table class="nodes">
                <caption class="sr-only">{t('health.nodes')}</caption>
                <thead>
                  <tr>
                    <th scope="col">{t('health.nodeId')}</th>
                    <th scope="col">{t('health.node.host')}</th>
                    <th scope="col">{t('health.node.version')}</th>
                    <th scope="col">{t('health.node.beat')}</th>
                    <th scope="col">{t('health.node.sessions')}</th>
                    <th scope="col">{t('health.draining')}</th>
                  </tr>
                </thead>
                <tbody>
                  {info.data.nodes.map((n) => (
                    <tr key={n.nodeId} data-node={n.nodeId}>
                      <td>
                        <code>{n.nodeId}</code>
                      </td>
                      <td>{n.host}</td>
                      <td>{n.version}</td>
                      <td>{formatTime(n.beatAt)}</td>
                      <td>{n.sessions}</td>
                      <td>{n.draining ? t('health.yes') : t('health.no')}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </>
        )}
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
