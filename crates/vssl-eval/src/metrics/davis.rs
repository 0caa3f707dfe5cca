//! DAVIS region similarity J, boundary accuracy F, their per-object statistics, and sequence and
//! dataset evaluation for the semi-supervised task.
//!
//! This is a re-implementation (no code copied) of the official DAVIS-2017 evaluator,
//! <https://github.com/davisvideochallenge/davis2017-evaluation> (`davis2017/metrics.py`,
//! `davis2017/utils.py`, `davis2017/evaluation.py`, `evaluation_method.py`; BSD-3-Clause, by the
//! DAVIS challenge organisers), and reproduces its numbers: `tests/golden/davis_metrics.py`
//! transcribes its semantics and the crate's tests compare with it to 1e-12 on small fixtures;
//! `tests/golden/davis_real.py` scores predictions made by a fixed rule from real DAVIS-2016 val
//! masks (854×480), and `tests/davis_real.rs` matches those numbers to 1e-9 when the data is
//! present. On the ContrastCorr authors' published DAVIS predictions the results equal the
//! official code's to 1e-15.
//!
//! The definitions, in the official code's terms:
//!
//! - **J** ([`jaccard`]): `|P ∧ G| / |P ∨ G|`, and 1 when the union is empty.
//! - **F** ([`boundary_score`]): the boundary maps of both masks ([`boundary_map`], the
//!   `seg2bmap` rule), each dilated by a disk ([`Disk`], skimage's `disk` as a `cv2.dilate`
//!   kernel) of radius [`tolerance_radius`] (`ceil(0.008 · ‖(H, W)‖₂)`, 8 px at 854×480);
//!   precision = predicted boundary pixels within the dilated GT boundary / predicted boundary
//!   pixels, recall the other way round; F = 2PR/(P+R). Special cases: no predicted boundary but
//!   a GT boundary → P = 1, R = 0; a predicted boundary but none in the GT → P = 0, R = 1;
//!   neither → P = R = 1; F = 0 when P + R = 0.
//! - **Statistics** ([`statistics`], `db_statistics`): mean (NaN-ignoring), recall (fraction of
//!   frames > 0.5) and decay (mean of the first of four bins minus mean of the last,
//!   [`decay_bins`]).
//! - **Sequences** ([`evaluate_sequence`], [`evaluate_dataset`]): the object count is the largest
//!   id in the *first* GT frame; void (255) is background; object `i`'s mask is `id == i`; the
//!   first and the last frame are not scored; a prediction with a larger id than the GT object
//!   count is an error, missing ids are empty masks.
//! - **Aggregation** ([`summarize`]): every (sequence, object) pair is one entry; J-Mean is the
//!   mean of the per-object means, likewise recall, decay and F; J&F-Mean = (J-Mean + F-Mean)/2.
//!
//! Two deliberate differences, both outside what DAVIS data can trigger: the official
//! `db_statistics` casts the bin bounds to `uint8`, so its decay is wrong for objects with more
//! than 256 scored frames (the longest DAVIS sequence has 104 frames); here the bounds are exact.
//! And the official code crashes on a sequence of fewer than three frames, where here the
//! statistics are NaN (no scored frame), which makes the dataset means NaN as well.
//!
//! Speed: the dilations are never materialised. Boundary pixels are kept as sorted columns per
//! row, and a pixel is matched when some row of the disk, as a column span, contains a boundary
//! pixel of the other map (a binary search per disk row). Frames are scored in parallel (rayon).

use std::io::BufReader;
use std::ops::Range;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;
use vssl_data::dataset::davis::{Davis, DavisSequence, read_mask};
use vssl_data::frame::LabelMap;

use crate::{Error, Result};

/// The official boundary tolerance: a fraction of the image diagonal (a value ≥ 1 is pixels).
pub const BOUND_TH: f64 = 0.008;

/// The DAVIS "void" label in ground-truth masks; the semi-supervised evaluation counts it as
/// background.
pub const VOID_ID: u8 = 255;

/// A binary mask of `width × height` pixels, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryMask {
    width: usize,
    height: usize,
    data: Vec<bool>,
}

