//! Deep linear nets at the global minimum: the corrected Theorem 5.4 (book `theory/closed-forms.md#deep-linear`, `theory/closed-forms.md#deep-linear`).
//!
//! For `f(x) = W_D ⋯ W_1 x` at a global minimum `W_D⋯W_1 = V` of data `y = Vx + ε` (ε independent
//! of x, no weight decay), with trace-normalised second moments `Σ̄ = Σ / Tr Σ`:
//! `V' = Σ̄_ε^{1/2} V Σ̄_x^{1/2} = L diag(s) Rᵀ`, `d = rank V'`, `T = Σ s_i`, `c = T^{1/D}`,
//! `Σ_1 = Σ_D = T^{−(D−2)/(2D)} diag(√s)`, and
//! `W_1 = U_1 Σ_1 Rᵀ Σ̄_x^{−1/2}`, `W_i = c U_i U_{i−1}ᵀ` (1 < i < D), `W_D = Σ̄_ε^{−1/2} L Σ_D U_{D−1}ᵀ`,
//! with `U_i ∈ ℝ^{h_i × d}`, `U_iᵀU_i = I` (here the first d coordinate vectors). This satisfies
//! every pair's equilibrium (Eq. 122) for any covariance scale; the paper's printed version
//! does so only when `Tr Σ_x = Tr Σ_ε = d`. Predicted norms: `‖W_i‖² = d c²` in the middle,
//! `‖W_1‖² = Tr[Σ_1 Rᵀ Σ̄_x^{−1} R Σ_1]`, `‖W_D‖² = Tr[Σ_D Lᵀ Σ̄_ε^{−1} L Σ_D]`.

use crate::core::linalg::{svd, sym_fn, Dense};
use crate::{invalid, Result};
use serde::Serialize;

/// The corrected Theorem 5.4 equilibrium.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeepLinearEquilibrium {
    /// Widths `[d_x, h_1, …, h_{D−1}, d_y]`.
    pub widths: Vec<usize>,
    /// The layers `W_1 … W_D`, each row-major `h_i × h_{i−1}` (`layers.{i−1}.weight`).
    pub layers: Vec<Vec<f64>>,
    /// θ for an MLP with these widths, identity activation and no biases.
    pub theta: Vec<f64>,
    /// `‖W_i‖_F²` of the constructed layers.
    pub norms2: Vec<f64>,
    /// The same from the closed-form expressions (module docs).
    pub predicted_norms2: Vec<f64>,
    /// Singular values of `V'` (the first `rank` are used).
    pub spectrum: Vec<f64>,
    /// `d = rank V'`.
    pub rank: usize,
    /// `c = (Σ s)^{1/D}`, the singular value of the middle layers.
    pub c: f64,
}

fn normalized(a: &Dense, what: &str) -> Result<Dense> {
    let t = a.trace();
    if !(t > 0.0 && t.is_finite()) {
        return Err(invalid!("{what}: trace must be positive, got {t}"));
    }
    Ok(a.scale(1.0 / t))
}

fn spd_fn(a: &Dense, f: impl Fn(f64) -> f64, what: &str) -> Result<Dense> {
    let (vals, _) = crate::core::linalg::sym_eigen(a)?;
    if vals.iter().any(|&l| l.is_nan() || l <= 0.0) {
        return Err(invalid!("{what} must be positive definite"));
    }
    sym_fn(a, f)
}

