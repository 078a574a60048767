// The page: image input, the two detectors' verdicts, the live attack and its chart. All model
// work happens in worker.js; nothing is sent over the network except fetching this site's files.

const $ = (selector) => document.querySelector(selector);
// The site's version: the `?v=...` that pkg-scripts/build-web.sh puts on this script in a
// published copy (empty in web/ itself). Every file the page loads carries it, so a browser never
// mixes a new release with cached files of an old one.
const VERSION = new URL(import.meta.url).search;
const versioned = (path) => `${path}${VERSION}`;
const params = new URLSearchParams(location.search);
// The two slots and the shipped model in each. A weights file the user brings replaces a slot's
// url with its bytes (and name); it never leaves the page.
const SHIPPED = {
  atd: { url: versioned('models/atd.safetensors'), head: 'atd', name: null },
  baseline: { url: versioned('models/standard.safetensors'), head: 'msp', name: null },
};
const MODELS = [
  { key: 'atd', ...SHIPPED.atd, label: 'ATD', colour: '#1f77b4' },
  { key: 'baseline', ...SHIPPED.baseline, label: 'Baseline', colour: '#e6550d' },
];
const MAX_FILE_BYTES = 64 * 1024 * 1024;
// The engine takes at most 512 MiB (weights and working memory); the page's models are ~1.5 MiB.
const MAX_MODEL_BYTES = 256 * 1024 * 1024;

const worker = new Worker(versioned('worker.js'), { type: 'module' });
let infos = {};
let current = null; // { id, name, chw, results }
let nextId = 1;
let attack = null; // { id, steps, epsLevels, seed, direction, series: {key: [scores]}, running }
// The Goal menu follows each new image's ATD verdict until the user picks a goal; then it stays.
let goalChosen = false;
// The state a shared link opened the page with (see readSharedLink), or null.
let shared = null;

function showError(message) {
  const box = $('#error');
  box.textContent = message;
  box.hidden = !message;
}

function setStatus(text, state, details = null) {
  const status = $('#status');
  status.textContent = text;
  status.dataset.state = state;
  if (details) {
    const more = document.createElement('details');
    const summary = document.createElement('summary');
    summary.textContent = 'Details';
    const body = document.createElement('code');
    body.textContent = details;
    more.append(summary, body);
    status.append(' ', more);
  }
}

function drawPixels(canvas, rgba) {
  const ctx = canvas.getContext('2d');
  ctx.putImageData(new ImageData(new Uint8ClampedArray(rgba), 32, 32), 0, 0);
}

// A GPU adapter's name as the browser reports it (some report none).
const adapterName = (adapter) => (adapter && adapter.name ? adapter.name : 'unknown adapter');

function formatVerdict(info, r) {
  const verdict = r.in_distribution === null || r.in_distribution === undefined ? ''
    : r.in_distribution ? ' <span class="verdict-in">in-distribution</span>' : ' <span class="verdict-out">OUT-of-distribution</span>';
  const article = r.class && /^[aeiou]/i.test(r.class) ? 'an' : 'a';
  const percent = (p) => `${Math.round(100 * p)}%`;
  const top = r.top || [];
  // How sure the classifier is: its top guess's probability, then the runners-up.
  const sure = top.length ? ` (${percent(top[0].probability)}${top.length > 1 ? `; then ${top.slice(1).map((t) => `${t.class} ${percent(t.probability)}`).join(', ')}` : ''})` : '';
  const cls = r.class ? ` · looks like ${article} <b>${r.class}</b><span class="top">${sure}</span>` : '';
  return `score ${r.score.toFixed(4)}${verdict}${cls}`;
}

function showScores(results) {
  for (const m of MODELS) {
    const card = $(`#card-${m.key}`);
    const r = results[m.key];
    const info = infos[m.key];
    card.querySelector('.fill').style.width = `${(100 * r.score).toFixed(1)}%`;
    card.querySelector('.fill').style.background = r.in_distribution === false ? '#c0392b' : '#2a9d4b';
    const tick = card.querySelector('.tick');
    if (info.threshold !== null && info.threshold !== undefined) {
      tick.style.display = 'block';
      tick.style.left = `${(100 * info.threshold).toFixed(1)}%`;
      tick.title = `threshold ${info.threshold.toFixed(4)} (95% of in-distribution images score above it)`;
    }
    const p = card.querySelector('.score');
    p.innerHTML = formatVerdict(info, r);
    p.dataset.score = r.score;
  }
  // Attack the verdict: push in-distribution-looking images out, and the others in.
  if (!goalChosen) $('#direction').value = results.atd.in_distribution === false ? 'in' : 'out';
}

