//! PCK@α: the fraction of keypoints predicted within a tolerance of the ground truth.
//!
//! Two conventions ([`PckConvention`]):
//!
//! - **BADJA** (Biggs et al., "Creatures great and SMAL", ACCV 2018): a joint is correct when its
//!   distance to the GT is ≤ `α · √A`, A being the area in pixels of the frame's GT object mask;
//!   the score is the fraction of correct (frame, joint) pairs, pooled over every video.
//! - **JHMDB** (the `eval_pck.py` of TimeCycle/UVC that keypoint-propagation papers use): a
//!   joint is correct when `d / (0.6 · diag) ≤ α`, `diag` being the diagonal of the bounding box
//!   of the frame's *visible* GT joints; per joint index, the fraction of correct entries over
//!   every video is its PCK, and the score is the mean of the per-joint PCKs (joints never
//!   evaluated are left out of that mean; the script would divide by zero).
//!
//! In both, invisible joints are skipped and the first frame of every video (the seed the labels
//! were propagated from) is not evaluated. Scores are fractions in [0, 1] (the scripts print
//! percentages). One deliberate difference from `eval_pck.py`: its box starts from
//! `min = 10⁶, max = −1`, so a frame whose visible joints all have coordinates below −1 gets a
//! wrong box; here the box is the true extent of the visible joints.

use serde::Serialize;

use crate::{Error, Result};

/// A keypoint `(x, y)` in pixels.
pub type Point = (f64, f64);

/// How the tolerance is set and the score averaged (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PckConvention {
    /// Tolerance `α · √(GT mask area)`; the fraction of all evaluated (frame, joint) pairs.
    Badja,
    /// Tolerance `α · 0.6 · diagonal of the visible GT joints' box`; the mean of per-joint PCK.
    Jhmdb,
}

/// The keypoints of one video: frame `t` of each slice belongs to frame `t` of the others, and
/// frame 0 is the seed (not evaluated).
#[derive(Debug, Clone, Copy)]
pub struct PckVideo<'a> {
    /// Predicted joints of every frame.
    pub pred: &'a [Vec<Point>],
    /// Ground-truth joints of every frame (same count per frame as `pred`).
    pub gt: &'a [Vec<Point>],
    /// Whether each GT joint is visible (same shape as `gt`).
    pub visible: &'a [Vec<bool>],
    /// [`PckConvention::Badja`] only: the area in pixels of each frame's GT object mask.
    pub mask_areas: Option<&'a [f64]>,
}

/// PCK of a set of videos.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PckResult {
    /// The α it was computed at.
    pub alpha: f64,
    /// The convention it follows.
    pub convention: PckConvention,
    /// The score: pooled fraction (BADJA) or mean of `per_joint` (JHMDB); NaN when nothing was
    /// evaluated.
    pub pck: f64,
    /// Fraction correct per joint index (NaN for a joint never evaluated).
    pub per_joint: Vec<f64>,
    /// Correct (frame, joint) pairs.
    pub correct: usize,
    /// Evaluated (frame, joint) pairs.
    pub evaluated: usize,
}

