//! Datasets: video lists and collections (skipping bad entries), DAVIS 2016/2017 masks and
//! palette, BADJA, JHMDB (MATLAB v5 reader), VIP — on tiny trees made here in a temp folder, on
//! committed fixtures made by `tests/golden/datasets_fixtures.py`, and on the real DAVIS-2016 /
//! BADJA data when `../shared/data` is present.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use image::{GrayImage, Luma, Rgb, RgbImage};
use vssl_data::dataset::{
    Badja, Davis, EntryKind, Jhmdb, VideoList, Vip, davis_palette, read_mask, read_mat_array,
    read_mat_arrays, read_part_labels, write_palette_mask,
};
use vssl_data::frame::{Frame, LabelMap};
use vssl_data::source::FrameSource;
use vssl_data::source::memory::MemorySource;
use vssl_data::{Error, Result};

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/datasets");

/// A fresh temp folder, removed on drop.
struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "vssl-datasets-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).ok();
        Self(p)
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::file(path, e.to_string())
}

fn mkdir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).map_err(io(p))
}

fn write(p: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(d) = p.parent() {
        mkdir(d)?;
    }
    std::fs::write(p, bytes).map_err(io(p))
}

fn save_rgb(p: &Path, w: u32, h: u32, v: u8) -> Result<()> {
    if let Some(d) = p.parent() {
        mkdir(d)?;
    }
    RgbImage::from_pixel(w, h, Rgb([v, v / 2, 255 - v]))
        .save(p)
        .map_err(|e| Error::file(p, e.to_string()))
}

fn save_gray(p: &Path, img: &GrayImage) -> Result<()> {
    if let Some(d) = p.parent() {
        mkdir(d)?;
    }
    img.save(p).map_err(|e| Error::file(p, e.to_string()))
}

/// The test's own opener: a folder of PNG/JPEG frames, every frame decoded up front (so a
/// garbage frame fails at open), as a `MemorySource`. Anything that is not a folder fails.
fn folder_opener(path: &Path) -> Result<Box<dyn FrameSource>> {
    if !path.is_dir() {
        return Err(Error::file(path, "not a frame folder (test opener)"));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io(path))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let frames = files
        .iter()
        .map(|f| {
            image::open(f)
                .map(|i| i.to_rgb8())
                .map_err(|e| Error::file(f, format!("unreadable frame: {e}")))
        })
        .collect::<Result<Vec<Frame>>>()?;
    Ok(Box::new(MemorySource::new(
        path.display().to_string(),
        frames,
    )?))
}

// ---------------------------------------------------------------------------------------------
// video lists and collections

