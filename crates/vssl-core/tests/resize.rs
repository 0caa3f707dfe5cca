//! Resize ops against PyTorch / Pillow golden values (`tests/golden/resize.py`).

use candle_core::{D, DType, Device, Tensor, Var};
use vssl_core::ops::resize::{
    nearest_indices_pil, nearest_indices_torch, resize_bilinear, resize_bilinear_portable,
    resize_nearest, resize_nearest_pil,
};
use vssl_core::testing::{Golden, Tolerance, assert_close};
use vssl_core::{Error, Result};

type Op<'a> = dyn Fn(&Tensor) -> Result<Tensor> + 'a;

/// Runs `f` on a `Var` made from `x`; returns the output and `d sum(out · w) / dx`.
fn forward_backward(f: &Op<'_>, x: &Tensor, w: &Tensor) -> Result<(Tensor, Tensor)> {
    let v = Var::from_tensor(x)?;
    let y = f(v.as_tensor())?;
    let grads = y.mul(w)?.sum_all()?.backward()?;
    let g = grads
        .get(v.as_tensor())
        .cloned()
        .ok_or_else(|| Error::op("test", "no gradient for x"))?;
    Ok((y, g))
}

/// The case names `<prefix><case>_out` in the golden file, i.e. every `<case>`.
fn cases(g: &Golden, prefix: &str) -> Vec<String> {
    g.names()
        .iter()
        .filter_map(|n| {
            n.strip_prefix(prefix)?
                .strip_suffix("_out")
                .map(str::to_string)
        })
        .collect()
}

fn check_bilinear(portable: bool) -> Result<()> {
    let g = Golden::workspace("resize")?;
    let cs = cases(&g, "bl_");
    assert_eq!(cs.len(), 14, "7 size cases x 2 align_corners: {cs:?}");
    for case in cs {
        let (name, ac) = case
            .rsplit_once("_ac")
            .ok_or_else(|| Error::op("test", format!("bad case {case}")))?;
        let align_corners = ac == "1";
        let x = g.f32(&format!("bl_{name}_x"))?;
        let w = g.f32(&format!("bl_{case}_w"))?;
        let want = g.get(&format!("bl_{case}_out"))?;
        let want_grad = g.get(&format!("bl_{case}_grad"))?;
        let size = (want.dim(2)?, want.dim(3)?);
        let f = move |t: &Tensor| {
            if portable {
                resize_bilinear_portable(t, size, align_corners)
            } else {
                resize_bilinear(t, size, align_corners)
            }
        };
        let (y, gx) = forward_backward(&f, &x, &w)?;
        let tag = format!("{case} portable={portable}");
        assert_close(&format!("{tag} out"), &y, &want, Tolerance::SINGLE_OP)?;
        assert_close(
            &format!("{tag} grad"),
            &gx,
            &want_grad,
            Tolerance::SINGLE_OP,
        )?;
    }
    Ok(())
}

#[test]
fn bilinear_cpu_kernel_matches_torch() -> Result<()> {
    check_bilinear(false)
}

#[test]
fn bilinear_portable_matches_torch() -> Result<()> {
    check_bilinear(true)
}

#[test]
fn nearest_matches_torch_with_gradients() -> Result<()> {
    let g = Golden::workspace("resize")?;
    let cs = cases(&g, "nn_");
    assert_eq!(cs.len(), 6, "{cs:?}");
    for case in cs {
        let x = g.f32(&format!("nn_{case}_x"))?;
        let w = g.f32(&format!("nn_{case}_w"))?;
        let want = g.get(&format!("nn_{case}_out"))?;
        let want_grad = g.get(&format!("nn_{case}_grad"))?;
        let size = (want.dim(2)?, want.dim(3)?);
        let f = move |t: &Tensor| resize_nearest(t, size);
        let (y, gx) = forward_backward(&f, &x, &w)?;
        assert_close(
            &format!("nearest {case} out"),
            &y,
            &want,
            Tolerance::SINGLE_OP,
        )?;
        assert_close(
            &format!("nearest {case} grad"),
            &gx,
            &want_grad,
            Tolerance::SINGLE_OP,
        )?;
    }
    Ok(())
}

/// Every stored `<prefix><in>_<out>` index vector, parsed.
fn index_vectors(g: &Golden, prefix: &str) -> Result<Vec<(usize, usize, Vec<usize>)>> {
    let mut res = Vec::new();
    for name in g.names() {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let parse = |s: &str| {
            s.parse::<usize>()
                .map_err(|e| Error::op("test", format!("{name}: {e}")))
        };
        let (i, o) = rest
            .split_once('_')
            .ok_or_else(|| Error::op("test", format!("bad key {name}")))?;
        let v = g.get(&name)?.to_vec1::<i64>()?;
        res.push((
            parse(i)?,
            parse(o)?,
            v.iter().map(|&s| s as usize).collect(),
        ));
    }
    Ok(res)
}

