//! # vssl-data
//!
//! Everything between a file on disk and a batch tensor:
//!
//! - [`source`]: the [`source::FrameSource`] abstraction over video files (FFmpeg through
//!   video-rs, behind the default `video` feature), JPEG/PNG frame folders and in-memory clips;
//!   decode only the frames a sample needs, resized during decoding.
//! - [`dataset`]: video folders and lists (TrackingNet / Kinetics layouts), DAVIS 2016/2017,
//!   BADJA keypoints, JHMDB and VIP layouts.
//! - [`sample`]: frame-pair sampling as the ContrastCorr reference does it, and ρ-clip sampling.
//! - [`augment`]: the warm-up and main-phase pipelines, Lab conversion and normalisation,
//!   channel dropout.
//! - [`track`]: patch-tracking geometry (centre → fixed-size box → affine crop parameters).
//! - [`synth`]: the procedural video generator that is the project's embedded default data.
//! - [`pairs`]: ContrastCorr training pairs (sample, decode, Lab, augment), skipping bad videos.
//! - [`loader`]: a prefetching loader with worker threads and a bounded queue.
//! - [`skip`]: bad inputs are skipped, counted and logged once, never fatal.
//!
//! Every random choice comes from [`rng::sample_rng`], seeded from (run seed, epoch, sample
//! index), so the same seed gives the same batches bit for bit whatever the number of workers.

pub mod augment;
pub mod dataset;
pub mod frame;
pub mod loader;
pub mod pairs;
pub mod rng;
pub mod sample;
pub mod skip;
pub mod source;
pub mod synth;
pub mod track;

pub use source::FrameSource;
pub use source::folder::open_source;
pub use vssl_core::{Error, Result};
