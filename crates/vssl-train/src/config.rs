//! A training run's configuration: one serde tree, TOML on disk, `Default` = the paper's recipe.
//!
//! Every struct is `#[serde(default, deny_unknown_fields)]`: a file names only what it changes,
//! and a misspelt key is an error naming it. [`TrainConfig::from_toml`] reads a file's text,
//! applies `--set a.b=v` overrides ([`apply_override`]) on the TOML tree, and checks the result
//! ([`TrainConfig::validate`]); [`TrainConfig::to_toml`] writes the resolved configuration that a
//! run keeps in its folder (`config.toml`).
//!
//! The defaults are ContrastCorr's (`train_trackingnet.py` and its README): ResNet-18 at stride 8,
//! 100 warm-up epochs of 256² crop pairs then 100 main epochs of a 256² patch tracked into a 640²
//! frame, batch 16, Adam 1e-4 halved every 40 epochs (restarting at the phase change), outlier
//! threshold 2.5 off in epochs 0, 100 and 101, concentration from epoch 10, a checkpoint every 200
//! iterations, colours through the frozen Lab autoencoder.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use vssl_core::{Error, Result};
use vssl_data::synth::Preset;
use vssl_model::ResNetConfig;

use crate::contrastcorr::StepConfig;
use crate::optim::AdamConfig;

const OP: &str = "TrainConfig";

/// Everything a training run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Name of the configuration, used for the default run folder `runs/<name>-<time>`.
    pub name: String,
    /// Run seed: model initialisation, sample order, augmentation, channel dropout.
    pub seed: u64,
    /// The correspondence encoder.
    pub model: ResNetConfig,
    /// The step: which terms (method) and their weights.
    pub step: StepConfig,
    /// Where colours are copied and compared.
    pub colour: ColourConfig,
    /// Training data, augmentation and loading.
    pub data: DataConfig,
    /// Epochs, phases and the learning-rate / threshold / concentration schedule.
    pub schedule: ScheduleConfig,
    /// Adam's settings. Its `lr` is not used: the schedule sets the rate of every epoch
    /// (`schedule.lr`).
    pub optim: AdamConfig,
    /// Checkpoint frequency and retention.
    pub checkpoint: CheckpointConfig,
    /// Logging.
    pub log: LogConfig,
    /// The evaluation run after training (by `vssl train`; the trainer itself never evaluates).
    pub eval: EvalConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            name: "contrastcorr-paper".into(),
            seed: 0,
            model: ResNetConfig::default(),
            step: StepConfig::default(),
            colour: ColourConfig::default(),
            data: DataConfig::default(),
            schedule: ScheduleConfig::default(),
            optim: AdamConfig::default(),
            checkpoint: CheckpointConfig::default(),
            log: LogConfig::default(),
            eval: EvalConfig::default(),
        }
    }
}

/// Which colour space the reconstruction uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColourKind {
    /// The frozen Lab autoencoder of UVC (the paper): needs its weights.
    Autoencoder,
    /// Lab averaged over the encoder's stride (a 3-d mean colour per cell): no weights needed.
    Lab,
    /// Every stride × stride Lab patch as one vector, compared at full resolution: no weights
    /// needed, and matching must get the texture inside a cell right; the CPU default.
    #[serde(rename = "lab-patches")]
    LabPatches,
}

/// Colour space settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ColourConfig {
    /// `autoencoder` (the paper), `lab-patches` or `lab` (no weights needed).
    pub space: ColourKind,
    /// Folder holding the autoencoder's `encoder.safetensors` and `decoder.safetensors`.
    pub autoencoder: PathBuf,
}

impl Default for ColourConfig {
    fn default() -> Self {
        Self {
            space: ColourKind::Autoencoder,
            autoencoder: PathBuf::from("../shared/weights/uvc-lab-autoencoder"),
        }
    }
}

/// Where training clips come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataSource {
    /// Clips of the synthetic generator's `train` split, rendered on the fly (no files).
    Synthetic,
    /// A folder of videos or frame folders, or a list file (`data.path`, or `--data`).
    Videos,
}

