// End-to-end test of the demo page in Debian's Chromium (never a downloaded browser), driven by
// playwright-core. It serves web/ on 127.0.0.1 itself, uploads a real CIFAR-10 image converted
// from the data pack at test time (or a generated one without it), checks scores, runs a short
// attack on both detectors (the chart grows, the scores move the requested way, the result is
// the best point found), downloads the adversarial PNG and checks its L-infinity distance,
// checks a bad upload shows an error, and repeats with WebGPU switched off (the CPU fallback).
// The test's images are written and read back by Rust (no PNG codec here).
// Then: the verdicts on the page's samples, the engine the page picks, Stop mid-attack on both engines, a new image during an
// attack, fresh seeds per run, the keyboard and the accessible names, the page's rough edges
// (invalid numbers, focus, legend, names, stale results), memory after a huge image, the GPU
// device lost mid-attack.
// Prints "N passed, M failed".
import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { readFileSync, writeFileSync, mkdirSync, existsSync, mkdtempSync, rmSync, truncateSync } from 'node:fs';
import { join, extname, dirname, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const web = join(root, 'web');
const out = join(root, 'target', 'browser');
mkdirSync(out, { recursive: true });
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const BASE_FLAGS = ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// ---- the test's images, written and read by Rust (crates/atd-core/examples/test_images.rs) ----
const temp = mkdtempSync(join(tmpdir(), 'atd-e2e-'));
function writeTemp(name, bytes) { const p = join(temp, name); writeFileSync(p, bytes); return p; }
const dataPack = process.env.ATD_DATA || join(root, '..', 'shared', 'data');
function testImagesTool(args) {
  return execFileSync('cargo', ['run', '-q', '--release', '-p', 'atd-core', '--example', 'test_images', '--', ...args], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
}
testImagesTool(['write', temp, join(dataPack, 'cifar10-test.bin')]);
// A real CIFAR-10 test image (record 7, upscaled 2x so the page has to resize it), or a
// generated one without the data pack.
function testImage() {
  const real = existsSync(join(temp, 'cifar-test-7.png'));
  return { path: join(temp, real ? 'cifar-test-7.png' : 'generated.png'), real };
}
// A PNG as the model sees it: { width, height, chw } (32x32 CHW bytes).
const modelInput = (path) => JSON.parse(testImagesTool(['chw', path]));

// ---- static server on 127.0.0.1 ---------------------------------------------------------
const MIME = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm', '.json': 'application/json', '.png': 'image/png', '.safetensors': 'application/octet-stream' };
// web/ at the root; the published site (pkg-scripts/build-web.sh's target/site) under a
// sub-path, as a project page of a static host serves it, with .wasm as a host that does not
// know the type would send it.
const site = join(root, 'target', 'site');
const SUB_PATH = '/published/atd/';
const requests = [];
const server = createServer((req, res) => {
  requests.push(`${req.method} ${req.url}`);
  const pathname = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  const [base, rel] = pathname.startsWith(SUB_PATH) ? [site, pathname.slice(SUB_PATH.length - 1)] : [web, pathname];
  const path = join(base, rel.replace(/\/$/, '/index.html'));
  if (!path.startsWith(base) || !existsSync(path)) { res.writeHead(404); return res.end('not found'); }
  const type = base === site && extname(path) === '.wasm' ? 'application/octet-stream' : MIME[extname(path)];
  res.writeHead(200, { 'content-type': type || 'application/octet-stream' });
  res.end(readFileSync(path));
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${server.address().port}/`;

// ---- checks ------------------------------------------------------------------------------
let passed = 0, failed = 0;
async function check(name, fn) {
  const started = Date.now();
  try { await fn(); passed++; console.log(`ok   ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`); }
  catch (err) { failed++; console.log(`FAIL ${name}: ${err.stack || err}`); }
}
function assert(cond, message) { if (!cond) throw new Error(message); }

// engine: the page's ?engine= (auto when omitted); viewport: its width in CSS pixels.
async function openPage(webgpu, engine = null, width = 1000) {
  const args = webgpu ? ['--enable-unsafe-webgpu', ...BASE_FLAGS] : BASE_FLAGS;
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args });
  const page = await browser.newPage({ acceptDownloads: true, viewport: { width, height: 900 } });
  const logs = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  await page.goto(engine ? `${url}?engine=${engine}` : url);
  await page.waitForSelector('#status:is([data-state="ready"], [data-state="cpu"], [data-state="failed"])', { timeout: 120000 });
  return { browser, page, logs };
}

async function scoreOf(page, selector) {
  return Number(await page.getAttribute(selector, 'data-score'));
}

// Do `action` (an upload, a click on a sample) and wait for the ATD card's new score.
async function rescored(page, action) {
  const previous = await page.getAttribute('#card-atd .score', 'data-score');
  await action();
  await page.waitForFunction((prev) => { const s = document.querySelector('#card-atd .score').dataset.score; return s !== undefined && s !== prev; }, previous, { timeout: 60000 });
}
const upload = (page, path) => rescored(page, () => page.setInputFiles('#file', path));

// Start an attack of `steps` steps and wait until the chart shows `points` points.
async function startAttack(page, steps, points = 1) {
  await page.fill('#steps', String(steps));
  await page.click('#run');
  await page.waitForFunction((n) => Number(document.querySelector('#chart').dataset.points) >= n, points, { timeout: 120000 });
}

// Each detector's chart series (score per step), read from the page's attack state.
async function seriesOf(page) {
  return page.evaluate(() => {
    const out = {};
    for (const key of ['atd', 'baseline']) out[key] = JSON.parse(document.querySelector('#chart').dataset[`series${key[0].toUpperCase()}${key.slice(1)}`] || '[]');
    return out;
  });
}

async function attackFlow(page, steps, label) {
  const image = testImage();
  await upload(page, image.path);
  const before = { atd: await scoreOf(page, '#card-atd .score'), baseline: await scoreOf(page, '#card-baseline .score') };
  for (const k of ['atd', 'baseline']) assert(before[k] >= 0 && before[k] <= 1, `${k} score ${before[k]} is not a probability`);
  const direction = await page.inputValue('#direction');
  await page.fill('#steps', String(steps));
  await page.click('#run');
  // The chart grows while the attack runs.
  await page.waitForFunction(() => Number(document.querySelector('#chart').dataset.points) > 0, null, { timeout: 120000 });
  await page.waitForSelector('#attack-panel[data-state="done"]', { timeout: 600000 });
  const points = Number(await page.getAttribute('#chart', 'data-points'));
  assert(points === 2 * (steps + 1), `chart has ${points} points, expected ${2 * (steps + 1)}`);
  const after = { atd: await scoreOf(page, '#result-atd .summary'), baseline: await scoreOf(page, '#result-baseline .summary') };
  const sign = direction === 'out' ? -1 : 1;
  // The result is the best point of the attack, not its last step. The reported score is that
  // of the image quantised to 8 bits, which moves a sharp model's score (the standard baseline's)
  // by a few hundredths: it must be within 0.1 of the best score on the chart, and nearer to it
  // than to the last step's where those two differ by more than that rounding (0.05).
  const series = await seriesOf(page);
  for (const k of ['atd', 'baseline']) {
    const best = sign > 0 ? Math.max(...series[k]) : Math.min(...series[k]);
    const last = series[k][series[k].length - 1];
    const fromBest = Math.abs(after[k] - best);
    const distinct = Math.abs(best - last) > 0.05;
    assert(fromBest <= 0.1 && (!distinct || fromBest <= Math.abs(after[k] - last)), `${label}: ${k} reports ${after[k]}, the best point on the chart was ${best}, the last ${last} (${series[k].join(', ')})`);
  }
  // Both moved the requested way (ATD may barely move: it is the robust one); the baseline moved.
  for (const k of ['atd', 'baseline']) assert(sign * (after[k] - before[k]) >= -1e-3, `${label}: ${k} moved the wrong way: ${before[k]} -> ${after[k]} (${direction})`);
  assert(sign * (after.baseline - before.baseline) > 0, `${label}: the baseline did not move: ${before.baseline} -> ${after.baseline}`);
  // The downloaded PNG stays within eps of the 32x32 input the models saw.
  const eps = Number(await page.inputValue('#eps'));
  const clean = await page.evaluate(() => Array.from(document.querySelector('#input').getContext('2d').getImageData(0, 0, 32, 32).data));
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#result-baseline .download')]);
  const saved = join(temp, `${label}-adversarial.png`);
  await download.saveAs(saved);
  const png = modelInput(saved);
  assert(png.width === 32 && png.height === 32, `downloaded PNG is ${png.width}x${png.height}`);
  let linf = 0;
  for (let i = 0; i < 32 * 32; i++) for (let c = 0; c < 3; c++) linf = Math.max(linf, Math.abs(png.chw[c * 1024 + i] - clean[i * 4 + c]));
  assert(linf <= eps && linf > 0, `downloaded PNG has L-inf ${linf}/255 from the input, eps ${eps}/255`);
  const msPerStep = {
    atd: Number(await page.getAttribute('#result-atd .summary', 'data-ms-per-step')),
    baseline: Number(await page.getAttribute('#result-baseline .summary', 'data-ms-per-step')),
  };
  return { before, after, direction, linf, real: image.real, msPerStep };
}

let summary = {};
await check('WebGPU page: scores, live attack, download within eps, bad upload', async () => {
  const { browser, page, logs } = await openPage(true, 'gpu');
  try {
    const state = await page.getAttribute('#status', 'data-state');
    assert(state === 'ready', `status ${state}: ${await page.textContent('#status')}\n${logs.join('\n')}`);
    assert((await page.getAttribute('#status', 'data-engine')) === 'gpu', 'not on WebGPU');
    summary.webgpu = await attackFlow(page, 10, 'webgpu');
    summary.webgpu.status = await page.textContent('#status');
    await page.screenshot({ path: join(out, 'demo.png'), fullPage: true });
    // A bad upload shows an error and the page keeps working.
    await page.setInputFiles('#file', writeTemp('notes.txt', Buffer.from('not an image')));
    await page.waitForSelector('#error:not([hidden])', { timeout: 30000 });
    const error = await page.textContent('#error');
    assert(/image/i.test(error), `unexpected error text: ${error}`);
    await page.click('[data-sample="shapes"]');
    await page.waitForSelector('#error[hidden]', { state: 'attached', timeout: 30000 });
  } finally { await browser.close(); }
});

await check('without WebGPU: the CPU fallback scores and attacks', async () => {
  const { browser, page, logs } = await openPage(false);
  try {
    const state = await page.getAttribute('#status', 'data-state');
    assert(state === 'cpu', `status ${state}: ${await page.textContent('#status')}\n${logs.join('\n')}`);
    assert(/WebGPU/.test(await page.textContent('#status')), 'no message about missing WebGPU');
    summary.cpu = await attackFlow(page, 3, 'cpu');
  } finally { await browser.close(); }
});

await check('the samples: ATD calls the drawn ones OUT and at least 8 of the 10 CIFAR-10 test images IN', async () => {
  const { browser, page } = await openPage(false);
  try {
    const drawn = ['noise', 'shapes', 'gradient', 'stripes'];
    // The CIFAR-10 samples exist when the build found the data pack; they load after the page.
    const cifar = existsSync(join(web, 'samples', 'cifar', 'index.json'));
    if (cifar) await page.waitForFunction((n) => document.querySelectorAll('[data-sample]').length > n, drawn.length, { timeout: 30000 });
    const names = await page.$$eval('[data-sample]', (buttons) => buttons.map((b) => b.dataset.sample));
    const verdicts = {};
    for (const name of names) {
      await rescored(page, () => page.click(`[data-sample="${name}"]`));
      verdicts[name] = await page.$eval('#card-atd .score', (e) => (e.querySelector('.verdict-out') ? 'out' : e.querySelector('.verdict-in') ? 'in' : 'none'));
    }
    summary.samples = verdicts;
    const missed = drawn.filter((n) => verdicts[n] !== 'out');
    assert(missed.length === 0, `drawn samples not called OUT: ${missed.join(', ')} (${JSON.stringify(verdicts)})`);
    if (cifar) {
      const photos = names.filter((n) => !drawn.includes(n));
      const inCount = photos.filter((n) => verdicts[n] === 'in').length;
      assert(photos.length === 10 && inCount >= 8, `${inCount} of ${photos.length} CIFAR-10 samples IN: ${JSON.stringify(verdicts)}`);
    }
  } finally { await browser.close(); }
});

await check('engine choice: a software WebGPU adapter gives way to the faster CPU engine; the user can switch', async () => {
  const { browser, page, logs } = await openPage(true);
  try {
    const status = await page.textContent('#status');
    assert((await page.getAttribute('#status', 'data-engine')) === 'cpu', `auto picked WebGPU on SwiftShader: ${status}\n${logs.join('\n')}`);
    assert(/software adapter/.test(status), `the status does not say why: ${status}`);
    assert(!/\(\s*\)/.test(status), `the status names no adapter: ${status}`);
    await page.selectOption('#engine', 'gpu');
    await page.waitForSelector('#status[data-engine="gpu"][data-state="ready"]', { timeout: 120000 });
  } finally { await browser.close(); }
});

for (const engine of ['gpu', 'cpu']) {
  await check(`Stop mid-attack ends both cards within seconds (${engine} engine)`, async () => {
    const { browser, page, logs } = await openPage(engine === 'gpu', engine);
    try {
      await upload(page, testImage().path);
      await startAttack(page, 500, 3);
      const asked = Date.now();
      await page.click('#stop');
      await page.waitForSelector('#attack-panel[data-state="stopped"]', { timeout: 30000 });
      const seconds = (Date.now() - asked) / 1000;
      // A stop is honoured at each attack's next step: well under a second on an idle machine.
      // The bound only says Stop works promptly (a stop that is ignored runs for minutes): beside
      // a training run, with this browser at low priority, it took up to 3.3 s on SwiftShader
      // and 5.4 s on the CPU engine.
      assert(seconds < 8, `the attack ended ${seconds.toFixed(1)} s after Stop`);
      // The two detectors were attacked together: both stopped part-way with a best point.
      for (const key of ['atd', 'baseline']) {
        const card = await page.$eval(`#result-${key} .summary`, (e) => ({ state: e.dataset.state, steps: Number(e.dataset.steps), score: e.dataset.score, text: e.textContent }));
        assert(card.state === 'stopped' && card.steps < 500 && card.score !== undefined && /stopped after \d+ of 500 steps/.test(card.text), `${key} card: ${JSON.stringify(card)}`);
      }
      assert(!(await page.isDisabled('#run')), 'Run stays disabled after a stop');
      assert(!logs.some((l) => l.startsWith('pageerror')), logs.join('\n'));
    } finally { await browser.close(); }
  });
}