// Empty both attack-result cards (images, text, download) and the chart: what they showed
// belongs to an earlier image or attack. `text` is what each card says now.
function clearResults(text = '–') {
  for (const m of MODELS) {
    const card = $(`#result-${m.key}`);
    for (const canvas of card.querySelectorAll('canvas')) canvas.getContext('2d').clearRect(0, 0, 32, 32);
    const summary = card.querySelector('.summary');
    summary.textContent = text;
    for (const key of ['score', 'linf', 'steps', 'seed', 'msPerStep']) delete summary.dataset[key];
    const link = card.querySelector('.download');
    if (link.href) URL.revokeObjectURL(link.href);
    link.removeAttribute('href');
    link.hidden = true;
  }
}

// Forget the image on screen (after a failed upload nothing may silently stay attackable).
function clearImage() {
  current = null;
  $('#run').disabled = true;
  $('#input').getContext('2d').clearRect(0, 0, 32, 32);
  for (const m of MODELS) {
    const card = $(`#card-${m.key}`);
    card.querySelector('.fill').style.width = '0';
    const p = card.querySelector('.score');
    p.textContent = '–';
    delete p.dataset.score;
  }
}

// A new image or engine ends the running attack (the worker stops it) and clears what any
// earlier attack left on screen; the cards say why when an attack was cut short.
function cancelAttack(reason) {
  const running = attack && attack.running;
  clearResults(running ? reason : '–');
  for (const m of MODELS) $(`#result-${m.key} .summary`).dataset.state = running ? 'cancelled' : 'idle';
  if (running) $('#attack-panel').dataset.state = 'cancelled';
  attack = null;
  $('#stop').disabled = true;
  drawChart();
}

// `name`: the file's or sample's name, for the download file names; `sample`: the sample's name
// when it is one (a link can name a sample, not an upload).
function sendImage(bytes, name, sample = null) {
  if (!bytes || bytes.byteLength === 0) return failImage('That file is empty.');
  if (bytes.byteLength > MAX_FILE_BYTES) return failImage(`That file is ${(bytes.byteLength / 2 ** 20).toFixed(0)} MiB; the limit is 64 MiB.`);
  showError('');
  cancelAttack('cancelled: a new image was chosen');
  const id = nextId++;
  current = { id, name: baseName(name), sample, pending: true };
  $('#run').disabled = true;
  // Decoding runs in a worker of its own that is then discarded, memory and all.
  const decoder = new Worker(versioned('decode.js'), { type: 'module' });
  decoder.onmessage = ({ data }) => {
    decoder.terminate();
    if (!current || current.id !== id) return;
    if (data.error) return failImage(`Could not use that image: ${data.error}.`);
    worker.postMessage({ type: 'image', id, chw: data.chw }, [data.chw.buffer]);
  };
  decoder.onerror = (e) => {
    decoder.terminate();
    if (current && current.id === id) failImage(`Could not decode that image: ${e.message || 'the decoder failed'}.`);
  };
  decoder.postMessage({ bytes }, [bytes]);
}

function failImage(message) {
  cancelAttack('cancelled: a new image was chosen');
  clearImage();
  showError(`${message} No image is loaded now.`);
}