impl BinaryMask {
    /// A mask from its pixels, row-major. Errors when `data` does not hold `width · height`
    /// values.
    pub fn new(width: usize, height: usize, data: Vec<bool>) -> Result<Self> {
        if data.len() != width * height {
            return Err(Error::op(
                "BinaryMask::new",
                format!(
                    "{} values for a {width}x{height} mask (expected {})",
                    data.len(),
                    width * height
                ),
            ));
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// An empty mask.
    pub fn zeros(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: vec![false; width * height],
        }
    }

    /// A mask whose pixel `(x, y)` is `f(x, y)`.
    pub fn from_fn(width: usize, height: usize, mut f: impl FnMut(usize, usize) -> bool) -> Self {
        let mut data = Vec::with_capacity(width * height);
        for y in 0..height {
            for x in 0..width {
                data.push(f(x, y));
            }
        }
        Self {
            width,
            height,
            data,
        }
    }

    /// The mask of object `id` in a label map (`label == id`).
    pub fn from_labels(labels: &LabelMap, id: u8) -> Self {
        Self {
            width: labels.width() as usize,
            height: labels.height() as usize,
            data: labels.as_raw().iter().map(|&v| v == id).collect(),
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Pixel `(x, y)`; false outside the mask.
    pub fn get(&self, x: usize, y: usize) -> bool {
        x < self.width && y < self.height && self.data[y * self.width + x]
    }

    /// The pixels, row-major.
    pub fn as_slice(&self) -> &[bool] {
        &self.data
    }

    /// Number of set pixels.
    pub fn count(&self) -> usize {
        self.data.iter().filter(|&&v| v).count()
    }
}

fn same_size(op: &'static str, gt: &BinaryMask, pred: &BinaryMask) -> Result<()> {
    if (gt.width, gt.height) != (pred.width, pred.height) {
        return Err(Error::op(
            op,
            format!(
                "prediction is {}x{} but the ground truth is {}x{}",
                pred.width, pred.height, gt.width, gt.height
            ),
        ));
    }
    Ok(())
}

/// Region similarity J: `|gt ∧ pred| / |gt ∨ pred|`, and 1 when both masks are empty
/// (the official `db_eval_iou` without void pixels). Errors when the sizes differ.
pub fn jaccard(gt: &BinaryMask, pred: &BinaryMask) -> Result<f64> {
    same_size("jaccard", gt, pred)?;
    let (inter, union) = counts(gt.data.len(), |i| gt.data[i], |i| pred.data[i]);
    Ok(iou(inter, union))
}

/// Intersection and union sizes of two masks given as pixel predicates.
fn counts(n: usize, g: impl Fn(usize) -> bool, p: impl Fn(usize) -> bool) -> (usize, usize) {
    let (mut inter, mut union) = (0, 0);
    for i in 0..n {
        let (a, b) = (g(i), p(i));
        inter += usize::from(a & b);
        union += usize::from(a | b);
    }
    (inter, union)
}

fn iou(inter: usize, union: usize) -> f64 {
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// The 1-pixel boundary map of a mask, by the `seg2bmap` rule of the official evaluator (David
/// Martin's, from the Berkeley segmentation benchmark).
///
/// With `e`, `s` and `se` the east, south and south-east neighbours (false past the border), a
/// pixel is a boundary pixel when `(m ⊕ e) ∨ (m ⊕ s) ∨ (m ⊕ se)`; on the last row only `m ⊕ e`
/// counts, on the last column only `m ⊕ s`, and the bottom-right pixel is never a boundary
/// pixel. The boundaries sit half a pixel towards the origin from the true segment boundary; a
/// mask covering the whole image, like an empty one, has no boundary pixel.
pub fn boundary_map(mask: &BinaryMask) -> BinaryMask {
    let (w, h) = (mask.width, mask.height);
    let mut data = vec![false; w * h];
    for_each_boundary(w, h, |i| mask.data[i], |y, x| data[y * w + x] = true);
    BinaryMask {
        width: w,
        height: h,
        data,
    }
}

/// Calls `hit(y, x)` for every boundary pixel of the mask `m` (a predicate on flat indices), in
/// row-major order.
fn for_each_boundary(
    w: usize,
    h: usize,
    m: impl Fn(usize) -> bool,
    mut hit: impl FnMut(usize, usize),
) {
    if w == 0 || h == 0 {
        return;
    }
    for y in 0..h {
        let row = y * w;
        let last_row = y + 1 == h;
        for x in 0..w {
            let last_col = x + 1 == w;
            let c = m(row + x);
            let b = match (last_row, last_col) {
                (true, true) => false,
                (true, false) => c != m(row + x + 1),
                (false, true) => c != m(row + w + x),
                (false, false) => {
                    c != m(row + x + 1) || c != m(row + w + x) || c != m(row + w + x + 1)
                }
            };
            if b {
                hit(y, x);
            }
        }
    }
}

/// Boundary pixels as sorted columns per row (compressed rows).
struct BoundaryPoints {
    /// `cols[row_start[y]..row_start[y + 1]]` are the columns of row `y`, ascending.
    row_start: Vec<usize>,
    cols: Vec<usize>,
}

impl BoundaryPoints {
    fn new(w: usize, h: usize, m: impl Fn(usize) -> bool) -> Self {
        let mut row_start = vec![0; h + 1];
        let mut cols = Vec::new();
        for_each_boundary(w, h, m, |y, x| {
            cols.push(x);
            row_start[y + 1] = cols.len();
        });
        // rows without a boundary pixel start where the previous one ended
        for y in 1..=h {
            row_start[y] = row_start[y].max(row_start[y - 1]);
        }
        Self { row_start, cols }
    }

    fn len(&self) -> usize {
        self.cols.len()
    }

    fn row(&self, y: usize) -> &[usize] {
        &self.cols[self.row_start[y]..self.row_start[y + 1]]
    }

    /// Number of points of `self` within `disk` of some point of `other`, i.e. the sum of
    /// `self ∧ dilate(other)`.
    fn count_matched(&self, other: &BoundaryPoints, disk: &Disk) -> usize {
        let h = self.row_start.len() - 1;
        let mut matched = 0;
        for y in 0..h {
            for &x in self.row(y) {
                let hit = disk.rows.iter().any(|&(dy, dx0, dx1)| {
                    let yy = y as isize + dy;
                    if yy < 0 || yy >= h as isize {
                        return false;
                    }
                    let row = other.row(yy as usize);
                    let lo = (x as isize + dx0).max(0) as usize;
                    let hi = x as isize + dx1;
                    if hi < lo as isize {
                        return false;
                    }
                    let k = row.partition_point(|&c| c < lo);
                    k < row.len() && row[k] as isize <= hi
                });
                matched += usize::from(hit);
            }
        }
        matched
    }
}

/// The boundary tolerance in pixels for an image of `height × width`: `bound_th` itself when it
/// is ≥ 1, else `ceil(bound_th · √(H² + W²))` (8 for 854×480, 9 for 910×480, 10 for 1152×480).
/// Errors on a negative or non-finite `bound_th`.
pub fn tolerance_radius(bound_th: f64, height: usize, width: usize) -> Result<f64> {
    if !(bound_th.is_finite() && bound_th >= 0.0) {
        return Err(Error::op(
            "tolerance_radius",
            format!("bound_th must be finite and ≥ 0, got {bound_th}"),
        ));
    }
    if bound_th >= 1.0 {
        return Ok(bound_th);
    }
    let (h, w) = (height as f64, width as f64);
    Ok((bound_th * (h * h + w * w).sqrt()).ceil())
}

/// A disk-shaped structuring element exactly as `skimage.morphology.disk(radius)` builds it, used
/// as a `cv2.dilate` kernel.
///
/// skimage lays the coordinates `L = arange(-radius, radius + 1)` along both axes and keeps
/// `x² + y² ≤ radius²`; for an integer radius r that is a `(2r+1)²` kernel. OpenCV anchors a
/// kernel of size n at `n / 2` (integer division) and dilates without flipping:
/// `out(y, x) = max over kernel cells (i, j) of src(y + i − n/2, x + j − n/2)`, ignoring cells
/// outside the image. Non-integer radii (a `bound_th ≥ 1` that is not a whole number of pixels)
/// give the same odd-shaped kernels as in Python.
#[derive(Debug, Clone, PartialEq)]
pub struct Disk {
    radius: f64,
    size: usize,
    /// Per kernel row with at least one cell: `(dy, dx0, dx1)`, offsets from the anchor, the
    /// columns `dx0..=dx1` being the row's cells.
    rows: Vec<(isize, isize, isize)>,
}

impl Disk {
    /// The disk of `radius` pixels. Errors unless `radius` is finite and ≥ 0.
    pub fn new(radius: f64) -> Result<Self> {
        if !(radius.is_finite() && radius >= 0.0) {
            return Err(Error::op(
                "Disk::new",
                format!("radius must be finite and ≥ 0, got {radius}"),
            ));
        }
        // numpy's float arange: length ceil(stop − start), values start + i·(start+1 − start)
        let start = -radius;
        let size = ((radius + 1.0) - start).ceil() as usize;
        let delta = (start + 1.0) - start;
        let coord: Vec<f64> = (0..size).map(|i| start + i as f64 * delta).collect();
        let r2 = radius * radius;
        let anchor = (size / 2) as isize;
        let mut rows = Vec::new();
        for (i, &yv) in coord.iter().enumerate() {
            let mut cells = coord
                .iter()
                .enumerate()
                .filter(|&(_, &xv)| xv * xv + yv * yv <= r2)
                .map(|(j, _)| j as isize);
            if let Some(j0) = cells.next() {
                let j1 = cells.next_back().unwrap_or(j0);
                rows.push((i as isize - anchor, j0 - anchor, j1 - anchor));
            }
        }
        Ok(Self { radius, size, rows })
    }

    /// The radius it was built with.
    pub fn radius(&self) -> f64 {
        self.radius
    }

    /// Side of the square kernel (`2r + 1` for an integer radius r).
    pub fn size(&self) -> usize {
        self.size
    }

    /// The kernel as rows of 0/1 cells (what `skimage.morphology.disk` returns).
    pub fn kernel(&self) -> Vec<Vec<bool>> {
        let anchor = (self.size / 2) as isize;
        let mut k = vec![vec![false; self.size]; self.size];
        for &(dy, dx0, dx1) in &self.rows {
            let row = &mut k[(dy + anchor) as usize];
            for dx in dx0..=dx1 {
                row[(dx + anchor) as usize] = true;
            }
        }
        k
    }

    /// `cv2.dilate(mask, kernel)`: a pixel is set when some kernel cell placed on it (anchor at
    /// the centre) covers a set pixel of `mask`.
    pub fn dilate(&self, mask: &BinaryMask) -> BinaryMask {
        let (w, h) = (mask.width as isize, mask.height as isize);
        let mut out = BinaryMask::zeros(mask.width, mask.height);
        for sy in 0..h {
            for sx in 0..w {
                if !mask.data[(sy * w + sx) as usize] {
                    continue;
                }
                // out(y, x) gets src(y + dy, x + dx): src (sy, sx) reaches y = sy − dy,
                // x ∈ [sx − dx1, sx − dx0]
                for &(dy, dx0, dx1) in &self.rows {
                    let y = sy - dy;
                    if y < 0 || y >= h {
                        continue;
                    }
                    let x0 = (sx - dx1).max(0);
                    let x1 = (sx - dx0).min(w - 1);
                    for x in x0..=x1 {
                        out.data[(y * w + x) as usize] = true;
                    }
                }
            }
        }
        out
    }
}

/// Boundary precision, recall and F-measure of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BoundaryScore {
    /// Fraction of predicted boundary pixels within the tolerance of the GT boundary.
    pub precision: f64,
    /// Fraction of GT boundary pixels within the tolerance of the predicted boundary.
    pub recall: f64,
    /// `2PR / (P + R)`, or 0 when `P + R = 0`.
    pub f: f64,
}

impl BoundaryScore {
    /// Applies the official special cases to boundary pixel counts: `n_pred`/`n_gt` boundary
    /// pixels, of which `pred_matched`/`gt_matched` lie within the other's dilated boundary.
    pub fn from_counts(n_pred: usize, n_gt: usize, pred_matched: usize, gt_matched: usize) -> Self {
        let (precision, recall) = match (n_pred, n_gt) {
            (0, 0) => (1.0, 1.0),
            (0, _) => (1.0, 0.0),
            (_, 0) => (0.0, 1.0),
            _ => (
                pred_matched as f64 / n_pred as f64,
                gt_matched as f64 / n_gt as f64,
            ),
        };
        let f = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        Self {
            precision,
            recall,
            f,
        }
    }
}

/// Boundary precision, recall and F of `pred` against `gt` (the official `f_measure`, without void
/// pixels), with tolerance `bound_th` ([`BOUND_TH`] for the official score; see
/// [`tolerance_radius`]). Errors when the sizes differ or `bound_th` is negative.
pub fn boundary_score(gt: &BinaryMask, pred: &BinaryMask, bound_th: f64) -> Result<BoundaryScore> {
    same_size("boundary_score", gt, pred)?;
    let disk = Disk::new(tolerance_radius(bound_th, gt.height, gt.width)?)?;
    let g = BoundaryPoints::new(gt.width, gt.height, |i| gt.data[i]);
    let p = BoundaryPoints::new(pred.width, pred.height, |i| pred.data[i]);
    Ok(score_points(&g, &p, &disk))
}

fn score_points(gt: &BoundaryPoints, pred: &BoundaryPoints, disk: &Disk) -> BoundaryScore {
    let (n_pred, n_gt) = (pred.len(), gt.len());
    // the counts are only needed when both boundaries exist
    let (pm, gm) = if n_pred > 0 && n_gt > 0 {
        (pred.count_matched(gt, disk), gt.count_matched(pred, disk))
    } else {
        (0, 0)
    };
    BoundaryScore::from_counts(n_pred, n_gt, pm, gm)
}

/// The boundary F-measure of `pred` against `gt` ([`boundary_score`]`.f`).
pub fn f_measure(gt: &BinaryMask, pred: &BinaryMask, bound_th: f64) -> Result<f64> {
    Ok(boundary_score(gt, pred, bound_th)?.f)
}

/// Mean, recall and decay of one object's per-frame values (the official `db_statistics`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Statistics {
    /// Mean of the non-NaN values (NaN when there is none).
    pub mean: f64,
    /// Fraction of the values that are > 0.5 (NaN counts as not; NaN for no value).
    pub recall: f64,
    /// Mean of the first quarter minus mean of the last quarter ([`decay_bins`]), NaN-ignoring.
    pub decay: f64,
}

/// The four decay bins of `n` values, as the official code slices them:
/// `ids = round(linspace(1, n, 5) + 1e-10) − 1`, bin `i` = `ids[i] ..= ids[i + 1]` (bins share
/// their boundary element). For n = 1 every bin is `[0]`; for n = 2 the bins are `[0]`, `[0, 1]`,
/// `[1]`, `[1]`; for n = 0 they are empty.
pub fn decay_bins(n: usize) -> [Range<usize>; 4] {
    if n == 0 {
        return [0..0, 0..0, 0..0, 0..0];
    }
    // numpy linspace: k·step + start, the last element set to stop; round is half-to-even but
    // the +1e-10 pushes exact halves up
    let step = (n as f64 - 1.0) / 4.0;
    let id = |k: usize| -> usize {
        let v = if k == 4 {
            n as f64
        } else {
            k as f64 * step + 1.0
        };
        ((v + 1e-10).round_ties_even() - 1.0) as usize
    };
    let ids = [id(0), id(1), id(2), id(3), id(4)];
    std::array::from_fn(|i| ids[i]..(ids[i + 1] + 1).min(n))
}

fn nanmean(v: &[f64]) -> f64 {
    let (sum, count) = v
        .iter()
        .filter(|x| !x.is_nan())
        .fold((0.0, 0usize), |(s, c), &x| (s + x, c + 1));
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

/// Mean, recall and decay of per-frame values (see [`Statistics`]).
pub fn statistics(values: &[f64]) -> Statistics {
    let n = values.len();
    let recall = if n == 0 {
        f64::NAN
    } else {
        values.iter().filter(|&&v| v > 0.5).count() as f64 / n as f64
    };
    let bins = decay_bins(n);
    Statistics {
        mean: nanmean(values),
        recall,
        decay: nanmean(&values[bins[0].clone()]) - nanmean(&values[bins[3].clone()]),
    }
}

/// The scores of one object of one sequence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectResult {
    /// The object id (1-based, its value in the masks).
    pub id: u8,
    /// J of every scored frame (all but the first and the last).
    pub j: Vec<f64>,
    /// F of every scored frame.
    pub f: Vec<f64>,
    /// Statistics of `j`.
    pub j_stats: Statistics,
    /// Statistics of `f`.
    pub f_stats: Statistics,
}

/// The scores of one sequence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SequenceResult {
    /// Sequence name.
    pub name: String,
    /// Names (file stems) of the scored frames, in order.
    pub frames: Vec<String>,
    /// One entry per object of the first GT frame, by id.
    pub objects: Vec<ObjectResult>,
}

/// The dataset-level numbers of the official `global_results-<set>.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// `(J-Mean + F-Mean) / 2`.
    pub jf_mean: f64,
    /// Mean over objects of the per-object J mean.
    pub j_mean: f64,
    /// Mean over objects of the per-object J recall.
    pub j_recall: f64,
    /// Mean over objects of the per-object J decay.
    pub j_decay: f64,
    /// Mean over objects of the per-object F mean.
    pub f_mean: f64,
    /// Mean over objects of the per-object F recall.
    pub f_recall: f64,
    /// Mean over objects of the per-object F decay.
    pub f_decay: f64,
    /// Number of (sequence, object) entries averaged.
    pub objects: usize,
    /// Number of sequences.
    pub sequences: usize,
}

