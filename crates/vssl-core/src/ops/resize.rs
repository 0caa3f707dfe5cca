//! Spatial resizing of `[N, C, H, W]` (or `[C, H, W]`) tensors: bilinear with both
//! `align_corners` conventions, nearest with PyTorch's rule, and nearest with PIL's rule.
//!
//! The semantics follow PyTorch's documentation of `torch.nn.functional.interpolate`
//! (`mode='bilinear'` with `antialias=False`, and `mode='nearest'`) when an output `size` is
//! given, and Pillow's `Image.resize(size, Image.NEAREST)`. The golden script
//! `tests/golden/resize.py` checks every rule against PyTorch 2.9 and Pillow 13.
//!
//! - [`resize_bilinear`] runs a CPU kernel (a candle `CustomOp1` with an explicit backward that
//!   is itself a kernel) for `f32` tensors on the CPU and [`resize_bilinear_portable`]
//!   elsewhere: two products with constant interpolation matrices, `Ah · X · Awᵀ`, which candle's
//!   autograd differentiates on every device.
//! - [`resize_nearest`] and [`resize_nearest_pil`] are two `index_select`s (along H, then W)
//!   with index vectors computed on the host by [`nearest_indices_torch`] and
//!   [`nearest_indices_pil`]. That single path is fast, runs on every device, works for every
//!   dtype (`u8` label maps, `u32`, `f32`, ...) and, for float tensors, is differentiable: the
//!   gradient of `index_select` scatter-adds back into the source pixels.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{cpu_f32, fast_cpu, zeroed};
use crate::{Error, Result};

const OP_BILINEAR: &str = "resize_bilinear";
const OP_NEAREST: &str = "resize_nearest";
const OP_NEAREST_PIL: &str = "resize_nearest_pil";

/// The checked geometry of one resize call.
struct Geometry {
    /// Output dims: the input's leading dims then `(ho, wo)`.
    out_dims: Vec<usize>,
    /// Number of `H × W` planes (`N · C`, or `C` for rank 3).
    planes: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
}

/// Checks the rank, the input's spatial size and the output size.
fn geometry(op: &'static str, x: &Tensor, size: (usize, usize)) -> Result<Geometry> {
    let dims = x.dims();
    crate::ensure!(
        dims.len() == 3 || dims.len() == 4,
        op,
        "input must be [N, C, H, W] or [C, H, W], got shape {dims:?}"
    );
    let (lead, hw) = dims.split_at(dims.len() - 2);
    let (h, w) = match hw {
        [h, w] => (*h, *w),
        _ => return Err(Error::op(op, format!("input shape {dims:?} has no H, W"))),
    };
    crate::ensure!(
        h > 0 && w > 0,
        op,
        "input height and width must be positive, got shape {dims:?}"
    );
    let (ho, wo) = size;
    crate::ensure!(
        ho > 0 && wo > 0,
        op,
        "output size must be positive, got ({ho}, {wo}) for input shape {dims:?}"
    );
    let mut out_dims = lead.to_vec();
    out_dims.extend([ho, wo]);
    Ok(Geometry {
        out_dims,
        planes: lead.iter().product(),
        h,
        w,
        ho,
        wo,
    })
}

// ------------------------------------------------------------------------------------ bilinear

/// Linear interpolation along one axis: output `o` reads `lo[o]·in[i0[o]] + hi[o]·in[i1[o]]`.
#[derive(Debug, Clone)]
struct AxisTable {
    i0: Vec<usize>,
    i1: Vec<usize>,
    lo: Vec<f32>,
    hi: Vec<f32>,
    /// `hi` before rounding to `f32`, for the portable path's matrices in `f64`.
    hi64: Vec<f64>,
}

