//! Image-level operations on 8-bit, 3-channel frames, reproducing the OpenCV / numpy operations of
//! ContrastCorr's `libs/transforms_multi.py`.
//!
//! They work on any interleaved 3-channel `u8` image held in a [`Frame`]: the reference applies
//! them to 8-bit **Lab** frames (it converts BGR→Lab when it reads a frame, before augmenting), so
//! the pipelines of [`super`] expect Lab content (see [`super::rgb_to_lab_frame`]); the geometry
//! does not care.
//!
//! Copies are avoided where the reference makes several: padding, cropping and flipping are one
//! gather through per-axis index maps, and the rotation reads the original image through the
//! padding's index maps instead of building the 3×-padded image.

use rayon::prelude::*;

use crate::frame::Frame;
use crate::{Error, Result};

/// Rows per parallel task in the per-row kernels (small images stay on one thread).
const MIN_ROWS_PER_TASK: usize = 16;

/// The index map of the reference's reflection padding along one axis of length `n`.
///
/// The reference (`pad_reflection`) mirrors the **start** of the axis without repeating the edge
/// (`x[t], …, x[1] | x[0], …` like `cv2.BORDER_REFLECT_101`) and the **end** with the edge
/// (`… x[n−1] | x[n−1], x[n−2], …` like `cv2.BORDER_REFLECT`). A pad longer than `n − 1` is done
/// in rounds: pad by at most `len − 1` on each side, then pad the result again.
///
/// Entry `i` of the result is the source index of output position `i` (length `before + n +
/// after`).
///
/// # Errors
/// [`Error::Op`] when a non-zero pad is asked of an axis of length 1 (the reference loops forever)
/// or 0.
pub fn reflect_pad_map(n: usize, before: usize, after: usize) -> Result<Vec<usize>> {
    let mut map: Vec<usize> = (0..n).collect();
    let (mut before, mut after) = (before, after);
    while before > 0 || after > 0 {
        let len = map.len();
        if len < 2 {
            return Err(Error::op(
                "reflect_pad_map",
                format!("cannot reflection-pad an axis of length {n} (needs at least 2)"),
            ));
        }
        let t = before.min(len - 1);
        let b = after.min(len - 1);
        let mut next = Vec::with_capacity(len + t + b);
        next.extend((1..=t).rev().map(|i| map[i]));
        next.extend_from_slice(&map);
        next.extend((0..b).map(|i| map[len - 1 - i]));
        map = next;
        before -= t;
        after -= b;
    }
    Ok(map)
}

/// Builds `out[y][x] = img[rows[y]][cols[x]]` (every index must be in range).
fn gather(img: &Frame, rows: &[usize], cols: &[usize]) -> Frame {
    let (w, _) = img.dimensions();
    let src = img.as_raw();
    let ow = cols.len();
    let mut out = vec![0u8; rows.len() * ow * 3];
    // Column runs that are contiguous in the source are copied with memcpy.
    let contiguous = cols.windows(2).all(|p| p[1] == p[0] + 1);
    out.par_chunks_mut(ow * 3)
        .with_min_len(MIN_ROWS_PER_TASK)
        .zip(rows.par_iter())
        .for_each(|(dst, &r)| {
            let row = &src[r * w as usize * 3..(r + 1) * w as usize * 3];
            match cols.first() {
                Some(&c0) if contiguous => dst.copy_from_slice(&row[c0 * 3..(c0 + ow) * 3]),
                _ => {
                    for (d, &c) in dst.chunks_exact_mut(3).zip(cols) {
                        d.copy_from_slice(&row[c * 3..c * 3 + 3]);
                    }
                }
            }
        });
    frame_from(ow, rows.len(), out)
}

/// Wraps a buffer of the right length into a [`Frame`].
fn frame_from(w: usize, h: usize, buf: Vec<u8>) -> Frame {
    // The buffer is always w·h·3 long here, so `from_raw` cannot fail; fall back to an empty
    // frame of the right size rather than panicking.
    let (w32, h32) = (w as u32, h as u32);
    Frame::from_raw(w32, h32, buf).unwrap_or_else(|| Frame::new(w32, h32))
}

