//! BADJA joint annotations joined to DAVIS-2016 frames.
//!
//! A BADJA JSON file is a list of `{image_path, segmentation_path, joints, visibility}` with
//! `image_path` like `DAVIS/JPEGImages/Full-Resolution/camel/00002.jpg`, `joints[N] = [row, col]`
//! at the 1920x1080 "Full-Resolution" scale and `visibility[N]` (booleans or 0/1). [`Badja::load`]
//! finds each annotated frame among the DAVIS-2016 480p frames of the same sequence (by file
//! stem) and rescales the joints to that frame's size.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{image_files, read_text};
use crate::{Error, Result};

/// Width of the frames BADJA coordinates refer to.
pub const BADJA_WIDTH: f64 = 1920.0;
/// Height of the frames BADJA coordinates refer to.
pub const BADJA_HEIGHT: f64 = 1080.0;

/// The joints of one annotated frame.
#[derive(Debug, Clone, PartialEq)]
pub struct BadjaFrame {
    /// Index of the frame in the DAVIS sequence (position in its sorted frame list).
    pub frame: usize,
    /// Path of the DAVIS frame.
    pub image_path: PathBuf,
    /// Joint positions `[x, y]` in pixels of the DAVIS frame (`x = col·W/1920`,
    /// `y = row·H/1080`). Invisible joints keep whatever the file has (usually (0, 0)).
    pub joints: Vec<[f32; 2]>,
    /// Whether each joint is visible.
    pub visible: Vec<bool>,
}

/// The BADJA annotations of one sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Badja {
    /// DAVIS sequence name, e.g. `camel`.
    pub sequence: String,
    /// DAVIS frame size (width, height) the joints are scaled to.
    pub size: (u32, u32),
    /// Number of frames of the DAVIS sequence.
    pub sequence_len: usize,
    /// The annotated frames, sorted by frame index.
    pub frames: Vec<BadjaFrame>,
}

#[derive(Deserialize)]
struct RawEntry {
    image_path: String,
    joints: Vec<[f64; 2]>,
    visibility: Vec<Flag>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Num(f64),
}

impl Flag {
    fn get(&self) -> bool {
        match *self {
            Flag::Bool(b) => b,
            Flag::Num(v) => v != 0.0,
        }
    }
}

impl Badja {
    /// Loads the BADJA file `json_path` and joins it to the DAVIS-2016 tree at `davis_root`
    /// (`JPEGImages/480p/<sequence>/`).
    ///
    /// Errors (naming the file) when the JSON is malformed, an entry mixes sequences, joints and
    /// visibility differ in length, or an annotated frame is missing from DAVIS: a keypoint
    /// evaluation must not silently drop frames.
    pub fn load(json_path: impl AsRef<Path>, davis_root: impl AsRef<Path>) -> Result<Self> {
        let json_path = json_path.as_ref();
        let bad = |msg: String| Error::file(json_path, msg);
        let raw: Vec<RawEntry> = serde_json::from_str(&read_text(json_path)?)
            .map_err(|e| bad(format!("not a BADJA annotation list: {e}")))?;
        if raw.is_empty() {
            return Err(bad("no annotated frame".into()));
        }
        let mut sequence: Option<String> = None;
        let mut parsed = Vec::with_capacity(raw.len());
        for (k, e) in raw.iter().enumerate() {
            let p = Path::new(&e.image_path);
            let seq = p
                .parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| bad(format!("entry {k}: no sequence in {:?}", e.image_path)))?;
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .ok_or_else(|| bad(format!("entry {k}: no frame in {:?}", e.image_path)))?;
            match &sequence {
                None => sequence = Some(seq),
                Some(s) if *s != seq => {
                    return Err(bad(format!(
                        "entry {k}: sequence {seq}, earlier entries are {s}"
                    )));
                }
                Some(_) => {}
            }
            if e.joints.len() != e.visibility.len() {
                return Err(bad(format!(
                    "entry {k}: {} joints but {} visibility flags",
                    e.joints.len(),
                    e.visibility.len()
                )));
            }
            parsed.push((stem, e));
        }
        let sequence = sequence.unwrap_or_default();
        let dir = davis_root.as_ref().join("JPEGImages/480p").join(&sequence);
        let frames = image_files(&dir)?;
        let first = frames
            .first()
            .ok_or_else(|| Error::file(&dir, "DAVIS sequence has no frame"))?;
        let (w, h) = image::image_dimensions(first)
            .map_err(|e| Error::file(first, format!("cannot read the frame size: {e}")))?;
        let (sx, sy) = (f64::from(w) / BADJA_WIDTH, f64::from(h) / BADJA_HEIGHT);
        let mut out = Vec::with_capacity(parsed.len());
        for (stem, e) in parsed {
            let frame = frames
                .iter()
                .position(|f| f.file_stem().is_some_and(|s| s.to_string_lossy() == stem))
                .ok_or_else(|| {
                    Error::file(
                        &dir,
                        format!(
                            "frame {stem} annotated in {} is missing",
                            json_path.display()
                        ),
                    )
                })?;
            out.push(BadjaFrame {
                frame,
                image_path: frames[frame].clone(),
                joints: e
                    .joints
                    .iter()
                    .map(|&[row, col]| [(col * sx) as f32, (row * sy) as f32])
                    .collect(),
                visible: e.visibility.iter().map(Flag::get).collect(),
            });
        }
        out.sort_by_key(|f| f.frame);
        Ok(Self {
            sequence,
            size: (w, h),
            sequence_len: frames.len(),
            frames: out,
        })
    }

    /// Number of joints per frame (0 when no frame is annotated).
    pub fn joint_count(&self) -> usize {
        self.frames.first().map_or(0, |f| f.joints.len())
    }
}
