//! Fused optimizer updates: one call updates one parameter tensor and its state in place.
//!
//! Each update reads the parameter, its gradient and its state and writes the parameter and the
//! state. On the CPU with `f32` contiguous tensors ([`adam_update`], [`sgd_update`],
//! [`lars_update`]) this is a single pass over the memory (LARS adds one reduction pass for the
//! two norms), in place on the storage of the [`Var`]s, split over rayon threads in chunks of
//! [`CHUNK`] elements for big tensors. Every other case (another device, another dtype, a
//! strided parameter) goes through the `*_portable` twin, built of candle tensor ops and
//! [`Var::set`]. The two paths compute the same formulas, written on each parameter struct; they
//! follow `torch.optim` (`foreach=False`, `maximize=False`) to the operation.
//!
//! The state tensors must be distinct allocations from the parameter (the optimizers create
//! them); an aliasing state is reported as an error, never a deadlock.

use std::cell::Cell;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, InplaceOp1, InplaceOp2, Layout, Tensor, Var};
use rayon::prelude::*;

use crate::{Error, Result};

/// Elements per rayon task; tensors with fewer than two chunks are updated on the calling thread.
pub const CHUNK: usize = 1 << 15;

/// One Adam or AdamW update (`torch.optim.Adam` / `torch.optim.AdamW`, `amsgrad=False`).
///
/// With `t` = [`AdamUpdate::step`] (1 on the first update), `g` the gradient, `p` the parameter:
/// ```text
/// if !decoupled: g ← g + wd·p                       (Adam: L2 penalty in the gradient)
/// if  decoupled: p ← p·(1 − lr·wd)                  (AdamW: decoupled weight decay)
/// m ← β1·m + (1 − β1)·g
/// v ← β2·v + (1 − β2)·g²
/// p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamUpdate {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the bias-corrected `√v` (outside the square root).
    pub eps: f64,
    /// Weight decay: L2 in the gradient (Adam) or decoupled (AdamW); 0 turns it off.
    pub weight_decay: f64,
    /// AdamW's decoupled decay instead of Adam's L2 penalty.
    pub decoupled: bool,
    /// The step count of this parameter, counting this update (1 on the first).
    pub step: u64,
}

/// One SGD update (`torch.optim.SGD`).
///
/// ```text
/// g ← g + wd·p
/// if μ ≠ 0:  b ← g (first update) or μ·b + (1 − dampening)·g
///            g ← g + μ·b (Nesterov) or b
/// p ← p − lr·g
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdUpdate {
    /// Learning rate.
    pub lr: f64,
    /// Momentum `μ`; 0 means plain SGD and no buffer.
    pub momentum: f64,
    /// Dampening of the gradient added to the momentum buffer (not applied on the first update).
    pub dampening: f64,
    /// L2 penalty added to the gradient; 0 turns it off.
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// This is the parameter's first update: the buffer is set to the gradient.
    pub first: bool,
}

/// One LARS update (layer-wise adaptive rate scaling, as in the SimCLR/BYOL/Barlow Twins code).
///
/// ```text
/// if adapt:  r ← η·‖p‖ / (‖g‖ + wd·‖p‖)   when ‖p‖ > 0 and ‖g‖ > 0, else 1
///            d ← r·(g + wd·p)
/// else:      d ← g                          (biases, BN: no decay, no adaptation)
/// b ← μ·b + d                               (b starts at zero, so b = d on the first update)
/// p ← p − lr·b
/// ```
/// Norms are Euclidean over the whole tensor, accumulated in `f64`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LarsUpdate {
    /// Learning rate.
    pub lr: f64,
    /// Momentum `μ`.
    pub momentum: f64,
    /// Weight decay `wd`, used only when `adapt`.
    pub weight_decay: f64,
    /// Trust coefficient `η`.
    pub trust_coefficient: f64,
    /// Apply weight decay and the trust ratio (false for excluded parameters).
    pub adapt: bool,
}

