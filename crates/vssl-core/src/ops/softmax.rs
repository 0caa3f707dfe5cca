//! Softmax and log-softmax over any dimension, with a backward pass.
//!
//! candle's fused `candle_nn::ops::softmax_last_dim` has no backward pass and silently drops the
//! gradient of everything before it; these ops always keep it. Semantics follow PyTorch's
//! `torch.softmax(x, dim)` and `torch.log_softmax(x, dim)`; both are computed in the numerically
//! stable way (the maximum along `dim` is subtracted before `exp`), so inputs of large magnitude
//! neither overflow nor lose the result.
//!
//! - [`softmax`] / [`log_softmax`] dispatch: a rayon-parallel CPU kernel (a `CustomOp1` whose
//!   backward is another CPU kernel: `dx = y ⊙ (g − Σ g ⊙ y)` for softmax,
//!   `dx = g − exp(y) ⊙ Σ g` for log-softmax, sums along `dim`) on `f32` CPU tensors, the
//!   portable path otherwise.
//! - [`softmax_portable`] / [`log_softmax_portable`] are compositions of differentiable candle
//!   ops (`max_keepdim`, `broadcast_sub`, `exp`, `sum_keepdim`, `broadcast_div` / `log`) and run
//!   on any device.

use candle_core::shape::Dim;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{cpu_f32, ensure_f32, fast_cpu};
use crate::{Error, Result};

/// The tensor viewed as `[outer, len, inner]` around the reduced dim.
#[derive(Debug, Clone, Copy)]
struct Geom {
    len: usize,
    inner: usize,
}

fn geom<D: Dim>(op: &'static str, x: &Tensor, dim: D) -> Result<(usize, Geom)> {
    ensure_f32(op, "x", x)?;
    let d = dim.to_index(x.shape(), op).map_err(|e| {
        Error::op(
            op,
            format!("invalid dim for x of shape {:?}: {e}", x.dims()),
        )
    })?;
    let dims = x.dims();
    let len = dims.get(d).copied().unwrap_or(1);
    let inner = dims.iter().skip(d + 1).product();
    Ok((d, Geom { len, inner }))
}

/// Softmax along `dim`, like PyTorch's `torch.softmax(x, dim)`:
/// `y = exp(x − max) / Σ exp(x − max)` along `dim`, same shape as `x`.
///
/// `dim` is a `usize` or a [`candle_core::D`] (e.g. `D::Minus1`). Differentiable: the backward
/// pass is `dx = y ⊙ (g − Σ_dim g ⊙ y)`. A slice that is entirely `-inf` gives NaN, as in
/// PyTorch.
///
/// Uses the fast CPU kernel for `f32` CPU tensors and [`softmax_portable`] otherwise.
///
/// # Errors
/// [`Error::Op`] naming `softmax` and the shape when `x` is not `f32` or `dim` is out of range.
pub fn softmax<D: Dim>(x: &Tensor, dim: D) -> Result<Tensor> {
    kernel_or_portable("softmax", x, dim, false)
}

/// Log-softmax along `dim`, like PyTorch's `torch.log_softmax(x, dim)`:
/// `y = x − max − log Σ exp(x − max)` along `dim`, same shape as `x`.
///
/// `dim` is a `usize` or a [`candle_core::D`]. Differentiable: the backward pass is
/// `dx = g − exp(y) ⊙ Σ_dim g`.
///
/// Uses the fast CPU kernel for `f32` CPU tensors and [`log_softmax_portable`] otherwise.
///
/// # Errors
/// [`Error::Op`] naming `log_softmax` and the shape when `x` is not `f32` or `dim` is out of
/// range.
pub fn log_softmax<D: Dim>(x: &Tensor, dim: D) -> Result<Tensor> {
    kernel_or_portable("log_softmax", x, dim, true)
}

fn kernel_or_portable<D: Dim>(op: &'static str, x: &Tensor, dim: D, log: bool) -> Result<Tensor> {
    let (d, g) = geom(op, x, dim)?;
    if !fast_cpu(x) {
        return portable(op, x, d, log);
    }
    Ok(x.contiguous()?.apply_op1(Softmax { op, g, log })?)
}

/// The portable path of [`softmax`], composed of differentiable candle ops (`max_keepdim`
/// (detached), `broadcast_sub`, `exp`, `sum_keepdim`, `broadcast_div`); runs on any device and
/// autograd gives its backward. Same shapes, semantics and errors as [`softmax`].
///
/// # Errors
/// As [`softmax`], under the name `softmax`.
pub fn softmax_portable<D: Dim>(x: &Tensor, dim: D) -> Result<Tensor> {
    let (d, _) = geom("softmax", x, dim)?;
    portable("softmax", x, d, false)
}

/// The portable path of [`log_softmax`], composed of differentiable candle ops (`max_keepdim`
/// (detached), `broadcast_sub`, `exp`, `sum_keepdim`, `log`); runs on any device. Same shapes,
/// semantics and errors as [`log_softmax`].
///
/// # Errors
/// As [`log_softmax`], under the name `log_softmax`.
pub fn log_softmax_portable<D: Dim>(x: &Tensor, dim: D) -> Result<Tensor> {
    let (d, _) = geom("log_softmax", x, dim)?;
    portable("log_softmax", x, d, true)
}

