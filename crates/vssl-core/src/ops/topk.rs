//! Top-k along any axis: the `k` largest values of every line of a tensor along one dimension,
//! with their indices, sorted largest first.
//!
//! Semantics follow PyTorch's `torch.topk(x, k, dim, largest=True, sorted=True)` (see the
//! PyTorch documentation of `torch.topk`):
//!
//! - values come largest first;
//! - `NaN` counts as larger than every number, `+inf` included, as in PyTorch;
//! - ties (equal values, `-0.0` and `0.0` included) are broken by index: the lower index comes
//!   first. PyTorch leaves the order of ties unspecified; this op makes it deterministic.
//!
//! The fast CPU path never sorts a whole line: it scans the line once, keeping at most `2k + 16`
//! candidates and a running threshold (the current `k`-th best), compacts the candidates with a
//! partial selection (`select_nth_unstable_by`) when the buffer fills, and sorts only the final
//! `k`. Lines are processed in parallel with rayon. A line along a non-last axis is read with its
//! stride: a task streams through the rows of a block of up to 256 neighbouring lines (contiguous
//! runs in memory), one selector per line; the input is never transposed or copied. Indices come
//! from a kernel without gradient; the values are `x.gather(indices, dim)`, so the gradient flows
//! to `x` through candle's gather backward (a scatter-add of the upstream gradient at the
//! selected indices).

