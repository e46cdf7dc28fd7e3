//! The noise equilibrium of a whole double-rotation family at once: the matrix analogue of the
//! one-parameter solve, and the general form of Theorem 5.2.
//!
//! A family ([`MatrixFamily`]) has, for every symmetric `d × d` matrix `M`, the member whose
//! generator applies `M` to each "plus" vector of θ (the columns `w_j` of `W_l`, a head's query
//! rows, …) and `−M` to each "minus" vector (the rows of `W_{l+1}`, the head's key rows, …). Its
//! charge is linear in `M`: `C_M = Tr[M (Q − K)]` with `Q = Σ_plus v vᵀ`, `K = Σ_minus v vᵀ`, and so
//! is its noise term: `Tr[A_M Σ] = Tr[M (Γ₊ − Γ₋)]` with `Γ₊ = Σ_plus Cov(∇_v ℓ)`,
//! `Γ₋ = Σ_minus Cov(∇_v ℓ)` (the per-sample gradient covariance projected on each vector). The
//! Noether flow of every member at once is the matrix equation
//!
//! `dQ/dt − dK/dt = D = −4γ (Q − K) + (η/S)(Γ₊ − Γ₋)`,
//!
//! and the family is at its noise equilibrium when `D = 0` (with `γ = 0`: `Γ₊ = Γ₋`, the gradient
//! noise of the two sides balanced in every direction; for a two-layer linear net this is
//! Theorem 5.2's `W Γ̃_W Wᵀ = Uᵀ Γ̃_U U`, since `Γ₊ = Uᵀ(…)U` and `Γ₋ = W(…)Wᵀ` there).
//!
//! **On the orbit.** Moving along the family by `B = e^{M}` (plus vectors `v → Bv`, minus vectors
//! `v → B⁻¹v`) transforms `Q → BQB`, `K → B⁻¹KB⁻¹` and, since every per-sample gradient transforms
//! by `e^{−A}` (Lemma B.1), `Γ₊ → B⁻¹Γ₊B⁻¹`, `Γ₋ → BΓ₋B`. So `D(B) = 0` reads
//! `B X B = B⁻¹ Y B⁻¹` with `X = 4γQ + (η/S)Γ₋`, `Y = 4γK + (η/S)Γ₊`, i.e. `P X P = Y` for `P = B²`,
//! whose unique symmetric positive-definite solution is the matrix geometric mean
//! `P = X^{−1/2} (X^{1/2} Y X^{1/2})^{1/2} X^{−1/2}` (when `X` and `Y` are positive definite), and
//! `B = P^{1/2}`. Everything comes from statistics at θ alone; no iteration. In discrete time the
//! expected change per step gives the same form with `X = (4ηγ − 4η²γ²)Q + η²(G₋ + Γ₋/S)` and
//! `Y = (4ηγ − 4η²γ²)K + η²(G₊ + Γ₊/S)`, `G± = Σ ḡ_v ḡ_vᵀ` the mean-gradient terms (which transform
//! like `Γ±`).
//!
//! If `X` or `Y` is singular (no noise and no weight decay along some direction), the orbit has no
//! finite equilibrium in that direction and the solve reports it.

use super::orbit::{FlowParams, Time};
use crate::core::linalg::{sym_eigen, sym_fn, Dense};
use crate::core::models::Model;
use crate::core::symmetry::MatrixFamily;
use crate::{invalid, Error, Result};

/// The matrices of one family at θ (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct FamilyMoments {
    /// `Q = Σ_plus v vᵀ`.
    pub q: Dense,
    /// `K = Σ_minus v vᵀ`.
    pub k: Dense,
    /// `Γ₊ = Σ_plus Cov(∇_v ℓ)` (per-sample covariance over the samples, weight `1/n`).
    pub gamma_plus: Dense,
    /// `Γ₋ = Σ_minus Cov(∇_v ℓ)`.
    pub gamma_minus: Dense,
    /// `G₊ = Σ_plus ḡ_v ḡ_vᵀ` (mean gradients).
    pub mean_plus: Dense,
    /// `G₋ = Σ_minus ḡ_v ḡ_vᵀ`.
    pub mean_minus: Dense,
}

/// The noise equilibrium of one family (see the module docs).
#[derive(Clone, Debug)]
pub struct FamilyBalance {
    /// The family's name.
    pub name: String,
    /// The matrices at θ.
    pub moments: FamilyMoments,
    /// `X` and `Y` of the module docs (`B X B = B⁻¹ Y B⁻¹` at the equilibrium).
    pub x: Dense,
    /// See `x`.
    pub y: Dense,
    /// The matrix drift `D = Y − X` at θ (continuous: per unit time; discrete: expected change per
    /// step).
    pub drift: Dense,
    /// `‖D‖_F` relative to the size of its terms (`‖X‖_F + ‖Y‖_F` in the notation of the module
    /// docs): 0 at the equilibrium, at most about 1.
    pub residual: f64,
    /// `B = P^{1/2}`, the member that moves θ to the equilibrium of its orbit, if it exists.
    pub b: Option<Dense>,
    /// θ moved by `B` (plus vectors `Bv`, minus vectors `B⁻¹v`); the function and the loss are
    /// unchanged.
    pub theta_star: Option<Vec<f64>>,
    /// `‖B − I‖_F`: how far θ is from the equilibrium along the orbit (0 at it).
    pub distance: f64,
    /// Why there is no finite equilibrium, if there is none.
    pub note: Option<String>,
}