#[test]
fn nearest_indices_torch_match_torch() -> Result<()> {
    let g = Golden::workspace("resize")?;
    let vs = index_vectors(&g, "torchidx_")?;
    assert!(vs.len() >= 30, "{}", vs.len());
    for (i, o, want) in vs {
        assert_eq!(
            nearest_indices_torch(i, o),
            want,
            "torch nearest {i} -> {o}"
        );
    }
    Ok(())
}

#[test]
fn nearest_indices_pil_match_pillow() -> Result<()> {
    let g = Golden::workspace("resize")?;
    let vs = index_vectors(&g, "pilidx_")?;
    assert!(vs.len() >= 30, "{}", vs.len());
    let mut seen = Vec::new();
    for (i, o, want) in vs {
        assert_eq!(nearest_indices_pil(i, o), want, "PIL nearest {i} -> {o}");
        seen.push((i, o));
    }
    for pair in [(854, 960), (480, 560), (120, 854), (70, 480), (1920, 854)] {
        assert!(seen.contains(&pair), "golden lacks {pair:?}");
    }
    // PIL's rule is not torch's, and not floor((d + 0.5)·in/out) either on 854 -> 960.
    assert_ne!(
        nearest_indices_pil(854, 960),
        nearest_indices_torch(854, 960)
    );
    Ok(())
}

#[test]
fn resize_nearest_pil_matches_pillow_maps_in_every_dtype() -> Result<()> {
    let g = Golden::workspace("resize")?;
    for (key, (h, w)) in [
        ("pilmap_13x7_to_30x11", (7usize, 13usize)),
        ("pilmap_30x11_to_13x7", (11, 30)),
    ] {
        let want = g.get(key)?.to_dtype(DType::U32)?;
        let size = (want.dim(0)?, want.dim(1)?);
        let x = Tensor::arange(0u32, (h * w) as u32, &Device::Cpu)?.reshape((1, 1, h, w))?;
        let got = resize_nearest_pil(&x, size)?;
        assert_eq!(got.dtype(), DType::U32);
        assert_eq!(
            got.squeeze(0)?.squeeze(0)?.to_vec2::<u32>()?,
            want.to_vec2::<u32>()?,
            "{key}"
        );
        // Rank 3, f32 and u8 give the same indices.
        let got = resize_nearest_pil(&x.squeeze(0)?.to_dtype(DType::F32)?, size)?;
        assert_eq!(got.dims(), &[1, size.0, size.1]);
        let want_f = want.to_dtype(DType::F32)?.unsqueeze(0)?;
        assert_close(key, &got, &want_f, Tolerance::SINGLE_OP.with_rtol(0.0))?;
        let x8 = (x.to_dtype(DType::F32)? / 7.0)?
            .floor()?
            .to_dtype(DType::U8)?;
        let got8 = resize_nearest_pil(&x8, size)?;
        assert_eq!(got8.dtype(), DType::U8);
        let want8 = (want.to_dtype(DType::F32)? / 7.0)?
            .floor()?
            .to_dtype(DType::U8)?;
        assert_eq!(
            got8.flatten_all()?.to_vec1::<u8>()?,
            want8.flatten_all()?.to_vec1::<u8>()?
        );
    }
    Ok(())
}

#[test]
fn resize_nearest_works_on_u8_label_maps() -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::arange(0u8, 35, &dev)?.reshape((1, 5, 7))?;
    let got = resize_nearest(&x, (13, 3))?;
    let (iy, ix) = (nearest_indices_torch(5, 13), nearest_indices_torch(7, 3));
    let want: Vec<u8> = iy
        .iter()
        .flat_map(|&r| ix.iter().map(move |&c| (r * 7 + c) as u8))
        .collect();
    assert_eq!(got.dims(), &[1, 13, 3]);
    assert_eq!(got.flatten_all()?.to_vec1::<u8>()?, want);
    Ok(())
}

