//! A training run, from an empty folder (or a checkpoint) to the last step.
//!
//! [`Trainer::new`] prepares a run folder: the resolved `config.toml`, the initial weights
//! (`init.safetensors`, the random-init baseline of the evaluation), and, with `resume`, the
//! state of the newest checkpoint. [`Trainer::run`] then loops over the schedule's epochs:
//!
//! ```text
//! epoch e ─ plan (phase, lr, threshold, concentration)  ─ loader.epoch_from(e, batch)
//!   batch ─ stack the pairs, draw channel dropout ─ step.forward ─ every term finite?
//!         ─ backward ─ Adam ─ metrics.jsonl ─ observer ─ checkpoint every N steps
//!         ─ Ctrl-C seen? checkpoint and stop
//! ```
//!
//! **Reproducible.** The model is initialised from the run seed; the batches depend only on
//! (seed, epoch, sample index) and channel dropout on (seed, epoch, batch index); the checkpoint
//! holds the weights, BatchNorm statistics, Adam's moments and step counts, and the position.
//! Resumed from a checkpoint, a run on the CPU with the same number of threads computes the same
//! losses bit for bit as one that was never interrupted (`tests/` checks it).
//!
//! **Faults.** A non-finite term stops the run with [`Error::Op`] naming the term and the step,
//! before the update, without writing a checkpoint: the last good one stays. Bad videos are
//! skipped and counted by the data pipeline. A stop request ([`Trainer::stop_flag`], set by the
//! CLI's Ctrl-C handler) ends the run after the current step with a checkpoint.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use vssl_core::{Error, Result};
use vssl_data::augment::{MainPipeline, WarmupPipeline, draw_channel_dropout};
use vssl_data::dataset::{EntryKind, VideoEntry, VideoList};
use vssl_data::loader::{Loader, LoaderConfig, MakeFn};
use vssl_data::pairs::{PairDataset, PairPhase, PairSample};
use vssl_data::rng::sample_rng;
use vssl_data::skip::SkipLog;
use vssl_data::source::FrameSource;
use vssl_data::synth::{self, Split};
use vssl_model::weights::TensorMap;
use vssl_model::{Autoencoder, ResNet, is_trainable};

use crate::checkpoint::{self, RunState, STATE_FORMAT};
use crate::config::{ColourKind, DataSource, TrainConfig};
use crate::contrastcorr::{ColourSpace, ContrastCorrStep, PairBatch, Phase};
use crate::optim::{Adam, Optimizer};
use crate::schedule::{self, EpochPlan};

const OP: &str = "train";

/// Key prefix of the encoder's variables in checkpoints (what `vssl-eval` reads).
pub const ENCODER_PREFIX: &str = "encoder.";

/// What one step did: a line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Steps done, this one included.
    pub step: u64,
    /// Epoch of the step.
    pub epoch: u64,
    /// Batch index within the epoch.
    pub batch: u64,
    /// Phase.
    pub phase: Phase,
    /// Learning rate.
    pub lr: f64,
    /// The weighted total.
    pub loss: f64,
    /// Every term's unweighted value, in the step's order, with its weight.
    pub terms: Vec<TermRecord>,
    /// Seconds the step took (forward, backward, update; waiting for data included).
    pub seconds: f64,
    /// Channels dropped by channel dropout.
    pub dropped_channels: Vec<usize>,
}

/// One loss term of a [`StepRecord`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TermRecord {
    /// The term's name (`intra`, `self_rec`, `concentration`, `inter`, `sparsity`).
    pub name: String,
    /// Its weight in the total.
    pub weight: f64,
    /// Its unweighted value.
    pub value: f64,
}

/// How a call to [`Trainer::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every epoch of the schedule is done.
    Finished,
    /// `schedule.max_steps` was reached.
    StepLimit,
    /// A stop was requested (Ctrl-C); a checkpoint was written.
    Interrupted,
}

