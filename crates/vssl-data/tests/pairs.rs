//! Training pairs from a folder of videos: bad input (a frame that fails to decode only when a
//! sample reaches it, a video too short, a non-video file) is skipped, counted and logged, and
//! the run goes on with the same samples for the same seed.

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use vssl_data::augment::{MainPipeline, WarmupPipeline};
use vssl_data::dataset::VideoList;
use vssl_data::pairs::{PairDataset, PairPhase};
use vssl_data::rng::sample_rng;
use vssl_data::{Error, FrameSource, Result, open_source};

struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vssl-pairs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Tmp(dir)
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

/// A folder of `n` PNG frames, 70x50, frame t a gradient offset by t.
fn frames(dir: &Path, n: usize) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for t in 0..n {
        let img = RgbImage::from_fn(70, 50, |x, y| {
            Rgb([(x * 3 + t as u32) as u8, (y * 5) as u8, (x + y) as u8])
        });
        let p = dir.join(format!("{t:05}.png"));
        img.save(&p).map_err(|e| Error::file(&p, e.to_string()))?;
    }
    Ok(())
}

/// good/ (60 frames), broken/ (30 PNGs cut after their header: opening the folder reads a
/// valid header, only decoding a sampled frame fails), short/ (1 frame), notes.mp4 (text).
fn tree(root: &Path) -> Result<()> {
    frames(&root.join("good"), 60)?;
    let broken = root.join("broken");
    frames(&broken, 30)?;
    for t in 0..30 {
        let p = broken.join(format!("{t:05}.png"));
        let bytes = std::fs::read(&p).map_err(io(&p))?;
        std::fs::write(&p, &bytes[..64.min(bytes.len())]).map_err(io(&p))?;
    }
    frames(&root.join("short"), 1)?;
    let txt = root.join("notes.mp4");
    std::fs::write(&txt, "not a video").map_err(io(&txt))?;
    Ok(())
}

type Opener = fn(&Path) -> Result<Box<dyn FrameSource>>;

fn open(path: &Path) -> Result<Box<dyn FrameSource>> {
    open_source(path)
}

fn dataset(root: &Path, phase: PairPhase) -> Result<PairDataset<Opener>> {
    let videos = VideoList::from_dir(root)?.with_opener(open as Opener, 2);
    Ok(PairDataset::new(videos, phase))
}

#[test]
fn bad_videos_are_skipped_and_the_run_goes_on() -> Result<()> {
    let t = Tmp::new("skip");
    tree(&t.0)?;
    let warmup = PairPhase::Warmup(WarmupPipeline {
        rotate: 10,
        scale: 1.2,
        crop: 48,
    });
    let ds = dataset(&t.0, warmup.clone())?;
    assert_eq!(ds.len(), 4, "broken, good, notes.mp4, short");
    for epoch in 0..3u64 {
        for index in 0..ds.len() {
            let s = ds.sample(index, &mut sample_rng(5, epoch, index as u64))?;
            assert_eq!(s.reference.dims(), [3, 48, 48]);
            assert_eq!(s.target.dims(), [3, 48, 48]);
            // every pair comes from the one good video (entry 1 in sorted order)
            assert_eq!(s.entry, 1, "epoch {epoch} index {index}");
            assert!(s.frames.0 < 60 && s.frames.1 < 60);
            let v = s.reference.flatten_all()?.to_vec1::<f32>()?;
            assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)));
        }
    }
    let skipped = ds.skips().snapshot();
    let reasons: Vec<String> = skipped
        .iter()
        .map(|(p, r, _)| format!("{} | {r}", p.display()))
        .collect();
    assert_eq!(skipped.len(), 3, "{reasons:#?}");
    let find = |name: &str| {
        reasons
            .iter()
            .find(|r| r.contains(name))
            .cloned()
            .unwrap_or_default()
    };
    // the corrupt frame is named, not just its folder
    assert!(find("broken").contains(".png"), "{reasons:#?}");
    assert!(find("short").contains("too short"), "{reasons:#?}");
    assert!(!find("notes.mp4").is_empty(), "{reasons:#?}");
    // each bad input is recorded once however many samples ran into it
    assert!(skipped.iter().all(|(_, _, n)| *n == 1), "{skipped:?}");

    // The same seed gives the same samples in a fresh dataset, where the bad videos are only
    // found by these samples (as with another worker order).
    let again = dataset(&t.0, warmup)?;
    for index in 0..4 {
        let a = ds.sample(index, &mut sample_rng(9, 0, index as u64))?;
        let b = again.sample(index, &mut sample_rng(9, 0, index as u64))?;
        assert_eq!(a.frames, b.frames);
        let diff = (a.reference - b.reference)?
            .abs()?
            .sum_all()?
            .to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);
    }
    Ok(())
}

#[test]
fn main_phase_pairs_have_the_patch_and_the_whole_target() -> Result<()> {
    let t = Tmp::new("main");
    frames(&t.0.join("good"), 60)?;
    let ds = dataset(
        &t.0,
        PairPhase::Main(MainPipeline {
            rotate: 10,
            full_size: 96,
            crop: 32,
        }),
    )?;
    let s = ds.sample(0, &mut sample_rng(1, 0, 0))?;
    assert_eq!(s.reference.dims(), [3, 32, 32]);
    assert_eq!(s.target.dims(), [3, 96, 96]);
    let crop = s
        .crop
        .ok_or_else(|| Error::op("test", "main phase returns its crop"))?;
    assert!(crop.angle.abs() <= 10 && crop.x + 32 <= 96 && crop.y + 32 <= 96);
    Ok(())
}

#[test]
fn no_usable_video_is_an_error_naming_the_root() -> Result<()> {
    let t = Tmp::new("none");
    frames(&t.0.join("short"), 1)?;
    let ds = dataset(&t.0, PairPhase::Warmup(WarmupPipeline::default()))?;
    let err = ds
        .sample(0, &mut sample_rng(1, 0, 0))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("no usable video") && err.contains(&t.0.display().to_string()),
        "{err}"
    );
    Ok(())
}