#[test]
fn bilinear_rank3_and_strided_inputs_agree_with_rank4() -> Result<()> {
    let g = Golden::workspace("resize")?;
    let x = g.f32("bl_up_x")?; // [2, 3, 5, 7]
    for ac in [false, true] {
        let want = g.get(&format!("bl_up_ac{}_out", u8::from(ac)))?;
        let got = resize_bilinear(&x.get(1)?, (11, 13), ac)?;
        assert_close("rank 3", &got, &want.get(1)?, Tolerance::SINGLE_OP)?;
        let got = resize_bilinear_portable(&x.get(1)?, (11, 13), ac)?;
        assert_close("rank 3 portable", &got, &want.get(1)?, Tolerance::SINGLE_OP)?;
        // A transposed (non-contiguous) input: resize [.., W, H] then transpose back.
        let xt = x.transpose(2, 3)?;
        let got = resize_bilinear(&xt, (13, 11), ac)?.transpose(2, 3)?;
        assert_close("strided", &got, &want, Tolerance::SINGLE_OP)?;
        let got = resize_bilinear_portable(&xt, (13, 11), ac)?.transpose(2, 3)?;
        assert_close("strided portable", &got, &want, Tolerance::SINGLE_OP)?;
    }
    Ok(())
}

#[test]
fn bilinear_f64_takes_the_portable_path_in_f64() -> Result<()> {
    // f64 inputs on the CPU dispatch to the portable path, whose matrices are built in f64: the
    // result matches the float64 reference far below f32 precision.
    let g = Golden::workspace("resize")?;
    for (name, size) in [("down", (4, 6)), ("mixed", (3, 10)), ("from1", (4, 5))] {
        for ac in [0u8, 1] {
            let x = g.get(&format!("bl_{name}_x"))?.to_dtype(DType::F64)?;
            let want = g.get(&format!("bl_{name}_ac{ac}_out"))?;
            let got = resize_bilinear(&x, size, ac == 1)?;
            assert_eq!(got.dtype(), DType::F64);
            let tol = Tolerance::SINGLE_OP
                .with_rtol(1e-12)
                .with_atol_of_max(1e-12);
            assert_close(&format!("f64 {name} ac{ac}"), &got, &want, tol)?;
        }
    }
    Ok(())
}

#[test]
fn empty_batch_gives_empty_output() -> Result<()> {
    let x = Tensor::zeros((0, 3, 4, 5), DType::F32, &Device::Cpu)?;
    assert_eq!(resize_bilinear(&x, (2, 7), false)?.dims(), &[0, 3, 2, 7]);
    assert_eq!(
        resize_bilinear_portable(&x, (2, 7), true)?.dims(),
        &[0, 3, 2, 7]
    );
    assert_eq!(resize_nearest(&x, (2, 7))?.dims(), &[0, 3, 2, 7]);
    assert_eq!(resize_nearest_pil(&x, (2, 7))?.dims(), &[0, 3, 2, 7]);
    Ok(())
}

#[test]
fn index_rules_edge_cases() {
    assert_eq!(nearest_indices_torch(5, 1), vec![0]);
    assert_eq!(nearest_indices_pil(5, 1), vec![2]);
    assert_eq!(nearest_indices_torch(1, 4), vec![0; 4]);
    assert_eq!(nearest_indices_pil(1, 4), vec![0; 4]);
    assert_eq!(nearest_indices_torch(3, 6), vec![0, 0, 1, 1, 2, 2]);
    assert_eq!(nearest_indices_pil(6, 6), (0..6).collect::<Vec<_>>());
    assert!(nearest_indices_torch(0, 4).is_empty() && nearest_indices_pil(0, 4).is_empty());
    assert!(nearest_indices_torch(4, 0).is_empty() && nearest_indices_pil(4, 0).is_empty());
}

/// Asserts `r` is an `Op` error of `op` whose message contains every piece of `needles`.
fn assert_op_error(r: Result<Tensor>, op: &str, needles: &[&str]) {
    match r {
        Err(Error::Op { op: got, msg }) => {
            assert_eq!(got, op, "{msg}");
            for n in needles {
                assert!(msg.contains(n), "{op}: {msg:?} lacks {n:?}");
            }
        }
        Err(e) => panic!("{op}: expected an Op error, got {e}"),
        Ok(t) => panic!("{op}: expected an error, got a tensor {:?}", t.dims()),
    }
}