impl AxisTable {
    /// PyTorch's `upsample_bilinear2d` rule along one axis, computed in `f64`.
    ///
    /// `align_corners = false`: `src = (dst + 0.5)·in/out − 0.5`, clamped at 0.
    /// `align_corners = true`: `src = dst·(in − 1)/(out − 1)`, and `0` when `out == 1`.
    /// Then `i0 = min(floor(src), in − 1)`, `i1 = min(i0 + 1, in − 1)`, `hi = src − i0`,
    /// `lo = 1 − hi`. `in_len` must be positive (checked by the callers).
    fn new(in_len: usize, out_len: usize, align_corners: bool) -> Self {
        let last = in_len.saturating_sub(1);
        let scale = if align_corners {
            if out_len > 1 {
                last as f64 / (out_len - 1) as f64
            } else {
                0.0
            }
        } else {
            in_len as f64 / out_len as f64
        };
        let mut t = AxisTable {
            i0: Vec::with_capacity(out_len),
            i1: Vec::with_capacity(out_len),
            lo: Vec::with_capacity(out_len),
            hi: Vec::with_capacity(out_len),
            hi64: Vec::with_capacity(out_len),
        };
        for dst in 0..out_len {
            let src = if align_corners {
                scale * dst as f64
            } else {
                (scale * (dst as f64 + 0.5) - 0.5).max(0.0)
            };
            let i0 = (src.floor() as usize).min(last);
            let i1 = (i0 + 1).min(last);
            let hi = (src - i0 as f64).clamp(0.0, 1.0);
            t.i0.push(i0);
            t.i1.push(i1);
            t.lo.push((1.0 - hi) as f32);
            t.hi.push(hi as f32);
            t.hi64.push(hi);
        }
        t
    }

    /// The dense `[out, in]` interpolation matrix, row-major, in `f64`.
    fn matrix(&self, in_len: usize) -> Vec<f64> {
        let out_len = self.i0.len();
        let mut m = vec![0f64; out_len * in_len];
        for (o, row) in m.chunks_exact_mut(in_len.max(1)).enumerate().take(out_len) {
            if let (Some(&i0), Some(&i1), Some(&hi)) =
                (self.i0.get(o), self.i1.get(o), self.hi64.get(o))
            {
                if let Some(v) = row.get_mut(i0) {
                    *v += 1.0 - hi;
                }
                if let Some(v) = row.get_mut(i1) {
                    *v += hi;
                }
            }
        }
        m
    }

    /// The transposed `[in, out]` matrix, row-major.
    fn matrix_t(&self, in_len: usize) -> Vec<f64> {
        let out_len = self.i0.len();
        let m = self.matrix(in_len);
        let mut t = vec![0f64; m.len()];
        for o in 0..out_len {
            for i in 0..in_len {
                if let (Some(&v), Some(d)) = (m.get(o * in_len + i), t.get_mut(i * out_len + o)) {
                    *d = v;
                }
            }
        }
        t
    }
}

/// The per-axis tables of one bilinear resize, shared by the forward and backward kernels.
#[derive(Debug)]
struct BilinearPlan {
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    rows: AxisTable,
    cols: AxisTable,
}

impl BilinearPlan {
    fn new(h: usize, w: usize, ho: usize, wo: usize, align_corners: bool) -> Self {
        BilinearPlan {
            h,
            w,
            ho,
            wo,
            rows: AxisTable::new(h, ho, align_corners),
            cols: AxisTable::new(w, wo, align_corners),
        }
    }
}

/// Checks a kernel's input: contiguous `f32`, last two dims `(h, w)`; returns the values and
/// the output dims with the last two replaced by `(oh, ow)`.
fn kernel_input<'a>(
    op: &'static str,
    storage: &'a CpuStorage,
    layout: &Layout,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
) -> candle_core::Result<(&'a [f32], Vec<usize>)> {
    let data = cpu_f32(op, storage, layout)?;
    let dims = layout.dims();
    let ok = dims.len() >= 2
        && dims[dims.len() - 2..] == [h, w]
        && data.len() == dims.iter().product::<usize>();
    if !ok {
        return Err(Error::op(
            op,
            format!("kernel expected [.., {h}, {w}] f32 values, got shape {dims:?}"),
        )
        .into());
    }
    let mut out = dims.to_vec();
    let n = out.len();
    out[n - 2] = oh;
    out[n - 1] = ow;
    Ok((data, out))
}

