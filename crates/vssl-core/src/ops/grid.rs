//! Spatial transformer sampling: [`affine_grid`] and bilinear [`grid_sample`].
//!
//! These match PyTorch's `torch.nn.functional.affine_grid` and
//! `torch.nn.functional.grid_sample(mode="bilinear", padding_mode="zeros")`, whose semantics come
//! from the spatial transformer networks of Jaderberg et al. (2015) and are described in the
//! PyTorch documentation. A grid holds, for every output pixel, the `(x, y)` location to read in
//! the input, in normalised coordinates where `-1` and `+1` are the left/top and right/bottom
//! edges of the input:
//!
//! - `align_corners = true`: `-1` and `+1` are the *centres* of the corner pixels,
//!   `x = (gx + 1) / 2 · (W − 1)`;
//! - `align_corners = false`: `-1` and `+1` are the outer *edges* of the corner pixels,
//!   `x = ((gx + 1) · W − 1) / 2`.
//!
//! The value at `(x, y)` blends the four pixels around it bilinearly; taps that fall outside the
//! input read zero. Both ops are differentiable: [`grid_sample`] gives gradients to its input and
//! to its grid (how a crop box learns where to look), [`affine_grid`] to `θ`.
//!
//! At a grid point that lands exactly on a pixel centre the gradient to the grid is
//! discontinuous; like PyTorch, the top-left tap is `floor(x)` there, so the gradient is the
//! one-sided difference towards `+x` / `+y`.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{cpu_f32, ensure_f32, fast_cpu, zeroed};
use crate::{Error, Result, ensure};

const AFFINE: &str = "affine_grid";
const SAMPLE: &str = "grid_sample";
const SAMPLE_BWD: &str = "grid_sample_backward";
/// Grid points per task of the backward kernel's gradient-to-grid pass.
const POINTS_PER_TASK: usize = 256;

/// The sampling grid of a batch of 2-D affine transforms, like PyTorch's
/// `torch.nn.functional.affine_grid(theta, (N, C, H, W), align_corners)`.
///
/// `theta` is `[N, 2, 3]`: for each sample, the matrix that maps an output location
/// `(x, y, 1)` in normalised coordinates to the input location to read. `size` is the
/// `(N, C, H, W)` size of the output the grid will produce (`C` is not used). The result is
/// `[N, H, W, 2]` with `x` then `y` in the last dimension, ready for [`grid_sample`] with the same
/// `align_corners`:
///
/// - `align_corners = true`: output pixel `j` of `W` sits at `−1 + 2j / (W − 1)` (`0` when
///   `W = 1`);
/// - `align_corners = false`: output pixel `j` sits at `−1 + (2j + 1) / W`.
///
/// The op is a single matrix product of a constant base grid `[H·W, 3]` with `θᵀ`, built from
/// candle ops only: it is both the fast CPU path and the portable path (there is no separate
/// `affine_grid_portable`), and autograd gives the gradient to `theta`.
///
/// # Errors
///
/// An [`Error::Op`] naming `affine_grid` when `theta` is not an `f32` tensor of shape
/// `[N, 2, 3]`, when `size.0` differs from `N`, or when `H` or `W` is zero.
pub fn affine_grid(
    theta: &Tensor,
    size: (usize, usize, usize, usize),
    align_corners: bool,
) -> Result<Tensor> {
    let (n, _c, h, w) = size;
    ensure!(
        theta.rank() == 3 && theta.dim(1)? == 2 && theta.dim(2)? == 3,
        AFFINE,
        "theta must be [N, 2, 3], got {:?}",
        theta.dims()
    );
    ensure_f32(AFFINE, "theta", theta)?;
    ensure!(
        theta.dim(0)? == n,
        AFFINE,
        "size {size:?} asks for N = {n} but theta {:?} holds {} matrices",
        theta.dims(),
        theta.dim(0)?
    );
    ensure!(
        h > 0 && w > 0,
        AFFINE,
        "output height and width must be positive, got size {size:?}"
    );
    let xs = base_coords(w, align_corners);
    let ys = base_coords(h, align_corners);
    // base^T: rows x, y, 1 over the H·W output pixels (row-major, x fastest).
    let hw = h * w;
    let mut base = Vec::with_capacity(3 * hw);
    for _ in 0..h {
        base.extend_from_slice(&xs);
    }
    for &y in &ys {
        base.extend(std::iter::repeat_n(y, w));
    }
    base.extend(std::iter::repeat_n(1f32, hw));
    let base_t = Tensor::from_vec(base, (3, hw), theta.device())?;
    // [N·2, 3] x [3, H·W] -> [N, 2, H, W] -> [N, H, W, 2]
    let grid = theta
        .contiguous()?
        .reshape((n * 2, 3))?
        .matmul(&base_t)?
        .reshape((n, 2, h, w))?
        .permute((0, 2, 3, 1))?
        .contiguous()?;
    Ok(grid)
}

