//! Reflection padding of the last two axes, with a backward pass.
//!
//! The semantics follow PyTorch's `torch.nn.functional.pad(x, pad, mode='reflect')` (documented
//! with `ReflectionPad2d`): the border element is not repeated, so padding `[a b c d]` by 2 on
//! the left gives `[c b a b c d]`. Gradients of mirrored positions accumulate onto the element
//! they copy.
//!
//! - [`reflection_pad2d`] dispatches: a rayon-parallel CPU kernel (copy forward, scatter-add
//!   backward) on `f32` CPU tensors, [`reflection_pad2d_portable`] everywhere else.
//! - [`reflection_pad2d_portable`] uses `index_select` with reflected index vectors along H then
//!   W, so candle's autograd gives the backward pass on any device.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{cpu_f32, ensure_f32, fast_cpu, zeroed};
use crate::{Error, Result};

const OP: &str = "reflection_pad2d";

/// Checked geometry: planes (N·C), input H, W and the pads.
#[derive(Debug, Clone, Copy)]
struct Geom {
    planes: usize,
    h: usize,
    w: usize,
    left: usize,
    right: usize,
    top: usize,
    bottom: usize,
}

impl Geom {
    fn ho(&self) -> usize {
        self.h + self.top + self.bottom
    }
    fn wo(&self) -> usize {
        self.w + self.left + self.right
    }
}

fn geom(x: &Tensor, pad: (usize, usize, usize, usize)) -> Result<Geom> {
    ensure_f32(OP, "x", x)?;
    let (planes, h, w) = match *x.dims() {
        [n, c, h, w] => (n * c, h, w),
        [c, h, w] => (c, h, w),
        _ => {
            return Err(Error::op(
                OP,
                format!(
                    "x must be [N, C, H, W] or [C, H, W], got shape {:?}",
                    x.dims()
                ),
            ));
        }
    };
    let (left, right, top, bottom) = pad;
    crate::ensure!(
        left < w && right < w,
        OP,
        "padding (left, right) = ({left}, {right}) must be less than the input width {w} (x of shape {:?})",
        x.dims()
    );
    crate::ensure!(
        top < h && bottom < h,
        OP,
        "padding (top, bottom) = ({top}, {bottom}) must be less than the input height {h} (x of shape {:?})",
        x.dims()
    );
    Ok(Geom {
        planes,
        h,
        w,
        left,
        right,
        top,
        bottom,
    })
}

/// The source index of padded position `i` (in `0..before + n + after`) along an axis of size
/// `n`, reflecting without repeating the border; needs `before < n` and `after < n`.
pub(crate) fn reflect(i: usize, before: usize, n: usize) -> usize {
    if i < before {
        before - i
    } else if i - before < n {
        i - before
    } else {
        // i - before ≥ n: mirror around n - 1.
        2 * (n - 1) + before - i
    }
}

/// Reflection padding of the last two axes of `[N, C, H, W]` or `[C, H, W]`, like PyTorch's
/// `F.pad(x, pad, mode='reflect')` with `pad = (left, right, top, bottom)`.
///
/// Returns `[N, C, H + top + bottom, W + left + right]` (or the rank-3 equivalent). The border
/// row/column is the mirror axis and is not repeated. Backward: each input element receives the
/// sum of the gradients of every output position that copies it.
///
/// Uses the fast CPU kernel for `f32` CPU tensors and [`reflection_pad2d_portable`] otherwise.
///
/// # Errors
/// [`Error::Op`] naming `reflection_pad2d` and the shape when `x` is not `f32`, its rank is not 3
/// or 4, or a pad is not less than the size of its axis (`left, right < W`, `top, bottom < H`,
/// PyTorch's rule).
pub fn reflection_pad2d(x: &Tensor, pad: (usize, usize, usize, usize)) -> Result<Tensor> {
    let g = geom(x, pad)?;
    if !fast_cpu(x) {
        return reflection_pad2d_portable(x, pad);
    }
    let mut out_dims = x.dims().to_vec();
    let r = out_dims.len();
    out_dims[r - 2] = g.ho();
    out_dims[r - 1] = g.wo();
    let y = x.contiguous()?.apply_op1(ReflectPad { g })?;
    Ok(y.reshape(out_dims)?)
}

