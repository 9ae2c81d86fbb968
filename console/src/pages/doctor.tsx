/**
 * The connection doctor (admin): why a device cannot get in. Recent refused logins from the
 * audit, each one diagnosable in one click, and a form for the three ways to ask the server
 * (POST /diagnose/connect): a device by name, a pasted MQTT CONNECT, a dynamic registration.
 * Findings are shown in the operator's language by their stable code (doctor-text.ts),
 * falling back to the server's English message for a code the console does not know.
 */
import { useEffect, useState } from 'preact/hooks';
import { call, type AuditEntry, type Req, type Res } from '../api';
import { findingText } from '../doctor-text';
import { formatTime, t } from '../i18n';
import { deviceHref } from '../router';
import { session } from '../session';
import { Field, FormError, Link, Loading, Page, Select, useFormErrors, useLoad } from '../ui';

type Diagnosis = Res<'/api/v1/diagnose/connect', 'post'>;
type DiagnoseBody = Req<'/api/v1/diagnose/connect', 'post'>;
type Mode = 'device' | 'connect' | 'registration';
type Transport = '' | 'tcp' | 'tls' | 'ws' | 'wss';

const VERDICT_KEYS = { ok: 'doctor.verdict.ok', refused: 'doctor.verdict.refused', unknown: 'doctor.verdict.unknown' } as const;
const SEVERITY_KEYS = { error: 'doctor.severity.error', warning: 'doctor.severity.warning', info: 'doctor.severity.info' } as const;

export function DiagnosisView({ d }: { d: Diagnosis }) {
  return (
    <section class={`card diagnosis verdict-${d.verdict}`} aria-labelledby="diag-h" data-testid="diagnosis" data-verdict={d.verdict}>
      <h2 id="diag-h">
        {t('doctor.result')}: <span class="verdict">{t(VERDICT_KEYS[d.verdict])}</span>
      </h2>
      <ol class="findings">
        {d.findings.map((f, i) => {
          const text = findingText(f);
          return (
            <li key={`${f.code}-${i}`} class={`finding severity-${f.severity}`} data-code={f.code}>
              <span class={`badge sev-${f.severity}`}>{t(SEVERITY_KEYS[f.severity])}</span> <strong class="finding-message">{text.message}</strong>
              <p class="finding-hint">{text.hint}</p>
            </li>
          );
        })}
      </ol>
    </section>
  );
}