/// Told about the run's progress (the CLI draws a progress bar with it).
pub trait Observer {
    /// The run starts (or resumes) at `state`; `total_steps` is the schedule's length.
    fn start(&mut self, _state: &RunState, _total_steps: u64) {}
    /// A step is done.
    fn step(&mut self, _record: &StepRecord) {}
    /// A checkpoint was written.
    fn checkpoint(&mut self, _path: &Path) {}
}

/// An observer that ignores everything.
impl Observer for () {}

/// The loader of one phase (`None` when the phase has no epochs).
type PhaseLoader = Option<Loader<PairSample>>;

type Opener = Arc<dyn Fn(&Path) -> Result<Box<dyn FrameSource>> + Send + Sync>;

/// A run: the model, the optimizer, the data and where it stands.
pub struct Trainer {
    cfg: TrainConfig,
    dir: PathBuf,
    device: Device,
    varmap: VarMap,
    step: ContrastCorrStep,
    opt: Adam,
    state: RunState,
    warmup: Option<Loader<PairSample>>,
    main: Option<Loader<PairSample>>,
    skips: Arc<SkipLog>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("dir", &self.dir)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Trainer {
    /// Prepares the run folder `dir` (created if missing) for `cfg`.
    ///
    /// Without `resume` the folder must hold no checkpoint; the configuration is written to
    /// `config.toml` and the initial weights to `init.safetensors`. With `resume`, the newest
    /// checkpoint's weights, optimizer state and position are loaded (`cfg` should be the run's
    /// saved configuration, [`load_config`]); a folder without checkpoint starts from scratch.
    ///
    /// # Errors
    /// [`Error::File`] naming the folder or file at fault (no data, a checkpoint that does not
    /// fit the model, an existing run without `resume`); the model's and the data's errors.
    pub fn new(cfg: TrainConfig, dir: &Path, device: Device, resume: bool) -> Result<Self> {
        cfg.validate()?;
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::file(dir, format!("cannot create the run folder: {e}")))?;
        let removed = checkpoint::remove_temporaries(dir)?;
        if removed > 0 {
            tracing::warn!(
                "{}: removed {removed} temporary file(s) of an interrupted write",
                dir.display()
            );
        }
        let existing = checkpoint::list(dir)?;
        if !resume && !existing.is_empty() {
            return Err(Error::file(
                dir,
                "already holds checkpoints: pass --resume to continue this run, or choose another run folder",
            ));
        }

        let varmap = VarMap::new();
        let encoder = ResNet::new(
            &cfg.model,
            VarBuilder::from_varmap(&varmap, DType::F32, &device),
        )?;
        vssl_model::resnet::seeded_init(&varmap, cfg.seed)?;
        let colour = match cfg.colour.space {
            ColourKind::Lab => ColourSpace::Lab,
            ColourKind::LabPatches => ColourSpace::LabPatches,
            ColourKind::Autoencoder => {
                let d = &cfg.colour.autoencoder;
                let ae = Autoencoder::load(
                    &d.join("encoder.safetensors"),
                    &d.join("decoder.safetensors"),
                    &device,
                )
                .map_err(|e| {
                    Error::file(
                        d,
                        format!(
                            "cannot load the Lab autoencoder ({e}); set colour.autoencoder to the folder holding encoder.safetensors and decoder.safetensors, or colour.space = \"lab-patches\" (no weights needed)"
                        ),
                    )
                })?;
                ColourSpace::Autoencoder(Box::new(ae))
            }
        };
        let step = ContrastCorrStep::new(encoder, colour, cfg.step.clone())?;
        let vars: Vec<_> = vssl_core::testing::named_vars(&varmap)
            .into_iter()
            .filter(|(n, _)| is_trainable(n))
            .collect();
        let opt = Adam::new(vars, cfg.optim, |_| false)?;

        let mut state = RunState {
            format: STATE_FORMAT,
            step: 0,
            epoch: 0,
            batch: 0,
            seed: cfg.seed,
            phase: schedule::plan(&cfg.schedule, 0).phase,
            lr: cfg.schedule.lr,
            last_loss: f64::NAN,
            train_seconds: 0.0,
            finished: false,
        };
        let skips = Arc::new(SkipLog::new());
        let (warmup, main) = loaders(&cfg, &skips)?;
        let mut trainer = Self {
            cfg,
            dir: dir.to_path_buf(),
            device,
            varmap,
            step,
            opt,
            state: state.clone(),
            warmup,
            main,
            skips,
            stop: Arc::new(AtomicBool::new(false)),
        };
        match checkpoint::load_latest(dir, &trainer.device)? {
            Some(c) if resume => {
                trainer.restore(&c.tensors, &c.path)?;
                state = c.state;
                if state.seed != trainer.cfg.seed {
                    return Err(Error::file(
                        &c.path,
                        format!(
                            "was written with seed {} but the configuration says {}",
                            state.seed, trainer.cfg.seed
                        ),
                    ));
                }
                trainer.state = state;
                truncate_metrics(&metrics_path(dir), trainer.state.step)?;
                tracing::info!(
                    "resuming {} at step {} (epoch {}, batch {})",
                    c.path.display(),
                    trainer.state.step,
                    trainer.state.epoch,
                    trainer.state.batch
                );
            }
            _ => {
                vssl_core::io::write_atomic(
                    &dir.join("config.toml"),
                    trainer.cfg.to_toml()?.as_bytes(),
                )?;
                vssl_model::weights::save_safetensors(
                    &trainer.encoder_tensors()?,
                    &dir.join("init.safetensors"),
                )?;
                truncate_metrics(&metrics_path(dir), 0)?;
            }
        }
        Ok(trainer)
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Where the run stands.
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// The run folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The model's variables (weights and BatchNorm statistics) by torchvision name.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Setting this flag makes [`Trainer::run`] write a checkpoint and return
    /// [`Outcome::Interrupted`] after the current step.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// Bad inputs skipped so far.
    pub fn skips(&self) -> &Arc<SkipLog> {
        &self.skips
    }

    /// Number of steps of the whole schedule (before `max_steps`).
    pub fn schedule_steps(&self) -> u64 {
        (0..self.cfg.epochs())
            .map(|e| self.loader(schedule::plan(&self.cfg.schedule, e).phase))
            .map(|l| l.map_or(0, |l| l.batches_per_epoch() as u64))
            .sum()
    }

    fn loader(&self, phase: Phase) -> Option<&Loader<PairSample>> {
        match phase {
            Phase::Warmup => self.warmup.as_ref(),
            Phase::Main => self.main.as_ref(),
        }
    }

    /// The encoder's variables under [`ENCODER_PREFIX`], copied.
    fn encoder_tensors(&self) -> Result<TensorMap> {
        let mut out = TensorMap::new();
        for (name, var) in vssl_core::testing::named_vars(&self.varmap) {
            let t = var.as_tensor().to_device(&Device::Cpu)?.copy()?;
            out.insert(format!("{ENCODER_PREFIX}{name}"), t);
        }
        Ok(out)
    }

    /// Loads a checkpoint's encoder variables and optimizer state.
    fn restore(&mut self, tensors: &TensorMap, path: &Path) -> Result<()> {
        let enc: TensorMap = tensors
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(ENCODER_PREFIX)
                    .map(|n| (n.to_string(), v.clone()))
            })
            .collect();
        // Strict: every variable present with its shape, nothing else (errors name the file).
        vssl_model::weights::load_into_varmap(&self.varmap, &enc, path)?;
        self.opt
            .load_state(tensors)
            .map_err(|e| Error::file(path, format!("optimizer state: {e}")))
    }

    /// Writes a checkpoint of the current state.
    fn save(&self) -> Result<PathBuf> {
        let mut tensors = self.encoder_tensors()?;
        for (k, v) in self.opt.state()? {
            tensors.insert(k, v.to_device(&Device::Cpu)?);
        }
        checkpoint::save(
            &self.dir,
            &tensors,
            &self.state,
            self.cfg.checkpoint.keep_last,
        )
    }

    /// Trains until the schedule ends, `max_steps` is reached, or a stop is requested.
    ///
    /// # Errors
    /// [`Error::Op`] naming the term and step when a loss is not finite (nothing is written for
    /// that step, the last checkpoint stays); data, model and I/O errors otherwise.
    pub fn run(&mut self, observer: &mut dyn Observer) -> Result<Outcome> {
        let total = self.schedule_steps();
        let limit = self.cfg.schedule.max_steps.map_or(total, |m| m.min(total));
        observer.start(&self.state, limit);
        let mut metrics = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(metrics_path(&self.dir))
            .map_err(|e| Error::file(metrics_path(&self.dir), e.to_string()))?;
        let session = Instant::now();
        let seconds_before = self.state.train_seconds;
        while self.state.epoch < self.cfg.epochs() {
            let epoch = self.state.epoch;
            let plan = schedule::plan(&self.cfg.schedule, epoch);
            self.state.phase = plan.phase;
            let loader = self.loader(plan.phase).ok_or_else(|| {
                Error::op(OP, format!("no data loader for the {:?} phase", plan.phase))
            })?;
            let per_epoch = loader.batches_per_epoch() as u64;
            if per_epoch == 0 {
                return Err(Error::op(
                    OP,
                    format!(
                        "an epoch has {} pairs, fewer than one batch of {}: lower data.batch_size or add videos",
                        loader.len(),
                        self.cfg.data.batch_size
                    ),
                ));
            }
            let first = usize::try_from(self.state.batch).unwrap_or(usize::MAX);
            let mut batches = loader.epoch_from(epoch, first);
            loop {
                if self.state.step >= limit && limit < total {
                    self.state.train_seconds = seconds_before + session.elapsed().as_secs_f64();
                    let p = self.save()?;
                    observer.checkpoint(&p);
                    return Ok(Outcome::StepLimit);
                }
                let t0 = Instant::now();
                let Some(samples) = batches.next() else { break };
                let plan = EpochPlan {
                    lr: schedule::lr_at(&self.cfg.schedule, &plan, self.state.batch, per_epoch),
                    ..plan
                };
                self.opt.set_lr(plan.lr);
                let record = self.train_step(samples?, &plan, epoch, t0)?;
                writeln!(
                    metrics,
                    "{}",
                    serde_json::to_string(&record).map_err(|e| Error::op(OP, e.to_string()))?
                )
                .and_then(|()| metrics.flush())
                .map_err(|e| Error::file(metrics_path(&self.dir), e.to_string()))?;
                self.state.batch += 1;
                if self.state.batch == per_epoch {
                    self.state.epoch += 1;
                    self.state.batch = 0;
                    if self.state.epoch < self.cfg.epochs() {
                        self.state.phase =
                            schedule::plan(&self.cfg.schedule, self.state.epoch).phase;
                    }
                }
                self.state.train_seconds = seconds_before + session.elapsed().as_secs_f64();
                observer.step(&record);
                let stop = self.stop.load(Ordering::SeqCst);
                if stop
                    || self
                        .state
                        .step
                        .is_multiple_of(self.cfg.checkpoint.every_steps)
                {
                    let p = self.save()?;
                    observer.checkpoint(&p);
                }
                if stop {
                    return Ok(Outcome::Interrupted);
                }
            }
            // An epoch ended early only when its batches ran out (fewer than planned).
            if self.state.epoch == epoch {
                self.state.epoch += 1;
                self.state.batch = 0;
            }
        }
        if !self.state.finished {
            self.recompute_bn_stats()?;
        }
        self.state.finished = true;
        self.state.train_seconds = seconds_before + session.elapsed().as_secs_f64();
        let p = self.save()?;
        observer.checkpoint(&p);
        Ok(Outcome::Finished)
    }

    /// Precise BatchNorm at the end of the run (`schedule.precise_bn_batches`): batches of the
    /// last phase's loader at the epoch after the run's last, so they depend only on the seed.
    fn recompute_bn_stats(&self) -> Result<()> {
        let n = self.cfg.schedule.precise_bn_batches;
        if n == 0 {
            return Ok(());
        }
        let epochs = self.cfg.epochs();
        let phase = schedule::plan(&self.cfg.schedule, epochs.saturating_sub(1)).phase;
        let loader = self
            .loader(phase)
            .ok_or_else(|| Error::op(OP, format!("no data loader for the {phase:?} phase")))?;
        let batches = loader
            .epoch_from(epochs, 0)
            .take(n)
            .map(|s| self.pair_batch(&s?, Vec::new()));
        let calls = self.step.recompute_bn_stats(batches)?;
        tracing::info!("precise BatchNorm: running statistics from {calls} encoder calls");
        Ok(())
    }

    /// The batch of `samples` on the run's device.
    fn pair_batch(&self, samples: &[PairSample], dropped: Vec<usize>) -> Result<PairBatch> {
        let refs: Vec<&Tensor> = samples.iter().map(|s| &s.reference).collect();
        let tars: Vec<&Tensor> = samples.iter().map(|s| &s.target).collect();
        Ok(PairBatch {
            reference: Tensor::stack(&refs, 0)?.to_device(&self.device)?, // [B, 3, H, W]
            target: Tensor::stack(&tars, 0)?.to_device(&self.device)?,    // [B, 3, H', W']
            dropped_channels: dropped,
        })
    }

    /// One optimisation step on a batch of pairs.
    fn train_step(
        &mut self,
        samples: Vec<PairSample>,
        plan: &EpochPlan,
        epoch: u64,
        t0: Instant,
    ) -> Result<StepRecord> {
        let dropped = if self.cfg.data.channel_dropout {
            // One draw per batch, as the reference, from the batch's own stream.
            draw_channel_dropout(&mut sample_rng(
                self.cfg.seed,
                epoch,
                u64::MAX - 1 - self.state.batch,
            ))
        } else {
            Vec::new()
        };
        let batch = self.pair_batch(&samples, dropped.clone())?;
        let out = self.step.forward(&batch, plan.phase, &plan.options)?;
        let step = self.state.step + 1;
        let mut terms = Vec::with_capacity(out.terms.len());
        for t in out.terms.iter() {
            let value = f64::from(t.value.to_dtype(DType::F32)?.to_scalar::<f32>()?);
            if !value.is_finite() {
                return Err(Error::op(
                    OP,
                    format!(
                        "the loss term {:?} is {value} at step {step} (epoch {epoch}, batch {}): stopped before the update; the last checkpoint in {} is the last good state",
                        t.name,
                        self.state.batch,
                        self.dir.display()
                    ),
                ));
            }
            terms.push(TermRecord {
                name: t.name.to_string(),
                weight: t.weight,
                value,
            });
        }
        let loss = f64::from(out.total.to_dtype(DType::F32)?.to_scalar::<f32>()?);
        if !loss.is_finite() {
            return Err(Error::op(
                OP,
                format!("the total loss is {loss} at step {step} though every term is finite"),
            ));
        }
        let grads = out.total.backward()?;
        self.opt.step(&grads)?;
        self.state.step = step;
        self.state.lr = plan.lr;
        self.state.last_loss = loss;
        Ok(StepRecord {
            step,
            epoch,
            batch: self.state.batch,
            phase: plan.phase,
            lr: plan.lr,
            loss,
            terms,
            seconds: t0.elapsed().as_secs_f64(),
            dropped_channels: dropped,
        })
    }
}

