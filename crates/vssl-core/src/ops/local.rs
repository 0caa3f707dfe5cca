//! Local-window affinity and aggregation: the restricted ("local") attention of space-time
//! correspondence methods such as CRW (Jabri et al., *Space-Time Correspondence as a Contrastive
//! Random Walk*, NeurIPS 2020) and ContrastCorr, without materialising the dense
//! `HW × HW` affinity.
//!
//! - [`local_affinity`]: for features `a`, `b` of shape `[B, C, H, W]`, the dot product of every
//!   position of `a` with each position of the `(2r+1)²` square window around the same position
//!   in `b`, giving `[B, (2r+1)², H, W]`.
//! - [`local_aggregate`]: its companion: weights `[B, (2r+1)², H, W]` (e.g. a softmax of the
//!   affinity over dim 1) mix the values `[B, D, H, W]` found in the same windows.
//!
//! Window offsets are numbered row-major: offset `(dy, dx)` with `dy, dx ∈ [-r, r]` is channel
//! `k = (dy + r)(2r + 1) + (dx + r)`; `k = r(2r+2)` (the centre) is the position itself.
//! This is the order of PyTorch's `torch.nn.functional.unfold` with kernel `2r+1` and padding
//! `r`, so `local_affinity(a, b)` equals
//! `(a[:, :, None] * unfold(b, 2r+1, padding=r).view(B, C, K, H, W)).sum(1)` on the in-image
//! entries.
//!
//! The fast CPU kernels run in parallel with rayon. The affinity kernel reads `a` and `b` in
//! place (`[B, C, H, W]`, a multiply-add along image rows per channel) and allocates only its
//! output plus an `O(threads · (2r+1) · W)` scratch, so top-k over its window axis costs a small
//! fraction of a dense `HW × HW` affinity. The aggregation kernel and the backward passes work on
//! channels-last copies (input-sized) so each position's channel vector is contiguous; the
//! backward passes are the two kernels with the roles swapped.

use std::sync::Arc;

use candle_core::{CpuStorage, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::ops::{cpu_f32, ensure_f32, fast_cpu, zeroed};
use crate::{Error, Result};

const AFF: &str = "local_affinity";
const AGG: &str = "local_aggregate";

/// A square window of side `2·radius + 1` around every position, optionally cut to a disc.
///
/// With `euclidean: false` the window keeps all `(2r+1)²` offsets `(dy, dx)`, `|dy|, |dx| ≤ r`.
/// With `euclidean: true` it keeps only the offsets with `dx² + dy² < r²`, i.e. Euclidean
/// distance strictly below `r` measured in feature cells, which is CRW's
/// `restrict_neighborhood` / `MaskedAttention` rule (`dist < radius` on the feature grid). The
/// output keeps all `(2r+1)²` channels either way; the dropped offsets are masked (see
/// [`local_affinity`]). `radius = 0` is the position itself (a 1×1 window); a Euclidean window
/// needs `radius ≥ 1` (with radius 0 it would keep nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalWindow {
    /// Half side of the square window, in feature cells.
    pub radius: usize,
    /// Keep only the offsets with `dx² + dy² < radius²` (CRW's `dist < r`).
    pub euclidean: bool,
}

impl LocalWindow {
    /// The full square window of side `2·radius + 1`.
    pub fn square(radius: usize) -> Self {
        Self {
            radius,
            euclidean: false,
        }
    }

    /// The square window cut to the offsets at Euclidean distance `< radius` (CRW's mask).
    pub fn euclidean(radius: usize) -> Self {
        Self {
            radius,
            euclidean: true,
        }
    }

    /// The number of offsets in the square window, `(2·radius + 1)²`: the size of dim 1 of the
    /// affinity and of the aggregation weights.
    ///
    /// # Errors
    ///
    /// [`Error::Op`] when `(2·radius + 1)²` overflows `usize`.
    pub fn size(&self) -> Result<usize> {
        window_size(AFF, self.radius)
    }

    /// Whether offset `(dy, dx)` (each in `[-radius, radius]`) is kept by this window.
    pub fn keeps(&self, dy: isize, dx: isize) -> bool {
        let r = self.radius as i128;
        let (dy, dx) = (dy as i128, dx as i128);
        if dy.abs() > r || dx.abs() > r {
            return false;
        }
        !self.euclidean || dy * dy + dx * dx < r * r
    }
}