await check('a new image during an attack cancels it cleanly; fresh seeds per run; a fixed seed reproduces', async () => {
  const { browser, page, logs } = await openPage(false);
  try {
    await upload(page, testImage().path);
    await startAttack(page, 500, 2);
    await page.click('[data-sample="shapes"]');
    await page.waitForSelector('#attack-panel[data-state="cancelled"]', { timeout: 10000 });
    await page.waitForFunction(() => !document.querySelector('#run').disabled, null, { timeout: 60000 });
    for (const key of ['atd', 'baseline']) {
      const text = await page.textContent(`#result-${key} .summary`);
      assert(/cancelled|stopped/.test(text), `${key} card after a new image: ${text}`);
    }
    // The page still works: two short runs on the new image, each with its own seed.
    const runs = [];
    for (let i = 0; i < 2; i++) {
      await startAttack(page, 2);
      await page.waitForSelector('#attack-panel[data-state="done"]', { timeout: 120000 });
      runs.push({ seed: await page.getAttribute('#result-atd .summary', 'data-seed'), series: await seriesOf(page) });
    }
    assert(runs[0].seed !== runs[1].seed, `two runs used the same seed ${runs[0].seed}`);
    assert(JSON.stringify(runs[0].series) !== JSON.stringify(runs[1].series), 'two runs took identical paths');
    await page.fill('#seed', runs[0].seed);
    await startAttack(page, 2);
    await page.waitForSelector('#attack-panel[data-state="done"]', { timeout: 120000 });
    assert((await page.getAttribute('#result-atd .summary', 'data-seed')) === runs[0].seed, 'the typed seed was not used');
    assert(JSON.stringify(await seriesOf(page)) === JSON.stringify(runs[0].series), 'the same seed did not reproduce the run');
    assert(!logs.some((l) => l.startsWith('pageerror') || /recursive use/.test(l)), logs.join('\n'));
  } finally { await browser.close(); }
});

