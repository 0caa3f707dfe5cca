//! ResNet encoders against torchvision-layout PyTorch models (`tests/golden/resnet.py`): eval-mode
//! and train-mode outputs, every parameter's gradient, the input's gradient and the running
//! statistics after one train-mode forward, for the ContrastCorr, torchvision and CRW variants of
//! ResNet-18 and for ResNet-50, at width 1/16 (ResNet-50 at 1/32). Tolerance: `Tolerance::COMPOSITE` (rtol 1e-4,
//! atol 1e-6·max|want|), f32 against float64.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use vssl_core::Result;
use vssl_core::testing::{Golden, Tolerance, assert_all_vars_have_grads, assert_close, named_vars};
use vssl_model::{Depth, ResNet, ResNetConfig, is_trainable};

/// Absolute part (× max|want|) for train-mode outputs, gradients and running statistics: batch
/// statistics over few values (stride-32 maps are 2×2) amplify f32 rounding of the convolutions,
/// and gradients sum thousands of products. (Eval-mode outputs: rtol 1e-4, atol 1e-5·max.)
const TRAIN_ATOL: f64 = 1e-4;

fn build(cfg: &ResNetConfig) -> Result<(VarMap, ResNet)> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = ResNet::new(cfg, vb)?;
    Ok((varmap, net))
}

/// Sets every variable from the golden file's `param.*` tensors; checks the key sets agree.
fn load_params(varmap: &VarMap, g: &Golden) -> Result<()> {
    let mut want: Vec<String> = g
        .names()
        .into_iter()
        .filter_map(|n| n.strip_prefix("param.").map(str::to_string))
        .collect();
    want.sort();
    let have: Vec<String> = named_vars(varmap).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        have, want,
        "variable names differ from torchvision's state_dict"
    );
    for (name, var) in named_vars(varmap) {
        var.set(&g.f32(&format!("param.{name}"))?)?;
    }
    Ok(())
}

fn check(name: &str, cfg: ResNetConfig, train_atol_of_max: f64) -> Result<()> {
    let g = Golden::workspace(&format!("resnet_{name}"))?;
    // Eval mode: 1e-5·max, f32 sums over 16-50 layers (one element of R-50 sits at 1.8e-6·max).
    let tol = Tolerance::COMPOSITE.with_atol_of_max(1e-5);
    let train_tol = Tolerance::COMPOSITE.with_atol_of_max(train_atol_of_max);
    let (varmap, net) = build(&cfg)?;
    load_params(&varmap, &g)?;
    let input = g.f32("input")?;

    let eval = net.forward_t(&input, false)?;
    assert_close(&format!("{name} eval.out"), &eval, &g.f32("eval.out")?, tol)?;

    let x = Var::from_tensor(&input)?;
    let out = net.forward_t(x.as_tensor(), true)?;
    assert_close(
        &format!("{name} train.out"),
        &out,
        &g.f32("train.out")?,
        train_tol,
    )?;
    let grads = (out * g.f32("train.w")?)?.sum_all()?.backward()?;
    let trainable: Vec<(String, Var)> = named_vars(&varmap)
        .into_iter()
        .filter(|(n, _)| is_trainable(n))
        .collect();
    assert_all_vars_have_grads(&trainable, &grads)?;
    for (pname, var) in &trainable {
        let got = grads.get(var.as_tensor()).expect("checked above");
        assert_close(
            &format!("{name} grad {pname}"),
            got,
            &g.f32(&format!("train.grad.{pname}"))?,
            train_tol,
        )?;
    }
    let gx = grads.get(x.as_tensor()).expect("input gradient");
    assert_close(
        &format!("{name} grad input"),
        gx,
        &g.f32("train.grad.input")?,
        train_tol,
    )?;
    assert_running_stats(&varmap, &g, "train.after.", train_tol)
}

/// Every BatchNorm running statistic of `varmap` against the golden `<prefix><name>`.
fn assert_running_stats(varmap: &VarMap, g: &Golden, prefix: &str, tol: Tolerance) -> Result<()> {
    for (name, var) in named_vars(varmap).iter().filter(|(n, _)| !is_trainable(n)) {
        assert_close(
            &format!("{prefix}{name}"),
            var.as_tensor(),
            &g.f32(&format!("{prefix}{name}"))?,
            tol,
        )?;
    }
    Ok(())
}

