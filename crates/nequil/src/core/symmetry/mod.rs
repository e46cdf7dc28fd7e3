//! Exponential symmetries (book `theory/symmetries.md#exponential-symmetry`): generators acting on the flat θ, Noether charges,
//! the per-model catalog, numerical discovery, and the law of motion of a charge under SGD.
//!
//! Conventions (crate-wide): per-sample loss `ℓ = ‖f(x) − y‖²` (no ½), batch loss = batch mean,
//! weight decay `γ‖θ‖²` in the loss so that an SGD step is `θ ← (1 − 2ηγ)θ − ηĝ`, `σ² = η/(2S)`,
//! continuous time `t = η·steps`, and the constants of book `theory/constants.md#constants` (`Ċ = −4γC + (η/S)Tr[AΣ]`).
//! A symmetry with generator `A` (symmetric) satisfies `ℓ(e^{λA}θ, z) = ℓ(θ, z)` for all λ and z;
//! its charge is `C(θ) = θᵀAθ`.
//!
//! * [`generator`]: [`Generator`] (diagonal, block-sparse, dense): charge, `Ag`, exact `e^{λA}θ`,
//!   eigenpairs, and [`verify`] on data.
//! * [`catalog`](mod@catalog): the symmetries each model family has ([`catalog()`]).
//! * [`discovery`]: the space of diagonal symmetries found from data ([`discover_diagonal`]).
//! * [`law`]: the exact per-step identity and the expected drifts ([`NoiseBalance`]).

pub mod catalog;
pub mod discovery;
pub mod generator;
pub mod law;

pub use catalog::{
    block_scale, catalog, catalog_families, catalog_names, catalog_symmetry, double_rotation, family_member,
    global_scale, layer_pair_rescaling, neuron_rescaling, Catalog, MatrixFamily, Symmetry, SymmetryKind,
};
pub use discovery::{discover_diagonal, DiscoverOptions, DiscoveredGroup, Discovery};
pub use generator::{verify, BlockSparse, EigenPair, Generator, SymBlock, Verification};
pub use law::{charge_after_step, Momentum, NoiseBalance};