/// `(2r+1)²`, checked.
fn window_size(op: &'static str, radius: usize) -> Result<usize> {
    radius
        .checked_mul(2)
        .and_then(|s| s.checked_add(1))
        .and_then(|s| s.checked_mul(s))
        .filter(|&k| isize::try_from(k).is_ok())
        .ok_or_else(|| {
            Error::op(
                op,
                format!("radius {radius} is too large: the window size (2r+1)^2 overflows"),
            )
        })
}

/// Shapes and window shared by the kernels.
#[derive(Debug, Clone)]
struct Geom {
    b: usize,
    h: usize,
    w: usize,
    r: usize,
    side: usize,
    k: usize,
    /// `keep[k]`: offset `k` is used (inside the square, and inside the disc if Euclidean).
    keep: Arc<[bool]>,
}

impl Geom {
    fn new(op: &'static str, b: usize, h: usize, w: usize, window: LocalWindow) -> Result<Self> {
        let k = window_size(op, window.radius)?;
        let r = window.radius;
        let side = 2 * r + 1;
        let mut keep = Vec::with_capacity(k);
        for dyi in 0..side {
            for dxi in 0..side {
                keep.push(window.keeps(dyi as isize - r as isize, dxi as isize - r as isize));
            }
        }
        Ok(Self {
            b,
            h,
            w,
            r,
            side,
            k,
            keep: keep.into(),
        })
    }

    /// `(k, dy, dx)` of every kept offset that can land inside the image.
    fn offsets(&self) -> Vec<(usize, isize, isize)> {
        let r = self.r as isize;
        let mut v = Vec::new();
        for (k, &kept) in self.keep.iter().enumerate() {
            let dy = (k / self.side) as isize - r;
            let dx = (k % self.side) as isize - r;
            if kept && dy.unsigned_abs() < self.h && dx.unsigned_abs() < self.w {
                v.push((k, dy, dx));
            }
        }
        v
    }

    /// The `x` range where `0 ≤ x + dx < w`.
    fn x_range(&self, dx: isize) -> std::ops::Range<usize> {
        let w = self.w as isize;
        let x0 = (-dx).clamp(0, w) as usize;
        let x1 = (w - dx).clamp(0, w) as usize;
        x0..x1.max(x0)
    }

    /// `y + dy` when inside the image.
    fn shift(v: usize, d: isize, n: usize) -> Option<usize> {
        let t = v as isize + d;
        if t >= 0 && (t as usize) < n {
            Some(t as usize)
        } else {
            None
        }
    }

    /// 0/1 mask `[K, H, W]`: entry `(k, y, x)` is 1 when offset `k` is kept and
    /// `(y + dy, x + dx)` is inside the image.
    fn valid_mask(&self) -> Vec<u8> {
        let hw = self.h * self.w;
        let mut m = vec![0u8; self.k * hw];
        for (k, dy, dx) in self.offsets() {
            for y in 0..self.h {
                if Self::shift(y, dy, self.h).is_none() {
                    continue;
                }
                let row = k * hw + y * self.w;
                for x in self.x_range(dx) {
                    if let Some(e) = m.get_mut(row + x) {
                        *e = 1;
                    }
                }
            }
        }
        m
    }
}

// ---------------------------------------------------------------------------------------------
// Argument checks
// ---------------------------------------------------------------------------------------------

fn dims4(op: &'static str, name: &str, t: &Tensor) -> Result<[usize; 4]> {
    ensure_f32(op, name, t)?;
    match *t.dims() {
        [b, c, h, w] => Ok([b, c, h, w]),
        _ => Err(Error::op(
            op,
            format!(
                "{name} must have rank 4 [B, C, H, W], got shape {:?}",
                t.dims()
            ),
        )),
    }
}

