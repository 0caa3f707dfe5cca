//! The procedural video generator: the project's embedded default data.
//!
//! A clip is a stack of layers composited back to front: a periodic procedural background under a
//! slow global similarity, then K textured objects, each with a star-convex outline, a trajectory
//! of similarity transforms (velocity with bounces, spin, log-scale ramp) and a smooth non-rigid
//! deformation; optionally an occluder bar that hides one object for a number of frames, a depth
//! swap, same-texture distractors, lighting drift and sensor noise. Rendering is inverse mapping
//! (see `render.rs`), so the masks (DAVIS layout, label = front-most layer with coverage > 1/2),
//! the point tracks and their visibility are exact by construction.
//!
//! Everything is reproducible from ([`GENERATOR_VERSION`], seed, config): all randomness of clip
//! `index` comes from [`crate::rng::sample_rng`]`(seed, salt(version, split), index)` and the
//! per-texel and per-pixel values from counter-based hashes, so a clip is bit-identical across
//! runs and thread counts. Train and eval [`Split`]s draw from disjoint texture and shape
//! families.
//!
//! Training streams clips in memory ([`generate_clip`] then [`SynthClip::into_source`]); the CLI
//! (`vssl data synth`) writes a DAVIS-style tree with [`write_dataset`].
//!
//! ```
//! use vssl_data::synth::{generate_clip, Preset, Split};
//! let mut cfg = Preset::Easy.config();
//! cfg.width = 64;
//! cfg.height = 64;
//! cfg.frames = 4;
//! let clip = generate_clip(&cfg, Split::Train, 7, 0)?;
//! assert_eq!(clip.frames.len(), 4);
//! assert!(clip.masks[0].pixels().any(|p| p.0[0] > 0));
//! # Ok::<(), vssl_data::Error>(())
//! ```

mod davis;
mod render;
mod scene;
mod shape;
mod texture;

use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use davis::{davis_palette, write_dataset, write_davis};
pub use scene::{
    BackgroundSpec, DepthSwap, DiscPath, DiscScene, ObjectSpec, Pose, SceneSpec, Wave,
};
pub use shape::{Shape, ShapeFamily};
pub use texture::{TextureFamily, TextureSpec};

use crate::FrameSource;
use crate::frame::{Frame, LabelMap};
use crate::source::memory::MemorySource;
use crate::{Error, Result};

/// Version of the generator's output. Bump it whenever the same (seed, config) would render
/// different pixels, masks or tracks; it salts the random streams and is written in every meta.
pub const GENERATOR_VERSION: u32 = 1;

/// Difficulty presets (values in `reference/data.md`'s knob table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Slow, large, few objects, clean pixels, 24 frames.
    Easy,
    /// The default: 3 objects, deformation, distractors, 4-frame occlusions, 48 frames.
    Medium,
    /// Fast, small, 4–6 objects, long occlusions, exits, strong lighting and noise, 96 frames.
    Hard,
}

impl Preset {
    /// All presets, easiest first.
    pub const ALL: [Preset; 3] = [Preset::Easy, Preset::Medium, Preset::Hard];

    /// The preset's lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Easy => "easy",
            Preset::Medium => "medium",
            Preset::Hard => "hard",
        }
    }

    /// The preset's configuration at 256².
    pub fn config(self) -> SynthConfig {
        let base = SynthConfig {
            width: 256,
            height: 256,
            frames: 48,
            objects_min: 3,
            objects_max: 3,
            speed: 2.0,
            rotation: 0.05,
            scale_change: 0.3,
            deformation: 0.08,
            background_motion: 0.5,
            distractor_prob: 0.3,
            occlusion_len: 4,
            exits: false,
            object_size: 0.14,
            lighting: 0.2,
            noise_sigma: 0.02,
            jpeg_quality: 85,
            points_per_object: 8,
        };
        match self {
            Preset::Medium => base,
            Preset::Easy => SynthConfig {
                frames: 24,
                objects_min: 1,
                objects_max: 2,
                speed: 1.0,
                rotation: 0.02,
                scale_change: 0.1,
                deformation: 0.0,
                background_motion: 0.0,
                distractor_prob: 0.0,
                occlusion_len: 0,
                exits: false,
                object_size: 0.2,
                lighting: 0.0,
                noise_sigma: 0.0,
                jpeg_quality: 95,
                ..base
            },
            Preset::Hard => SynthConfig {
                frames: 96,
                objects_min: 4,
                objects_max: 6,
                speed: 3.5,
                rotation: 0.1,
                scale_change: 0.5,
                deformation: 0.15,
                background_motion: 1.5,
                distractor_prob: 0.7,
                occlusion_len: 12,
                exits: true,
                object_size: 0.09,
                lighting: 0.4,
                noise_sigma: 0.05,
                jpeg_quality: 60,
                ..base
            },
        }
    }
}