/// PCK@`alpha` of `videos` under `convention`.
///
/// Errors when `alpha` is not finite and ≥ 0, when a video's slices disagree in length (frames,
/// or joints within a frame), or, for BADJA, when `mask_areas` is missing, of the wrong length, or
/// holds a negative or non-finite area.
pub fn pck(videos: &[PckVideo<'_>], alpha: f64, convention: PckConvention) -> Result<PckResult> {
    if !(alpha.is_finite() && alpha >= 0.0) {
        return Err(Error::op(
            "pck",
            format!("alpha must be finite and ≥ 0, got {alpha}"),
        ));
    }
    let mut correct_per_joint: Vec<usize> = Vec::new();
    let mut total_per_joint: Vec<usize> = Vec::new();
    for (v, video) in videos.iter().enumerate() {
        check_video(v, video, convention)?;
        for t in 1..video.gt.len() {
            let (gt, pred, vis) = (&video.gt[t], &video.pred[t], &video.visible[t]);
            let scale = match convention {
                PckConvention::Badja => video.mask_areas.map_or(f64::NAN, |a| a[t].sqrt()),
                PckConvention::Jhmdb => 0.6 * visible_box_diagonal(gt, vis),
            };
            if correct_per_joint.len() < gt.len() {
                correct_per_joint.resize(gt.len(), 0);
                total_per_joint.resize(gt.len(), 0);
            }
            for j in 0..gt.len() {
                if !vis[j] {
                    continue;
                }
                let (dx, dy) = (pred[j].0 - gt[j].0, pred[j].1 - gt[j].1);
                let d = (dx * dx + dy * dy).sqrt();
                let ok = match convention {
                    PckConvention::Badja => d <= alpha * scale,
                    // as eval_pck.py: normalise, then compare (0/0 is NaN: not correct)
                    PckConvention::Jhmdb => d / scale <= alpha,
                };
                total_per_joint[j] += 1;
                correct_per_joint[j] += usize::from(ok);
            }
        }
    }
    let per_joint: Vec<f64> = correct_per_joint
        .iter()
        .zip(&total_per_joint)
        .map(|(&c, &n)| {
            if n == 0 {
                f64::NAN
            } else {
                c as f64 / n as f64
            }
        })
        .collect();
    let correct: usize = correct_per_joint.iter().sum();
    let evaluated: usize = total_per_joint.iter().sum();
    let pck = match convention {
        PckConvention::Badja => {
            if evaluated == 0 {
                f64::NAN
            } else {
                correct as f64 / evaluated as f64
            }
        }
        PckConvention::Jhmdb => {
            let seen: Vec<f64> = per_joint.iter().copied().filter(|v| !v.is_nan()).collect();
            if seen.is_empty() {
                f64::NAN
            } else {
                seen.iter().sum::<f64>() / seen.len() as f64
            }
        }
    };
    Ok(PckResult {
        alpha,
        convention,
        pck,
        per_joint,
        correct,
        evaluated,
    })
}

fn check_video(v: usize, video: &PckVideo<'_>, convention: PckConvention) -> Result<()> {
    let n = video.gt.len();
    if video.pred.len() != n || video.visible.len() != n {
        return Err(Error::op(
            "pck",
            format!(
                "video {v}: {} GT frames, {} predicted, {} visibility lists",
                n,
                video.pred.len(),
                video.visible.len()
            ),
        ));
    }
    for t in 0..n {
        let j = video.gt[t].len();
        if video.pred[t].len() != j || video.visible[t].len() != j {
            return Err(Error::op(
                "pck",
                format!(
                    "video {v} frame {t}: {j} GT joints, {} predicted, {} visibility flags",
                    video.pred[t].len(),
                    video.visible[t].len()
                ),
            ));
        }
    }
    if convention == PckConvention::Badja {
        let Some(areas) = video.mask_areas else {
            return Err(Error::op(
                "pck",
                format!("video {v}: BADJA's PCK needs the GT mask area of every frame"),
            ));
        };
        if areas.len() != n {
            return Err(Error::op(
                "pck",
                format!("video {v}: {} mask areas for {n} frames", areas.len()),
            ));
        }
        if let Some((t, a)) = areas
            .iter()
            .enumerate()
            .find(|(_, a)| !(a.is_finite() && **a >= 0.0))
        {
            return Err(Error::op(
                "pck",
                format!("video {v} frame {t}: mask area {a} (must be finite and ≥ 0)"),
            ));
        }
    }
    Ok(())
}

/// Diagonal of the bounding box of the visible joints (0 when fewer than two distinct points;
/// NaN when none is visible).
fn visible_box_diagonal(joints: &[Point], visible: &[bool]) -> f64 {
    let mut it = joints
        .iter()
        .zip(visible)
        .filter(|(_, v)| **v)
        .map(|(p, _)| *p);
    let Some(first) = it.next() else {
        return f64::NAN;
    };
    let (mut x0, mut y0, mut x1, mut y1) = (first.0, first.1, first.0, first.1);
    for (x, y) in it {
        x0 = x0.min(x);
        y0 = y0.min(y);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    let (w, h) = (x1 - x0, y1 - y0);
    (w * w + h * h).sqrt()
}
