//! Keypoint propagation on BADJA (Biggs et al., ACCV 2018): the joints of a sequence's first
//! annotated frame carried through the DAVIS frames that follow ([`crate::keypoints`]), scored
//! by PCK at the later annotated frames ([`crate::metrics::pck`]), invisible joints skipped.
//!
//! BADJA's threshold is `α · √A` with `A` the object's mask area in the frame; the mask is the
//! DAVIS annotation of that frame (`Annotations/480p/<seq>/<frame>.png`, any object id), at the
//! size the joints are scaled to.

use candle_core::Device;
use serde::Serialize;
use vssl_core::{Error, Result};
use vssl_data::dataset::Badja;
use vssl_data::dataset::davis::read_mask;
use vssl_data::frame::Frame;
use vssl_data::source::FrameSource;
use vssl_data::source::folder::FolderSource;

use crate::keypoints::{KeypointOptions, track};
use crate::metrics::pck::{PckConvention, PckResult, PckVideo, Point, pck};
use crate::propagate::Propagation;
use crate::protocol::Protocol;
use crate::vos::Method;

/// The frames of a source from `start` on, renumbered from 0.
struct From<'a> {
    inner: &'a mut dyn FrameSource,
    start: usize,
}

impl FrameSource for From<'_> {
    fn len(&self) -> usize {
        self.inner.len() - self.start
    }

    fn size(&self) -> (u32, u32) {
        self.inner.size()
    }

    fn frames(&mut self, indices: &[usize], resize: Option<(u32, u32)>) -> Result<Vec<Frame>> {
        let shifted: Vec<usize> = indices.iter().map(|i| i + self.start).collect();
        self.inner.frames(&shifted, resize)
    }

    fn describe(&self) -> String {
        format!("{} from frame {}", self.inner.describe(), self.start)
    }
}

/// One sequence's joints: predicted and ground truth at each annotated frame (the first is the
/// seed), visibility, mask areas.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SequenceKeypoints {
    /// The DAVIS sequence.
    pub sequence: String,
    /// Frame index (in the DAVIS sequence) of each annotated frame.
    pub frames: Vec<usize>,
    /// Predicted joints `(x, y)` at each annotated frame.
    pub pred: Vec<Vec<Point>>,
    /// Ground-truth joints at each annotated frame.
    pub gt: Vec<Vec<Point>>,
    /// Visibility of each ground-truth joint.
    pub visible: Vec<Vec<bool>>,
    /// Object mask area (pixels) at each annotated frame.
    pub mask_areas: Vec<f64>,
}

impl SequenceKeypoints {
    /// The view [`pck`] takes.
    pub fn as_pck(&self) -> PckVideo<'_> {
        PckVideo {
            pred: &self.pred,
            gt: &self.gt,
            visible: &self.visible,
            mask_areas: Some(&self.mask_areas),
        }
    }
}

/// Propagates the joints of `set`'s first annotated frame by `method` under `protocol` through
/// the DAVIS-2016 frames of `davis_root` and collects predictions at every annotated frame.
///
/// # Errors
/// [`Error::File`] naming the frame folder or annotation at fault; the engine's errors.
pub fn propagate_badja(
    set: &Badja,
    davis_root: &std::path::Path,
    method: &Method,
    protocol: &Protocol,
    device: &Device,
) -> Result<SequenceKeypoints> {
    let first = set
        .frames
        .first()
        .ok_or_else(|| Error::op("badja", format!("{}: no annotated frame", set.sequence)))?;
    let dir = first
        .image_path
        .parent()
        .ok_or_else(|| Error::file(&first.image_path, "a frame path without a folder"))?;
    let mut source = FolderSource::open(dir)?;
    let to_point = |p: &[f32; 2]| (f64::from(p[0]), f64::from(p[1]));
    let seed: Vec<[f32; 2]> = first.joints.clone();
    let track_all: Vec<Vec<[f32; 2]>> = match method {
        Method::CopyFirst => vec![seed.clone(); source.len() - first.frame],
        Method::Propagate(encoder) => {
            let run = Propagation {
                protocol,
                encoder,
                device: device.clone(),
            };
            let mut from = From {
                inner: &mut source,
                start: first.frame,
            };
            track(&run, &mut from, &seed, KeypointOptions::default())?
        }
    };
    let annotations = davis_root
        .join("Annotations")
        .join("480p")
        .join(&set.sequence);
    let mut out = SequenceKeypoints {
        sequence: set.sequence.clone(),
        frames: Vec::new(),
        pred: Vec::new(),
        gt: Vec::new(),
        visible: Vec::new(),
        mask_areas: Vec::new(),
    };
    for f in &set.frames {
        let stem = f
            .image_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mask_path = annotations.join(format!("{stem}.png"));
        let mask = read_mask(&mask_path)?;
        let area = mask
            .as_raw()
            .iter()
            .filter(|&&v| v != 0 && v != 255)
            .count() as f64;
        out.frames.push(f.frame);
        out.pred.push(
            track_all[f.frame - first.frame]
                .iter()
                .map(to_point)
                .collect(),
        );
        out.gt.push(f.joints.iter().map(to_point).collect());
        out.visible.push(f.visible.clone());
        out.mask_areas.push(area);
    }
    Ok(out)
}

/// PCK@0.1 and @0.2 of a method over sequences.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeypointScores {
    /// PCK@0.1.
    pub pck_01: PckResult,
    /// PCK@0.2.
    pub pck_02: PckResult,
}

/// PCK@0.1 and @0.2 of `sequences` under `convention`.
///
/// # Errors
/// [`pck`]'s errors.
pub fn score(sequences: &[SequenceKeypoints], convention: PckConvention) -> Result<KeypointScores> {
    let videos: Vec<PckVideo> = sequences
        .iter()
        .map(|s| {
            let mut v = s.as_pck();
            if convention == PckConvention::Jhmdb {
                v.mask_areas = None;
            }
            v
        })
        .collect();
    Ok(KeypointScores {
        pck_01: pck(&videos, 0.1, convention)?,
        pck_02: pck(&videos, 0.2, convention)?,
    })
}
