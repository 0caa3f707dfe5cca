//! Video object segmentation by label propagation on a DAVIS-layout dataset: each sequence's
//! first-frame mask carried through the sequence, the masks written as DAVIS palette PNGs, and an
//! overlay image per sequence for a person to look at.
//!
//! The output is what the official tools read: `<out>/<sequence>/<frame>.png`, 8-bit palette
//! PNGs with the DAVIS palette, at the ground truth's size, holding the first frame's object ids
//! (DAVIS-2016's `{0, 255}` masks are object 1). Sequences are processed one at a time and
//! frames streamed (see [`crate::propagate`]), so memory does not grow with the video's length;
//! only the overlay's few thumbnails are kept.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use image::{Rgb, RgbImage};
use vssl_core::{Error, Result};
use vssl_data::dataset::davis::{DavisSequence, davis_palette, read_mask, write_palette_mask};
use vssl_data::frame::{Frame, LabelMap};
use vssl_data::source::FrameSource;
use vssl_data::source::folder::decode_image;

use crate::encoder::Encoder;
use crate::propagate::Propagation;
use crate::protocol::Protocol;

/// What produces the masks.
#[derive(Debug, Clone)]
pub enum Method {
    /// Every frame gets the first frame's mask (the "nothing moves" baseline).
    CopyFirst,
    /// Label propagation by the features of an encoder (a model, the raw-Lab baseline or the
    /// random-initialised baseline).
    Propagate(Encoder),
}

impl Method {
    /// What the method is, for reports.
    pub fn describe(&self) -> String {
        match self {
            Method::CopyFirst => "copy the first frame's mask".into(),
            Method::Propagate(e) => e.describe(),
        }
    }
}

/// The baselines every report carries, by name.
pub const BASELINES: &[&str] = &["copy-first", "lab", "random"];

/// The seed of the random-initialised baseline encoder (fixed, so reports are comparable).
pub const RANDOM_BASELINE_SEED: u64 = 0;

/// The baseline called `name` (one of [`BASELINES`]) for `protocol`: `copy-first`; `lab` (raw
/// Lab pixels in stride-8 patches); `random` (a ResNet-18 with the protocol's strides,
/// torchvision's initialisation from seed [`RANDOM_BASELINE_SEED`]).
///
/// # Errors
/// [`Error::Op`] listing the baselines when `name` is not one.
pub fn baseline(name: &str, protocol: &Protocol, device: &Device) -> Result<Method> {
    match name {
        "copy-first" => Ok(Method::CopyFirst),
        "lab" => Ok(Method::Propagate(Encoder::LabPatches)),
        "random" => Ok(Method::Propagate(Encoder::random(
            &protocol.strides,
            RANDOM_BASELINE_SEED,
            device,
        )?)),
        other => Err(Error::op(
            "baseline",
            format!("unknown baseline {other:?}; the baselines are {BASELINES:?}"),
        )),
    }
}

/// How the overlay image of a sequence is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverlayOptions {
    /// Frames shown (evenly spaced, the first and the last included).
    pub frames: usize,
    /// Thumbnails per row.
    pub columns: usize,
    /// Thumbnail width in pixels (height keeps the aspect ratio).
    pub width: u32,
}

impl Default for OverlayOptions {
    fn default() -> Self {
        Self {
            frames: 12,
            columns: 4,
            width: 320,
        }
    }
}

/// What one sequence took.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceRun {
    /// The sequence name.
    pub name: String,
    /// Frames written (the first included).
    pub frames: usize,
    /// Wall-clock seconds of the propagation (decoding, features, affinities, writing).
    pub seconds: f64,
}

/// The indices of `count` frames of a `len`-frame video, evenly spaced, first and last included.
pub fn overlay_indices(len: usize, count: usize) -> Vec<usize> {
    if len == 0 || count == 0 {
        return Vec::new();
    }
    if count >= len {
        return (0..len).collect();
    }
    if count == 1 {
        return vec![0];
    }
    let mut v: Vec<usize> = (0..count)
        .map(|i| ((i as f64 * (len - 1) as f64 / (count - 1) as f64).round()) as usize)
        .collect();
    v.dedup();
    v
}

