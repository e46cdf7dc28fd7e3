//! Joint noise equilibrium of a family of commuting diagonal symmetries (all the neuron
//! rescalings of a net at once), from one pass of per-parameter statistics (book `theory/equilibrium.md#solving`).
//!
//! With `Λ = (λ_k)` and `z_p = Σ_k λ_k a_{k,p}`, the point `θ_Λ = e^{Σ λ_k A_k}θ` has per-sample
//! gradients `e^{−Σλ_kA_k}∇ℓ`, so the flow of charge k at `θ_Λ` is
//! `G_k(Λ) = Σ_p a_{k,p} [ν_p e^{−2z_p} − b c_p e^{2z_p}]` with the per-parameter `ν_p`, `c_p = θ_p²`
//! of [`super::orbit`]. `G_k = −∂Φ/∂λ_k` for the convex `Φ(Λ) = ½ Σ_p (ν_p e^{−2z_p} + b c_p e^{2z_p})`,
//! so the joint equilibrium is a minimiser of Φ. Generators with disjoint supports (the neurons
//! of one hidden layer) decouple exactly; the solver colours the overlap graph (neurons of
//! adjacent hidden layers share the weights between them) and runs exact block-coordinate
//! minimisation: for each colour, every generator's 1-D root is solved with the others fixed.
//! With one hidden layer this is a single sweep. Infinite roots are structural (they depend on
//! which weights vanish, not on their values): such generators are left at λ = 0 and reported.

use super::orbit::{root, FlowParams, FlowTerm, LogParts, OrbitFlow, OrbitSolution, SolveStatus};
use crate::core::stats::GradStats;
use crate::{invalid, Result};
use serde::Serialize;

/// Options for [`solve_diagonal_family`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FamilyOptions {
    /// Stop when every charge's relative imbalance `|I₁ − I₂|/(I₁ + I₂)` is below this.
    pub tol: f64,
    /// Maximum number of sweeps over the colours.
    pub max_sweeps: usize,
}

impl Default for FamilyOptions {
    fn default() -> Self {
        FamilyOptions {
            tol: 1e-12,
            max_sweeps: 20_000,
        }
    }
}

/// The joint equilibrium of a family.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FamilySolution {
    /// One solution per generator: `lambda` is its λ_k in the joint point, `c` its charge at θ,
    /// `c_star` at the joint θ*, `flow` its `G_k` at θ, `residual` its imbalance at θ*.
    pub solutions: Vec<OrbitSolution>,
    /// `θ* = e^{Σ λ_k A_k} θ` (infinite λ's left at 0).
    pub theta_star: Vec<f64>,
    /// Number of colours (groups of mutually disjoint generators).
    pub colours: usize,
    /// Sweeps used.
    pub sweeps: usize,
    /// Whether every finite charge reached `tol`.
    pub converged: bool,
    /// The largest final imbalance among finite charges.
    pub max_residual: f64,
}

