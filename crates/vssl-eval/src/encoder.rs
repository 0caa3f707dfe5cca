//! What turns a frame into the features labels are propagated by: a ResNet (from a run's
//! checkpoint, from a weights file trained elsewhere, or randomly initialised) or raw Lab pixels.
//!
//! Weights are read with [`vssl_model::weights`] (safetensors, PyTorch `.pth` zip or legacy),
//! under torchvision's names after an optional prefix is stripped (`module.gray_encoder.` for a
//! ContrastCorr checkpoint, `encoder.` for a vssl run). The architecture comes from the weights
//! (depth from the block structure, width from `conv1`), the stage strides from the protocol:
//! an evaluation protocol fixes the encoder variant (ContrastCorr's test script hard-codes
//! strides 1, 2, 1, 1), so a torchvision checkpoint can be evaluated with CRW's variant, its
//! `layer4` and head ignored.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use vssl_core::{Error, Result};
use vssl_data::augment::{IMAGENET_MEAN, IMAGENET_STD};
use vssl_data::frame::Frame;
use vssl_model::weights::{TensorMap, load_into_varmap, load_tensors, strip_prefix};
use vssl_model::{Depth, PaddingMode, ResNet, ResNetConfig};

use crate::protocol::ColourInput;

/// The side of the raw-pixel baseline's patches (the ResNets' stride).
pub const PATCH: usize = 8;

/// A feature extractor.
#[derive(Debug, Clone)]
pub enum Encoder {
    /// A ResNet in eval mode (BatchNorm with its running statistics).
    ResNet {
        /// The network.
        net: Box<ResNet>,
        /// Where it came from, for reports.
        source: String,
    },
    /// Raw Lab pixels: each non-overlapping `8×8` patch of the normalised Lab frame
    /// (`(lab − 128)/128`), flattened to `3·64` values (the "pixels only" baseline).
    LabPatches,
}

/// The architecture a torchvision-named state dict holds: depth, width multiplier, stages.
fn infer_config(t: &TensorMap, strides: &[usize], source: &Path) -> Result<ResNetConfig> {
    let bad = |m: String| Error::file(source, m);
    let stem = t
        .get("conv1.weight")
        .ok_or_else(|| bad("no conv1.weight: not a ResNet under torchvision's names (is a --strip-prefix missing?)".into()))?;
    let width = stem.dims()[0] as f64 / 64.0;
    let depth = if t.contains_key("layer1.0.conv3.weight") {
        Depth::R50
    } else if t.contains_key("layer3.2.conv1.weight") {
        Depth::R34
    } else {
        Depth::R18
    };
    let stages = (1..=4)
        .take_while(|i| t.contains_key(&format!("layer{i}.0.conv1.weight")))
        .count();
    if stages < strides.len() {
        return Err(bad(format!(
            "the protocol uses {} stages (strides {strides:?}) but the weights hold {stages}",
            strides.len()
        )));
    }
    Ok(ResNetConfig {
        depth,
        width,
        strides: strides.to_vec(),
    })
}

/// The keys a ResNet with `stages` stages has: the stem and `layer1..=stages`.
fn encoder_keys(t: TensorMap, stages: usize) -> TensorMap {
    t.into_iter()
        .filter(|(k, _)| {
            k.starts_with("conv1.")
                || k.starts_with("bn1.")
                || (1..=stages).any(|i| k.starts_with(&format!("layer{i}.")))
        })
        .collect()
}

impl Encoder {
    /// A ResNet from a weights file (safetensors or `.pth`), keys after `strip` removed, with the
    /// protocol's stage `strides`.
    ///
    /// # Errors
    /// [`Error::File`] naming the file when it cannot be read, holds no ResNet under
    /// torchvision's names, fewer stages than the strides, or keys that do not fit.
    pub fn from_weights(
        path: &Path,
        strip: &str,
        strides: &[usize],
        device: &Device,
    ) -> Result<Self> {
        let all = load_tensors(path, device)?;
        let t = if strip.is_empty() {
            all
        } else {
            strip_prefix(all, strip)
        };
        Self::from_tensors(t, strides, path, device)
    }

