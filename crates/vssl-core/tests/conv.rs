//! `conv2d` against PyTorch (`tests/golden/conv.py`): forward, input and weight gradients, on the
//! `gemm` kernel and on candle's path, for odd sizes, stride 2 on odd inputs, 1×1 (pointwise and
//! strided), dilation, a 7×7/2 stem and stride 3 without padding. Tolerance:
//! `Tolerance::COMPOSITE` (each output sums up to C·kh·kw products; each weight gradient up to
//! N·Ho·Wo).

use candle_core::{DType, Device, Tensor, Var};
use vssl_core::Result;
use vssl_core::ops::conv::{ConvParams, conv2d, conv2d_portable};
use vssl_core::testing::{Golden, Tolerance, assert_close};

const CASES: &[&str] = &[
    "s1p1",
    "s2_odd",
    "pointwise",
    "pointwise_s2",
    "dilated",
    "stem",
    "nopad_s3",
];

type ConvFn = fn(&Tensor, &Tensor, ConvParams) -> Result<Tensor>;

fn check(path: &str, f: ConvFn) -> Result<()> {
    let g = Golden::workspace("conv")?;
    let tol = Tolerance::COMPOSITE;
    for case in CASES {
        let p = g.f32(&format!("{case}.params"))?.to_vec1::<f32>()?;
        let params = ConvParams {
            stride: p[0] as usize,
            padding: p[1] as usize,
            dilation: p[2] as usize,
        };
        let x = Var::from_tensor(&g.f32(&format!("{case}.x"))?)?;
        let w = Var::from_tensor(&g.f32(&format!("{case}.w"))?)?;
        let y = f(x.as_tensor(), w.as_tensor(), params)?;
        assert_close(
            &format!("{path} {case} out"),
            &y,
            &g.f32(&format!("{case}.out"))?,
            tol,
        )?;
        let grads = (y * g.f32(&format!("{case}.g"))?)?.sum_all()?.backward()?;
        let gx = grads.get(x.as_tensor()).expect("grad x");
        let gw = grads.get(w.as_tensor()).expect("grad w");
        assert_close(
            &format!("{path} {case} grad_x"),
            gx,
            &g.f32(&format!("{case}.grad_x"))?,
            tol,
        )?;
        assert_close(
            &format!("{path} {case} grad_w"),
            gw,
            &g.f32(&format!("{case}.grad_w"))?,
            tol,
        )?;
    }
    Ok(())
}

#[test]
fn gemm_kernel_matches_pytorch() -> Result<()> {
    check("kernel", conv2d)
}

#[test]
fn portable_path_matches_pytorch() -> Result<()> {
    check("portable", conv2d_portable)
}

#[test]
fn constant_weights_get_no_gradient_but_pass_one() -> Result<()> {
    // A frozen layer: the weight is a plain tensor; only the input's gradient is computed.
    let g = Golden::workspace("conv")?;
    let x = Var::from_tensor(&g.f32("s1p1.x")?)?;
    let w = g.f32("s1p1.w")?;
    let p = ConvParams {
        stride: 1,
        padding: 1,
        dilation: 1,
    };
    let y = conv2d(x.as_tensor(), &w, p)?;
    let grads = (y * g.f32("s1p1.g")?)?.sum_all()?.backward()?;
    assert!(grads.get(&w).is_none());
    assert_close(
        "frozen grad_x",
        grads.get(x.as_tensor()).expect("grad x"),
        &g.f32("s1p1.grad_x")?,
        Tolerance::COMPOSITE,
    )?;
    Ok(())
}

#[test]
fn big_images_are_tiled() -> Result<()> {
    // C·kh·kw = 64·9 = 576 rows: a 200×200 output is 40 000 positions, several tiles of
    // TILE_FLOATS / 576; compare with candle's path.
    let x = Tensor::randn(0f32, 1.0, (1, 64, 200, 200), &Device::Cpu)?;
    let w = Tensor::randn(0f32, 0.05, (8, 64, 3, 3), &Device::Cpu)?;
    let p = ConvParams {
        stride: 1,
        padding: 1,
        dilation: 1,
    };
    let a = conv2d(&x, &w, p)?;
    let b = conv2d_portable(&x, &w, p)?;
    assert_close("tiled", &a, &b, Tolerance::COMPOSITE)?;
    Ok(())
}

#[test]
fn bad_shapes_are_clear_errors() -> Result<()> {
    let x = Tensor::zeros((1, 3, 8, 8), DType::F32, &Device::Cpu)?;
    let w = Tensor::zeros((4, 2, 3, 3), DType::F32, &Device::Cpu)?;
    let e = conv2d(&x, &w, ConvParams::default())
        .expect_err("channels")
        .to_string();
    assert!(
        e.contains("conv2d") && e.contains("[1, 3, 8, 8]") && e.contains("[4, 2, 3, 3]"),
        "{e}"
    );
    let w = Tensor::zeros((4, 3, 9, 9), DType::F32, &Device::Cpu)?;
    let e = conv2d(&x, &w, ConvParams::default())
        .expect_err("too big")
        .to_string();
    assert!(e.contains("larger than the padded input"), "{e}");
    let e = conv2d(
        &x,
        &w,
        ConvParams {
            stride: 0,
            padding: 4,
            dilation: 1,
        },
    )
    .expect_err("stride 0")
    .to_string();
    assert!(e.contains("stride: 0"), "{e}");
    Ok(())
}

/// Timing comparison with candle's path on ResNet/autoencoder-like shapes (not a test of speed:
/// run with `--ignored --nocapture` to print; `cargo xtask bench` owns speed).
#[test]
#[ignore]
fn print_timings() -> Result<()> {
    for (x, w, p) in [
        ((2, 64, 256, 256), (64, 64, 3, 3), 1),
        ((2, 128, 128, 128), (128, 128, 3, 3), 1),
        ((2, 256, 32, 32), (256, 256, 3, 3), 1),
        ((2, 512, 32, 32), (512, 512, 3, 3), 1),
        ((2, 64, 64, 64), (128, 64, 3, 3), 1),
    ] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, x, &Device::Cpu)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.05, w, &Device::Cpu)?)?;
        let params = ConvParams {
            stride: 1,
            padding: p,
            dilation: 1,
        };
        for (name, f) in [
            ("gemm", conv2d as ConvFn),
            ("candle", conv2d_portable as ConvFn),
        ] {
            let t = std::time::Instant::now();
            let y = f(x.as_tensor(), w.as_tensor(), params)?;
            let _ = y.sum_all()?.to_scalar::<f32>()?;
            let fwd = t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            let g = y.sum_all()?.backward()?;
            let _ = g.get(w.as_tensor()).map(|t| t.sum_all());
            let bwd = t.elapsed().as_secs_f64();
            eprintln!(
                "{:?} {:?} {name}: fwd {fwd:.3} s, bwd {bwd:.3} s",
                x.dims(),
                w.dims()
            );
        }
    }
    Ok(())
}
