//! Tests of the synthetic benchmark generator (`vssl_data::synth`).

use std::collections::HashSet;
use std::path::PathBuf;

use vssl_data::Result;
use vssl_data::source::FrameSource;
use vssl_data::synth::{
    DiscPath, DiscScene, Preset, Split, SynthClip, SynthConfig, SynthMeta, TextureFamily,
    davis_palette, generate_clip, write_dataset,
};

/// A small medium-preset config that renders fast.
fn small(preset: Preset, size: u32, frames: usize) -> SynthConfig {
    SynthConfig {
        width: size,
        height: size,
        frames,
        ..preset.config()
    }
}

fn same_clip(a: &SynthClip, b: &SynthClip) -> bool {
    a.frames == b.frames && a.masks == b.masks && a.tracks == b.tracks && a.meta == b.meta
}

/// A fresh temporary folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let p =
            std::env::temp_dir().join(format!("vssl-synth-{tag}-{}-{nanos}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("cannot create the temp folder");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn same_seed_same_bytes_other_seed_or_index_differs() -> Result<()> {
    let cfg = small(Preset::Medium, 96, 8);
    let a = generate_clip(&cfg, Split::Train, 11, 3)?;
    let b = generate_clip(&cfg, Split::Train, 11, 3)?;
    assert!(same_clip(&a, &b), "same (seed, index) gave different clips");
    let c = generate_clip(&cfg, Split::Train, 12, 3)?;
    let d = generate_clip(&cfg, Split::Train, 11, 4)?;
    assert_ne!(a.frames, c.frames, "seed ignored");
    assert_ne!(a.frames, d.frames, "index ignored");
    assert_eq!(
        a.meta.generator_version,
        vssl_data::synth::GENERATOR_VERSION
    );
    assert_eq!((a.meta.seed, a.meta.index), (11, 3));
    Ok(())
}

#[test]
fn bit_identical_whatever_the_thread_count() -> Result<()> {
    let cfg = small(Preset::Hard, 80, 6);
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| generate_clip(&cfg, Split::Eval, 5, 1))
    };
    let one = run(1)?;
    let three = run(3)?;
    assert!(same_clip(&one, &three), "1 vs 3 threads differ");
    Ok(())
}

/// Mask area, track of the centre and mask centroid of the analytic disc, for one scene.
fn check_disc(scene: &DiscScene) -> Result<()> {
    let clip = scene.render()?;
    assert_eq!(clip.frames.len(), scene.frames);
    let centre_track = &clip.tracks[0].points[0];
    for t in 0..scene.frames {
        let r = scene.radius * scene.scale(t);
        let want_area = std::f64::consts::PI * (r as f64).powi(2);
        let (mut n, mut sx, mut sy) = (0usize, 0f64, 0f64);
        for (x, y, p) in clip.masks[t].enumerate_pixels() {
            assert!(p.0[0] <= 1, "unknown label {}", p.0[0]);
            if p.0[0] == 1 {
                n += 1;
                sx += x as f64;
                sy += y as f64;
            }
        }
        let rel = (n as f64 - want_area).abs() / want_area;
        assert!(
            rel < 0.01,
            "frame {t}: area {n} vs pi r^2 {want_area:.1} ({rel:.4})"
        );
        let c = scene.centre(t);
        let got = centre_track.xy[t];
        assert!(
            (got[0] as f64 - c[0]).abs() < 0.01 && (got[1] as f64 - c[1]).abs() < 0.01,
            "frame {t}: centre track {got:?} vs analytic {c:?}"
        );
        assert!(centre_track.visible[t]);
        // the mask follows the path: its centroid is the disc centre
        let (mx, my) = (sx / n as f64, sy / n as f64);
        assert!(
            (mx - c[0]).abs() < 0.1 && (my - c[1]).abs() < 0.1,
            "frame {t}: mask centroid ({mx:.3}, {my:.3}) vs centre {c:?}"
        );
    }
    // the background is the plain colour away from the disc
    assert_eq!(clip.frames[0].get_pixel(0, 0).0, scene.background);
    Ok(())
}

