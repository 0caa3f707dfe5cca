//! # vssl-train
//!
//! Method steps, read top to bottom in one file each: [`contrastcorr`] (ContrastCorr, with the
//! UVC and colourisation presets of the same step); [`optim`]: Adam, AdamW, SGD (momentum,
//! Nesterov, weight decay) and LARS over fused per-tensor kernels, with savable state.
//!
//! Runs: [`config`] (the TOML configuration, `Default` = the paper's recipe, `--set` overrides),
//! [`schedule`] (phase, learning rate, threshold and concentration per epoch), [`run`] (the
//! training loop: checkpoints, bit-exact resume, non-finite losses, stop requests,
//! `metrics.jsonl`), [`checkpoint`] (atomic single-file checkpoints, `latest`, retention),
//! [`progress`] (a progress bar on a terminal, log lines otherwise) and [`plot`] (the loss-curve
//! PNG).

pub mod checkpoint;
pub mod config;
pub mod contrastcorr;
pub mod optim;
pub mod plot;
pub mod progress;
pub mod run;
pub mod schedule;

pub use config::TrainConfig;
pub use contrastcorr::{
    ColourSpace, ContrastCorrStep, Method, PairBatch, Phase, StepConfig, StepOptions, StepOutput,
    TermToggles,
};
pub use run::{Observer, Outcome, StepRecord, Trainer};
