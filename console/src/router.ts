/**
 * Client-side routes (the server answers index.html for each: console-static.ts CONSOLE_PAGES,
 * keep both lists in step). History API, no hash; path segments are decoded here and
 * encoded when links are built.
 */
import { observable, useObservable } from './store';

export const location = observable<string>(window.location.pathname + window.location.search);

window.addEventListener('popstate', () => location.set(window.location.pathname + window.location.search));

export function navigate(to: string, replace = false): void {
  if (replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  location.set(to);
  window.scrollTo(0, 0);
}

export function useLocation(): string {
  return useObservable(location);
}

export type Route =
  | { page: 'overview' }
  | { page: 'products' }
  | { page: 'product'; productKey: string }
  | { page: 'devices'; productKey?: string }
  | { page: 'device'; productKey: string; deviceName: string }
  | { page: 'credentials' }
  | { page: 'topology'; productKey?: string; deviceName?: string }
  | { page: 'applications' }
  | { page: 'tokens' }
  | { page: 'audit' }
  | { page: 'health' }
  | { page: 'doctor'; productKey?: string; deviceName?: string }
  | { page: 'notFound' };

function dec(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

export function match(loc: string): Route {
  const [pathname, search = ''] = loc.split('?', 2) as [string, string?];
  const q = new URLSearchParams(search);
  const parts = pathname.split('/').filter(Boolean).map(dec);
  if (parts.some((p) => p === undefined)) return { page: 'notFound' };
  const [a, b, c] = parts as string[];
  const opt = (k: string) => q.get(k) ?? undefined;
  if (parts.length === 0) return { page: 'overview' };
  if (a === 'products' && parts.length === 1) return { page: 'products' };
  if (a === 'products' && parts.length === 2) return { page: 'product', productKey: b! };
  if (a === 'devices' && parts.length === 1) return { page: 'devices', productKey: opt('product') };
  if (a === 'devices' && parts.length === 3) return { page: 'device', productKey: b!, deviceName: c! };
  if (parts.length === 1) {
    switch (a) {
      case 'credentials':
      case 'applications':
      case 'tokens':
      case 'audit':
      case 'health':
        return { page: a };
      case 'topology':
        return { page: 'topology', productKey: opt('product'), deviceName: opt('device') };
      case 'doctor':
        return { page: 'doctor', productKey: opt('product'), deviceName: opt('device') };
    }
  }
  return { page: 'notFound' };
}

export function deviceHref(productKey: string, deviceName: string): string {
  return `/devices/${encodeURIComponent(productKey)}/${encodeURIComponent(deviceName)}`;
}

export function productHref(productKey: string): string {
  return `/products/${encodeURIComponent(productKey)}`;
}

export function withQuery(path: string, q: Record<string, string | undefined>): string {
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v) s.set(k, v);
  const qs = s.toString();
  return qs ? `${path}?${qs}` : path;
}
