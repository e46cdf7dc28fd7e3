//! The matrix (double-rotation) noise equilibrium of a two-layer linear net `f(x) = UWx`
//! (book `theory/closed-forms.md#two-layer-linear`, `theory/constants.md#two-layer-linear-net`, `theory/closed-forms.md#two-layer-recipe`).
//!
//! Notation: `U ∈ ℝ^{d_y×h}` is `layers.1.weight`, `W ∈ ℝ^{h×d_x}` is `layers.0.weight`, the product
//! `V = UW`, the residual `r = Vx − y`, `M = E[r xᵀ]`, `Γ'_W = E[‖r‖² xxᵀ]`, `Γ'_U = E[‖x‖² rrᵀ]`.
//! With the loss `ℓ = ‖UWx − y‖²` (no ½), batch size S, learning rate η and weight decay `γ‖θ‖²`,
//! the matrix charge obeys (book `theory/constants.md#two-layer-linear-net`)
//! `d/dt (UᵀU − WWᵀ) = −4γ(UᵀU − WWᵀ) + (4η/S)[W(Γ'_W − MᵀM)Wᵀ − Uᵀ(Γ'_U − MMᵀ)U]`,
//! so the equilibrium of every double rotation at once is `W Γ̃_W Wᵀ = Uᵀ Γ̃_U U` with
//! `Γ̃_W = Γ'_W − MᵀM + (γS/η)I` and `Γ̃_U = Γ'_U − MMᵀ + (γS/η)I`. These depend on θ only through
//! `V`, so they are constant on the orbit `(UG⁻¹, GW)`, and the equilibrium has the closed form
//! `V' = Γ̃_U^{1/2} V Γ̃_W^{1/2} = L diag(s) Rᵀ`, `U* = Γ̃_U^{−1/2} L diag(√s) F`,
//! `W* = Fᵀ diag(√s) Rᵀ Γ̃_W^{−1/2}` for any `F` with orthonormal rows (`r × h`, `r = min(d_x, d_y, h)`).
//! Here `F` is chosen to bring `(U*, W*)` as close as possible to the current `(U, W)` in Frobenius
//! norm (an orthogonal Procrustes problem); the norms, spectra and sharpness are F-invariant.
//!
//! For Gaussian data `x ~ N(0, Σ_x)`, `y = V_true x + ε`, `ε ~ N(0, Σ_ε)` independent, with
//! `D = V − V_true`, Isserlis' theorem gives exactly
//! `M = DΣ_x`, `Γ'_W = (Tr[DΣ_xDᵀ] + Tr Σ_ε) Σ_x + 2 Σ_x DᵀD Σ_x`,
//! `Γ'_U = Tr Σ_x (DΣ_xDᵀ + Σ_ε) + 2 D Σ_x² Dᵀ` ([`TwoLayerGammas::gaussian`]).
//!
//! **Sharpness convention:** [`sharpness_paper`] is the paper's `S(θ) = d_y Tr[WΣ_xWᵀ] + ‖U‖_F² Tr Σ_x`
//! (Prop. 5.3), which is *half* the Hessian trace of `E‖UWx − y‖²`
//! (book `theory/constants.md#sharpness-convention`).

use crate::core::data::{Gaussian, Target};
use crate::core::linalg::{gemm_tn, svd, sym_eigen, Dense};
use crate::core::models::{Activation, DenseChain};
use crate::{invalid, Error, Result};
use serde::Serialize;

/// The orbit-invariant second moments of a two-layer linear net at a product `V`.
#[derive(Clone, Debug, PartialEq)]
pub struct TwoLayerGammas {
    /// `Γ'_W = E[‖r‖² xxᵀ]`, `d_x × d_x`.
    pub gamma_w: Dense,
    /// `Γ'_U = E[‖x‖² rrᵀ]`, `d_y × d_y`.
    pub gamma_u: Dense,
    /// `M = E[r xᵀ]`, `d_y × d_x` (zero at a critical point of L).
    pub m: Dense,
    /// `Σ_x = E[xxᵀ]` (for the sharpness).
    pub sigma_x: Dense,
}