/// A full DAVIS evaluation: per sequence and object, and the summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DavisResults {
    /// The boundary tolerance used.
    pub bound_th: f64,
    /// Per-sequence results, in evaluation order.
    pub sequences: Vec<SequenceResult>,
    /// Object-weighted dataset means.
    pub summary: Summary,
}

impl DavisResults {
    /// Results of `sequences`, summarised with [`summarize`].
    pub fn new(bound_th: f64, sequences: Vec<SequenceResult>) -> Self {
        let summary = summarize(&sequences);
        Self {
            bound_th,
            sequences,
            summary,
        }
    }
}

/// Object-weighted means over every (sequence, object) pair, as the official
/// `evaluation_method.py` computes them (NaN when there is no object).
pub fn summarize(sequences: &[SequenceResult]) -> Summary {
    let objects: Vec<&ObjectResult> = sequences.iter().flat_map(|s| &s.objects).collect();
    let mean = |f: &dyn Fn(&ObjectResult) -> f64| -> f64 {
        if objects.is_empty() {
            f64::NAN
        } else {
            objects.iter().map(|o| f(o)).sum::<f64>() / objects.len() as f64
        }
    };
    let j_mean = mean(&|o| o.j_stats.mean);
    let f_mean = mean(&|o| o.f_stats.mean);
    Summary {
        jf_mean: (j_mean + f_mean) / 2.0,
        j_mean,
        j_recall: mean(&|o| o.j_stats.recall),
        j_decay: mean(&|o| o.j_stats.decay),
        f_mean,
        f_recall: mean(&|o| o.f_stats.recall),
        f_decay: mean(&|o| o.f_stats.decay),
        objects: objects.len(),
        sequences: sequences.len(),
    }
}