fn check_affinity(a: &Tensor, b: &Tensor, window: LocalWindow) -> Result<Geom> {
    let [bs, _c, h, w] = dims4(AFF, "a", a)?;
    dims4(AFF, "b", b)?;
    crate::ensure!(
        a.dims() == b.dims(),
        AFF,
        "a and b must have the same shape [B, C, H, W], got a {:?} and b {:?}",
        a.dims(),
        b.dims()
    );
    crate::ensure!(
        !(window.euclidean && window.radius == 0),
        AFF,
        "a Euclidean window of radius 0 keeps no offset (it keeps dx^2+dy^2 < r^2); use radius >= 1 or a square window (a {:?})",
        a.dims()
    );
    let g = Geom::new(AFF, bs, h, w, window)?;
    crate::ensure!(
        bs.checked_mul(g.k)
            .and_then(|v| v.checked_mul(h))
            .and_then(|v| v.checked_mul(w))
            .is_some(),
        AFF,
        "output [{bs}, {}, {h}, {w}] has too many elements (a {:?}, radius {})",
        g.k,
        a.dims(),
        window.radius
    );
    Ok(g)
}

fn check_aggregate(weights: &Tensor, values: &Tensor, radius: usize) -> Result<Geom> {
    let [bw, kw, hw, ww] = dims4(AGG, "weights", weights)?;
    let [bv, _d, hv, wv] = dims4(AGG, "values", values)?;
    crate::ensure!(
        bw == bv && hw == hv && ww == wv,
        AGG,
        "weights [B, K, H, W] and values [B, D, H, W] must agree on B, H, W, got weights {:?} and values {:?}",
        weights.dims(),
        values.dims()
    );
    let g = Geom::new(AGG, bw, hw, ww, LocalWindow::square(radius))?;
    crate::ensure!(
        kw == g.k,
        AGG,
        "weights dim 1 must be the window size (2r+1)^2 = {} for radius {radius}, got weights {:?} (values {:?})",
        g.k,
        weights.dims(),
        values.dims()
    );
    Ok(g)
}

// ---------------------------------------------------------------------------------------------
// Public ops
// ---------------------------------------------------------------------------------------------

/// Dot products of every position of `a` with the window around the same position in `b`.
///
/// - `a`, `b`: `f32` `[B, C, H, W]` (same shape).
/// - returns `[B, K, H, W]` with `K = (2r+1)²`, `r = window.radius`:
///   `out[n, (dy+r)(2r+1) + (dx+r), y, x] = Σ_c a[n, c, y, x] · b[n, c, y+dy, x+dx]`.
///
/// Entries whose position `(y+dy, x+dx)` falls outside the image, or whose offset the Euclidean
/// window drops (see [`LocalWindow`]), are `f32::NEG_INFINITY`: a softmax over dim 1 gives them
/// weight 0, and [`crate::ops::topk::topk`] never picks them while a valid entry remains.
/// With PyTorch this is `(a[:, :, None] * F.unfold(b, 2r+1, padding=r).view(B, C, K, H, W))
/// .sum(1)` with those entries set to `-inf`; with CRW's mask it reproduces the local part of
/// CRW's restricted dense affinity.
///
/// Backward: gradients to `a` and `b`; `-inf` entries pass no gradient (whatever the upstream
/// gradient holds there).
///
/// Runs a CPU kernel when both inputs are CPU `f32` tensors (memory: the output plus a scratch
/// of `(2r+1)·W` floats per thread; no copy of `a` or `b` when they are contiguous), and
/// [`local_affinity_portable`] otherwise.
///
/// # Errors
///
/// [`Error::Op`] named `local_affinity` when `a` or `b` is not `f32` or not rank 4, their shapes
/// differ, the window is Euclidean with radius 0, or `(2r+1)²` (or the output size) overflows.
pub fn local_affinity(a: &Tensor, b: &Tensor, window: LocalWindow) -> Result<Tensor> {
    let g = check_affinity(a, b, window)?;
    if !(fast_cpu(a) && fast_cpu(b)) {
        return local_affinity_portable(a, b, window);
    }
    let a = a.contiguous()?;
    let b = b.contiguous()?;
    Ok(a.apply_op2(
        &b,
        Affinity {
            g,
            fill: f32::NEG_INFINITY,
        },
    )?)
}

