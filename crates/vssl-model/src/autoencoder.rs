//! The frozen Lab colour autoencoder of UVC (Li et al., "Joint-task Self-supervised Learning for
//! Temporal Correspondence", NeurIPS 2019) that ContrastCorr reuses: `encoder3(reduce=True)` and
//! `decoder3(reduce=True)` of UVC's `libs/autoencoder.py`, a VGG-style pair with reflection padding.
//!
//! - [`LabEncoder`]: 1×1 conv 3→3, then 3×3 convs a, a, max-pool, b, b, max-pool, c (each 3×3 conv
//!   after a 1-pixel reflection pad and followed by ReLU), then `downsample` = max-pool, 1×1 conv
//!   c→c, ReLU. Normalised Lab `[B, 3, H, W]` in, `[B, c, H/8, W/8]` out.
//! - [`LabDecoder`]: `upsample` = nearest ×2, 1×1 conv c→c, ReLU; then 3×3 convs c→b, nearest ×2,
//!   b→b, b→a, nearest ×2, a→a, a→3 (reflection padded, ReLU between) and `tanh`: back to a
//!   normalised Lab image at 8× the input's resolution.
//!
//! The published weights have widths `(a, b, c) = (64, 128, 256)` ([`AutoencoderWidths::default`]);
//! tests use narrower random ones. Variables are named as in the PyTorch state dicts: `conv1` …
//! `conv6`, `downsample.1` (encoder) and `upsample.1`, `conv7` … `conv11` (decoder). Both halves
//! are built from loaded tensors and are therefore constants: no gradient reaches their weights,
//! while gradients do flow through the decoder to its input (the copied features).

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use vssl_core::ops::conv::ConvParams;
use vssl_core::ops::frozen::{FrozenChain, FrozenLayer};
use vssl_core::{Error, Result};

pub use crate::weights::TensorMap;
use crate::weights::load_tensors;

/// Channel widths `(a, b, c)` of the autoencoder's three scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoencoderWidths {
    /// Channels at full resolution.
    pub a: usize,
    /// Channels at stride 2.
    pub b: usize,
    /// Channels at strides 4 and 8 (the colour features that get copied).
    pub c: usize,
}

impl Default for AutoencoderWidths {
    fn default() -> Self {
        Self {
            a: 64,
            b: 128,
            c: 256,
        }
    }
}

/// Reads (or, for [`Autoencoder::random`], creates with PyTorch's default `Conv2d`
/// initialisation, `U(±1/√fan_in)`) a convolution with bias.
fn conv(vb: &VarBuilder, name: &str, cin: usize, cout: usize, k: usize) -> Result<FrozenLayer> {
    let vb = vb.pp(name);
    let bound = 1.0 / ((cin * k * k) as f64).sqrt();
    let init = Init::Uniform {
        lo: -bound,
        up: bound,
    };
    let weight = vb.get_with_hints((cout, cin, k, k), "weight", init)?;
    let bias = vb.get_with_hints(cout, "bias", init)?;
    Ok(FrozenLayer::Conv {
        weight,
        bias: Some(bias),
        params: ConvParams::default(),
    })
}

/// A reflection-padded 3×3 convolution (`ReflectionPad2d(1)` + `Conv2d(k=3, padding=0)`).
fn padded(vb: &VarBuilder, name: &str, cin: usize, cout: usize) -> Result<[FrozenLayer; 2]> {
    Ok([FrozenLayer::ReflectionPad(1), conv(vb, name, cin, cout, 3)?])
}

/// The encoder half (`encoder3(reduce=True)`), run as one [`FrozenChain`].
#[derive(Debug, Clone)]
pub struct LabEncoder {
    chain: FrozenChain,
    widths: AutoencoderWidths,
}

impl LabEncoder {
    /// Reads the encoder's tensors from `vb` (names `conv1` … `conv6`, `downsample.1`).
    ///
    /// # Errors
    /// candle's error naming the tensor when one is missing or has the wrong shape.
    pub fn new(widths: AutoencoderWidths, vb: VarBuilder) -> Result<Self> {
        let AutoencoderWidths { a, b, c } = widths;
        use FrozenLayer::{MaxPool, Relu};
        let mut layers = vec![conv(&vb, "conv1", 3, 3, 1)?];
        layers.extend(padded(&vb, "conv2", 3, a)?);
        layers.push(Relu);
        layers.extend(padded(&vb, "conv3", a, a)?);
        layers.extend([Relu, MaxPool(2)]);
        layers.extend(padded(&vb, "conv4", a, b)?);
        layers.push(Relu);
        layers.extend(padded(&vb, "conv5", b, b)?);
        layers.extend([Relu, MaxPool(2)]);
        layers.extend(padded(&vb, "conv6", b, c)?);
        layers.extend([Relu, MaxPool(2)]);
        layers.extend([conv(&vb, "downsample.1", c, c, 1)?, Relu]);
        Ok(Self {
            chain: FrozenChain::new(layers)?,
            widths,
        })
    }