#[test]
fn analytic_disc_area_track_and_path() -> Result<()> {
    // straight line, spinning
    check_disc(&DiscScene::new(TextureFamily::Cells, 1))?;
    // circular path, larger disc, no spin
    let mut s = DiscScene::new(TextureFamily::Fbm, 2);
    s.width = 160;
    s.height = 120;
    s.radius = 23.7;
    s.rotation = 0.0;
    s.path = DiscPath::Circle {
        centre: [80.2, 59.9],
        radius: 25.0,
        omega: 0.21,
        phase: 0.3,
    };
    check_disc(&s)?;
    // growing disc on a line (the area follows the scale)
    let mut g = DiscScene::new(TextureFamily::Stripes, 3);
    g.growth = 0.01;
    check_disc(&g)
}

/// Bilinear sample of a frame at (x, y), pixel centres at integers.
fn bilinear(f: &image::RgbImage, x: f32, y: f32) -> [f32; 3] {
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (ax, ay) = (x - x0 as f32, y - y0 as f32);
    let p = |i, j| f.get_pixel(i, j).0.map(f32::from);
    let (a, b, c, d) = (p(x0, y0), p(x0 + 1, y0), p(x0, y0 + 1), p(x0 + 1, y0 + 1));
    std::array::from_fn(|k| {
        let top = a[k] + (b[k] - a[k]) * ax;
        let bot = c[k] + (d[k] - c[k]) * ax;
        top + (bot - top) * ay
    })
}

#[test]
fn texels_keep_their_colour_along_tracks_exactly_under_integer_motion() -> Result<()> {
    // a sharp texture, integer start and velocity: every track lands on the same texel phase,
    // so the colour under each track point is bit-identical in every frame
    let mut s = DiscScene::new(TextureFamily::Plaid, 9);
    s.rotation = 0.0;
    s.path = DiscPath::Line {
        start: [40.0, 44.0],
        velocity: [2.0, 1.0],
    };
    let clip = s.render()?;
    let mut compared = 0;
    for p in &clip.tracks[0].points {
        let at = |t: usize| {
            let [x, y] = p.xy[t];
            clip.frames[t]
                .get_pixel(x.round() as u32, y.round() as u32)
                .0
        };
        let first = at(0);
        for t in 1..s.frames {
            assert!(p.visible[t]);
            assert_eq!(at(t), first, "point {:?} frame {t}", p.canonical);
            compared += 1;
        }
    }
    assert!(compared >= 15 * (s.frames - 1));
    // and the texture is not flat: the points do not all share one colour
    let colours: HashSet<[u8; 3]> = clip.tracks[0]
        .points
        .iter()
        .map(|p| {
            clip.frames[0]
                .get_pixel(p.xy[0][0].round() as u32, p.xy[0][1].round() as u32)
                .0
        })
        .collect();
    assert!(colours.len() > 5, "{} colours", colours.len());
    Ok(())
}

#[test]
fn texels_keep_their_colour_along_tracks_under_rotation_and_scale() -> Result<()> {
    // a smooth texture (one octave, no detail), sub-pixel motion, spin and growth: the frame
    // sampled bilinearly at the track stays within bilinear-interpolation error of frame 0
    let mut s = DiscScene::new(TextureFamily::Fbm, 4);
    s.texture.octaves = 1;
    s.texture.detail = 0.0;
    s.texture.feature = 40.0;
    s.rotation = 0.08;
    s.growth = 0.01;
    s.points = 40;
    let clip = s.render()?;
    let (mut worst, mut n, mut over) = (0f32, 0usize, 0usize);
    for p in &clip.tracks[0].points {
        let c0 = bilinear(&clip.frames[0], p.xy[0][0], p.xy[0][1]);
        for t in 1..s.frames {
            let c = bilinear(&clip.frames[t], p.xy[t][0], p.xy[t][1]);
            for k in 0..3 {
                let d = (c[k] - c0[k]).abs();
                worst = worst.max(d);
                over += usize::from(d > 2.0);
                n += 1;
            }
        }
    }
    println!("rotating disc: worst colour change along tracks {worst:.2} levels, {over}/{n} > 2");
    assert!(
        worst <= 3.0 && over * 100 <= n,
        "worst {worst}, {over}/{n} over 2 levels"
    );
    // a wrong track (shifted by 1.5 px) does change colour: the test can fail
    let p = &clip.tracks[0].points[1];
    let moved: f32 = (1..s.frames)
        .map(|t| {
            let a = bilinear(&clip.frames[0], p.xy[0][0], p.xy[0][1]);
            let b = bilinear(&clip.frames[t], p.xy[t][0] + 1.5, p.xy[t][1]);
            (0..3).map(|k| (a[k] - b[k]).abs()).sum::<f32>()
        })
        .sum::<f32>()
        / (s.frames - 1) as f32;
    assert!(moved > 2.0, "texture too flat to test: {moved}");
    Ok(())
}

