//! Batch normalisation fused with what follows it in a residual network: an optional residual
//! addition and an optional ReLU, forward and backward in one or two passes over memory.
//!
//! [`batch_norm`] computes, per channel `c` of `x` (`[N, C, *]`),
//!
//! ```text
//! y = act(γ_c · (x − μ_c) / √(σ²_c + ε) + β_c [+ r])      act = ReLU or the identity
//! ```
//!
//! with `μ`, `σ²` the batch's mean and biased variance over every axis but `C` (train mode,
//! [`NormStats::Batch`]; gradients flow through them as in `torch.nn.functional.batch_norm(…,
//! training=True)`) or given statistics such as the running ones (eval mode,
//! [`NormStats::Given`]; constants). Train mode also returns the batch statistics, for the caller's
//! running-statistics update.
//!
//! On the CPU for `f32` it is a `CustomOp` whose autograd graph keeps only `x`, the output and the
//! residual (the last two are inputs of the next layers anyway), where the same computation in
//! candle ops keeps about eight tensors of `x`'s size per layer and allocates as many in the
//! backward pass:
//!
//! - forward: one pass for the statistics (per-channel sums shifted by the channel's first value,
//!   accumulated in `f64` blocks), one pass writing `y`;
//! - backward: one pass computing `g = dy · [y > 0]` (when the ReLU is on) with the per-channel
//!   sums `Σ g` and `Σ g·(x − μ)`, one pass writing `dx = A·g + B·(x − μ) + C` with per-channel
//!   coefficients; `dγ`, `dβ` come from the sums and the residual's gradient is `g` itself.
//!
//! Other devices and dtypes use [`batch_norm_portable`] (candle ops, the same results).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, D, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{cpu_f32, fast_cpu};
use crate::Result;

const OP: &str = "batch_norm";

/// Which statistics normalise the input.
#[derive(Debug, Clone, Copy)]
pub enum NormStats<'a> {
    /// The batch's own mean and biased variance (train mode); gradients flow through them.
    Batch,
    /// Given per-channel mean and (biased) variance, e.g. the running statistics (eval mode);
    /// treated as constants.
    Given {
        /// `[C]` mean.
        mean: &'a Tensor,
        /// `[C]` variance.
        var: &'a Tensor,
    },
}

/// What is fused after the normalisation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// Added to the normalised value before the activation (a residual block's shortcut); same
    /// shape as `x`.
    pub residual: Option<&'a Tensor>,
    /// Apply a ReLU last.
    pub relu: bool,
}

/// What [`batch_norm`] returns.
#[derive(Debug, Clone)]
pub struct BatchNormOutput {
    /// The output, `x`'s shape.
    pub y: Tensor,
    /// Train mode: the batch's per-channel mean `[C]` and biased variance `[C]` (detached), to
    /// update running statistics with (the unbiased variance is `var · n / (n − 1)`).
    pub batch_stats: Option<(Tensor, Tensor)>,
    /// How many values each channel's statistics are taken over (`N · H · W`).
    pub count: usize,
}

/// Checked shapes: `x` is `[N, C, *]`, `n` the batch, `c` the channels, `inner` the product of
/// the trailing axes.
#[derive(Debug, Clone, Copy)]
struct Geom {
    n: usize,
    c: usize,
    inner: usize,
}

impl Geom {
    fn count(&self) -> usize {
        self.n * self.inner
    }

    fn channel(&self, plane: usize) -> usize {
        plane % self.c
    }
}

fn geom(x: &Tensor, weight: &Tensor, bias: &Tensor, post: &Epilogue) -> Result<Geom> {
    let dims = x.dims();
    crate::ensure!(
        dims.len() >= 2,
        OP,
        "x must be [N, C, *], got shape {dims:?}"
    );
    let (n, c) = (dims[0], dims[1]);
    let inner = dims[2..].iter().product::<usize>();
    crate::ensure!(
        weight.dims() == [c] && bias.dims() == [c],
        OP,
        "weight and bias must be [{c}] for x of shape {dims:?}, got {:?} and {:?}",
        weight.dims(),
        bias.dims()
    );
    if let Some(r) = post.residual {
        crate::ensure!(
            r.dims() == dims,
            OP,
            "the residual must have x's shape {dims:?}, got {:?}",
            r.dims()
        );
    }
    Ok(Geom { n, c, inner })
}

fn check_eps(eps: f64) -> Result<()> {
    crate::ensure!(
        eps.is_finite() && eps >= 0.0,
        OP,
        "eps must be a finite non-negative number, got {eps}"
    );
    Ok(())
}