/// The frame with its mask drawn on it: object pixels blended half-and-half with their palette
/// colour, object boundaries (a pixel whose right or lower neighbour has another id) in the full
/// colour.
///
/// # Errors
/// [`Error::Op`] when the frame and the mask differ in size.
pub fn draw_mask(frame: &Frame, mask: &LabelMap) -> Result<RgbImage> {
    if frame.dimensions() != mask.dimensions() {
        return Err(Error::op(
            "draw_mask",
            format!(
                "the frame is {:?} but the mask {:?}",
                frame.dimensions(),
                mask.dimensions()
            ),
        ));
    }
    let pal = davis_palette();
    let (w, h) = frame.dimensions();
    let mut out = frame.clone();
    for y in 0..h {
        for x in 0..w {
            let id = mask.get_pixel(x, y)[0];
            let edge = (x + 1 < w && mask.get_pixel(x + 1, y)[0] != id)
                || (y + 1 < h && mask.get_pixel(x, y + 1)[0] != id);
            let p = out.get_pixel_mut(x, y);
            if edge {
                // The boundary in the colour of the object on this side (background: the other).
                let other = if id == 0 && x + 1 < w && mask.get_pixel(x + 1, y)[0] != 0 {
                    mask.get_pixel(x + 1, y)[0]
                } else if id == 0 && y + 1 < h {
                    mask.get_pixel(x, y + 1)[0]
                } else {
                    id
                };
                *p = Rgb(highlight(pal[other as usize]));
            } else if id != 0 {
                let c = pal[id as usize];
                for ch in 0..3 {
                    p[ch] = ((u16::from(p[ch]) + u16::from(c[ch])) / 2) as u8;
                }
            }
        }
    }
    Ok(out)
}

/// A palette colour made bright enough to see on a photo (DAVIS's colours are dark).
fn highlight(c: [u8; 3]) -> [u8; 3] {
    c.map(|v| if v >= 64 { 255 } else { v })
}

/// A grid of `tiles` (all of one size), `columns` per row, a 4-pixel white gutter.
///
/// # Errors
/// [`Error::Op`] when there is no tile or the tiles differ in size.
pub fn grid(tiles: &[RgbImage], columns: usize) -> Result<RgbImage> {
    let first = tiles
        .first()
        .ok_or_else(|| Error::op("grid", "no tile to lay out"))?;
    let (tw, th) = first.dimensions();
    if tiles.iter().any(|t| t.dimensions() != (tw, th)) {
        return Err(Error::op("grid", "tiles differ in size"));
    }
    const GUTTER: u32 = 4;
    let cols = columns.clamp(1, tiles.len()) as u32;
    let rows = tiles.len().div_ceil(cols as usize) as u32;
    let mut out = RgbImage::from_pixel(
        cols * tw + (cols + 1) * GUTTER,
        rows * th + (rows + 1) * GUTTER,
        Rgb([255, 255, 255]),
    );
    for (i, t) in tiles.iter().enumerate() {
        let (c, r) = (i as u32 % cols, i as u32 / cols);
        image::imageops::replace(
            &mut out,
            t,
            i64::from(GUTTER + c * (tw + GUTTER)),
            i64::from(GUTTER + r * (th + GUTTER)),
        );
    }
    Ok(out)
}

/// The frames of a sequence, decoded on demand from its file list (so a sequence cut short by
/// its caller is propagated as such).
#[derive(Debug, Clone)]
pub struct SequenceSource {
    name: String,
    files: Vec<PathBuf>,
    size: (u32, u32),
}

impl SequenceSource {
    /// The frames of `seq`; reads the first frame's header for the size.
    ///
    /// # Errors
    /// [`Error::Op`] when the sequence has no frame; [`Error::File`] when the first frame's
    /// header cannot be read.
    pub fn new(seq: &DavisSequence) -> Result<Self> {
        let first = seq
            .frames
            .first()
            .ok_or_else(|| Error::op("vos", format!("sequence {}: no frame", seq.name)))?;
        let size = image::image_dimensions(first)
            .map_err(|e| Error::file(first, format!("cannot read the frame: {e}")))?;
        Ok(Self {
            name: seq.name.clone(),
            files: seq.frames.clone(),
            size,
        })
    }
}

