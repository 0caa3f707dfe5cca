//! Golden tests for `vssl_core::ops::color` against OpenCV 8-bit Lab and scikit-image float Lab
//! (fixtures written by `tests/golden/color.py`).

use candle_core::{DType, Device, Tensor, Var};
use vssl_core::ops::color::{
    lab_to_rgb, lab_to_rgb_u8, rgb_to_lab, rgb_to_lab_u8, rgb_u8_to_lab_tensor,
};
use vssl_core::testing::{Golden, Tolerance, assert_close};
use vssl_core::{Error, Result};

fn golden() -> Result<Golden> {
    Golden::workspace("color")
}

fn bytes(g: &Golden, name: &str) -> Result<Vec<u8>> {
    Ok(g.get(name)?.flatten_all()?.to_vec1::<u8>()?)
}

/// (max |diff|, pixels that differ by exactly 1 in some channel, pixels) between two interleaved
/// 3-channel byte buffers.
fn compare_pixels(got: &[u8], want: &[u8]) -> (u8, usize, usize) {
    assert_eq!(got.len(), want.len());
    let mut max = 0u8;
    let mut off_by_one = 0usize;
    for (g, w) in got.chunks_exact(3).zip(want.chunks_exact(3)) {
        let d = g
            .iter()
            .zip(w)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap_or(0);
        max = max.max(d);
        if d == 1 {
            off_by_one += 1;
        }
    }
    (max, off_by_one, got.len() / 3)
}

#[test]
fn rgb_to_lab_u8_matches_opencv_bgr2lab() -> Result<()> {
    let g = golden()?;
    let rgb = bytes(&g, "rgb_u8")?;
    let want = bytes(&g, "lab_u8")?;
    assert!(rgb.len() / 3 >= 40_000);
    let mut lab = vec![0u8; rgb.len()];
    rgb_to_lab_u8(&rgb, &mut lab)?;
    let (max, off, n) = compare_pixels(&lab, &want);
    println!(
        "rgb_to_lab_u8 vs cv2 COLOR_BGR2LAB: {n} colours, max |diff| {max}, {off} differ by 1"
    );
    assert!(max <= 1, "max |diff| {max} > 1 level");
    // Measured: bit-identical on all of them (and on all 2^24 colours in the prototype).
    assert!(
        off * 1000 <= n,
        "{off} of {n} colours differ by one level (> 0.1 %)"
    );
    Ok(())
}

#[test]
fn lab_to_rgb_u8_matches_opencv_lab2bgr() -> Result<()> {
    let g = golden()?;
    let lab = bytes(&g, "lab_in_u8")?;
    let want = bytes(&g, "rgb_of_lab_u8")?;
    assert!(lab.len() / 3 >= 60_000);
    let mut rgb = vec![0u8; lab.len()];
    lab_to_rgb_u8(&lab, &mut rgb)?;
    let (max, off, n) = compare_pixels(&rgb, &want);
    println!(
        "lab_to_rgb_u8 vs cv2 COLOR_LAB2BGR: {n} triplets, max |diff| {max}, {off} differ by 1"
    );
    assert!(max <= 1, "max |diff| {max} > 1 level");
    assert!(
        off * 1000 <= n,
        "{off} of {n} triplets differ by one level (> 0.1 %)"
    );
    Ok(())
}