    /// The widths the encoder was built with.
    pub fn widths(&self) -> AutoencoderWidths {
        self.widths
    }

    fn check(&self, x: &Tensor) -> Result<()> {
        let dims = x.dims();
        if dims.len() != 4
            || dims[1] != 3
            || !dims[2].is_multiple_of(8)
            || !dims[3].is_multiple_of(8)
            || dims[2] == 0
        {
            return Err(Error::op(
                "LabEncoder",
                format!(
                    "input must be [B, 3, H, W] with H, W positive multiples of 8, got {dims:?}"
                ),
            ));
        }
        Ok(())
    }

    /// Colour features of a normalised Lab image `[B, 3, H, W]` (H, W multiples of 8):
    /// `[B, c, H/8, W/8]`, post-ReLU. One fused op on the CPU ([`FrozenChain::forward`]).
    ///
    /// # Errors
    /// [`Error::Op`] (`LabEncoder`) when `x` is not `[B, 3, H, W]` with `H` and `W` multiples of 8.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.check(x)?;
        self.chain.forward(x)
    }

    /// The same, layer by layer ([`FrozenChain::forward_layers`]).
    ///
    /// # Errors
    /// As [`LabEncoder::forward`].
    pub fn forward_layers(&self, x: &Tensor) -> Result<Tensor> {
        self.check(x)?;
        self.chain.forward_layers(x)
    }
}

/// The decoder half (`decoder3(reduce=True)`), run as one [`FrozenChain`].
#[derive(Debug, Clone)]
pub struct LabDecoder {
    chain: FrozenChain,
    widths: AutoencoderWidths,
}

impl LabDecoder {
    /// Reads the decoder's tensors from `vb` (names `upsample.1`, `conv7` … `conv11`).
    ///
    /// # Errors
    /// candle's error naming the tensor when one is missing or has the wrong shape.
    pub fn new(widths: AutoencoderWidths, vb: VarBuilder) -> Result<Self> {
        let AutoencoderWidths { a, b, c } = widths;
        use FrozenLayer::{Relu, Tanh, UpsampleNearest};
        let mut layers = vec![UpsampleNearest(2), conv(&vb, "upsample.1", c, c, 1)?, Relu];
        layers.extend(padded(&vb, "conv7", c, b)?);
        layers.extend([Relu, UpsampleNearest(2)]);
        layers.extend(padded(&vb, "conv8", b, b)?);
        layers.push(Relu);
        layers.extend(padded(&vb, "conv9", b, a)?);
        layers.extend([Relu, UpsampleNearest(2)]);
        layers.extend(padded(&vb, "conv10", a, a)?);
        layers.push(Relu);
        layers.extend(padded(&vb, "conv11", a, 3)?);
        layers.push(Tanh);
        Ok(Self {
            chain: FrozenChain::new(layers)?,
            widths,
        })
    }

    /// The widths the decoder was built with.
    pub fn widths(&self) -> AutoencoderWidths {
        self.widths
    }

    fn check(&self, x: &Tensor) -> Result<()> {
        let dims = x.dims();
        if dims.len() != 4 || dims[1] != self.widths.c {
            return Err(Error::op(
                "LabDecoder",
                format!("input must be [B, {}, h, w], got {dims:?}", self.widths.c),
            ));
        }
        Ok(())
    }

    /// A normalised Lab image `[B, 3, 8h, 8w]` in `(−1, 1)` from colour features `[B, c, h, w]`.
    /// Differentiable with respect to `x`; one fused op on the CPU ([`FrozenChain::forward`]),
    /// which keeps a bit per ReLU output for the backward pass instead of every intermediate.
    ///
    /// # Errors
    /// [`Error::Op`] (`LabDecoder`) when `x` is not `[B, c, h, w]` with the decoder's `c`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.check(x)?;
        self.chain.forward(x)
    }

    /// The same, layer by layer ([`FrozenChain::forward_layers`]).
    ///
    /// # Errors
    /// As [`LabDecoder::forward`].
    pub fn forward_layers(&self, x: &Tensor) -> Result<Tensor> {
        self.check(x)?;
        self.chain.forward_layers(x)
    }
}

