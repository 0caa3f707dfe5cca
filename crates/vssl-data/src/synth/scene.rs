//! Scene descriptions: what a clip contains, frame by frame, before rendering.
//!
//! A [`SceneSpec`] is plain data (it is the `scene` part of a clip's meta JSON): the background,
//! the objects back to front with their per-frame poses, deformation waves, colour drift and
//! track points, an optional depth swap, the global lighting and the noise. [`sample_scene`]
//! draws one from a [`SynthConfig`]; [`DiscScene`] builds the analytic test scene.

use rand::Rng;
use serde::{Deserialize, Serialize};
use std::f32::consts::{PI, TAU};

use super::shape::{Shape, ShapeFamily};
use super::texture::{TextureFamily, TextureSpec};
use super::{Split, SynthConfig};

/// A similarity transform from canonical (texel) coordinates to image pixels:
/// `x = (x, y) + scale · R(angle) · u`. Pixel centres are at integer coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pose {
    /// Image x of the canonical origin, pixels.
    pub x: f32,
    /// Image y of the canonical origin, pixels.
    pub y: f32,
    /// Rotation, radians (counter-clockwise in x-right, y-down image axes means clockwise on
    /// screen).
    pub angle: f32,
    /// Image pixels per canonical texel.
    pub scale: f32,
}

impl Pose {
    /// Canonical `u` → image position, in f64 (tracks).
    pub(crate) fn forward(&self, u: [f64; 2]) -> [f64; 2] {
        let (s, c) = (self.angle as f64).sin_cos();
        let k = self.scale as f64;
        [
            self.x as f64 + k * (c * u[0] - s * u[1]),
            self.y as f64 + k * (s * u[0] + c * u[1]),
        ]
    }

    /// The inverse map as `[a, b, tx, c, d, ty]`: `u = (a x + b y + tx, c x + d y + ty)`.
    pub(crate) fn inverse(&self) -> [f32; 6] {
        let (s, c) = self.angle.sin_cos();
        let k = 1.0 / self.scale;
        let (a, b, cc, d) = (c * k, s * k, -s * k, c * k);
        [
            a,
            b,
            -(a * self.x + b * self.y),
            cc,
            d,
            -(cc * self.x + d * self.y),
        ]
    }
}

/// One term of an object's non-rigid deformation, in canonical space: the texture and outline
/// seen at canonical `v` are those of `u = v + Σ disp · sin(k·v + omega·t + phase)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Wave {
    /// Wave vector, radians per texel.
    pub k: [f32; 2],
    /// Temporal frequency, radians per frame.
    pub omega: f32,
    /// Phase, radians.
    pub phase: f32,
    /// Displacement amplitude and direction, texels.
    pub disp: [f32; 2],
}

/// The background layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BackgroundSpec {
    /// One flat colour (levels 0..=255).
    Plain {
        /// RGB colour.
        colour: [f32; 3],
    },
    /// A periodic texture moving with a slow global similarity.
    Texture {
        /// The texture.
        texture: TextureSpec,
        /// Its pose in every frame.
        poses: Vec<Pose>,
    },
}

/// One object layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectSpec {
    /// Label in the masks (1..=K).
    pub id: u8,
    /// The shape family it was drawn from (`None` for the occluder bar and test scenes).
    pub shape_family: Option<ShapeFamily>,
    /// The outline.
    pub shape: Shape,
    /// Radius of the outline in canonical texels.
    pub radius: f32,
    /// The texture (shared with `distractor_of` when it is a same-texture distractor).
    pub texture: TextureSpec,
    /// Set when this object copies the texture of that object id.
    pub distractor_of: Option<u8>,
    /// True for the occluder bar that hides a target for `occlusion_len` frames.
    pub occluder: bool,
    /// Pose in every frame.
    pub poses: Vec<Pose>,
    /// Non-rigid deformation waves (empty = rigid).
    pub waves: Vec<Wave>,
    /// Per-frame colour gain per channel (colour drift); empty = no drift.
    pub tint: Vec<[f32; 3]>,
    /// Tracked points in canonical texels; point 0 is the canonical origin.
    pub points: Vec<[f32; 2]>,
}

impl ObjectSpec {
    /// Canonical texture coordinate of the canonical point `v` at frame `t` (f32, renderer).
    #[inline]
    pub(crate) fn deform(&self, t: usize, vx: f32, vy: f32) -> (f32, f32) {
        let (mut ux, mut uy) = (vx, vy);
        for w in &self.waves {
            let s = (w.k[0] * vx + w.k[1] * vy + w.omega * t as f32 + w.phase).sin();
            ux += w.disp[0] * s;
            uy += w.disp[1] * s;
        }
        (ux, uy)
    }

