/**
 * Credentials: export a product's device credentials (CSV for the production line, JSON lines
 * for a move) and import products or devices (CSV / JSON lines): a dry run first, with the
 * conflicts and invalid rows, then apply in parts with progress, cancellable between parts.
 * Re-running an import is safe: identical rows are skipped.
 */
import { useRef, useState } from 'preact/hooks';
import { buildUrl, callText, type ImportSummary } from '../api';
import { t } from '../i18n';
import { splitImport } from '../import-chunks';
import { session } from '../session';
import { Check, FormError, Page, Select, errorText, fieldOf, useId } from '../ui';
import { ProductPicker, useProducts } from './devices';

const ROWS_PER_PART = 500;

type Kind = 'devices' | 'products';
type Format = 'csv' | 'jsonl';

interface Total {
  rows: number;
  created: number;
  identical: number;
  overwritten: number;
  conflictCount: number;
  conflicts: ImportSummary['conflicts'];
  invalidCount: number;
  invalid: ImportSummary['invalid'];
  aborted?: ImportSummary['aborted'];
  dryRun: boolean;
}

function emptyTotal(dryRun: boolean): Total {
  return { rows: 0, created: 0, identical: 0, overwritten: 0, conflictCount: 0, conflicts: [], invalidCount: 0, invalid: [], dryRun };
}

async function download(url: string, filename: string): Promise<void> {
  const res = await callText('GET', url);
  const blob = await res.blob();
  const href = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = href;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 1000);
}

function Export() {
  const products = useProducts();
  const [pk, setPk] = useState('');
  const [err, setErr] = useState<string>();
  const [done, setDone] = useState<string>();
  const run = (kind: 'csv' | 'jsonl') => async () => {
    setErr(undefined);
    setDone(undefined);
    try {
      if (kind === 'csv') await download(buildUrl('/api/v1/products/{productKey}/device-credentials', { productKey: pk }, { format: 'csv' }), `${pk}-devices.csv`);
      else await download(buildUrl('/api/v1/export/products/{productKey}/devices', { productKey: pk }), `${pk}-devices.jsonl`);
      setDone(t('credentials.exported'));
    } catch (e) {
      setErr(errorText(e));
    }
  };
  return (
    <section class="card" aria-labelledby="export-h">
      <h2 id="export-h">{t('credentials.export')}</h2>
      <p class="muted">{t('credentials.exportNote')}</p>
      <div class="row">
        <ProductPicker value={pk} products={products.data?.items} onChange={setPk} />
      </div>
      <button type="button" disabled={!pk} onClick={run('csv')} data-action="export-csv">
        {t('credentials.exportCsv')}
      </button>{' '}
      <button type="button" disabled={!pk} onClick={run('jsonl')}>
        {t('credentials.exportJsonl')}
      </button>
      <FormError message={err} />
      {done && (
        <span role="status" class="ok">
          {done}
        </span>
      )}
    </section>
  );
}

