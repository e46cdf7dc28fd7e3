//! The noise equilibrium (book `theory/equilibrium.md#fixed-point-theorem`, `theory/law-of-motion.md#expected-discrete-drift`, `theory/closed-forms.md#closed-forms`, `theory/equilibrium.md#solving`): where SGD's gradient noise (and weight
//! decay) drive the charge of each exponential symmetry.
//!
//! Conventions (crate-wide): per-sample loss `ℓ = ‖f(x) − y‖²` (no ½), batch loss = batch mean,
//! weight decay `γ‖θ‖²` in the loss (a step is `θ ← (1 − 2ηγ)θ − ηĝ`), `σ² = η/(2S)`, continuous
//! time `t = η·steps`, `Σ` the per-sample gradient covariance with weight `1/n`, and the constants
//! of book `theory/constants.md#constants`: the equilibrium is `4γC* = (η/S) Tr[Σ(θ*)A]` (the paper's Eq. 8 has σ² where
//! 2σ² is consistent).
//!
//! * [`orbit`]: the 1-D monotone root along one orbit ([`OrbitFlow`]), continuous or discrete time.
//! * [`family`]: all neuron rescalings of a net at once ([`solve_diagonal_family`]).
//! * [`matrix_family`]: the equilibrium of a whole double-rotation family (every symmetric `M` at
//!   once: linear chains' rotations, attention's per-head `qk`/`vo`), in closed form on the orbit.
//! * [`two_layer`]: the closed-form matrix equilibrium of a two-layer linear net.
//! * [`deep_linear`]: the corrected Theorem 5.4 for deep linear nets at the global minimum.
//! * [`scalar`]: the decay rate of the scalar `uw` charge.
//! * [`rebalance`](mod@rebalance): the library side of `nequil equilibrium` ([`rebalance()`]); its
//!   report prints as the command's table (`Display`, [`RebalanceReport::table`]) and JSON
//!   ([`RebalanceReport::to_json`]).

pub mod deep_linear;
pub mod family;
pub mod matrix_family;
pub mod orbit;
pub mod rebalance;
mod report;
pub mod scalar;
pub mod two_layer;

pub use deep_linear::{deep_linear_equilibrium, deep_linear_residuals, DeepLinearEquilibrium};
pub use family::{solve_diagonal_family, FamilyOptions, FamilySolution};
pub use matrix_family::{apply_family, families_moments, family_balance, family_moments, FamilyBalance, FamilyMoments};
pub use orbit::{FlowParams, FlowTerm, OrbitFlow, OrbitSolution, SolveStatus, Time};
pub use rebalance::{
    rebalance, rebalance_footprint, rebalance_with, FamilyRow, RebalanceReport, RebalanceRow, RebalanceTotals,
};
pub use report::status_name;
pub use scalar::{scalar_uw_decay_rate, scalar_uw_second_moment_rx, scalar_uw_var_rx};
pub use two_layer::{
    alignment_residual, sharpness_paper, two_layer_equilibrium, two_layer_equilibrium_empirical,
    two_layer_equilibrium_gaussian, two_layer_factors, two_layer_theta, TwoLayerEquilibrium, TwoLayerGammas,
};
