//! Object shapes in canonical coordinates and their inside-ness fields.
//!
//! A shape of radius `R` is described by its *field* `f(u)`, in texels: positive inside, zero on
//! the outline, negative outside (for star-convex shapes `f(u) = R·r(θ) − |u|`, exact on the
//! outline). The renderer samples a raster of `f` bilinearly: coverage is `clamp(f + 1/2, 0, 1)`
//! and a pixel belongs to the object when `f > 0`, which is what makes masks exact.

use rand::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::f32::consts::{PI, TAU};

/// A family of object shapes. [`super::Split`] gives train and eval disjoint families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShapeFamily {
    /// Ellipses of aspect 0.55–1 at any orientation. Train split.
    Ellipse,
    /// Radial-Fourier outlines `r(θ) = 1 + Σ a_k cos(kθ + φ_k)` with orders 2–3. Train split.
    FourierLow,
    /// Radial-Fourier outlines with orders 4–7. Eval split.
    FourierHigh,
    /// Straight-edged stars and near-polygons with 3–8 points. Eval split.
    Star,
}

impl ShapeFamily {
    /// A stable small number for this family (used in tests).
    pub fn id(self) -> u32 {
        match self {
            ShapeFamily::Ellipse => 0,
            ShapeFamily::FourierLow => 1,
            ShapeFamily::FourierHigh => 2,
            ShapeFamily::Star => 3,
        }
    }
}

/// One outline, in units of the object's radius.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Shape {
    /// An ellipse with semi-axes 1 and `aspect`, its first axis at `angle` radians.
    Ellipse {
        /// Ratio of the second semi-axis to the first (1 = disc).
        aspect: f32,
        /// Orientation of the first axis, radians.
        angle: f32,
    },
    /// `r(θ) = 1 + Σ a cos(kθ + φ)` over `terms = [k, a, φ]`.
    Fourier {
        /// The harmonics as `[order, amplitude, phase]`.
        terms: Vec<[f32; 3]>,
    },
    /// A star with `points` outer vertices at radius 1 and inner vertices at `inner`, joined by
    /// straight edges.
    Star {
        /// Number of outer vertices.
        points: u32,
        /// Radius of the inner vertices (close to `cos(π/points)` gives a polygon).
        inner: f32,
        /// Angle of the first outer vertex, radians.
        angle: f32,
    },
    /// An axis-aligned bar (the occluder): half-width 1 along x, half-length `length` along y.
    Bar {
        /// Half-length along y, in radii.
        length: f32,
    },
}

impl Shape {
    /// Draws a shape of `family`.
    pub(crate) fn sample(family: ShapeFamily, rng: &mut impl Rng) -> Shape {
        match family {
            ShapeFamily::Ellipse => Shape::Ellipse {
                aspect: rng.random_range(0.55..1.0),
                angle: rng.random_range(0.0..PI),
            },
            ShapeFamily::FourierLow => Shape::Fourier {
                terms: (2..=3)
                    .map(|k| {
                        [
                            k as f32,
                            rng.random_range(0.03..0.15),
                            rng.random_range(0.0..TAU),
                        ]
                    })
                    .collect(),
            },
            ShapeFamily::FourierHigh => {
                let first = rng.random_range(4..=5u32);
                Shape::Fourier {
                    terms: [first, first + rng.random_range(1..=2u32)]
                        .into_iter()
                        .map(|k| {
                            [
                                k as f32,
                                rng.random_range(0.04..0.12),
                                rng.random_range(0.0..TAU),
                            ]
                        })
                        .collect(),
                }
            }
            ShapeFamily::Star => Shape::Star {
                points: rng.random_range(3..=8),
                inner: rng.random_range(0.45..0.9),
                angle: rng.random_range(0.0..TAU),
            },
        }
    }

    /// The largest distance of the outline from the centre, in radii.
    pub(crate) fn max_radius(&self) -> f32 {
        match self {
            Shape::Ellipse { aspect, .. } => aspect.max(1.0),
            Shape::Fourier { terms } => 1.0 + terms.iter().map(|t| t[1].abs()).sum::<f32>(),
            Shape::Star { .. } => 1.0,
            Shape::Bar { length } => (1.0 + length * length).sqrt(),
        }
    }