#[test]
fn bad_arguments_are_op_errors() -> Result<()> {
    let dev = Device::Cpu;
    let x4 = Tensor::zeros((1, 2, 3, 4), DType::F32, &dev)?;
    let x2 = Tensor::zeros((3, 4), DType::F32, &dev)?;
    let x5 = Tensor::zeros((1, 1, 2, 3, 4), DType::F32, &dev)?;
    let empty_h = Tensor::zeros((1, 2, 0, 4), DType::F32, &dev)?;
    let empty_w = Tensor::zeros((2, 3, 0), DType::F32, &dev)?;
    let ints = Tensor::zeros((1, 2, 3, 4), DType::U32, &dev)?;
    type F = fn(&Tensor, (usize, usize)) -> Result<Tensor>;
    let ops: [(&str, F); 4] = [
        ("resize_bilinear", |x, s| resize_bilinear(x, s, false)),
        ("resize_bilinear", |x, s| {
            resize_bilinear_portable(x, s, true)
        }),
        ("resize_nearest", resize_nearest),
        ("resize_nearest_pil", resize_nearest_pil),
    ];
    for (name, f) in ops {
        assert_op_error(f(&x2, (2, 2)), name, &["[3, 4]"]);
        assert_op_error(f(&x5, (2, 2)), name, &["[1, 1, 2, 3, 4]"]);
        assert_op_error(f(&x4, (0, 2)), name, &["(0, 2)", "[1, 2, 3, 4]"]);
        assert_op_error(f(&x4, (5, 0)), name, &["(5, 0)", "[1, 2, 3, 4]"]);
        assert_op_error(f(&empty_h, (2, 2)), name, &["[1, 2, 0, 4]"]);
        assert_op_error(f(&empty_w, (2, 2)), name, &["[2, 3, 0]"]);
    }
    assert_op_error(
        resize_bilinear(&ints, (2, 2), true),
        "resize_bilinear",
        &["U32", "[1, 2, 3, 4]"],
    );
    assert_op_error(
        resize_bilinear_portable(&ints, (2, 2), true),
        "resize_bilinear",
        &["U32", "[1, 2, 3, 4]"],
    );
    Ok(())
}

#[test]
fn downsample_of_constant_is_constant_and_grad_sums_to_upstream() -> Result<()> {
    // A property check independent of the golden file: bilinear weights sum to one, so a
    // constant image stays constant and the input gradient sums to the upstream gradient's sum.
    let dev = Device::Cpu;
    let x = Tensor::full(2.5f32, (3, 2, 17, 9), &dev)?;
    for ac in [false, true] {
        for size in [(4, 30), (17, 9), (1, 1), (40, 2)] {
            let w = Tensor::randn(0f32, 1., (3, 2, size.0, size.1), &dev)?;
            let f = move |t: &Tensor| resize_bilinear(t, size, ac);
            let (y, gx) = forward_backward(&f, &x, &w)?;
            let want = Tensor::full(2.5f32, y.dims(), &dev)?;
            assert_close("constant", &y, &want, Tolerance::SINGLE_OP)?;
            let (a, b) = (
                gx.sum((D::Minus1, D::Minus2))?,
                w.sum((D::Minus1, D::Minus2))?,
            );
            assert_close("grad sums", &a, &b, Tolerance::SINGLE_OP.with_atol(1e-5))?;
        }
    }
    Ok(())
}

/// Timings of both bilinear paths and the nearest path (not a check):
/// `cargo test --profile test -p vssl-core --test resize -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark, prints timings"]
fn bench_resize() -> Result<()> {
    let dev = Device::Cpu;
    let time = |label: &str, f: &dyn Fn() -> Result<()>| -> Result<()> {
        f()?;
        let reps = 5;
        let t0 = std::time::Instant::now();
        for _ in 0..reps {
            f()?;
        }
        println!(
            "{label}: {:.2} ms",
            t0.elapsed().as_secs_f64() * 1e3 / reps as f64
        );
        Ok(())
    };
    for (shape, size) in [
        ((2usize, 32usize, 60usize, 107usize), (240usize, 427usize)),
        ((8, 64, 64, 64), (32, 32)),
    ] {
        let x = Tensor::randn(0f32, 1., shape, &dev)?;
        let w = Tensor::randn(0f32, 1., (shape.0, shape.1, size.0, size.1), &dev)?;
        let tag = format!("{shape:?} -> {size:?}");
        time(&format!("bilinear kernel fwd   {tag}"), &|| {
            resize_bilinear(&x, size, false).map(|_| ())
        })?;
        time(&format!("bilinear portable fwd {tag}"), &|| {
            resize_bilinear_portable(&x, size, false).map(|_| ())
        })?;
        time(&format!("bilinear kernel fwd+bwd   {tag}"), &|| {
            forward_backward(&|t: &Tensor| resize_bilinear(t, size, false), &x, &w).map(|_| ())
        })?;
        time(&format!("bilinear portable fwd+bwd {tag}"), &|| {
            forward_backward(
                &|t: &Tensor| resize_bilinear_portable(t, size, false),
                &x,
                &w,
            )
            .map(|_| ())
        })?;
        let xo = Tensor::randn(0f32, 1., w.dims(), &dev)?;
        time(
            &format!("baseline: (x*w).sum().backward() on the output shape {tag}"),
            &|| forward_backward(&|t: &Tensor| Ok(t.clone()), &xo, &w).map(|_| ()),
        )?;
        time(&format!("nearest fwd+bwd {tag}"), &|| {
            forward_backward(&|t: &Tensor| resize_nearest(t, size), &x, &w).map(|_| ())
        })?;
    }
    Ok(())
}
