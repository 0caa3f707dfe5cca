//! Keypoints carried through a video: each joint of the seed frame becomes a Gaussian heatmap at
//! feature resolution, the heatmaps are propagated like masks (the protocol's context and
//! affinity), and a joint's position in a later frame is the weighted mean of its heatmap's top
//! cells (TimeCycle's rule for JHMDB: `σ = 0.5` cells, top 5).

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use vssl_core::{Error, Result};
use vssl_data::source::FrameSource;

use crate::propagate::Propagation;

/// How joints become labels and come back.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeypointOptions {
    /// Standard deviation of each joint's Gaussian heatmap, in feature cells.
    pub sigma: f64,
    /// A joint's position is the weighted mean of its heatmap's `topk` largest cells.
    pub topk: usize,
}

impl Default for KeypointOptions {
    fn default() -> Self {
        Self {
            sigma: 0.5,
            topk: 5,
        }
    }
}

/// Joint positions `[(x, y)]` in pixels of the frame's original size, one list per frame.
pub type Track = Vec<Vec<[f32; 2]>>;

/// Gaussian heatmaps `[J, h, w]` of `joints` (pixels of a `size = (W0, H0)` frame) on an
/// `h × w` grid of cell centres.
pub fn heatmaps(
    joints: &[[f32; 2]],
    size: (usize, usize),
    grid: (usize, usize),
    sigma: f64,
) -> Result<Tensor> {
    let (w0, h0) = (size.0 as f64, size.1 as f64);
    let (h, w) = grid;
    let mut v = vec![0f32; joints.len() * h * w];
    for (j, &[x, y]) in joints.iter().enumerate() {
        // The joint in cell units (cell i spans [i, i + 1)).
        let (cx, cy) = (f64::from(x) * w as f64 / w0, f64::from(y) * h as f64 / h0);
        for yy in 0..h {
            for xx in 0..w {
                let (dx, dy) = (xx as f64 + 0.5 - cx, yy as f64 + 0.5 - cy);
                v[j * h * w + yy * w + xx] =
                    (-(dx * dx + dy * dy) / (2.0 * sigma * sigma)).exp() as f32;
            }
        }
    }
    Ok(Tensor::from_vec(v, (joints.len(), h, w), &Device::Cpu)?)
}

/// Each channel's position in pixels of a `size = (W0, H0)` frame: the mean of the cell centres
/// of its `topk` largest values, weighted by them.
pub fn locate(soft: &Tensor, size: (usize, usize), topk: usize) -> Result<Vec<[f32; 2]>> {
    let (k, h, w) = soft.dims3()?;
    let v = soft
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let (sx, sy) = (size.0 as f64 / w as f64, size.1 as f64 / h as f64);
    let mut out = Vec::with_capacity(k);
    for ch in v.chunks_exact(h * w) {
        let mut idx: Vec<usize> = (0..h * w).collect();
        let top = topk.clamp(1, h * w);
        idx.select_nth_unstable_by(top - 1, |&a, &b| ch[b].total_cmp(&ch[a]));
        let (mut sw, mut mx, mut my) = (0f64, 0f64, 0f64);
        for &i in &idx[..top] {
            let wgt = f64::from(ch[i].max(0.0));
            sw += wgt;
            mx += wgt * ((i % w) as f64 + 0.5);
            my += wgt * ((i / w) as f64 + 0.5);
        }
        let (cx, cy) = if sw > 0.0 {
            (mx / sw, my / sw)
        } else {
            let i = idx[0];
            ((i % w) as f64 + 0.5, (i / w) as f64 + 0.5)
        };
        out.push([(cx * sx) as f32, (cy * sy) as f32]);
    }
    Ok(out)
}

/// Propagates `joints` (pixels of the source's frame size) from frame 0 of `source` through
/// every later frame; returns each frame's joint positions (frame 0: the seed itself).
///
/// # Errors
/// As [`Propagation::run`]; [`Error::Op`] when there is no joint.
pub fn track(
    run: &Propagation,
    source: &mut dyn FrameSource,
    joints: &[[f32; 2]],
    opts: KeypointOptions,
) -> Result<Track> {
    if joints.is_empty() {
        return Err(Error::op("keypoints", "no joint to track"));
    }
    let (w0, h0) = source.size();
    let size = (w0 as usize, h0 as usize);
    let mut out: Track = Vec::with_capacity(source.len());
    let seed = |grid: (usize, usize)| heatmaps(joints, size, grid, opts.sigma);
    run.run_soft(source, seed, |index, soft| {
        out.push(if index == 0 {
            joints.to_vec()
        } else {
            locate(soft, size, opts.topk)?
        });
        Ok(())
    })?;
    Ok(out)
}