/// Bilinear resize of every `H × W` plane (the forward CPU kernel).
struct BilinearFwd(Arc<BilinearPlan>);

/// The adjoint of [`BilinearFwd`]: scatters an output gradient back onto the input grid.
struct BilinearBwd(Arc<BilinearPlan>);

impl CustomOp1 for BilinearFwd {
    fn name(&self) -> &'static str {
        "resize_bilinear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = &*self.0;
        let (src, out_dims) = kernel_input(OP_BILINEAR, storage, layout, (p.h, p.w), (p.ho, p.wo))?;
        let mut dst = vec![0f32; out_dims.iter().product()];
        if !dst.is_empty() {
            dst.par_chunks_mut(p.ho * p.wo)
                .zip(src.par_chunks(p.h * p.w))
                .for_each_init(Vec::new, |tmp, (out, inp)| bilinear_plane(p, inp, out, tmp));
        }
        Ok((CpuStorage::F32(dst), Shape::from_dims(&out_dims)))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let g = grad_res
            .contiguous()?
            .apply_op1(BilinearBwd(self.0.clone()))?;
        Ok(Some(g))
    }
}

impl CustomOp1 for BilinearBwd {
    fn name(&self) -> &'static str {
        "resize_bilinear_backward"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = &*self.0;
        let (grad, out_dims) = kernel_input(
            "resize_bilinear_backward",
            storage,
            layout,
            (p.ho, p.wo),
            (p.h, p.w),
        )?;
        let mut dst = zeroed(out_dims.iter().product());
        if !dst.is_empty() {
            dst.par_chunks_mut(p.h * p.w)
                .zip(grad.par_chunks(p.ho * p.wo))
                .for_each_init(Vec::new, |tmp, (gin, gout)| {
                    bilinear_plane_adjoint(p, gout, gin, tmp)
                });
        }
        Ok((CpuStorage::F32(dst), Shape::from_dims(&out_dims)))
    }

    /// The backward map is linear in the output gradient; its own adjoint is the forward resize.
    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let g = grad_res
            .contiguous()?
            .apply_op1(BilinearFwd(self.0.clone()))?;
        Ok(Some(g))
    }
}

/// One plane forward, separably: interpolate the needed input rows along W into `tmp`
/// (`[h, wo]`, per-thread scratch), then blend pairs of those rows along H (contiguous, so the
/// compiler vectorises it). `inp` is `h·w` and `out` is `ho·wo` (the chunking guarantees both;
/// the tables' indices are below `h` and `w` by construction).
fn bilinear_plane(p: &BilinearPlan, inp: &[f32], out: &mut [f32], tmp: &mut Vec<f32>) {
    let (r, c) = (&p.rows, &p.cols);
    tmp.clear();
    tmp.resize(p.h * p.wo, 0.0);
    // Rows along W: only the rows some output row reads.
    let mut done = vec![false; p.h];
    for &y in r.i0.iter().chain(&r.i1) {
        if std::mem::replace(&mut done[y], true) {
            continue;
        }
        let src = &inp[y * p.w..(y + 1) * p.w];
        let dst = &mut tmp[y * p.wo..(y + 1) * p.wo];
        for ((((d, &x0), &x1), &l0), &l1) in
            dst.iter_mut().zip(&c.i0).zip(&c.i1).zip(&c.lo).zip(&c.hi)
        {
            *d = l0 * src[x0] + l1 * src[x1];
        }
    }
    // Columns along H.
    for (oy, orow) in out.chunks_exact_mut(p.wo).enumerate() {
        let (y0, y1, l0, l1) = (r.i0[oy], r.i1[oy], r.lo[oy], r.hi[oy]);
        let row0 = &tmp[y0 * p.wo..(y0 + 1) * p.wo];
        let row1 = &tmp[y1 * p.wo..(y1 + 1) * p.wo];
        for ((o, &a), &b) in orow.iter_mut().zip(row0).zip(row1) {
            *o = l0 * a + l1 * b;
        }
    }
}