/// Number of objects of a first GT frame: its largest id, void (255) counting as background.
pub fn object_count(first_gt: &LabelMap) -> u8 {
    first_gt
        .as_raw()
        .iter()
        .filter(|&&v| v != VOID_ID)
        .max()
        .copied()
        .unwrap_or(0)
}

/// The scores of one frame: J and F of objects `1..=n_obj`, and the largest predicted id.
struct FrameScores {
    max_pred_id: u8,
    jf: Vec<(f64, f64)>,
}

/// Scores objects `1..=n_obj` of one frame (`gt` and `pred` of equal size, checked by callers).
fn score_frame(gt: &LabelMap, pred: &LabelMap, n_obj: u8, bound_th: f64) -> Result<FrameScores> {
    let (w, h) = (gt.width() as usize, gt.height() as usize);
    let (g, p) = (gt.as_raw(), pred.as_raw());
    let disk = Disk::new(tolerance_radius(bound_th, h, w)?)?;
    let jf = (1..=n_obj)
        .map(|id| {
            // void (255) never equals an object id (n_obj ≤ 254), so it is background here
            let (inter, union) = counts(w * h, |i| g[i] == id, |i| p[i] == id);
            let gb = BoundaryPoints::new(w, h, |i| g[i] == id);
            let pb = BoundaryPoints::new(w, h, |i| p[i] == id);
            (iou(inter, union), score_points(&gb, &pb, &disk).f)
        })
        .collect();
    Ok(FrameScores {
        max_pred_id: p.iter().copied().max().unwrap_or(0),
        jf,
    })
}