/// Normalised coordinates of the `len` pixel positions along one axis of an affine grid.
fn base_coords(len: usize, align_corners: bool) -> Vec<f32> {
    (0..len)
        .map(|j| {
            let j = j as f64;
            let len = len as f64;
            let v = if align_corners {
                if len > 1.0 {
                    -1.0 + 2.0 * j / (len - 1.0)
                } else {
                    0.0
                }
            } else {
                -1.0 + (2.0 * j + 1.0) / len
            };
            v as f32
        })
        .collect()
}

/// Checks the arguments of both grid_sample paths; returns `(N, C, H, W, Ho, Wo)`.
fn check_sample(
    input: &Tensor,
    grid: &Tensor,
) -> Result<(usize, usize, usize, usize, usize, usize)> {
    ensure!(
        input.rank() == 4,
        SAMPLE,
        "input must be [N, C, H, W], got {:?} (grid {:?})",
        input.dims(),
        grid.dims()
    );
    ensure!(
        grid.rank() == 4,
        SAMPLE,
        "grid must be [N, Ho, Wo, 2], got {:?} (input {:?})",
        grid.dims(),
        input.dims()
    );
    let (n, c, h, w) = input.dims4()?;
    let (gn, ho, wo, two) = grid.dims4()?;
    ensure!(
        two == 2,
        SAMPLE,
        "the last dimension of grid must be 2 (x, y), got grid {:?} (input {:?})",
        grid.dims(),
        input.dims()
    );
    ensure!(
        gn == n,
        SAMPLE,
        "input {:?} and grid {:?} disagree on the batch size",
        input.dims(),
        grid.dims()
    );
    ensure!(
        h > 0 && w > 0,
        SAMPLE,
        "input must have a non-empty height and width, got {:?}",
        input.dims()
    );
    ensure_f32(SAMPLE, "input", input)?;
    ensure_f32(SAMPLE, "grid", grid)?;
    ensure!(
        input.device().same_device(grid.device()),
        SAMPLE,
        "input {:?} and grid {:?} are on different devices",
        input.dims(),
        grid.dims()
    );
    Ok((n, c, h, w, ho, wo))
}

/// Samples `input` at the locations of `grid` with bilinear interpolation and zero padding, like
/// PyTorch's `torch.nn.functional.grid_sample(input, grid, mode="bilinear",
/// padding_mode="zeros", align_corners)`.
///
/// `input` is `[N, C, H, W]`, `grid` is `[N, Ho, Wo, 2]` holding normalised `(x, y)` locations
/// (see the [module docs](self) for how `align_corners` maps them to pixels); the result is
/// `[N, C, Ho, Wo]`. Locations outside the input read zero for every tap that falls outside.
///
/// Differentiable with respect to both `input` and `grid`. On the CPU with `f32` tensors this runs
/// a multi-threaded kernel with a hand-written backward (its coordinate arithmetic is done in
/// `f64`); on any other device it runs [`grid_sample_portable`].
///
/// # Errors
///
/// An [`Error::Op`] naming `grid_sample` and the shapes when `input` is not rank 4, `grid` is not
/// rank 4, the last dimension of `grid` is not 2, the batch sizes differ, the input has zero
/// height or width, either tensor is not `f32`, or they sit on different devices.
pub fn grid_sample(input: &Tensor, grid: &Tensor, align_corners: bool) -> Result<Tensor> {
    let (n, c, _h, _w, ho, wo) = check_sample(input, grid)?;
    if !(fast_cpu(input) && fast_cpu(grid)) {
        return grid_sample_portable(input, grid, align_corners);
    }
    if n * c * ho * wo == 0 {
        return Ok(Tensor::zeros((n, c, ho, wo), DType::F32, input.device())?);
    }
    let input = input.contiguous()?;
    let grid = grid.contiguous()?;
    Ok(input.apply_op2(&grid, GridSample { align_corners })?)
}