/// For every clip: visible track points lie on their object's mask; in-frame hidden points lie
/// under another object's mask. Returns (visible checked, hidden checked).
fn tracks_agree_with_masks(clip: &SynthClip) -> (usize, usize) {
    let (w, h) = clip.masks[0].dimensions();
    let (mut vis, mut vis_bad, mut hid, mut hid_bad) = (0, 0, 0, 0);
    for obj in &clip.tracks {
        for p in &obj.points {
            for t in 0..clip.frames.len() {
                let [x, y] = p.xy[t];
                let (xi, yi) = (x.round() as i64, y.round() as i64);
                if xi < 0 || yi < 0 || xi >= w as i64 || yi >= h as i64 {
                    assert!(!p.visible[t], "out-of-frame point marked visible");
                    continue;
                }
                let label = clip.masks[t].get_pixel(xi as u32, yi as u32).0[0];
                if p.visible[t] {
                    vis += 1;
                    vis_bad += usize::from(label != obj.id);
                } else {
                    hid += 1;
                    // under another object: the nearest pixel, or one of its 8 neighbours
                    // when the point sits on that object's outline
                    let mut under = false;
                    for dy in -1..=1 {
                        for dx in -1..=1 {
                            let (a, b) = (xi + dx, yi + dy);
                            if a >= 0 && b >= 0 && a < w as i64 && b < h as i64 {
                                let l = clip.masks[t].get_pixel(a as u32, b as u32).0[0];
                                under |= l != 0 && l != obj.id;
                            }
                        }
                    }
                    assert!(under, "hidden point of {} at ({x}, {y}) frame {t}", obj.id);
                    hid_bad += usize::from(label == obj.id || label == 0);
                }
            }
        }
    }
    assert!(
        vis_bad * 100 <= vis,
        "{vis_bad}/{vis} visible points off their mask"
    );
    assert!(
        hid_bad * 20 <= hid.max(1),
        "{hid_bad}/{hid} hidden points on own/background"
    );
    (vis, hid)
}

#[test]
fn generated_tracks_visibility_and_masks_agree() -> Result<()> {
    let (mut hidden, mut visible) = (0, 0);
    for (preset, seed) in [(Preset::Medium, 1), (Preset::Medium, 2), (Preset::Hard, 3)] {
        let mut cfg = small(preset, 128, 24);
        cfg.noise_sigma = 0.0;
        let clip = generate_clip(&cfg, Split::Train, seed, 0)?;
        let (v, h) = tracks_agree_with_masks(&clip);
        visible += v;
        hidden += h;
        // labels are 0..=number of objects, and every object is in the first mask
        let k = clip.objects() as u8;
        let first: HashSet<u8> = clip.masks[0].pixels().map(|p| p.0[0]).collect();
        assert!(first.iter().all(|&l| l <= k));
        for o in &clip.meta.scene.objects {
            if !o.occluder {
                assert!(first.contains(&o.id), "object {} missing at frame 0", o.id);
            }
        }
    }
    assert!(
        visible > 500 && hidden > 20,
        "visible {visible}, hidden {hidden}"
    );
    Ok(())
}

#[test]
fn occluder_hides_an_object_for_the_occlusion_length() -> Result<()> {
    let cfg = small(Preset::Medium, 128, 24);
    for seed in 0..3 {
        let clip = generate_clip(&cfg, Split::Eval, seed, 0)?;
        let bars: Vec<_> = clip
            .meta
            .scene
            .objects
            .iter()
            .filter(|o| o.occluder)
            .collect();
        assert_eq!(bars.len(), 1);
        // some object's centre is hidden for at least occlusion_len consecutive frames
        let longest = clip
            .tracks
            .iter()
            .filter(|o| o.id != bars[0].id)
            .map(|o| {
                let (mut run, mut best) = (0, 0);
                for &v in &o.points[0].visible {
                    run = if v { 0 } else { run + 1 };
                    best = usize::max(best, run);
                }
                best
            })
            .max()
            .unwrap_or(0);
        assert!(
            longest >= cfg.occlusion_len,
            "seed {seed}: longest {longest}"
        );
    }
    Ok(())
}

