//! # nequil — parameter symmetry and the noise equilibrium of SGD
//!
//! The library behind the `nequil` command. See the crate README for the conventions:
//! per-sample loss `ℓ = ‖f(x) − y‖²` (no ½), batch loss = mean over the batch, weight decay
//! `γ‖θ‖²` added to the loss (so an SGD step is `θ ← (1 − 2ηγ)θ − η ĝ`), continuous time
//! `t = η × steps`, and the constants of `paper.md` §6.

#![warn(missing_docs)]

pub mod curvature;
pub mod data;
pub mod equilibrium;
pub mod error;
pub mod experiments;
pub mod io;
pub mod linalg;
pub mod math;
pub mod models;
pub mod params;
pub mod rng;
pub mod runner;
pub mod simd;
pub mod spec;
pub mod stats;
pub mod sweep;
pub mod symmetry;
pub mod train;

pub use error::{Error, Result};
