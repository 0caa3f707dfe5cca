//! Weight import/export: every file format loads to the same values, prefixes strip, errors name
//! the file and say what is wrong, torchvision export has torchvision's exact key set, and `hf:`
//! specs resolve in a local cache only.
//!
//! Fixtures: `tests/golden/weights.py` (torch 2.9.1) writes `tests/golden/weights/*`.
#![allow(clippy::unwrap_used)] // helpers panic on failure like the tests that call them

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarMap};
use vssl_model::weights::{self, Format, TensorMap};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden/weights")
        .join(name)
}

/// A fresh, empty scratch folder under cargo's per-target tmp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("weights")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn load(name: &str) -> TensorMap {
    weights::load_tensors(&fixture(name), &Device::Cpu).unwrap()
}

/// Values as f64 bit patterns (exact for every dtype in the fixtures: f16/f32/f64 and i64 below
/// 2^53).
fn bits(t: &Tensor) -> Vec<u64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
        .into_iter()
        .map(f64::to_bits)
        .collect()
}

/// Same keys, and per key the same dtype, shape and bit-identical values.
fn assert_same(got: &TensorMap, want: &TensorMap, what: &str) {
    let gk: Vec<_> = got.keys().collect();
    let wk: Vec<_> = want.keys().collect();
    assert_eq!(gk, wk, "{what}: key sets differ");
    for (k, w) in want {
        let g = &got[k];
        assert_eq!(g.dtype(), w.dtype(), "{what}: {k} dtype");
        assert_eq!(g.dims(), w.dims(), "{what}: {k} shape");
        assert_eq!(bits(g), bits(w), "{what}: {k} values");
    }
}

fn err_string(r: vssl_core::Result<impl std::fmt::Debug>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => {
            eprintln!("error: {e}");
            e.to_string()
        }
    }
}

#[test]
fn every_format_loads_to_the_same_values() {
    let want = load("small.safetensors");
    assert_eq!(want.len(), 13);
    for name in [
        "small_zip.torch",
        "small_zip_p4.torch",
        "small_legacy.torch",
        "small_legacy_p4.torch",
    ] {
        assert_same(&load(name), &want, name);
    }
    // Spot checks against values the script fixed, so the reference itself is right.
    let l = load("small_legacy.torch");
    assert_eq!(
        l["l.i64"].to_vec1::<i64>().unwrap(),
        vec![-3, 0, 5, 1i64 << 40]
    );
    let nbt = &l["a.bn1.num_batches_tracked"];
    assert_eq!((nbt.dtype(), nbt.rank()), (DType::I64, 0));
    assert_eq!(nbt.to_scalar::<i64>().unwrap(), 7);
    assert_eq!(l["d.f64"].dtype(), DType::F64);
    assert_eq!(l["h.f16"].dtype(), DType::F16);
    assert_eq!(l["e.empty"].dims(), &[0, 3]);
    // Non-contiguous views come out in row-major order: view.t is [5, 3] and its rows are the
    // columns of a [3, 5] base, i.e. view.t^T is contiguous data of the base.
    for name in ["small_zip.torch", "small_legacy.torch"] {
        let m = load(name);
        let t = &m["view.t"];
        assert_eq!(t.dims(), &[5, 3]);
        assert!(t.is_contiguous());
        // view.slice = base[1:, ::2] and view.row = base[0] share one storage of 24 elements.
        assert_eq!(m["view.slice"].dims(), &[3, 3]);
        assert_eq!(m["view.row"].dims(), &[6]);
    }
}

#[test]
fn format_is_detected_by_content_not_extension() {
    let dir = scratch("detect");
    let cases = [
        (
            "small_legacy.torch",
            "legacy.safetensors",
            Format::PthLegacy,
        ),
        ("small_zip.torch", "zip.bin", Format::PthZip),
        ("small.safetensors", "st.pth", Format::Safetensors),
    ];
    let want = load("small.safetensors");
    for (src, dst, format) in cases {
        let bytes = std::fs::read(fixture(src)).unwrap();
        assert_eq!(weights::detect_format(&bytes), Some(format), "{src}");
        let path = dir.join(dst);
        std::fs::write(&path, &bytes).unwrap();
        let got = weights::load_tensors(&path, &Device::Cpu).unwrap();
        assert_same(&got, &want, dst);
    }
    assert_eq!(weights::detect_format(b"hello world, not weights"), None);
    assert_eq!(weights::detect_format(b""), None);
}