/// One plane backward, the exact adjoint of [`bilinear_plane`]: spread each output row's
/// gradient onto two rows of `tmp` (`[h, wo]`, contiguous), then each `tmp` row onto the input
/// row along W.
fn bilinear_plane_adjoint(p: &BilinearPlan, gout: &[f32], gin: &mut [f32], tmp: &mut Vec<f32>) {
    let (r, c) = (&p.rows, &p.cols);
    tmp.clear();
    tmp.resize(p.h * p.wo, 0.0);
    let mut used = vec![false; p.h];
    for (oy, grow) in gout.chunks_exact(p.wo).enumerate() {
        let (y0, y1, l0, l1) = (r.i0[oy], r.i1[oy], r.lo[oy], r.hi[oy]);
        used[y0] = true;
        used[y1] = true;
        for (d, &g) in tmp[y0 * p.wo..(y0 + 1) * p.wo].iter_mut().zip(grow) {
            *d += l0 * g;
        }
        for (d, &g) in tmp[y1 * p.wo..(y1 + 1) * p.wo].iter_mut().zip(grow) {
            *d += l1 * g;
        }
    }
    for (y, grow) in gin.chunks_exact_mut(p.w).enumerate() {
        if !used[y] {
            continue;
        }
        let src = &tmp[y * p.wo..(y + 1) * p.wo];
        for ((((&g, &x0), &x1), &l0), &l1) in src.iter().zip(&c.i0).zip(&c.i1).zip(&c.lo).zip(&c.hi)
        {
            grow[x0] += l0 * g;
            grow[x1] += l1 * g;
        }
    }
}

fn ensure_float(op: &'static str, x: &Tensor) -> Result<()> {
    crate::ensure!(
        x.dtype().is_float(),
        op,
        "input must be a float tensor (f32 on the fast path), got {:?} with shape {:?}",
        x.dtype(),
        x.dims()
    );
    Ok(())
}

/// Bilinear resize of the last two dims to `size = (H_out, W_out)`, exactly as PyTorch's
/// `F.interpolate(x, size=size, mode='bilinear', align_corners=align_corners)` (with
/// `antialias=False`, and the scale taken from the sizes: `in/out`).
///
/// `x` is `[N, C, H, W]` or `[C, H, W]`; the result is `[N, C, H_out, W_out]` (or
/// `[C, H_out, W_out]`). Per axis, following PyTorch's documented convention:
/// - `align_corners = false`: output pixel `d` samples `s = (d + 0.5)·in/out − 0.5`, clamped at 0
///   (pixel centres aligned; works for up- and downsampling, no antialiasing);
/// - `align_corners = true`: `s = d·(in − 1)/(out − 1)`, and `s = 0` when `out == 1` (corner
///   pixels aligned);
///
/// and the value is the linear blend of the two neighbouring source pixels (clamped at the last
/// one). Differentiable with respect to `x`.
///
/// On the CPU with `f32` values this runs a rayon-parallel kernel over the `N·C` planes with
/// precomputed per-axis index/weight tables, and a kernel for the backward pass; elsewhere it
/// runs [`resize_bilinear_portable`].
///
/// # Errors
/// [`Error::Op`] naming `resize_bilinear` when `x` is not rank 3 or 4, has a zero height or
/// width, is not a float tensor, or when `size` has a zero entry.
pub fn resize_bilinear(x: &Tensor, size: (usize, usize), align_corners: bool) -> Result<Tensor> {
    let g = geometry(OP_BILINEAR, x, size)?;
    ensure_float(OP_BILINEAR, x)?;
    if !fast_cpu(x) {
        return bilinear_portable_checked(x, &g, align_corners);
    }
    if g.planes == 0 {
        return Ok(Tensor::zeros(g.out_dims, x.dtype(), x.device())?);
    }
    let plan = BilinearPlan::new(g.h, g.w, g.ho, g.wo, align_corners);
    Ok(x.contiguous()?.apply_op1(BilinearFwd(Arc::new(plan)))?)
}

