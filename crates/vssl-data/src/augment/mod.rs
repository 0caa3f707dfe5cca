//! ContrastCorr's training augmentation, as its reference code does it
//! (`libs/loader_trackingnet.py`, `libs/transforms_multi.py`, `model.py`).
//!
//! The reference reads a frame, resizes it to multiples of 64 ([`crate::sample::reference_frame_size`],
//! bilinear), converts it to **8-bit Lab** (`cv2.COLOR_BGR2LAB`), and only then augments it, so the
//! geometric operations below run on Lab bytes. To follow it exactly:
//!
//! 1. [`rgb_to_lab_frame`] on each decoded (and resized) RGB frame;
//! 2. [`WarmupPipeline::apply`] (epochs 0–99) or [`MainPipeline::apply`] (epochs 100–199);
//! 3. [`lab_frame_to_tensor`] → `x = (lab − 128)/128`, the reconstruction target, `[3, H, W]`;
//! 4. per batch, [`encoder_input`] → `((x + 1)/2 − mean)/std` (ImageNet statistics on L, a, b),
//!    then [`channel_dropout`] on the reference and target batches.
//!
//! The geometric operations ([`cv`]) do not look at the colours, so they can equally run on RGB
//! frames followed by [`rgb_frame_to_lab_tensor`]; the results then differ from the reference's
//! only where an interpolating resize mixes pixels (Lab is not linear in RGB).
//!
//! Every random choice is drawn from the `rng` argument, in the order the reference draws them
//! (documented on each `apply`); pass [`crate::rng::sample_rng`] of the sample.

pub mod cv;

use candle_core::{Device, Tensor};
use rand::Rng;

use crate::frame::Frame;
use crate::{Error, Result};
pub use cv::{
    Interpolation, crop, crop_or_pad, flip_horizontal, pad_reflect, reflect_pad_map, resize,
    resize_and_pad, rotate,
};

/// ImageNet RGB means, applied by the reference to L, a, b scaled to `[0, 1]`.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet RGB standard deviations, applied by the reference to L, a, b scaled to `[0, 1]`.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A uniform integer angle in `[−max, max]` degrees (`random.randint(0, 2·max) − max`).
fn draw_angle(max: u32, rng: &mut impl Rng) -> i32 {
    let m = max as i64;
    (rng.random_range(0..=2 * m) - m) as i32
}

/// A uniform offset in `0..=n − size` when `n > size`, else 0 (no draw, as the reference).
fn draw_offset(n: usize, size: usize, rng: &mut impl Rng) -> usize {
    if n > size {
        rng.random_range(0..=n - size)
    } else {
        0
    }
}

/// `random.uniform(a, b)`: `a + (b − a)·u` with `u` uniform in `[0, 1)`.
fn uniform(a: f64, b: f64, rng: &mut impl Rng) -> f64 {
    a + (b - a) * rng.random::<f64>()
}

/// Checks the pipelines' size parameters.
fn check_param(op: &'static str, name: &str, v: usize) -> Result<()> {
    if v == 0 {
        return Err(Error::op(op, format!("{name} must be positive")));
    }
    Ok(())
}

/// The warm-up augmentation (`VidListv1`, epochs 0–99), applied to a (reference, target) pair of
/// frames of the same size.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmupPipeline {
    /// Largest rotation in degrees; one integer angle in `[−rotate, rotate]` is shared by both
    /// frames (`--rotate 10`). 0 turns the rotation off (no draw).
    pub rotate: u32,
    /// Scale range: one ratio `~ U[1/scale, scale]` is shared by both frames (`--scale 1.2`).
    /// A value ≤ 0 turns the scaling off (no draw), as in the reference.
    pub scale: f64,
    /// Side of the square crops, drawn independently per frame (`--patch_size 256`).
    pub crop: usize,
}

impl Default for WarmupPipeline {
    fn default() -> Self {
        Self {
            rotate: 10,
            scale: 1.2,
            crop: 256,
        }
    }
}

