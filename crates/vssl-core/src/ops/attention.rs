//! Row-softmax attention over a whole batch, with the mass each row keeps on its own group,
//! computed in blocks of rows so that the `[M, M]` weight matrix never exists at once.
//!
//! For queries `Q` `[Mq, C]`, keys `K` `[Mk, C]` and values `V` `[Mk, Cv]` whose rows are
//! `groups` consecutive groups of `nq = Mq / groups` queries and `nk = Mk / groups` keys (the
//! videos of a batch),
//!
//! ```text
//! P = softmax_row(temp · Q Kᵀ)          out = P V          own_i = Σ_{j in group(i)} P_ij
//! ```
//!
//! This is ContrastCorr's inter-video transformation (`Batch_Contrastive`): every target pixel of
//! the batch against every reference pixel. At batch 16 and 32×32 features `P` is 16384² floats,
//! 1 GiB, and candle's autograd keeps it and several copies of it. With one group and `V` the
//! target's coordinates it is also the step's localisation (a soft-argmax over the 80×80 target
//! positions of every reference pixel: `[B, 1024, 6400]`, 420 MB at batch 16).
//!
//! `Q` and `K` may be transposed views of contiguous `[C, M]` tensors (a feature map
//! `[C, h·w]`.t()), which the CPU kernel reads in place: no copy is made or kept.
//!
//! On the CPU for `f32` [`grouped_attention`] runs row blocks of at most [`BLOCK_FLOATS`] weights:
//! the forward pass keeps only each row's log-sum-exp; the backward pass recomputes each block's
//! weights from it (as FlashAttention does, Dao et al. 2022) and uses
//! `Σ_j P_ij dP_ij = Σ_c dout_ic out_ic + down_i own_i`, which needs only the outputs. Memory is
//! `O(block · M)`; the price is one more `Q Kᵀ` product in the backward pass. Other devices use
//! [`grouped_attention_portable`], the dense computation in candle ops.

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::gemm::{Mat, matmul_into};
use super::softmax::softmax;
use super::{cpu_f32, fast_cpu, zeroed};
use crate::{Error, Result};

const OP: &str = "grouped_attention";

/// Largest block of attention weights one step of the CPU kernel holds, in floats (16 MiB);
/// blocks have at least 16 rows.
pub const BLOCK_FLOATS: usize = 1 << 22;

/// What [`grouped_attention`] returns.
#[derive(Debug, Clone)]
pub struct GroupedAttention {
    /// `P V`, `[Mq, Cv]`.
    pub out: Tensor,
    /// `own_i = Σ_{j in group(i)} P_ij`, `[Mq]`.
    pub own_mass: Tensor,
}

#[derive(Debug, Clone, Copy)]
struct Geom {
    mq: usize,
    mk: usize,
    c: usize,
    cv: usize,
    nq: usize,
    nk: usize,
    temp: f32,
}

impl Geom {
    /// The key columns of query row `i`'s group.
    fn own(&self, i: usize) -> std::ops::Range<usize> {
        let g = i / self.nq;
        g * self.nk..(g + 1) * self.nk
    }
}

fn geom(q: &Tensor, k: &Tensor, v: &Tensor, temp: f64, groups: usize) -> Result<Geom> {
    let (&[mq, c], &[mk, ck], &[mv, cv]) = (q.dims(), k.dims(), v.dims()) else {
        return Err(Error::op(
            OP,
            format!(
                "q must be [Mq, C], k [Mk, C] and v [Mk, Cv], got {:?}, {:?}, {:?}",
                q.dims(),
                k.dims(),
                v.dims()
            ),
        ));
    };
    crate::ensure!(
        mk == mv && c == ck && mq > 0 && mk > 0,
        OP,
        "q {:?}, k {:?} and v {:?}: q and k need the same C, k and v the same rows, none empty",
        q.dims(),
        k.dims(),
        v.dims()
    );
    crate::ensure!(
        groups > 0 && mq.is_multiple_of(groups) && mk.is_multiple_of(groups),
        OP,
        "{mq} query rows and {mk} key rows do not both split into {groups} equal groups"
    );
    crate::ensure!(
        temp.is_finite() && temp > 0.0,
        OP,
        "temp must be a positive number, got {temp}"
    );
    Ok(Geom {
        mq,
        mk,
        c,
        cv,
        nq: mq / groups,
        nk: mk / groups,
        temp: temp as f32,
    })
}