/// Checks that a frame is not empty.
fn check_nonempty(op: &'static str, img: &Frame) -> Result<()> {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Err(Error::op(op, format!("empty image ({w}x{h})")));
    }
    Ok(())
}

/// Reflection-pads a frame as the reference's `pad_image('reflection', …)` does (see
/// [`reflect_pad_map`]: reflect-101 at top/left, edge-repeating reflection at bottom/right).
///
/// # Errors
/// [`Error::Op`] (`pad_reflect`) for an empty image, or a pad on an axis of length 1.
pub fn pad_reflect(
    img: &Frame,
    top: usize,
    bottom: usize,
    left: usize,
    right: usize,
) -> Result<Frame> {
    check_nonempty("pad_reflect", img)?;
    let (w, h) = img.dimensions();
    let rows = reflect_pad_map(h as usize, top, bottom)?;
    let cols = reflect_pad_map(w as usize, left, right)?;
    Ok(gather(img, &rows, &cols))
}

/// The `width × height` window of `img` whose top-left corner is `(x, y)`.
///
/// # Errors
/// [`Error::Op`] (`crop`) when the window does not fit in the image.
pub fn crop(img: &Frame, x: usize, y: usize, width: usize, height: usize) -> Result<Frame> {
    let (w, h) = img.dimensions();
    if x + width > w as usize || y + height > h as usize {
        return Err(Error::op(
            "crop",
            format!("window {width}x{height} at ({x}, {y}) does not fit in a {w}x{h} image"),
        ));
    }
    let rows: Vec<usize> = (y..y + height).collect();
    let cols: Vec<usize> = (x..x + width).collect();
    Ok(gather(img, &rows, &cols))
}

/// The mirror image of `img` about its vertical axis (`cv2.flip(img, 1)`).
pub fn flip_horizontal(img: &Frame) -> Frame {
    let (w, h) = img.dimensions();
    let rows: Vec<usize> = (0..h as usize).collect();
    let cols: Vec<usize> = (0..w as usize).rev().collect();
    gather(img, &rows, &cols)
}

/// How [`crop_or_pad`] reaches a `size × size` window along one axis of length `n` with a random
/// offset `off` (used only when `n > size`): the reference's `RandomCrop` pads a short axis
/// symmetrically (`(size − n) / 2` before, the rest after) with its reflection and crops a long
/// one.
fn crop_or_pad_map(n: usize, size: usize, off: usize) -> Result<Vec<usize>> {
    if n < size {
        let before = (size - n) / 2;
        reflect_pad_map(n, before, size - n - before)
    } else {
        Ok((off..off + size).collect())
    }
}

/// The reference's `RandomCrop` for one frame, once the offsets are drawn: a `size × size`
/// window at `(x, y)`; an axis shorter than `size` is reflection-padded symmetrically instead
/// (its offset is ignored), exactly as `transforms_multi.RandomCrop` does.
///
/// # Errors
/// [`Error::Op`] (`crop_or_pad`) when the window does not fit or a padded axis has length 1.
pub fn crop_or_pad(img: &Frame, x: usize, y: usize, size: usize) -> Result<Frame> {
    check_nonempty("crop_or_pad", img)?;
    let (w, h) = img.dimensions();
    let (w, h) = (w as usize, h as usize);
    if (w >= size && x + size > w) || (h >= size && y + size > h) {
        return Err(Error::op(
            "crop_or_pad",
            format!("window {size}x{size} at ({x}, {y}) does not fit in a {w}x{h} image"),
        ));
    }
    let cols = crop_or_pad_map(w, size, x)?;
    let rows = crop_or_pad_map(h, size, y)?;
    Ok(gather(img, &rows, &cols))
}

// ------------------------------------------------------------------------------------------------
// Rotation.

