//! The propagation engine: a first-frame label map carried through a video by feature affinity,
//! streaming.
//!
//! Frames are decoded, encoded and propagated one at a time; the context (the first frame and a
//! FIFO of the last `previous` frames' features and soft labels) is all that is kept, so memory
//! is bounded by the context and the frame size whatever the video's length. Each frame's label
//! map goes to a sink as soon as it is known.

use std::collections::VecDeque;

use candle_core::{DType, Device, Tensor};
use vssl_core::ops::local::LocalWindow;
use vssl_core::ops::propagation::{ContextFrame, GlobalOptions, propagate_global, propagate_joint};
use vssl_core::ops::resize::{nearest_indices_pil, resize_bilinear};
use vssl_core::{Error, Result};
use vssl_data::frame::LabelMap;
use vssl_data::source::FrameSource;

use crate::encoder::Encoder;
use crate::protocol::{Affinity, FirstFrameOutput, LabelDownsample, OutputRule, Protocol};

/// One propagated frame, as given to the sink.
#[derive(Debug)]
pub struct Propagated<'a> {
    /// Frame index in the video.
    pub index: usize,
    /// The label map at the frame's original size, with the first frame's ids (frame 0: the
    /// first-frame map itself).
    pub labels: &'a LabelMap,
    /// The soft labels at feature resolution `[K, h, w]`, channel `i` for the `i`-th id of
    /// [`label_ids`] of the first map (frame 0: the first frame's one-hot labels downsampled).
    pub soft: &'a Tensor,
}

/// A propagation run: the protocol, the encoder and the device features live on.
#[derive(Debug, Clone)]
pub struct Propagation<'a> {
    /// Every knob.
    pub protocol: &'a Protocol,
    /// The feature extractor.
    pub encoder: &'a Encoder,
    /// Where the encoder runs (the affinities follow its features).
    pub device: Device,
}

/// A context entry: features `[C, h, w]` and soft labels `[K, h, w]`.
#[derive(Debug, Clone)]
struct Entry {
    features: Tensor,
    labels: Tensor,
}

/// The ids of a label map, sorted, background (0) always first: channel `i` is `ids[i]`.
pub fn label_ids(map: &LabelMap) -> Vec<u8> {
    let mut seen = [false; 256];
    seen[0] = true;
    for &v in map.as_raw() {
        seen[v as usize] = true;
    }
    (0..=255u8).filter(|&i| seen[i as usize]).collect()
}

/// One-hot `[K, h, w]` of `map` (channel `i` = `ids[i]`), resized to `(h, w)` with PIL's
/// nearest rule (what `scipy.misc.imresize(..., 'nearest')` does).
pub fn one_hot_resized(map: &LabelMap, ids: &[u8], size: (usize, usize)) -> Result<Tensor> {
    let (w0, h0) = (map.width() as usize, map.height() as usize);
    let (h, w) = size;
    let (iy, ix) = (nearest_indices_pil(h0, h), nearest_indices_pil(w0, w));
    let mut lut = [usize::MAX; 256];
    for (i, &id) in ids.iter().enumerate() {
        lut[id as usize] = i;
    }
    let raw = map.as_raw();
    let mut v = vec![0f32; ids.len() * h * w];
    for (y, &sy) in iy.iter().enumerate() {
        for (x, &sx) in ix.iter().enumerate() {
            let ch = lut[raw[sy * w0 + sx] as usize];
            if ch != usize::MAX {
                v[ch * h * w + y * w + x] = 1.0;
            }
        }
    }
    Ok(Tensor::from_vec(v, (ids.len(), h, w), &Device::Cpu)?)
}

/// One-hot `[K, H, W]` of `map` (channel `i` = `ids[i]`) resized bilinearly to `size = (h, w)`
/// as OpenCV's `cv2.resize(onehot, (w, h), interpolation=INTER_LINEAR)` does on a float image
/// (pixel centres aligned, no antialiasing: the geometry of `align_corners = false`), CRW's
/// first-frame labels.
pub fn one_hot_bilinear(map: &LabelMap, ids: &[u8], size: (usize, usize)) -> Result<Tensor> {
    let (w0, h0) = (map.width() as usize, map.height() as usize);
    let mut lut = [usize::MAX; 256];
    for (i, &id) in ids.iter().enumerate() {
        lut[id as usize] = i;
    }
    let plane = h0 * w0;
    let mut v = vec![0f32; ids.len() * plane];
    for (i, &id) in map.as_raw().iter().enumerate() {
        let ch = lut[id as usize];
        if ch != usize::MAX {
            v[ch * plane + i] = 1.0;
        }
    }
    let x = Tensor::from_vec(v, (ids.len(), h0, w0), &Device::Cpu)?;
    resize_bilinear(&x, size, false)
}