#[test]
fn lighting_and_noise_change_pixels_not_masks() -> Result<()> {
    let mut clean = small(Preset::Medium, 96, 6);
    clean.lighting = 0.0;
    clean.noise_sigma = 0.0;
    let noisy = SynthConfig {
        lighting: 0.4,
        noise_sigma: 0.05,
        ..clean.clone()
    };
    // lighting draws extra random numbers after the geometry, so geometry is unchanged
    let a = generate_clip(&clean, Split::Train, 8, 0)?;
    let b = generate_clip(&noisy, Split::Train, 8, 0)?;
    assert_eq!(a.masks, b.masks);
    let diff: f64 = a.frames[5]
        .as_raw()
        .iter()
        .zip(b.frames[5].as_raw())
        .map(|(p, q)| (*p as f64 - *q as f64).abs())
        .sum::<f64>()
        / a.frames[5].as_raw().len() as f64;
    assert!(diff > 3.0, "mean change {diff}");
    Ok(())
}

#[test]
fn splits_use_disjoint_families() -> Result<()> {
    let (tt, te) = (
        Split::Train.texture_families(),
        Split::Eval.texture_families(),
    );
    assert!(tt.iter().all(|f| !te.contains(f)));
    let (st, se) = (Split::Train.shape_families(), Split::Eval.shape_families());
    assert!(st.iter().all(|f| !se.contains(f)));
    assert!(tt.len() >= 2 && te.len() >= 2 && st.len() >= 2 && se.len() >= 2);
    // and generated clips only use their split's families
    let cfg = small(Preset::Hard, 64, 2);
    for split in [Split::Train, Split::Eval] {
        let (mut tex, mut shp) = (HashSet::new(), HashSet::new());
        for i in 0..6 {
            let clip = generate_clip(&cfg, split, 21, i)?;
            if let vssl_data::synth::BackgroundSpec::Texture { texture, .. } =
                &clip.meta.scene.background
            {
                tex.insert(texture.family);
            }
            for o in &clip.meta.scene.objects {
                tex.insert(o.texture.family);
                if let Some(f) = o.shape_family {
                    shp.insert(f);
                }
            }
        }
        assert!(
            tex.iter().all(|f| split.texture_families().contains(f)),
            "{split:?} {tex:?}"
        );
        assert!(
            shp.iter().all(|f| split.shape_families().contains(f)),
            "{split:?} {shp:?}"
        );
        assert_eq!(shp.len(), 2, "{split:?}: both shape families drawn");
    }
    Ok(())
}

#[test]
fn clip_streams_as_a_frame_source() -> Result<()> {
    let cfg = small(Preset::Easy, 64, 5);
    let clip = generate_clip(&cfg, Split::Train, 1, 0)?;
    let want = clip.frames.clone();
    let mut src = clip.into_source("synth-0")?;
    assert_eq!((src.len(), src.size()), (5, (64, 64)));
    let got = src.frames(&[4, 1], None)?;
    assert_eq!(got, vec![want[4].clone(), want[1].clone()]);
    Ok(())
}

fn read_indexed_png(p: &std::path::Path) -> (Vec<u8>, Vec<u8>, (u32, u32)) {
    let file = std::fs::File::open(p).expect("mask PNG missing");
    let mut dec = png::Decoder::new(std::io::BufReader::new(file));
    dec.set_transformations(png::Transformations::IDENTITY);
    let mut reader = dec.read_info().expect("not a PNG");
    let info = reader.info();
    assert_eq!(info.color_type, png::ColorType::Indexed);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let palette = info.palette.as_ref().expect("no palette chunk").to_vec();
    let size = (info.width, info.height);
    let mut buf = vec![0; reader.output_buffer_size().expect("PNG too large")];
    let frame = reader.next_frame(&mut buf).expect("cannot decode the PNG");
    buf.truncate(frame.buffer_size());
    (buf, palette, size)
}

