/**
 * A doctor finding in the operator's language: looked up by its stable code in the catalogue
 * (`doctor.code.<code>.message` / `.hint`, English and Chinese), with the finding's params
 * filled in; a code the catalogue does not know shows the server's English text. A few codes
 * word their text by a param (which secret, whether a skew was measured): those have variant
 * keys, picked here.
 */
import { t, tMaybe } from './i18n';

export interface FindingLike {
  code: string;
  message: string;
  hint: string;
  params?: Record<string, string | number | boolean | null>;
}

function variantOf(f: FindingLike): string {
  const p = f.params ?? {};
  if (f.code === 'sign-mismatch' && p.secret === 'ProductSecret') return '.product';
  if (f.code === 'timestamp-outside-window' && (p.skewSeconds === undefined || p.skewSeconds === null)) return '.noSkew';
  if (f.code === 'last-login-ok' && p.source) return '.withSource';
  if (f.code === 'wrong-node-type' && !p.detail) return '.noDetail';
  return '';
}

export function findingText(f: FindingLike): { message: string; hint: string } {
  // The server's own defaults for params a finding leaves out (core/doctor.ts words them the same way).
  const params: Record<string, string | number> = { secret: 'DeviceSecret', signMethod: 'hmacmd5', source: t('doctor.unknownSource') };
  for (const [k, v] of Object.entries(f.params ?? {})) if (v !== null) params[k] = String(v);
  const base = `doctor.code.${f.code}`;
  const variant = variantOf(f);
  const pick = (part: 'message' | 'hint', fallback: string) => {
    const withVariant = variant ? tMaybe(`${base}${variant}.${part}`, '', params) : '';
    const text = withVariant || tMaybe(`${base}.${part}`, fallback, params);
    // A placeholder the finding had no param for: the server's own text says it right.
    return /\{\w+\}/.test(text) ? fallback : text;
  };
  return { message: pick('message', f.message), hint: pick('hint', f.hint) };
}