impl FromStr for Preset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::op(
                    "Preset::from_str",
                    format!("unknown preset {s:?}: use easy, medium or hard"),
                )
            })
    }
}

/// Every knob of the generator. `Default` is the `medium` preset; see [`Preset::config`].
///
/// Difficulty is monotone in each knob, so sweeping one knob gives a robustness curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthConfig {
    /// Frame width, pixels (256 for CI, 854 for DAVIS-like "full").
    pub width: u32,
    /// Frame height, pixels (256 for CI, 480 for "full").
    pub height: u32,
    /// Clip length T in frames (easy 24, medium 48, hard 96).
    pub frames: usize,
    /// Fewest objects per clip (easy 1, medium 3, hard 4).
    pub objects_min: usize,
    /// Most objects per clip (easy 2, medium 3, hard 6), not counting the occluder bar.
    pub objects_max: usize,
    /// Object speed in pixels per frame at 256², scaled with min(width, height)/256
    /// (1 / 2 / 3.5); each object draws 0.7–1.3 times this.
    pub speed: f32,
    /// Largest spin, radians per frame (0.02 / 0.05 / 0.1); each object draws uniformly within ±.
    pub rotation: f32,
    /// Largest relative scale change over the clip (0.1 / 0.3 / 0.5 means ±10% / ±30% / ±50%).
    pub scale_change: f32,
    /// Non-rigid deformation amplitude A as a fraction of the object radius (0 / 0.08 / 0.15).
    pub deformation: f32,
    /// Background pan in pixels per frame at 256² (0 none / 0.5 slow / 1.5 fast), with a
    /// proportional slow zoom and rotation.
    pub background_motion: f32,
    /// Probability that an object after the first copies an earlier object's texture
    /// (same-texture distractor) (0 / 0.3 / 0.7).
    pub distractor_prob: f32,
    /// Frames during which an occluder bar fully hides one object (0 = no occluder) (0 / 4 / 12).
    /// The bar is an extra, front-most object with its own id.
    pub occlusion_len: usize,
    /// Whether objects may leave the frame and come back (no / no / yes).
    pub exits: bool,
    /// Object radius as a fraction of min(width, height), ±20% per object
    /// (large 0.2 / medium 0.14 / small 0.09).
    pub object_size: f32,
    /// Lighting drift amplitude: global gain 1 ± this, bias ± 30·this levels, per-object colour
    /// drift ± this/4 (0 / 0.2 / 0.4).
    pub lighting: f32,
    /// Sensor noise standard deviation as a fraction of 255 (0 / 0.02 / 0.05).
    pub noise_sigma: f32,
    /// JPEG quality of written frames, 1–100 (95 / 85 / 60).
    pub jpeg_quality: u8,
    /// Tracked points per object (point 0 is the object's canonical centre).
    pub points_per_object: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Preset::Medium.config()
    }
}

impl SynthConfig {
    /// Checks that the knobs are in range; errors name the knob.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::op("SynthConfig::validate", what.to_string()));
        if self.width < 8 || self.height < 8 || self.width > 8192 || self.height > 8192 {
            return bad("width and height must be 8..=8192");
        }
        if self.frames == 0 {
            return bad("frames must be at least 1");
        }
        if self.objects_min == 0 || self.objects_max < self.objects_min || self.objects_max > 250 {
            return bad("need 1 <= objects_min <= objects_max <= 250");
        }
        let finite_nonneg = [
            self.speed,
            self.rotation,
            self.background_motion,
            self.deformation,
            self.lighting,
            self.noise_sigma,
        ]
        .iter()
        .all(|v| v.is_finite() && *v >= 0.0);
        if !finite_nonneg {
            return bad(
                "speed, rotation, background_motion, deformation, lighting and noise_sigma must be finite and >= 0",
            );
        }
        if !(0.0..0.9).contains(&self.scale_change) {
            return bad("scale_change must be in [0, 0.9)");
        }
        if self.deformation > 0.3 {
            return bad("deformation must be <= 0.3 (larger amplitudes fold the texture)");
        }
        if !(0.0..=1.0).contains(&self.distractor_prob) {
            return bad("distractor_prob must be in [0, 1]");
        }
        if !(self.object_size > 0.01 && self.object_size <= 0.5) {
            return bad("object_size must be in (0.01, 0.5]");
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return bad("jpeg_quality must be 1..=100");
        }
        Ok(())
    }
}