    /// The field at canonical point `(x, y)` (texels) of this shape scaled to `radius` texels.
    pub(crate) fn field(&self, radius: f32, x: f32, y: f32) -> f32 {
        let d = (x * x + y * y).sqrt();
        let theta = y.atan2(x);
        match self {
            Shape::Ellipse { aspect, angle } => {
                let (s, c) = (theta - angle).sin_cos();
                let r = 1.0 / (c * c + (s / aspect).powi(2)).sqrt();
                radius * r - d
            }
            Shape::Fourier { terms } => {
                let r = 1.0
                    + terms
                        .iter()
                        .map(|t| t[1] * (t[0] * theta + t[2]).cos())
                        .sum::<f32>();
                radius * r - d
            }
            Shape::Star {
                points,
                inner,
                angle,
            } => {
                let n = (*points).max(2) as f32;
                let sector = TAU / n;
                let rel = (theta - angle).rem_euclid(sector);
                // the edge from the outer vertex at 0 to the inner vertex at sector/2, mirrored
                let rel = if rel > sector / 2.0 {
                    sector - rel
                } else {
                    rel
                };
                let (p1x, p1y) = (1.0f32, 0.0f32);
                let (p2x, p2y) = (inner * (sector / 2.0).cos(), inner * (sector / 2.0).sin());
                let (ex, ey) = (p2x - p1x, p2y - p1y);
                let (dx, dy) = (rel.cos(), rel.sin());
                // ray t·d meets p1 + s·e: t = cross(p1, e) / cross(d, e)
                let r = (p1x * ey - p1y * ex) / (dx * ey - dy * ex);
                radius * r - d
            }
            Shape::Bar { length } => (radius - x.abs()).min(radius * length - y.abs()),
        }
    }
}

/// A raster of a shape's field, canonical origin at the raster's centre.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    n: usize,
    c: f32,
    data: Vec<f32>,
}

/// Field value returned outside the raster (well outside any shape).
const OUTSIDE: f32 = -1.0e4;

impl Field {
    /// Rasterises `shape` at `radius` texels, with a margin of 4 texels around it.
    pub(crate) fn new(shape: &Shape, radius: f32) -> Field {
        let n = (2.0 * radius * shape.max_radius() + 8.0).ceil().max(4.0) as usize;
        let c = (n as f32 - 1.0) / 2.0;
        let mut data = vec![0.0f32; n * n];
        data.par_chunks_mut(n).enumerate().for_each(|(j, row)| {
            for (i, v) in row.iter_mut().enumerate() {
                *v = shape.field(radius, i as f32 - c, j as f32 - c);
            }
        });
        Field { n, c, data }
    }

    /// Bilinear sample at canonical `(x, y)`; a large negative value outside the raster.
    #[inline]
    pub(crate) fn sample(&self, x: f32, y: f32) -> f32 {
        let gx = x + self.c;
        let gy = y + self.c;
        let last = (self.n - 1) as f32;
        if !(gx >= 0.0 && gy >= 0.0 && gx < last && gy < last) {
            return OUTSIDE;
        }
        // both are >= 0 here, so truncation is floor
        let (ix, iy) = (gx as usize, gy as usize);
        let (ax, ay) = (gx - ix as f32, gy - iy as f32);
        let i = iy * self.n + ix;
        let (a, b, c, d) = (
            self.data[i],
            self.data[i + 1],
            self.data[i + self.n],
            self.data[i + self.n + 1],
        );
        let top = a + (b - a) * ax;
        let bot = c + (d - c) * ax;
        top + (bot - top) * ay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn outlines_are_where_the_field_crosses_zero() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for fam in [
            ShapeFamily::Ellipse,
            ShapeFamily::FourierLow,
            ShapeFamily::FourierHigh,
            ShapeFamily::Star,
        ] {
            for _ in 0..4 {
                let s = Shape::sample(fam, &mut rng);
                let r = 20.0;
                // the centre is inside, anything beyond max_radius is outside
                assert!(s.field(r, 0.0, 0.0) > 0.0, "{s:?}");
                for k in 0..16 {
                    let a = k as f32 * TAU / 16.0;
                    let far = r * s.max_radius() + 0.5;
                    assert!(s.field(r, far * a.cos(), far * a.sin()) < 0.0, "{s:?}");
                }
            }
        }
        // a regular hexagon (inner = cos(pi/6)): the apothem is cos(pi/6)
        let hex = Shape::Star {
            points: 6,
            inner: (PI / 6.0).cos(),
            angle: 0.0,
        };
        let apothem = 10.0 * (PI / 6.0).cos();
        let at = |a: f32| hex.field(10.0, apothem * a.cos(), apothem * a.sin());
        assert!(at(PI / 6.0).abs() < 1e-4);
        assert!(at(PI / 12.0) > 0.0); // between the vertex and the edge middle: inside
        let disc = Field::new(
            &Shape::Ellipse {
                aspect: 1.0,
                angle: 0.0,
            },
            10.0,
        );
        assert!(
            (disc.sample(3.3, -4.1) - (10.0 - (3.3f32.powi(2) + 4.1f32.powi(2)).sqrt())).abs()
                < 0.02
        );
        assert!(disc.sample(100.0, 0.0) < -100.0);
    }
}
