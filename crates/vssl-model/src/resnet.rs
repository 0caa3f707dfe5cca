//! ResNet-18/34/50 encoders with torchvision's state-dict names (He et al., "Deep Residual Learning
//! for Image Recognition", CVPR 2016; the layout of `torchvision.models.resnet`, v1.5: the stride of
//! a bottleneck sits on its 3×3 convolution).
//!
//! Variables are named exactly as torchvision names them (`conv1.weight`, `bn1.running_mean`,
//! `layer1.0.conv1.weight`, `layer2.0.downsample.0.weight`, `layer2.0.downsample.1.bias`, …), so
//! torchvision and timm weights load through [`crate::weights`] and our weights load back into
//! torchvision. There is no average pool and no classifier: the output is the feature map of the
//! last stage used, as correspondence learning needs it.
//!
//! What can be configured, with presets for the variants of the field:
//! - the depth ([`Depth`]);
//! - a width multiplier (stage `c` gets `max(1, round(c · width))` channels), for small models on
//!   CPU and for small test fixtures;
//! - the stride of every stage and how many stages are used: [`ResNetConfig::contrastcorr`]
//!   (ContrastCorr/UVC: `layer3` and `layer4` at stride 1, 512 channels at stride 8) and
//!   [`ResNetConfig::crw`] (CRW, Jabri et al. 2020: `layer4` removed, `layer3` at stride 1, 256
//!   channels at stride 8), [`ResNetConfig::torchvision`] (strides 1, 2, 2, 2: stride 32).
//!
//! BatchNorm runs in train mode (batch statistics, running statistics updated with momentum 0.1
//! and the unbiased variance, as PyTorch) or eval mode (running statistics), chosen per call.
//! Initialisation is torchvision's: Kaiming-normal weights (`fan_out`, ReLU gain) for every
//! convolution, BatchNorm weight 1 and bias 0.

use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};
use vssl_core::ops::conv::ConvParams;
use vssl_core::ops::pool::max_pool2d;
use vssl_core::{Error, Result};

use crate::layers::{BatchNorm, Conv};

const OP: &str = "ResNet";

/// How the convolutions with a positive padding pad their input (the max-pool always pads with
/// −∞, as PyTorch's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaddingMode {
    /// Zeros (torchvision).
    #[default]
    Zeros,
    /// The border mirrored, border row/column not repeated (`padding_mode='reflect'`): what
    /// CRW's `ResNet.modify(padding='reflect')` sets on every convolution with padding for
    /// `--model-type scratch`, the encoder of its README's evaluation command
    /// (github.com/ajabri/videowalk, `code/resnet.py`).
    Reflect,
}

/// Which ResNet: the block type and the number of blocks per stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Depth {
    /// ResNet-18: basic blocks, `[2, 2, 2, 2]`.
    R18,
    /// ResNet-34: basic blocks, `[3, 4, 6, 3]`.
    R34,
    /// ResNet-50: bottleneck blocks (expansion 4), `[3, 4, 6, 3]`.
    R50,
}

impl Depth {
    /// Blocks per stage.
    pub fn blocks(self) -> [usize; 4] {
        match self {
            Depth::R18 => [2, 2, 2, 2],
            Depth::R34 | Depth::R50 => [3, 4, 6, 3],
        }
    }

    /// Output channels of a block relative to its `planes` (1 for basic blocks, 4 for
    /// bottlenecks).
    pub fn expansion(self) -> usize {
        match self {
            Depth::R18 | Depth::R34 => 1,
            Depth::R50 => 4,
        }
    }
}