#[test]
fn checkpoints_yield_their_state_dict_and_prefixes_strip() {
    let small = load("small.safetensors");
    let want: TensorMap = small
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("a.").map(|k| (k.to_string(), v.clone())))
        .collect();
    assert_eq!(want.len(), 6);
    for name in ["ckpt_zip.torch", "ckpt_legacy.torch"] {
        let all = load(name);
        // The state dict, without `_metadata` or the checkpoint's epoch/arch/best entries.
        let mut keys: Vec<_> = all.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys.len(), 7, "{name}: {keys:?}");
        assert!(all.contains_key("module.head.w"), "{name}");
        let enc = weights::strip_prefix(all, "module.gray_encoder.");
        assert_same(&enc, &want, name);
    }
    // `net` is tried after `state_dict` and `model`.
    let net = load("net_zip.torch");
    assert_eq!(
        net.keys().collect::<Vec<_>>(),
        vec!["a.conv1.weight", "d.f64"]
    );
    assert_eq!(bits(&net["d.f64"]), bits(&small["d.f64"]));
    // An empty prefix keeps everything.
    assert_eq!(weights::strip_prefix(small.clone(), "").len(), small.len());
}

#[test]
fn many_tensors_exercise_long_memo_indices() {
    let m = load("many_legacy.torch");
    assert_eq!(m.len(), 300);
    for i in [0usize, 1, 255, 256, 299] {
        assert_eq!(
            m[&format!("t.{i}")].to_vec1::<f32>().unwrap(),
            vec![i as f32],
            "t.{i}"
        );
    }
}

#[test]
fn errors_name_the_file_and_say_what_is_wrong() {
    let dir = scratch("errors");
    let cpu = Device::Cpu;

    let missing = dir.join("nope.pth");
    let e = err_string(weights::load_tensors(&missing, &cpu));
    assert!(e.contains("nope.pth") && e.contains("cannot read"), "{e}");

    let empty = dir.join("empty.pth");
    std::fs::write(&empty, b"").unwrap();
    let e = err_string(weights::load_tensors(&empty, &cpu));
    assert!(e.contains("empty.pth") && e.contains("empty file"), "{e}");

    let garbage = dir.join("garbage.pth");
    std::fs::write(&garbage, b"this is not a weight file at all").unwrap();
    let e = err_string(weights::load_tensors(&garbage, &cpu));
    assert!(
        e.contains("garbage.pth") && e.contains("unknown weight format"),
        "{e}"
    );

    // Legacy file cut inside the pickled object, and inside the storage data.
    let legacy = std::fs::read(fixture("small_legacy.torch")).unwrap();
    for (cut, expect) in [(300usize, "truncated"), (legacy.len() - 10, "truncated")] {
        let p = dir.join(format!("cut{cut}.pth"));
        std::fs::write(&p, &legacy[..cut]).unwrap();
        let e = err_string(weights::load_tensors(&p, &cpu));
        assert!(
            e.contains(&format!("cut{cut}.pth")) && e.contains(expect),
            "{e}"
        );
    }
    // Zip archive cut in half: still starts with PK, but the central directory is gone.
    let zip = std::fs::read(fixture("small_zip.torch")).unwrap();
    let p = dir.join("cutzip.pth");
    std::fs::write(&p, &zip[..zip.len() / 2]).unwrap();
    let e = err_string(weights::load_tensors(&p, &cpu));
    assert!(
        e.contains("cutzip.pth") && e.contains("bad zip archive"),
        "{e}"
    );

    // Safetensors cut: header claims more than the file holds.
    let st = std::fs::read(fixture("small.safetensors")).unwrap();
    let p = dir.join("cut.safetensors");
    std::fs::write(&p, &st[..st.len() - 4]).unwrap();
    let e = err_string(weights::load_tensors(&p, &cpu));
    assert!(
        e.contains("cut.safetensors") && e.contains("bad safetensors"),
        "{e}"
    );

    // An unknown storage class (same length, so the pickle stays valid).
    let patched = replace_all(&legacy, b"FloatStorage", b"QuintStorage");
    let p = dir.join("quant.pth");
    std::fs::write(&p, patched).unwrap();
    let e = err_string(weights::load_tensors(&p, &cpu));
    assert!(
        e.contains("quant.pth") && e.contains("unknown storage type torch.QuintStorage"),
        "{e}"
    );

    // A pickle without tensors.
    let e = err_string(weights::load_tensors(
        &fixture("not_tensors_legacy.torch"),
        &cpu,
    ));
    assert!(
        e.contains("not_tensors_legacy.torch")
            && e.contains("not a tensor dict")
            && e.contains("\"epoch\" (int)"),
        "{e}"
    );
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = hay.to_vec();
    let mut i = 0;
    let mut n = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            n += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert!(n > 0);
    out
}

