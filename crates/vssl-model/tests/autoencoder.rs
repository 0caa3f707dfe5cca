//! The frozen Lab autoencoder against PyTorch (`tests/golden/autoencoder.py`): a width-reduced
//! random autoencoder (encoder output, decoder output, and the gradient the frozen decoder passes
//! to its input) and, when `../shared/weights/uvc-lab-autoencoder/` is present, the real UVC
//! weights at full width. Tolerance: `Tolerance::COMPOSITE`.

use std::path::PathBuf;

use candle_core::{Device, Var};
use vssl_core::Result;
use vssl_core::testing::{Golden, Tolerance, assert_close};
use vssl_model::autoencoder::TensorMap;
use vssl_model::{Autoencoder, AutoencoderWidths};

fn prefixed(g: &Golden, prefix: &str) -> Result<TensorMap> {
    let mut map = TensorMap::new();
    for name in g.names() {
        if let Some(rest) = name.strip_prefix(prefix) {
            map.insert(rest.to_string(), g.f32(&name)?);
        }
    }
    Ok(map)
}

#[test]
fn reduced_autoencoder_matches_pytorch() -> Result<()> {
    let g = Golden::workspace("autoencoder")?;
    let widths = AutoencoderWidths { a: 8, b: 16, c: 32 };
    let ae = Autoencoder::from_tensors(
        widths,
        prefixed(&g, "enc.")?,
        prefixed(&g, "dec.")?,
        &Device::Cpu,
    )?;
    let tol = Tolerance::COMPOSITE;
    let enc = ae.encoder.forward(&g.f32("input")?)?;
    assert_close("enc.out", &enc, &g.f32("enc.out")?, tol)?;
    let x = Var::from_tensor(&g.f32("dec.in")?)?;
    let dec = ae.decoder.forward(x.as_tensor())?;
    assert_close("dec.out", &dec, &g.f32("dec.out")?, tol)?;
    let grads = (dec * g.f32("dec.w")?)?.sum_all()?.backward()?;
    let gx = grads
        .get(x.as_tensor())
        .expect("the decoder passes gradients to its input");
    assert_close("dec.grad.in", gx, &g.f32("dec.grad.in")?, tol)?;
    // Frozen: the weights are constants, so the graph holds no variable but the input.
    Ok(())
}

/// Each half as one fused op equals the same layers run one by one (the golden-tested path):
/// output, and the gradient each half passes to its input (the encoder's through its max-pools,
/// which the fused op routes by the argmax it keeps), on sizes with odd feature maps.
#[test]
fn fused_halves_equal_their_layers() -> Result<()> {
    let dev = Device::Cpu;
    let ae = Autoencoder::random(AutoencoderWidths { a: 6, b: 10, c: 12 }, 3, &dev)?;
    let tol = Tolerance::COMPOSITE;
    let img = Var::from_tensor(&candle_core::Tensor::randn(
        0f32,
        0.5,
        (2, 3, 40, 56),
        &dev,
    )?)?;
    let feat = Var::from_tensor(&candle_core::Tensor::randn(0f32, 1.0, (3, 12, 5, 7), &dev)?)?;
    for (name, x) in [("encoder", &img), ("decoder", &feat)] {
        let mut results = Vec::new();
        for fused in [true, false] {
            let y = match (name, fused) {
                ("encoder", true) => ae.encoder.forward(x.as_tensor())?,
                ("encoder", false) => ae.encoder.forward_layers(x.as_tensor())?,
                (_, true) => ae.decoder.forward(x.as_tensor())?,
                (_, false) => ae.decoder.forward_layers(x.as_tensor())?,
            };
            // A weighting that is not constant, so every position's gradient matters.
            let w = candle_core::Tensor::ones(y.dims(), candle_core::DType::F32, &dev)?
                .cumsum(3)?
                .affine(0.37, 0.0)?
                .sin()?;
            let grads = (&y * w)?.sum_all()?.backward()?;
            let gx = grads.get(x.as_tensor()).expect("input gradient").clone();
            results.push((y, gx));
        }
        assert_close(&format!("{name} out"), &results[0].0, &results[1].0, tol)?;
        assert_close(&format!("{name} grad"), &results[0].1, &results[1].1, tol)?;
    }
    Ok(())
}

