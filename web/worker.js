// The detectors run here, off the page's thread: our WGSL engine on WebGPU, or its CPU
// reference in WebAssembly where WebGPU is missing. Images never leave this browser.
import init, { Detector, preprocess, chw_to_rgba, perturbation_rgba, encode_png } from './pkg/atd_web.js';

const ready = init();
const detectors = new Map();
let stopRequested = false;

function reply(msg, transfer = []) {
  self.postMessage(msg, transfer);
}

async function load(models, engineWanted) {
  await ready;
  let engine = engineWanted === 'cpu' || !('gpu' in navigator) ? 'cpu' : 'gpu';
  let notice = engine === 'cpu' && engineWanted !== 'cpu'
    ? 'WebGPU is not available in this browser: running the engine\'s CPU reference in WebAssembly (slower).'
    : null;
  const infos = {};
  for (const m of models) {
    const response = await fetch(m.url);
    if (!response.ok) throw new Error(`could not load ${m.url}: HTTP ${response.status}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    let detector;
    try {
      detector = await Detector.load(bytes, m.head, engine);
    } catch (err) {
      if (engine !== 'gpu') throw err;
      notice = `WebGPU failed (${err.message || err}): running the engine's CPU reference in WebAssembly (slower).`;
      engine = 'cpu';
      detector = await Detector.load(bytes, m.head, engine);
    }
    detectors.set(m.key, detector);
    infos[m.key] = JSON.parse(detector.info());
  }
  return { engine, notice, infos };
}

const handlers = {
  async init(msg) {
    reply({ type: 'ready', ...(await load(msg.models, msg.engine)) });
  },
  async image(msg) {
    await ready;
    const chw = preprocess(new Uint8Array(msg.bytes));
    const results = {};
    for (const [key, detector] of detectors) results[key] = JSON.parse(await detector.score(chw));
    reply({ type: 'scored', id: msg.id, chw, rgba: chw_to_rgba(chw), results });
  },
  async attack(msg) {
    stopRequested = false;
    const chw = new Uint8Array(msg.chw);
    for (const [key, detector] of detectors) {
      const options = JSON.stringify({ direction: msg.direction, eps: msg.eps, steps: msg.steps, seed: msg.seed || 0 });
      const onStep = (t, score) => {
        reply({ type: 'step', id: msg.id, key, t, score });
        return !stopRequested;
      };
      const result = JSON.parse(await detector.attack(chw, options, onStep));
      const adversarial = new Uint8Array(result.adversarial);
      result.rgba = chw_to_rgba(adversarial);
      result.perturbation = perturbation_rgba(chw, adversarial, msg.eps);
      result.png = encode_png(adversarial);
      delete result.adversarial;
      reply({ type: 'attacked', id: msg.id, key, result });
      if (stopRequested) break;
    }
    reply({ type: 'attack-finished', id: msg.id, stopped: stopRequested });
  },
  async stop() {
    stopRequested = true;
  },
};

self.onmessage = async (event) => {
  const msg = event.data;
  try {
    await handlers[msg.type](msg);
  } catch (err) {
    reply({ type: 'error', id: msg.id, during: msg.type, message: String(err && err.message ? err.message : err) });
  }
};
