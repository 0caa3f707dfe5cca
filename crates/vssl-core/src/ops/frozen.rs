//! A chain of frozen layers (constant weights) run as one op: on the CPU it keeps, for the
//! backward pass, only a bit per ReLU output, a byte per max-pool output and the outputs of
//! `tanh`, instead of every intermediate tensor.
//!
//! Frozen networks sit inside training graphs: ContrastCorr and UVC decode copied colour features
//! with a frozen decoder four times per step, and gradients must flow through it to the features
//! while its weights never change. Layer by layer, candle keeps every intermediate of every
//! decode alive until the backward pass: about 150 MB per 256² image per decode for UVC's decoder,
//! 1.2 GB of the main phase's step at batch 2. As one op the chain allocates its intermediates
//! one after the other and frees them, keeps about 1/32 of their size, and its backward pass
//! computes only input gradients (a frozen convolution needs no weight gradient).
//!
//! [`FrozenChain::forward`] runs the fused CPU kernel for `f32` CPU tensors whose weights are
//! constants, and [`FrozenChain::forward_layers`] (the layers one by one with the dispatching ops
//! of [`crate::ops`], on any device) otherwise; when a weight is a variable the layers run one by
//! one too, so that it gets its gradient.

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::conv::{ConvParams, conv2d, conv2d_cpu, conv2d_grad_input_cpu};
use super::pad::{reflect, reflection_pad2d};
use super::pool::max_pool2d;
use super::{cpu_f32, fast_cpu};
use crate::{Error, Result};

const OP: &str = "frozen_chain";

/// One layer of a [`FrozenChain`].
#[derive(Debug, Clone)]
pub enum FrozenLayer {
    /// A convolution with weight `[K, C, kh, kw]` and an optional bias `[K]`.
    Conv {
        /// The weight.
        weight: Tensor,
        /// The bias.
        bias: Option<Tensor>,
        /// Stride, zero padding, dilation.
        params: ConvParams,
    },
    /// Reflection padding by the same amount on all four sides (`ReflectionPad2d(p)`).
    ReflectionPad(usize),
    /// Nearest-neighbour upsampling by an integer factor.
    UpsampleNearest(usize),
    /// Max pooling with kernel = stride = `k`, no padding (`MaxPool2d(k)`); the first maximum of
    /// a window takes the gradient.
    MaxPool(usize),
    /// ReLU.
    Relu,
    /// tanh.
    Tanh,
}

/// A layer with its weights copied to host memory, for the CPU kernel.
#[derive(Debug)]
enum CpuLayer {
    Conv {
        weight: Vec<f32>,
        dims: [usize; 4],
        bias: Option<Vec<f32>>,
        params: ConvParams,
    },
    ReflectionPad(usize),
    UpsampleNearest(usize),
    MaxPool(usize),
    Relu,
    Tanh,
}

/// A chain of frozen layers applied to `[N, C, H, W]` inputs (see the module docs).
#[derive(Debug, Clone)]
pub struct FrozenChain {
    layers: Vec<FrozenLayer>,
    cpu: Option<Arc<Vec<CpuLayer>>>,
    trainable: bool,
}

