//! Decoding: JPEG/PNG frame folders, video files made by the `ffmpeg` CLI (h264 mp4, mpeg4 avi,
//! vp9 mkv/webm), truncated, empty, garbage and mislabelled files, and `open_source`.
//!
//! Every clip is made at test time into a temp dir from frames that carry their index: the left
//! half of frame `i` is grey level `LEVELS[i / 8]`, the right half `LEVELS[i % 8]`, so a decoded
//! frame says which frame it is, even after lossy coding and resizing.
//! Video tests print that they skip when the `ffmpeg` CLI is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use image::{Rgb, RgbImage};
use vssl_data::Error;
use vssl_data::frame::Frame;
use vssl_data::source::FrameSource;
use vssl_data::source::folder::{FolderSource, open_source};

const LEVELS: [u8; 8] = [16, 46, 76, 106, 136, 166, 196, 226];
const W: u32 = 64;
const H: u32 = 48;
const N: usize = 60;

/// Frame `i` of the test clips.
fn pattern(i: usize) -> RgbImage {
    let (a, b) = (LEVELS[i / 8], LEVELS[i % 8]);
    RgbImage::from_fn(W, H, |x, _| {
        let v = if x < W / 2 { a } else { b };
        Rgb([v, v, v])
    })
}

/// The index a decoded frame (any size) carries, or `None` if it is not a clean pattern frame.
fn index_of(f: &Frame) -> Option<usize> {
    let (w, h) = f.dimensions();
    let level = |x: u32| -> Option<usize> {
        let p = f.get_pixel(x, h / 2).0;
        let mean = (f32::from(p[0]) + f32::from(p[1]) + f32::from(p[2])) / 3.0;
        LEVELS
            .iter()
            .position(|&l| (f32::from(l) - mean).abs() <= 10.0)
    };
    Some(level(w / 4)? * 8 + level(3 * w / 4)?)
}

fn check_frames(got: &[Frame], asked: &[usize], size: (u32, u32), what: &str) {
    assert_eq!(got.len(), asked.len(), "{what}");
    for (f, &i) in got.iter().zip(asked) {
        assert_eq!(f.dimensions(), size, "{what}: frame {i}");
        assert_eq!(index_of(f), Some(i), "{what}: asked frame {i}");
    }
}

/// A temp dir removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("vssl-decode-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn have_ffmpeg() -> bool {
    let ok = Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: the ffmpeg CLI is not installed");
    }
    ok
}

fn have_encoder(name: &str) -> bool {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-encoders"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(name))
}

/// Writes the `N` pattern frames as PNGs `f000.png`... into `dir/png`.
fn write_pngs(dir: &Path) -> PathBuf {
    let d = dir.join("png");
    std::fs::create_dir_all(&d).expect("png dir");
    for i in 0..N {
        pattern(i)
            .save(d.join(format!("f{i:03}.png")))
            .expect("png");
    }
    d
}

/// Encodes the PNG frames with ffmpeg at 25 fps: `codec_args` pick the codec, `out` the container.
fn encode(pngs: &Path, out: &Path, codec_args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-y", "-v", "error", "-framerate", "25", "-i"])
        .arg(pngs.join("f%03d.png"))
        .args(codec_args)
        .arg(out)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg failed for {}", out.display());
}

const H264: &[&str] = &[
    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "8", "-g", "10",
];

fn expect_file_error(r: vssl_data::Result<impl Sized>, path: &Path, what: &str) -> String {
    match r {
        Ok(_) => panic!("{what}: expected an error for {}", path.display()),
        Err(e) => {
            assert!(
                matches!(e, Error::File { .. }),
                "{what}: not a file error: {e}"
            );
            let msg = e.to_string();
            assert!(
                msg.contains(&path.display().to_string()),
                "{what}: error does not name the file: {msg}"
            );
            msg
        }
    }
}

#[cfg(feature = "video")]
mod video {
    use super::*;
    use vssl_data::source::video::VideoSource;

