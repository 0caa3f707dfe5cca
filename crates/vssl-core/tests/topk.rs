//! `topk` and `topk_portable` against PyTorch golden values (tests/golden/topk.py), plus errors
//! and edge cases.

use candle_core::{DType, Device, Tensor, Var};
use vssl_core::ops::topk::{topk, topk_portable};
use vssl_core::testing::{Golden, Tolerance, assert_close};
use vssl_core::{Error, Result};

const CASES: &[&str] = &[
    "r2_d0",
    "r2_d1",
    "r3_d0",
    "r3_d1",
    "r3_d2",
    "k_full_d1",
    "k_full_d0",
    "k1_d0",
    "wide_inner",
    "wide_d0",
    "long_d1",
    "long_d0",
    "ties_d1",
    "ties_r3_d1",
    "ties_long_d0",
    "blocks_d1",
    "blocks_ties_d0",
];

type TopkFn = fn(&Tensor, usize, usize) -> Result<(Tensor, Tensor)>;

/// Runs `f` on every golden case; `exact_ties` says whether the path promises the
/// lower-index-first order on ties (the CPU kernel does, candle's sort does not).
fn check_golden(f: TopkFn, path: &str, exact_ties: bool) -> Result<()> {
    let g = Golden::workspace("topk")?;
    for case in CASES {
        let x = Var::from_tensor(&g.f32(&format!("{case}.x"))?)?;
        let k = g.scalar(&format!("{case}.k"))? as usize;
        let dim = g.scalar(&format!("{case}.dim"))? as usize;
        let ties = g.scalar(&format!("{case}.ties"))? != 0.0;
        let (values, indices) = f(x.as_tensor(), k, dim)?;
        assert_eq!(indices.dtype(), DType::U32, "{path} {case}: indices dtype");
        assert_eq!(values.dtype(), DType::F32, "{path} {case}: values dtype");
        // Values are copies of f32 inputs: they must match exactly.
        assert_close(
            &format!("{path} {case} values"),
            &values,
            &g.get(&format!("{case}.values"))?,
            Tolerance::SINGLE_OP.with_rtol(0.0).with_atol_of_max(0.0),
        )?;
        if ties && !exact_ties {
            // The selected indices must still point at the selected values.
            let again = x.as_tensor().gather(&indices, dim)?;
            assert_close(
                &format!("{path} {case} gathered"),
                &again,
                &values,
                Tolerance::SINGLE_OP,
            )?;
            continue;
        }
        let want_idx = g.get(&format!("{case}.indices"))?.to_dtype(DType::I64)?;
        let got_idx = indices.to_dtype(DType::I64)?;
        assert_eq!(
            got_idx.flatten_all()?.to_vec1::<i64>()?,
            want_idx.flatten_all()?.to_vec1::<i64>()?,
            "{path} {case}: indices"
        );
        let w = g.f32(&format!("{case}.w"))?;
        let grads = (values * w)?.sum_all()?.backward()?;
        let gx = grads
            .get(x.as_tensor())
            .ok_or_else(|| Error::op("test", format!("{path} {case}: no gradient for x")))?;
        assert_close(
            &format!("{path} {case} grad_x"),
            gx,
            &g.get(&format!("{case}.grad_x"))?,
            Tolerance::SINGLE_OP,
        )?;
    }
    Ok(())
}

#[test]
fn topk_cpu_kernel_matches_torch() -> Result<()> {
    check_golden(topk, "topk", true)
}

#[test]
fn topk_portable_matches_torch() -> Result<()> {
    check_golden(topk_portable, "topk_portable", false)
}

#[test]
fn ties_take_lower_index_first_and_nan_is_largest() -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::new(
        &[[1.0f32, f32::NAN, 3.0, 3.0, f32::INFINITY, -1.0, 3.0, 0.0]],
        &dev,
    )?;
    let (v, i) = topk(&x, 5, 1)?;
    assert_eq!(i.to_vec2::<u32>()?, vec![vec![1, 4, 2, 3, 6]]);
    let v = v.to_vec2::<f32>()?;
    assert!(v[0][0].is_nan());
    assert_eq!(&v[0][1..], &[f32::INFINITY, 3.0, 3.0, 3.0]);
    // The same along a non-last axis (strided kernel path).
    let (_, i0) = topk(&x.t()?, 5, 0)?;
    assert_eq!(i0.t()?.to_vec2::<u32>()?, vec![vec![1, 4, 2, 3, 6]]);
    Ok(())
}