#[test]
fn u8_round_trip_stays_close() -> Result<()> {
    let g = golden()?;
    let rgb = bytes(&g, "rgb_u8")?;
    let mut lab = vec![0u8; rgb.len()];
    let mut back = vec![0u8; rgb.len()];
    rgb_to_lab_u8(&rgb, &mut lab)?;
    lab_to_rgb_u8(&lab, &mut back)?;
    let (max, _, n) = compare_pixels(&back, &rgb);
    let far = back
        .chunks_exact(3)
        .zip(rgb.chunks_exact(3))
        .filter(|(a, b)| a.iter().zip(*b).any(|(x, y)| x.abs_diff(*y) > 4))
        .count();
    // 8-bit Lab is coarser than 8-bit RGB near the gamut edges (one a/b level there is many RGB
    // levels), so the round trip is close, not exact. OpenCV's own BGR->LAB->BGR on these colours
    // gives the same figures: max 24 (at RGB [0, 186, 248]) and 5.3 % of colours off by > 4.
    println!("RGB -> Lab8 -> RGB: max |diff| {max}, {far} of {n} off by more than 4");
    assert!(max <= 24, "round trip max |diff| {max}");
    assert!(
        far * 100 <= 6 * n,
        "{far} of {n} colours off by more than 4"
    );
    Ok(())
}

#[test]
fn u8_edge_cases() -> Result<()> {
    let mut empty: [u8; 0] = [];
    rgb_to_lab_u8(&[], &mut empty)?;
    lab_to_rgb_u8(&[], &mut empty)?;
    let mut lab = [0u8; 6];
    rgb_to_lab_u8(&[255, 255, 255, 0, 0, 0], &mut lab)?;
    assert_eq!(lab, [255, 128, 128, 0, 128, 128]);
    let mut rgb = [0u8; 6];
    lab_to_rgb_u8(&lab, &mut rgb)?;
    assert_eq!(rgb, [255, 255, 255, 0, 0, 0]);
    Ok(())
}

fn assert_op_err(r: Result<impl std::fmt::Debug>, op: &str, needles: &[&str]) {
    match r {
        Err(e @ Error::Op { .. }) => {
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("{op}:")), "{msg}");
            for n in needles {
                assert!(msg.contains(n), "{msg:?} should mention {n:?}");
            }
        }
        other => panic!("expected an Op error from {op}, got {other:?}"),
    }
}

#[test]
fn u8_errors_name_the_op_and_lengths() {
    let mut out = [0u8; 6];
    assert_op_err(
        rgb_to_lab_u8(&[0u8; 9], &mut out),
        "rgb_to_lab_u8",
        &["9", "6"],
    );
    let mut out4 = [0u8; 4];
    assert_op_err(
        rgb_to_lab_u8(&[0u8; 4], &mut out4),
        "rgb_to_lab_u8",
        &["4", "multiple of 3"],
    );
    assert_op_err(
        lab_to_rgb_u8(&[0u8; 3], &mut out),
        "lab_to_rgb_u8",
        &["3", "6"],
    );
    assert_op_err(
        lab_to_rgb_u8(&[0u8; 4], &mut out4),
        "lab_to_rgb_u8",
        &["multiple of 3"],
    );
}

#[test]
fn rgb_u8_to_lab_tensor_matches_opencv_normalised() -> Result<()> {
    let g = golden()?;
    // 40,000 colours as two 100x200 frames, channels last.
    let rgb = g.get("rgb_u8")?.reshape((2, 100, 200, 3))?;
    let got = rgb_u8_to_lab_tensor(&rgb)?;
    assert_eq!(got.dims(), &[2, 3, 100, 200]);
    assert_eq!(got.dtype(), DType::F32);
    let want = g
        .get("lab_u8")?
        .reshape((2, 100, 200, 3))?
        .permute((0, 3, 1, 2))?
        .to_dtype(DType::F32)?
        .affine(1.0 / 128.0, -1.0)?;
    // Exact up to f32 rounding of (x - 128)/128 (which is exact), plus at most one level.
    let diff = (&got - &want)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?;
    assert!(diff <= 1.0 / 128.0, "max |diff| {diff}");
    // Without leading dims, and on a non-contiguous (transposed) view.
    let one = rgb.get(1)?;
    let got1 = rgb_u8_to_lab_tensor(&one)?;
    assert_eq!(got1.dims(), &[3, 100, 200]);
    assert_eq!(got1.to_vec3::<f32>()?, got.get(1)?.to_vec3::<f32>()?);
    let t = one.transpose(0, 1)?; // [200, 100, 3], strided
    let got_t = rgb_u8_to_lab_tensor(&t)?;
    let want_t = got1.transpose(1, 2)?.contiguous()?;
    assert_eq!(got_t.to_vec3::<f32>()?, want_t.to_vec3::<f32>()?);
    // Empty frames are fine.
    let empty = Tensor::zeros((2, 0, 5, 3), DType::U8, &Device::Cpu)?;
    assert_eq!(rgb_u8_to_lab_tensor(&empty)?.dims(), &[2, 3, 0, 5]);
    Ok(())
}

