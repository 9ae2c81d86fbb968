/** The console's shell: sign-in, navigation, the live feed, and the page for the current route. */
import { useEffect } from 'preact/hooks';
import { t, useLang, type Key } from './i18n';
import { LangSwitch } from './lang-switch';
import { liveState, startLive, stopLive, type LiveState } from './live';
import { match, useLocation, type Route } from './router';
import { current, session } from './session';
import { SignIn } from './signin';
import { useObservable } from './store';
import { Link } from './ui';
import { Overview } from './pages/overview';
import { Products, ProductDetail } from './pages/products';
import { Devices } from './pages/devices';
import { DeviceDetail } from './pages/device-detail';
import { Credentials } from './pages/credentials';
import { Topology } from './pages/topology';
import { Applications } from './pages/applications';
import { Tokens } from './pages/tokens';
import { Audit } from './pages/audit';
import { Health } from './pages/health';
import { Doctor } from './pages/doctor';

const NAV: { href: string; key: Key; pages: Route['page'][] }[] = [
  { href: '/', key: 'nav.overview', pages: ['overview'] },
  { href: '/products', key: 'nav.products', pages: ['products', 'product'] },
  { href: '/devices', key: 'nav.devices', pages: ['devices', 'device'] },
  { href: '/credentials', key: 'nav.credentials', pages: ['credentials'] },
  { href: '/topology', key: 'nav.topology', pages: ['topology'] },
  { href: '/applications', key: 'nav.applications', pages: ['applications'] },
  { href: '/tokens', key: 'nav.tokens', pages: ['tokens'] },
  { href: '/audit', key: 'nav.audit', pages: ['audit'] },
  { href: '/health', key: 'nav.health', pages: ['health'] },
  { href: '/doctor', key: 'nav.doctor', pages: ['doctor'] },
];

function PageFor({ route }: { route: Route }) {
  switch (route.page) {
    case 'overview':
      return <Overview />;
    case 'products':
      return <Products />;
    case 'product':
      return <ProductDetail productKey={route.productKey} />;
    case 'devices':
      return <Devices productKey={route.productKey} />;
    case 'device':
      return <DeviceDetail productKey={route.productKey} deviceName={route.deviceName} />;
    case 'credentials':
      return <Credentials />;
    case 'topology':
      return <Topology productKey={route.productKey} deviceName={route.deviceName} />;
    case 'applications':
      return <Applications />;
    case 'tokens':
      return <Tokens />;
    case 'audit':
      return <Audit />;
    case 'health':
      return <Health />;
    case 'doctor':
      return <Doctor productKey={route.productKey} deviceName={route.deviceName} />;
    case 'notFound':
      return (
        <section class="page">
          <h1>{t('notFound.title')}</h1>
          <p>
            <Link href="/">{t('nav.overview')}</Link>
          </p>
        </section>
      );
  }
}

const LIVE_KEYS: Record<LiveState, Key> = { off: 'live.off', connecting: 'live.connecting', live: 'live.live', unavailable: 'live.unavailable' };

function LiveIndicator() {
  const s = useObservable(liveState);
  return (
    <span class={`live live-${s}`} role="status" data-live={s}>
      {t(LIVE_KEYS[s])}
    </span>
  );
}

export function App() {
  useLang();
  const who = useObservable(current);
  const loc = useLocation();
  const route = match(loc);
  useEffect(() => {
    if (who) startLive();
    else stopLive();
  }, [who]);
  // Move focus to the new page's heading so keyboard and screen-reader users know it changed.
  useEffect(() => {
    document.getElementById('page-title')?.focus();
  }, [loc]);

  if (!who) return <SignIn />;
  return (
    <div class="shell">
      <a class="skip" href="#main">
        {t('nav.skip')}
      </a>
      <header class="top">
        <span class="brand">thingauth</span>
        <LiveIndicator />
        <span class="who" data-scope={who.scope}>
          {t('nav.signedInAs', { name: who.name || who.tokenId, scope: t(who.scope === 'admin' ? 'scope.admin' : 'scope.read') })}
        </span>
        <LangSwitch />
        <button type="button" onClick={() => session.end()}>
          {t('nav.signOut')}
        </button>
      </header>
      <nav class="side" aria-label={t('nav.label')}>
        <ul>
          {NAV.map((n) => (
            <li key={n.href}>
              <Link href={n.href} aria-current={n.pages.includes(route.page) ? 'page' : undefined}>
                {t(n.key)}
              </Link>
            </li>
          ))}
        </ul>
      </nav>
      <main id="main">
        <PageFor route={route} />
      </main>
    </div>
  );
}