    #[test]
    fn h264_mp4_exact_count_and_the_asked_frames_sparse_unsorted_repeated() {
        if !have_ffmpeg() {
            return;
        }
        let tmp = TempDir::new("h264");
        let pngs = write_pngs(tmp.path());
        let mp4 = tmp.path().join("clip.mp4");
        encode(&pngs, &mp4, H264);
        let mut v = VideoSource::open(&mp4).expect("open");
        assert_eq!(v.len(), N);
        assert_eq!(v.size(), (W, H));
        assert!((v.fps() - 25.0).abs() < 1e-6, "fps {}", v.fps());
        assert_eq!(v.keyframes().first(), Some(&0));
        assert!(v.keyframes().len() >= N / 10, "{:?}", v.keyframes());

        let asked = [50, 3, 3, 59, 0, 27, 50];
        let got = v.frames(&asked, None).expect("frames");
        check_frames(&got, &asked, (W, H), "sparse");
        // Backwards across calls, then the whole clip in order.
        check_frames(&v.frames(&[5], None).expect("back"), &[5], (W, H), "back");
        let all: Vec<usize> = (0..N).collect();
        check_frames(&v.frames(&all, None).expect("all"), &all, (W, H), "all");
        let err = v.frames(&[N], None).expect_err("out of range").to_string();
        assert!(
            err.contains("clip.mp4") && err.contains(&format!("frame {N}")),
            "{err}"
        );
    }

    #[test]
    fn sparse_indices_seek_instead_of_decoding_everything() {
        if !have_ffmpeg() {
            return;
        }
        let tmp = TempDir::new("seek");
        let pngs = write_pngs(tmp.path());
        let mp4 = tmp.path().join("clip.mp4");
        encode(&pngs, &mp4, H264);
        let mut v = VideoSource::open(&mp4).expect("open");
        check_frames(&v.frames(&[55], None).expect("55"), &[55], (W, H), "seek");
        // Keyframes every <= 10 frames: from the one before 55 to 55 is at most 10 frames
        // (plus what frame threading decodes ahead), far below the 56 of a linear decode.
        let k = v.keyframes().iter().rev().find(|&&k| k <= 55).copied();
        assert!(k.is_some_and(|k| k >= 45), "{:?}", v.keyframes());
        eprintln!(
            "frame 55: {} frames decoded, {} seeks, keyframes {:?}",
            v.frames_decoded(),
            v.seeks(),
            v.keyframes()
        );
        assert!(v.seeks() >= 1);
        assert!(v.frames_decoded() <= 30, "decoded {}", v.frames_decoded());

        // Dense increasing requests do not seek.
        let mut d = VideoSource::open(&mp4).expect("open");
        check_frames(
            &d.frames(&[0, 1, 2], None).expect("a"),
            &[0, 1, 2],
            (W, H),
            "a",
        );
        check_frames(&d.frames(&[4, 6], None).expect("b"), &[4, 6], (W, H), "b");
        assert_eq!(d.seeks(), 0);
    }

    #[test]
    fn resize_during_decode() {
        if !have_ffmpeg() {
            return;
        }
        let tmp = TempDir::new("resize");
        let pngs = write_pngs(tmp.path());
        let mp4 = tmp.path().join("clip.mp4");
        encode(&pngs, &mp4, H264);
        let mut v = VideoSource::open_with_threads(&mp4, 1).expect("open");
        for size in [(32, 24), (100, 30), (64, 48)] {
            let got = v.frames(&[9, 41], Some(size)).expect("resize");
            check_frames(&got, &[9, 41], size, "resize");
        }
        assert!(v.frames(&[1], Some((0, 10))).is_err());
    }

    #[test]
    fn other_containers_and_codecs_exact_counts() {
        if !have_ffmpeg() {
            return;
        }
        let tmp = TempDir::new("containers");
        let pngs = write_pngs(tmp.path());
        let mut cases: Vec<(&str, Vec<&str>)> = vec![(
            "clip.avi",
            vec![
                "-c:v", "mpeg4", "-q:v", "2", "-g", "12", "-pix_fmt", "yuv420p",
            ],
        )];
        if have_encoder("libx264") {
            cases.push(("clip.mkv", H264.to_vec()));
            cases.push(("clip.mov", H264.to_vec()));
        }
        if have_encoder("libvpx-vp9") {
            let vp9 = vec!["-c:v", "libvpx-vp9", "-crf", "10", "-b:v", "0", "-g", "15"];
            cases.push(("vp9.webm", vp9.clone()));
            cases.push(("vp9.mkv", vp9));
        } else {
            eprintln!("SKIP (part): no libvpx-vp9 encoder, webm not tested");
        }
        for (name, args) in &cases {
            let path = tmp.path().join(name);
            encode(&pngs, &path, args);
            let mut v = open_source(&path).expect(name);
            assert_eq!(v.len(), N, "{name}");
            assert_eq!(v.size(), (W, H), "{name}");
            let asked = [44, 2, 58, 2, 17];
            check_frames(&v.frames(&asked, None).expect(name), &asked, (W, H), name);
            let got = v.frames(&[59, 0], Some((32, 32))).expect(name);
            check_frames(&got, &[59, 0], (32, 32), name);
        }
    }