/// The portable [`grid_sample`]: the same computation composed of differentiable candle ops
/// (`floor`, comparisons, `index_select` on the flattened input, products with the bilinear
/// weights), so it runs on any device and autograd yields the gradients to `input` and `grid`.
///
/// Shapes, semantics (PyTorch's bilinear `grid_sample` with zero padding) and errors are those of
/// [`grid_sample`]. Arithmetic is in `f32`, so a grid point whose unnormalised coordinate is not
/// exactly representable may fall on the other side of a pixel centre than in an `f64`
/// computation (the value is continuous there, the gradient to the grid is not).
pub fn grid_sample_portable(input: &Tensor, grid: &Tensor, align_corners: bool) -> Result<Tensor> {
    let (n, c, h, w, ho, wo) = check_sample(input, grid)?;
    let dev = input.device();
    if n * c * ho * wo == 0 {
        return Ok(Tensor::zeros((n, c, ho, wo), DType::F32, dev)?);
    }
    let p = ho * wo;
    // [N·H·W, C]: one row per input pixel, so one index_select gathers all channels of a tap.
    let rows = input.permute((0, 2, 3, 1))?.reshape((n * h * w, c))?;
    let grid = grid.reshape((n * p, 2))?;
    let gx = grid.narrow(1, 0, 1)?;
    let gy = grid.narrow(1, 1, 1)?;
    let ix = unnormalise(&gx, w, align_corners)?;
    let iy = unnormalise(&gy, h, align_corners)?;
    let x0 = ix.floor()?.detach();
    let y0 = iy.floor()?.detach();
    let x1 = (&x0 + 1.0)?;
    let y1 = (&y0 + 1.0)?;
    // Bilinear weights, differentiable through ix / iy.
    let wx1 = ix.sub(&x0)?;
    let wx0 = x1.sub(&ix)?;
    let wy1 = iy.sub(&y0)?;
    let wy0 = y1.sub(&iy)?;
    // Row of the first pixel of each sample in `rows`.
    let offsets: Vec<u32> = (0..n)
        .flat_map(|b| std::iter::repeat_n(b * h * w, p))
        .map(|v| v as u32)
        .collect();
    let offsets = Tensor::from_vec(offsets, (n * p, 1), dev)?;
    let w_t = Tensor::new(w as u32, dev)?;
    let zero = Tensor::zeros((n * p, 1), DType::F32, dev)?;
    let mut out: Option<Tensor> = None;
    for (xc, yc, wxc, wyc) in [
        (&x0, &y0, &wx0, &wy0),
        (&x1, &y0, &wx1, &wy0),
        (&x0, &y1, &wx0, &wy1),
        (&x1, &y1, &wx1, &wy1),
    ] {
        let valid = in_range(xc, w)?.mul(&in_range(yc, h)?)?;
        let xi = xc.clamp(0f64, (w - 1) as f64)?.to_dtype(DType::U32)?;
        let yi = yc.clamp(0f64, (h - 1) as f64)?.to_dtype(DType::U32)?;
        let idx = yi
            .broadcast_mul(&w_t)?
            .add(&xi)?
            .add(&offsets)?
            .flatten_all()?;
        let vals = rows.index_select(&idx, 0)?; // [N·P, C]
        // where_cond, not a product with the mask: an infinite coordinate gives NaN weights,
        // and PyTorch reads such taps as plain zeros.
        let weight = valid.where_cond(&wxc.mul(wyc)?, &zero)?; // [N·P, 1]
        let term = vals.broadcast_mul(&weight)?;
        out = Some(match out {
            None => term,
            Some(acc) => acc.add(&term)?,
        });
    }
    let out = out.ok_or_else(|| Error::op(SAMPLE, "no bilinear taps"))?;
    Ok(out
        .reshape((n, ho, wo, c))?
        .permute((0, 3, 1, 2))?
        .contiguous()?)
}