#[test]
fn from_dir_finds_video_files_and_leaf_frame_folders_sorted() -> Result<()> {
    let t = Tmp::new("list");
    write(&t.path("kinetics/zumba/b.mp4"), b"")?;
    write(&t.path("kinetics/abseiling/a.MKV"), b"")?;
    write(&t.path("kinetics/abseiling/readme.txt"), b"")?;
    write(&t.path(".cache/hidden.mp4"), b"")?;
    for v in ["vid_b", "vid_a"] {
        for n in 0..3 {
            save_rgb(&t.path(&format!("TRAIN_0/zips/{v}/{n}.jpg")), 8, 6, 10 * n)?;
        }
    }
    // a folder with frames *and* a sub-folder is not a leaf: only its sub-folder counts
    save_rgb(&t.path("mixed/0.jpg"), 4, 4, 0)?;
    save_rgb(&t.path("mixed/inner/0.png"), 4, 4, 0)?;
    write(&t.path("empty_dir/notes.txt"), b"x")?;

    let list = VideoList::from_dir(&t.0)?;
    let got: Vec<(String, EntryKind)> = list
        .entries()
        .iter()
        .map(|e| {
            let rel = e.path.strip_prefix(&t.0).map(|p| p.display().to_string());
            (rel.unwrap_or_default(), e.kind)
        })
        .collect();
    let want = [
        ("TRAIN_0/zips/vid_a", EntryKind::FrameFolder),
        ("TRAIN_0/zips/vid_b", EntryKind::FrameFolder),
        ("kinetics/abseiling/a.MKV", EntryKind::VideoFile),
        ("kinetics/zumba/b.mp4", EntryKind::VideoFile),
        ("mixed/inner", EntryKind::FrameFolder),
    ];
    let want: Vec<(String, EntryKind)> = want.iter().map(|(p, k)| (p.to_string(), *k)).collect();
    assert_eq!(got, want);

    let err = VideoList::from_dir(t.path("empty_dir"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("empty_dir") && err.contains("no video"),
        "{err}"
    );
    Ok(())
}

#[test]
fn from_list_file_resolves_relative_paths_and_skips_comments() -> Result<()> {
    let t = Tmp::new("listfile");
    save_rgb(&t.path("data/v1/00000.jpg"), 4, 4, 1)?;
    write(&t.path("data/clip.mp4"), b"")?;
    let abs = t.path("data/v1");
    let text = format!(
        "# TrackingNet-style list\n\n  data/clip.mp4  \ndata/v1\n# {0}\n{0}\n",
        abs.display()
    );
    write(&t.path("lists/../train.txt"), text.as_bytes())?;
    let list = VideoList::from_list_file(t.path("train.txt"))?;
    let got: Vec<(PathBuf, EntryKind)> = list
        .entries()
        .iter()
        .map(|e| (e.path.clone(), e.kind))
        .collect();
    assert_eq!(
        got,
        vec![
            (t.path("data/clip.mp4"), EntryKind::VideoFile),
            (t.path("data/v1"), EntryKind::FrameFolder),
            (abs.clone(), EntryKind::FrameFolder),
        ]
    );
    write(&t.path("empty.txt"), b"# nothing\n\n")?;
    assert!(VideoList::from_list_file(t.path("empty.txt")).is_err());
    assert!(VideoList::from_list_file(t.path("missing.txt")).is_err());
    Ok(())
}

#[test]
fn collection_skips_bad_and_short_entries_deterministically() -> Result<()> {
    let t = Tmp::new("skip");
    for n in 0..4 {
        save_rgb(&t.path(&format!("a_good/{n:05}.png")), 6, 4, n * 40)?;
    }
    save_rgb(&t.path("b_short/00000.png"), 6, 4, 0)?;
    save_rgb(&t.path("c_corrupt/00000.png"), 6, 4, 0)?;
    write(&t.path("c_corrupt/00001.png"), b"\x89PNG garbage bytes")?;
    write(&t.path("d_garbage.mp4"), b"not a video at all")?;
    write(&t.path("e_empty.mp4"), b"")?;
    for n in 0..3 {
        save_rgb(&t.path(&format!("f_good/{n:05}.jpg")), 6, 4, n * 40)?;
    }
    let list = VideoList::from_dir(&t.0)?;
    assert_eq!(list.len(), 6);
    let coll = list.with_opener(folder_opener, 2);

    // entry 1 (short) → 2 (corrupt frame) → 3, 4 (not folders) → 5 (good)
    let (i, src) = coll.open_usable(1)?;
    assert_eq!((i, src.len(), src.size()), (5, 3, (6, 4)));
    assert_eq!(coll.skips().distinct(), 4);
    let snap = coll.skips().snapshot();
    let reason = |name: &str| {
        snap.iter()
            .find(|(p, _, _)| p.ends_with(name))
            .map(|(_, r, _)| r.clone())
            .unwrap_or_default()
    };
    assert!(reason("b_short").contains("too short"), "{snap:?}");
    assert!(reason("c_corrupt").contains("unreadable frame"), "{snap:?}");
    assert!(
        reason("d_garbage.mp4").contains("not a frame folder"),
        "{snap:?}"
    );
    // the same question gives the same answer, and known-bad entries are not re-opened
    let total = coll.skips().total();
    assert_eq!(coll.open_usable(1)?.0, 5);
    assert_eq!(coll.open_usable(3)?.0, 5);
    assert_eq!(coll.skips().total(), total);
    // wrapping around the end
    assert_eq!(coll.open_usable(6)?.0, 0);
    assert_eq!(coll.probe()?, vec![0, 5]);
    // a failure found while sampling removes an entry for good
    coll.mark_bad(5, "frame 2 failed to decode");
    assert_eq!(coll.open_usable(1)?.0, 0);
    assert!(coll.open_entry(1).is_err(), "open_entry does not skip");
    Ok(())
}

#[test]
fn collection_with_no_usable_video_is_an_error_that_says_so() -> Result<()> {
    let t = Tmp::new("nousable");
    write(&t.path("x.mp4"), b"garbage")?;
    save_rgb(&t.path("short/00000.png"), 4, 4, 0)?;
    let coll = VideoList::from_dir(&t.0)?.with_opener(folder_opener, 2);
    for err in [
        coll.open_usable(0).err().map(|e| e.to_string()),
        coll.probe().err().map(|e| e.to_string()),
    ] {
        let err = err.unwrap_or_default();
        assert!(err.contains("no usable video"), "{err}");
        assert!(
            err.contains(&t.0.display().to_string()),
            "names the root: {err}"
        );
    }
    assert_eq!(coll.skips().distinct(), 2);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// DAVIS

/// The mask pattern of `tests/golden/datasets_fixtures.py` (ids 0..3 and 255 = void).
const PATTERN: [[u8; 6]; 4] = [
    [0, 0, 1, 1, 2, 2],
    [0, 1, 1, 2, 2, 3],
    [3, 3, 0, 0, 255, 255],
    [1, 2, 3, 0, 1, 255],
];

fn pattern() -> LabelMap {
    LabelMap::from_fn(6, 4, |x, y| Luma([PATTERN[y as usize][x as usize]]))
}

#[test]
fn davis_palette_is_the_voc_colour_map() {
    let p = davis_palette();
    // the published PASCAL VOC / DAVIS colours
    assert_eq!(p[0], [0, 0, 0]);
    assert_eq!(p[1], [128, 0, 0]);
    assert_eq!(p[2], [0, 128, 0]);
    assert_eq!(p[3], [128, 128, 0]);
    assert_eq!(p[4], [0, 0, 128]);
    assert_eq!(p[5], [128, 0, 128]);
    assert_eq!(p[8], [64, 0, 0]);
    assert_eq!(p[255], [224, 224, 192]);
}

#[test]
fn masks_written_by_pil_read_as_ids() -> Result<()> {
    let fx = Path::new(FIXTURES);
    // palette PNG (DAVIS 2017): indices are ids, 255 (void) kept
    assert_eq!(read_mask(fx.join("palette_pil.png"))?, pattern());
    // L PNG {0, 255} (DAVIS 2016) and its 1-bit form: one object, id 1
    let binary = LabelMap::from_fn(6, 4, |x, y| {
        Luma([u8::from(PATTERN[y as usize][x as usize] > 0)])
    });
    assert_eq!(read_mask(fx.join("gray_pil.png"))?, binary);
    assert_eq!(read_mask(fx.join("bilevel_pil.png"))?, binary);
    // VIP part labels are raw values, not binarised
    let raw = read_part_labels(fx.join("gray_pil.png"))?;
    assert!(raw.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
    Ok(())
}

#[test]
fn palette_mask_round_trips_and_has_the_davis_palette() -> Result<()> {
    let t = Tmp::new("palette");
    let mut mask = LabelMap::new(37, 5);
    for (i, p) in mask.pixels_mut().enumerate() {
        p.0[0] = [0, 1, 2, 3, 7, 255][i % 6];
    }
    let path = t.path("out/00000.png");
    write_palette_mask(&path, &mask)?;
    assert_eq!(read_mask(&path)?, mask);
    // the file itself: 8-bit indexed with the VOC palette
    let file = std::fs::File::open(&path).map_err(io(&path))?;
    let reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .map_err(|e| Error::file(&path, e.to_string()))?;
    let info = reader.info();
    assert_eq!(info.color_type, png::ColorType::Indexed);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let pal = info.palette.as_deref().unwrap_or_default();
    assert_eq!(&pal[..12], &[0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]);
    assert_eq!(&pal[765..768], &[224, 224, 192]);

    // PIL (what the DAVIS tools use) reads it as mode "P" with the right indices
    let python = Path::new("/root/vssl-venv/bin/python");
    if !python.exists() {
        println!("skipped the PIL check: {} not found", python.display());
        return Ok(());
    }
    let small = pattern();
    let p2 = t.path("pattern.png");
    write_palette_mask(&p2, &small)?;
    let ids: Vec<String> = small.as_raw().iter().map(u8::to_string).collect();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/golden/datasets_check_palette.py"
    );
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(&p2)
        .arg(ids.join(","))
        .output()
        .map_err(io(python))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("ModuleNotFoundError") {
        println!("skipped the PIL check: {stderr}");
        return Ok(());
    }
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("ok"), "{text}");
    Ok(())
}

/// A tiny DAVIS tree: sequences `bravo` (3 frames) and `alpha` (2 frames), 8x6 frames.
fn davis_tree(t: &Tmp, year: u32) -> Result<()> {
    for (seq, n) in [("bravo", 3u8), ("alpha", 2)] {
        for f in 0..n {
            save_rgb(
                &t.path(&format!("JPEGImages/480p/{seq}/{f:05}.jpg")),
                8,
                6,
                f * 50,
            )?;
            // bravo's last frame is not annotated
            if seq == "bravo" && f == 2 {
                continue;
            }
            let p = t.path(&format!("Annotations/480p/{seq}/{f:05}.png"));
            if year == 2016 {
                let m =
                    GrayImage::from_fn(8, 6, |x, _| Luma([if x < 2 + f as u32 { 255 } else { 0 }]));
                save_gray(&p, &m)?;
            } else {
                let m = LabelMap::from_fn(8, 6, |x, y| Luma([((x + y + f as u32) % 4) as u8]));
                write_palette_mask(&p, &m)?;
            }
        }
    }
    Ok(())
}

#[test]
fn davis_2016_layout() -> Result<()> {
    let t = Tmp::new("davis16");
    davis_tree(&t, 2016)?;
    let d = Davis::open(&t.0, 2016, "480p", None)?;
    let names: Vec<&str> = d.sequences.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["alpha", "bravo"], "sorted folders");
    let bravo = d
        .sequence("bravo")
        .ok_or_else(|| Error::op("test", "no bravo"))?;
    assert_eq!(bravo.len(), 3);
    assert!(bravo.frames[2].ends_with("bravo/00002.jpg"));
    assert_eq!(
        bravo
            .annotations
            .iter()
            .map(Option::is_some)
            .collect::<Vec<_>>(),
        [true, true, false]
    );
    let a1 = bravo.annotations[1].clone().unwrap_or_default();
    let m = read_mask(&a1)?;
    assert_eq!(m.dimensions(), (8, 6));
    for (x, _, p) in m.enumerate_pixels() {
        assert_eq!(p.0[0], u8::from(x < 3), "x = {x}");
    }
    // ImageSets/2016/val.txt (DAVIS-2016 path form) chooses and orders the sequences
    write(
        &t.path("ImageSets/2016/val.txt"),
        b"/JPEGImages/480p/bravo/00000.jpg /Annotations/480p/bravo/00000.png\n",
    )?;
    let d = Davis::open(&t.0, 2016, "480p", None)?;
    assert_eq!(d.sequences.len(), 1);
    assert_eq!(d.sequences[0].name, "bravo");
    // an explicit split wins; a missing sequence and a bad year are errors naming them
    let d = Davis::open(&t.0, 2016, "480p", Some(&["alpha".to_string()]))?;
    assert_eq!(d.sequences[0].frames.len(), 2);
    let err = Davis::open(&t.0, 2016, "480p", Some(&["zulu".to_string()]))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("zulu"), "{err}");
    assert!(Davis::open(&t.0, 2018, "480p", None).is_err());
    Ok(())
}

