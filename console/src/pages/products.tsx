/** Products: list, create, edit the switches and limits, reveal the ProductSecret behind a confirmation, delete. */
import { useState } from 'preact/hooks';
import { call, type Product, type ProductPatch } from '../api';
import { t } from '../i18n';
import { navigate, productHref, withQuery } from '../router';
import { session } from '../session';
import { Check, ConfirmButton, Field, FormError, Link, Loading, Page, SecretReveal, Select, useFormErrors, useLoad, yesNo } from '../ui';

const PAGE = 50;
type NodeType = Product['nodeType'];

function nodeTypeOptions() {
  return [
    { value: 'DEVICE' as NodeType, label: t('product.nodeType.DEVICE') },
    { value: 'GATEWAY' as NodeType, label: t('product.nodeType.GATEWAY') },
    { value: 'SUB_DEVICE' as NodeType, label: t('product.nodeType.SUB_DEVICE') },
  ];
}

function nodeTypeLabel(n: NodeType): string {
  return nodeTypeOptions().find((o) => o.value === n)?.label ?? n;
}

function CreateProduct({ onCreated }: { onCreated: (p: Product) => void }) {
  const [name, setName] = useState('');
  const [nodeType, setNodeType] = useState<NodeType>('DEVICE');
  const [dyn, setDyn] = useState(false);
  const [free, setFree] = useState(false);
  const [tls, setTls] = useState(false);
  const [busy, setBusy] = useState(false);
  const f = useFormErrors(['productName', 'nodeType', 'dynamicRegistration', 'preRegistrationFree', 'requireTls']);
  return (
    <form
      class="card"
      aria-labelledby="create-product-h"
      onSubmit={async (e) => {
        e.preventDefault();
        setBusy(true);
        f.clear();
        try {
          const p = await call('post', '/api/v1/products', { body: { productName: name, nodeType, dynamicRegistration: dyn, preRegistrationFree: free, requireTls: tls } });
          setName('');
          onCreated(p);
        } catch (ex) {
          f.take(ex);
        } finally {
          setBusy(false);
        }
      }}
    >
      <h2 id="create-product-h">{t('product.create')}</h2>
      <FormError message={f.errors._form} />
      <div class="row">
        <Field label={t('product.name')} name="productName" value={name} onInput={setName} required error={f.errors.productName} hint={t('product.nameHint')} />
        <Select label={t('product.nodeType')} name="nodeType" value={nodeType} options={nodeTypeOptions()} onChange={setNodeType} error={f.errors.nodeType} />
      </div>
      <div class="row">
        <Check label={t('product.dynamicRegistration')} name="dynamicRegistration" checked={dyn} onChange={setDyn} error={f.errors.dynamicRegistration} />
        <Check label={t('product.preRegistrationFree')} name="preRegistrationFree" checked={free} onChange={setFree} error={f.errors.preRegistrationFree} />
        <Check label={t('product.requireTls')} name="requireTls" checked={tls} onChange={setTls} error={f.errors.requireTls} />
      </div>
      <button type="submit" class="primary" disabled={busy}>
        {t('product.createButton')}
      </button>
    </form>
  );
}

