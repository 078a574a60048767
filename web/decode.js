// Decodes one uploaded image to the models' 32x32 input, then is thrown away: decoding a large
// photo grows WebAssembly memory by hundreds of MiB, which a wasm instance never gives back, so
// it happens in a short-lived worker of its own and not in the detectors' worker.
const VERSION = self.location.search;

self.onmessage = async ({ data }) => {
  try {
    const atd = await import(`./pkg/atd_wasm.js${VERSION}`);
    await atd.default({ module_or_path: new URL(`pkg/atd_wasm_bg.wasm${VERSION}`, self.location.href) });
    const chw = atd.preprocess(new Uint8Array(data.bytes));
    self.postMessage({ chw }, [chw.buffer]);
  } catch (err) {
    self.postMessage({ error: String(err && err.message ? err.message : err) });
  }
};