impl TwoLayerGammas {
    /// Exact values for Gaussian data with the teacher `v_true` (see the module docs).
    pub fn gaussian(v: &Dense, v_true: &Dense, sigma_x: &Dense, sigma_eps: &Dense) -> Result<Self> {
        let (dy, dx) = (v.rows, v.cols);
        if v_true.rows != dy
            || v_true.cols != dx
            || sigma_x.rows != dx
            || sigma_x.cols != dx
            || sigma_eps.rows != dy
            || sigma_eps.cols != dy
        {
            return Err(invalid!(
                "two-layer Γ: shapes do not match (V {dy}×{dx}, V_true {}×{}, Σ_x {}×{}, Σ_ε {}×{})",
                v_true.rows,
                v_true.cols,
                sigma_x.rows,
                sigma_x.cols,
                sigma_eps.rows,
                sigma_eps.cols
            ));
        }
        let d = v.add_scaled(-1.0, v_true);
        let dsx = d.mul(sigma_x);
        let dsxdt = dsx.mul(&d.t());
        let tr_e = sigma_eps.trace();
        let tr_x = sigma_x.trace();
        let gamma_w = sigma_x
            .scale(dsxdt.trace() + tr_e)
            .add_scaled(2.0, &sigma_x.mul(&d.t()).mul(&dsx));
        let gamma_u = dsxdt
            .add_scaled(1.0, sigma_eps)
            .scale(tr_x)
            .add_scaled(2.0, &dsx.mul(&dsx.t()));
        Ok(TwoLayerGammas {
            gamma_w,
            gamma_u,
            m: dsx,
            sigma_x: sigma_x.clone(),
        })
    }

    /// Exact values for a [`Gaussian`] source with a linear (or identity) teacher.
    pub fn from_distribution(v: &Dense, dist: &Gaussian) -> Result<Self> {
        let v_true = match dist.target() {
            Target::Identity => Dense::eye(dist.d_x()),
            Target::Linear(m) => m.clone(),
            Target::Tanh { .. } | Target::Model(_) => {
                return Err(invalid!(
                    "two-layer Γ: exact moments need a linear teacher, the source has a non-linear teacher"
                ))
            }
        };
        Self::gaussian(v, &v_true, &dist.x_second_moment(), &dist.noise_second_moment())
    }

    /// Sample averages over the `n` samples `(x, y)` (`n × d_x`, `n × d_y`, weight `1/n`).
    pub fn empirical(v: &Dense, x: &[f64], y: &[f64], n: usize) -> Result<Self> {
        let (dy, dx) = (v.rows, v.cols);
        if n == 0 || x.len() < n * dx || y.len() < n * dy {
            return Err(invalid!(
                "two-layer Γ: {n} samples need {}×{dx} inputs and {}×{dy} targets",
                n,
                n
            ));
        }
        if x[..n * dx].iter().chain(&y[..n * dy]).any(|e| !e.is_finite()) {
            return Err(invalid!("two-layer Γ: data contain non-finite values"));
        }
        let mut r = vec![0.0; n * dy];
        for i in 0..n {
            let xi = &x[i * dx..(i + 1) * dx];
            for k in 0..dy {
                r[i * dy + k] = v.data[k * dx..(k + 1) * dx]
                    .iter()
                    .zip(xi)
                    .map(|(a, b)| a * b)
                    .sum::<f64>()
                    - y[i * dy + k];
            }
        }
        let mut xs = vec![0.0; n * dx];
        let mut rs = vec![0.0; n * dy];
        for i in 0..n {
            let rn = r[i * dy..(i + 1) * dy].iter().map(|e| e * e).sum::<f64>().sqrt();
            let xn = x[i * dx..(i + 1) * dx].iter().map(|e| e * e).sum::<f64>().sqrt();
            for j in 0..dx {
                xs[i * dx + j] = rn * x[i * dx + j];
            }
            for k in 0..dy {
                rs[i * dy + k] = xn * r[i * dy + k];
            }
        }
        let inv = 1.0 / n as f64;
        let mut gamma_w = Dense::zeros(dx, dx);
        gemm_tn(&mut gamma_w.data, &xs, &xs, dx, dx, n, inv, false);
        let mut gamma_u = Dense::zeros(dy, dy);
        gemm_tn(&mut gamma_u.data, &rs, &rs, dy, dy, n, inv, false);
        let mut m = Dense::zeros(dy, dx);
        gemm_tn(&mut m.data, &r, &x[..n * dx], dy, dx, n, inv, false);
        let mut sigma_x = Dense::zeros(dx, dx);
        gemm_tn(&mut sigma_x.data, &x[..n * dx], &x[..n * dx], dx, dx, n, inv, false);
        Ok(TwoLayerGammas {
            gamma_w,
            gamma_u,
            m,
            sigma_x,
        })
    }

