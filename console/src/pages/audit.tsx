/** The audit trail with filters, newest first, paged with the server's opaque cursor (nextCursor). */
import { useEffect, useState } from 'preact/hooks';
import { call, type AuditEntry } from '../api';
import { formatTime, t } from '../i18n';
import { deviceHref } from '../router';
import { Field, FormError, Link, Loading, Page, useFormErrors } from '../ui';

const RESULT_KEYS = { allow: 'audit.result.allow', deny: 'audit.result.deny', ok: 'audit.result.ok', error: 'audit.result.error' } as const;

export function AuditTable({ items, compact }: { items: AuditEntry[]; compact?: boolean }) {
  if (items.length === 0) return <p class="muted">{t('audit.none')}</p>;
  return (
    <table class="audit">
      <caption class="sr-only">{t('nav.audit')}</caption>
      <thead>
        <tr>
          <th scope="col">{t('audit.at')}</th>
          <th scope="col">{t('audit.action')}</th>
          <th scope="col">{t('audit.result')}</th>
          {!compact && <th scope="col">{t('audit.device')}</th>}
          <th scope="col">{t('audit.actor')}</th>
          <th scope="col">{t('audit.source')}</th>
          <th scope="col">{t('audit.reason')}</th>
        </tr>
      </thead>
      <tbody>
        {items.map((e) => (
          <tr key={e.id} data-audit={e.id} class={`result-${e.result}`}>
            <td>{formatTime(e.at)}</td>
            <td>
              <code>{e.action}</code>
            </td>
            <td>{t(RESULT_KEYS[e.result])}</td>
            {!compact && <td>{e.productKey && e.deviceName ? <Link href={deviceHref(e.productKey, e.deviceName)}>{`${e.productKey} / ${e.deviceName}`}</Link> : (e.productKey ?? '')}</td>}
            <td>{e.actor}</td>
            <td>{e.sourceAddress ?? ''}</td>
            <td>{e.reason ?? ''}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

interface Filters {
  productKey: string;
  deviceName: string;
  action: string;
  since: string;
}

export function Audit() {
  const [form, setForm] = useState<Filters>({ productKey: '', deviceName: '', action: '', since: '' });
  const [items, setItems] = useState<AuditEntry[]>();
  const [next, setNext] = useState<string | null>(null);
  const [applied, setApplied] = useState<Filters>();
  const [busy, setBusy] = useState(false);
  const f = useFormErrors(['productKey', 'deviceName', 'action', 'since', 'cursor']);
  const load = async (filters: Filters, cursor?: string) => {
    setBusy(true);
    f.clear();
    try {
      const since = filters.since ? new Date(filters.since).toISOString() : undefined;
      const r = await call('get', '/api/v1/audit', {
        query: { productKey: filters.productKey || undefined, deviceName: filters.deviceName || undefined, action: filters.action || undefined, since, limit: 50, cursor },
      });
      setItems((prev) => (cursor && prev ? [...prev, ...r.items] : r.items));
      setNext(r.nextCursor);
      setApplied(filters);
    } catch (e) {
      f.take(e);
    } finally {
      setBusy(false);
    }
  };
  useEffect(() => {
    void load(form);
  }, []);
  const set = (k: keyof Filters) => (v: string) => setForm({ ...form, [k]: v });
  return (
    <Page title={t('nav.audit')}>
      <form
        class="filters"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          void load(form);
        }}
      >
        <Field label={t('audit.productKey')} name="productKey" value={form.productKey} onInput={set('productKey')} error={f.errors.productKey} />
        <Field label={t('audit.deviceName')} name="deviceName" value={form.deviceName} onInput={set('deviceName')} error={f.errors.deviceName} />
        <Field label={t('audit.action')} name="action" value={form.action} onInput={set('action')} error={f.errors.action} hint={t('audit.actionHint')} />
        <Field label={t('audit.since')} name="since" type="datetime-local" value={form.since} onInput={set('since')} error={f.errors.since} />
        <button type="submit" class="primary" disabled={busy}>
          {t('common.search')}
        </button>
      </form>
      <FormError message={f.errors._form ?? f.errors.cursor} />
      {!items && <Loading />}
      {items && <AuditTable items={items} />}
      {next && applied && (
        <button type="button" disabled={busy} onClick={() => void load(applied, next)} data-action="more">
          {t('audit.more')}
        </button>
      )}
    </Page>
  );
}