/// Pixel coordinate of normalised coordinates `g` along an axis of `len` pixels.
fn unnormalise(g: &Tensor, len: usize, align_corners: bool) -> Result<Tensor> {
    let (mul, add) = scale_shift(len, align_corners);
    if mul == 0.0 {
        // A 1-pixel axis with align_corners: candle's affine drops the (zero) gradient when
        // mul is 0, so multiply by a zero tensor to keep the grid in the graph.
        return Ok(g.mul(&g.zeros_like()?)?.affine(1.0, add)?);
    }
    Ok(g.affine(mul, add)?)
}

/// `(mul, add)` with `x = mul · g + add` mapping normalised to pixel coordinates.
fn scale_shift(len: usize, align_corners: bool) -> (f64, f64) {
    let len = len as f64;
    if align_corners {
        ((len - 1.0) / 2.0, (len - 1.0) / 2.0)
    } else {
        (len / 2.0, (len - 1.0) / 2.0)
    }
}

/// 1 where the integer-valued coordinate `v` lies in `0..len`, else 0 (`u8`).
fn in_range(v: &Tensor, len: usize) -> Result<Tensor> {
    let lo = v.ge(0f64)?;
    let hi = v.le((len - 1) as f64)?;
    Ok(lo.mul(&hi)?)
}

/// Geometry shared by the CPU kernels.
#[derive(Clone, Copy)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    align_corners: bool,
}

/// One grid point's bilinear taps: flat in-image offsets of nw, ne, sw, se, whether each lies
/// inside the image, and the 1-D weights `(x1 − x, x − x0)` and `(y1 − y, y − y0)`.
#[derive(Clone, Copy, Default)]
struct Tap {
    off: [usize; 4],
    valid: [bool; 4],
    wx: [f64; 2],
    wy: [f64; 2],
}

impl Geom {
    fn tap(&self, gx: f32, gy: f32) -> Tap {
        let (mx, ax) = scale_shift(self.w, self.align_corners);
        let (my, ay) = scale_shift(self.h, self.align_corners);
        let ix = f64::from(gx) * mx + ax;
        let iy = f64::from(gy) * my + ay;
        let x0 = ix.floor();
        let y0 = iy.floor();
        let x1 = x0 + 1.0;
        let y1 = y0 + 1.0;
        let wmax = (self.w - 1) as f64;
        let hmax = (self.h - 1) as f64;
        let xs = [x0, x1];
        let ys = [y0, y1];
        let mut tap = Tap {
            wx: [x1 - ix, ix - x0],
            wy: [y1 - iy, iy - y0],
            ..Tap::default()
        };
        for k in 0..4 {
            let (x, y) = (xs[k & 1], ys[k >> 1]);
            // Comparisons in f64 first: NaN and huge values are simply out of range.
            if x >= 0.0 && x <= wmax && y >= 0.0 && y <= hmax {
                tap.valid[k] = true;
                tap.off[k] = (y as usize) * self.w + (x as usize);
            }
        }
        tap
    }

    /// The taps of every grid point, `[N·Ho·Wo]`.
    fn taps(&self, grid: &[f32]) -> Vec<Tap> {
        grid.par_chunks(2)
            .map(|g| match g {
                [gx, gy] => self.tap(*gx, *gy),
                _ => Tap::default(),
            })
            .collect()
    }

