//! # vssl-core
//!
//! The crate every other vssl crate stands on: the shared error type, the tensor ops that
//! candle lacks or makes slow ([`ops`]), and the test helpers that prove numerics against
//! PyTorch golden files and check that every trainable variable receives a gradient
//! ([`testing`]).
//!
//! Ops take and return [`candle_core::Tensor`]s. On the CPU they run hand-written kernels with an
//! explicit backward pass; on any other device (CUDA, Metal, behind the `cuda` and `metal`
//! features) they fall back to a path composed of candle's own differentiable ops.

pub mod device;
pub mod error;
pub mod io;
pub mod memory;
pub mod ops;
pub mod testing;

pub use error::{Error, Result};
