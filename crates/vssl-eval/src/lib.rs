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
//! - [`keypoints`]: joints carried as heatmaps; [`badja`]: keypoint propagation on BADJA;
//! - [`vos`]: video object segmentation on a DAVIS-layout dataset (masks, overlays, baselines);
//! - [`metrics`]: DAVIS J&F exactly as the official evaluator computes it ([`metrics::davis`]),
//!   PCK for keypoints ([`metrics::pck`]), mIoU for part labels ([`metrics::miou`]);
//! - [`report`]: the CSV and JSON reports the official tools write, and a text table.

pub mod badja;
pub mod encoder;
pub mod keypoints;
pub mod metrics;
pub mod propagate;
pub mod protocol;
pub mod report;
pub mod vos;

pub use vssl_core::{Error, Result};