/// L2-normalises every feature vector (dim 0 of `[C, h, w]`), with PyTorch's `F.normalize`
/// floor of 1e-12 on the norm.
fn l2_normalize(f: &Tensor) -> Result<Tensor> {
    let norm = f
        .sqr()?
        .sum_keepdim(0)?
        .sqrt()?
        .clamp(1e-12, f64::INFINITY)?;
    Ok(f.broadcast_div(&norm)?)
}

/// ContrastCorr's `norm_mask`: every channel whose maximum is positive is min-max scaled to
/// [0, 1]; the others stay as they are.
fn norm_mask(x: &Tensor) -> Result<Tensor> {
    let k = x.dim(0)?;
    let mut out = Vec::with_capacity(k);
    for c in 0..k {
        let ch = x.get(c)?;
        let (mn, mx) = (
            ch.min_all()?.to_scalar::<f32>()?,
            ch.max_all()?.to_scalar::<f32>()?,
        );
        out.push(if mx > 0.0 {
            ch.affine(
                1.0 / f64::from(mx - mn),
                -f64::from(mn) / f64::from(mx - mn),
            )?
        } else {
            ch
        });
    }
    Ok(Tensor::stack(&out, 0)?)
}

impl Propagation<'_> {
    /// The label map of soft labels `[K, h, w]` as the protocol's [`OutputRule`] says:
    /// upsampled (bilinear, `align_corners = false`) to the working size `work = (H, W)` or
    /// straight to the frame's `original = (H0, W0)`, optionally `norm_mask`ed, argmax over
    /// channels (the first maximum wins), to ids, then (working size) to the frame's size with
    /// PIL's nearest rule.
    ///
    /// # Errors
    /// candle's errors.
    pub fn decide(
        &self,
        soft: &Tensor,
        ids: &[u8],
        work: (usize, usize),
        original: (usize, usize),
    ) -> Result<LabelMap> {
        let (h0, w0) = original;
        let (h, w) = match self.protocol.output {
            OutputRule::WorkThenNearest => work,
            OutputRule::Bilinear => original,
        };
        let up = resize_bilinear(&soft.to_device(&Device::Cpu)?, (h, w), false)?; // [K, h, w]
        let up = if self.protocol.norm_mask {
            norm_mask(&up)?
        } else {
            up
        };
        let arg = up
            .argmax(0)?
            .to_dtype(DType::U32)?
            .flatten_all()?
            .to_vec1::<u32>()?;
        let out = if (h, w) == (h0, w0) {
            arg.iter().map(|&a| ids[a as usize]).collect()
        } else {
            let (iy, ix) = (nearest_indices_pil(h, h0), nearest_indices_pil(w, w0));
            let mut out = Vec::with_capacity(h0 * w0);
            for &sy in &iy {
                for &sx in &ix {
                    out.push(ids[arg[sy * w + sx] as usize]);
                }
            }
            out
        };
        LabelMap::from_raw(w0 as u32, h0 as u32, out)
            .ok_or_else(|| Error::op("propagate", "label map size mismatch"))
    }

    /// The features of frame `t` of `source` at the working size.
    fn encode(
        &self,
        source: &mut dyn FrameSource,
        t: usize,
        work: (usize, usize),
    ) -> Result<Tensor> {
        let frame = source
            .frames(&[t], Some((work.1 as u32, work.0 as u32)))?
            .pop()
            .ok_or_else(|| {
                Error::op(
                    "propagate",
                    format!("{}: frame {t} missing", source.describe()),
                )
            })?;
        let f = self.encoder.features_padded(
            &frame,
            self.protocol.colour,
            self.protocol.padding,
            &self.device,
        )?;
        if self.protocol.l2_normalize {
            l2_normalize(&f)
        } else {
            Ok(f)
        }
    }

    /// Soft labels of a target from its context.
    fn predict(&self, first: &Entry, queue: &VecDeque<Entry>, target: &Tensor) -> Result<Tensor> {
        let (c, h, w) = target.dims3()?;
        let n = h * w;
        match self.protocol.affinity {
            Affinity::PerFrame {
                mutual_matching,
                temperature,
                topk,
            } => {
                let opts = GlobalOptions {
                    mutual_matching,
                    scale: temperature as f32,
                    topk: topk.min(n),
                };
                let tgt = target.reshape((c, n))?;
                let mut sum: Option<Tensor> = None;
                let count = 1 + queue.len();
                for e in std::iter::once(first).chain(queue.iter()) {
                    let k = e.labels.dim(0)?;
                    let p = propagate_global(
                        &e.features.reshape((c, n))?,
                        &e.labels.reshape((k, n))?,
                        &tgt,
                        opts,
                    )?;
                    sum = Some(match sum {
                        None => p,
                        Some(s) => (s + p)?,
                    });
                }
                let sum = sum.ok_or_else(|| Error::op("propagate", "no context"))?;
                let k = sum.dim(0)?;
                Ok((sum / count as f64)?.reshape((k, h, w))?)
            }
            Affinity::Joint {
                temperature,
                topk,
                radius,
                first_frame_radius,
            } => {
                let window = |r: Option<usize>| r.map(LocalWindow::euclidean);
                let mut ctx = vec![ContextFrame {
                    features: first.features.clone(),
                    labels: first.labels.clone(),
                    window: window(first_frame_radius),
                }];
                ctx.extend(queue.iter().map(|e| ContextFrame {
                    features: e.features.clone(),
                    labels: e.labels.clone(),
                    window: window(radius),
                }));
                propagate_joint(target, &ctx, (1.0 / temperature) as f32, topk)
            }
        }
    }

    /// The working `(H, W)` of `source`'s frames, checking that the protocol is valid and the
    /// video is not empty.
    fn work_size(&self, source: &dyn FrameSource) -> Result<(usize, usize)> {
        self.protocol.validate()?;
        if source.is_empty() {
            return Err(Error::op(
                "propagate",
                format!("{}: no frame", source.describe()),
            ));
        }
        let (w0, h0) = source.size();
        let (ww, wh) = self.protocol.size.apply(w0 as usize, h0 as usize)?;
        Ok((wh, ww))
    }

    /// Propagates soft labels through every frame of `source`: `seed(h, w)` gives frame 0's
    /// labels `[K, h, w]` on the feature grid; `sink(t, soft)` receives each frame's soft labels
    /// in order (frame 0: the seed). The general form of [`Propagation::run`] (keypoints
    /// propagate heatmaps).
    ///
    /// # Errors
    /// As [`Propagation::run`]; errors of `seed` and `sink`.
    pub fn run_soft(
        &self,
        source: &mut dyn FrameSource,
        seed: impl FnOnce((usize, usize)) -> Result<Tensor>,
        mut sink: impl FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<()> {
        let work = self.work_size(source)?;
        let f0 = self.encode(source, 0, work)?;
        let (_, h, w) = f0.dims3()?;
        let l0 = seed((h, w))?.to_device(&self.device)?;
        sink(0, &l0)?;
        let first_entry = Entry {
            features: f0,
            labels: l0,
        };
        let mut queue: VecDeque<Entry> = VecDeque::with_capacity(self.protocol.previous + 1);
        if self.protocol.pad_with_first {
            for _ in 0..self.protocol.previous {
                queue.push_back(first_entry.clone());
            }
        }
        for t in 1..source.len() {
            let f = self.encode(source, t, work)?;
            let soft = self.predict(&first_entry, &queue, &f)?;
            sink(t, &soft)?;
            if self.protocol.previous > 0 {
                if queue.len() == self.protocol.previous {
                    queue.pop_front();
                }
                queue.push_back(Entry {
                    features: f,
                    labels: soft,
                });
            }
        }
        Ok(())
    }

    /// Propagates the ids of `first` (the map of frame 0, at the frames' size) through every
    /// frame of `source`, calling `sink` for each frame in order (frame 0 first: `first` itself
    /// or, with [`FirstFrameOutput::Decided`], its labels on the feature grid decided like every
    /// other frame). Returns the ids, channel order of the soft labels.
    ///
    /// # Errors
    /// [`Error::File`]/[`Error::Op`] naming the video when a frame cannot be decoded, the first
    /// map's size is not the frames' size, or the protocol is invalid; errors of the sink.
    pub fn run(
        &self,
        source: &mut dyn FrameSource,
        first: &LabelMap,
        mut sink: impl FnMut(Propagated) -> Result<()>,
    ) -> Result<Vec<u8>> {
        let (w0, h0) = source.size();
        let (w0, h0) = (w0 as usize, h0 as usize);
        if (first.width() as usize, first.height() as usize) != (w0, h0) {
            return Err(Error::op(
                "propagate",
                format!(
                    "{}: the first label map is {}x{} but the frames are {w0}x{h0}",
                    source.describe(),
                    first.width(),
                    first.height()
                ),
            ));
        }
        let work = self.work_size(source)?;
        let ids = label_ids(first);
        let downsample = self.protocol.label_downsample;
        self.run_soft(
            source,
            |grid| match downsample {
                LabelDownsample::Nearest => one_hot_resized(first, &ids, grid),
                LabelDownsample::Bilinear => one_hot_bilinear(first, &ids, grid),
            },
            |index, soft| {
                if index == 0 && self.protocol.first_frame == FirstFrameOutput::Given {
                    return sink(Propagated {
                        index,
                        labels: first,
                        soft,
                    });
                }
                let map = self.decide(soft, &ids, work, (h0, w0))?;
                sink(Propagated {
                    index,
                    labels: &map,
                    soft,
                })
            },
        )?;
        Ok(ids)
    }
}
