//! # nequil — parameter symmetry and the noise equilibrium of SGD
//!
//! When a model's loss has an exponential symmetry `θ → e^{λA}θ` (`A` symmetric: per-neuron
//! rescaling in ReLU and linear nets, the double rotation of matrix factorization, the scale
//! invariance normalization creates), gradient flow conserves the charge `C(θ) = θᵀAθ` but SGD
//! does not: its noise moves θ along the symmetry's orbit, at no cost in loss, to a unique noise
//! equilibrium where the gradient noise of the two sides of `A` balances. This library is that
//! theory as software: models as stacks of layers, their symmetries derived from the stack, exact
//! per-sample gradient statistics and curvature, the equilibrium solver, and a fast training
//! engine with instruments.
//!
//! Conventions (everywhere): per-sample loss `ℓ = ‖f(x) − y‖²` (no ½; or cross-entropy over logits
//! and integer labels, [`Loss`]), batch loss = mean over the
//! batch, weight decay `γ‖θ‖²` added to the loss (so an SGD step is `θ ← (1 − 2ηγ)θ − η ĝ`),
//! `Σ` the per-sample gradient covariance, continuous time `t = η × steps`, and the corrected
//! constants of the theory (`Ċ = −4γC + (η/S) Tr[AΣ]`; the book's theory chapter says where and
//! why the paper's differ).
//!
//! ## The main path
//!
//! A model, data, a training run with an instrument, and the noise equilibrium of the trained
//! weights:
//!
//! ```
//! use nequil::{Activation, Batching, ChargeProbe, Cov, Gaussian, Init, LrSchedule, Model, Probe,
//!              Rng, Schedule, Source, Target, TrainConfig};
//!
//! # fn main() -> nequil::Result<()> {
//! // A ReLU net 4 → 8 → 2 with biases: one rescaling symmetry per hidden neuron.
//! let model = Model::mlp(&[4, 8, 2], Activation::Relu, true)?;
//! // Online Gaussian data from a random linear teacher with label noise.
//! let teacher = Target::random_linear(4, 2, &mut Rng::new(1));
//! let mut source = Source::Online(Gaussian::new(4, 2, Cov::Scalar(1.0), teacher, Some(Cov::Scalar(0.5)))?);
//!
//! // Train 5 000 SGD steps (η = 0.02, S = 4), recording the layer-pair charge every 1 000 steps.
//! let theta0 = model.init(&Init::Kaiming, &mut Rng::new(0))?;
//! let config = TrainConfig {
//!     steps: 5_000,
//!     batching: Batching::Sgd(4),
//!     lr: LrSchedule::Constant(0.02),
//!     weight_decay: 0.0,
//!     optimizer: nequil::train::Optimizer::Sgd,
//!     schedule: Schedule::Every(1_000),
//!     eval_samples: 512,
//!     seed: 0,
//! };
//! let charge = nequil::core::symmetry::catalog_symmetry(&model, "layer_pair.0")?;
//! let mut probes: Vec<Box<dyn Probe>> = vec![Box::new(ChargeProbe::new(vec![charge]))];
//! let run = nequil::train::train(&model, &mut source, theta0, &config, &mut probes, &mut |_| {})?;
//! assert!(run.error.is_none());
//! let c = run.log.column("layer_pair.0/C").unwrap();
//! println!("charge of the layer pair: {} → {}", c[0], c[c.len() - 1]);
//!
//! // The noise equilibrium of every neuron's rescaling at the trained weights, on 512 samples:
//! // the same function and loss, with each neuron's gradient noise balanced.
//! let (x, y, n) = nequil::train::eval_set(&source, 512, 7);
//! let eq = nequil::rebalance(&model, &run.theta, &x, &y, n, 0.02, 4, 0.0)?;
//! assert!((eq.loss_after - eq.loss_before).abs() < 1e-10 * eq.loss_before);
//! assert!(eq.totals.imbalance_after < 1e-8 * eq.totals.imbalance_before);
//! # Ok(())
//! # }
//! ```
//!
//! ## The layers of the library
//!
//! Each layer imports only those before it:
//!
//! 1. [`core`]: parameters, layers and models, per-sample statistics, symmetry, equilibrium,
//!    curvature. No file I/O, no specs, no training loop.
//! 2. [`train`]: the training engine (the allocation-free step, schedules, the loop, the probe
//!    interface).
//! 3. [`instruments`]: the probes.
//! 4. [`lab`]: specs, runs, sweeps and every file format.
//!
//! The paper's experiments, figures and report are not part of the library: they are the crate
//! `nequil-paper`, built on it.
//!
//! The items re-exported below are the front door; the modules hold the rest.

#![warn(missing_docs)]

pub mod core;
pub mod error;
pub mod instruments;
pub mod lab;
pub mod simd;
pub mod train;

pub use error::{Error, Result};

pub use crate::core::data::{Cov, Dataset, Gaussian, Source, Target};
pub use crate::core::equilibrium::{rebalance, rebalance_with, RebalanceReport};
pub use crate::core::loss::Loss;
pub use crate::core::models::{Activation, Init, Model, ScaleKind};
pub use crate::core::rng::Rng;
pub use crate::core::stats::{grad_stats, GradStats};
pub use crate::core::symmetry::{catalog, Catalog, Generator, Symmetry};
pub use crate::instruments::ChargeProbe;
pub use crate::lab::spec::Spec;
pub use crate::train::{Batching, LrSchedule, Optimizer, Probe, Schedule, TrainConfig};
