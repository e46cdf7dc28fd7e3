//! Instruments: every probe a training run can record, in one place.
//!
//! A probe implements [`crate::train::Probe`]: on its schedule it reads the current θ and the
//! run's evaluation set and writes named columns into the run's log.
//!
//! * [`charges`]: Noether charges of catalog symmetries, their noise imbalance `Tr[AΣ]`, drift and
//!   predicted equilibrium ([`ChargeProbe`]).
//! * [`families`]: the noise balance of whole double-rotation families (attention's per-head
//!   `qk`/`vo`, linear chains' rotations): charge, drift, alignment residual and the distance to the
//!   equilibrium on the orbit ([`FamilyProbe`]).
//! * [`curvature`]: Hessian trace, top eigenvalue with the stability margin `η·λ_max`, and the
//!   paper's sharpness ([`HessianTraceProbe`], [`TopEigenProbe`], [`PaperSharpnessProbe`]).
//! * [`steps`]: the exact per-step law of a charge, watched at every update ([`StepChargeProbe`]).
//! * [`two_layer`]: the distance of a two-layer linear net to its closed-form matrix equilibrium
//!   ([`TwoLayerEquilibriumProbe`]).

pub mod charges;
pub mod curvature;
pub mod families;
pub mod steps;
pub mod two_layer;

pub use charges::ChargeProbe;
pub use curvature::{CurvatureData, HessianTraceProbe, PaperSharpnessProbe, TopEigenProbe};
pub use families::FamilyProbe;
pub use steps::StepChargeProbe;
pub use two_layer::{
    as_two_layer_linear, has_exact_two_layer_moments, norm_distance, MomentSource, TwoLayerEquilibriumProbe,
};