fn size_mismatch(gt: &LabelMap, pred: &LabelMap) -> Option<String> {
    (gt.dimensions() != pred.dimensions()).then(|| {
        format!(
            "prediction is {}x{} but the ground truth is {}x{}",
            pred.width(),
            pred.height(),
            gt.width(),
            gt.height()
        )
    })
}

/// Builds the sequence result from per-frame scores, checking the predicted ids. `files` are the
/// prediction files of the scored frames (named in the error), when they come from files.
fn assemble(
    name: &str,
    frames: Vec<String>,
    n_obj: u8,
    scores: Vec<FrameScores>,
    files: Option<&[PathBuf]>,
) -> Result<SequenceResult> {
    if let Some(k) = scores.iter().position(|s| s.max_pred_id > n_obj) {
        let msg = format!(
            "sequence {name}: the prediction holds object id {} but the first ground-truth frame \
             has {n_obj} object(s); ids must be 0 (background) or 1..={n_obj}",
            scores[k].max_pred_id
        );
        return Err(match files {
            Some(files) => Error::file(&files[k], msg),
            None => Error::op("davis", format!("frame {}: {msg}", frames[k])),
        });
    }
    let objects = (1..=n_obj)
        .map(|id| {
            let k = usize::from(id - 1);
            let j: Vec<f64> = scores.iter().map(|s| s.jf[k].0).collect();
            let f: Vec<f64> = scores.iter().map(|s| s.jf[k].1).collect();
            ObjectResult {
                id,
                j_stats: statistics(&j),
                f_stats: statistics(&f),
                j,
                f,
            }
        })
        .collect();
    Ok(SequenceResult {
        name: name.to_string(),
        frames,
        objects,
    })
}