/// The configuration saved in a run folder (`config.toml`).
///
/// # Errors
/// [`Error::File`] naming the file when it is missing or invalid.
pub fn load_config(dir: &Path, overrides: &[String]) -> Result<TrainConfig> {
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::file(&path, format!("cannot read the run's configuration: {e}")))?;
    TrainConfig::from_toml(&text, &path.display().to_string(), overrides)
}

/// Keeps the first lines of `metrics.jsonl` whose step is ≤ `step` (a resumed run rewrites the
/// steps after its checkpoint); creates the file when missing.
fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::file(path, format!("cannot read: {e}"))),
    };
    let mut kept = String::new();
    for line in text.lines() {
        let s = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("step").and_then(serde_json::Value::as_u64));
        match s {
            Some(s) if s <= step => {
                kept.push_str(line);
                kept.push('\n');
            }
            _ => break,
        }
    }
    vssl_core::io::write_atomic(path, kept.as_bytes())
}

/// The data loaders of the two phases (`None` for a phase with no epochs).
fn loaders(cfg: &TrainConfig, skips: &Arc<SkipLog>) -> Result<(PhaseLoader, PhaseLoader)> {
    let d = &cfg.data;
    let loader_cfg = LoaderConfig {
        batch_size: d.batch_size,
        workers: d.workers,
        queue_depth: d.queue_depth,
        seed: cfg.seed,
        shuffle: true,
        drop_last: true,
    };
    // The videos are listed once (a TrackingNet tree has thousands of folders) for both phases.
    let (list, opener) = video_list(cfg)?;
    let make = |phase: PairPhase| -> Result<Loader<PairSample>> {
        let open = Arc::clone(&opener);
        let videos = list
            .clone()
            .with_opener(move |p: &Path| open(p), 2)
            .with_skip_log(Arc::clone(skips));
        let ds = Arc::new(PairDataset::new(videos, phase));
        let len = ds.len();
        let f: MakeFn<PairSample> = Arc::new(move |_, index, rng| ds.sample(index, rng));
        Loader::with_config(len, loader_cfg.clone(), f)
    };
    let warmup = (cfg.schedule.warmup_epochs > 0)
        .then(|| {
            make(PairPhase::Warmup(WarmupPipeline {
                rotate: d.warmup_rotate,
                scale: d.warmup_scale,
                crop: d.warmup_crop,
            }))
        })
        .transpose()?;
    let main = (cfg.schedule.main_epochs > 0)
        .then(|| {
            make(PairPhase::Main(MainPipeline {
                rotate: d.main_rotate,
                full_size: d.main_full_size,
                crop: d.main_crop,
            }))
        })
        .transpose()?;
    Ok((warmup, main))
}