function Import() {
  const [kind, setKind] = useState<Kind>('devices');
  const [format, setFormat] = useState<Format>('csv');
  // A chosen file is kept apart from the paste box: a file of 100 MB in a textarea would stall the tab.
  const [pasted, setPasted] = useState('');
  const [file, setFile] = useState<{ name: string; text: string }>();
  const text = file ? file.text : pasted;
  const [overwrite, setOverwrite] = useState(false);
  const [total, setTotal] = useState<Total>();
  const [progress, setProgress] = useState<{ done: number; rows: number; of: number }>();
  const [running, setRunning] = useState(false);
  const [err, setErr] = useState<{ field?: string; message: string }>();
  const [note, setNote] = useState<string>();
  const abort = useRef<AbortController>();
  const fileId = useId('import-file');
  const textId = useId('import-text');

  const run = async (dryRun: boolean) => {
    setErr(undefined);
    setNote(undefined);
    const parts = splitImport(text, format, ROWS_PER_PART);
    if (parts.length === 0) {
      setErr({ field: 'body', message: t('credentials.empty') });
      return;
    }
    const ac = new AbortController();
    abort.current = ac;
    setRunning(true);
    const sum = emptyTotal(dryRun);
    const rowsAll = parts.reduce((a, p) => a + p.rows, 0);
    setProgress({ done: 0, rows: 0, of: rowsAll });
    setTotal(undefined);
    let rowsDone = 0;
    try {
      for (let i = 0; i < parts.length; i++) {
        const part = parts[i]!;
        const url = buildUrl(`/api/v1/import/${kind}`, {}, { dryRun: dryRun ? 'true' : undefined, overwrite: overwrite ? 'true' : undefined, format });
        const res = await callText('POST', url, part.text, format === 'csv' ? 'text/csv' : 'application/x-ndjson', ac.signal);
        const s = (await res.json()) as ImportSummary;
        sum.rows += s.rows;
        sum.created += s.created;
        sum.identical += s.identical;
        sum.overwritten += s.overwritten;
        sum.conflictCount += s.conflictCount;
        sum.invalidCount += s.invalidCount;
        sum.conflicts.push(...s.conflicts.map((c) => ({ ...c, line: part.fileLine(c.line) })));
        sum.invalid.push(...s.invalid.map((c) => ({ ...c, line: part.fileLine(c.line) })));
        rowsDone += part.rows;
        setProgress({ done: i + 1, rows: rowsDone, of: rowsAll });
        setTotal({ ...sum });
        if (s.aborted) {
          sum.aborted = { ...s.aborted, line: part.fileLine(s.aborted.line) };
          setTotal({ ...sum });
          break;
        }
      }
      setNote(dryRun ? t('credentials.dryRunDone') : t('credentials.applied'));
    } catch (e) {
      if (ac.signal.aborted) setNote(t('credentials.cancelled', { rows: rowsDone }));
      else setErr({ field: fieldOf(e), message: errorText(e) });
    } finally {
      setRunning(false);
      abort.current = undefined;
    }
  };

  return (
    <section class="card" aria-labelledby="import-h">
      <h2 id="import-h">{t('credentials.import')}</h2>
      <p class="muted">{t('credentials.importNote')}</p>
      <div class="row">
        <Select
          label={t('credentials.kind')}
          name="kind"
          value={kind}
          options={[
            { value: 'devices', label: t('credentials.kindDevices') },
            { value: 'products', label: t('credentials.kindProducts') },
          ]}
          onChange={setKind}
        />
        <Select
          label={t('credentials.format')}
          name="format"
          value={format}
          options={[
            { value: 'csv', label: 'CSV' },
            { value: 'jsonl', label: t('credentials.jsonLines') },
          ]}
          onChange={setFormat}
        />
        <div class="field">
          <label for={fileId}>{t('credentials.file')}</label>
          <input
            id={fileId}
            type="file"
            name="file"
            accept=".csv,.jsonl,.ndjson,.txt,text/csv,application/x-ndjson"
            onChange={async (e) => {
              const chosen = (e.currentTarget as HTMLInputElement).files?.[0];
              if (!chosen) return setFile(undefined);
              if (/\.(jsonl|ndjson)$/i.test(chosen.name)) setFormat('jsonl');
              else if (/\.csv$/i.test(chosen.name)) setFormat('csv');
              setFile({ name: chosen.name, text: await chosen.text() });
              setTotal(undefined);
            }}
          />
        </div>
      </div>
      <div class="field">
        <label for={textId}>{t('credentials.paste')}</label>
        <textarea
          id={textId}
          name="body"
          rows={6}
          value={pasted}
          disabled={file !== undefined}
          spellcheck={false}
          aria-invalid={err?.field === 'body' ? 'true' : undefined}
          onInput={(e) => (setPasted((e.currentTarget as HTMLTextAreaElement).value), setTotal(undefined))}
        />
        {file && (
          <small class="hint" data-testid="loaded-file">
            {t('credentials.loadedFile', { name: file.name, size: Math.ceil(file.text.length / 1024) })}{' '}
            <button
              type="button"
              onClick={() => {
                setFile(undefined);
                setTotal(undefined);
                const input = document.getElementById(fileId) as HTMLInputElement | null;
                if (input) input.value = '';
              }}
            >
              {t('credentials.clearFile')}
            </button>
          </small>
        )}
        {err?.field === 'body' && (
          <span class="field-error" role="alert">
            {err.message}
          </span>
        )}
      </div>
      <Check label={t('credentials.overwrite')} name="overwrite" checked={overwrite} onChange={setOverwrite} />
      {err && err.field !== 'body' && <FormError message={err.message} />}
      <div class="button-row">
        <button type="button" disabled={running || !text.trim()} onClick={() => void run(true)} data-action="dry-run">
          {t('credentials.dryRun')}
        </button>
        <button type="button" class="primary" disabled={running || !total?.dryRun || total.invalidCount > 0 || (total.conflictCount > 0 && !overwrite)} onClick={() => void run(false)} data-action="apply">
          {t('credentials.apply')}
        </button>
        {running && (
          <button type="button" class="danger" onClick={() => abort.current?.abort()} data-action="cancel">
            {t('common.cancel')}
          </button>
        )}
      </div>
      {progress && (
        <div class="progress">
          <label>
            {t('credentials.progress', { rows: progress.rows, of: progress.of })}
            <progress max={progress.of || 1} value={progress.rows} />
          </label>
        </div>
      )}
      {note && (
        <p role="status" class="ok" data-testid="import-note">
          {note}
        </p>
      )}
      {total && <ImportResult total={total} />}
    </section>
  );
}

