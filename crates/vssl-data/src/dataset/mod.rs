//! Datasets: where the videos of a run or an evaluation come from.
//!
//! - [`videos`]: a folder tree or a list file of videos and frame folders (TrackingNet- and
//!   Kinetics-like layouts), opened through any opener, bad entries skipped and logged.
//! - [`davis`]: DAVIS 2016 and 2017 (frames, masks; reading and writing palette masks).
//! - [`badja`]: BADJA joint annotations joined to DAVIS-2016 frames.
//! - [`jhmdb`]: the JHMDB layout (frames and `joint_positions.mat`), with [`mat`], a minimal
//!   MATLAB v5 reader.
//! - [`vip`]: the VIP layout (frames and part-label PNGs).
//!
//! Every listing is sorted, so the same tree always gives the same dataset.

pub mod badja;
pub mod davis;
pub mod jhmdb;
pub mod mat;
pub mod videos;
pub mod vip;

pub use badja::{Badja, BadjaFrame};
pub use davis::{Davis, DavisSequence, davis_palette, read_mask, write_palette_mask};
pub use jhmdb::{Jhmdb, JhmdbVideo};
pub use mat::{MatArray, read_mat_array, read_mat_arrays};
pub use videos::{EntryKind, VideoCollection, VideoEntry, VideoList};
pub use vip::{Vip, VipVideo, read_part_labels};

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The extensions listed as frames and as video files: the ones [`crate::open_source`] opens.
pub use crate::source::folder::{IMAGE_EXTENSIONS, VIDEO_EXTENSIONS};

/// Lower-case extension of `path`, if any.
fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

/// True when `path` names an image file by its extension.
pub(crate) fn is_image(path: &Path) -> bool {
    extension(path).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

/// True when `path` names a video file by its extension.
pub(crate) fn is_video(path: &Path) -> bool {
    extension(path).is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.as_str()))
}

/// True for names that start with a dot (hidden files, `.DS_Store`, editor droppings).
fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Orders file names "naturally" on their stem: names whose stems are plain numbers come first,
/// by value (`2.jpg` before `10.jpg`, TrackingNet style), then the others by name.
pub(crate) fn natural_cmp(a: &Path, b: &Path) -> Ordering {
    let num = |p: &Path| {
        p.file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok())
    };
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// The entries of directory `dir` (hidden ones left out), split into (sub-folders, files), each
/// sorted. Symbolic links are followed.
pub(crate) fn read_dir_sorted(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::file(dir, format!("cannot list: {e}")))?;
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::file(dir, format!("cannot list: {e}")))?;
        let path = entry.path();
        if is_hidden(&path) {
            continue;
        }
        // `metadata` follows symbolic links; a dangling link is treated as a file (and fails
        // later, where it is opened, with its own path in the error).
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => dirs.push(path),
            _ => files.push(path),
        }
    }
    dirs.sort();
    files.sort_by(|a, b| natural_cmp(a, b));
    Ok((dirs, files))
}

/// The image files (JPEG/PNG) of folder `dir`, in natural order.
pub(crate) fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let (_, files) = read_dir_sorted(dir)?;
    Ok(files.into_iter().filter(|p| is_image(p)).collect())
}

/// Name of the last component of `path`, as UTF-8 (lossy).
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reads a text file whole.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_puts_numbers_by_value_first() {
        let mut v: Vec<PathBuf> = ["b.jpg", "10.jpg", "2.jpg", "a.jpg", "00001.jpg"]
            .iter()
            .map(PathBuf::from)
            .collect();
        v.sort_by(|a, b| natural_cmp(a, b));
        let names: Vec<_> = v.iter().map(|p| file_name(p)).collect();
        assert_eq!(names, ["00001.jpg", "2.jpg", "10.jpg", "a.jpg", "b.jpg"]);
    }

    #[test]
    fn extensions_are_case_insensitive() {
        assert!(is_image(Path::new("x/00001.JPG")));
        assert!(is_video(Path::new("x/clip.MP4")));
        assert!(!is_video(Path::new("x/clip.txt")));
        assert!(!is_image(Path::new("x/noext")));
    }
}