#[test]
fn rgb_u8_to_lab_tensor_errors() -> Result<()> {
    let dev = Device::Cpu;
    let f = Tensor::zeros((4, 5, 3), DType::F32, &dev)?;
    assert_op_err(
        rgb_u8_to_lab_tensor(&f),
        "rgb_u8_to_lab_tensor",
        &["u8", "F32", "[4, 5, 3]"],
    );
    let four = Tensor::zeros((4, 5, 4), DType::U8, &dev)?;
    assert_op_err(
        rgb_u8_to_lab_tensor(&four),
        "rgb_u8_to_lab_tensor",
        &["[4, 5, 4]"],
    );
    let flat = Tensor::zeros((5, 3), DType::U8, &dev)?;
    assert_op_err(
        rgb_u8_to_lab_tensor(&flat),
        "rgb_u8_to_lab_tensor",
        &["[5, 3]"],
    );
    Ok(())
}

/// Forward tolerance of rgb_to_lab: SINGLE_OP holds (L up to 100 gives atol 1e-4, which covers
/// the ~5e-5 that f32 cube roots leave in a = 500·(fx − fy)).
const FLOAT_TOL: Tolerance = Tolerance::SINGLE_OP;

#[test]
fn rgb_to_lab_matches_skimage_and_torch_grad() -> Result<()> {
    let g = golden()?;
    let x = Var::from_tensor(&g.f32("rgb_f")?)?;
    let lab = rgb_to_lab(x.as_tensor())?;
    let r = assert_close("rgb_to_lab", &lab, &g.get("lab_of_rgb_f")?, FLOAT_TOL)?;
    println!("rgb_to_lab: max abs err {:.3e}", r.max_abs_err);
    let w = g.f32("w_lab")?;
    let grads = (lab * w)?.sum_all()?.backward()?;
    let gx = grads
        .get(x.as_tensor())
        .ok_or_else(|| Error::op("test", "no grad for rgb"))?;
    let r = assert_close("rgb_to_lab grad", gx, &g.get("grad_rgb_f")?, GRAD_TOL)?;
    println!("rgb_to_lab grad: max abs err {:.3e}", r.max_abs_err);
    Ok(())
}

/// Gradients against torch autograd of the same formulas in float64: SINGLE_OP holds.
const GRAD_TOL: Tolerance = Tolerance::SINGLE_OP;

#[test]
fn lab_to_rgb_matches_skimage_and_torch_grad() -> Result<()> {
    let g = golden()?;
    let y = Var::from_tensor(&g.f32("lab_f")?)?;
    let rgb = lab_to_rgb(y.as_tensor())?;
    let r = assert_close(
        "lab_to_rgb",
        &rgb,
        &g.get("rgb_of_lab_f")?,
        // XYZ -> RGB mixes values ~1 with coefficients up to 3.24 and cancels down to ~0.05:
        // f32 rounding of the terms leaves ~2e-6 absolute there (1.4x SINGLE_OP's 1e-6 bound).
        Tolerance::SINGLE_OP.with_atol(1e-5),
    )?;
    println!("lab_to_rgb: max abs err {:.3e}", r.max_abs_err);
    let w = g.f32("w_rgb")?;
    let grads = (rgb * w)?.sum_all()?.backward()?;
    let gy = grads
        .get(y.as_tensor())
        .ok_or_else(|| Error::op("test", "no grad for lab"))?;
    // The gradient flows back through the same cancelling XYZ -> RGB mix (transposed): measured
    // 2.8e-6 absolute on values ~0.1, 2x SINGLE_OP's bound, so the same 1e-5 absolute part.
    let tol = GRAD_TOL.with_atol(1e-5);
    let r = assert_close("lab_to_rgb grad", gy, &g.get("grad_lab_f")?, tol)?;
    println!("lab_to_rgb grad: max abs err {:.3e}", r.max_abs_err);
    Ok(())
}

