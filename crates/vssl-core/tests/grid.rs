//! Golden tests of `affine_grid` and `grid_sample` against PyTorch (tests/golden/grid.py), for
//! both the fast CPU kernel and the portable path, plus error and edge cases.

use candle_core::{DType, Device, Tensor, Var};
use vssl_core::Result;
use vssl_core::ops::grid::{affine_grid, grid_sample, grid_sample_portable};
use vssl_core::testing::{Golden, Tolerance, assert_close};

type SampleFn = fn(&Tensor, &Tensor, bool) -> Result<Tensor>;

const PATHS: [(&str, SampleFn); 2] = [("kernel", grid_sample), ("portable", grid_sample_portable)];

fn tag(ac: bool) -> &'static str {
    if ac { "ac1" } else { "ac0" }
}

/// Forward and both gradients of one golden grid_sample case, on one path.
fn check_sample_case(g: &Golden, case: &str, ac: bool, path: &str, f: SampleFn) -> Result<()> {
    let input = Var::from_tensor(&g.f32(&format!("{case}.input"))?)?;
    let grid = Var::from_tensor(&g.f32(&format!("{case}.grid"))?)?;
    let w = g.f32(&format!("{case}.w"))?;
    let out = f(input.as_tensor(), grid.as_tensor(), ac)?;
    let name = |what: &str| format!("{case} {path} {what}");
    assert_close(
        &name("out"),
        &out,
        &g.get(&format!("{case}.out"))?,
        Tolerance::SINGLE_OP,
    )?;
    let grads = (out * w)?.sum_all()?.backward()?;
    let gi = grads
        .get(input.as_tensor())
        .ok_or_else(|| vssl_core::Error::op("test", "no input gradient"))?;
    let gg = grads
        .get(grid.as_tensor())
        .ok_or_else(|| vssl_core::Error::op("test", "no grid gradient"))?;
    assert_close(
        &name("grad_input"),
        gi,
        &g.get(&format!("{case}.grad_input"))?,
        Tolerance::SINGLE_OP,
    )?;
    assert_close(
        &name("grad_grid"),
        gg,
        &g.get(&format!("{case}.grad_grid"))?,
        Tolerance::SINGLE_OP,
    )?;
    Ok(())
}

fn check_sample_cases(prefix: &str) -> Result<()> {
    let g = Golden::workspace("grid")?;
    for ac in [true, false] {
        let case = format!("{prefix}_{}", tag(ac));
        for (path, f) in PATHS {
            check_sample_case(&g, &case, ac, path, f)?;
        }
    }
    Ok(())
}

#[test]
fn grid_sample_odd_sizes_match_pytorch() -> Result<()> {
    check_sample_cases("odd")
}

#[test]
fn grid_sample_even_sizes_match_pytorch() -> Result<()> {
    check_sample_cases("even")
}

#[test]
fn grid_sample_single_pixel_input_matches_pytorch() -> Result<()> {
    check_sample_cases("one")
}

#[test]
fn affine_grid_matches_pytorch() -> Result<()> {
    let g = Golden::workspace("grid")?;
    for ac in [true, false] {
        let case = format!("affine_{}", tag(ac));
        let theta = Var::from_tensor(&g.f32(&format!("{case}.theta"))?)?;
        let want = g.get(&format!("{case}.grid"))?;
        let (n, ho, wo, _) = want.dims4()?;
        let grid = affine_grid(theta.as_tensor(), (n, 3, ho, wo), ac)?;
        assert_close(&format!("{case} grid"), &grid, &want, Tolerance::SINGLE_OP)?;
        let grads = (grid * g.f32(&format!("{case}.w_grid"))?)?
            .sum_all()?
            .backward()?;
        let gt = grads
            .get(theta.as_tensor())
            .ok_or_else(|| vssl_core::Error::op("test", "no theta gradient"))?;
        assert_close(
            &format!("{case} grad_theta"),
            gt,
            &g.get(&format!("{case}.grad_theta_grid"))?,
            Tolerance::SINGLE_OP,
        )?;
    }
    Ok(())
}