    /// Solves `v + d_t(v) = u` for `v` (fixed point; the waves are a contraction).
    pub(crate) fn undeform(&self, t: usize, u: [f32; 2]) -> [f64; 2] {
        let (ux, uy) = (u[0] as f64, u[1] as f64);
        let (mut vx, mut vy) = (ux, uy);
        if self.waves.is_empty() {
            return [vx, vy];
        }
        for _ in 0..200 {
            let (mut dx, mut dy) = (0.0f64, 0.0f64);
            for w in &self.waves {
                let s = (w.k[0] as f64 * vx
                    + w.k[1] as f64 * vy
                    + w.omega as f64 * t as f64
                    + w.phase as f64)
                    .sin();
                dx += w.disp[0] as f64 * s;
                dy += w.disp[1] as f64 * s;
            }
            let (nx, ny) = (ux - dx, uy - dy);
            let done = (nx - vx).abs() + (ny - vy).abs() < 1e-9;
            vx = nx;
            vy = ny;
            if done {
                break;
            }
        }
        [vx, vy]
    }

    /// The largest image distance of the object from its pose centre over the clip, pixels.
    pub(crate) fn extent(&self) -> f32 {
        let smax = self.poses.iter().map(|p| p.scale).fold(0.0f32, f32::max);
        let d: f32 = self
            .waves
            .iter()
            .map(|w| w.disp[0].abs() + w.disp[1].abs())
            .sum();
        (self.radius * self.shape.max_radius() + d) * smax
    }
}

/// A change of depth order: from `frame` on, objects `a` and `b` trade places.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DepthSwap {
    /// First frame with the new order.
    pub frame: usize,
    /// Id of one object.
    pub a: u8,
    /// Id of the other.
    pub b: u8,
}

/// Everything a clip is rendered from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneSpec {
    /// Frame width, pixels.
    pub width: u32,
    /// Frame height, pixels.
    pub height: u32,
    /// Number of frames.
    pub frames: usize,
    /// The background.
    pub background: BackgroundSpec,
    /// The objects, back to front (before any depth swap).
    pub objects: Vec<ObjectSpec>,
    /// An optional depth swap.
    pub swap: Option<DepthSwap>,
    /// Global gain per frame (lighting), empty = 1.
    pub gain: Vec<f32>,
    /// Global bias per frame in levels (lighting), empty = 0.
    pub bias: Vec<f32>,
    /// Sensor noise standard deviation, levels out of 255.
    pub noise_sigma: f32,
    /// Seed of the per-pixel noise hash.
    pub noise_seed: u64,
}

impl SceneSpec {
    /// Indices into `objects`, back to front, at frame `t`.
    pub(crate) fn order(&self, t: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.objects.len()).collect();
        if let Some(s) = self.swap
            && t >= s.frame
        {
            let pa = self.objects.iter().position(|o| o.id == s.a);
            let pb = self.objects.iter().position(|o| o.id == s.b);
            if let (Some(a), Some(b)) = (pa, pb) {
                order.swap(a, b);
            }
        }
        order
    }
}

/// Folds `p` into `[lo, hi]` by reflection (a bounce off both walls).
fn fold(p: f32, lo: f32, hi: f32) -> f32 {
    if hi <= lo {
        return 0.5 * (lo + hi);
    }
    let l = hi - lo;
    let m = (p - lo).rem_euclid(2.0 * l);
    lo + if m < l { m } else { 2.0 * l - m }
}

