//! The JHMDB layout: `Rename_Images/<class>/<video>/%05d.png` frames and
//! `joint_positions/<class>/<video>/joint_positions.mat` (MATLAB v5, variable `pos_img`,
//! 2 × 15 × T doubles: x then y of 15 joints per frame, in MATLAB's 1-based pixel
//! coordinates, kept as stored).
//!
//! The released files are "MATLAB 5.0 MAT-file"s from 2013; whether a given copy is stored with
//! `miCOMPRESSED` elements could not be checked here (JHMDB is not available to this project).
//! [`super::mat`] reads them, compressed (MATLAB -v7) or not.

use std::path::{Path, PathBuf};

use super::mat::read_mat_array;
use super::{file_name, image_files, read_dir_sorted};
use crate::{Error, Result};

/// Joints per JHMDB frame.
pub const JHMDB_JOINTS: usize = 15;

/// One JHMDB video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JhmdbVideo {
    /// Action class, e.g. `brush_hair`.
    pub class: String,
    /// Video name.
    pub name: String,
    /// Frame paths in time order.
    pub frames: Vec<PathBuf>,
    /// Path of `joint_positions.mat` (may not exist; [`Self::joints`] then errors).
    pub joints_path: PathBuf,
}

impl JhmdbVideo {
    /// The joints of every annotated frame: `joints[t][j] = [x, y]` (`pos_img(:, j, t)`).
    ///
    /// Errors when the file is missing, unreadable, has no `pos_img`, or its shape
    /// is not 2 × J × T.
    pub fn joints(&self) -> Result<Vec<Vec<[f32; 2]>>> {
        let a = read_mat_array(&self.joints_path, "pos_img")?;
        let (j, t) = match a.dims.as_slice() {
            [2, j, t] => (*j, *t),
            [2, j] => (*j, 1),
            d => {
                return Err(Error::file(
                    &self.joints_path,
                    format!("pos_img is {d:?}, expected 2 x joints x frames"),
                ));
            }
        };
        Ok((0..t)
            .map(|ti| {
                (0..j)
                    .map(|ji| {
                        // column-major: element (c, ji, ti) is at c + 2·ji + 2·j·ti
                        let at = |c: usize| a.data[c + 2 * ji + 2 * j * ti] as f32;
                        [at(0), at(1)]
                    })
                    .collect()
            })
            .collect())
    }
}

/// A JHMDB tree: every video with frames.
#[derive(Debug, Clone)]
pub struct Jhmdb {
    /// The root (holding `Rename_Images` and `joint_positions`).
    pub root: PathBuf,
    /// Videos sorted by (class, name).
    pub videos: Vec<JhmdbVideo>,
}

impl Jhmdb {
    /// Lists `root/Rename_Images/<class>/<video>/` folders that hold frames; `split`, when
    /// given, keeps only the videos whose `<class>/<video>` or `<video>` is in it.
    ///
    /// Errors when the tree cannot be listed or holds no video.
    pub fn open(root: impl AsRef<Path>, split: Option<&[String]>) -> Result<Self> {
        let root = root.as_ref();
        let images = root.join("Rename_Images");
        let mut videos = Vec::new();
        for class_dir in read_dir_sorted(&images)?.0 {
            let class = file_name(&class_dir);
            for video_dir in read_dir_sorted(&class_dir)?.0 {
                let name = file_name(&video_dir);
                if let Some(s) = split {
                    let full = format!("{class}/{name}");
                    if !s.iter().any(|x| *x == name || *x == full) {
                        continue;
                    }
                }
                let frames = image_files(&video_dir)?;
                if frames.is_empty() {
                    continue;
                }
                let joints_path = root
                    .join("joint_positions")
                    .join(&class)
                    .join(&name)
                    .join("joint_positions.mat");
                videos.push(JhmdbVideo {
                    class: class.clone(),
                    name,
                    frames,
                    joints_path,
                });
            }
        }
        if videos.is_empty() {
            return Err(Error::file(&images, "no JHMDB video (class/video/frames)"));
        }
        Ok(Self {
            root: root.to_path_buf(),
            videos,
        })
    }
}
