//! Frames held in memory (synthetic clips, tests), resized as the folder source resizes.

use super::FrameSource;
use super::folder::resize_bilinear_rgb;
use crate::frame::Frame;
use crate::{Error, Result};

/// A clip whose frames are already decoded.
#[derive(Debug, Clone)]
pub struct MemorySource {
    name: String,
    frames: Vec<Frame>,
}

impl MemorySource {
    /// A source over `frames`, called `name` in logs. All frames must have the same size.
    pub fn new(name: impl Into<String>, frames: Vec<Frame>) -> Result<Self> {
        let name = name.into();
        if let Some(first) = frames.first() {
            let size = first.dimensions();
            if let Some((i, f)) = frames
                .iter()
                .enumerate()
                .find(|(_, f)| f.dimensions() != size)
            {
                return Err(Error::op(
                    "MemorySource::new",
                    format!(
                        "{name}: frame {i} is {:?} but frame 0 is {size:?}",
                        f.dimensions()
                    ),
                ));
            }
        }
        Ok(Self { name, frames })
    }
}

impl FrameSource for MemorySource {
    fn len(&self) -> usize {
        self.frames.len()
    }

    fn size(&self) -> (u32, u32) {
        self.frames.first().map_or((0, 0), |f| f.dimensions())
    }

    fn frames(&mut self, indices: &[usize], resize: Option<(u32, u32)>) -> Result<Vec<Frame>> {
        indices
            .iter()
            .map(|&i| {
                let f = self.frames.get(i).ok_or_else(|| {
                    Error::op(
                        "MemorySource::frames",
                        format!(
                            "{}: frame {i} asked, the clip has {}",
                            self.name,
                            self.frames.len()
                        ),
                    )
                })?;
                Ok(match resize {
                    // OpenCV's INTER_LINEAR, as the folder source (what the reference scripts'
                    // `cv2.resize` gives).
                    Some((w, h)) if (w, h) != f.dimensions() => resize_bilinear_rgb(f, w, h),
                    _ => f.clone(),
                })
            })
            .collect()
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_asked_frames_and_rejects_out_of_range() -> Result<()> {
        let frames: Vec<Frame> = (0..3u8)
            .map(|v| Frame::from_pixel(4, 2, image::Rgb([v, v, v])))
            .collect();
        let mut s = MemorySource::new("clip", frames)?;
        assert_eq!((s.len(), s.size()), (3, (4, 2)));
        let got = s.frames(&[2, 0], None)?;
        assert_eq!(got[0].get_pixel(0, 0).0, [2, 2, 2]);
        assert_eq!(got[1].get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(s.frames(&[1], Some((8, 4)))?[0].dimensions(), (8, 4));
        let err = s.frames(&[3], None).unwrap_err().to_string();
        assert!(err.contains("clip") && err.contains("frame 3"), "{err}");
        Ok(())
    }
}
