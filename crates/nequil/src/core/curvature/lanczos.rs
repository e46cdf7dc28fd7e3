//! Extreme eigenvalues of a symmetric operator by the Lanczos method with full
//! reorthogonalization.

use super::HessianOp;
use crate::core::linalg::{sym_eigen, Dense};
use crate::core::rng::Rng;
use crate::{invalid, Result};

/// Which end of the spectrum to compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// The largest algebraic eigenvalues (`λ_max` first).
    Largest,
    /// The smallest algebraic eigenvalues, i.e. the most negative (`λ_min` first).
    Smallest,
}

/// Options of [`lanczos`].
#[derive(Clone, Debug, PartialEq)]
pub struct LanczosOptions {
    /// Number of eigenvalues wanted, `1 ≤ k ≤ P`. Default 1.
    pub k: usize,
    /// Which end of the spectrum. Default [`Which::Largest`].
    pub which: Which,
    /// Maximum number of Lanczos steps (operator products), clamped to `[k, P]`. The Krylov basis
    /// of `max_iter × P` values is stored for the reorthogonalization. Default 80.
    pub max_iter: usize,
    /// Convergence tolerance: a Ritz pair `(λ, v)` has converged when `‖Hv − λv‖ ≤ tol · |λ|_max`,
    /// with `|λ|_max` the largest Ritz value in magnitude (an estimate of `‖H‖₂`). Default 1e-6;
    /// the eigenvalue error is then at most `tol · ‖H‖₂` and usually of order
    /// `(tol · ‖H‖₂)² / gap`.
    pub tol: f64,
    /// Seed of the random (normal) starting vector. Default 0.
    pub seed: u64,
}

impl Default for LanczosOptions {
    fn default() -> Self {
        LanczosOptions {
            k: 1,
            which: Which::Largest,
            max_iter: 80,
            tol: 1e-6,
            seed: 0,
        }
    }
}