/// The `a.*` tensors of the fixture, without the `a.` prefix.
fn bn_model_tensors() -> TensorMap {
    weights::strip_prefix(load("small_legacy.torch"), "a.")
}

fn var_values(vm: &VarMap, name: &str) -> Vec<u64> {
    let data = vm.data().lock().unwrap();
    bits(data[name].as_tensor())
}

#[test]
fn load_into_varmap_sets_every_variable() {
    let tensors = bn_model_tensors();
    let vm = VarMap::new();
    let cpu = Device::Cpu;
    vm.get(
        (4, 3, 3, 3),
        "conv1.weight",
        Init::Const(0.),
        DType::F32,
        &cpu,
    )
    .unwrap();
    for n in ["bn1.weight", "bn1.running_mean", "bn1.running_var"] {
        vm.get(4, n, Init::Const(0.), DType::F32, &cpu).unwrap();
    }
    // A variable of another dtype gets the value converted.
    vm.get(4, "bn1.bias", Init::Const(0.), DType::F64, &cpu)
        .unwrap();
    let report = weights::load_into_varmap(&vm, &tensors, Path::new("w.pth")).unwrap();
    assert_eq!(report.set, 5);
    assert_eq!(report.ignored, vec!["bn1.num_batches_tracked".to_string()]);
    for n in [
        "conv1.weight",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
    ] {
        assert_eq!(var_values(&vm, n), bits(&tensors[n]), "{n}");
    }
}

#[test]
fn load_into_varmap_lists_missing_unexpected_and_mismatched_keys() {
    let mut tensors = bn_model_tensors();
    tensors.insert(
        "head.w".into(),
        Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap(),
    );
    tensors.remove("bn1.bias");
    let vm = VarMap::new();
    let cpu = Device::Cpu;
    vm.get(
        (4, 3, 3, 3),
        "conv1.weight",
        Init::Const(0.5),
        DType::F32,
        &cpu,
    )
    .unwrap();
    for n in ["bn1.weight", "bn1.bias", "bn1.running_mean"] {
        vm.get(4, n, Init::Const(0.5), DType::F32, &cpu).unwrap();
    }
    vm.get(5, "bn1.running_var", Init::Const(0.5), DType::F32, &cpu)
        .unwrap();
    vm.get(7, "bn2.weight", Init::Const(0.5), DType::F32, &cpu)
        .unwrap();
    let e = err_string(weights::load_into_varmap(
        &vm,
        &tensors,
        Path::new("/ckpt/enc.pth"),
    ));
    assert!(
        e.starts_with("/ckpt/enc.pth: weights do not match the model"),
        "{e}"
    );
    assert!(
        e.contains("missing keys (2): bn1.bias [4], bn2.weight [7]"),
        "{e}"
    );
    assert!(e.contains("unexpected keys (1): head.w [2, 2]"), "{e}");
    assert!(
        e.contains("shape mismatches (1): bn1.running_var: file [4], model [5]"),
        "{e}"
    );
    assert!(!e.contains("num_batches_tracked"), "{e}");
    // Nothing was set.
    assert!(
        var_values(&vm, "conv1.weight")
            .iter()
            .all(|&b| b == 0.5f64.to_bits())
    );
}