#[test]
fn davis_2017_layout_with_several_objects() -> Result<()> {
    let t = Tmp::new("davis17");
    davis_tree(&t, 2017)?;
    write(&t.path("ImageSets/2017/val.txt"), b"bravo\nalpha\n")?;
    let d = Davis::open(&t.0, 2017, "480p", None)?;
    let names: Vec<&str> = d.sequences.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["bravo", "alpha"], "split order");
    let a = &d.sequences[1];
    let m = read_mask(a.annotations[1].clone().unwrap_or_default())?;
    for (x, y, p) in m.enumerate_pixels() {
        assert_eq!(u32::from(p.0[0]), (x + y + 1) % 4);
    }
    Ok(())
}

#[test]
fn real_davis_2016_val() -> Result<()> {
    let root = Path::new(SHARED).join("davis2016-val");
    if !root.is_dir() {
        println!("skipped: {} not found", root.display());
        return Ok(());
    }
    let d = Davis::open(&root, 2016, "480p", None)?;
    assert_eq!(d.sequences.len(), 20);
    let total: usize = d.sequences.iter().map(|s| s.len()).sum();
    assert_eq!(total, 1376);
    let bs = d
        .sequence("blackswan")
        .ok_or_else(|| Error::op("test", "no blackswan"))?;
    assert_eq!(bs.len(), 50);
    assert!(
        d.sequences
            .iter()
            .all(|s| s.annotations.iter().all(Option::is_some))
    );
    let path = bs.annotations[0].clone().unwrap_or_default();
    let raw = image::open(&path)
        .map_err(|e| Error::file(&path, e.to_string()))?
        .to_luma8();
    assert!(
        raw.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255),
        "L masks are {{0,255}}"
    );
    let m = read_mask(&path)?;
    assert_eq!(m.dimensions(), (854, 480));
    let ones = m.pixels().filter(|p| p.0[0] == 1).count();
    let whites = raw.pixels().filter(|p| p.0[0] == 255).count();
    assert_eq!(ones, whites);
    assert!(ones > 0 && ones < 854 * 480);
    assert!(m.pixels().all(|p| p.0[0] <= 1));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// BADJA

