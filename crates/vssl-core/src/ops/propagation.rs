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

/// Arguments of `f32::exp` below which it returns exactly 0 (the true result is below half the
/// smallest subnormal from ≈ −103.97 on).
const UNDERFLOW: f32 = -104.0;

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
                // Below UNDERFLOW `exp` is exactly 0 (expf underflows at ≈ −103.97), but glibc
                // gets there through a slow path; the same value without it.
                let d = *v - m;
                *v = if d < UNDERFLOW { 0.0 } else { d.exp() };
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
    let t = tgt.flatten_all()?.to_vec1::<f32>()?;
    let mut sel = Selection::new(n, topk);
    // Target features in 8-node tiles, built once for every Euclidean window frame.
    let mut tiles = None;
    for (fi, f) in context.iter().enumerate() {
        let base = fi * n;
        match f.window {
            None => {
                let x = f.features.flatten_all()?.to_vec1::<f32>()?;
                offer_dense(&mut sel, &t, &x, (c, n), base)?;
            }
            Some(win) if win.euclidean && win.radius > 0 => {
                let x = f.features.flatten_all()?.to_vec1::<f32>()?;
                let p = tiles.get_or_insert_with(|| target_tiles(&t, (c, h, w)));
                offer_windows(&mut sel, p, &x, (c, h, w), win.radius, base, true);
            }
            Some(win) => {
                let side = 2 * win.radius + 1;
                let v = local_affinity(&tgt.unsqueeze(0)?, &f.features.unsqueeze(0)?, win)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                let r = win.radius as isize;
                sel.offer_strided(&v, side * side, |j, o| {
                    let (y, x) = ((j / w) as isize, (j % w) as isize);
                    let (dy, dx) = ((o / side) as isize - r, (o % side) as isize - r);
                    base + ((y + dy) * w as isize + x + dx) as usize
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

/// A candidate of [`propagate_joint`]'s selection: its affinity and `frame · N + node`, whose
/// order breaks ties (the earlier frame, then node, wins).
#[derive(Debug, Clone, Copy)]
struct Cand {
    v: f32,
    key: usize,
}

impl Cand {
    /// Ranks before `o`: a larger affinity, or an equal one from an earlier (frame, node).
    #[inline]
    fn better(&self, o: &Cand) -> bool {
        self.v > o.v || (self.v == o.v && self.key < o.key)
    }
}

/// The running top-`k` candidates of every target node across context frames: `k` slots per
/// node (the first `len` filled, best first). The kept set is the top `k` of everything offered
/// under the total order of [`Cand::better`], so it does not depend on the order of the offers.
struct Selection {
    k: usize,
    n: usize,
    cands: Vec<Cand>,
    len: Vec<usize>,
}

/// The lists of a run of consecutive target nodes (one worker's share of a [`Selection`]).
struct Lists<'a> {
    k: usize,
    cands: &'a mut [Cand],
    len: &'a mut [usize],
}

impl Lists<'_> {
    /// What an affinity must reach (`≥`; an equal one then goes by key) to enter node `i`'s
    /// list: its `k`-th value, `−∞` until the list is full. Anything below is rejected without a
    /// look at the list.
    #[inline]
    fn threshold(&self, i: usize) -> f32 {
        if self.len[i] < self.k {
            f32::NEG_INFINITY
        } else {
            self.cands[(i + 1) * self.k - 1].v
        }
    }

    /// Offers a candidate to node `i` (non-finite affinities are skipped); returns the node's new
    /// [`threshold`](Self::threshold).
    #[inline]
    fn push(&mut self, i: usize, cand: Cand) -> f32 {
        let k = self.k;
        let len = self.len[i];
        let list = &mut self.cands[i * k..(i + 1) * k];
        if cand.v.is_finite() && (len < k || cand.better(&list[k - 1])) {
            let mut p = len.min(k - 1);
            while p > 0 && cand.better(&list[p - 1]) {
                list[p] = list[p - 1];
                p -= 1;
            }
            list[p] = cand;
            self.len[i] = (len + 1).min(k);
        }
        self.threshold(i)
    }

    /// Offers `vals[r]` under key `key0 + r` to node `i`, eight at a time against its threshold.
    fn offer_run(&mut self, i: usize, vals: &[f32], key0: usize) {
        let mut t = self.threshold(i);
        for (ci, chunk) in vals.chunks(LANES).enumerate() {
            if chunk.iter().fold(false, |any, &v| any | (v >= t)) {
                for (l, &v) in chunk.iter().enumerate() {
                    if v >= t {
                        t = self.push(
                            i,
                            Cand {
                                v,
                                key: key0 + ci * LANES + l,
                            },
                        );
                    }
                }
            }
        }
    }
}

impl Selection {
    fn new(n: usize, k: usize) -> Self {
        let empty = Cand {
            v: f32::NEG_INFINITY,
            key: usize::MAX,
        };
        Self {
            k,
            n,
            cands: vec![empty; n * k],
            len: vec![0; n],
        }
    }

    /// The lists in runs of `nodes` consecutive targets (the last run may be shorter), in
    /// parallel.
    fn runs(&mut self, nodes: usize) -> impl IndexedParallelIterator<Item = Lists<'_>> {
        let k = self.k;
        self.cands
            .par_chunks_mut(nodes * k)
            .zip(self.len.par_chunks_mut(nodes))
            .map(move |(cands, len)| Lists { k, cands, len })
    }

    /// `v` is `[S, Nt]`: offset `o` of target `j` at `v[o·Nt + j]`; `key(j, o)` is its key.
    fn offer_strided(&mut self, v: &[f32], s: usize, key: impl Fn(usize, usize) -> usize + Sync) {
        let n = self.n;
        self.runs(1).enumerate().for_each(|(j, mut list)| {
            for o in 0..s {
                let a = v[o * n + j];
                if a.is_finite() {
                    list.push(
                        0,
                        Cand {
                            v: a,
                            key: key(j, o),
                        },
                    );
                }
            }
        });
    }

    /// The weighted label sums `[K, Nt]`.
    fn finish(self, labels: &[Vec<f32>], k: usize, n: usize, scale: f32) -> Result<Vec<f32>> {
        let kk = self.k;
        if let Some(j) = self.len.iter().position(|&l| l < kk) {
            return Err(Error::op(
                OP,
                format!(
                    "target node {j} has {} candidates, fewer than top-k {kk}",
                    self.len[j]
                ),
            ));
        }
        let mut out_t = zeroed(n * k);
        out_t
            .par_chunks_mut(k.max(1))
            .zip(self.cands.par_chunks(kk))
            .for_each(|(out, list)| {
                let m = list[0].v * scale;
                let e: Vec<f32> = list.iter().map(|c| (c.v * scale - m).exp()).collect();
                let sum: f32 = e.iter().sum();
                for (c, w) in list.iter().zip(&e) {
                    let (frame, node) = (c.key / n, c.key % n);
                    let lab = &labels[frame];
                    for (kk, o) in out.iter_mut().enumerate() {
                        *o += lab[kk * n + node] * (w / sum);
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

/// Target nodes per tile of [`offer_dense`].
const DENSE_T: usize = 128;
/// Context nodes per tile of [`offer_dense`].
const DENSE_R: usize = 512;

/// Offers every node of a frame without a window: the affinities `tgtᵀ ctx` (both `[C, N]`) by
/// `gemm` in tiles of [`DENSE_T`] targets × [`DENSE_R`] context nodes into one buffer per worker,
/// each tile offered to its targets' lists as it is made. Each affinity is `gemm`'s dot product
/// over the channels, the same as the full `[N, N]` product's.
fn offer_dense(
    sel: &mut Selection,
    tgt: &[f32],
    ctx: &[f32],
    (c, n): (usize, usize),
    base: usize,
) -> Result<()> {
    sel.runs(DENSE_T)
        .enumerate()
        .try_for_each(|(b, mut lists)| -> Result<()> {
            let t0 = b * DENSE_T;
            let m = lists.len.len();
            let mut buf = vec![0f32; m * DENSE_R.min(n)];
            for r0 in (0..n).step_by(DENSE_R) {
                let nb = DENSE_R.min(n - r0);
                // tgtᵀ rows t0.. ([m, C]) times ctx columns r0.. ([C, nb]).
                let a = Mat {
                    data: &tgt[t0..],
                    rs: 1,
                    cs: n,
                };
                let bm = Mat {
                    data: &ctx[r0..],
                    rs: n,
                    cs: 1,
                };
                matmul_into(&mut buf[..m * nb], nb, a, bm, (m, nb, c), false, false)?;
                for (i, row) in buf[..m * nb].chunks_exact(nb).enumerate() {
                    lists.offer_run(i, row, base + r0);
                }
            }
            Ok(())
        })
}

/// Target lanes (consecutive nodes of a row) per register block of [`offer_windows`].
const LANES: usize = 8;
/// Largest number of window offsets per register block of [`offer_windows`].
const OFFS: usize = 12;
/// Channels per pass of [`offer_windows`]' register blocks over one window row.
const CHUNK: usize = 64;

/// Target features `[C, h, w]` in tiles of [`LANES`] nodes of a row, `[h, ⌈w/8⌉, C, 8]`, zeros
/// past the end of the row.
fn target_tiles(t: &[f32], (c, h, w): (usize, usize, usize)) -> Vec<f32> {
    let nb = w.div_ceil(LANES);
    let n = h * w;
    let mut p = vec![0f32; h * nb * c * LANES];
    for y in 0..h {
        for b in 0..nb {
            let x0 = b * LANES;
            let len = LANES.min(w - x0);
            for ch in 0..c {
                let dst = ((y * nb + b) * c + ch) * LANES;
                p[dst..dst + len].copy_from_slice(&t[ch * n + y * w + x0..][..len]);
            }
        }
    }
    p
}

/// Offers the nodes of a context frame `ctx` (`[C, h, w]`) inside a Euclidean window of
/// `radius` (`dx² + dy² < r²`) around each target node; `tiles` are the target's features from
/// [`target_tiles`].
///
/// One worker per target row owns that row's lists. For every window row `dy`, register blocks
/// of 8 consecutive targets × up to 12 consecutive offsets `dx` accumulate over the channels (AVX2 and
/// FMA when the CPU has them) reading context rows padded with zeros, so no bounds are checked
/// in the inner loop; each block's values are compared with the 8 targets' thresholds and only
/// those that reach them are offered. Each dot product is one accumulator starting at 0 with
/// `acc = fma(t[ch], x[ch], acc)` for `ch = 0, 1, …, C−1` in that order (without FMA:
/// `acc = t[ch]·x[ch] + acc`), which is also `gemm`'s order for these sizes: the same values as
/// the dense path's.
///
/// `avx`: use the AVX2 + FMA kernel where the CPU has it (tests turn it off to check the
/// portable one).
fn offer_windows(
    sel: &mut Selection,
    tiles: &[f32],
    ctx: &[f32],
    (c, h, w): (usize, usize, usize),
    radius: usize,
    base: usize,
    avx: bool,
) {
    let r = radius;
    let n = h * w;
    let nb = w.div_ceil(LANES);
    // Context row yy, channel ch at q[(yy·C + ch)·wq + r + x]: r zeros left, ≥ r zeros right.
    let wq = r + nb * LANES + r;
    let mut q = vec![0f32; h * c * wq];
    q.par_chunks_mut(c * wq).enumerate().for_each(|(yy, rows)| {
        for ch in 0..c {
            rows[ch * wq + r..][..w].copy_from_slice(&ctx[ch * n + yy * w..][..w]);
        }
    });
    let dims = (c, h, w, wq);
    let tile_row = nb * c * LANES;
    sel.runs(w).enumerate().for_each(|(y, mut lists)| {
        let p = &tiles[y * tile_row..(y + 1) * tile_row];
        window_row(&mut lists, p, &q, dims, r, y, base, avx);
    });
}

/// Whether the CPU has AVX2 and FMA (the fast kernel of [`offer_windows`]).
fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Row `y` of [`offer_windows`]; `avx`: with the AVX2 + FMA kernel, which needs
/// [`has_avx2_fma`] (otherwise the portable one).
#[allow(clippy::too_many_arguments)]
fn window_row(
    lists: &mut Lists,
    p: &[f32],
    q: &[f32],
    dims: (usize, usize, usize, usize),
    r: usize,
    y: usize,
    base: usize,
    avx: bool,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if avx && has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            unsafe { window_row_avx2(lists, p, q, dims, r, y, base) };
            return;
        }
    }
    let _ = avx;
    window_row_impl::<false>(lists, p, q, dims, r, y, base);
}

/// [`window_row_impl`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn window_row_avx2(
    lists: &mut Lists,
    p: &[f32],
    q: &[f32],
    dims: (usize, usize, usize, usize),
    r: usize,
    y: usize,
    base: usize,
) {
    window_row_impl::<true>(lists, p, q, dims, r, y, base);
}

/// The body of [`window_row`]; `AVX`: the caller runs with AVX2 + FMA enabled (and checked).
#[inline(always)]
fn window_row_impl<const AVX: bool>(
    lists: &mut Lists,
    p: &[f32],
    q: &[f32],
    (c, h, w, wq): (usize, usize, usize, usize),
    r: usize,
    y: usize,
    base: usize,
) {
    let nb = w.div_ceil(LANES);
    // Thresholds of the row's targets; +∞ past its end (never offered).
    let mut thr = vec![f32::INFINITY; nb * LANES];
    for (x, t) in thr.iter_mut().enumerate().take(w) {
        *t = lists.threshold(x);
    }
    let ri = r as isize;
    let mut partial: Vec<[[f32; LANES]; OFFS]> = Vec::new();
    for dy in -ri..=ri {
        let yy = y as isize + dy;
        if yy < 0 || yy >= h as isize {
            continue;
        }
        let yy = yy as usize;
        // Euclidean window: dx² + dy² < r², a contiguous run |dx| ≤ m.
        let rem = (ri * ri - dy * dy) as f64;
        if rem <= 0.0 {
            continue;
        }
        let mut m = rem.sqrt().floor() as isize;
        if m * m == rem as isize {
            m -= 1; // strict inequality
        }
        let count = (2 * m + 1) as usize;
        // Blocks of (nearly) equal size, at most OFFS offsets each.
        let blocks = count.div_ceil(OFFS);
        let size = |bi: usize| count / blocks + usize::from(bi < count % blocks);
        let qrow = &q[yy * c * wq..(yy + 1) * c * wq];
        let key_row = base + yy * w;
        if partial.len() < blocks {
            partial.resize(blocks, [[0.0; LANES]; OFFS]);
        }
        for b in 0..nb {
            let x0 = b * LANES;
            let tile = &p[b * c * LANES..(b + 1) * c * LANES];
            partial[..blocks].fill([[0.0; LANES]; OFFS]);
            // CHUNK channels at a time for all the offset blocks, which share the context
            // lines; the accumulators wait in `partial` between chunks (same order, same values).
            for ch0 in (0..c).step_by(CHUNK) {
                let cc = CHUNK.min(c - ch0);
                let (tile, qc) = (&tile[ch0 * LANES..], &qrow[ch0 * wq..]);
                let mut d0 = 0;
                for (bi, acc) in partial[..blocks].iter_mut().enumerate() {
                    let nd = size(bi);
                    // Context column of lane 0, offset 0 in the padded row.
                    let start = (x0 as isize + d0 as isize - m + ri) as usize;
                    macro_rules! run {
                        ($($nd:literal)*) => {
                            match nd {
                                $($nd => dots::<AVX, $nd>(tile, &qc[start..], wq, cc, acc),)*
                                _ => unreachable!("offset block of {nd}"),
                            }
                        };
                    }
                    run!(1 2 3 4 5 6 7 8 9 10 11 12);
                    d0 += nd;
                }
            }
            let mut d0 = 0;
            for (bi, acc) in partial[..blocks].iter().enumerate() {
                let nd = size(bi);
                let blk = Block {
                    x0,
                    dx0: d0 as isize - m,
                    w,
                    key_row,
                };
                blk.select(lists, &mut thr, &acc[..nd]);
                d0 += nd;
            }
        }
    }
}

/// Where a register block of [`window_row_impl`] sits.
struct Block {
    /// The first target column.
    x0: usize,
    /// The first offset.
    dx0: isize,
    /// The row length.
    w: usize,
    /// The key of the context row's node 0.
    key_row: usize,
}

impl Block {
    /// Offers the block's values that reach their target's threshold, skipping targets past the
    /// row's end and context columns outside the image.
    #[inline(always)]
    fn select(&self, lists: &mut Lists, thr: &mut [f32], acc: &[[f32; LANES]]) {
        for (o, a) in acc.iter().enumerate() {
            let dx = self.dx0 + o as isize;
            for (l, &v) in a.iter().enumerate() {
                let x = self.x0 + l;
                if v >= thr[x] {
                    let xx = x as isize + dx;
                    if x < self.w && xx >= 0 && xx < self.w as isize {
                        let key = self.key_row + xx as usize;
                        thr[x] = lists.push(x, Cand { v, key });
                    }
                }
            }
        }
    }
}

/// `N` offsets × [`LANES`] targets of dot products over `c` channels, continued from `acc`
/// (its first `N` rows): target lane `l`, channel `ch` at `tile[ch·8 + l]`; its context value at
/// offset `o` at `q[ch·wq + o + l]`. One accumulator per dot product, channels in order (see
/// [`offer_windows`]).
#[inline(always)]
fn dots<const AVX: bool, const N: usize>(
    tile: &[f32],
    q: &[f32],
    wq: usize,
    c: usize,
    acc: &mut [[f32; LANES]; OFFS],
) {
    const { assert!(N <= OFFS) };
    if c == 0 {
        return;
    }
    assert!(tile.len() >= c * LANES && q.len() >= (c - 1) * wq + N - 1 + LANES);
    #[cfg(target_arch = "x86_64")]
    if AVX {
        // SAFETY: `AVX` is only set inside `window_row_avx2`, which runs after the CPU was found
        // to support AVX2 and FMA; the slices cover every index read (asserted above).
        unsafe { dots_avx2::<N>(tile, q, wq, c, acc) };
        return;
    }
    for ch in 0..c {
        let pr = &tile[ch * LANES..(ch + 1) * LANES];
        let qr = &q[ch * wq..ch * wq + N - 1 + LANES];
        for (o, a) in acc.iter_mut().take(N).enumerate() {
            for l in 0..LANES {
                a[l] += pr[l] * qr[o + l];
            }
        }
    }
}

/// [`dots`] in AVX2 + FMA registers.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `tile` must hold `c·8` values and `q` at least
/// `(c−1)·wq + N − 1 + 8`; `N ≤ OFFS`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dots_avx2<const N: usize>(
    tile: &[f32],
    q: &[f32],
    wq: usize,
    c: usize,
    out: &mut [[f32; LANES]; OFFS],
) {
    use std::arch::x86_64::{
        _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };
    let mut acc = [_mm256_setzero_ps(); N];
    for (a, o) in acc.iter_mut().zip(out.iter()) {
        // SAFETY: `o` holds 8 floats; unaligned load.
        *a = unsafe { _mm256_loadu_ps(o.as_ptr()) };
    }
    let (tp, qp) = (tile.as_ptr(), q.as_ptr());
    for ch in 0..c {
        // SAFETY: reads tile[ch·8 .. ch·8 + 8] and q[ch·wq + o .. ch·wq + o + 8] for o < N, all
        // inside the slices (the caller's contract); unaligned loads.
        unsafe {
            let pv = _mm256_loadu_ps(tp.add(ch * LANES));
            let qr = qp.add(ch * wq);
            for (o, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(pv, _mm256_loadu_ps(qr.add(o)), *a);
            }
        }
    }
    for (o, a) in out.iter_mut().zip(&acc) {
        // SAFETY: `o` holds 8 floats; unaligned store.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr(), *a) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX2 + FMA and the portable window kernels select the same candidates (features on a
    /// coarse grid: every dot product exact, fused or not; ties everywhere), with more channels
    /// than one [`CHUNK`] and windows clipped by the borders.
    #[test]
    fn window_kernels_agree() {
        let (c, h, w, r, k) = (CHUNK + 6, 7, 13, 3, 5);
        let n = h * w;
        let t: Vec<f32> = (0..c * n).map(|i| ((i * 7) % 5) as f32 * 0.5).collect();
        let x: Vec<f32> = (0..c * n).map(|i| ((i * 11) % 3) as f32 * 0.25).collect();
        let tiles = target_tiles(&t, (c, h, w));
        let run = |avx: bool| {
            let mut sel = Selection::new(n, k);
            offer_windows(&mut sel, &tiles, &x, (c, h, w), r, n, avx);
            let kept: Vec<(f32, usize)> = sel.cands.iter().map(|c| (c.v, c.key)).collect();
            (kept, sel.len)
        };
        let portable = run(false);
        // Brute force: every candidate of the window, offered one by one.
        let mut sel = Selection::new(n, k);
        for (j, mut list) in sel.runs(1).collect::<Vec<_>>().into_iter().enumerate() {
            let (y, xx) = ((j / w) as isize, (j % w) as isize);
            for node in 0..n {
                let (dy, dx) = ((node / w) as isize - y, (node % w) as isize - xx);
                if dy * dy + dx * dx < (r * r) as isize {
                    let v = (0..c).map(|ch| t[ch * n + j] * x[ch * n + node]).sum();
                    list.push(0, Cand { v, key: n + node });
                }
            }
        }
        let brute: Vec<(f32, usize)> = sel.cands.iter().map(|c| (c.v, c.key)).collect();
        assert_eq!(portable.0, brute);
        assert_eq!(portable, run(true));
    }
}
