//! Label propagation by feature affinity: the inner loop of every correspondence evaluation
//! (DAVIS masks, keypoints, part labels carried through a video).
//!
//! A target frame's labels are a weighted sum of context frames' labels, the weights coming from
//! the affinity between the target's features and the context's. Two forms cover the protocols of
//! the field:
//!
//! - [`propagate_global`] (ContrastCorr, UVC): one context frame at a time, every target node
//!   against every context node; optionally NCNet's mutual matching
//!   `A' = A ⊙ A/(max_tar A + ε) ⊙ A/(max_ref A + ε)`; a softmax over the context nodes; the top
//!   `k` weights per target node kept (ties kept too) **without** renormalisation;
//! - [`propagate_joint`] (CRW): the top `k` affinities per target node jointly over all context
//!   frames, some of them restricted to a local window; a softmax over the kept `k`.
//!
//! Features are `[C, N]` (nodes on the last axis, as a `[C, h, w]` map flattened), labels
//! `[K, N]`. On the CPU for `f32` both run fused kernels that never hold more than one
//! `[N_target, N_context]` affinity (global) or a running top-`k` (joint); elsewhere the same
//! computation in candle ops.

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use super::gemm::{Mat, matmul_into};
use super::local::{LocalWindow, local_affinity};
use super::softmax::softmax;
use super::topk::topk;
use super::{fast_cpu, zeroed};
use crate::{Error, Result};

const OP: &str = "propagate";

/// ε of the mutual matching's denominators (ContrastCorr's `MutualMatching`).
pub const MUTUAL_EPS: f32 = 1e-5;

/// Settings of [`propagate_global`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GlobalOptions {
    /// NCNet-style mutual matching of the raw affinity before the softmax.
    pub mutual_matching: bool,
    /// Multiplier of the (matched) affinity inside the softmax (ContrastCorr: 1).
    pub scale: f32,
    /// Weights kept per target node: every weight ≥ the `k`-th largest (ties are kept).
    pub topk: usize,
}

fn dims2(t: &Tensor, name: &str) -> Result<(usize, usize)> {
    match *t.dims() {
        [a, b] => Ok((a, b)),
        ref d => Err(Error::op(OP, format!("{name} must be rank 2, got {d:?}"))),
    }
}

fn check_global(
    ctx: &Tensor,
    labels: &Tensor,
    tgt: &Tensor,
    topk: usize,
) -> Result<(usize, usize, usize, usize)> {
    let (c, nr) = dims2(ctx, "context features")?;
    let (k, nl) = dims2(labels, "context labels")?;
    let (ct, nt) = dims2(tgt, "target features")?;
    crate::ensure!(
        c == ct && nl == nr && nr > 0 && nt > 0,
        OP,
        "context features {:?}, labels {:?} and target features {:?} must be [C, Nr], [K, Nr], [C, Nt]",
        ctx.dims(),
        labels.dims(),
        tgt.dims()
    );
    crate::ensure!(
        (1..=nr).contains(&topk),
        OP,
        "top-k must be 1 to the {nr} context nodes, got {topk}"
    );
    Ok((c, nr, nt, k))
}

/// Labels of the target (`[K, Nt]`) propagated from one context frame: `labels · W` with
/// `W = topk_ref(softmax_ref(scale · A'))`, `A = ctxᵀ tgt` (`[Nr, Nt]`), `A'` its mutual matching
/// when asked (see the module docs). `ctx` `[C, Nr]`, `labels` `[K, Nr]`, `tgt` `[C, Nt]`.
///
/// # Errors
/// [`Error::Op`] (`propagate`) naming the shapes when they disagree or `topk` is 0 or larger
/// than `Nr`.
pub fn propagate_global(
    ctx: &Tensor,
    labels: &Tensor,
    tgt: &Tensor,
    opts: GlobalOptions,
) -> Result<Tensor> {
    check_global(ctx, labels, tgt, opts.topk)?;
    if !(fast_cpu(ctx) && fast_cpu(labels) && fast_cpu(tgt)) {
        return propagate_global_portable(ctx, labels, tgt, opts);
    }
    let (c, nr, nt, k) = check_global(ctx, labels, tgt, opts.topk)?;
    let ctx_v = ctx.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let lab_v = labels.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let tgt_v = tgt.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let out = global_cpu(&ctx_v, &lab_v, &tgt_v, (c, nr, nt, k), opts)?;
    Ok(Tensor::from_vec(out, (k, nt), &Device::Cpu)?)
}