// A file name without its extension, reduced to characters every file system takes.
function baseName(name) {
  const stem = String(name || 'image').replace(/\.[^.]*$/, '').replace(/[^A-Za-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '');
  return stem.slice(0, 60) || 'image';
}

async function sendFile(file) {
  if (!file) return;
  try {
    sendImage(await file.arrayBuffer(), file.name);
  } catch (err) {
    failImage(`Could not read ${file.name}: ${err.message || err}.`);
  }
}

// ---- the chart -------------------------------------------------------------------------
// The best score so far at each step: the point the attack keeps (lowest when pushing out).
function bestSoFar(series, direction) {
  const better = direction === 'out' ? Math.min : Math.max;
  const best = [];
  series.forEach((s, t) => best.push(t === 0 ? s : better(best[t - 1], s)));
  return best;
}

function drawChart() {
  const canvas = $('#chart');
  // Draw at the size the chart is shown, so its text stays legible on narrow screens.
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(280, Math.round(canvas.clientWidth || 720));
  const h = Math.round(w < 500 ? w * 0.6 : w * 0.36);
  canvas.width = Math.round(w * ratio);
  canvas.height = Math.round(h * ratio);
  canvas.style.height = `${h}px`;
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  const pad = { l: 44, r: 12, t: 12, b: 28 };
  ctx.clearRect(0, 0, w, h);
  ctx.font = '12px system-ui, sans-serif';
  ctx.fillStyle = '#666';
  ctx.strokeStyle = '#ddd';
  const steps = attack ? Math.max(attack.steps, 1) : 100;
  const x = (t) => pad.l + (w - pad.l - pad.r) * (t / steps);
  const y = (s) => pad.t + (h - pad.t - pad.b) * (1 - s);
  for (const s of [0, 0.25, 0.5, 0.75, 1]) {
    ctx.beginPath(); ctx.moveTo(pad.l, y(s)); ctx.lineTo(w - pad.r, y(s)); ctx.stroke();
    ctx.fillText(s.toFixed(2), 6, y(s) + 4);
  }
  ctx.fillText('0', pad.l, h - 8);
  ctx.textAlign = 'right';
  ctx.fillText(`${steps} steps`, w - pad.r, h - 8);
  ctx.textAlign = 'left';
  let points = 0;
  const descriptions = [];
  for (const m of MODELS) {
    const t = infos[m.key] && infos[m.key].threshold;
    if (t !== null && t !== undefined) {
      ctx.setLineDash([5, 4]); ctx.strokeStyle = m.colour;
      ctx.beginPath(); ctx.moveTo(pad.l, y(t)); ctx.lineTo(w - pad.r, y(t)); ctx.stroke();
      ctx.setLineDash([]);
    }
    const series = attack ? attack.series[m.key] : [];
    const legend = $(`#chart-legend [data-key="${m.key}"] .best`);
    legend.textContent = '';
    if (!series || series.length === 0) continue;
    points += series.length;
    ctx.strokeStyle = m.colour; ctx.lineWidth = 2;
    ctx.beginPath();
    series.forEach((s, t) => (t === 0 ? ctx.moveTo(x(t), y(s)) : ctx.lineTo(x(t), y(s))));
    ctx.stroke();
    // The best point so far (what the attack returns), dotted, with a marker where it was found.
    const best = bestSoFar(series, attack.direction);
    const last = series.length - 1;
    const bestStep = series.indexOf(best[last]);
    ctx.setLineDash([2, 3]);
    ctx.beginPath();
    best.forEach((s, t) => (t === 0 ? ctx.moveTo(x(t), y(s)) : ctx.lineTo(x(t), y(s))));
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.beginPath(); ctx.arc(x(bestStep), y(best[last]), 4, 0, 7); ctx.fillStyle = m.colour; ctx.fill();
    ctx.lineWidth = 1;
    ctx.fillStyle = '#666';
    // The values go in the legend under the chart, where text never overlaps a line.
    legend.textContent = `best ${best[last].toFixed(3)} (step ${bestStep})`;
    descriptions.push(`${m.label}: score ${series[0].toFixed(3)} at the start, best ${best[last].toFixed(3)} at step ${bestStep}, ${series[last].toFixed(3)} at step ${last}.`);
  }
  canvas.dataset.points = String(points);
  for (const m of MODELS) canvas.dataset[`series${m.key[0].toUpperCase()}${m.key.slice(1)}`] = JSON.stringify(attack ? attack.series[m.key] : []);
  canvas.setAttribute('aria-label', attack
    ? `Scores during the attack (${attack.direction === 'out' ? 'pushing them down' : 'pushing them up'}): ${descriptions.join(' ')}`
    : 'Scores during the attack: no attack has run yet.');
}
window.addEventListener('resize', () => drawChart());

// ---- worker messages -------------------------------------------------------------------
worker.onmessage = (event) => {
  const msg = event.data;
  switch (msg.type) {
    case 'ready': {
      infos = msg.infos;
      const adapter = infos.atd.adapter;
      if (msg.engine === 'gpu') {
        setStatus(`Ready: our WGSL engine on WebGPU (${adapterName(adapter)}${adapter && adapter.software ? ', a software adapter: slow' : ''}).`, 'ready');
      } else {
        setStatus(msg.notice || 'Ready: the CPU engine (WebAssembly).', 'cpu', msg.details);
      }
      $('#status').dataset.engine = msg.engine;
      $('#engine').disabled = false;
      if (current && current.chw) $('#run').disabled = false;
      for (const m of MODELS) showModel(m);
      drawChart();
      if (rescoreWhenReady) { rescoreWhenReady = false; rescore(); }
      restoreSharedImage();
      break;
    }
    case 'scored': {
      if (!current || msg.id !== current.id) break;
      current = { id: msg.id, name: current.name, sample: current.sample, chw: msg.chw, results: msg.results };
      $('#input').dataset.workerWasmBytes = msg.wasmBytes;
      drawPixels($('#input'), msg.rgba);
      showScores(msg.results);
      $('#run').disabled = false;
      break;
    }
    case 'model-loaded': {
      const m = MODELS.find((x) => x.key === msg.key);
      Object.assign(m, { url: null, bytes: msg.bytes, head: msg.head, name: msg.name });
      infos[m.key] = msg.info;
      showError('');
      showModel(m);
      drawChart();
      rescore();
      break;
    }
    case 'model-refused': {
      const m = MODELS.find((x) => x.key === msg.key);
      showModel(m);
      showError(`Could not use ${msg.name} for the ${m.label} slot: ${msg.message}. The page keeps ${m.name || 'the shipped model'}.`);
      break;
    }
    case 'step': {
      if (!attack || !attack.running || msg.id !== attack.id) break;
      attack.series[msg.key][msg.t] = msg.score;
      drawChart();
      break;
    }
    case 'attacked': {
      if (!attack || !attack.running || msg.id !== attack.id) break;
      attack.done[msg.key] = true;
      const r = msg.result;
      const card = $(`#result-${msg.key}`);
      const summary = card.querySelector('.summary');
      summary.dataset.state = msg.stopped ? 'stopped' : 'done';
      if (!r) {
        summary.textContent = msg.reason || 'stopped';
        break;
      }
      drawPixels(card.querySelector('.adv'), r.rgba);
      drawPixels(card.querySelector('.pert'), r.perturbation);
      const before = attack.before[msg.key];
      const how = msg.stopped ? `stopped after ${r.steps} of ${attack.steps} steps; the best point so far` : `best point of ${r.steps} steps`;
      summary.innerHTML = `${before.score.toFixed(4)} → ${formatVerdict(infos[msg.key], r)}<br>`
        + `${how} · L∞ = ${r.linf}/255 (ε = ${attack.epsLevels}/255) · ${r.ms_per_step.toFixed(1)} ms/step (both detectors in turn) · seed ${r.seed}`;
      summary.dataset.score = r.score;
      summary.dataset.linf = r.linf;
      summary.dataset.steps = r.steps;
      summary.dataset.msPerStep = r.ms_per_step;
      summary.dataset.seed = r.seed;
      const link = card.querySelector('.download');
      if (link.href) URL.revokeObjectURL(link.href);
      link.href = URL.createObjectURL(new Blob([r.png], { type: 'image/png' }));
      link.download = `${attack.imageName}-adversarial-${msg.key}-eps${attack.epsLevels}-${r.steps}steps.png`;
      link.hidden = false;
      break;
    }
    case 'attack-finished': {
      if (!attack || !attack.running || msg.id !== attack.id) break;
      attack.running = false;
      $('#run').disabled = !(current && current.chw);
      $('#stop').disabled = true;
      $('#attack-panel').dataset.state = msg.stopped ? 'stopped' : 'done';
      // Stop is disabled now: keep the keyboard on the attack controls, not the page body.
      if (document.activeElement === $('#stop') || document.activeElement === document.body) $('#run').focus();
      break;
    }
    case 'error': {
      if (msg.during === 'image') {
        if (current && msg.id === current.id) failImage(`Could not use that image: ${msg.message}.`);
        break;
      }
      showError(msg.message);
      if (msg.during === 'init') setStatus('The models could not be loaded.', 'failed');
      if (msg.during === 'attack' && attack) { attack.running = false; $('#run').disabled = !(current && current.chw); $('#stop').disabled = true; }
      break;
    }
  }
};

// ---- input ------------------------------------------------------------------------------
$('#file').addEventListener('change', (e) => { sendFile(e.target.files[0]); e.target.value = ''; });
const drop = $('#drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  sendFile(e.dataTransfer.files[0]);
});
// The drop zone is focusable: Enter or Space opens the file picker, as a click does.
drop.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' || e.key === ' ') {
    e.preventDefault();
    $('#file').click();
  }
});
document.addEventListener('paste', (e) => {
  const item = [...e.clipboardData.items].find((i) => i.kind === 'file');
  if (item) sendFile(item.getAsFile());
});