#[test]
fn affine_grid_into_grid_sample_matches_pytorch() -> Result<()> {
    let g = Golden::workspace("grid")?;
    for ac in [true, false] {
        let case = format!("affine_{}", tag(ac));
        for (path, f) in PATHS {
            let theta = Var::from_tensor(&g.f32(&format!("{case}.theta"))?)?;
            let input = Var::from_tensor(&g.f32(&format!("{case}.input"))?)?;
            let want = g.get(&format!("{case}.out"))?;
            let (n, c, ho, wo) = want.dims4()?;
            let grid = affine_grid(theta.as_tensor(), (n, c, ho, wo), ac)?;
            let out = f(input.as_tensor(), &grid, ac)?;
            let name = |what: &str| format!("{case} {path} {what}");
            assert_close(&name("out"), &out, &want, Tolerance::SINGLE_OP)?;
            let grads = (out * g.f32(&format!("{case}.w"))?)?
                .sum_all()?
                .backward()?;
            let gt = grads
                .get(theta.as_tensor())
                .ok_or_else(|| vssl_core::Error::op("test", "no theta gradient"))?;
            let gi = grads
                .get(input.as_tensor())
                .ok_or_else(|| vssl_core::Error::op("test", "no input gradient"))?;
            assert_close(
                &name("grad_theta"),
                gt,
                &g.get(&format!("{case}.grad_theta"))?,
                Tolerance::SINGLE_OP,
            )?;
            assert_close(
                &name("grad_input"),
                gi,
                &g.get(&format!("{case}.grad_input"))?,
                Tolerance::SINGLE_OP,
            )?;
        }
    }
    Ok(())
}

/// The golden values tell the two conventions apart: sampling with the other `align_corners`
/// must fail the comparison (so the tests above can fail).
#[test]
fn golden_distinguishes_align_corners() -> Result<()> {
    let g = Golden::workspace("grid")?;
    for ac in [true, false] {
        let case = format!("odd_{}", tag(ac));
        let input = g.f32(&format!("{case}.input"))?;
        let grid = g.f32(&format!("{case}.grid"))?;
        let want = g.get(&format!("{case}.out"))?;
        for (path, f) in PATHS {
            let wrong = f(&input, &grid, !ac)?;
            assert!(
                assert_close("wrong align_corners", &wrong, &want, Tolerance::SINGLE_OP).is_err(),
                "{case} {path}: align_corners={} matched the golden values of {ac}",
                !ac
            );
        }
    }
    Ok(())
}

/// A deterministic pseudo-random tensor in [lo, hi).
fn lcg(shape: &[usize], seed: u64, lo: f32, hi: f32) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = ((s >> 40) as f32) / ((1u64 << 24) as f32);
            lo + (hi - lo) * u
        })
        .collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

/// Kernel and portable path agree on a bigger case with strided (non-contiguous) inputs, and the
/// kernel's gradients agree with autograd through the portable path.
#[test]
fn kernel_and_portable_agree_on_strided_inputs() -> Result<()> {
    // input stored as [N, H, W, C] and permuted: not contiguous
    let input = lcg(&[3, 9, 11, 4], 1, -2.0, 2.0)?.permute((0, 3, 1, 2))?;
    // grid stored as [N, Wo, Ho, 2] and transposed
    let grid = lcg(&[3, 5, 7, 2], 2, -1.3, 1.3)?.transpose(1, 2)?;
    let w = lcg(&[3, 4, 7, 5], 3, -1.0, 1.0)?;
    assert!(!input.is_contiguous() && !grid.is_contiguous());
    for ac in [true, false] {
        let mut results = Vec::new();
        for (_, f) in PATHS {
            let iv = Var::from_tensor(&input)?;
            let gv = Var::from_tensor(&grid)?;
            // a strided view of the variable, as a model would pass it
            let out = f(&iv.as_tensor().clone(), gv.as_tensor(), ac)?;
            // a non-contiguous upstream gradient
            let grads = (out.transpose(2, 3)?.contiguous()?.transpose(2, 3)? * &w)?
                .sum_all()?
                .backward()?;
            let gi = grads.get(iv.as_tensor()).cloned();
            let gg = grads.get(gv.as_tensor()).cloned();
            results.push((out, gi, gg));
        }
        let (k, p) = (&results[0], &results[1]);
        let tol = Tolerance::SINGLE_OP;
        assert_close("out", &k.0, &p.0, tol)?;
        match (&k.1, &p.1, &k.2, &p.2) {
            (Some(ki), Some(pi), Some(kg), Some(pg)) => {
                assert_close("grad_input", ki, pi, tol)?;
                assert_close("grad_grid", kg, pg, tol)?;
            }
            _ => panic!("missing gradients"),
        }
    }
    Ok(())
}

