// The dashboard in a real browser: Debian's headless Chromium, driven by playwright-core.
// Starts `qalxan serve` on a fresh data folder, reports events through the API, logs in through
// the login page, checks the overview's counters and charts, creates an institution through its
// form, and saves screenshots (light, dark, phone) and the OpenAPI document under
// tests/browser/out/.
//
// Usage: QALXAN_BIN=target/debug/qalxan node tests/browser/dashboard.mjs
import { chromium } from 'playwright-core';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import readline from 'node:readline';

const here = dirname(fileURLToPath(import.meta.url));
const bin = process.env.QALXAN_BIN || join(here, '../../target/debug/qalxan');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const out = join(here, 'out');
mkdirSync(out, { recursive: true });
const data = mkdtempSync(join(tmpdir(), 'qalxan-browser-'));

function cli(...args) {
  return execFileSync(bin, [...args, '--data', data], { encoding: 'utf8' }).trim();
}

function startServer() {
  const child = spawn(bin, ['serve', '--data', data, '--listen', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let password = null;
    const timer = setTimeout(() => reject(new Error('qalxan serve did not start in 60 s')), 60_000);
    child.on('exit', (code) => reject(new Error(`qalxan serve exited with ${code}`)));
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      const p = line.trim().match(/^password: (\S+)$/);
      if (p) password = p[1];
      const m = line.match(/serving the dashboard and API on (http:\/\/\S+?)\/?$/);
      if (m) {
        clearTimeout(timer);
        resolve({ child, base: m[1], password });
      }
    });
  });
}