// Samples the page draws itself (obvious OOD inputs), plus CIFAR-10 test images when the build
// found the data pack (samples/cifar/index.json).
function generated(name, paint) {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 64;
  paint(canvas.getContext('2d'), 64);
  return { name, canvas };
}
const generators = [
  generated('noise', (ctx, n) => {
    const img = ctx.createImageData(n, n);
    let s = 12345;
    for (let i = 0; i < img.data.length; i++) { s = (s * 1103515245 + 12345) >>> 0; img.data[i] = i % 4 === 3 ? 255 : s >>> 24; }
    ctx.putImageData(img, 0, 0);
  }),
  generated('shapes', (ctx, n) => {
    ctx.fillStyle = '#f4f1e8'; ctx.fillRect(0, 0, n, n);
    ctx.fillStyle = '#d62728'; ctx.beginPath(); ctx.arc(n * 0.3, n * 0.35, n * 0.2, 0, 7); ctx.fill();
    ctx.fillStyle = '#1f77b4'; ctx.fillRect(n * 0.5, n * 0.5, n * 0.4, n * 0.35);
    ctx.fillStyle = '#2ca02c'; ctx.beginPath(); ctx.moveTo(n * 0.1, n * 0.9); ctx.lineTo(n * 0.45, n * 0.55); ctx.lineTo(n * 0.5, n * 0.95); ctx.fill();
  }),
  generated('gradient', (ctx, n) => {
    const g = ctx.createLinearGradient(0, 0, n, n);
    g.addColorStop(0, '#ff00cc'); g.addColorStop(0.5, '#ffee00'); g.addColorStop(1, '#00ccff');
    ctx.fillStyle = g; ctx.fillRect(0, 0, n, n);
  }),
  generated('stripes', (ctx, n) => {
    for (let i = 0; i < n; i += 8) { ctx.fillStyle = (i / 8) % 2 ? '#000' : '#fff'; ctx.fillRect(i, 0, 8, n); }
  }),
];