/// The kernel's backward also works when only the grid is trainable (a crop box).
#[test]
fn gradient_to_grid_alone() -> Result<()> {
    let g = Golden::workspace("grid")?;
    let case = "odd_ac0";
    let input = g.f32(&format!("{case}.input"))?;
    let grid = Var::from_tensor(&g.f32(&format!("{case}.grid"))?)?;
    let out = grid_sample(&input, grid.as_tensor(), false)?;
    let grads = (out * g.f32(&format!("{case}.w"))?)?
        .sum_all()?
        .backward()?;
    let gg = grads
        .get(grid.as_tensor())
        .ok_or_else(|| vssl_core::Error::op("test", "no grid gradient"))?;
    assert_close(
        "grad_grid",
        gg,
        &g.get(&format!("{case}.grad_grid"))?,
        Tolerance::SINGLE_OP,
    )?;
    Ok(())
}

/// Identity θ with align_corners=true reproduces the input exactly.
#[test]
fn identity_transform_reproduces_input() -> Result<()> {
    let dev = Device::Cpu;
    let input = lcg(&[2, 3, 5, 7], 4, -1.0, 1.0)?;
    let theta = Tensor::new(&[[1f32, 0., 0.], [0., 1., 0.]], &dev)?
        .unsqueeze(0)?
        .repeat((2, 1, 1))?;
    let grid = affine_grid(&theta, (2, 3, 5, 7), true)?;
    for (path, f) in PATHS {
        let out = f(&input, &grid, true)?;
        assert_close(
            &format!("identity {path}"),
            &out,
            &input,
            Tolerance::SINGLE_OP,
        )?;
    }
    Ok(())
}

/// Empty outputs (zero channels, zero-size grid, empty batch) are zeros of the right shape, and
/// far-away grids read only padding.
#[test]
fn empty_and_fully_padded_outputs() -> Result<()> {
    let dev = Device::Cpu;
    for (path, f) in PATHS {
        let out = f(
            &Tensor::zeros((2, 0, 3, 3), DType::F32, &dev)?,
            &Tensor::zeros((2, 4, 5, 2), DType::F32, &dev)?,
            true,
        )?;
        assert_eq!(out.dims(), &[2, 0, 4, 5], "{path}");
        let out = f(
            &Tensor::ones((2, 3, 3, 3), DType::F32, &dev)?,
            &Tensor::zeros((2, 0, 5, 2), DType::F32, &dev)?,
            false,
        )?;
        assert_eq!(out.dims(), &[2, 3, 0, 5], "{path}");
        let out = f(
            &Tensor::ones((0, 3, 3, 3), DType::F32, &dev)?,
            &Tensor::zeros((0, 2, 2, 2), DType::F32, &dev)?,
            false,
        )?;
        assert_eq!(out.dims(), &[0, 3, 2, 2], "{path}");
        let far = Tensor::from_vec(
            vec![5f32, 5., -7., 0., f32::INFINITY, 0., 0., -1e30],
            (1, 2, 2, 2),
            &dev,
        )?;
        let out = f(&Tensor::ones((1, 2, 3, 3), DType::F32, &dev)?, &far, false)?;
        let v = out.flatten_all()?.to_vec1::<f32>()?;
        assert!(
            v.iter().all(|&x| x == 0.0),
            "{path}: far points must read zeros, got {v:?}"
        );
    }
    Ok(())
}

