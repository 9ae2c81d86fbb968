/**
 * Shared pieces of the console's pages: labelled fields with their API error next to them,
 * the confirmation dialog, the secret reveal, status badges, links. Text is always rendered
 * as text (Preact escapes it); nothing here sets HTML.
 */
import type { ComponentChildren, JSX } from 'preact';
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api';
import { lang, t, tMaybe, type Key } from './i18n';
import { navigate } from './router';

let idSeq = 0;
export function useId(prefix: string): string {
  const ref = useRef<string>();
  if (!ref.current) ref.current = `${prefix}-${++idSeq}`;
  return ref.current;
}

/**
 * An error message for the operator. English: the server's own message (English, and the most
 * specific). Other languages: the catalogue's text for the error code (every code of
 * src/core/errors.ts has one, with a variant naming the field for field errors); the server's
 * message only for a code the catalogue does not know.
 */
export function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    if (lang.get() === 'en') return e.message;
    const params = { field: e.field ?? '' };
    const byCode = tMaybe(`error.${e.code}`, e.message, params);
    return e.field ? tMaybe(`error.${e.code}.field`, byCode, params) : byCode;
  }
  if (e instanceof Error) return e.message;
  return String(e);
}

/** Which form field an API error names (the server's `field`, first segment), if any. */
export function fieldOf(e: unknown): string | undefined {
  if (!(e instanceof ApiError) || !e.field) return undefined;
  return e.field.split(/[.[]/)[0];
}

/**
 * Form state for API errors: an error naming one of `fields` is shown next to that field,
 * any other above the form.
 */
export function useFormErrors(fields: readonly string[]) {
  const [errors, setErrors] = useState<Record<string, string>>({});
  return {
    errors,
    clear: () => setErrors({}),
    take(e: unknown) {
      const f = fieldOf(e);
      if (f && fields.includes(f)) setErrors({ [f]: errorText(e) });
      else setErrors({ _form: errorText(e) });
    },
    set: setErrors,
  };
}

export function FormError({ message }: { message?: string }) {
  if (!message) return null;
  return (
    <p class="error" role="alert">
      {message}
    </p>
  );
}

interface FieldProps {
  label: string;
  name: string;
  value: string;
  onInput: (v: string) => void;
  error?: string;
  type?: string;
  required?: boolean;
  placeholder?: string;
  hint?: string;
  autoComplete?: string;
  min?: number;
  max?: number;
}

export function Field(p: FieldProps) {
  const id = useId(`f-${p.name}`);
  const errId = `${id}-err`;
  const hintId = `${id}-hint`;
  const describedBy = [p.error ? errId : '', p.hint ? hintId : ''].filter(Boolean).join(' ') || undefined;
  return (
    <div class="field">
      <label for={id}>{p.label}</label>
      <input
        id={id}
        name={p.name}
        type={p.type ?? 'text'}
        value={p.value}
        required={p.required}
        placeholder={p.placeholder}
        autoComplete={p.autoComplete ?? 'off'}
        min={p.min}
        max={p.max}
        aria-invalid={p.error ? 'true' : undefined}
        aria-describedby={describedBy}
        onInput={(e) => p.onInput((e.currentTarget as HTMLInputElement).value)}
      />
      {p.hint && (
        <small id={hintId} class="hint">
          {p.hint}
        </small>
      )}
      {p.error && (
        <span id={errId} class="field-error" role="alert">
          {p.error}
        </span>
      )}
    </div>
  );
}

export function Check(p: { label: string; name: string; checked: boolean; onChange: (v: boolean) => void; disabled?: boolean; error?: string }) {
  const id = useId(`c-${p.name}`);
  return (
    <div class="check">
      <input id={id} name={p.name} type="checkbox" checked={p.checked} disabled={p.disabled} onChange={(e) => p.onChange((e.currentTarget as HTMLInputElement).checked)} />
      <label for={id}>{p.label}</label>
      {p.error && (
        <span class="field-error" role="alert">
          {p.error}
        </span>
      )}
    </div>
  );
}

export function Select<V extends string>(p: { label: string; name: string; value: V; options: { value: V; label: string }[]; onChange: (v: V) => void; error?: string }) {
  const id = useId(`s-${p.name}`);
  return (
    <div class="field">
      <label for={id}>{p.label}</label>
      <select id={id} name={p.name} value={p.value} onChange={(e) => p.onChange((e.currentTarget as HTMLSelectElement).value as V)}>
        {p.options.map((o) => (
          <option key={o.value} value={o.value}>
            {o.label}
          </option>
        ))}
      </select>
      {p.error && (
        <span class="field-error" role="alert">
          {p.error}
        </span>
      )}
    </div>
  );
}

export function Link(p: { href: string; children: ComponentChildren; class?: string; 'aria-current'?: 'page' }) {
  return (
    <a
      href={p.href}
      class={p.class}
      aria-current={p['aria-current']}
      onClick={(e: JSX.TargetedMouseEvent<HTMLAnchorElement>) => {
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(p.href);
      }}
    >
      {p.children}
    </a>
  );
}

export function Page(p: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  useEffect(() => {
    document.title = `${p.title} · thingauth`;
  }, [p.title]);
  return (
    <section class="page">
      <div class="page-head">
        <h1 tabIndex={-1} id="page-title">
          {p.title}
        </h1>
        {p.actions && <div class="page-actions">{p.actions}</div>}
      </div>
      {p.children}
    </section>
  );
}

const STATUS_KEYS: Record<string, Key> = { UNACTIVE: 'status.UNACTIVE', ONLINE: 'status.ONLINE', OFFLINE: 'status.OFFLINE', DISABLE: 'status.DISABLE' };

export function StatusBadge({ status }: { status: string }) {
  const key = STATUS_KEYS[status];
  return (
    <span class={`badge status-${status.toLowerCase()}`} data-status={status}>
      {key ? t(key) : status}
    </span>
  );
}

/**
 * A modal confirmation: focus moves into it, Escape cancels, focus returns where it was.
 * `danger` styles the confirm button red.
 */
export function Confirm(p: { title: string; body: ComponentChildren; confirmLabel: string; onConfirm: () => void; onCancel: () => void; danger?: boolean }) {
  const ref = useRef<HTMLDivElement>(null);
  const titleId = useId('dlg');
  // Layout effect: focus is inside the dialog before the next key press can reach the page.
  useLayoutEffect(() => {
    const before = document.activeElement as HTMLElement | null;
    ref.current?.querySelector<HTMLButtonElement>('button.cancel')?.focus();
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') p.onCancel();
      if (e.key === 'Tab' && ref.current) {
        const items = [...ref.current.querySelectorAll<HTMLElement>('button, input, select, textarea, a[href]')];
        const first = items[0];
        const last = items[items.length - 1];
        if (e.shiftKey && document.activeElement === first) {
          e.preventDefault();
          last?.focus();
        } else if (!e.shiftKey && document.activeElement === last) {
          e.preventDefault();
          first?.focus();
        }
      }
    };
    document.addEventListener('keydown', onKey);
    return () => {
      document.removeEventListener('keydown', onKey);
      before?.focus?.();
    };
  }, []);
  return (
    <div class="backdrop">
      <div class="dialog" role="dialog" aria-modal="true" aria-labelledby={titleId} ref={ref}>
        <h2 id={titleId}>{p.title}</h2>
        <div class="dialog-body">{p.body}</div>
        <div class="dialog-actions">
          <button type="button" class="cancel" onClick={p.onCancel}>
            {t('common.cancel')}
          </button>
          <button type="button" class={p.danger ? 'danger confirm' : 'primary confirm'} onClick={p.onConfirm}>
            {p.confirmLabel}
          </button>
        </div>
      </div>
    </div>
  );
}