/// Which half of the generator's families a clip draws from.
///
/// | split | textures | shapes |
/// |---|---|---|
/// | `train` | fBm noise, stripes | ellipses, radial-Fourier of orders 2–3 |
/// | `eval` | Voronoi cells, checker/plaid | radial-Fourier of orders 4–7, stars/polygons |
///
/// Self-supervised training on `train` clips and evaluation on `eval` clips never share a texture
/// or shape family; the split also salts the random stream, so seeds are not shared either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Pre-training clips.
    Train,
    /// Evaluation clips.
    Eval,
}

impl Split {
    /// The texture families of this split (disjoint between splits).
    pub fn texture_families(self) -> &'static [TextureFamily] {
        match self {
            Split::Train => &[TextureFamily::Fbm, TextureFamily::Stripes],
            Split::Eval => &[TextureFamily::Cells, TextureFamily::Plaid],
        }
    }

    /// The shape families of this split (disjoint between splits).
    pub fn shape_families(self) -> &'static [ShapeFamily] {
        match self {
            Split::Train => &[ShapeFamily::Ellipse, ShapeFamily::FourierLow],
            Split::Eval => &[ShapeFamily::FourierHigh, ShapeFamily::Star],
        }
    }

    /// The split's lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Eval => "eval",
        }
    }

    /// The RNG "epoch" slot of this split: the generator version and the split.
    fn salt(self) -> u64 {
        ((GENERATOR_VERSION as u64) << 32)
            | match self {
                Split::Train => 1,
                Split::Eval => 2,
            }
    }
}

impl FromStr for Split {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "eval" | "val" => Ok(Split::Eval),
            _ => Err(Error::op(
                "Split::from_str",
                format!("unknown split {s:?}: use train or eval"),
            )),
        }
    }
}

/// The track of one point: its canonical position and, per frame, image position and visibility.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointTrack {
    /// Position in the object's canonical (texture) coordinates, texels.
    pub canonical: [f32; 2],
    /// Image position per frame, pixels, pixel centres at integers (also when not visible).
    pub xy: Vec<[f32; 2]>,
    /// Whether the point is seen in each frame: inside the frame and not under a layer in front.
    pub visible: Vec<bool>,
}

/// The tracked points of one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectTrack {
    /// The object's label in the masks.
    pub id: u8,
    /// Its points; point 0 is the object's canonical centre.
    pub points: Vec<PointTrack>,
}

/// Everything needed to reproduce and describe a clip (written as `meta/<name>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthMeta {
    /// [`GENERATOR_VERSION`] that made the clip.
    pub generator_version: u32,
    /// Dataset seed.
    pub seed: u64,
    /// Clip index within the dataset.
    pub index: u64,
    /// The split (`None` for hand-built scenes such as [`DiscScene`]).
    pub split: Option<Split>,
    /// The configuration (`None` for hand-built scenes).
    pub config: Option<SynthConfig>,
    /// The full scene description the clip was rendered from.
    pub scene: SceneSpec,
}

/// One generated clip: frames, exact masks, exact tracks, and its description.
#[derive(Debug, Clone)]
pub struct SynthClip {
    /// RGB frames.
    pub frames: Vec<Frame>,
    /// Label maps: 0 = background, 1..=K = object ids (front-most layer with coverage > 1/2).
    pub masks: Vec<LabelMap>,
    /// Point tracks per object.
    pub tracks: Vec<ObjectTrack>,
    /// Parameters, seed and version.
    pub meta: SynthMeta,
}

impl SynthClip {
    /// The frames as an in-memory [`crate::source::FrameSource`] named `name` (no copy).
    pub fn into_source(self, name: impl Into<String>) -> Result<MemorySource> {
        MemorySource::new(name, self.frames)
    }

    /// Number of objects (including an occluder bar).
    pub fn objects(&self) -> usize {
        self.meta.scene.objects.len()
    }
}

/// Renders a scene description into a clip (`split`, `config` are recorded in its meta).
pub fn render_scene(scene: SceneSpec) -> Result<SynthClip> {
    let (frames, masks, tracks) = render::render(&scene)?;
    Ok(SynthClip {
        frames,
        masks,
        tracks,
        meta: SynthMeta {
            generator_version: GENERATOR_VERSION,
            seed: 0,
            index: 0,
            split: None,
            config: None,
            scene,
        },
    })
}

