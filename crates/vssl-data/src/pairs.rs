//! ContrastCorr's training samples: one frame pair per video, decoded, converted to Lab and
//! augmented as the reference does it, with bad input skipped instead of stopping the run.
//!
//! Per sample (reference `libs/loader_trackingnet.py`): pick the video, draw the pair with
//! [`pair_indices`], decode the two frames resized to [`reference_frame_size`] (both sides
//! floored to multiples of 64, bilinear), convert to 8-bit Lab, run the phase's augmentation,
//! and return `(lab − 128)/128` tensors `[3, H, W]`.
//!
//! A video that fails to open, is too short, or has a frame that fails to decode is marked bad in
//! the collection (logged once with its path and the reason, counted in the skip log) and the
//! next video is used instead: the run goes on, and the same data and seed always give the same
//! samples.

use std::path::Path;
use std::sync::Arc;

use candle_core::Tensor;
use rand::Rng;

use crate::augment::{
    MainCrop, MainPipeline, WarmupPipeline, lab_frame_to_tensor, rgb_to_lab_frame,
};
use crate::dataset::VideoCollection;
use crate::sample::{pair_indices, reference_frame_size};
use crate::skip::SkipLog;
use crate::source::FrameSource;
use crate::{Error, Result};

/// Which phase's augmentation a [`PairDataset`] applies.
#[derive(Debug, Clone)]
pub enum PairPhase {
    /// Warm-up: two independent `crop²` crops, shared rotation, scale and flip.
    Warmup(WarmupPipeline),
    /// Main: a rotated `crop²` reference patch and the whole `full_size²` target.
    Main(MainPipeline),
}

/// One training pair.
#[derive(Debug, Clone)]
pub struct PairSample {
    /// Reference frame (warm-up crop or main-phase patch), `(lab − 128)/128`, `[3, H, W]`.
    pub reference: Tensor,
    /// Target frame, `(lab − 128)/128`, `[3, H, W]`.
    pub target: Tensor,
    /// The collection entry the pair comes from (after skipping bad ones).
    pub entry: usize,
    /// The (reference, target) frame indices in that video.
    pub frames: (usize, usize),
    /// The main phase's draws (rotation and crop position); `None` in the warm-up phase.
    pub crop: Option<MainCrop>,
}

/// One frame pair per video of a [`VideoCollection`], augmented for a training phase.
pub struct PairDataset<O> {
    videos: VideoCollection<O>,
    phase: PairPhase,
}

impl<O> PairDataset<O>
where
    O: Fn(&Path) -> Result<Box<dyn FrameSource>> + Send + Sync,
{
    /// A dataset over `videos` (which should require at least 1 frame per video) for `phase`.
    pub fn new(videos: VideoCollection<O>, phase: PairPhase) -> Self {
        Self { videos, phase }
    }

    /// Number of videos: an epoch is one pair per video, as in the reference.
    pub fn len(&self) -> usize {
        self.videos.len()
    }

    /// True when the collection lists no video.
    pub fn is_empty(&self) -> bool {
        self.videos.is_empty()
    }

    /// The skipped inputs so far.
    pub fn skips(&self) -> &Arc<SkipLog> {
        self.videos.skips()
    }

    /// The pair of sample `index`, drawn from `rng` (pass
    /// [`crate::rng::sample_rng`]`(seed, epoch, index)`).
    ///
    /// Starts at video `index % len` and moves on to the next usable video whenever one is bad.
    /// Every attempt draws from a copy of `rng` as it was on entry, so a sample does not depend
    /// on whether a bad video was already known or is found now (by this sample or by another
    /// worker's): the samples are the same whatever the order in which workers run.
    ///
    /// # Errors
    /// Only when no video of the collection is usable (the error names its root), or for an
    /// invalid pipeline configuration.
    pub fn sample<R: Rng + Clone>(&self, index: usize, rng: &mut R) -> Result<PairSample> {
        let n = self.len();
        let start = rng.clone();
        let mut at = index;
        for _ in 0..n.max(1) {
            let (entry, mut source) = self.videos.open_usable(at)?;
            *rng = start.clone();
            match self.pair_from(entry, source.as_mut(), rng) {
                Ok(sample) => return Ok(sample),
                Err(Error::File { path, msg }) => {
                    self.videos
                        .mark_bad(entry, format!("{}: {msg}", path.display()));
                    at = entry + 1;
                }
                Err(other) => return Err(other),
            }
        }
        // Every entry was tried and marked bad: open_usable says so, naming the root.
        Err(match self.videos.open_usable(at) {
            Err(e) => e,
            Ok(_) => Error::op(
                "PairDataset::sample",
                "no usable video after trying every entry",
            ),
        })
    }

    fn pair_from(
        &self,
        entry: usize,
        source: &mut dyn FrameSource,
        rng: &mut impl Rng,
    ) -> Result<PairSample> {
        let (i0, i1) = pair_indices(source.len(), rng)?;
        let (w, h) = source.size();
        let (w, h) = reference_frame_size(w as usize, h as usize);
        let decoded = source.frames(&[i0, i1], Some((w as u32, h as u32)))?;
        let [reference, target] = decoded.as_slice() else {
            return Err(Error::op(
                "PairDataset::sample",
                format!(
                    "{}: asked for 2 frames, got {}",
                    source.describe(),
                    decoded.len()
                ),
            ));
        };
        let (reference, target) = (rgb_to_lab_frame(reference)?, rgb_to_lab_frame(target)?);
        let (reference, target, crop) = match &self.phase {
            PairPhase::Warmup(p) => {
                let (r, t) = p.apply(&reference, &target, rng)?;
                (r, t, None)
            }
            PairPhase::Main(p) => {
                let (r, t, c) = p.apply(&reference, &target, rng)?;
                (r, t, Some(c))
            }
        };
        Ok(PairSample {
            reference: lab_frame_to_tensor(&reference)?,
            target: lab_frame_to_tensor(&target)?,
            entry,
            frames: (i0, i1),
            crop,
        })
    }
}