    /// `(Γ̃_W, Γ̃_U) = (Γ'_W − MᵀM + (γS/η)I, Γ'_U − MMᵀ + (γS/η)I)`. Needs η > 0.
    pub fn tilde(&self, eta: f64, batch: usize, gamma: f64) -> Result<(Dense, Dense)> {
        if !(eta.is_finite() && eta > 0.0) || batch == 0 || !(gamma.is_finite() && gamma >= 0.0) {
            return Err(invalid!(
                "two-layer equilibrium: need η > 0, S ≥ 1, γ ≥ 0 (got η = {eta}, S = {batch}, γ = {gamma})"
            ));
        }
        let shift = gamma * batch as f64 / eta;
        let dx = self.gamma_w.rows;
        let dy = self.gamma_u.rows;
        let gw = self
            .gamma_w
            .add_scaled(-1.0, &self.m.t().mul(&self.m))
            .add_scaled(shift, &Dense::eye(dx))
            .sym();
        let gu = self
            .gamma_u
            .add_scaled(-1.0, &self.m.mul(&self.m.t()))
            .add_scaled(shift, &Dense::eye(dy))
            .sym();
        Ok((gw, gu))
    }
}

/// `(U, W)` = (`layers.1.weight`, `layers.0.weight`) of a two-layer linear net without biases.
pub fn two_layer_factors(mlp: &DenseChain, theta: &[f64]) -> Result<(Dense, Dense)> {
    mlp.loss().mse_only("the two-layer linear equilibrium (Theorem 5.2)")?;
    if mlp.depth() != 2 || mlp.activation() != Activation::Identity || mlp.has_bias() {
        return Err(invalid!(
            "two-layer equilibrium: needs a two-layer linear net without biases, got {}",
            mlp.describe()
        ));
    }
    if theta.len() != mlp.n_params() {
        return Err(invalid!(
            "θ has {} entries, the model has {}",
            theta.len(),
            mlp.n_params()
        ));
    }
    let w = mlp.widths();
    let (dx, h, dy) = (w[0], w[1], w[2]);
    let wo = mlp.weight_offset(0);
    let uo = mlp.weight_offset(1);
    Ok((
        Dense::from_slice(dy, h, &theta[uo..uo + dy * h]),
        Dense::from_slice(h, dx, &theta[wo..wo + h * dx]),
    ))
}

/// The flat θ of a two-layer linear net with factors `(U, W)`.
pub fn two_layer_theta(mlp: &DenseChain, u: &Dense, w: &Dense) -> Vec<f64> {
    let mut theta = vec![0.0; mlp.n_params()];
    let wo = mlp.weight_offset(0);
    let uo = mlp.weight_offset(1);
    theta[wo..wo + w.data.len()].copy_from_slice(&w.data);
    theta[uo..uo + u.data.len()].copy_from_slice(&u.data);
    theta
}