/// Rows per block for `m` columns.
fn block_rows(m: usize) -> usize {
    (BLOCK_FLOATS / m.max(1)).max(16)
}

/// See the module docs: the blocked CPU kernel for `f32` CPU tensors, else
/// [`grouped_attention_portable`].
///
/// # Errors
/// [`Error::Op`] (`grouped_attention`) naming the shapes when `q` is not `[Mq, C]`, `k` not
/// `[Mk, C]`, `v` not `[Mk, Cv]`, `Mq` and `Mk` are not positive multiples of `groups`, or `temp`
/// is not positive.
pub fn grouped_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    temp: f64,
    groups: usize,
) -> Result<GroupedAttention> {
    let g = geom(q, k, v, temp, groups)?;
    grouped_attention_blocked(q, k, v, temp, groups, block_rows(g.mk))
}

/// `t` (`[M, C]` or `[B, M, C]`) as the kernel reads it: contiguous, or with each `[M, C]`
/// matrix a transposed view of a contiguous `[C, M]` one (a feature map), as it is; anything
/// else is copied.
fn matrix_input(t: &Tensor) -> Result<Tensor> {
    let (d, st) = (t.dims(), t.layout().stride());
    let r = d.len();
    let transposed =
        r >= 2 && st[r - 2] == 1 && st[r - 1] == d[r - 2] && d.iter().product::<usize>() > 0;
    Ok(if transposed {
        t.clone()
    } else {
        t.contiguous()?
    })
}

/// [`grouped_attention`] with an explicit number of rows per block (for tests of the blocking).
///
/// # Errors
/// As [`grouped_attention`], and for `block == 0`.
pub fn grouped_attention_blocked(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    temp: f64,
    groups: usize,
    block: usize,
) -> Result<GroupedAttention> {
    let g = geom(q, k, v, temp, groups)?;
    crate::ensure!(block > 0, OP, "block of 0 rows");
    if !(fast_cpu(q) && fast_cpu(k) && fast_cpu(v)) {
        return grouped_attention_portable(q, k, v, temp, groups);
    }
    let op = AttentionOp {
        g,
        batch: 1,
        v_shared: true,
        block: block.min(g.mq),
        lse: Arc::new(OnceLock::new()),
    };
    let flat = matrix_input(q)?.apply_op3(&matrix_input(k)?, &v.contiguous()?, op)?; // [Mq·Cv + Mq]
    Ok(GroupedAttention {
        out: flat.narrow(0, 0, g.mq * g.cv)?.reshape((g.mq, g.cv))?,
        own_mass: flat.narrow(0, g.mq * g.cv, g.mq)?,
    })
}

/// The dense computation in candle ops (any device): `P` is materialised.
///
/// # Errors
/// As [`grouped_attention`].
pub fn grouped_attention_portable(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    temp: f64,
    groups: usize,
) -> Result<GroupedAttention> {
    let g = geom(q, k, v, temp, groups)?;
    let mut logits = q.matmul(&k.t()?)?; // [Mq, Mk]
    if temp != 1.0 {
        logits = logits.affine(temp, 0.0)?;
    }
    let p = softmax(&logits, 1)?; // [Mq, Mk]
    let out = p.matmul(&v.contiguous()?)?; // [Mq, Cv]
    // Mass of every row on each group: [Mq, groups]; keep the own group's column.
    let per_group = p.reshape((g.mq, groups, g.nk))?.sum(2)?;
    let mut own = vec![0f32; g.mq * groups];
    for r in 0..g.mq {
        own[r * groups + r / g.nq] = 1.0;
    }
    let own = Tensor::from_vec(own, (g.mq, groups), p.device())?.to_dtype(p.dtype())?;
    let own_mass = (per_group * own)?.sum(1)?; // [Mq]
    Ok(GroupedAttention { out, own_mass })
}

