//! Row-softmax attention over a whole batch, with the mass each row keeps on its own group,
//! computed in blocks of rows so that the `[M, M]` weight matrix never exists at once.
//!
//! For queries `Q` `[M, C]`, keys `K` `[M, C]` and values `V` `[M, Cv]` whose `M` rows are
//! `groups` consecutive groups of `n = M / groups` (the videos of a batch),
//!
//! ```text
//! P = softmax_row(temp · Q Kᵀ)          out = P V          own_i = Σ_{j in group(i)} P_ij
//! ```
//!
//! This is ContrastCorr's inter-video transformation (`Batch_Contrastive`): every target pixel of
//! the batch against every reference pixel. At batch 16 and 32×32 features `P` is 16384² floats,
//! 1 GiB, and candle's autograd keeps it and several copies of it.
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
use super::{cpu_f32, fast_cpu, storage_f32, zeroed};
use crate::{Error, Result};

const OP: &str = "grouped_attention";

/// Largest block of attention weights one step of the CPU kernel holds, in floats (16 MiB);
/// blocks have at least 16 rows.
pub const BLOCK_FLOATS: usize = 1 << 22;

/// What [`grouped_attention`] returns.
#[derive(Debug, Clone)]
pub struct GroupedAttention {
    /// `P V`, `[M, Cv]`.
    pub out: Tensor,
    /// `own_i = Σ_{j in group(i)} P_ij`, `[M]`.
    pub own_mass: Tensor,
}

#[derive(Debug, Clone, Copy)]
struct Geom {
    m: usize,
    c: usize,
    cv: usize,
    n: usize,
    temp: f32,
}

