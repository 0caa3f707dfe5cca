//! `local_affinity` / `local_aggregate` (CPU kernels and portable paths) against PyTorch golden
//! values (tests/golden/local.py), plus errors and edge cases.

use candle_core::{DType, Device, Tensor, Var};
use vssl_core::ops::local::{
    LocalWindow, local_affinity, local_affinity_portable, local_aggregate, local_aggregate_portable,
};
use vssl_core::testing::{Golden, Tolerance, assert_close};
use vssl_core::{Error, Result};

const AFF_CASES: &[&str] = &[
    "aff_r2",
    "aff_r2_euc",
    "aff_r0",
    "aff_r4_small",
    "aff_r4_small_euc",
    "aff_r3_c17_euc",
    "aff_r1_c19",
];
const AGG_CASES: &[&str] = &[
    "agg_r2",
    "agg_r2_euc",
    "agg_r0",
    "agg_r4_small",
    "agg_r1_d9_raw",
];

type AffFn = fn(&Tensor, &Tensor, LocalWindow) -> Result<Tensor>;
type AggFn = fn(&Tensor, &Tensor, usize) -> Result<Tensor>;

fn grad_of(grads: &candle_core::backprop::GradStore, v: &Var, what: &str) -> Result<Tensor> {
    grads
        .get(v.as_tensor())
        .cloned()
        .ok_or_else(|| Error::op("test", format!("no gradient for {what}")))
}

fn check_affinity(f: AffFn, path: &str) -> Result<()> {
    let g = Golden::workspace("local")?;
    for case in AFF_CASES {
        let a = Var::from_tensor(&g.f32(&format!("{case}.a"))?)?;
        let b = Var::from_tensor(&g.f32(&format!("{case}.b"))?)?;
        let radius = g.scalar(&format!("{case}.r"))? as usize;
        let euclidean = g.scalar(&format!("{case}.euclidean"))? != 0.0;
        let out = f(
            a.as_tensor(),
            b.as_tensor(),
            LocalWindow { radius, euclidean },
        )?;
        assert_close(
            &format!("{path} {case} out"),
            &out,
            &g.get(&format!("{case}.out"))?,
            Tolerance::SINGLE_OP,
        )?;
        // The upstream gradient is 0 on the -inf entries; the loss itself is NaN there
        // (-inf * 0) but the gradients must not be.
        let w = g.f32(&format!("{case}.w"))?;
        let grads = (out * w)?.sum_all()?.backward()?;
        assert_close(
            &format!("{path} {case} grad_a"),
            &grad_of(&grads, &a, "a")?,
            &g.get(&format!("{case}.grad_a"))?,
            Tolerance::SINGLE_OP,
        )?;
        assert_close(
            &format!("{path} {case} grad_b"),
            &grad_of(&grads, &b, "b")?,
            &g.get(&format!("{case}.grad_b"))?,
            Tolerance::SINGLE_OP,
        )?;
    }
    Ok(())
}

fn check_aggregate(f: AggFn, path: &str) -> Result<()> {
    let g = Golden::workspace("local")?;
    for case in AGG_CASES {
        let wts = Var::from_tensor(&g.f32(&format!("{case}.weights"))?)?;
        let vals = Var::from_tensor(&g.f32(&format!("{case}.values"))?)?;
        let radius = g.scalar(&format!("{case}.r"))? as usize;
        let out = f(wts.as_tensor(), vals.as_tensor(), radius)?;
        assert_close(
            &format!("{path} {case} out"),
            &out,
            &g.get(&format!("{case}.out"))?,
            Tolerance::SINGLE_OP,
        )?;
        let w = g.f32(&format!("{case}.w"))?;
        let grads = (out * w)?.sum_all()?.backward()?;
        assert_close(
            &format!("{path} {case} grad_weights"),
            &grad_of(&grads, &wts, "weights")?,
            &g.get(&format!("{case}.grad_weights"))?,
            Tolerance::SINGLE_OP,
        )?;
        assert_close(
            &format!("{path} {case} grad_values"),
            &grad_of(&grads, &vals, "values")?,
            &g.get(&format!("{case}.grad_values"))?,
            Tolerance::SINGLE_OP,
        )?;
    }
    Ok(())
}

#[test]
fn local_affinity_cpu_kernel_matches_torch() -> Result<()> {
    check_affinity(local_affinity, "local_affinity")
}

#[test]
fn local_affinity_portable_matches_torch() -> Result<()> {
    check_affinity(local_affinity_portable, "local_affinity_portable")
}

#[test]
fn local_aggregate_cpu_kernel_matches_torch() -> Result<()> {
    check_aggregate(local_aggregate, "local_aggregate")
}

