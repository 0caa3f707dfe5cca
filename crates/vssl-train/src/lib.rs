//! # vssl-train
//!
//! Method steps, read top to bottom in one file each: [`contrastcorr`] (ContrastCorr, with the
//! UVC and colourisation presets of the same step); [`optim`]: Adam, AdamW, SGD (momentum,
//! Nesterov, weight decay) and LARS over fused per-tensor kernels, with savable state. Schedules,
//! checkpoints and the training loop follow in later issues.

pub mod contrastcorr;
pub mod optim;

pub use contrastcorr::{
    ColourSpace, ContrastCorrStep, Method, PairBatch, Phase, StepConfig, StepOptions, StepOutput,
    TermToggles,
};
