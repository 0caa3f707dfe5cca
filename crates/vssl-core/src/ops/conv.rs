//! 2-d convolution on the CPU on the `gemm` crate, with a backward pass that computes only the
//! gradients that are needed.
//!
//! [`conv2d`] matches `torch.nn.functional.conv2d(x, w, stride, padding, dilation)` (one group, no
//! bias: add it with a broadcast). On the CPU for `f32` it runs a `CustomOp2`:
//!
//! - forward: per image, tiles of output positions are unfolded (`im2col`, skipped for 1×1
//!   convolutions at stride 1 without padding, which multiply the input directly) and multiplied
//!   by the `[K, C·kh·kw]` weight matrix with `gemm`;
//! - backward: the input gradient is `Wᵀ · dy` folded back (`col2im`), the weight gradient
//!   `Σ_n dy_n · cols_nᵀ`, both on `gemm`; and each is computed **only when its argument takes
//!   part in autograd** (`Tensor::track_op`). candle's own backward always computes both: for a
//!   frozen network (the Lab autoencoder of ContrastCorr, whose decoder passes gradients to its
//!   input), that was a full convolution's work per layer for a gradient nobody reads.
//!
//! Other devices and dtypes use candle's `Tensor::conv2d`.
//!
//! Memory: the unfolded tile is at most [`TILE_FLOATS`] floats, whatever the image size.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{cpu_f32, fast_cpu};
use crate::{Error, Result};

const OP: &str = "conv2d";

/// Largest unfolded tile (`C·kh·kw × positions`), in floats: 16 MiB.
pub const TILE_FLOATS: usize = 1 << 22;

/// Stride, padding and dilation of a convolution (equal on both axes, as torchvision's ResNets and
/// the autoencoder use them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvParams {
    /// Stride.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Dilation.
    pub dilation: usize,
}

