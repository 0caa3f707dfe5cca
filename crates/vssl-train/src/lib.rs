//! # vssl-train
//!
//! Method steps (ContrastCorr first), optimizers with savable state (Adam, AdamW, SGD with
//! momentum, LARS), schedules, checkpoints and resume, the metrics log and progress display.
//!
//! Not implemented yet: this crate is a placeholder until its issue lands.
