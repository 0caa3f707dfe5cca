//! The fused frozen chain against the same layers run one by one (each of which is golden-tested
//! against PyTorch in its own test file): output and input gradient for every layer kind,
//! including a strided, zero-padded convolution and a 3×3 max-pool over sizes it does not
//! divide; the fall-back to the layers when a weight is a variable; clear errors.

use candle_core::{DType, Device, Tensor, Var};
use vssl_core::Result;
use vssl_core::ops::conv::ConvParams;
use vssl_core::ops::frozen::{FrozenChain, FrozenLayer};
use vssl_core::testing::{Tolerance, assert_close};

fn conv(
    k: usize,
    c: usize,
    ks: usize,
    stride: usize,
    padding: usize,
    seed: f64,
) -> Result<FrozenLayer> {
    let dev = Device::Cpu;
    let n = k * c * ks * ks;
    let w = Tensor::arange(0f32, n as f32, &dev)?
        .affine(0.7 + seed, seed)?
        .sin()?
        .affine(1.0 / ((c * ks * ks) as f64).sqrt(), 0.0)?
        .reshape((k, c, ks, ks))?;
    let b = Tensor::arange(0f32, k as f32, &dev)?.affine(0.05, -0.1)?;
    Ok(FrozenLayer::Conv {
        weight: w,
        bias: Some(b),
        params: ConvParams {
            stride,
            padding,
            dilation: 1,
        },
    })
}

fn chain() -> Result<FrozenChain> {
    use FrozenLayer::*;
    FrozenChain::new(vec![
        conv(5, 3, 3, 2, 1, 0.1)?,
        Relu,
        ReflectionPad(2),
        conv(6, 5, 3, 1, 0, 0.2)?,
        Relu,
        MaxPool(3),
        UpsampleNearest(3),
        ReflectionPad(1),
        conv(4, 6, 3, 1, 0, 0.3)?,
        Tanh,
    ])
}

fn weighting(y: &Tensor) -> Result<Tensor> {
    Ok(Tensor::ones(y.dims(), DType::F32, y.device())?
        .cumsum(3)?
        .affine(0.41, 0.3)?
        .cos()?)
}

#[test]
fn fused_chain_equals_its_layers() -> Result<()> {
    let ch = chain()?;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 29, 23), &Device::Cpu)?)?;
    let mut got = Vec::new();
    for fused in [true, false] {
        let y = if fused {
            ch.forward(x.as_tensor())?
        } else {
            ch.forward_layers(x.as_tensor())?
        };
        let grads = (&y * weighting(&y)?)?.sum_all()?.backward()?;
        got.push((y, grads.get(x.as_tensor()).expect("grad x").clone()));
    }
    // 29×23 → conv/2 15×12 → pad 19×16 → conv 17×14 → pool 5×4 → up 15×12 → pad → 15×12.
    assert_eq!(got[0].0.dims(), [2, 4, 15, 12]);
    let tol = Tolerance::COMPOSITE;
    assert_close("out", &got[0].0, &got[1].0, tol)?;
    assert_close("grad", &got[0].1, &got[1].1, tol)?;
    // Without a gradient to track the fused op keeps nothing and gives the same values.
    let y = ch.forward(&x.as_tensor().detach())?;
    assert_close("untracked out", &y, &got[1].0, tol)?;
    Ok(())
}

#[test]
fn variable_weights_run_the_layers_and_get_gradients() -> Result<()> {
    let dev = Device::Cpu;
    let w = Var::from_tensor(&Tensor::randn(0f32, 0.3, (4, 3, 3, 3), &dev)?)?;
    let ch = FrozenChain::new(vec![
        FrozenLayer::ReflectionPad(1),
        FrozenLayer::Conv {
            weight: w.as_tensor().clone(),
            bias: None,
            params: ConvParams::default(),
        },
        FrozenLayer::Relu,
    ])?;
    let x = Tensor::randn(0f32, 1.0, (1, 3, 8, 8), &dev)?;
    let y = ch.forward(&x)?;
    let g = y.sum_all()?.backward()?;
    assert!(
        g.get(w.as_tensor()).is_some(),
        "a variable weight gets its gradient"
    );
    Ok(())
}

#[test]
fn bad_layers_and_inputs_are_clear_errors() -> Result<()> {
    let dev = Device::Cpu;
    let e = FrozenChain::new(vec![FrozenLayer::Conv {
        weight: Tensor::zeros((4, 3, 3), DType::F32, &dev)?,
        bias: None,
        params: ConvParams::default(),
    }])
    .expect_err("rank 3 weight")
    .to_string();
    assert!(
        e.contains("frozen_chain") && e.contains("layer 0") && e.contains("[4, 3, 3]"),
        "{e}"
    );
    let e = FrozenChain::new(vec![
        FrozenLayer::Relu,
        FrozenLayer::Conv {
            weight: Tensor::zeros((4, 3, 3, 3), DType::F32, &dev)?,
            bias: Some(Tensor::zeros(5, DType::F32, &dev)?),
            params: ConvParams::default(),
        },
    ])
    .expect_err("bias of 5")
    .to_string();
    assert!(
        e.contains("layer 1") && e.contains("bias must be [4]"),
        "{e}"
    );
    let e = FrozenChain::new(vec![FrozenLayer::MaxPool(0)])
        .expect_err("pool 0")
        .to_string();
    assert!(e.contains("pool size"), "{e}");
    // A pad as large as the side fails at run time, naming the input.
    let ch = FrozenChain::new(vec![FrozenLayer::ReflectionPad(4)])?;
    let e = ch
        .forward(&Tensor::zeros((1, 2, 4, 6), DType::F32, &dev)?)
        .expect_err("pad 4 of a side of 4")
        .to_string();
    assert!(
        e.contains("reflection pad 4") && e.contains("[1, 2, 4, 6]"),
        "{e}"
    );
    let e = ch
        .forward(&Tensor::zeros((2, 4, 6), DType::F32, &dev)?)
        .expect_err("rank 3")
        .to_string();
    assert!(e.contains("[N, C, H, W]"), "{e}");
    Ok(())
}