function addSample(name, thumb, getBytes) {
  const button = document.createElement('button');
  button.dataset.sample = name;
  button.append(thumb, document.createTextNode(name));
  button.addEventListener('click', async () => sendImage(await getBytes(), name, name));
  $('#samples').append(button);
  restoreSharedImage();
}

for (const g of generators) {
  const thumb = document.createElement('canvas');
  thumb.width = thumb.height = 64;
  thumb.setAttribute('role', 'img');
  thumb.setAttribute('aria-label', `drawn sample: ${g.name}`);
  thumb.getContext('2d').drawImage(g.canvas, 0, 0);
  addSample(g.name, thumb, () => new Promise((resolve) => g.canvas.toBlob(async (b) => resolve(await b.arrayBuffer()), 'image/png')));
}

fetch(versioned('samples/cifar/index.json')).then((r) => (r.ok ? r.json() : [])).then((list) => {
  for (const item of list) {
    const thumb = new Image();
    thumb.alt = `CIFAR-10 test image (${item.name})`;
    thumb.src = versioned(`samples/cifar/${item.file}`);
    addSample(item.name, thumb, async () => (await fetch(versioned(`samples/cifar/${item.file}`))).arrayBuffer());
  }
}).catch(() => {}).finally(() => {
  // Every sample is on the page now: a link naming another one says so.
  const known = [...document.querySelectorAll('[data-sample]')].some((b) => shared && b.dataset.sample === shared.sample);
  if (shared && shared.sample && !known) $('#shared').textContent = `The link names the sample "${shared.sample}", which this copy of the page does not have: choose an image, then run.`;
});