impl FrozenChain {
    /// Checks the layers and, when every weight is an `f32` CPU tensor, copies them for the CPU
    /// kernel.
    ///
    /// # Errors
    /// [`Error::Op`] (`frozen_chain`) naming the layer when a weight is not `[K, C, kh, kw]`, a
    /// bias not `[K]`, or a pad, factor or pool size is zero (a pool of more than 15).
    pub fn new(layers: Vec<FrozenLayer>) -> Result<Self> {
        let mut cpu = Some(Vec::with_capacity(layers.len()));
        let mut trainable = false;
        for (i, layer) in layers.iter().enumerate() {
            let c = match layer {
                FrozenLayer::Conv {
                    weight,
                    bias,
                    params,
                } => {
                    let dims: [usize; 4] = weight.dims().try_into().map_err(|_| {
                        Error::op(
                            OP,
                            format!(
                                "layer {i}: weight must be [K, C, kh, kw], got {:?}",
                                weight.dims()
                            ),
                        )
                    })?;
                    if let Some(b) = bias {
                        crate::ensure!(
                            b.dims() == [dims[0]],
                            OP,
                            "layer {i}: bias must be [{}], got {:?}",
                            dims[0],
                            b.dims()
                        );
                    }
                    trainable |= weight.track_op() || bias.as_ref().is_some_and(|b| b.track_op());
                    let host = fast_cpu(weight) && bias.as_ref().is_none_or(fast_cpu);
                    host.then(|| -> Result<CpuLayer> {
                        Ok(CpuLayer::Conv {
                            weight: weight.flatten_all()?.to_vec1::<f32>()?,
                            dims,
                            bias: bias.as_ref().map(|b| b.to_vec1::<f32>()).transpose()?,
                            params: *params,
                        })
                    })
                    .transpose()?
                }
                FrozenLayer::ReflectionPad(p) => {
                    crate::ensure!(*p > 0, OP, "layer {i}: reflection pad of 0");
                    Some(CpuLayer::ReflectionPad(*p))
                }
                FrozenLayer::UpsampleNearest(f) => {
                    crate::ensure!(*f > 0, OP, "layer {i}: upsampling factor 0");
                    Some(CpuLayer::UpsampleNearest(*f))
                }
                FrozenLayer::MaxPool(k) => {
                    crate::ensure!(
                        (1..=15).contains(k),
                        OP,
                        "layer {i}: pool size must be 1 to 15, got {k}"
                    );
                    Some(CpuLayer::MaxPool(*k))
                }
                FrozenLayer::Relu => Some(CpuLayer::Relu),
                FrozenLayer::Tanh => Some(CpuLayer::Tanh),
            };
            cpu = match (cpu, c) {
                (Some(mut v), Some(c)) => {
                    v.push(c);
                    Some(v)
                }
                _ => None,
            };
        }
        Ok(Self {
            layers,
            cpu: cpu.map(Arc::new),
            trainable,
        })
    }

    /// The layers.
    pub fn layers(&self) -> &[FrozenLayer] {
        &self.layers
    }

    /// Applies the chain to `x` (`[N, C, H, W]`); differentiable with respect to `x`.
    ///
    /// # Errors
    /// [`Error::Op`] naming the op when a layer does not fit its input (channels of a
    /// convolution, a pad not smaller than the side, a kernel larger than the input).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::ensure!(
            x.rank() == 4,
            OP,
            "input must be [N, C, H, W], got {:?}",
            x.dims()
        );
        match &self.cpu {
            Some(plan) if fast_cpu(x) && !self.trainable => {
                let op = ChainOp {
                    plan: plan.clone(),
                    saved: Arc::new(OnceLock::new()),
                    keep: x.track_op(),
                };
                Ok(x.contiguous()?.apply_op1(op)?)
            }
            _ => self.forward_layers(x),
        }
    }

    /// The layers one by one with the dispatching ops of [`crate::ops`] (any device; gradients
    /// also reach weights that are variables).
    ///
    /// # Errors
    /// As [`FrozenChain::forward`].
    pub fn forward_layers(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = x.clone();
        for layer in &self.layers {
            y = match layer {
                FrozenLayer::Conv {
                    weight,
                    bias,
                    params,
                } => {
                    let z = conv2d(&y, weight, *params)?;
                    match bias {
                        Some(b) => z.broadcast_add(&b.reshape((1, (), 1, 1))?)?,
                        None => z,
                    }
                }
                FrozenLayer::ReflectionPad(p) => reflection_pad2d(&y, (*p, *p, *p, *p))?,
                FrozenLayer::UpsampleNearest(f) => {
                    let (_, _, h, w) = y.dims4()?;
                    y.upsample_nearest2d(f * h, f * w)?
                }
                // candle's own max_pool2d scales its gradient by 1/k² (a unique maximum gets
                // grad · #max/k²): the pool of this crate routes it whole.
                FrozenLayer::MaxPool(k) => max_pool2d(&y, (*k, *k), (*k, *k), (0, 0))?,
                FrozenLayer::Relu => y.relu()?,
                FrozenLayer::Tanh => y.tanh()?,
            };
        }
        Ok(y)
    }
}

/// What the backward pass needs of one layer: its input dims and, by kind, the ReLU's output
/// signs (bits), the tanh's output, or the max-pool's argmax within each window.
#[derive(Debug)]
struct Memo {
    dims: [usize; 4],
    kept: Kept,
}