/// The shape of a ResNet encoder. `Default` is ContrastCorr's ResNet-18.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResNetConfig {
    /// Depth and block type. ContrastCorr uses ResNet-18; ResNet-50 is the usual larger choice.
    pub depth: Depth,
    /// Channel multiplier: a stage of base width `c` (64, 128, 256, 512 planes; 64 for the stem)
    /// gets `max(1, round(c · width))`. 1.0 is the standard network; use e.g. 0.25 for fast CPU
    /// experiments.
    pub width: f64,
    /// Stride of each stage used, `layer1` first; its length (1 to 4) is the number of stages
    /// kept. `[1, 2, 1, 1]` is ContrastCorr/UVC (stride 8 overall), `[1, 2, 1]` CRW, and
    /// `[1, 2, 2, 2]` torchvision (stride 32).
    pub strides: Vec<usize>,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        Self::contrastcorr(Depth::R18)
    }
}

impl ResNetConfig {
    /// ContrastCorr/UVC: all four stages, `layer3` and `layer4` at stride 1 (512 channels at
    /// stride 8 for ResNet-18).
    pub fn contrastcorr(depth: Depth) -> Self {
        Self {
            depth,
            width: 1.0,
            strides: vec![1, 2, 1, 1],
        }
    }

    /// CRW: `layer4` removed, `layer3` at stride 1 (256 channels at stride 8 for ResNet-18).
    pub fn crw(depth: Depth) -> Self {
        Self {
            depth,
            width: 1.0,
            strides: vec![1, 2, 1],
        }
    }

    /// torchvision's classification backbone: strides 1, 2, 2, 2 (stride 32).
    pub fn torchvision(depth: Depth) -> Self {
        Self {
            depth,
            width: 1.0,
            strides: vec![1, 2, 2, 2],
        }
    }

    /// The same configuration with another width multiplier.
    pub fn with_width(mut self, width: f64) -> Self {
        self.width = width;
        self
    }

    /// Channels of a stage of base width `c` under the width multiplier.
    pub fn channels(&self, c: usize) -> usize {
        ((c as f64 * self.width).round() as usize).max(1)
    }

    /// Number of output channels of the encoder.
    pub fn out_channels(&self) -> usize {
        let planes = [64, 128, 256, 512];
        let last = self.strides.len().clamp(1, 4) - 1;
        self.channels(planes[last]) * self.depth.expansion()
    }

    /// Overall stride of the output relative to the input (4 from the stem times the stage
    /// strides).
    pub fn output_stride(&self) -> usize {
        4 * self.strides.iter().product::<usize>()
    }

    fn validate(&self) -> Result<()> {
        if self.strides.is_empty() || self.strides.len() > 4 {
            return Err(Error::op(
                OP,
                format!("strides must list 1 to 4 stages, got {:?}", self.strides),
            ));
        }
        if self.strides.contains(&0) {
            return Err(Error::op(
                OP,
                format!("strides must be positive, got {:?}", self.strides),
            ));
        }
        if !(self.width.is_finite() && self.width > 0.0) {
            return Err(Error::op(
                OP,
                format!("width must be a positive number, got {}", self.width),
            ));
        }
        Ok(())
    }
}

/// A convolution without bias, initialised as torchvision does (Kaiming normal, `fan_out`, ReLU).
fn conv(
    vb: VarBuilder,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    padding: usize,
) -> Result<Conv> {
    let fan_out = (cout * k * k) as f64;
    let init = Init::Randn {
        mean: 0.0,
        stdev: (2.0 / fan_out).sqrt(),
    };
    let weight = vb.get_with_hints((cout, cin, k, k), "weight", init)?;
    let params = ConvParams {
        stride,
        padding,
        dilation: 1,
    };
    Ok(Conv::new(weight, None, params))
}

fn bn(vb: VarBuilder, c: usize) -> Result<BatchNorm> {
    BatchNorm::new(vb, c)
}

/// The projection shortcut: 1×1 convolution (stride `s`) + BatchNorm (`downsample.0`,
/// `downsample.1`).
#[derive(Debug, Clone)]
struct Downsample {
    conv: Conv,
    bn: BatchNorm,
}

