//! Which frames a training sample uses: ContrastCorr's frame pairs, ρ-clips for clip-level
//! methods, and the reference's per-frame working size.
//!
//! Every function that draws takes the sample's random stream ([`crate::rng::sample_rng`]).

use rand::Rng;

use crate::{Error, Result};

/// Largest forward gap between the two frames of a pair in a long video (the reference's 50).
pub const MAX_PAIR_GAP: usize = 50;

/// The (reference, target) frame indices of a ContrastCorr pair, as `framepair_loader` draws them
/// with `frame_end = num_frames − 1`:
///
/// - `frame_end > 50` (at least 52 frames): `i0 ~ U{0 … frame_end − 50}`, then
///   `i1 = i0 + U{1 … 50}`: the target is 1 to 50 frames **after** the reference;
/// - otherwise: `i0` and `i1` independently `~ U{0 … frame_end}`, so they may be equal or
///   reversed.
///
/// A one-frame video gives `(0, 0)`; the reference's datasets skip such videos (`frame_end ≤ 0`),
/// and so should callers that want its behaviour.
///
/// # Errors
/// [`Error::Op`] (`pair_indices`) for a video with no frames.
pub fn pair_indices(num_frames: usize, rng: &mut impl Rng) -> Result<(usize, usize)> {
    if num_frames == 0 {
        return Err(Error::op(
            "pair_indices",
            "the video has no frames, cannot draw a pair",
        ));
    }
    let frame_end = num_frames - 1;
    if frame_end > MAX_PAIR_GAP {
        let i0 = rng.random_range(0..=frame_end - MAX_PAIR_GAP);
        let i1 = i0 + rng.random_range(1..=MAX_PAIR_GAP);
        Ok((i0, i1))
    } else {
        let i0 = rng.random_range(0..=frame_end);
        let i1 = rng.random_range(0..=frame_end);
        Ok((i0, i1))
    }
}

/// ρ-clip sampling: `num_clips` clips of `clip_len` frames taken every `stride` frames, whose
/// starts are drawn independently and uniformly over every position where the whole clip fits
/// (`U{0 … num_frames − span}` with `span = (clip_len − 1)·stride + 1`), then sorted in time.
///
/// Returns one `Vec` of `clip_len` frame indices per clip, the clips in increasing order of their
/// start (clips may overlap, or coincide in a short video). Draws exactly `num_clips` numbers.
///
/// # Errors
/// [`Error::Op`] (`clip_indices`) when `clip_len`, `num_clips` or `stride` is 0, or when the video
/// is shorter than one clip's span (the message gives both lengths).
pub fn clip_indices(
    num_frames: usize,
    clip_len: usize,
    num_clips: usize,
    stride: usize,
    rng: &mut impl Rng,
) -> Result<Vec<Vec<usize>>> {
    const OP: &str = "clip_indices";
    if clip_len == 0 || num_clips == 0 || stride == 0 {
        return Err(Error::op(
            OP,
            format!(
                "clip_len ({clip_len}), num_clips ({num_clips}) and stride ({stride}) must be positive"
            ),
        ));
    }
    let span = (clip_len - 1)
        .checked_mul(stride)
        .and_then(|s| s.checked_add(1))
        .ok_or_else(|| Error::op(OP, "clip span overflows"))?;
    if span > num_frames {
        return Err(Error::op(
            OP,
            format!(
                "video of {num_frames} frames is shorter than one clip of {clip_len} frames at \
                 stride {stride} ({span} frames)"
            ),
        ));
    }
    let mut starts: Vec<usize> = (0..num_clips)
        .map(|_| rng.random_range(0..=num_frames - span))
        .collect();
    starts.sort_unstable();
    Ok(starts
        .into_iter()
        .map(|s| (0..clip_len).map(|i| s + i * stride).collect())
        .collect())
}

/// The size the reference resizes every training frame to before augmenting (bilinear, in
/// `framepair_loader`): width and height each floored to a multiple of 64, at least 64.
/// Returns `(width, height)`.
pub fn reference_frame_size(width: usize, height: usize) -> (usize, usize) {
    let floor64 = |v: usize| (v / 64 * 64).max(64);
    (floor64(width), floor64(height))
}
