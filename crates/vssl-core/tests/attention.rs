//! Grouped attention against PyTorch (`tests/golden/attention.py`): `P V`, the own-group mass
//! and the gradients of q, k and v, with as many or fewer queries than keys, on the blocked CPU
//! kernel (blocks of 1, 4 and all rows, so that a last block is partial; queries and keys also
//! as transposed views, read in place) and on the dense portable path. Tolerance:
//! `Tolerance::COMPOSITE` (each gradient sums over M² weights).

use candle_core::{DType, Device, Tensor, Var};
use vssl_core::Result;
use vssl_core::ops::attention::{
    GroupedAttention, batched_attention, batched_attention_portable, grouped_attention,
    grouped_attention_blocked, grouped_attention_portable,
};
use vssl_core::testing::{Golden, Tolerance, assert_close};

const CASES: &[&str] = &["three_groups", "one_group", "peaked", "rect"];

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

/// Queries and keys given as transposed views of `[C, M]` tensors (feature maps), which the
/// kernel reads without a copy; their gradients come back in the views' shape.
#[test]
fn transposed_views_are_read_in_place() -> Result<()> {
    check("transposed views", &|q, k, v, t, g| {
        let (qt, kt) = (q.t()?.contiguous()?, k.t()?.contiguous()?); // [C, M]
        let (qv, kv) = (qt.t()?, kt.t()?); // [M, C] views with strides (1, M)
        assert_eq!(qv.layout().stride()[0], 1);
        let a = grouped_attention_blocked(&qv, &kv, v, t, g, 3)?;
        // Route the gradients back to q and k (the check reads them there).
        Ok(a)
    })
}

#[test]
fn portable_path_matches_pytorch() -> Result<()> {
    check("portable", &|q, k, v, t, g| {
        grouped_attention_portable(q, k, v, t, g)
    })
}

/// Independent problems in one call, as the step's localisation uses it (queries and keys as
/// transposed views of `[B, C, M]` feature maps, one value matrix shared by all problems, or one
/// per problem): the kernel equals the dense path, outputs and gradients.
#[test]
fn batched_problems_match_the_dense_path() -> Result<()> {
    let dev = Device::Cpu;
    let (b, c, mq, mk) = (3, 6, 10, 23);
    let fq = Var::from_tensor(&Tensor::randn(0f32, 0.7, (b, c, mq), &dev)?)?;
    let fk = Var::from_tensor(&Tensor::randn(0f32, 0.7, (b, c, mk), &dev)?)?;
    for shared in [true, false] {
        let v = if shared {
            Var::from_tensor(&Tensor::randn(0f32, 1.0, (mk, 2), &dev)?)?
        } else {
            Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, mk, 2), &dev)?)?
        };
        let mut got = Vec::new();
        for kernel in [true, false] {
            let (q, k) = (fq.transpose(1, 2)?, fk.transpose(1, 2)?); // [B, M, C] views
            let out = if kernel {
                batched_attention(&q, &k, v.as_tensor(), 1.6)?
            } else {
                batched_attention_portable(&q, &k, v.as_tensor(), 1.6)?
            };
            let w = Tensor::ones(out.dims(), DType::F32, &dev)?
                .cumsum(1)?
                .sin()?;
            let grads = (&out * w)?.sum_all()?.backward()?;
            let g = |t: &Var| grads.get(t.as_tensor()).expect("gradient").clone();
            got.push((out, g(&fq), g(&fk), g(&v)));
        }
        let tol = Tolerance::COMPOSITE;
        let (a, p) = (&got[0], &got[1]);
        assert_close(&format!("shared {shared} out"), &a.0, &p.0, tol)?;
        assert_close(&format!("shared {shared} grad q"), &a.1, &p.1, tol)?;
        assert_close(&format!("shared {shared} grad k"), &a.2, &p.2, tol)?;
        assert_close(&format!("shared {shared} grad v"), &a.3, &p.3, tol)?;
    }
    Ok(())
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
    assert!(e.contains("do not both split into 4"), "{e}");
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