/// [`local_affinity`] composed of differentiable candle ops, for devices without the CPU kernel.
///
/// Same shapes, values, gradients and errors. It zero-pads `b` by `r` on both spatial sides, and
/// for every offset multiplies `a` by the shifted window of `b` and sums over channels; the
/// invalid entries are then replaced by `-inf` with `where_cond` (so they pass no gradient).
/// Memory: a few `[B, C, H, W]` temporaries per offset plus the output.
pub fn local_affinity_portable(a: &Tensor, b: &Tensor, window: LocalWindow) -> Result<Tensor> {
    let g = check_affinity(a, b, window)?;
    let r = g.r;
    let bp = b.pad_with_zeros(2, r, r)?.pad_with_zeros(3, r, r)?;
    let mut planes = Vec::with_capacity(g.k);
    for dyi in 0..g.side {
        for dxi in 0..g.side {
            let shifted = bp.narrow(2, dyi, g.h)?.narrow(3, dxi, g.w)?;
            planes.push(a.mul(&shifted)?.sum_keepdim(1)?);
        }
    }
    let aff = Tensor::cat(&planes, 1)?;
    let shape = aff.shape().clone();
    let mask = Tensor::from_vec(g.valid_mask(), (1, g.k, g.h, g.w), a.device())?
        .broadcast_as(shape.clone())?;
    let neg_inf = Tensor::new(f32::NEG_INFINITY, a.device())?.broadcast_as(shape)?;
    Ok(mask.where_cond(&aff, &neg_inf)?)
}

/// Mixes the values in the window around every position with per-offset weights.
///
/// - `weights`: `f32` `[B, K, H, W]` with `K = (2r+1)²` (offsets numbered as in
///   [`local_affinity`]), e.g. a softmax over dim 1 of an affinity.
/// - `values`: `f32` `[B, D, H, W]`.
/// - returns `[B, D, H, W]`:
///   `out[n, d, y, x] = Σ_k weights[n, k, y, x] · values[n, d, y+dy, x+dx]`, the sum running over
///   the offsets whose position `(y+dy, x+dx)` is inside the image. Out-of-image terms contribute
///   0 whatever their weight, even `-inf` or `NaN`: they are skipped, never multiplied.
///
/// This is the label-propagation step of CRW-style local attention; with PyTorch it is
/// `(weights[:, None] * F.unfold(values, 2r+1, padding=r).view(B, D, K, H, W)).sum(2)` with the
/// out-of-image weights zeroed.
///
/// Backward: gradients to `weights` (0 at out-of-image entries) and to `values`.
///
/// Runs a CPU kernel when both inputs are CPU `f32` tensors, and [`local_aggregate_portable`]
/// otherwise.
///
/// # Errors
///
/// [`Error::Op`] named `local_aggregate` when an input is not `f32` or not rank 4, `weights` and
/// `values` differ in B, H or W, `weights.dim(1) ≠ (2r+1)²`, or `(2r+1)²` overflows.
pub fn local_aggregate(weights: &Tensor, values: &Tensor, radius: usize) -> Result<Tensor> {
    let g = check_aggregate(weights, values, radius)?;
    if !(fast_cpu(weights) && fast_cpu(values)) {
        return local_aggregate_portable(weights, values, radius);
    }
    let w = weights.contiguous()?;
    let v_cl = values.permute((0, 2, 3, 1))?.contiguous()?;
    let out_cl = w.apply_op2(
        &v_cl,
        Aggregate {
            g,
            transpose: false,
        },
    )?;
    Ok(out_cl.permute((0, 3, 1, 2))?.contiguous()?)
}

/// [`local_aggregate`] composed of differentiable candle ops, for devices without the CPU kernel.
///
/// Same shapes, values, gradients and errors. It replaces the out-of-image weights by 0 with
/// `where_cond` (so `-inf`/`NaN` there are never multiplied and get gradient 0), zero-pads
/// `values` by `r`, and sums the weighted shifted windows over the offsets.
pub fn local_aggregate_portable(
    weights: &Tensor,
    values: &Tensor,
    radius: usize,
) -> Result<Tensor> {
    let g = check_aggregate(weights, values, radius)?;
    let r = g.r;
    let shape = weights.shape().clone();
    let mask = Tensor::from_vec(g.valid_mask(), (1, g.k, g.h, g.w), weights.device())?
        .broadcast_as(shape.clone())?;
    let zeros = Tensor::zeros((), weights.dtype(), weights.device())?.broadcast_as(shape)?;
    let w = mask.where_cond(weights, &zeros)?;
    let vp = values.pad_with_zeros(2, r, r)?.pad_with_zeros(3, r, r)?;
    let mut acc: Option<Tensor> = None;
    for k in 0..g.k {
        let (dyi, dxi) = (k / g.side, k % g.side);
        let shifted = vp.narrow(2, dyi, g.h)?.narrow(3, dxi, g.w)?;
        let term = w.narrow(1, k, 1)?.broadcast_mul(&shifted)?;
        acc = Some(match acc {
            None => term,
            Some(s) => s.add(&term)?,
        });
    }
    match acc {
        Some(t) => Ok(t),
        None => Ok(values.zeros_like()?),
    }
}