/// Independent attention for each of `B` problems: `out_b = softmax_row(temp · q_b k_bᵀ) v_b`
/// for `q` `[B, Mq, C]`, `k` `[B, Mk, C]` and `v` `[B, Mk, Cv]` or one `[Mk, Cv]` for all;
/// returns `[B, Mq, Cv]`. The blocked CPU kernel of this module for `f32` CPU tensors (which also
/// reads each `q_b`, `k_b` in place when it is a transposed view of a `[C, M]` map), else
/// [`batched_attention_portable`].
///
/// # Errors
/// [`Error::Op`] (`grouped_attention`) naming the shapes when they disagree or `temp` is not
/// positive.
pub fn batched_attention(q: &Tensor, k: &Tensor, v: &Tensor, temp: f64) -> Result<Tensor> {
    let (b, g, v_shared) = batched_geom(q, k, v, temp)?;
    if !(fast_cpu(q) && fast_cpu(k) && fast_cpu(v)) {
        return batched_attention_portable(q, k, v, temp);
    }
    let op = AttentionOp {
        g,
        batch: b,
        v_shared,
        block: block_rows(g.mk).min(g.mq),
        lse: Arc::new(OnceLock::new()),
    };
    let flat = matrix_input(q)?.apply_op3(&matrix_input(k)?, &v.contiguous()?, op)?;
    Ok(flat
        .narrow(0, 0, b * g.mq * g.cv)?
        .reshape((b, g.mq, g.cv))?)
}

/// [`batched_attention`] in dense candle ops (any device).
///
/// # Errors
/// As [`batched_attention`].
pub fn batched_attention_portable(q: &Tensor, k: &Tensor, v: &Tensor, temp: f64) -> Result<Tensor> {
    batched_geom(q, k, v, temp)?;
    let mut logits = q.matmul(&k.transpose(1, 2)?)?; // [B, Mq, Mk]
    if temp != 1.0 {
        logits = logits.affine(temp, 0.0)?;
    }
    let p = softmax(&logits, 2)?;
    Ok(p.broadcast_matmul(&v.contiguous()?)?)
}

/// `(B, per-problem geometry, whether v is shared)`.
fn batched_geom(q: &Tensor, k: &Tensor, v: &Tensor, temp: f64) -> Result<(usize, Geom, bool)> {
    let (&[b, mq, c], &[bk, mk, ck]) = (q.dims(), k.dims()) else {
        return Err(Error::op(
            OP,
            format!(
                "q must be [B, Mq, C] and k [B, Mk, C], got {:?} and {:?}",
                q.dims(),
                k.dims()
            ),
        ));
    };
    let (v_shared, cv) = match *v.dims() {
        [bv, mv, cv] if bv == b && mv == mk => (false, cv),
        [mv, cv] if mv == mk => (true, cv),
        _ => {
            return Err(Error::op(
                OP,
                format!(
                    "v must be [{b}, {mk}, Cv] or [{mk}, Cv], got {:?}",
                    v.dims()
                ),
            ));
        }
    };
    crate::ensure!(
        b == bk && c == ck && b > 0,
        OP,
        "q {:?} and k {:?} need the same batch (≥ 1) and channels",
        q.dims(),
        k.dims()
    );
    crate::ensure!(
        mq > 0 && mk > 0 && temp.is_finite() && temp > 0.0,
        OP,
        "q {:?} and k {:?} need rows, and temp must be a positive number (got {temp})",
        q.dims(),
        k.dims()
    );
    let g = Geom {
        mq,
        mk,
        c,
        cv,
        nq: mq,
        nk: mk,
        temp: temp as f32,
    };
    Ok((b, g, v_shared))
}

/// The blocked CPU op: `(q, k, v) → [out (B·Mq·Cv); own (B·Mq)]` over `batch` independent
/// problems (`v` shared by all when `v_shared`); keeps each row's log-sum-exp of `temp · q kᵀ`
/// for the backward pass.
struct AttentionOp {
    g: Geom,
    batch: usize,
    v_shared: bool,
    block: usize,
    lse: Arc<OnceLock<Vec<f32>>>,
}