#[test]
fn local_aggregate_portable_matches_torch() -> Result<()> {
    check_aggregate(local_aggregate_portable, "local_aggregate_portable")
}

/// Softmax over the window then aggregation: the CRW label-propagation step, through both paths,
/// with gradients all the way back to the features (the kernels' backward composes with candle's).
#[test]
fn affinity_softmax_aggregate_chain_agrees_between_paths() -> Result<()> {
    let dev = Device::Cpu;
    let a0 = Tensor::randn(0f32, 1., (2, 6, 5, 7), &dev)?;
    let b0 = Tensor::randn(0f32, 1., (2, 6, 5, 7), &dev)?;
    let v0 = Tensor::randn(0f32, 1., (2, 3, 5, 7), &dev)?;
    let up = Tensor::randn(0f32, 1., (2, 3, 5, 7), &dev)?;
    let window = LocalWindow::euclidean(3);
    let run = |aff: AffFn, agg: AggFn| -> Result<Vec<Tensor>> {
        let (a, b, v) = (
            Var::from_tensor(&a0)?,
            Var::from_tensor(&b0)?,
            Var::from_tensor(&v0)?,
        );
        let s = aff(a.as_tensor(), b.as_tensor(), window)?;
        let p = candle_nn::ops::softmax(&s, 1)?;
        let out = agg(&p, v.as_tensor(), window.radius)?;
        let grads = out.mul(&up)?.sum_all()?.backward()?;
        Ok(vec![
            out,
            grad_of(&grads, &a, "a")?,
            grad_of(&grads, &b, "b")?,
            grad_of(&grads, &v, "v")?,
        ])
    };
    let fast = run(local_affinity, local_aggregate)?;
    let port = run(local_affinity_portable, local_aggregate_portable)?;
    for (i, (f, p)) in fast.iter().zip(&port).enumerate() {
        assert_close(&format!("chain {i}"), f, p, Tolerance::COMPOSITE)?;
    }
    Ok(())
}

#[test]
fn radius_zero_is_the_position_itself() -> Result<()> {
    let dev = Device::Cpu;
    let a = Tensor::randn(0f32, 1., (1, 4, 3, 2), &dev)?;
    let b = Tensor::randn(0f32, 1., (1, 4, 3, 2), &dev)?;
    let out = local_affinity(&a, &b, LocalWindow::square(0))?;
    let want = (&a * &b)?.sum_keepdim(1)?;
    assert_close("r0", &out, &want, Tolerance::SINGLE_OP)?;
    let w = Tensor::randn(0f32, 1., (1, 1, 3, 2), &dev)?;
    let agg = local_aggregate(&w, &a, 0)?;
    assert_close("r0 agg", &agg, &a.broadcast_mul(&w)?, Tolerance::SINGLE_OP)?;
    Ok(())
}

#[test]
fn masked_entries_are_neg_infinity_and_topk_skips_them() -> Result<()> {
    let dev = Device::Cpu;
    // 2x3 image, radius 1: the corner (0, 0) has 4 in-image offsets out of 9.
    let a = Tensor::randn(0f32, 1., (1, 2, 2, 3), &dev)?;
    let out = local_affinity(&a, &a, LocalWindow::square(1))?;
    let corner = out
        .narrow(2, 0, 1)?
        .narrow(3, 0, 1)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let finite: Vec<usize> = (0..9).filter(|&k| corner[k].is_finite()).collect();
    assert_eq!(finite, vec![4, 5, 7, 8]);
    assert!(
        corner
            .iter()
            .all(|v| v.is_finite() || *v == f32::NEG_INFINITY)
    );
    let (_, idx) = vssl_core::ops::topk::topk(&out, 4, 1)?;
    let mut picked = idx
        .narrow(2, 0, 1)?
        .narrow(3, 0, 1)?
        .flatten_all()?
        .to_vec1::<u32>()?;
    picked.sort_unstable();
    assert_eq!(picked, vec![4, 5, 7, 8]);
    Ok(())
}

#[test]
fn non_contiguous_inputs() -> Result<()> {
    let dev = Device::Cpu;
    let a = Tensor::randn(0f32, 1., (2, 5, 4, 3), &dev)?.transpose(2, 3)?; // [2, 5, 3, 4]
    let b = Tensor::randn(0f32, 1., (2, 3, 4, 5), &dev)?.permute((0, 3, 2, 1))?; // [2, 5, 4, 3]
    let b = b.transpose(2, 3)?; // [2, 5, 3, 4]
    let w = LocalWindow::square(1);
    let f = local_affinity(&a, &b, w)?;
    let p = local_affinity_portable(&a, &b, w)?;
    assert_close("non-contiguous affinity", &f, &p, Tolerance::SINGLE_OP)?;
    let wt = Tensor::randn(0f32, 1., (2, 3, 4, 9), &dev)?.permute((0, 3, 1, 2))?;
    let f = local_aggregate(&wt, &a, 1)?;
    let p = local_aggregate_portable(&wt, &a, 1)?;
    assert_close("non-contiguous aggregate", &f, &p, Tolerance::SINGLE_OP)?;
    Ok(())
}

