//! Procedural textures: periodic RGB rasters sampled bilinearly with wrap-around.
//!
//! Every texture is a pure function of its [`TextureSpec`] (family, seed, size, feature size,
//! octaves, detail), computed with a counter-based hash, so it is the same on every machine and
//! whatever the number of threads. Rasters are periodic (integer wave vectors, periodic lattices),
//! so a background can pan forever and an object texture never shows a seam.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// A family of procedural textures. [`super::Split`] gives train and eval disjoint families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextureFamily {
    /// Fractal value noise (fBm) mapped through a three-colour ramp. Train split.
    Fbm,
    /// Sinusoidal stripes at a random orientation, warped by low-frequency noise. Train split.
    Stripes,
    /// Voronoi cells, one palette colour per cell, darkened borders. Eval split.
    Cells,
    /// A rotated checkerboard with plaid bands. Eval split.
    Plaid,
}

impl TextureFamily {
    /// A stable small number for this family (used in seeds and tests).
    pub fn id(self) -> u32 {
        match self {
            TextureFamily::Fbm => 0,
            TextureFamily::Stripes => 1,
            TextureFamily::Cells => 2,
            TextureFamily::Plaid => 3,
        }
    }
}

/// Everything that determines one texture raster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextureSpec {
    /// Which procedural family.
    pub family: TextureFamily,
    /// Seed of the texture's hash (colours, lattice values, cell points, orientations).
    pub seed: u64,
    /// Side of the square, periodic raster in texels (texels are sampled at about 1:1); rounded
    /// up to a power of two when rendered.
    pub size: usize,
    /// Characteristic feature size in texels (stripe period, cell size, base noise period).
    pub feature: f32,
    /// Number of fBm octaves (noise families); 1 gives a smooth texture.
    pub octaves: u32,
    /// Amplitude (in levels out of 255) of the fine value noise added to every family, which
    /// makes points inside flat regions distinguishable; 0 disables it.
    pub detail: f32,
}

/// A square periodic RGB raster, values in 0..=255 as `f32`.
#[derive(Debug, Clone)]
pub(crate) struct Texture {
    n: usize,
    data: Vec<[f32; 3]>,
}

impl Texture {
    /// Bilinear sample at texel coordinates `(x, y)` (texel centres at integers), wrapping.
    #[inline]
    pub(crate) fn sample(&self, x: f32, y: f32) -> [f32; 3] {
        // the size is a power of two: wrapping is a mask
        let mask = self.n as i32 - 1;
        let (ix, iy) = (floor_i32(x), floor_i32(y));
        let ax = x - ix as f32;
        let ay = y - iy as f32;
        let x0 = (ix & mask) as usize;
        let y0 = (iy & mask) as usize;
        let x1 = ((ix + 1) & mask) as usize;
        let y1 = ((iy + 1) & mask) as usize;
        let r0 = y0 * self.n;
        let r1 = y1 * self.n;
        let (a, b, c, d) = (
            self.data[r0 + x0],
            self.data[r0 + x1],
            self.data[r1 + x0],
            self.data[r1 + x1],
        );
        let mut out = [0.0; 3];
        for k in 0..3 {
            let top = a[k] + (b[k] - a[k]) * ax;
            let bot = c[k] + (d[k] - c[k]) * ax;
            out[k] = top + (bot - top) * ay;
        }
        out
    }
}

/// `floor(x)` as an integer without a libm call (x86-64 without SSE4.1 has no inline floor).
#[inline]
pub(crate) fn floor_i32(x: f32) -> i32 {
    let i = x as i32;
    i - i32::from((i as f32) > x)
}

/// SplitMix64 finaliser.
#[inline]
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash of four numbers.
#[inline]
pub(crate) fn hash4(seed: u64, a: u64, b: u64, c: u64) -> u64 {
    mix(mix(mix(seed ^ mix(a)).wrapping_add(b)).wrapping_add(c))
}

/// A uniform number in [0, 1) from a hash.
#[inline]
pub(crate) fn unit(h: u64) -> f32 {
    (h >> 40) as f32 / (1u64 << 24) as f32
}