#[derive(Debug)]
enum Kept {
    Nothing,
    Positive(Vec<u64>),
    Output(Vec<f32>),
    Argmax(Vec<u8>),
}

/// The fused op; `saved` holds the memos of the forward pass when `keep` (the input takes part in
/// autograd).
struct ChainOp {
    plan: Arc<Vec<CpuLayer>>,
    saved: Arc<OnceLock<Vec<Memo>>>,
    keep: bool,
}

fn err(msg: String) -> Error {
    Error::op(OP, msg)
}

/// Runs the chain on `x` (`dims`), returning the output, its dims and (when `keep`) the memos.
fn run_forward(
    plan: &[CpuLayer],
    x: &[f32],
    dims: [usize; 4],
    keep: bool,
) -> Result<(Vec<f32>, [usize; 4], Vec<Memo>)> {
    let mut cur = x.to_vec();
    let mut d = dims;
    let mut memos = Vec::with_capacity(if keep { plan.len() } else { 0 });
    for layer in plan {
        let input = d;
        let mut kept = Kept::Nothing;
        match layer {
            CpuLayer::Conv {
                weight,
                dims: wd,
                bias,
                params,
            } => {
                let (mut y, od) = conv2d_cpu(&cur, d, weight, *wd, *params)?;
                if let Some(b) = bias {
                    let plane = od[2] * od[3];
                    if plane > 0 {
                        y.par_chunks_mut(plane).enumerate().for_each(|(p, v)| {
                            let bv = b[p % od[1]];
                            v.iter_mut().for_each(|x| *x += bv);
                        });
                    }
                }
                cur = y;
                d = od;
            }
            CpuLayer::Relu => {
                cur.par_chunks_mut(1 << 14)
                    .for_each(|c| c.iter_mut().for_each(relu_keep_nan));
                if keep {
                    kept = Kept::Positive(positive_bits(&cur));
                }
            }
            CpuLayer::Tanh => {
                cur.par_chunks_mut(1 << 14)
                    .for_each(|c| c.iter_mut().for_each(|v| *v = v.tanh()));
                if keep {
                    kept = Kept::Output(cur.clone());
                }
            }
            CpuLayer::ReflectionPad(p) => {
                let (h, w) = (d[2], d[3]);
                if *p >= h || *p >= w {
                    return Err(err(format!(
                        "reflection pad {p} needs a side above {p}, got input {d:?}"
                    )));
                }
                let (ho, wo) = (h + 2 * p, w + 2 * p);
                let rows: Vec<usize> = (0..ho).map(|i| reflect(i, *p, h)).collect();
                let cols: Vec<usize> = (0..wo).map(|j| reflect(j, *p, w)).collect();
                let mut y = vec![0f32; d[0] * d[1] * ho * wo];
                y.par_chunks_mut(ho * wo)
                    .zip(cur.par_chunks(h * w))
                    .for_each(|(o, i)| {
                        for (orow, &r) in o.chunks_exact_mut(wo).zip(&rows) {
                            let irow = &i[r * w..(r + 1) * w];
                            for (v, &c) in orow.iter_mut().zip(&cols) {
                                *v = irow[c];
                            }
                        }
                    });
                cur = y;
                d = [d[0], d[1], ho, wo];
            }
            CpuLayer::UpsampleNearest(f) => {
                let (h, w) = (d[2], d[3]);
                let (ho, wo) = (h * f, w * f);
                let mut y = vec![0f32; d[0] * d[1] * ho * wo];
                if h * w > 0 {
                    y.par_chunks_mut(ho * wo)
                        .zip(cur.par_chunks(h * w))
                        .for_each(|(o, i)| {
                            for (oy, orow) in o.chunks_exact_mut(wo).enumerate() {
                                let irow = &i[(oy / f) * w..(oy / f + 1) * w];
                                for (v, &s) in orow.chunks_exact_mut(*f).zip(irow) {
                                    v.fill(s);
                                }
                            }
                        });
                }
                cur = y;
                d = [d[0], d[1], ho, wo];
            }
            CpuLayer::MaxPool(k) => {
                let (h, w) = (d[2], d[3]);
                if h < *k || w < *k {
                    return Err(err(format!("max pool {k} of an input {d:?}")));
                }
                let (ho, wo) = (h / k, w / k);
                let mut y = vec![0f32; d[0] * d[1] * ho * wo];
                let mut arg = vec![0u8; if keep { y.len() } else { 0 }];
                let body = |o: &mut [f32], a: Option<&mut [u8]>, i: &[f32]| {
                    let mut a = a;
                    for oy in 0..ho {
                        for ox in 0..wo {
                            let (mut best, mut bi) = (f32::NEG_INFINITY, 0u8);
                            let mut first = true;
                            for dy in 0..*k {
                                let row = &i[(oy * k + dy) * w + ox * k..][..*k];
                                for (dx, &v) in row.iter().enumerate() {
                                    // First maximum in row-major order; a NaN wins (PyTorch).
                                    if first || v > best || v.is_nan() {
                                        best = v;
                                        bi = (dy * k + dx) as u8;
                                        first = false;
                                    }
                                }
                            }
                            o[oy * wo + ox] = best;
                            if let Some(a) = a.as_deref_mut() {
                                a[oy * wo + ox] = bi;
                            }
                        }
                    }
                };
                if keep {
                    y.par_chunks_mut(ho * wo)
                        .zip(arg.par_chunks_mut(ho * wo))
                        .zip(cur.par_chunks(h * w))
                        .for_each(|((o, a), i)| body(o, Some(a), i));
                    kept = Kept::Argmax(arg);
                } else {
                    y.par_chunks_mut(ho * wo)
                        .zip(cur.par_chunks(h * w))
                        .for_each(|(o, i)| body(o, None, i));
                }
                cur = y;
                d = [d[0], d[1], ho, wo];
            }
        }
        if keep {
            memos.push(Memo { dims: input, kept });
        }
    }
    Ok((cur, d, memos))
}