#[test]
fn float_round_trip_and_finite_grads() -> Result<()> {
    let g = golden()?;
    let x = Var::from_tensor(&g.f32("rgb_f")?)?;
    let back = lab_to_rgb(&rgb_to_lab(x.as_tensor())?)?;
    assert_close(
        "round trip",
        &back,
        x.as_tensor(),
        Tolerance::SINGLE_OP.with_atol(1e-5),
    )?;
    let grads = back.sqr()?.sum_all()?.backward()?;
    let gx = grads
        .get(x.as_tensor())
        .ok_or_else(|| Error::op("test", "no grad"))?;
    let v = gx.flatten_all()?.to_vec1::<f32>()?;
    assert!(v.iter().all(|g| g.is_finite()), "non-finite gradient");
    assert!(v.iter().any(|&g| g != 0.0), "all-zero gradient");
    // Out-of-gamut Lab stays finite (not clamped) with finite gradients.
    let lab = Var::from_tensor(&Tensor::new(
        &[[[[50f32]], [[120.]], [[-128.]]]],
        &Device::Cpu,
    )?)?;
    let rgb = lab_to_rgb(lab.as_tensor())?;
    let vals = rgb.flatten_all()?.to_vec1::<f32>()?;
    assert!(vals.iter().all(|v| v.is_finite()) && vals.iter().any(|&v| !(0.0..=1.0).contains(&v)));
    let grads = rgb.sum_all()?.backward()?;
    let gl = grads
        .get(lab.as_tensor())
        .ok_or_else(|| Error::op("test", "no grad"))?;
    assert!(
        gl.flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .all(|g| g.is_finite())
    );
    Ok(())
}

#[test]
fn float_errors_name_the_op_and_shapes() -> Result<()> {
    let dev = Device::Cpu;
    let four = Tensor::zeros((2, 4, 5, 5), DType::F32, &dev)?;
    assert_op_err(rgb_to_lab(&four), "rgb_to_lab", &["[2, 4, 5, 5]"]);
    assert_op_err(lab_to_rgb(&four), "lab_to_rgb", &["[2, 4, 5, 5]"]);
    let low = Tensor::zeros((3, 5), DType::F32, &dev)?;
    assert_op_err(rgb_to_lab(&low), "rgb_to_lab", &["[3, 5]"]);
    assert_op_err(lab_to_rgb(&low), "lab_to_rgb", &["[3, 5]"]);
    let f64t = Tensor::zeros((3, 5, 5), DType::F64, &dev)?;
    assert_op_err(
        rgb_to_lab(&f64t),
        "rgb_to_lab",
        &["f32", "F64", "[3, 5, 5]"],
    );
    let u8t = Tensor::zeros((3, 5, 5), DType::U8, &dev)?;
    assert_op_err(lab_to_rgb(&u8t), "lab_to_rgb", &["f32", "U8"]);
    // Rank 3 without batch works.
    let ok = Tensor::ones((3, 2, 2), DType::F32, &dev)?;
    assert_eq!(rgb_to_lab(&ok)?.dims(), &[3, 2, 2]);
    Ok(())
}

