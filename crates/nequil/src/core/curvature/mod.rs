//! Curvature instruments: exact Hessian-vector products, the dense Hessian and its spectrum, the
//! trace (exact or Hutchinson), the top eigenvalues (Lanczos) and the paper's sharpness.
//!
//! # Conventions
//!
//! * "The Hessian" is the Hessian `H = ∇²L(θ)` of the **mean** loss over a set of samples,
//!   `L(θ) = (1/n) Σ_i ‖f(x_i) − y_i‖²` (no ½), the same loss that [`Model::loss`] returns. The
//!   samples may be a fixed training set, a batch, or a fixed-seed sample of the population.
//! * For linear networks on Gaussian data, [`PopulationHessian`] gives the Hessian of the
//!   **population** loss `L(θ) = E‖f(x) − y‖²` exactly, from the second moments `Σ_x = E[xxᵀ]`
//!   and `E[yxᵀ]`.
//! * Weight decay is **not** included unless asked for: wrap an operator in [`WeightDecay`] to get
//!   the Hessian of `L(θ) + γ‖θ‖²`, i.e. `H + 2γI`.
//! * The paper's sharpness `S(θ)` (Prop. 5.3) is **half** the true Hessian trace of the population
//!   loss `E‖UWx − y‖²`, at every θ; see [`sharpness`] and book `theory/constants.md#sharpness-convention`
//!
//! # Pieces
//!
//! * [`HessianOp`]: a symmetric operator `v ↦ Hv` on `ℝ^P`. Implemented by
//!   [`EmpiricalHessian`] (exact products on a set of samples, every model: Pearlmutter's
//!   R-operator through each layer's `rforward`/`rbackward`, written by hand for dense layers and
//!   on forward-mode dual numbers for [`ScaleNet`](crate::core::models::ScaleNet), layer-norm and
//!   attention), by [`PopulationHessian`] (deep linear nets, from the
//!   product structure) and by [`Dense`] (a symmetric matrix).
//! * [`dense_hessian`], [`hessian_spectrum`]: the `P × P` matrix from `P` products, for
//!   `P ≤` [`DENSE_MAX_PARAMS`].
//! * [`exact_trace`], [`hutchinson_trace`], [`trace`]: the trace.
//! * [`lanczos`]: extreme eigenvalues with full reorthogonalization and convergence reporting.
//! * [`paper_sharpness`], [`linear_hessian_trace`]: closed forms for linear nets.
//!
//! [`Model::loss`]: crate::core::models::Model::loss
//! [`Dense`]: crate::core::linalg::Dense

mod hvp;
mod lanczos;
mod population;
pub mod sharpness;
mod spectrum;

pub use hvp::{hvp, EmpiricalHessian, HvpOptions, HvpWorkspace};
pub use lanczos::{lanczos, LanczosOptions, LanczosResult, Which};
pub use population::{data_moments, PopulationHessian};
pub use sharpness::{linear_hessian_trace, paper_sharpness};
pub use spectrum::{
    dense_hessian, exact_trace, hessian_spectrum, hutchinson_trace, trace, TraceEstimate, DENSE_MAX_PARAMS,
};

use crate::core::linalg::Dense;

/// A symmetric linear operator `v ↦ Hv` on `ℝ^P`, typically a Hessian of a mean loss.
///
/// Implementations are exact (no finite differences) and do not allocate per product.
pub trait HessianOp {
    /// The dimension `P` of the space the operator acts on.
    fn dim(&self) -> usize;
    /// Writes `Hv` into `out`. Both slices have length [`HessianOp::dim`].
    fn apply(&mut self, v: &[f64], out: &mut [f64]);
}

impl<T: HessianOp + ?Sized> HessianOp for &mut T {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn apply(&mut self, v: &[f64], out: &mut [f64]) {
        (**self).apply(v, out)
    }
}

/// A dense square matrix acts as the operator `v ↦ Av` (meant for symmetric `A`, e.g. a Hessian
/// assembled by [`dense_hessian`], or a test matrix).
impl HessianOp for Dense {
    fn dim(&self) -> usize {
        self.rows
    }
    fn apply(&mut self, v: &[f64], out: &mut [f64]) {
        debug_assert_eq!(self.rows, self.cols);
        crate::core::linalg::gemm_nn(out, &self.data, v, self.rows, 1, self.cols, false);
    }
}

/// The Hessian of `L(θ) + γ‖θ‖²` from the Hessian `H` of `L`: `v ↦ Hv + 2γv`
/// (the project's weight-decay convention, `γ‖θ‖²` added to the loss).
#[derive(Clone, Debug)]
pub struct WeightDecay<H> {
    /// The operator `H` of the loss without weight decay.
    pub inner: H,
    /// The weight decay γ.
    pub gamma: f64,
}

impl<H: HessianOp> HessianOp for WeightDecay<H> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn apply(&mut self, v: &[f64], out: &mut [f64]) {
        self.inner.apply(v, out);
        let s = 2.0 * self.gamma;
        for (o, vi) in out.iter_mut().zip(v) {
            *o += s * vi;
        }
    }
}