fn portable(_op: &'static str, x: &Tensor, d: usize, log: bool) -> Result<Tensor> {
    // The maximum only shifts the exponent; its derivative cancels exactly, so it is detached.
    let m = x.max_keepdim(d)?.detach();
    let z = x.broadcast_sub(&m)?;
    let e = z.exp()?;
    let s = e.sum_keepdim(d)?;
    if log {
        Ok(z.broadcast_sub(&s.log()?)?)
    } else {
        Ok(e.broadcast_div(&s)?)
    }
}

/// Softmax (or log-softmax) of one contiguous `[len, inner]` block, written to `o`.
fn fwd_block(g: Geom, log: bool, x: &[f32], o: &mut [f32]) {
    let (len, inner) = (g.len, g.inner);
    if inner == 1 {
        let m = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut s = 0f32;
        for (ov, &v) in o.iter_mut().zip(x) {
            let e = (v - m).exp();
            *ov = e;
            s += e;
        }
        if log {
            let ls = s.ln();
            for (ov, &v) in o.iter_mut().zip(x) {
                *ov = v - m - ls;
            }
        } else {
            let r = 1.0 / s;
            for ov in o.iter_mut() {
                *ov *= r;
            }
        }
        return;
    }
    // Strided: reduce row by row over `len`, vectorised along the contiguous `inner` axis.
    let mut m = vec![f32::NEG_INFINITY; inner];
    for row in x.chunks_exact(inner).take(len) {
        for (mv, &v) in m.iter_mut().zip(row) {
            *mv = mv.max(v);
        }
    }
    let mut s = vec![0f32; inner];
    for (orow, row) in o.chunks_exact_mut(inner).zip(x.chunks_exact(inner)) {
        for (((ov, &v), &mv), sv) in orow.iter_mut().zip(row).zip(&m).zip(s.iter_mut()) {
            let e = (v - mv).exp();
            *ov = e;
            *sv += e;
        }
    }
    if log {
        for (sv, &mv) in s.iter_mut().zip(&m) {
            *sv = mv + sv.ln();
        }
        for (orow, row) in o.chunks_exact_mut(inner).zip(x.chunks_exact(inner)) {
            for ((ov, &v), &sv) in orow.iter_mut().zip(row).zip(&s) {
                *ov = v - sv;
            }
        }
    } else {
        for sv in s.iter_mut() {
            *sv = 1.0 / *sv;
        }
        for orow in o.chunks_exact_mut(inner) {
            for (ov, &r) in orow.iter_mut().zip(&s) {
                *ov *= r;
            }
        }
    }
}

/// Backward of one `[len, inner]` block: `y` the forward output, `g` its gradient.
fn bwd_block(geom: Geom, log: bool, y: &[f32], g: &[f32], dx: &mut [f32]) {
    let inner = geom.inner;
    // acc = Σ g ⊙ y (softmax) or Σ g (log-softmax) along the reduced axis, per inner column.
    let mut acc = vec![0f32; inner];
    for (yr, gr) in y.chunks_exact(inner).zip(g.chunks_exact(inner)) {
        for ((a, &yv), &gv) in acc.iter_mut().zip(yr).zip(gr) {
            *a += if log { gv } else { gv * yv };
        }
    }
    for ((dr, yr), gr) in dx
        .chunks_exact_mut(inner)
        .zip(y.chunks_exact(inner))
        .zip(g.chunks_exact(inner))
    {
        for (((d, &yv), &gv), &a) in dr.iter_mut().zip(yr).zip(gr).zip(&acc) {
            *d = if log {
                gv - yv.exp() * a
            } else {
                yv * (gv - a)
            };
        }
    }
}

/// Forward op of the CPU kernel.
struct Softmax {
    op: &'static str,
    g: Geom,
    log: bool,
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        self.op
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = cpu_f32(self.op, s, l)?;
        let mut out = vec![0f32; x.len()];
        let block = self.g.len * self.g.inner;
        if block > 0 {
            let (g, log) = (self.g, self.log);
            out.par_chunks_mut(block)
                .zip(x.par_chunks(block))
                .for_each(|(o, xb)| fwd_block(g, log, xb, o));
        }
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let y = res.contiguous()?;
        let g = grad_res.to_dtype(DType::F32)?.contiguous()?;
        let op = SoftmaxBwd {
            g: self.g,
            log: self.log,
        };
        Ok(Some(y.apply_op2_no_bwd(&g, &op)?))
    }
}

/// Backward op of the CPU kernel: `(y, grad_y) → grad_x`.
struct SoftmaxBwd {
    g: Geom,
    log: bool,
}

impl CustomOp2 for SoftmaxBwd {
    fn name(&self) -> &'static str {
        if self.log {
            "log_softmax_backward"
        } else {
            "softmax_backward"
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = self.name();
        let y = cpu_f32(name, s1, l1)?;
        let g = cpu_f32(name, s2, l2)?;
        crate::ensure!(
            y.len() == g.len(),
            name,
            "output {:?} and gradient {:?} differ in shape",
            l1.dims(),
            l2.dims()
        );
        let mut dx = vec![0f32; y.len()];
        let block = self.g.len * self.g.inner;
        if block > 0 {
            let (geom, log) = (self.g, self.log);
            dx.par_chunks_mut(block)
                .zip(y.par_chunks(block))
                .zip(g.par_chunks(block))
                .for_each(|((d, yb), gb)| bwd_block(geom, log, yb, gb, d));
        }
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}