await check('keyboard and screen readers: the drop zone opens the picker, names, live status, chart text, legible at 390 px', async () => {
  const { browser, page } = await openPage(false, null, 390);
  try {
    // Enter must click the file input (which is what opens the picker). Counted in the page:
    // Playwright's "filechooser" event missed the picker in 2 of 4 runs here however long it waited.
    await page.evaluate(() => {
      window.pickerClicks = 0;
      document.querySelector('#file').addEventListener('click', () => { window.pickerClicks += 1; });
    });
    await page.locator('#drop').press('Enter');
    await page.waitForFunction(() => window.pickerClicks > 0, null, { timeout: 10000 })
      .catch(() => { throw new Error('Enter on the drop zone opened no file picker'); });
    assert(await page.getByRole('slider', { name: /epsilon/i }).count() === 1, 'the eps slider has no accessible name');
    // The status line is a live region (role status: polite), so its news is announced.
    assert(await page.getByRole('status').filter({ hasText: /engine/ }).count() === 1, 'the status line is not a live region');
    await upload(page, testImage().path);
    await startAttack(page, 2);
    await page.waitForSelector('#attack-panel[data-state="done"]', { timeout: 120000 });
    const label = await page.getAttribute('#chart', 'aria-label');
    assert(/ATD: score .* best .* Baseline: score/.test(label), `chart text alternative: ${label}`);
    const chart = await page.$eval('#chart', (c) => ({ pixels: c.width, shown: c.clientWidth, ratio: window.devicePixelRatio }));
    assert(Math.abs(chart.pixels / chart.ratio - chart.shown) <= 2, `the chart is drawn at ${chart.pixels} px and shown at ${chart.shown} px: its text shrinks`);
  } finally { await browser.close(); }
});

