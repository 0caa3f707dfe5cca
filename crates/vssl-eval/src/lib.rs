//! # vssl-eval
//!
//! Label propagation with the protocol presets of ContrastCorr, UVC and CRW; DAVIS J&F exactly as
//! the official evaluator computes it; PCK for keypoints and mIoU for part labels; baselines and
//! reports.
//!
//! Not implemented yet: this crate is a placeholder until its issue lands.