#[test]
fn save_safetensors_is_atomic_and_round_trips() {
    let dir = scratch("save");
    let want = load("small.safetensors");
    let path = dir.join("out.safetensors");
    std::fs::write(&path, b"old contents").unwrap();
    weights::save_safetensors(&want, &path).unwrap();
    assert_same(
        &weights::load_tensors(&path, &Device::Cpu).unwrap(),
        &want,
        "saved",
    );
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        names,
        vec!["out.safetensors"],
        "no temp file is left behind"
    );
    // Views are written as their values.
    let legacy = load("small_legacy.torch");
    weights::save_safetensors(&legacy, &path).unwrap();
    assert_same(
        &weights::load_tensors(&path, &Device::Cpu).unwrap(),
        &want,
        "views",
    );

    let bad = dir.join("no/such/folder/x.safetensors");
    let e = err_string(weights::save_safetensors(&want, &bad));
    assert!(
        e.contains("no/such/folder/x.safetensors") && e.contains("cannot write"),
        "{e}"
    );
}

/// torchvision's keys and shapes (minus `fc.*`) as the golden script wrote them.
fn torchvision_keys(arch: &str) -> Vec<(String, Vec<usize>, String)> {
    let text = std::fs::read_to_string(fixture(&format!("{arch}_keys.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn export_torchvision_has_torchvisions_exact_key_set() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("weights-export");
    std::fs::create_dir_all(&dir).unwrap();
    let cpu = Device::Cpu;
    for arch in ["resnet18", "resnet18_crw", "resnet50"] {
        let keys = torchvision_keys(arch);
        assert!(keys.iter().all(|(k, _, _)| !k.starts_with("fc.")));
        // The model's variables: everything but num_batches_tracked (candle has no such var).
        let mut vm = VarMap::new();
        for (i, (k, shape, dtype)) in keys.iter().enumerate() {
            if k.ends_with("num_batches_tracked") {
                assert_eq!(dtype, "int64");
                continue;
            }
            assert_eq!(dtype, "float32", "{k}");
            let n: usize = shape.iter().product();
            // Deterministic, small, finite values; running_var positive.
            let v = (Tensor::arange(0u32, n as u32, &cpu)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                * (0.37 + i as f64 * 1e-3))
                .unwrap()
                .sin()
                .unwrap();
            let v = if k.ends_with("running_var") {
                (v.abs().unwrap() + 0.5).unwrap()
            } else {
                (v * 0.05).unwrap()
            };
            vm.get(shape.as_slice(), k, Init::Const(0.), DType::F32, &cpu)
                .unwrap();
            vm.set_one(k, v.reshape(shape.as_slice()).unwrap()).unwrap();
        }
        let state: TensorMap = vm
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        let path = dir.join(format!("{arch}.safetensors"));
        weights::export_torchvision(&state, &path).unwrap();
        let back = weights::load_tensors(&path, &cpu).unwrap();
        let mut want: Vec<_> = keys.iter().map(|(k, _, _)| k.as_str()).collect();
        want.sort();
        assert_eq!(
            back.keys().map(String::as_str).collect::<Vec<_>>(),
            want,
            "{arch}"
        );
        for (k, shape, dtype) in &keys {
            let t = &back[k];
            assert_eq!(t.dims(), shape.as_slice(), "{arch} {k}");
            if dtype == "int64" {
                assert_eq!(t.dtype(), DType::I64, "{arch} {k}");
                assert_eq!(t.to_scalar::<i64>().unwrap(), 0);
            } else {
                assert_eq!(t.dtype(), DType::F32, "{arch} {k}");
                assert_eq!(bits(t), bits(&state[k]), "{arch} {k}");
            }
        }
        eprintln!("exported {}", path.display());
    }
}

#[test]
fn shared_uvc_autoencoder_legacy_matches_safetensors() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/weights/uvc-lab-autoencoder"
    ));
    if !dir.join("encoder_legacy.pth").exists() {
        eprintln!(
            "skipping: {} not present",
            dir.join("encoder_legacy.pth").display()
        );
        return;
    }
    for part in ["encoder", "decoder"] {
        let cpu = Device::Cpu;
        let legacy = weights::load_tensors(&dir.join(format!("{part}_legacy.pth")), &cpu).unwrap();
        let st = weights::load_tensors(&dir.join(format!("{part}.safetensors")), &cpu).unwrap();
        assert!(!legacy.is_empty());
        assert_same(&legacy, &st, part);
        eprintln!("{part}: {} tensors bit-identical", legacy.len());
    }
}