    #[test]
    fn truncated_files_decode_what_they_have_or_fail_cleanly() {
        if !have_ffmpeg() {
            return;
        }
        let tmp = TempDir::new("truncated");
        let pngs = write_pngs(tmp.path());

        // Matroska: no frame count in the header, the demux pass counts what is there.
        let mkv = tmp.path().join("full.mkv");
        encode(&pngs, &mkv, &["-c:v", "mpeg4", "-q:v", "2", "-g", "12"]);
        let bytes = std::fs::read(&mkv).expect("read");
        let cut = tmp.path().join("cut.mkv");
        std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).expect("write");
        let mut v = VideoSource::open(&cut).expect("a truncated mkv still opens");
        eprintln!("truncated mkv: {} of {N} frames", v.len());
        assert!(v.len() > 5 && v.len() < N, "len {}", v.len());
        let last = v.len() - 2;
        check_frames(
            &v.frames(&[0, last], None).expect("frames"),
            &[0, last],
            (W, H),
            "cut",
        );

        // mp4 with the index in front (faststart): the header says 60 frames, the file has fewer.
        let mp4 = tmp.path().join("fast.mp4");
        let mut args = H264.to_vec();
        args.extend(["-movflags", "+faststart"]);
        encode(&pngs, &mp4, &args);
        let bytes = std::fs::read(&mp4).expect("read");
        let cut = tmp.path().join("cut-fast.mp4");
        std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).expect("write");
        match VideoSource::open(&cut) {
            Ok(mut v) => {
                eprintln!("truncated faststart mp4: {} of {N} frames", v.len());
                assert!(v.len() < N, "len {}", v.len());
                check_frames(
                    &v.frames(&[0], None).expect("frame 0"),
                    &[0],
                    (W, H),
                    "fast",
                );
                // Asking every frame either works or is a file error naming it; never a panic.
                let all: Vec<usize> = (0..v.len()).collect();
                if let Err(e) = v.frames(&all, None) {
                    assert!(e.to_string().contains("cut-fast.mp4"), "{e}");
                }
            }
            Err(e) => assert!(e.to_string().contains("cut-fast.mp4"), "{e}"),
        }

        // mp4 with the index at the end: cut, it has no index at all.
        let plain = tmp.path().join("plain.mp4");
        encode(&pngs, &plain, H264);
        let bytes = std::fs::read(&plain).expect("read");
        let cut = tmp.path().join("cut-plain.mp4");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
        expect_file_error(VideoSource::open(&cut), &cut, "mp4 without its moov");
    }

    #[test]
    fn empty_garbage_and_text_files_are_file_errors() {
        let tmp = TempDir::new("bad");
        let empty = tmp.path().join("empty.mp4");
        std::fs::write(&empty, b"").expect("write");
        let msg = expect_file_error(VideoSource::open(&empty), &empty, "empty");
        assert!(msg.contains("empty"), "{msg}");

        // Deterministic garbage (xorshift).
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        let garbage: Vec<u8> = (0..200_000)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect();
        for name in ["garbage.mp4", "garbage.mkv", "garbage.avi", "garbage.webm"] {
            let p = tmp.path().join(name);
            std::fs::write(&p, &garbage).expect("write");
            expect_file_error(VideoSource::open(&p), &p, name);
            expect_file_error(open_source(&p), &p, name);
        }
        let text = tmp.path().join("notes.mp4");
        std::fs::write(&text, "this is not a video\n".repeat(200)).expect("write");
        expect_file_error(VideoSource::open(&text), &text, "text");
        let missing = tmp.path().join("missing.mp4");
        expect_file_error(VideoSource::open(&missing), &missing, "missing");
    }
}

