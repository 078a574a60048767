//! atd-wasm: what the page's worker calls. Detectors load from the bytes of a weights file and
//! run on WebGPU through our WGSL engine, or on the engine's CPU reference where WebGPU is
//! missing; images are decoded and reduced to the model's 32x32 input here, in the browser.

use atd_core::attack::{self, Detector as DetectorKind};
use atd_gpu::{AttackOptions, Engine};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// Decode an image file of any size and format (PNG, JPEG, WebP, GIF, BMP) to the model's
/// 32x32 input as CHW bytes.
#[wasm_bindgen]
pub fn preprocess(file: &[u8]) -> Result<Vec<u8>, JsError> {
    let input = atd_core::preprocess::image_to_input(file).map_err(js_err)?;
    Ok(atd_core::preprocess::input_to_chw_bytes(&input))
}

/// CHW bytes to RGBA bytes for an `ImageData`.
#[wasm_bindgen]
pub fn chw_to_rgba(chw: &[u8]) -> Vec<u8> {
    let hw = chw.len() / 3;
    (0..hw).flat_map(|i| [chw[i], chw[hw + i], chw[2 * hw + i], 255]).collect()
}

/// The perturbation `adversarial - clean` as RGBA, mapped from [-eps, eps] to [0, 255] (grey =
/// unchanged).
#[wasm_bindgen]
pub fn perturbation_rgba(clean: &[u8], adversarial: &[u8], eps: f32) -> Vec<u8> {
    chw_to_rgba(&attack::perturbation_map(clean, adversarial, eps))
}

/// CHW bytes as a 32x32 PNG file.
#[wasm_bindgen]
pub fn encode_png(chw: &[u8]) -> Result<Vec<u8>, JsError> {
    atd_core::preprocess::chw_bytes_to_png(chw).map_err(js_err)
}

/// Largest per-value change between two CHW byte images, in 1/255 units.
#[wasm_bindgen]
pub fn linf_levels(clean: &[u8], adversarial: &[u8]) -> u32 {
    attack::linf_levels(clean, adversarial)
}

/// Which detectors of a weights file this page can run, as JSON `["atd", "msp"]` (the engine
/// computes ATD's discriminator and a classifier's MSP); an error says what is wrong with a file
/// that is not a valid weights file. Only the header is read: the file is loaded in full by
/// `Detector::load`.
#[wasm_bindgen]
pub fn runnable_detectors(bytes: &[u8]) -> Result<String, JsError> {
    let card = atd_core::weights::read_card(bytes).map_err(js_err)?;
    let mut found = Vec::new();
    if card.discriminator.is_some() {
        found.push(DetectorKind::Atd.name());
    }
    if card.has_msp() {
        found.push(DetectorKind::Msp.name());
    }
    if found.is_empty() && card.outlier_class {
        return Err(JsError::new(
            "the file's detector is ATOM's outlier class, which this page does not run (atd score and atd eval do)",
        ));
    }
    if found.is_empty() {
        return Err(JsError::new(
            "the file holds neither an ATD discriminator nor a classifier head, so no detector this page runs",
        ));
    }
    Ok(serde_json::to_string(&found).expect("a list of names"))
}

/// A detector's GPU device.
#[wasm_bindgen]
pub struct GpuDevice(atd_gpu::gpu::DeviceHandle);

#[wasm_bindgen]
impl GpuDevice {
    /// Destroy it, as a driver reset or a lost GPU would: the detector's later calls fail.
    pub fn destroy(&self) {
        self.0.destroy();
    }
}

/// One detector (ATD's discriminator or a classifier's MSP) on one image at a time.
#[wasm_bindgen]
pub struct Detector {
    engine: Engine,
    info: serde_json::Value,
    threshold: Option<f32>,
}

#[wasm_bindgen]
impl Detector {
    /// `detector`: "atd" or "msp" (the engine's detectors); `engine`: "gpu" (WebGPU) or "cpu"
    /// (the CPU reference).
    pub async fn load(bytes: Vec<u8>, detector: String, engine: String) -> Result<Detector, JsError> {
        let detector = DetectorKind::from_name(&detector).map_err(|e| JsError::new(&e))?;
        let engine = match engine.as_str() {
            "gpu" => Engine::gpu(&bytes, detector, 1).await.map_err(js_err)?,
            "cpu" => Engine::cpu(&bytes, detector, 1).map_err(js_err)?,
            other => return Err(JsError::new(&format!("unknown engine {other:?} (gpu or cpu)"))),
        };
        let card = &engine.plan.card;
        let name = detector.name();
        let threshold = card.thresholds.get(name).copied();
        let info = serde_json::json!({
            "detector": name,
            "engine": if engine.adapter().is_some() { "webgpu" } else { "cpu" },
            "adapter": engine.adapter(),
            "threshold": threshold,
            "class_names": card.class_names,
            "extractor": card.extractor.description(),
            "training": card.training.get("recipe").and_then(|r| r.get("method")).cloned()
                .or_else(|| card.training.get("command").cloned()),
            "recipe": card.training.get("recipe"),
            "metrics": card.metrics,
        });
        Ok(Detector { engine, info, threshold })
    }