/// Evaluates one sequence held in memory: `gt` and `pred` are label maps of every frame (object
/// ids; 255 in `gt` is void), frame `t` of one matching frame `t` of the other.
///
/// The object count is [`object_count`] of `gt[0]`; frames `1..n−1` are scored (so `pred[0]` and
/// `pred[n−1]` are not read, as in the official evaluator); frames are named `00000`, `00001`, ...
/// Errors when the lengths or a frame's sizes differ, or a scored prediction holds an id larger
/// than the object count.
pub fn evaluate_sequence(
    name: &str,
    gt: &[LabelMap],
    pred: &[LabelMap],
    bound_th: f64,
) -> Result<SequenceResult> {
    if gt.len() != pred.len() {
        return Err(Error::op(
            "davis",
            format!(
                "sequence {name}: {} predicted frames for {} ground-truth frames",
                pred.len(),
                gt.len()
            ),
        ));
    }
    let n_obj = gt.first().map(object_count).unwrap_or(0);
    let scored = scored_frames(gt.len());
    let scores = scored
        .clone()
        .into_par_iter()
        .map(|t| {
            if let Some(msg) = size_mismatch(&gt[t], &pred[t]) {
                return Err(Error::op(
                    "davis",
                    format!("sequence {name} frame {t}: {msg}"),
                ));
            }
            score_frame(&gt[t], &pred[t], n_obj, bound_th)
        })
        .collect::<Result<Vec<_>>>()?;
    let frames = scored.map(|t| format!("{t:05}")).collect();
    assemble(name, frames, n_obj, scores, None)
}