impl WarmupPipeline {
    /// Augments a pair in the reference's order:
    ///
    /// 1. `RandomRotate`: one angle (draw 1) for both frames, [`rotate`];
    /// 2. `RandomScale`: one ratio (draw 2), new size `int(ratio·w) × int(ratio·h)`, Lanczos4
    ///    when the ratio is below 1, cubic above, unchanged at exactly 1 ([`resize`]);
    /// 3. `RandomCrop(crop, seperate=True)`: independent offsets, drawn as x of the reference,
    ///    x of the target, y of the reference, y of the target (each only when that axis is
    ///    longer than `crop`); a shorter axis is reflection-padded ([`crop_or_pad`]);
    /// 4. `RandomHorizontalFlip`: one draw `u < 0.5` flips both frames.
    ///
    /// Returns the two `crop × crop` frames.
    ///
    /// # Errors
    /// [`Error::Op`] (`WarmupPipeline::apply`) when the frames differ in size, are empty or
    /// thinner than 2 pixels, or `crop` is 0.
    pub fn apply(
        &self,
        reference: &Frame,
        target: &Frame,
        rng: &mut impl Rng,
    ) -> Result<(Frame, Frame)> {
        const OP: &str = "WarmupPipeline::apply";
        check_param(OP, "crop", self.crop)?;
        if reference.dimensions() != target.dimensions() {
            return Err(Error::op(
                OP,
                format!(
                    "reference {:?} and target {:?} differ in size",
                    reference.dimensions(),
                    target.dimensions()
                ),
            ));
        }
        let (mut r, mut t);
        let (mut rr, mut tr) = (reference, target);
        if self.rotate > 0 {
            let angle = draw_angle(self.rotate, rng);
            r = rotate(rr, angle)?;
            t = rotate(tr, angle)?;
            (rr, tr) = (&r, &t);
        }
        if self.scale > 0.0 {
            let ratio = uniform(1.0 / self.scale, self.scale, rng);
            if ratio != 1.0 {
                let (w, h) = rr.dimensions();
                let tw = (ratio * w as f64) as usize;
                let th = (ratio * h as f64) as usize;
                let interp = if ratio < 1.0 {
                    Interpolation::Lanczos4
                } else {
                    Interpolation::Cubic
                };
                r = resize(rr, tw, th, interp)?;
                t = resize(tr, tw, th, interp)?;
                (rr, tr) = (&r, &t);
            }
        }
        let (w, h) = rr.dimensions();
        let (w, h) = (w as usize, h as usize);
        let x0 = draw_offset(w, self.crop, rng);
        let x1 = draw_offset(w, self.crop, rng);
        let y0 = draw_offset(h, self.crop, rng);
        let y1 = draw_offset(h, self.crop, rng);
        let mut a = crop_or_pad(rr, x0, y0, self.crop)?;
        let mut b = crop_or_pad(tr, x1, y1, self.crop)?;
        if rng.random::<f64>() < 0.5 {
            a = flip_horizontal(&a);
            b = flip_horizontal(&b);
        }
        Ok((a, b))
    }
}

/// The main-phase augmentation (`VidListv2`, epochs 100–199).
#[derive(Debug, Clone, PartialEq)]
pub struct MainPipeline {
    /// Largest rotation of the reference frame in degrees (`--rotate 10`); the target is never
    /// rotated. 0 turns the rotation off (no draw).
    pub rotate: u32,
    /// Side of the square `ResizeandPad` canvas (`full_size = 640`).
    pub full_size: usize,
    /// Side of the square reference crop (`--patch_size 256`).
    pub crop: usize,
}

impl Default for MainPipeline {
    fn default() -> Self {
        Self {
            rotate: 10,
            full_size: 640,
            crop: 256,
        }
    }
}

/// What [`MainPipeline::apply`] drew for the reference crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MainCrop {
    /// Rotation of the reference frame, degrees (counter-clockwise).
    pub angle: i32,
    /// Left of the crop in the `full_size²` reference canvas.
    pub x: usize,
    /// Top of the crop in the `full_size²` reference canvas.
    pub y: usize,
}

