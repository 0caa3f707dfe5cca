//! Rendering a [`SceneSpec`] by inverse mapping, plus its exact masks and point tracks.
//!
//! For every pixel and layer the renderer maps the pixel centre back to canonical coordinates
//! (inverse similarity, then the deformation), samples the shape field and the texture
//! bilinearly, and composites back to front; the label is the front-most layer whose field is
//! positive there (coverage > 1/2). Tracks use the same maps forwards (the deformation is
//! inverted by a fixed-point iteration) and the same field test for visibility, so tracks,
//! visibility and masks agree by construction. Frames and rows are rendered in parallel; every
//! pixel is a pure function of the scene, so the output does not depend on the thread count.

use rayon::prelude::*;

use super::scene::{BackgroundSpec, ObjectSpec, SceneSpec};
use super::shape::Field;
use super::texture::{self, Texture, TextureSpec, hash4, mix};
use super::{ObjectTrack, PointTrack};
use crate::frame::{Frame, LabelMap};
use crate::{Error, Result};

/// One object layer prepared for frame `t`.
struct LayerFrame<'a> {
    obj: &'a ObjectSpec,
    field: &'a Field,
    tex: &'a Texture,
    inv: [f32; 6],
    tint: [f32; 3],
    /// Inclusive pixel bounding box (x0, x1, y0, y1); empty when x0 > x1 or y0 > y1.
    bbox: (i64, i64, i64, i64),
}

impl LayerFrame<'_> {
    /// Field and canonical texture coordinate at image point (x, y).
    #[inline]
    fn at(&self, t: usize, x: f32, y: f32) -> (f32, f32, f32) {
        let m = &self.inv;
        let vx = m[0] * x + m[1] * y + m[2];
        let vy = m[3] * x + m[4] * y + m[5];
        let (ux, uy) = self.obj.deform(t, vx, vy);
        (self.field.sample(ux, uy), ux, uy)
    }
}

/// Rasters of a scene: background texture, object fields and (deduplicated) textures.
struct Rasters {
    background: Option<Texture>,
    fields: Vec<Field>,
    textures: Vec<Texture>,
    /// Index into `textures` per object.
    tex_of: Vec<usize>,
}

fn check(spec: &SceneSpec) -> Result<()> {
    let fail = |msg: String| Err(Error::op("synth::render", msg));
    if spec.width == 0 || spec.height == 0 || spec.frames == 0 {
        return fail(format!(
            "empty clip: {}x{} pixels, {} frames",
            spec.width, spec.height, spec.frames
        ));
    }
    if spec.objects.len() > 255 {
        return fail(format!("{} objects, at most 255", spec.objects.len()));
    }
    for o in &spec.objects {
        if o.poses.len() != spec.frames || !(o.tint.is_empty() || o.tint.len() == spec.frames) {
            return fail(format!(
                "object {}: {} poses and {} tints for {} frames",
                o.id,
                o.poses.len(),
                o.tint.len(),
                spec.frames
            ));
        }
        let good_pose = |p: &super::scene::Pose| {
            p.scale.is_finite() && p.scale > 0.0 && p.x.is_finite() && p.y.is_finite()
        };
        let good_radius = o.radius.is_finite() && o.radius > 0.0;
        if !(good_radius && o.poses.iter().all(good_pose)) {
            return fail(format!(
                "object {}: radius or pose not positive/finite",
                o.id
            ));
        }
    }
    if let BackgroundSpec::Texture { poses, .. } = &spec.background
        && (poses.len() != spec.frames || poses.iter().any(|p| p.scale.is_nan() || p.scale <= 0.0))
    {
        return fail(format!(
            "background: {} poses for {} frames",
            poses.len(),
            spec.frames
        ));
    }
    Ok(())
}

