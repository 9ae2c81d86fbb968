/**
 * A doctor finding in the operator's language: looked up by its stable code in the catalogue
 * (`doctor.code.<code>.message` / `.hint`, English and Chinese), with the finding's params
 * filled in; a code the catalogue does not know shows the server's English text. A few codes
 * word their text by a param (which secret, whether a skew was measured): those have variant
 * keys, picked here.
 */
import { tMaybe } from './i18n';

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
  return '';
}

export function findingText(f: FindingLike): { message: string; hint: string } {
  const params: Record<string, string | number> = {};
  for (const [k, v] of Object.entries(f.params ?? {})) params[k] = v === null ? '?' : String(v);
  const base = `doctor.code.${f.code}`;
  const variant = variantOf(f);
  const pick = (part: 'message' | 'hint', fallback: string) => {
    const withVariant = variant ? tMaybe(`${base}${variant}.${part}`, '', params) : '';
    const text = withVariant || tMaybe(`${base}.${part}`, fallback, params);
    // A placeholder the finding had no param for reads as "?", like the server's own wording.
    return text.replace(/\{\w+\}/g, '?');
  };
  return { message: pick('message', f.message), hint: pick('hint', f.hint) };
}