await check('rough edges: numbers refused by their field, focus, legend, names, live results, class probabilities, goal kept, stale results cleared', async () => {
  const { browser, page, logs } = await openPage(false, null, 390);
  const resultCards = () => page.$$eval('.result', (cards) => cards.map((c) => ({
    text: c.querySelector('.summary').textContent,
    link: !c.querySelector('.download').hidden,
    ink: [...c.querySelectorAll('canvas')].some((k) => k.getContext('2d').getImageData(0, 0, 32, 32).data.some((v) => v > 0)),
  })));
  const attackTwoSteps = async () => {
    await page.fill('#steps', '2');
    await page.click('#run');
    await page.waitForSelector('#attack-panel[data-state="done"]', { timeout: 120000 });
  };
  try {
    const image = testImage();
    await upload(page, image.path);
    // The user's goal stays through new images.
    const chosen = (await page.inputValue('#direction')) === 'out' ? 'in' : 'out';
    await page.selectOption('#direction', chosen);
    // Invalid numbers: a message by the field, the field keeps what was typed, nothing runs.
    for (const [field, value] of [['steps', '0'], ['steps', '5000'], ['steps', '2.5'], ['seed', 'abc'], ['seed', '-5'], ['seed', '99999999999']]) {
      await page.fill('#steps', '2');
      await page.fill('#seed', '');
      await page.fill(`#${field}`, value);
      await page.click('#run');
      const message = await page.textContent(`#${field}-error`);
      assert(await page.isVisible(`#${field}-error`) && message.length > 10, `${field} = ${value}: no message by the field`);
      assert((await page.getAttribute(`#${field}`, 'aria-invalid')) === 'true', `${field} = ${value}: not marked invalid`);
      assert((await page.inputValue(`#${field}`)) === value, `${field} = ${value}: the field shows ${await page.inputValue(`#${field}`)}`);
      assert((await page.getAttribute('#chart', 'data-points')) === '0', `${field} = ${value} started an attack`);
      assert((await page.evaluate(() => document.activeElement.id)) === field, `${field} = ${value}: the focus is not on the field`);
    }
    await page.fill('#seed', '7');
    await attackTwoSteps();
    assert(!(await page.isVisible('#seed-error')) && !(await page.isVisible('#steps-error')), 'a message stayed after valid numbers');
    // The keyboard stays on the attack controls (Run is disabled while it runs, Stop after).
    assert((await page.evaluate(() => document.activeElement.id)) === 'run', 'the focus fell off the controls after the attack');
    // Results are live regions; the two download links have their own names.
    for (const key of ['atd', 'baseline']) {
      assert((await page.getAttribute(`#result-${key} .summary`, 'aria-live')) === 'polite', `${key} result is not announced`);
    }
    const links = await page.$$eval('.download', (as) => as.map((a) => a.textContent.trim()));
    assert(new Set(links).size === 2, `the download links share a name: ${links.join(' / ')}`);
    // The chart's values live in a legend that fits a 390 px screen.
    const legend = await page.$$eval('#chart-legend li', (li) => li.map((l) => ({ text: l.textContent, overflow: l.scrollWidth - l.clientWidth })));
    assert(legend.length === 3 && /best \d\.\d{3}/.test(legend[0].text) && /best \d\.\d{3}/.test(legend[1].text) && /threshold/.test(legend[2].text), `legend: ${JSON.stringify(legend)}`);
    assert(legend.every((l) => l.overflow <= 0), `the legend does not fit 390 px: ${JSON.stringify(legend)}`);
    // The download is named after the image, the detector, eps and steps.
    const stem = image.path.split('/').pop().replace(/\.png$/, '');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#result-atd .download')]);
    const eps = await page.inputValue('#eps');
    assert(download.suggestedFilename() === `${stem}-adversarial-atd-eps${eps}-2steps.png`, `download named ${download.suggestedFilename()}`);
    // Each card says how sure its classifier is: the top guess and two runners-up, in percent.
    for (const key of ['atd', 'baseline']) {
      const text = await page.textContent(`#card-${key} .score`);
      assert(/looks like an? \w+ \(\d+%; then \w+ \d+%, \w+ \d+%\)/.test(text), `${key} card gives no probabilities: ${text}`);
    }
    // Sample thumbnails have text alternatives.
    const unnamed = await page.$$eval('#samples button', (bs) => bs.filter((b) => {
      const t = b.querySelector('img, canvas');
      return !(t.alt || t.getAttribute('aria-label'));
    }).length);
    assert(unnamed === 0, `${unnamed} sample thumbnails without a text alternative`);
    // A new image: the goal stays, and nothing of the last attack is left on screen.
    await rescored(page, () => page.click('[data-sample="noise"]'));
    assert((await page.inputValue('#direction')) === chosen, 'the goal changed by itself with the new image');
    let cards = await resultCards();
    assert(cards.every((c) => c.text === '–' && !c.link && !c.ink), `after a new image: ${JSON.stringify(cards)}`);
    assert((await page.getAttribute('#chart', 'data-points')) === '0', 'the chart still shows the last attack');
    // A failed upload clears them too.
    await attackTwoSteps();
    await page.setInputFiles('#file', writeTemp('broken.png', Buffer.from('not an image')));
    await page.waitForSelector('#error:not([hidden])', { timeout: 30000 });
    cards = await resultCards();
    assert(cards.every((c) => c.text === '–' && !c.link && !c.ink), `after a failed upload: ${JSON.stringify(cards)}`);
    assert(!logs.some((l) => l.startsWith('pageerror')), logs.join('\n'));
  } finally { await browser.close(); }
});

await check('an attack shared by link: the fragment restores sample, goal, eps, steps, seed and engine, and a rerun gives the same numbers', async () => {
  const { browser, page, logs } = await openPage(false, 'cpu');
  try {
    await page.waitForFunction(() => document.querySelectorAll('[data-sample]').length > 4, null, { timeout: 30000 });
    const sample = await page.$$eval('[data-sample]', (bs) => bs.map((b) => b.dataset.sample).pop());
    await rescored(page, () => page.click(`[data-sample="${sample}"]`));
    const goal = (await page.inputValue('#direction')) === 'out' ? 'in' : 'out';
    await page.selectOption('#direction', goal);
    await page.fill('#eps', '5');
    await page.dispatchEvent('#eps', 'input');
    await page.fill('#steps', '3');
    await page.fill('#seed', '4242');
    await page.click('#run');
    await page.waitForSelector('#attack-panel[data-state="done"]', { timeout: 120000 });
    const first = { series: await seriesOf(page), atd: await scoreOf(page, '#result-atd .summary'), baseline: await scoreOf(page, '#result-baseline .summary') };
    const link = await page.getAttribute('#share', 'href');
    assert(page.url().endsWith(link), `the address bar (${page.url()}) does not hold the link ${link}`);
    const shared = await browser.newPage();
    await shared.goto(`${url}${link}`);
    await shared.waitForSelector('#status[data-state="cpu"]', { timeout: 120000 });
    await shared.waitForFunction(() => document.querySelector('#card-atd .score').dataset.score !== undefined, null, { timeout: 60000 });
    const restored = await shared.evaluate(() => ({
      goal: document.querySelector('#direction').value, eps: document.querySelector('#eps').value,
      steps: document.querySelector('#steps').value, seed: document.querySelector('#seed').value,
      engine: document.querySelector('#engine').value, note: document.querySelector('#shared').textContent,
    }));
    assert(restored.goal === goal && restored.eps === '5' && restored.steps === '3' && restored.seed === '4242' && restored.engine === 'cpu', `restored ${JSON.stringify(restored)}`);
    assert(restored.note.includes(sample), `the page does not say what the link restored: ${restored.note}`);
    await shared.click('#run');
    await shared.waitForSelector('#attack-panel[data-state="done"]', { timeout: 120000 });
    const second = { series: await seriesOf(shared), atd: await scoreOf(shared, '#result-atd .summary'), baseline: await scoreOf(shared, '#result-baseline .summary') };
    assert(JSON.stringify(second) === JSON.stringify(first), `the rerun differs: ${JSON.stringify(first)} vs ${JSON.stringify(second)}`);
    // An upload cannot travel in a link: the link says so.
    await upload(page, testImage().path);
    await page.click('#run');
    await page.waitForSelector('#attack-panel[data-state="done"]', { timeout: 120000 });
    const uploadLink = { href: await page.getAttribute('#share', 'href'), text: await page.textContent('#share') };
    assert(!uploadLink.href.includes('sample=') && /uploaded image cannot travel/.test(uploadLink.text), `after an upload: ${JSON.stringify(uploadLink)}`);
    assert(!logs.some((l) => l.startsWith('pageerror')), logs.join('\n'));
  } finally { await browser.close(); }
});

await check('bring your own model: a weights file takes a slot with its card and threshold; a bad file leaves the slot as it was', async () => {
  const { browser, page, logs } = await openPage(false);
  try {
    await upload(page, testImage().path);
    const baseline = await scoreOf(page, '#card-baseline .score');
    // The standard model's file in the ATD slot: a classifier, so it runs as MSP there and
    // scores exactly as the baseline card does.
    await rescored(page, () => page.setInputFiles('#card-atd .model-file', join(web, 'models', 'standard.safetensors')));
    const atd = await scoreOf(page, '#card-atd .score');
    assert(Math.abs(atd - baseline) < 1e-6, `the standard model in the ATD slot scores ${atd}, in the baseline slot ${baseline}`);
    const card = { name: await page.textContent('#card-atd .model-name'), summary: await page.textContent('#card-atd .model-card') };
    assert(card.name === 'standard.safetensors' && /classifier, MSP/.test(card.summary) && /method standard/.test(card.summary) && /validation: .*%/.test(card.summary) && /threshold 0\.\d{3}/.test(card.summary), `ATD slot card: ${JSON.stringify(card)}`);
    // Its threshold is the one in use: the verdict follows the file's card.
    const tick = await page.$eval('#card-atd .tick', (t) => t.title);
    const [inUse, inCard] = [Number(tick.match(/threshold (\d\.\d+)/)[1]), Number(card.summary.match(/threshold (\d\.\d+)/)[1])];
    assert(Math.abs(inUse - inCard) < 6e-4, `the gauge's threshold (${tick}) is not the file's (${card.summary})`);
    // An attack runs on it.
    await page.fill('#steps', '2');
    await page.click('#run');
    await page.waitForSelector('#attack-panel[data-state="done"]', { timeout: 120000 });
    // Not a weights file: a clear error, and the baseline slot keeps its model and score.
    await page.setInputFiles('#card-baseline .model-file', writeTemp('notes.safetensors', Buffer.from('not a weights file at all')));
    await page.waitForSelector('#error:not([hidden])', { timeout: 30000 });
    const error = await page.textContent('#error');
    assert(/Could not use notes\.safetensors for the Baseline slot: .+\. The page keeps the shipped model/.test(error), `error: ${error}`);
    assert((await page.textContent('#card-baseline .model-name')) === 'Baseline' && (await scoreOf(page, '#card-baseline .score')) === baseline, 'the refused file changed the baseline slot');
    // Too large: refused from its size alone, before it is read.
    const big = join(temp, 'huge.safetensors');
    writeFileSync(big, '');
    truncateSync(big, 257 * 2 ** 20);
    await page.setInputFiles('#card-baseline .model-file', big);
    await page.waitForFunction(() => /257 MiB/.test(document.querySelector('#error').textContent), null, { timeout: 30000 });
    assert(/up to 256 MiB\. It keeps the shipped model/.test(await page.textContent('#error')), `error: ${await page.textContent('#error')}`);
    assert((await page.textContent('#card-baseline .model-name')) === 'Baseline', 'the refused file changed the baseline slot');
    // Back to the shipped model.
    await rescored(page, () => page.click('#card-atd .shipped-model'));
    assert((await page.textContent('#card-atd .model-name')) === 'ATD', 'the ATD slot did not return to the shipped model');
    assert(Math.abs((await scoreOf(page, '#card-atd .score')) - baseline) > 1e-3, 'the shipped ATD scores like the standard model');
    assert(!logs.some((l) => l.startsWith('pageerror')), logs.join('\n'));
  } finally { await browser.close(); }
});

await check('the paper\'s baselines in the page: HAT (a classifier) as MSP beside OpenGAN-fea (a discriminator) as its discriminator, each named on its card, attacked live', async () => {
  const { browser, page, logs } = await openPage(false);
  try {
    // The files `pkg-scripts/train-baselines.sh` trains and the repository keeps.
    const slots = [
      { key: 'atd', file: join(root, 'checkpoints', 'hat', 'extractor.safetensors'), card: /^extractor\.safetensors: classifier, MSP · method hat, small preset, 15 epochs · validation: .* · threshold 0\.\d{3}/ },
      { key: 'baseline', file: join(root, 'checkpoints', 'opengan-fea', 'atd.safetensors'), card: /^atd\.safetensors: ATD discriminator · method OpenGAN-fea, 10 epochs · validation: .* · threshold 0\.\d{3}/ },
    ];
    for (const slot of slots) {
      await page.setInputFiles(`#card-${slot.key} .model-file`, slot.file);
      await page.waitForFunction((key) => !/^loading/.test(document.querySelector(`#card-${key} .model-card`).textContent), slot.key, { timeout: 60000 });
      const card = await page.textContent(`#card-${slot.key} .model-card`);
      assert(slot.card.test(card), `${slot.key} slot card: ${card}`);
    }
    const footer = await page.textContent('#model-info');
    assert(/ATD: .*\(helper-based adversarial training, HAT\).* Baseline: .*trained without attacks .*\(OpenGAN\)/.test(footer), `footer: ${footer}`);
    // A live attack on both: the scores move the requested way, the result stays in the eps ball.
    summary.baselines = await attackFlow(page, 3, 'baselines');
    assert(!logs.some((l) => l.startsWith('pageerror')), logs.join('\n'));
  } finally { await browser.close(); }
});

await check('the GPU device lost mid-attack: the page says so, goes on on the CPU engine, the next image works', async () => {
  const { browser, page, logs } = await openPage(true, 'gpu');
  try {
    await upload(page, testImage().path);
    await startAttack(page, 500, 3);
    // Destroy the device inside the detectors' worker, as a driver reset would.
    const detectorWorker = page.workers().find((w) => w.url().endsWith('/worker.js'));
    await detectorWorker.evaluate(() => self.dispatchEvent(new MessageEvent('message', { data: { type: 'lose-device' } })));
    await page.waitForSelector('#attack-panel[data-state="stopped"]', { timeout: 60000 });
    const status = await page.textContent('#status');
    assert(/GPU device was lost/.test(status), `status: ${status}`);
    assert((await page.getAttribute('#status', 'data-engine')) === 'cpu', 'not on the CPU engine after the loss');
    const card = await page.textContent('#result-atd .summary');
    assert(/GPU device was lost/.test(card), `ATD card: ${card}`);
    await upload(page, join(temp, 'flat-8x8.png'));
    await startAttack(page, 2);
    await page.waitForSelector('#attack-panel[data-state="done"]', { timeout: 120000 });
    assert(!logs.some((l) => l.startsWith('pageerror')), logs.join('\n'));
  } finally { await browser.close(); }
});

await check('a 4000x3000 image leaves the detectors\' memory as it was (decoded in a worker that is then discarded)', async () => {
  const { browser, page, logs } = await openPage(false);
  try {
    await upload(page, testImage().path);
    const before = Number(await page.getAttribute('#input', 'data-worker-wasm-bytes'));
    await upload(page, join(temp, 'huge-4000x3000.png'));
    const after = Number(await page.getAttribute('#input', 'data-worker-wasm-bytes'));
    // Decoding it in the detectors' worker grew its memory by the decoded image (>= 36 MiB).
    assert(before > 0 && after - before <= 8 * 2 ** 20, `the detectors' wasm memory grew from ${before} to ${after} bytes`);
    assert(!logs.some((l) => l.startsWith('pageerror')), logs.join('\n'));
  } finally { await browser.close(); }
});

await check('soak: 100 images and 50 attacks with stops and engine switches, memory flat after the first ten', async () => {
  const browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true,
    args: ['--enable-unsafe-webgpu', '--js-flags=--expose-gc', '--enable-precise-memory-info', ...BASE_FLAGS],
  });
  try {
    const page = await browser.newPage();
    const logs = [];
    page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
    await page.goto(`${url}?engine=cpu`);
    await page.waitForSelector('#status[data-state="cpu"]', { timeout: 120000 });
    await page.waitForFunction(() => document.querySelectorAll('[data-sample]').length > 4, null, { timeout: 30000 });
    const samples = await page.$$eval('[data-sample]', (bs) => bs.map((b) => b.dataset.sample));
    // The page's JS heap after a full collection, and the detectors' wasm memory.
    const memory = async () => {
      await page.evaluate(() => window.gc());
      return { heap: await page.evaluate(() => performance.memory.usedJSHeapSize), wasm: Number(await page.getAttribute('#input', 'data-worker-wasm-bytes')) };
    };
    let engine = 'cpu', attacks = 0, stops = 0, baseline = null;
    for (let i = 0; i < 100; i++) {
      // Every image differs from the one before, so a new score always arrives.
      const load = i % 25 === 12 ? () => page.setInputFiles('#file', join(temp, 'huge-4000x3000.png'))
        : i % 10 === 5 ? () => page.setInputFiles('#file', testImage().path)
        : () => page.click(`[data-sample="${samples[i % samples.length]}"]`);
      const name = i % 25 === 12 ? 'huge' : i % 10 === 5 ? 'upload' : samples[i % samples.length];
      await rescored(page, load);
      for (const key of ['atd', 'baseline']) {
        const score = await scoreOf(page, `#card-${key} .score`);
        assert(score >= 0 && score <= 1, `image ${i} (${name}): ${key} score ${score}`);
      }
      if (i % 2 === 0) {
        const stop = attacks % 5 === 4;
        await page.fill('#steps', stop ? '400' : '2');
        await page.click('#run');
        if (stop) {
          await page.waitForFunction(() => Number(document.querySelector('#chart').dataset.points) >= 3, null, { timeout: 60000 });
          await page.click('#stop');
          stops++;
        }
        await page.waitForSelector(`#attack-panel[data-state="${stop ? 'stopped' : 'done'}"]`, { timeout: 120000 });
        attacks++;
        const eps = Number(await page.inputValue('#eps'));
        for (const key of ['atd', 'baseline']) {
          const r = await page.$eval(`#result-${key} .summary`, (e) => ({ score: Number(e.dataset.score), linf: Number(e.dataset.linf) }));
          assert(r.score >= 0 && r.score <= 1 && r.linf <= eps, `attack ${attacks} (${engine}): ${key} ${JSON.stringify(r)}`);
        }
      }
      if (i === 9) baseline = await memory();
      if (i % 25 === 24) {
        engine = engine === 'cpu' ? 'gpu' : 'cpu';
        await page.selectOption('#engine', engine);
        await page.waitForSelector(`#status[data-engine="${engine}"]:is([data-state="ready"], [data-state="cpu"])`, { timeout: 120000 });
      }
    }
    const end = await memory();
    summary.soak = { attacks, stops, baseline, end };
    assert(attacks >= 45 && stops >= 9, `only ${attacks} attacks and ${stops} stops`);
    assert(end.heap <= 1.2 * baseline.heap, `the JS heap grew from ${baseline.heap} to ${end.heap} bytes`);
    assert(end.wasm <= 1.2 * baseline.wasm, `the wasm memory grew from ${baseline.wasm} to ${end.wasm} bytes`);
    assert(!logs.length, logs.join('\n'));
  } finally { await browser.close(); }
});