function ImportResult({ total }: { total: Total }) {
  return (
    <div class="import-result" data-testid="import-result" data-dry-run={String(total.dryRun)}>
      <h3>{total.dryRun ? t('credentials.dryRunResult') : t('credentials.applyResult')}</h3>
      <dl class="facts">
        <dt>{t('credentials.rows')}</dt>
        <dd data-count="rows">{total.rows}</dd>
        <dt>{total.dryRun ? t('credentials.wouldCreate') : t('credentials.created')}</dt>
        <dd data-count="created">{total.created}</dd>
        <dt>{t('credentials.identical')}</dt>
        <dd data-count="identical">{total.identical}</dd>
        <dt>{t('credentials.overwritten')}</dt>
        <dd data-count="overwritten">{total.overwritten}</dd>
        <dt>{t('credentials.conflicts')}</dt>
        <dd data-count="conflicts">{total.conflictCount}</dd>
        <dt>{t('credentials.invalid')}</dt>
        <dd data-count="invalid">{total.invalidCount}</dd>
      </dl>
      {total.aborted && (
        <p class="error" role="alert">
          {t('credentials.aborted', { line: total.aborted.line, message: total.aborted.message })}
        </p>
      )}
      {total.conflicts.length > 0 && (
        <table class="conflicts">
          <caption>{t('credentials.conflicts')}</caption>
          <thead>
            <tr>
              <th scope="col">{t('credentials.line')}</th>
              <th scope="col">{t('product.key')}</th>
              <th scope="col">{t('device.name')}</th>
              <th scope="col">{t('credentials.problem')}</th>
            </tr>
          </thead>
          <tbody>
            {total.conflicts.slice(0, 1000).map((c) => (
              <tr key={`${c.line}`}>
                <td>{c.line}</td>
                <td>
                  <code>{c.productKey}</code>
                </td>
                <td>{c.deviceName ?? ''}</td>
                <td>{c.message}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {total.invalid.length > 0 && (
        <table class="invalid">
          <caption>{t('credentials.invalid')}</caption>
          <thead>
            <tr>
              <th scope="col">{t('credentials.line')}</th>
              <th scope="col">{t('credentials.problem')}</th>
            </tr>
          </thead>
          <tbody>
            {total.invalid.slice(0, 1000).map((c) => (
              <tr key={`${c.line}`}>
                <td>{c.line}</td>
                <td>{c.message}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

export function Credentials() {
  if (!session.isAdmin()) {
    return (
      <Page title={t('nav.credentials')}>
        <p class="notice">{t('credentials.adminOnly')}</p>
      </Page>
    );
  }
  return (
    <Page title={t('nav.credentials')}>
      <Export />
      <Import />
    </Page>
  );
}
