//! Instruments: probes that run on a schedule and add named columns to a run's log.
//!
//! A [`Probe`] declares its column names once and, at each scheduled step, appends one value per
//! column. Probes see the model, θ, the step and time, and an *evaluation set*: the full training
//! set for fixed data, or a fixed-seed sample of the population for online data (its size is
//! stated in the run's summary). Expensive probes should be given a sparse [`Schedule`].

use crate::core::data::Source;
use crate::core::footprint::Footprint;
use crate::core::models::Model;
use crate::train::Optimizer;
use crate::Result;

/// What a probe can look at.
pub struct ProbeCtx<'a> {
    /// Number of SGD updates applied so far.
    pub step: u64,
    /// Continuous time `t = Σ_k η_k` (= η·step for a constant learning rate).
    pub t: f64,
    /// The learning rate η of the next update.
    pub lr: f64,
    /// The batch size S (the dataset size N for full-batch GD).
    pub batch_size: usize,
    /// Weight decay γ (the loss carries `γ‖θ‖²`).
    pub weight_decay: f64,
    /// The update rule of the run.
    pub optimizer: &'a Optimizer,
    /// Momentum's velocity `v` after `step` updates (zero before the first; empty for SGD and
    /// Adam).
    pub velocity: &'a [f64],
    /// The model.
    pub model: &'a Model,
    /// Current parameters θ.
    pub theta: &'a [f64],
    /// Evaluation inputs, `eval_n × d_in`.
    pub eval_x: &'a [f64],
    /// Evaluation targets, `eval_n × d_y` ([`Model::d_y`](crate::core::models::Model::d_y)).
    pub eval_y: &'a [f64],
    /// Number of evaluation samples.
    pub eval_n: usize,
    /// Where the training data come from (exact second moments, if known).
    pub source: &'a Source,
}

/// An instrument that adds named columns to the log.
pub trait Probe: Send {
    /// Column names, fixed for the run.
    fn columns(&self) -> Vec<String>;
    /// The instrument's name in messages and in a run's summary when it fails: the spec key of
    /// the built-in instruments (`probes.hessian.top_eigen`); by default its first column.
    fn name(&self) -> String {
        match self.columns().first() {
            Some(c) => format!("with column `{c}`"),
            None => "without columns".into(),
        }
    }
    /// Appends exactly `columns().len()` values to `out`. An error stops the run at this row, as
    /// a divergence does ([`crate::Error::ProbeFailed`]): the log keeps the rows before it.
    fn record(&mut self, ctx: &ProbeCtx<'_>, out: &mut Vec<f64>) -> Result<()>;
    /// The memory the probe allocates for `model` and an evaluation set of `eval_n` samples:
    /// what it keeps between records plus the peak of live bytes one record adds, each part named
    /// (the run's memory check names the probe with [`Probe::name`]). A bound from above, close
    /// enough to be honest (the footprint tests measure it); by default nothing, for probes that
    /// allocate nothing in proportion to their input.
    fn footprint(&self, _model: &Model, _eval_n: usize) -> Footprint {
        Footprint::new()
    }
    /// Which steps this probe runs at; `None` means every row of the log (the run's schedule).
    fn schedule(&self) -> Option<&Schedule> {
        None
    }
    /// Whether the probe watches every update through [`Probe::on_step`]. When no probe of a run
    /// does (the default), the loop copies nothing and calls nothing per step, so the step stays
    /// allocation-free and as fast as without probes.
    fn observes_steps(&self) -> bool {
        false
    }
    /// Called after every update when [`Probe::observes_steps`] is true, with θ before and after
    /// the update and the batch gradient. An error stops the run (as an error of [`Probe::record`]
    /// does).
    fn on_step(&mut self, _step: &StepCtx<'_>) -> Result<()> {
        Ok(())
    }
    /// Named values the probe reports once, at the end of the run: aggregates over steps (the
    /// largest per-step error of an identity, the smallest per-step change) or time averages that
    /// do not fit one column per row. Each value is a flat vector (a scalar is a vector of one).
    fn summary(&self) -> Vec<(String, Vec<f64>)> {
        vec![]
    }
}

/// One update `θ_before → θ_after` (`= (1 − 2ηγ)θ_before − η ĝ` for SGD; the rule of `optimizer`
/// otherwise), as [`Probe::on_step`] sees it.
pub struct StepCtx<'a> {
    /// 0-based index of the update: `θ_after` is θ after `step + 1` updates.
    pub step: u64,
    /// The learning rate η of this update.
    pub lr: f64,
    /// Weight decay γ (the loss carries `γ‖θ‖²`).
    pub weight_decay: f64,
    /// The update rule.
    pub optimizer: &'a Optimizer,
    /// Momentum's velocity before the update (empty for SGD and Adam).
    pub velocity_before: &'a [f64],
    /// The mean loss of the batch at `θ_before` (without the weight-decay term).
    pub batch_loss: f64,
    /// θ before the update.
    pub theta_before: &'a [f64],
    /// θ after the update.
    pub theta_after: &'a [f64],
    /// The batch gradient `ĝ` at `θ_before` (without the weight-decay term `2γθ`).
    pub grad: &'a [f64],
}