#[test]
fn badja_tiny_json_is_joined_and_rescaled() -> Result<()> {
    let t = Tmp::new("badja");
    for f in 0..4u8 {
        save_rgb(
            &t.path(&format!("davis/JPEGImages/480p/toy/{f:05}.jpg")),
            96,
            54,
            f,
        )?;
    }
    // entries out of order, visibility as booleans and as 0/1
    let json = r#"[
      {"segmentation_path": "DAVIS/Annotations/Full-Resolution/toy/00003.png",
       "image_path": "DAVIS/JPEGImages/Full-Resolution/toy/00003.jpg",
       "joints": [[540, 960], [0, 0]], "visibility": [1, 0]},
      {"segmentation_path": "DAVIS/Annotations/Full-Resolution/toy/00001.png",
       "image_path": "DAVIS/JPEGImages/Full-Resolution/toy/00001.jpg",
       "joints": [[108.0, 1920], [1080, 192]], "visibility": [true, true]}
    ]"#;
    write(&t.path("toy.json"), json.as_bytes())?;
    let b = Badja::load(t.path("toy.json"), t.path("davis"))?;
    assert_eq!(
        (b.sequence.as_str(), b.size, b.sequence_len),
        ("toy", (96, 54), 4)
    );
    assert_eq!(b.joint_count(), 2);
    assert_eq!(b.frames.iter().map(|f| f.frame).collect::<Vec<_>>(), [1, 3]);
    // x = col·96/1920 = col/20, y = row·54/1080 = row/20
    assert_eq!(b.frames[0].joints, vec![[96.0, 5.4], [9.6, 54.0]]);
    assert_eq!(b.frames[1].joints, vec![[48.0, 27.0], [0.0, 0.0]]);
    assert_eq!(b.frames[1].visible, [true, false]);
    assert!(b.frames[1].image_path.ends_with("toy/00003.jpg"));

    let missing = json.replace("00003", "00009");
    write(&t.path("missing.json"), missing.as_bytes())?;
    let err = Badja::load(t.path("missing.json"), t.path("davis"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("00009") && err.contains("missing"), "{err}");
    write(&t.path("bad.json"), br#"[{"image_path": "x"}]"#)?;
    assert!(Badja::load(t.path("bad.json"), t.path("davis")).is_err());
    Ok(())
}

#[test]
fn real_badja_joins_davis_2016() -> Result<()> {
    let root = Path::new(SHARED);
    if !root.join("badja").is_dir() || !root.join("davis2016-val").is_dir() {
        println!(
            "skipped: {}/badja or davis2016-val not found",
            root.display()
        );
        return Ok(());
    }
    // counts read from the JSON files with Python's json module
    for (seq, frames, visible, davis_len) in [
        ("camel", 18, 331, 90),
        ("cows", 21, 393, 104),
        ("dog", 12, 191, 60),
        ("horsejump-high", 10, 178, 50),
    ] {
        let b = Badja::load(
            root.join(format!("badja/{seq}.json")),
            root.join("davis2016-val"),
        )?;
        assert_eq!(b.sequence, seq);
        assert_eq!(
            (b.frames.len(), b.joint_count(), b.sequence_len),
            (frames, 37, davis_len)
        );
        assert_eq!(b.size, (854, 480));
        let vis: usize = b
            .frames
            .iter()
            .map(|f| f.visible.iter().filter(|v| **v).count())
            .sum();
        assert_eq!(vis, visible, "{seq}");
        for f in &b.frames {
            assert!(f.image_path.is_file(), "{}", f.image_path.display());
            for (j, v) in f.joints.iter().zip(&f.visible) {
                if *v {
                    assert!((0.0..=854.0).contains(&j[0]) && (0.0..=480.0).contains(&j[1]));
                }
            }
        }
        if seq == "camel" {
            // first entry: 00002.jpg, joint 8 = (row 612, col 1256)
            assert_eq!(b.frames[0].frame, 2);
            let j = b.frames[0].joints[8];
            assert!((j[0] - 1256.0 * 854.0 / 1920.0).abs() < 1e-3);
            assert!((j[1] - 612.0 * 480.0 / 1080.0).abs() < 1e-3);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// JHMDB and the MATLAB reader

#[test]
fn mat_reader_reads_numeric_variables_written_by_scipy() -> Result<()> {
    let fx = Path::new(FIXTURES);
    let arrays = read_mat_arrays(fx.join("pos_img.mat"))?;
    let names: Vec<&str> = arrays.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        ["pos_img", "small", "scale"],
        "the cell array is skipped"
    );
    let pos = &arrays[0];
    assert_eq!(pos.dims, [2, 15, 3]);
    for c in 0..2 {
        for j in 0..15 {
            for t in 0..3 {
                let want = (1000 * c + 10 * j + t) as f64 + 0.25;
                assert_eq!(pos.get(&[c, j, t]), Some(want), "({c}, {j}, {t})");
            }
        }
    }
    assert_eq!(pos.get(&[2, 0, 0]), None);
    assert_eq!(
        (arrays[1].dims.as_slice(), arrays[1].data.as_slice()),
        (&[1, 3][..], &[1.0, -2.0, 3.0][..])
    );
    assert_eq!(
        (arrays[2].dims.as_slice(), arrays[2].data.as_slice()),
        (&[1, 1][..], &[0.5][..])
    );

    // The same variables saved compressed (MATLAB's -v7 default) read identically.
    let zipped = read_mat_arrays(fx.join("pos_img_z.mat"))?;
    assert_eq!(zipped.len(), arrays.len());
    for (z, a) in zipped.iter().zip(&arrays) {
        assert_eq!((&z.name, &z.dims, &z.data), (&a.name, &a.dims, &a.data));
    }
    // A compressed element whose zlib stream is damaged is an error naming the file.
    let mut damaged = std::fs::read(fx.join("pos_img_z.mat")).map_err(io(fx))?;
    let mid = 128 + 8 + (damaged.len() - 136) / 2;
    for b in &mut damaged[mid..mid + 16] {
        *b ^= 0xA5;
    }
    let t0 = Tmp::new("matz");
    write(&t0.path("damaged_z.mat"), &damaged)?;
    let err = read_mat_arrays(t0.path("damaged_z.mat"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("damaged_z.mat"), "{err}");
    assert!(read_mat_array(fx.join("pos_img.mat"), "nope").is_err());

    let t = Tmp::new("mat");
    let bytes = std::fs::read(fx.join("pos_img.mat")).map_err(io(fx))?;
    write(&t.path("cut.mat"), &bytes[..bytes.len() - 100])?;
    let err = read_mat_arrays(t.path("cut.mat"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("cut.mat") && err.contains("truncated"),
        "{err}"
    );
    write(&t.path("junk.mat"), &[7u8; 300])?;
    assert!(read_mat_arrays(t.path("junk.mat")).is_err());
    Ok(())
}

#[test]
fn jhmdb_layout_with_joints() -> Result<()> {
    let t = Tmp::new("jhmdb");
    let fx = Path::new(FIXTURES);
    for (class, video) in [("wave", "w1"), ("brush_hair", "b2"), ("brush_hair", "b1")] {
        for f in 1..=3u8 {
            save_rgb(
                &t.path(&format!("Rename_Images/{class}/{video}/{f:05}.png")),
                8,
                8,
                f,
            )?;
        }
    }
    let mat = t.path("joint_positions/brush_hair/b1/joint_positions.mat");
    mkdir(mat.parent().unwrap_or(&t.0))?;
    std::fs::copy(fx.join("pos_img.mat"), &mat).map_err(io(&mat))?;
    let j = Jhmdb::open(&t.0, None)?;
    let ids: Vec<String> = j
        .videos
        .iter()
        .map(|v| format!("{}/{}", v.class, v.name))
        .collect();
    assert_eq!(ids, ["brush_hair/b1", "brush_hair/b2", "wave/w1"]);
    assert_eq!(j.videos[0].frames.len(), 3);
    let joints = j.videos[0].joints()?;
    assert_eq!((joints.len(), joints[0].len()), (3, 15));
    assert_eq!(
        joints[2][7],
        [10.0 * 7.0 + 2.0 + 0.25, 1000.0 + 70.0 + 2.0 + 0.25]
    );
    let err = j.videos[1]
        .joints()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("b2"), "a missing .mat is named: {err}");
    let only = Jhmdb::open(&t.0, Some(&["wave/w1".to_string()]))?;
    assert_eq!(only.videos.len(), 1);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// VIP

#[test]
fn vip_layout_with_sparse_part_labels() -> Result<()> {
    let t = Tmp::new("vip");
    for v in ["videos2", "videos1"] {
        for f in ["000000000001", "000000000026", "000000000051"] {
            save_rgb(&t.path(&format!("Images/{v}/{f}.jpg")), 10, 6, 3)?;
        }
    }
    // labels on the 1st and 3rd frames only, ids 0..=19
    for f in ["000000000001", "000000000051"] {
        let m = GrayImage::from_fn(10, 6, |x, y| Luma([((x + 10 * y) % 20) as u8]));
        save_gray(&t.path(&format!("Category_ids/videos1/{f}.png")), &m)?;
    }
    let vip = Vip::open(&t.0, None)?;
    let names: Vec<&str> = vip.videos.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["videos1", "videos2"]);
    let v1 = &vip.videos[0];
    assert_eq!(v1.frames.len(), 3);
    assert_eq!(
        v1.labels.iter().map(Option::is_some).collect::<Vec<_>>(),
        [true, false, true]
    );
    assert!(vip.videos[1].labels.iter().all(Option::is_none));
    let labels = read_part_labels(v1.labels[2].clone().unwrap_or_default())?;
    for (x, y, p) in labels.enumerate_pixels() {
        assert_eq!(u32::from(p.0[0]), (x + 10 * y) % 20);
    }
    assert!(Vip::open(&t.0, Some(&["videos9".to_string()])).is_err());
    Ok(())
}
