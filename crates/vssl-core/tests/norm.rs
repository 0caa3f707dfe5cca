//! The fused batch normalisation against PyTorch (`tests/golden/norm.py`): output, the gradients
//! of x, weight, bias and residual, the batch statistics, in train and eval mode, with and
//! without the residual and the ReLU, rank 4 (odd sizes) and rank 2, and an input whose mean (50)
//! dwarfs its spread (0.5); on the fused CPU kernel and on the portable path.
//!
//! Tolerance: `Tolerance::COMPOSITE` (rtol 1e-4, atol 1e-6·max): each gradient sums over every
//! value of a channel.

use candle_core::{DType, Device, Tensor, Var};
use vssl_core::Result;
use vssl_core::ops::norm::{BatchNormOutput, Epilogue, NormStats, batch_norm, batch_norm_portable};
use vssl_core::testing::{Golden, Tolerance, assert_close};

const CASES: &[&str] = &[
    "train_relu_res",
    "train_plain",
    "train_relu",
    "train_res",
    "far_mean",
    "eval_relu_res",
    "eval_plain",
    "bn1d_relu",
];

type BnFn = fn(&Tensor, &Tensor, &Tensor, NormStats, f64, Epilogue) -> Result<BatchNormOutput>;

fn check(path: &str, f: BnFn) -> Result<()> {
    let g = Golden::workspace("norm")?;
    let tol = Tolerance::COMPOSITE;
    for case in CASES {
        let key = |k: &str| format!("{case}.{k}");
        let flags = g.f32(&key("flags"))?.to_vec1::<f32>()?;
        let (train, relu, res, eps) = (
            flags[0] > 0.5,
            flags[1] > 0.5,
            flags[2] > 0.5,
            f64::from(flags[3]),
        );
        let x = Var::from_tensor(&g.f32(&key("x"))?)?;
        let w = Var::from_tensor(&g.f32(&key("weight"))?)?;
        let b = Var::from_tensor(&g.f32(&key("bias"))?)?;
        let r = if res {
            Some(Var::from_tensor(&g.f32(&key("residual"))?)?)
        } else {
            None
        };
        let (rm, rv) = (g.f32(&key("running_mean"))?, g.f32(&key("running_var"))?);
        let stats = if train {
            NormStats::Batch
        } else {
            NormStats::Given {
                mean: &rm,
                var: &rv,
            }
        };
        let post = Epilogue {
            residual: r.as_ref().map(|v| v.as_tensor()),
            relu,
        };
        let out = f(
            x.as_tensor(),
            w.as_tensor(),
            b.as_tensor(),
            stats,
            eps,
            post,
        )?;
        let name = |k: &str| format!("{path} {case} {k}");
        assert_close(&name("out"), &out.y, &g.f32(&key("out"))?, tol)?;
        match (&out.batch_stats, train) {
            (Some((m, v)), true) => {
                assert_close(&name("batch_mean"), m, &g.f32(&key("batch_mean"))?, tol)?;
                assert_close(&name("batch_var"), v, &g.f32(&key("batch_var"))?, tol)?;
                // The running update as a caller does it reproduces PyTorch's.
                let n = out.count as f64;
                let new_rm = ((&rm * 0.9)? + (m * 0.1)?)?;
                let new_rv = ((&rv * 0.9)? + (v * (0.1 * n / (n - 1.0)))?)?;
                let want_rm = g.f32(&key("new_running_mean"))?;
                let want_rv = g.f32(&key("new_running_var"))?;
                assert_close(&name("running_mean"), &new_rm, &want_rm, tol)?;
                assert_close(&name("running_var"), &new_rv, &want_rv, tol)?;
            }
            (None, false) => {}
            (s, _) => panic!("{path} {case}: train {train} but batch stats {s:?}"),
        }
        let grads = (&out.y * g.f32(&key("g"))?)?.sum_all()?.backward()?;
        let get = |t: &Tensor, k: &str| -> Result<()> {
            let got = grads
                .get(t)
                .unwrap_or_else(|| panic!("{path} {case}: no gradient for {k}"));
            assert_close(&name(k), got, &g.f32(&key(k))?, tol)?;
            Ok(())
        };
        get(x.as_tensor(), "grad_x")?;
        get(w.as_tensor(), "grad_weight")?;
        get(b.as_tensor(), "grad_bias")?;
        if let Some(r) = &r {
            get(r.as_tensor(), "grad_residual")?;
        }
    }
    Ok(())
}

#[test]
fn fused_kernel_matches_pytorch() -> Result<()> {
    check("kernel", batch_norm)
}

#[test]
fn portable_path_matches_pytorch() -> Result<()> {
    check("portable", batch_norm_portable)
}

#[test]
fn constants_get_no_gradient_but_pass_one() -> Result<()> {
    // Frozen affine parameters and a constant residual: only x gets a gradient, and it equals
    // the one computed with everything trainable.
    let g = Golden::workspace("norm")?;
    let x = Var::from_tensor(&g.f32("train_relu_res.x")?)?;
    let (w, b, r) = (
        g.f32("train_relu_res.weight")?,
        g.f32("train_relu_res.bias")?,
        g.f32("train_relu_res.residual")?,
    );
    let post = Epilogue {
        residual: Some(&r),
        relu: true,
    };
    let out = batch_norm(x.as_tensor(), &w, &b, NormStats::Batch, 1e-5, post)?;
    let grads = (out.y * g.f32("train_relu_res.g")?)?
        .sum_all()?
        .backward()?;
    assert!(grads.get(&w).is_none() && grads.get(&b).is_none() && grads.get(&r).is_none());
    assert_close(
        "frozen grad_x",
        grads.get(x.as_tensor()).expect("grad x"),
        &g.f32("train_relu_res.grad_x")?,
        Tolerance::COMPOSITE,
    )?;
    Ok(())
}