/// Training data and its loading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// `videos` (the paper: TrackingNet) or `synthetic`.
    pub source: DataSource,
    /// Folder (searched recursively) or list file of the videos; `--data` sets it.
    pub path: Option<PathBuf>,
    /// The synthetic clips (`source = "synthetic"`).
    pub synthetic: SyntheticData,
    /// Pairs per batch (16).
    pub batch_size: usize,
    /// Loader worker threads (2); 0 makes samples on the training thread. The batches are the
    /// same whatever this is.
    pub workers: usize,
    /// Batches prepared ahead of the step (2); bounds the loader's memory.
    pub queue_depth: usize,
    /// Warm-up augmentation: largest rotation in degrees (10).
    pub warmup_rotate: u32,
    /// Warm-up augmentation: scale range `[1/s, s]` (1.2; ≤ 0 turns scaling off).
    pub warmup_scale: f64,
    /// Warm-up crop side in pixels (256), a multiple of the encoder's stride.
    pub warmup_crop: usize,
    /// Main phase: largest rotation of the reference frame in degrees (10).
    pub main_rotate: u32,
    /// Main phase: side of the padded target canvas in pixels (640).
    pub main_full_size: usize,
    /// Main phase: side of the reference patch in pixels (256).
    pub main_crop: usize,
    /// CorrFlow's channel dropout on the encoder inputs, one draw per batch (on).
    pub channel_dropout: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            source: DataSource::Videos,
            path: None,
            synthetic: SyntheticData::default(),
            batch_size: 16,
            workers: 2,
            queue_depth: 2,
            warmup_rotate: 10,
            warmup_scale: 1.2,
            warmup_crop: 256,
            main_rotate: 10,
            main_full_size: 640,
            main_crop: 256,
            channel_dropout: true,
        }
    }
}

/// The synthetic training clips.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticData {
    /// Clips per epoch (one pair each).
    pub clips: usize,
    /// Difficulty preset of the generator.
    pub preset: Preset,
    /// Frame width and height in pixels.
    pub size: u32,
    /// Frames per clip.
    pub frames: usize,
    /// Dataset seed (the clips do not change with the run seed).
    pub seed: u64,
}

impl Default for SyntheticData {
    fn default() -> Self {
        Self {
            clips: 512,
            preset: Preset::Medium,
            size: 256,
            frames: 16,
            seed: 0,
        }
    }
}

/// The schedule, in epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Warm-up epochs (100): equal-size crop pairs.
    pub warmup_epochs: u64,
    /// Main-phase epochs after the warm-up (100): patch tracking and the inter-video terms.
    /// Must be 0 for a method without tracking (colourisation).
    pub main_epochs: u64,
    /// Learning rate at the start of each phase (1e-4).
    pub lr: f64,
    /// `step` (ContrastCorr: `lr · lr_gamma^⌊e / lr_step_epochs⌋`) or `poly` (UVC:
    /// `lr · (1 − e / poly_epochs)^poly_power`), `e` counting epochs within the phase.
    pub lr_policy: LrPolicy,
    /// The rate is multiplied by `lr_gamma` every `lr_step_epochs` epochs of a phase (40).
    pub lr_step_epochs: u64,
    /// Decay factor of the step schedule (0.5).
    pub lr_gamma: f64,
    /// Exponent of the poly schedule (0.9).
    pub poly_power: f64,
    /// Denominator of the poly schedule (UVC: its `--nepoch`, 30); none: all epochs of the run.
    pub poly_epochs: Option<u64>,
    /// Recompute the rate at every step, counting the fraction of the epoch done (false: once
    /// per epoch, as the references). Only `poly` changes: it then decays smoothly, which
    /// matters when a run has few epochs.
    pub lr_per_step: bool,
    /// Outlier threshold of every L1: a sample whose loss exceeds it counts 0 (2.5). To train
    /// without it, make the threshold-off epochs cover the run (`thr_off_*_epochs`).
    pub thr: Option<f64>,
    /// The threshold is off in the first epochs of the warm-up (1: epoch 0) …
    pub thr_off_warmup_epochs: u64,
    /// … and of the main phase (2: epochs 100 and 101).
    pub thr_off_main_epochs: u64,
    /// The concentration term starts at this warm-up epoch (10); always on in the main phase.
    pub concentration_from_epoch: u64,
    /// Stop after this many steps in all (none: run every epoch); for quick tries and tests.
    pub max_steps: Option<u64>,
    /// After the last step, recompute every BatchNorm's running statistics as the mean over
    /// this many batches (drawn from the epoch after the run's last, so at most one epoch's,
    /// without channel dropout) under the final weights: "precise BatchNorm" (0: off, as the
    /// references).
    pub precise_bn_batches: usize,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            warmup_epochs: 100,
            main_epochs: 100,
            lr: 1e-4,
            lr_policy: LrPolicy::Step,
            lr_step_epochs: 40,
            lr_gamma: 0.5,
            poly_power: 0.9,
            poly_epochs: None,
            lr_per_step: false,
            thr: Some(2.5),
            thr_off_warmup_epochs: 1,
            thr_off_main_epochs: 2,
            concentration_from_epoch: 10,
            max_steps: None,
            precise_bn_batches: 0,
        }
    }
}