fn geom(q: &Tensor, k: &Tensor, v: &Tensor, temp: f64, groups: usize) -> Result<Geom> {
    let (&[m, c], &[mk, ck], &[mv, cv]) = (q.dims(), k.dims(), v.dims()) else {
        return Err(Error::op(
            OP,
            format!(
                "q, k must be [M, C] and v [M, Cv], got {:?}, {:?}, {:?}",
                q.dims(),
                k.dims(),
                v.dims()
            ),
        ));
    };
    crate::ensure!(
        m == mk && m == mv && c == ck && m > 0,
        OP,
        "q {:?}, k {:?} and v {:?} must have the same M ≥ 1 rows, q and k the same C",
        q.dims(),
        k.dims(),
        v.dims()
    );
    crate::ensure!(
        groups > 0 && m.is_multiple_of(groups),
        OP,
        "{m} rows do not split into {groups} equal groups"
    );
    crate::ensure!(
        temp.is_finite() && temp > 0.0,
        OP,
        "temp must be a positive number, got {temp}"
    );
    Ok(Geom {
        m,
        c,
        cv,
        n: m / groups,
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
/// [`Error::Op`] (`grouped_attention`) naming the shapes when `q`, `k` are not `[M, C]`, `v` not
/// `[M, Cv]`, `M` is not a positive multiple of `groups`, or `temp` is not positive.
pub fn grouped_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    temp: f64,
    groups: usize,
) -> Result<GroupedAttention> {
    let g = geom(q, k, v, temp, groups)?;
    grouped_attention_blocked(q, k, v, temp, groups, block_rows(g.m))
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
        block: block.min(g.m),
        lse: Arc::new(OnceLock::new()),
    };
    let flat = q
        .contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)?; // [M·Cv + M]
    Ok(GroupedAttention {
        out: flat.narrow(0, 0, g.m * g.cv)?.reshape((g.m, g.cv))?,
        own_mass: flat.narrow(0, g.m * g.cv, g.m)?,
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
    let mut logits = q.matmul(&k.t()?)?; // [M, M]
    if temp != 1.0 {
        logits = logits.affine(temp, 0.0)?;
    }
    let p = softmax(&logits, 1)?; // [M, M]
    let out = p.matmul(v)?; // [M, Cv]
    // Mass of every row on each group: [M, groups]; keep the own group's column.
    let per_group = p.reshape((g.m, groups, g.n))?.sum(2)?;
    let mut own = vec![0f32; g.m * groups];
    for r in 0..g.m {
        own[r * groups + r / g.n] = 1.0;
    }
    let own = Tensor::from_vec(own, (g.m, groups), p.device())?.to_dtype(p.dtype())?;
    let own_mass = (per_group * own)?.sum(1)?; // [M]
    Ok(GroupedAttention { out, own_mass })
}

/// The blocked CPU op: `(q, k, v) → [out (M·Cv); own (M)]`; keeps each row's log-sum-exp of
/// `temp · q kᵀ` for the backward pass.
struct AttentionOp {
    g: Geom,
    block: usize,
    lse: Arc<OnceLock<Vec<f32>>>,
}

/// `s` (`rows × M`) = `temp · q_blk kᵀ`.
fn logits(g: &Geom, q: &[f32], k: &[f32], start: usize, rows: usize, s: &mut [f32]) -> Result<()> {
    let a = Mat {
        data: &q[start * g.c..],
        rs: g.c,
        cs: 1,
    };
    // kᵀ: [C, M] read from the row-major [M, C] keys.
    let b = Mat {
        data: k,
        rs: 1,
        cs: g.c,
    };
    matmul_into(s, g.m, a, b, (rows, g.m, g.c), false, true)?;
    if g.temp != 1.0 {
        s.par_chunks_mut(1 << 14)
            .for_each(|c| c.iter_mut().for_each(|x| *x *= g.temp));
    }
    Ok(())
}

impl AttentionOp {
    fn forward(&self, q: &[f32], k: &[f32], v: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
        let g = self.g;
        let mut flat = vec![0f32; g.m * g.cv + g.m];
        let mut lse = vec![0f32; g.m];
        let mut s = vec![0f32; self.block * g.m];
        let (out, own) = flat.split_at_mut(g.m * g.cv);
        for start in (0..g.m).step_by(self.block) {
            let rows = self.block.min(g.m - start);
            let sb = &mut s[..rows * g.m];
            logits(&g, q, k, start, rows, sb)?;
            sb.par_chunks_mut(g.m)
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
                    let grp = (start + r) / g.n;
                    *o = row[grp * g.n..(grp + 1) * g.n].iter().sum();
                });
            let p = Mat {
                data: sb,
                rs: g.m,
                cs: 1,
            };
            let vm = Mat {
                data: v,
                rs: g.cv,
                cs: 1,
            };
            matmul_into(
                &mut out[start * g.cv..(start + rows) * g.cv],
                g.cv,
                p,
                vm,
                (rows, g.cv, g.m),
                false,
                true,
            )?;
        }
        Ok((flat, lse))
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
        let (q, k, v) = (
            cpu_f32(OP, qs, ql)?,
            cpu_f32(OP, ks, kl)?,
            cpu_f32(OP, vs, vl)?,
        );
        let (flat, lse) = self.forward(q, k, v)?;
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
        let g = self.g;
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
        let (dq, dk, dv) = self.backward(
            storage_f32(OP, &qs, ql)?,
            storage_f32(OP, &ks, kl)?,
            storage_f32(OP, &vs, vl)?,
            storage_f32(OP, &rs, rl)?,
            storage_f32(OP, &gs, gl)?,
            lse,
            (want_q || want_k, want_v),
        )?;
        let dev = q.device();
        let dq = want_q
            .then(|| Tensor::from_vec(dq, (g.m, g.c), dev))
            .transpose()?;
        let dk = want_k
            .then(|| Tensor::from_vec(dk, (g.m, g.c), dev))
            .transpose()?;
        let dv = want_v
            .then(|| Tensor::from_vec(dv, (g.m, g.cv), dev))
            .transpose()?;
        Ok((dq, dk, dv))
    }
}

type Grads = (Vec<f32>, Vec<f32>, Vec<f32>);