/// One bit per value: set where the value is positive.
fn positive_bits(v: &[f32]) -> Vec<u64> {
    let mut bits = vec![0u64; v.len().div_ceil(64)];
    bits.par_chunks_mut(256)
        .zip(v.par_chunks(256 * 64))
        .for_each(|(b, c)| {
            for (word, vals) in b.iter_mut().zip(c.chunks(64)) {
                *word = vals
                    .iter()
                    .enumerate()
                    .fold(0u64, |acc, (i, &x)| acc | (u64::from(x > 0.0) << i));
            }
        });
    bits
}

/// Runs the chain backwards from the output gradient `g`.
fn run_backward(plan: &[CpuLayer], memos: &[Memo], mut g: Vec<f32>) -> Result<Vec<f32>> {
    for (layer, memo) in plan.iter().zip(memos).rev() {
        let d = memo.dims;
        g = match (layer, &memo.kept) {
            (
                CpuLayer::Conv {
                    weight,
                    dims,
                    params,
                    ..
                },
                _,
            ) => conv2d_grad_input_cpu(&g, d, weight, *dims, *params)?,
            (CpuLayer::Relu, Kept::Positive(bits)) => {
                g.par_chunks_mut(256 * 64)
                    .zip(bits.par_chunks(256))
                    .for_each(|(c, b)| {
                        for (vals, &word) in c.chunks_mut(64).zip(b) {
                            for (i, v) in vals.iter_mut().enumerate() {
                                if word >> i & 1 == 0 {
                                    *v = 0.0;
                                }
                            }
                        }
                    });
                g
            }
            (CpuLayer::Tanh, Kept::Output(y)) => {
                g.par_chunks_mut(1 << 14)
                    .zip(y.par_chunks(1 << 14))
                    .for_each(|(c, y)| {
                        for (v, &y) in c.iter_mut().zip(y) {
                            *v *= 1.0 - y * y;
                        }
                    });
                g
            }
            (CpuLayer::ReflectionPad(p), _) => {
                let (h, w) = (d[2], d[3]);
                let (ho, wo) = (h + 2 * p, w + 2 * p);
                let rows: Vec<usize> = (0..ho).map(|i| reflect(i, *p, h)).collect();
                let cols: Vec<usize> = (0..wo).map(|j| reflect(j, *p, w)).collect();
                let mut dx = vec![0f32; d[0] * d[1] * h * w];
                dx.par_chunks_mut(h * w)
                    .zip(g.par_chunks(ho * wo))
                    .for_each(|(dst, go)| {
                        dst.fill(0.0);
                        for (grow, &r) in go.chunks_exact(wo).zip(&rows) {
                            let drow = &mut dst[r * w..(r + 1) * w];
                            for (&v, &c) in grow.iter().zip(&cols) {
                                drow[c] += v;
                            }
                        }
                    });
                dx
            }
            (CpuLayer::UpsampleNearest(f), _) => {
                let (h, w) = (d[2], d[3]);
                let (ho, wo) = (h * f, w * f);
                let mut dx = vec![0f32; d[0] * d[1] * h * w];
                if h * w > 0 {
                    dx.par_chunks_mut(h * w)
                        .zip(g.par_chunks(ho * wo))
                        .for_each(|(dst, go)| {
                            dst.fill(0.0);
                            for (oy, grow) in go.chunks_exact(wo).enumerate() {
                                let drow = &mut dst[(oy / f) * w..(oy / f + 1) * w];
                                for (v, s) in drow.iter_mut().zip(grow.chunks_exact(*f)) {
                                    *v += s.iter().sum::<f32>();
                                }
                            }
                        });
                }
                dx
            }
            (CpuLayer::MaxPool(k), Kept::Argmax(arg)) => {
                let (h, w) = (d[2], d[3]);
                let (ho, wo) = (h / k, w / k);
                let mut dx = vec![0f32; d[0] * d[1] * h * w];
                dx.par_chunks_mut(h * w)
                    .zip(g.par_chunks(ho * wo))
                    .zip(arg.par_chunks(ho * wo))
                    .for_each(|((dst, go), a)| {
                        dst.fill(0.0);
                        for oy in 0..ho {
                            for ox in 0..wo {
                                let i = usize::from(a[oy * wo + ox]);
                                dst[(oy * k + i / k) * w + ox * k + i % k] = go[oy * wo + ox];
                            }
                        }
                    });
                dx
            }
            (layer, _) => {
                return Err(err(format!(
                    "internal: no memo for {layer:?} in the backward pass"
                )));
            }
        };
    }
    Ok(g)
}

