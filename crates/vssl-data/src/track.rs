//! Patch-tracking geometry of ContrastCorr's main phase (`model.py`, `libs/utils.py`): the
//! fixed-size box around a soft-argmax centre (`center2bbox`) and the affine parameters that crop
//! it (`diff_crop`).
//!
//! Coordinates are in the units of the map being cropped (feature cells for the 80×80 target
//! features, pixels for the ×8 Lab frame), continuous, with `x` to the right and `y` down; the
//! crop itself is [`vssl_core::ops::grid::affine_grid`] + [`vssl_core::ops::grid::grid_sample`]
//! on `θ` from [`box_to_theta`].
//!
//! With `align_corners = false` the θ of an integer box of size `s` samples exactly the pixels
//! `x1 … x2 − 1` when the output has `s` columns (the crop equals slicing). The reference ran
//! PyTorch 1.1, whose `affine_grid`/`grid_sample` behave as `align_corners = true`: there the same
//! θ samples `s` points evenly from `x1·(W − 1)/W` to `x2·(W − 1)/W`, a slight shrink towards the
//! origin (see [`sample_positions`]). Which one to use is the caller's choice; parity with the
//! reference needs `true`.

use crate::{Error, Result};

/// An axis-aligned box `[x1, x2] × [y1, y2]` in continuous coordinates (left, top, right,
/// bottom).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxF {
    /// Left edge.
    pub x1: f32,
    /// Top edge.
    pub y1: f32,
    /// Right edge.
    pub x2: f32,
    /// Bottom edge.
    pub y2: f32,
}

impl BoxF {
    /// Width `x2 − x1`.
    pub fn width(&self) -> f32 {
        self.x2 - self.x1
    }

    /// Height `y2 − y1`.
    pub fn height(&self) -> f32 {
        self.y2 - self.y1
    }
}

/// The reference's `center2bbox` for one centre: a `size × size` box around `(cx, cy)` in a
/// `width × height` map, in `f32` like the reference's tensors:
///
/// - `x1 = max(cx − size/2, 0)`, `x2 = min(x1 + size, width)`, and likewise `y1`, `y2`;
/// - at the left and top borders the box is **shifted** inward (it keeps its size); at the right
///   and bottom borders it is **truncated** (it becomes smaller than `size`, and the crop later
///   stretches it).
///
/// Nothing else is clamped, as in the reference: a centre beyond the right border gives
/// `x2 < x1` (a soft-argmax centre always lies inside the map).
pub fn center_to_box(cx: f32, cy: f32, size: f32, width: f32, height: f32) -> BoxF {
    let half = size / 2.0;
    let x1 = (cx - half).max(0.0);
    let y1 = (cy - half).max(0.0);
    BoxF {
        x1,
        y1,
        x2: (x1 + size).min(width),
        y2: (y1 + size).min(height),
    }
}

/// The affine `θ = [a, 0, c, 0, e, f]` (row-major 2×3) that `diff_crop` builds to crop `b` from a
/// `width × height` map: `a = (x2 − x1)/width`, `c = (x1 + x2)/width − 1`,
/// `e = (y2 − y1)/height`, `f = (y1 + y2)/height − 1`.
pub fn box_to_theta(b: BoxF, width: f32, height: f32) -> [f32; 6] {
    [
        (b.x2 - b.x1) / width,
        0.0,
        (b.x1 + b.x2) / width - 1.0,
        0.0,
        (b.y2 - b.y1) / height,
        (b.y1 + b.y2) / height - 1.0,
    ]
}

/// The inverse of [`box_to_theta`]: `x1 = (c + 1 − a)·width/2`, `x2 = (c + 1 + a)·width/2`, and
/// likewise for `y`.
///
/// # Errors
/// [`Error::Op`] (`theta_to_box`) when `θ` has a rotation or shear (`θ[1]` or `θ[3]` non-zero) or
/// the map size is not positive.
pub fn theta_to_box(theta: [f32; 6], width: f32, height: f32) -> Result<BoxF> {
    let [a, b, c, d, e, f] = theta;
    if b != 0.0 || d != 0.0 {
        return Err(Error::op(
            "theta_to_box",
            format!("θ {theta:?} is not an axis-aligned crop (θ[1] and θ[3] must be 0)"),
        ));
    }
    if !(width > 0.0 && height > 0.0) {
        return Err(Error::op(
            "theta_to_box",
            format!("map size {width}x{height} must be positive"),
        ));
    }
    Ok(BoxF {
        x1: (c + 1.0 - a) * width / 2.0,
        x2: (c + 1.0 + a) * width / 2.0,
        y1: (f + 1.0 - e) * height / 2.0,
        y2: (f + 1.0 + e) * height / 2.0,
    })
}

/// Where the crop of [`box_to_theta`] reads along one axis: the source coordinates (in pixels of
/// a map of length `len`, pixel centres at integers) of the `out` output positions, for a box
/// `[lo, hi]` and PyTorch's `align_corners` convention. Computed in `f64`.
///
/// - `align_corners = false`: `lo + (j + 1/2)·(hi − lo)/out − 1/2` (for `out = hi − lo`: `lo + j`);
/// - `align_corners = true`: `(lo + j·(hi − lo)/(out − 1))·(len − 1)/len` (for `out = 1`, the box
///   centre times `(len − 1)/len`).
pub fn sample_positions(lo: f32, hi: f32, len: usize, out: usize, align_corners: bool) -> Vec<f64> {
    let (lo, hi, n) = (lo as f64, hi as f64, len as f64);
    let a = (hi - lo) / n;
    let c = (lo + hi) / n - 1.0;
    (0..out)
        .map(|j| {
            let g = if align_corners {
                if out > 1 {
                    -1.0 + 2.0 * j as f64 / (out - 1) as f64
                } else {
                    0.0
                }
            } else {
                -1.0 + (2.0 * j as f64 + 1.0) / out as f64
            };
            let s = a * g + c;
            if align_corners {
                (s + 1.0) / 2.0 * (n - 1.0)
            } else {
                ((s + 1.0) * n - 1.0) / 2.0
            }
        })
        .collect()
}
