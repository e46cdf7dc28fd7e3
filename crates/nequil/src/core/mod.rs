//! The core: the theory and the numerics it needs, with no file I/O and no knowledge of specs or
//! training runs.
//!
//! * [`params`]: the flat parameter vector θ and its named layout (PyTorch names, `[out, in]`).
//! * [`linalg`], [`math`], [`rng`]: products, matrix functions, a vectorizable `tanh`, the seeded
//!   random streams.
//! * [`data`]: Gaussian data sources with exact second moments, teachers, fixed datasets.
//! * [`layers`]: the layer kinds, one per file, and the trait they implement.
//! * [`models`]: models as stacks of layers.
//! * [`loss`]: the per-sample losses (mean-squared error, cross-entropy) and their derivatives.
//! * [`graph`]: the interface of operations with several inputs and of parameter blocks shared
//!   between nodes (the next engine's; one operation, `add`, implemented).
//! * [`scalar`]: the scalar type parameter (`f32`, `f64`) of generic kernels.
//! * [`stats`]: exact per-sample gradient statistics.
//! * [`symmetry`]: generators, charges, the catalog derived from a model's structure, discovery,
//!   the law of motion of a charge.
//! * [`equilibrium`]: the noise equilibrium: the 1-D solve, families, closed forms, rebalancing.
//! * [`curvature`]: Hessian-vector products, spectra, traces, Lanczos, the paper's sharpness.
//! * [`footprint`]: what a component will allocate, declared beside the code that allocates.
//! * [`parallel`]: several threads for one run's large products, bit-identical to one thread.
//!
//! Modules here import only each other (and [`crate::error`]); training, instruments and the lab
//! are built on top.

pub mod curvature;
pub mod data;
pub mod equilibrium;
pub mod footprint;
pub mod graph;
pub mod layers;
pub mod linalg;
pub mod loss;
pub mod math;
pub mod models;
pub mod parallel;
pub mod params;
pub mod rng;
pub mod scalar;
pub mod stats;
pub mod symmetry;