/// Every one of the 2^24 colours in both directions, against files written by
/// `python -c "..."` (see below); ignored by default because the files are 48 MiB each.
///
/// ```text
/// import numpy as np, cv2
/// v = np.arange(256, dtype=np.uint32); r, g, b = np.meshgrid(v, v, v, indexing="ij")
/// cube = np.stack([r, g, b], -1).reshape(4096, 4096, 3).astype(np.uint8)
/// cv2.cvtColor(cube[..., ::-1].copy(), cv2.COLOR_BGR2LAB).tofile(DIR + "/lab_of_rgb_cube.bin")
/// cv2.cvtColor(cube, cv2.COLOR_LAB2BGR)[..., ::-1].copy().tofile(DIR + "/rgb_of_lab_cube.bin")
/// ```
/// Run with `VSSL_COLOR_CUBE_DIR=DIR cargo test -p vssl-core --test color -- --ignored full_cube`.
#[test]
#[ignore = "needs VSSL_COLOR_CUBE_DIR with 2 x 48 MiB of OpenCV output"]
fn full_cube_matches_opencv() -> Result<()> {
    let dir = std::env::var("VSSL_COLOR_CUBE_DIR")
        .map_err(|_| Error::op("test", "set VSSL_COLOR_CUBE_DIR"))?;
    let read = |name: &str| {
        std::fs::read(format!("{dir}/{name}")).map_err(|e| Error::file(name, e.to_string()))
    };
    let cube: Vec<u8> = (0..1u32 << 24)
        .flat_map(|i| [(i >> 16) as u8, (i >> 8) as u8, i as u8])
        .collect();
    let mut out = vec![0u8; cube.len()];
    rgb_to_lab_u8(&cube, &mut out)?;
    let (max, off, n) = compare_pixels(&out, &read("lab_of_rgb_cube.bin")?);
    println!("full cube RGB->Lab: {n} colours, max |diff| {max}, {off} differ by 1");
    assert_eq!(max, 0);
    lab_to_rgb_u8(&cube, &mut out)?;
    let (max, off, n) = compare_pixels(&out, &read("rgb_of_lab_cube.bin")?);
    println!("full cube Lab->RGB: {n} triplets, max |diff| {max}, {off} differ by 1");
    assert_eq!(max, 0);
    Ok(())
}

/// Throughput on 640x640 frames (the training resolution); prints, asserts nothing about speed.
#[test]
#[ignore = "timing only"]
fn timing_640x640() -> Result<()> {
    let n = 640 * 640;
    let rgb: Vec<u8> = (0..3 * n)
        .map(|i| ((i * 2654435761usize) >> 7) as u8)
        .collect();
    let mut lab = vec![0u8; rgb.len()];
    let mut back = vec![0u8; rgb.len()];
    let reps = 50;
    // Warm up: builds the tables and the rayon pool.
    rgb_to_lab_u8(&rgb, &mut lab)?;
    lab_to_rgb_u8(&lab, &mut back)?;
    let t = std::time::Instant::now();
    for _ in 0..reps {
        rgb_to_lab_u8(&rgb, &mut lab)?;
    }
    let fwd = t.elapsed().as_secs_f64() / f64::from(reps);
    let t = std::time::Instant::now();
    for _ in 0..reps {
        lab_to_rgb_u8(&lab, &mut back)?;
    }
    let inv = t.elapsed().as_secs_f64() / f64::from(reps);
    let frame = Tensor::from_vec(rgb, (1, 640, 640, 3), &Device::Cpu)?;
    let t = std::time::Instant::now();
    for _ in 0..reps {
        rgb_u8_to_lab_tensor(&frame)?;
    }
    let ten = t.elapsed().as_secs_f64() / f64::from(reps);
    println!(
        "640x640 on {} rayon threads: rgb_to_lab_u8 {:.2} ms, lab_to_rgb_u8 {:.2} ms, rgb_u8_to_lab_tensor {:.2} ms",
        rayon::current_num_threads(),
        fwd * 1e3,
        inv * 1e3,
        ten * 1e3
    );
    Ok(())
}