fn dims4(l: &Layout) -> candle_core::Result<[usize; 4]> {
    l.dims()
        .try_into()
        .map_err(|_| err(format!("input must be [N, C, H, W], got {:?}", l.dims())).into())
}

impl CustomOp1 for ChainOp {
    fn name(&self) -> &'static str {
        OP
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = cpu_f32(OP, s, l)?;
        let (y, d, memos) = run_forward(&self.plan, x, dims4(l)?, self.keep)?;
        if self.keep {
            // One forward per op instance; a repeated one would keep the first memos.
            let _ = self.saved.set(memos);
        }
        Ok((CpuStorage::F32(y), Shape::from(d.to_vec())))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let op = ChainBwd {
            plan: self.plan.clone(),
            saved: self.saved.clone(),
            x: arg.clone(),
        };
        let g = grad.to_dtype(DType::F32)?.contiguous()?;
        Ok(Some(g.apply_op1_no_bwd(&op)?))
    }
}

/// The backward op: output gradient → input gradient (the memos are recomputed from the input
/// if the forward pass did not keep them).
struct ChainBwd {
    plan: Arc<Vec<CpuLayer>>,
    saved: Arc<OnceLock<Vec<Memo>>>,
    x: Tensor,
}

impl CustomOp1 for ChainBwd {
    fn name(&self) -> &'static str {
        "frozen_chain_backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = cpu_f32(OP, s, l)?.to_vec();
        let xd: [usize; 4] = self.x.dims().try_into().map_err(|_| {
            err(format!(
                "input must be [N, C, H, W], got {:?}",
                self.x.dims()
            ))
        })?;
        let memos = match self.saved.get() {
            Some(m) => m,
            None => {
                let x = self.x.flatten_all()?.to_vec1::<f32>()?;
                let (_, _, m) = run_forward(&self.plan, &x, xd, true)?;
                let _ = self.saved.set(m);
                self.saved
                    .get()
                    .ok_or_else(|| err("internal: memos not kept".into()))?
            }
        };
        let dx = run_backward(&self.plan, memos, g)?;
        Ok((CpuStorage::F32(dx), Shape::from(xd.to_vec())))
    }
}

/// PyTorch's ReLU on one value: negatives to 0, NaN kept (`f32::max` would turn it into 0).
fn relu_keep_nan(v: &mut f32) {
    if *v < 0.0 {
        *v = 0.0;
    }
}