impl Default for ConvParams {
    fn default() -> Self {
        Self {
            stride: 1,
            padding: 0,
            dilation: 1,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    kh: usize,
    kw: usize,
    ho: usize,
    wo: usize,
    p: ConvParams,
}

impl Geom {
    fn new(x: &[usize], wt: &[usize], p: ConvParams) -> Result<Self> {
        let (&[n, c, h, w], &[k, c2, kh, kw]) = (x, wt) else {
            return Err(Error::op(
                OP,
                format!("x must be [N, C, H, W] and w [K, C, kh, kw], got {x:?} and {wt:?}"),
            ));
        };
        if c != c2 || p.stride == 0 || p.dilation == 0 || kh == 0 || kw == 0 {
            return Err(Error::op(
                OP,
                format!("x {x:?} and w {wt:?} (channels must agree) with {p:?}"),
            ));
        }
        let eh = p.dilation * (kh - 1) + 1;
        let ew = p.dilation * (kw - 1) + 1;
        if h + 2 * p.padding < eh || w + 2 * p.padding < ew {
            return Err(Error::op(
                OP,
                format!(
                    "kernel {kh}×{kw} (dilation {}) larger than the padded input {x:?}",
                    p.dilation
                ),
            ));
        }
        Ok(Self {
            n,
            c,
            h,
            w,
            k,
            kh,
            kw,
            ho: (h + 2 * p.padding - eh) / p.stride + 1,
            wo: (w + 2 * p.padding - ew) / p.stride + 1,
            p,
        })
    }

    fn ckk(&self) -> usize {
        self.c * self.kh * self.kw
    }

    fn positions(&self) -> usize {
        self.ho * self.wo
    }

    /// A 1×1 convolution at stride 1 without padding multiplies the input directly.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.p.stride == 1 && self.p.padding == 0
    }

    fn tile(&self) -> usize {
        (TILE_FLOATS / self.ckk().max(1)).clamp(1, self.positions().max(1))
    }

    /// Input index of output coordinate `o` and kernel tap `t` along an axis of length `len`.
    fn src(&self, o: usize, t: usize, len: usize) -> Option<usize> {
        let i = (o * self.p.stride + t * self.p.dilation) as isize - self.p.padding as isize;
        (i >= 0 && (i as usize) < len).then_some(i as usize)
    }

    /// Unfolds output positions `start .. start + len` of image `x` (`[C, H, W]`) into `cols`
    /// (`[C·kh·kw, len]`, row-major), one kernel tap (row) per task, an output row's run of
    /// positions at a time (a contiguous copy at stride 1).
    fn im2col(&self, x: &[f32], start: usize, len: usize, cols: &mut [f32]) {
        let (kh, kw) = (self.kh, self.kw);
        let (s, pad, d) = (self.p.stride, self.p.padding as isize, self.p.dilation);
        cols[..self.ckk() * len]
            .par_chunks_mut(len)
            .enumerate()
            .for_each(|(r, row)| {
                let (ch, ki, kj) = (r / (kh * kw), r / kw % kh, r % kw);
                let plane = &x[ch * self.h * self.w..(ch + 1) * self.h * self.w];
                let mut q = 0;
                while q < len {
                    let pos = start + q;
                    let (oy, ox0) = (pos / self.wo, pos % self.wo);
                    let run = (self.wo - ox0).min(len - q);
                    let out = &mut row[q..q + run];
                    match self.src(oy, ki, self.h) {
                        None => out.fill(0.0),
                        Some(iy) => {
                            let line = &plane[iy * self.w..(iy + 1) * self.w];
                            // ix = ox·s − pad + kj·d for ox in ox0 .. ox0 + run.
                            let off = (kj * d) as isize - pad;
                            if s == 1 {
                                let first = ox0 as isize + off;
                                for (t, v) in out.iter_mut().enumerate() {
                                    let ix = first + t as isize;
                                    *v = if ix >= 0 && (ix as usize) < self.w {
                                        line[ix as usize]
                                    } else {
                                        0.0
                                    };
                                }
                            } else {
                                for (t, v) in out.iter_mut().enumerate() {
                                    let ix = ((ox0 + t) * s) as isize + off;
                                    *v = if ix >= 0 && (ix as usize) < self.w {
                                        line[ix as usize]
                                    } else {
                                        0.0
                                    };
                                }
                            }
                        }
                    }
                    q += run;
                }
            });
    }

    /// Adds the unfolded gradient `cols` (`[C·kh·kw, len]` for positions `start ..`) into `dx`
    /// (`[C, H, W]`), one channel per task.
    fn col2im(&self, cols: &[f32], start: usize, len: usize, dx: &mut [f32]) {
        let (kh, kw) = (self.kh, self.kw);
        let (s, pad, d) = (self.p.stride, self.p.padding as isize, self.p.dilation);
        dx.par_chunks_mut(self.h * self.w)
            .enumerate()
            .for_each(|(ch, plane)| {
                for ki in 0..kh {
                    for kj in 0..kw {
                        let r = (ch * kh + ki) * kw + kj;
                        let row = &cols[r * len..(r + 1) * len];
                        let off = (kj * d) as isize - pad;
                        let mut q = 0;
                        while q < len {
                            let pos = start + q;
                            let (oy, ox0) = (pos / self.wo, pos % self.wo);
                            let run = (self.wo - ox0).min(len - q);
                            if let Some(iy) = self.src(oy, ki, self.h) {
                                let line = &mut plane[iy * self.w..(iy + 1) * self.w];
                                for (t, &v) in row[q..q + run].iter().enumerate() {
                                    let ix = ((ox0 + t) * s) as isize + off;
                                    if ix >= 0 && (ix as usize) < self.w {
                                        line[ix as usize] += v;
                                    }
                                }
                            }
                            q += run;
                        }
                    }
                }
            });
    }
}

/// A row-major matrix view for [`matmul`]: `rows × cols` with its strides.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

/// `dst[m × n] (row stride dst_rs) (+)= a[m × k] · b[k × n]` on `gemm`.
///
/// Every index the product touches is checked against the slices before the call, so the raw
/// pointers handed to `gemm` stay in bounds.
fn matmul(
    dst: &mut [f32],
    dst_rs: usize,
    a: Mat,
    b: Mat,
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let last = |rs: usize, cs: usize, r: usize, c: usize| (r - 1) * rs + (c - 1) * cs;
    let ok = last(dst_rs, 1, m, n) < dst.len()
        && (k == 0
            || (last(a.rs, a.cs, m, k) < a.data.len() && last(b.rs, b.cs, k, n) < b.data.len()));
    if !ok {
        return Err(Error::op(OP, "internal: matrix out of bounds"));
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_rs..r * dst_rs + n].fill(0.0);
            }
        }
        return Ok(());
    }
    let par = if m * n * k >= 1 << 18 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the bounds of all three matrices were checked above; `dst` is exclusively borrowed
    // and does not alias `a` or `b` (shared borrows of other buffers).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}

