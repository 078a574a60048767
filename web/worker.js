// The detectors run here, off the page's thread: our WGSL engine on WebGPU, or its CPU
// reference in WebAssembly. Images never leave this browser.
//
// Messages are handled one at a time, in order (a detector is never used by two calls at once;
// an attack runs the two detectors side by side, each on its own);
// `stop`, a new image and a new attack take effect at once by asking the running attack to stop.
// The wasm package, loaded with the page's version (see app.js) on it and its .wasm file.
const VERSION = self.location.search;
let atd = null;
const ready = import(`./pkg/atd_wasm.js${VERSION}`).then(async (module) => {
  const exports = await module.default({ module_or_path: new URL(`pkg/atd_wasm_bg.wasm${VERSION}`, self.location.href) });
  atd = module;
  return exports;
});
let detectors = new Map();
// The detectors' GPU devices, taken while no call holds a detector (a running attack does).
let gpuDevices = [];
let models = [];
let engineNow = null;
let stopRequested = false;

function reply(msg, transfer = []) {
  self.postMessage(msg, transfer);
}

async function loadAll(models, engine) {
  const loaded = new Map();
  for (const m of models) {
    // A model the user brought comes as bytes; the shipped ones by URL.
    let bytes = m.bytes;
    if (!bytes) {
      const response = await fetch(m.url);
      if (!response.ok) throw new Error(`could not load ${m.url}: HTTP ${response.status}`);
      bytes = new Uint8Array(await response.arrayBuffer());
    }
    loaded.set(m.key, await atd.Detector.load(bytes, m.head, engine));
  }
  return loaded;
}

// engineWanted: 'gpu', 'cpu' or 'auto'. Auto takes WebGPU on a hardware adapter, and the CPU
// engine where WebGPU is missing, fails, or runs on a software adapter (SwiftShader measured
// 2-3x slower per attack step than the CPU engine on the same machine).
async function load(wanted, engineWanted) {
  await ready;
  models = wanted;
  for (const d of detectors.values()) d.free();
  detectors = new Map();
  let notice = null, details = null;
  if (engineWanted !== 'cpu' && !('gpu' in navigator)) {
    notice = 'This browser has no WebGPU, so the detectors run on the CPU engine (WebAssembly).';
  } else if (engineWanted !== 'cpu') {
    try {
      detectors = await loadAll(models, 'gpu');
      const adapter = JSON.parse(detectors.values().next().value.info()).adapter;
      if (engineWanted === 'auto' && adapter && adapter.software) {
        notice = `WebGPU runs on a software adapter here (${adapter.name || 'unknown adapter'}), slower than the CPU engine: using the CPU engine.`;
        for (const d of detectors.values()) d.free();
        detectors = new Map();
      }
    } catch (err) {
      notice = 'WebGPU did not work in this browser, so the detectors run on the CPU engine (WebAssembly).';
      details = String(err && err.message ? err.message : err);
      detectors = new Map();
    }
  }
  if (detectors.size === 0) detectors = await loadAll(models, 'cpu');
  const infos = {};
  for (const [key, d] of detectors) infos[key] = JSON.parse(d.info());
  engineNow = infos[models[0].key].engine === 'webgpu' ? 'gpu' : 'cpu';
  keepGpuDevices();
  return { engine: engineNow, notice, details, infos };
}

function keepGpuDevices() {
  for (const device of gpuDevices) device.free();
  gpuDevices = [...detectors.values()].map((d) => d.gpu_device()).filter(Boolean);
}

const message = (err) => String(err && err.message ? err.message : err);

// The GPU device was lost (a driver reset, a GPU process crash): carry on on the CPU engine.
async function fallBackToCpu(err) {
  for (const d of detectors.values()) d.free();
  detectors = await loadAll(models, 'cpu');
  engineNow = 'cpu';
  keepGpuDevices();
  const infos = {};
  for (const [key, d] of detectors) infos[key] = JSON.parse(d.info());
  reply({
    type: 'ready', engine: 'cpu', infos, details: message(err),
    notice: 'The GPU device was lost, so the detectors now run on the CPU engine (WebAssembly).',
  });
}