#[test]
fn bad_inputs_are_clear_errors() -> Result<()> {
    let g = Golden::workspace("autoencoder")?;
    let widths = AutoencoderWidths { a: 8, b: 16, c: 32 };
    let ae = Autoencoder::from_tensors(
        widths,
        prefixed(&g, "enc.")?,
        prefixed(&g, "dec.")?,
        &Device::Cpu,
    )?;
    let x = candle_core::Tensor::zeros((1, 3, 20, 16), candle_core::DType::F32, &Device::Cpu)?;
    let e = ae
        .encoder
        .forward(&x)
        .expect_err("20 is not a multiple of 8")
        .to_string();
    assert!(
        e.contains("LabEncoder") && e.contains("[1, 3, 20, 16]"),
        "{e}"
    );
    let f = candle_core::Tensor::zeros((1, 31, 2, 2), candle_core::DType::F32, &Device::Cpu)?;
    let e = ae.decoder.forward(&f).expect_err("31 channels").to_string();
    assert!(e.contains("LabDecoder") && e.contains("32"), "{e}");
    // A missing tensor names itself.
    let mut enc = prefixed(&g, "enc.")?;
    enc.remove("conv4.weight");
    let e = Autoencoder::from_tensors(widths, enc, prefixed(&g, "dec.")?, &Device::Cpu)
        .expect_err("missing conv4")
        .to_string();
    assert!(e.contains("conv4.weight"), "{e}");
    Ok(())
}

fn shared_weights() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/weights/uvc-lab-autoencoder"
    ))
}

#[test]
fn real_uvc_weights_match_pytorch_when_present() -> Result<()> {
    let dir = shared_weights();
    if !dir.join("encoder_legacy.pth").exists() || !dir.join("encoder.safetensors").exists() {
        eprintln!("skipping: {} not present", dir.display());
        return Ok(());
    }
    let g = Golden::workspace("autoencoder_shared")?;
    let tol = Tolerance::COMPOSITE;
    // The decoder runs on our own encoder's f32 output (off by up to 5.3e-7 of max|enc.out|),
    // through full-width convolutions, whose summation order depends on the CPU (the GEMM takes
    // its blocking from the cache sizes and its kernels from the SIMD width): on one machine (AMD
    // EPYC, 1 MiB L2, AVX2 kernels) its worst element was off by 1.6e-6 of max|dec.out|, 1.15x
    // the composite bound. 4e-6 leaves room for that; a wrong layer is off by orders of magnitude
    // more.
    let dec_tol = tol.with_atol_of_max(4e-6);
    // The published legacy `.pth` files and their safetensors conversion both load.
    for (enc, dec) in [
        ("encoder_legacy.pth", "decoder_legacy.pth"),
        ("encoder.safetensors", "decoder.safetensors"),
    ] {
        let ae = Autoencoder::load(&dir.join(enc), &dir.join(dec), &Device::Cpu)?;
        let e = ae.encoder.forward(&g.f32("input")?)?;
        assert_close(&format!("{enc} enc.out"), &e, &g.f32("enc.out")?, tol)?;
        let d = ae.decoder.forward(&e)?;
        assert_close(&format!("{dec} dec.out"), &d, &g.f32("dec.out")?, dec_tol)?;
    }
    // Halves swapped: the error names the file and the tensor it lacks.
    let e = Autoencoder::load(
        &dir.join("decoder.safetensors"),
        &dir.join("encoder.safetensors"),
        &Device::Cpu,
    )
    .map(|_| ())
    .expect_err("swapped halves")
    .to_string();
    assert!(
        e.contains("decoder.safetensors") && e.contains("not a UVC Lab encoder"),
        "{e}"
    );
    Ok(())
}