    /// A ResNet from tensors already in memory under torchvision's names (what
    /// [`Encoder::from_weights`] reads from a file); `source` names them in errors and reports.
    /// Keys beyond the stem and the stages the `strides` use are ignored.
    ///
    /// # Errors
    /// [`Error::File`] naming `source` when the tensors hold no ResNet under torchvision's
    /// names, fewer stages than the strides, or keys that do not fit.
    pub fn from_tensors(
        tensors: TensorMap,
        strides: &[usize],
        source: &Path,
        device: &Device,
    ) -> Result<Self> {
        let cfg = infer_config(&tensors, strides, source)?;
        let t = encoder_keys(tensors, strides.len());
        let varmap = VarMap::new();
        let net = ResNet::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
        load_into_varmap(&varmap, &t, source)?;
        Ok(Self::ResNet {
            net: Box::new(net),
            source: format!(
                "{} ({:?}, width {}, strides {:?})",
                source.display(),
                cfg.depth,
                cfg.width,
                cfg.strides
            ),
        })
    }

    /// The encoder of a vssl training run: `RUN` is a run folder (its `latest` file names the
    /// checkpoint, else the newest `checkpoint-<step>.safetensors`) or a checkpoint file; the
    /// encoder's weights are the keys under `encoder.`.
    ///
    /// # Errors
    /// [`Error::File`] when no checkpoint is found or it holds no encoder.
    pub fn from_checkpoint(run: &Path, strides: &[usize], device: &Device) -> Result<Self> {
        let file = checkpoint_file(run)?;
        Self::from_weights(&file, "encoder.", strides, device)
    }

    /// A ResNet-18 with the protocol's `strides`, randomly initialised as torchvision does
    /// (Kaiming-normal `fan_out` convolutions, BatchNorm 1 / 0, running statistics 0 / 1) from a
    /// ChaCha8 stream of `seed`: the random-features baseline.
    ///
    /// # Errors
    /// [`Error::Op`] for invalid strides.
    pub fn random(strides: &[usize], seed: u64, device: &Device) -> Result<Self> {
        let cfg = ResNetConfig {
            strides: strides.to_vec(),
            ..ResNetConfig::contrastcorr(Depth::R18)
        };
        let varmap = VarMap::new();
        let net = ResNet::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
        vssl_model::resnet::seeded_init(&varmap, seed)?;
        Ok(Self::ResNet {
            net: Box::new(net),
            source: format!("random ResNet-18, strides {strides:?}, seed {seed}"),
        })
    }

    /// What the encoder is, for reports.
    pub fn describe(&self) -> String {
        match self {
            Encoder::ResNet { source, .. } => source.clone(),
            Encoder::LabPatches => format!("raw Lab pixels ({PATCH}x{PATCH} patches)"),
        }
    }

    /// The features of an RGB frame (`frame`, at the working size) as `colour` dictates:
    /// `[C, h, w]` on `device`.
    ///
    /// # Errors
    /// candle's errors; [`Error::Op`] when the frame is smaller than a patch.
    pub fn features(&self, frame: &Frame, colour: ColourInput, device: &Device) -> Result<Tensor> {
        self.features_padded(frame, colour, PaddingMode::Zeros, device)
    }