/// A `[rows, cols]` or `[B, rows, cols]` input read in place: `(values from the layout's offset,
/// row stride, column stride, batch stride)`, each matrix contiguous or a transposed view of a
/// contiguous one.
fn strided<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<In<'a>> {
    let CpuStorage::F32(data) = storage else {
        return Err(Error::op(OP, "expected f32 storage").into());
    };
    let (d, st) = (layout.dims(), layout.stride());
    let r = d.len();
    crate::ensure!(r == 2 || r == 3, OP, "internal: rank {r} input");
    let (rows, cols) = (d[r - 2], d[r - 1]);
    let (rs, cs) = (st[r - 2], st[r - 1]);
    let (batch, bs) = if r == 3 { (d[0], st[0]) } else { (1, 0) };
    let start = layout.start_offset();
    let dense = (rs == cols && cs == 1) || (rs == 1 && cs == rows);
    let end = start + (batch - 1) * bs + rows * cols;
    crate::ensure!(
        dense && (batch == 1 || bs >= rows * cols) && end <= data.len(),
        OP,
        "internal: expected dense [{rows}, {cols}] matrices, got dims {d:?} strides {st:?}"
    );
    Ok(In {
        data: &data[start..end],
        rs,
        cs,
        bs,
    })
}

/// An input matrix (or a batch of them) with its strides.
#[derive(Clone, Copy)]
struct In<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
    /// Distance between the batch's matrices (0 for one matrix).
    bs: usize,
}

impl<'a> In<'a> {
    /// Matrix `p` of the batch.
    fn problem(&self, p: usize) -> In<'a> {
        In {
            data: &self.data[p * self.bs..],
            ..*self
        }
    }

    /// Rows `start ..` of the matrix.
    fn rows_from(&self, start: usize) -> Mat<'a> {
        Mat {
            data: &self.data[start * self.rs..],
            rs: self.rs,
            cs: self.cs,
        }
    }

    fn all(&self) -> Mat<'a> {
        self.rows_from(0)
    }

    /// The transpose.
    fn t(&self) -> Mat<'a> {
        Mat {
            data: self.data,
            rs: self.cs,
            cs: self.rs,
        }
    }
}

/// `s` (`rows × Mk`) = `temp · q[start..start + rows] kᵀ`.
fn logits(g: &Geom, q: In, k: In, start: usize, rows: usize, s: &mut [f32]) -> Result<()> {
    matmul_into(
        s,
        g.mk,
        q.rows_from(start),
        k.t(),
        (rows, g.mk, g.c),
        false,
        true,
    )?;
    if g.temp != 1.0 {
        s.par_chunks_mut(1 << 14)
            .for_each(|c| c.iter_mut().for_each(|x| *x *= g.temp));
    }
    Ok(())
}

impl AttentionOp {
    /// Every problem of the batch: `[out (B·Mq·Cv); own (B·Mq)]` and the log-sum-exps.
    fn forward(&self, q: In, k: In, v: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
        let g = self.g;
        let (nb, per_out) = (self.batch, g.mq * g.cv);
        let mut flat = vec![0f32; nb * (per_out + g.mq)];
        let mut lse = vec![0f32; nb * g.mq];
        let mut s = vec![0f32; self.block * g.mk];
        let (out, own) = flat.split_at_mut(nb * per_out);
        for p in 0..nb {
            let vp = if self.v_shared {
                v
            } else {
                &v[p * g.mk * g.cv..(p + 1) * g.mk * g.cv]
            };
            self.forward_one(
                (q.problem(p), k.problem(p), vp),
                &mut s,
                &mut out[p * per_out..(p + 1) * per_out],
                &mut own[p * g.mq..(p + 1) * g.mq],
                &mut lse[p * g.mq..(p + 1) * g.mq],
            )?;
        }
        Ok((flat, lse))
    }

    /// One problem, in blocks of rows through the scratch buffer `s`.
    fn forward_one(
        &self,
        (q, k, v): (In, In, &[f32]),
        s: &mut [f32],
        out: &mut [f32],
        own: &mut [f32],
        lse: &mut [f32],
    ) -> Result<()> {
        let g = self.g;
        let vm = Mat {
            data: v,
            rs: g.cv,
            cs: 1,
        };
        for start in (0..g.mq).step_by(self.block) {
            let rows = self.block.min(g.mq - start);
            let sb = &mut s[..rows * g.mk];
            logits(&g, q, k, start, rows, sb)?;
            sb.par_chunks_mut(g.mk)
                .zip(lse[start..start + rows].par_iter_mut())
                .zip(own[start..start + rows].par_iter_mut())
                .enumerate()
                .for_each(|(r, ((row, l), o))| {
                    let max = row.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x));
                    let mut sum = 0f32;
                    for x in row.iter_mut() {
                        *x = (*x - max).exp();
                        sum += *x;
                    }
                    let inv = 1.0 / sum;
                    row.iter_mut().for_each(|x| *x *= inv);
                    *l = max + sum.ln();
                    *o = row[g.own(start + r)].iter().sum();
                });
            let p = Mat {
                data: sb,
                rs: g.mk,
                cs: 1,
            };
            let dst = &mut out[start * g.cv..(start + rows) * g.cv];
            matmul_into(dst, g.cv, p, vm, (rows, g.cv, g.mk), false, true)?;
        }
        Ok(())
    }
}