/// How the learning rate decays within a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrPolicy {
    /// Multiplied by `lr_gamma` every `lr_step_epochs` epochs (ContrastCorr).
    Step,
    /// Polynomial decay to 0 at `poly_epochs` (UVC).
    Poly,
}

/// Checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// A checkpoint every this many steps (200), besides the one at the end and on Ctrl-C.
    pub every_steps: u64,
    /// Checkpoints kept (3); older ones are deleted once a newer one is safely written.
    pub keep_last: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            every_steps: 200,
            keep_last: 3,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A plain log line every this many steps when stderr is not a terminal (20).
    pub every_steps: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { every_steps: 20 }
    }
}

/// What `vssl train` evaluates after training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Evaluate at the end of training (on).
    pub enabled: bool,
    /// Clips of the synthetic `eval` split (disjoint textures and shapes from training).
    pub synthetic_clips: usize,
    /// Their preset.
    pub synthetic_preset: Preset,
    /// Their seed (fixed: every run is judged on the same clips).
    pub synthetic_seed: u64,
    /// Their frame side in pixels.
    pub synthetic_size: u32,
    /// Label-propagation protocol preset on the synthetic clips (`crw`, `contrastcorr`, `uvc`).
    pub synthetic_protocol: String,
    /// DAVIS-2016 sequences evaluated when a DAVIS root is given (or found).
    pub davis_sequences: Vec<String>,
    /// Protocol on DAVIS.
    pub davis_protocol: String,
    /// Encoder input size on DAVIS: a short side in pixels, or `native`.
    pub davis_size: String,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            synthetic_clips: 10,
            synthetic_preset: Preset::Medium,
            synthetic_seed: 1000,
            synthetic_size: 256,
            synthetic_protocol: "crw".into(),
            davis_sequences: vec!["blackswan".into(), "car-shadow".into(), "dog".into()],
            davis_protocol: "crw".into(),
            davis_size: "native".into(),
        }
    }
}

impl TrainConfig {
    /// Parses a TOML file's `text` (`source` names it in errors), applies the `--set`
    /// overrides in order, and validates the result.
    ///
    /// # Errors
    /// [`Error::Op`] naming `source` and the key: TOML syntax, unknown keys, values of the wrong
    /// type, bad overrides, invalid combinations ([`TrainConfig::validate`]).
    pub fn from_toml(text: &str, source: &str, overrides: &[String]) -> Result<Self> {
        let mut tree: toml::Table = text
            .parse()
            .map_err(|e| Error::op(OP, format!("{source}: not valid TOML: {e}")))?;
        for o in overrides {
            apply_override(&mut tree, o)?;
        }
        let cfg: TrainConfig = toml::Value::Table(tree.clone())
            .try_into()
            .map_err(|e| Error::op(OP, format!("{source}: {e}")))?;
        for o in overrides {
            if let (parts, "none") = split_override(o)? {
                check_known_key(&tree, &parts)?;
            }
        }
        cfg.validate()
            .map_err(|e| Error::op(OP, format!("{source}: {e}")))?;
        Ok(cfg)
    }

    /// The configuration as TOML, every key written.
    ///
    /// # Errors
    /// [`Error::Op`] when a value has no TOML form (cannot happen for valid configurations).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::op(OP, format!("cannot write TOML: {e}")))
    }

    /// Total number of epochs.
    pub fn epochs(&self) -> u64 {
        self.schedule.warmup_epochs + self.schedule.main_epochs
    }

    /// Checks the combinations serde cannot.
    ///
    /// # Errors
    /// [`Error::Op`] naming the key that is wrong and why.
    pub fn validate(&self) -> Result<()> {
        let s = self.model.output_stride();
        let d = &self.data;
        let bad = |msg: String| Err(Error::op(OP, msg));
        if d.batch_size == 0 || d.queue_depth == 0 {
            return bad("data.batch_size and data.queue_depth must be at least 1".into());
        }
        for (key, v) in [
            ("data.warmup_crop", d.warmup_crop),
            ("data.main_crop", d.main_crop),
            ("data.main_full_size", d.main_full_size),
        ] {
            if v == 0 || v % s != 0 {
                return bad(format!(
                    "{key} = {v} must be a positive multiple of the encoder's stride {s}"
                ));
            }
        }
        if d.main_crop > d.main_full_size {
            return bad(format!(
                "data.main_crop = {} is larger than data.main_full_size = {}",
                d.main_crop, d.main_full_size
            ));
        }
        if d.source == DataSource::Synthetic && d.synthetic.clips == 0 {
            return bad("data.synthetic.clips must be at least 1".into());
        }
        let sc = &self.schedule;
        if self.epochs() == 0 {
            return bad("schedule.warmup_epochs + schedule.main_epochs must be at least 1".into());
        }
        if sc.main_epochs > 0 && !self.step.method.toggles().tracking {
            return bad(format!(
                "schedule.main_epochs = {} but method {:?} has no main phase (it does not track): set it to 0",
                sc.main_epochs, self.step.method
            ));
        }
        if !(sc.lr.is_finite() && sc.lr >= 0.0 && sc.lr_gamma.is_finite() && sc.lr_gamma > 0.0) {
            return bad("schedule.lr must be >= 0 and schedule.lr_gamma > 0".into());
        }
        if sc.lr_step_epochs == 0 {
            return bad("schedule.lr_step_epochs must be at least 1".into());
        }
        if sc.thr.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
            return bad("schedule.thr must be a positive number".into());
        }
        if self.checkpoint.every_steps == 0 || self.checkpoint.keep_last == 0 {
            return bad(
                "checkpoint.every_steps and checkpoint.keep_last must be at least 1".into(),
            );
        }
        if self.log.every_steps == 0 {
            return bad("log.every_steps must be at least 1".into());
        }
        Ok(())
    }
}