/// Forward op of the CPU kernel; output is `[planes, Ho, Wo]`.
struct ReflectPad {
    g: Geom,
}

impl CustomOp1 for ReflectPad {
    fn name(&self) -> &'static str {
        OP
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.g;
        let x = cpu_f32(OP, s, l)?;
        let (ho, wo) = (g.ho(), g.wo());
        let cols: Vec<usize> = (0..wo).map(|j| reflect(j, g.left, g.w)).collect();
        let mut out = vec![0f32; g.planes * ho * wo];
        if ho * wo > 0 && g.h * g.w > 0 {
            out.par_chunks_mut(ho * wo)
                .zip(x.par_chunks(g.h * g.w))
                .for_each(|(o, xp)| {
                    for (i, orow) in o.chunks_exact_mut(wo).enumerate() {
                        let src = reflect(i, g.top, g.h) * g.w;
                        let srow = &xp[src..src + g.w];
                        // Interior is a straight copy; only the borders are gathered.
                        orow[g.left..g.left + g.w].copy_from_slice(srow);
                        for j in (0..g.left).chain(g.left + g.w..wo) {
                            orow[j] = srow[cols[j]];
                        }
                    }
                });
        }
        Ok((CpuStorage::F32(out), Shape::from((g.planes, ho, wo))))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grad = grad_res.to_dtype(DType::F32)?.contiguous()?;
        let gx = grad.apply_op1_no_bwd(&ReflectPadBwd { g: self.g })?;
        Ok(Some(gx.reshape(arg.dims())?))
    }
}

/// Backward op of the CPU kernel: `[planes, Ho, Wo] → [planes, H, W]`, summing mirrored
/// gradients.
struct ReflectPadBwd {
    g: Geom,
}

impl CustomOp1 for ReflectPadBwd {
    fn name(&self) -> &'static str {
        "reflection_pad2d_backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.g;
        let go = cpu_f32("reflection_pad2d_backward", s, l)?;
        let (ho, wo) = (g.ho(), g.wo());
        crate::ensure!(
            go.len() == g.planes * ho * wo,
            "reflection_pad2d_backward",
            "gradient has {} elements, expected {} planes of {ho}x{wo}",
            go.len(),
            g.planes
        );
        let cols: Vec<usize> = (0..wo).map(|j| reflect(j, g.left, g.w)).collect();
        let mut gx = zeroed(g.planes * g.h * g.w);
        if ho * wo > 0 && g.h * g.w > 0 {
            gx.par_chunks_mut(g.h * g.w)
                .zip(go.par_chunks(ho * wo))
                .for_each(|(dst, gp)| {
                    for (i, grow) in gp.chunks_exact(wo).enumerate() {
                        let d = reflect(i, g.top, g.h) * g.w;
                        let drow = &mut dst[d..d + g.w];
                        for (dv, &v) in drow.iter_mut().zip(&grow[g.left..g.left + g.w]) {
                            *dv += v;
                        }
                        for j in (0..g.left).chain(g.left + g.w..wo) {
                            drow[cols[j]] += grow[j];
                        }
                    }
                });
        }
        Ok((CpuStorage::F32(gx), Shape::from((g.planes, g.h, g.w))))
    }
}

/// The portable path of [`reflection_pad2d`]: `index_select` with a reflected index vector along
/// H, then along W; differentiable through candle's autograd (the backward of `index_select` is
/// `index_add`, which accumulates mirrored gradients) and runs on any device. Same shapes,
/// semantics and errors as [`reflection_pad2d`].
///
/// # Errors
/// As [`reflection_pad2d`], under the name `reflection_pad2d`.
pub fn reflection_pad2d_portable(x: &Tensor, pad: (usize, usize, usize, usize)) -> Result<Tensor> {
    let g = geom(x, pad)?;
    let r = x.rank();
    let dev = x.device();
    let rows: Vec<u32> = (0..g.ho()).map(|i| reflect(i, g.top, g.h) as u32).collect();
    let cols: Vec<u32> = (0..g.wo())
        .map(|j| reflect(j, g.left, g.w) as u32)
        .collect();
    let rows = Tensor::from_vec(rows, g.ho(), dev)?;
    let cols = Tensor::from_vec(cols, g.wo(), dev)?;
    Ok(x.index_select(&rows, r - 2)?.index_select(&cols, r - 1)?)
}