// ---------------------------------------------------------------------------------------------
// CPU kernels
// ---------------------------------------------------------------------------------------------

/// `out += s · v`.
#[inline]
fn axpy(out: &mut [f32], s: f32, v: &[f32]) {
    for (o, &x) in out.iter_mut().zip(v) {
        *o += s * x;
    }
}

/// `out[n, k, y, x] = Σ_c p[n, c, y, x] · q[n, c, y+dy, x+dx]` for kept in-image offsets,
/// `fill` elsewhere. `p`, `q`: `[B, C, H, W]` (read in place, no transposed copy). Output
/// `[B, K, H, W]`.
///
/// One task per (batch, window row `dy`): its `2r+1` output planes are contiguous. For every
/// image row `y` the task accumulates the `(2r+1) × W` block of dot products over the channels
/// in a small scratch (row `y` of `p` and row `y+dy` of `q` for one channel at a time, so the
/// inner loop is a contiguous multiply-add along `x`), then writes it out.
fn affinity_kernel(g: &Geom, c: usize, p: &[f32], q: &[f32], fill: f32) -> Vec<f32> {
    let hw = g.h * g.w;
    let mut out = vec![fill; g.b * g.k * hw];
    if out.is_empty() {
        return out;
    }
    let offsets = g.offsets();
    let img = c * hw;
    out.par_chunks_mut(g.side * hw)
        .enumerate()
        .for_each(|(task, chunk)| {
            let n = task / g.side;
            let dyi = task % g.side;
            let (Some(pb), Some(qb)) =
                (p.get(n * img..(n + 1) * img), q.get(n * img..(n + 1) * img))
            else {
                return;
            };
            let here: Vec<(usize, isize, isize)> = offsets
                .iter()
                .filter(|(k, _, _)| k / g.side == dyi)
                .copied()
                .collect();
            let Some(&(_, dy, _)) = here.first() else {
                return;
            };
            let mut acc = vec![0f32; here.len() * g.w];
            for y in 0..g.h {
                let Some(yy) = Geom::shift(y, dy, g.h) else {
                    continue;
                };
                acc.fill(0.0);
                for ch in 0..c {
                    let prow = pb.get(ch * hw + y * g.w..ch * hw + (y + 1) * g.w);
                    let qrow = qb.get(ch * hw + yy * g.w..ch * hw + (yy + 1) * g.w);
                    let (Some(prow), Some(qrow)) = (prow, qrow) else {
                        continue;
                    };
                    for (&(_, _, dx), arow) in here.iter().zip(acc.chunks_mut(g.w)) {
                        let xr = g.x_range(dx);
                        let sx = (xr.start as isize + dx) as usize;
                        let len = xr.len();
                        if let (Some(o), Some(pa), Some(qa)) = (
                            arow.get_mut(xr.clone()),
                            prow.get(xr),
                            qrow.get(sx..sx + len),
                        ) {
                            for ((o, &u), &v) in o.iter_mut().zip(pa).zip(qa) {
                                *o += u * v;
                            }
                        }
                    }
                }
                for (&(k, _, dx), arow) in here.iter().zip(acc.chunks(g.w)) {
                    let xr = g.x_range(dx);
                    let base = (k % g.side) * hw + y * g.w;
                    if let (Some(o), Some(src)) =
                        (chunk.get_mut(base + xr.start..base + xr.end), arow.get(xr))
                    {
                        o.copy_from_slice(src);
                    }
                }
            }
        });
    out
}

