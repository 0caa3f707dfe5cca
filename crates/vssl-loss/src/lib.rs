//! # vssl-loss
//!
//! Loss terms as pure functions of tensors: tensors in, scalar tensors out, never a model. Each
//! term is documented with the reference code it reproduces; the training steps in `vssl-train`
//! assemble them into named, weighted [`Terms`].
//!
//! ContrastCorr (Wang, Zhou and Li, AAAI 2021) and UVC (Li et al., NeurIPS 2019), as their
//! official code computes them (see `docs/architecture.md` and the reference notes):
//! - [`colour`]: the per-sample weighted L1 in normalised Lab (L : a : b = 1 : 10 : 10) with the
//!   per-sample outlier threshold, optionally with the colour-switch term inside;
//! - [`affinity`]: raw dot-product affinities, copying through a softmax-normalised affinity, the
//!   self-affinity with the own pixel masked out;
//! - [`concentration`]: UVC's concentration regulariser on both directions of an affinity;
//! - [`inter`]: ContrastCorr's inter-video transformation over every reference pixel of the
//!   batch and its sparsity term.

pub mod affinity;
pub mod colour;
pub mod concentration;
pub mod inter;
pub mod terms;

pub use terms::Terms;
pub use vssl_core::{Error, Result};