fn pick<T: Copy>(rng: &mut impl Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// Random points strictly inside the shape (field above `margin`), point 0 at the origin.
fn sample_points(rng: &mut impl Rng, shape: &Shape, radius: f32, count: usize) -> Vec<[f32; 2]> {
    let mut pts = vec![[0.0, 0.0]];
    let margin = (0.15 * radius).max(3.0).min(0.5 * radius);
    let reach = radius * shape.max_radius();
    if reach.is_nan() || reach <= 0.0 {
        return pts;
    }
    let mut tries = 0;
    while pts.len() < count && tries < 10_000 {
        tries += 1;
        let (x, y) = (
            rng.random_range(-reach..reach),
            rng.random_range(-reach..reach),
        );
        if shape.field(radius, x, y) > margin {
            pts.push([x, y]);
        }
    }
    pts.truncate(count.max(1));
    pts
}

fn object_texture(rng: &mut impl Rng, split: Split, radius: f32, unit: f32) -> TextureSpec {
    TextureSpec {
        family: pick(rng, split.texture_families()),
        seed: rng.random(),
        size: ((2.6 * radius + 8.0) / 16.0).ceil() as usize * 16,
        feature: rng.random_range(5.0..12.0) * unit.max(0.5),
        octaves: 4,
        detail: rng.random_range(8.0..20.0),
    }
}

/// Draws the scene of clip `index` (the rng is already seeded from it).
pub(crate) fn sample_scene(cfg: &SynthConfig, split: Split, rng: &mut impl Rng) -> SceneSpec {
    let (w, h, t_len) = (cfg.width as f32, cfg.height as f32, cfg.frames);
    let unit = w.min(h) / 256.0;
    let last = (t_len.max(2) - 1) as f32;

    // background: a periodic texture under a slow global similarity
    let bg_tex = TextureSpec {
        family: pick(rng, split.texture_families()),
        seed: rng.random(),
        // one tile spans about the frame's long side (at 256² texel units), so it barely repeats
        size: ((w.max(h) / unit) as usize).next_power_of_two().max(256),
        feature: rng.random_range(10.0..28.0),
        octaves: 4,
        detail: rng.random_range(6.0..14.0),
    };
    let bg_speed = cfg.background_motion * unit;
    let bg_dir = rng.random_range(0.0..TAU);
    let bg_rot = cfg.background_motion * 0.002 * if rng.random() { 1.0 } else { -1.0 };
    let bg_zoom = cfg.background_motion * 0.002 * if rng.random() { 1.0 } else { -1.0 };
    let bg_scale0 = rng.random_range(0.9..1.2) * unit.max(0.5);
    let bg_poses = (0..t_len)
        .map(|t| {
            let t = t as f32;
            Pose {
                x: w / 2.0 + bg_speed * t * bg_dir.cos(),
                y: h / 2.0 + bg_speed * t * bg_dir.sin(),
                angle: bg_rot * t,
                scale: bg_scale0 * (bg_zoom * t).exp(),
            }
        })
        .collect();

    let k = rng.random_range(cfg.objects_min.max(1)..=cfg.objects_max.max(cfg.objects_min.max(1)));
    let mut objects: Vec<ObjectSpec> = Vec::with_capacity(k + 1);
    for i in 0..k {
        let id = (i + 1) as u8;
        let family = pick(rng, split.shape_families());
        let shape = Shape::sample(family, rng);
        let radius = cfg.object_size * w.min(h) * rng.random_range(0.8..1.2);
        let (texture, distractor_of) = if i > 0 && rng.random::<f32>() < cfg.distractor_prob {
            let src = rng.random_range(0..i);
            (objects[src].texture.clone(), Some(objects[src].id))
        } else {
            (object_texture(rng, split, radius, unit), None)
        };
        // motion: log-scale ramp, constant spin, velocity with bounces
        let change = rng.random_range(-cfg.scale_change..=cfg.scale_change);
        let lambda = (1.0 + change).max(0.05).ln() / last;
        let omega = rng.random_range(-cfg.rotation..=cfg.rotation);
        let angle0 = rng.random_range(0.0..TAU);
        let amp = cfg.deformation * radius;
        let waves: Vec<Wave> = if amp > 0.0 {
            (0..3)
                .map(|_| {
                    let (ka, kk) = (rng.random_range(0.0..TAU), rng.random_range(1.0..2.0));
                    let da = rng.random_range(0.0..TAU);
                    let a = amp / 3.0;
                    Wave {
                        k: [kk * ka.cos() / radius, kk * ka.sin() / radius],
                        omega: rng.random_range(0.05..0.15),
                        phase: rng.random_range(0.0..TAU),
                        disp: [a * da.cos(), a * da.sin()],
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut obj = ObjectSpec {
            id,
            shape_family: Some(family),
            points: sample_points(rng, &shape, radius, cfg.points_per_object),
            shape,
            radius,
            texture,
            distractor_of,
            occluder: false,
            poses: (0..t_len)
                .map(|t| Pose {
                    x: 0.0,
                    y: 0.0,
                    angle: angle0 + omega * t as f32,
                    scale: (lambda * t as f32).exp(),
                })
                .collect(),
            waves,
            tint: Vec::new(),
        };
        let ext = obj.extent();
        let (lo_x, hi_x, lo_y, hi_y) = if cfg.exits {
            (-1.2 * ext, w + 1.2 * ext, -1.2 * ext, h + 1.2 * ext)
        } else {
            (ext, w - 1.0 - ext, ext, h - 1.0 - ext)
        };
        // start inside the frame so the first-frame mask shows every object
        let sx = rng.random_range(0.0..1.0) * (w - 1.0 - 2.0 * ext).max(0.0) + ext.min(w / 2.0);
        let sy = rng.random_range(0.0..1.0) * (h - 1.0 - 2.0 * ext).max(0.0) + ext.min(h / 2.0);
        let speed = cfg.speed * unit * rng.random_range(0.7..1.3);
        let dir = rng.random_range(0.0..TAU);
        for (t, p) in obj.poses.iter_mut().enumerate() {
            p.x = fold(sx + speed * dir.cos() * t as f32, lo_x, hi_x);
            p.y = fold(sy + speed * dir.sin() * t as f32, lo_y, hi_y);
        }
        objects.push(obj);
    }

    // z-order swap: two objects cross in depth mid-clip
    let swap = if k >= 2 && rng.random::<f32>() < 0.5 {
        let a = rng.random_range(0..k);
        let b = (a + rng.random_range(1..k)) % k;
        Some(DepthSwap {
            frame: rng.random_range(t_len / 4..=(3 * t_len / 4).max(t_len / 4)),
            a: objects[a].id,
            b: objects[b].id,
        })
    } else {
        None
    };

    // occluder bar: covers the whole target for `occlusion_len` frames, front-most
    if cfg.occlusion_len > 0 && t_len > cfg.occlusion_len && !objects.is_empty() {
        let target = rng.random_range(0..objects.len());
        let d = cfg.occlusion_len as f32;
        let t_mid = rng.random_range(d / 2.0..=(t_len as f32 - 1.0 - d / 2.0).max(d / 2.0));
        let beta = rng.random_range(0.0..TAU);
        let v_rel = (cfg.speed * unit).max(1.0);
        let ext_t = objects[target].extent();
        let half_w = ext_t + 1.0 + v_rel * d / 2.0;
        let shape = Shape::Bar {
            length: (1.5 * ext_t + 2.0) / half_w,
        };
        let poses = objects[target]
            .poses
            .iter()
            .enumerate()
            .map(|(t, p)| Pose {
                x: p.x + beta.cos() * v_rel * (t as f32 - t_mid),
                y: p.y + beta.sin() * v_rel * (t as f32 - t_mid),
                angle: beta,
                scale: 1.0,
            })
            .collect();
        let texture = object_texture(rng, split, half_w, unit);
        objects.push(ObjectSpec {
            id: (k + 1) as u8,
            shape_family: None,
            points: sample_points(rng, &shape, half_w, cfg.points_per_object),
            shape,
            radius: half_w,
            texture,
            distractor_of: None,
            occluder: true,
            poses,
            waves: Vec::new(),
            tint: Vec::new(),
        });
    }

    // lighting: global gain and bias ramps plus a slow oscillation, per-object colour drift
    let l = cfg.lighting;
    let (gain, bias) = if l > 0.0 {
        let (a, b) = (rng.random_range(-0.6..0.6), rng.random_range(-0.4..0.4));
        let (c, d) = (rng.random_range(-0.6..0.6), rng.random_range(-0.4..0.4));
        let (f, phi) = (rng.random_range(0.5..1.5), rng.random_range(0.0..TAU));
        let curve = |t: usize, r: f32, s: f32| {
            let ramp = 2.0 * t as f32 / last - 1.0;
            r * ramp + s * (TAU * f * t as f32 / last + phi).sin()
        };
        (
            (0..t_len).map(|t| 1.0 + l * curve(t, a, b)).collect(),
            (0..t_len).map(|t| 30.0 * l * curve(t, c, d)).collect(),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    if l > 0.0 {
        for o in objects.iter_mut() {
            let ph: [f32; 3] = [
                rng.random_range(0.0..TAU),
                rng.random_range(0.0..TAU),
                rng.random_range(0.0..TAU),
            ];
            let f = rng.random_range(0.5..1.5);
            o.tint = (0..t_len)
                .map(|t| {
                    let a = TAU * f * t as f32 / last;
                    [
                        1.0 + 0.25 * l * (a + ph[0]).sin(),
                        1.0 + 0.25 * l * (a + ph[1]).sin(),
                        1.0 + 0.25 * l * (a + ph[2]).sin(),
                    ]
                })
                .collect();
        }
    }

    SceneSpec {
        width: cfg.width,
        height: cfg.height,
        frames: t_len,
        background: BackgroundSpec::Texture {
            texture: bg_tex,
            poses: bg_poses,
        },
        objects,
        swap,
        gain,
        bias,
        noise_sigma: cfg.noise_sigma * 255.0,
        noise_seed: rng.random(),
    }
}

/// The path of the analytic disc's centre.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DiscPath {
    /// `start + t · velocity`, pixels.
    Line {
        /// Centre at frame 0.
        start: [f32; 2],
        /// Pixels per frame.
        velocity: [f32; 2],
    },
    /// `centre + radius · (cos(omega t + phase), sin(omega t + phase))`.
    Circle {
        /// Centre of the circle, pixels.
        centre: [f32; 2],
        /// Radius of the circle, pixels.
        radius: f32,
        /// Angular speed, radians per frame.
        omega: f32,
        /// Angle at frame 0, radians.
        phase: f32,
    },
}

/// The analytic test scene: one textured disc of known radius on a plain background, moving on a
/// known path, no deformation, no lighting change, no noise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscScene {
    /// Frame width, pixels.
    pub width: u32,
    /// Frame height, pixels.
    pub height: u32,
    /// Number of frames.
    pub frames: usize,
    /// Disc radius at scale 1, pixels.
    pub radius: f32,
    /// Path of the centre.
    pub path: DiscPath,
    /// Spin, radians per frame (the texture turns with the disc).
    pub rotation: f32,
    /// Log-scale change per frame (0 = constant radius).
    pub growth: f32,
    /// The disc's texture.
    pub texture: TextureSpec,
    /// Background colour.
    pub background: [u8; 3],
    /// Number of tracked points (point 0 is the centre).
    pub points: usize,
    /// Seed of the tracked points' positions.
    pub seed: u64,
}

impl DiscScene {
    /// A 128² clip of 24 frames: a radius-30 disc of `family` texture on grey, moving in a
    /// straight line at (1.3, 0.7) px/frame and spinning at 0.05 rad/frame.
    pub fn new(family: TextureFamily, seed: u64) -> DiscScene {
        DiscScene {
            width: 128,
            height: 128,
            frames: 24,
            radius: 30.0,
            path: DiscPath::Line {
                start: [40.3, 50.6],
                velocity: [1.3, 0.7],
            },
            rotation: 0.05,
            growth: 0.0,
            texture: TextureSpec {
                family,
                seed,
                size: 96,
                feature: 10.0,
                octaves: 4,
                detail: 12.0,
            },
            background: [128, 128, 128],
            points: 16,
            seed,
        }
    }

    /// The analytic centre at frame `t`, pixels.
    pub fn centre(&self, t: usize) -> [f64; 2] {
        let t = t as f64;
        match self.path {
            DiscPath::Line { start, velocity } => [
                start[0] as f64 + t * velocity[0] as f64,
                start[1] as f64 + t * velocity[1] as f64,
            ],
            DiscPath::Circle {
                centre,
                radius,
                omega,
                phase,
            } => {
                let a = omega as f64 * t + phase as f64;
                [
                    centre[0] as f64 + radius as f64 * a.cos(),
                    centre[1] as f64 + radius as f64 * a.sin(),
                ]
            }
        }
    }

    /// The disc's scale at frame `t` (its radius is `radius · scale(t)`).
    pub fn scale(&self, t: usize) -> f32 {
        (self.growth * t as f32).exp()
    }

    /// The scene to render.
    pub fn spec(&self) -> SceneSpec {
        let mut rng = crate::rng::sample_rng(self.seed, 0xD15C, 0);
        let shape = Shape::Ellipse {
            aspect: 1.0,
            angle: 0.0,
        };
        let bg = self.background.map(f32::from);
        SceneSpec {
            width: self.width,
            height: self.height,
            frames: self.frames,
            background: BackgroundSpec::Plain { colour: bg },
            objects: vec![ObjectSpec {
                id: 1,
                shape_family: None,
                points: sample_points(&mut rng, &shape, self.radius, self.points),
                shape,
                radius: self.radius,
                texture: self.texture.clone(),
                distractor_of: None,
                occluder: false,
                poses: (0..self.frames)
                    .map(|t| {
                        let c = self.centre(t);
                        Pose {
                            x: c[0] as f32,
                            y: c[1] as f32,
                            angle: self.rotation * t as f32 + PI / 7.0,
                            scale: self.scale(t),
                        }
                    })
                    .collect(),
                waves: Vec::new(),
                tint: Vec::new(),
            }],
            swap: None,
            gain: Vec::new(),
            bias: Vec::new(),
            noise_sigma: 0.0,
            noise_seed: 0,
        }
    }
}
