//! `nequil rebalance`: the noise equilibrium of a spec's initialization, as weights a run can
//! start from (`model.init_from`).
//!
//! The spec is built as `nequil run` builds it (its model, its initialization or `init_from`
//! weights, its data, learning rate, batch size, weight decay and optimizer); the statistics are
//! taken on the run's evaluation set (the training set for fixed data, the `probes.eval_samples`
//! population sample for online data); and every catalogued symmetry of the model is moved to its
//! noise equilibrium by [`rebalance_with`]: the same function, the same loss, balanced noise.

use crate::core::equilibrium::{rebalance_with, RebalanceReport, Time};
use crate::lab::spec::{Built, OptimizerName, Spec};
use crate::train::eval_set;
use crate::{invalid, Result};
use std::path::Path;

/// What [`rebalance_spec`] may change about the spec's own settings.
#[derive(Clone, Debug, Default)]
pub struct RebalanceOptions {
    /// The learning rate η of the equilibrium (default: the schedule's rate at the run's last
    /// step, the rate the run is headed for).
    pub lr: Option<f64>,
    /// The size of the population sample for online data (default `probes.eval_samples`).
    pub samples: Option<usize>,
    /// The discrete-time (expected per-step) equilibrium instead of the continuous-time one.
    pub discrete: bool,
}

/// A spec's initialization rebalanced, with what it was computed from.
#[derive(Clone, Debug)]
pub struct SpecRebalance {
    /// What the spec built (its `theta0` is the initialization before rebalancing).
    pub built: Built,
    /// The report; `report.theta` is the rebalanced initialization.
    pub report: RebalanceReport,
    /// The learning rate used.
    pub lr: f64,
    /// Inputs of the samples the statistics were taken on (`n × d_in`).
    pub x: Vec<f64>,
    /// Their targets (`n × d_y`, [`crate::core::models::Model::d_y`]).
    pub y: Vec<f64>,
}

/// Builds `spec` (relative paths against `base`) and rebalances its initialization at the
/// spec's η, S, γ and optimizer ([`crate::train::Optimizer::flow_params`]: SGD's law, or
/// momentum's at the effective step). GD (no gradient noise) and Adam (no law) are refused with
/// an error naming `train.optimizer`.
pub fn rebalance_spec(spec: &Spec, base: &Path, opts: &RebalanceOptions) -> Result<SpecRebalance> {
    let built = spec.build(base)?;
    let cfg = &built.config;
    match spec.train.optimizer {
        OptimizerName::Gd => {
            return Err(invalid!(
                "train.optimizer: \"gd\" has no gradient noise, so there is no noise equilibrium to move to \
                 (rebalance for SGD, momentum or Nesterov)"
            ))
        }
        o @ (OptimizerName::Adam | OptimizerName::AdamW) => {
            return Err(invalid!(
                "train.optimizer: no noise-equilibrium law is derived for \"{o}\" (rebalance for SGD, momentum or Nesterov)"
            ))
        }
        _ => {}
    }
    let lr = match opts.lr {
        Some(l) if !(l.is_finite() && l > 0.0) => {
            return Err(invalid!("--lr: the learning rate must be finite and > 0, got {l}"))
        }
        Some(l) => l,
        None => cfg.lr.lr(cfg.steps.saturating_sub(1)),
    };
    if opts.samples == Some(0) {
        return Err(invalid!("--samples: must be ≥ 1"));
    }
    let samples = opts.samples.unwrap_or(cfg.eval_samples);
    let batch = match cfg.batching {
        crate::train::Batching::Sgd(s) => s,
        crate::train::Batching::Full => unreachable!("gd refused above"),
    };
    let time = if opts.discrete {
        Time::Discrete
    } else {
        Time::Continuous
    };
    let params = cfg
        .optimizer
        .flow_params(lr, batch, cfg.weight_decay, time)
        .expect("SGD and momentum have a law");
    let (x, y, n) = eval_set(&built.source, samples, cfg.seed);
    let report = rebalance_with(&built.model, &built.theta0, &x, &y, n, &params)?;
    Ok(SpecRebalance {
        built,
        report,
        lr,
        x,
        y,
    })
}