/// Draws the scene of clip `index` of the dataset (`cfg`, `split`, `seed`) without rendering it.
pub fn sample_scene(cfg: &SynthConfig, split: Split, seed: u64, index: u64) -> Result<SceneSpec> {
    cfg.validate()?;
    let mut rng = crate::rng::sample_rng(seed, split.salt(), index);
    Ok(scene::sample_scene(cfg, split, &mut rng))
}

/// Generates clip `index` of the dataset (`cfg`, `split`, `seed`), in memory.
///
/// The same arguments give the same bytes on every run and thread count.
pub fn generate_clip(cfg: &SynthConfig, split: Split, seed: u64, index: u64) -> Result<SynthClip> {
    let scene = sample_scene(cfg, split, seed, index)?;
    let mut clip = render_scene(scene)?;
    clip.meta.seed = seed;
    clip.meta.index = index;
    clip.meta.split = Some(split);
    clip.meta.config = Some(cfg.clone());
    Ok(clip)
}

/// Clip `index` of a dataset as a [`crate::FrameSource`] that renders only the frames asked for
/// (a training pair reads 2 of a clip's frames): the same pixels as [`generate_clip`]'s frames.
#[derive(Debug, Clone)]
pub struct SynthSource {
    scene: SceneSpec,
    name: String,
}

impl SynthSource {
    /// The source of clip `index` of the dataset (`cfg`, `split`, `seed`), called `name` in logs.
    ///
    /// # Errors
    /// [`Error::Op`] for an invalid configuration.
    pub fn new(
        cfg: &SynthConfig,
        split: Split,
        seed: u64,
        index: u64,
        name: impl Into<String>,
    ) -> Result<Self> {
        Ok(Self {
            scene: sample_scene(cfg, split, seed, index)?,
            name: name.into(),
        })
    }
}

impl FrameSource for SynthSource {
    fn len(&self) -> usize {
        self.scene.frames
    }

    fn size(&self) -> (u32, u32) {
        (self.scene.width, self.scene.height)
    }

    fn frames(&mut self, indices: &[usize], resize: Option<(u32, u32)>) -> Result<Vec<Frame>> {
        let frames = render::render_frames(&self.scene, indices)
            .map_err(|e| Error::op("SynthSource::frames", format!("{}: {e}", self.name)))?;
        // Resized as every other source resizes (OpenCV's bilinear).
        MemorySource::new(self.name.clone(), frames)?
            .frames(&(0..indices.len()).collect::<Vec<_>>(), resize)
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

impl DiscScene {
    /// Renders the analytic disc scene.
    pub fn render(&self) -> Result<SynthClip> {
        let mut clip = render_scene(self.spec())?;
        clip.meta.seed = self.seed;
        Ok(clip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_monotone_and_valid() {
        let [e, m, h] = Preset::ALL.map(Preset::config);
        for c in [&e, &m, &h] {
            c.validate().unwrap();
        }
        assert!(e.speed < m.speed && m.speed < h.speed);
        assert!(e.rotation < m.rotation && m.rotation < h.rotation);
        assert!(e.deformation < m.deformation && m.deformation < h.deformation);
        assert!(e.noise_sigma < m.noise_sigma && m.noise_sigma < h.noise_sigma);
        assert!(e.jpeg_quality > m.jpeg_quality && m.jpeg_quality > h.jpeg_quality);
        assert!(e.object_size > m.object_size && m.object_size > h.object_size);
        assert!(!m.exits && h.exits);
        assert_eq!(SynthConfig::default(), m);
        assert_eq!("HARD".parse::<Preset>().ok(), Some(Preset::Hard));
        assert!("extreme".parse::<Preset>().is_err());
    }

    #[test]
    fn config_is_serde_with_defaults_and_no_unknown_fields() -> Result<()> {
        let c: SynthConfig = serde_json::from_str(r#"{"frames": 5, "exits": true}"#)
            .map_err(|e| Error::op("t", e.to_string()))?;
        assert_eq!(
            (c.frames, c.exits, c.speed),
            (5, true, Preset::Medium.config().speed)
        );
        assert!(serde_json::from_str::<SynthConfig>(r#"{"frame": 5}"#).is_err());
        let bad = SynthConfig {
            jpeg_quality: 0,
            ..SynthConfig::default()
        };
        assert!(bad.validate().is_err());
        Ok(())
    }
}