#[test]
fn folder_of_png_and_jpeg_in_natural_order() {
    let tmp = TempDir::new("folder");
    let dir = tmp.path().join("frames");
    std::fs::create_dir_all(&dir).expect("dir");
    // 1.png .. 20.png (natural order differs from byte order), some as JPEG with odd cases.
    for i in 0..20 {
        let name = match i % 3 {
            0 => format!("{}.png", i + 1),
            1 => format!("{}.JPG", i + 1),
            _ => format!("{}.jpeg", i + 1),
        };
        pattern(i)
            .save_with_format(
                dir.join(&name),
                if name.ends_with(".png") {
                    image::ImageFormat::Png
                } else {
                    image::ImageFormat::Jpeg
                },
            )
            .expect("save");
    }
    std::fs::write(dir.join("notes.txt"), "not a frame").expect("txt");
    std::fs::create_dir_all(dir.join("sub.png")).expect("a folder named like an image");

    let mut s = FolderSource::open(&dir).expect("open");
    assert_eq!(s.len(), 20);
    assert_eq!(s.size(), (W, H));
    assert!(s.files()[1].ends_with("2.JPG") && s.files()[9].ends_with("10.png"));
    let asked = [19, 0, 9, 9, 10, 1];
    check_frames(
        &s.frames(&asked, None).expect("frames"),
        &asked,
        (W, H),
        "folder",
    );
    check_frames(
        &s.frames(&asked, Some((32, 24))).expect("resized"),
        &asked,
        (32, 24),
        "folder resized",
    );
    let err = s.frames(&[20], None).expect_err("out of range").to_string();
    assert!(err.contains("frame 20"), "{err}");

    let mut b = open_source(&dir).expect("open_source on a folder");
    assert_eq!(b.len(), 20);
    check_frames(&b.frames(&[4], None).expect("frame"), &[4], (W, H), "boxed");
}

#[test]
fn folder_errors_name_the_folder_or_the_frame() {
    let tmp = TempDir::new("folder-bad");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    std::fs::write(empty.join("readme.txt"), "x").expect("txt");
    expect_file_error(FolderSource::open(&empty), &empty, "no image");

    let dir = tmp.path().join("frames");
    std::fs::create_dir_all(&dir).expect("dir");
    for i in 0..3 {
        pattern(i)
            .save(dir.join(format!("{i:05}.png")))
            .expect("png");
    }
    let bad = dir.join("00003.jpg");
    std::fs::write(&bad, b"\xFF\xD8\xFF garbage, not a jpeg").expect("bad");
    let mut s = FolderSource::open(&dir).expect("open");
    assert_eq!(s.len(), 4);
    check_frames(
        &s.frames(&[2, 0], None).expect("good frames"),
        &[2, 0],
        (W, H),
        "good",
    );
    expect_file_error(s.frames(&[1, 3], None), &bad, "corrupt frame");

    let text = tmp.path().join("notes.txt");
    std::fs::write(&text, "x").expect("txt");
    expect_file_error(open_source(&text), &text, "unknown type");
    let missing = tmp.path().join("nothing-here");
    expect_file_error(open_source(&missing), &missing, "missing");
}

/// DAVIS-2016 val frames, when the shared data is there (never the only test of the folder path).
#[test]
fn davis_folder_when_present() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"));
    let dir = root.join("davis2016-val/JPEGImages/480p/blackswan");
    if !dir.is_dir() {
        eprintln!("SKIP: {} is absent", dir.display());
        return;
    }
    let mut s = FolderSource::open(&dir).expect("open");
    assert_eq!(s.len(), 50);
    assert_eq!(s.size(), (854, 480));
    let f = s.frames(&[49, 0], Some((256, 256))).expect("frames");
    assert!(f.iter().all(|f| f.dimensions() == (256, 256)));
    assert_ne!(f[0], f[1]);
}

/// `resize_bilinear_rgb` against `cv2.resize(..., INTER_LINEAR)` (fixtures made by
/// `tests/fixtures/decode/make_golden.py`), within 1 grey level.
#[test]
fn bilinear_resize_matches_opencv_inter_linear() {
    use vssl_data::source::folder::resize_bilinear_rgb;
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/decode"
    ));
    let input = image::open(dir.join("input.png"))
        .expect("input")
        .into_rgb8();
    assert_eq!(input.dimensions(), (37, 29));
    for (w, h) in [(16, 12), (20, 29), (37, 10), (50, 40), (64, 64)] {
        let want = image::open(dir.join(format!("cv2_linear_{w}x{h}.png")))
            .expect("golden")
            .into_rgb8();
        let got = resize_bilinear_rgb(&input, w, h);
        assert_eq!(got.dimensions(), want.dimensions());
        let max = got
            .as_raw()
            .iter()
            .zip(want.as_raw())
            .map(|(&a, &b)| a.abs_diff(b))
            .max()
            .unwrap_or(0);
        assert!(max <= 1, "{w}x{h}: max difference {max}");
    }
}