// ---- attack -----------------------------------------------------------------------------
$('#eps').addEventListener('input', () => {
  const text = `${$('#eps').value}/255`;
  $('#eps-value').textContent = text;
  $('#eps').setAttribute('aria-valuetext', text);
});
// Show or clear the message under a field; a field with a message is marked invalid.
function fieldError(field, message) {
  const box = $(`#${field}-error`);
  box.textContent = message || '';
  box.hidden = !message;
  if (message) $(`#${field}`).setAttribute('aria-invalid', 'true');
  else $(`#${field}`).removeAttribute('aria-invalid');
  return !message;
}

// The steps as typed, or null (with a message by the field) when they are not 1-1000.
function attackSteps() {
  const typed = $('#steps').value.trim();
  const ok = /^\d+$/.test(typed) && Number(typed) >= 1 && Number(typed) <= 1000;
  return fieldError('steps', ok ? '' : 'Steps must be a whole number from 1 to 1000.') ? Number(typed) : null;
}

// A fresh random start for every run unless the user fixes the seed (to reproduce a result);
// null (with a message by the field) when the typed seed is not a whole number below 2^32.
function attackSeed() {
  const typed = $('#seed').value.trim();
  if (typed === '') return fieldError('seed', '') ? crypto.getRandomValues(new Uint32Array(1))[0] : null;
  const ok = /^\d+$/.test(typed) && Number(typed) < 2 ** 32;
  return fieldError('seed', ok ? '' : 'The seed must be empty (random) or a whole number from 0 to 4294967295.') ? Number(typed) : null;
}

// The paper's name for the method that trained a slot's model, as `atd report` names it: a
// discriminator trained without attacks is OpenGAN (on features or on pixels), with attacks ATD;
// a classifier is named by its training method (standard, at, hat, aoe, ...).
function methodName(info) {
  const recipe = info.recipe || {};
  if (info.detector !== 'atd') return recipe.method || null;
  return recipe.pixel ? 'OpenGAN-pixel' : recipe.no_attack ? 'OpenGAN-fea' : 'ATD';
}

// What the footer says of a model, in plain words.
function plainDescription(model, info) {
  const trained = {
    standard: 'trained the usual way',
    at: 'trained to resist attacks (adversarial training)',
    hat: 'trained to resist attacks (helper-based adversarial training, HAT)',
    oe: 'trained to be unsure on images of other datasets (outlier exposure)',
    aoe: 'trained to resist attacks and to be unsure on images of other datasets (adversarial outlier exposure)',
    aloe: 'trained to resist attacks and to stay unsure on attacked images of other datasets (ALOE)',
  }[info.training]
    || `trained by ${info.training || 'an unknown recipe'}`;
  if (model.head !== 'atd') return `a small image network ${trained}; its confidence in its top class is the score.`;
  return {
    ATD: 'a small image network whose features feed a second network, trained under attack to tell CIFAR-10 images from others; that second network\'s output is the score.',
    'OpenGAN-fea': 'a small image network whose features feed a second network, trained without attacks to tell CIFAR-10 images from others (OpenGAN); that second network\'s output is the score.',
    'OpenGAN-pixel': 'a small image network trained on the pixels, without attacks, to tell CIFAR-10 images from others (OpenGAN-pixel); its output is the score.',
  }[methodName(info)];
}

