//! What a person sees while a run trains: a progress bar on a terminal (steps/s, every loss
//! term, ETA), plain log lines on stderr otherwise (a log file, CI).

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::checkpoint::RunState;
use crate::run::{Observer, StepRecord};

/// An [`Observer`] that draws the run's progress.
pub struct Progress {
    bar: Option<ProgressBar>,
    every: u64,
    total: u64,
    start_step: u64,
    started: Instant,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("bar", &self.bar.is_some())
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl Progress {
    /// A bar when stderr is a terminal, else a log line every `every` steps.
    pub fn new(every: u64) -> Self {
        Self::with_terminal(every, std::io::stderr().is_terminal())
    }

    /// As [`Progress::new`], saying whether to draw a bar.
    pub fn with_terminal(every: u64, terminal: bool) -> Self {
        let bar = terminal.then(|| {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} steps · {per_sec} · ETA {eta} · {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("█▉▊▋▌▍▎▏ "));
            bar.enable_steady_tick(Duration::from_millis(500));
            bar
        });
        Self {
            bar,
            every: every.max(1),
            total: 0,
            start_step: 0,
            started: Instant::now(),
        }
    }

    /// Removes the bar (call before printing the final report).
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// `loss 1.234 (intra 0.812 · self_rec 0.401 ·×0.3 concentration 0.1)`.
pub fn describe_terms(r: &StepRecord) -> String {
    let terms: Vec<String> = r
        .terms
        .iter()
        .map(|t| {
            if (t.weight - 1.0).abs() < 1e-12 {
                format!("{} {:.4}", t.name, t.value)
            } else {
                format!("{}×{} {:.4}", t.name, t.weight, t.value)
            }
        })
        .collect();
    format!("loss {:.4} ({})", r.loss, terms.join(" · "))
}

/// `1h02m`, `3m05s`, `12s`.
pub fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

impl Observer for Progress {
    fn start(&mut self, state: &RunState, total_steps: u64) {
        self.total = total_steps;
        self.start_step = state.step;
        self.started = Instant::now();
        match &self.bar {
            Some(b) => {
                b.set_length(total_steps);
                b.set_position(state.step);
                b.reset_eta();
            }
            None => eprintln!(
                "training: step {} of {total_steps} (epoch {}, batch {})",
                state.step, state.epoch, state.batch
            ),
        }
    }

    fn step(&mut self, r: &StepRecord) {
        let msg = format!(
            "{:?} e{} lr {:.1e} {}",
            r.phase,
            r.epoch,
            r.lr,
            describe_terms(r)
        );
        match &self.bar {
            Some(b) => {
                b.set_position(r.step);
                b.set_message(msg);
            }
            None if r.step.is_multiple_of(self.every) || r.step == self.total => {
                let done = r.step.saturating_sub(self.start_step) as f64;
                let elapsed = self.started.elapsed().as_secs_f64();
                let rate = done / elapsed.max(1e-9);
                let eta = self.total.saturating_sub(r.step) as f64 / rate.max(1e-9);
                eprintln!(
                    "step {}/{} · {rate:.2} steps/s · ETA {} · {msg}",
                    r.step,
                    self.total,
                    human_duration(eta)
                );
            }
            None => {}
        }
    }

    fn checkpoint(&mut self, path: &Path) {
        match &self.bar {
            Some(b) => b.println(format!("checkpoint {}", path.display())),
            None => eprintln!("checkpoint {}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contrastcorr::Phase;
    use crate::run::TermRecord;

    #[test]
    fn terms_and_durations_read_well() {
        let r = StepRecord {
            step: 3,
            epoch: 0,
            batch: 2,
            phase: Phase::Warmup,
            lr: 1e-4,
            loss: 1.5,
            terms: vec![
                TermRecord {
                    name: "intra".into(),
                    weight: 1.0,
                    value: 1.2,
                },
                TermRecord {
                    name: "concentration".into(),
                    weight: 0.3,
                    value: 1.0,
                },
            ],
            seconds: 0.1,
            dropped_channels: vec![],
        };
        assert_eq!(
            describe_terms(&r),
            "loss 1.5000 (intra 1.2000 · concentration×0.3 1.0000)"
        );
        assert_eq!(human_duration(5.2), "5s");
        assert_eq!(human_duration(185.0), "3m05s");
        assert_eq!(human_duration(3725.0), "1h02m");
    }
}
