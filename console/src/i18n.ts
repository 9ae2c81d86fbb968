/**
 * English and Simplified Chinese. Every string the console shows comes from en.json / zh.json
 * by key (test/console/i18n-catalogue.test.ts checks both have the same keys and that every
 * t(key) call in console/src names an existing key). `{name}` placeholders are filled from params; the
 * result is text, rendered escaped by Preact like any other.
 */
import en from './i18n/en.json';
import zh from './i18n/zh.json';
import { observable, useObservable } from './store';

export type Lang = 'en' | 'zh';
export type Key = keyof typeof en;
const catalogues: Record<Lang, Record<string, string>> = { en, zh };

function initialLang(): Lang {
  try {
    const saved = localStorage.getItem('thingauth.console.lang'); // a preference, never a credential
    if (saved === 'en' || saved === 'zh') return saved;
  } catch {
    /* storage off */
  }
  return navigator.language.toLowerCase().startsWith('zh') ? 'zh' : 'en';
}

export const lang = observable<Lang>(initialLang());

export function setLang(l: Lang): void {
  try {
    localStorage.setItem('thingauth.console.lang', l);
  } catch {
    /* storage off */
  }
  document.documentElement.lang = l === 'zh' ? 'zh-CN' : 'en';
  lang.set(l);
}

function fill(s: string, params?: Record<string, string | number>): string {
  if (!params) return s;
  return s.replace(/\{(\w+)\}/g, (m, k: string) => (params[k] !== undefined ? String(params[k]) : m));
}

export function t(key: Key, params?: Record<string, string | number>): string {
  return fill(catalogues[lang.get()][key] ?? en[key] ?? key, params);
}

/** A key built at run time (a finding code, an error code): the fallback when it has no entry. */
export function tMaybe(key: string, fallback: string, params?: Record<string, string | number>): string {
  const s = catalogues[lang.get()][key];
  return s === undefined ? fallback : fill(s, params);
}

/** Re-renders the calling component when the language changes. */
export function useLang(): Lang {
  return useObservable(lang);
}

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(lang.get() === 'zh' ? 'zh-CN' : 'en-GB');
}
