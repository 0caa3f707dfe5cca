//! 2-d max pooling with a backward pass that routes each output's gradient to the first maximum
//! of its window.
//!
//! The semantics follow PyTorch's `torch.nn.functional.max_pool2d` with `dilation = 1` and
//! `ceil_mode = False` (see the PyTorch documentation of `MaxPool2d`): the input is padded
//! implicitly with `-inf` (padding is never chosen), windows are visited in row-major order and
//! the first maximum wins ties, so the gradient goes to exactly one input per output.
//!
//! - [`max_pool2d`] dispatches: a rayon-parallel CPU kernel (which records the argmax of every
//!   window in the forward pass and scatters the gradient with it in the backward pass) on `f32`
//!   CPU tensors, [`max_pool2d_portable`] everywhere else.
//! - [`max_pool2d_portable`] is composed of differentiable candle ops and runs on any device.

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{cpu_f32, ensure_f32, fast_cpu, zeroed};
use crate::{Error, Result};

const OP: &str = "max_pool2d";

/// Checked pooling geometry.
#[derive(Debug, Clone, Copy)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    ho: usize,
    wo: usize,
}

/// Validates the arguments as PyTorch does and computes the output size.
fn geom(
    op: &'static str,
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Geom> {
    ensure_f32(op, "x", x)?;
    let (n, c, h, w) = match *x.dims() {
        [n, c, h, w] => (n, c, h, w),
        _ => {
            return Err(Error::op(
                op,
                format!("x must be [N, C, H, W], got shape {:?}", x.dims()),
            ));
        }
    };
    let ((kh, kw), (sh, sw), (ph, pw)) = (kernel, stride, padding);
    crate::ensure!(
        kh > 0 && kw > 0,
        op,
        "kernel must be positive, got {kernel:?} for x of shape {:?}",
        x.dims()
    );
    crate::ensure!(
        sh > 0 && sw > 0,
        op,
        "stride must be positive, got {stride:?} for x of shape {:?}",
        x.dims()
    );
    crate::ensure!(
        ph <= kh / 2 && pw <= kw / 2,
        op,
        "padding should be at most half of the kernel, got padding {padding:?} for kernel {kernel:?} (x of shape {:?})",
        x.dims()
    );
    let (hp, wp) = (h + 2 * ph, w + 2 * pw);
    crate::ensure!(
        hp >= kh && wp >= kw,
        op,
        "output size would be < 1: x of shape {:?} padded by {padding:?} is smaller than kernel {kernel:?}",
        x.dims()
    );
    let ho = (hp - kh) / sh + 1;
    let wo = (wp - kw) / sw + 1;
    crate::ensure!(
        u32::try_from(h * w).is_ok(),
        op,
        "a plane of x of shape {:?} has more than 2^32 elements",
        x.dims()
    );
    Ok(Geom {
        n,
        c,
        h,
        w,
        kh,
        kw,
        sh,
        sw,
        ph,
        pw,
        ho,
        wo,
    })
}

/// 2-d max pooling over `[N, C, H, W]`, like PyTorch's
/// `F.max_pool2d(x, kernel, stride, padding)` with `dilation = 1`, `ceil_mode = False`.
///
/// Returns `[N, C, Ho, Wo]` with `Ho = (H + 2·ph − kh) / sh + 1` (floor) and likewise `Wo`.
/// Padded positions count as `-inf`, so they are never chosen. The backward pass sends each
/// output's gradient to the **first** maximum of its window in row-major order (PyTorch's rule for
/// ties); gradients of overlapping windows accumulate.
///
/// NaN: on the CPU kernel a NaN in a window makes the output NaN and takes the gradient (the
/// last NaN of the window, as PyTorch's CPU kernel does). On other devices see
/// [`max_pool2d_portable`].
///
/// Uses the fast CPU kernel for `f32` CPU tensors and [`max_pool2d_portable`] otherwise. The
/// CPU kernel keeps one `u32` argmax per output (4 bytes per output element) alive with the
/// autograd graph, so the backward pass is a single scatter.
///
/// # Errors
/// [`Error::Op`] naming `max_pool2d` and the shapes when `x` is not an `f32` rank-4 tensor, a
/// kernel or stride entry is zero, a padding entry exceeds half the kernel (`p > k / 2`, as
/// PyTorch), or the output would be empty (padded input smaller than the kernel).
pub fn max_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    let g = geom(OP, x, kernel, stride, padding)?;
    if !fast_cpu(x) {
        return max_pool2d_portable(x, kernel, stride, padding);
    }
    let op = MaxPool2d {
        g,
        argmax: Arc::new(OnceLock::new()),
    };
    Ok(x.contiguous()?.apply_op1(op)?)
}