fn check_given(g: &Geom, mean: &Tensor, var: &Tensor) -> Result<()> {
    crate::ensure!(
        mean.dims() == [g.c] && var.dims() == [g.c],
        OP,
        "the given mean and variance must be [{}], got {:?} and {:?}",
        g.c,
        mean.dims(),
        var.dims()
    );
    Ok(())
}

fn check_batch(g: &Geom, x: &Tensor) -> Result<()> {
    crate::ensure!(
        g.count() > 1,
        OP,
        "train mode needs more than one value per channel, got x of shape {:?}",
        x.dims()
    );
    Ok(())
}

/// Batch normalisation with a fused residual addition and ReLU (see the module docs), like
/// `act(torch.nn.functional.batch_norm(x, rm, rv, weight, bias, training, eps=eps) + residual)`
/// without the running-statistics update (done by the caller with
/// [`BatchNormOutput::batch_stats`]).
///
/// On the CPU for `f32` the fused kernel of this module; elsewhere [`batch_norm_portable`].
///
/// # Errors
/// [`crate::Error::Op`] (`batch_norm`) naming the shapes when `x` is not `[N, C, *]`, the
/// weight, bias or given statistics are not `[C]`, the residual does not have `x`'s shape, `eps`
/// is negative or not finite, or train mode gets one value per channel.
pub fn batch_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stats: NormStats,
    eps: f64,
    post: Epilogue,
) -> Result<BatchNormOutput> {
    let g = geom(x, weight, bias, &post)?;
    check_eps(eps)?;
    let all_fast = fast_cpu(x)
        && fast_cpu(weight)
        && fast_cpu(bias)
        && post.residual.is_none_or(fast_cpu)
        && match stats {
            NormStats::Batch => true,
            NormStats::Given { mean, var } => fast_cpu(mean) && fast_cpu(var),
        };
    if !all_fast {
        return batch_norm_portable(x, weight, bias, stats, eps, post);
    }
    let x = x.contiguous()?;
    let (mean, var, batch_stats) = match stats {
        NormStats::Batch => {
            check_batch(&g, &x)?;
            let s = x.apply_op1_no_bwd(&ChannelStats { g })?; // [2, C]
            let (m, v) = (s.get(0)?, s.get(1)?);
            (m.to_vec1::<f32>()?, v.to_vec1::<f32>()?, Some((m, v)))
        }
        NormStats::Given { mean, var } => {
            check_given(&g, mean, var)?;
            (mean.to_vec1::<f32>()?, var.to_vec1::<f32>()?, None)
        }
    };
    let invstd = var
        .iter()
        .map(|&v| (1.0 / (f64::from(v) + eps).sqrt()) as f32)
        .collect();
    let op = BnForward {
        g,
        mean,
        invstd,
        train: batch_stats.is_some(),
        relu: post.relu,
        residual: post.residual.is_some(),
    };
    let wb = Tensor::stack(&[weight, bias], 0)?; // [2, C]
    let y = match post.residual {
        None => x.apply_op2(&wb, op)?,
        Some(r) => x.apply_op3(&wb, &r.contiguous()?, op)?,
    };
    Ok(BatchNormOutput {
        y,
        batch_stats,
        count: g.count(),
    })
}

/// The same computation with candle's differentiable ops (any device and dtype): the batch
/// statistics are computed with gradient in train mode, so autograd reproduces the fused
/// backward pass.
///
/// # Errors
/// As [`batch_norm`].
pub fn batch_norm_portable(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stats: NormStats,
    eps: f64,
    post: Epilogue,
) -> Result<BatchNormOutput> {
    let g = geom(x, weight, bias, &post)?;
    check_eps(eps)?;
    let rank = x.rank();
    let mut bshape = vec![1usize; rank];
    bshape[1] = g.c;
    // [C, N·inner]: every value of a channel on one row.
    let rows = x.transpose(0, 1)?.contiguous()?.reshape((g.c, g.count()))?;
    let (mean, var, batch_stats) = match stats {
        NormStats::Batch => {
            check_batch(&g, x)?;
            let mean = rows.mean_keepdim(D::Minus1)?; // [C, 1]
            let var = rows.broadcast_sub(&mean)?.sqr()?.mean_keepdim(D::Minus1)?; // [C, 1]
            let detached = (mean.flatten_all()?.detach(), var.flatten_all()?.detach());
            (
                mean.reshape(bshape.as_slice())?,
                var.reshape(bshape.as_slice())?,
                Some(detached),
            )
        }
        NormStats::Given { mean, var } => {
            check_given(&g, mean, var)?;
            (
                mean.detach().reshape(bshape.as_slice())?,
                var.detach().reshape(bshape.as_slice())?,
                None,
            )
        }
    };
    let xhat = x
        .broadcast_sub(&mean)?
        .broadcast_div(&(var + eps)?.sqrt()?)?;
    let mut y = xhat
        .broadcast_mul(&weight.reshape(bshape.as_slice())?)?
        .broadcast_add(&bias.reshape(bshape.as_slice())?)?;
    if let Some(r) = post.residual {
        y = (y + r)?;
    }
    if post.relu {
        y = y.relu()?;
    }
    Ok(BatchNormOutput {
        y,
        batch_stats,
        count: g.count(),
    })
}

