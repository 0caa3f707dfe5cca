//! `vssl export`: a run's encoder as a torchvision state dict.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use vssl_model::weights::{TensorMap, export_torchvision, load_tensors};

/// Arguments of `vssl export`.
#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// A run folder (its `latest` checkpoint) or a checkpoint file.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Output safetensors file: the encoder under torchvision's names (no `encoder.` prefix,
    /// `num_batches_tracked` added), for `torchvision.models.resnet18()` with `fc` removed.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `vssl export`.
pub fn run(a: ExportArgs) -> Result<()> {
    let file = vssl_eval::encoder::checkpoint_file(&a.checkpoint)?;
    let all = load_tensors(&file, &candle_core::Device::Cpu)
        .with_context(|| format!("reading {}", file.display()))?;
    let encoder: TensorMap = all
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("encoder.").map(|n| (n.to_string(), v)))
        .collect();
    if encoder.is_empty() {
        bail!(
            "{}: no tensor under `encoder.`: not a vssl checkpoint",
            file.display()
        );
    }
    export_torchvision(&encoder, &a.out).with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "wrote {} ({} tensors from {})",
        a.out.display(),
        encoder.len(),
        file.display()
    );
    Ok(())
}