/// Applies one Adam/AdamW update to `p` and its moments `m`, `v` (same shape), in place.
///
/// Uses the fused CPU kernel for `f32` contiguous CPU tensors, [`adam_update_portable`]
/// otherwise.
pub fn adam_update(p: &Var, g: &Tensor, m: &Var, v: &Var, h: &AdamUpdate) -> Result<()> {
    const OP: &str = "adam_update";
    check(OP, p, g, &[m, v])?;
    if !fused(p, &[m, v]) {
        return adam_update_portable(p, g, m, v, h);
    }
    let k = AdamConsts::new(h);
    let g = g.contiguous()?;
    let r = with_mut(OP, m.as_tensor(), |ms| {
        with_mut(OP, v.as_tensor(), |vs| {
            with_mut_read(OP, p.as_tensor(), &g, |ps, gs| {
                if ps.len() < 2 * CHUNK {
                    k.run(ps, gs, ms, vs);
                } else {
                    ps.par_chunks_mut(CHUNK)
                        .zip(gs.par_chunks(CHUNK))
                        .zip(ms.par_chunks_mut(CHUNK))
                        .zip(vs.par_chunks_mut(CHUNK))
                        .for_each(|(((p, g), m), v)| k.run(p, g, m, v));
                }
                Ok(())
            })
        })
    });
    Ok(r?)
}

/// [`adam_update`] with candle tensor ops and [`Var::set`], for any device and float dtype.
pub fn adam_update_portable(p: &Var, g: &Tensor, m: &Var, v: &Var, h: &AdamUpdate) -> Result<()> {
    check("adam_update", p, g, &[m, v])?;
    let (bc1, bc2) = bias_corrections(h);
    let mut pt = p.as_tensor().clone();
    let mut g = g.clone();
    if h.weight_decay != 0.0 {
        if h.decoupled {
            pt = pt.affine(1.0 - h.lr * h.weight_decay, 0.0)?;
        } else {
            g = (g + p.as_tensor().affine(h.weight_decay, 0.0)?)?;
        }
    }
    let m_new = (m.as_tensor().affine(h.beta1, 0.0)? + g.affine(1.0 - h.beta1, 0.0)?)?;
    let v_new = (v.as_tensor().affine(h.beta2, 0.0)? + g.sqr()?.affine(1.0 - h.beta2, 0.0)?)?;
    let denom = v_new.sqrt()?.affine(1.0 / bc2.sqrt(), h.eps)?;
    let p_new = (pt - m_new.div(&denom)?.affine(h.lr / bc1, 0.0)?)?;
    m.set(&m_new)?;
    v.set(&v_new)?;
    p.set(&p_new)?;
    Ok(())
}

/// Applies one SGD update to `p`, in place; `buf` is the momentum buffer (same shape), required
/// when `h.momentum ≠ 0` and ignored otherwise.
///
/// Uses the fused CPU kernel for `f32` contiguous CPU tensors, [`sgd_update_portable`] otherwise.
pub fn sgd_update(p: &Var, g: &Tensor, buf: Option<&Var>, h: &SgdUpdate) -> Result<()> {
    const OP: &str = "sgd_update";
    let buf = sgd_buffer(OP, buf, h)?;
    let states: Vec<&Var> = buf.into_iter().collect();
    check(OP, p, g, &states)?;
    if !fused(p, &states) {
        return sgd_update_portable(p, g, buf, h);
    }
    let k = SgdConsts::new(h);
    let g = g.contiguous()?;
    let run = |ps: &mut [f32], gs: &[f32], bs: Option<&mut [f32]>| {
        if ps.len() < 2 * CHUNK {
            k.run(ps, gs, bs);
        } else if let Some(bs) = bs {
            ps.par_chunks_mut(CHUNK)
                .zip(gs.par_chunks(CHUNK))
                .zip(bs.par_chunks_mut(CHUNK))
                .for_each(|((p, g), b)| k.run(p, g, Some(b)));
        } else {
            ps.par_chunks_mut(CHUNK)
                .zip(gs.par_chunks(CHUNK))
                .for_each(|(p, g)| k.run(p, g, None));
        }
    };
    let r = match buf {
        Some(b) => with_mut(OP, b.as_tensor(), |bs| {
            with_mut_read(OP, p.as_tensor(), &g, |ps, gs| {
                run(ps, gs, Some(bs));
                Ok(())
            })
        }),
        None => with_mut_read(OP, p.as_tensor(), &g, |ps, gs| {
            run(ps, gs, None);
            Ok(())
        }),
    };
    Ok(r?)
}

