/**
 * Devices of a product: paged list by the API's keyset cursor in DeviceName order (as cheap on
 * the last page of 500,000 devices as on the first; previous pages are the cursors already
 * walked, kept here), the total from the product's count when no filter is set, filter by
 * status, search by DeviceName substring, create one or a batch (the secrets are shown once),
 * and live status: a device.status event updates its row in place, no polling.
 */
import { useEffect, useState } from 'preact/hooks';
import { call, type Device, type DeviceStatus, type Product } from '../api';
import { t } from '../i18n';
import { onLive, withLiveStatus } from '../live';
import { deviceHref, navigate, withQuery } from '../router';
import { session } from '../session';
import { Field, FormError, Link, Loading, Page, Select, StatusBadge, useFormErrors, useLoad } from '../ui';
import { formatTime } from '../i18n';

const PAGE = 100;
type StatusFilter = '' | DeviceStatus;

export function useProducts() {
  return useLoad((signal) => call('get', '/api/v1/products', { query: { limit: 1000 }, signal }), []);
}

export function ProductPicker(p: { value: string; onChange: (pk: string) => void; products: Product[] | undefined; label?: string; name?: string }) {
  return (
    <Select
      label={p.label ?? t('device.product')}
      name={p.name ?? 'productKey'}
      value={p.value}
      options={[{ value: '', label: t('device.chooseProduct') }, ...(p.products ?? []).map((x) => ({ value: x.productKey, label: `${x.productName} (${x.productKey})` }))]}
      onChange={p.onChange}
    />
  );
}

interface Created {
  deviceName: string;
  /** Absent for an X.509 product's devices: they log in with the certificate issued with them. */
  deviceSecret?: string;
  certificateSerial?: string;
}

function CreateDevices({ productKey, onCreated }: { productKey: string; onCreated: (list: Created[]) => void }) {
  const [mode, setMode] = useState<'one' | 'count' | 'names'>('one');
  const [name, setName] = useState('');
  const [nickname, setNickname] = useState('');
  const [count, setCount] = useState('10');
  const [names, setNames] = useState('');
  const [busy, setBusy] = useState(false);
  const f = useFormErrors(['deviceName', 'nickname', 'count', 'deviceNames']);
  const namesId = 'batch-names';
  return (
    <form
      class="card"
      aria-labelledby="create-device-h"
      onSubmit={async (e) => {
        e.preventDefault();
        f.clear();
        setBusy(true);
        try {
          const nick = nickname.trim() ? { nickname: nickname.trim() } : {};
          if (mode === 'one') {
            const d = await call('post', '/api/v1/products/{productKey}/devices', { path: { productKey }, body: { ...(name.trim() ? { deviceName: name.trim() } : {}), ...nick } });
            onCreated([{ deviceName: d.deviceName, deviceSecret: d.deviceSecret, certificateSerial: d.certificateSerial }]);
          } else {
            const body = mode === 'count' ? { count: Number(count), ...nick } : { deviceNames: names.split(/[\s,]+/).filter(Boolean), ...nick };
            const r = await call('post', '/api/v1/products/{productKey}/devices/batch', { path: { productKey }, body });
            onCreated((r.devices ?? []).map((d) => ({ deviceName: d.deviceName, deviceSecret: d.deviceSecret, certificateSerial: d.certificateSerial })));
          }
          setName('');
          setNames('');
        } catch (ex) {
          f.take(ex);
        } finally {
          setBusy(false);
        }
      }}
    >
      <h2 id="create-device-h">{t('device.create')}</h2>
      <FormError message={f.errors._form} />
      <div class="row">
        <Select
          label={t('device.createMode')}
          name="mode"
          value={mode}
          options={[
            { value: 'one', label: t('device.createOne') },
            { value: 'count', label: t('device.createCount') },
            { value: 'names', label: t('device.createNames') },
          ]}
          onChange={setMode}
        />
        {mode === 'one' && <Field label={t('device.name')} name="deviceName" value={name} onInput={setName} error={f.errors.deviceName} hint={t('device.nameHint')} />}
        {mode === 'count' && <Field label={t('device.count')} name="count" type="number" min={1} max={10000} value={count} onInput={setCount} error={f.errors.count} />}
        <Field label={t('device.nickname')} name="nickname" value={nickname} onInput={setNickname} error={f.errors.nickname} hint={t('device.nicknameHint')} />
      </div>
      {mode === 'names' && (
        <div class="field">
          <label for={namesId}>{t('device.names')}</label>
          <textarea id={namesId} name="deviceNames" rows={4} value={names} onInput={(e) => setNames((e.currentTarget as HTMLTextAreaElement).value)} aria-invalid={f.errors.deviceNames ? 'true' : undefined} />
          {f.errors.deviceNames && (
            <span class="field-error" role="alert">
              {f.errors.deviceNames}
            </span>
          )}
        </div>
      )}
      <button type="submit" class="primary" disabled={busy}>
        {t('device.createButton')}
      </button>
    </form>
  );
}

