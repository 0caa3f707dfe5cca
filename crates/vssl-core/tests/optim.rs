//! Golden tests of the fused optimizer kernels (`vssl_core::ops::optim`) and their portable
//! twins against `torch.optim` (`tests/golden/optim.py`): 4 steps with new gradients and a new
//! learning rate each step, every parameter compared after every step with
//! `Tolerance::COMPOSITE`; plus the parallel path on a big tensor, and errors.

use candle_core::{DType, Device, Tensor, Var};
use vssl_core::ops::optim::{
    AdamUpdate, CHUNK, LarsUpdate, SgdUpdate, adam_update, adam_update_portable, lars_update,
    lars_update_portable, sgd_update, sgd_update_portable,
};
use vssl_core::testing::{Golden, Tolerance, assert_close};
use vssl_core::{Error, Result};

const PARAMS: &[&str] = &["a.weight", "a.bias", "s", "c.weight", "one"];
const EXCLUDED: &[&str] = &["a.bias", "s", "one"];
const STEPS: usize = 4;

/// A golden case: which update, its hyper-parameters, whether EXCLUDED skip decay/adaptation.
#[derive(Clone, Copy)]
enum Case {
    Adam(AdamUpdate, bool),
    Sgd(SgdUpdate, bool),
    Lars(LarsUpdate),
}

fn adam(beta1: f64, beta2: f64, eps: f64, weight_decay: f64, decoupled: bool) -> AdamUpdate {
    AdamUpdate {
        lr: 0.0,
        beta1,
        beta2,
        eps,
        weight_decay,
        decoupled,
        step: 0,
    }
}

fn sgd(momentum: f64, dampening: f64, weight_decay: f64, nesterov: bool) -> SgdUpdate {
    SgdUpdate {
        lr: 0.0,
        momentum,
        dampening,
        weight_decay,
        nesterov,
        first: true,
    }
}

fn cases() -> Vec<(&'static str, Case)> {
    vec![
        (
            "adam",
            Case::Adam(adam(0.9, 0.999, 1e-8, 0.0, false), false),
        ),
        (
            "adam_l2",
            Case::Adam(adam(0.8, 0.99, 1e-6, 0.1, false), true),
        ),
        (
            "adamw",
            Case::Adam(adam(0.9, 0.999, 1e-8, 0.05, true), true),
        ),
        (
            "adamw_default",
            Case::Adam(adam(0.9, 0.999, 1e-8, 0.01, true), false),
        ),
        ("sgd", Case::Sgd(sgd(0.0, 0.0, 0.0, false), false)),
        ("sgd_wd", Case::Sgd(sgd(0.0, 0.0, 1e-2, false), false)),
        ("sgd_momentum", Case::Sgd(sgd(0.9, 0.0, 0.0, false), false)),
        ("sgd_dampening", Case::Sgd(sgd(0.9, 0.3, 0.0, false), false)),
        ("sgd_nesterov", Case::Sgd(sgd(0.9, 0.0, 1e-2, true), true)),
        (
            "lars",
            Case::Lars(LarsUpdate {
                lr: 0.0,
                momentum: 0.9,
                weight_decay: 1e-3,
                trust_coefficient: 0.02,
                adapt: true,
            }),
        ),
    ]
}

