//! Frame sources: where the frames of one video come from.
//!
//! A [`FrameSource`] knows how many frames it has and their size, and decodes only the frames a
//! sample asks for, resized during decoding when asked. Implementations:
//! - [`memory::MemorySource`]: frames already in memory (synthetic clips);
//! - [`folder`]: a folder of JPEG/PNG frames (DAVIS, JHMDB, VIP, TrackingNet dumps);
//! - [`video`] (feature `video`): a video file decoded by FFmpeg through video-rs.

pub mod folder;
pub mod memory;
#[cfg(feature = "video")]
pub mod video;

use crate::Result;
use crate::frame::Frame;

/// The frames of one video, decoded on demand.
pub trait FrameSource: Send {
    /// Number of frames.
    fn len(&self) -> usize;

    /// True when the source has no frame.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Native frame size as (width, height).
    fn size(&self) -> (u32, u32);

    /// Decodes the frames at `indices` (each `< len()`, in any order, repeats allowed), resized to
    /// `resize = Some((width, height))` during decoding (bilinear), in the order asked.
    ///
    /// Errors name the source (its path) and what is wrong.
    fn frames(&mut self, indices: &[usize], resize: Option<(u32, u32)>) -> Result<Vec<Frame>>;

    /// What this source is, for logs and errors (usually its path).
    fn describe(&self) -> String;
}
