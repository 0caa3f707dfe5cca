//! # vssl-data
//!
//! Everything between a file on disk and a batch tensor: video decoding (video-rs behind the
//! `video` feature, JPEG/PNG frame folders always), datasets (video lists, DAVIS 2016/2017, BADJA,
//! JHMDB, VIP), frame-pair and clip sampling, augmentation, patch-tracking geometry, the synthetic
//! video generator that is the project's embedded default data, and a prefetching loader.
//!
//! Not implemented yet: this crate is a placeholder until its issue lands.
