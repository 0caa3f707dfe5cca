//! # vssl-model
//!
//! Encoders for video correspondence learning: ResNet-18/50 with torchvision state-dict names,
//! configurable per-stage strides (the ContrastCorr/UVC stride-8 variant, the CRW variant), BatchNorm
//! in train or eval mode, and the frozen Lab colour autoencoder of UVC/ContrastCorr; weight import
//! from safetensors and PyTorch `.pth` files.
//!
//! Not implemented yet: this crate is a placeholder until its issue lands.
pub mod weights;