async function post(base, token, path, body) {
  const r = await fetch(base + path, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  assert.equal(r.status, 201, `${path}: ${text}`);
  return JSON.parse(text);
}

const institution = cli('institution', 'add', 'Ministry of Digital Development', '--sector', 'government');
const token = cli('token', 'create', '--name', 'browser-test-sensor', '--role', 'sensor');
const idsToken = cli('token', 'create', '--name', 'browser-test-ids', '--role', 'sensor');
// Two incidents already open, from the shell.
cli('incident', 'open', '--title', 'Defacement of a school site', '--category', 'intrusions/application-compromise');
cli('incident', 'open', '--title', 'Phishing of tax payers', '--category', 'fraud/phishing', '--severity', 'high');
const server = await startServer();
// Whatever happens below, the server does not outlive this script.
process.on('exit', () => server.child.kill('SIGTERM'));
assert.ok(server.password, 'the first start prints the admin password');
const { base } = server;

// What the parts of the platform would report: a day of blocks, a flood, detections, victims.
const now = Date.now();
const events = [];
for (let h = 0; h < 24; h++) {
  events.push({ kind: 'waf.blocked', count: 40 + ((h * 37) % 90), institution_id: Number(institution),
    occurred_at: new Date(now - h * 3_600_000).toISOString() });
}
events.push({ kind: 'ddos.detected', value: 48000, severity: 'critical', occurred_at: new Date(now - 5 * 3_600_000).toISOString() });
events.push({ kind: 'scan.infected', count: 7 }, { kind: 'doc.neutralized', count: 3 });
events.push({ kind: 'intel.indicator', count: 120 });
events.push({ kind: 'incident.victim', count: 5, institution_id: Number(institution) });
await post(base, token, '/api/v1/events', { events });
// The OpenAPI document, for .ci/run to check with an independent validator.
writeFileSync(join(out, 'openapi.json'), await (await fetch(base + '/api/v1/openapi.json')).text());
const blocked = events.filter((e) => e.kind === 'waf.blocked').reduce((n, e) => n + e.count, 0);

const browser = await chromium.launch({
  executablePath: chromiumPath,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
});
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const response = await page.goto(base + '/');
  assert.ok(page.url().includes('/login'), `unauthenticated visit lands on the login page, got ${page.url()}`);
  assert.equal(response.status(), 200);

  await page.fill('input[name=username]', 'admin');
  await page.fill('input[name=password]', 'wrong password');
  await page.click('button[type=submit]');
  assert.match(await page.textContent('p.error'), /Wrong user name or password/);

  await page.fill('input[name=username]', 'admin');
  await page.fill('input[name=password]', server.password);
  await Promise.all([page.waitForURL(base + '/'), page.click('button[type=submit]')]);

  const total = async (figure) => (await page.textContent(`[data-figure="${figure}"] [data-total]`)).trim();
  assert.equal(await total('waf.blocked'), blocked.toLocaleString('en-US'));
  assert.equal(await total('ddos.detected'), '1');
  assert.equal(await total('scan.infected'), '7');
  assert.equal(await total('doc.neutralized'), '3');
  assert.equal(await total('intel.indicator'), '120');
  assert.equal(await total('incident.open'), '2');
  assert.equal(await total('incident.victim'), '5');
  assert.match(await page.textContent('[data-figure="ddos.detected"]'), /peak 48,000 requests\/s/);
  assert.equal(await page.locator('[data-figure="waf.blocked"] svg rect.bar').count(), 24);
  const bars = await page.locator('[data-figure="waf.blocked"] svg rect.bar').evaluateAll(
    (rects) => rects.filter((r) => Number(r.getAttribute('height')) > 0).length);
  assert.ok(bars >= 23, `blocks spread over the day draw bars, got ${bars}`);
  await page.screenshot({ path: join(out, 'overview.png'), fullPage: true });

  await page.click('a[href="/?period=30d"]');
  assert.equal(await page.locator('[data-figure="waf.blocked"] svg rect.bar').count(), 30);

  // An institution through its form; the CSRF token travels with it.
  await page.goto(base + '/institutions/new');
  await page.fill('input[name=name]', 'State Oil Company');
  await page.fill('input[name=sector]', 'Energy');
  await page.fill('textarea[name=domains]', 'oil.example\nportal.oil.example');
  await page.fill('textarea[name=ip_ranges]', '203.0.113.0/24');
  await Promise.all([page.waitForURL(/\/institutions\/\d+\?notice=created/), page.click('form.card button[type=submit]')]);
  await page.goto(base + '/institutions');
  assert.match(await page.textContent('table'), /State Oil Company/);
  await page.goto(base + '/audit');
  assert.match(await page.textContent('table'), /user:admin/);
  await page.screenshot({ path: join(out, 'audit.png'), fullPage: true });

  const dark = await browser.newContext({ colorScheme: 'dark', viewport: { width: 1280, height: 900 },
    storageState: await context.storageState() });
  const darkPage = await dark.newPage();
  await darkPage.goto(base + '/');
  const background = await darkPage.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(background, 'rgb(15, 20, 26)', 'dark theme follows the system setting');
  await darkPage.screenshot({ path: join(out, 'overview-dark.png'), fullPage: true });

  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2,
    isMobile: true, storageState: await context.storageState() });
  const phonePage = await phone.newPage();
  await phonePage.goto(base + '/');
  const overflow = await phonePage.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the overview fits a phone's width (overflows by ${overflow}px)`);
  await phonePage.screenshot({ path: join(out, 'overview-phone.png'), fullPage: true });

  // The document sandbox: upload through the form, read the verdict, download the safe copy.
  const sample = join(here, '../../../shared/data/docs/oletools/encrypted/autostart-encrypt-standardpassword.xls');
  if (existsSync(sample)) {
    await page.goto(base + '/documents');
    await page.setInputFiles('input[type=file]', sample);
    await Promise.all([page.waitForURL(/\/documents\/\d+$/), page.click('form.card button[type=submit]')]);
    assert.equal(await page.getAttribute('[data-verdict]', 'data-verdict'), 'malicious');
    assert.match(await page.textContent('table.indicators'), /macro\.autoexec/);
    assert.match(await page.textContent('details pre'), /Sub Auto_Open\(\)/);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('a.download')]);
    assert.match(download.suggestedFilename(), /\.disarmed\.xls$/);
    const head = readFileSync(await download.path()).subarray(0, 8).toString('hex');
    assert.equal(head, 'd0cf11e0a1b11ae1', 'the safe copy is still an OLE2 workbook');
    await page.screenshot({ path: join(out, 'document.png'), fullPage: true });
    await page.goto(base + '/documents');
    assert.match(await page.textContent('table'), /autostart-encrypt-standardpassword\.xls/);
  } else {
    console.log(`skipping the document page: ${sample} is absent`);
  }

  // Threat intelligence: paste values, read the preview, import, search, open one.
  await page.goto(base + '/intel');
  await page.fill('textarea[name=values]', 'phish-bank.example\nhxxp://login.phish-bank[.]example/pay\n1.1.1.1\n');
  await page.selectOption('form[action="/intel/import"] select[name=tlp]', 'TLP:GREEN');
  await Promise.all([page.waitForURL(/\/intel\/import$/), page.click('form[action="/intel/import"] button[type=submit]')]);
  assert.equal(await page.getAttribute('[data-preview-added]', 'data-preview-added'), '3');
  assert.match(await page.textContent('main'), /public-dns-resolvers/);
  assert.match(await page.textContent('table'), /TLP:GREEN/, 'the TLP chosen for unmarked values');
  await page.screenshot({ path: join(out, 'intel-preview.png'), fullPage: true });
  await Promise.all([page.waitForURL(/\/intel\?imported=3/), page.click('form[action="/intel/import"] button[type=submit]')]);
  assert.match(await page.textContent('p.notice'), /Imported: 3 new indicators/);
  await page.fill('input[name=q]', 'phish-bank');
  await Promise.all([page.waitForURL(/q=phish-bank/), page.click('form.search button[type=submit]')]);
  const rows = await page.locator('table.indicators tbody tr').count();
  assert.equal(rows, 2, 'the domain and the URL match the search');
  await Promise.all([page.waitForURL(/\/intel\/\d+$/), page.click('table.indicators tbody tr:first-child a')]);
  assert.equal(await page.getAttribute('[data-blocking]', 'data-blocking'), 'true');
  await page.screenshot({ path: join(out, 'intel-indicator.png'), fullPage: true });

  // Incident response: two parts raise the same alert; it is one alert with a count of 2,
  // promoted to an incident that gets a team, a task, an observable, victims and a closure.
  const alert = { rule: 'ids.exploit', title: 'Exploit attempts on the e-services portal', severity: 'high',
    institution_id: Number(institution), observables: [{ value: '198.51.100.77' }] };
  // The monitor is open before they arrive: it follows them live, without reloading.
  await page.goto(base + '/alerts');
  await page.waitForSelector('#live-state[data-live=on]');
  const openBefore = Number((await page.textContent('strong[data-count=open]')).replace(/,/g, ''));
  await page.evaluate(() => { window.stillTheSamePage = true; });
  await post(base, token, '/api/v1/alerts', { alerts: [alert] });
  const row = page.locator('tr', { hasText: 'Exploit attempts on the e-services portal' });
  await row.waitFor();
  await post(base, idsToken, '/api/v1/alerts', { alerts: [alert] });
  await page.waitForFunction(() => {
    const r = [...document.querySelectorAll('#alerts tbody tr')].find((tr) => tr.textContent.includes('e-services portal'));
    return r && r.querySelector('[data-count]').textContent.trim() === '2';
  });
  assert.equal(await page.locator('#alerts tbody tr', { hasText: 'e-services portal' }).count(), 1, 'one row, updated in place');
  assert.ok(await page.evaluate(() => window.stillTheSamePage === true), 'the monitor did not reload');
  await page.waitForFunction((n) => document.querySelector('strong[data-count=open]').textContent === String(n + 1), openBefore);
  assert.match(await row.textContent(), /browser-test-sensor.*browser-test-ids/);
  await page.screenshot({ path: join(out, 'alerts.png'), fullPage: true });
  await row.locator('input[type=checkbox]').check();
  await page.selectOption('select[name=category]', 'intrusion-attempts/exploit');
  await Promise.all([page.waitForURL(/\/incidents\/\d+\?done=created/), page.click('button[value=promote]')]);
  const incidentUrl = page.url().split('?')[0];
  assert.match(await page.textContent('main'), /Intrusion attempts \/ exploit/);
  await page.selectOption('form[action$="/team"] select[name=lead]', { label: 'admin' });
  await Promise.all([page.waitForURL(/done=saved/), page.click('form[action$="/team"] button')]);
  assert.match(await page.textContent('#team'), /admin \(lead\)/);
  await page.fill('form[action$="/task"] input[name=title]', 'Patch the portal');
  await Promise.all([page.waitForURL(/done=saved/), page.click('form[action$="/task"] button')]);
  await page.fill('#add-observable input[name=value]', 'hxxps://e-services-login[.]example/');
  await Promise.all([page.waitForURL(/done=saved/), page.click('#add-observable button')]);
  assert.equal(await page.locator('#observables a[href^="/intel/"]').count(), 1, 'the URL added is an indicator');
  await Promise.all([page.waitForURL(/done=saved/), page.click('button[data-to-intel="198.51.100.77"]')]);
  assert.equal(await page.locator('#observables a[href^="/intel/"]').count(), 2, 'and the attacker address, sent on');
  await page.selectOption('form[action$="/victim"] select[name=institution]', institution);
  await page.selectOption('form[action$="/victim"] select[name=role]', 'administrative');
  await page.fill('form[action$="/victim"] input[name=count]', '3');
  await Promise.all([page.waitForURL(/done=saved/), page.click('form[action$="/victim"] button')]);
  await page.fill('form[action$="/comment"] textarea', 'Portal patched, sessions revoked.');
  await Promise.all([page.waitForURL(/done=saved/), page.click('form[action$="/comment"] button')]);
  await page.selectOption('form[action$="/status"] select[name=status]', 'closed');
  await Promise.all([page.waitForURL(/error=/), page.click('form[action$="/status"] button')]);
  assert.match(await page.textContent('p.error'), /reason/);
  await page.selectOption('form[action$="/status"] select[name=status]', 'closed');
  await page.fill('form[action$="/status"] input[name=reason]', 'resolved');
  await Promise.all([page.waitForURL(/done=saved/), page.click('form[action$="/status"] button')]);
  assert.equal(await page.getAttribute('[data-status]', 'data-status'), 'closed');
  assert.ok(await page.locator('#timeline li[data-kind=comment]').count());
  await page.screenshot({ path: join(out, 'incident.png'), fullPage: true });
  assert.equal(page.url().split('?')[0], incidentUrl);

  // The periodic report counts what was put in, with charts and a PDF.
  await page.goto(base + '/reports');
  assert.equal((await page.textContent('[data-figure="incidents-opened"]')).trim(), '3');
  assert.equal((await page.textContent('[data-figure="incidents-closed"]')).trim(), '1');
  assert.match(await page.textContent('#victims'), /^3 employees from 1 institution fell victim, 100 % administrative/);
  assert.ok(await page.locator('svg.hbars rect.bar').count() >= 3);
  await page.screenshot({ path: join(out, 'report.png'), fullPage: true });
  const [pdf] = await Promise.all([page.waitForEvent('download'), page.click('a[data-report=pdf]')]);
  assert.equal(readFileSync(await pdf.path()).subarray(0, 5).toString(), '%PDF-');

  // Logging out ends the session.
  await Promise.all([page.waitForURL(/\/login/), page.click('form.logout button')]);
  await page.goto(base + '/');
  assert.ok(page.url().includes('/login'));
  console.log(`browser test passed; screenshots in ${out}`);
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  await browser.close();
  server.child.kill('SIGTERM');
  rmSync(data, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
