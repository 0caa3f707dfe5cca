//! `vssl eval`: score predictions against a benchmark's ground truth.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use vssl_data::dataset::Davis;
use vssl_eval::metrics::davis::{BOUND_TH, detect_year, evaluate_dataset};
use vssl_eval::report;

/// What `vssl eval` does.
#[derive(Subcommand)]
pub enum EvalCmd {
    /// Score DAVIS predictions (semi-supervised task) exactly as the official DAVIS-2017
    /// evaluator: J and F per object and frame (first and last frame excluded), mean / recall /
    /// decay per object, object-weighted means. Prints a table; writes the official CSV files
    /// and a JSON summary on request.
    Davis {
        /// Prediction folder: `<predictions>/<sequence>/<frame>.png`, palette PNGs (object ids)
        /// or grayscale PNGs (≥ 128 is the object), named like the GT annotations.
        #[arg(long)]
        predictions: PathBuf,
        /// DAVIS root (`JPEGImages/<resolution>/`, `Annotations/<resolution>/`, optionally
        /// `ImageSets/<year>/val.txt`).
        #[arg(long)]
        data: PathBuf,
        /// DAVIS year, 2016 (mode-L masks, one object) or 2017 (palette ids); it picks the split
        /// file `ImageSets/<year>/val.txt`. Default: 2017 when the GT masks are palette PNGs, else
        /// 2016.
        #[arg(long, value_parser = clap::value_parser!(u32).range(2016..=2017))]
        year: Option<u32>,
        /// Resolution folder.
        #[arg(long, default_value = "480p")]
        resolution: String,
        /// Only these sequences (comma-separated; default: the split file, else every sequence
        /// folder).
        #[arg(long, value_delimiter = ',')]
        sequences: Option<Vec<String>>,
        /// Write the JSON summary (global, per sequence, per object with per-frame J and F) here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write `global_results-val.csv` and `per-sequence_results-val.csv` into this folder.
        #[arg(long)]
        csv_dir: Option<PathBuf>,
    },
}

/// Runs `vssl eval <cmd>`.
pub fn run(cmd: EvalCmd) -> Result<()> {
    match cmd {
        EvalCmd::Davis {
            predictions,
            data,
            year,
            resolution,
            sequences,
            json,
            csv_dir,
        } => {
            if !predictions.is_dir() {
                bail!("prediction folder {} does not exist", predictions.display());
            }
            let year = match year {
                Some(y) => y,
                None => detect_year(&data, &resolution)
                    .with_context(|| format!("detecting the DAVIS year of {}", data.display()))?,
            };
            let davis = Davis::open(&data, year, &resolution, sequences.as_deref())
                .with_context(|| format!("opening DAVIS {year} at {}", data.display()))?;
            let start = Instant::now();
            let results = evaluate_dataset(&davis, &predictions, BOUND_TH).with_context(|| {
                format!(
                    "scoring {} against {}",
                    predictions.display(),
                    data.display()
                )
            })?;
            println!(
                "DAVIS {year} {resolution}: {} sequences, {} objects, scored in {:.2} s\n",
                results.summary.sequences,
                results.summary.objects,
                start.elapsed().as_secs_f64()
            );
            print!("{}", report::table(&results));
            if let Some(dir) = csv_dir {
                let (g, s) = report::write_csvs(&dir, &results, "val")
                    .with_context(|| format!("writing the CSV files into {}", dir.display()))?;
                println!("\nwrote {} and {}", g.display(), s.display());
            }
            if let Some(path) = json {
                report::write_json(&path, &results)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
            Ok(())
        }
    }
}