#[test]
fn r18_contrastcorr_matches_pytorch() -> Result<()> {
    let cfg = ResNetConfig::contrastcorr(Depth::R18).with_width(1.0 / 16.0);
    assert_eq!((cfg.out_channels(), cfg.output_stride()), (32, 8));
    check("r18_cc", cfg, TRAIN_ATOL)
}

#[test]
fn r18_torchvision_matches_pytorch() -> Result<()> {
    check(
        "r18_tv",
        ResNetConfig::torchvision(Depth::R18).with_width(1.0 / 16.0),
        TRAIN_ATOL,
    )
}

#[test]
fn r18_crw_matches_pytorch() -> Result<()> {
    let cfg = ResNetConfig::crw(Depth::R18).with_width(1.0 / 16.0);
    assert_eq!((cfg.out_channels(), cfg.output_stride()), (16, 8));
    check("r18_crw", cfg, TRAIN_ATOL)
}

#[test]
fn r50_matches_pytorch() -> Result<()> {
    let cfg = ResNetConfig::torchvision(Depth::R50).with_width(1.0 / 32.0);
    assert_eq!(cfg.out_channels(), 64);
    // ResNet-50's gradients pass 16 train-mode BatchNorms on small maps: PyTorch's own float32 run
    // lands 2.0e-4·max from float64 here (ResNet-18s: ≤ 1.1e-5), so the bound is 10× looser.
    check("r50", cfg, 1e-3)
}