$('#run').addEventListener('click', () => {
  if (!current || !current.chw) return;
  const epsLevels = Number($('#eps').value);
  const steps = attackSteps();
  const seed = attackSeed();
  if (steps === null) return $('#steps').focus();
  if (seed === null) return $('#seed').focus();
  const direction = $('#direction').value;
  clearResults('attacking…');
  attack = {
    id: nextId++, steps, epsLevels, seed, direction, running: true, done: {}, before: current.results,
    imageName: current.name || 'image', series: Object.fromEntries(MODELS.map((m) => [m.key, []])),
  };
  $('#seed-used').textContent = `seed ${seed}`;
  showShareLink({ sample: current.sample, goal: direction, eps: epsLevels, steps, seed, engine: $('#engine').value });
  for (const m of MODELS) $(`#result-${m.key} .summary`).dataset.state = 'running';
  $('#attack-panel').dataset.state = 'running';
  $('#stop').disabled = false;
  // Run is disabled while the attack runs: the keyboard moves to Stop instead of the page body.
  $('#stop').focus();
  $('#run').disabled = true;
  drawChart();
  worker.postMessage({ type: 'attack', id: attack.id, chw: current.chw, direction, eps: epsLevels / 255, steps, seed });
});
$('#stop').addEventListener('click', () => worker.postMessage({ type: 'stop' }));
$('#direction').addEventListener('change', () => { goalChosen = true; });
$('#steps').addEventListener('input', () => fieldError('steps', ''));
$('#seed').addEventListener('input', () => fieldError('seed', ''));

// ---- bringing your own model -----------------------------------------------------------
// A slot's model card in one line: file, detector, method and recipe, validation numbers and the
// threshold in use.
function modelSummary(m, info) {
  const recipe = info.recipe || {};
  const method = methodName(info);
  const trained = [method && `method ${method}`, recipe.arch && `${recipe.arch} preset`, recipe.epochs && `${recipe.epochs} epochs`]
    .filter(Boolean).join(', ');
  const validation = Object.entries((info.metrics && info.metrics.validation) || {})
    .filter(([k, v]) => k.startsWith('val_') && typeof v === 'number' && !k.endsWith('_images'))
    .slice(0, 3).map(([k, v]) => `${k.replace(/^val_/, '').replace(/_/g, ' ')} ${v < 1 ? `${(100 * v).toFixed(1)}%` : v}`);
  const threshold = typeof info.threshold === 'number' ? `threshold ${info.threshold.toFixed(3)} (95% TPR)` : 'no threshold in its card';
  return [m.name ? `${m.name}: ${info.detector === 'atd' ? 'ATD discriminator' : 'classifier, MSP'}` : null,
    trained || info.training, validation.length ? `validation: ${validation.join(', ')}` : null, threshold].filter(Boolean).join(' · ');
}

function showModel(m) {
  $('#model-info').textContent = MODELS.map((x) => `${x.label}: ${plainDescription(x, infos[x.key])}`).join(' ');
  const card = $(`#card-${m.key}`);
  card.querySelector('.model-name').textContent = m.name || m.label;
  card.querySelector('.model-kind').textContent = m.name ? `(your file, as ${infos[m.key].detector === 'atd' ? 'ATD' : 'MSP'})` : card.dataset.kind;
  card.querySelector('.model-card').textContent = modelSummary(m, infos[m.key]);
  card.querySelector('.shipped-model').hidden = !m.name;
}

// Score the image on screen again (after a model changed); after the models reload, when set.
let rescoreWhenReady = false;
// Score the image on screen again (after a model changed).
function rescore() {
  if (!current || !current.chw) return;
  const id = nextId++;
  current = { ...current, id, pending: true };
  $('#run').disabled = true;
  worker.postMessage({ type: 'image', id, chw: current.chw.slice() });
}

