//! # vssl-model
//!
//! Encoders for video correspondence learning: ResNet-18/34/50 with torchvision state-dict names,
//! a width multiplier and configurable per-stage strides (the ContrastCorr/UVC stride-8 variant,
//! the CRW variant), BatchNorm in train or eval mode ([`resnet`]); the frozen Lab colour
//! autoencoder of UVC/ContrastCorr ([`autoencoder`]); weight import from safetensors and PyTorch
//! `.pth` files (zip and legacy formats), export under torchvision names, and `hf:` specs resolved
//! in the local Hugging Face cache with the `hub` feature ([`weights`]).

pub mod autoencoder;
mod layers;
pub mod resnet;
pub mod weights;

pub use autoencoder::{Autoencoder, AutoencoderWidths, LabDecoder, LabEncoder};
pub use resnet::{Depth, PaddingMode, ResNet, ResNetConfig, is_trainable};