/// [`sgd_update`] with candle tensor ops and [`Var::set`], for any device and float dtype.
pub fn sgd_update_portable(p: &Var, g: &Tensor, buf: Option<&Var>, h: &SgdUpdate) -> Result<()> {
    const OP: &str = "sgd_update";
    let buf = sgd_buffer(OP, buf, h)?;
    let states: Vec<&Var> = buf.into_iter().collect();
    check(OP, p, g, &states)?;
    let mut d = g.clone();
    if h.weight_decay != 0.0 {
        d = (d + p.as_tensor().affine(h.weight_decay, 0.0)?)?;
    }
    if let Some(b) = buf {
        let b_new = if h.first {
            d.copy()?
        } else {
            (b.as_tensor().affine(h.momentum, 0.0)? + d.affine(1.0 - h.dampening, 0.0)?)?
        };
        d = if h.nesterov {
            (d + b_new.affine(h.momentum, 0.0)?)?
        } else {
            b_new.clone()
        };
        b.set(&b_new)?;
    }
    let p_new = (p.as_tensor() - d.affine(h.lr, 0.0)?)?;
    p.set(&p_new)?;
    Ok(())
}

/// Applies one LARS update to `p` and its momentum buffer `buf` (same shape), in place.
///
/// Uses the fused CPU kernel (a norm pass, then an update pass) for `f32` contiguous CPU
/// tensors, [`lars_update_portable`] otherwise.
pub fn lars_update(p: &Var, g: &Tensor, buf: &Var, h: &LarsUpdate) -> Result<()> {
    const OP: &str = "lars_update";
    check(OP, p, g, &[buf])?;
    if !fused(p, &[buf]) {
        return lars_update_portable(p, g, buf, h);
    }
    let g = g.contiguous()?;
    let r = with_mut(OP, buf.as_tensor(), |bs| {
        with_mut_read(OP, p.as_tensor(), &g, |ps, gs| {
            let scale = if h.adapt {
                lars_trust(sum_sq(ps).sqrt(), sum_sq(gs).sqrt(), h)
            } else {
                1.0
            };
            let k = LarsConsts {
                scale: scale as f32,
                wd: if h.adapt { h.weight_decay as f32 } else { 0.0 },
                mu: h.momentum as f32,
                lr: h.lr as f32,
            };
            if ps.len() < 2 * CHUNK {
                k.run(ps, gs, bs);
            } else {
                ps.par_chunks_mut(CHUNK)
                    .zip(gs.par_chunks(CHUNK))
                    .zip(bs.par_chunks_mut(CHUNK))
                    .for_each(|((p, g), b)| k.run(p, g, b));
            }
            Ok(())
        })
    });
    Ok(r?)
}

/// [`lars_update`] with candle tensor ops and [`Var::set`], for any device and float dtype.
pub fn lars_update_portable(p: &Var, g: &Tensor, buf: &Var, h: &LarsUpdate) -> Result<()> {
    check("lars_update", p, g, &[buf])?;
    let pt = p.as_tensor();
    let d = if h.adapt {
        let pn = pt.to_dtype(candle_core::DType::F64)?.sqr()?.sum_all()?;
        let gn = g.to_dtype(candle_core::DType::F64)?.sqr()?.sum_all()?;
        let r = lars_trust(
            pn.to_scalar::<f64>()?.sqrt(),
            gn.to_scalar::<f64>()?.sqrt(),
            h,
        );
        (g + pt.affine(h.weight_decay, 0.0)?)?.affine(r, 0.0)?
    } else {
        g.clone()
    };
    let b_new = (buf.as_tensor().affine(h.momentum, 0.0)? + d)?;
    let p_new = (pt - b_new.affine(h.lr, 0.0)?)?;
    buf.set(&b_new)?;
    p.set(&p_new)?;
    Ok(())
}

/// LARS trust ratio `η·‖p‖ / (‖g‖ + wd·‖p‖)`, 1 when either norm is zero.
fn lars_trust(p_norm: f64, g_norm: f64, h: &LarsUpdate) -> f64 {
    if p_norm > 0.0 && g_norm > 0.0 {
        h.trust_coefficient * p_norm / (g_norm + h.weight_decay * p_norm)
    } else {
        1.0
    }
}

/// `Σ x²` in `f64`, over fixed chunks summed in order (the same bits on any thread count).
fn sum_sq(xs: &[f32]) -> f64 {
    let part = |c: &[f32]| c.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>();
    if xs.len() < 2 * CHUNK {
        return xs.chunks(CHUNK).map(part).sum();
    }
    let parts: Vec<f64> = xs.par_chunks(CHUNK).map(part).collect();
    parts.iter().sum()
}