for (const input of document.querySelectorAll('.model-file')) {
  const m = MODELS.find((x) => x.key === input.dataset.key);
  $(`#card-${m.key}`).dataset.kind = $(`#card-${m.key} .model-kind`).textContent;
  input.addEventListener('change', async () => {
    const file = input.files[0];
    input.value = '';
    if (!file) return;
    if (file.size > MAX_MODEL_BYTES) {
      return showError(`${file.name} is ${(file.size / 2 ** 20).toFixed(0)} MiB; the page takes weights files up to 256 MiB. It keeps ${m.name || 'the shipped model'}.`);
    }
    cancelAttack('cancelled: a model was changed');
    worker.postMessage({ type: 'stop' });
    $(`#card-${m.key} .model-card`).textContent = `loading ${file.name}…`;
    worker.postMessage({ type: 'model', key: m.key, name: file.name, bytes: await file.arrayBuffer() });
  });
}
for (const button of document.querySelectorAll('.shipped-model')) {
  button.addEventListener('click', () => {
    Object.assign(MODELS.find((x) => x.key === button.dataset.key), SHIPPED[button.dataset.key], { bytes: null });
    rescoreWhenReady = true;
    loadModels($('#engine').value);
  });
}

// ---- sharing an attack by link ---------------------------------------------------------
// The URL fragment holds what reruns an attack: the sample, goal, eps, steps, seed, engine and
// models (only the shipped ones exist in this page). An uploaded image cannot travel in a link,
// and nothing in the fragment is ever sent to a server.
function showShareLink(state) {
  const link = $('#share');
  const fields = new URLSearchParams({ goal: state.goal, eps: state.eps, steps: state.steps, seed: state.seed, engine: state.engine, models: 'shipped' });
  if (state.sample) fields.set('sample', state.sample);
  link.href = `#${fields}`;
  link.hidden = false;
  link.textContent = state.sample ? 'Link to this attack' : 'Link to these settings (an uploaded image cannot travel in a link)';
  history.replaceState(null, '', link.href);
}

// What the page was opened with (null without a fragment); its sample loads once it exists.
function readSharedLink() {
  const fields = new URLSearchParams(location.hash.slice(1));
  if (![...fields.keys()].length) return null;
  const number = (key, low, high) => {
    const v = fields.get(key);
    return v !== null && /^\d+$/.test(v) && Number(v) >= low && Number(v) <= high ? Number(v) : null;
  };
  const state = {
    sample: fields.get('sample'), goal: ['in', 'out'].includes(fields.get('goal')) ? fields.get('goal') : null,
    eps: number('eps', 0, 16), steps: number('steps', 1, 1000), seed: number('seed', 0, 2 ** 32 - 1),
    engine: ['auto', 'gpu', 'cpu'].includes(fields.get('engine')) ? fields.get('engine') : null,
  };
  if (state.goal) { $('#direction').value = state.goal; goalChosen = true; }
  if (state.eps !== null) { $('#eps').value = String(state.eps); $('#eps').dispatchEvent(new Event('input')); }
  if (state.steps !== null) $('#steps').value = String(state.steps);
  if (state.seed !== null) $('#seed').value = String(state.seed);
  const note = $('#shared');
  note.hidden = false;
  note.textContent = state.sample
    ? `Opened from a link: ${state.sample}, the same goal, ε, steps and seed. Press "Run the attack" to rerun it; the same engine gives the same numbers.`
    : 'Opened from a link with no sample in it (an uploaded image cannot travel in a link): choose the image again, then run.';
  return state;
}

// Load the linked sample once both it and the models are there (either may come last).
function restoreSharedImage() {
  if (!shared || !shared.sample || shared.restored || !infos.atd) return;
  const button = [...document.querySelectorAll('[data-sample]')].find((b) => b.dataset.sample === shared.sample);
  if (button) { shared.restored = true; button.click(); }
}

function loadModels(engine) {
  cancelAttack('cancelled: the engine was changed');
  $('#run').disabled = true;
  $('#engine').disabled = true;
  setStatus('Loading the models…', 'loading');
  worker.postMessage({ type: 'init', models: MODELS.map(({ key, url, bytes, head }) => ({ key, url, bytes, head })), engine });
}
shared = readSharedLink();
$('#engine').value = (shared && shared.engine) || (['auto', 'gpu', 'cpu'].includes(params.get('engine')) ? params.get('engine') : 'auto');
$('#engine').addEventListener('change', () => loadModels($('#engine').value));
loadModels($('#engine').value);
