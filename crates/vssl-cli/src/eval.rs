//! `vssl eval`: score predictions against a benchmark's ground truth.
//!
//! Each benchmark is one variant of [`EvalCmd`] with its own argument struct; the scoring
//! ([`score_davis`]) returns the results, and printing ([`print_table`]) and writing
//! ([`write_outputs`]) are separate, so other subcommands can reuse them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use vssl_data::dataset::Davis;
use vssl_eval::metrics::davis::{BOUND_TH, DavisResults, detect_year, evaluate_dataset};
use vssl_eval::report;

/// What `vssl eval` does.
#[derive(Subcommand)]
pub enum EvalCmd {
    /// Score DAVIS predictions (semi-supervised task) exactly as the official DAVIS-2017
    /// evaluator: J and F per object and frame (first and last frame excluded), mean / recall /
    /// decay per object, object-weighted means. Prints a table; writes the official CSV files
    /// and a JSON summary on request.
    Davis(DavisArgs),
    /// Propagate each sequence's first-frame mask with a model (a run's checkpoint, a weights
    /// file or a baseline) under a protocol preset, write the masks in the DAVIS layout with an
    /// overlay per sequence, score them and the baselines', print the table.
    Propagate(Box<crate::eval_propagate::PropagateArgs>),
    /// Propagate BADJA's joints from each sequence's first annotated frame and score PCK@0.1 and
    /// @0.2 (BADJA's α·√area threshold, or JHMDB's convention), next to the baselines.
    Keypoints(Box<crate::eval_propagate::KeypointArgs>),
}

/// Arguments of `vssl eval davis`.
#[derive(Args)]
pub struct DavisArgs {
    /// Prediction folder: `<predictions>/<sequence>/<frame>.png`, palette PNGs (object ids)
    /// or grayscale PNGs (≥ 128 is the object), named like the GT annotations.
    #[arg(long)]
    pub predictions: PathBuf,
    #[command(flatten)]
    pub set: DavisSet,
    /// Write the JSON summary (global, per sequence, per object with per-frame J and F) here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write `global_results-val.csv` and `per-sequence_results-val.csv` into this folder.
    #[arg(long)]
    pub csv_dir: Option<PathBuf>,
}

/// Which DAVIS sequences a command reads.
#[derive(Args, Debug, Clone)]
pub struct DavisSet {
    /// DAVIS root (`JPEGImages/<resolution>/`, `Annotations/<resolution>/`, optionally
    /// `ImageSets/<year>/val.txt`).
    #[arg(long)]
    pub data: PathBuf,
    /// DAVIS year, 2016 (mode-L masks, one object) or 2017 (palette ids); it picks the split
    /// file `ImageSets/<year>/val.txt`. Default: 2017 when the GT masks are palette PNGs, else
    /// 2016.
    #[arg(long, value_parser = clap::value_parser!(u32).range(2016..=2017))]
    pub year: Option<u32>,
    /// Resolution folder.
    #[arg(long, default_value = "480p")]
    pub resolution: String,
    /// Only these sequences (comma-separated; default: the split file, else every sequence
    /// folder).
    #[arg(long, value_delimiter = ',')]
    pub sequences: Option<Vec<String>>,
}

impl DavisSet {
    /// The dataset, its year given or detected from the masks.
    pub fn open(&self) -> Result<Davis> {
        let data = &self.data;
        let year = match self.year {
            Some(y) => y,
            None => detect_year(data, &self.resolution)
                .with_context(|| format!("detecting the DAVIS year of {}", data.display()))?,
        };
        Davis::open(data, year, &self.resolution, self.sequences.as_deref())
            .with_context(|| format!("opening DAVIS {year} at {}", data.display()))
    }
}

/// Runs `vssl eval <cmd>`.
pub fn run(cmd: EvalCmd) -> Result<()> {
    match cmd {
        EvalCmd::Davis(args) => {
            let start = Instant::now();
            let (year, results) = score_davis(&args)?;
            println!(
                "DAVIS {year} {}: {} sequences, {} objects, scored in {:.2} s\n",
                args.set.resolution,
                results.summary.sequences,
                results.summary.objects,
                start.elapsed().as_secs_f64()
            );
            print_table(&results);
            write_outputs(&results, args.json.as_deref(), args.csv_dir.as_deref())
        }
        EvalCmd::Propagate(args) => crate::eval_propagate::propagate(*args),
        EvalCmd::Keypoints(args) => crate::eval_propagate::keypoints(*args),
    }
}

/// Scores the predictions of `args` against the DAVIS ground truth with the official boundary
/// tolerance; returns the DAVIS year used (given, or detected from the masks) and the results.
pub fn score_davis(args: &DavisArgs) -> Result<(u32, DavisResults)> {
    let (predictions, data) = (&args.predictions, &args.set.data);
    if !predictions.is_dir() {
        bail!("prediction folder {} does not exist", predictions.display());
    }
    let davis = args.set.open()?;
    let year = davis.year;
    let results = evaluate_dataset(&davis, predictions, BOUND_TH).with_context(|| {
        format!(
            "scoring {} against {}",
            predictions.display(),
            data.display()
        )
    })?;
    Ok((year, results))
}

/// Prints the global and per-object table of a DAVIS evaluation.
pub fn print_table(results: &DavisResults) {
    print!("{}", report::format_table(results));
}

/// Writes the official CSV files into `csv_dir` and the JSON summary to `json`, each when given,
/// and says where.
pub fn write_outputs(
    results: &DavisResults,
    json: Option<&Path>,
    csv_dir: Option<&Path>,
) -> Result<()> {
    if let Some(dir) = csv_dir {
        let (g, s) = report::write_csv(dir, results, "val")
            .with_context(|| format!("writing the CSV files into {}", dir.display()))?;
        println!("\nwrote {} and {}", g.display(), s.display());
    }
    if let Some(path) = json {
        report::write_json(path, results).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