/// Indices of the scored frames of an `n`-frame sequence: all but the first and the last.
pub fn scored_frames(n: usize) -> Range<usize> {
    1..n.saturating_sub(1).max(1)
}

/// Evaluates the predictions of every sequence of `davis` (in its order), read from
/// `predictions/<sequence>/<frame>.png` where `<frame>` is the GT annotation's file stem.
///
/// Predictions are palette PNGs (ids) or grayscale PNGs (≥ 128 is object 1), read with
/// [`read_mask`]; the GT is read the same way, so DAVIS-2016 {0, 255} masks are one object and
/// DAVIS-2017 palette masks hold ids with 255 as void. Only the scored frames' predictions are
/// read. Errors name the file: a missing or unreadable prediction or annotation, a size mismatch;
/// and the sequence when a prediction holds more objects than the GT.
pub fn evaluate_dataset(
    davis: &Davis,
    predictions: impl AsRef<Path>,
    bound_th: f64,
) -> Result<DavisResults> {
    let predictions = predictions.as_ref();
    tolerance_radius(bound_th, 1, 1)?;
    let sequences = davis
        .sequences
        .par_iter()
        .map(|seq| evaluate_sequence_files(seq, predictions, bound_th))
        .collect::<Result<Vec<_>>>()?;
    Ok(DavisResults::new(bound_th, sequences))
}

