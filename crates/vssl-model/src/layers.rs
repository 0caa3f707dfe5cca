//! The convolution layer of the encoders: weights (and an optional bias) applied with
//! [`vssl_core::ops::conv::conv2d`], which on the CPU computes only the gradients that autograd
//! needs (a frozen layer's weight gradient is skipped).

use candle_core::Tensor;
use vssl_core::Result;
use vssl_core::ops::conv::{ConvParams, conv2d};

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
        let y = conv2d(x, &self.weight, self.params)?;
        match &self.bias {
            None => Ok(y),
            Some(b) => Ok(y.broadcast_add(&b.reshape((1, (), 1, 1))?)?),
        }
    }
}