    fn check_len(
        &self,
        op: &'static str,
        what: &str,
        got: usize,
        want: usize,
    ) -> candle_core::Result<()> {
        if got == want {
            Ok(())
        } else {
            Err(Error::op(op, format!("{what} holds {got} values, expected {want}")).into())
        }
    }
}

/// Geometry of contiguous `input` `[N, C, H, W]` and `grid` `[N, Ho, Wo, 2]` layouts.
fn geom(
    op: &'static str,
    l_in: &Layout,
    l_grid: &Layout,
    align_corners: bool,
) -> candle_core::Result<Geom> {
    let (n, c, h, w) = l_in.shape().dims4()?;
    let (gn, ho, wo, two) = l_grid.shape().dims4()?;
    if gn != n || two != 2 || h == 0 || w == 0 {
        return Err(Error::op(
            op,
            format!(
                "bad shapes: input {:?}, grid {:?}",
                l_in.dims(),
                l_grid.dims()
            ),
        )
        .into());
    }
    Ok(Geom {
        n,
        c,
        h,
        w,
        ho,
        wo,
        align_corners,
    })
}

/// The fast CPU forward of [`grid_sample`]; its backward is [`GridSampleBackward`].
struct GridSample {
    align_corners: bool,
}

impl CustomOp2 for GridSample {
    fn name(&self) -> &'static str {
        SAMPLE
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = geom(SAMPLE, l1, l2, self.align_corners)?;
        let input = cpu_f32(SAMPLE, s1, l1)?;
        let grid = cpu_f32(SAMPLE, s2, l2)?;
        let (hw, p) = (g.h * g.w, g.ho * g.wo);
        g.check_len(SAMPLE, "input", input.len(), g.n * g.c * hw)?;
        g.check_len(SAMPLE, "grid", grid.len(), g.n * p * 2)?;
        let shape = Shape::from((g.n, g.c, g.ho, g.wo));
        let mut out = vec![0f32; g.n * g.c * p];
        if out.is_empty() {
            return Ok((CpuStorage::F32(out), shape));
        }
        let taps = g.taps(grid);
        out.par_chunks_mut(p).enumerate().for_each(|(plane, dst)| {
            let b = plane / g.c;
            let src = input.get(plane * hw..(plane + 1) * hw).unwrap_or(&[]);
            let taps = taps.get(b * p..(b + 1) * p).unwrap_or(&[]);
            for (o, t) in dst.iter_mut().zip(taps) {
                let mut acc = 0f64;
                for k in 0..4 {
                    if t.valid[k] {
                        let v = src.get(t.off[k]).copied().unwrap_or(0.0);
                        acc += f64::from(v) * t.wx[k & 1] * t.wy[k >> 1];
                    }
                }
                *o = acc as f32;
            }
        });
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(
        &self,
        input: &Tensor,
        grid: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_res = grad_res.contiguous()?;
        let both = input.apply_op3_no_bwd(
            grid,
            &grad_res,
            &GridSampleBackward {
                align_corners: self.align_corners,
            },
        )?;
        let n_in = input.elem_count();
        let gin = both.narrow(0, 0, n_in)?.reshape(input.dims())?;
        let ggrid = both
            .narrow(0, n_in, grid.elem_count())?
            .reshape(grid.dims())?;
        Ok((Some(gin), Some(ggrid)))
    }
}

/// Backward of [`GridSample`] on the CPU: from `input`, `grid` and the output gradient, one flat
/// tensor holding the gradient to `input` followed by the gradient to `grid`.
struct GridSampleBackward {
    align_corners: bool,
}