fn expect_err(r: Result<Tensor>, op: &str, needles: &[&str]) {
    match r {
        Ok(t) => panic!("expected an error from {op}, got a tensor {:?}", t.dims()),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("{op}:")),
                "error does not name {op}: {msg}"
            );
            for n in needles {
                assert!(msg.contains(n), "error lacks {n:?}: {msg}");
            }
        }
    }
}

#[test]
fn grid_sample_rejects_bad_arguments() -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::zeros((2, 3, 5, 7), DType::F32, &dev)?;
    let g = Tensor::zeros((2, 4, 6, 2), DType::F32, &dev)?;
    for (_, f) in PATHS {
        let x3 = Tensor::zeros((3, 5, 7), DType::F32, &dev)?;
        expect_err(f(&x3, &g, true), "grid_sample", &["[3, 5, 7]"]);
        let g3 = Tensor::zeros((2, 24, 2), DType::F32, &dev)?;
        expect_err(
            f(&x, &g3, true),
            "grid_sample",
            &["[2, 24, 2]", "[2, 3, 5, 7]"],
        );
        let g3 = Tensor::zeros((2, 4, 6, 3), DType::F32, &dev)?;
        expect_err(
            f(&x, &g3, false),
            "grid_sample",
            &["[2, 4, 6, 3]", "last dimension"],
        );
        let g1 = Tensor::zeros((1, 4, 6, 2), DType::F32, &dev)?;
        expect_err(
            f(&x, &g1, false),
            "grid_sample",
            &["[1, 4, 6, 2]", "[2, 3, 5, 7]", "batch"],
        );
        let x0 = Tensor::zeros((2, 3, 0, 7), DType::F32, &dev)?;
        expect_err(f(&x0, &g, false), "grid_sample", &["[2, 3, 0, 7]"]);
        let xd = Tensor::zeros((2, 3, 5, 7), DType::F64, &dev)?;
        expect_err(f(&xd, &g, false), "grid_sample", &["F64", "[2, 3, 5, 7]"]);
        let gd = Tensor::zeros((2, 4, 6, 2), DType::F16, &dev)?;
        expect_err(f(&x, &gd, false), "grid_sample", &["F16", "[2, 4, 6, 2]"]);
    }
    Ok(())
}

#[test]
fn affine_grid_rejects_bad_arguments() -> Result<()> {
    let dev = Device::Cpu;
    let theta = Tensor::zeros((2, 2, 3), DType::F32, &dev)?;
    expect_err(
        affine_grid(
            &Tensor::zeros((2, 3, 3), DType::F32, &dev)?,
            (2, 1, 4, 4),
            true,
        ),
        "affine_grid",
        &["[2, 3, 3]"],
    );
    expect_err(
        affine_grid(
            &Tensor::zeros((2, 6), DType::F32, &dev)?,
            (2, 1, 4, 4),
            true,
        ),
        "affine_grid",
        &["[2, 6]"],
    );
    expect_err(
        affine_grid(&theta, (3, 1, 4, 4), true),
        "affine_grid",
        &["(3, 1, 4, 4)", "[2, 2, 3]"],
    );
    expect_err(
        affine_grid(&theta, (2, 1, 0, 4), false),
        "affine_grid",
        &["(2, 1, 0, 4)"],
    );
    expect_err(
        affine_grid(&theta, (2, 1, 4, 0), false),
        "affine_grid",
        &["(2, 1, 4, 0)"],
    );
    expect_err(
        affine_grid(&theta.to_dtype(DType::F64)?, (2, 1, 4, 4), false),
        "affine_grid",
        &["F64", "[2, 2, 3]"],
    );
    // an empty batch is fine
    let g = affine_grid(
        &Tensor::zeros((0, 2, 3), DType::F32, &dev)?,
        (0, 1, 4, 5),
        false,
    )?;
    assert_eq!(g.dims(), &[0, 4, 5, 2]);
    // a 1x1 output sits at the centre (0, 0) under both conventions, as in PyTorch, so the grid
    // is the translation column of θ
    let t = Tensor::new(&[[[1f32, 0., 0.3], [0., 1., 0.1]]], &dev)?;
    for ac in [true, false] {
        let g = affine_grid(&t, (1, 1, 1, 1), ac)?;
        assert_eq!(
            g.flatten_all()?.to_vec1::<f32>()?,
            vec![0.3, 0.1],
            "align_corners={ac}"
        );
    }
    Ok(())
}