impl FrameSource for SequenceSource {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn frames(&mut self, indices: &[usize], resize: Option<(u32, u32)>) -> Result<Vec<Frame>> {
        indices
            .iter()
            .map(|&i| {
                let path = self.files.get(i).ok_or_else(|| {
                    Error::op(
                        "vos",
                        format!(
                            "sequence {}: no frame {i} (of {})",
                            self.name,
                            self.files.len()
                        ),
                    )
                })?;
                let f = decode_image(path, resize)?;
                if resize.is_none() && f.dimensions() != self.size {
                    return Err(Error::file(
                        path,
                        format!(
                            "the frame is {:?} but the sequence's first frame is {:?}",
                            f.dimensions(),
                            self.size
                        ),
                    ));
                }
                Ok(f)
            })
            .collect()
    }

    fn describe(&self) -> String {
        format!("sequence {}", self.name)
    }
}

/// A sequence's frames, and its first annotation as object ids.
fn open_sequence(seq: &DavisSequence) -> Result<(SequenceSource, LabelMap)> {
    let source = SequenceSource::new(seq)?;
    let dir = seq.frames[0].parent().unwrap_or(Path::new("."));
    let annotation = seq
        .annotations
        .first()
        .and_then(|a| a.as_ref())
        .ok_or_else(|| Error::file(dir, "the first frame has no annotation to propagate"))?;
    // Void (255) is not an object to propagate: the official evaluator counts it as background.
    let mut first_map = read_mask(annotation)?;
    for v in first_map.iter_mut() {
        if *v == 255 {
            *v = 0;
        }
    }
    if first_map.dimensions() != source.size() {
        return Err(Error::file(
            annotation,
            format!(
                "the annotation is {:?} but the frames are {:?}",
                first_map.dimensions(),
                source.size()
            ),
        ));
    }
    Ok((source, first_map))
}

/// The output file of frame `index` of `seq` under `out`: `<out>/<sequence>/<frame stem>.png`.
pub fn mask_path(out: &Path, seq: &DavisSequence, index: usize) -> PathBuf {
    let stem = seq.frames[index]
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("{index:05}"));
    out.join(&seq.name).join(format!("{stem}.png"))
}

/// Propagates the first mask of `seq` by `method` under `protocol`, writing every frame's mask
/// to [`mask_path`] and, when `overlay` is given, a grid of frames with their masks to that file.
///
/// # Errors
/// [`Error::File`] naming the frame, annotation or output file at fault; the engine's errors.
pub fn propagate_sequence(
    seq: &DavisSequence,
    method: &Method,
    protocol: &Protocol,
    device: &Device,
    out: &Path,
    overlay: Option<(&Path, OverlayOptions)>,
) -> Result<SequenceRun> {
    let start = Instant::now();
    let (mut source, first) = open_sequence(seq)?;
    let picks = overlay
        .map(|(_, o)| overlay_indices(seq.len(), o.frames))
        .unwrap_or_default();
    let mut tiles = Vec::with_capacity(picks.len());
    let mut keep = |index: usize, labels: &LabelMap| -> Result<()> {
        write_palette_mask(mask_path(out, seq, index), labels)?;
        if let Some((_, o)) = overlay
            && picks.contains(&index)
        {
            let frame = decode_image(&seq.frames[index], None)?;
            let drawn = draw_mask(&frame, labels)?;
            let (w, h) = drawn.dimensions();
            let tw = o.width.min(w).max(1);
            let th = ((u64::from(h) * u64::from(tw)) / u64::from(w)).max(1) as u32;
            tiles.push(image::imageops::resize(
                &drawn,
                tw,
                th,
                image::imageops::FilterType::Triangle,
            ));
        }
        Ok(())
    };
    match method {
        Method::CopyFirst => {
            for index in 0..seq.len() {
                keep(index, &first)?;
            }
        }
        Method::Propagate(encoder) => {
            let run = Propagation {
                protocol,
                encoder,
                device: device.clone(),
            };
            run.run(&mut source, &first, |p| keep(p.index, p.labels))?;
        }
    }
    if let Some((path, o)) = overlay
        && !tiles.is_empty()
    {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::file(parent, format!("cannot create folder: {e}")))?;
        }
        grid(&tiles, o.columns)?
            .save(path)
            .map_err(|e| Error::file(path, format!("cannot write the overlay: {e}")))?;
    }
    Ok(SequenceRun {
        name: seq.name.clone(),
        frames: seq.len(),
        seconds: start.elapsed().as_secs_f64(),
    })
}