/// The portable path of [`resize_bilinear`]: the same values, as `Ah · X · Awᵀ` where the
/// interpolation matrices `Ah` (`[H_out, H]`) and `Aw` (`[W_out, W]`) are built on the host and
/// uploaded as constants.
///
/// Composed only of candle ops (`matmul`, `transpose`, `reshape`), so it runs on every device and
/// candle's autograd gives the gradient with respect to `x`. Accepts any float dtype (the
/// matrices are cast to `x`'s dtype). Same shapes, semantics and errors as [`resize_bilinear`]
/// (the errors name `resize_bilinear`).
pub fn resize_bilinear_portable(
    x: &Tensor,
    size: (usize, usize),
    align_corners: bool,
) -> Result<Tensor> {
    let g = geometry(OP_BILINEAR, x, size)?;
    ensure_float(OP_BILINEAR, x)?;
    bilinear_portable_checked(x, &g, align_corners)
}

fn bilinear_portable_checked(x: &Tensor, g: &Geometry, align_corners: bool) -> Result<Tensor> {
    if g.planes == 0 {
        return Ok(Tensor::zeros(g.out_dims.clone(), x.dtype(), x.device())?);
    }
    // Built in f64 on the host, rounded once to x's dtype, then uploaded (Metal has no f64).
    let host = candle_core::Device::Cpu;
    let dev = x.device();
    let rows = AxisTable::new(g.h, g.ho, align_corners);
    let cols = AxisTable::new(g.w, g.wo, align_corners);
    // Awᵀ: [W, W_out]; Ahᵀ: [H, H_out].
    let awt = Tensor::from_vec(cols.matrix_t(g.w), (g.w, g.wo), &host)?
        .to_dtype(x.dtype())?
        .to_device(dev)?;
    let aht = Tensor::from_vec(rows.matrix_t(g.h), (g.h, g.ho), &host)?
        .to_dtype(x.dtype())?
        .to_device(dev)?;
    let x3 = x.reshape((g.planes, g.h, g.w))?;
    // Along W: [P, H, W] · [W, Wo] (one 2-D product over all rows).
    let t = x3.broadcast_matmul(&awt)?;
    // Along H: [P, Wo, H] · [H, Ho], then back to [P, Ho, Wo].
    let t = t.transpose(1, 2)?.contiguous()?.broadcast_matmul(&aht)?;
    let y = t.transpose(1, 2)?.contiguous()?;
    Ok(y.reshape(g.out_dims.clone())?)
}

// ------------------------------------------------------------------------------------ nearest

/// Source indices of PyTorch's `mode='nearest'` rule for one axis resized from `in_len` to
/// `out_len` (as `F.interpolate(..., size=..., mode='nearest')` computes them).
///
/// Output `d` reads `min(floor(d · scale), in_len − 1)` with the scale `in_len / out_len`
/// computed in **`f32`** (PyTorch's CPU kernel does so) and the product rounded to `f32`; when
/// `out_len == in_len` the result is the identity and when `out_len == 2·in_len` it is `d / 2`
/// (PyTorch's exact shortcuts). This is the rule PyTorch applies to `f32`, `f16` and `u8`
/// inputs; for `f64` inputs PyTorch computes the scale in `f64` and picks another source pixel
/// in rare cases (e.g. 560 → 480, output 54: 62 for `f32`, 63 for `f64`), which vssl does not
/// follow. Note that this is not PIL's rule either: see [`nearest_indices_pil`].
/// Returns an empty vector when either length is zero.
pub fn nearest_indices_torch(in_len: usize, out_len: usize) -> Vec<usize> {
    if in_len == 0 {
        return Vec::new();
    }
    if out_len == in_len {
        return (0..out_len).collect();
    }
    if out_len == 2 * in_len {
        return (0..out_len).map(|d| d >> 1).collect();
    }
    let scale = in_len as f32 / out_len as f32;
    (0..out_len)
        .map(|d| (((d as f32) * scale).floor() as usize).min(in_len - 1))
        .collect()
}

