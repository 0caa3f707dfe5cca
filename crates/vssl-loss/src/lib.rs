//! # vssl-loss
//!
//! Every loss term of ContrastCorr (weighted L1 with the per-sample outlier threshold, colour
//! switch, self-reconstruction, concentration, inter-video consistency and sparsity) as pure
//! functions of tensors: tensors in, named scalar terms out. Later the clip-level objectives
//! (InfoNCE, MoCo, BYOL, SwAV, CMC).
//!
//! Not implemented yet: this crate is a placeholder until its issue lands.