/// Runs one golden case through the fast (`portable = false`) or portable kernels.
fn run_case(g: &Golden, name: &str, case: Case, portable: bool) -> Result<f64> {
    let lrs = g.get(&format!("{name}.lr"))?.to_vec1::<f64>()?;
    let mut worst = 0f64;
    for pname in PARAMS {
        let excluded = EXCLUDED.contains(pname);
        let p = Var::from_tensor(&g.f32(&format!("init.{pname}"))?)?;
        let zeros = || Var::zeros(p.shape(), DType::F32, &Device::Cpu);
        let (s1, s2) = (zeros()?, zeros()?);
        for (k, &lr) in lrs.iter().enumerate().take(STEPS) {
            let grad = g.f32(&format!("grad.{k}.{pname}"))?;
            match case {
                Case::Adam(h, ex) => {
                    let mut h = AdamUpdate {
                        lr,
                        step: k as u64 + 1,
                        ..h
                    };
                    if ex && excluded {
                        h.weight_decay = 0.0;
                    }
                    let f = if portable {
                        adam_update_portable
                    } else {
                        adam_update
                    };
                    f(&p, &grad, &s1, &s2, &h)?;
                }
                Case::Sgd(h, ex) => {
                    let mut h = SgdUpdate {
                        lr,
                        first: k == 0,
                        ..h
                    };
                    if ex && excluded {
                        h.weight_decay = 0.0;
                    }
                    let f = if portable {
                        sgd_update_portable
                    } else {
                        sgd_update
                    };
                    f(&p, &grad, Some(&s1), &h)?;
                }
                Case::Lars(h) => {
                    let h = LarsUpdate {
                        lr,
                        adapt: !excluded,
                        ..h
                    };
                    let f = if portable {
                        lars_update_portable
                    } else {
                        lars_update
                    };
                    f(&p, &grad, &s1, &h)?;
                }
            }
            let want = g.get(&format!("{name}.{k}.{pname}"))?;
            let what = format!("{name} step {k} {pname} (portable: {portable})");
            let r = assert_close(&what, p.as_tensor(), &want, Tolerance::COMPOSITE)?;
            worst = worst.max(r.worst_ratio);
        }
    }
    Ok(worst)
}

#[test]
fn fused_kernels_match_torch() -> Result<()> {
    let g = Golden::workspace("optim")?;
    for (name, case) in cases() {
        let worst = run_case(&g, name, case, false)?;
        println!("{name}: worst error {worst:.3} of the tolerance");
    }
    Ok(())
}

#[test]
fn portable_kernels_match_torch() -> Result<()> {
    let g = Golden::workspace("optim")?;
    for (name, case) in cases() {
        let worst = run_case(&g, name, case, true)?;
        println!("{name}: worst error {worst:.3} of the tolerance");
    }
    Ok(())
}

/// A tensor big enough for the rayon path (several chunks and a ragged tail) gives the same
/// values as the portable path, and the same bits on a rerun.
#[test]
fn parallel_path_matches_portable_on_a_big_tensor() -> Result<()> {
    let n = 3 * CHUNK + 17;
    let dev = Device::Cpu;
    let p0 = Tensor::randn(0f32, 1.0, n, &dev)?;
    let grads: Vec<Tensor> = (0..3)
        .map(|_| Tensor::randn(0f32, 1.0, n, &dev))
        .collect::<candle_core::Result<_>>()?;
    type Run = dyn Fn(&Var, &Tensor, &Var, &Var, usize, bool) -> Result<()>;
    let runs: Vec<(&str, Box<Run>)> = vec![
        (
            "adamw",
            Box::new(|p, g, a, b, k, portable| {
                let h = AdamUpdate {
                    lr: 1e-2,
                    step: k as u64 + 1,
                    ..adam(0.9, 0.999, 1e-8, 0.05, true)
                };
                if portable {
                    adam_update_portable(p, g, a, b, &h)
                } else {
                    adam_update(p, g, a, b, &h)
                }
            }),
        ),
        (
            "sgd_nesterov",
            Box::new(|p, g, a, _, k, portable| {
                let h = SgdUpdate {
                    lr: 0.1,
                    first: k == 0,
                    ..sgd(0.9, 0.0, 1e-2, true)
                };
                if portable {
                    sgd_update_portable(p, g, Some(a), &h)
                } else {
                    sgd_update(p, g, Some(a), &h)
                }
            }),
        ),
        (
            "lars",
            Box::new(|p, g, a, _, _, portable| {
                let h = LarsUpdate {
                    lr: 0.5,
                    momentum: 0.9,
                    weight_decay: 1e-3,
                    trust_coefficient: 0.02,
                    adapt: true,
                };
                if portable {
                    lars_update_portable(p, g, a, &h)
                } else {
                    lars_update(p, g, a, &h)
                }
            }),
        ),
    ];
    for (name, run) in &runs {
        let mut finals = Vec::new();
        for portable in [false, true, false] {
            let p = Var::from_tensor(&p0)?;
            let a = Var::zeros(n, DType::F32, &dev)?;
            let b = Var::zeros(n, DType::F32, &dev)?;
            for (k, g) in grads.iter().enumerate() {
                run(&p, g, &a, &b, k, portable)?;
            }
            finals.push(p.as_tensor().to_vec1::<f32>()?);
        }
        assert_eq!(
            finals[0], finals[2],
            "{name}: the fused path is not deterministic"
        );
        let fast = Tensor::new(finals[0].as_slice(), &dev)?;
        let port = Tensor::new(finals[1].as_slice(), &dev)?;
        let r = assert_close(name, &fast, &port, Tolerance::SINGLE_OP)?;
        assert!(
            r.max_abs_err > 0.0 || *name == "sgd_nesterov" || *name == "lars",
            "{name}: suspiciously identical"
        );
        // The update moved the parameter.
        let moved = (fast - &p0)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(moved > 1e-4, "{name}: parameter did not move ({moved})");
    }
    Ok(())
}