impl CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        OP
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (q, k) = (strided(qs, ql)?, strided(ks, kl)?);
        let (flat, lse) = self.forward(q, k, cpu_f32(OP, vs, vl)?)?;
        let _ = self.lse.set(lse);
        let len = flat.len();
        Ok((CpuStorage::F32(flat), Shape::from(len)))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let lse = self
            .lse
            .get()
            .ok_or_else(|| Error::op(OP, "internal: the forward pass kept no log-sum-exp"))?;
        let grad = grad.to_dtype(DType::F32)?.contiguous()?;
        let (want_q, want_k, want_v) = (q.track_op(), k.track_op(), v.track_op());
        let (qs, ql) = q.storage_and_layout();
        let (ks, kl) = k.storage_and_layout();
        let (vs, vl) = v.storage_and_layout();
        let (rs, rl) = res.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let (
            candle_core::Storage::Cpu(qs),
            candle_core::Storage::Cpu(ks),
            candle_core::Storage::Cpu(vs),
            candle_core::Storage::Cpu(rs),
            candle_core::Storage::Cpu(gs),
        ) = (&*qs, &*ks, &*vs, &*rs, &*gs)
        else {
            return Err(Error::op(OP, "expected CPU tensors").into());
        };
        let inputs = Inputs {
            q: strided(qs, ql)?,
            k: strided(ks, kl)?,
            v: cpu_f32(OP, vs, vl)?,
            res: cpu_f32(OP, rs, rl)?,
            grad: cpu_f32(OP, gs, gl)?,
        };
        let (dq, dk, dv) = self.backward(&inputs, lse, (want_q || want_k, want_v))?;
        let dev = q.device();
        let dq = want_q
            .then(|| Tensor::from_vec(dq, q.shape(), dev))
            .transpose()?;
        let dk = want_k
            .then(|| Tensor::from_vec(dk, k.shape(), dev))
            .transpose()?;
        let dv = want_v
            .then(|| Tensor::from_vec(dv, v.shape(), dev))
            .transpose()?;
        Ok((dq, dk, dv))
    }
}

/// What the backward pass reads.
struct Inputs<'a> {
    q: In<'a>,
    k: In<'a>,
    v: &'a [f32],
    res: &'a [f32],
    grad: &'a [f32],
}

type Grads = (Vec<f32>, Vec<f32>, Vec<f32>);

/// Problem `p`'s `n` values of `v`.
fn per(v: &[f32], p: usize, n: usize) -> &[f32] {
    v.get(p * n..(p + 1) * n).unwrap_or(&[])
}

/// One problem's slices of the backward pass's inputs.
struct One<'a> {
    q: In<'a>,
    k: In<'a>,
    v: &'a [f32],
    out: &'a [f32],
    own: &'a [f32],
    dout: &'a [f32],
    down: &'a [f32],
    lse: &'a [f32],
}

