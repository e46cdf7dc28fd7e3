//! The exact population Hessian of a deep linear network, from the product structure.
//!
//! For a chain `f(x) = P x` with end-to-end product `P = W_{D−1} ⋯ W_0` (an [`Mlp`] with identity
//! activation and no biases), the loss depends on the data only through the second moments
//! `Σ_x = E[xxᵀ]` and `C = E[yxᵀ]`:
//!
//! `L(θ) = E‖Px − y‖² = Tr[P Σ_x Pᵀ] − 2 Tr[P Cᵀ] + E‖y‖²`.
//!
//! For Gaussian data `y = Vx + ε` (ε independent, zero mean) `C = V Σ_x`, so
//! `L = Tr[(P − V) Σ_x (P − V)ᵀ] + Tr Σ_ε`. With `A_l = W_{D−1} ⋯ W_{l+1}`, `B_l = W_{l−1} ⋯ W_0`
//! (so `P = A_l W_l B_l`) and `G = ∂L/∂P = 2(PΣ_x − C)`:
//!
//! * `∂L/∂W_l = A_lᵀ G B_lᵀ`;
//! * along a direction `(V_0, …, V_{D−1})`, `dP = Σ_l A_l V_l B_l`, `dG = 2 dP Σ_x`, and
//!   `(Hv)_{W_l} = A_lᵀ dG B_lᵀ + dA_lᵀ G B_lᵀ + A_lᵀ G dB_lᵀ`, with `dB_l`, `dA_l` the directional
//!   derivatives of the partial products (computed by forward and backward recursions).
//!
//! The same formula with the empirical moments `Σ_x = XᵀX/n`, `C = YᵀX/n` of a dataset gives that
//! dataset's Hessian exactly ([`data_moments`]).

use super::HessianOp;
use crate::core::data::{Gaussian, Target};
use crate::core::linalg::{gemm_nn, gemm_nt, gemm_tn, Dense};
use crate::core::models::{DenseChain, Model};
use crate::{invalid, Result};

/// The exact Hessian of `L(θ) = E‖Px − y‖²` (no ½, no weight decay) for a deep linear network,
/// given `Σ_x = E[xxᵀ]` and `C = E[yxᵀ]`, as an operator. Products cost `O(D · d³)` for widths
/// `d` and do not allocate.
#[derive(Clone, Debug)]
pub struct PopulationHessian {
    widths: Vec<usize>,
    w_off: Vec<usize>,
    theta: Vec<f64>,
    sigma: Vec<f64>,
    /// `B_l = W_{l−1}⋯W_0` (`d_l × d_0`), `l = 0..D` (`B_0 = I`).
    b: Vec<Vec<f64>>,
    /// `A_l = W_{D−1}⋯W_{l+1}` (`d_D × d_{l+1}`), `l = 0..D` (`A_{D−1} = I`).
    a: Vec<Vec<f64>>,
    /// `G = 2(PΣ_x − C)`, `d_D × d_0`.
    g: Vec<f64>,
    /// `G B_lᵀ`, `d_D × d_l`.
    gb: Vec<Vec<f64>>,
    db: Vec<Vec<f64>>,
    da: Vec<Vec<f64>>,
    dg: Vec<f64>,
    m1: Vec<f64>,
}

fn check_linear(model: &Model) -> Result<DenseChain> {
    model.loss_kind().mse_only("population Hessian")?;
    match model.as_linear_chain() {
        Some(m) => Ok(m),
        None => Err(invalid!(
            "population Hessian: needs a deep linear network (identity activation, no biases), got {}",
            model.describe()
        )),
    }
}

fn identity(n: usize) -> Vec<f64> {
    let mut m = vec![0.0; n * n];
    for i in 0..n {
        m[i * n + i] = 1.0;
    }
    m
}