fn bias_corrections(h: &AdamUpdate) -> (f64, f64) {
    let t = i32::try_from(h.step).unwrap_or(i32::MAX);
    (1.0 - h.beta1.powi(t), 1.0 - h.beta2.powi(t))
}

/// Adam's per-update constants, in `f32` for the kernel.
#[derive(Clone, Copy)]
struct AdamConsts {
    l2: f32,
    decay: f32,
    b1: f32,
    b2: f32,
    step_size: f32,
    inv_bc2_sqrt: f32,
    eps: f32,
}

impl AdamConsts {
    fn new(h: &AdamUpdate) -> Self {
        let (bc1, bc2) = bias_corrections(h);
        let (l2, decay) = if h.decoupled {
            (0.0, 1.0 - h.lr * h.weight_decay)
        } else {
            (h.weight_decay, 1.0)
        };
        AdamConsts {
            l2: l2 as f32,
            decay: decay as f32,
            b1: h.beta1 as f32,
            b2: h.beta2 as f32,
            step_size: (h.lr / bc1) as f32,
            inv_bc2_sqrt: (1.0 / bc2.sqrt()) as f32,
            eps: h.eps as f32,
        }
    }

    fn run(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let (b1c, b2c) = (1.0 - self.b1, 1.0 - self.b2);
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = g + self.l2 * *p;
            let pd = *p * self.decay;
            let mi = self.b1 * *m + b1c * g;
            let vi = self.b2 * *v + b2c * g * g;
            *m = mi;
            *v = vi;
            *p = pd - self.step_size * mi / (vi.sqrt() * self.inv_bc2_sqrt + self.eps);
        }
    }
}

/// SGD's per-update constants, in `f32` for the kernel.
#[derive(Clone, Copy)]
struct SgdConsts {
    lr: f32,
    mu: f32,
    damp: f32,
    wd: f32,
    nesterov: bool,
    first: bool,
}

impl SgdConsts {
    fn new(h: &SgdUpdate) -> Self {
        SgdConsts {
            lr: h.lr as f32,
            mu: h.momentum as f32,
            damp: (1.0 - h.dampening) as f32,
            wd: h.weight_decay as f32,
            nesterov: h.nesterov,
            first: h.first,
        }
    }

    fn run(&self, p: &mut [f32], g: &[f32], b: Option<&mut [f32]>) {
        match b {
            None => {
                for (p, &g) in p.iter_mut().zip(g) {
                    let d = g + self.wd * *p;
                    *p -= self.lr * d;
                }
            }
            Some(b) => {
                for ((p, &g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
                    let d = g + self.wd * *p;
                    let bi = if self.first {
                        d
                    } else {
                        self.mu * *b + self.damp * d
                    };
                    *b = bi;
                    let d = if self.nesterov { d + self.mu * bi } else { bi };
                    *p -= self.lr * d;
                }
            }
        }
    }
}

/// LARS's per-update constants (trust ratio included), in `f32` for the kernel.
#[derive(Clone, Copy)]
struct LarsConsts {
    scale: f32,
    wd: f32,
    mu: f32,
    lr: f32,
}

impl LarsConsts {
    fn run(&self, p: &mut [f32], g: &[f32], b: &mut [f32]) {
        for ((p, &g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
            let d = self.scale * (g + self.wd * *p);
            let bi = self.mu * *b + d;
            *b = bi;
            *p -= self.lr * bi;
        }
    }
}

fn sgd_buffer<'a>(
    op: &'static str,
    buf: Option<&'a Var>,
    h: &SgdUpdate,
) -> Result<Option<&'a Var>> {
    if h.momentum == 0.0 {
        return Ok(None);
    }
    match buf {
        Some(b) => Ok(Some(b)),
        None => Err(Error::op(
            op,
            format!("momentum {} needs a momentum buffer, got none", h.momentum),
        )),
    }
}

