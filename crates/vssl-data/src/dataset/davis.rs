//! DAVIS 2016 and 2017: sequences, frames and annotation masks.
//!
//! Layout: `JPEGImages/<resolution>/<seq>/%05d.jpg`, `Annotations/<resolution>/<seq>/%05d.png`,
//! optionally `ImageSets/<year>/val.txt`. DAVIS-2016 masks are mode-L PNGs with values {0, 255}
//! (one object); DAVIS-2017 masks are palette PNGs whose palette *index* is the object id
//! (several objects, 255 = void). [`read_mask`] reads both into object ids, and
//! [`write_palette_mask`] writes the DAVIS-2017 form.

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use super::{file_name, image_files, read_dir_sorted, read_text};
use crate::frame::LabelMap;
use crate::{Error, Result};

/// One DAVIS sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DavisSequence {
    /// Sequence name, e.g. `blackswan`.
    pub name: String,
    /// Frame paths in time order.
    pub frames: Vec<PathBuf>,
    /// Annotation path of each frame (same stem, `.png`), `None` where the frame has none
    /// (e.g. DAVIS-2017 test-dev annotates only the first frame).
    pub annotations: Vec<Option<PathBuf>>,
}

impl DavisSequence {
    /// Number of frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when the sequence has no frame.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// A DAVIS dataset: a list of sequences.
#[derive(Debug, Clone)]
pub struct Davis {
    /// The DAVIS root folder.
    pub root: PathBuf,
    /// 2016 or 2017.
    pub year: u32,
    /// Resolution folder, e.g. `480p`.
    pub resolution: String,
    /// The sequences, in split order (or sorted by name when listed from the folders).
    pub sequences: Vec<DavisSequence>,
}

impl Davis {
    /// Opens the DAVIS tree at `root` for `year` (2016 or 2017) at `resolution` (`"480p"`).
    ///
    /// The sequences are `split` when given, else the ones of `ImageSets/<year>/val.txt` when
    /// that file exists (one name per line; lines that are paths such as
    /// `/JPEGImages/480p/bear/00000.jpg ...`, the DAVIS-2016 form, give their sequence folder),
    /// else every folder of `JPEGImages/<resolution>`, sorted.
    ///
    /// Errors when `year` is not 2016/2017, or when a listed sequence has no frame folder or no
    /// frame: an evaluation set must be complete, so nothing is skipped silently here.
    pub fn open(
        root: impl AsRef<Path>,
        year: u32,
        resolution: &str,
        split: Option<&[String]>,
    ) -> Result<Self> {
        let root = root.as_ref();
        if year != 2016 && year != 2017 {
            return Err(Error::op(
                "Davis::open",
                format!("year {year}: DAVIS years are 2016 and 2017"),
            ));
        }
        let frames_root = root.join("JPEGImages").join(resolution);
        let annot_root = root.join("Annotations").join(resolution);
        let names: Vec<String> = match split {
            Some(s) => s.to_vec(),
            None => {
                let list = root
                    .join("ImageSets")
                    .join(year.to_string())
                    .join("val.txt");
                if list.is_file() {
                    parse_split(&read_text(&list)?)
                } else {
                    read_dir_sorted(&frames_root)?
                        .0
                        .iter()
                        .map(|d| file_name(d))
                        .collect()
                }
            }
        };
        if names.is_empty() {
            return Err(Error::file(root, "no DAVIS sequence found"));
        }
        let sequences = names
            .into_iter()
            .map(|name| {
                let dir = frames_root.join(&name);
                if !dir.is_dir() {
                    return Err(Error::file(&dir, "sequence folder missing"));
                }
                let frames = image_files(&dir)?;
                if frames.is_empty() {
                    return Err(Error::file(&dir, "sequence has no JPEG/PNG frame"));
                }
                let annotations = frames
                    .iter()
                    .map(|f| {
                        let stem = f.file_stem()?;
                        let mut a = annot_root.join(&name).join(stem);
                        a.set_extension("png");
                        a.is_file().then_some(a)
                    })
                    .collect();
                Ok(DavisSequence {
                    name,
                    frames,
                    annotations,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            root: root.to_path_buf(),
            year,
            resolution: resolution.to_string(),
            sequences,
        })
    }

    /// The sequence called `name`.
    pub fn sequence(&self, name: &str) -> Option<&DavisSequence> {
        self.sequences.iter().find(|s| s.name == name)
    }
}

/// Sequence names of an `ImageSets` split file, in order, without repeats.
fn parse_split(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or(line);
        let name = if first.contains('/') {
            // `/JPEGImages/480p/<seq>/<frame>.jpg`: the folder holding the frame
            match Path::new(first).parent().and_then(|p| p.file_name()) {
                Some(n) => n.to_string_lossy().into_owned(),
                None => continue,
            }
        } else {
            first.to_string()
        };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// The DAVIS palette (the PASCAL VOC colour map): entry `i` spreads the bits of `i` over the
/// high bits of R, G and B (bit 0 → R, bit 1 → G, bit 2 → B, three bits per step). Entries 0..4
/// are black, (128,0,0), (0,128,0), (128,128,0); 255 is (224,224,192).
pub fn davis_palette() -> [[u8; 3]; 256] {
    let mut pal = [[0u8; 3]; 256];
    for (i, entry) in pal.iter_mut().enumerate() {
        let mut c = i;
        for j in 0..8 {
            for (ch, value) in entry.iter_mut().enumerate() {
                *value |= (((c >> ch) & 1) as u8) << (7 - j);
            }
            c >>= 3;
        }
    }
    pal
}

/// How a mask PNG stores its labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MaskKind {
    /// Grayscale (mode L), values scaled to 8 bits.
    Gray,
    /// Palette (mode P): the raw palette indices.
    Indexed,
}

/// Reads a grayscale or palette PNG *without* colour expansion: the raw 8-bit values (grayscale
/// samples of fewer bits are scaled to 0..255) or palette indices.
pub(crate) fn read_raw_png(path: &Path) -> Result<(LabelMap, MaskKind)> {
    let bad = |msg: String| Error::file(path, msg);
    let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot open: {e}")))?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder
        .read_info()
        .map_err(|e| bad(format!("not a readable PNG: {e}")))?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| bad("PNG too large".into()))?;
    let mut buf = vec![0u8; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| bad(format!("corrupt PNG data: {e}")))?;
    let (w, h) = (info.width, info.height);
    let kind = match info.color_type {
        png::ColorType::Grayscale => MaskKind::Gray,
        png::ColorType::Indexed => MaskKind::Indexed,
        other => {
            return Err(bad(format!(
                "mask PNG is {other:?}: expected grayscale (L) or palette (P)"
            )));
        }
    };
    let bits = match info.bit_depth {
        png::BitDepth::One => 1,
        png::BitDepth::Two => 2,
        png::BitDepth::Four => 4,
        png::BitDepth::Eight => 8,
        png::BitDepth::Sixteen => {
            return Err(bad("16-bit mask PNG: expected 8 bits or fewer".into()));
        }
    };
    let mut out = Vec::with_capacity(w as usize * h as usize);
    if bits == 8 {
        for row in buf.chunks_exact(info.line_size).take(h as usize) {
            out.extend_from_slice(&row[..w as usize]);
        }
    } else {
        let max = (1u16 << bits) - 1;
        let per_byte = 8 / bits;
        for row in buf.chunks_exact(info.line_size).take(h as usize) {
            for x in 0..w as usize {
                let byte = row[x / per_byte];
                let shift = 8 - bits * (x % per_byte + 1);
                let v = (byte >> shift) as u16 & max;
                out.push(match kind {
                    // L samples of fewer bits mean fractions of white (PIL mode "1" → 0/255)
                    MaskKind::Gray => (v * 255 / max) as u8,
                    MaskKind::Indexed => v as u8,
                });
            }
        }
    }
    let map = LabelMap::from_raw(w, h, out)
        .ok_or_else(|| bad("decoded size does not match the header".into()))?;
    Ok((map, kind))
}

/// Reads a DAVIS mask as object ids.
///
/// - Palette PNG (DAVIS 2017): the palette index is the id (0 = background, 1.. = objects,
///   255 = void, kept as 255: callers that follow the official evaluator treat it as 0).
/// - Grayscale PNG (DAVIS 2016, values {0, 255}): one object, id 1 where the value is ≥ 128,
///   0 elsewhere.
pub fn read_mask(path: impl AsRef<Path>) -> Result<LabelMap> {
    let (mut map, kind) = read_raw_png(path.as_ref())?;
    if kind == MaskKind::Gray {
        for v in map.iter_mut() {
            *v = u8::from(*v >= 128);
        }
    }
    Ok(map)
}

/// Writes `mask` (object ids) as an 8-bit palette PNG with the DAVIS palette (what the DAVIS-2017
/// tools and PIL read as mode "P"). Creates the parent folder if needed.
pub fn write_palette_mask(path: impl AsRef<Path>, mask: &LabelMap) -> Result<()> {
    let path = path.as_ref();
    let bad = |msg: String| Error::file(path, msg);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| bad(format!("cannot create folder: {e}")))?;
    }
    let file = std::fs::File::create(path).map_err(|e| bad(format!("cannot create: {e}")))?;
    let mut enc = png::Encoder::new(BufWriter::new(file), mask.width(), mask.height());
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(png::BitDepth::Eight);
    let palette: Vec<u8> = davis_palette().iter().flatten().copied().collect();
    enc.set_palette(palette);
    let mut writer = enc
        .write_header()
        .map_err(|e| bad(format!("cannot write PNG: {e}")))?;
    writer
        .write_image_data(mask.as_raw())
        .map_err(|e| bad(format!("cannot write PNG: {e}")))?;
    writer
        .finish()
        .map_err(|e| bad(format!("cannot write PNG: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_file_forms() {
        let names = parse_split("bear\n# c\n\nblackswan\n");
        assert_eq!(names, ["bear", "blackswan"]);
        let names = parse_split(
            "/JPEGImages/480p/bear/00000.jpg /Annotations/480p/bear/00000.png\n\
             /JPEGImages/480p/bear/00001.jpg /Annotations/480p/bear/00001.png\n\
             /JPEGImages/480p/cows/00000.jpg /Annotations/480p/cows/00000.png\n",
        );
        assert_eq!(names, ["bear", "cows"]);
    }
}