#[test]
fn strided_and_non_contiguous_inputs() -> Result<()> {
    let dev = Device::Cpu;
    // A transposed view: the op must read it correctly (it makes it contiguous first).
    let x = Tensor::arange(0f32, 60., &dev)?
        .reshape((3, 4, 5))?
        .affine(7.0, 0.0)?
        .sin()?;
    let xt = x.transpose(0, 2)?; // [5, 4, 3], non-contiguous
    for dim in 0..3 {
        let (v, i) = topk(&xt, 2, dim)?;
        let (vp, ip) = topk_portable(&xt, 2, dim)?;
        assert_eq!(
            i.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()?,
            ip.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()?,
            "dim {dim}"
        );
        assert_close(&format!("dim {dim}"), &v, &vp, Tolerance::SINGLE_OP)?;
    }
    Ok(())
}

#[test]
fn k_zero_gives_empty_tensors() -> Result<()> {
    let x = Tensor::ones((3, 4), DType::F32, &Device::Cpu)?;
    for f in [topk as TopkFn, topk_portable] {
        let (v, i) = f(&x, 0, 1)?;
        assert_eq!(v.dims(), &[3, 0]);
        assert_eq!(i.dims(), &[3, 0]);
        assert_eq!(i.dtype(), DType::U32);
    }
    Ok(())
}

#[test]
fn empty_other_axes_give_empty_outputs() -> Result<()> {
    let x = Tensor::zeros((0, 5, 3), DType::F32, &Device::Cpu)?;
    for f in [topk as TopkFn, topk_portable] {
        let (v, i) = f(&x, 2, 1)?;
        assert_eq!(v.dims(), &[0, 2, 3]);
        assert_eq!(i.dims(), &[0, 2, 3]);
    }
    Ok(())
}

#[test]
fn rank_one_and_size_one_axes() -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::new(&[2.0f32, -1.0, 5.0], &dev)?;
    let (v, i) = topk(&x, 3, 0)?;
    assert_eq!(v.to_vec1::<f32>()?, vec![5.0, 2.0, -1.0]);
    assert_eq!(i.to_vec1::<u32>()?, vec![2, 0, 1]);
    let y = Tensor::new(&[[4.0f32], [3.0]], &dev)?;
    let (v, i) = topk(&y, 1, 1)?;
    assert_eq!(v.to_vec2::<f32>()?, vec![vec![4.0], vec![3.0]]);
    assert_eq!(i.to_vec2::<u32>()?, vec![vec![0], vec![0]]);
    Ok(())
}

fn expect_err(r: Result<(Tensor, Tensor)>, needles: &[&str]) {
    match r {
        Ok(_) => panic!("expected an error mentioning {needles:?}"),
        Err(e) => {
            assert!(matches!(e, Error::Op { op: "topk", .. }), "{e:?}");
            let msg = e.to_string();
            for n in needles {
                assert!(msg.contains(n), "{msg:?} should mention {n:?}");
            }
        }
    }
}

#[test]
fn errors_name_the_op_and_shapes() -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::zeros((2, 3, 4), DType::F32, &dev)?;
    for f in [topk as TopkFn, topk_portable] {
        expect_err(f(&x, 5, 2), &["topk", "k = 5", "[2, 3, 4]"]);
        expect_err(f(&x, 4, 1), &["topk", "k = 4", "[2, 3, 4]"]);
        expect_err(f(&x, 1, 3), &["topk", "dim 3", "[2, 3, 4]"]);
        let s = Tensor::new(1.0f32, &dev)?;
        expect_err(f(&s, 1, 0), &["topk", "scalar"]);
        let xi = Tensor::zeros((2, 3), DType::U32, &dev)?;
        expect_err(f(&xi, 1, 0), &["topk", "f32", "[2, 3]"]);
    }
    Ok(())
}

/// The benchmark: top-10 over [2, 4096, 4096] against candle's full sort.
/// `cargo test --profile test -p vssl-core --test topk -- --ignored --nocapture bench`
#[test]
#[ignore = "benchmark; run by hand"]
fn bench_topk_vs_sort() -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1., (2, 4096, 4096), &dev)?;
    let time = |f: &dyn Fn() -> Result<()>| -> Result<f64> {
        f()?;
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = std::time::Instant::now();
            f()?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(best)
    };
    let ours = time(&|| {
        topk(&x, 10, 2)?;
        Ok(())
    })?;
    let ours_d1 = time(&|| {
        topk(&x, 10, 1)?;
        Ok(())
    })?;
    let sort = time(&|| {
        let (v, i) = x.sort_last_dim(false)?;
        v.narrow(2, 0, 10)?.contiguous()?;
        i.narrow(2, 0, 10)?.contiguous()?;
        Ok(())
    })?;
    println!(
        "topk k=10 [2,4096,4096]: dim 2 {:.1} ms, dim 1 {:.1} ms; sort_last_dim+narrow {:.1} ms; speed-up {:.1}x",
        ours * 1e3,
        ours_d1 * 1e3,
        sort * 1e3,
        sort / ours
    );
    assert!(
        sort / ours >= 5.0,
        "top-k must be >= 5x faster than a full sort"
    );
    Ok(())
}
