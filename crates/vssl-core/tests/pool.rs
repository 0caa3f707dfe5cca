//! Golden tests of `max_pool2d` (CPU kernel) and `max_pool2d_portable` against PyTorch
//! (`tests/golden/pool.py`), plus error and edge cases.

use candle_core::{DType, Device, Tensor, Var};
use vssl_core::ops::pool::{max_pool2d, max_pool2d_portable};
use vssl_core::testing::{Golden, Tolerance, assert_close};
use vssl_core::{Error, Result};

type PoolFn = fn(&Tensor, (usize, usize), (usize, usize), (usize, usize)) -> Result<Tensor>;

const CASES: &[&str] = &[
    "k3s2p1",
    "k2s2p0",
    "k3s1p1",
    "k32s21p10",
    "k2s1p1",
    "k1s1p0",
    "k3s3p0_odd",
    "ties_k3s2p1",
    "ties_k3s1p1",
    "neg_k3s2p1",
];

fn run_case(g: &Golden, case: &str, f: PoolFn, label: &str) -> Result<()> {
    let cfg = g.get(&format!("{case}.cfg"))?.to_vec1::<i64>()?;
    let c: Vec<usize> = cfg.iter().map(|&v| v as usize).collect();
    let x = Var::from_tensor(&g.f32(&format!("{case}.x"))?)?;
    let w = g.f32(&format!("{case}.w"))?;
    let out = f(x.as_tensor(), (c[0], c[1]), (c[2], c[3]), (c[4], c[5]))?;
    assert_close(
        &format!("{label} {case} out"),
        &out,
        &g.get(&format!("{case}.out"))?,
        Tolerance::SINGLE_OP,
    )?;
    let grads = (out * &w)?.sum_all()?.backward()?;
    let dx = grads
        .get(x.as_tensor())
        .ok_or_else(|| Error::op("test", format!("{label} {case}: no gradient for x")))?;
    assert_close(
        &format!("{label} {case} dx"),
        dx,
        &g.get(&format!("{case}.dx"))?,
        Tolerance::SINGLE_OP,
    )?;
    Ok(())
}

#[test]
fn cpu_kernel_matches_pytorch() -> Result<()> {
    let g = Golden::workspace("pool")?;
    for case in CASES {
        run_case(&g, case, max_pool2d, "cpu")?;
    }
    Ok(())
}

#[test]
fn portable_matches_pytorch() -> Result<()> {
    let g = Golden::workspace("pool")?;
    for case in CASES {
        run_case(&g, case, max_pool2d_portable, "portable")?;
    }
    Ok(())
}

#[test]
fn ties_go_to_the_first_maximum() -> Result<()> {
    // A constant 2x2 input with a 2x2 window: the whole gradient goes to the top-left element.
    let dev = Device::Cpu;
    for f in [max_pool2d as PoolFn, max_pool2d_portable] {
        let x = Var::from_tensor(&Tensor::ones((1, 1, 2, 2), DType::F32, &dev)?)?;
        let y = f(x.as_tensor(), (2, 2), (1, 1), (0, 0))?;
        let grads = y.sum_all()?.backward()?;
        let dx = grads
            .get(x.as_tensor())
            .ok_or_else(|| Error::op("test", "no gradient"))?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(dx, vec![1.0, 0.0, 0.0, 0.0]);
    }
    Ok(())
}

#[test]
fn nan_propagates_on_cpu_kernel() -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::new(&[[[[1.0f32, f32::NAN], [3.0, 2.0]]]], &dev)?;
    let y = max_pool2d(&x, (2, 2), (2, 2), (0, 0))?
        .flatten_all()?
        .to_vec1::<f32>()?;
    assert!(y[0].is_nan(), "{y:?}");
    Ok(())
}

/// PyTorch 2.9.1 (CPU, f32 and f64) on this input with k3 s1 p1 gives these outputs and this
/// gradient (checked by hand with `F.max_pool2d`): a NaN window outputs NaN and its gradient
/// goes to the window's last NaN.
#[test]
fn nan_gradient_goes_to_the_last_nan_like_pytorch() -> Result<()> {
    let nan = f32::NAN;
    let x = Var::from_tensor(&Tensor::new(
        &[[[[nan, 5., nan], [1., 2., 9.], [0., 0., 0.]]]],
        &Device::Cpu,
    )?)?;
    let y = max_pool2d(x.as_tensor(), (3, 3), (1, 1), (1, 1))?;
    let yv = y.flatten_all()?.to_vec1::<f32>()?;
    assert!(yv[..6].iter().all(|v| v.is_nan()), "{yv:?}");
    assert_eq!(&yv[6..], &[2., 9., 9.]);
    let grads = y.sum_all()?.backward()?;
    let dx = grads
        .get(x.as_tensor())
        .ok_or_else(|| Error::op("test", "no gradient"))?
        .flatten_all()?
        .to_vec1::<f32>()?;
    assert_eq!(dx, vec![2., 0., 4., 0., 1., 2., 0., 0., 0.]);
    Ok(())
}