fn rasters(spec: &SceneSpec) -> Rasters {
    let background = match &spec.background {
        BackgroundSpec::Texture { texture, .. } => Some(texture::generate(texture)),
        BackgroundSpec::Plain { .. } => None,
    };
    let fields = spec
        .objects
        .par_iter()
        .map(|o| Field::new(&o.shape, o.radius))
        .collect();
    let mut specs: Vec<&TextureSpec> = Vec::new();
    let tex_of = spec
        .objects
        .iter()
        .map(|o| match specs.iter().position(|s| **s == o.texture) {
            Some(i) => i,
            None => {
                specs.push(&o.texture);
                specs.len() - 1
            }
        })
        .collect();
    let textures = specs.par_iter().map(|s| texture::generate(s)).collect();
    Rasters {
        background,
        fields,
        textures,
        tex_of,
    }
}

/// The object layers at frame `t`, back to front.
fn layers<'a>(spec: &'a SceneSpec, r: &'a Rasters, t: usize) -> Vec<LayerFrame<'a>> {
    spec.order(t)
        .into_iter()
        .map(|i| {
            let obj = &spec.objects[i];
            let p = obj.poses[t];
            let d: f32 = obj
                .waves
                .iter()
                .map(|w| w.disp[0].abs() + w.disp[1].abs())
                .sum();
            let e = (obj.radius * obj.shape.max_radius() + d + 2.0) * p.scale + 2.0;
            let bbox = (
                ((p.x - e).floor() as i64).max(0),
                ((p.x + e).ceil() as i64).min(spec.width as i64 - 1),
                ((p.y - e).floor() as i64).max(0),
                ((p.y + e).ceil() as i64).min(spec.height as i64 - 1),
            );
            LayerFrame {
                obj,
                field: &r.fields[i],
                tex: &r.textures[r.tex_of[i]],
                inv: p.inverse(),
                tint: obj.tint.get(t).copied().unwrap_or([1.0; 3]),
                bbox,
            }
        })
        .collect()
}

/// An approximately standard normal number from a hash (sum of four uniforms, rescaled).
#[inline]
fn normal(h: u64) -> f32 {
    let s: u64 = (0..4).map(|k| (h >> (16 * k)) & 0xFFFF).sum();
    (s as f32 / 65536.0 - 2.0) * 3.0f32.sqrt()
}

fn render_frame(spec: &SceneSpec, r: &Rasters, t: usize) -> (Frame, LabelMap) {
    let (w, h) = (spec.width as usize, spec.height as usize);
    let layers = layers(spec, r, t);
    let gain = spec.gain.get(t).copied().unwrap_or(1.0);
    let bias = spec.bias.get(t).copied().unwrap_or(0.0);
    let mut rgb = vec![0u8; w * h * 3];
    let mut lab = vec![0u8; w * h];
    rgb.par_chunks_mut(w * 3)
        .zip(lab.par_chunks_mut(w))
        .enumerate()
        .for_each(|(y, (row, lrow))| {
            let yf = y as f32;
            let mut acc = vec![[0.0f32; 3]; w];
            match (&spec.background, &r.background) {
                (BackgroundSpec::Texture { poses, .. }, Some(tex)) => {
                    let m = poses[t].inverse();
                    for (x, a) in acc.iter_mut().enumerate() {
                        let xf = x as f32;
                        *a = tex.sample(m[0] * xf + m[1] * yf + m[2], m[3] * xf + m[4] * yf + m[5]);
                    }
                }
                (BackgroundSpec::Plain { colour }, _) => acc.fill(*colour),
                _ => {}
            }
            for l in &layers {
                let (x0, x1, y0, y1) = l.bbox;
                if (y as i64) < y0 || (y as i64) > y1 || x0 > x1 {
                    continue;
                }
                for x in x0 as usize..=x1 as usize {
                    let (f, ux, uy) = l.at(t, x as f32, yf);
                    if f <= -0.5 {
                        continue;
                    }
                    let alpha = (f + 0.5).min(1.0);
                    let c = l.tex.sample(ux, uy);
                    let a = &mut acc[x];
                    for k in 0..3 {
                        a[k] += (c[k] * l.tint[k] - a[k]) * alpha;
                    }
                    if f > 0.0 {
                        lrow[x] = l.obj.id;
                    }
                }
            }
            // `as u8` saturates, and truncating v + 1/2 >= 0 rounds half up (no libm call)
            if spec.noise_sigma > 0.0 {
                let row_key = hash4(spec.noise_seed, t as u64, y as u64, 0);
                for (x, (px, a)) in row.chunks_exact_mut(3).zip(&acc).enumerate() {
                    let mut hsh = mix(row_key.wrapping_add(x as u64));
                    for k in 0..3 {
                        let v = a[k] * gain + bias + spec.noise_sigma * normal(hsh);
                        px[k] = (v + 0.5).max(0.0) as u8;
                        hsh = mix(hsh);
                    }
                }
            } else {
                for (px, a) in row.chunks_exact_mut(3).zip(&acc) {
                    for k in 0..3 {
                        px[k] = (a[k] * gain + bias + 0.5).max(0.0) as u8;
                    }
                }
            }
        });
    // the buffers have exactly w*h*3 and w*h bytes, so from_raw cannot fail
    let frame = Frame::from_raw(spec.width, spec.height, rgb)
        .unwrap_or_else(|| Frame::new(spec.width, spec.height));
    let mask = LabelMap::from_raw(spec.width, spec.height, lab)
        .unwrap_or_else(|| LabelMap::new(spec.width, spec.height));
    (frame, mask)
}