#[test]
fn empty_images_give_empty_outputs() -> Result<()> {
    let dev = Device::Cpu;
    let a = Tensor::zeros((2, 3, 0, 4), DType::F32, &dev)?;
    assert_eq!(
        local_affinity(&a, &a, LocalWindow::square(1))?.dims(),
        &[2, 9, 0, 4]
    );
    let w = Tensor::zeros((2, 9, 0, 4), DType::F32, &dev)?;
    assert_eq!(local_aggregate(&w, &a, 1)?.dims(), &[2, 3, 0, 4]);
    Ok(())
}

fn expect_err(r: Result<Tensor>, op: &str, needles: &[&str]) {
    match r {
        Ok(t) => panic!(
            "expected a {op} error mentioning {needles:?}, got shape {:?}",
            t.dims()
        ),
        Err(e) => {
            assert!(matches!(&e, Error::Op { op: o, .. } if *o == op), "{e:?}");
            let msg = e.to_string();
            for n in needles {
                assert!(msg.contains(n), "{msg:?} should mention {n:?}");
            }
        }
    }
}

#[test]
fn affinity_errors_name_the_op_and_shapes() -> Result<()> {
    let dev = Device::Cpu;
    let a = Tensor::zeros((2, 5, 7, 9), DType::F32, &dev)?;
    for f in [local_affinity as AffFn, local_affinity_portable] {
        let op = "local_affinity";
        let b = Tensor::zeros((2, 4, 7, 9), DType::F32, &dev)?;
        expect_err(
            f(&a, &b, LocalWindow::square(1)),
            op,
            &["[2, 5, 7, 9]", "[2, 4, 7, 9]"],
        );
        let b = Tensor::zeros((1, 5, 7, 9), DType::F32, &dev)?;
        expect_err(f(&a, &b, LocalWindow::square(1)), op, &["[1, 5, 7, 9]"]);
        let b = Tensor::zeros((2, 5, 7, 8), DType::F32, &dev)?;
        expect_err(f(&a, &b, LocalWindow::square(1)), op, &["[2, 5, 7, 8]"]);
        let b3 = Tensor::zeros((5, 7, 9), DType::F32, &dev)?;
        expect_err(
            f(&a, &b3, LocalWindow::square(1)),
            op,
            &["rank 4", "[5, 7, 9]"],
        );
        expect_err(
            f(&b3, &a, LocalWindow::square(1)),
            op,
            &["rank 4", "[5, 7, 9]"],
        );
        let ai = Tensor::zeros((2, 5, 7, 9), DType::U8, &dev)?;
        expect_err(
            f(&ai, &a, LocalWindow::square(1)),
            op,
            &["f32", "[2, 5, 7, 9]"],
        );
        expect_err(
            f(&a, &a, LocalWindow::euclidean(0)),
            op,
            &["radius 0", "[2, 5, 7, 9]"],
        );
        expect_err(
            f(&a, &a, LocalWindow::square(usize::MAX / 2)),
            op,
            &["radius", "overflow"],
        );
        expect_err(f(&a, &a, LocalWindow::square(1 << 31)), op, &["radius"]);
    }
    Ok(())
}

#[test]
fn aggregate_errors_name_the_op_and_shapes() -> Result<()> {
    let dev = Device::Cpu;
    let v = Tensor::zeros((2, 3, 7, 9), DType::F32, &dev)?;
    for f in [local_aggregate as AggFn, local_aggregate_portable] {
        let op = "local_aggregate";
        let w = Tensor::zeros((2, 9, 7, 9), DType::F32, &dev)?;
        expect_err(f(&w, &v, 2), op, &["(2r+1)^2 = 25", "[2, 9, 7, 9]"]);
        let w = Tensor::zeros((1, 9, 7, 9), DType::F32, &dev)?;
        expect_err(f(&w, &v, 1), op, &["[1, 9, 7, 9]", "[2, 3, 7, 9]"]);
        let w = Tensor::zeros((2, 9, 6, 9), DType::F32, &dev)?;
        expect_err(f(&w, &v, 1), op, &["[2, 9, 6, 9]", "[2, 3, 7, 9]"]);
        let w = Tensor::zeros((2, 9, 7, 8), DType::F32, &dev)?;
        expect_err(f(&w, &v, 1), op, &["[2, 9, 7, 8]"]);
        let w3 = Tensor::zeros((9, 7, 9), DType::F32, &dev)?;
        expect_err(f(&w3, &v, 1), op, &["rank 4", "[9, 7, 9]"]);
        let w = Tensor::zeros((2, 9, 7, 9), DType::F64, &dev)?;
        expect_err(f(&w, &v, 1), op, &["f32", "[2, 9, 7, 9]"]);
        let w = Tensor::zeros((2, 9, 7, 9), DType::F32, &dev)?;
        expect_err(f(&w, &v, usize::MAX / 4), op, &["radius", "overflow"]);
    }
    Ok(())
}

