//! A folder of JPEG/PNG frames (DAVIS, JHMDB, VIP, TrackingNet dumps), and [`open_source`],
//! which opens a folder or a video file by what the path is.
//!
//! Frames are the image files of the folder (`jpg`, `jpeg`, `png`, any case) in natural name
//! order (`2.jpg` before `10.jpg`). [`FolderSource::frames`] decodes only the asked files, in
//! parallel (rayon), and resizes them with [`resize_bilinear_rgb`], a fixed-point separable
//! bilinear resize with OpenCV's `INTER_LINEAR` geometry (several times faster than
//! `image::imageops::resize` with `Triangle`).

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::FrameSource;
use crate::frame::Frame;
use crate::{Error, Result};

/// Image extensions (lower case) that count as frames.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png"];

/// Video extensions (lower case) that [`open_source`] opens as video files (through FFmpeg,
/// which demuxes every one of these containers). The dataset listings use the same list, so a
/// file is listed exactly when it is opened.
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "avi", "mkv", "webm", "mov", "m4v", "mpg", "mpeg", "flv", "wmv", "3gp", "ts",
];

/// Lower-case extension of `path`, if any.
fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

/// Opens `path` as a frame source: a directory is a [`FolderSource`], a file with a video
/// extension (see [`VIDEO_EXTENSIONS`]) a [`super::video::VideoSource`] (feature `video`).
///
/// Errors name the path: missing, an unknown file type, or a video file in a build without the
/// `video` feature.
pub fn open_source(path: impl AsRef<Path>) -> Result<Box<dyn FrameSource>> {
    let path = path.as_ref();
    if path.is_dir() {
        return Ok(Box::new(FolderSource::open(path)?));
    }
    if !path.exists() {
        return Err(Error::file(path, "no such file or directory"));
    }
    match extension(path) {
        Some(ext) if VIDEO_EXTENSIONS.contains(&ext.as_str()) => open_video(path),
        _ => Err(Error::file(
            path,
            format!(
                "not a frame folder nor a video file (extensions: {})",
                VIDEO_EXTENSIONS.join(", ")
            ),
        )),
    }
}

#[cfg(feature = "video")]
fn open_video(path: &Path) -> Result<Box<dyn FrameSource>> {
    Ok(Box::new(super::video::VideoSource::open(path)?))
}

#[cfg(not(feature = "video"))]
fn open_video(path: &Path) -> Result<Box<dyn FrameSource>> {
    Err(Error::file(
        path,
        "video files need vssl-data's `video` feature (FFmpeg), which this build lacks",
    ))
}