/// Checks that the dotted path `parts` names a configuration key, for `--set key=none`, which
/// removes it and so leaves nothing for the parser to reject. `tree` must parse as a
/// [`TrainConfig`]. Each prefix of the path gets a probe, an empty table, and the tree is parsed
/// again: every table of the configuration takes an empty table (all its keys have defaults), a
/// value does not (a type error), and a key that does not exist makes serde report an "unknown
/// field".
fn check_known_key(tree: &toml::Table, parts: &[&str]) -> Result<()> {
    let key = parts.join(".");
    let not_a_key = |why: String| {
        Error::op(
            OP,
            format!("--set {key}=none: {key:?} is not a configuration key ({why})"),
        )
    };
    for n in 1..=parts.len() {
        let at = parts[..n].join(".");
        let mut probe = tree.clone();
        apply_override(&mut probe, &format!("{at}={{}}"))
            .map_err(|_| not_a_key(format!("{at} is a value, not a table")))?;
        match toml::Value::Table(probe).try_into::<TrainConfig>() {
            Err(e) if e.to_string().contains("unknown field") => {
                return Err(not_a_key(e.to_string().trim().replace('\n', " ")));
            }
            Err(_) if n < parts.len() => {
                return Err(not_a_key(format!("{at} is a value, not a table")));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Splits a `--set` spec `key.path=value` into the key's parts and the raw value, both trimmed.
///
/// # Errors
/// No `=`, or an empty part of the key.
fn split_override(spec: &str) -> Result<(Vec<&str>, &str)> {
    let (key, raw) = spec.split_once('=').ok_or_else(|| {
        Error::op(
            OP,
            format!("--set {spec:?}: expected key=value, e.g. schedule.lr=1e-3"),
        )
    })?;
    let parts: Vec<&str> = key.split('.').map(str::trim).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(Error::op(OP, format!("--set {spec:?}: empty key")));
    }
    Ok((parts, raw.trim()))
}

/// Applies one `key.path=value` override to a TOML tree. The value is read as TOML (`3`, `1e-4`,
/// `true`, `"text"`, `[1, 2]`); anything that does not parse as a TOML value is taken as a
/// string (`--set colour.space=lab`); `none` removes the key, so that its default applies
/// (`--set schedule.max_steps=none`: no step limit). Missing tables on the path are created;
/// whether the key exists is checked when the tree becomes a [`TrainConfig`] (unknown keys are
/// errors there).
///
/// # Errors
/// [`Error::Op`] when the override has no `=`, an empty key, or a path through a non-table.
pub fn apply_override(tree: &mut toml::Table, spec: &str) -> Result<()> {
    let (parts, raw) = split_override(spec)?;
    let (last, path) = parts
        .split_last()
        .ok_or_else(|| Error::op(OP, format!("--set {spec:?}: empty key")))?;
    if raw == "none" {
        // Remove the key: the default applies (e.g. no `schedule.max_steps` limit).
        let mut at = Some(&mut *tree);
        for p in path {
            at = at
                .and_then(|t| t.get_mut(*p))
                .and_then(toml::Value::as_table_mut);
        }
        if let Some(t) = at {
            t.remove(*last);
        }
        return Ok(());
    }
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut at = tree;
    for (i, p) in path.iter().enumerate() {
        let entry = at
            .entry((*p).to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        at = entry.as_table_mut().ok_or_else(|| {
            Error::op(
                OP,
                format!(
                    "--set {spec:?}: {} is a value, not a table",
                    parts[..=i].join(".")
                ),
            )
        })?;
    }
    at.insert((*last).to_string(), value);
    Ok(())
}