/// The paper's sharpness `S = d_y Tr[WΣ_xWᵀ] + ‖U‖_F² Tr Σ_x` (half the true Hessian trace).
pub fn sharpness_paper(u: &Dense, w: &Dense, sigma_x: &Dense) -> f64 {
    u.rows as f64 * w.mul(sigma_x).mul(&w.t()).trace() + u.frob2() * sigma_x.trace()
}

/// The alignment residual `‖WΓ̃_WWᵀ − UᵀΓ̃_UU‖_F / ‖WΓ̃_WWᵀ‖_F` (0 at the equilibrium).
pub fn alignment_residual(u: &Dense, w: &Dense, gw: &Dense, gu: &Dense) -> f64 {
    let a = w.mul(gw).mul(&w.t());
    let b = u.t().mul(gu).mul(u);
    a.add_scaled(-1.0, &b).frob2().sqrt() / a.frob2().sqrt().max(f64::MIN_POSITIVE)
}

/// The two-layer equilibrium on the current orbit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TwoLayerEquilibrium {
    /// `U*`, row-major `d_y × h`.
    pub u_star: Vec<f64>,
    /// `W*`, row-major `h × d_x`.
    pub w_star: Vec<f64>,
    /// θ* for the same model (same product `U*W* = UW`).
    pub theta_star: Vec<f64>,
    /// `‖U‖_F²` now.
    pub u_norm2: f64,
    /// `‖W‖_F²` now.
    pub w_norm2: f64,
    /// Predicted `‖U*‖_F²`.
    pub u_star_norm2: f64,
    /// Predicted `‖W*‖_F²`.
    pub w_star_norm2: f64,
    /// Singular values `s` of `V'` (the spectrum of both `W*Γ̃_WW*ᵀ` and `U*ᵀΓ̃_UU*`).
    pub spectrum: Vec<f64>,
    /// Alignment residual now.
    pub residual: f64,
    /// Alignment residual at θ* (≈ 1e-15).
    pub residual_star: f64,
    /// Paper-convention sharpness now.
    pub sharpness: f64,
    /// Paper-convention sharpness at θ*.
    pub sharpness_star: f64,
    /// `‖U* − U‖_F² + ‖W* − W‖_F²` (minimised over the free orthogonal factor F).
    pub distance2: f64,
}

fn spd_powers(a: &Dense, what: &str) -> Result<(Dense, Dense)> {
    let (vals, v) = sym_eigen(a)?;
    let mx = vals.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    if let Some(bad) = vals.iter().find(|&&l| l.is_nan() || l <= 1e-14 * mx || !l.is_finite()) {
        return Err(Error::Numerical(format!(
            "{what} is not positive definite (eigenvalue {bad:e}); no gradient noise in some direction and no weight decay"
        )));
    }
    let f = |g: &dyn Fn(f64) -> f64| {
        let mut vf = v.clone();
        for i in 0..v.rows {
            for (j, &l) in vals.iter().enumerate() {
                *vf.at_mut(i, j) *= g(l);
            }
        }
        vf.mul(&v.t())
    };
    Ok((f(&|l| l.sqrt()), f(&|l| 1.0 / l.sqrt())))
}