/// Compares file names in natural order: runs of digits compare by value (`2` < `10`), the rest
/// byte by byte; ties (e.g. `01` vs `1`) fall back to the plain byte order.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let na = a[si..i].trim_start_matches('0');
            let nb = b[sj..j].trim_start_matches('0');
            let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if ord != Ordering::Equal {
                return ord;
            }
        } else {
            if ab[i] != bb[j] {
                return ab[i].cmp(&bb[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j)).then_with(|| a.cmp(b))
}

/// A folder of JPEG/PNG frames.
#[derive(Debug, Clone)]
pub struct FolderSource {
    dir: PathBuf,
    files: Vec<PathBuf>,
    size: (u32, u32),
}

impl FolderSource {
    /// Lists the image files of `dir` in natural order and reads the first one's header for the
    /// frame size (nothing is decoded).
    ///
    /// Errors name the folder when it cannot be read or holds no image, and the first frame when
    /// its header is unreadable.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::file(dir, format!("cannot list the folder: {e}")))?;
        let mut named: Vec<(String, PathBuf)> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::file(dir, format!("cannot list: {e}")))?;
            let path = entry.path();
            let is_image = extension(&path).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()));
            if !is_image || path.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            named.push((name, path));
        }
        if named.is_empty() {
            return Err(Error::file(
                dir,
                "the folder holds no frame (no .jpg, .jpeg or .png file)",
            ));
        }
        named.sort_by(|a, b| natural_cmp(&a.0, &b.0));
        let files: Vec<PathBuf> = named.into_iter().map(|(_, p)| p).collect();
        let first = &files[0];
        let size = image::ImageReader::open(first)
            .and_then(|r| r.with_guessed_format())
            .map_err(|e| Error::file(first, format!("cannot read the frame: {e}")))?
            .into_dimensions()
            .map_err(|e| Error::file(first, format!("unreadable image header: {e}")))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
            size,
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The frame files, in frame order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// Decodes one image file to RGB8 and resizes it to `resize` when given.
///
/// JPEG files are decoded by libjpeg-turbo's decoder (the `mozjpeg` crate, compiled from source;
/// integer IDCT and fancy upsampling, its defaults), which gives exactly the pixels of PIL and
/// OpenCV (`cv2.imread`), the decoders of the reference PyTorch pipelines; the `image` crate's
/// decoder differs from them by up to 5 levels on about 11% of the bytes of a DAVIS frame. Other
/// formats, and JPEGs libjpeg cannot read as RGB (e.g. CMYK), go through the `image` crate.
pub fn decode_image(path: &Path, resize: Option<(u32, u32)>) -> Result<Frame> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::file(path, format!("cannot read the frame: {e}")))?;
    let img = match decode_jpeg(&bytes) {
        Some(img) => img,
        None => image::ImageReader::new(std::io::Cursor::new(&bytes))
            .with_guessed_format()
            .map_err(|e| Error::file(path, format!("cannot read the frame: {e}")))?
            .decode()
            .map_err(|e| Error::file(path, format!("cannot decode the frame: {e}")))?
            .into_rgb8(),
    };
    Ok(match resize {
        Some(size) if size != img.dimensions() => resize_bilinear_rgb(&img, size.0, size.1),
        _ => img,
    })
}

/// `bytes` decoded as a JPEG by libjpeg-turbo, or `None` when they are not a JPEG it can decode
/// to RGB (libjpeg reports errors by unwinding, caught here).
fn decode_jpeg(bytes: &[u8]) -> Option<Frame> {
    if !bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return None;
    }
    std::panic::catch_unwind(|| {
        let d = mozjpeg::Decompress::new_mem(bytes).ok()?;
        let mut img = d.rgb().ok()?;
        let (w, h) = (img.width() as u32, img.height() as u32);
        let px: Vec<[u8; 3]> = img.read_scanlines().ok()?;
        img.finish().ok()?;
        let raw: Vec<u8> = px.into_iter().flatten().collect();
        Frame::from_raw(w, h, raw)
    })
    .ok()
    .flatten()
}