impl Downsample {
    fn new(vb: VarBuilder, cin: usize, cout: usize, stride: usize) -> Result<Self> {
        Ok(Self {
            conv: conv(vb.pp("0"), cin, cout, 1, stride, 0)?,
            bn: bn(vb.pp("1"), cout)?,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.bn.forward(&self.conv.forward(x)?, train, None, false)
    }
}

/// A residual block: basic (two 3×3 convolutions) or bottleneck (1×1, 3×3 with the stride, 1×1).
#[derive(Debug, Clone)]
struct Block {
    convs: Vec<(Conv, BatchNorm)>,
    downsample: Option<Downsample>,
}

impl Block {
    fn new(vb: VarBuilder, depth: Depth, cin: usize, planes: usize, stride: usize) -> Result<Self> {
        let cout = planes * depth.expansion();
        let convs = match depth {
            Depth::R18 | Depth::R34 => vec![
                (
                    conv(vb.pp("conv1"), cin, planes, 3, stride, 1)?,
                    bn(vb.pp("bn1"), planes)?,
                ),
                (
                    conv(vb.pp("conv2"), planes, planes, 3, 1, 1)?,
                    bn(vb.pp("bn2"), planes)?,
                ),
            ],
            Depth::R50 => vec![
                (
                    conv(vb.pp("conv1"), cin, planes, 1, 1, 0)?,
                    bn(vb.pp("bn1"), planes)?,
                ),
                (
                    conv(vb.pp("conv2"), planes, planes, 3, stride, 1)?,
                    bn(vb.pp("bn2"), planes)?,
                ),
                (
                    conv(vb.pp("conv3"), planes, cout, 1, 1, 0)?,
                    bn(vb.pp("bn3"), cout)?,
                ),
            ],
        };
        let downsample = if stride != 1 || cin != cout {
            Some(Downsample::new(vb.pp("downsample"), cin, cout, stride)?)
        } else {
            None
        };
        Ok(Self { convs, downsample })
    }

    fn forward_t(&self, x: &Tensor, train: bool, padding: PaddingMode) -> Result<Tensor> {
        let identity = match &self.downsample {
            Some(d) => d.forward_t(x, train)?,
            None => x.clone(),
        };
        let mut y = x.clone();
        let last = self.convs.len() - 1;
        for (i, (c, b)) in self.convs.iter().enumerate() {
            // The last BatchNorm adds the shortcut; every one is followed by a ReLU.
            let residual = (i == last).then_some(&identity);
            y = b.forward(&c.forward_padded(&y, padding)?, train, residual, true)?;
        }
        Ok(y)
    }
}

/// A ResNet encoder (see the module docs).
#[derive(Debug, Clone)]
pub struct ResNet {
    cfg: ResNetConfig,
    conv1: Conv,
    bn1: BatchNorm,
    layers: Vec<Vec<Block>>,
}

impl ResNet {
    /// Builds the network, creating (or reading) its variables under torchvision's names in `vb`.
    ///
    /// With a `VarBuilder` over a [`candle_nn::VarMap`] the variables are created with
    /// torchvision's initialisation and are trainable; with one over loaded tensors
    /// (`VarBuilder::from_tensors`) the network is frozen.
    ///
    /// # Errors
    /// [`Error::Op`] (`ResNet`) for an invalid configuration (no stage or more than four, a zero
    /// stride, a non-positive width); candle's error when `vb` holds a tensor of the wrong shape.
    pub fn new(cfg: &ResNetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let stem = cfg.channels(64);
        let conv1 = conv(vb.pp("conv1"), 3, stem, 7, 2, 3)?;
        let bn1 = bn(vb.pp("bn1"), stem)?;
        let base = [64, 128, 256, 512];
        let blocks = cfg.depth.blocks();
        let mut cin = stem;
        let mut layers = Vec::with_capacity(cfg.strides.len());
        for (i, &stride) in cfg.strides.iter().enumerate() {
            let planes = cfg.channels(base[i]);
            let vbl = vb.pp(format!("layer{}", i + 1));
            let mut stage = Vec::with_capacity(blocks[i]);
            for j in 0..blocks[i] {
                let s = if j == 0 { stride } else { 1 };
                stage.push(Block::new(
                    vbl.pp(j.to_string()),
                    cfg.depth,
                    cin,
                    planes,
                    s,
                )?);
                cin = planes * cfg.depth.expansion();
            }
            layers.push(stage);
        }
        Ok(Self {
            cfg: cfg.clone(),
            conv1,
            bn1,
            layers,
        })
    }

    /// The configuration the network was built with.
    pub fn config(&self) -> &ResNetConfig {
        &self.cfg
    }

    /// Number of output channels.
    pub fn out_channels(&self) -> usize {
        self.cfg.out_channels()
    }

    /// Overall output stride.
    pub fn output_stride(&self) -> usize {
        self.cfg.output_stride()
    }

    /// Features of `x` (`[B, 3, H, W]`, `f32`): `[B, C, ⌈…⌉, ⌈…⌉]`, post-ReLU. `train` selects
    /// BatchNorm's mode: batch statistics and a running-statistics update (`true`), or the running
    /// statistics (`false`).
    ///
    /// # Errors
    /// [`Error::Op`] (`ResNet`) when `x` is not `[B, 3, H, W]` with `B ≥ 1`; candle's errors
    /// otherwise (e.g. a batch of one pixel in train mode).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_padded(x, train, PaddingMode::Zeros)
    }

    /// [`ResNet::forward_t`] with the convolutions padded as `padding` says (the 1×1 shortcut
    /// convolutions have no padding; the max-pool keeps its −∞ padding).
    ///
    /// # Errors
    /// As [`ResNet::forward_t`]; [`Error::Op`] (`reflection_pad2d`) for a reflect pad wider than
    /// the map (a map of one pixel).
    pub fn forward_padded(&self, x: &Tensor, train: bool, padding: PaddingMode) -> Result<Tensor> {
        let dims = x.dims();
        if dims.len() != 4 || dims[1] != 3 || dims[0] == 0 {
            return Err(Error::op(
                OP,
                format!("input must be [B, 3, H, W] with B ≥ 1, got {dims:?}"),
            ));
        }
        let mut y = self
            .bn1
            .forward(&self.conv1.forward_padded(x, padding)?, train, None, true)?;
        y = max_pool2d(&y, (3, 3), (2, 2), (1, 1))?;
        for stage in &self.layers {
            for block in stage {
                y = block.forward_t(&y, train, padding)?;
            }
        }
        Ok(y)
    }

    /// Every BatchNorm of the network, in forward order.
    fn batch_norms(&self) -> Vec<&BatchNorm> {
        let mut all = vec![&self.bn1];
        for block in self.layers.iter().flatten() {
            all.extend(block.convs.iter().map(|(_, b)| b));
            all.extend(block.downsample.as_ref().map(|d| &d.bn));
        }
        all
    }

    /// Recomputes every BatchNorm's running statistics as the plain mean, over `inputs`, of the
    /// batch statistics that a train-mode forward of each input sees under the current weights
    /// ("precise BatchNorm", Wu & Johnson 2021, *Rethinking "Batch" in BatchNorm*). Training
    /// leaves an exponential average (momentum 0.1) over the last batches, taken while the
    /// weights were still moving and with training's augmentations, which shifts the features
    /// evaluation sees from checkpoint to checkpoint; this replaces it with statistics of the
    /// final weights. It equals PyTorch's `reset_running_stats()` and `momentum = None`
    /// (cumulative average; the variance unbiased, `n/(n − 1)`), then `model.train()` forwards.
    ///
    /// Returns the number of inputs; with none, nothing changes. On an error the previous
    /// statistics are restored.
    ///
    /// # Errors
    /// An error of an input, or of a forward (see [`ResNet::forward_t`]).
    pub fn recompute_bn_stats<I>(&self, inputs: I) -> Result<usize>
    where
        I: IntoIterator<Item = Result<Tensor>>,
    {
        let bns = self.batch_norms();
        let before: Vec<(Tensor, Tensor)> = bns
            .iter()
            .map(|b| {
                let (m, v) = b.running();
                Ok((m.copy()?, v.copy()?))
            })
            .collect::<Result<_>>()?;
        let restore = || -> Result<()> {
            for (b, (m, v)) in bns.iter().zip(&before) {
                b.set_running(m, v)?;
            }
            Ok(())
        };
        let mut sums: Vec<Option<(Tensor, Tensor)>> = vec![None; bns.len()];
        let mut n = 0usize;
        let mut one = |x: Tensor| -> Result<()> {
            // From zero, one update leaves `momentum × batch statistic`.
            for b in &bns {
                let (m, v) = b.running();
                b.set_running(&m.zeros_like()?, &v.zeros_like()?)?;
            }
            self.forward_t(&x, true)?;
            for (b, sum) in bns.iter().zip(sums.iter_mut()) {
                let (m, v) = b.running();
                let k = 1.0 / b.momentum();
                let (m, v) = (m.affine(k, 0.0)?, v.affine(k, 0.0)?);
                *sum = Some(match sum.take() {
                    None => (m, v),
                    Some((sm, sv)) => ((sm + m)?, (sv + v)?),
                });
            }
            n += 1;
            Ok(())
        };
        for x in inputs {
            if let Err(e) = x.and_then(&mut one) {
                restore()?;
                return Err(e);
            }
        }
        if n == 0 {
            return Ok(0);
        }
        let inv = 1.0 / n as f64;
        for (b, sum) in bns.iter().zip(sums) {
            let (m, v) = sum.expect("one sum per BatchNorm after an input");
            b.set_running(&m.affine(inv, 0.0)?, &v.affine(inv, 0.0)?)?;
        }
        Ok(n)
    }
}

/// Whether a variable of a ResNet's `VarMap` is trained by gradient (weights and biases) rather
/// than updated in the forward pass (BatchNorm's `running_mean` / `running_var`).
pub fn is_trainable(name: &str) -> bool {
    !(name.ends_with("running_mean") || name.ends_with("running_var"))
}

/// Re-initialises every variable of a ResNet's `varmap` as torchvision does, from a ChaCha8
/// stream of `seed` (candle's own initialisers draw from an unseeded generator): Kaiming-normal
/// convolutions (`fan_out`, ReLU gain, Box–Muller), BatchNorm weight and running variance 1,
/// biases and running means 0. Variables are visited in name order, so the same (configuration,
/// seed) always gives the same weights.
///
/// # Errors
/// candle's errors (a variable that cannot be set).
pub fn seeded_init(varmap: &candle_nn::VarMap, seed: u64) -> Result<()> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut vars: Vec<(String, candle_core::Var)> = varmap
        .data()
        .lock()
        .map_err(|_| Error::op(OP, "the VarMap's lock is poisoned"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, var) in vars {
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let v: Vec<f32> = if name.ends_with(".weight") && dims.len() == 4 {
            let fan_out = (dims[0] * dims[2] * dims[3]) as f64;
            let std = (2.0 / fan_out).sqrt();
            (0..n)
                .map(|_| {
                    let (u, v): (f64, f64) = (rng.random(), rng.random());
                    let r = (-2.0 * (1.0 - u).ln()).sqrt();
                    (std * r * (std::f64::consts::TAU * v).cos()) as f32
                })
                .collect()
        } else if name.ends_with(".weight") || name.ends_with("running_var") {
            vec![1.0; n]
        } else {
            vec![0.0; n]
        };
        let t = Tensor::from_vec(v, dims, var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(())
}