// Both detectors are attacked together: each attack hands the event loop back after every
// report, so their steps interleave and a Stop leaves both with the best point found so far.
async function attack(msg) {
  stopRequested = false;
  const chw = new Uint8Array(msg.chw);
  const options = JSON.stringify({ direction: msg.direction, eps: msg.eps, steps: msg.steps, seed: msg.seed });
  const runs = [...detectors].map(async ([key, detector]) => {
    const onStep = (t, score) => {
      reply({ type: 'step', id: msg.id, key, t, score });
      return !stopRequested;
    };
    const result = JSON.parse(await detector.attack(chw, options, onStep));
    const adversarial = new Uint8Array(result.adversarial);
    result.rgba = atd.chw_to_rgba(adversarial);
    result.perturbation = atd.perturbation_rgba(chw, adversarial, msg.eps);
    result.png = atd.encode_png(adversarial);
    delete result.adversarial;
    reply({ type: 'attacked', id: msg.id, key, result, stopped: result.steps < msg.steps });
  });
  // Every attack settles before the detectors are touched again (a fallback frees them).
  const failure = (await Promise.allSettled(runs)).find((r) => r.status === 'rejected');
  if (failure) {
    if (engineNow !== 'gpu') throw failure.reason;
    await fallBackToCpu(failure.reason);
    for (const k of detectors.keys()) {
      reply({ type: 'attacked', id: msg.id, key: k, result: null, stopped: true, reason: 'stopped: the GPU device was lost; run it again' });
    }
    reply({ type: 'attack-finished', id: msg.id, stopped: true });
    return;
  }
  reply({ type: 'attack-finished', id: msg.id, stopped: stopRequested });
}

const handlers = {
  async init(msg) {
    reply({ type: 'ready', ...(await load(msg.models, msg.engine)) });
  },
  // A weights file the user brought for one slot (msg.key): it replaces that slot's detector
  // only once it has loaded; a file the engine cannot use leaves the slot as it was.
  async model(msg) {
    await ready;
    const bytes = new Uint8Array(msg.bytes);
    try {
      const runnable = JSON.parse(atd.runnable_detectors(bytes));
      // A file's discriminator when it has one (ATD, or an OpenGAN baseline), else its MSP.
      const head = runnable.includes('atd') ? 'atd' : 'msp';
      const detector = await atd.Detector.load(bytes, head, engineNow);
      const old = detectors.get(msg.key);
      detectors.set(msg.key, detector);
      if (old) old.free();
      keepGpuDevices();
      models = models.map((m) => (m.key === msg.key ? { key: m.key, bytes, head } : m));
      reply({ type: 'model-loaded', key: msg.key, name: msg.name, head, bytes, info: JSON.parse(detector.info()) });
    } catch (err) {
      reply({ type: 'model-refused', key: msg.key, name: msg.name, message: message(err) });
    }
  },
  // msg.chw: the 32x32 input, decoded by decode.js.
  async image(msg) {
    const wasm = await ready;
    const chw = new Uint8Array(msg.chw);
    const scoreAll = async () => {
      const results = {};
      for (const [key, detector] of detectors) results[key] = JSON.parse(await detector.score(chw));
      return results;
    };
    let results;
    try {
      results = await scoreAll();
    } catch (err) {
      if (engineNow !== 'gpu') throw err;
      await fallBackToCpu(err);
      results = await scoreAll();
    }
    reply({ type: 'scored', id: msg.id, chw, rgba: atd.chw_to_rgba(chw), results, wasmBytes: wasm.memory.buffer.byteLength });
  },
  attack,
};

let queue = Promise.resolve();
self.onmessage = (event) => {
  const msg = event.data;
  // Fault injection for the tests: lose the GPU device now, even in the middle of an attack.
  if (msg.type === 'lose-device') {
    for (const device of gpuDevices) device.destroy();
    return;
  }
  // These interrupt the running attack now; the attack ends at its next report.
  if (msg.type === 'stop' || msg.type === 'image' || msg.type === 'attack' || msg.type === 'init') stopRequested = true;
  if (msg.type === 'stop') return;
  queue = queue.then(async () => {
    try {
      await handlers[msg.type](msg);
    } catch (err) {
      reply({ type: 'error', id: msg.id, during: msg.type, message: message(err) });
    }
  });
};