fn outer_acc(m: &mut Dense, v: &[f64], w: f64) {
    let d = m.rows;
    for i in 0..d {
        for j in 0..d {
            m.data[i * d + j] += w * v[i] * v[j];
        }
    }
}

/// The family's matrices at θ, from the per-sample gradients over `n` samples (one sample at a
/// time: memory is O(P), never `n × P`).
pub fn family_moments(
    model: &Model,
    fam: &MatrixFamily,
    theta: &[f64],
    x: &[f64],
    y: &[f64],
    n: usize,
) -> Result<FamilyMoments> {
    Ok(families_moments(model, std::slice::from_ref(fam), theta, x, y, n)?
        .pop()
        .expect("one family in, one out"))
}

/// [`family_moments`] of several families of the same model at once, in one pass over the
/// samples (one per-sample gradient per sample for all of them).
pub fn families_moments(
    model: &Model,
    fams: &[MatrixFamily],
    theta: &[f64],
    x: &[f64],
    y: &[f64],
    n: usize,
) -> Result<Vec<FamilyMoments>> {
    let p = model.n_params();
    for fam in fams {
        if theta.len() != p {
            return Err(invalid!(
                "{}: θ has {} entries, the model has {p}",
                fam.name,
                theta.len()
            ));
        }
        if n == 0 || x.len() < n * model.d_in() || y.len() < n * model.d_y() {
            return Err(invalid!("{}: need n ≥ 1 samples of the model's shapes", fam.name));
        }
    }
    /// One family's accumulators.
    struct Acc {
        q: Dense,
        k: Dense,
        sum: Vec<f64>,
        sq_plus: Dense,
        sq_minus: Dense,
        v: Vec<f64>,
    }
    let mut accs: Vec<Acc> = fams
        .iter()
        .map(|fam| {
            let d = fam.dim;
            let mut q = Dense::zeros(d, d);
            let mut k = Dense::zeros(d, d);
            let mut v = vec![0.0; d];
            for (vs, m) in [(&fam.plus, &mut q), (&fam.minus, &mut k)] {
                for idx in vs.iter() {
                    for (a, &i) in v.iter_mut().zip(idx) {
                        *a = theta[i];
                    }
                    outer_acc(m, &v, 1.0);
                }
            }
            Acc {
                q,
                k,
                sum: vec![0.0; (fam.plus.len() + fam.minus.len()) * d],
                sq_plus: Dense::zeros(d, d),
                sq_minus: Dense::zeros(d, d),
                v,
            }
        })
        .collect();
    let mut ws = model.workspace(1);
    let mut g = vec![0.0; p];
    let (dx, dy) = (model.d_in(), model.d_y());
    for s in 0..n {
        model.loss_grad(
            theta,
            &x[s * dx..(s + 1) * dx],
            &y[s * dy..(s + 1) * dy],
            1,
            &mut g,
            &mut ws,
        );
        for (fam, acc) in fams.iter().zip(accs.iter_mut()) {
            let (d, np) = (fam.dim, fam.plus.len());
            for (j, idx) in fam.plus.iter().chain(&fam.minus).enumerate() {
                for (a, &i) in acc.v.iter_mut().zip(idx) {
                    *a = g[i];
                }
                for (sv, a) in acc.sum[j * d..(j + 1) * d].iter_mut().zip(&acc.v) {
                    *sv += a;
                }
                outer_acc(if j < np { &mut acc.sq_plus } else { &mut acc.sq_minus }, &acc.v, 1.0);
            }
        }
    }
    let inv = 1.0 / n as f64;
    fams.iter()
        .zip(accs)
        .map(|(fam, acc)| {
            let (d, np, nm) = (fam.dim, fam.plus.len(), fam.minus.len());
            let mut mean_plus = Dense::zeros(d, d);
            let mut mean_minus = Dense::zeros(d, d);
            for j in 0..np + nm {
                let m: Vec<f64> = acc.sum[j * d..(j + 1) * d].iter().map(|s| s * inv).collect();
                outer_acc(if j < np { &mut mean_plus } else { &mut mean_minus }, &m, 1.0);
            }
            let gamma_plus = acc.sq_plus.scale(inv).add_scaled(-1.0, &mean_plus);
            let gamma_minus = acc.sq_minus.scale(inv).add_scaled(-1.0, &mean_minus);
            if [&gamma_plus, &gamma_minus, &acc.q, &acc.k]
                .iter()
                .any(|m| m.data.iter().any(|v| !v.is_finite()))
            {
                return Err(Error::Numerical(format!(
                    "{}: non-finite gradients or weights",
                    fam.name
                )));
            }
            Ok(FamilyMoments {
                q: acc.q,
                k: acc.k,
                gamma_plus: gamma_plus.sym(),
                gamma_minus: gamma_minus.sym(),
                mean_plus,
                mean_minus,
            })
        })
        .collect()
}

