//! Metrics: DAVIS region and boundary measures, keypoint PCK, part-label mIoU.
//!
//! Every function here is deterministic and computes in `f64`; where an official script defines a
//! metric, the module says which one and follows it to the last special case.

pub mod davis;
pub mod miou;
pub mod pck;