/// Sums of 8 lanes over `v` (vectorised by the compiler: the lanes are independent), then `f64`.
#[inline]
fn lane_sums(v: &[f32], shift: f32) -> (f64, f64) {
    let mut s = [0f32; 8];
    let mut q = [0f32; 8];
    let mut chunks = v.chunks_exact(8);
    for ch in &mut chunks {
        for k in 0..8 {
            let d = ch[k] - shift;
            s[k] += d;
            q[k] += d * d;
        }
    }
    let (mut s64, mut q64) = (0f64, 0f64);
    for k in 0..8 {
        s64 += f64::from(s[k]);
        q64 += f64::from(q[k]);
    }
    for &x in chunks.remainder() {
        let d = f64::from(x - shift);
        s64 += d;
        q64 += d * d;
    }
    (s64, q64)
}

/// Values per `f32` accumulation block before the partial sums move to `f64`.
const BLOCK: usize = 1024;

/// How many planes one rayon task takes, so that tasks hold a few thousand values.
fn min_planes(inner: usize) -> usize {
    (4096 / inner.max(1)).max(1)
}

/// Per-channel mean and biased variance: `[2, C]`.
struct ChannelStats {
    g: Geom,
}

impl CustomOp1 for ChannelStats {
    fn name(&self) -> &'static str {
        "batch_norm_stats"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = cpu_f32(OP, s, l)?;
        let g = self.g;
        let plane = g.inner;
        // Shift each channel by its first value (the sums of small deviations keep their digits
        // when the mean is far from zero).
        let shift: Vec<f32> = (0..g.c).map(|c| x[c * plane]).collect();
        let sums: Vec<(f64, f64)> = x
            .par_chunks(plane)
            .with_min_len(min_planes(plane))
            .enumerate()
            .map(|(p, v)| {
                let k = shift[g.channel(p)];
                v.chunks(BLOCK).fold((0.0, 0.0), |(a, b), blk| {
                    let (s, q) = lane_sums(blk, k);
                    (a + s, b + q)
                })
            })
            .collect();
        let m = g.count() as f64;
        let mut out = vec![0f32; 2 * g.c];
        for c in 0..g.c {
            let (s, q) = (0..g.n).fold((0.0, 0.0), |(a, b), i| {
                let (s, q) = sums[i * g.c + c];
                (a + s, b + q)
            });
            let d = s / m;
            out[c] = (f64::from(shift[c]) + d) as f32;
            // Clamp rounding below 0, but let a NaN through (f64::max would turn it into 0).
            let var = q / m - d * d;
            out[g.c + c] = (if var < 0.0 { 0.0 } else { var }) as f32;
        }
        Ok((CpuStorage::F32(out), Shape::from((2, g.c))))
    }
}

/// The fused forward op: `(x, [γ; β] [, r]) → y`.
#[derive(Clone)]
struct BnForward {
    g: Geom,
    mean: Vec<f32>,
    invstd: Vec<f32>,
    train: bool,
    relu: bool,
    residual: bool,
}

impl BnForward {
    fn run(&self, x: &[f32], wb: &[f32], r: Option<&[f32]>) -> Vec<f32> {
        let g = self.g;
        let plane = g.inner;
        let mut y = vec![0f32; x.len()];
        if plane == 0 {
            return y;
        }
        y.par_chunks_mut(plane)
            .with_min_len(min_planes(plane))
            .enumerate()
            .for_each(|(p, yp)| {
                let c = g.channel(p);
                let a = wb[c] * self.invstd[c];
                let (mu, beta) = (self.mean[c], wb[g.c + c]);
                let xp = &x[p * plane..(p + 1) * plane];
                match r {
                    None => {
                        for (o, &v) in yp.iter_mut().zip(xp) {
                            *o = a * (v - mu) + beta;
                        }
                    }
                    Some(r) => {
                        let rp = &r[p * plane..(p + 1) * plane];
                        for ((o, &v), &s) in yp.iter_mut().zip(xp).zip(rp) {
                            *o = a * (v - mu) + beta + s;
                        }
                    }
                }
                if self.relu {
                    for o in yp.iter_mut() {
                        // As PyTorch's ReLU: NaN stays NaN (f32::max would hide it as 0).
                        if *o < 0.0 {
                            *o = 0.0;
                        }
                    }
                }
            });
        y
    }