/// Aggregation over kept in-image offsets; `wts`: `[B, K, H, W]`, `v`: channels-last
/// `[B, H, W, D]`, output channels-last `[B, H, W, D]`.
///
/// - `transpose = false`: `out[n, y, x] = Σ_k wts[n, k, y, x] · v[n, y+dy, x+dx]`;
/// - `transpose = true`: `out[n, y, x] = Σ_k wts[n, k, y-dy, x-dx] · v[n, y-dy, x-dx]`
///   (the adjoint, used by the backward passes).
fn aggregate_kernel(g: &Geom, d: usize, wts: &[f32], v: &[f32], transpose: bool) -> Vec<f32> {
    let hw = g.h * g.w;
    let mut out = zeroed(g.b * hw * d);
    if out.is_empty() {
        return out;
    }
    let offsets = g.offsets();
    let row = g.w * d;
    let sign: isize = if transpose { -1 } else { 1 };
    out.par_chunks_mut(row)
        .enumerate()
        .for_each(|(task, orow)| {
            let n = task / g.h;
            let y = task % g.h;
            for &(k, dy, dx) in &offsets {
                let (dy, dx) = (sign * dy, sign * dx);
                let Some(yy) = Geom::shift(y, dy, g.h) else {
                    continue;
                };
                // Weights row: at the output position, or at the source position when transposed.
                let wy = if transpose { yy } else { y };
                let wbase = (n * g.k + k) * hw + wy * g.w;
                let (Some(wrow), Some(vrow)) = (
                    wts.get(wbase..wbase + g.w),
                    v.get((n * hw + yy * g.w) * d..(n * hw + (yy + 1) * g.w) * d),
                ) else {
                    continue;
                };
                for x in g.x_range(dx) {
                    let xx = (x as isize + dx) as usize;
                    let wx = if transpose { xx } else { x };
                    if let (Some(&s), Some(o), Some(src)) = (
                        wrow.get(wx),
                        orow.get_mut(x * d..(x + 1) * d),
                        vrow.get(xx * d..(xx + 1) * d),
                    ) {
                        axpy(o, s, src);
                    }
                }
            }
        });
    out
}

fn dims_of(op: &'static str, l: &Layout) -> candle_core::Result<[usize; 4]> {
    match *l.dims() {
        [a, b, c, d] => Ok([a, b, c, d]),
        _ => Err(Error::op(op, format!("kernel expects rank 4, got {:?}", l.dims())).into()),
    }
}

/// Affinity kernel as a custom op on `(p [B,C,H,W], q [B,C,H,W])` → `[B,K,H,W]`.
struct Affinity {
    g: Geom,
    fill: f32,
}

impl candle_core::CustomOp2 for Affinity {
    fn name(&self) -> &'static str {
        "local-affinity"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = cpu_f32(AFF, s1, l1)?;
        let q = cpu_f32(AFF, s2, l2)?;
        let [b, c, h, w] = dims_of(AFF, l1)?;
        if l2.dims() != l1.dims() || (b, h, w) != (self.g.b, self.g.h, self.g.w) {
            return Err(Error::op(
                AFF,
                format!(
                    "kernel inputs {:?} and {:?} do not match",
                    l1.dims(),
                    l2.dims()
                ),
            )
            .into());
        }
        let out = affinity_kernel(&self.g, c, p, q, self.fill);
        Ok((CpuStorage::F32(out), Shape::from((b, self.g.k, h, w))))
    }

    fn bwd(
        &self,
        p: &Tensor,
        q: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // out[k, y] = p[y] · q[y + d_k]:
        //   dp[y] = Σ_k g[k, y] q[y + d_k]        (aggregate)
        //   dq[z] = Σ_k g[k, z - d_k] p[z - d_k]  (transposed aggregate)
        // The aggregation kernel works channels-last; the copies are input-sized.
        let grad = grad.contiguous()?;
        let p_cl = p.permute((0, 2, 3, 1))?.contiguous()?;
        let q_cl = q.permute((0, 2, 3, 1))?.contiguous()?;
        let dp = grad.apply_op2_no_bwd(
            &q_cl,
            &Aggregate {
                g: self.g.clone(),
                transpose: false,
            },
        )?;
        let dq = grad.apply_op2_no_bwd(
            &p_cl,
            &Aggregate {
                g: self.g.clone(),
                transpose: true,
            },
        )?;
        let dp = dp.permute((0, 3, 1, 2))?.contiguous()?;
        let dq = dq.permute((0, 3, 1, 2))?.contiguous()?;
        Ok((Some(dp), Some(dq)))
    }
}