export function Products() {
  const [offset, setOffset] = useState(0);
  const list = useLoad((signal) => call('get', '/api/v1/products', { query: { offset, limit: PAGE }, signal }), [offset]);
  const admin = session.isAdmin();
  return (
    <Page title={t('nav.products')}>
      {admin && <CreateProduct onCreated={(p) => navigate(productHref(p.productKey))} />}
      {list.error && <p class="error" role="alert">{list.error}</p>}
      {!list.data && !list.error && <Loading />}
      {list.data && (
        <>
          <table>
            <caption class="sr-only">{t('nav.products')}</caption>
            <thead>
              <tr>
                <th scope="col">{t('product.name')}</th>
                <th scope="col">{t('product.key')}</th>
                <th scope="col">{t('product.nodeType')}</th>
                <th scope="col">{t('product.dynamicRegistration')}</th>
                <th scope="col">{t('product.preRegistrationFree')}</th>
                <th scope="col">{t('product.requireTls')}</th>
                <th scope="col">{t('product.devices')}</th>
              </tr>
            </thead>
            <tbody>
              {list.data.items.map((p) => (
                <tr key={p.productKey} data-product={p.productKey}>
                  <td>
                    <Link href={productHref(p.productKey)}>{p.productName}</Link>
                  </td>
                  <td>
                    <code>{p.productKey}</code>
                  </td>
                  <td>{nodeTypeLabel(p.nodeType)}</td>
                  <td>{yesNo(p.dynamicRegistration)}</td>
                  <td>{yesNo(p.preRegistrationFree)}</td>
                  <td>{yesNo(p.requireTls)}</td>
                  <td>
                    <Link href={withQuery('/devices', { product: p.productKey })}>{t('product.viewDevices')}</Link>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {list.data.items.length === 0 && <p class="muted">{t('product.none')}</p>}
          <Pager offset={offset} limit={PAGE} total={list.data.total} onChange={setOffset} />
        </>
      )}
    </Page>
  );
}

export function Pager(p: { offset: number; limit: number; total: number; onChange: (o: number) => void }) {
  if (p.total <= p.limit && p.offset === 0) return <p class="muted small">{t('pager.count', { total: p.total })}</p>;
  return (
    <nav class="pager" aria-label={t('pager.label')}>
      <button type="button" disabled={p.offset === 0} onClick={() => p.onChange(Math.max(0, p.offset - p.limit))}>
        {t('pager.prev')}
      </button>
      <span>{t('pager.range', { from: p.total === 0 ? 0 : p.offset + 1, to: Math.min(p.offset + p.limit, p.total), total: p.total })}</span>
      <button type="button" disabled={p.offset + p.limit >= p.total} onClick={() => p.onChange(p.offset + p.limit)}>
        {t('pager.next')}
      </button>
    </nav>
  );
}

function EditProduct({ product, onSaved }: { product: Product; onSaved: (p: Product) => void }) {
  const [name, setName] = useState(product.productName);
  const [dyn, setDyn] = useState(product.dynamicRegistration);
  const [free, setFree] = useState(product.preRegistrationFree);
  const [tls, setTls] = useState(product.requireTls);
  const [replay, setReplay] = useState(product.replayProtection);
  const [limit, setLimit] = useState(product.deviceLimit === null ? '' : String(product.deviceLimit));
  const [windowS, setWindowS] = useState(product.timestampWindowSeconds === null ? '' : String(product.timestampWindowSeconds));
  const [description, setDescription] = useState(product.description);
  const [saved, setSaved] = useState(false);
  const [busy, setBusy] = useState(false);
  const f = useFormErrors(['productName', 'dynamicRegistration', 'preRegistrationFree', 'requireTls', 'replayProtection', 'deviceLimit', 'timestampWindowSeconds', 'description']);
  const admin = session.isAdmin();
  return (
    <form
      class="card"
      aria-labelledby="edit-product-h"
      onSubmit={async (e) => {
        e.preventDefault();
        f.clear();
        setSaved(false);
        const num = (s: string, field: string): number | null | undefined => {
          if (s.trim() === '') return null;
          const n = Number(s);
          if (!Number.isInteger(n)) {
            f.set({ [field]: t('form.integer') });
            return undefined;
          }
          return n;
        };
        const deviceLimit = num(limit, 'deviceLimit');
        const timestampWindowSeconds = num(windowS, 'timestampWindowSeconds');
        if (deviceLimit === undefined || timestampWindowSeconds === undefined) return;
        const body: ProductPatch = { productName: name, dynamicRegistration: dyn, preRegistrationFree: free, requireTls: tls, replayProtection: replay, deviceLimit, timestampWindowSeconds, description };
        setBusy(true);
        try {
          onSaved(await call('patch', '/api/v1/products/{productKey}', { path: { productKey: product.productKey }, body }));
          setSaved(true);
        } catch (ex) {
          f.take(ex);
        } finally {
          setBusy(false);
        }
      }}
    >
      <h2 id="edit-product-h">{t('product.settings')}</h2>
      <FormError message={f.errors._form} />
      <fieldset disabled={!admin}>
        <legend class="sr-only">{t('product.settings')}</legend>
        <div class="row">
          <Field label={t('product.name')} name="productName" value={name} onInput={setName} error={f.errors.productName} />
          <Field label={t('product.description')} name="description" value={description} onInput={setDescription} error={f.errors.description} />
        </div>
        <div class="row">
          <Check label={t('product.dynamicRegistration')} name="dynamicRegistration" checked={dyn} onChange={setDyn} error={f.errors.dynamicRegistration} />
          <Check label={t('product.preRegistrationFree')} name="preRegistrationFree" checked={free} onChange={setFree} error={f.errors.preRegistrationFree} />
          <Check label={t('product.requireTls')} name="requireTls" checked={tls} onChange={setTls} error={f.errors.requireTls} />
          <Check label={t('product.replayProtection')} name="replayProtection" checked={replay} onChange={setReplay} error={f.errors.replayProtection} />
        </div>
        <div class="row">
          <Field label={t('product.deviceLimit')} name="deviceLimit" type="number" min={1} value={limit} onInput={setLimit} error={f.errors.deviceLimit} hint={t('product.deviceLimitHint')} />
          <Field label={t('product.timestampWindow')} name="timestampWindowSeconds" type="number" min={0} value={windowS} onInput={setWindowS} error={f.errors.timestampWindowSeconds} hint={t('product.timestampWindowHint')} />
        </div>
      </fieldset>
      {admin && (
        <button type="submit" class="primary" disabled={busy}>
          {t('common.save')}
        </button>
      )}
      {saved && (
        <span role="status" class="ok">
          {t('common.saved')}
        </span>
      )}
    </form>
  );
}

export function ProductDetail({ productKey }: { productKey: string }) {
  const p = useLoad((signal) => call('get', '/api/v1/products/{productKey}', { path: { productKey }, signal }), [productKey]);
  const admin = session.isAdmin();
  return (
    <Page title={p.data ? p.data.productName : t('nav.products')}>
      <p>
        <Link href="/products">{t('common.back')}</Link>
      </p>
      {p.error && <p class="error" role="alert">{p.error}</p>}
      {!p.data && !p.error && <Loading />}
      {p.data && (
        <>
          <dl class="facts">
            <dt>{t('product.key')}</dt>
            <dd>
              <code data-field="productKey">{p.data.productKey}</code>
            </dd>
            <dt>{t('product.nodeType')}</dt>
            <dd>{nodeTypeLabel(p.data.nodeType)}</dd>
            <dt>{t('common.createdAt')}</dt>
            <dd>{new Date(p.data.createdAt).toLocaleString()}</dd>
          </dl>
          <p>
            <Link href={withQuery('/devices', { product: p.data.productKey })}>{t('product.viewDevices')}</Link>
          </p>
          {admin && (
            <SecretReveal
              name="productSecret"
              label={t('product.secret')}
              load={async () => (await call('get', '/api/v1/products/{productKey}/secret', { path: { productKey } })).productSecret}
            />
          )}
          <EditProduct key={p.data.updatedAt} product={p.data} onSaved={(np) => p.setData(np)} />
          {admin && (
            <div class="card danger-zone">
              <h2>{t('common.dangerZone')}</h2>
              <ConfirmButton
                name="delete-product"
                danger
                label={t('product.delete')}
                title={t('product.deleteTitle', { name: p.data.productName })}
                body={<p>{t('product.deleteBody')}</p>}
                action={async () => {
                  await call('delete', '/api/v1/products/{productKey}', { path: { productKey } });
                  navigate('/products');
                }}
              />
            </div>
          )}
        </>
      )}
    </Page>
  );
}