/// Shapes, dtypes, devices and storage distinctness of a parameter, its gradient and its state.
fn check(op: &'static str, p: &Var, g: &Tensor, states: &[&Var]) -> Result<()> {
    crate::ensure!(
        g.dims() == p.dims(),
        op,
        "gradient shape {:?} differs from the parameter's {:?}",
        g.dims(),
        p.dims()
    );
    crate::ensure!(
        g.dtype() == p.dtype() && g.device().same_device(p.device()),
        op,
        "gradient is {:?} on {:?}, the parameter {:?} on {:?}",
        g.dtype(),
        g.device().location(),
        p.dtype(),
        p.device().location()
    );
    let p_addr = storage_addr(p.as_tensor());
    for (i, s) in states.iter().enumerate() {
        crate::ensure!(
            s.dims() == p.dims() && s.dtype() == p.dtype() && s.device().same_device(p.device()),
            op,
            "state {i} is {:?} {:?} on {:?}, the parameter {:?} {:?} on {:?}",
            s.dtype(),
            s.dims(),
            s.device().location(),
            p.dtype(),
            p.dims(),
            p.device().location()
        );
        let addr = storage_addr(s.as_tensor());
        crate::ensure!(
            addr != p_addr && addr != storage_addr(g),
            op,
            "state {i} shares its storage with the parameter or the gradient"
        );
        for t in &states[..i] {
            crate::ensure!(
                storage_addr(t.as_tensor()) != addr,
                op,
                "state {i} shares its storage with another state tensor"
            );
        }
    }
    Ok(())
}

/// Address of a tensor's storage: equal for tensors sharing one allocation.
fn storage_addr(t: &Tensor) -> usize {
    let (storage, _) = t.storage_and_layout();
    std::ptr::from_ref(&*storage).addr()
}

/// The fused kernels apply: every tensor `f32`, on the CPU, contiguous.
fn fused(p: &Var, states: &[&Var]) -> bool {
    let ok = |t: &Tensor| super::fast_cpu(t) && t.is_contiguous();
    ok(p.as_tensor()) && states.iter().all(|s| ok(s.as_tensor()))
}

fn cpu_f32_mut<'a>(
    op: &'static str,
    storage: &'a mut CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a mut [f32]> {
    let data = match storage {
        CpuStorage::F32(v) => v.as_mut_slice(),
        other => {
            return Err(
                Error::op(op, format!("expected f32 storage, got {:?}", other.dtype())).into(),
            );
        }
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&mut data[start..end]),
        None => Err(Error::op(op, "expected a contiguous layout").into()),
    }
}

/// Runs `f` on the mutable `f32` values of `t` (a CPU tensor), under its storage's write lock.
fn with_mut<F>(op: &'static str, t: &Tensor, f: F) -> candle_core::Result<()>
where
    F: FnOnce(&mut [f32]) -> candle_core::Result<()>,
{
    t.inplace_op1(&WithMut {
        op,
        f: Cell::new(Some(f)),
    })
}

/// Runs `f` on the mutable values of `dst` and the values of `src` (CPU `f32` tensors).
fn with_mut_read<F>(op: &'static str, dst: &Tensor, src: &Tensor, f: F) -> candle_core::Result<()>
where
    F: FnOnce(&mut [f32], &[f32]) -> candle_core::Result<()>,
{
    dst.inplace_op2(
        src,
        &WithMutRead {
            op,
            f: Cell::new(Some(f)),
        },
    )
}

struct WithMut<F> {
    op: &'static str,
    f: Cell<Option<F>>,
}

impl<F> InplaceOp1 for WithMut<F>
where
    F: FnOnce(&mut [f32]) -> candle_core::Result<()>,
{
    fn name(&self) -> &'static str {
        self.op
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let data = cpu_f32_mut(self.op, storage, layout)?;
        match self.f.take() {
            Some(f) => f(data),
            None => Err(Error::op(self.op, "in-place kernel ran twice").into()),
        }
    }
}

struct WithMutRead<F> {
    op: &'static str,
    f: Cell<Option<F>>,
}

impl<F> InplaceOp2 for WithMutRead<F>
where
    F: FnOnce(&mut [f32], &[f32]) -> candle_core::Result<()>,
{
    fn name(&self) -> &'static str {
        self.op
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let dst = cpu_f32_mut(self.op, s1, l1)?;
        let src = super::cpu_f32(self.op, s2, l2)?;
        if dst.len() != src.len() {
            return Err(Error::op(
                self.op,
                format!(
                    "{} values to update, {} gradient values",
                    dst.len(),
                    src.len()
                ),
            )
            .into());
        }
        match self.f.take() {
            Some(f) => f(dst, src),
            None => Err(Error::op(self.op, "in-place kernel ran twice").into()),
        }
    }
}