    /// [`Encoder::features`] with the ResNet's convolutions padded as `padding` says (CRW's
    /// encoder: [`PaddingMode::Reflect`]); the raw-pixel encoder ignores it.
    ///
    /// # Errors
    /// As [`Encoder::features`].
    pub fn features_padded(
        &self,
        frame: &Frame,
        colour: ColourInput,
        padding: PaddingMode,
        device: &Device,
    ) -> Result<Tensor> {
        match self {
            Encoder::ResNet { net, .. } => {
                let x = encoder_input(frame, colour)?
                    .to_device(device)?
                    .unsqueeze(0)?;
                // Detached: the output of an op on variables records its inputs for a backward
                // pass, so a kept feature map would keep the whole forward pass's activations
                // alive (hundreds of MB per context frame).
                Ok(net.forward_padded(&x, false, padding)?.squeeze(0)?.detach())
            }
            Encoder::LabPatches => {
                let x = vssl_data::augment::rgb_frame_to_lab_tensor(frame)?; // [3, H, W]
                let (_, h, w) = x.dims3()?;
                let (hh, ww) = (h / PATCH, w / PATCH);
                if hh == 0 || ww == 0 {
                    return Err(Error::op(
                        "Encoder",
                        format!("a {w}x{h} frame is smaller than one {PATCH}x{PATCH} patch"),
                    ));
                }
                let x = x.narrow(1, 0, hh * PATCH)?.narrow(2, 0, ww * PATCH)?;
                // [3, hh, 8, ww, 8] → [3, 8, 8, hh, ww] → [192, hh, ww]
                let p = x
                    .reshape((3, hh, PATCH, ww, PATCH))?
                    .permute((0, 2, 4, 1, 3))?
                    .contiguous()?
                    .reshape((3 * PATCH * PATCH, hh, ww))?;
                Ok(p.to_device(device)?)
            }
        }
    }
}

/// The encoder's input tensor `[3, H, W]` (CPU) of an RGB frame.
pub fn encoder_input(frame: &Frame, colour: ColourInput) -> Result<Tensor> {
    match colour {
        ColourInput::Lab => {
            let x = vssl_data::augment::rgb_frame_to_lab_tensor(frame)?;
            vssl_data::augment::encoder_input(&x)
        }
        ColourInput::LabLightness => {
            let x = vssl_data::augment::rgb_frame_to_lab_tensor(frame)?;
            let l = x.narrow(0, 0, 1)?;
            vssl_data::augment::encoder_input(&Tensor::cat(&[&l, &l, &l], 0)?)
        }
        ColourInput::Rgb => {
            let (w, h) = frame.dimensions();
            let (w, h) = (w as usize, h as usize);
            let plane = w * h;
            let mut v = vec![0f32; 3 * plane];
            for (i, p) in frame.as_raw().chunks_exact(3).enumerate() {
                for ch in 0..3 {
                    v[ch * plane + i] =
                        (f32::from(p[ch]) / 255.0 - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch];
                }
            }
            Ok(Tensor::from_vec(v, (3, h, w), &Device::Cpu)?)
        }
    }
}

/// The checkpoint file of a run folder or file path (see [`Encoder::from_checkpoint`]).
///
/// # Errors
/// [`Error::File`] when nothing usable is there.
pub fn checkpoint_file(run: &Path) -> Result<PathBuf> {
    if run.is_file() {
        return Ok(run.to_path_buf());
    }
    if !run.is_dir() {
        return Err(Error::file(run, "no such run folder or checkpoint file"));
    }
    let latest = run.join("latest");
    if latest.is_file() {
        let name = std::fs::read_to_string(&latest)
            .map_err(|e| Error::file(&latest, format!("cannot read: {e}")))?;
        let file = run.join(name.trim());
        if file.is_file() {
            return Ok(file);
        }
        return Err(Error::file(
            &latest,
            format!("names {}, which does not exist", file.display()),
        ));
    }
    let mut best: Option<(u64, PathBuf)> = None;
    let entries =
        std::fs::read_dir(run).map_err(|e| Error::file(run, format!("cannot list: {e}")))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let step = name
            .strip_prefix("checkpoint-")
            .and_then(|s| s.strip_suffix(".safetensors"))
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(step) = step
            && best.as_ref().is_none_or(|(b, _)| step > *b)
        {
            best = Some((step, e.path()));
        }
    }
    best.map(|(_, p)| p).ok_or_else(|| {
        Error::file(
            run,
            "no checkpoint: expected a `latest` file or checkpoint-<step>.safetensors",
        )
    })
}