/// Peak resident memory of this process (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The issue's memory benchmark, local side: r = 12 on [1, 512, 60, 107] plus top-10 along the
/// window axis. Run each `bench_*_memory` alone (one process each) and compare the peaks:
/// `cargo test --profile test -p vssl-core --test local -- --ignored --nocapture --exact bench_local_memory`
#[test]
#[ignore = "benchmark; run by hand, alone"]
fn bench_local_memory() -> Result<()> {
    let dev = Device::Cpu;
    let a = Tensor::randn(0f32, 1., (1, 512, 60, 107), &dev)?;
    let b = Tensor::randn(0f32, 1., (1, 512, 60, 107), &dev)?;
    let before = peak_rss_mib();
    let t = std::time::Instant::now();
    let aff = local_affinity(&a, &b, LocalWindow::square(12))?;
    let t_aff = t.elapsed().as_secs_f64();
    let (v, _i) = vssl_core::ops::topk::topk(&aff, 10, 1)?;
    let t_all = t.elapsed().as_secs_f64();
    println!(
        "local r=12 + top-10: out {:?}, {:.1} ms affinity, {:.1} ms total; peak RSS {:.1} MiB (inputs loaded: {:.1} MiB)",
        v.dims(),
        t_aff * 1e3,
        t_all * 1e3,
        peak_rss_mib(),
        before
    );
    Ok(())
}

/// The dense side of the memory benchmark: 6420 x 6420 affinity + top-10.
#[test]
#[ignore = "benchmark; run by hand, alone"]
fn bench_dense_memory() -> Result<()> {
    let dev = Device::Cpu;
    let a = Tensor::randn(0f32, 1., (1, 512, 60, 107), &dev)?;
    let b = Tensor::randn(0f32, 1., (1, 512, 60, 107), &dev)?;
    let before = peak_rss_mib();
    let t = std::time::Instant::now();
    let af = a.reshape((512, 6420))?.t()?.contiguous()?;
    let bf = b.reshape((512, 6420))?;
    let dense = af.matmul(&bf)?; // [6420, 6420]
    let (v, _i) = vssl_core::ops::topk::topk(&dense, 10, 1)?;
    println!(
        "dense 6420x6420 + top-10: out {:?}, {:.1} ms; peak RSS {:.1} MiB (inputs loaded: {:.1} MiB)",
        v.dims(),
        t.elapsed().as_secs_f64() * 1e3,
        peak_rss_mib(),
        before
    );
    Ok(())
}

/// Timings at the benchmark size: forward, backward, and aggregation of 64-channel values.
/// `cargo test --profile test -p vssl-core --test local -- --ignored --nocapture --exact bench_local_speed`
#[test]
#[ignore = "benchmark; run by hand"]
fn bench_local_speed() -> Result<()> {
    let dev = Device::Cpu;
    let a = Var::from_tensor(&Tensor::randn(0f32, 1., (1, 512, 60, 107), &dev)?)?;
    let b = Var::from_tensor(&Tensor::randn(0f32, 1., (1, 512, 60, 107), &dev)?)?;
    let v = Var::from_tensor(&Tensor::randn(0f32, 1., (1, 64, 60, 107), &dev)?)?;
    let window = LocalWindow::euclidean(12);
    let t = std::time::Instant::now();
    let aff = local_affinity(a.as_tensor(), b.as_tensor(), window)?;
    let t_fwd = t.elapsed().as_secs_f64();
    let p = candle_nn::ops::softmax(&aff, 1)?;
    let t = std::time::Instant::now();
    let out = local_aggregate(&p, v.as_tensor(), window.radius)?;
    let t_agg = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let grads = out.sqr()?.sum_all()?.backward()?;
    let t_bwd = t.elapsed().as_secs_f64();
    assert!(grads.get(a.as_tensor()).is_some() && grads.get(b.as_tensor()).is_some());
    println!(
        "r=12 euclidean [1,512,60,107]: affinity {:.0} ms, aggregate (D=64) {:.0} ms, backward of softmax+both {:.0} ms",
        t_fwd * 1e3,
        t_agg * 1e3,
        t_bwd * 1e3
    );
    Ok(())
}
