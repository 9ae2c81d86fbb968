/**
 * The operator console in a real browser (Debian's Chromium driven by playwright-core) against
 * a real thingauth (real SQLite file, real MQTT clients): sign in, create a product and a device,
 * reveal secrets, a device turning ONLINE on screen from the live stream when an `mqtt` client
 * logs in, disabling it kicks it, the connection doctor explaining a wrong secret, a CSV import
 * (dry run with conflicts, then apply with progress), a read-scope token seeing no secret and
 * no write action, hostile names rendered as text, a revoked token sending the operator back
 * to sign-in, and axe-core (no serious/critical violation) on every page.
 *
 * One browser for the file. Skipped only when CI is unset and /usr/bin/chromium is missing.
 * THINGAUTH_CONSOLE_SCREENSHOTS=1 also writes docs/console/<page>.png.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { MqttClient } from 'mqtt';
import { chromium, type Browser, type BrowserContext, type Page, type Route } from 'playwright-core';
import { connectClient, connectRefusal, endClient, signedConnect, waitForClose } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = !process.env.CI && !fs.existsSync(CHROMIUM) ? 'no /usr/bin/chromium (CI unset)' : false;
const root = fileURLToPath(new URL('../../../', import.meta.url));
const AXE = fs.readFileSync(path.join(root, 'node_modules/axe-core/axe.min.js'), 'utf8');
const en = JSON.parse(fs.readFileSync(path.join(root, 'console/src/i18n/en.json'), 'utf8')) as Record<string, string>;
const zh = JSON.parse(fs.readFileSync(path.join(root, 'console/src/i18n/zh.json'), 'utf8')) as Record<string, string>;
const SHOTS = process.env.THINGAUTH_CONSOLE_SCREENSHOTS === '1' ? path.join(root, 'docs/console') : undefined;
const HOSTILE = '<img src=x onerror=alert(1)>';

interface Watched {
  page: Page;
  problems: string[];
}

describe('operator console in Chromium', { skip }, () => {
  let s: TestServer;
  let browser: Browser;
  let admin: BrowserContext;
  let ui: Watched;
  const clients: MqttClient[] = [];

  before(async () => {
    s = await startTestServer();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    admin = await browser.newContext({ viewport: { width: 1280, height: 860 }, locale: 'en-GB' });
    admin.setDefaultTimeout(8_000);
    ui = await open(admin);
  });

  after(async () => {
    for (const c of clients) await endClient(c);
    await browser?.close();
    await s?.stop();
  });

  /** A page whose console errors, CSP violations, failed requests and dialogs are collected. */
  async function open(ctx: BrowserContext): Promise<Watched> {
    const page = await ctx.newPage();
    const problems: string[] = [];
    page.on('console', (m) => {
      // A refused API call (a test provokes 4xx on purpose) is logged by Chromium as a failed resource.
      if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) problems.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('dialog', (d) => {
      problems.push(`dialog: ${d.message()}`);
      void d.dismiss();
    });
    await page.exposeFunction('__cspViolation', (v: string) => problems.push(`csp: ${v}`));
    await page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => (window as unknown as { __cspViolation: (v: string) => void }).__cspViolation(`${e.violatedDirective} ${e.blockedURI}`));
    });
    return { page, problems };
  }

  async function signIn(w: Watched, token: string): Promise<void> {
    await w.page.goto(`${s.api}/`);
    await w.page.getByLabel(en['signin.token']!).fill(token);
    await w.page.getByRole('button', { name: en['signin.submit'] }).click();
    await w.page.getByRole('navigation', { name: en['nav.label'] }).waitFor();
  }

  /** Client-side navigation through the menu (no reload: the in-memory session survives). */
  async function go(w: Watched, navKey: string): Promise<void> {
    await w.page.getByRole('navigation', { name: en['nav.label'] }).getByRole('link', { name: en[navKey], exact: true }).click();
    await w.page.locator('#page-title').filter({ hasText: en[navKey] }).waitFor();
  }

  async function axe(w: Watched, label: string): Promise<void> {
    // The page's CSP forbids inline scripts, so axe is evaluated through the DevTools protocol.
    await w.page.evaluate(AXE);
    const violations = await w.page.evaluate(async () => {
      const r = await (window as unknown as { axe: { run: (ctx: Document, o: object) => Promise<{ violations: { id: string; impact: string; nodes: { target: string[] }[] }[] }> } }).axe.run(document, {
        resultTypes: ['violations'],
      });
      return r.violations.map((v) => ({ id: v.id, impact: v.impact, targets: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
    });
    const serious = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    assert.deepEqual(serious, [], `${label}: axe found ${JSON.stringify(serious)}`);
  }

  async function shot(w: Watched, name: string): Promise<void> {
    if (!SHOTS) return;
    fs.mkdirSync(SHOTS, { recursive: true });
    await w.page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  }

  const state: { productKey?: string; deviceName?: string; deviceSecret?: string } = {};

  it('signs in with the admin token; the token is in no URL and no storage; CSP blocks an inline script', async () => {
    await ui.page.goto(`${s.api}/`);
    await axe(ui, 'sign-in');
    await shot(ui, 'sign-in');
    await signIn(ui, s.adminToken);
    await ui.page.locator('.who[data-scope="admin"]').waitFor();
    assert.ok(!ui.page.url().includes(s.adminToken));
    const stored = await ui.page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie);
    assert.ok(!stored.includes(s.adminToken), 'token not in localStorage, sessionStorage or cookies');
    // The live feed (fetch + stream reader with the Authorization header) is up.
    await ui.page.locator('[data-live="live"]').waitFor();
    // The page's CSP really applies: an inline script is refused.
    await assert.rejects(ui.page.addScriptTag({ content: 'window.__inline = 1' }));
    assert.equal(await ui.page.evaluate(() => (window as unknown as { __inline?: number }).__inline), undefined);
    ui.problems.splice(0); // the refused inline script above was reported on purpose
  });

  it('creates a product (an API error shows next to its field first) and reveals its ProductSecret behind a confirmation', async () => {
    await go(ui, 'nav.products');
    const form = ui.page.locator('form[aria-labelledby="create-product-h"]');
    await form.getByLabel(en['product.name']!).fill('ab');
    await form.getByRole('button', { name: en['product.createButton'] }).click();
    const nameInput = form.getByLabel(en['product.name']!);
    await ui.page.waitForFunction(() => document.querySelector('input[name="productName"]')?.getAttribute('aria-invalid') === 'true');
    const describedBy = (await nameInput.getAttribute('aria-describedby')) ?? '';
    const errText = await ui.page.locator(`[id="${describedBy.split(' ')[0]}"]`).innerText();
    assert.match(errText, /productName|name/i, 'the server message about the name sits next to the name field');
    await nameInput.fill('Console lamp');
    await form.getByLabel(en['product.dynamicRegistration']!).check();
    await form.getByRole('button', { name: en['product.createButton'] }).click();
    await ui.page.locator('[data-field="productKey"]').waitFor();
    state.productKey = (await ui.page.locator('[data-field="productKey"]').innerText()).trim();
    const stored = await s.running.ctx.store.getProduct(state.productKey);
    assert.equal(stored?.productName, 'Console lamp');
    assert.equal(stored?.dynamicRegistration, true);

    await ui.page.locator('[data-action="reveal-productSecret"]').click();
    const dialog = ui.page.getByRole('dialog');
    await dialog.waitFor();
    assert.ok(!(await ui.page.content()).includes(stored!.productSecret), 'not shown before the confirmation');
    await dialog.getByRole('button', { name: en['secret.confirm'] }).click();
    await ui.page.locator('[data-secret="productSecret"] .secret-value').waitFor();
    assert.equal(await ui.page.locator('[data-secret="productSecret"] .secret-value').innerText(), stored!.productSecret);
    await axe(ui, 'product detail');
    await ui.page.getByRole('button', { name: en['secret.hide'] }).click();
    await shot(ui, 'product');
    await go(ui, 'nav.products');
    await axe(ui, 'products');
    await shot(ui, 'products');
  });

  it('creates a device, reveals its secret; an mqtt client logs in and the device turns ONLINE on screen without a reload; disabling kicks it', async () => {
    const pk = state.productKey!;
    await ui.page.evaluate((pk) => {
      history.pushState(null, '', `/devices?product=${pk}`);
      dispatchEvent(new PopStateEvent('popstate'));
    }, pk);
    const form = ui.page.locator('form[aria-labelledby="create-device-h"]');
    await form.getByLabel(en['device.name']!).fill('lamp-0001');
    await form.getByRole('button', { name: en['device.createButton'] }).click();
    const created = ui.page.locator('.notice-card .secret-value').first();
    await created.waitFor();
    const shownSecret = (await created.innerText()).trim();
    const dev = await s.running.ctx.store.getDevice(pk, 'lamp-0001');
    assert.equal(shownSecret, dev!.deviceSecret);
    state.deviceName = 'lamp-0001';
    state.deviceSecret = dev!.deviceSecret;
    await ui.page.locator('tr[data-device="lamp-0001"]').waitFor();
    await axe(ui, 'devices');

    // Live in the list: the row turns ONLINE when the device logs in, with no reload.
    await ui.page.evaluate(() => ((window as unknown as { __noReload: number }).__noReload = 42));
    const client = await connectClient(s, 'mqtt', signedConnect({ productKey: pk, deviceName: 'lamp-0001', deviceSecret: dev!.deviceSecret }));
    clients.push(client);
    await ui.page.locator('tr[data-device="lamp-0001"] [data-status="ONLINE"]').waitFor({ timeout: 10_000 });
    await shot(ui, 'devices');

    // Detail page: reveal the secret, see ONLINE.
    await ui.page.locator('tr[data-device="lamp-0001"]').getByRole('link', { name: 'lamp-0001' }).click();
    await ui.page.locator('[data-field="status"]').waitFor();
    await ui.page.locator('[data-field="status"] [data-status="ONLINE"]').waitFor();
    await ui.page.locator('[data-action="reveal-deviceSecret"]').click();
    await ui.page.getByRole('dialog').getByRole('button', { name: en['secret.confirm'] }).click();
    assert.equal(await ui.page.locator('[data-secret="deviceSecret"] .secret-value').innerText(), dev!.deviceSecret);
    await ui.page.getByRole('button', { name: en['secret.hide'] }).click();
    await axe(ui, 'device detail');
    await shot(ui, 'device');

    // Disable: confirmation, the client is kicked, the screen stops saying ONLINE.
    const closed = waitForClose(client, 10_000);
    await ui.page.locator('[data-action="disable"]').click();
    await ui.page.getByRole('dialog').getByRole('button', { name: en['device.disable'] }).click();
    await closed;
    await ui.page.locator('[data-field="status"] [data-status="DISABLE"], [data-field="status"] [data-status="OFFLINE"]').waitFor({ timeout: 10_000 });
    assert.equal(await ui.page.evaluate(() => (window as unknown as { __noReload?: number }).__noReload), 42, 'the page was never reloaded');
    assert.equal((await s.running.ctx.store.getDevice(pk, 'lamp-0001'))?.enabled, false);
    // Enable it again from the console.
    await ui.page.locator('[data-action="enable"]').click();
    await ui.page.getByRole('dialog').getByRole('button', { name: en['device.enable'] }).click();
    await ui.page.locator('[data-action="disable"]').waitFor();
  });

  it('the connection doctor explains a wrong-secret device, in English and in Chinese', async () => {
    const pk = state.productKey!;
    await s.request('POST', `/api/v1/products/${pk}/devices`, { deviceName: 'lamp-wrong' });
    const refused = await connectRefusal(s, 'mqtt', signedConnect({ productKey: pk, deviceName: 'lamp-wrong', deviceSecret: 'NotTheRightSecret0123' }));
    assert.ok(refused.code === 4 || refused.code === 5, `refused with CONNACK ${refused.code}`);
    await s.settle();
    await go(ui, 'nav.doctor');
    const row = ui.page.locator('tr[data-refused="lamp-wrong"]');
    await row.waitFor();
    await row.getByRole('button', { name: en['doctor.diagnoseThis'] }).click();
    const diag = ui.page.getByTestId('diagnosis');
    await diag.waitFor();
    assert.equal(await diag.getAttribute('data-verdict'), 'refused');
    const finding = diag.locator('li[data-code="sign-mismatch"]');
    await finding.waitFor();
    assert.match(await finding.locator('.finding-message').innerText(), /signature does not match the current DeviceSecret/);
    await axe(ui, 'doctor');
    await shot(ui, 'doctor');

    // Switch to Chinese: the same finding in the Chinese catalogue's words.
    await ui.page.getByLabel(en['nav.language']!).selectOption('zh');
    await ui.page.locator('li[data-code="sign-mismatch"] .finding-message', { hasText: '签名与当前的' }).waitFor();
    assert.equal(await ui.page.locator('html').getAttribute('lang'), 'zh-CN');
    await axe(ui, 'doctor (zh)');
    await shot(ui, 'doctor-zh');
    await ui.page.getByLabel(zh['nav.language']!).selectOption('en');
    await ui.page.getByRole('heading', { name: en['nav.doctor'] }).waitFor();
  });

  it('CSV import: a dry run lists the conflict with its line, then a clean file is applied in parts with progress', async () => {
    const pk = state.productKey!;
    await go(ui, 'nav.credentials');
    const rows = ['ProductKey,DeviceName,DeviceSecret', `${pk},lamp-0001,DifferentSecret0000000001`];
    for (let i = 0; i < 1100; i++) rows.push(`${pk},imp-${String(i).padStart(5, '0')},Secret${String(i).padStart(10, '0')}abcdef`);
    await ui.page.getByLabel(en['credentials.file']!, { exact: true }).setInputFiles({ name: 'devices.csv', mimeType: 'text/csv', buffer: Buffer.from(rows.join('\n') + '\n') });
    await ui.page.locator('[data-action="dry-run"]').click();
    const result = ui.page.getByTestId('import-result');
    await ui.page.getByTestId('import-note').filter({ hasText: en['credentials.dryRunDone'] }).waitFor({ timeout: 30_000 });
    assert.equal(await result.getAttribute('data-dry-run'), 'true');
    assert.equal(await result.locator('[data-count="rows"]').innerText(), '1101');
    assert.equal(await result.locator('[data-count="created"]').innerText(), '1100');
    assert.equal(await result.locator('[data-count="conflicts"]').innerText(), '1');
    const conflictRow = result.locator('table.conflicts tbody tr');
    assert.equal(await conflictRow.count(), 1);
    assert.equal(await conflictRow.locator('td').first().innerText(), '2', 'the conflict is on line 2 of the file');
    assert.ok(await ui.page.locator('[data-action="apply"]').isDisabled(), 'apply waits while there are conflicts');
    assert.equal(await s.running.ctx.store.countDevices(pk), 2, 'a dry run writes nothing');
    await axe(ui, 'credentials (dry run)');
    await shot(ui, 'credentials');

    // Export: the CSV the browser downloads is the server's, with the secrets.
    const exportCard = ui.page.locator('section[aria-labelledby="export-h"]');
    await exportCard.getByLabel(en['device.product']!).selectOption(pk);
    const [download] = await Promise.all([ui.page.waitForEvent('download'), exportCard.locator('[data-action="export-csv"]').click()]);
    assert.equal(download.suggestedFilename(), `${pk}-devices.csv`);
    const csv = fs.readFileSync((await download.path())!, 'utf8').trim().split('\n');
    assert.equal(csv[0], 'ProductKey,DeviceName,DeviceSecret');
    assert.ok(csv.includes(`${pk},lamp-0001,${state.deviceSecret}`), 'the exported CSV has the device and its secret');

    // Without the conflicting line: dry run, then apply (three parts of 500 rows).
    rows.splice(1, 1);
    await ui.page.getByLabel(en['credentials.file']!, { exact: true }).setInputFiles({ name: 'devices.csv', mimeType: 'text/csv', buffer: Buffer.from(rows.join('\n') + '\n') });
    await ui.page.locator('[data-action="dry-run"]').click();
    await ui.page.waitForFunction(() => document.querySelector('[data-testid="import-result"] [data-count="conflicts"]')?.textContent === '0');
    await ui.page.locator('[data-action="apply"]:not([disabled])').click();
    await ui.page.getByTestId('import-note').filter({ hasText: en['credentials.applied'] }).waitFor({ timeout: 60_000 });
    assert.equal(await result.getAttribute('data-dry-run'), 'false');
    assert.equal(await result.locator('[data-count="created"]').innerText(), '1100');
    assert.match(await ui.page.locator('.progress').innerText(), /1100 of 1100/);
    assert.equal(await s.running.ctx.store.countDevices(pk), 1102);
    const imported = await s.running.ctx.store.getDevice(pk, 'imp-00007');
    assert.equal(imported?.deviceSecret, 'Secret0000000007abcdef');
  });

  it('an import in progress can be cancelled between parts: what was sent stays, nothing after it is written', async () => {
    const pk = state.productKey!;
    const rows = ['ProductKey,DeviceName,DeviceSecret'];
    for (let i = 0; i < 1500; i++) rows.push(`${pk},cancel-${String(i).padStart(5, '0')},Cancel${String(i).padStart(10, '0')}abcdef`);
    await ui.page.getByLabel(en['credentials.file']!, { exact: true }).setInputFiles({ name: 'more.csv', mimeType: 'text/csv', buffer: Buffer.from(rows.join('\n') + '\n') });
    await ui.page.locator('[data-action="dry-run"]').click();
    await ui.page.waitForFunction(() => document.querySelector('[data-testid="import-result"] [data-count="created"]')?.textContent === '1500');
    const before = await s.running.ctx.store.countDevices(pk);
    // Hold the second part on its way to the server until the operator has pressed Cancel.
    let parts = 0;
    let held: Route | undefined;
    await ui.page.route('**/api/v1/import/devices?*', async (route) => {
      parts++;
      if (parts === 2) held = route;
      else await route.continue();
    });
    try {
      await ui.page.locator('[data-action="apply"]:not([disabled])').click();
      await ui.page.waitForFunction(() => /500 of 1500/.test(document.querySelector('.progress')?.textContent ?? ''));
      await ui.page.waitForFunction(() => document.querySelector('[data-action="cancel"]') !== null);
      while (!held) await new Promise((r) => setTimeout(r, 20));
      await ui.page.locator('[data-action="cancel"]').click();
      await ui.page.getByTestId('import-note').filter({ hasText: 'Cancelled after 500 rows' }).waitFor();
    } finally {
      await held?.abort().catch(() => undefined);
      await ui.page.unroute('**/api/v1/import/devices?*');
    }
    assert.equal(parts, 2, 'no part was sent after the cancel');
    assert.equal(await s.running.ctx.store.countDevices(pk), before + 500, 'the first part is in, nothing after it');
    assert.ok(await s.running.ctx.store.getDevice(pk, 'cancel-00499'));
    assert.equal(await s.running.ctx.store.getDevice(pk, 'cancel-00500'), undefined);
    await ui.page.getByRole('button', { name: en['credentials.clearFile'] }).click();
  });

  it('hostile free text renders as text: no element, no script, no dialog', async () => {
    const pk = state.productKey!;
    const r = await s.request('PATCH', `/api/v1/products/${pk}`, { description: HOSTILE });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const d = await s.request('POST', `/api/v1/products/${pk}/devices`, { deviceName: 'lamp-hostile', nickname: HOSTILE });
    assert.equal(d.status, 201, JSON.stringify(d.body));
    // A login claiming a hostile identity lands in the audit (actor) and the doctor's list.
    await connectRefusal(s, 'mqtt', { clientId: `${HOSTILE}|securemode=3,signmethod=hmacsha256|`, username: `${HOSTILE}&${pk}`, password: HOSTILE });
    await s.settle();

    await ui.page.evaluate((pk) => {
      history.pushState(null, '', `/products/${pk}`);
      dispatchEvent(new PopStateEvent('popstate'));
    }, pk);
    await ui.page.getByLabel(en['product.description']!).waitFor();
    assert.equal(await ui.page.getByLabel(en['product.description']!).inputValue(), HOSTILE);
    await ui.page.evaluate(() => {
      history.pushState(null, '', `/devices/${encodeURIComponent(document.querySelector('[data-field="productKey"]')!.textContent!)}/lamp-hostile`);
      dispatchEvent(new PopStateEvent('popstate'));
    });
    await ui.page.getByText(HOSTILE, { exact: true }).first().waitFor();
    await go(ui, 'nav.audit');
    await ui.page.getByText(HOSTILE).first().waitFor();
    assert.equal(await ui.page.locator('main img').count(), 0, 'no <img> element was created');
    await axe(ui, 'audit');
    await shot(ui, 'audit');
  });

  it('gateway topology: add a sub-device to a gateway and remove it again', async () => {
    const gwProduct = (await s.request('POST', '/api/v1/products', { productName: 'Console gateway', nodeType: 'GATEWAY' })).body.productKey as string;
    const subProduct = (await s.request('POST', '/api/v1/products', { productName: 'Console sensor', nodeType: 'SUB_DEVICE' })).body.productKey as string;
    assert.equal((await s.request('POST', `/api/v1/products/${gwProduct}/devices`, { deviceName: 'gw-0001' })).status, 201);
    assert.equal((await s.request('POST', `/api/v1/products/${subProduct}/devices`, { deviceName: 'sensor-0001' })).status, 201);
    const subsOf = async () => (await s.request('GET', `/api/v1/products/${gwProduct}/devices/gw-0001/sub-devices`)).body.items.map((d: { deviceName: string }) => d.deviceName);

    await go(ui, 'nav.topology');
    await ui.page.getByLabel(en['topology.gatewayProduct']!).selectOption(gwProduct);
    await ui.page.getByLabel(en['topology.gatewayName']!).fill('gw-0001');
    await ui.page.getByRole('button', { name: en['topology.show'], exact: true }).click();
    await ui.page.getByText(en['topology.none']!).waitFor();
    await ui.page.getByLabel(en['topology.subProduct']!).selectOption(subProduct);
    await ui.page.getByLabel(en['topology.subNames']!, { exact: true }).fill('sensor-0001');
    await ui.page.getByRole('button', { name: en['topology.addButton'], exact: true }).click();
    await ui.page.locator('tr[data-sub="sensor-0001"]').waitFor();
    assert.deepEqual(await subsOf(), ['sensor-0001']);
    await axe(ui, 'topology');
    await shot(ui, 'topology');
    await ui.page.locator('tr[data-sub="sensor-0001"] [data-action="remove-sub"]').click();
    await ui.page.getByRole('dialog').getByRole('button', { name: en['topology.remove'] }).click();
    await ui.page.locator('tr[data-sub="sensor-0001"]').waitFor({ state: 'detached' });
    assert.deepEqual(await subsOf(), []);
  });

  it('every other page passes axe and has no console error, CSP violation or dialog; keyboard alone gets around', async () => {
    assert.equal((await s.request('POST', '/api/v1/tokens', { name: 'prometheus', scope: 'read' })).status, 201);
    // Three imported devices log in, so the overview has something online.
    for (const i of [1, 2, 3]) {
      const deviceName = `imp-0000${i}`;
      clients.push(await connectClient(s, 'mqtt', signedConnect({ productKey: state.productKey!, deviceName, deviceSecret: `Secret000000000${i}abcdef` })));
    }
    await s.settle(); // presence is written in batches; the overview counts from the store
    for (const [key, name] of [
      ['nav.overview', 'overview'],
      ['nav.applications', 'applications'],
      ['nav.tokens', 'tokens'],
      ['nav.health', 'health'],
    ] as const) {
      await go(ui, key);
      // Loaded: no "Loading…" left (the live stream keeps a request open, so no network-idle wait).
      await ui.page.waitForFunction(() => !document.querySelector('main p.muted[role="status"]'));
      if (name === 'overview') {
        await ui.page.waitForFunction((pk) => document.querySelector(`tr[data-product="${pk}"] td[data-count="ONLINE"] a`)?.textContent === '3', state.productKey);
        // The other products have none online, so the tile says 3 too.
        await ui.page.waitForFunction(() => document.querySelector('[data-tile="online"]')?.textContent === '3');
      }
      if (name === 'health') await ui.page.locator('[data-field="health"]', { hasText: en['health.ok'] }).waitFor();
      await axe(ui, name);
      await shot(ui, name);
    }
    // Applications: create one for the product; the AppSecret is shown once and is the server's.
    await go(ui, 'nav.applications');
    await ui.page.getByLabel(en['app.name']!, { exact: true }).fill('billing');
    await ui.page.locator(`input[name="productKeys"][value="${state.productKey}"]`).check();
    await ui.page.getByRole('button', { name: en['app.createButton'] }).click();
    const appSecret = (await ui.page.locator('.notice-card .secret-value').innerText()).trim();
    const apps = (await s.running.ctx.store.listApplications()).filter((a) => a.name === 'billing');
    assert.equal(apps.length, 1);
    assert.equal(apps[0]!.appSecret, appSecret);
    await axe(ui, 'applications (created)');

    // Keyboard only: from the top of the page, Tab reaches the skip link first, then the menu;
    // Enter on a menu link opens its page; Escape closes a confirmation.
    const firstTabbable = await ui.page.evaluate(() => document.querySelector<HTMLElement>('a[href], button:not([disabled]), input, select, textarea, [tabindex="0"]')?.className);
    assert.equal(firstTabbable, 'skip', 'the skip link is the first stop');
    await ui.page.locator('a.skip').focus();
    let reached = false;
    for (let i = 0; i < 25 && !reached; i++) {
      await ui.page.keyboard.press('Tab');
      reached = await ui.page.evaluate((name) => document.activeElement?.tagName === 'A' && document.activeElement.textContent === name, en['nav.tokens']!);
    }
    assert.ok(reached, 'the Tokens menu link is reachable with Tab');
    await ui.page.keyboard.press('Enter');
    await ui.page.locator('#page-title', { hasText: en['nav.tokens'] }).waitFor();
    const revoke = ui.page.locator('tr[data-token] [data-action="revoke"]').first();
    await revoke.focus();
    await ui.page.keyboard.press('Enter');
    await ui.page.getByRole('dialog').waitFor();
    await ui.page.waitForFunction(() => document.activeElement?.classList.contains('cancel'), undefined, { timeout: 2_000 });
    await ui.page.keyboard.press('Escape');
    await ui.page.getByRole('dialog').waitFor({ state: 'detached' });
    await ui.page.waitForFunction(() => document.activeElement?.getAttribute('data-action') === 'revoke', undefined, { timeout: 2_000 });
    assert.equal((await s.running.ctx.store.listManagementTokens()).length, 1, 'Escape revoked nothing');
    assert.deepEqual(ui.problems, []);
  });

  it('the Health page lists the listeners with their real ports (the mqtt one included), the store and the cluster', async () => {
    await go(ui, 'nav.health');
    const ports = s.running.ctx.listenerPorts!;
    assert.ok(ports.mqtt! > 0);
    const mqttRow = ui.page.locator('tr[data-listener="mqtt"]');
    await mqttRow.waitFor();
    assert.equal((await mqttRow.locator('[data-field="port"]').innerText()).trim(), String(ports.mqtt));
    assert.match(await mqttRow.locator('code').innerText(), new RegExp(`:${ports.mqtt}\\b`));
    // Every listener the server started, no more, each with its own port.
    const shown = await ui.page.locator('tr[data-listener]').evaluateAll((rows) => rows.map((r) => [r.getAttribute('data-listener'), Number(r.querySelector('[data-field="port"]')?.textContent)]));
    assert.deepEqual(shown.sort(), Object.entries(ports).sort());
    assert.equal(await ui.page.locator('[data-field="store-kind"]').innerText(), en['health.storeKind.sqlite']);
    assert.equal(await ui.page.locator('[data-field="cluster-mode"]').innerText(), en['health.clusterMode.single']);
    await ui.page.locator(`tr[data-node="${s.running.ctx.cluster.status().nodeId}"]`).waitFor();
    assert.equal(await ui.page.getByText('start log').count(), 0, 'no "see the start log" note any more');
    await axe(ui, 'health (listeners)');
    assert.deepEqual(ui.problems, []);
  });

  it('the device list pages by cursor: 250 devices, 100 a page, next and previous in DeviceName order', async () => {
    const p = await s.request('POST', '/api/v1/products', { productName: 'Paged lamps' });
    assert.equal(p.status, 201);
    const pk = p.body.productKey as string;
    // Created out of name order: the list walks names.
    const names = Array.from({ length: 250 }, (_, i) => `pg-${String((i * 7) % 250).padStart(3, '0')}`);
    assert.equal((await s.request('POST', `/api/v1/products/${pk}/devices/batch?credentials=false`, { deviceNames: names })).status, 201);
    const sorted = [...names].sort();
    await ui.page.evaluate((pk) => {
      history.pushState(null, '', `/devices?product=${pk}`);
      dispatchEvent(new PopStateEvent('popstate'));
    }, pk);
    const rowNames = () => ui.page.locator('tr[data-device]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-device')));
    const pageIs = async (from: number, to: number, label: string, list: string[] = sorted) => {
      await ui.page.waitForFunction(([first, n]) => {
        const rows = document.querySelectorAll('tr[data-device]');
        return rows.length === n && rows[0]?.getAttribute('data-device') === first;
      }, [list[from]!, to - from] as const);
      assert.deepEqual(await rowNames(), list.slice(from, to));
      assert.equal(await ui.page.locator('[data-field="page"]').innerText(), label);
    };
    const pager = ui.page.getByRole('navigation', { name: en['pager.label'] });
    await pageIs(0, 100, 'Page 1 of 3 (250 in all)');
    assert.ok(await pager.getByRole('button', { name: en['pager.prev'] }).isDisabled());
    await pager.getByRole('button', { name: en['pager.next'] }).click();
    await pageIs(100, 200, 'Page 2 of 3 (250 in all)');
    await pager.getByRole('button', { name: en['pager.next'] }).click();
    await pageIs(200, 250, 'Page 3 of 3 (250 in all)');
    assert.ok(await pager.getByRole('button', { name: en['pager.next'] }).isDisabled());
    await pager.getByRole('button', { name: en['pager.prev'] }).click();
    await pageIs(100, 200, 'Page 2 of 3 (250 in all)');
    await pager.getByRole('button', { name: en['pager.prev'] }).click();
    await pageIs(0, 100, 'Page 1 of 3 (250 in all)');
    // A name search pages by cursor too (no total: "page n").
    await ui.page.getByLabel(en['device.search']!).fill('1');
    await ui.page.getByRole('button', { name: en['common.search'] }).click();
    const ones = sorted.filter((n) => n.includes('1'));
    assert.ok(ones.length > 100 && ones.length < 200, String(ones.length));
    await pageIs(0, 100, 'Page 1', ones);
    await pager.getByRole('button', { name: en['pager.next'] }).click();
    await pageIs(100, ones.length, 'Page 2', ones);
    await pager.getByRole('button', { name: en['pager.prev'] }).click();
    await pageIs(0, 100, 'Page 1', ones);
    await axe(ui, 'devices (paged)');
    assert.deepEqual(ui.problems, []);
  });

  it('API errors are in Chinese by their code, next to their field; English keeps the server message', async () => {
    await go(ui, 'nav.products');
    await ui.page.getByLabel(en['nav.language']!).selectOption('zh');
    await ui.page.locator('html[lang="zh-CN"]').waitFor();
    const form = ui.page.locator('form[aria-labelledby="create-product-h"]');
    await form.getByLabel(zh['product.name']!).fill('ab');
    await form.getByRole('button', { name: zh['product.createButton'] }).click();
    await ui.page.waitForFunction(() => document.querySelector('input[name="productName"]')?.getAttribute('aria-invalid') === 'true');
    const describedBy = (await form.getByLabel(zh['product.name']!).getAttribute('aria-describedby')) ?? '';
    const errText = await ui.page.locator(`[id="${describedBy.split(' ')[0]}"]`).innerText();
    assert.equal(errText, zh['error.INVALID_ARGUMENT.field']!.replace('{field}', 'productName'));
    assert.ok(!/[a-z]{4,} [a-z]{3,}/.test(errText), `no English words: ${errText}`);
    // A product-level error (not a field): deleting a product that still has devices.
    const pk = (await s.request('GET', '/api/v1/products?limit=1000')).body.items.find((p: any) => p.productName === 'Paged lamps').productKey as string;
    await ui.page.evaluate((pk) => {
      history.pushState(null, '', `/products/${pk}`);
      dispatchEvent(new PopStateEvent('popstate'));
    }, pk);
    await ui.page.locator('[data-action="delete-product"]').click();
    await ui.page.getByRole('dialog').getByRole('button', { name: zh['product.delete'], exact: true }).click();
    await ui.page.getByText(zh['error.PRODUCT_HAS_DEVICES']!).waitFor();
    await ui.page.getByLabel(zh['nav.language']!).selectOption('en');
    await ui.page.locator('html[lang="en"]').waitFor();
  });

  it('a read-scope token sees no secret and no write action; revoking it mid-session sends it back to sign-in', async () => {
    const created = await s.request('POST', '/api/v1/tokens', { name: 'viewer', scope: 'read' });
    assert.equal(created.status, 201);
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    ctx.setDefaultTimeout(8_000);
    try {
      const w = await open(ctx);
      await signIn(w, created.body.token);
      await w.page.locator('.who[data-scope="read"]').waitFor();
      const pk = state.productKey!;
      await w.page.evaluate((pk) => {
        history.pushState(null, '', `/devices/${pk}/lamp-0001`);
        dispatchEvent(new PopStateEvent('popstate'));
      }, pk);
      await w.page.locator('[data-field="status"]').waitFor();
      assert.equal(await w.page.locator('[data-action^="reveal-"], [data-action="disable"], [data-action="delete"], [data-action="rotate"], [data-action="reset"]').count(), 0);
      assert.ok(!(await w.page.content()).includes(state.deviceSecret!), 'no device secret on the page');
      await axe(w, 'device detail (read scope)');
      await w.page.evaluate((pk) => {
        history.pushState(null, '', `/products/${pk}`);
        dispatchEvent(new PopStateEvent('popstate'));
      }, pk);
      await w.page.locator('[data-field="productKey"]').waitFor();
      assert.equal(await w.page.locator('[data-action^="reveal-"], [data-action="delete-product"]').count(), 0);
      assert.equal(await w.page.getByRole('button', { name: en['common.save'] }).count(), 0);
      await go(w, 'nav.products');
      assert.equal(await w.page.getByRole('heading', { name: en['product.create'] }).count(), 0);
      await go(w, 'nav.credentials');
      await w.page.getByText(en['credentials.adminOnly']!).waitFor();
      assert.deepEqual(w.problems, []);

      // Revoke the token while the session is open: the next call (or the stream's end) signs out.
      assert.equal((await s.request('DELETE', `/api/v1/tokens/${created.body.id}`)).status, 204);
      // Whichever comes first: the stream's end (the server closes it on revoke) or the next API
      // call (the menu click) gets a 401, and the console drops the token and shows sign-in.
      await w.page
        .getByRole('navigation', { name: en['nav.label'] })
        .getByRole('link', { name: en['nav.products'], exact: true })
        .click({ timeout: 1_000 })
        .catch(() => undefined);
      await w.page.getByTestId('session-ended').waitFor({ timeout: 10_000 });
      await w.page.getByLabel(en['signin.token']!).waitFor();
    } finally {
      await ctx.close();
    }
  });
});