use candle_core::{CpuStorage, DType, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::cmp::Ordering;

use crate::ops::{cpu_f32, ensure_f32, fast_cpu};
use crate::{Error, Result};

const OP: &str = "topk";

/// The `k` largest values of `x` along `dim`, largest first, with their indices.
///
/// - `x`: an `f32` tensor of any rank ≥ 1, shape `[d0, .., d(dim), .., dn]`.
/// - returns `(values, indices)`, both of shape `[d0, .., k, .., dn]` (the axis `dim` shrunk to
///   `k`): `values` is `f32`, `indices` is `u32` and holds positions along `dim`.
///
/// Matches `torch.topk(x, k, dim, largest=True, sorted=True)`: values sorted descending, `NaN`
/// treated as the largest value (as PyTorch does), ties broken by the lower index first (PyTorch
/// leaves that order unspecified; here it is deterministic). `k = 0` is allowed, like PyTorch,
/// and gives empty tensors.
///
/// Gradient: `values` is differentiable with respect to `x` (the upstream gradient is
/// scatter-added at the selected indices; every other element gets 0). `indices` has no
/// gradient.
///
/// On a CPU `f32` tensor this runs a partial-selection kernel (no full sort, parallel over
/// lines, no transposed copy of `x` for a non-last `dim`); on other devices it runs
/// [`topk_portable`].
///
/// # Errors
///
/// [`Error::Op`] named `topk` when `x` is not `f32`, is a scalar (rank 0), `dim ≥ rank`, or
/// `k` exceeds the size of axis `dim`; the message gives the shape.
pub fn topk(x: &Tensor, k: usize, dim: usize) -> Result<(Tensor, Tensor)> {
    check(x, k, dim)?;
    if k == 0 {
        return empty(x, dim);
    }
    if !fast_cpu(x) {
        return topk_portable(x, k, dim);
    }
    let x = x.contiguous()?;
    let indices = x.apply_op1_no_bwd(&TopkIndices { k, dim })?;
    let values = x.gather(&indices, dim)?;
    Ok((values, indices))
}

/// [`topk`] composed of candle ops, for devices without the CPU kernel (CUDA, Metal).
///
/// Same shapes, arguments, errors and gradient as [`topk`]. It moves `dim` last, runs candle's
/// `arg_sort_last_dim` (a full sort of every line: slower, and only used off the CPU), keeps the
/// first `k` indices and gathers the values from `x`. Ties and `NaN` follow candle's sort on that
/// device, which does not promise the lower-index-first order of [`topk`]; candle's CUDA and
/// Metal sorts also bound the length of the sorted axis (see candle's `arg_sort_last_dim`).
pub fn topk_portable(x: &Tensor, k: usize, dim: usize) -> Result<(Tensor, Tensor)> {
    check(x, k, dim)?;
    if k == 0 {
        return empty(x, dim);
    }
    let last = x.rank() - 1;
    let moved = if dim == last {
        x.contiguous()?
    } else {
        x.transpose(dim, last)?.contiguous()?
    };
    let order = moved.arg_sort_last_dim(false)?.narrow(last, 0, k)?;
    let indices = if dim == last {
        order.contiguous()?
    } else {
        order.transpose(dim, last)?.contiguous()?
    };
    let values = x.contiguous()?.gather(&indices, dim)?;
    Ok((values, indices))
}

fn check(x: &Tensor, k: usize, dim: usize) -> Result<()> {
    ensure_f32(OP, "x", x)?;
    crate::ensure!(
        x.rank() >= 1,
        OP,
        "x must have rank >= 1, got a scalar (shape {:?})",
        x.dims()
    );
    crate::ensure!(
        dim < x.rank(),
        OP,
        "dim {dim} is out of range for x of rank {} (shape {:?})",
        x.rank(),
        x.dims()
    );
    let n = x.dims().get(dim).copied().unwrap_or(0);
    crate::ensure!(
        k <= n,
        OP,
        "k = {k} is larger than the size {n} of dim {dim} (x shape {:?})",
        x.dims()
    );
    crate::ensure!(
        n <= u32::MAX as usize,
        OP,
        "dim {dim} has {n} elements, more than u32 indices can address (x shape {:?})",
        x.dims()
    );
    Ok(())
}

/// Empty values and indices for `k = 0`.
fn empty(x: &Tensor, dim: usize) -> Result<(Tensor, Tensor)> {
    let mut dims = x.dims().to_vec();
    if let Some(d) = dims.get_mut(dim) {
        *d = 0;
    }
    let values = Tensor::zeros(dims.as_slice(), DType::F32, x.device())?;
    let indices = Tensor::zeros(dims.as_slice(), DType::U32, x.device())?;
    Ok((values, indices))
}

/// Ranking order: `Less` when `a` comes before `b` (larger value, NaN largest; ties by index).
#[inline]
fn rank_cmp(a: &(f32, u32), b: &(f32, u32)) -> Ordering {
    let by_value = match (a.0.is_nan(), b.0.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        // No NaN: partial_cmp is total here; reversed for descending order.
        (false, false) => b.0.partial_cmp(&a.0).unwrap_or(Ordering::Equal),
    };
    by_value.then(a.1.cmp(&b.1))
}

/// True when a value `v` seen after the threshold element strictly beats it.
#[inline]
fn beats(v: f32, threshold: f32) -> bool {
    if threshold.is_nan() {
        false
    } else {
        v.is_nan() || v > threshold
    }
}

/// Streaming top-k of one line: fed `(value, index)` in increasing index order, it keeps at most
/// `2k + 16` candidates and a threshold (the `k`-th best after the last compaction) that later
/// elements must strictly beat, which with the index order gives lower-index-first ties.
struct Selector {
    k: usize,
    cap: usize,
    buf: Vec<(f32, u32)>,
    threshold: Option<f32>,
}

impl Selector {
    fn new(k: usize) -> Self {
        Self {
            k,
            cap: 2 * k + 16,
            buf: Vec::new(),
            threshold: None,
        }
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.threshold = None;
    }

    #[inline]
    fn push(&mut self, v: f32, j: u32) {
        if let Some(t) = self.threshold
            && !beats(v, t)
        {
            return;
        }
        self.buf.push((v, j));
        if self.buf.len() >= self.cap {
            self.buf.select_nth_unstable_by(self.k - 1, rank_cmp);
            self.buf.truncate(self.k);
            self.threshold = self.buf.last().map(|p| p.0);
        }
    }

    /// Writes the indices of the best `k` (best first) into `out` (`out.len() == k`).
    fn finish(&mut self, out: &mut [u32]) {
        if self.buf.len() > self.k {
            self.buf.select_nth_unstable_by(self.k - 1, rank_cmp);
            self.buf.truncate(self.k);
        }
        self.buf.sort_unstable_by(rank_cmp);
        for (o, p) in out.iter_mut().zip(self.buf.iter()) {
            *o = p.1;
        }
    }
}

/// Writes the indices of the `k` best elements of `line` (ranked by [`rank_cmp`]) into `out`,
/// best first. `1 <= k <= line.len()`, `out.len() == k`.
fn select_line(line: &[f32], sel: &mut Selector, out: &mut [u32]) {
    sel.reset();
    for (j, &v) in line.iter().enumerate() {
        sel.push(v, j as u32);
    }
    sel.finish(out);
}

/// Kernel computing the top-k indices (no gradient).
struct TopkIndices {
    k: usize,
    dim: usize,
}

/// Lines along a non-last axis are processed this many at a time: a task streams through the
/// `n` rows of a `[n, BLOCK]` block of the `[outer, n, inner]` view (contiguous runs of `BLOCK`
/// values), feeding one [`Selector`] per line.
const BLOCK: usize = 256;

impl candle_core::CustomOp1 for TopkIndices {
    fn name(&self) -> &'static str {
        "topk-indices"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = cpu_f32(OP, storage, layout)?;
        let dims = layout.dims();
        let k = self.k;
        let dim = self.dim;
        let n = dims
            .get(dim)
            .copied()
            .ok_or_else(|| Error::op(OP, format!("dim {dim} out of range for shape {dims:?}")))?;
        let outer: usize = dims.iter().take(dim).product();
        let inner: usize = dims.iter().skip(dim + 1).product();
        let mut out_dims = dims.to_vec();
        if let Some(d) = out_dims.get_mut(dim) {
            *d = k;
        }
        let mut out = vec![0u32; outer * k * inner];
        if k == 0 || out.is_empty() {
            return Ok((CpuStorage::U32(out), Shape::from(out_dims)));
        }
        if inner == 1 {
            // Contiguous lines: one line per output chunk of k.
            out.par_chunks_mut(k).zip(x.par_chunks(n)).for_each_init(
                || Selector::new(k),
                |sel, (o, line)| select_line(line, sel, o),
            );
        } else {
            // Strided lines, never transposed: each task streams the rows of one block.
            let blocks = inner.div_ceil(BLOCK);
            let results: Vec<(usize, usize, Vec<u32>)> = (0..outer * blocks)
                .into_par_iter()
                .map(|task| {
                    let o = task / blocks;
                    let i0 = (task % blocks) * BLOCK;
                    let t = BLOCK.min(inner - i0);
                    let mut sels: Vec<Selector> = (0..t).map(|_| Selector::new(k)).collect();
                    let base = o * n * inner + i0;
                    for j in 0..n {
                        let start = base + j * inner;
                        if let Some(row) = x.get(start..start + t) {
                            for (sel, &v) in sels.iter_mut().zip(row) {
                                sel.push(v, j as u32);
                            }
                        }
                    }
                    let mut idx = vec![0u32; t * k];
                    for (sel, chunk) in sels.iter_mut().zip(idx.chunks_mut(k)) {
                        sel.finish(chunk);
                    }
                    (o, i0, idx)
                })
                .collect();
            for (o, i0, idx) in results {
                for (ti, chunk) in idx.chunks(k).enumerate() {
                    for (j, &v) in chunk.iter().enumerate() {
                        if let Some(slot) = out.get_mut(o * k * inner + j * inner + i0 + ti) {
                            *slot = v;
                        }
                    }
                }
            }
        }
        Ok((CpuStorage::U32(out), Shape::from(out_dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_line_orders_ties_and_nan() {
        let line = [1.0, f32::NAN, 3.0, 3.0, f32::INFINITY, -1.0, 3.0];
        let mut out = [0u32; 5];
        select_line(&line, &mut Selector::new(5), &mut out);
        assert_eq!(out, [1, 4, 2, 3, 6]);
    }

    #[test]
    fn select_line_compacts_long_lines() {
        // Long enough to trigger several compactions; values descend then repeat.
        let line: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32).collect();
        let mut out = [0u32; 7];
        select_line(&line, &mut Selector::new(7), &mut out);
        let mut want: Vec<(f32, u32)> = line
            .iter()
            .enumerate()
            .map(|(i, &v)| (v, i as u32))
            .collect();
        want.sort_by(rank_cmp);
        let want: Vec<u32> = want.iter().take(7).map(|p| p.1).collect();
        assert_eq!(out.to_vec(), want);
    }
}
