//! Writing clips in the DAVIS-2017 layout, plus tracks and meta JSON.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::json;

use super::{GENERATOR_VERSION, Split, SynthClip, SynthConfig, generate_clip};
use crate::{Error, Result};

/// The DAVIS palette (the PASCAL VOC colour map): 256 RGB triples, index 0 black, 1 red
/// (128, 0, 0), 2 green (0, 128, 0), …
pub fn davis_palette() -> [u8; 768] {
    let mut pal = [0u8; 768];
    for i in 0..256usize {
        let (mut r, mut g, mut b) = (0u8, 0u8, 0u8);
        let mut c = i;
        for j in 0..8 {
            r |= ((c & 1) as u8) << (7 - j);
            g |= (((c >> 1) & 1) as u8) << (7 - j);
            b |= (((c >> 2) & 1) as u8) << (7 - j);
            c >>= 3;
        }
        pal[3 * i..3 * i + 3].copy_from_slice(&[r, g, b]);
    }
    pal
}

fn mkdir(p: &Path) -> Result<()> {
    fs::create_dir_all(p).map_err(|e| Error::file(p, format!("cannot create folder: {e}")))
}

fn create(p: &Path) -> Result<BufWriter<fs::File>> {
    fs::File::create(p)
        .map(BufWriter::new)
        .map_err(|e| Error::file(p, format!("cannot create: {e}")))
}

fn write_json(p: &Path, value: &impl serde::Serialize) -> Result<()> {
    let mut w = create(p)?;
    serde_json::to_writer(&mut w, value).map_err(|e| Error::file(p, e.to_string()))?;
    w.flush().map_err(|e| Error::file(p, e.to_string()))
}

/// Writes an 8-bit indexed (mode P) PNG with the DAVIS palette.
fn write_palette_png(p: &Path, mask: &crate::frame::LabelMap) -> Result<()> {
    let pal = davis_palette();
    let w = create(p)?;
    let mut enc = png::Encoder::new(w, mask.width(), mask.height());
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_palette(&pal[..]);
    let err = |e: png::EncodingError| Error::file(p, format!("PNG encoding failed: {e}"));
    let mut writer = enc.write_header().map_err(err)?;
    writer.write_image_data(mask.as_raw()).map_err(err)?;
    writer.finish().map_err(err)
}

/// Writes `clip` as sequence `name` under `out_root`:
/// `JPEGImages/480p/<name>/%05d.jpg` (JPEG at the config's quality, 95 without a config),
/// `Annotations/480p/<name>/%05d.png` (palette PNGs, DAVIS palette, index = object id),
/// `tracks/<name>.json` (per object: its points with per-frame `xy` and `visible`) and
/// `meta/<name>.json` (the clip's [`super::SynthMeta`]). Frames are encoded in parallel.
pub fn write_davis(clip: &SynthClip, out_root: &Path, name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err(Error::op(
            "write_davis",
            format!("bad sequence name {name:?}"),
        ));
    }
    let quality = clip
        .meta
        .config
        .as_ref()
        .map_or(95, |c| c.jpeg_quality)
        .clamp(1, 100);
    let jpg_dir = out_root.join("JPEGImages/480p").join(name);
    let ann_dir = out_root.join("Annotations/480p").join(name);
    let trk_dir = out_root.join("tracks");
    let meta_dir = out_root.join("meta");
    for d in [&jpg_dir, &ann_dir, &trk_dir, &meta_dir] {
        mkdir(d)?;
    }
    clip.frames
        .par_iter()
        .zip(clip.masks.par_iter())
        .enumerate()
        .try_for_each(|(t, (frame, mask))| -> Result<()> {
            let jp = jpg_dir.join(format!("{t:05}.jpg"));
            let mut w = create(&jp)?;
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut w, quality)
                .encode_image(frame)
                .map_err(|e| Error::file(&jp, format!("JPEG encoding failed: {e}")))?;
            w.flush().map_err(|e| Error::file(&jp, e.to_string()))?;
            write_palette_png(&ann_dir.join(format!("{t:05}.png")), mask)
        })?;
    write_json(
        &trk_dir.join(format!("{name}.json")),
        &json!({ "name": name, "frames": clip.frames.len(), "objects": clip.tracks }),
    )?;
    write_json(&meta_dir.join(format!("{name}.json")), &clip.meta)
}

/// The sequence name of clip `index` of `split`.
pub(crate) fn clip_name(split: Split, index: usize) -> String {
    format!("synth-{}-{index:05}", split.name())
}

/// Generates `videos` clips of (`cfg`, `split`, `seed`) and writes them with [`write_davis`]
/// under `out`, named `synth-<split>-%05d`, plus the list `ImageSets/2017/val.txt` (eval) or
/// `ImageSets/2017/train.txt` (train) and `synth.json` (version, seed, split, config, names).
/// Clips are generated in parallel; the output does not depend on the thread count.
pub fn write_dataset(
    cfg: &SynthConfig,
    split: Split,
    seed: u64,
    videos: usize,
    out: &Path,
) -> Result<()> {
    cfg.validate()?;
    mkdir(out)?;
    let names: Vec<String> = (0..videos).map(|i| clip_name(split, i)).collect();
    names
        .par_iter()
        .enumerate()
        .try_for_each(|(i, name)| -> Result<()> {
            let clip = generate_clip(cfg, split, seed, i as u64)?;
            write_davis(&clip, out, name)
        })?;
    let sets = out.join("ImageSets/2017");
    mkdir(&sets)?;
    let list: PathBuf = sets.join(match split {
        Split::Eval => "val.txt",
        Split::Train => "train.txt",
    });
    let mut w = create(&list)?;
    for n in &names {
        writeln!(w, "{n}").map_err(|e| Error::file(&list, e.to_string()))?;
    }
    w.flush().map_err(|e| Error::file(&list, e.to_string()))?;
    write_json(
        &out.join("synth.json"),
        &json!({
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "split": split,
            "config": cfg,
            "videos": names,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_is_the_voc_colour_map() {
        let p = davis_palette();
        assert_eq!(&p[0..3], &[0, 0, 0]);
        assert_eq!(&p[3..6], &[128, 0, 0]);
        assert_eq!(&p[6..9], &[0, 128, 0]);
        assert_eq!(&p[9..12], &[128, 128, 0]);
        assert_eq!(&p[12..15], &[0, 0, 128]);
        assert_eq!(&p[3 * 255..], &[224, 224, 192]);
    }
}