/// Aggregation kernel as a custom op on `(weights [B,K,H,W], values [B,H,W,D])` → `[B,H,W,D]`.
struct Aggregate {
    g: Geom,
    transpose: bool,
}

impl candle_core::CustomOp2 for Aggregate {
    fn name(&self) -> &'static str {
        "local-aggregate"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let wts = cpu_f32(AGG, s1, l1)?;
        let v = cpu_f32(AGG, s2, l2)?;
        let [b, k, h, w] = dims_of(AGG, l1)?;
        let [bv, hv, wv, d] = dims_of(AGG, l2)?;
        if (b, k, h, w) != (self.g.b, self.g.k, self.g.h, self.g.w) || (bv, hv, wv) != (b, h, w) {
            return Err(Error::op(
                AGG,
                format!(
                    "kernel inputs {:?} and {:?} do not match",
                    l1.dims(),
                    l2.dims()
                ),
            )
            .into());
        }
        let out = aggregate_kernel(&self.g, d, wts, v, self.transpose);
        Ok((CpuStorage::F32(out), Shape::from((b, h, w, d))))
    }

    fn bwd(
        &self,
        wts: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // Forward (transpose = false): out[y] = Σ_k w[k, y] v[y + d_k]:
        //   dw[k, y] = g[y] · v[y + d_k]   (affinity of g with v, 0 off-image)
        //   dv[z]    = Σ_k w[k, z - d_k] g[z - d_k]   (transposed aggregate)
        // Forward (transpose = true): out[y] = Σ_k w[k, y - d_k] v[y - d_k]:
        //   dw[k, z] = v[z] · g[z + d_k]   (affinity of v with g)
        //   dv[z]    = Σ_k w[k, z] g[z + d_k]      (aggregate)
        let grad = grad.contiguous()?;
        let aff = Affinity {
            g: self.g.clone(),
            fill: 0.0,
        };
        // The affinity kernel reads [B, C, H, W]: channels-first copies of g and v.
        let g_cf = grad.permute((0, 3, 1, 2))?.contiguous()?;
        let v_cf = v.permute((0, 3, 1, 2))?.contiguous()?;
        let dw = if self.transpose {
            v_cf.apply_op2_no_bwd(&g_cf, &aff)?
        } else {
            g_cf.apply_op2_no_bwd(&v_cf, &aff)?
        };
        let dv = wts.apply_op2_no_bwd(
            &grad,
            &Aggregate {
                g: self.g.clone(),
                transpose: !self.transpose,
            },
        )?;
        Ok((Some(dw), Some(dv)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn euclidean_window_matches_crw_rule() {
        let w = LocalWindow::euclidean(2);
        // dist < 2: the centre, the 4 neighbours, the 4 diagonals (sqrt 2), not (0, 2).
        assert!(w.keeps(0, 0) && w.keeps(1, 1) && w.keeps(-1, 0));
        assert!(!w.keeps(0, 2) && !w.keeps(2, 2) && !w.keeps(-2, 1));
        assert!(LocalWindow::square(2).keeps(2, -2));
        assert!(!LocalWindow::square(2).keeps(3, 0));
    }

    #[test]
    fn window_size_overflow_is_an_error() {
        assert!(window_size(AFF, usize::MAX / 2).is_err());
        assert_eq!(window_size(AFF, 0).ok(), Some(1));
        assert_eq!(window_size(AFF, 12).ok(), Some(625));
    }

    #[test]
    fn x_range_clamps() {
        let g = Geom::new(AFF, 1, 3, 5, LocalWindow::square(7)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(g.x_range(0), 0..5);
        assert_eq!(g.x_range(2), 0..3);
        assert_eq!(g.x_range(-2), 2..5);
        assert!(g.x_range(6).is_empty());
        assert!(g.x_range(-6).is_empty());
    }
}
