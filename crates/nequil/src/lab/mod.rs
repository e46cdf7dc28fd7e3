//! The lab: everything that reads or writes files, built on the core, the training engine and
//! the instruments.
//!
//! * [`files`]: every file format the project writes, as types (run and sweep JSON files) and the
//!   one CSV writer.
//! * [`inputs`]: the SGD settings and data arrays of an analysis at given weights, checked.
//! * [`io`]: NumPy `.npy`/`.npz`, MNIST IDX, safetensors, atomic writes.
//! * [`resources`]: the memory available, and the refusal of models too large for it.
//! * [`spec`]: the TOML run specification, validated and built into a model, data and a
//!   training configuration with its instruments.
//! * [`runner`]: `nequil run`: a spec to a run directory.
//! * [`rebalance`](mod@rebalance): `nequil rebalance`: a spec's initialization moved to its noise
//!   equilibrium, as weights a run can start from.
//! * [`sweep`]: grids of runs, resumable and sharded, and their merge.

pub mod files;
pub mod inputs;
pub mod io;
pub mod rebalance;
pub mod resources;
pub mod runner;
pub mod spec;
pub mod sweep;
