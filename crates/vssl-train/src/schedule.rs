//! What changes with the epoch: the phase, the learning rate, the outlier threshold and the
//! concentration term, as `train_trackingnet.py` computes them.
//!
//! With the paper's values (see [`ScheduleConfig`]): epochs 0–99 are the warm-up and 100–199 the
//! main phase; the rate is `1e-4 · 0.5^⌊e/40⌋` where `e` counts epochs **within** the phase (so it
//! restarts at 1e-4 at epoch 100); the threshold is off in epochs 0, 100 and 101 and 2.5
//! otherwise; the concentration term is on from epoch 10 (and throughout the main phase).

use crate::config::{LrPolicy, ScheduleConfig};
use crate::contrastcorr::{Phase, StepOptions};

/// The settings of every step of one epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochPlan {
    /// The phase.
    pub phase: Phase,
    /// The epoch counted from the start of its phase.
    pub epoch_in_phase: u64,
    /// Learning rate.
    pub lr: f64,
    /// The step's options (threshold, concentration, BatchNorm in train mode).
    pub options: StepOptions,
}

/// The rate at `e` epochs into a phase (`e` may be fractional; the step policy floors it).
fn rate(s: &ScheduleConfig, e: f64) -> f64 {
    match s.lr_policy {
        LrPolicy::Step => {
            let decays = (e / s.lr_step_epochs.max(1) as f64).floor();
            s.lr * s.lr_gamma.powi(decays.min(f64::from(i32::MAX)) as i32)
        }
        LrPolicy::Poly => {
            let n = s
                .poly_epochs
                .unwrap_or(s.warmup_epochs + s.main_epochs)
                .max(1);
            s.lr * (1.0 - (e / n as f64).min(1.0)).powf(s.poly_power)
        }
    }
}

/// The rate of batch `batch` (of `per_epoch`) of the epoch planned as `p`: the epoch's rate, or
/// with `lr_per_step` the rate at the fraction `batch / per_epoch` of the epoch.
pub fn lr_at(s: &ScheduleConfig, p: &EpochPlan, batch: u64, per_epoch: u64) -> f64 {
    if !s.lr_per_step || per_epoch == 0 {
        return p.lr;
    }
    rate(s, p.epoch_in_phase as f64 + batch as f64 / per_epoch as f64)
}

/// The plan of epoch `epoch` (0-based, over both phases).
pub fn plan(s: &ScheduleConfig, epoch: u64) -> EpochPlan {
    let (phase, e, thr_off) = if epoch < s.warmup_epochs {
        (Phase::Warmup, epoch, s.thr_off_warmup_epochs)
    } else {
        (Phase::Main, epoch - s.warmup_epochs, s.thr_off_main_epochs)
    };
    let lr = rate(s, e as f64);
    let thr = if e < thr_off { None } else { s.thr };
    let concentration = match phase {
        Phase::Warmup => epoch >= s.concentration_from_epoch,
        Phase::Main => true,
    };
    EpochPlan {
        phase,
        epoch_in_phase: e,
        lr,
        options: StepOptions {
            thr,
            concentration,
            train: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_schedule() {
        let s = ScheduleConfig::default();
        let at = |e| plan(&s, e);
        assert_eq!(at(0).phase, Phase::Warmup);
        assert_eq!(at(0).options.thr, None);
        assert_eq!(at(1).options.thr, Some(2.5));
        assert!(!at(9).options.concentration);
        assert!(at(10).options.concentration);
        assert_eq!(at(39).lr, 1e-4);
        assert_eq!(at(40).lr, 5e-5);
        assert_eq!(at(99).lr, 2.5e-5);
        // The main phase restarts the rate and switches the threshold off for two epochs.
        let m = at(100);
        assert_eq!((m.phase, m.epoch_in_phase, m.lr), (Phase::Main, 0, 1e-4));
        assert_eq!(at(101).options.thr, None);
        assert_eq!(at(102).options.thr, Some(2.5));
        assert!(at(100).options.concentration);
        assert_eq!(at(140).lr, 5e-5);
        assert_eq!(at(199).lr, 2.5e-5);
    }

    #[test]
    fn uvc_poly_schedule() {
        // UVC: --wepoch 10 --nepoch 30, lr 1e-4 · (1 − e/30)^0.9, e restarting at the phase change.
        let s = ScheduleConfig {
            warmup_epochs: 10,
            main_epochs: 20,
            lr_policy: LrPolicy::Poly,
            poly_epochs: Some(30),
            ..ScheduleConfig::default()
        };
        assert_eq!(plan(&s, 0).lr, 1e-4);
        let want = 1e-4 * (1.0f64 - 5.0 / 30.0).powf(0.9);
        assert!((plan(&s, 5).lr - want).abs() < 1e-18);
        assert!(
            (plan(&s, 15).lr - want).abs() < 1e-18,
            "restarts in the main phase"
        );
        assert_eq!(plan(&s, 10).lr, 1e-4);
    }

    #[test]
    fn per_step_poly_decays_within_the_epoch() {
        // 4 epochs of 64 batches, poly 0.9 to 0 at the end of the run.
        let s = ScheduleConfig {
            warmup_epochs: 4,
            main_epochs: 0,
            lr: 1e-3,
            lr_policy: LrPolicy::Poly,
            lr_per_step: true,
            ..ScheduleConfig::default()
        };
        assert_eq!(lr_at(&s, &plan(&s, 0), 0, 64), 1e-3);
        let want = 1e-3 * (1.0f64 - (1.0 + 32.0 / 64.0) / 4.0).powf(0.9);
        assert!((lr_at(&s, &plan(&s, 1), 32, 64) - want).abs() < 1e-15);
        // Strictly decreasing over the run, and the last step is small but not 0.
        let all: Vec<f64> = (0..4)
            .flat_map(|e| (0..64).map(move |b| (e, b)))
            .map(|(e, b)| lr_at(&s, &plan(&s, e), b, 64))
            .collect();
        assert!(all.windows(2).all(|w| w[1] < w[0]));
        assert!(all[255] > 0.0 && all[255] < 1e-3 / 64.0);
        // Off (the references): one rate per epoch.
        let off = ScheduleConfig {
            lr_per_step: false,
            ..s.clone()
        };
        assert_eq!(lr_at(&off, &plan(&off, 1), 32, 64), plan(&off, 1).lr);
        // The step policy is the same either way.
        let step = ScheduleConfig {
            lr_policy: LrPolicy::Step,
            lr_step_epochs: 2,
            lr_gamma: 0.5,
            ..s
        };
        assert_eq!(lr_at(&step, &plan(&step, 1), 63, 64), 1e-3);
        assert_eq!(lr_at(&step, &plan(&step, 2), 0, 64), 5e-4);
    }

    #[test]
    fn no_warmup_starts_in_the_main_phase() {
        let s = ScheduleConfig {
            warmup_epochs: 0,
            main_epochs: 3,
            ..ScheduleConfig::default()
        };
        assert_eq!(plan(&s, 0).phase, Phase::Main);
        assert_eq!(plan(&s, 2).options.thr, Some(2.5));
    }
}