/// Fixed-point bits of OpenCV's `warpAffine` coordinates (`AB_BITS`).
const AB_BITS: u32 = 10;

/// `cvRound` of a double: round half to even, saturated to `i32`.
fn cv_round(v: f64) -> i32 {
    let r = v.round_ties_even();
    r.clamp(i32::MIN as f64, i32::MAX as f64) as i32
}

/// Rotates `img` by `angle` degrees (counter-clockwise, as `cv2.getRotationMatrix2D`) about its
/// centre, the reference's `RandomRotate` for a drawn angle: the frame is reflection-padded by
/// `(h, h, w, w)` (see [`reflect_pad_map`]), warped with `cv2.warpAffine(…, INTER_NEAREST)` about
/// the padded image's centre `(3w/2, 3h/2)`, and the central `w × h` window is kept.
///
/// The warp follows OpenCV's nearest-neighbour path: the inverse of the rotation matrix (inverted
/// as `cv::invertAffineTransform` does, in `f64`), source coordinates in 10-bit fixed point
/// (`cvRound(m·x·1024)` per column, `cvRound((m·y + c)·1024) + 512` per row, then `>> 10`), and
/// zero outside the padded image. The padded image is never built: source positions are mapped
/// back to the original frame through the padding's index maps.
///
/// # Errors
/// [`Error::Op`] (`rotate`) when a side of the image is shorter than 2 pixels (the reference's
/// padding cannot handle it).
pub fn rotate(img: &Frame, angle: i32) -> Result<Frame> {
    check_nonempty("rotate", img)?;
    let (w, h) = img.dimensions();
    let (w, h) = (w as usize, h as usize);
    if angle == 0 {
        // The identity matrix maps every pixel to itself exactly.
        return Ok(img.clone());
    }
    let rows = reflect_pad_map(h, h, h)?;
    let cols = reflect_pad_map(w, w, w)?;
    let (pw, ph) = (cols.len(), rows.len()); // 3w, 3h
    // cv2.getRotationMatrix2D((pw/2, ph/2), angle, 1.0)
    let (cx, cy) = (pw as f64 / 2.0, ph as f64 / 2.0);
    let rad = angle as f64 * (std::f64::consts::PI / 180.0);
    let (alpha, beta) = (rad.cos(), rad.sin());
    let m = [
        alpha,
        beta,
        (1.0 - alpha) * cx - beta * cy,
        -beta,
        alpha,
        beta * cx + (1.0 - alpha) * cy,
    ];
    // cv::invertAffineTransform
    let d = m[0] * m[4] - m[1] * m[3];
    let d = if d != 0.0 { 1.0 / d } else { 0.0 };
    let (a11, a22, a12, a21) = (m[4] * d, m[0] * d, -m[1] * d, -m[3] * d);
    let b1 = -a11 * m[2] - a12 * m[5];
    let b2 = -a21 * m[2] - a22 * m[5];
    let scale = (1u32 << AB_BITS) as f64;
    let round_delta = 1i32 << (AB_BITS - 1);
    // Only the central window [w, 2w) × [h, 2h) of the warped image is kept.
    let adelta: Vec<i32> = (w..2 * w)
        .map(|x| cv_round(a11 * x as f64 * scale))
        .collect();
    let bdelta: Vec<i32> = (w..2 * w)
        .map(|x| cv_round(a21 * x as f64 * scale))
        .collect();
    let src = img.as_raw();
    let mut out = vec![0u8; w * h * 3];
    out.par_chunks_mut(w * 3)
        .with_min_len(MIN_ROWS_PER_TASK)
        .enumerate()
        .for_each(|(oy, dst)| {
            let y = (oy + h) as f64;
            let x0 = cv_round((a12 * y + b1) * scale) + round_delta;
            let y0 = cv_round((a22 * y + b2) * scale) + round_delta;
            for ((d, &ad), &bd) in dst.chunks_exact_mut(3).zip(&adelta).zip(&bdelta) {
                let sx = (x0 + ad) >> AB_BITS;
                let sy = (y0 + bd) >> AB_BITS;
                if sx >= 0 && sy >= 0 && (sx as usize) < pw && (sy as usize) < ph {
                    let (r, c) = (rows[sy as usize], cols[sx as usize]);
                    let o = (r * w + c) * 3;
                    d.copy_from_slice(&src[o..o + 3]);
                }
            }
        });
    Ok(frame_from(w, h, out))
}

