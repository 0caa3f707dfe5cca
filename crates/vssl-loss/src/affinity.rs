//! Affinities between feature maps and copying through them (`NLM_woSoft` and `transform` of
//! UVC/ContrastCorr).
//!
//! Positions are flattened row-major (`n = y·w + x`). An affinity `A` is `[B, N_ref, N_tar]`;
//! copying normalises it over the **reference** axis (dim 1), so every target position becomes a
//! convex combination of reference positions.

use candle_core::{D, Tensor};
use vssl_core::ops::softmax::softmax;
use vssl_core::{Error, Result};

const OP: &str = "affinity";

/// The self-affinity mask value: the reference subtracts `1e10` on the diagonal so that no pixel
/// copies itself.
pub const SELF_MASK: f64 = 1e10;

/// Raw dot-product affinity `A = F_refᵀ F_tar`: `f_ref` `[B, C, h1, w1]`, `f_tar`
/// `[B, C, h2, w2]` → `[B, h1·w1, h2·w2]`. No normalisation and no temperature (the reference's
/// features are used as they are).
///
/// # Errors
/// [`Error::Op`] (`affinity`) when the tensors are not rank 4 with equal batch and channels.
pub fn affinity(f_ref: &Tensor, f_tar: &Tensor) -> Result<Tensor> {
    let (b, c, h1, w1) = dims4(f_ref, "f_ref")?;
    let (b2, c2, h2, w2) = dims4(f_tar, "f_tar")?;
    if b != b2 || c != c2 || b == 0 {
        return Err(Error::op(
            OP,
            format!(
                "features must share batch (≥ 1) and channels, got {:?} and {:?}",
                f_ref.dims(),
                f_tar.dims()
            ),
        ));
    }
    let r = f_ref.reshape((b, c, h1 * w1))?.transpose(1, 2)?; // [B, N_ref, C]
    let t = f_tar.reshape((b, c, h2 * w2))?; // [B, C, N_tar]
    Ok(r.matmul(&t)?) // [B, N_ref, N_tar]
}

/// The self-affinity of `f` with its diagonal lowered by [`SELF_MASK`]:
/// `S = Fᵀ F − 1e10·I`, `[B, N, N]`.
///
/// # Errors
/// As [`affinity`].
pub fn masked_self_affinity(f: &Tensor) -> Result<Tensor> {
    let a = affinity(f, f)?;
    let n = a.dim(1)?;
    let eye = Tensor::eye(n, a.dtype(), a.device())?.affine(SELF_MASK, 0.0)?;
    Ok(a.broadcast_sub(&eye)?)
}

/// `softmax(temp · A)` over the reference axis (dim 1): the weights that copy reference values
/// to target positions.
///
/// # Errors
/// [`Error::Op`] when `aff` is not `[B, N_ref, N_tar]`.
pub fn copy_weights(aff: &Tensor, temp: f64) -> Result<Tensor> {
    if aff.rank() != 3 {
        return Err(Error::op(
            OP,
            format!("affinity must be [B, N_ref, N_tar], got {:?}", aff.dims()),
        ));
    }
    let scaled = if temp == 1.0 {
        aff.clone()
    } else {
        aff.affine(temp, 0.0)?
    };
    softmax(&scaled, 1)
}

/// Copies `x_ref` (`[B, C, h1, w1]`) to the target positions through `weights`
/// (`[B, h1·w1, N_tar]`, normalised over dim 1 or not): `x_ref · W`, reshaped to
/// `[B, C, h2, w2]` (`transform` of the reference).
///
/// # Errors
/// [`Error::Op`] (`affinity`) when the shapes do not fit (`h1·w1 ≠ N_ref`, `h2·w2 ≠ N_tar`,
/// batch mismatch).
pub fn copy(weights: &Tensor, x_ref: &Tensor, out_hw: (usize, usize)) -> Result<Tensor> {
    let (b, c, h1, w1) = dims4(x_ref, "x_ref")?;
    let wd = weights.dims();
    if wd.len() != 3 || wd[0] != b || wd[1] != h1 * w1 || wd[2] != out_hw.0 * out_hw.1 {
        return Err(Error::op(
            OP,
            format!(
                "cannot copy x_ref {:?} through weights {wd:?} to {}×{}",
                x_ref.dims(),
                out_hw.0,
                out_hw.1
            ),
        ));
    }
    let x = x_ref.reshape((b, c, h1 * w1))?;
    Ok(x.matmul(weights)?.reshape((b, c, out_hw.0, out_hw.1))?)
}

/// The transpose of an affinity or weight matrix, `[B, N_tar, N_ref]` (used by the colour switch,
/// which copies back through the transpose of the already column-normalised weights).
///
/// # Errors
/// candle's error if `m` is not rank 3.
pub fn transpose(m: &Tensor) -> Result<Tensor> {
    Ok(m.transpose(1, 2)?.contiguous()?)
}

pub(crate) fn dims4(t: &Tensor, name: &str) -> Result<(usize, usize, usize, usize)> {
    match t.dims() {
        &[b, c, h, w] => Ok((b, c, h, w)),
        d => Err(Error::op(
            OP,
            format!("{name} must be [B, C, H, W], got {d:?}"),
        )),
    }
}

/// Softmax over the last axis (e.g. localisation over target positions), with a real backward
/// pass.
///
/// # Errors
/// As [`vssl_core::ops::softmax::softmax`].
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    softmax(x, D::Minus1)
}
