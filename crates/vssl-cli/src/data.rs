//! `vssl data`: generate the synthetic benchmark.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use vssl_data::synth::{self, Preset, Split};

/// What `vssl data` does.
#[derive(Subcommand)]
pub enum DataCmd {
    /// Write synthetic clips in the DAVIS layout (JPEG frames, palette PNG masks) plus point
    /// tracks and meta JSON; every clip is reproducible from (generator version, seed, preset).
    Synth {
        /// Difficulty preset.
        #[arg(long, value_enum, default_value_t = PresetArg::Medium)]
        preset: PresetArg,
        /// Number of clips.
        #[arg(long, default_value_t = 20)]
        videos: usize,
        /// Output folder (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Dataset seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Split: train and eval use disjoint texture and shape families.
        #[arg(long, value_enum, default_value_t = SplitArg::Eval)]
        split: SplitArg,
        /// Frame size as WIDTHxHEIGHT (default: the preset's 256x256).
        #[arg(long)]
        size: Option<String>,
        /// Frames per clip (default: the preset's).
        #[arg(long)]
        frames: Option<usize>,
    },
}

/// The presets as a command-line value.
#[derive(Clone, Copy, ValueEnum)]
pub enum PresetArg {
    /// Slow, large objects, clean pixels.
    Easy,
    /// The default.
    Medium,
    /// Fast, small, occluded, noisy.
    Hard,
}

/// The splits as a command-line value.
#[derive(Clone, Copy, ValueEnum)]
pub enum SplitArg {
    /// Pre-training families.
    Train,
    /// Evaluation families.
    Eval,
}

fn parse_size(s: &str) -> Result<(u32, u32)> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .with_context(|| format!("--size {s:?}: expected WIDTHxHEIGHT, e.g. 854x480"))?;
    Ok((
        w.trim()
            .parse()
            .with_context(|| format!("--size {s:?}: bad width"))?,
        h.trim()
            .parse()
            .with_context(|| format!("--size {s:?}: bad height"))?,
    ))
}

/// Runs a `vssl data` command.
pub fn run(cmd: DataCmd) -> Result<()> {
    match cmd {
        DataCmd::Synth {
            preset,
            videos,
            out,
            seed,
            split,
            size,
            frames,
        } => {
            let preset = match preset {
                PresetArg::Easy => Preset::Easy,
                PresetArg::Medium => Preset::Medium,
                PresetArg::Hard => Preset::Hard,
            };
            let split = match split {
                SplitArg::Train => Split::Train,
                SplitArg::Eval => Split::Eval,
            };
            let mut cfg = preset.config();
            if let Some(s) = size {
                (cfg.width, cfg.height) = parse_size(&s)?;
            }
            if let Some(f) = frames {
                cfg.frames = f;
            }
            let start = Instant::now();
            synth::write_dataset(&cfg, split, seed, videos, &out).with_context(|| {
                format!(
                    "writing {videos} {} clips to {}",
                    preset.name(),
                    out.display()
                )
            })?;
            let secs = start.elapsed().as_secs_f64();
            println!(
                "wrote {videos} {} {} clips ({}x{}, {} frames each, generator v{}, seed {seed}) to {} in {secs:.1} s",
                preset.name(),
                split.name(),
                cfg.width,
                cfg.height,
                cfg.frames,
                synth::GENERATOR_VERSION,
                out.display()
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("854x480").unwrap(), (854, 480));
        assert!(parse_size("854").is_err());
        assert!(parse_size("ax4").is_err());
    }
}