/// Timing of both paths (forward + backward); run with
/// `cargo test --profile test -p vssl-core --test grid -- --ignored --nocapture bench`.
#[test]
#[ignore]
fn bench_grid_sample() -> Result<()> {
    for &(n, c, h, w, ho, wo) in &[(8, 256, 32, 32, 16, 16), (8, 64, 64, 64, 64, 64)] {
        let input = Var::from_tensor(&lcg(&[n, c, h, w], 5, -1.0, 1.0)?)?;
        let grid = Var::from_tensor(&lcg(&[n, ho, wo, 2], 6, -1.1, 1.1)?)?;
        let wgt = lcg(&[n, c, ho, wo], 7, -1.0, 1.0)?;
        for (path, f) in PATHS {
            let mut best = (f64::MAX, f64::MAX);
            for _ in 0..5 {
                let t0 = std::time::Instant::now();
                let out = f(input.as_tensor(), grid.as_tensor(), false)?;
                let t1 = t0.elapsed().as_secs_f64();
                let grads = (out * &wgt)?.sum_all()?.backward()?;
                let t2 = t0.elapsed().as_secs_f64();
                assert!(grads.get(grid.as_tensor()).is_some());
                best = (best.0.min(t1), best.1.min(t2 - t1));
            }
            println!(
                "input {:?} grid {:?} {path}: forward {:.2} ms, backward {:.2} ms",
                (n, c, h, w),
                (n, ho, wo, 2),
                best.0 * 1e3,
                best.1 * 1e3
            );
        }
    }
    Ok(())
}

/// At a pixel centre the gradient to the grid is PyTorch's one-sided difference towards +x:
/// input row [0, 1, 10] sampled at pixel 1 (gx = 0, align_corners) gives d/dx = 10 − 1 = 9
/// pixels, times d(pixel)/d(gx) = (W − 1) / 2 = 1; at the last pixel (gx = 1) only the left
/// tap is inside, so d/dx = 0 − 10 = −10 (the padded right neighbour reads zero).
#[test]
fn grid_gradient_at_pixel_centres_follows_floor() -> Result<()> {
    let dev = Device::Cpu;
    let input = Tensor::new(&[0f32, 1., 10.], &dev)?.reshape((1, 1, 1, 3))?;
    for (path, f) in PATHS {
        let grid =
            Var::from_tensor(&Tensor::new(&[0f32, 0., 1., 0.], &dev)?.reshape((1, 1, 2, 2))?)?;
        let out = f(&input, grid.as_tensor(), true)?;
        assert_eq!(
            out.flatten_all()?.to_vec1::<f32>()?,
            vec![1.0, 10.0],
            "{path}"
        );
        let grads = out.sum_all()?.backward()?;
        let gg = grads
            .get(grid.as_tensor())
            .ok_or_else(|| vssl_core::Error::op("test", "no grid gradient"))?;
        // y: H = 1, so d(pixel)/d(gy) = 0
        assert_eq!(
            gg.flatten_all()?.to_vec1::<f32>()?,
            vec![9.0, 0.0, -10.0, 0.0],
            "{path}"
        );
    }
    Ok(())
}