impl CustomOp3 for GridSampleBackward {
    fn name(&self) -> &'static str {
        SAMPLE_BWD
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = geom(SAMPLE_BWD, l1, l2, self.align_corners)?;
        let input = cpu_f32(SAMPLE_BWD, s1, l1)?;
        let grid = cpu_f32(SAMPLE_BWD, s2, l2)?;
        let gout = cpu_f32(SAMPLE_BWD, s3, l3)?;
        let (hw, p) = (g.h * g.w, g.ho * g.wo);
        let n_in = g.n * g.c * hw;
        let n_grid = g.n * p * 2;
        g.check_len(SAMPLE_BWD, "input", input.len(), n_in)?;
        g.check_len(SAMPLE_BWD, "grid", grid.len(), n_grid)?;
        g.check_len(SAMPLE_BWD, "output gradient", gout.len(), g.n * g.c * p)?;
        let mut buf = zeroed(n_in + n_grid);
        if g.n * g.c * p == 0 {
            return Ok((CpuStorage::F32(buf), Shape::from(n_in + n_grid)));
        }
        let taps = g.taps(grid);
        let (gin, ggrid) = buf.split_at_mut(n_in);

        // Gradient to the input: every (n, c) plane scatters only into its own plane.
        gin.par_chunks_mut(hw).enumerate().for_each(|(plane, dst)| {
            let b = plane / g.c;
            let go = gout.get(plane * p..(plane + 1) * p).unwrap_or(&[]);
            let taps = taps.get(b * p..(b + 1) * p).unwrap_or(&[]);
            for (&gv, t) in go.iter().zip(taps) {
                let gv = f64::from(gv);
                for k in 0..4 {
                    if t.valid[k]
                        && let Some(d) = dst.get_mut(t.off[k])
                    {
                        *d += (gv * t.wx[k & 1] * t.wy[k >> 1]) as f32;
                    }
                }
            }
        });

        // Gradient to the grid: each point sums over the channels. Tasks own a run of points
        // of one sample and walk the channels in the outer loop, so each pass reads one input
        // plane and one output-gradient plane (cache-friendly for many channels).
        let (mx, _) = scale_shift(g.w, g.align_corners);
        let (my, _) = scale_shift(g.h, g.align_corners);
        ggrid
            .par_chunks_mut(2 * p)
            .enumerate()
            .for_each(|(b, per_sample)| {
                per_sample
                    .par_chunks_mut(2 * POINTS_PER_TASK)
                    .enumerate()
                    .for_each(|(j, dst)| {
                        let q0 = j * POINTS_PER_TASK;
                        let len = dst.len() / 2;
                        let taps = taps.get(b * p + q0..b * p + q0 + len).unwrap_or(&[]);
                        let mut acc = vec![[0f64; 2]; len];
                        for ch in 0..g.c {
                            let plane = b * g.c + ch;
                            let src = input.get(plane * hw..(plane + 1) * hw).unwrap_or(&[]);
                            let go = gout
                                .get(plane * p + q0..plane * p + q0 + len)
                                .unwrap_or(&[]);
                            for ((a, t), &gv) in acc.iter_mut().zip(taps).zip(go) {
                                let gv = f64::from(gv);
                                let mut v = [0f64; 4];
                                for ((vk, &ok), &off) in v.iter_mut().zip(&t.valid).zip(&t.off) {
                                    if ok {
                                        *vk = f64::from(src.get(off).copied().unwrap_or(0.0));
                                    }
                                }
                                // d/dx: (ne − nw)·wy0 + (se − sw)·wy1;
                                // d/dy: (sw − nw)·wx0 + (se − ne)·wx1.
                                a[0] += gv * ((v[1] - v[0]) * t.wy[0] + (v[3] - v[2]) * t.wy[1]);
                                a[1] += gv * ((v[2] - v[0]) * t.wx[0] + (v[3] - v[1]) * t.wx[1]);
                            }
                        }
                        for (d, a) in dst.chunks_mut(2).zip(&acc) {
                            if let [dx, dy] = d {
                                *dx = (a[0] * mx) as f32;
                                *dy = (a[1] * my) as f32;
                            }
                        }
                    });
            });
        Ok((CpuStorage::F32(buf), Shape::from(n_in + n_grid)))
    }
}
