//! Augmentation: geometric ops against OpenCV (golden file `tests/golden/augment.py`), the
//! pipelines' shapes and determinism, Lab tensors, normalisation and channel dropout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_range_loop)] // tests panic on failure

use candle_core::{Device, IndexOp, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vssl_core::testing::Golden;
use vssl_data::augment::{self, Interpolation, MainPipeline, WarmupPipeline};
use vssl_data::frame::Frame;
use vssl_data::rng::sample_rng;

fn golden() -> Golden {
    Golden::workspace("augment").expect("tests/golden/augment.safetensors (run augment.py)")
}

/// A golden `[H, W, 3]` u8 tensor as a Frame.
fn frame(g: &Golden, name: &str) -> Frame {
    let t = g.get(name).expect(name);
    let (h, w, c) = t.dims3().expect("rank 3");
    assert_eq!(c, 3);
    let v = t.flatten_all().unwrap().to_vec1::<u8>().unwrap();
    Frame::from_raw(w as u32, h as u32, v).unwrap()
}

fn ints(g: &Golden, name: &str) -> Vec<i64> {
    g.get(name).unwrap().to_vec1::<i64>().unwrap()
}

/// (number of differing bytes, largest difference), after checking the sizes agree.
fn diff(name: &str, got: &Frame, want: &Frame) -> (usize, u8) {
    assert_eq!(got.dimensions(), want.dimensions(), "{name}: size");
    let mut n = 0;
    let mut worst = 0;
    for (a, b) in got.as_raw().iter().zip(want.as_raw()) {
        let d = a.abs_diff(*b);
        if d > 0 {
            n += 1;
            worst = worst.max(d);
        }
    }
    println!(
        "{name}: {n} of {} bytes differ, worst {worst}",
        got.as_raw().len()
    );
    (n, worst)
}

#[test]
fn reflection_pad_matches_reference() {
    let g = golden();
    let small = frame(&g, "small");
    for name in ["a", "b", "c", "d"] {
        let p = ints(&g, &format!("pad_{name}_tblr"));
        let got = augment::pad_reflect(
            &small,
            p[0] as usize,
            p[1] as usize,
            p[2] as usize,
            p[3] as usize,
        )
        .unwrap();
        let (n, _) = diff(
            &format!("pad_{name}"),
            &got,
            &frame(&g, &format!("pad_{name}")),
        );
        assert_eq!(n, 0, "padding is a copy: exact");
    }
    // Thin axes cannot be padded (the reference would recurse forever).
    let thin = Frame::new(4, 1);
    assert!(augment::pad_reflect(&thin, 1, 0, 0, 0).is_err());
    assert!(augment::pad_reflect(&thin, 0, 0, 1, 1).is_ok());
}

#[test]
fn rotation_matches_opencv_nearest() {
    let g = golden();
    let img = frame(&g, "img");
    let mut total = 0;
    let mut bytes = 0;
    for a in ints(&g, "rot_angles") {
        let got = augment::rotate(&img, a as i32).unwrap();
        let (n, _) = diff(&format!("rot_{a}"), &got, &frame(&g, &format!("rot_{a}")));
        total += n;
        bytes += got.as_raw().len();
    }
    let small = frame(&g, "small");
    for a in [10, -6] {
        let got = augment::rotate(&small, a).unwrap();
        let (n, _) = diff(
            &format!("rot_small_{a}"),
            &got,
            &frame(&g, &format!("rot_small_{a}")),
        );
        total += n;
        bytes += got.as_raw().len();
    }
    println!("rotation: {total} of {bytes} bytes differ in all");
    // Nearest-neighbour: exact except where a source coordinate is a rounding tie. Allow 0.5%
    // of the bytes (a tie moves a whole pixel: 3 bytes).
    assert!(total * 200 <= bytes, "{total} of {bytes} bytes differ");
}

#[test]
fn resizes_match_opencv_within_one_level() {
    let g = golden();
    let img = frame(&g, "img");
    for (name, interp) in [
        ("lanczos_down", Interpolation::Lanczos4),
        ("lanczos_down2", Interpolation::Lanczos4),
        ("lanczos_up", Interpolation::Lanczos4),
        ("cubic_up", Interpolation::Cubic),
        ("cubic_up2", Interpolation::Cubic),
        ("cubic_down", Interpolation::Cubic),
        ("linear_down", Interpolation::Linear),
        ("linear_up", Interpolation::Linear),
    ] {
        let wh = ints(&g, &format!("rs_{name}_wh"));
        let got = augment::resize(&img, wh[0] as usize, wh[1] as usize, interp).unwrap();
        let (n, worst) = diff(
            &format!("rs_{name}"),
            &got,
            &frame(&g, &format!("rs_{name}")),
        );
        assert!(worst <= 1, "{name}: off by {worst} levels");
        // one-level differences come from rounding near .5 only: rare
        assert!(n * 50 <= got.as_raw().len(), "{name}: {n} bytes off by one");
    }
}

#[test]
fn resize_and_pad_matches_reference() {
    let g = golden();
    for (src, name, size) in [
        ("img", "rap_wide_40", 40),
        ("tall", "rap_tall_45", 45),
        ("img", "rap_wide_80", 80),
        ("small", "rap_small_20", 20),
    ] {
        let got = augment::resize_and_pad(&frame(&g, src), size).unwrap();
        assert_eq!(got.dimensions(), (size as u32, size as u32));
        let (n, worst) = diff(name, &got, &frame(&g, name));
        assert!(worst <= 1, "{name}: off by {worst}");
        assert!(n * 33 <= got.as_raw().len(), "{name}: {n} bytes off by one");
    }
}

/// A frame with a distinct value at every pixel (so crops and flips can be located).
fn ramp(w: u32, h: u32) -> Frame {
    Frame::from_fn(w, h, |x, y| {
        image::Rgb([x as u8, y as u8, ((x * 7 + y * 13) % 251) as u8])
    })
}

#[test]
fn crop_flip_and_crop_or_pad() {
    let img = ramp(20, 10);
    let c = augment::crop(&img, 3, 2, 5, 4).unwrap();
    assert_eq!(c.dimensions(), (5, 4));
    assert_eq!(c.get_pixel(0, 0), img.get_pixel(3, 2));
    assert_eq!(c.get_pixel(4, 3), img.get_pixel(7, 5));
    assert!(augment::crop(&img, 16, 0, 5, 4).is_err());
    let f = augment::flip_horizontal(&img);
    assert_eq!(f.get_pixel(0, 4), img.get_pixel(19, 4));
    assert_eq!(augment::flip_horizontal(&f), img);
    // 20 wide > 12: cropped at x = 5; 10 high < 12: padded 1 before, 1 after (reflect-101 on top,
    // edge-repeating at the bottom, as the reference).
    let p = augment::crop_or_pad(&img, 5, 999, 12).unwrap();
    assert_eq!(p.dimensions(), (12, 12));
    assert_eq!(p.get_pixel(0, 0), img.get_pixel(5, 1));
    assert_eq!(p.get_pixel(0, 1), img.get_pixel(5, 0));
    assert_eq!(p.get_pixel(0, 11), img.get_pixel(5, 9));
    assert_eq!(p.get_pixel(0, 10), img.get_pixel(5, 9));
}

#[test]
fn rotation_by_zero_is_identity_and_rotation_keeps_size() {
    let img = ramp(33, 17);
    assert_eq!(augment::rotate(&img, 0).unwrap(), img);
    let r = augment::rotate(&img, 7).unwrap();
    assert_eq!(r.dimensions(), img.dimensions());
    assert_ne!(r, img);
    // The centre pixel (16.5, 8.5 is the rotation centre) barely moves: within one pixel.
    let p = r.get_pixel(16, 8);
    assert!(p[0].abs_diff(16) <= 1 && p[1].abs_diff(8) <= 1, "{p:?}");
}

#[test]
fn warmup_pipeline_shapes_and_determinism() {
    let a = ramp(320, 192);
    let b = augment::flip_horizontal(&a);
    let p = WarmupPipeline::default();
    let (r1, t1) = p.apply(&a, &b, &mut sample_rng(1, 0, 5)).unwrap();
    let (r2, t2) = p.apply(&a, &b, &mut sample_rng(1, 0, 5)).unwrap();
    assert_eq!((r1.dimensions(), t1.dimensions()), ((256, 256), (256, 256)));
    assert_eq!((&r1, &t1), (&r2, &t2), "same stream, same crops");
    let mut differ = 0;
    for i in 0..8 {
        let (r3, _) = p.apply(&a, &b, &mut sample_rng(1, 0, 100 + i)).unwrap();
        differ += usize::from(r3 != r1);
    }
    assert!(differ >= 7, "other streams give other crops");
    // Small frames (< 256 after scaling) are reflection-padded up to the crop size.
    let (r, t) = p
        .apply(&ramp(100, 80), &ramp(100, 80), &mut sample_rng(2, 0, 0))
        .unwrap();
    assert_eq!((r.dimensions(), t.dimensions()), ((256, 256), (256, 256)));
    assert!(
        p.apply(&ramp(100, 80), &ramp(100, 81), &mut sample_rng(2, 0, 0))
            .is_err()
    );
}

#[test]
fn warmup_crops_are_independent_but_rotation_and_flip_shared() {
    // Without rotation and scaling the crops are plain windows: find them by their ramp values.
    let p = WarmupPipeline {
        rotate: 0,
        scale: 0.0,
        crop: 64,
    };
    let img = ramp(200, 150);
    let mut separate = 0;
    let mut flips = 0;
    for i in 0..40 {
        let (r, t) = p
            .apply(&img, &img, &mut ChaCha8Rng::seed_from_u64(i))
            .unwrap();
        let (rf, tf) = (
            r.get_pixel(0, 0)[0] > r.get_pixel(63, 0)[0],
            t.get_pixel(0, 0)[0] > t.get_pixel(63, 0)[0],
        );
        assert_eq!(rf, tf, "flip is shared");
        flips += usize::from(rf);
        separate += usize::from(r.get_pixel(0, 0) != t.get_pixel(0, 0));
    }
    assert!(separate >= 38, "independent offsets: {separate}/40 differ");
    assert!((8..=32).contains(&flips), "flip p = 0.5: {flips}/40");
}

#[test]
fn main_pipeline_rotated_crop_of_padded_frame() {
    let a = ramp(256, 192);
    let p = MainPipeline::default();
    let (r, t, info) = p.apply(&a, &a, &mut sample_rng(3, 100, 9)).unwrap();
    assert_eq!((r.dimensions(), t.dimensions()), ((256, 256), (640, 640)));
    assert!((-10..=10).contains(&info.angle));
    assert!(info.x <= 384 && info.y <= 384);
    // The reference crop is a window of the rotated, resized and padded frame.
    let canvas = augment::resize_and_pad(&augment::rotate(&a, info.angle).unwrap(), 640).unwrap();
    assert_eq!(r, augment::crop(&canvas, info.x, info.y, 256, 256).unwrap());
    // The target is not rotated: ResizeandPad only (256x192 -> 640x480, 80 rows each side).
    assert_eq!(t, augment::resize_and_pad(&a, 640).unwrap());
    let (r2, t2, info2) = p.apply(&a, &a, &mut sample_rng(3, 100, 9)).unwrap();
    assert_eq!((r2, t2, info2), (r, t, info));
}

#[test]
fn lab_tensors_and_encoder_normalisation() {
    let img = ramp(9, 6);
    let lab = augment::rgb_to_lab_frame(&img).unwrap();
    let x = augment::lab_frame_to_tensor(&lab).unwrap();
    assert_eq!(x.dims(), &[3, 6, 9]);
    let x2 = augment::rgb_frame_to_lab_tensor(&img).unwrap();
    let d = (&x - &x2)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(d, 0.0, "both routes give (lab - 128)/128");
    // channel-first layout: element (c, y, x) is (lab[y][x][c] - 128)/128
    let p = lab.get_pixel(4, 2);
    for c in 0..3 {
        let v = x.i((c, 2, 4)).unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(v, (p[c] as f32 - 128.0) / 128.0);
    }
    // encoder input: ((x+1)/2 - mean)/std per channel, on [3,H,W] and [B,3,H,W]
    let e = augment::encoder_input(&x).unwrap();
    for c in 0..3 {
        let v = e.i((c, 2, 4)).unwrap().to_scalar::<f32>().unwrap();
        let xv = (p[c] as f32 - 128.0) / 128.0;
        let want = ((xv + 1.0) / 2.0 - augment::IMAGENET_MEAN[c]) / augment::IMAGENET_STD[c];
        assert!((v - want).abs() <= 1e-6, "{v} vs {want}");
    }
    let eb = augment::encoder_input(&x.unsqueeze(0).unwrap()).unwrap();
    assert_eq!(
        eb.i(0).unwrap().to_vec3::<f32>().unwrap(),
        e.to_vec3::<f32>().unwrap()
    );
    assert!(
        augment::encoder_input(
            &Tensor::zeros((2, 6, 9), candle_core::DType::F32, &Device::Cpu).unwrap()
        )
        .is_err()
    );
}

#[test]
fn channel_dropout_statistics_and_scaling() {
    let r = Tensor::ones((2, 3, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    let t = Tensor::ones((2, 3, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    let (mut none, mut one, mut two) = (0, 0, 0);
    let mut per_channel = [0usize; 3];
    let n = 3000;
    for i in 0..n {
        let (a, b, dropped) = augment::channel_dropout(&r, &t, &mut sample_rng(7, 0, i)).unwrap();
        let k = dropped.len();
        match k {
            0 => none += 1,
            1 => one += 1,
            _ => two += 1,
        }
        for &c in &dropped {
            per_channel[c] += 1;
        }
        let s = 3.0 / (3 - k) as f32;
        for (x, name) in [(&a, "ref"), (&b, "tar")] {
            for c in 0..3 {
                let want = if dropped.contains(&c) { 0.0 } else { s };
                let plane = x
                    .i((.., c))
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                assert!(
                    plane.iter().all(|&v| v == want),
                    "{name} channel {c}: want {want}"
                );
            }
        }
        let mut d = dropped.clone();
        d.dedup();
        assert_eq!(d.len(), k, "distinct channels");
    }
    // P(nothing) = 0.3, P(k=1) = P(k=2) = 0.35; each channel dropped with p = 0.7·(1/3·1 + 1/3·2)/...
    let f = |c: usize| c as f64 / n as f64;
    println!("none {none} one {one} two {two} per channel {per_channel:?}");
    assert!((f(none) - 0.3).abs() < 0.03);
    assert!((f(one) - 0.35).abs() < 0.03 && (f(two) - 0.35).abs() < 0.03);
    // each channel: 0.35·1/3 + 0.35·2/3 = 0.35
    for c in per_channel {
        assert!((f(c) - 0.35).abs() < 0.03, "{per_channel:?}");
    }
    assert!(
        augment::channel_dropout(
            &r,
            &Tensor::ones((4, 4), candle_core::DType::F32, &Device::Cpu).unwrap(),
            &mut sample_rng(0, 0, 0)
        )
        .is_err()
    );
}

/// Timing of both pipelines on a TrackingNet-sized frame (1280x704): run with `--ignored`.
#[test]
#[ignore]
fn timing_pipelines_1280x704() {
    let a = ramp(1280, 704);
    let w = WarmupPipeline::default();
    let m = MainPipeline::default();
    let warm = |i| drop(w.apply(&a, &a, &mut sample_rng(0, 0, i)).unwrap());
    let main = |i| drop(m.apply(&a, &a, &mut sample_rng(0, 0, i)).unwrap());
    let runs: [(&str, &dyn Fn(u64)); 2] = [("warm-up", &warm), ("main", &main)];
    for (name, run) in runs {
        run(0);
        let t = std::time::Instant::now();
        for i in 0..20 {
            run(i);
        }
        println!(
            "{name}: {:.1} ms per pair",
            t.elapsed().as_secs_f64() * 1000.0 / 20.0
        );
    }
}