/// [`propagate_global`] in candle ops (any device): the `[Nr, Nt]` affinity is materialised.
///
/// # Errors
/// As [`propagate_global`].
pub fn propagate_global_portable(
    ctx: &Tensor,
    labels: &Tensor,
    tgt: &Tensor,
    opts: GlobalOptions,
) -> Result<Tensor> {
    check_global(ctx, labels, tgt, opts.topk)?;
    let mut a = ctx.t()?.matmul(tgt)?; // [Nr, Nt]
    if opts.mutual_matching {
        let max_tar = (a.max_keepdim(1)? + f64::from(MUTUAL_EPS))?; // [Nr, 1]
        let max_ref = (a.max_keepdim(0)? + f64::from(MUTUAL_EPS))?; // [1, Nt]
        a = (a.broadcast_div(&max_tar)? * a.broadcast_div(&max_ref)?)?.mul(&a)?;
    }
    let p = softmax(&a.affine(f64::from(opts.scale), 0.0)?, 0)?; // [Nr, Nt]
    let (vals, _) = topk(&p, opts.topk, 0)?; // [k, Nt]
    let kth = vals.narrow(0, opts.topk - 1, 1)?; // [1, Nt]
    let keep = p.broadcast_ge(&kth)?.to_dtype(p.dtype())?;
    Ok(labels.matmul(&(p * keep)?)?) // [K, Nt]
}

/// The fused CPU kernel of [`propagate_global`]: `Aᵀ = tgtᵀ ctx` (`[Nt, Nr]`, one buffer), the
/// mutual-matching maxima in one pass, then per target row the matched values, the softmax, the
/// top-`k` threshold and the weighted label sum.
fn global_cpu(
    ctx: &[f32],
    labels: &[f32],
    tgt: &[f32],
    (c, nr, nt, k): (usize, usize, usize, usize),
    opts: GlobalOptions,
) -> Result<Vec<f32>> {
    let mut at = vec![0f32; nt * nr];
    // tgtᵀ: [Nt, C] read from the row-major [C, Nt] target.
    let a = Mat {
        data: tgt,
        rs: 1,
        cs: nt,
    };
    let b = Mat {
        data: ctx,
        rs: nr,
        cs: 1,
    };
    matmul_into(&mut at, nr, a, b, (nt, nr, c), false, true)?;
    // Mutual matching's maxima: over the context for each target row, over the targets for each
    // context column.
    let (max_ref, max_tar) = if opts.mutual_matching {
        let rows = 64;
        let partial: Vec<(Vec<f32>, Vec<f32>)> = at
            .par_chunks(rows * nr)
            .map(|blk| {
                let mut col = vec![f32::NEG_INFINITY; nr];
                let mut row = Vec::with_capacity(blk.len() / nr);
                for r in blk.chunks_exact(nr) {
                    let mut m = f32::NEG_INFINITY;
                    for (cm, &v) in col.iter_mut().zip(r) {
                        m = m.max(v);
                        *cm = cm.max(v);
                    }
                    row.push(m);
                }
                (row, col)
            })
            .collect();
        let mut max_ref = Vec::with_capacity(nt);
        let mut max_tar = vec![f32::NEG_INFINITY; nr];
        for (row, col) in partial {
            max_ref.extend(row);
            for (m, v) in max_tar.iter_mut().zip(col) {
                *m = m.max(v);
            }
        }
        (max_ref, max_tar)
    } else {
        (Vec::new(), Vec::new())
    };
    let inv_tar: Vec<f32> = max_tar.iter().map(|m| 1.0 / (m + MUTUAL_EPS)).collect();
    // Per target row: weights in place, threshold, label sum → [Nt, K].
    let mut out_t = vec![0f32; nt * k];
    at.par_chunks_mut(nr)
        .zip(out_t.par_chunks_mut(k.max(1)))
        .enumerate()
        .for_each(|(j, (row, out))| {
            if opts.mutual_matching {
                let inv_ref = 1.0 / (max_ref[j] + MUTUAL_EPS);
                for (v, &it) in row.iter_mut().zip(&inv_tar) {
                    let a = *v;
                    *v = a * (a * it) * (a * inv_ref);
                }
            }
            let mut m = f32::NEG_INFINITY;
            for v in row.iter_mut() {
                *v *= opts.scale;
                m = m.max(*v);
            }
            let mut sum = 0f32;
            for v in row.iter_mut() {
                *v = (*v - m).exp();
                sum += *v;
            }
            for v in row.iter_mut() {
                *v /= sum;
            }
            let t = kth_largest(row, opts.topk);
            for (r, &p) in row.iter().enumerate() {
                if p >= t {
                    for (o, l) in out.iter_mut().zip(labels[r..].iter().step_by(nr)) {
                        *o += l * p;
                    }
                }
            }
        });
    // [Nt, K] → [K, Nt]
    let mut out = vec![0f32; k * nt];
    for (j, row) in out_t.chunks_exact(k.max(1)).enumerate() {
        for (kk, &v) in row.iter().enumerate() {
            out[kk * nt + j] = v;
        }
    }
    Ok(out)
}