impl PopulationHessian {
    /// The Hessian at θ of a deep linear network `model` for data with input second moment
    /// `x_moment = E[xxᵀ]` (`d_in × d_in`) and cross moment `cross_moment = E[yxᵀ]`
    /// (`d_out × d_in`). Errors for other models or mismatched shapes.
    pub fn new(model: &Model, theta: &[f64], x_moment: &Dense, cross_moment: &Dense) -> Result<Self> {
        let m = check_linear(model)?;
        let w = m.widths().to_vec();
        let d = m.depth();
        let (d0, dd) = (w[0], w[d]);
        if theta.len() != model.n_params() {
            return Err(invalid!(
                "population Hessian: θ has {} entries, the model has {}",
                theta.len(),
                model.n_params()
            ));
        }
        if x_moment.rows != d0 || x_moment.cols != d0 {
            return Err(invalid!(
                "population Hessian: Σ_x is {}×{}, expected {d0}×{d0}",
                x_moment.rows,
                x_moment.cols
            ));
        }
        if cross_moment.rows != dd || cross_moment.cols != d0 {
            return Err(invalid!(
                "population Hessian: E[yxᵀ] is {}×{}, expected {dd}×{d0}",
                cross_moment.rows,
                cross_moment.cols
            ));
        }
        let w_off: Vec<usize> = (0..d).map(|l| m.weight_offset(l)).collect();
        let wl = |l: usize| &theta[w_off[l]..w_off[l] + w[l] * w[l + 1]];
        let mut b = vec![identity(d0)];
        for l in 0..d - 1 {
            let mut next = vec![0.0; w[l + 1] * d0];
            gemm_nn(&mut next, wl(l), &b[l], w[l + 1], d0, w[l], false);
            b.push(next);
        }
        let mut p = vec![0.0; dd * d0];
        gemm_nn(&mut p, wl(d - 1), &b[d - 1], dd, d0, w[d - 1], false);
        let mut a = vec![Vec::new(); d];
        a[d - 1] = identity(dd);
        for l in (1..d).rev() {
            let mut next = vec![0.0; dd * w[l]];
            gemm_nn(&mut next, &a[l], wl(l), dd, w[l], w[l + 1], false);
            a[l - 1] = next;
        }
        let mut g = vec![0.0; dd * d0];
        gemm_nn(&mut g, &p, &x_moment.data, dd, d0, d0, false);
        for (gv, cv) in g.iter_mut().zip(&cross_moment.data) {
            *gv = 2.0 * (*gv - cv);
        }
        let gb = (0..d)
            .map(|l| {
                let mut out = vec![0.0; dd * w[l]];
                gemm_nt(&mut out, &g, &b[l], dd, w[l], d0, false);
                out
            })
            .collect();
        let maxw = *w.iter().max().unwrap();
        Ok(PopulationHessian {
            db: (0..=d).map(|l| vec![0.0; w[l] * d0]).collect(),
            da: (0..d).map(|l| vec![0.0; dd * w[l + 1]]).collect(),
            dg: vec![0.0; dd * d0],
            m1: vec![0.0; dd * maxw],
            widths: w,
            w_off,
            theta: theta.to_vec(),
            sigma: x_moment.data.clone(),
            b,
            a,
            g,
            gb,
        })
    }

    /// The population Hessian for a Gaussian source `y = y'(x) + ε`: `Σ_x` is the exact input
    /// second moment and `E[yxᵀ] = V Σ_x` for a linear teacher `V` (`Σ_x` for the identity
    /// target). The label noise does not enter the Hessian. Errors for non-linear teachers (their
    /// cross moment has no closed form) and for non-linear models.
    pub fn from_gaussian(model: &Model, theta: &[f64], dist: &Gaussian) -> Result<Self> {
        let sx = dist.x_second_moment();
        let c = match dist.target() {
            Target::Identity => sx.clone(),
            Target::Linear(v) => v.mul(&sx),
            Target::Tanh { .. } | Target::Model(_) => {
                return Err(invalid!(
                    "population Hessian: a non-linear teacher has no closed-form E[yxᵀ]; use a fixed-seed sample"
                ))
            }
        };
        Self::new(model, theta, &sx, &c)
    }
}