impl FrameSource for FolderSource {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn frames(&mut self, indices: &[usize], resize: Option<(u32, u32)>) -> Result<Vec<Frame>> {
        let n = self.files.len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(Error::op(
                "FolderSource::frames",
                format!(
                    "{}: frame {bad} asked, the folder has {n}",
                    self.dir.display()
                ),
            ));
        }
        if let Some((w, h)) = resize
            && (w == 0 || h == 0)
        {
            return Err(Error::op(
                "FolderSource::frames",
                format!("{}: resize to {w}x{h}", self.dir.display()),
            ));
        }
        let mut wanted: Vec<usize> = indices.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let decoded: Vec<Frame> = wanted
            .par_iter()
            .map(|&i| decode_image(&self.files[i], resize))
            .collect::<Result<_>>()?;
        assemble(
            indices,
            &wanted,
            decoded.into_iter().map(Some).collect(),
            &self.dir,
        )
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

/// The frames of `indices`, in the asked order, from `got[slot]` = the frame of `wanted[slot]`
/// (`wanted` sorted, without repeats). A frame is moved out at its last use and cloned before
/// (repeated indices).
pub(crate) fn assemble(
    indices: &[usize],
    wanted: &[usize],
    mut got: Vec<Option<Frame>>,
    path: &Path,
) -> Result<Vec<Frame>> {
    let mut uses = vec![0usize; wanted.len()];
    let slots: Vec<Option<usize>> = indices
        .iter()
        .map(|i| {
            let s = wanted.binary_search(i).ok();
            if let Some(s) = s {
                uses[s] += 1;
            }
            s
        })
        .collect();
    slots
        .iter()
        .zip(indices)
        .map(|(s, i)| {
            let f = s.and_then(|s| {
                uses[s] -= 1;
                if uses[s] == 0 {
                    got[s].take()
                } else {
                    got[s].clone()
                }
            });
            f.ok_or_else(|| Error::file(path, format!("frame {i} was not decoded")))
        })
        .collect()
}

/// Fixed-point bits of the interpolation weights (OpenCV's `INTER_RESIZE_COEF_BITS`).
const COEF_BITS: u32 = 11;
const COEF_ONE: i32 = 1 << COEF_BITS;

/// Per output coordinate: the two source taps and their fixed-point weights, as OpenCV's
/// `cv::resize` computes them for `INTER_LINEAR` on 8-bit images: `f = (d + 0.5)·s − 0.5` in
/// `f32` (`s = 1/(out/in)` in `f64`), `i = ⌊f⌋`, each weight `1 − (f − i)` and `f − i` rounded
/// separately (half to even) to 11 bits. Along x (`clamp`) a coordinate before the first pixel
/// or from the last one on is moved onto that pixel with weights (2048, 0); along y OpenCV keeps
/// the weights of the unclamped coordinate and only clamps the two rows it reads.
fn taps(inp: u32, out: u32, clamp: bool) -> Vec<(usize, usize, i32, i32)> {
    let scale = 1.0 / (f64::from(out) / f64::from(inp));
    let last = i64::from(inp) - 1;
    let one = COEF_ONE as f32;
    (0..out)
        .map(|d| {
            let f = ((f64::from(d) + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as i64;
            let mut frac = f - s as f32;
            if clamp && s < 0 {
                s = 0;
                frac = 0.0;
            }
            if clamp && s >= last {
                s = last;
                frac = 0.0;
            }
            let w0 = ((1.0 - frac) * one).round_ties_even() as i32;
            let w1 = (frac * one).round_ties_even() as i32;
            let row = |i: i64| i.clamp(0, last) as usize;
            (row(s), row(s + 1), w0, w1)
        })
        .collect()
}

/// Saturates to `i16`.
fn sat16(v: i32) -> i32 {
    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX))
}

/// Bilinear resize of an RGB8 image to `width × height` bit-exact with OpenCV's `cv2.resize(...,
/// interpolation=INTER_LINEAR)` on x86 (checked against opencv-python 5.0 on DAVIS frames at the
/// evaluation sizes by `crates/vssl-eval/tests/propagation_fidelity.rs`; no antialiasing, like
/// OpenCV and PyTorch's `antialias=False`). Separable: each needed source row is interpolated
/// along x once (exact integers, each weight rounded to 11 bits on its own), then pairs of rows
/// are blended along y with the arithmetic of OpenCV's SIMD vertical pass
/// (`VResizeLinearVec_32s8u`): 16-bit `mulhi(row >> 4, β)` per row, a saturating add,
/// `(v + 2) >> 2` saturated to `u8`. Not reproduced: OpenCV's scalar tail of rows whose byte
/// length is not a multiple of 32 (a few bytes per row, within one level) and its switch to
/// `INTER_AREA` for an exact 2× shrink.
pub fn resize_bilinear_rgb(img: &Frame, width: u32, height: u32) -> Frame {
    let (iw, ih) = img.dimensions();
    if width == 0 || height == 0 || iw == 0 || ih == 0 {
        return Frame::new(width, height);
    }
    let xt = taps(iw, width, true);
    let yt = taps(ih, height, false);
    let src = img.as_raw();
    let in_row = iw as usize * 3;
    let ow = width as usize;
    let out_row = ow * 3;
    let mut out = vec![0u8; out_row * height as usize];
    // Two horizontally interpolated rows (values × 2^11), cached by source row.
    let mut rows: [(usize, Vec<i32>); 2] = [
        (usize::MAX, vec![0i32; out_row]),
        (usize::MAX, vec![0i32; out_row]),
    ];
    let hpass = |sy: usize, dst: &mut [i32]| {
        let line = &src[sy * in_row..(sy + 1) * in_row];
        for (o, &(x0, x1, w0, w1)) in dst.chunks_exact_mut(3).zip(&xt) {
            let (a, b) = (&line[x0 * 3..x0 * 3 + 3], &line[x1 * 3..x1 * 3 + 3]);
            o[0] = i32::from(a[0]) * w0 + i32::from(b[0]) * w1;
            o[1] = i32::from(a[1]) * w0 + i32::from(b[1]) * w1;
            o[2] = i32::from(a[2]) * w0 + i32::from(b[2]) * w1;
        }
    };
    for (orow, &(y0, y1, wy0, wy1)) in out.chunks_exact_mut(out_row).zip(&yt) {
        // Row y1 is needed unless its weight is 0 or it is row y0 (clamped at an edge).
        let second = (wy1 != 0 && y1 != y0).then_some(y1);
        let s0 = if rows[0].0 == y0 {
            0
        } else if rows[1].0 == y0 {
            1
        } else {
            let s = usize::from(second.is_some() && rows[0].0 == y1);
            hpass(y0, &mut rows[s].1);
            rows[s].0 = y0;
            s
        };
        let s1 = match second {
            None => s0,
            Some(y1) => {
                let s = 1 - s0;
                if rows[s].0 != y1 {
                    hpass(y1, &mut rows[s].1);
                    rows[s].0 = y1;
                }
                s
            }
        };
        let (r0, r1) = (&rows[s0].1, &rows[s1].1);
        for ((o, &a), &b) in orow.iter_mut().zip(r0).zip(r1) {
            let a = (sat16(a >> 4) * wy0) >> 16;
            let b = (sat16(b >> 4) * wy1) >> 16;
            *o = ((sat16(a + b) + 2) >> 2).clamp(0, 255) as u8;
        }
    }
    Frame::from_raw(width, height, out).unwrap_or_else(|| Frame::new(width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_video_extension_is_opened_as_a_video() {
        // The dataset listing and the opener share one list; a file with any of these
        // extensions goes to the video decoder (here: a failed decode or the missing feature,
        // never "not a frame folder nor a video file").
        let dir = std::env::temp_dir().join(format!("vssl-ext-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for ext in VIDEO_EXTENSIONS.iter().chain(&["MP4", "Ts"]) {
            let p = dir.join(format!("clip.{ext}"));
            std::fs::write(&p, b"not a video").unwrap();
            assert!(crate::dataset::is_video(&p), "{ext}");
            let msg = open_source(&p).err().expect("garbage opens").to_string();
            assert!(!msg.contains("nor a video file"), "{ext}: {msg}");
            assert!(
                msg.contains("clip."),
                "{ext}: the error names the file: {msg}"
            );
        }
        let other = dir.join("clip.txt");
        std::fs::write(&other, b"x").unwrap();
        assert!(!crate::dataset::is_video(&other));
        let msg = open_source(&other).err().unwrap().to_string();
        assert!(
            msg.contains("nor a video file") && msg.contains("mpg"),
            "{msg}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn natural_order() {
        let mut v = vec![
            "10.jpg",
            "2.jpg",
            "1.jpg",
            "a10b.png",
            "a9b.png",
            "00001.jpg",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            [
                "00001.jpg",
                "1.jpg",
                "2.jpg",
                "10.jpg",
                "a9b.png",
                "a10b.png"
            ]
        );
    }

    #[test]
    fn resize_is_exact_on_a_linear_ramp_and_keeps_flat_colours() {
        // A horizontal ramp 4·x: halving the width samples between pixel pairs, so output x holds
        // the mean of inputs 2x and 2x+1 = 4·(2x + 0.5).
        let img = Frame::from_fn(64, 8, |x, _| image::Rgb([(4 * x) as u8, 7, 200]));
        let out = resize_bilinear_rgb(&img, 32, 4);
        assert_eq!(out.dimensions(), (32, 4));
        for x in 0..32u32 {
            let want = 4.0 * (2.0 * x as f64 + 0.5);
            let p = out.get_pixel(x, 2).0;
            assert!(
                (f64::from(p[0]) - want).abs() <= 0.5,
                "x {x}: {p:?} vs {want}"
            );
            assert_eq!((p[1], p[2]), (7, 200));
        }
    }
}