/// The `k`-th largest value of `v` (`1 ≤ k ≤ v.len()`; NaN ignored).
fn kth_largest(v: &[f32], k: usize) -> f32 {
    if k <= 16 {
        let mut best = [f32::NEG_INFINITY; 16];
        for &x in v {
            if x > best[k - 1] {
                let mut i = k - 1;
                while i > 0 && best[i - 1] < x {
                    best[i] = best[i - 1];
                    i -= 1;
                }
                best[i] = x;
            }
        }
        best[k - 1]
    } else {
        let mut c: Vec<f32> = v.iter().copied().filter(|x| !x.is_nan()).collect();
        if c.len() < k {
            return f32::NEG_INFINITY;
        }
        let (_, kth, _) = c.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
        *kth
    }
}

/// One context frame of [`propagate_joint`].
#[derive(Debug, Clone)]
pub struct ContextFrame {
    /// Features `[C, h, w]`.
    pub features: Tensor,
    /// Labels `[K, h, w]`.
    pub labels: Tensor,
    /// `None`: every node of the frame is a candidate; `Some(window)`: only the nodes inside the
    /// window around the target node's position.
    pub window: Option<LocalWindow>,
}

/// Labels of the target (`[K, h, w]`) from the top `k` affinities `tgt · ctx` per target node
/// jointly over all `context` frames (each global or restricted to a local window), weighted by
/// a softmax of `scale ·` the kept affinities. Candidates are ordered by frame, then node: equal
/// affinities keep the earlier one.
///
/// # Errors
/// [`Error::Op`] (`propagate`) naming the shapes when a context frame's features or labels do not
/// match the target's size and channels, there is no context, or `topk` is 0 or larger than the
/// candidates.
pub fn propagate_joint(
    tgt: &Tensor,
    context: &[ContextFrame],
    scale: f32,
    topk: usize,
) -> Result<Tensor> {
    let (c, h, w, k) = check_joint(tgt, context)?;
    let n = h * w;
    let all_cpu = fast_cpu(tgt)
        && context
            .iter()
            .all(|f| fast_cpu(&f.features) && fast_cpu(&f.labels));
    crate::ensure!(topk > 0, OP, "top-k must be at least 1");
    if !all_cpu {
        return propagate_joint_portable(tgt, context, scale, topk);
    }
    let tgt2 = tgt.reshape((c, n))?;
    let mut sel = Selection::new(n, topk);
    for (fi, f) in context.iter().enumerate() {
        match f.window {
            None => {
                let ctx = f.features.reshape((c, n))?.contiguous()?;
                let at = tgt2.t()?.matmul(&ctx)?.flatten_all()?.to_vec1::<f32>()?; // [Nt, Nr]
                sel.offer_rows(&at, n, |_, r| (fi, r));
            }
            Some(win) => {
                let side = 2 * win.radius + 1;
                let s = side * side;
                let v = if win.euclidean && win.radius > 0 {
                    let t = tgt.flatten_all()?.to_vec1::<f32>()?;
                    let x = f.features.flatten_all()?.to_vec1::<f32>()?;
                    window_dots(&t, &x, (c, h, w), win.radius)
                } else {
                    local_affinity(&tgt.unsqueeze(0)?, &f.features.unsqueeze(0)?, win)?
                        .flatten_all()?
                        .to_vec1::<f32>()?
                };
                let r = win.radius as isize;
                sel.offer_strided(&v, s, n, |j, o| {
                    let (y, x) = ((j / w) as isize, (j % w) as isize);
                    let (dy, dx) = ((o / side) as isize - r, (o % side) as isize - r);
                    (fi, ((y + dy) * w as isize + x + dx) as usize)
                });
            }
        }
    }
    let labels: Vec<Vec<f32>> = context
        .iter()
        .map(|f| f.labels.flatten_all()?.to_vec1::<f32>())
        .collect::<candle_core::Result<_>>()?;
    let out = sel.finish(&labels, k, n, scale)?;
    Ok(Tensor::from_vec(out, (k, h, w), &Device::Cpu)?)
}