    /// This detector's GPU device (none on the CPU engine), which can be destroyed even during
    /// an attack: fault injection for the page's tests.
    pub fn gpu_device(&self) -> Option<GpuDevice> {
        self.engine.device_handle().map(GpuDevice)
    }

    /// JSON: detector, engine, adapter (name, backend, software), threshold, classes, training.
    pub fn info(&self) -> String {
        self.info.to_string()
    }

    /// JSON `{score, in_distribution, class}` for CHW bytes of one 32x32 image.
    pub async fn score(&mut self, chw: Vec<u8>) -> Result<String, JsError> {
        let input = atd_core::preprocess::chw_bytes_to_input(&chw);
        let (scores, probabilities) = self.engine.score_and_classify(&input).await.map_err(js_err)?;
        Ok(self.verdict(scores[0], probabilities.as_ref().map(|p| p[0].as_slice())).to_string())
    }

    /// The score, its verdict at the threshold and, with a classifier head, the most likely
    /// class and the three most likely with their probabilities.
    fn verdict(&self, score: f32, probabilities: Option<&[f32]>) -> serde_json::Value {
        let names = &self.engine.plan.card.class_names;
        let mut ranked: Vec<(usize, f32)> = probabilities.unwrap_or_default().iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top: Vec<serde_json::Value> = ranked
            .iter()
            .take(3)
            .map(|&(c, p)| serde_json::json!({ "class": names.get(c).cloned().unwrap_or_else(|| c.to_string()), "probability": p }))
            .collect();
        serde_json::json!({
            "score": score,
            "in_distribution": self.threshold.map(|t| score >= t),
            "class": top.first().map(|t| t["class"].clone()),
            "top": top,
        })
    }

    /// PGD on this detector's score: `options` is an `AttackOptions` as JSON (the page sends
    /// `{direction: "in"|"out", eps, steps, seed}`; the rest takes its defaults). `on_step(t, score)` is called for every step as scores come back; returning
    /// `false` stops at the next report. Returns JSON `{adversarial: [CHW bytes of the best point
    /// the attack visited, quantised towards the clean image so the eps-ball holds], score,
    /// in_distribution, class, linf, steps, ms_per_step, seed}`.
    pub async fn attack(
        &mut self,
        chw: Vec<u8>,
        options: String,
        on_step: js_sys::Function,
    ) -> Result<String, JsError> {
        let mut opts: AttackOptions = serde_json::from_str(&options).map_err(js_err)?;
        let clean = atd_core::preprocess::chw_bytes_to_input(&chw);
        // The read-back cadence is the engine's to pick: report (and so honour a stop) after
        // every step where a step is slow, on the CPU engine and on software adapters; every 8
        // steps on a real GPU.
        opts.report_every = if self.engine.adapter().is_none_or(|a| a.software) { 1 } else { 8 };
        let started = js_sys::Date::now();
        let mut steps_done = 0;
        let result = self
            .engine
            .attack(&clean, &opts, |t, scores| {
                steps_done = t;
                let keep_going = on_step.call2(&JsValue::NULL, &JsValue::from(t as u32), &JsValue::from(scores[0]));
                !matches!(keep_going, Ok(v) if v == JsValue::FALSE)
            })
            .await
            .map_err(js_err)?;
        let ms_per_step = (js_sys::Date::now() - started) / (steps_done.max(1) as f64);
        let adversarial = atd_core::preprocess::quantize_towards_clean(&chw, &result.adversarial);
        // Score what the user downloads: the quantised image.
        let (scores, probabilities) = self
            .engine
            .score_and_classify(&atd_core::preprocess::chw_bytes_to_input(&adversarial))
            .await
            .map_err(js_err)?;
        let mut out = self.verdict(scores[0], probabilities.as_ref().map(|p| p[0].as_slice()));
        out["adversarial"] = serde_json::json!(adversarial);
        out["linf"] = serde_json::json!(linf_levels(&chw, &adversarial));
        out["steps"] = serde_json::json!(steps_done);
        out["ms_per_step"] = serde_json::json!(ms_per_step);
        out["seed"] = serde_json::json!(opts.attack.seed);
        Ok(out.to_string())
    }
}
