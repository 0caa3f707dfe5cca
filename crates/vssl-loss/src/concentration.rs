//! UVC's concentration regulariser (`libs/concentration_loss.py: ConcentrationSwitchLoss`), used
//! by ContrastCorr with window 8 and stride 8 at weight 0.3.
//!
//! For a square affinity `A` (`[B, N, N]`, reference × target positions of an `h × w` map):
//! - `U₁ = G · softmax₁(temp·A)`: for every target position, the expected coordinate of the
//!   reference positions it copies from, `G` being the identity sampling grid of the `h × w` map
//!   in normalised coordinates (`[−1, 1]`, PyTorch's `affine_grid` with the given
//!   `align_corners`);
//! - `U₂` the same with `Aᵀ`;
//! - each map is cut into `win × win` windows at the given stride (`F.unfold` without padding);
//!   the loss is the squared deviation of every coordinate from its window's mean, summed over
//!   both maps and divided by the number of elements of one unfolded map.
//!
//! Nearby target positions should copy from nearby reference positions: the term keeps the
//! correspondence field locally coherent.

use candle_core::{Device, Tensor};
use vssl_core::{Error, Result};

use crate::affinity::{copy_weights, transpose};

const OP: &str = "concentration";

/// The identity grid of an `h × w` map as `[2, h·w]` (`x` row then `y` row), in normalised
/// coordinates: `align_corners = true` puts `±1` on the corner pixels' centres
/// (`−1 + 2j/(w − 1)`, 0 when `w = 1`), `false` on their outer edges (`−1 + (2j + 1)/w`).
pub fn identity_grid(h: usize, w: usize, align_corners: bool, device: &Device) -> Result<Tensor> {
    let coord = |j: usize, n: usize| -> f32 {
        if align_corners {
            if n == 1 {
                0.0
            } else {
                -1.0 + 2.0 * j as f32 / (n - 1) as f32
            }
        } else {
            -1.0 + (2 * j + 1) as f32 / n as f32
        }
    };
    let mut data = Vec::with_capacity(2 * h * w);
    for _y in 0..h {
        for x in 0..w {
            data.push(coord(x, w));
        }
    }
    for y in 0..h {
        for _x in 0..w {
            data.push(coord(y, h));
        }
    }
    Ok(Tensor::from_vec(data, (2, h * w), device)?)
}

/// Settings of the concentration term.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Concentration {
    /// Window side (8 in the reference).
    pub window: usize,
    /// Window stride (8 in the reference: non-overlapping windows).
    pub stride: usize,
    /// Softmax temperature multiplier (1 in the reference).
    pub temp: f64,
    /// Grid convention (`true` reproduces the reference, written for PyTorch 1.1).
    pub align_corners: bool,
}

impl Default for Concentration {
    fn default() -> Self {
        Self {
            window: 8,
            stride: 8,
            temp: 1.0,
            align_corners: true,
        }
    }
}

/// Squared deviations from the window means of a `[B, 2, h, w]` coordinate map, summed; and the
/// number of unfolded elements.
fn window_deviation(u: &Tensor, cfg: &Concentration) -> Result<(Tensor, usize)> {
    let (b, _, h, w) = u.dims4()?;
    let (k, s) = (cfg.window, cfg.stride);
    let nh = (h - k) / s + 1;
    let nw = (w - k) / s + 1;
    // [B, 2, nh·nw, k·k]: the unfolded windows.
    let windows = if s == k {
        u.narrow(2, 0, nh * k)?
            .narrow(3, 0, nw * k)?
            .reshape((b, 2, nh, k, nw, k))?
            .permute((0, 1, 2, 4, 3, 5))?
            .reshape((b, 2, nh * nw, k * k))?
    } else {
        let mut parts = Vec::with_capacity(nh * nw);
        for i in 0..nh {
            for j in 0..nw {
                parts.push(u.narrow(2, i * s, k)?.narrow(3, j * s, k)?.reshape((
                    b,
                    2,
                    1,
                    k * k,
                ))?);
            }
        }
        Tensor::cat(&parts, 2)?
    };
    let dev = windows.broadcast_sub(&windows.mean_keepdim(3)?)?;
    let numel = dev.elem_count();
    Ok((dev.sqr()?.sum_all()?, numel))
}

/// The concentration loss of a square affinity `aff` (`[B, h·w, h·w]`, raw: the softmax is
/// applied here) over an `h × w` map; a scalar.
///
/// The reference squeezes a batch of one away (and then fails); here `B = 1` works like any
/// other batch size.
///
/// # Errors
/// [`Error::Op`] (`concentration`) when `aff` is not `[B, h·w, h·w]`, the window is zero or larger
/// than the map, or the stride is zero.
pub fn concentration_switch(
    aff: &Tensor,
    hw: (usize, usize),
    cfg: &Concentration,
) -> Result<Tensor> {
    let (h, w) = hw;
    let n = h * w;
    let d = aff.dims();
    if d.len() != 3 || d[1] != n || d[2] != n || d[0] == 0 {
        return Err(Error::op(
            OP,
            format!("affinity must be [B, {n}, {n}] for a {h}×{w} map, got {d:?}"),
        ));
    }
    if cfg.window == 0 || cfg.stride == 0 || cfg.window > h || cfg.window > w {
        return Err(Error::op(
            OP,
            format!(
                "window {} / stride {} do not fit a {h}×{w} map",
                cfg.window, cfg.stride
            ),
        ));
    }
    let b = d[0];
    let grid = identity_grid(h, w, cfg.align_corners, aff.device())?
        .to_dtype(aff.dtype())?
        .unsqueeze(0)?
        .broadcast_as((b, 2, n))?
        .contiguous()?;
    let mut total: Option<Tensor> = None;
    let mut numel = 0;
    for a in [aff.clone(), transpose(aff)?] {
        let u = grid
            .matmul(&copy_weights(&a, cfg.temp)?)?
            .reshape((b, 2, h, w))?;
        let (sum, count) = window_deviation(&u, cfg)?;
        numel = count;
        total = Some(match total {
            None => sum,
            Some(t) => (t + sum)?,
        });
    }
    let total = total.ok_or_else(|| Error::op(OP, "no direction computed"))?;
    Ok(total.affine(1.0 / numel as f64, 0.0)?)
}