#[test]
fn strided_input_is_accepted() -> Result<()> {
    let g = Golden::workspace("pool")?;
    let x = g.f32("k3s2p1.x")?;
    // Same values through a non-contiguous view.
    let xt = x.transpose(2, 3)?.contiguous()?.transpose(2, 3)?;
    assert!(!xt.is_contiguous());
    let out = max_pool2d(&xt, (3, 3), (2, 2), (1, 1))?;
    assert_close("strided", &out, &g.get("k3s2p1.out")?, Tolerance::SINGLE_OP)?;
    Ok(())
}

fn expect_err(r: Result<Tensor>, needles: &[&str]) {
    match r {
        Ok(t) => panic!("expected an error, got a tensor of shape {:?}", t.dims()),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("max_pool2d"), "{msg}");
            for n in needles {
                assert!(msg.contains(n), "{msg:?} should mention {n:?}");
            }
        }
    }
}

#[test]
fn errors_name_the_op_and_shapes() -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::zeros((1, 2, 5, 5), DType::F32, &dev)?;
    for f in [max_pool2d as PoolFn, max_pool2d_portable] {
        expect_err(f(&x, (3, 3), (2, 2), (2, 1)), &["padding", "[1, 2, 5, 5]"]);
        expect_err(f(&x, (0, 3), (1, 1), (0, 0)), &["kernel", "[1, 2, 5, 5]"]);
        expect_err(f(&x, (3, 3), (0, 1), (0, 0)), &["stride", "[1, 2, 5, 5]"]);
        expect_err(
            f(&x, (6, 3), (1, 1), (0, 0)),
            &["output size", "[1, 2, 5, 5]"],
        );
        let x3 = Tensor::zeros((2, 5, 5), DType::F32, &dev)?;
        expect_err(f(&x3, (3, 3), (1, 1), (0, 0)), &["[2, 5, 5]"]);
        let xi = Tensor::zeros((1, 1, 5, 5), DType::F64, &dev)?;
        expect_err(f(&xi, (3, 3), (1, 1), (0, 0)), &["f32", "[1, 1, 5, 5]"]);
    }
    Ok(())
}

#[test]
fn empty_batch_gives_empty_output() -> Result<()> {
    let x = Tensor::zeros((0, 3, 7, 7), DType::F32, &Device::Cpu)?;
    assert_eq!(
        max_pool2d(&x, (3, 3), (2, 2), (1, 1))?.dims(),
        &[0, 3, 4, 4]
    );
    Ok(())
}

/// Timing of the ResNet-stem pooling (3x3 / 2 / 1), forward and backward (best of 3), on the
/// CPU kernel against the portable path. Run with `--ignored --nocapture`.
#[test]
#[ignore = "timing, not a check"]
fn bench_stem_pool() -> Result<()> {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1., (4, 64, 160, 160), &dev)?)?;
    for (label, f, reps) in [
        ("cpu", max_pool2d as PoolFn, 5),
        ("portable", max_pool2d_portable, 1),
    ] {
        let (mut fwd, mut bwd) = (f64::MAX, f64::MAX);
        for _ in 0..reps {
            let t0 = std::time::Instant::now();
            let y = f(x.as_tensor(), (3, 3), (2, 2), (1, 1))?;
            let g = y.ones_like()?;
            let t1 = std::time::Instant::now();
            let _ = (y * g)?.sum_all()?.backward()?;
            let t2 = std::time::Instant::now();
            fwd = fwd.min((t1 - t0).as_secs_f64());
            bwd = bwd.min((t2 - t1).as_secs_f64());
        }
        println!(
            "{label}: x {:?} fwd {fwd:.4}s bwd(incl. mul+sum) {bwd:.4}s",
            x.dims()
        );
    }
    // Baseline: the backward of `(y * g).sum()` alone, on a leaf of the output's shape.
    let y = Var::from_tensor(&max_pool2d(x.as_tensor(), (3, 3), (2, 2), (1, 1))?)?;
    let mut base = f64::MAX;
    for _ in 0..5 {
        let g = y.ones_like()?;
        let t0 = std::time::Instant::now();
        let _ = (y.as_tensor() * g)?.sum_all()?.backward()?;
        base = base.min(t0.elapsed().as_secs_f64());
    }
    println!("baseline: mul+sum backward alone {base:.4}s");
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t0 = std::time::Instant::now();
        let _ = x.as_tensor().max_pool2d_with_stride(3, 2)?;
        best = best.min(t0.elapsed().as_secs_f64());
    }
    println!("candle max_pool2d_with_stride (no padding, fwd only): {best:.4}s");
    Ok(())
}