/// Source indices of Pillow's `Image.resize(size, Image.NEAREST)` for one axis resized from
/// `in_len` to `out_len` (PIL's rule is separable; `tests/golden/resize.py` checks that).
///
/// Pillow walks the source coordinate of the output pixel centres in `f64`, accumulating:
/// `s₀ = 0.5 · in/out`, `s_{d+1} = s_d + in/out`, and output `d` reads `trunc(s_d)` (clamped to
/// `in_len − 1`). This is `floor((d + 0.5)·in/out)` up to the rounding of the running sum, which
/// does change some indices (e.g. on 854 → 960), so the accumulation is reproduced exactly. The
/// ContrastCorr evaluation resizes its label maps with this rule. Returns an empty vector when
/// either length is zero.
pub fn nearest_indices_pil(in_len: usize, out_len: usize) -> Vec<usize> {
    if in_len == 0 {
        return Vec::new();
    }
    let step = in_len as f64 / out_len as f64;
    let mut s = 0.5 * step;
    let mut idx = Vec::with_capacity(out_len);
    for _ in 0..out_len {
        idx.push((s as usize).min(in_len - 1));
        s += step;
    }
    idx
}

/// `index_select` along H then W with host-computed index vectors (skipping identities).
fn nearest_by_indices(x: &Tensor, g: &Geometry, iy: Vec<usize>, ix: Vec<usize>) -> Result<Tensor> {
    let rank = x.rank();
    let identity =
        |v: &[usize], n: usize| v.len() == n && v.iter().enumerate().all(|(i, &s)| i == s);
    let mut y = x.clone();
    if !identity(&iy, g.h) {
        let ids: Vec<u32> = iy.iter().map(|&i| i as u32).collect();
        let ids = Tensor::from_vec(ids, g.ho, x.device())?;
        y = y.index_select(&ids, rank - 2)?;
    }
    if !identity(&ix, g.w) {
        let ids: Vec<u32> = ix.iter().map(|&i| i as u32).collect();
        let ids = Tensor::from_vec(ids, g.wo, x.device())?;
        y = y.index_select(&ids, rank - 1)?;
    }
    Ok(y)
}

fn ensure_u32_indexable(op: &'static str, x: &Tensor, g: &Geometry) -> Result<()> {
    crate::ensure!(
        g.h <= u32::MAX as usize && g.w <= u32::MAX as usize,
        op,
        "input shape {:?} is too large for u32 indices",
        x.dims()
    );
    Ok(())
}

/// Nearest-neighbour resize of the last two dims to `size = (H_out, W_out)` with PyTorch's rule,
/// exactly as `F.interpolate(x, size=size, mode='nearest')` (see [`nearest_indices_torch`]).
///
/// `x` is `[N, C, H, W]` or `[C, H, W]` of any dtype (`u8`/`u32` label maps, `f32`, ...); the
/// result has the same dtype and shape `[N, C, H_out, W_out]` (or `[C, H_out, W_out]`). It is two
/// `index_select`s with host-computed indices, which is fast on the CPU, runs on every device and
/// is differentiable for float tensors (the gradient scatter-adds into the source pixels), so
/// there is no separate CPU kernel or `_portable` variant.
///
/// # Errors
/// [`Error::Op`] naming `resize_nearest` when `x` is not rank 3 or 4, has a zero height or
/// width, or when `size` has a zero entry.
pub fn resize_nearest(x: &Tensor, size: (usize, usize)) -> Result<Tensor> {
    let g = geometry(OP_NEAREST, x, size)?;
    ensure_u32_indexable(OP_NEAREST, x, &g)?;
    let (iy, ix) = (
        nearest_indices_torch(g.h, g.ho),
        nearest_indices_torch(g.w, g.wo),
    );
    nearest_by_indices(x, &g, iy, ix)
}