function CreatedSecrets({ list, productKey, onClose }: { list: Created[]; productKey: string; onClose: () => void }) {
  return (
    <div class="card notice-card" role="region" aria-labelledby="created-h">
      <h2 id="created-h">{t('device.createdTitle', { n: list.length })}</h2>
      <p>{t('device.createdNote')}</p>
      <table>
        <thead>
          <tr>
            <th scope="col">{t('device.name')}</th>
            <th scope="col">{t('device.secret')}</th>
          </tr>
        </thead>
        <tbody>
          {list.slice(0, 200).map((d) => (
            <tr key={d.deviceName}>
              <td>
                <Link href={deviceHref(productKey, d.deviceName)}>{d.deviceName}</Link>
              </td>
              <td>
                {d.deviceSecret !== undefined ? <code class="secret-value">{d.deviceSecret}</code> : <code>X.509 {d.certificateSerial ?? ''}</code>}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {list.length > 200 && <p class="muted">{t('device.createdMore', { n: list.length - 200 })}</p>}
      <button type="button" onClick={onClose}>
        {t('common.close')}
      </button>
    </div>
  );
}

export function Devices({ productKey }: { productKey?: string }) {
  const products = useProducts();
  const pk = productKey ?? '';
  const initialStatus = (new URLSearchParams(window.location.search).get('status') ?? '') as StatusFilter;
  const [status, setStatus] = useState<StatusFilter>(initialStatus);
  const [search, setSearch] = useState('');
  const [applied, setApplied] = useState('');
  // cursors[i] starts page i ('' = the first page); the last one is the page shown.
  // Kept per product: another product (a link, the back button) starts at its first page.
  const [walk, setWalk] = useState<{ pk: string; cursors: string[] }>({ pk, cursors: [''] });
  const cursors = walk.pk === pk ? walk.cursors : [''];
  const setCursors = (list: string[]) => setWalk({ pk, cursors: list });
  const cursor = cursors[cursors.length - 1]!;
  const resetPages = () => setCursors(['']);
  const [created, setCreated] = useState<Created[]>();
  const list = useLoad(
    async (signal) => {
      if (!pk) return undefined;
      const page = await call('get', '/api/v1/products/{productKey}/devices', { path: { productKey: pk }, query: { status: status || undefined, name: applied || undefined, cursor, limit: PAGE }, signal });
      return { ...page, items: page.items.map(withLiveStatus) };
    },
    [pk, status, applied, cursor],
  );
  useEffect(() => onLive('resync', () => list.reload()), []);
  // Live: a status event for a device on this page updates its row.
  useEffect(
    () =>
      onLive('device.status', (ev) => {
        const d = list.data;
        if (!d || ev.productKey !== pk || !d.items.some((x) => x.deviceName === ev.deviceName)) return;
        list.setData({ ...d, items: d.items.map((x): Device => (x.deviceName === ev.deviceName ? { ...x, status: ev.status, ...(ev.status === 'ONLINE' ? { lastOnlineAt: ev.at } : {}) } : x)) });
      }),
    [list.data, pk],
  );
  const admin = session.isAdmin();
  const statusOptions: { value: StatusFilter; label: string }[] = [
    { value: '', label: t('device.anyStatus') },
    { value: 'ONLINE', label: t('status.ONLINE') },
    { value: 'OFFLINE', label: t('status.OFFLINE') },
    { value: 'UNACTIVE', label: t('status.UNACTIVE') },
    { value: 'DISABLE', label: t('status.DISABLE') },
  ];
  return (
    <Page title={t('nav.devices')}>
      {products.error && <p class="error" role="alert">{products.error}</p>}
      <form
        class="filters"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          resetPages();
          setApplied(search.trim());
        }}
      >
        <ProductPicker value={pk} products={products.data?.items} onChange={(v) => (resetPages(), navigate(withQuery('/devices', { product: v }), true))} />
        <Select label={t('device.status')} name="status" value={status} options={statusOptions} onChange={(v) => (resetPages(), setStatus(v))} />
        <Field label={t('device.search')} name="name" value={search} onInput={setSearch} />
        <button type="submit">{t('common.search')}</button>
      </form>
      {!pk && <p class="muted">{t('device.pickProduct')}</p>}
      {pk && admin && <CreateDevices productKey={pk} onCreated={(l) => (setCreated(l), list.reload())} />}
      {created && <CreatedSecrets list={created} productKey={pk} onClose={() => setCreated(undefined)} />}
      {list.error && <p class="error" role="alert">{list.error}</p>}
      {pk && !list.data && !list.error && <Loading />}
      {list.data && (
        <>
          <table class="devices">
            <caption class="sr-only">{t('nav.devices')}</caption>
            <thead>
              <tr>
                <th scope="col">{t('device.name')}</th>
                <th scope="col">{t('device.nickname')}</th>
                <th scope="col">{t('device.status')}</th>
                <th scope="col">{t('device.lastOnline')}</th>
                <th scope="col">{t('device.lastRefusal')}</th>
              </tr>
            </thead>
            <tbody>
              {list.data.items.map((d) => (
                <tr key={d.deviceName} data-device={d.deviceName}>
                  <td>
                    <Link href={deviceHref(d.productKey, d.deviceName)}>{d.deviceName}</Link>
                  </td>
                  <td>{d.nickname ?? ''}</td>
                  <td>
                    <StatusBadge status={d.status} />
                  </td>
                  <td>{formatTime(d.lastOnlineAt)}</td>
                  <td>{d.lastAuthError ?? ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {list.data.items.length === 0 && <p class="muted">{t('device.none')}</p>}
          <CursorPager
            page={cursors.length}
            limit={PAGE}
            total={list.data.total}
            shown={list.data.items.length}
            hasNext={!!list.data.nextCursor}
            onPrev={() => setCursors(cursors.slice(0, -1))}
            onNext={() => list.data?.nextCursor && setCursors([...cursors, list.data.nextCursor])}
          />
        </>
      )}
    </Page>
  );
}

/** Previous / next over cursor pages; "page n of m" when the total is known (no filter). */
function CursorPager(p: { page: number; limit: number; total: number | undefined; shown: number; hasNext: boolean; onPrev: () => void; onNext: () => void }) {
  if (p.page === 1 && !p.hasNext) return <p class="muted small">{t('pager.count', { total: p.total ?? p.shown })}</p>;
  const label = p.total !== undefined ? t('pager.pageOf', { page: p.page, pages: Math.max(1, Math.ceil(p.total / p.limit)), total: p.total }) : t('pager.page', { page: p.page });
  return (
    <nav class="pager" aria-label={t('pager.label')}>
      <button type="button" disabled={p.page === 1} onClick={p.onPrev}>
        {t('pager.prev')}
      </button>
      <span data-field="page">{label}</span>
      <button type="button" disabled={!p.hasNext} onClick={p.onNext}>
        {t('pager.next')}
      </button>
    </nav>
  );
}