    /// The backward pass: `(dx, d[γ; β], d r)`, each only when its argument takes part in
    /// autograd.
    fn backward(
        &self,
        x: &Tensor,
        wb: &Tensor,
        r: Option<&Tensor>,
        res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = self.g;
        let dy = dy.to_dtype(DType::F32)?.contiguous()?;
        // Pass 1: g = dy · [y > 0] and the per-channel sums Σ g, Σ g·(x − μ).
        let sums_op = GradSums {
            g,
            mean: self.mean.clone(),
            relu: self.relu,
        };
        let packed = dy.apply_op3_no_bwd(x, res, &sums_op)?;
        let total = g.n * g.c * g.inner;
        let (grad, sums) = if self.relu {
            (
                packed.narrow(0, 0, total)?.reshape(x.shape())?,
                packed.narrow(0, total, 2 * g.c)?,
            )
        } else {
            (dy.clone(), packed)
        };
        let sums = sums.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let wbv = wb.to_vec2::<f32>()?;
        let (s1, s2) = sums.split_at(g.c);
        let m = g.count() as f64;
        // dβ = Σ g; dγ = Σ g·x̂ = invstd · Σ g·(x − μ).
        let dgamma: Vec<f32> = (0..g.c)
            .map(|c| (f64::from(self.invstd[c]) * s2[c]) as f32)
            .collect();
        let dbeta: Vec<f32> = s1.iter().map(|&v| v as f32).collect();
        let dx = if x.track_op() {
            // dx = A·g + B·(x − μ) + C: A = γ·invstd; train mode also B = −γ·invstd²·dγ/m and
            // C = −γ·invstd·Σg/m (the dependence of the batch statistics on x).
            let coef: Vec<[f32; 3]> = (0..g.c)
                .map(|c| {
                    let a = f64::from(wbv[0][c]) * f64::from(self.invstd[c]);
                    if self.train {
                        let is = f64::from(self.invstd[c]);
                        [
                            a as f32,
                            (-a * is * is * s2[c] / m) as f32,
                            (-a * s1[c] / m) as f32,
                        ]
                    } else {
                        [a as f32, 0.0, 0.0]
                    }
                })
                .collect();
            let op = GradInput {
                g,
                mean: self.mean.clone(),
                coef,
            };
            Some(grad.apply_op2_no_bwd(x, &op)?)
        } else {
            None
        };
        let dwb = if wb.track_op() {
            let mut v = dgamma;
            v.extend(dbeta);
            Some(Tensor::from_vec(v, (2, g.c), x.device())?)
        } else {
            None
        };
        let dr = match r {
            Some(r) if r.track_op() => Some(grad),
            _ => None,
        };
        Ok((dx, dwb, dr))
    }
}

impl CustomOp2 for BnForward {
    fn name(&self) -> &'static str {
        OP
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = cpu_f32(OP, xs, xl)?;
        let wb = cpu_f32(OP, ws, wl)?;
        Ok((CpuStorage::F32(self.run(x, wb, None)), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        wb: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dwb, _) = self.backward(x, wb, None, res, dy)?;
        Ok((dx, dwb))
    }
}

impl CustomOp3 for BnForward {
    fn name(&self) -> &'static str {
        OP
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        rs: &CpuStorage,
        rl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        debug_assert!(self.residual);
        let x = cpu_f32(OP, xs, xl)?;
        let wb = cpu_f32(OP, ws, wl)?;
        let r = cpu_f32(OP, rs, rl)?;
        Ok((
            CpuStorage::F32(self.run(x, wb, Some(r))),
            xl.shape().clone(),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        wb: &Tensor,
        r: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        self.backward(x, wb, Some(r), res, dy)
    }
}

/// Backward pass 1: `(dy, x, y) → [g (when the ReLU is on); Σ g (C); Σ g·(x − μ) (C)]`, flat.
struct GradSums {
    g: Geom,
    mean: Vec<f32>,
    relu: bool,
}

impl CustomOp3 for GradSums {
    fn name(&self) -> &'static str {
        "batch_norm_grad_sums"
    }

