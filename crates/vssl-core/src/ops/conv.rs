//! 2-d convolution on the CPU on the `gemm` crate, with a backward pass that computes only the
//! gradients that are needed.
//!
//! [`conv2d`] matches `torch.nn.functional.conv2d(x, w, stride, padding, dilation)` (one group, no
//! bias: add it with a broadcast). On the CPU for `f32` it runs a `CustomOp2` whose work is cut
//! into items of (image, tile of output positions), run in parallel, each on one thread:
//!
//! - forward: the item's tile is unfolded (`im2col`) into a per-thread scratch buffer of at most
//!   [`TILE_FLOATS`] floats (one core's L2 cache on the machines we measure), so the matrix
//!   product reads it from cache, and multiplied by the `[K, C·kh·kw]` weight matrix with `gemm`.
//!   A 1×1 convolution at stride 1 without padding multiplies the input directly;
//! - input gradient: at stride 1 it is itself a forward convolution, of `dy` with the flipped,
//!   transposed kernel (padding `d·(k − 1) − p`), so it runs on the same items; at larger strides
//!   `Wᵀ · dy` is folded back (`col2im`), one image per thread;
//! - weight gradient: `Σ dy_tile · cols_tileᵀ`, each thread accumulating its share of the items
//!   into its own partial sum;
//! - each gradient only when its argument takes part in autograd (`Tensor::track_op`): a frozen
//!   network (the Lab autoencoder of ContrastCorr, whose decoder passes gradients to its input)
//!   costs no weight gradient.
//!
//! When there are fewer items than threads (one small image) the items run one after the other
//! and `gemm` itself runs in parallel.
//!
//! Other devices and dtypes use candle's `Tensor::conv2d`.

use std::cell::RefCell;

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::gemm::{Dst, Mat, matmul};
use super::{cpu_f32, fast_cpu, zeroed};
use crate::{Error, Result};

const OP: &str = "conv2d";

/// Scratch budget of one thread's unfolded tile (`C·kh·kw × positions`), in floats: 1 MiB.
/// Tiles hold at least 64 positions, so very deep kernels exceed it.
pub const TILE_FLOATS: usize = 1 << 18;

/// Fewest output positions per tile (narrower products run far below the GEMM's peak).
const MIN_TILE: usize = 64;

/// Most output positions per tile.
const MAX_TILE: usize = 2048;

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

/// Checked geometry. Padding may differ between the axes internally (the input gradient of a
/// non-square kernel is a convolution with per-axis padding).
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
    s: usize,
    ph: usize,
    pw: usize,
    d: usize,
}

impl Geom {
    fn new(x: &[usize], wt: &[usize], p: ConvParams) -> Result<Self> {
        Self::with_padding(x, wt, p.stride, (p.padding, p.padding), p.dilation)
    }