// ------------------------------------------------------------------------------------------------
// Resize.

/// Interpolation of [`resize`], named after OpenCV's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// `cv2.INTER_LINEAR` (2 taps): `ResizeandPad`, and the per-frame resize to multiples of 64.
    Linear,
    /// `cv2.INTER_CUBIC` (4 taps, a = −0.75): `RandomScale` when enlarging.
    Cubic,
    /// `cv2.INTER_LANCZOS4` (8 taps): `RandomScale` when shrinking.
    Lanczos4,
}

/// OpenCV's fixed-point coefficient scale for 8-bit resizes (`INTER_RESIZE_COEF_BITS` = 11).
const COEF_BITS: u32 = 11;

/// Taps of one axis: `ksize` source indices (already clamped to the axis) and fixed-point
/// coefficients per output position.
struct Taps {
    ksize: usize,
    idx: Vec<usize>,
    coef: Vec<i32>,
}

/// `cv::interpolateCubic` (float, A = −0.75).
fn cubic_coeffs(x: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let c0 = ((A * (x + 1.0) - 5.0 * A) * (x + 1.0) + 8.0 * A) * (x + 1.0) - 4.0 * A;
    let c1 = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let c2 = ((A + 2.0) * (1.0 - x) - (A + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0;
    [c0, c1, c2, 1.0 - c0 - c1 - c2]
}

/// `cv::interpolateLanczos4` (a windowed sinc with 8 taps, normalised to sum 1).
fn lanczos4_coeffs(x: f32) -> [f32; 8] {
    const S45: f64 = std::f64::consts::FRAC_1_SQRT_2;
    const CS: [[f64; 2]; 8] = [
        [1.0, 0.0],
        [-S45, -S45],
        [0.0, 1.0],
        [S45, -S45],
        [-1.0, 0.0],
        [S45, S45],
        [0.0, -1.0],
        [-S45, S45],
    ];
    let quarter_pi = std::f64::consts::PI * 0.25;
    let y0 = -((x + 3.0) as f64) * quarter_pi;
    let (s0, c0) = (y0.sin(), y0.cos());
    let mut c = [0f32; 8];
    let mut sum = 0f32;
    for (i, (ci, cs)) in c.iter_mut().zip(CS).enumerate() {
        let y0i = x + 3.0 - i as f32;
        *ci = if y0i.abs() >= 1e-6 {
            let y = -(y0i as f64) * quarter_pi;
            ((cs[0] * s0 + cs[1] * c0) / (y * y)) as f32
        } else {
            1e30
        };
        sum += *ci;
    }
    let inv = 1.0 / sum;
    for ci in &mut c {
        *ci *= inv;
    }
    c
}

/// The taps of OpenCV's `resizeGeneric_` along one axis, for 8-bit images.
fn taps(n_in: usize, n_out: usize, interp: Interpolation) -> Taps {
    let ksize = match interp {
        Interpolation::Linear => 2,
        Interpolation::Cubic => 4,
        Interpolation::Lanczos4 => 8,
    };
    let half = (ksize / 2) as i64;
    let scale = 1.0 / (n_out as f64 / n_in as f64);
    let last = n_in as i64 - 1;
    let mut idx = Vec::with_capacity(n_out * ksize);
    let mut coef = Vec::with_capacity(n_out * ksize);
    let to_fixed = |c: f32| {
        let v = (c * (1u32 << COEF_BITS) as f32).round_ties_even();
        v.clamp(i16::MIN as f32, i16::MAX as f32) as i32
    };
    for d in 0..n_out {
        let mut f = ((d as f64 + 0.5) * scale - 0.5) as f32;
        let mut s = f.floor() as i64;
        f -= s as f32;
        if interp == Interpolation::Linear {
            if s < 0 {
                f = 0.0;
                s = 0;
            }
            if s >= last {
                f = 0.0;
                s = last;
            }
        }
        for k in 0..ksize as i64 {
            idx.push((s - half + 1 + k).clamp(0, last) as usize);
        }
        match interp {
            Interpolation::Linear => coef.extend([1.0 - f, f].map(to_fixed)),
            Interpolation::Cubic => coef.extend(cubic_coeffs(f).map(to_fixed)),
            Interpolation::Lanczos4 => coef.extend(lanczos4_coeffs(f).map(to_fixed)),
        }
    }
    Taps { ksize, idx, coef }
}

/// Resizes `img` to `width × height` as `cv2.resize(img, (width, height), interpolation=…)` does
/// on 8-bit images: OpenCV's separable `resizeGeneric_` with half-pixel-centre coordinates
/// (`(d + 0.5)·in/out − 0.5`) and replicated borders.
///
/// - Lanczos4 and linear: coefficients rounded to 11-bit fixed point, a horizontal pass into
///   `i32`, a vertical pass rounded by `(Σ + 2²¹) >> 22`; the linear vertical pass reproduces
///   OpenCV's SIMD arithmetic (`mulhi` of `row >> 4`, then `(v + 2) >> 2`) on the bytes OpenCV
///   vectorises. Lanczos4 is bit-exact with opencv-python 5.0 on the golden cases, linear within
///   one level on ≤ 2% of the bytes.
/// - Cubic: in `f32` (what opencv-python 5.0 does: bit-exact on the golden cases but 2 bytes).
///   Older OpenCV, which the reference ran, used the fixed-point path for cubic too; that differs
///   from 5.0 by one level on ~6% of the bytes.
///
/// Not reproduced: OpenCV's switch to `INTER_AREA` for an exact 2× bilinear shrink. Equal sizes
/// return a copy, like OpenCV. Both passes run in parallel over rows.
///
/// # Errors
/// [`Error::Op`] (`resize`) when the input or the requested size is empty.
pub fn resize(img: &Frame, width: usize, height: usize, interp: Interpolation) -> Result<Frame> {
    check_nonempty("resize", img)?;
    if width == 0 || height == 0 {
        return Err(Error::op(
            "resize",
            format!("cannot resize to an empty size {width}x{height}"),
        ));
    }
    let (w, h) = img.dimensions();
    let (w, h) = (w as usize, h as usize);
    if (w, h) == (width, height) {
        return Ok(img.clone());
    }
    if interp == Interpolation::Cubic {
        return Ok(resize_cubic_float(img, width, height));
    }
    let tx = taps(w, width, interp);
    let ty = taps(h, height, interp);
    let src = img.as_raw();
    // Horizontal pass: every source row that some output row reads.
    let mut needed = vec![false; h];
    for &r in &ty.idx {
        needed[r] = true;
    }
    let row_len = width * 3;
    let mut hbuf = vec![0i32; h * row_len];
    hbuf.par_chunks_mut(row_len)
        .with_min_len(MIN_ROWS_PER_TASK)
        .enumerate()
        .filter(|(r, _)| needed[*r])
        .for_each(|(r, dst)| {
            let row = &src[r * w * 3..(r + 1) * w * 3];
            for (x, d) in dst.chunks_exact_mut(3).enumerate() {
                let ix = &tx.idx[x * tx.ksize..(x + 1) * tx.ksize];
                let cx = &tx.coef[x * tx.ksize..(x + 1) * tx.ksize];
                let mut acc = [0i32; 3];
                for (&i, &c) in ix.iter().zip(cx) {
                    let p = &row[i * 3..i * 3 + 3];
                    acc[0] += p[0] as i32 * c;
                    acc[1] += p[1] as i32 * c;
                    acc[2] += p[2] as i32 * c;
                }
                d.copy_from_slice(&acc);
            }
        });
    // Vertical pass.
    let vend = simd_end(row_len, interp);
    let mut out = vec![0u8; height * row_len];
    out.par_chunks_mut(row_len)
        .with_min_len(MIN_ROWS_PER_TASK)
        .enumerate()
        .for_each(|(y, dst)| {
            let iy = &ty.idx[y * ty.ksize..(y + 1) * ty.ksize];
            let cy = &ty.coef[y * ty.ksize..(y + 1) * ty.ksize];
            let rows: Vec<&[i32]> = iy
                .iter()
                .map(|&r| &hbuf[r * row_len..(r + 1) * row_len])
                .collect();
            let (head, tail) = dst.split_at_mut(vend);
            match interp {
                Interpolation::Linear => vertical_linear_simd(&rows, cy, head),
                Interpolation::Cubic | Interpolation::Lanczos4 => {
                    vertical_fixed(&rows, cy, 0, head)
                }
            }
            vertical_fixed(&rows, cy, vend, tail);
        });
    Ok(frame_from(width, height, out))
}

/// Bytes of a row that OpenCV's SIMD vertical pass handles (the rest goes through its scalar
/// code): the linear pass (AVX2) steps 32 bytes, then 4 while more than 4 remain; Lanczos4 has no
/// SIMD vertical pass for 8 bits (cubic does not come here, see [`resize_cubic_float`]).
fn simd_end(n: usize, interp: Interpolation) -> usize {
    match interp {
        Interpolation::Linear => {
            let mut x = n / 32 * 32;
            while x + 4 < n {
                x += 4;
            }
            x
        }
        Interpolation::Cubic | Interpolation::Lanczos4 => 0,
    }
}

/// OpenCV's scalar vertical pass for 8 bits: `(Σ row·β + 2²¹) >> 22`, saturated.
fn vertical_fixed(rows: &[&[i32]], beta: &[i32], start: usize, dst: &mut [u8]) {
    let shift = 2 * COEF_BITS;
    let delta = 1i64 << (shift - 1);
    for (i, d) in dst.iter_mut().enumerate() {
        let x = start + i;
        let acc: i64 = rows
            .iter()
            .zip(beta)
            .map(|(r, &b)| r[x] as i64 * b as i64)
            .sum();
        *d = ((acc + delta) >> shift).clamp(0, 255) as u8;
    }
}

/// Saturates to `i16`.
fn sat16(v: i32) -> i32 {
    v.clamp(i16::MIN as i32, i16::MAX as i32)
}

/// OpenCV's SIMD vertical linear pass for 8 bits (`VResizeLinearVec_32s8u`): 16-bit
/// `mulhi((row >> 4), β)` products, a saturating add, then `(v + 2) >> 2`, saturated to `u8`.
fn vertical_linear_simd(rows: &[&[i32]], beta: &[i32], dst: &mut [u8]) {
    let (s0, s1, b0, b1) = (rows[0], rows[1], beta[0], beta[1]);
    for (x, d) in dst.iter_mut().enumerate() {
        let a = (sat16(s0[x] >> 4) * b0) >> 16;
        let b = (sat16(s1[x] >> 4) * b1) >> 16;
        let v = sat16(a + b);
        *d = ((v + 2) >> 2).clamp(0, 255) as u8;
    }
}

/// Float taps of one axis for the cubic kernel: indices (clamped) and `f32` coefficients.
fn cubic_taps_f32(n_in: usize, n_out: usize) -> (Vec<usize>, Vec<f32>) {
    let scale = 1.0 / (n_out as f64 / n_in as f64);
    let last = n_in as i64 - 1;
    let mut idx = Vec::with_capacity(n_out * 4);
    let mut coef = Vec::with_capacity(n_out * 4);
    for d in 0..n_out {
        let mut f = ((d as f64 + 0.5) * scale - 0.5) as f32;
        let s = f.floor() as i64;
        f -= s as f32;
        for k in 0..4 {
            idx.push((s - 1 + k).clamp(0, last) as usize);
        }
        coef.extend(cubic_coeffs(f));
    }
    (idx, coef)
}

/// Bicubic resize in `f32` (OpenCV 5.0 resizes 8-bit images with `INTER_CUBIC` this way: the
/// `f32` coefficients of `interpolateCubic`, no fixed point, the result rounded half to even).
fn resize_cubic_float(img: &Frame, width: usize, height: usize) -> Frame {
    let (w, h) = img.dimensions();
    let (w, h) = (w as usize, h as usize);
    let (ix, cx) = cubic_taps_f32(w, width);
    let (iy, cy) = cubic_taps_f32(h, height);
    let src = img.as_raw();
    let row_len = width * 3;
    let mut hbuf = vec![0f32; h * row_len];
    hbuf.par_chunks_mut(row_len)
        .with_min_len(MIN_ROWS_PER_TASK)
        .enumerate()
        .for_each(|(r, dst)| {
            let row = &src[r * w * 3..(r + 1) * w * 3];
            for (x, d) in dst.chunks_exact_mut(3).enumerate() {
                let mut acc = [0f32; 3];
                for k in 0..4 {
                    let (i, c) = (ix[x * 4 + k], cx[x * 4 + k]);
                    for (a, &p) in acc.iter_mut().zip(&row[i * 3..i * 3 + 3]) {
                        *a += p as f32 * c;
                    }
                }
                d.copy_from_slice(&acc);
            }
        });
    let mut out = vec![0u8; height * row_len];
    out.par_chunks_mut(row_len)
        .with_min_len(MIN_ROWS_PER_TASK)
        .enumerate()
        .for_each(|(y, dst)| {
            let rows: Vec<&[f32]> = iy[y * 4..y * 4 + 4]
                .iter()
                .map(|&r| &hbuf[r * row_len..(r + 1) * row_len])
                .collect();
            let b = &cy[y * 4..y * 4 + 4];
            for (x, d) in dst.iter_mut().enumerate() {
                let v =
                    rows[0][x] * b[0] + rows[1][x] * b[1] + rows[2][x] * b[2] + rows[3][x] * b[3];
                *d = v.round_ties_even().clamp(0.0, 255.0) as u8;
            }
        });
    frame_from(width, height, out)
}

/// The reference's `ResizeandPad(size)`: the longer side is resized to `size` (the shorter to
/// `int(size · short / long)`), **bilinearly** (the reference passes its interpolation flag where
/// `cv2.resize` takes `dst`, so OpenCV's default `INTER_LINEAR` applies), then the shorter side is
/// reflection-padded to `size` with `(size − short) / 2` (rounded down) before and the rest after,
/// so the odd pixel goes to the bottom or right. A frame whose longer side is already `size` is
/// not resized.
///
/// # Errors
/// [`Error::Op`] (`resize_and_pad`) for an empty image or `size == 0`, or when the shorter side
/// becomes 1 pixel and must be padded.
pub fn resize_and_pad(img: &Frame, size: usize) -> Result<Frame> {
    check_nonempty("resize_and_pad", img)?;
    if size == 0 {
        return Err(Error::op("resize_and_pad", "size must be positive"));
    }
    let (w, h) = img.dimensions();
    let (w, h) = (w as usize, h as usize);
    let resized;
    let img = if (w >= h && w == size) || (h >= w && h == size) {
        img
    } else {
        let (ow, oh) = if w > h {
            (size, size * h / w)
        } else {
            (size * w / h, size)
        };
        resized = resize(img, ow.max(1), oh.max(1), Interpolation::Linear)?;
        &resized
    };
    let (w, h) = img.dimensions();
    let (w, h) = (w as usize, h as usize);
    if w > h {
        let bd = (w - h) / 2;
        pad_reflect(img, bd, w - h - bd, 0, 0)
    } else if h > w {
        let bd = (h - w) / 2;
        pad_reflect(img, 0, 0, bd, h - w - bd)
    } else {
        Ok(img.clone())
    }
}