/// Periodic value noise with `g` lattice cells across a raster of `n` texels, smoothstep
/// interpolation, values in [0, 1).
fn value_noise(seed: u64, g: usize, n: usize, x: f32, y: f32) -> f32 {
    let gx = x * g as f32 / n as f32;
    let gy = y * g as f32 / n as f32;
    let (ix, iy) = (floor_i32(gx), floor_i32(gy));
    let tx = gx - ix as f32;
    let ty = gy - iy as f32;
    let sx = tx * tx * (3.0 - 2.0 * tx);
    let sy = ty * ty * (3.0 - 2.0 * ty);
    let g = g as i64;
    let i0 = (ix as i64).rem_euclid(g) as u64;
    let j0 = (iy as i64).rem_euclid(g) as u64;
    let i1 = (i0 + 1) % g as u64;
    let j1 = (j0 + 1) % g as u64;
    let v = |i, j| unit(hash4(seed, i, j, 7));
    let top = v(i0, j0) + (v(i1, j0) - v(i0, j0)) * sx;
    let bot = v(i0, j1) + (v(i1, j1) - v(i0, j1)) * sx;
    top + (bot - top) * sy
}

/// Periodic fBm in [0, 1): `octaves` octaves from a base of `feature` texels, gain 1/2.
fn fbm(seed: u64, feature: f32, octaves: u32, n: usize, x: f32, y: f32) -> f32 {
    let mut g = ((n as f32 / feature.max(1.0)).round() as usize).max(2);
    let (mut amp, mut sum, mut norm) = (1.0f32, 0.0f32, 0.0f32);
    for o in 0..octaves.max(1) {
        sum += amp * value_noise(seed.wrapping_add(o as u64 * 0x1000_0001), g, n, x, y);
        norm += amp;
        amp *= 0.5;
        g = (g * 2).min(n / 2).max(2);
    }
    sum / norm
}

fn lerp3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// Three random, mutually distinct colours (levels 0..=255) from the texture seed.
fn palette(seed: u64) -> [[f32; 3]; 3] {
    let mut out = [[0.0; 3]; 3];
    for (i, c) in out.iter_mut().enumerate() {
        // spread the brightness so the three colours contrast
        let base = 40.0 + 80.0 * i as f32 + 40.0 * unit(hash4(seed, 100, i as u64, 0));
        for (k, v) in c.iter_mut().enumerate() {
            let jitter = unit(hash4(seed, 101, i as u64, k as u64)) - 0.5;
            *v = (base + 150.0 * jitter).clamp(5.0, 250.0);
        }
    }
    // random order, so the darkest colour is not always the first
    let r = hash4(seed, 102, 0, 0) % 6;
    let perm = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ][r as usize];
    [out[perm[0]], out[perm[1]], out[perm[2]]]
}

/// An integer wave vector of about `n / feature` cycles across the raster at angle `angle`.
fn wave_vector(n: usize, feature: f32, angle: f32) -> (f32, f32) {
    let k = (n as f32 / feature.max(2.0)).max(1.0);
    let mut kx = (k * angle.cos()).round();
    let ky = (k * angle.sin()).round();
    if kx == 0.0 && ky == 0.0 {
        kx = 1.0;
    }
    (kx, ky)
}