#[test]
fn full_width_shapes_and_torchvision_init() -> Result<()> {
    let (varmap, net) = build(&ResNetConfig::contrastcorr(Depth::R18))?;
    assert_eq!((net.out_channels(), net.output_stride()), (512, 8));
    let x = Tensor::zeros((1, 3, 64, 48), DType::F32, &Device::Cpu)?;
    assert_eq!(net.forward_t(&x, false)?.dims(), [1, 512, 8, 6]);
    let vars = named_vars(&varmap);
    // 11.17 M trainable values in torchvision's ResNet-18 without fc (11,689,512 − 513,000).
    let trainable: usize = vars
        .iter()
        .filter(|(n, _)| is_trainable(n))
        .map(|(_, v)| v.elem_count())
        .sum();
    assert_eq!(trainable, 11_689_512 - 513_000);
    // Kaiming normal, fan_out, ReLU gain: std = sqrt(2 / (64·7·7)) for conv1.
    let w = varmap.data().lock().expect("lock")["layer4.1.conv2.weight"]
        .as_tensor()
        .clone();
    let v = w.flatten_all()?.to_vec1::<f32>()?;
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let std = (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    let want = (2.0f64 / (512.0 * 9.0)).sqrt();
    assert!(mean.abs() < 0.01 * want * 10.0, "mean {mean}");
    assert!((std / want - 1.0).abs() < 0.01, "std {std} vs {want}");
    let gamma = varmap.data().lock().expect("lock")["layer2.0.bn1.weight"]
        .as_tensor()
        .clone();
    assert_eq!(gamma.to_vec1::<f32>()?, vec![1.0; 128]);
    Ok(())
}

#[test]
fn bad_configs_and_inputs_are_clear_errors() -> Result<()> {
    let mut cfg = ResNetConfig {
        strides: vec![],
        ..ResNetConfig::default()
    };
    let e = build(&cfg).map(|_| ()).expect_err("no stage").to_string();
    assert!(e.contains("strides") && e.contains("ResNet"), "{e}");
    cfg.strides = vec![1, 0];
    assert!(build(&cfg).is_err());
    assert!(build(&ResNetConfig::default().with_width(-1.0)).is_err());
    let (_, net) = build(&ResNetConfig::default().with_width(1.0 / 16.0))?;
    let x = Tensor::zeros((1, 1, 32, 32), DType::F32, &Device::Cpu)?;
    let e = net
        .forward_t(&x, false)
        .expect_err("one channel")
        .to_string();
    assert!(e.contains("[1, 1, 32, 32]"), "{e}");
    Ok(())
}

/// torchvision's state-dict keys, shapes and dtypes (written by `tests/golden/weights.py`).
fn torchvision_keys(arch: &str) -> Result<Vec<(String, Vec<usize>, String)>> {
    let path = vssl_core::testing::golden_dir().join(format!("weights/{arch}_keys.json"));
    let text =
        std::fs::read_to_string(&path).map_err(|e| vssl_core::Error::file(&path, e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| vssl_core::Error::file(&path, e.to_string()))
}

#[test]
fn export_gives_torchvisions_keys_and_loads_back() -> Result<()> {
    use vssl_model::weights::{TensorMap, export_torchvision, load_into_varmap, load_tensors};
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("resnet-export");
    std::fs::create_dir_all(&dir).map_err(|e| vssl_core::Error::file(&dir, e.to_string()))?;
    for (arch, cfg) in [
        ("resnet18", ResNetConfig::contrastcorr(Depth::R18)),
        ("resnet18_crw", ResNetConfig::crw(Depth::R18)),
        ("resnet50", ResNetConfig::torchvision(Depth::R50)),
    ] {
        let (varmap, net) = build(&cfg)?;
        let map: TensorMap = named_vars(&varmap)
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect();
        let path = dir.join(format!("{arch}.safetensors"));
        export_torchvision(&map, &path)?;
        let back = load_tensors(&path, &Device::Cpu)?;
        let mut got: Vec<(String, Vec<usize>, String)> = back
            .iter()
            .map(|(k, t)| (k.clone(), t.dims().to_vec(), format!("{:?}", t.dtype())))
            .collect();
        got.sort();
        let mut want: Vec<(String, Vec<usize>, String)> = torchvision_keys(arch)?
            .into_iter()
            .map(|(k, s, d)| {
                let d = if d == "int64" { "I64" } else { "F32" };
                (k, s, d.to_string())
            })
            .collect();
        want.sort();
        assert_eq!(got, want, "{arch}: exported keys differ from torchvision's");
        // The file loads back into a fresh network, which then computes the same features.
        let (varmap2, net2) = build(&cfg)?;
        load_into_varmap(&varmap2, &back, &path)?;
        let x = Tensor::randn(0f32, 1.0, (1, 3, 32, 32), &Device::Cpu)?;
        let (a, b) = (net.forward_t(&x, false)?, net2.forward_t(&x, false)?);
        let d = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert_eq!(d, 0.0, "{arch}");
    }
    Ok(())
}

/// The values of every trainable variable (`trainable`) or of every running statistic, copied.
fn values(varmap: &VarMap, trainable: bool) -> Result<Vec<(String, Vec<f32>)>> {
    named_vars(varmap)
        .into_iter()
        .filter(|(n, _)| is_trainable(n) == trainable)
        .map(|(n, v)| Ok((n, v.as_tensor().flatten_all()?.to_vec1::<f32>()?)))
        .collect()
}

#[test]
fn precise_bn_matches_pytorch_and_restores_on_error() -> Result<()> {
    // tests/golden/precise_bn.py: reset_running_stats(), momentum = None, train-mode forwards of
    // three inputs of different batch sizes and shapes.
    let g = Golden::workspace("precise_bn")?;
    let cfg = ResNetConfig::contrastcorr(Depth::R18).with_width(1.0 / 16.0);
    let (varmap, net) = build(&cfg)?;
    load_params(&varmap, &g)?;
    let inputs: Vec<Tensor> = (0..3)
        .map(|k| g.f32(&format!("input.{k}")))
        .collect::<Result<_>>()?;
    let weights_before = values(&varmap, true)?;

    assert_eq!(net.recompute_bn_stats(inputs.iter().cloned().map(Ok))?, 3);
    let tol = Tolerance::COMPOSITE.with_atol_of_max(TRAIN_ATOL);
    assert_running_stats(&varmap, &g, "after.", tol)?;
    let eval = net.forward_t(&inputs[0], false)?;
    assert_close("eval.out after", &eval, &g.f32("eval.out")?, tol)?;
    assert_eq!(
        values(&varmap, true)?,
        weights_before,
        "only the statistics change"
    );

    // No input: nothing changes. A failing input (mid-way) restores the statistics exactly.
    let stats = values(&varmap, false)?;
    assert_eq!(net.recompute_bn_stats(std::iter::empty())?, 0);
    assert_eq!(values(&varmap, false)?, stats);
    let bad = Tensor::zeros((1, 4, 16, 16), DType::F32, &Device::Cpu)?;
    let err = net
        .recompute_bn_stats([Ok(inputs[1].clone()), Ok(bad)])
        .expect_err("a 4-channel input");
    assert!(err.to_string().contains("[B, 3, H, W]"), "{err}");
    assert_eq!(values(&varmap, false)?, stats);
    Ok(())
}