    fn with_padding(
        x: &[usize],
        wt: &[usize],
        s: usize,
        (ph, pw): (usize, usize),
        d: usize,
    ) -> Result<Self> {
        let (&[n, c, h, w], &[k, c2, kh, kw]) = (x, wt) else {
            return Err(Error::op(
                OP,
                format!("x must be [N, C, H, W] and w [K, C, kh, kw], got {x:?} and {wt:?}"),
            ));
        };
        if c != c2 || s == 0 || d == 0 || kh == 0 || kw == 0 {
            return Err(Error::op(
                OP,
                format!(
                    "x {x:?} and w {wt:?} (channels must agree) with stride: {s}, padding: \
                     {ph}×{pw}, dilation: {d}"
                ),
            ));
        }
        let eh = d * (kh - 1) + 1;
        let ew = d * (kw - 1) + 1;
        if h + 2 * ph < eh || w + 2 * pw < ew {
            return Err(Error::op(
                OP,
                format!(
                    "kernel {kh}×{kw} (dilation {d}) larger than the padded input {x:?} (padding \
                     {ph}×{pw})"
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
            ho: (h + 2 * ph - eh) / s + 1,
            wo: (w + 2 * pw - ew) / s + 1,
            s,
            ph,
            pw,
            d,
        })
    }

    fn ckk(&self) -> usize {
        self.c * self.kh * self.kw
    }

    fn positions(&self) -> usize {
        self.ho * self.wo
    }

    fn image(&self) -> usize {
        self.c * self.h * self.w
    }

    /// A 1×1 convolution at stride 1 without padding multiplies the input directly.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.s == 1 && self.ph == 0 && self.pw == 0
    }

    /// Output positions per tile.
    fn tile(&self) -> usize {
        (TILE_FLOATS / self.ckk().max(1))
            .clamp(MIN_TILE, MAX_TILE)
            .min(self.positions())
            .max(1)
    }

    fn tiles(&self) -> usize {
        self.positions().div_ceil(self.tile())
    }

    /// Input index along an axis of length `len` of output coordinate `o` and kernel tap `t`.
    fn src(&self, o: usize, t: usize, pad: usize, len: usize) -> Option<usize> {
        let i = (o * self.s + t * self.d) as isize - pad as isize;
        (i >= 0 && (i as usize) < len).then_some(i as usize)
    }

    /// The output columns `ox` whose input column `ox·s + off` lies inside `[0, w)`, as a range
    /// intersected with `lo .. hi`.
    fn valid_cols(&self, off: isize, lo: usize, hi: usize) -> (usize, usize) {
        let s = self.s as isize;
        // ox·s + off ≥ 0  ⇔  ox ≥ ceil(−off / s); ox·s + off ≤ w − 1  ⇔  ox ≤ floor((w−1−off)/s).
        let first = if off >= 0 { 0 } else { (-off + s - 1) / s };
        let last = (self.w as isize - 1 - off).div_euclid(s) + 1; // exclusive
        let b = last.clamp(lo as isize, hi as isize) as usize;
        let a = (first.max(lo as isize) as usize).min(b);
        (a, b)
    }

    /// Unfolds output positions `start .. start + len` of image `x` (`[C, H, W]`) into `cols`
    /// (`[C·kh·kw, len]`, row-major): zeros where the tap falls in the padding, a contiguous copy
    /// of each output row's run at stride 1.
    fn im2col(&self, x: &[f32], start: usize, len: usize, cols: &mut [f32]) {
        let (kh, kw, s) = (self.kh, self.kw, self.s);
        for (r, row) in cols[..self.ckk() * len].chunks_exact_mut(len).enumerate() {
            let (ch, ki, kj) = (r / (kh * kw), r / kw % kh, r % kw);
            let plane = &x[ch * self.h * self.w..(ch + 1) * self.h * self.w];
            let off = (kj * self.d) as isize - self.pw as isize;
            let mut q = 0;
            while q < len {
                let pos = start + q;
                let (oy, ox0) = (pos / self.wo, pos % self.wo);
                let run = (self.wo - ox0).min(len - q);
                let out = &mut row[q..q + run];
                match self.src(oy, ki, self.ph, self.h) {
                    None => out.fill(0.0),
                    Some(iy) => {
                        let line = &plane[iy * self.w..(iy + 1) * self.w];
                        let (a, b) = self.valid_cols(off, ox0, ox0 + run);
                        out[..a - ox0].fill(0.0);
                        out[b - ox0..].fill(0.0);
                        let dst = &mut out[a - ox0..b - ox0];
                        if s == 1 && b > a {
                            let first = (a as isize + off) as usize;
                            dst.copy_from_slice(&line[first..first + (b - a)]);
                        } else {
                            for (t, v) in dst.iter_mut().enumerate() {
                                *v = line[(((a + t) * s) as isize + off) as usize];
                            }
                        }
                    }
                }
                q += run;
            }
        }
    }

    /// Adds the unfolded gradient `cols` (`[C·kh·kw, len]` for positions `start ..`) into `dx`
    /// (`[C, H, W]`), one channel per task when `parallel`.
    fn col2im(&self, cols: &[f32], start: usize, len: usize, dx: &mut [f32], parallel: bool) {
        let plane_len = self.h * self.w;
        let channel = |(ch, plane): (usize, &mut [f32])| {
            for ki in 0..self.kh {
                for kj in 0..self.kw {
                    let r = (ch * self.kh + ki) * self.kw + kj;
                    let row = &cols[r * len..(r + 1) * len];
                    let off = (kj * self.d) as isize - self.pw as isize;
                    let mut q = 0;
                    while q < len {
                        let pos = start + q;
                        let (oy, ox0) = (pos / self.wo, pos % self.wo);
                        let run = (self.wo - ox0).min(len - q);
                        if let Some(iy) = self.src(oy, ki, self.ph, self.h) {
                            let line = &mut plane[iy * self.w..(iy + 1) * self.w];
                            let (a, b) = self.valid_cols(off, ox0, ox0 + run);
                            let src = &row[q + a - ox0..q + b - ox0];
                            for (t, &v) in src.iter().enumerate() {
                                line[(((a + t) * self.s) as isize + off) as usize] += v;
                            }
                        }
                        q += run;
                    }
                }
            }
        };
        if parallel {
            dx.par_chunks_mut(plane_len).enumerate().for_each(channel);
        } else {
            dx.chunks_mut(plane_len).enumerate().for_each(channel);
        }
    }
}

thread_local! {
    /// Each thread's unfolding buffer, kept between calls (a fresh buffer per call costs page
    /// faults that cost more than the unfolding).
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a scratch buffer of `len` floats (contents unspecified), the thread's own when it
/// is free.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        // Re-entered on this thread (a rayon task stolen inside a caller's parallel loop).
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// How the items of a call are scheduled: in parallel with single-threaded products when there
/// are at least as many items as threads, else one after the other with parallel products.
fn items_in_parallel(items: usize) -> bool {
    items >= rayon::current_num_threads()
}

/// `out = conv(x, w)` for the geometry `g` (`x` `[N, C, H, W]`, `w` `[K, C, kh, kw]` row-major).
fn forward(g: &Geom, x: &[f32], w: &[f32]) -> Result<Vec<f32>> {
    let (pos, ckk, tile, tiles) = (g.positions(), g.ckk(), g.tile(), g.tiles());
    let mut out = vec![0f32; g.n * g.k * pos];
    let dst = Dst::new(&mut out);
    let wm = Mat {
        data: w,
        rs: ckk,
        cs: 1,
    };
    let item = |it: usize, inner_parallel: bool| -> Result<()> {
        let (i, t) = (it / tiles, it % tiles);
        let start = t * tile;
        let len = tile.min(pos - start);
        let xi = &x[i * g.image()..(i + 1) * g.image()];
        // Item (i, t) writes columns start .. start + len of image i's [K, P] output: disjoint.
        let offset = i * g.k * pos + start;
        if g.pointwise() {
            let b = Mat {
                data: &xi[start..],
                rs: pos,
                cs: 1,
            };
            // SAFETY: see the comment on `offset`.
            return unsafe {
                matmul(
                    dst,
                    offset,
                    pos,
                    wm,
                    b,
                    (g.k, len, ckk),
                    false,
                    inner_parallel,
                )
            };
        }
        with_scratch(ckk * len, |cols| {
            g.im2col(xi, start, len, cols);
            let b = Mat {
                data: cols,
                rs: len,
                cs: 1,
            };
            // SAFETY: see the comment on `offset`.
            unsafe {
                matmul(
                    dst,
                    offset,
                    pos,
                    wm,
                    b,
                    (g.k, len, ckk),
                    false,
                    inner_parallel,
                )
            }
        })
    };
    let items = g.n * tiles;
    if items_in_parallel(items) {
        (0..items)
            .into_par_iter()
            .try_for_each(|it| item(it, false))?;
    } else {
        (0..items).try_for_each(|it| item(it, true))?;
    }
    Ok(out)
}

/// `dx = Σ Wᵀ·dy` folded back (`col2im`): any stride. One image per thread.
fn grad_input_col2im(g: &Geom, dy: &[f32], w: &[f32]) -> Result<Vec<f32>> {
    let (pos, ckk, img, tile) = (g.positions(), g.ckk(), g.image(), g.tile());
    let mut dx = zeroed(g.n * img);
    // Wᵀ: [C·kh·kw, K] read from the row-major [K, C·kh·kw] weight.
    let wt = Mat {
        data: w,
        rs: 1,
        cs: ckk,
    };
    let image = |(i, dxi): (usize, &mut [f32]), parallel: bool| -> Result<()> {
        let dyi = &dy[i * g.k * pos..(i + 1) * g.k * pos];
        with_scratch(ckk * tile, |cols| {
            let mut start = 0;
            while start < pos {
                let len = tile.min(pos - start);
                let b = Mat {
                    data: &dyi[start..],
                    rs: pos,
                    cs: 1,
                };
                // SAFETY: `cols` is this thread's scratch buffer.
                unsafe {
                    matmul(
                        Dst::new(cols),
                        0,
                        len,
                        wt,
                        b,
                        (ckk, len, g.k),
                        false,
                        parallel,
                    )?
                };
                g.col2im(cols, start, len, dxi, parallel);
                start += len;
            }
            Ok(())
        })
    };
    if items_in_parallel(g.n) {
        dx.par_chunks_mut(img.max(1))
            .enumerate()
            .try_for_each(|item| image(item, false))?;
    } else {
        dx.chunks_mut(img.max(1))
            .enumerate()
            .try_for_each(|item| image(item, true))?;
    }
    Ok(dx)
}

/// `dx` of a stride-1 convolution as the forward convolution of `dy` with the flipped kernel
/// transposed to `[C, K, kh, kw]`, padded by `d·(k − 1) − p`; `None` when the padding exceeds
/// `d·(k − 1)` (that convolution would need negative padding).
fn grad_input_stride1(g: &Geom, dy: &[f32], w: &[f32]) -> Result<Option<Vec<f32>>> {
    let (eh, ew) = (g.d * (g.kh - 1), g.d * (g.kw - 1));
    if g.s != 1 || g.ph > eh || g.pw > ew {
        return Ok(None);
    }
    let khw = g.kh * g.kw;
    // w'[c, k, i, j] = w[k, c, kh−1−i, kw−1−j]
    let mut wf = vec![0f32; g.k * g.ckk()];
    wf.par_chunks_mut(g.k * khw)
        .enumerate()
        .for_each(|(c, dst)| {
            for k in 0..g.k {
                let src = &w[(k * g.c + c) * khw..(k * g.c + c + 1) * khw];
                for (t, v) in dst[k * khw..(k + 1) * khw].iter_mut().enumerate() {
                    *v = src[khw - 1 - t];
                }
            }
        });
    let gt = Geom::with_padding(
        &[g.n, g.k, g.ho, g.wo],
        &[g.c, g.k, g.kh, g.kw],
        1,
        (eh - g.ph, ew - g.pw),
        g.d,
    )?;
    debug_assert_eq!((gt.ho, gt.wo), (g.h, g.w));
    Ok(Some(forward(&gt, dy, &wf)?))
}

/// `dW = Σ_items dy_tile · cols_tileᵀ`, each thread summing a contiguous share of the items.
fn grad_weight(g: &Geom, dy: &[f32], x: &[f32]) -> Result<Vec<f32>> {
    let (pos, ckk, tile, tiles) = (g.positions(), g.ckk(), g.tile(), g.tiles());
    let items = g.n * tiles;
    // Adds the items of `range` into `acc` ([K, C·kh·kw]).
    let run = |range: std::ops::Range<usize>, acc: &mut [f32], parallel: bool| -> Result<()> {
        let dst = Dst::new(acc);
        for it in range {
            let (i, t) = (it / tiles, it % tiles);
            let start = t * tile;
            let len = tile.min(pos - start);
            let a = Mat {
                data: &dy[i * g.k * pos + start..],
                rs: pos,
                cs: 1,
            };
            let xi = &x[i * g.image()..(i + 1) * g.image()];
            if g.pointwise() {
                // x_tileᵀ: [len, C] read from the row-major [C, P] image.
                let b = Mat {
                    data: &xi[start..],
                    rs: 1,
                    cs: pos,
                };
                // SAFETY: `acc` belongs to this share alone.
                unsafe { matmul(dst, 0, ckk, a, b, (g.k, ckk, len), true, parallel)? };
                continue;
            }
            with_scratch(ckk * len, |cols| {
                g.im2col(xi, start, len, cols);
                let b = Mat {
                    data: cols,
                    rs: 1,
                    cs: len,
                };
                // SAFETY: `acc` belongs to this share alone.
                unsafe { matmul(dst, 0, ckk, a, b, (g.k, ckk, len), true, parallel) }
            })?;
        }
        Ok(())
    };
    let threads = rayon::current_num_threads();
    if !items_in_parallel(items) || threads < 2 {
        let mut dw = zeroed(g.k * ckk);
        run(0..items, &mut dw, true)?;
        return Ok(dw);
    }
    let share = items.div_ceil(threads);
    let mut partials = (0..items.div_ceil(share))
        .into_par_iter()
        .map(|s| -> Result<Vec<f32>> {
            let mut acc = zeroed(g.k * ckk);
            run(s * share..((s + 1) * share).min(items), &mut acc, false)?;
            Ok(acc)
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter();
    let mut dw = partials.next().unwrap_or_else(|| zeroed(g.k * ckk));
    for p in partials {
        dw.par_chunks_mut(1 << 14)
            .zip(p.par_chunks(1 << 14))
            .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, s)| *d += s));
    }
    Ok(dw)
}

/// The forward kernel on raw row-major buffers (for fused ops): `x` `[N, C, H, W]` (`xd`), `w`
/// `[K, C, kh, kw]` (`wd`) → the output and its dims.
pub(crate) fn conv2d_cpu(
    x: &[f32],
    xd: [usize; 4],
    w: &[f32],
    wd: [usize; 4],
    p: ConvParams,
) -> Result<(Vec<f32>, [usize; 4])> {
    let g = Geom::new(&xd, &wd, p)?;
    crate::ensure!(
        x.len() == xd.iter().product::<usize>() && w.len() == wd.iter().product::<usize>(),
        OP,
        "buffers of {} and {} values for x {xd:?} and w {wd:?}",
        x.len(),
        w.len()
    );
    Ok((forward(&g, x, w)?, [g.n, g.k, g.ho, g.wo]))
}

/// The input-gradient kernel on raw buffers: `dy` of the output of `x` (`xd`) ⊛ `w` (`wd`).
pub(crate) fn conv2d_grad_input_cpu(
    dy: &[f32],
    xd: [usize; 4],
    w: &[f32],
    wd: [usize; 4],
    p: ConvParams,
) -> Result<Vec<f32>> {
    let g = Geom::new(&xd, &wd, p)?;
    crate::ensure!(
        dy.len() == g.n * g.k * g.positions() && w.len() == wd.iter().product::<usize>(),
        OP,
        "gradient of {} values for the output of x {xd:?} and w {wd:?}",
        dy.len()
    );
    match grad_input_stride1(&g, dy, w)? {
        Some(dx) => Ok(dx),
        None => grad_input_col2im(&g, dy, w),
    }
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
        let out = forward(&g, x, w).map_err(storage_err)?;
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
        let dx = match grad_input_stride1(&g, dy, w).map_err(storage_err)? {
            Some(dx) => dx,
            None => grad_input_col2im(&g, dy, w).map_err(storage_err)?,
        };
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
        let dw = grad_weight(&g, dy, x).map_err(storage_err)?;
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
/// candle 0.11's backward takes the transposed convolution's output padding from the height
/// alone, and fails ("shape mismatch in add") when the rows and the columns left over by the
/// stride differ (e.g. a 1×1/2 convolution of a 20×21 input). Then the input is padded
/// explicitly and cut to the rows and columns the windows read, which makes both leftovers zero.
///
/// # Errors
/// As [`conv2d`].
pub fn conv2d_portable(x: &Tensor, w: &Tensor, p: ConvParams) -> Result<Tensor> {
    let g = Geom::new(x.dims(), w.dims(), p)?;
    let (eh, ew) = (g.d * (g.kh - 1) + 1, g.d * (g.kw - 1) + 1);
    let (rh, rw) = ((g.h + 2 * g.ph - eh) % g.s, (g.w + 2 * g.pw - ew) % g.s);
    if rh == rw {
        return Ok(x.conv2d(w, p.padding, p.stride, p.dilation, 1)?);
    }
    let xp = x
        .pad_with_zeros(2, g.ph, g.ph)?
        .pad_with_zeros(3, g.pw, g.pw)?
        .narrow(2, 0, (g.ho - 1) * g.s + eh)?
        .narrow(3, 0, (g.wo - 1) * g.s + ew)?;
    Ok(xp.conv2d(w, 0, p.stride, p.dilation, 1)?)
}