/// One sequence from files (see [`evaluate_dataset`]).
fn evaluate_sequence_files(
    seq: &DavisSequence,
    predictions: &Path,
    bound_th: f64,
) -> Result<SequenceResult> {
    let annotation = |t: usize| {
        seq.annotations[t].as_ref().ok_or_else(|| {
            Error::file(
                &seq.frames[t],
                format!(
                    "sequence {}: this frame has no ground-truth annotation; the evaluation \
                     needs one for every frame",
                    seq.name
                ),
            )
        })
    };
    let n_obj = match seq.len() {
        0 => 0,
        _ => object_count(&read_mask(annotation(0)?)?),
    };
    let scored = scored_frames(seq.len());
    let stems = scored
        .clone()
        .map(|t| {
            let a = annotation(t)?;
            a.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .ok_or_else(|| Error::file(a, "annotation path has no file name"))
        })
        .collect::<Result<Vec<_>>>()?;
    let files: Vec<PathBuf> = stems
        .iter()
        .map(|stem| predictions.join(&seq.name).join(format!("{stem}.png")))
        .collect();
    let scores = scored
        .clone()
        .into_par_iter()
        .zip(stems.par_iter().zip(&files))
        .map(|(t, (stem, path))| {
            let gt = read_mask(annotation(t)?)?;
            if !path.is_file() {
                return Err(Error::file(
                    path,
                    format!(
                        "prediction of sequence {} frame {stem} is missing (expected \
                         <predictions>/<sequence>/<frame>.png for every frame but the first and \
                         the last)",
                        seq.name
                    ),
                ));
            }
            let pred = read_mask(path)?;
            if let Some(msg) = size_mismatch(&gt, &pred) {
                return Err(Error::file(path, msg));
            }
            score_frame(&gt, &pred, n_obj, bound_th)
        })
        .collect::<Result<Vec<_>>>()?;
    assemble(&seq.name, stems, n_obj, scores, Some(&files))
}

/// Guesses the DAVIS year of the tree at `root` from its masks: 2017 when the first annotation
/// of the first sequence (sorted) under `Annotations/<resolution>` is a palette PNG, 2016 when
/// it is grayscale or when no annotation is found.
pub fn detect_year(root: impl AsRef<Path>, resolution: &str) -> Result<u32> {
    let dir = root.as_ref().join("Annotations").join(resolution);
    let Some(seq) = sorted_entries(&dir)?.into_iter().find(|p| p.is_dir()) else {
        return Ok(2016);
    };
    let Some(png) = sorted_entries(&seq)?
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
    else {
        return Ok(2016);
    };
    let file = std::fs::File::open(&png).map_err(|e| Error::file(&png, e.to_string()))?;
    let reader = png::Decoder::new(BufReader::new(file))
        .read_info()
        .map_err(|e| Error::file(&png, format!("not a readable PNG: {e}")))?;
    Ok(match reader.info().color_type {
        png::ColorType::Indexed => 2017,
        _ => 2016,
    })
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut v = std::fs::read_dir(dir)
        .map_err(|e| Error::file(dir, e.to_string()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::file(dir, e.to_string()))?;
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_of_radius_one_is_a_cross() -> Result<()> {
        let d = Disk::new(1.0)?;
        let k = d.kernel();
        assert_eq!(
            k,
            vec![
                vec![false, true, false],
                vec![true, true, true],
                vec![false, true, false]
            ]
        );
        Ok(())
    }

    #[test]
    fn boundary_points_rows_are_consistent() {
        let m = BinaryMask::from_fn(7, 5, |x, y| (2..5).contains(&x) && (1..4).contains(&y));
        let b = boundary_map(&m);
        let pts = BoundaryPoints::new(7, 5, |i| m.data[i]);
        assert_eq!(pts.len(), b.count());
        for y in 0..5 {
            for &x in pts.row(y) {
                assert!(b.get(x, y));
            }
        }
    }
}
