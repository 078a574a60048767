// Decodes one uploaded image to the models' 32x32 input, then is thrown away: decoding a large
// photo grows WebAssembly memory by hundreds of MiB, which a wasm instance never gives back, so
// it happens in a short-lived worker of its own and not in the detectors' worker.
import init, { preprocess } from './pkg/atd_wasm.js';

self.onmessage = async ({ data }) => {
  try {
    await init();
    const chw = preprocess(new Uint8Array(data.bytes));
    self.postMessage({ chw }, [chw.buffer]);
  } catch (err) {
    self.postMessage({ error: String(err && err.message ? err.message : err) });
  }
};