impl AttentionOp {
    /// `(dq, dk, dv)`; `want.0`: the query and key gradients, `want.1`: the value gradient
    /// (empty vectors when not wanted).
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        res: &[f32],
        grad: &[f32],
        lse: &[f32],
        want: (bool, bool),
    ) -> Result<Grads> {
        let g = self.g;
        let (dout, down) = grad.split_at(g.m * g.cv);
        let (out, own) = res.split_at(g.m * g.cv);
        // D_i = Σ_j P_ij dP_ij = Σ_c dout_ic out_ic + down_i own_i.
        let d: Vec<f32> = (0..g.m)
            .into_par_iter()
            .map(|i| {
                let r = i * g.cv..(i + 1) * g.cv;
                let dot: f32 = dout[r.clone()]
                    .iter()
                    .zip(&out[r])
                    .map(|(a, b)| a * b)
                    .sum();
                dot + down[i] * own[i]
            })
            .collect();
        let mut dq = if want.0 {
            zeroed(g.m * g.c)
        } else {
            Vec::new()
        };
        let mut dk = if want.0 {
            zeroed(g.m * g.c)
        } else {
            Vec::new()
        };
        let mut dv = if want.1 {
            zeroed(g.m * g.cv)
        } else {
            Vec::new()
        };
        let mut s = vec![0f32; self.block * g.m];
        let mut t = vec![0f32; self.block * g.m];
        for start in (0..g.m).step_by(self.block) {
            let rows = self.block.min(g.m - start);
            let (p, ds) = (&mut s[..rows * g.m], &mut t[..rows * g.m]);
            // P = exp(temp · q kᵀ − lse), recomputed.
            logits(&g, q, k, start, rows, p)?;
            p.par_chunks_mut(g.m)
                .zip(lse[start..start + rows].par_iter())
                .for_each(|(row, &l)| row.iter_mut().for_each(|x| *x = (*x - l).exp()));
            let dout_blk = Mat {
                data: &dout[start * g.cv..],
                rs: g.cv,
                cs: 1,
            };
            if want.1 {
                // dv += Pᵀ dout_blk
                let pt = Mat {
                    data: p,
                    rs: 1,
                    cs: g.m,
                };
                matmul_into(&mut dv, g.cv, pt, dout_blk, (g.m, g.cv, rows), true, true)?;
            }
            if !want.0 {
                continue;
            }
            // dP = dout_blk vᵀ (+ down on the own group); dS = temp · P ⊙ (dP − D).
            let vt = Mat {
                data: v,
                rs: 1,
                cs: g.cv,
            };
            matmul_into(ds, g.m, dout_blk, vt, (rows, g.m, g.cv), false, true)?;
            ds.par_chunks_mut(g.m)
                .zip(p.par_chunks(g.m))
                .enumerate()
                .for_each(|(r, (dsr, pr))| {
                    let i = start + r;
                    let grp = i / g.n;
                    for x in &mut dsr[grp * g.n..(grp + 1) * g.n] {
                        *x += down[i];
                    }
                    for (x, &pv) in dsr.iter_mut().zip(pr) {
                        *x = g.temp * pv * (*x - d[i]);
                    }
                });
            let dsm = Mat {
                data: ds,
                rs: g.m,
                cs: 1,
            };
            // dq_blk = dS k; dk += dSᵀ q_blk.
            let km = Mat {
                data: k,
                rs: g.c,
                cs: 1,
            };
            matmul_into(
                &mut dq[start * g.c..(start + rows) * g.c],
                g.c,
                dsm,
                km,
                (rows, g.c, g.m),
                false,
                true,
            )?;
            let dst = Mat {
                data: ds,
                rs: 1,
                cs: g.m,
            };
            let qb = Mat {
                data: &q[start * g.c..],
                rs: g.c,
                cs: 1,
            };
            matmul_into(&mut dk, g.c, dst, qb, (g.m, g.c, rows), true, true)?;
        }
        Ok((dq, dk, dv))
    }
}