/** A button that asks first, then runs `action`; shows the error if it fails. */
export function ConfirmButton(p: { label: string; title: string; body: ComponentChildren; confirmLabel?: string; danger?: boolean; action: () => Promise<void>; name?: string }) {
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState<string>();
  return (
    <span class="confirm-button">
      <button type="button" class={p.danger ? 'danger' : undefined} data-action={p.name} disabled={busy} onClick={() => setOpen(true)}>
        {p.label}
      </button>
      {err && (
        <span class="field-error" role="alert">
          {err}
        </span>
      )}
      {open && (
        <Confirm
          title={p.title}
          body={p.body}
          danger={p.danger}
          confirmLabel={p.confirmLabel ?? p.label}
          onCancel={() => setOpen(false)}
          onConfirm={async () => {
            setOpen(false);
            setBusy(true);
            setErr(undefined);
            try {
              await p.action();
            } catch (e) {
              setErr(errorText(e));
            } finally {
              setBusy(false);
            }
          }}
        />
      )}
    </span>
  );
}

/** A secret shown only after a confirmation, fetched at that moment, hidden again on demand. */
export function SecretReveal(p: { label: string; load: () => Promise<string>; name: string }) {
  const [secret, setSecret] = useState<string>();
  const [open, setOpen] = useState(false);
  const [err, setErr] = useState<string>();
  const [copied, setCopied] = useState(false);
  return (
    <div class="secret" data-secret={p.name}>
      {secret === undefined ? (
        <button type="button" data-action={`reveal-${p.name}`} onClick={() => setOpen(true)}>
          {t('secret.reveal', { what: p.label })}
        </button>
      ) : (
        <>
          <span class="secret-label">{p.label}</span> <code class="secret-value">{secret}</code>{' '}
          <button
            type="button"
            onClick={async () => {
              try {
                await navigator.clipboard.writeText(secret);
                setCopied(true);
              } catch {
                setCopied(false);
              }
            }}
          >
            {copied ? t('secret.copied') : t('secret.copy')}
          </button>{' '}
          <button type="button" onClick={() => (setSecret(undefined), setCopied(false))}>
            {t('secret.hide')}
          </button>
        </>
      )}
      {err && (
        <span class="field-error" role="alert">
          {err}
        </span>
      )}
      {open && (
        <Confirm
          title={t('secret.confirmTitle', { what: p.label })}
          body={<p>{t('secret.confirmBody')}</p>}
          confirmLabel={t('secret.confirm')}
          onCancel={() => setOpen(false)}
          onConfirm={async () => {
            setOpen(false);
            try {
              setSecret(await p.load());
            } catch (e) {
              setErr(errorText(e));
            }
          }}
        />
      )}
    </div>
  );
}

export function Loading() {
  return (
    <p class="muted" role="status">
      {t('common.loading')}
    </p>
  );
}

/** Runs `load` when deps change; answers data, error and a reload function. */
export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[]): { data: T | undefined; error: string | undefined; reload: () => void; setData: (d: T) => void } {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<string>();
  const [n, setN] = useState(0);
  useEffect(() => {
    const ac = new AbortController();
    setError(undefined);
    load(ac.signal).then(
      (d) => !ac.signal.aborted && setData(d),
      (e) => !ac.signal.aborted && setError(errorText(e)),
    );
    return () => ac.abort();
  }, [...deps, n]);
  return { data, error, reload: () => setN((x) => x + 1), setData };
}

export function yesNo(v: boolean): string {
  return v ? t('common.yes') : t('common.no');
}

export type { Key };