fn check_joint(tgt: &Tensor, context: &[ContextFrame]) -> Result<(usize, usize, usize, usize)> {
    let [c, h, w] = *tgt.dims() else {
        return Err(Error::op(
            OP,
            format!("target features must be [C, h, w], got {:?}", tgt.dims()),
        ));
    };
    crate::ensure!(!context.is_empty(), OP, "no context frame");
    let k = context[0].labels.dims().first().copied().unwrap_or(0);
    for (i, f) in context.iter().enumerate() {
        crate::ensure!(
            f.features.dims() == tgt.dims() && f.labels.dims() == [k, h, w],
            OP,
            "context frame {i}: features {:?} and labels {:?} must be {:?} and [{k}, {h}, {w}]",
            f.features.dims(),
            f.labels.dims(),
            tgt.dims()
        );
    }
    Ok((c, h, w, k))
}

/// [`propagate_joint`] in candle ops (any device): per context frame the dense affinity (masked
/// outside its window), its top `k`, then the top `k` of those.
///
/// # Errors
/// As [`propagate_joint`].
pub fn propagate_joint_portable(
    tgt: &Tensor,
    context: &[ContextFrame],
    scale: f32,
    topk: usize,
) -> Result<Tensor> {
    let (c, h, w, k) = check_joint(tgt, context)?;
    let n = h * w;
    let dev = tgt.device();
    let t2 = tgt.reshape((c, n))?;
    let (mut vals, mut labs) = (Vec::new(), Vec::new());
    for f in context {
        let mut a = f.features.reshape((c, n))?.t()?.matmul(&t2)?; // [Nr, Nt]
        if let Some(win) = f.window {
            let mut mask = vec![0f32; n * n];
            for r in 0..n {
                for t in 0..n {
                    let (dy, dx) = (
                        (r / w) as isize - (t / w) as isize,
                        (r % w) as isize - (t % w) as isize,
                    );
                    if !win.keeps(dy, dx) {
                        mask[r * n + t] = f32::NEG_INFINITY;
                    }
                }
            }
            a = (a + Tensor::from_vec(mask, (n, n), dev)?)?;
        }
        let kk = topk.min(n);
        let (v, idx) = topk_fn(&a, kk)?; // [kk, Nt]
        // Labels of the selected nodes: [K, kk, Nt].
        let l = f.labels.reshape((k, n))?;
        let picked = l
            .index_select(&idx.flatten_all()?, 1)?
            .reshape((k, kk, n))?;
        vals.push(v);
        labs.push(picked);
    }
    let v = Tensor::cat(&vals, 0)?; // [F·kk, Nt]
    let l = Tensor::cat(&labs, 1)?; // [K, F·kk, Nt]
    crate::ensure!(
        topk <= v.dim(0)?,
        OP,
        "top-k {topk} exceeds the {} candidates",
        v.dim(0)?
    );
    let (best, idx) = topk_fn(&v, topk)?; // [k, Nt]
    let wgt = softmax(&best.affine(f64::from(scale), 0.0)?, 0)?; // [k, Nt]
    let picked = l.gather(
        &idx.unsqueeze(0)?.broadcast_as((k, topk, n))?.contiguous()?,
        1,
    )?;
    let out = picked.broadcast_mul(&wgt.unsqueeze(0)?)?.sum(1)?; // [K, Nt]
    Ok(out.reshape((k, h, w))?)
}

fn topk_fn(a: &Tensor, k: usize) -> Result<(Tensor, Tensor)> {
    let (v, i) = topk(&a.to_dtype(DType::F32)?, k, 0)?;
    Ok((v, i))
}

/// The running top-`k` candidates of every target node across context frames.
struct Selection {
    k: usize,
    /// Per target: up to `k` candidates (affinity, frame, node), best first.
    best: Vec<Vec<(f32, usize, usize)>>,
}