function RecentRefusals({ onPick }: { onPick: (pk: string, dn: string) => void }) {
  const audit = useLoad((signal) => call('get', '/api/v1/audit', { query: { limit: 300 }, signal }), []);
  const latest = new Map<string, AuditEntry>();
  for (const e of audit.data?.items ?? []) {
    if (e.result !== 'deny' || !e.productKey || !e.deviceName || e.action.startsWith('api.')) continue;
    const k = `${e.productKey}\u0000${e.deviceName}`;
    if (!latest.has(k)) latest.set(k, e);
  }
  const rows = [...latest.values()].slice(0, 20);
  return (
    <section aria-labelledby="recent-h">
      <h2 id="recent-h">{t('doctor.recent')}</h2>
      {audit.error && <p class="error" role="alert">{audit.error}</p>}
      {!audit.data && !audit.error && <Loading />}
      {audit.data && rows.length === 0 && <p class="muted">{t('doctor.noRecent')}</p>}
      {rows.length > 0 && (
        <table>
          <caption class="sr-only">{t('doctor.recent')}</caption>
          <thead>
            <tr>
              <th scope="col">{t('audit.device')}</th>
              <th scope="col">{t('audit.at')}</th>
              <th scope="col">{t('audit.action')}</th>
              <th scope="col">{t('audit.reason')}</th>
              <th scope="col">{t('audit.source')}</th>
              <th scope="col">{t('common.actions')}</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((e) => (
              <tr key={e.id} data-refused={e.deviceName}>
                <td>
                  <Link href={deviceHref(e.productKey!, e.deviceName!)}>{`${e.productKey} / ${e.deviceName}`}</Link>
                </td>
                <td>{formatTime(e.at)}</td>
                <td>
                  <code>{e.action}</code>
                </td>
                <td>{e.reason ?? ''}</td>
                <td>{e.sourceAddress ?? ''}</td>
                <td>
                  <button type="button" data-action="diagnose" onClick={() => onPick(e.productKey!, e.deviceName!)}>
                    {t('doctor.diagnoseThis')}
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

export function Doctor({ productKey, deviceName }: { productKey?: string; deviceName?: string }) {
  const [mode, setMode] = useState<Mode>('device');
  const [v, setV] = useState({ productKey: productKey ?? '', deviceName: deviceName ?? '', clientId: '', username: '', password: '', random: '', sign: '', signMethod: 'hmacsha256' });
  const [transport, setTransport] = useState<Transport>('');
  const [result, setResult] = useState<Diagnosis>();
  const [busy, setBusy] = useState(false);
  const f = useFormErrors(['productKey', 'deviceName', 'clientId', 'username', 'password', 'registration', 'transport']);
  const set = (k: keyof typeof v) => (x: string) => setV({ ...v, [k]: x });

  const diagnose = async (body: DiagnoseBody) => {
    setBusy(true);
    f.clear();
    setResult(undefined);
    try {
      setResult(await call('post', '/api/v1/diagnose/connect', { body }));
    } catch (e) {
      f.take(e);
    } finally {
      setBusy(false);
    }
  };
  useEffect(() => {
    if (productKey && deviceName && session.isAdmin()) void diagnose({ productKey, deviceName });
  }, [productKey, deviceName]);

  if (!session.isAdmin()) {
    return (
      <Page title={t('nav.doctor')}>
        <p class="notice">{t('doctor.adminOnly')}</p>
      </Page>
    );
  }
  return (
    <Page title={t('nav.doctor')}>
      <p class="muted">{t('doctor.intro')}</p>
      <RecentRefusals
        onPick={(pk, dn) => {
          setMode('device');
          setV({ ...v, productKey: pk, deviceName: dn });
          void diagnose({ productKey: pk, deviceName: dn });
        }}
      />
      <form
        class="card"
        aria-labelledby="ask-h"
        onSubmit={(e) => {
          e.preventDefault();
          const tr = transport || undefined;
          if (mode === 'device') void diagnose({ productKey: v.productKey, deviceName: v.deviceName });
          else if (mode === 'connect') void diagnose({ clientId: v.clientId, username: v.username, password: v.password, ...(tr ? { transport: tr } : {}) });
          else
            void diagnose({
              registration: {
                productKey: v.productKey,
                deviceName: v.deviceName,
                random: v.random,
                sign: v.sign,
                signMethod: v.signMethod,
                ...(tr === 'tcp' || tr === 'ws' ? { transport: 'plain' as const } : tr ? { transport: 'tls' as const } : {}),
              },
            });
        }}
      >
        <h2 id="ask-h">{t('doctor.ask')}</h2>
        <FormError message={f.errors._form ?? f.errors.registration} />
        <Select
          label={t('doctor.mode')}
          name="mode"
          value={mode}
          options={[
            { value: 'device', label: t('doctor.modeDevice') },
            { value: 'connect', label: t('doctor.modeConnect') },
            { value: 'registration', label: t('doctor.modeRegistration') },
          ]}
          onChange={setMode}
        />
        {(mode === 'device' || mode === 'registration') && (
          <div class="row">
            <Field label={t('product.key')} name="productKey" value={v.productKey} onInput={set('productKey')} error={f.errors.productKey} required />
            <Field label={t('device.name')} name="deviceName" value={v.deviceName} onInput={set('deviceName')} error={f.errors.deviceName} required />
          </div>
        )}
        {mode === 'connect' && (
          <>
            <Field label={t('doctor.clientId')} name="clientId" value={v.clientId} onInput={set('clientId')} error={f.errors.clientId} hint={t('doctor.clientIdHint')} />
            <Field label={t('doctor.username')} name="username" value={v.username} onInput={set('username')} error={f.errors.username} />
            <Field label={t('doctor.password')} name="password" type="password" value={v.password} onInput={set('password')} error={f.errors.password} hint={t('doctor.passwordHint')} />
          </>
        )}
        {mode === 'registration' && (
          <div class="row">
            <Field label={t('doctor.random')} name="random" value={v.random} onInput={set('random')} />
            <Field label={t('doctor.signMethod')} name="signMethod" value={v.signMethod} onInput={set('signMethod')} />
            <Field label={t('doctor.sign')} name="sign" value={v.sign} onInput={set('sign')} />
          </div>
        )}
        {mode !== 'device' && (
          <Select
            label={t('doctor.transport')}
            name="transport"
            value={transport}
            options={[
              { value: '', label: t('doctor.transportUnknown') },
              { value: 'tcp', label: 'MQTT/TCP' },
              { value: 'tls', label: 'MQTT/TLS' },
              { value: 'ws', label: 'WebSocket' },
              { value: 'wss', label: 'WebSocket/TLS' },
            ]}
            onChange={setTransport}
            error={f.errors.transport}
          />
        )}
        <button type="submit" class="primary" disabled={busy}>
          {t('doctor.run')}
        </button>
      </form>
      {busy && <Loading />}
      {result && <DiagnosisView d={result} />}
    </Page>
  );
}