/// The corrected Theorem 5.4 equilibrium for widths `[d_x, h_1, …, d_y]` (depth D ≥ 2), product
/// `v` (`d_y × d_x`), and second moments `sigma_x`, `sigma_eps` (positive definite).
pub fn deep_linear_equilibrium(
    widths: &[usize],
    v: &Dense,
    sigma_x: &Dense,
    sigma_eps: &Dense,
) -> Result<DeepLinearEquilibrium> {
    if widths.len() < 3 {
        return Err(invalid!(
            "deep linear equilibrium: needs depth ≥ 2, got widths {widths:?}"
        ));
    }
    let depth = widths.len() - 1;
    let (dx, dy) = (widths[0], widths[depth]);
    if v.rows != dy || v.cols != dx || sigma_x.rows != dx || sigma_eps.rows != dy {
        return Err(invalid!(
            "deep linear equilibrium: V is {}×{}, Σ_x {}×{}, Σ_ε {}×{}, widths {widths:?}",
            v.rows,
            v.cols,
            sigma_x.rows,
            sigma_x.cols,
            sigma_eps.rows,
            sigma_eps.cols
        ));
    }
    let sx = normalized(sigma_x, "Σ_x")?;
    let se = normalized(sigma_eps, "Σ_ε")?;
    let sx_h = spd_fn(&sx, f64::sqrt, "Σ_x")?;
    let sx_ih = spd_fn(&sx, |l| 1.0 / l.sqrt(), "Σ_x")?;
    let se_h = spd_fn(&se, f64::sqrt, "Σ_ε")?;
    let se_ih = spd_fn(&se, |l| 1.0 / l.sqrt(), "Σ_ε")?;
    let vp = se_h.mul(v).mul(&sx_h);
    let (l, s, r) = svd(&vp)?;
    let smax = s.first().copied().unwrap_or(0.0);
    let d = s.iter().filter(|&&x| x > 1e-12 * smax && x > 0.0).count();
    if d == 0 {
        return Err(invalid!(
            "deep linear equilibrium: V = 0 has no non-trivial equilibrium"
        ));
    }
    if let Some(i) = (1..depth).find(|&i| widths[i] < d) {
        return Err(invalid!(
            "deep linear equilibrium: hidden width h_{i} = {} is below rank V' = {d}",
            widths[i]
        ));
    }
    let t: f64 = s[..d].iter().sum();
    let dd = depth as f64;
    let c = t.powf(1.0 / dd);
    let e = t.powf(-(dd - 2.0) / (2.0 * dd));
    let sig1: Vec<f64> = s[..d].iter().map(|x| e * x.sqrt()).collect();
    // U_i = first d coordinate vectors of ℝ^{h_i}.
    let embed = |h: usize| {
        let mut m = Dense::zeros(h, d);
        for j in 0..d {
            *m.at_mut(j, j) = 1.0;
        }
        m
    };
    // Σ_1 Rᵀ: d × d_x; L Σ_D: d_y × d.
    let mut s1rt = Dense::zeros(d, dx);
    let mut lsd = Dense::zeros(dy, d);
    for j in 0..d {
        for b in 0..dx {
            *s1rt.at_mut(j, b) = sig1[j] * r.at(b, j);
        }
        for a in 0..dy {
            *lsd.at_mut(a, j) = l.at(a, j) * sig1[j];
        }
    }
    let mut layers = vec![];
    layers.push(embed(widths[1]).mul(&s1rt).mul(&sx_ih));
    for i in 2..depth {
        layers.push(embed(widths[i]).mul(&embed(widths[i - 1]).t()).scale(c));
    }
    layers.push(se_ih.mul(&lsd).mul(&embed(widths[depth - 1]).t()));
    let norms2: Vec<f64> = layers.iter().map(|m| m.frob2()).collect();
    let sxi = spd_fn(&sx, |l| 1.0 / l, "Σ_x")?;
    let sei = spd_fn(&se, |l| 1.0 / l, "Σ_ε")?;
    let n1 = s1rt.mul(&sxi).mul(&s1rt.t()).trace();
    let nd = lsd.t().mul(&sei).mul(&lsd).trace();
    let mut predicted = vec![n1];
    predicted.extend(std::iter::repeat_n(d as f64 * c * c, depth - 2));
    predicted.push(nd);
    let theta = layers.iter().flat_map(|m| m.data.iter().copied()).collect();
    Ok(DeepLinearEquilibrium {
        widths: widths.to_vec(),
        layers: layers.into_iter().map(|m| m.data).collect(),
        theta,
        norms2,
        predicted_norms2: predicted,
        spectrum: s,
        rank: d,
        c,
    })
}

/// The relative residual of each neighbouring pair's equilibrium at the global minimum (Eq. 122):
/// `‖W_{i+1}ᵀ P̄ W_{i+1} − W_i Q̄ W_iᵀ‖_F / max(‖·‖, ‖·‖)` with `P̄ = PᵀΣ_εP / Tr(PᵀΣ_εP)`,
/// `P = W_D⋯W_{i+2}`, `Q̄ = QΣ_xQᵀ / Tr(QΣ_xQᵀ)`, `Q = W_{i−1}⋯W_1`. `layers[i]` is `W_{i+1}` as a
/// dense matrix.
pub fn deep_linear_residuals(layers: &[Dense], sigma_x: &Dense, sigma_eps: &Dense) -> Result<Vec<f64>> {
    let dd = layers.len();
    if dd < 2 {
        return Err(invalid!("deep linear residuals: need at least two layers"));
    }
    let mut out = vec![];
    for i in 0..dd - 1 {
        // Pair (W_i, W_{i+1}) in 0-based layer indices i, i+1.
        let mut p = Dense::eye(layers[dd - 1].rows);
        for j in (i + 2..dd).rev() {
            p = p.mul(&layers[j]);
        }
        let mut q = Dense::eye(layers[0].cols);
        for j in 0..i {
            q = layers[j].mul(&q);
        }
        let pp = p.t().mul(sigma_eps).mul(&p);
        let qq = q.mul(sigma_x).mul(&q.t());
        let pp = pp.scale(1.0 / pp.trace());
        let qq = qq.scale(1.0 / qq.trace());
        let lhs = layers[i + 1].t().mul(&pp).mul(&layers[i + 1]);
        let rhs = layers[i].mul(&qq).mul(&layers[i].t());
        let den = lhs.frob2().sqrt().max(rhs.frob2().sqrt()).max(f64::MIN_POSITIVE);
        out.push(lhs.add_scaled(-1.0, &rhs).frob2().sqrt() / den);
    }
    Ok(out)
}