impl Selection {
    fn new(n: usize, k: usize) -> Self {
        Self {
            k,
            best: vec![Vec::with_capacity(k + 1); n],
        }
    }

    /// Offers a candidate; ties keep the earlier (lower frame, then node).
    fn push(list: &mut Vec<(f32, usize, usize)>, k: usize, cand: (f32, usize, usize)) {
        let better = |a: &(f32, usize, usize), b: &(f32, usize, usize)| {
            a.0 > b.0 || (a.0 == b.0 && (a.1, a.2) < (b.1, b.2))
        };
        if list.len() == k && !better(&cand, &list[k - 1]) {
            return;
        }
        let pos = list
            .iter()
            .position(|x| better(&cand, x))
            .unwrap_or(list.len());
        list.insert(pos, cand);
        list.truncate(k);
    }

    /// Row `j` of `at` (`[Nt, len]`) holds target `j`'s affinities; `src(j, r)` names candidate
    /// `r`.
    fn offer_rows(
        &mut self,
        at: &[f32],
        len: usize,
        src: impl Fn(usize, usize) -> (usize, usize) + Sync,
    ) {
        let k = self.k;
        self.best
            .par_iter_mut()
            .zip(at.par_chunks(len))
            .enumerate()
            .for_each(|(j, (list, row))| {
                for (r, &v) in row.iter().enumerate() {
                    if v.is_finite() {
                        let (f, node) = src(j, r);
                        Self::push(list, k, (v, f, node));
                    }
                }
            });
    }

    /// `v` is `[S, Nt]`: offset `o` of target `j` at `v[o·Nt + j]`; `src(j, o)` names it.
    fn offer_strided(
        &mut self,
        v: &[f32],
        s: usize,
        nt: usize,
        src: impl Fn(usize, usize) -> (usize, usize) + Sync,
    ) {
        let k = self.k;
        self.best.par_iter_mut().enumerate().for_each(|(j, list)| {
            for o in 0..s {
                let a = v[o * nt + j];
                if a.is_finite() {
                    let (f, node) = src(j, o);
                    Self::push(list, k, (a, f, node));
                }
            }
        });
    }

    /// The weighted label sums `[K, Nt]`.
    fn finish(self, labels: &[Vec<f32>], k: usize, n: usize, scale: f32) -> Result<Vec<f32>> {
        if let Some(j) = self.best.iter().position(|l| l.len() < self.k) {
            return Err(Error::op(
                OP,
                format!(
                    "target node {j} has {} candidates, fewer than top-k {}",
                    self.best[j].len(),
                    self.k
                ),
            ));
        }
        let mut out_t = zeroed(n * k);
        out_t
            .par_chunks_mut(k.max(1))
            .zip(self.best.par_iter())
            .for_each(|(out, list)| {
                let m = list[0].0 * scale;
                let e: Vec<f32> = list.iter().map(|c| (c.0 * scale - m).exp()).collect();
                let sum: f32 = e.iter().sum();
                for (c, w) in list.iter().zip(&e) {
                    let lab = &labels[c.1];
                    for (kk, o) in out.iter_mut().enumerate() {
                        *o += lab[kk * n + c.2] * (w / sum);
                    }
                }
            });
        let mut out = vec![0f32; k * n];
        for (j, row) in out_t.chunks_exact(k.max(1)).enumerate() {
            for (kk, &v) in row.iter().enumerate() {
                out[kk * n + j] = v;
            }
        }
        Ok(out)
    }
}

/// Target lanes per register block of [`window_dots`].
const LANES: usize = 8;
/// Offsets per register block of [`window_dots`].
const OFFS: usize = 12;

