//! The VIP (Video Instance-level Parsing) layout: `Images/<video>/<frame>.jpg` frames and
//! `Category_ids/<video>/<frame>.png` part labels (grayscale, ids 0..=19, 0 = background), the
//! labels present only for the annotated frames.

use std::path::{Path, PathBuf};

use super::davis::read_raw_png;
use super::{file_name, image_files, read_dir_sorted};
use crate::frame::LabelMap;
use crate::{Error, Result};

/// Number of VIP part classes (background included).
pub const VIP_CLASSES: usize = 20;

/// One VIP video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipVideo {
    /// Video name (folder name).
    pub name: String,
    /// Frame paths in time order.
    pub frames: Vec<PathBuf>,
    /// Part-label path of each frame (same stem, `.png`), `None` where not annotated.
    pub labels: Vec<Option<PathBuf>>,
}

/// A VIP tree.
#[derive(Debug, Clone)]
pub struct Vip {
    /// The root (holding `Images` and `Category_ids`).
    pub root: PathBuf,
    /// Videos sorted by name (or in `split` order).
    pub videos: Vec<VipVideo>,
}

impl Vip {
    /// Lists the videos of `root/Images` (or the names in `split`, in that order).
    ///
    /// Errors when a listed video has no frame folder or no frame, or the tree has no video.
    pub fn open(root: impl AsRef<Path>, split: Option<&[String]>) -> Result<Self> {
        let root = root.as_ref();
        let images = root.join("Images");
        let labels_root = root.join("Category_ids");
        let names: Vec<String> = match split {
            Some(s) => s.to_vec(),
            None => read_dir_sorted(&images)?
                .0
                .iter()
                .map(|d| file_name(d))
                .collect(),
        };
        let videos = names
            .into_iter()
            .map(|name| {
                let dir = images.join(&name);
                let frames = image_files(&dir)?;
                if frames.is_empty() {
                    return Err(Error::file(&dir, "VIP video has no frame"));
                }
                let labels = frames
                    .iter()
                    .map(|f| {
                        let mut p = labels_root.join(&name).join(f.file_stem()?);
                        p.set_extension("png");
                        p.is_file().then_some(p)
                    })
                    .collect();
                Ok(VipVideo {
                    name,
                    frames,
                    labels,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if videos.is_empty() {
            return Err(Error::file(&images, "no VIP video"));
        }
        Ok(Self {
            root: root.to_path_buf(),
            videos,
        })
    }
}

/// Reads a VIP part-label PNG: the raw 8-bit values are the part ids (0..=19; any other value,
/// e.g. 255 for "ignore", is kept as is). Palette PNGs give their indices.
pub fn read_part_labels(path: impl AsRef<Path>) -> Result<LabelMap> {
    Ok(read_raw_png(path.as_ref())?.0)
}