/// The closed-form equilibrium of all double rotations of `(U, W)` given the moments `g`,
/// learning rate η, batch size S and weight decay γ (see the module docs).
pub fn two_layer_equilibrium(
    mlp: &DenseChain,
    theta: &[f64],
    g: &TwoLayerGammas,
    eta: f64,
    batch: usize,
    gamma: f64,
) -> Result<TwoLayerEquilibrium> {
    let (u, w) = two_layer_factors(mlp, theta)?;
    let (dy, h, dx) = (u.rows, u.cols, w.cols);
    if g.gamma_w.rows != dx || g.gamma_u.rows != dy {
        return Err(invalid!(
            "two-layer equilibrium: moments are for d_x = {}, d_y = {}, the net has {dx}, {dy}",
            g.gamma_w.rows,
            g.gamma_u.rows
        ));
    }
    let (gw, gu) = g.tilde(eta, batch, gamma)?;
    let (gw_h, gw_ih) = spd_powers(&gw, "Γ̃_W")?;
    let (gu_h, gu_ih) = spd_powers(&gu, "Γ̃_U")?;
    let v = u.mul(&w);
    let vp = gu_h.mul(&v).mul(&gw_h);
    let (l, s, r) = svd(&vp)?;
    let k = s.len().min(h);
    // P = Γ̃_U^{−1/2} L diag(√s) (d_y × k), Q = diag(√s) Rᵀ Γ̃_W^{−1/2} (k × d_x).
    let mut lk = Dense::zeros(dy, k);
    let mut rk = Dense::zeros(k, dx);
    for i in 0..k {
        let rs = s[i].sqrt();
        for a in 0..dy {
            *lk.at_mut(a, i) = l.at(a, i) * rs;
        }
        for b in 0..dx {
            *rk.at_mut(i, b) = r.at(b, i) * rs;
        }
    }
    let pm = gu_ih.mul(&lk);
    let qm = rk.mul(&gw_ih);
    // F (k × h) maximising Tr[F (W Qᵀ + Uᵀ P)].
    let kmat = w.mul(&qm.t()).add_scaled(1.0, &u.t().mul(&pm));
    let (a, _, b) = svd(&kmat)?;
    let f = b.mul(&a.t());
    let u_star = pm.mul(&f);
    let w_star = f.t().mul(&qm);
    let theta_star = two_layer_theta(mlp, &u_star, &w_star);
    Ok(TwoLayerEquilibrium {
        u_norm2: u.frob2(),
        w_norm2: w.frob2(),
        u_star_norm2: u_star.frob2(),
        w_star_norm2: w_star.frob2(),
        spectrum: s[..k].to_vec(),
        residual: alignment_residual(&u, &w, &gw, &gu),
        residual_star: alignment_residual(&u_star, &w_star, &gw, &gu),
        sharpness: sharpness_paper(&u, &w, &g.sigma_x),
        sharpness_star: sharpness_paper(&u_star, &w_star, &g.sigma_x),
        distance2: u_star.add_scaled(-1.0, &u).frob2() + w_star.add_scaled(-1.0, &w).frob2(),
        u_star: u_star.data,
        w_star: w_star.data,
        theta_star,
    })
}

/// [`two_layer_equilibrium`] with the exact moments of a Gaussian source (linear teacher).
pub fn two_layer_equilibrium_gaussian(
    mlp: &DenseChain,
    theta: &[f64],
    dist: &Gaussian,
    eta: f64,
    batch: usize,
    gamma: f64,
) -> Result<TwoLayerEquilibrium> {
    let (u, w) = two_layer_factors(mlp, theta)?;
    let g = TwoLayerGammas::from_distribution(&u.mul(&w), dist)?;
    two_layer_equilibrium(mlp, theta, &g, eta, batch, gamma)
}

/// [`two_layer_equilibrium`] with sample averages over a data set.
#[allow(clippy::too_many_arguments)]
pub fn two_layer_equilibrium_empirical(
    mlp: &DenseChain,
    theta: &[f64],
    x: &[f64],
    y: &[f64],
    n: usize,
    eta: f64,
    batch: usize,
    gamma: f64,
) -> Result<TwoLayerEquilibrium> {
    let (u, w) = two_layer_factors(mlp, theta)?;
    let g = TwoLayerGammas::empirical(&u.mul(&w), x, y, n)?;
    two_layer_equilibrium(mlp, theta, &g, eta, batch, gamma)
}
