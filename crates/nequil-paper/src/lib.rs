//! # nequil-paper — the noise-equilibrium paper, reproduced on the nequil library
//!
//! Everything specific to the paper, built on the general library [`nequil`]: the paper's figures
//! and the experiments beyond it as plans of runs with checks against the theory
//! ([`experiments`]), the files they write ([`files`]), their figures ([`plot`]), the HTML report
//! ([`report`]) and `reproduce` itself ([`reproduce`]), which the command `nequil reproduce` and
//! the Python package's `nequil.reproduce` both call.
//!
//! The library never depends on this crate; this crate depends on no terminal or
//! argument-parsing crate (a front end shows progress through [`reproduce::Progress`]).

#![warn(missing_docs)]

pub mod experiments;
pub mod files;
pub mod plot;
pub mod report;
pub mod reproduce;
