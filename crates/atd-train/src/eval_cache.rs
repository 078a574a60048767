//! Finished evaluations on disk, so that a long run (`atd report`: hours on a CPU) killed
//! half-way resumes at the set where it stopped, and `atd eval --cache` prints any of them again.
//!
//! One entry per image set of an evaluation. An entry's key is a content address of everything
//! that determines its scores: the evaluated model's canonical weights, the model that crafts the
//! attack when it is another one, the detector, the attack and its settings, and the set's images
//! and labels with its name and role (in-distribution or OOD). So entries stay valid when other
//! models or sets change, and a changed model or image is recomputed. (The attack's random starts
//! are seeded per set and batch, so a set's scores do not depend on the sets evaluated before it.)
//!
//! The entries of one evaluated model live together in one gzip-compressed JSON file,
//! `<digest of the model>.json.gz`: a report of three models is three files, not hundreds, and a
//! committed cache stays small. Each new entry rewrites its model's file through a temporary
//! file and a rename, so a kill never leaves a torn file.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use atd_core::attack::Direction;
use atd_core::data::ImageSet;
use atd_core::digest::Digest;
use serde::{Deserialize, Serialize};

use crate::Model;
use crate::eval::SetScores;

#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct CachedScores {
    pub scores: SetScores,
    pub seconds: f64,
}

/// Where one set's scores are kept: its model's file and its key there.
pub(crate) struct Entry {
    file: PathBuf,
    key: String,
}

/// What one evaluation's entries share: its model's file and the start of every key.
#[derive(Clone)]
pub(crate) struct EvaluationKey {
    file: PathBuf,
    digest: Digest,
}

pub struct EvalCache {
    pub dir: PathBuf,
    /// Set results read back in this run, and the seconds they took when they were computed.
    pub hits: Cell<usize>,
    pub hit_seconds: Cell<f64>,
    /// The files read so far in this run, by path.
    files: RefCell<HashMap<PathBuf, BTreeMap<String, CachedScores>>>,
}

impl EvalCache {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, hits: Cell::new(0), hit_seconds: Cell::new(0.0), files: RefCell::default() }
    }

    /// How many set results the cache holds on disk, over every model's file; an error names a
    /// damaged file.
    pub fn entries(&self) -> anyhow::Result<usize> {
        let mut count = 0;
        for file in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = file.path();
            if path.to_str().is_some_and(|p| p.ends_with(".json.gz")) {
                count += read_file(&path).with_context(|| format!("reading {}", path.display()))?.len();
            }
        }
        Ok(count)
    }

    pub(crate) fn evaluation_key(
        &self,
        model: &Model,
        detector: crate::Detector,
        attack: &crate::eval::Attack,
    ) -> anyhow::Result<EvaluationKey> {
        let weights = model.to_bytes()?;
        let file = self.dir.join(format!("{}.json.gz", &Digest::new().part(&weights).hex()[..32]));
        let mut digest = Digest::new().part(weights).part(detector.name()).part(attack.name()).part(attack.cfg.key());
        if let Some((source, source_detector, _)) = &attack.source {
            digest = digest.part(source.to_bytes()?).part(source_detector.name());
        }
        Ok(EvaluationKey { file, digest })
    }

    pub(crate) fn entry(&self, evaluation: &EvaluationKey, name: &str, set: &ImageSet, direction: Direction) -> Entry {
        let role = match direction {
            Direction::Out => "in-distribution",
            Direction::In => "ood",
        };
        let labels: Vec<u8> = set.labels.iter().flat_map(|l| l.to_le_bytes()).collect();
        let digest = evaluation.digest.clone().part(role).part(name).part(&set.pixels).part(labels);
        Entry { file: evaluation.file.clone(), key: digest.hex()[..32].to_string() }
    }

    /// The cached scores, if the entry exists; a damaged file is recomputed, entry by entry.
    pub(crate) fn read(&self, entry: &Entry) -> Option<CachedScores> {
        let mut files = self.files.borrow_mut();
        let entries = files.entry(entry.file.clone()).or_insert_with(|| {
            read_file(&entry.file).unwrap_or_else(|e| {
                if entry.file.exists() {
                    eprintln!("warning: ignoring the damaged cache file {}: {e}", entry.file.display());
                }
                BTreeMap::new()
            })
        });
        let cached = entries.get(&entry.key)?.clone();
        self.hits.set(self.hits.get() + 1);
        self.hit_seconds.set(self.hit_seconds.get() + cached.seconds);
        Some(cached)
    }

    /// Adds the entry and rewrites its model's file through a temporary file and a rename.
    pub(crate) fn write(&self, entry: &Entry, cached: CachedScores) {
        let mut files = self.files.borrow_mut();
        let entries = files.entry(entry.file.clone()).or_insert_with(|| read_file(&entry.file).unwrap_or_default());
        entries.insert(entry.key.clone(), cached);
        let tmp = entry.file.with_extension("tmp");
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|_| write_file(&tmp, entries))
            .and_then(|_| std::fs::rename(&tmp, &entry.file));
        if let Err(e) = written {
            eprintln!("warning: could not cache this evaluation in {}: {e}", self.dir.display());
        }
    }
}

fn read_file(path: &Path) -> std::io::Result<BTreeMap<String, CachedScores>> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path)?).read_to_string(&mut text)?;
    serde_json::from_str(&text).map_err(std::io::Error::other)
}

fn write_file(path: &Path, entries: &BTreeMap<String, CachedScores>) -> std::io::Result<()> {
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(path)?, flate2::Compression::default());
    gz.write_all(serde_json::to_string(entries).map_err(std::io::Error::other)?.as_bytes())?;
    gz.finish()?.sync_all()
}
