//! ContrastCorr's inter-video transformation (`libs/net_utils.py: Batch_Contrastive`).
//!
//! Every target-patch position of every video in the batch is reconstructed from **all**
//! reference positions of the batch: `P = softmax_row(temp · Q Kᵀ)` with `Q` the target features
//! and `K` the reference features of all videos flattened to `[B·N, C]`, and the colour features
//! are copied as `P V`. If a position put all its mass on its own video, `P` restricted to that
//! video's block would equal the intra-video softmax and the inter- and intra-video
//! reconstructions would agree; the consistency L1 between the two (assembled by the step) and
//! the sparsity term `mean_rows |Σ_own-video P − 1|` push the cross-video mass down. This is the
//! "contrastive" part of ContrastCorr: no InfoNCE, no projection head, no queue.

use candle_core::Tensor;
use vssl_core::{Error, Result};

use vssl_core::ops::attention::grouped_attention;

use crate::affinity::dims4;

const OP: &str = "inter_video";

/// The inter-video reconstruction and the sparsity term.
#[derive(Debug, Clone)]
pub struct InterVideo {
    /// `P V` reshaped to `[B, C_colour, h, w]`: the colour of every target position copied from
    /// every reference position of the batch.
    pub reconstruction: Tensor,
    /// `mean over the B·N rows of |Σ_{own video} P_row − 1|`, a scalar.
    pub sparsity: Tensor,
}

/// The inter-video transformation of target features `f_tar` (`[B, C, h, w]`) against reference
/// features `f_ref` (`[B, C, h, w]`) carrying reference colour features `colour_ref`
/// (`[B, C_colour, h, w]`), at softmax temperature multiplier `temp`.
///
/// The batch-wide affinity is `[B·N, B·N]` (`N = h·w`): 1 GiB of `f32` at `B = 16`, `N = 1024`.
/// On the CPU it is computed block by block and never held at once
/// ([`vssl_core::ops::attention::grouped_attention`]).
///
/// # Errors
/// [`Error::Op`] (`inter_video`) when the shapes disagree.
pub fn inter_video(
    f_tar: &Tensor,
    f_ref: &Tensor,
    colour_ref: &Tensor,
    temp: f64,
) -> Result<InterVideo> {
    let (b, c, h, w) = dims4(f_tar, "f_tar")?;
    let (cb, cc, ch, cw) = dims4(colour_ref, "colour_ref")?;
    if f_ref.dims() != f_tar.dims() || (cb, ch, cw) != (b, h, w) || b == 0 {
        return Err(Error::op(
            OP,
            format!(
                "f_tar {:?}, f_ref {:?} and colour_ref {:?} must share batch (≥ 1) and size, and the features their channels",
                f_tar.dims(),
                f_ref.dims(),
                colour_ref.dims()
            ),
        ));
    }
    let n = h * w;
    let rows = |t: &Tensor, ch: usize| -> Result<Tensor> {
        Ok(t.permute((0, 2, 3, 1))?.reshape((b * n, ch))?)
    };
    let q = rows(f_tar, c)?; // [B·N, C]
    let k = rows(f_ref, c)?; // [B·N, C]
    let v = rows(colour_ref, cc)?; // [B·N, C_colour]
    // P = softmax_row(temp · Q Kᵀ) [B·N, B·N], computed block by block on the CPU.
    let att = grouped_attention(&q, &k, &v, temp, b)?;
    let reconstruction = att
        .out // [B·N, C_colour]
        .reshape((b, h, w, cc))?
        .permute((0, 3, 1, 2))?
        .contiguous()?;
    // Own-video mass of every row: [B·N].
    let sparsity = att.own_mass.affine(1.0, -1.0)?.abs()?.mean_all()?;
    Ok(InterVideo {
        reconstruction,
        sparsity,
    })
}