#[test]
fn davis_tree_reads_back() -> Result<()> {
    let dir = TempDir::new("davis");
    let cfg = small(Preset::Medium, 72, 5);
    write_dataset(&cfg, Split::Eval, 3, 2, &dir.0)?;
    let list = std::fs::read_to_string(dir.0.join("ImageSets/2017/val.txt")).unwrap();
    let names: Vec<&str> = list.lines().collect();
    assert_eq!(names, ["synth-eval-00000", "synth-eval-00001"]);
    for (i, name) in names.iter().enumerate() {
        let clip = generate_clip(&cfg, Split::Eval, 3, i as u64)?;
        let jpg = dir.0.join("JPEGImages/480p").join(name);
        let ann = dir.0.join("Annotations/480p").join(name);
        assert_eq!(std::fs::read_dir(&jpg).unwrap().count(), 5);
        assert_eq!(std::fs::read_dir(&ann).unwrap().count(), 5);
        for t in 0..5 {
            let (idx, pal, size) = read_indexed_png(&ann.join(format!("{t:05}.png")));
            assert_eq!(size, (72, 72));
            assert_eq!(pal, davis_palette().to_vec());
            assert_eq!(idx, clip.masks[t].as_raw().clone(), "{name} frame {t}");
            let img = image::open(jpg.join(format!("{t:05}.jpg")))
                .unwrap()
                .to_rgb8();
            assert_eq!(img.dimensions(), (72, 72));
            let mad = img
                .as_raw()
                .iter()
                .zip(clip.frames[t].as_raw())
                .map(|(a, b)| (*a as f64 - *b as f64).abs())
                .sum::<f64>()
                / img.as_raw().len() as f64;
            assert!(mad < 12.0, "{name} frame {t}: JPEG mean abs diff {mad}");
        }
        let tracks: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.0.join("tracks").join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        let objs = tracks["objects"].as_array().unwrap();
        assert_eq!(objs.len(), clip.tracks.len());
        let p0 = &objs[0]["points"][0];
        assert_eq!(p0["xy"].as_array().unwrap().len(), 5);
        assert_eq!(p0["visible"].as_array().unwrap().len(), 5);
        let meta: SynthMeta = serde_json::from_slice(
            &std::fs::read(dir.0.join("meta").join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(meta, clip.meta);
    }
    Ok(())
}

#[test]
fn bad_config_is_an_error_not_a_panic() {
    let cfg = SynthConfig {
        frames: 0,
        ..SynthConfig::default()
    };
    let err = generate_clip(&cfg, Split::Train, 0, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("frames"), "{err}");
}

/// Generator speed (run with `--ignored --nocapture`): frames per second at 256², medium.
#[test]
#[ignore]
fn generator_speed_256() -> Result<()> {
    let cfg = Preset::Medium.config();
    let _ = generate_clip(&cfg, Split::Train, 0, 0)?;
    let start = std::time::Instant::now();
    let n = 5;
    for i in 0..n {
        generate_clip(&cfg, Split::Train, 1, i)?;
    }
    let s = start.elapsed().as_secs_f64() / n as f64;
    println!(
        "medium 256x256x{}: {:.3} s per clip, {:.0} frames/s on {} threads",
        cfg.frames,
        s,
        cfg.frames as f64 / s,
        rayon::current_num_threads()
    );
    Ok(())
}

#[test]
fn a_lazy_source_renders_the_same_frames_as_the_whole_clip() -> vssl_data::Result<()> {
    use vssl_data::FrameSource;
    use vssl_data::synth::{Preset, Split, SynthSource, generate_clip};
    let mut cfg = Preset::Medium.config();
    (cfg.width, cfg.height, cfg.frames) = (96, 64, 7);
    let clip = generate_clip(&cfg, Split::Train, 4, 9)?;
    let mut src = SynthSource::new(&cfg, Split::Train, 4, 9, "clip 9")?;
    assert_eq!((src.len(), src.size()), (7, (96, 64)));
    let got = src.frames(&[6, 0, 6], None)?;
    assert!(got[0] == clip.frames[6] && got[1] == clip.frames[0] && got[2] == clip.frames[6]);
    let small = src.frames(&[2], Some((48, 32)))?;
    assert_eq!(small[0].dimensions(), (48, 32));
    let e = src.frames(&[7], None).unwrap_err().to_string();
    assert!(e.contains("clip 9") && e.contains("frame 7"), "{e}");
    Ok(())
}