/// The forward CPU kernel: fills `out` and `arg` (flat index in the input plane) plane by plane.
fn pool_fwd(g: &Geom, x: &[f32], out: &mut [f32], arg: &mut [u32]) {
    let plane_in = g.h * g.w;
    let plane_out = g.ho * g.wo;
    if plane_out == 0 || plane_in == 0 {
        return;
    }
    out.par_chunks_mut(plane_out)
        .zip(arg.par_chunks_mut(plane_out))
        .zip(x.par_chunks(plane_in))
        .for_each(|((o, a), xp)| {
            for oh in 0..g.ho {
                let h0 = (oh * g.sh).saturating_sub(g.ph);
                let h1 = (oh * g.sh + g.kh - g.ph).min(g.h);
                let orow = &mut o[oh * g.wo..(oh + 1) * g.wo];
                let arow = &mut a[oh * g.wo..(oh + 1) * g.wo];
                for (ow, (ov, av)) in orow.iter_mut().zip(arow.iter_mut()).enumerate() {
                    let w0 = (ow * g.sw).saturating_sub(g.pw);
                    let w1 = (ow * g.sw + g.kw - g.pw).min(g.w);
                    // Pass 1: the maximum (a branch-free `max`) and whether a NaN is present.
                    let mut best = f32::NEG_INFINITY;
                    let mut nan = false;
                    for ih in h0..h1 {
                        let base = ih * g.w;
                        for &v in xp.get(base + w0..base + w1).unwrap_or_default() {
                            best = if v > best { v } else { best };
                            nan |= v.is_nan();
                        }
                    }
                    // Pass 2: the first position (row-major) holding the maximum, PyTorch's tie
                    // rule; with a NaN, the last NaN wins as in PyTorch's CPU kernel (whose
                    // running test is `v > best || isnan(v)`). An all `-inf` window keeps its
                    // first position.
                    let mut bi = h0 * g.w + w0;
                    if nan {
                        best = f32::NAN;
                        for ih in h0..h1 {
                            let base = ih * g.w;
                            let row = xp.get(base + w0..base + w1).unwrap_or_default();
                            for (k, &v) in row.iter().enumerate() {
                                if v.is_nan() {
                                    bi = base + w0 + k;
                                }
                            }
                        }
                    } else {
                        'find: for ih in h0..h1 {
                            let base = ih * g.w;
                            let row = xp.get(base + w0..base + w1).unwrap_or_default();
                            for (k, &v) in row.iter().enumerate() {
                                if v == best {
                                    bi = base + w0 + k;
                                    break 'find;
                                }
                            }
                        }
                    }
                    *ov = best;
                    *av = bi as u32;
                }
            }
        });
}

/// The forward op of the CPU kernel; remembers the argmax of each window for the backward pass.
struct MaxPool2d {
    g: Geom,
    argmax: Arc<OnceLock<Vec<u32>>>,
}

impl CustomOp1 for MaxPool2d {
    fn name(&self) -> &'static str {
        OP
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = cpu_f32(OP, s, l)?;
        let g = &self.g;
        let len = g.n * g.c * g.ho * g.wo;
        let mut out = vec![0f32; len];
        let mut arg = vec![0u32; len];
        pool_fwd(g, x, &mut out, &mut arg);
        // A second forward through the same op (not done by candle) would keep the first argmax.
        let _ = self.argmax.set(arg);
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.c, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let op = MaxPool2dBwd {
            g: self.g,
            argmax: self.argmax.clone(),
        };
        let grad = grad_res.to_dtype(DType::F32)?.contiguous()?;
        Ok(Some(arg.contiguous()?.apply_op2_no_bwd(&grad, &op)?))
    }
}

/// The backward op of the CPU kernel: `(x, grad_out) → grad_x`, scattering each output's gradient
/// onto its window's argmax (recomputed from `x` if the forward pass did not record it).
struct MaxPool2dBwd {
    g: Geom,
    argmax: Arc<OnceLock<Vec<u32>>>,
}

