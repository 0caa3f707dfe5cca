//! Reconstruction in normalised Lab: the weighted L1 of UVC/ContrastCorr (`libs/loss.py`:
//! `weightsingle_L1`, `L1_loss`).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use vssl_core::{Error, Result};

const OP: &str = "colour_l1";

/// Channel weights of the L1 on `(L, a, b)`. The reference weighs the colour channels ten times
/// the lightness: `1 : 10 : 10`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabWeights {
    /// Weight of the L channel.
    pub l: f64,
    /// Weight of the a channel.
    pub a: f64,
    /// Weight of the b channel.
    pub b: f64,
}

impl Default for LabWeights {
    fn default() -> Self {
        Self {
            l: 1.0,
            a: 10.0,
            b: 10.0,
        }
    }
}

fn check_pair(pred: &Tensor, gt: &Tensor) -> Result<usize> {
    let d = pred.dims();
    if d.len() != 4 || d[1] != 3 || d[0] == 0 || pred.dims() != gt.dims() {
        return Err(Error::op(
            OP,
            format!(
                "prediction and target must both be [B, 3, H, W] with B ≥ 1, got {:?} and {:?}",
                pred.dims(),
                gt.dims()
            ),
        ));
    }
    Ok(d[0])
}

/// Per-sample weighted L1: `ℓ_b = w_L·mean|ΔL| + w_a·mean|Δa| + w_b·mean|Δb|` over the pixels of
/// sample `b` (`weightsingle_L1`). `pred` and `gt` are `[B, 3, H, W]`; returns `[B]`.
///
/// # Errors
/// [`Error::Op`] (`colour_l1`) when the shapes differ or are not `[B, 3, H, W]`.
pub fn per_sample_l1(pred: &Tensor, gt: &Tensor, w: LabWeights) -> Result<Tensor> {
    let b = check_pair(pred, gt)?;
    // [B, 3]: mean absolute difference per channel.
    let per_channel = (pred - gt)?.abs()?.flatten_from(2)?.mean(2)?;
    let weights = Tensor::new(&[w.l as f32, w.a as f32, w.b as f32], pred.device())?
        .to_dtype(pred.dtype())?
        .reshape((1, 3))?;
    let out = per_channel.broadcast_mul(&weights)?.sum(1)?; // [B]
    debug_assert_eq!(out.dims(), [b]);
    Ok(out)
}

/// The reference's outlier rejection and batch mean: `mean_b(ℓ_b if ℓ_b ≤ thr else 0)`
/// (`loss[loss > thr] = 0`; rejected samples still count in the mean's denominator). With
/// `thr = None` it is the plain mean. A NaN value is never rejected, so it reaches the total and
/// stops training.
///
/// # Errors
/// [`Error::Op`] (`colour_l1`) when `per_sample` is not a non-empty vector.
pub fn thresholded_mean(per_sample: &Tensor, thr: Option<f64>) -> Result<Tensor> {
    if per_sample.rank() != 1 || per_sample.dim(0)? == 0 {
        return Err(Error::op(
            OP,
            format!(
                "per-sample losses must be [B] with B ≥ 1, got {:?}",
                per_sample.dims()
            ),
        ));
    }
    let kept = match thr {
        None => per_sample.clone(),
        Some(thr) => {
            // 1 where ℓ_b > thr is false (kept), 0 where rejected; a constant mask.
            let reject = per_sample.detach().gt(thr)?.to_dtype(per_sample.dtype())?;
            let keep = reject.affine(-1.0, 1.0)?;
            (per_sample * keep)?
        }
    };
    Ok(kept.mean_all()?)
}

/// UVC/ContrastCorr's `L1_loss`: the per-sample weighted L1 of `pred` against `gt`, plus
/// `switch_weight ×` that of the colour-switch pair `(pred1, gt1)` when given (hard-coded 0.1 in
/// the reference), thresholded per sample on the **sum** and averaged over the batch.
///
/// # Errors
/// [`Error::Op`] (`colour_l1`) for mismatched shapes, or a switch pair whose batch differs.
pub fn reconstruction_l1(
    pred: &Tensor,
    gt: &Tensor,
    switch: Option<(&Tensor, &Tensor, f64)>,
    w: LabWeights,
    thr: Option<f64>,
) -> Result<Tensor> {
    let mut per = per_sample_l1(pred, gt, w)?;
    if let Some((p1, g1, weight)) = switch {
        let other = per_sample_l1(p1, g1, w)?;
        if other.dims() != per.dims() {
            return Err(Error::op(
                OP,
                format!(
                    "the colour-switch pair has batch {:?}, the main pair {:?}",
                    other.dims(),
                    per.dims()
                ),
            ));
        }
        per = (per + other.affine(weight, 0.0)?)?;
    }
    thresholded_mean(&per, thr)
}