/// The result of [`lanczos`].
#[derive(Clone, Debug, PartialEq)]
pub struct LanczosResult {
    /// The `k` Ritz values: descending for [`Which::Largest`], ascending for [`Which::Smallest`].
    pub values: Vec<f64>,
    /// The corresponding unit Ritz vectors (length P each).
    pub vectors: Vec<Vec<f64>>,
    /// Number of Lanczos steps taken (operator products, not counting the `k` products that
    /// measure the residuals).
    pub iterations: usize,
    /// True residual norms `‖Hv − λv‖` of the returned pairs, each measured with one extra product.
    pub residuals: Vec<f64>,
    /// Whether every residual is at most `tol · |λ|_max`.
    pub converged: bool,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(y: &mut [f64], a: f64, x: &[f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// Orthogonalizes `w` against the first `m` basis vectors (two passes of classical Gram–Schmidt,
/// "twice is enough"); returns the coefficient on basis vector `m − 1`.
fn reorthogonalize(basis: &[f64], p: usize, m: usize, w: &mut [f64]) -> f64 {
    let mut last = 0.0;
    for _ in 0..2 {
        for i in 0..m {
            let q = &basis[i * p..(i + 1) * p];
            let c = dot(q, w);
            axpy(w, -c, q);
            if i + 1 == m {
                last += c;
            }
        }
    }
    last
}

/// The `k` extreme eigenvalues of the symmetric operator `op` by Lanczos with full
/// reorthogonalization, started from a seeded normal vector.
///
/// Each step applies `op` once and orthogonalizes the new vector against the whole Krylov basis;
/// after each step the Ritz values of the tridiagonal matrix `T` are computed and the run stops
/// once (after at least `min(2k + 1, max_iter)` steps) the wanted ones satisfy the residual
/// estimate `β_m |s_{m,i}| ≤ tol · |λ|_max`. If the
/// Krylov space becomes invariant before `k` values are found, it restarts with a random vector
/// orthogonal to the basis. The returned residuals are measured, not estimated. Errors if
/// `k = 0` or `k > P`, or if `tol` is not positive.
pub fn lanczos<H: HessianOp + ?Sized>(op: &mut H, opts: &LanczosOptions) -> Result<LanczosResult> {
    let p = op.dim();
    let k = opts.k;
    if k == 0 || k > p {
        return Err(invalid!("lanczos: k must be in 1..={p}, got {k}"));
    }
    if opts.tol.is_nan() || opts.tol <= 0.0 {
        return Err(invalid!("lanczos: tol must be positive, got {}", opts.tol));
    }
    let max_iter = opts.max_iter.clamp(k, p);
    // Never certify fewer than 2k + 1 steps: after an invariant subspace is hit, k Ritz values
    // from k steps would all be "converged" without the rest of the spectrum having been seen.
    let min_steps = (2 * k + 1).min(max_iter);
    let mut rng = Rng::new(opts.seed);
    let mut basis: Vec<f64> = Vec::with_capacity(max_iter * p);
    let mut w = vec![0.0; p];
    rng.fill_normal(&mut w);
    let nrm = dot(&w, &w).sqrt();
    basis.extend(w.iter().map(|v| v / nrm));
    let mut alpha: Vec<f64> = Vec::with_capacity(max_iter);
    let mut beta: Vec<f64> = Vec::with_capacity(max_iter);
    let mut ritz: (Vec<f64>, Dense);
    let mut wanted: Vec<usize>;
    let mut scale: f64;
    loop {
        let m = alpha.len() + 1;
        op.apply(&basis[(m - 1) * p..m * p], &mut w);
        let a = reorthogonalize(&basis, p, m, &mut w);
        alpha.push(a);
        let b = dot(&w, &w).sqrt();
        // Ritz values of T_m.
        let mut t = Dense::zeros(m, m);
        for i in 0..m {
            *t.at_mut(i, i) = alpha[i];
            if i + 1 < m {
                *t.at_mut(i, i + 1) = beta[i];
                *t.at_mut(i + 1, i) = beta[i];
            }
        }
        ritz = sym_eigen(&t)?;
        scale = ritz.0.iter().fold(0.0f64, |s, v| s.max(v.abs()));
        wanted = match opts.which {
            Which::Largest => (0..k.min(m)).map(|i| m - 1 - i).collect(),
            Which::Smallest => (0..k.min(m)).collect(),
        };
        let converged = m >= min_steps
            && wanted
                .iter()
                .all(|&i| b * ritz.1.at(m - 1, i).abs() <= opts.tol * scale.max(f64::MIN_POSITIVE));
        if converged || m >= max_iter {
            break;
        }
        if b <= 1e-12 * scale.max(f64::MIN_POSITIVE) {
            // Invariant subspace: restart with a random vector orthogonal to the basis.
            rng.fill_normal(&mut w);
            reorthogonalize(&basis, p, m, &mut w);
            let nw = dot(&w, &w).sqrt();
            beta.push(0.0);
            basis.extend(w.iter().map(|v| v / nw));
        } else {
            beta.push(b);
            basis.extend(w.iter().map(|v| v / b));
        }
    }
    let m = alpha.len();
    let mut values = Vec::with_capacity(k);
    let mut vectors = Vec::with_capacity(k);
    let mut residuals = Vec::with_capacity(k);
    for &i in &wanted {
        let lam = ritz.0[i];
        let mut y = vec![0.0; p];
        for r in 0..m {
            axpy(&mut y, ritz.1.at(r, i), &basis[r * p..(r + 1) * p]);
        }
        let ny = dot(&y, &y).sqrt();
        y.iter_mut().for_each(|v| *v /= ny);
        op.apply(&y, &mut w);
        axpy(&mut w, -lam, &y);
        residuals.push(dot(&w, &w).sqrt());
        values.push(lam);
        vectors.push(y);
    }
    let converged = values.len() == k && residuals.iter().all(|&r| r <= opts.tol * scale.max(f64::MIN_POSITIVE));
    Ok(LanczosResult {
        values,
        vectors,
        iterations: m,
        residuals,
        converged,
    })
}
