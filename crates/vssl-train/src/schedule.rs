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

/// The plan of epoch `epoch` (0-based, over both phases).
pub fn plan(s: &ScheduleConfig, epoch: u64) -> EpochPlan {
    let (phase, e, thr_off) = if epoch < s.warmup_epochs {
        (Phase::Warmup, epoch, s.thr_off_warmup_epochs)
    } else {
        (Phase::Main, epoch - s.warmup_epochs, s.thr_off_main_epochs)
    };
    let lr = match s.lr_policy {
        LrPolicy::Step => {
            let decays = e / s.lr_step_epochs.max(1);
            s.lr * s.lr_gamma.powi(i32::try_from(decays).unwrap_or(i32::MAX))
        }
        LrPolicy::Poly => {
            let n = s
                .poly_epochs
                .unwrap_or(s.warmup_epochs + s.main_epochs)
                .max(1);
            s.lr * (1.0 - (e as f64 / n as f64).min(1.0)).powf(s.poly_power)
        }
    };
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
