//! Golden tests of `reflection_pad2d` (CPU kernel) and `reflection_pad2d_portable` against
//! PyTorch (`tests/golden/pad.py`), plus error and edge cases.

use candle_core::{DType, Device, Tensor, Var};
use vssl_core::ops::pad::{reflection_pad2d, reflection_pad2d_portable};
use vssl_core::testing::{Golden, Tolerance, assert_close};
use vssl_core::{Error, Result};

type PadFn = fn(&Tensor, (usize, usize, usize, usize)) -> Result<Tensor>;

const CASES: &[&str] = &[
    "sym1_r4",
    "asym_r4",
    "max_r4",
    "zero_r4",
    "w_only_r4",
    "sym2_r3",
    "asym_r3",
    "h2w2_r3",
];

fn run_case(g: &Golden, case: &str, f: PadFn, label: &str) -> Result<()> {
    let p: Vec<usize> = g
        .get(&format!("{case}.pad"))?
        .to_vec1::<i64>()?
        .iter()
        .map(|&v| v as usize)
        .collect();
    let x = Var::from_tensor(&g.f32(&format!("{case}.x"))?)?;
    let w = g.f32(&format!("{case}.w"))?;
    let out = f(x.as_tensor(), (p[0], p[1], p[2], p[3]))?;
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
    let g = Golden::workspace("pad")?;
    for case in CASES {
        run_case(&g, case, reflection_pad2d, "cpu")?;
    }
    Ok(())
}

#[test]
fn portable_matches_pytorch() -> Result<()> {
    let g = Golden::workspace("pad")?;
    for case in CASES {
        run_case(&g, case, reflection_pad2d_portable, "portable")?;
    }
    Ok(())
}

#[test]
fn small_example_by_hand() -> Result<()> {
    let x = Tensor::new(&[[[1f32, 2., 3., 4.]]], &Device::Cpu)?;
    for f in [reflection_pad2d as PadFn, reflection_pad2d_portable] {
        let y = f(&x, (2, 1, 0, 0))?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(y, vec![3., 2., 1., 2., 3., 4., 3.]);
    }
    Ok(())
}

#[test]
fn strided_input_is_accepted() -> Result<()> {
    let g = Golden::workspace("pad")?;
    let x = g.f32("asym_r4.x")?;
    let xt = x.transpose(2, 3)?.contiguous()?.transpose(2, 3)?;
    assert!(!xt.is_contiguous());
    let out = reflection_pad2d(&xt, (2, 0, 1, 3))?;
    assert_close(
        "strided",
        &out,
        &g.get("asym_r4.out")?,
        Tolerance::SINGLE_OP,
    )?;
    Ok(())
}

fn expect_err(r: Result<Tensor>, needles: &[&str]) {
    match r {
        Ok(t) => panic!("expected an error, got a tensor of shape {:?}", t.dims()),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("reflection_pad2d"), "{msg}");
            for n in needles {
                assert!(msg.contains(n), "{msg:?} should mention {n:?}");
            }
        }
    }
}

#[test]
fn errors_name_the_op_and_shapes() -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::zeros((1, 2, 4, 5), DType::F32, &dev)?;
    for f in [reflection_pad2d as PadFn, reflection_pad2d_portable] {
        expect_err(f(&x, (5, 0, 0, 0)), &["width 5", "[1, 2, 4, 5]"]);
        expect_err(f(&x, (0, 5, 0, 0)), &["width 5", "[1, 2, 4, 5]"]);
        expect_err(f(&x, (0, 0, 4, 0)), &["height 4", "[1, 2, 4, 5]"]);
        expect_err(f(&x, (0, 0, 0, 7)), &["height 4", "[1, 2, 4, 5]"]);
        let x2 = Tensor::zeros((4, 5), DType::F32, &dev)?;
        expect_err(f(&x2, (1, 1, 1, 1)), &["[4, 5]"]);
        let x5 = Tensor::zeros((1, 1, 1, 4, 5), DType::F32, &dev)?;
        expect_err(f(&x5, (1, 1, 1, 1)), &["[1, 1, 1, 4, 5]"]);
        let xd = Tensor::zeros((1, 4, 5), DType::F64, &dev)?;
        expect_err(f(&xd, (1, 1, 1, 1)), &["f32", "[1, 4, 5]"]);
    }
    Ok(())
}

#[test]
fn empty_batch_gives_empty_output() -> Result<()> {
    let x = Tensor::zeros((0, 3, 4, 4), DType::F32, &Device::Cpu)?;
    assert_eq!(reflection_pad2d(&x, (1, 2, 3, 0))?.dims(), &[0, 3, 7, 7]);
    Ok(())
}

/// Timing of the CPU kernel against the portable `index_select` path, forward and backward
/// (best of 3). Run with `--ignored --nocapture`.
#[test]
#[ignore = "timing, not a check"]
fn bench_pad() -> Result<()> {
    let x = Var::from_tensor(&Tensor::randn(0f32, 1., (8, 64, 80, 80), &Device::Cpu)?)?;
    for (label, f) in [
        ("cpu", reflection_pad2d as PadFn),
        ("portable", reflection_pad2d_portable),
    ] {
        let (mut fwd, mut bwd) = (f64::MAX, f64::MAX);
        for _ in 0..3 {
            let t0 = std::time::Instant::now();
            let y = f(x.as_tensor(), (3, 3, 3, 3))?;
            let g = y.ones_like()?;
            let t1 = std::time::Instant::now();
            let _ = (y * g)?.sum_all()?.backward()?;
            let t2 = std::time::Instant::now();
            fwd = fwd.min((t1 - t0).as_secs_f64());
            bwd = bwd.min((t2 - t1).as_secs_f64());
        }
        println!(
            "{label}: x {:?} pad 3 fwd {fwd:.4}s bwd(incl. mul+sum) {bwd:.4}s",
            x.dims()
        );
    }
    Ok(())
}