#[test]
fn plain_paths_resolve_as_given() {
    let p = fixture("small.safetensors");
    let spec = p.to_str().unwrap();
    assert_eq!(weights::resolve_weights(spec).unwrap(), p);
    let e = err_string(weights::resolve_weights("/no/such/weights.safetensors"));
    assert!(
        e.contains("/no/such/weights.safetensors") && e.contains("no such"),
        "{e}"
    );
    let e = err_string(weights::resolve_weights("hf:no-slash"));
    assert!(e.contains("expected hf:ORG/NAME"), "{e}");
}

#[cfg(not(feature = "hub"))]
#[test]
fn hf_spec_without_hub_feature_says_how_to_enable_it() {
    let e = err_string(weights::resolve_weights("hf:org/name"));
    assert!(
        e.contains("hf:org/name") && e.contains("--features hub"),
        "{e}"
    );
}

/// Everything that reads the process environment lives in this one test (env vars are
/// process-wide and tests run in parallel).
#[cfg(feature = "hub")]
#[test]
fn hf_specs_resolve_in_the_local_cache_only() {
    let cache = scratch("hf-cache");
    let repo = cache.join("models--org--name");
    let hash = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), hash).unwrap();
    let snap = repo.join("snapshots").join(hash);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::write(snap.join("model.safetensors"), b"x").unwrap();
    std::fs::write(snap.join("other.safetensors"), b"y").unwrap();

    // The explicit-cache resolver.
    assert_eq!(
        weights::resolve_in_cache(&cache, "org/name", "model.safetensors").unwrap(),
        snap.join("model.safetensors")
    );

    // SAFETY: this is the only test that touches the environment.
    unsafe {
        std::env::remove_var("HUGGINGFACE_HUB_CACHE");
        std::env::set_var("HF_HUB_CACHE", &cache);
        std::env::set_var("HF_HUB_OFFLINE", "1");
    }
    assert_eq!(weights::hf_cache_dir(), Some(cache.clone()));
    assert_eq!(
        weights::resolve_weights("hf:org/name").unwrap(),
        snap.join("model.safetensors")
    );
    assert_eq!(
        weights::resolve_weights("hf:org/name:other.safetensors").unwrap(),
        snap.join("other.safetensors")
    );
    let e = err_string(weights::resolve_weights("hf:org/name:missing.bin"));
    assert!(
        e.contains("not in the local Hugging Face cache")
            && e.contains("missing.bin is missing")
            && e.contains("huggingface-cli download org/name missing.bin"),
        "{e}"
    );
    let e = err_string(weights::resolve_weights("hf:org/absent"));
    assert!(e.contains("models--org--absent does not exist"), "{e}");
    // A ref with a trailing newline (hand-made caches) still resolves.
    std::fs::write(repo.join("refs/main"), format!("{hash}\n")).unwrap();
    assert_eq!(
        weights::resolve_weights("hf:org/name").unwrap(),
        snap.join("model.safetensors")
    );
    // HF_HOME is used when HF_HUB_CACHE is unset.
    unsafe {
        std::env::remove_var("HF_HUB_CACHE");
        std::env::set_var("HF_HOME", "/some/hf-home");
    }
    assert_eq!(
        weights::hf_cache_dir(),
        Some(PathBuf::from("/some/hf-home/hub"))
    );
}