/// The dot products of every target node of `tgt` (`[C, h, w]`, row-major) with the context
/// nodes of `ctx` (same shape) at the offsets a Euclidean window of `radius` keeps
/// (`dx² + dy² < r²`), laid out `[(2r+1)², h·w]` like `local_affinity`; offsets outside the image
/// or the window are `−∞`.
///
/// Register-blocked: 8 target nodes × 12 offsets accumulate over the channels in registers
/// (AVX2 + FMA when the CPU has them), reading channel planes padded with zeros so that no
/// bounds are checked in the inner loop.
fn window_dots(
    tgt: &[f32],
    ctx: &[f32],
    (c, h, w): (usize, usize, usize),
    radius: usize,
) -> Vec<f32> {
    let r = radius;
    let side = 2 * r + 1;
    let n = h * w;
    let wp = w.div_ceil(LANES) * LANES; // padded target row
    let wq = r + wp + r + OFFS + LANES; // padded context row: r zeros left, room on the right
    let mut p = vec![0f32; c * h * wp];
    let mut q = vec![0f32; c * h * wq];
    for ch in 0..c {
        for y in 0..h {
            let src = &tgt[ch * n + y * w..ch * n + (y + 1) * w];
            p[(ch * h + y) * wp..(ch * h + y) * wp + w].copy_from_slice(src);
            let src = &ctx[ch * n + y * w..ch * n + (y + 1) * w];
            q[(ch * h + y) * wq + r..(ch * h + y) * wq + r + w].copy_from_slice(src);
        }
    }
    let mut out = vec![f32::NEG_INFINITY; side * side * n];
    // One task per target row: writes out[s·n + y·w + x] for its own y only.
    let rows: Vec<Vec<(usize, usize, f32)>> = (0..h)
        .into_par_iter()
        .map(|y| {
            let mut vals = Vec::new();
            window_row(&p, &q, (c, h, w, wp, wq), r, y, &mut vals);
            vals
        })
        .collect();
    for vals in rows {
        for (s, j, v) in vals {
            out[s * n + j] = v;
        }
    }
    out
}

/// Row `y` of [`window_dots`]: pushes `(offset index, target node, value)`.
fn window_row(
    p: &[f32],
    q: &[f32],
    dims: (usize, usize, usize, usize, usize),
    r: usize,
    y: usize,
    vals: &mut Vec<(usize, usize, f32)>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            unsafe { window_row_avx2(p, q, dims, r, y, vals) };
            return;
        }
    }
    window_row_generic::<false>(p, q, dims, r, y, vals);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn window_row_avx2(
    p: &[f32],
    q: &[f32],
    dims: (usize, usize, usize, usize, usize),
    r: usize,
    y: usize,
    vals: &mut Vec<(usize, usize, f32)>,
) {
    window_row_generic::<true>(p, q, dims, r, y, vals);
}

#[inline(always)]
fn window_row_generic<const FMA: bool>(
    p: &[f32],
    q: &[f32],
    (c, h, w, wp, wq): (usize, usize, usize, usize, usize),
    r: usize,
    y: usize,
    vals: &mut Vec<(usize, usize, f32)>,
) {
    let side = 2 * r + 1;
    let ri = r as isize;
    for dy in -ri..=ri {
        let yy = y as isize + dy;
        if yy < 0 || yy >= h as isize {
            continue;
        }
        let yy = yy as usize;
        // Euclidean window: dx² + dy² < r², a contiguous run of dx.
        let rem = (ri * ri - dy * dy) as f64;
        if rem <= 0.0 {
            continue;
        }
        let mut m = rem.sqrt().floor() as isize;
        if m * m == rem as isize {
            m -= 1; // strict inequality
        }
        let count = (2 * m + 1) as usize;
        for x0 in (0..w).step_by(LANES) {
            let mut d0 = 0;
            while d0 < count {
                let nd = OFFS.min(count - d0);
                let mut acc = [[0f32; LANES]; OFFS];
                for ch in 0..c {
                    let pr = &p[(ch * h + y) * wp + x0..(ch * h + y) * wp + x0 + LANES];
                    let qrow = &q[(ch * h + yy) * wq..(ch * h + yy + 1) * wq];
                    for (o, a) in acc.iter_mut().enumerate().take(nd) {
                        // context column x + dx, dx = d0 + o − m, stored at + r.
                        let start = (x0 as isize + (d0 + o) as isize - m + ri) as usize;
                        let qr = &qrow[start..start + LANES];
                        for l in 0..LANES {
                            a[l] = if FMA {
                                pr[l].mul_add(qr[l], a[l])
                            } else {
                                pr[l] * qr[l] + a[l]
                            };
                        }
                    }
                }
                for (o, a) in acc.iter().enumerate().take(nd) {
                    let dx = (d0 + o) as isize - m;
                    let s = ((dy + ri) as usize) * side + (dx + ri) as usize;
                    for (l, &v) in a.iter().enumerate() {
                        let x = x0 + l;
                        let xx = x as isize + dx;
                        if x < w && xx >= 0 && xx < w as isize {
                            vals.push((s, y * w + x, v));
                        }
                    }
                }
                d0 += nd;
            }
        }
    }
}