/// The training videos and how to open them.
fn video_list(cfg: &TrainConfig) -> Result<(VideoList, Opener)> {
    match cfg.data.source {
        DataSource::Videos => {
            let path = cfg.data.path.as_ref().ok_or_else(|| {
                Error::op(
                    OP,
                    "data.source = \"videos\" needs data.path (or --data): a folder of videos or a list file",
                )
            })?;
            let list = if path.is_file() {
                VideoList::from_list_file(path)?
            } else {
                VideoList::from_dir(path)?
            };
            let opener: Opener = Arc::new(|p: &Path| vssl_data::open_source(p));
            Ok((list, opener))
        }
        DataSource::Synthetic => {
            let s = cfg.data.synthetic.clone();
            let mut gen_cfg = s.preset.config();
            gen_cfg.width = s.size;
            gen_cfg.height = s.size;
            gen_cfg.frames = s.frames;
            gen_cfg.validate()?;
            let entries = (0..s.clips)
                .map(|i| VideoEntry {
                    path: PathBuf::from(format!("synthetic/train/{i}")),
                    kind: EntryKind::VideoFile,
                })
                .collect();
            let list = VideoList::from_entries("synthetic/train", entries);
            let opener: Opener = Arc::new(move |p: &Path| {
                let index: u64 = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| Error::file(p, "not a synthetic clip name"))?;
                let name = format!("synthetic train clip {index}");
                Ok(Box::new(synth::SynthSource::new(
                    &gen_cfg,
                    Split::Train,
                    s.seed,
                    index,
                    name,
                )?) as Box<dyn FrameSource>)
            });
            Ok((list, opener))
        }
    }
}

/// Path of the run folder's metrics log.
pub fn metrics_path(dir: &Path) -> PathBuf {
    dir.join("metrics.jsonl")
}

/// Reads a run's `metrics.jsonl`.
///
/// # Errors
/// [`Error::File`] naming the file and line when it cannot be read or a line is not a record.
pub fn read_metrics(dir: &Path) -> Result<Vec<StepRecord>> {
    let path = metrics_path(dir);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::file(&path, format!("cannot read: {e}")))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::file(&path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}
