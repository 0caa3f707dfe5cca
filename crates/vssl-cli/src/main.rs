//! `vssl`: train, evaluate and benchmark video self-supervised models.

mod bench;
mod data;
mod eval;
mod eval_propagate;
mod export;
mod train;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vssl",
    version,
    about = "Self-supervised video representation learning (ContrastCorr and friends)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a model: with no argument, the embedded CPU-sized ContrastCorr run on synthetic
    /// videos, then a J&F report against the baselines.
    Train(Box<train::TrainArgs>),
    /// Export a run's encoder (or any vssl checkpoint) as a torchvision-named safetensors file
    /// that PyTorch loads with `strict=True`.
    Export(export::ExportArgs),
    /// Evaluate: score predictions against a benchmark's ground truth.
    Eval {
        #[command(subcommand)]
        which: eval::EvalCmd,
    },
    /// Generate data: the synthetic benchmark in the DAVIS layout.
    Data {
        #[command(subcommand)]
        which: data::DataCmd,
    },
    /// Run a benchmark and write its JSON report under target/bench/.
    Bench {
        #[command(subcommand)]
        which: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Every benchmark in turn (core, data, train-step, step, eval), each writing its JSON as
    /// when run alone, then target/bench/all.json and the generated summary in
    /// docs/benchmarks.md.
    All(bench::all::AllArgs),
    /// Top-k and local-window affinity against sorting and dense baselines.
    Core {
        /// Output file (default target/bench/core.json).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Timed runs per configuration (after one warm-up run).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Internal: run one configuration in this process and print its JSON.
        #[arg(long, hide = true)]
        child: Option<String>,
    },
    /// Decode + resize throughput: H.264 clip and DAVIS JPEG folders, against PyAV + OpenCV
    /// (the comparison needs `python3` on PATH with `av` and `cv2` importable).
    Data {
        /// Output file (default target/bench/data.json).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Timed runs per configuration (after one warm-up run).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Internal: run one configuration in this process and print its JSON.
        #[arg(long, hide = true)]
        child: Option<String>,
    },
    /// One ResNet-18 training step (torchvision and ContrastCorr variants, batch 2 and 8, 256²)
    /// side by side with PyTorch (when `python3` imports torch), and the convolution kernel
    /// against the GEMM it runs on.
    TrainStep {
        /// Output file (default target/bench/train_step.json).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Timed steps per configuration (after one warm-up step).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Internal: run one configuration in this process and print its JSON.
        #[arg(long, hide = true)]
        child: Option<String>,
    },
    /// One ContrastCorr training step (forward, backward, Adam) at the paper's sizes, warm-up
    /// and main phase, batch 2 and 16, against the official code's time and memory.
    Step {
        /// Output file (default target/bench/step.json).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Timed steps per configuration (after one warm-up step).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Folder with the Lab autoencoder's `encoder.safetensors` and `decoder.safetensors`
        /// (random weights of the same shape when absent).
        #[arg(long, default_value = "../shared/weights/uvc-lab-autoencoder")]
        autoencoder: PathBuf,
        /// Only these configurations (comma-separated: warmup_b2, main_b2, main_b16,
        /// warmup_b2_lab, main_b2_lab); all by default.
        #[arg(long, value_delimiter = ',')]
        configs: Option<Vec<String>>,
        /// Internal: run one configuration in this process and print its JSON.
        #[arg(long, hide = true)]
        child: Option<String>,
    },
    /// Label propagation speed and peak memory: the contrastcorr and crw presets on DAVIS-2016
    /// blackswan, car-shadow and dog, and on a 100- and a 400-frame synthetic video.
    Eval {
        /// Output file (default target/bench/eval.json).
        #[arg(long)]
        out: Option<PathBuf>,
        /// DAVIS-2016 root holding the three sequences (skipped when absent).
        #[arg(long, default_value = "../shared/data/davis2016-val")]
        data: PathBuf,
        /// Only the first N frames of each DAVIS sequence (default: all).
        #[arg(long)]
        frames: Option<usize>,
        /// Internal: run one configuration in this process and print its JSON.
        #[arg(long, hide = true)]
        child: Option<String>,
    },
}

fn main() -> Result<()> {
    // Training and benchmarks reuse the same large buffers every step: keep freed memory in the
    // process (see vssl_core::memory).
    vssl_core::memory::retain_freed_memory();
    // The libraries report skipped inputs and resumed runs through `tracing`: show them on
    // stderr (info and above; `VSSL_LOG=debug` or `warn` changes the level).
    let level = std::env::var("VSSL_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    match Cli::parse().command {
        Cmd::Train(args) => train::run(*args),
        Cmd::Export(args) => export::run(args),
        Cmd::Eval { which } => eval::run(which),
        Cmd::Data { which } => data::run(which),
        Cmd::Bench { which } => match which {
            BenchCmd::All(args) => bench::all::run(args),
            BenchCmd::Core {
                out,
                repeats,
                child,
            } => bench::core::run(child, out, repeats.max(1)),
            BenchCmd::Data {
                out,
                repeats,
                child,
            } => bench::data::run(child, out, repeats.max(1)),
            BenchCmd::TrainStep {
                out,
                repeats,
                child,
            } => bench::train_step::run(child, out, repeats.max(1)),
            BenchCmd::Step {
                out,
                repeats,
                autoencoder,
                configs,
                child,
            } => bench::step::run(child, out, repeats.max(1), autoencoder, configs),
            BenchCmd::Eval {
                out,
                data,
                frames,
                child,
            } => bench::eval::run(child, out, data, frames),
        },
    }
}