impl MainPipeline {
    /// Augments a (reference, target) pair in the reference's order:
    ///
    /// - reference: `RandomRotate` (draw 1: the angle), [`resize_and_pad`] to `full_size`, then
    ///   `RandomCrop(crop)` (draw 2: x, draw 3: y, each only when that side exceeds `crop`);
    /// - target: [`resize_and_pad`] to `full_size` only (not rotated).
    ///
    /// Returns the `crop²` rotated reference crop, the `full_size²` target and the draws.
    ///
    /// # Errors
    /// [`Error::Op`] (`MainPipeline::apply`) for empty frames, frames thinner than 2 pixels, or a
    /// zero size.
    pub fn apply(
        &self,
        reference: &Frame,
        target: &Frame,
        rng: &mut impl Rng,
    ) -> Result<(Frame, Frame, MainCrop)> {
        const OP: &str = "MainPipeline::apply";
        check_param(OP, "crop", self.crop)?;
        check_param(OP, "full_size", self.full_size)?;
        let angle = if self.rotate > 0 {
            draw_angle(self.rotate, rng)
        } else {
            0
        };
        let rotated = rotate(reference, angle)?;
        let canvas = resize_and_pad(&rotated, self.full_size)?;
        let (w, h) = canvas.dimensions();
        let x = draw_offset(w as usize, self.crop, rng);
        let y = draw_offset(h as usize, self.crop, rng);
        let r = crop_or_pad(&canvas, x, y, self.crop)?;
        let t = resize_and_pad(target, self.full_size)?;
        Ok((r, t, MainCrop { angle, x, y }))
    }
}

// ------------------------------------------------------------------------------------------------
// Lab conversion, normalisation, channel dropout.

/// Converts an RGB frame to OpenCV's 8-bit Lab (`L·255/100`, `a + 128`, `b + 128`), stored in a
/// [`Frame`] (channels L, a, b), as the reference does right after reading a frame
/// (`cv2.cvtColor(bgr, COLOR_BGR2LAB)`; see [`vssl_core::ops::color::rgb_to_lab_u8`]).
///
/// # Errors
/// Only if the colour kernel rejects the buffer (it cannot for a well-formed frame).
pub fn rgb_to_lab_frame(frame: &Frame) -> Result<Frame> {
    let (w, h) = frame.dimensions();
    let mut lab = vec![0u8; frame.as_raw().len()];
    vssl_core::ops::color::rgb_to_lab_u8(frame.as_raw(), &mut lab)?;
    Frame::from_raw(w, h, lab).ok_or_else(|| Error::op("rgb_to_lab_frame", "buffer size mismatch"))
}

/// The reconstruction target of an 8-bit Lab frame: `x = (lab − 128)/128` (`ToTensor` without
/// `/255`, then `Normalize(128, 128)`), an `f32` tensor `[3, H, W]` (L, a, b) on the CPU.
///
/// # Errors
/// Only on a candle failure.
pub fn lab_frame_to_tensor(lab: &Frame) -> Result<Tensor> {
    let (w, h) = lab.dimensions();
    let (w, h) = (w as usize, h as usize);
    let plane = w * h;
    let mut data = vec![0f32; 3 * plane];
    let (l, rest) = data.split_at_mut(plane);
    let (a, b) = rest.split_at_mut(plane);
    for (i, p) in lab.as_raw().chunks_exact(3).enumerate() {
        l[i] = (p[0] as f32 - 128.0) / 128.0;
        a[i] = (p[1] as f32 - 128.0) / 128.0;
        b[i] = (p[2] as f32 - 128.0) / 128.0;
    }
    Ok(Tensor::from_vec(data, (3, h, w), &Device::Cpu)?)
}

/// The reconstruction target of an **RGB** frame: its 8-bit Lab through
/// [`vssl_core::ops::color::rgb_u8_to_lab_tensor`], `(lab − 128)/128`, `f32` `[3, H, W]` on the
/// CPU. Equal to `lab_frame_to_tensor(&rgb_to_lab_frame(frame)?)`.
///
/// # Errors
/// Only on a candle failure.
pub fn rgb_frame_to_lab_tensor(frame: &Frame) -> Result<Tensor> {
    let (w, h) = frame.dimensions();
    let t = Tensor::from_slice(frame.as_raw(), (h as usize, w as usize, 3), &Device::Cpu)?;
    vssl_core::ops::color::rgb_u8_to_lab_tensor(&t)
}