impl AttentionOp {
    /// `(dq, dk, dv)`, contiguous in the inputs' shapes; `want.0`: the query and key
    /// gradients, `want.1`: the value gradient (empty vectors when not wanted).
    fn backward(&self, x: &Inputs, lse: &[f32], want: (bool, bool)) -> Result<Grads> {
        let g = self.g;
        let nb = self.batch;
        let alloc = |on: bool, n: usize| if on { zeroed(n) } else { Vec::new() };
        let mut dq = alloc(want.0, nb * g.mq * g.c);
        let mut dk = alloc(want.0, nb * g.mk * g.c);
        let nv = if self.v_shared { 1 } else { nb };
        let mut dv = alloc(want.1, nv * g.mk * g.cv);
        let mut s = vec![0f32; self.block * g.mk];
        let mut t = vec![0f32; self.block * g.mk];
        let (dout_all, down_all) = x.grad.split_at(nb * g.mq * g.cv);
        let (out_all, own_all) = x.res.split_at(nb * g.mq * g.cv);
        for p in 0..nb {
            let vp = if self.v_shared { 0 } else { p };
            let one = One {
                q: x.q.problem(p),
                k: x.k.problem(p),
                v: per(x.v, vp, g.mk * g.cv),
                out: per(out_all, p, g.mq * g.cv),
                own: per(own_all, p, g.mq),
                dout: per(dout_all, p, g.mq * g.cv),
                down: per(down_all, p, g.mq),
                lse: per(lse, p, g.mq),
            };
            let range = |v: &Vec<f32>, q: usize, n: usize| -> std::ops::Range<usize> {
                if v.is_empty() {
                    0..0
                } else {
                    q * n..(q + 1) * n
                }
            };
            let rq = range(&dq, p, g.mq * g.c);
            let rk = range(&dk, p, g.mk * g.c);
            let rv = range(&dv, vp, g.mk * g.cv);
            self.backward_one(
                &one,
                (&mut s, &mut t),
                (&mut dq[rq], &mut dk[rk], &mut dv[rv]),
                want,
            )?;
        }
        Ok((dq, dk, dv))
    }

    /// One problem's gradients, added into `dk` and `dv` and written into `dq`.
    fn backward_one(
        &self,
        x: &One,
        (s, t): (&mut [f32], &mut [f32]),
        (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
        want: (bool, bool),
    ) -> Result<()> {
        let g = self.g;
        // D_i = Σ_j P_ij dP_ij = Σ_c dout_ic out_ic + down_i own_i.
        let d: Vec<f32> = (0..g.mq)
            .into_par_iter()
            .map(|i| {
                let r = i * g.cv..(i + 1) * g.cv;
                let dot: f32 = x.dout[r.clone()]
                    .iter()
                    .zip(&x.out[r])
                    .map(|(a, b)| a * b)
                    .sum();
                dot + x.down[i] * x.own[i]
            })
            .collect();
        let vt = Mat {
            data: x.v,
            rs: 1,
            cs: g.cv,
        };
        for start in (0..g.mq).step_by(self.block) {
            let rows = self.block.min(g.mq - start);
            let (p, ds) = (&mut s[..rows * g.mk], &mut t[..rows * g.mk]);
            // P = exp(temp · q kᵀ − lse), recomputed.
            logits(&g, x.q, x.k, start, rows, p)?;
            p.par_chunks_mut(g.mk)
                .zip(x.lse[start..start + rows].par_iter())
                .for_each(|(row, &l)| row.iter_mut().for_each(|v| *v = (*v - l).exp()));
            let dout_blk = Mat {
                data: &x.dout[start * g.cv..],
                rs: g.cv,
                cs: 1,
            };
            if want.1 {
                // dv += Pᵀ dout_blk
                let pt = Mat {
                    data: p,
                    rs: 1,
                    cs: g.mk,
                };
                matmul_into(dv, g.cv, pt, dout_blk, (g.mk, g.cv, rows), true, true)?;
            }
            if !want.0 {
                continue;
            }
            // dP = dout_blk vᵀ (+ down on the own group); dS = temp · P ⊙ (dP − D).
            matmul_into(ds, g.mk, dout_blk, vt, (rows, g.mk, g.cv), false, true)?;
            ds.par_chunks_mut(g.mk)
                .zip(p.par_chunks(g.mk))
                .enumerate()
                .for_each(|(r, (dsr, pr))| {
                    let i = start + r;
                    for v in &mut dsr[g.own(i)] {
                        *v += x.down[i];
                    }
                    for (v, &pv) in dsr.iter_mut().zip(pr) {
                        *v = g.temp * pv * (*v - d[i]);
                    }
                });
            let dsm = Mat {
                data: ds,
                rs: g.mk,
                cs: 1,
            };
            // dq_blk = dS k; dk += dSᵀ q_blk.
            let dq_blk = &mut dq[start * g.c..(start + rows) * g.c];
            matmul_into(dq_blk, g.c, dsm, x.k.all(), (rows, g.c, g.mk), false, true)?;
            let dst = Mat {
                data: ds,
                rs: 1,
                cs: g.mk,
            };
            matmul_into(
                dk,
                g.c,
                dst,
                x.q.rows_from(start),
                (g.mk, g.c, rows),
                true,
                true,
            )?;
        }
        Ok(())
    }
}
