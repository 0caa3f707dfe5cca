//! Grouped attention against PyTorch (`tests/golden/attention.py`): `P V`, the own-group mass
//! and the gradients of q, k and v, on the blocked CPU kernel (blocks of 1, 4 and all rows, so
//! that a last block is partial) and on the dense portable path. Tolerance:
//! `Tolerance::COMPOSITE` (each gradient sums over M² weights).

use candle_core::{DType, Device, Tensor, Var};
use vssl_core::Result;
use vssl_core::ops::attention::{
    GroupedAttention, grouped_attention, grouped_attention_blocked, grouped_attention_portable,
};
use vssl_core::testing::{Golden, Tolerance, assert_close};

const CASES: &[&str] = &["three_groups", "one_group", "peaked"];

type AttnFn<'a> = &'a dyn Fn(&Tensor, &Tensor, &Tensor, f64, usize) -> Result<GroupedAttention>;

fn check(path: &str, f: AttnFn) -> Result<()> {
    let g = Golden::workspace("attention")?;
    let tol = Tolerance::COMPOSITE;
    for case in CASES {
        let key = |k: &str| format!("{case}.{k}");
        let params = g.f32(&key("params"))?.to_vec1::<f32>()?;
        let (temp, groups) = (f64::from(params[0]), params[1] as usize);
        let q = Var::from_tensor(&g.f32(&key("q"))?)?;
        let k = Var::from_tensor(&g.f32(&key("k"))?)?;
        let v = Var::from_tensor(&g.f32(&key("v"))?)?;
        let a = f(q.as_tensor(), k.as_tensor(), v.as_tensor(), temp, groups)?;
        let name = |k: &str| format!("{path} {case} {k}");
        assert_close(&name("out"), &a.out, &g.f32(&key("out"))?, tol)?;
        assert_close(&name("own"), &a.own_mass, &g.f32(&key("own"))?, tol)?;
        let loss = ((&a.out * g.f32(&key("w_out"))?)?.sum_all()?
            + (&a.own_mass * g.f32(&key("w_own"))?)?.sum_all()?)?;
        let grads = loss.backward()?;
        for (t, k) in [(&q, "grad_q"), (&k, "grad_k"), (&v, "grad_v")] {
            let got = grads.get(t.as_tensor()).expect("gradient");
            assert_close(&name(k), got, &g.f32(&key(k))?, tol)?;
        }
    }
    Ok(())
}

#[test]
fn blocked_kernel_matches_pytorch() -> Result<()> {
    check("default blocks", &|q, k, v, t, g| {
        grouped_attention(q, k, v, t, g)
    })?;
    for block in [1, 4] {
        check(&format!("blocks of {block}"), &|q, k, v, t, g| {
            grouped_attention_blocked(q, k, v, t, g, block)
        })?;
    }
    Ok(())
}

#[test]
fn portable_path_matches_pytorch() -> Result<()> {
    check("portable", &|q, k, v, t, g| {
        grouped_attention_portable(q, k, v, t, g)
    })
}

#[test]
fn only_tracked_arguments_get_gradients() -> Result<()> {
    let g = Golden::workspace("attention")?;
    let q = Var::from_tensor(&g.f32("three_groups.q")?)?;
    let (k, v) = (g.f32("three_groups.k")?, g.f32("three_groups.v")?);
    let a = grouped_attention_blocked(q.as_tensor(), &k, &v, 1.7, 3, 5)?;
    let loss = ((&a.out * g.f32("three_groups.w_out")?)?.sum_all()?
        + (&a.own_mass * g.f32("three_groups.w_own")?)?.sum_all()?)?;
    let grads = loss.backward()?;
    assert!(grads.get(&k).is_none() && grads.get(&v).is_none());
    assert_close(
        "grad_q alone",
        grads.get(q.as_tensor()).expect("grad q"),
        &g.f32("three_groups.grad_q")?,
        Tolerance::COMPOSITE,
    )?;
    Ok(())
}

#[test]
fn bad_arguments_are_clear_errors() -> Result<()> {
    let dev = Device::Cpu;
    let z = |r: usize, c: usize| Tensor::zeros((r, c), DType::F32, &dev);
    let err = |r: Result<GroupedAttention>| r.expect_err("must fail").to_string();
    let e = err(grouped_attention(&z(6, 4)?, &z(6, 3)?, &z(6, 2)?, 1.0, 2));
    assert!(
        e.contains("grouped_attention") && e.contains("[6, 3]"),
        "{e}"
    );
    let e = err(grouped_attention(&z(6, 4)?, &z(6, 4)?, &z(6, 2)?, 1.0, 4));
    assert!(e.contains("6 rows do not split into 4"), "{e}");
    let e = err(grouped_attention(&z(6, 4)?, &z(6, 4)?, &z(6, 2)?, 0.0, 2));
    assert!(e.contains("temp"), "{e}");
    let e = err(grouped_attention_blocked(
        &z(6, 4)?,
        &z(6, 4)?,
        &z(6, 2)?,
        1.0,
        2,
        0,
    ));
    assert!(e.contains("block"), "{e}");
    Ok(())
}
