//! # vssl-eval
//!
//! Label propagation with the protocol presets of ContrastCorr, UVC and CRW; DAVIS J&F exactly as
//! the official evaluator computes it; PCK for keypoints and mIoU for part labels; baselines and
//! reports.
//!
//! - [`protocol`]: every knob of the reference evaluation scripts, with the presets
//!   `contrastcorr`, `uvc` and `crw`;
//! - [`encoder`]: features from a ResNet (a run's checkpoint, a weights file trained elsewhere,
//!   random initialisation) or raw Lab pixels;
//! - [`propagate`]: the streaming propagation engine;
//! - [`keypoints`]: joints carried as heatmaps;
//! - [`vos`]: video object segmentation on a DAVIS-layout dataset (masks, overlays, baselines).

pub mod encoder;
pub mod keypoints;
pub mod propagate;
pub mod protocol;
pub mod vos;
