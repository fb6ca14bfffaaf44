// The page at the edge URL in a real headless Chromium (Debian's, driven by playwright-core; never
// a downloaded browser). Run by tests/test_browser.py, which starts a closed stack and passes:
//   EDGE_URL, TOKEN, OPERATOR_TOKEN, OUT_DIR (screenshots), CHROMIUM (default /usr/bin/chromium).
// Talks to the Python test on stdout/stdin: prints `flip <region>` and waits for `flipped` once
// that region's STATUS is 404 (the admin route is the test's, not the browser's).
'use strict';

const path = require('path');
const readline = require('readline');
const { chromium } = require('playwright-core');

const { EDGE_URL, TOKEN, OPERATOR_TOKEN, OUT_DIR } = process.env;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

const stdin = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const started = Date.now();
const log = (msg) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);

function check(cond, msg) { if (!cond) throw new Error(msg); }

async function shot(page, name) {
  await page.screenshot({ path: path.join(OUT_DIR, name + '.png'), fullPage: true });
  log(`screenshot ${name}.png`);
}

// The newest result: its title, the serving region, the attempts, and the item's fields.
async function newest(page, count) {
  await page.locator('#results > li').nth(count - 1).waitFor({ timeout: 15000 });
  const li = page.locator('#results > li').first();
  const text = async (sel) => (await li.locator(sel).count()) ? li.locator(sel).first().textContent() : null;
  return {
    ok: await li.evaluate((n) => n.classList.contains('ok')),
    title: await text('h3'),
    servedBy: await text('[data-fact=region] b'),
    attempts: await text('[data-fact=attempts] b'),
    latency: await text('[data-fact=latency] b'),
    region: await text('dd[data-key=region]'),
    version: await text('dd[data-key=version]'),
    updatedAt: await text('dd[data-key=updated_at]'),
    note: await text('dd[data-key=note]'),
    message: await text('.message'),
  };
}

const regionState = (page, name) => page.locator(`#regions li[data-region="${name}"]`).getAttribute('data-state');

async function enterTokens(page) {
  await page.getByLabel(/^Token/).fill(TOKEN);
  await page.getByLabel('Operator token').fill(OPERATOR_TOKEN);
}