await check('the published site works from a sub-path, every file it loads versioned', async () => {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: BASE_FLAGS });
  try {
    const page = await browser.newPage();
    const logs = [];
    page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
    const from = requests.length;
    await page.goto(`${url}${SUB_PATH.slice(1)}`);
    await page.waitForSelector('#status[data-state="cpu"]', { timeout: 120000 });
    await rescored(page, () => page.click('[data-sample="shapes"]'));
    await page.fill('#steps', '2');
    await page.click('#run');
    await page.waitForSelector('#attack-panel[data-state="done"]', { timeout: 120000 });
    const loaded = requests.slice(from).map((r) => r.replace(/^GET /, ''));
    assert(loaded.every((r) => r.startsWith(SUB_PATH)), `requests outside the sub-path: ${loaded.filter((r) => !r.startsWith(SUB_PATH)).join(', ')}`);
    const version = /app\.js\?v=([0-9a-f]{12})$/.exec(loaded.find((r) => r.includes('app.js')) || '');
    assert(version, `app.js was not versioned: ${loaded.join(', ')}`);
    const unversioned = loaded.filter((r) => !r.endsWith(SUB_PATH) && !r.endsWith(`?v=${version[1]}`));
    assert(unversioned.length === 0, `loaded without the version: ${unversioned.join(', ')}`);
    for (const file of ['worker.js', 'decode.js', 'atd_wasm.js', 'atd_wasm_bg.wasm', 'atd.safetensors']) {
      assert(loaded.some((r) => r.includes(file)), `${file} was not loaded from the site: ${loaded.join(', ')}`);
    }
    assert(!logs.length, logs.join('\n'));
  } finally { await browser.close(); }
});

await check('the page fetched nothing but its own files', async () => {
  const foreign = requests.filter((r) => !/^GET \/(published\/atd\/)?(|index\.html|app\.js|worker\.js|decode\.js|style\.css|pkg\/.*|models\/.*|samples\/.*)(\?.*)?$/.test(r));
  assert(foreign.length === 0, `unexpected requests: ${foreign.join(', ')}`);
  assert(!requests.some((r) => r.startsWith('POST') || r.startsWith('PUT')), 'the page uploaded something');
});

server.close();
rmSync(temp, { recursive: true, force: true });
console.log(JSON.stringify(summary));
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