impl HessianOp for PopulationHessian {
    fn dim(&self) -> usize {
        self.theta.len()
    }

    fn apply(&mut self, v: &[f64], out: &mut [f64]) {
        let p = self.theta.len();
        assert!(
            v.len() == p && out.len() == p,
            "population Hessian: vectors must have length P = {p}"
        );
        let w = &self.widths;
        let d = w.len() - 1;
        let (d0, dd) = (w[0], w[d]);
        let off = &self.w_off;
        let theta = &self.theta;
        let blk = |l: usize| off[l]..off[l] + w[l] * w[l + 1];
        // dB_{l+1} = V_l B_l + W_l dB_l (dB_0 = 0); dP = dB_D.
        self.db[0].fill(0.0);
        for l in 0..d {
            let (lo, hi) = self.db.split_at_mut(l + 1);
            let next = &mut hi[0];
            gemm_nn(next, &v[blk(l)], &self.b[l], w[l + 1], d0, w[l], false);
            if l > 0 {
                gemm_nn(next, &theta[blk(l)], &lo[l], w[l + 1], d0, w[l], true);
            }
        }
        // dG = 2 dP Σ_x.
        gemm_nn(&mut self.dg, &self.db[d], &self.sigma, dd, d0, d0, false);
        self.dg.iter_mut().for_each(|x| *x *= 2.0);
        // dA_{l−1} = dA_l W_l + A_l V_l (dA_{D−1} = 0).
        self.da[d - 1].fill(0.0);
        for l in (1..d).rev() {
            let (lo, hi) = self.da.split_at_mut(l);
            let prev = &mut lo[l - 1];
            gemm_nn(prev, &self.a[l], &v[blk(l)], dd, w[l], w[l + 1], false);
            if l < d - 1 {
                gemm_nn(prev, &hi[0], &theta[blk(l)], dd, w[l], w[l + 1], true);
            }
        }
        for l in 0..d {
            let m1 = &mut self.m1[..dd * w[l]];
            // m1 = dG B_lᵀ + G dB_lᵀ.
            gemm_nt(m1, &self.dg, &self.b[l], dd, w[l], d0, false);
            if l > 0 {
                gemm_nt(m1, &self.g, &self.db[l], dd, w[l], d0, true);
            }
            let o = &mut out[blk(l)];
            gemm_tn(o, &self.a[l], m1, w[l + 1], w[l], dd, 1.0, false);
            if l + 1 < d {
                gemm_tn(o, &self.da[l], &self.gb[l], w[l + 1], w[l], dd, 1.0, true);
            }
        }
    }
}

/// The empirical moments `(Σ_x, C) = (XᵀX/n, YᵀX/n)` of `n` samples (`x`: `n × d_x`, `y`:
/// `n × d_y`, row-major): with them [`PopulationHessian::new`] is exactly the Hessian of the
/// dataset's mean loss.
pub fn data_moments(x: &[f64], y: &[f64], n: usize, d_x: usize, d_y: usize) -> Result<(Dense, Dense)> {
    if n == 0 || x.len() < n * d_x || y.len() < n * d_y {
        return Err(invalid!(
            "data_moments: need n ≥ 1 and {n}×{d_x} inputs, {n}×{d_y} targets"
        ));
    }
    let inv = 1.0 / n as f64;
    let mut sx = Dense::zeros(d_x, d_x);
    gemm_tn(&mut sx.data, &x[..n * d_x], &x[..n * d_x], d_x, d_x, n, inv, false);
    let mut c = Dense::zeros(d_y, d_x);
    gemm_tn(&mut c.data, &y[..n * d_y], &x[..n * d_x], d_y, d_x, n, inv, false);
    Ok((sx, c))
}