impl CustomOp2 for MaxPool2dBwd {
    fn name(&self) -> &'static str {
        "max_pool2d_backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = &self.g;
        let gout = cpu_f32("max_pool2d_backward", s2, l2)?;
        let plane_out = g.ho * g.wo;
        let plane_in = g.h * g.w;
        crate::ensure!(
            gout.len() == g.n * g.c * plane_out,
            "max_pool2d_backward",
            "gradient has {} elements, expected [{}, {}, {}, {}]",
            gout.len(),
            g.n,
            g.c,
            g.ho,
            g.wo
        );
        let recomputed;
        let arg: &[u32] = match self.argmax.get() {
            Some(a) => a,
            None => {
                let x = cpu_f32("max_pool2d_backward", s1, l1)?;
                let mut out = vec![0f32; gout.len()];
                let mut a = vec![0u32; gout.len()];
                pool_fwd(g, x, &mut out, &mut a);
                recomputed = a;
                &recomputed
            }
        };
        let mut gx = zeroed(g.n * g.c * plane_in);
        if plane_in > 0 && plane_out > 0 {
            gx.par_chunks_mut(plane_in)
                .zip(gout.par_chunks(plane_out))
                .zip(arg.par_chunks(plane_out))
                .for_each(|((dst, go), a)| {
                    for (&v, &i) in go.iter().zip(a) {
                        if let Some(d) = dst.get_mut(i as usize) {
                            *d += v;
                        }
                    }
                });
        }
        Ok((CpuStorage::F32(gx), Shape::from((g.n, g.c, g.h, g.w))))
    }
}

/// The portable path of [`max_pool2d`], composed of differentiable candle ops (runs on any
/// device); same shapes, semantics and errors.
///
/// The input is padded with `-inf`; each of the `kh·kw` window offsets is taken as a strided view
/// with `index_select`, the maximum `m` of all views is computed, and the output is built as a
/// chain of `where_cond(view_j == m, view_j, …)` that picks the **first** offset (row-major)
/// equal to the maximum, so autograd routes the gradient to the first maximum exactly like the
/// CPU kernel and PyTorch.
///
/// NaN: a window containing NaN yields candle's `maximum` of it (device-dependent) and sends no
/// gradient to the window; PyTorch propagates NaN there instead. A window whose real entries
/// are all `-inf` and which also covers padding may route its gradient to the padding (so the
/// input gets none), where PyTorch picks the window's first real position.
///
/// It costs `kh·kw` `index_select`s and `where_cond`s of the output's size: several times
/// slower than the CPU kernel on the CPU (a timing test in `tests/pool.rs` compares them).
///
/// # Errors
/// As [`max_pool2d`], under the name `max_pool2d`.
pub fn max_pool2d_portable(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    let g = geom(OP, x, kernel, stride, padding)?;
    let dev = x.device();
    let mut xp = x.clone();
    if g.ph > 0 {
        let band = Tensor::full(f32::NEG_INFINITY, (g.n, g.c, g.ph, g.w), dev)?;
        xp = Tensor::cat(&[&band, &xp, &band], 2)?;
    }
    if g.pw > 0 {
        let band = Tensor::full(f32::NEG_INFINITY, (g.n, g.c, g.h + 2 * g.ph, g.pw), dev)?;
        xp = Tensor::cat(&[&band, &xp, &band], 3)?;
    }
    let idx = |start: usize, step: usize, count: usize| -> Result<Tensor> {
        let v: Vec<u32> = (0..count).map(|i| (start + i * step) as u32).collect();
        Ok(Tensor::from_vec(v, count, dev)?)
    };
    let mut views = Vec::with_capacity(g.kh * g.kw);
    for i in 0..g.kh {
        let rows = xp.index_select(&idx(i, g.sh, g.ho)?, 2)?;
        for j in 0..g.kw {
            views.push(rows.index_select(&idx(j, g.sw, g.wo)?, 3)?);
        }
    }
    let mut m: Option<Tensor> = None;
    for v in &views {
        let v = v.detach();
        m = Some(match m {
            None => v,
            Some(m) => m.maximum(&v)?,
        });
    }
    let m = m.ok_or_else(|| Error::op(OP, "empty kernel"))?;
    // Build from the last offset backwards so the first matching offset is the outermost choice.
    let mut acc = m.clone();
    for v in views.iter().rev() {
        acc = v.eq(&m)?.where_cond(v, &acc)?;
    }
    Ok(acc)
}