/// Nearest-neighbour resize of the last two dims to `size = (H_out, W_out)` with Pillow's rule,
/// as `Image.resize((W_out, H_out), Image.NEAREST)` (see [`nearest_indices_pil`]; note PIL
/// writes sizes as `(width, height)`, this function as `(height, width)`).
///
/// This is the rule the ContrastCorr evaluation uses to bring label maps back to the original
/// frame size; it differs from PyTorch's `nearest` by half a pixel. Same dtypes, shapes,
/// implementation (two `index_select`s, differentiable for floats, every device) as
/// [`resize_nearest`].
///
/// # Errors
/// [`Error::Op`] naming `resize_nearest_pil` when `x` is not rank 3 or 4, has a zero height or
/// width, or when `size` has a zero entry.
pub fn resize_nearest_pil(x: &Tensor, size: (usize, usize)) -> Result<Tensor> {
    let g = geometry(OP_NEAREST_PIL, x, size)?;
    ensure_u32_indexable(OP_NEAREST_PIL, x, &g)?;
    let (iy, ix) = (
        nearest_indices_pil(g.h, g.ho),
        nearest_indices_pil(g.w, g.wo),
    );
    nearest_by_indices(x, &g, iy, ix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_hand_values() {
        // 2 -> 4, align_corners = false: s = (d + 0.5)/2 - 0.5 = -0.25 (->0), 0.25, 0.75, 1.25.
        let t = AxisTable::new(2, 4, false);
        assert_eq!(t.i0, vec![0, 0, 0, 1]);
        assert_eq!(t.i1, vec![1, 1, 1, 1]);
        assert_eq!(t.hi, vec![0.0, 0.25, 0.75, 0.25]);
        // 3 -> 1, align_corners = true reads the first pixel.
        let t = AxisTable::new(3, 1, true);
        assert_eq!((t.i0[0], t.hi[0]), (0, 0.0));
        let m = AxisTable::new(2, 4, false).matrix(2);
        assert_eq!(m, vec![1.0f64, 0.0, 0.75, 0.25, 0.25, 0.75, 0.0, 1.0]);
    }

    /// The backward kernel is the adjoint of the forward kernel (`<A x, g> = <x, Aᵀ g>`), and
    /// the backward kernel's own backward is the forward kernel (for second-order gradients).
    #[test]
    fn backward_kernel_is_the_adjoint_and_differentiable() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        for ac in [false, true] {
            let plan = Arc::new(BilinearPlan::new(5, 4, 3, 9, ac));
            let x = Tensor::randn(0f32, 1., (2, 3, 5, 4), &dev)?;
            let g = Tensor::randn(0f32, 1., (2, 3, 3, 9), &dev)?;
            let ax = x.apply_op1(BilinearFwd(plan.clone()))?;
            let atg = g.apply_op1(BilinearBwd(plan.clone()))?;
            let lhs = ax.mul(&g)?.sum_all()?.to_scalar::<f32>()?;
            let rhs = x.mul(&atg)?.sum_all()?.to_scalar::<f32>()?;
            assert!(
                (lhs - rhs).abs() <= 1e-4 * (1.0 + lhs.abs()),
                "{lhs} vs {rhs}"
            );
            // d <Aᵀ g, x> / d g = A x.
            let gv = candle_core::Var::from_tensor(&g)?;
            let y = gv.as_tensor().apply_op1(BilinearBwd(plan.clone()))?;
            let grads = y.mul(&x)?.sum_all()?.backward()?;
            let dg = grads
                .get(gv.as_tensor())
                .ok_or_else(|| Error::op("test", "no gradient through the backward kernel"))?;
            let diff = dg.sub(&ax)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff <= 1e-5, "{diff}");
        }
        Ok(())
    }
}