/// The correspondence encoder's input from reconstruction targets: `((x + 1)/2 − mean)/std` with
/// [`IMAGENET_MEAN`] and [`IMAGENET_STD`] per channel (L, a, b), as the reference's `normalize`
/// module does. `x` is `f32` `[3, H, W]` or `[B, 3, H, W]`, on any device.
///
/// # Errors
/// [`Error::Op`] (`encoder_input`) when `x` is not of that shape.
pub fn encoder_input(x: &Tensor) -> Result<Tensor> {
    let shape = channel_shape("encoder_input", x)?;
    let mean = Tensor::from_slice(&IMAGENET_MEAN, 3, x.device())?
        .to_dtype(x.dtype())?
        .reshape(shape.as_slice())?;
    let std = Tensor::from_slice(&IMAGENET_STD, 3, x.device())?
        .to_dtype(x.dtype())?
        .reshape(shape.as_slice())?;
    let half = ((x + 1.0)? / 2.0)?;
    Ok(half.broadcast_sub(&mean)?.broadcast_div(&std)?)
}

/// The broadcast shape of a per-channel vector for a `[3, H, W]` or `[B, 3, H, W]` tensor.
fn channel_shape(op: &'static str, x: &Tensor) -> Result<Vec<usize>> {
    match x.dims() {
        [3, _, _] => Ok(vec![3, 1, 1]),
        [_, 3, _, _] => Ok(vec![1, 3, 1, 1]),
        d => Err(Error::op(
            op,
            format!("expected [3, H, W] or [B, 3, H, W], got {d:?}"),
        )),
    }
}

/// The draws of [`channel_dropout`] alone: the channels to zero (empty: none), for a caller that
/// applies them itself (e.g. `vssl_train`'s step, through its batch's `dropped_channels`).
pub fn draw_channel_dropout(rng: &mut impl Rng) -> Vec<usize> {
    if rng.random::<f64>() < 0.3 {
        return Vec::new();
    }
    let k = rng.random_range(1..=2usize);
    let mut channels = [0usize, 1, 2];
    // A partial Fisher–Yates shuffle: k distinct channels.
    for i in 0..k {
        let j = rng.random_range(i..3);
        channels.swap(i, j);
    }
    channels[..k].to_vec()
}

/// Channel dropout (`model.py: dropout2d`, from CorrFlow), applied after [`encoder_input`]:
/// with probability 0.3 (draw 1: `u < 0.3`) nothing happens; otherwise `k ∈ {1, 2}` (draw 2) and
/// `k` distinct channels (draw 3) are zeroed in **both** tensors, which are then scaled by
/// `3/(3 − k)`.
///
/// `reference` and `target` are `[3, H, W]` or `[B, 3, H, W]` (their sizes may differ). One draw
/// covers the whole call: the reference calls it once per **batch**, so every sample of the
/// batch loses the same channels. Pass a per-step stream to reproduce that (or call it per
/// sample, with the sample's stream, for per-sample dropout). Returns the two tensors and the
/// dropped channels (empty when nothing was dropped).
///
/// # Errors
/// [`Error::Op`] (`channel_dropout`) when a tensor has neither shape.
pub fn channel_dropout(
    reference: &Tensor,
    target: &Tensor,
    rng: &mut impl Rng,
) -> Result<(Tensor, Tensor, Vec<usize>)> {
    const OP: &str = "channel_dropout";
    let rs = channel_shape(OP, reference)?;
    let ts = channel_shape(OP, target)?;
    let dropped = draw_channel_dropout(rng);
    if dropped.is_empty() {
        return Ok((reference.clone(), target.clone(), dropped));
    }
    let k = dropped.len();
    let s = 3.0 / (3 - k) as f32;
    let mut mask = [s; 3];
    for &c in &dropped {
        mask[c] = 0.0;
    }
    let apply = |x: &Tensor, shape: &[usize]| -> Result<Tensor> {
        let m = Tensor::from_slice(&mask, 3, x.device())?
            .to_dtype(x.dtype())?
            .reshape(shape)?;
        Ok(x.broadcast_mul(&m)?)
    };
    Ok((apply(reference, &rs)?, apply(target, &ts)?, dropped))
}