async function main() {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const page = await context.newPage();
    const problems = [];
    // Errors in the console (a CSP refusal among them) fail the test; the 401s asked for before
    // the tokens are entered are expected.
    page.on('console', (m) => {
      if (m.type() === 'error' && !/status of 401/.test(m.text())) problems.push('console: ' + m.text());
    });
    page.on('pageerror', (e) => problems.push('page error: ' + e.message));

    // 1. The page loads; without tokens the API says so, and so does the panel.
    await page.goto(EDGE_URL + '/');
    check(await page.title() === 'tandem', 'the page did not load');
    const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, textarea')]
      .filter((i) => !i.labels || !i.labels.length).map((i) => i.id));
    check(unlabelled.length === 0, `inputs without a label: ${unlabelled}`);
    await page.getByRole('button', { name: 'List recent items' }).click();
    let r = await newest(page, 1);
    check(!r.ok && /Token needed or invalid\. 401 token_missing/.test(r.message), `no-token list: ${JSON.stringify(r)}`);
    await page.getByText('The operator token is needed').waitFor({ timeout: 5000 });
    await shot(page, '01-loaded-no-token');

    // 2. Tokens in; the panel shows every region in service.
    await enterTokens(page);
    await page.getByText('Every region is in service.').waitFor({ timeout: 10000 });
    const regions = await page.locator('#regions li').evaluateAll((ls) => ls.map((l) => l.dataset.region));
    check(regions.length === 2, `panel regions: ${regions}`);
    await shot(page, '02-tokens-panel');

    // 3. Create an item: it comes back with the region that stored it.
    const firstId = 'browser-' + Math.random().toString(16).slice(2, 10);
    await page.getByLabel('Item id (optional)').fill(firstId);
    await page.getByLabel('Note').fill('made in a real browser');
    await page.getByRole('button', { name: 'Create' }).click();
    r = await newest(page, 2);
    check(r.ok && r.title === 'POST /items', `first create: ${JSON.stringify(r)}`);
    const preferred = r.servedBy;
    check(regions.includes(preferred) && r.region === preferred, `first create's region: ${JSON.stringify(r)}`);
    check(r.version === '1' && /^\d{4}-\d\d-\d\dT/.test(r.updatedAt) && r.note === 'made in a real browser'
      && /^\d+$/.test(r.attempts) && /ms/.test(r.latency), `first create's item: ${JSON.stringify(r)}`);
    log(`first item ${firstId} stored in ${preferred} (${r.attempts} attempt(s), ${r.latency})`);
    await shot(page, '03-created');

    // 4. The test flips the preferred region's STATUS to 404; the panel marks it out of service.
    const other = regions.find((n) => n !== preferred);
    console.log(`flip ${preferred}`);
    const answer = await stdin.next();
    check(!answer.done && answer.value.trim() === 'flipped', `the test did not flip: ${JSON.stringify(answer)}`);
    await page.locator(`#regions li[data-region="${preferred}"].bad`).waitFor({ timeout: 30000 });
    check(await regionState(page, preferred) === 'drained', `state of ${preferred}: ${await regionState(page, preferred)}`);
    check(await regionState(page, other) === 'healthy', `state of ${other}: ${await regionState(page, other)}`);
    await page.getByText(`Out of service: ${preferred}.`).waitFor({ timeout: 5000 });
    log(`panel marks ${preferred} drained`);
    await shot(page, '04-region-drained');

    // 5. Another create, by keyboard only: served by the other region.
    check(await page.getByLabel('Note').inputValue() === '', 'the create form was not cleared');
    await page.getByLabel('Note').focus();
    await page.keyboard.type('made after the failover');
    await page.keyboard.press('Tab');
    check(await page.evaluate(() => document.activeElement.textContent) === 'Create', 'Tab from the note does not reach Create');
    await page.keyboard.press('Enter');
    r = await newest(page, 3);
    check(r.ok && r.servedBy === other && r.region === other, `second create: ${JSON.stringify(r)}`);
    check(await regionState(page, preferred) === 'drained', `${preferred} is no longer marked`);
    log(`second item stored in ${other} (${r.attempts} attempt(s), ${r.latency})`);
    await shot(page, '05-served-by-other-region');

    // 6. The first item, fetched: served by the other region, written in the first.
    await page.getByLabel('Item id', { exact: true }).fill(firstId);
    await page.getByRole('button', { name: 'Fetch' }).click();
    r = await newest(page, 4);
    check(r.ok && r.servedBy === other && r.region === preferred, `fetch: ${JSON.stringify(r)}`);
    await shot(page, '06-fetched');
    check(problems.length === 0, `browser errors: ${problems.join('; ')}`);

    // 7. A phone-sized viewport: nothing wider than the screen.
    const phone = await browser.newPage({ viewport: { width: 375, height: 667 }, isMobile: true, hasTouch: true });
    await phone.goto(EDGE_URL + '/');
    await enterTokens(phone);
    await phone.locator(`#regions li[data-region="${preferred}"].bad`).waitFor({ timeout: 10000 });
    await phone.getByRole('button', { name: 'List recent items' }).click();
    r = await newest(phone, 1);
    check(r.ok && r.servedBy === other, `phone list: ${JSON.stringify(r)}`);
    const width = await phone.evaluate(() => document.documentElement.scrollWidth);
    check(width <= 375, `the page is ${width} px wide on a 375 px screen`);
    await phone.evaluate(() => window.scrollTo(0, 0));
    await phone.screenshot({ path: path.join(OUT_DIR, '07-phone-375x667.png') });
    await shot(phone, '08-phone-full');
  } finally {
    await browser.close();
  }
}

main().then(() => { log('ok'); process.exit(0); }, (e) => {
  console.error(e && e.stack || e);
  process.exit(1);
});
