//! The layers of the encoders: a convolution (weights and an optional bias applied with
//! [`vssl_core::ops::conv::conv2d`], which on the CPU computes only the gradients that autograd
//! needs: a frozen layer's weight gradient is skipped) and a BatchNorm fused with what follows it
//! ([`vssl_core::ops::norm::batch_norm`]).

use candle_core::{Tensor, Var};
use candle_nn::{Init, VarBuilder};
use vssl_core::Result;
use vssl_core::ops::conv::{ConvParams, conv2d};
use vssl_core::ops::norm::{Epilogue, NormStats, batch_norm};
use vssl_core::ops::pad::reflection_pad2d;

use crate::resnet::PaddingMode;

/// A 2-d convolution (one group) with an optional per-channel bias.
#[derive(Debug, Clone)]
pub(crate) struct Conv {
    weight: Tensor,
    bias: Option<Tensor>,
    params: ConvParams,
}

impl Conv {
    pub(crate) fn new(weight: Tensor, bias: Option<Tensor>, params: ConvParams) -> Self {
        Self {
            weight,
            bias,
            params,
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_padded(x, PaddingMode::Zeros)
    }

    /// The convolution with its padding done as `mode` says (a reflect pad of `padding` on
    /// every side and an unpadded convolution, as PyTorch's `padding_mode='reflect'`).
    pub(crate) fn forward_padded(&self, x: &Tensor, mode: PaddingMode) -> Result<Tensor> {
        let p = self.params.padding;
        let y = if mode == PaddingMode::Reflect && p > 0 {
            let params = ConvParams {
                padding: 0,
                ..self.params
            };
            conv2d(&reflection_pad2d(x, (p, p, p, p))?, &self.weight, params)?
        } else {
            conv2d(x, &self.weight, self.params)?
        };
        match &self.bias {
            None => Ok(y),
            Some(b) => Ok(y.broadcast_add(&b.reshape((1, (), 1, 1))?)?),
        }
    }
}

/// BatchNorm over the channels of `[N, C, *]` with PyTorch's semantics and state-dict names
/// (`weight`, `bias`, `running_mean`, `running_var`; momentum 0.1; running variance updated with
/// the unbiased batch variance), run by [`vssl_core::ops::norm::batch_norm`]: fused with the
/// residual addition and the ReLU that follow it in a ResNet block.
#[derive(Debug, Clone)]
pub(crate) struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

impl BatchNorm {
    /// Creates (or reads) the four variables under `vb` with PyTorch's initial values (weight 1,
    /// bias 0, running mean 0, running variance 1).
    pub(crate) fn new(vb: VarBuilder, c: usize) -> Result<Self> {
        let running_mean = vb.get_with_hints(c, "running_mean", Init::Const(0.0))?;
        let running_var = vb.get_with_hints(c, "running_var", Init::Const(1.0))?;
        let weight = vb.get_with_hints(c, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(c, "bias", Init::Const(0.0))?;
        Ok(Self {
            weight,
            bias,
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            eps: 1e-5,
            momentum: 0.1,
        })
    }

    /// The running mean and variance.
    pub(crate) fn running(&self) -> (Tensor, Tensor) {
        (
            self.running_mean.as_tensor().clone(),
            self.running_var.as_tensor().clone(),
        )
    }

    /// Replaces the running mean and variance.
    pub(crate) fn set_running(&self, mean: &Tensor, var: &Tensor) -> Result<()> {
        self.running_mean.set(mean)?;
        self.running_var.set(var)?;
        Ok(())
    }

    /// The weight of a batch in the running-statistics update (0.1).
    pub(crate) fn momentum(&self) -> f64 {
        self.momentum
    }

    /// `relu?(bn(x) + residual?)`. In train mode the batch statistics normalise and the running
    /// statistics are updated; in eval mode the running statistics normalise.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        train: bool,
        residual: Option<&Tensor>,
        relu: bool,
    ) -> Result<Tensor> {
        let (rm, rv) = (
            self.running_mean.as_detached_tensor(),
            self.running_var.as_detached_tensor(),
        );
        let stats = if train {
            NormStats::Batch
        } else {
            NormStats::Given {
                mean: &rm,
                var: &rv,
            }
        };
        let post = Epilogue { residual, relu };
        let out = batch_norm(x, &self.weight, &self.bias, stats, self.eps, post)?;
        if let Some((mean, var)) = &out.batch_stats {
            let m = self.momentum;
            let n = out.count as f64;
            let mean = mean.to_dtype(rm.dtype())?;
            let var = var.to_dtype(rv.dtype())?;
            self.running_mean
                .set(&((&rm * (1.0 - m))? + (mean * m)?)?)?;
            self.running_var
                .set(&((&rv * (1.0 - m))? + (var * (m * n / (n - 1.0)))?)?)?;
        }
        Ok(out.y)
    }
}