/// Solves the joint equilibrium of the diagonal generators `gens` (each of length P) at θ from
/// the per-parameter statistics `stats` (see the module docs).
pub fn solve_diagonal_family(
    gens: &[&[f64]],
    theta: &[f64],
    stats: &GradStats,
    params: &FlowParams,
    opts: &FamilyOptions,
) -> Result<FamilySolution> {
    params.validate()?;
    let p = theta.len();
    if stats.mean.len() != p || gens.iter().any(|g| g.len() != p) {
        return Err(invalid!(
            "family solve: generators, θ and statistics have different lengths"
        ));
    }
    if let Some(k) = gens.iter().position(|g| g.iter().any(|v| !v.is_finite())) {
        return Err(invalid!("family solve: generator {k} has non-finite entries"));
    }
    let b = params.decay();
    let nu: Vec<f64> = (0..p)
        .map(|i| params.noise_weight(stats.mean[i], stats.second_moment[i] - stats.mean[i] * stats.mean[i]))
        .collect();
    let c: Vec<f64> = theta.iter().map(|t| t * t).collect();
    let supports: Vec<Vec<usize>> = gens.iter().map(|g| (0..p).filter(|&i| g[i] != 0.0).collect()).collect();
    // Greedy colouring of the overlap graph.
    let mut touching: Vec<Vec<usize>> = vec![vec![]; p];
    for (k, s) in supports.iter().enumerate() {
        for &i in s {
            touching[i].push(k);
        }
    }
    let mut colour = vec![usize::MAX; gens.len()];
    let mut ncol = 0;
    for k in 0..gens.len() {
        let mut used = vec![false; ncol + 1];
        for &i in &supports[k] {
            for &j in &touching[i] {
                if colour[j] != usize::MAX {
                    used[colour[j]] = true;
                }
            }
        }
        let cidx = used.iter().position(|u| !u).unwrap();
        colour[k] = cidx;
        ncol = ncol.max(cidx + 1);
    }
    // Initial per-generator solutions at θ (also gives the flows and the infinite ones).
    let flow_at = |k: usize| -> OrbitFlow {
        let terms = supports[k]
            .iter()
            .map(|&i| FlowTerm {
                mu: gens[k][i],
                noise: nu[i],
                charge: c[i],
            })
            .collect();
        OrbitFlow { terms, decay: b }
    };
    let initial: Vec<OrbitSolution> = (0..gens.len()).map(|k| flow_at(k).solve()).collect();
    let finite: Vec<bool> = initial
        .iter()
        .map(|s| matches!(s.status, SolveStatus::Converged | SolveStatus::NotConverged))
        .collect();
    let mut lam = vec![0.0; gens.len()];
    let mut z = vec![0.0; p];
    // Log-parts of generator k given the offsets of the others.
    let parts = |k: usize, z: &[f64], lam_k: f64| -> LogParts {
        let mut lp = LogParts::default();
        for &i in &supports[k] {
            let mu = gens[k][i];
            let r = mu.abs();
            let off = z[i] - lam_k * mu;
            let ln = (r * nu[i]).ln() - 2.0 * off;
            let lc = (r * b * c[i]).ln() + 2.0 * off;
            let (nt, ct) = if mu > 0.0 {
                (&mut lp.one, &mut lp.two)
            } else {
                (&mut lp.two, &mut lp.one)
            };
            if nu[i] > 0.0 && ln.is_finite() {
                nt.push((ln, r));
            }
            if b > 0.0 && c[i] > 0.0 && lc.is_finite() {
                ct.push((lc, r));
            }
        }
        lp
    };
    let imbalance = |k: usize, z: &[f64], lam_k: f64| -> f64 {
        let (h, _) = parts(k, z, lam_k).h(lam_k);
        (h / 2.0).tanh().abs()
    };
    let mut sweeps = 0;
    let mut max_res = 0.0;
    let mut converged = !finite.iter().any(|f| *f);
    while !converged && sweeps < opts.max_sweeps {
        sweeps += 1;
        for col in 0..ncol {
            for k in (0..gens.len()).filter(|&k| colour[k] == col && finite[k]) {
                let lp = parts(k, &z, lam[k]);
                let (new, _, _, _) = root(&lp, lam[k]);
                let d = new - lam[k];
                if d != 0.0 {
                    for &i in &supports[k] {
                        z[i] += d * gens[k][i];
                    }
                    lam[k] = new;
                }
            }
        }
        max_res = (0..gens.len())
            .filter(|&k| finite[k])
            .map(|k| imbalance(k, &z, lam[k]))
            .fold(0.0, f64::max);
        converged = max_res <= opts.tol;
        if ncol == 1 {
            // Disjoint supports: one sweep is exact.
            break;
        }
    }
    if ncol == 1 {
        converged = max_res <= opts.tol.max(1e-12);
    }
    let theta_star: Vec<f64> = theta.iter().zip(&z).map(|(t, zi)| t * zi.exp()).collect();
    let solutions = (0..gens.len())
        .map(|k| {
            let init = &initial[k];
            if !finite[k] {
                return init.clone();
            }
            let c_star: f64 = supports[k]
                .iter()
                .map(|&i| gens[k][i] * theta_star[i] * theta_star[i])
                .sum();
            OrbitSolution {
                lambda: lam[k],
                status: if converged {
                    SolveStatus::Converged
                } else {
                    SolveStatus::NotConverged
                },
                reason: (!converged).then(|| format!("joint solve stopped after {sweeps} sweeps")),
                c: init.c,
                c_star,
                flow: init.flow,
                iterations: sweeps,
                residual: imbalance(k, &z, lam[k]),
            }
        })
        .collect();
    Ok(FamilySolution {
        solutions,
        theta_star,
        colours: ncol,
        sweeps,
        converged,
        max_residual: max_res,
    })
}