/// The frozen autoencoder: both halves.
#[derive(Debug, Clone)]
pub struct Autoencoder {
    /// The encoder half.
    pub encoder: LabEncoder,
    /// The decoder half.
    pub decoder: LabDecoder,
}

impl Autoencoder {
    /// Builds both halves from tensor maps (encoder names without prefix, decoder names without
    /// prefix), on the maps' device, as `f32` constants: every tensor is detached, so no gradient
    /// can reach the autoencoder's weights even if the maps hold variables.
    ///
    /// # Errors
    /// As [`LabEncoder::new`] and [`LabDecoder::new`].
    pub fn from_tensors(
        widths: AutoencoderWidths,
        encoder: TensorMap,
        decoder: TensorMap,
        device: &Device,
    ) -> Result<Self> {
        let frozen = |m: TensorMap| -> std::collections::HashMap<String, Tensor> {
            m.into_iter().map(|(k, v)| (k, v.detach())).collect()
        };
        let enc = VarBuilder::from_tensors(frozen(encoder), DType::F32, device);
        let dec = VarBuilder::from_tensors(frozen(decoder), DType::F32, device);
        Ok(Self {
            encoder: LabEncoder::new(widths, enc)?,
            decoder: LabDecoder::new(widths, dec)?,
        })
    }

    /// A randomly initialised autoencoder, frozen like a loaded one, for benchmarks and tests where
    /// the published weights are absent: PyTorch's default `Conv2d` initialisation (weights and
    /// biases uniform in `±1/√fan_in`) drawn from a SplitMix64 stream of `seed`, so the same seed
    /// gives the same autoencoder everywhere.
    ///
    /// # Errors
    /// candle's error if the tensors cannot be created on `device`.
    pub fn random(widths: AutoencoderWidths, seed: u64, device: &Device) -> Result<Self> {
        let (enc, dec) = (VarMap::new(), VarMap::new());
        LabEncoder::new(widths, VarBuilder::from_varmap(&enc, DType::F32, device))?;
        LabDecoder::new(widths, VarBuilder::from_varmap(&dec, DType::F32, device))?;
        let mut state = seed;
        let mut next = move || {
            // SplitMix64 (Steele, Lea and Flood 2014).
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut tensors = |m: &VarMap| -> Result<TensorMap> {
            let shapes: std::collections::BTreeMap<String, Vec<usize>> = m
                .data()
                .lock()
                .map(|d| {
                    d.iter()
                        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            let mut out = TensorMap::new();
            for (name, dims) in &shapes {
                let layer = name.trim_end_matches(".weight").trim_end_matches(".bias");
                let fan_in: usize = shapes
                    .get(&format!("{layer}.weight"))
                    .map(|w| w.iter().skip(1).product())
                    .unwrap_or(1);
                let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
                let n: usize = dims.iter().product();
                let v: Vec<f32> = (0..n)
                    .map(|_| ((2.0 * next() - 1.0) * bound) as f32)
                    .collect();
                out.insert(name.clone(), Tensor::from_vec(v, dims.as_slice(), device)?);
            }
            Ok(out)
        };
        let (e, d) = (tensors(&enc)?, tensors(&dec)?);
        Self::from_tensors(widths, e, d, device)
    }

    /// Loads the published weights (full widths) from an encoder file and a decoder file, each
    /// safetensors or a PyTorch `.pth` (zip or legacy format), e.g. the files of
    /// `../shared/weights/uvc-lab-autoencoder/`.
    ///
    /// # Errors
    /// [`Error::File`] naming the file when it cannot be read or is not that half of the
    /// autoencoder (a missing tensor or a wrong shape is named).
    pub fn load(encoder: &Path, decoder: &Path, device: &Device) -> Result<Self> {
        let widths = AutoencoderWidths::default();
        let vb = |m: TensorMap| {
            let m: std::collections::HashMap<String, Tensor> =
                m.into_iter().map(|(k, v)| (k, v.detach())).collect();
            VarBuilder::from_tensors(m, DType::F32, device)
        };
        let enc = LabEncoder::new(widths, vb(load_tensors(encoder, device)?))
            .map_err(|e| Error::file(encoder, format!("not a UVC Lab encoder: {e}")))?;
        let dec = LabDecoder::new(widths, vb(load_tensors(decoder, device)?))
            .map_err(|e| Error::file(decoder, format!("not a UVC Lab decoder: {e}")))?;
        Ok(Self {
            encoder: enc,
            decoder: dec,
        })
    }
}
