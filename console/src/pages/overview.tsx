/**
 * Overview: products with their devices by status, and the live figures (connects and refusals
 * per minute, online) from the `stats` events. A device.status event recounts its product;
 * nothing polls.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { call, type Product } from '../api';
import { t } from '../i18n';
import { lastStats, onLive } from '../live';
import { productHref, withQuery } from '../router';
import { useObservable } from '../store';
import { Link, Loading, Page, errorText } from '../ui';

const SHOWN = 20;
type Counts = Record<'ONLINE' | 'OFFLINE' | 'UNACTIVE' | 'DISABLE', number>;

async function countsOf(productKey: string, signal?: AbortSignal): Promise<Counts> {
  const statuses = ['ONLINE', 'OFFLINE', 'UNACTIVE', 'DISABLE'] as const;
  const totals = await Promise.all(
    statuses.map((status) => call('get', '/api/v1/products/{productKey}/devices', { path: { productKey }, query: { status, limit: 1 }, signal }).then((r) => r.total)),
  );
  return { ONLINE: totals[0]!, OFFLINE: totals[1]!, UNACTIVE: totals[2]!, DISABLE: totals[3]! };
}

export function Overview() {
  const stats = useObservable(lastStats);
  const [products, setProducts] = useState<{ items: Product[]; total: number }>();
  const [counts, setCounts] = useState<Record<string, Counts>>({});
  const [error, setError] = useState<string>();
  const pending = useRef(new Set<string>());
  const timer = useRef<number>();
  const shown = useRef<string[]>([]);

  useEffect(() => {
    const ac = new AbortController();
    (async () => {
      const page = await call('get', '/api/v1/products', { query: { limit: SHOWN }, signal: ac.signal });
      setProducts(page);
      shown.current = page.items.map((p) => p.productKey);
      const all = await Promise.all(page.items.map(async (p) => [p.productKey, await countsOf(p.productKey, ac.signal)] as const));
      setCounts(Object.fromEntries(all));
    })().catch((e) => !ac.signal.aborted && setError(errorText(e)));
    // Recount a product when one of its devices changes status (batched per 300 ms).
    const off = onLive('device.status', (ev) => {
      pending.current.add(ev.productKey);
      window.clearTimeout(timer.current);
      timer.current = window.setTimeout(() => {
        const keys = [...pending.current];
        pending.current.clear();
        for (const pk of keys) countsOf(pk).then((c) => setCounts((prev) => (pk in prev ? { ...prev, [pk]: c } : prev)), () => undefined);
      }, 300);
    });
    // Events were missed (slow reader, stream down): recount every product shown.
    const offResync = onLive('resync', () => {
      for (const pk of shown.current) countsOf(pk).then((c) => setCounts((prev) => ({ ...prev, [pk]: c })), () => undefined);
    });
    return () => {
      ac.abort();
      off();
      offResync();
      window.clearTimeout(timer.current);
    };
  }, []);

  const allCounted = products !== undefined && products.total <= SHOWN && products.items.every((p) => counts[p.productKey] !== undefined);
  const sum = (k: keyof Counts) => Object.values(counts).reduce((a, c) => a + c[k], 0);
  return (
    <Page title={t('overview.title')}>
      <div class="tiles" aria-live="polite">
        <div class="tile">
          <span class="tile-label">{t('overview.products')}</span>
          <span class="tile-value" data-tile="products">{products ? products.total : '—'}</span>
        </div>
        <div class="tile">
          <span class="tile-label">{t('overview.online')}</span>
          {/* Every product counted (recounted on each status event): exact. Otherwise the stream's figure (every 5 s). */}
          <span class="tile-value" data-tile="online">{allCounted ? sum('ONLINE') : stats ? stats.online : '—'}</span>
        </div>
        <div class="tile">
          <span class="tile-label">{t('overview.connectsPerMinute')}</span>
          <span class="tile-value" data-tile="connects">{stats ? stats.connectsPerMinute : '—'}</span>
        </div>
        <div class="tile">
          <span class="tile-label">{t('overview.refusalsPerMinute')}</span>
          <span class="tile-value" data-tile="refusals">{stats ? stats.refusalsPerMinute : '—'}</span>
        </div>
      </div>
      {error && <p class="error" role="alert">{error}</p>}
      {!products && !error && <Loading />}
      {products && (
        <>
          <h2>{t('overview.byProduct')}</h2>
          {products.total > SHOWN && <p class="muted">{t('overview.firstN', { n: SHOWN, total: products.total })}</p>}
          {products.items.length === 0 ? (
            <p>
              {t('overview.noProducts')} <Link href="/products">{t('overview.createOne')}</Link>
            </p>
          ) : (
            <table>
              <caption class="sr-only">{t('overview.byProduct')}</caption>
              <thead>
                <tr>
                  <th scope="col">{t('product.name')}</th>
                  <th scope="col">{t('product.key')}</th>
                  <th scope="col">{t('status.ONLINE')}</th>
                  <th scope="col">{t('status.OFFLINE')}</th>
                  <th scope="col">{t('status.UNACTIVE')}</th>
                  <th scope="col">{t('status.DISABLE')}</th>
                </tr>
              </thead>
              <tbody>
                {products.items.map((p) => {
                  const c = counts[p.productKey];
                  const cell = (k: keyof Counts) => (
                    <td data-count={k}>
                      {c ? <Link href={withQuery('/devices', { product: p.productKey, status: k })}>{String(c[k])}</Link> : '…'}
                    </td>
                  );
                  return (
                    <tr key={p.productKey} data-product={p.productKey}>
                      <td>
                        <Link href={productHref(p.productKey)}>{p.productName}</Link>
                      </td>
                      <td>
                        <code>{p.productKey}</code>
                      </td>
                      {cell('ONLINE')}
                      {cell('OFFLINE')}
                      {cell('UNACTIVE')}
                      {cell('DISABLE')}
                    </tr>
                  );
                })}
              </tbody>
            </table>
          )}
        </>
      )}
    </Page>
  );
}
