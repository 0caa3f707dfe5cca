//! Mean intersection over union of part labels from one confusion matrix, as the VIP evaluation
//! of TimeCycle (`eval_vip.py`, used unchanged by UVC and ContrastCorr) computes it.
//!
//! Every frame of every video adds its pixels to one `C × C` confusion matrix (rows: GT class,
//! columns: predicted class); GT pixels outside `0..C` (e.g. 255, "ignore") are not counted.
//! Class `c`'s IoU is `M[c][c] / (Σ_row c + Σ_col c − M[c][c])`, and mIoU is the mean over the
//! classes whose union is non-empty.
//!
//! Choice: a class absent from both the GT and the predictions has IoU 0/0; it is left out of the
//! mean (reported as `None`). That is what the script's `np.nanmean` does, and the only sound
//! choice: counting it as 0 or 1 would move the score with classes the data never shows. A class
//! present in only one of them has IoU 0 and counts.
//!
//! Predictions are expected at the GT size (the script resizes mismatched predictions with PIL's
//! ANTIALIAS filter, which blends label ids; resize label maps with nearest neighbour before
//! calling [`Confusion::add`]). A predicted class ≥ C is an error here; the script's `bincount`
//! would silently count it in the next GT row.

use serde::Serialize;
use vssl_data::frame::LabelMap;

use crate::{Error, Result};

/// A confusion matrix over `num_classes` labels: `count(gt, pred)` pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confusion {
    num_classes: usize,
    counts: Vec<u64>,
}

/// The scores of a confusion matrix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MiouResult {
    /// Mean IoU over the classes present in the GT or the predictions (NaN if none).
    pub miou: f64,
    /// IoU per class; `None` for classes absent from both.
    pub iou: Vec<Option<f64>>,
    /// Correctly labelled pixels / counted pixels (NaN if none).
    pub pixel_accuracy: f64,
    /// Mean over GT-present classes of `M[c][c] / Σ_row c` (NaN if none).
    pub mean_accuracy: f64,
}

impl Confusion {
    /// An empty matrix over classes `0..num_classes` (at most 256: labels are bytes).
    pub fn new(num_classes: usize) -> Result<Self> {
        if num_classes == 0 || num_classes > 256 {
            return Err(Error::op(
                "Confusion::new",
                format!("num_classes must be 1..=256, got {num_classes}"),
            ));
        }
        Ok(Self {
            num_classes,
            counts: vec![0; num_classes * num_classes],
        })
    }

    /// A matrix from its counts, row-major (`counts[gt · C + pred]`).
    pub fn from_counts(num_classes: usize, counts: Vec<u64>) -> Result<Self> {
        let mut c = Self::new(num_classes)?;
        if counts.len() != num_classes * num_classes {
            return Err(Error::op(
                "Confusion::from_counts",
                format!(
                    "{} counts for {num_classes} classes (expected {})",
                    counts.len(),
                    num_classes * num_classes
                ),
            ));
        }
        c.counts = counts;
        Ok(c)
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Pixels of GT class `gt` predicted as `pred` (0 outside the classes).
    pub fn get(&self, gt: usize, pred: usize) -> u64 {
        if gt < self.num_classes && pred < self.num_classes {
            self.counts[gt * self.num_classes + pred]
        } else {
            0
        }
    }

    /// Adds one frame. GT pixels with a label ≥ C are skipped; errors when the sizes differ or a
    /// counted pixel's prediction is ≥ C.
    pub fn add(&mut self, gt: &LabelMap, pred: &LabelMap) -> Result<()> {
        if gt.dimensions() != pred.dimensions() {
            return Err(Error::op(
                "Confusion::add",
                format!(
                    "prediction is {}x{} but the GT is {}x{}",
                    pred.width(),
                    pred.height(),
                    gt.width(),
                    gt.height()
                ),
            ));
        }
        self.add_labels(gt.as_raw(), pred.as_raw())
    }

    /// Adds pixels given as label slices (same rules as [`Confusion::add`]).
    pub fn add_labels(&mut self, gt: &[u8], pred: &[u8]) -> Result<()> {
        if gt.len() != pred.len() {
            return Err(Error::op(
                "Confusion::add_labels",
                format!("{} GT pixels but {} predicted", gt.len(), pred.len()),
            ));
        }
        let n = self.num_classes;
        if let Some(&p) = gt
            .iter()
            .zip(pred)
            .find(|&(&g, &p)| usize::from(g) < n && usize::from(p) >= n)
            .map(|(_, p)| p)
        {
            return Err(Error::op(
                "Confusion::add_labels",
                format!("predicted label {p} is not a class (0..{n})"),
            ));
        }
        for (&g, &p) in gt.iter().zip(pred) {
            if usize::from(g) < n {
                self.counts[usize::from(g) * n + usize::from(p)] += 1;
            }
        }
        Ok(())
    }

    /// Adds another matrix over the same classes.
    pub fn merge(&mut self, other: &Confusion) -> Result<()> {
        if other.num_classes != self.num_classes {
            return Err(Error::op(
                "Confusion::merge",
                format!(
                    "{} classes cannot merge into {}",
                    other.num_classes, self.num_classes
                ),
            ));
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        Ok(())
    }

    /// IoU of every class (`None` when absent from both GT and predictions), mIoU, pixel
    /// accuracy and mean class accuracy.
    pub fn scores(&self) -> MiouResult {
        let n = self.num_classes;
        let diag = |c: usize| self.counts[c * n + c] as f64;
        let row = |c: usize| (0..n).map(|p| self.counts[c * n + p]).sum::<u64>() as f64;
        let col = |c: usize| (0..n).map(|g| self.counts[g * n + c]).sum::<u64>() as f64;
        let iou: Vec<Option<f64>> = (0..n)
            .map(|c| {
                let union = row(c) + col(c) - diag(c);
                (union > 0.0).then(|| diag(c) / union)
            })
            .collect();
        let acc: Vec<f64> = (0..n)
            .filter(|&c| row(c) > 0.0)
            .map(|c| diag(c) / row(c))
            .collect();
        let total: u64 = self.counts.iter().sum();
        let correct: f64 = (0..n).map(diag).sum();
        MiouResult {
            miou: mean(iou.iter().flatten().copied()),
            iou,
            pixel_accuracy: if total == 0 {
                f64::NAN
            } else {
                correct / total as f64
            },
            mean_accuracy: mean(acc.into_iter()),
        }
    }

    /// The mean IoU ([`Confusion::scores`]`.miou`).
    pub fn miou(&self) -> f64 {
        self.scores().miou
    }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { s / n as f64 }
}