#[test]
fn errors_name_the_problem() -> Result<()> {
    let dev = Device::Cpu;
    let p = Var::ones((2, 3), DType::F32, &dev)?;
    let m = Var::zeros((2, 3), DType::F32, &dev)?;
    let v = Var::zeros((2, 3), DType::F32, &dev)?;
    let h = AdamUpdate {
        lr: 1e-3,
        step: 1,
        ..adam(0.9, 0.999, 1e-8, 0.0, false)
    };
    let op_msg = |r: Result<()>| match r {
        Err(Error::Op { op, msg }) => format!("{op}: {msg}"),
        Err(other) => format!("other error: {other}"),
        Ok(()) => "ok".to_string(),
    };
    // Gradient of the wrong shape.
    let g_bad = Tensor::zeros((3, 2), DType::F32, &dev)?;
    let msg = op_msg(adam_update(&p, &g_bad, &m, &v, &h));
    assert!(
        msg.contains("adam_update") && msg.contains("[3, 2]"),
        "{msg}"
    );
    // State of the wrong shape.
    let m_bad = Var::zeros(6, DType::F32, &dev)?;
    let g = Tensor::ones((2, 3), DType::F32, &dev)?;
    let msg = op_msg(adam_update(&p, &g, &m_bad, &v, &h));
    assert!(msg.contains("state 0"), "{msg}");
    // A state aliasing the parameter, or another state: an error, not a deadlock.
    let msg = op_msg(adam_update(&p, &g, &p, &v, &h));
    assert!(msg.contains("shares its storage"), "{msg}");
    let msg = op_msg(adam_update(&p, &g, &m, &m, &h));
    assert!(msg.contains("shares its storage"), "{msg}");
    // Momentum without a buffer.
    let hs = SgdUpdate {
        lr: 0.1,
        ..sgd(0.9, 0.0, 0.0, false)
    };
    let msg = op_msg(sgd_update(&p, &g, None, &hs));
    assert!(msg.contains("momentum buffer"), "{msg}");
    // Wrong gradient dtype.
    let g64 = Tensor::ones((2, 3), DType::F64, &dev)?;
    let msg = op_msg(sgd_update(&p, &g64, Some(&m), &hs));
    assert!(msg.contains("F64"), "{msg}");
    // Nothing above changed the parameter.
    assert_eq!(p.as_tensor().sum_all()?.to_scalar::<f32>()?, 6.0);
    Ok(())
}

/// A strided (transposed) gradient is read in logical order by the fused kernel.
#[test]
fn strided_gradient_is_made_contiguous() -> Result<()> {
    let dev = Device::Cpu;
    let p0 = Tensor::randn(0f32, 1.0, (3, 4), &dev)?;
    let g = Tensor::randn(0f32, 1.0, (4, 3), &dev)?.t()?;
    assert!(!g.is_contiguous());
    let h = SgdUpdate {
        lr: 0.1,
        ..sgd(0.0, 0.0, 0.0, false)
    };
    let p = Var::from_tensor(&p0)?;
    sgd_update(&p, &g, None, &h)?;
    let want = (&p0 - g.affine(0.1, 0.0)?)?;
    assert_close("strided", p.as_tensor(), &want, Tolerance::SINGLE_OP)?;
    Ok(())
}