/// When to record: every `k` steps, or at about `n` log-spaced steps. Step 0 and the last step
/// are always included.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// Every `k` steps (k ≥ 1).
    Every(u64),
    /// About `n` steps spaced evenly in log(1 + step).
    LogSpaced(usize),
    /// Exactly these steps (those past the run's last step are dropped).
    Steps(Vec<u64>),
}

impl Schedule {
    /// An upper bound on the number of steps [`Schedule::steps`] returns for `total` steps (and
    /// on what it holds while computing them), without computing them.
    pub fn count_bound(&self, total: u64) -> u128 {
        let all = total as u128 + 1;
        match self {
            Schedule::Every(k) => (total / (*k).max(1)) as u128 + 2,
            Schedule::LogSpaced(n) => (*n as u128).max(2).min(all) + 2,
            Schedule::Steps(v) => v.len() as u128 + 2,
        }
        .min(all + 2)
    }

    /// The sorted, de-duplicated steps in `0..=total` at which to record.
    pub fn steps(&self, total: u64) -> Vec<u64> {
        let mut s = match self {
            Schedule::Every(k) => {
                let k = (*k).max(1);
                (0..=total / k).map(|i| i * k).collect::<Vec<_>>()
            }
            Schedule::LogSpaced(n) => {
                let n = (*n).max(2);
                let lt = ((total + 1) as f64).ln();
                // So many points that consecutive ones are less than one step apart: every step,
                // without computing (or holding) n points.
                if (n - 1) as f64 >= 2.0 * (total as f64 + 1.0) * lt.max(1.0) {
                    (0..=total).collect()
                } else {
                    // Non-decreasing: duplicates are dropped as they come, so that no more than
                    // min(n, total + 1) steps are ever held.
                    let mut v: Vec<u64> = Vec::new();
                    for i in 0..n {
                        let s = (((i as f64) / (n - 1) as f64 * lt).exp() - 1.0).round() as u64;
                        if v.last() != Some(&s) {
                            v.push(s);
                        }
                    }
                    v
                }
            }
            Schedule::Steps(v) => v.clone(),
        };
        s.push(0);
        s.push(total);
        s.retain(|&v| v <= total);
        s.sort_unstable();
        s.dedup();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn schedules_include_ends() {
        assert_eq!(Schedule::Every(3).steps(10), vec![0, 3, 6, 9, 10]);
        let l = Schedule::LogSpaced(20).steps(100_000);
        assert_eq!(l[0], 0);
        assert_eq!(*l.last().unwrap(), 100_000);
        assert!(l.len() >= 15 && l.len() <= 20, "{l:?}");
        assert!(l.windows(2).all(|w| w[0] < w[1]));
        assert!(l.len() as u128 <= Schedule::LogSpaced(20).count_bound(100_000));
    }

    /// Log-spaced points denser than the steps are every step, computed without the points.
    #[test]
    fn dense_log_spacing_is_every_step() {
        for total in [0u64, 1, 5, 99, 1000] {
            let all: Vec<u64> = (0..=total).collect();
            // Just past the shortcut's threshold the points are computed one by one: the same.
            let lt = ((total + 1) as f64).ln().max(1.0);
            let n = (2.0 * (total as f64 + 1.0) * lt).ceil() as usize + 1;
            assert_eq!(Schedule::LogSpaced(n).steps(total), all, "{total}");
            let mut v: Vec<u64> = (0..n)
                .map(|i| ((i as f64 / (n - 1) as f64 * ((total + 1) as f64).ln()).exp() - 1.0).round() as u64)
                .collect();
            v.dedup();
            assert_eq!(v, all, "{total}: the shortcut's threshold guarantees every step");
            assert_eq!(Schedule::LogSpaced(usize::MAX).steps(total), all);
            assert!(Schedule::LogSpaced(usize::MAX).count_bound(total) >= all.len() as u128);
        }
    }
}
