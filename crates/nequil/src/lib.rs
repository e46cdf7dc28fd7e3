//! # nequil — parameter symmetry and the noise equilibrium of SGD
//!
//! The library behind the `nequil` command. Conventions: per-sample loss `ℓ = ‖f(x) − y‖²` (no ½),
//! batch loss = mean over the batch, weight decay `γ‖θ‖²` added to the loss (so an SGD step is
//! `θ ← (1 − 2ηγ)θ − η ĝ`), continuous time `t = η × steps`, and the corrected constants of the
//! theory (`Ċ = −4γC + (η/S) Tr[AΣ]`).
//!
//! The library is layered; each layer imports only those before it:
//!
//! 1. [`core`]: parameters, layers and models, per-sample statistics, symmetry, equilibrium,
//!    curvature. No file I/O, no specs, no training loop.
//! 2. [`train`]: the training engine (the allocation-free step, schedules, the loop, the probe
//!    interface).
//! 3. [`instruments`]: the probes.
//! 4. [`lab`]: specs, runs, sweeps, experiments and every file format.

#![warn(missing_docs)]

pub mod core;
pub mod error;
pub mod instruments;
pub mod lab;
pub mod train;

pub use error::{Error, Result};