/// Renders the raster of `spec`, rows in parallel.
pub(crate) fn generate(spec: &TextureSpec) -> Texture {
    let n = spec.size.clamp(4, 1 << 14).next_power_of_two();
    let seed = spec.seed;
    let pal = palette(seed);
    let angle = unit(hash4(seed, 200, 0, 0)) * std::f32::consts::TAU;
    let (kx, ky) = wave_vector(n, spec.feature, angle);
    let tau_n = std::f32::consts::TAU / n as f32;
    let kn = (kx * kx + ky * ky).sqrt() * tau_n; // radians per texel
    let cells = ((n as f32 / spec.feature.max(2.0)).round() as usize).max(2);
    let cell = n as f32 / cells as f32;
    let mut data = vec![[0.0f32; 3]; n * n];
    data.par_chunks_mut(n).enumerate().for_each(|(j, row)| {
        let y = j as f32;
        for (i, px) in row.iter_mut().enumerate() {
            let x = i as f32;
            let mut c = match spec.family {
                TextureFamily::Fbm => {
                    let v = fbm(seed, spec.feature, spec.octaves, n, x, y);
                    let v = ((v - 0.5) * 2.2 + 0.5).clamp(0.0, 1.0);
                    if v < 0.5 {
                        lerp3(pal[0], pal[1], v * 2.0)
                    } else {
                        lerp3(pal[1], pal[2], v * 2.0 - 1.0)
                    }
                }
                TextureFamily::Stripes => {
                    let warp = fbm(seed ^ 0x55, n as f32 / 3.0, 2, n, x, y) - 0.5;
                    let s = ((kx * x + ky * y) * tau_n + warp * 5.0).sin();
                    // about one texel of anti-aliasing across the edge
                    let t = (s / kn.max(1e-3) * 0.5 + 0.5).clamp(0.0, 1.0);
                    let base = lerp3(pal[0], pal[2], t);
                    let shade = fbm(seed ^ 0x77, spec.feature * 2.0, spec.octaves, n, x, y);
                    lerp3(base, pal[1], 0.35 * shade)
                }
                TextureFamily::Cells => {
                    let (ci, cj) = ((x / cell).floor() as i64, (y / cell).floor() as i64);
                    let (mut d1, mut d2, mut best) = (f32::MAX, f32::MAX, 0u64);
                    for dj in -1..=1i64 {
                        for di in -1..=1i64 {
                            let (a, b) = (ci + di, cj + dj);
                            let (wa, wb) = (
                                a.rem_euclid(cells as i64) as u64,
                                b.rem_euclid(cells as i64) as u64,
                            );
                            let h = hash4(seed, 300, wa, wb);
                            let px_ = (a as f32 + 0.15 + 0.7 * unit(h)) * cell;
                            let py_ = (b as f32 + 0.15 + 0.7 * unit(mix(h))) * cell;
                            let d = ((px_ - x).powi(2) + (py_ - y).powi(2)).sqrt();
                            if d < d1 {
                                d2 = d1;
                                d1 = d;
                                best = h;
                            } else if d < d2 {
                                d2 = d;
                            }
                        }
                    }
                    let base = pal[(best % 3) as usize];
                    let gain = 0.75 + 0.5 * unit(mix(best ^ 0xABCD));
                    let edge = ((d2 - d1) / 2.0).clamp(0.0, 1.0);
                    let c = [base[0] * gain, base[1] * gain, base[2] * gain];
                    lerp3([c[0] * 0.3, c[1] * 0.3, c[2] * 0.3], c, edge)
                }
                TextureFamily::Plaid => {
                    let a1 = (kx * x + ky * y) * tau_n;
                    let a2 = (-ky * x + kx * y) * tau_n;
                    let s = a1.sin() * a2.sin();
                    let t = (s / kn.max(1e-3) * 0.5 + 0.5).clamp(0.0, 1.0);
                    let base = lerp3(pal[0], pal[1], t);
                    let band = ((3.0 * a1).cos().max((2.0 * a2).cos()) - 0.8).max(0.0) * 5.0;
                    lerp3(base, pal[2], 0.7 * band.min(1.0))
                }
            };
            if spec.detail > 0.0 {
                let d = value_noise(seed ^ 0xD37A, (n / 2).max(2), n, x, y) - 0.5;
                for v in c.iter_mut() {
                    *v += d * 2.0 * spec.detail;
                }
            }
            *px = [
                c[0].clamp(0.0, 255.0),
                c[1].clamp(0.0, 255.0),
                c[2].clamp(0.0, 255.0),
            ];
        }
    });
    Texture { n, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(family: TextureFamily) -> TextureSpec {
        TextureSpec {
            family,
            seed: 42,
            size: 64,
            feature: 12.0,
            octaves: 3,
            detail: 12.0,
        }
    }

    #[test]
    fn textures_are_periodic_deterministic_and_varied() {
        for fam in [
            TextureFamily::Fbm,
            TextureFamily::Stripes,
            TextureFamily::Cells,
            TextureFamily::Plaid,
        ] {
            let t = generate(&spec(fam));
            let t2 = generate(&spec(fam));
            assert_eq!(t.data, t2.data, "{fam:?} not deterministic");
            // wrap-around: sampling one period away gives the same colour
            let (a, b) = (t.sample(3.25, 7.5), t.sample(3.25 + 64.0, 7.5 - 128.0));
            for k in 0..3 {
                assert!((a[k] - b[k]).abs() < 1e-3, "{fam:?} not periodic");
            }
            // a texture, not a flat colour: the luminance spread is large
            let lum: Vec<f32> = t.data.iter().map(|c| c[0] + c[1] + c[2]).collect();
            let mean = lum.iter().sum::<f32>() / lum.len() as f32;
            let sd =
                (lum.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / lum.len() as f32).sqrt();
            assert!(sd > 20.0, "{fam:?}: luminance sd {sd}");
            let other = generate(&TextureSpec {
                seed: 43,
                ..spec(fam)
            });
            assert_ne!(t.data, other.data, "{fam:?}: seed ignored");
        }
    }
}