struct Forward(ConvParams);
struct GradInput(ConvParams, [usize; 4]);
struct GradWeight(ConvParams, [usize; 4]);

fn storage_err(e: Error) -> candle_core::Error {
    e.into()
}

impl CustomOp2 for Forward {
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
        let g = Geom::new(xl.dims(), wl.dims(), self.0).map_err(storage_err)?;
        let x = cpu_f32(OP, xs, xl)?;
        let w = cpu_f32(OP, ws, wl)?;
        let (pos, ckk) = (g.positions(), g.ckk());
        let mut out = vec![0f32; g.n * g.k * pos];
        let tile = g.tile();
        let mut cols = if g.pointwise() {
            Vec::new()
        } else {
            vec![0f32; ckk * tile]
        };
        let wm = Mat {
            data: w,
            rs: ckk,
            cs: 1,
        };
        for i in 0..g.n {
            let xi = &x[i * g.c * g.h * g.w..(i + 1) * g.c * g.h * g.w];
            let oi = &mut out[i * g.k * pos..(i + 1) * g.k * pos];
            if g.pointwise() {
                matmul(
                    oi,
                    pos,
                    wm,
                    Mat {
                        data: xi,
                        rs: pos,
                        cs: 1,
                    },
                    (g.k, pos, ckk),
                    false,
                )
                .map_err(storage_err)?;
                continue;
            }
            let mut start = 0;
            while start < pos {
                let len = tile.min(pos - start);
                g.im2col(xi, start, len, &mut cols);
                matmul(
                    &mut oi[start..],
                    pos,
                    wm,
                    Mat {
                        data: &cols,
                        rs: len,
                        cs: 1,
                    },
                    (g.k, len, ckk),
                    false,
                )
                .map_err(storage_err)?;
                start += len;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.k, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dims4 = |t: &Tensor| -> candle_core::Result<[usize; 4]> {
            let (a, b, c, d) = t.dims4()?;
            Ok([a, b, c, d])
        };
        let dx = if x.track_op() {
            Some(dy.apply_op2_no_bwd(w, &GradInput(self.0, dims4(x)?))?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(dy.apply_op2_no_bwd(x, &GradWeight(self.0, dims4(w)?))?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

impl CustomOp2 for GradInput {
    fn name(&self) -> &'static str {
        "conv2d_grad_input"
    }

    fn cpu_fwd(
        &self,
        dys: &CpuStorage,
        dyl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = Geom::new(&self.1, wl.dims(), self.0).map_err(storage_err)?;
        let dy = cpu_f32(OP, dys, dyl)?;
        let w = cpu_f32(OP, ws, wl)?;
        let (pos, ckk, img) = (g.positions(), g.ckk(), g.c * g.h * g.w);
        let mut dx = vec![0f32; g.n * img];
        // Wᵀ: [C·kh·kw, K] read from the row-major [K, C·kh·kw] weight.
        let wt = Mat {
            data: w,
            rs: 1,
            cs: ckk,
        };
        let tile = g.tile();
        let mut cols = if g.pointwise() {
            Vec::new()
        } else {
            vec![0f32; ckk * tile]
        };
        for i in 0..g.n {
            let dyi = &dy[i * g.k * pos..(i + 1) * g.k * pos];
            let dxi = &mut dx[i * img..(i + 1) * img];
            if g.pointwise() {
                matmul(
                    dxi,
                    pos,
                    wt,
                    Mat {
                        data: dyi,
                        rs: pos,
                        cs: 1,
                    },
                    (ckk, pos, g.k),
                    false,
                )
                .map_err(storage_err)?;
                continue;
            }
            let mut start = 0;
            while start < pos {
                let len = tile.min(pos - start);
                matmul(
                    &mut cols,
                    len,
                    wt,
                    Mat {
                        data: &dyi[start..],
                        rs: pos,
                        cs: 1,
                    },
                    (ckk, len, g.k),
                    false,
                )
                .map_err(storage_err)?;
                g.col2im(&cols, start, len, dxi);
                start += len;
            }
        }
        Ok((CpuStorage::F32(dx), Shape::from(self.1.to_vec())))
    }
}

impl CustomOp2 for GradWeight {
    fn name(&self) -> &'static str {
        "conv2d_grad_weight"
    }

    fn cpu_fwd(
        &self,
        dys: &CpuStorage,
        dyl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = Geom::new(xl.dims(), &self.1, self.0).map_err(storage_err)?;
        let dy = cpu_f32(OP, dys, dyl)?;
        let x = cpu_f32(OP, xs, xl)?;
        let (pos, ckk, img) = (g.positions(), g.ckk(), g.c * g.h * g.w);
        let mut dw = vec![0f32; g.k * ckk];
        let tile = g.tile();
        let mut cols = if g.pointwise() {
            Vec::new()
        } else {
            vec![0f32; ckk * tile]
        };
        let mut first = true;
        for i in 0..g.n {
            let dyi = &dy[i * g.k * pos..(i + 1) * g.k * pos];
            let xi = &x[i * img..(i + 1) * img];
            if g.pointwise() {
                // dW += dy_i [K, P] · x_iᵀ [P, C]
                matmul(
                    &mut dw,
                    ckk,
                    Mat {
                        data: dyi,
                        rs: pos,
                        cs: 1,
                    },
                    Mat {
                        data: xi,
                        rs: 1,
                        cs: pos,
                    },
                    (g.k, ckk, pos),
                    !first,
                )
                .map_err(storage_err)?;
                first = false;
                continue;
            }
            let mut start = 0;
            while start < pos {
                let len = tile.min(pos - start);
                g.im2col(xi, start, len, &mut cols);
                matmul(
                    &mut dw,
                    ckk,
                    Mat {
                        data: &dyi[start..],
                        rs: pos,
                        cs: 1,
                    },
                    Mat {
                        data: &cols,
                        rs: 1,
                        cs: len,
                    },
                    (g.k, ckk, len),
                    !first,
                )
                .map_err(storage_err)?;
                first = false;
                start += len;
            }
        }
        Ok((CpuStorage::F32(dw), Shape::from(self.1.to_vec())))
    }
}

/// `conv2d(x, w)` like `torch.nn.functional.conv2d(x, w, stride, padding, dilation)` with one
/// group and no bias: `x` `[N, C, H, W]`, `w` `[K, C, kh, kw]` → `[N, K, Ho, Wo]`,
/// `Ho = (H + 2p − d·(kh − 1) − 1)/s + 1` (floor).
///
/// On the CPU for `f32` the `gemm`-based kernel of this module (gradients only to the arguments
/// that take part in autograd); elsewhere [`conv2d_portable`].
///
/// # Errors
/// [`Error::Op`] (`conv2d`) naming the shapes when they are not rank 4, the channels differ, the
/// stride or dilation is zero, or the kernel does not fit the padded input.
pub fn conv2d(x: &Tensor, w: &Tensor, p: ConvParams) -> Result<Tensor> {
    Geom::new(x.dims(), w.dims(), p)?;
    if !(fast_cpu(x) && fast_cpu(w)) {
        return conv2d_portable(x, w, p);
    }
    Ok(x.contiguous()?.apply_op2(&w.contiguous()?, Forward(p))?)
}

/// The same with candle's own `conv2d` (any device; its backward computes both gradients).
///
/// # Errors
/// As [`conv2d`].
pub fn conv2d_portable(x: &Tensor, w: &Tensor, p: ConvParams) -> Result<Tensor> {
    Geom::new(x.dims(), w.dims(), p)?;
    Ok(x.conv2d(w, p.padding, p.stride, p.dilation, 1)?)
}