fn tracks(spec: &SceneSpec, r: &Rasters) -> Vec<ObjectTrack> {
    let (w, h) = (spec.width as f64, spec.height as f64);
    let per_frame: Vec<Vec<LayerFrame<'_>>> =
        (0..spec.frames).map(|t| layers(spec, r, t)).collect();
    spec.objects
        .iter()
        .map(|o| ObjectTrack {
            id: o.id,
            points: o
                .points
                .iter()
                .map(|&u| {
                    let mut xy = Vec::with_capacity(spec.frames);
                    let mut visible = Vec::with_capacity(spec.frames);
                    for (t, ls) in per_frame.iter().enumerate() {
                        let v = o.undeform(t, u);
                        let p = o.poses[t].forward(v);
                        let inside =
                            p[0] >= -0.5 && p[0] < w - 0.5 && p[1] >= -0.5 && p[1] < h - 0.5;
                        let (px, py) = (p[0] as f32, p[1] as f32);
                        let me = ls.iter().position(|l| l.obj.id == o.id).unwrap_or(0);
                        let hidden = ls[me + 1..].iter().any(|l| l.at(t, px, py).0 > 0.0);
                        let own = ls.get(me).is_some_and(|l| l.at(t, px, py).0 > 0.0);
                        xy.push([px, py]);
                        visible.push(inside && own && !hidden);
                    }
                    PointTrack {
                        canonical: u,
                        xy,
                        visible,
                    }
                })
                .collect(),
        })
        .collect()
}

/// Renders every frame, mask and track of `spec`.
pub(crate) fn render(spec: &SceneSpec) -> Result<(Vec<Frame>, Vec<LabelMap>, Vec<ObjectTrack>)> {
    check(spec)?;
    let r = rasters(spec);
    let (frames, masks): (Vec<Frame>, Vec<LabelMap>) = (0..spec.frames)
        .into_par_iter()
        .map(|t| render_frame(spec, &r, t))
        .unzip();
    let tracks = tracks(spec, &r);
    Ok((frames, masks, tracks))
}

/// Renders only the frames `indices` of `spec` (each as [`render`] would render it).
pub(crate) fn render_frames(spec: &SceneSpec, indices: &[usize]) -> Result<Vec<Frame>> {
    check(spec)?;
    if let Some(&t) = indices.iter().find(|&&t| t >= spec.frames) {
        return Err(Error::op(
            "synth::render_frames",
            format!("frame {t} asked, the clip has {}", spec.frames),
        ));
    }
    let r = rasters(spec);
    Ok(indices
        .par_iter()
        .map(|&t| render_frame(spec, &r, t).0)
        .collect())
}