#[test]
fn large_planes_match_the_portable_path() -> Result<()> {
    // Planes longer than the f32 accumulation block, a remainder of the 8-lane loop, and a
    // channel count that does not divide the rayon split.
    let dev = Device::Cpu;
    let x = Var::from_tensor(&(Tensor::randn(0f32, 1.0, (3, 7, 61, 43), &dev)? + 3.0)?)?;
    let w = Var::from_tensor(&Tensor::randn(1f32, 0.2, 7, &dev)?)?;
    let b = Var::from_tensor(&Tensor::randn(0f32, 0.2, 7, &dev)?)?;
    let r = Tensor::randn(0f32, 1.0, (3, 7, 61, 43), &dev)?;
    let dy = Tensor::randn(0f32, 1.0, (3, 7, 61, 43), &dev)?;
    let post = Epilogue {
        residual: Some(&r),
        relu: true,
    };
    let mut results = Vec::new();
    for f in [batch_norm as BnFn, batch_norm_portable] {
        let out = f(
            x.as_tensor(),
            w.as_tensor(),
            b.as_tensor(),
            NormStats::Batch,
            1e-5,
            post,
        )?;
        let grads = (&out.y * &dy)?.sum_all()?.backward()?;
        results.push((
            out.y,
            grads.get(x.as_tensor()).expect("dx").clone(),
            grads.get(w.as_tensor()).expect("dw").clone(),
            grads.get(b.as_tensor()).expect("db").clone(),
        ));
    }
    let (a, p) = (&results[0], &results[1]);
    let tol = Tolerance::COMPOSITE;
    assert_close("y", &a.0, &p.0, tol)?;
    assert_close("dx", &a.1, &p.1, tol)?;
    assert_close("dw", &a.2, &p.2, tol)?;
    assert_close("db", &a.3, &p.3, tol)?;
    Ok(())
}

#[test]
fn bad_arguments_are_clear_errors() -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::zeros((2, 3, 4, 4), DType::F32, &dev)?;
    let c3 = Tensor::ones(3, DType::F32, &dev)?;
    let c4 = Tensor::ones(4, DType::F32, &dev)?;
    let none = Epilogue::default();
    let err = |r: Result<BatchNormOutput>| r.expect_err("must fail").to_string();
    let e = err(batch_norm(&x, &c4, &c3, NormStats::Batch, 1e-5, none));
    assert!(
        e.contains("batch_norm") && e.contains("[2, 3, 4, 4]") && e.contains("[4]"),
        "{e}"
    );
    let e = err(batch_norm(&c3, &c3, &c3, NormStats::Batch, 1e-5, none));
    assert!(e.contains("[N, C, *]"), "{e}");
    let one = Tensor::zeros((1, 3), DType::F32, &dev)?;
    let e = err(batch_norm(&one, &c3, &c3, NormStats::Batch, 1e-5, none));
    assert!(e.contains("more than one value per channel"), "{e}");
    let e = err(batch_norm(&x, &c3, &c3, NormStats::Batch, -1.0, none));
    assert!(e.contains("eps"), "{e}");
    let given = NormStats::Given {
        mean: &c4,
        var: &c3,
    };
    let e = err(batch_norm(&x, &c3, &c3, given, 1e-5, none));
    assert!(e.contains("given mean"), "{e}");
    let small = Tensor::zeros((2, 3, 4, 3), DType::F32, &dev)?;
    let bad = Epilogue {
        residual: Some(&small),
        relu: true,
    };
    let e = err(batch_norm(&x, &c3, &c3, NormStats::Batch, 1e-5, bad));
    assert!(e.contains("residual") && e.contains("[2, 3, 4, 3]"), "{e}");
    // Eval mode with one value per channel is fine.
    let given = NormStats::Given {
        mean: &c3,
        var: &c3,
    };
    let y = batch_norm(&one, &c3, &c3, given, 0.0, none)?.y;
    assert_eq!(y.to_vec2::<f32>()?, vec![vec![0.0f32, 0.0, 0.0]]);
    Ok(())
}

#[test]
fn a_nan_input_stays_nan_through_the_fused_relu() -> Result<()> {
    // PyTorch's batch norm + ReLU propagates NaN; a kernel that clamps with `max(0)` would turn
    // it into 0 and hide a diverged model from the trainer's non-finite-loss check.
    let mut v: Vec<f32> = (0..2 * 3 * 4).map(|i| (i as f32 * 0.37).sin()).collect();
    v[5] = f32::NAN; // sample 0, channel 1 ([2, 3, 2, 2])
    let x = Tensor::from_vec(v, (2, 3, 2, 2), &Device::Cpu)?;
    let (w, b) = (
        Tensor::ones(3, DType::F32, &Device::Cpu)?,
        Tensor::zeros(3, DType::F32, &Device::Cpu)?,
    );
    let post = Epilogue {
        residual: None,
        relu: true,
    };
    let y = batch_norm(&x, &w, &b, NormStats::Batch, 1e-5, post)?.y;
    let y = y.transpose(0, 1)?.flatten_from(1)?.to_vec2::<f32>()?; // [C, N·H·W]
    assert!(y[1].iter().all(|v| v.is_nan()), "channel 1: {:?}", y[1]);
    assert!(y[0].iter().chain(&y[2]).all(|v| v.is_finite() && *v >= 0.0));
    Ok(())
}