    fn cpu_fwd(
        &self,
        ds: &CpuStorage,
        dl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dy = cpu_f32(OP, ds, dl)?;
        let x = cpu_f32(OP, xs, xl)?;
        let y = cpu_f32(OP, ys, yl)?;
        let g = self.g;
        let plane = g.inner;
        let total = g.n * g.c * plane;
        crate::ensure!(
            dy.len() == total && x.len() == total && y.len() == total,
            OP,
            "backward: gradient of {} values for x of {total}",
            dy.len()
        );
        let keep = if self.relu { total } else { 0 };
        let mut out = vec![0f32; keep + 2 * g.c];
        let sums: Vec<(f64, f64)> = if plane == 0 {
            Vec::new()
        } else if self.relu {
            out[..total]
                .par_chunks_mut(plane)
                .with_min_len(min_planes(plane))
                .enumerate()
                .map(|(p, gp)| {
                    let mu = self.mean[g.channel(p)];
                    let range = p * plane..(p + 1) * plane;
                    let (dp, xp, yp) = (&dy[range.clone()], &x[range.clone()], &y[range]);
                    for ((o, &d), &v) in gp.iter_mut().zip(dp).zip(yp) {
                        *o = if v > 0.0 { d } else { 0.0 };
                    }
                    grad_sums(gp, xp, mu)
                })
                .collect()
        } else {
            dy.par_chunks(plane)
                .with_min_len(min_planes(plane))
                .enumerate()
                .map(|(p, dp)| {
                    let mu = self.mean[g.channel(p)];
                    grad_sums(dp, &x[p * plane..(p + 1) * plane], mu)
                })
                .collect()
        };
        let (s1, s2) = out[keep..].split_at_mut(g.c);
        for c in 0..g.c {
            let (a, b) = (0..g.n).fold((0.0, 0.0), |(a, b), i| {
                let (s, q) = sums.get(i * g.c + c).copied().unwrap_or((0.0, 0.0));
                (a + s, b + q)
            });
            s1[c] = a as f32;
            s2[c] = b as f32;
        }
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

/// `(Σ g, Σ g·(x − μ))` over one plane, in 8 lanes and `f64` blocks.
#[inline]
fn grad_sums(gp: &[f32], xp: &[f32], mu: f32) -> (f64, f64) {
    let (mut a, mut b) = (0f64, 0f64);
    for (gb, xb) in gp.chunks(BLOCK).zip(xp.chunks(BLOCK)) {
        let mut s = [0f32; 8];
        let mut q = [0f32; 8];
        let mut gc = gb.chunks_exact(8);
        let mut xc = xb.chunks_exact(8);
        for (g8, x8) in (&mut gc).zip(&mut xc) {
            for k in 0..8 {
                s[k] += g8[k];
                q[k] += g8[k] * (x8[k] - mu);
            }
        }
        for k in 0..8 {
            a += f64::from(s[k]);
            b += f64::from(q[k]);
        }
        for (&gv, &xv) in gc.remainder().iter().zip(xc.remainder()) {
            a += f64::from(gv);
            b += f64::from(gv) * f64::from(xv - mu);
        }
    }
    (a, b)
}

/// Backward pass 2: `(g, x) → dx = A·g + B·(x − μ) + C` per channel.
struct GradInput {
    g: Geom,
    mean: Vec<f32>,
    coef: Vec<[f32; 3]>,
}

impl CustomOp2 for GradInput {
    fn name(&self) -> &'static str {
        "batch_norm_grad_input"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let gr = cpu_f32(OP, gs, gl)?;
        let x = cpu_f32(OP, xs, xl)?;
        let g = self.g;
        let plane = g.inner;
        let mut dx = vec![0f32; x.len()];
        if plane > 0 {
            dx.par_chunks_mut(plane)
                .with_min_len(min_planes(plane))
                .enumerate()
                .for_each(|(p, dp)| {
                    let c = g.channel(p);
                    let [a, b, k] = self.coef[c];
                    let mu = self.mean[c];
                    let range = p * plane..(p + 1) * plane;
                    for ((o, &gv), &xv) in dp.iter_mut().zip(&gr[range.clone()]).zip(&x[range]) {
                        *o = a * gv + b * (xv - mu) + k;
                    }
                });
        }
        Ok((CpuStorage::F32(dx), xl.shape().clone()))
    }
}
