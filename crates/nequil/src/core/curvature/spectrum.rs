//! The dense Hessian and its spectrum (small P), and the trace: exact or Hutchinson.

use super::HessianOp;
use crate::core::linalg::{sym_eigen, Dense};
use crate::core::rng::Rng;
use crate::{invalid, Result};

/// The largest P for which [`dense_hessian`] and [`hessian_spectrum`] run: 2048 (the matrix then
/// takes 32 MiB and its eigendecomposition a few seconds). Above it use [`lanczos`](super::lanczos)
/// and [`hutchinson_trace`].
pub const DENSE_MAX_PARAMS: usize = 2048;

/// The dense `P × P` Hessian assembled from `P` products, column `j` being `H e_j`. It is **not**
/// symmetrised, so its asymmetry measures the rounding of the products. Errors if
/// `P >` [`DENSE_MAX_PARAMS`].
pub fn dense_hessian<H: HessianOp + ?Sized>(op: &mut H) -> Result<Dense> {
    let p = op.dim();
    if p > DENSE_MAX_PARAMS {
        return Err(invalid!(
            "dense Hessian: P = {p} exceeds the limit of {DENSE_MAX_PARAMS} parameters; use Lanczos / Hutchinson"
        ));
    }
    let mut h = Dense::zeros(p, p);
    let mut e = vec![0.0; p];
    let mut col = vec![0.0; p];
    for j in 0..p {
        e[j] = 1.0;
        op.apply(&e, &mut col);
        e[j] = 0.0;
        for i in 0..p {
            h.data[i * p + j] = col[i];
        }
    }
    Ok(h)
}

/// The full spectrum of the Hessian (`P ≤` [`DENSE_MAX_PARAMS`]): eigenvalues ascending and the
/// eigenvectors as the columns of the returned matrix, from [`dense_hessian`] symmetrised by
/// [`sym_eigen`].
pub fn hessian_spectrum<H: HessianOp + ?Sized>(op: &mut H) -> Result<(Vec<f64>, Dense)> {
    let h = dense_hessian(op)?;
    sym_eigen(&h)
}

/// The exact trace `Σ_j e_jᵀ H e_j` from `P` products (`O(P)` memory; the cost is `P` products,
/// so use it for small P).
pub fn exact_trace<H: HessianOp + ?Sized>(op: &mut H) -> f64 {
    let p = op.dim();
    let mut e = vec![0.0; p];
    let mut col = vec![0.0; p];
    let mut t = 0.0;
    for j in 0..p {
        e[j] = 1.0;
        op.apply(&e, &mut col);
        e[j] = 0.0;
        t += col[j];
    }
    t
}

/// A trace estimate.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceEstimate {
    /// The estimate of `Tr H`.
    pub estimate: f64,
    /// Number of Hessian-vector products used (`P` for the exact trace).
    pub probes: usize,
    /// Standard error of the estimate: `sd(zᵀHz)/√m` over the `m` probes; 0 when exact.
    pub std_error: f64,
    /// Whether the value is the exact trace.
    pub exact: bool,
}

/// Hutchinson's estimator with `m ≥ 2` Rademacher probes `z` (`z_p = ±1`):
/// `Tr H ≈ (1/m) Σ_k z_kᵀ H z_k`, unbiased, with variance `2 Σ_{p≠q} H_pq² / m`; the reported
/// standard error is the sample standard deviation of `z_kᵀHz_k` over `√m`.
pub fn hutchinson_trace<H: HessianOp + ?Sized>(op: &mut H, probes: usize, rng: &mut Rng) -> Result<TraceEstimate> {
    if probes < 2 {
        return Err(invalid!(
            "hutchinson: need at least 2 probes for a standard error, got {probes}"
        ));
    }
    let p = op.dim();
    let mut z = vec![0.0; p];
    let mut hz = vec![0.0; p];
    let (mut mean, mut m2) = (0.0, 0.0);
    for k in 0..probes {
        for zi in z.iter_mut() {
            *zi = if rng.next_u64() >> 63 == 0 { 1.0 } else { -1.0 };
        }
        op.apply(&z, &mut hz);
        let q: f64 = z.iter().zip(&hz).map(|(a, b)| a * b).sum();
        // Welford's running mean and sum of squared deviations.
        let delta = q - mean;
        mean += delta / (k + 1) as f64;
        m2 += delta * (q - mean);
    }
    let var = m2 / (probes - 1) as f64;
    Ok(TraceEstimate {
        estimate: mean,
        probes,
        std_error: (var / probes as f64).sqrt(),
        exact: false,
    })
}

/// The trace: exact when `P ≤ max_exact` (P products), otherwise Hutchinson with `probes`
/// Rademacher probes drawn from `rng`.
pub fn trace<H: HessianOp + ?Sized>(
    op: &mut H,
    max_exact: usize,
    probes: usize,
    rng: &mut Rng,
) -> Result<TraceEstimate> {
    let p = op.dim();
    if p <= max_exact {
        Ok(TraceEstimate {
            estimate: exact_trace(op),
            probes: p,
            std_error: 0.0,
            exact: true,
        })
    } else {
        hutchinson_trace(op, probes, rng)
    }
}