/// `(X, Y)` of the module docs: the equilibrium is `B X B = B⁻¹ Y B⁻¹`, the drift `Y − X` at `B = I`
/// (continuous) or its discrete-time counterpart.
fn x_y(m: &FamilyMoments, params: &FlowParams) -> (Dense, Dense) {
    let (eta, s, gamma) = (params.eta, params.batch as f64, params.gamma);
    match params.time {
        Time::Continuous => (
            m.q.scale(4.0 * gamma).add_scaled(eta / s, &m.gamma_minus),
            m.k.scale(4.0 * gamma).add_scaled(eta / s, &m.gamma_plus),
        ),
        Time::Discrete => {
            let f = params.mean_weight;
            let c = 4.0 * eta * gamma - 4.0 * eta * eta * gamma * gamma * f;
            let e2 = eta * eta;
            (
                m.q.scale(c)
                    .add_scaled(e2 * f, &m.mean_minus)
                    .add_scaled(e2 / s, &m.gamma_minus),
                m.k.scale(c)
                    .add_scaled(e2 * f, &m.mean_plus)
                    .add_scaled(e2 / s, &m.gamma_plus),
            )
        }
    }
}

/// Moves θ along the family by `b`: plus vectors `v → b v`, minus vectors `v → b⁻¹ v`.
pub fn apply_family(fam: &MatrixFamily, theta: &[f64], b: &Dense) -> Result<Vec<f64>> {
    let binv = sym_fn(b, |l| 1.0 / l)?;
    let mut out = theta.to_vec();
    let d = fam.dim;
    let mut v = vec![0.0; d];
    for (vs, m) in [(&fam.plus, b), (&fam.minus, &binv)] {
        for idx in vs.iter() {
            for (a, &i) in v.iter_mut().zip(idx) {
                *a = theta[i];
            }
            for (r, &i) in idx.iter().enumerate() {
                out[i] = (0..d).map(|c| m.at(r, c) * v[c]).sum();
            }
        }
    }
    Ok(out)
}

/// The noise equilibrium of the family `fam` of `model` on θ's orbit, from the `n` samples
/// (see the module docs): the drift and its relative size at θ, and the member `B` that moves θ
/// to the equilibrium, with the moved θ.
pub fn family_balance(
    model: &Model,
    fam: &MatrixFamily,
    theta: &[f64],
    x: &[f64],
    y: &[f64],
    n: usize,
    params: &FlowParams,
) -> Result<FamilyBalance> {
    params.validate()?;
    let m = family_moments(model, fam, theta, x, y, n)?;
    let (xm, ym) = x_y(&m, params);
    let drift = ym.add_scaled(-1.0, &xm);
    let scale = xm.frob2().sqrt() + ym.frob2().sqrt();
    let residual = if scale > 0.0 { drift.frob2().sqrt() / scale } else { 0.0 };
    let mut note = None;
    let mut b = None;
    let (ex, _) = sym_eigen(&xm)?;
    let (ey, _) = sym_eigen(&ym)?;
    let tol = 1e-12 * scale.max(f64::MIN_POSITIVE);
    if ex.iter().chain(&ey).any(|&l| l <= tol) {
        note = Some(
            "X or Y is singular: along some direction one side has neither gradient noise nor weight decay, so the orbit has no finite equilibrium there"
                .to_string(),
        );
    } else {
        let xh = sym_fn(&xm, |l| l.sqrt())?;
        let xih = sym_fn(&xm, |l| 1.0 / l.sqrt())?;
        let mid = sym_fn(&xh.mul(&ym).mul(&xh).sym(), |l| l.max(0.0).sqrt())?;
        let p = xih.mul(&mid).mul(&xih).sym();
        b = Some(sym_fn(&p, |l| l.max(0.0).sqrt())?);
    }
    let theta_star = match &b {
        Some(bm) => Some(apply_family(fam, theta, bm)?),
        None => None,
    };
    let distance = b.as_ref().map_or(f64::INFINITY, |bm| {
        bm.add_scaled(-1.0, &Dense::eye(fam.dim)).frob2().sqrt()
    });
    Ok(FamilyBalance {
        name: fam.name.clone(),
        moments: m,
        x: xm,
        y: ym,
        drift,
        residual,
        b,
        theta_star,
        distance,
        note,
    })
}
