//! `nequil equilibrium`: where is the noise equilibrium of each catalogued symmetry of a model,
//! and what would the weights look like there (same loss, rebalanced)?

use super::family::{solve_diagonal_family, FamilyOptions};
use super::orbit::{FlowParams, OrbitFlow, SolveStatus, Time};
use crate::core::footprint::{Footprint, F64};
use crate::core::models::Model;
use crate::core::stats::grad_stats;
use crate::core::symmetry::law::check_data;
use crate::core::symmetry::{catalog, catalog_names, NoiseBalance, SymmetryKind};
use crate::{invalid, Error, Result};
use serde::Serialize;

/// One catalogued symmetry in a [`RebalanceReport`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RebalanceRow {
    /// The symmetry's catalog name (`neuron.{l}.{k}`, `layer_pair.{l}`, `scale`, `scale.{block}`).
    pub name: String,
    /// What it is.
    pub kind: SymmetryKind,
    /// The charge `C = θᵀAθ` now.
    pub c: f64,
    /// The noise imbalance `Tr[AΣ]` now (per-sample covariance over the data).
    pub tr_a_sigma: f64,
    /// `Tr[A₊Σ]`, the noise pushing C up.
    pub tr_a_sigma_pos: f64,
    /// `Tr[A₋Σ]`, the noise pushing C down (≤ 0).
    pub tr_a_sigma_neg: f64,
    /// The drift now: continuous time `Ċ = −4γC + (η/S)Tr[AΣ]`, or discrete time the expected
    /// change per step `E[ΔC] = η²(∇LᵀA∇L + Tr[AΣ]/S) − 4ηγC + 4η²γ²C`.
    pub drift: f64,
    /// λ*, possibly ±∞ (JSON writes non-finite numbers as `null`; see `status`).
    pub lambda_star: f64,
    /// How λ* was found.
    pub status: SolveStatus,
    /// Why λ* is infinite or undetermined, and whether this row was applied to the rebalanced θ.
    pub note: Option<String>,
    /// The predicted charge `C*` (at the rebalanced θ for applied rows; on this symmetry's own
    /// orbit otherwise).
    pub c_star: f64,
    /// Whether this row's (finite, non-degenerate) λ* is part of the rebalanced θ.
    pub applied: bool,
    /// The mean loss at θ.
    pub loss_before: f64,
    /// The mean loss at `e^{λ*A}θ` for this symmetry alone (equal to `loss_before` up to rounding;
    /// unchanged if λ* is not finite).
    pub loss_after: f64,
    /// `Tr[AΣ]` recomputed at the rebalanced θ (≈ 0 for applied rows when γ = 0, continuous time).
    pub tr_a_sigma_after: f64,
    /// `Tr[A₊Σ]` at the rebalanced θ.
    pub tr_a_sigma_pos_after: f64,
    /// `Tr[A₋Σ]` at the rebalanced θ.
    pub tr_a_sigma_neg_after: f64,
    /// The drift (as `drift`) at the rebalanced θ (≈ 0 for applied rows).
    pub drift_after: f64,
}

/// The result of [`rebalance`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RebalanceReport {
    /// The model, in words.
    pub model: String,
    /// Learning rate η.
    pub eta: f64,
    /// Batch size S.
    pub batch: usize,
    /// Weight decay γ.
    pub gamma: f64,
    /// Continuous-time (SDE) or discrete-time (expected per-step) equilibrium.
    pub time: Time,
    /// Number of samples used for the statistics.
    pub n: usize,
    /// One row per catalogued one-parameter symmetry.
    pub rows: Vec<RebalanceRow>,
    /// θ moved to the joint noise equilibrium of the applied rows.
    pub theta: Vec<f64>,
    /// Mean loss at θ.
    pub loss_before: f64,
    /// Mean loss at the rebalanced θ (equal up to rounding).
    pub loss_after: f64,
    /// Sweeps used by the joint solve of the applied rows.
    pub sweeps: usize,
    /// Totals over the applied rows, at θ and at the rebalanced θ.
    pub totals: RebalanceTotals,
    /// The matrix families' balances (reported, not applied).
    pub families: Vec<FamilyRow>,
    /// Remarks for a person (families not handled by the 1-D solver, and so on).
    pub notes: Vec<String>,
}

/// A double-rotation family's noise balance ([`super::matrix_family`]): reported, not applied to
/// the rebalanced θ (its equilibrium is on its own orbit).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FamilyRow {
    /// `rotation.{l}`, `qk.{label}.{h}`, `vo.{label}.{h}`.
    pub name: String,
    /// The dimension d of its generators.
    pub dim: usize,
    /// The relative size of the matrix drift `D` at θ (0 at the equilibrium).
    pub residual: f64,
    /// The same at the rebalanced θ of the applied rows.
    pub residual_after: f64,
    /// `‖B − I‖_F` of the member that moves θ to the family's equilibrium (∞ if none is finite).
    pub distance: f64,
    /// The loss at θ moved to the family's equilibrium (equal to the loss at θ up to rounding;
    /// NaN if there is none).
    pub loss_at_equilibrium: f64,
    /// Why there is no finite equilibrium, if there is none.
    pub note: Option<String>,
}

/// Sums over the applied rows of a [`RebalanceReport`] (the symmetries that moved θ), at θ
/// (`_before`) and at the rebalanced θ (`_after`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RebalanceTotals {
    /// Number of applied rows.
    pub applied: usize,
    /// `Σ_k |Tr[A_kΣ]|` at θ: the total noise imbalance.
    pub imbalance_before: f64,
    /// `Σ_k |Tr[A_kΣ]|` at the rebalanced θ.
    pub imbalance_after: f64,
    /// `Σ_k (Tr[A_{k+}Σ] − Tr[A_{k−}Σ])` at θ: the scale of the imbalance (its parts).
    pub noise_before: f64,
    /// The same at the rebalanced θ.
    pub noise_after: f64,
    /// `Σ_k |drift_k|` at θ.
    pub drift_before: f64,
    /// `Σ_k |drift_k|` at the rebalanced θ (≈ 0: this is what the equilibrium zeroes, also with
    /// weight decay or in discrete time).
    pub drift_after: f64,
}

/// Solves the continuous-time noise equilibrium (`4γC* = (η/S)Tr[Σ(θ*)A]`, book `theory/constants.md#noether-flow-constant`) of
/// every symmetry in the model's catalog from one pass of per-sample statistics over the `n`
/// samples `(x, y)`, and returns one row per symmetry plus the rebalanced θ.
///
/// The rebalanced θ applies a maximal set of catalogued symmetries chosen greedily in catalog
/// order: all neuron rescalings (jointly: neighbouring hidden layers share weights, see
/// [`solve_diagonal_family`]), or Net-A's global / Net-B's two layer-wise scale invariances.
/// Layer-pair rescalings are sums of neuron rescalings, so they are reported (on their own orbit)
/// but not applied. A symmetry with infinite λ* is left unchanged and says so. The double
/// rotations of linear chains are matrix families, not one-parameter ones: use
/// [`super::two_layer`] / [`super::deep_linear`].
///
/// The report also recomputes the statistics at the rebalanced θ (`*_after` fields and
/// [`RebalanceTotals`]), so that the balance can be read off without another pass.
#[allow(clippy::too_many_arguments)]
pub fn rebalance(
    model: &Model,
    theta: &[f64],
    x: &[f64],
    y: &[f64],
    n: usize,
    eta: f64,
    batch: usize,
    gamma: f64,
) -> Result<RebalanceReport> {
    rebalance_with(model, theta, x, y, n, &FlowParams::continuous(eta, batch, gamma))
}

/// What [`rebalance_with`] allocates on `model` with `n` samples, in `f64` values (× 8 bytes): the
/// catalog's generators (`k · P` for its `k` one-parameter symmetries, each a diagonal of `P`
/// values), the gradient statistics before and after (`6P`), the family solve's charges, moved θ,
/// supports and index lists (about `6P`), and a model workspace for chunks of `min(n, 256)`.
pub fn rebalance_footprint(model: &Model, n: usize) -> Footprint {
    let p = model.n_params() as u128;
    let k = catalog_names(model).len() as u128;
    let mut f = Footprint::of(
        format!("the catalog's {k} generators of {p} values"),
        k.saturating_mul(p),
        F64,
    );
    f.add("gradient statistics and the family solve (12 × P)", 12 * p, F64);
    f.extend(model.footprint(n.clamp(1, 256)));
    f
}

/// [`rebalance`] with explicit flow parameters: `FlowParams::discrete(η, S, γ)` solves the
/// discrete-time equilibrium `E[ΔC] = η²(∇LᵀA∇L + Tr[AΣ]/S) − 4ηγC + 4η²γ²C = 0` of each charge
/// (Theorem D.1 with weight decay) instead of the continuous-time `4γC = (η/S)Tr[AΣ]`.
pub fn rebalance_with(
    model: &Model,
    theta: &[f64],
    x: &[f64],
    y: &[f64],
    n: usize,
    params: &FlowParams,
) -> Result<RebalanceReport> {
    check_data(model, theta, x, y, n)?;
    let params = *params;
    let (eta, batch, gamma) = (params.eta, params.batch, params.gamma);
    params.validate()?;
    if eta == 0.0 {
        return Err(invalid!(
            "learning rate η must be > 0 (with η = 0 there is no gradient noise)"
        ));
    }
    let cat = catalog(model);
    let mut ws = model.workspace(n.min(256));
    let stats = grad_stats(model, theta, x, y, n, &mut ws);
    if !stats.loss.is_finite() || stats.mean.iter().chain(&stats.second_moment).any(|v| !v.is_finite()) {
        return Err(Error::Numerical(format!(
            "the loss or its per-sample gradients are not finite at θ (loss {})",
            stats.loss
        )));
    }
    let loss_before = stats.loss;
    // Greedy disjoint-by-construction selection: neuron rescalings (jointly), else scale symmetries.
    let is_neuron = |k: &SymmetryKind| matches!(k, SymmetryKind::NeuronRescaling { .. });
    let has_neurons = cat.symmetries.iter().any(|s| is_neuron(&s.kind));
    let applied: Vec<bool> = cat
        .symmetries
        .iter()
        .map(|s| match s.kind {
            SymmetryKind::NeuronRescaling { .. } | SymmetryKind::FamilyMember { .. } => true,
            SymmetryKind::LayerPairRescaling { .. } => !has_neurons,
            SymmetryKind::GlobalScale | SymmetryKind::BlockScale { .. } => true,
            SymmetryKind::DoubleRotation { .. } => false,
        })
        .collect();
    let gens: Vec<&[f64]> = cat
        .symmetries
        .iter()
        .zip(&applied)
        .filter(|(_, a)| **a)
        .map(|(s, _)| s.generator.as_diagonal().expect("catalog generators are diagonal"))
        .collect();
    let fam = solve_diagonal_family(&gens, theta, &stats, &params, &FamilyOptions::default())?;
    let after = grad_stats(model, &fam.theta_star, x, y, n, &mut ws);
    let drift = |nb: &NoiseBalance| match params.time {
        Time::Continuous => nb.continuous_drift(eta, batch, gamma),
        Time::Discrete => nb.expected_step_drift(eta, batch, gamma),
    };
    let mut totals = RebalanceTotals::default();
    let mut fam_iter = fam.solutions.iter();
    let mut rows = vec![];
    for (s, &app) in cat.symmetries.iter().zip(&applied) {
        let nb = NoiseBalance::from_stats(&s.generator, theta, &stats)?;
        let nb_after = NoiseBalance::from_stats(&s.generator, &fam.theta_star, &after)?;
        let sol = if app {
            fam_iter.next().expect("one solution per applied generator").clone()
        } else {
            OrbitFlow::from_stats(&s.generator, theta, &stats, &params)?.solve()
        };
        let own_theta = if sol.lambda.is_finite() {
            s.generator.exp_apply(sol.lambda, theta)
        } else {
            theta.to_vec()
        };
        // For applied rows λ_k is its component of the joint point: its own-orbit loss check uses it too.
        let loss_after = model.loss_chunked(&own_theta, x, y, n, &mut ws);
        let mut note = sol.reason.clone();
        if !sol.lambda.is_finite() || sol.status == SolveStatus::Degenerate {
            let m = "left unchanged in the rebalanced θ".to_string();
            note = Some(match note {
                Some(r) => format!("{r}; {m}"),
                None => m,
            });
        } else if !app {
            let m = "not applied: a sum of neuron rescalings, which are applied; λ* and C* are for this symmetry's own orbit".to_string();
            note = Some(match note {
                Some(r) => format!("{r}; {m}"),
                None => m,
            });
        }
        let row_applied = app && matches!(sol.status, SolveStatus::Converged | SolveStatus::NotConverged);
        if row_applied {
            totals.applied += 1;
            totals.imbalance_before += nb.tr_a_sigma.abs();
            totals.imbalance_after += nb_after.tr_a_sigma.abs();
            totals.noise_before += nb.tr_a_sigma_pos - nb.tr_a_sigma_neg;
            totals.noise_after += nb_after.tr_a_sigma_pos - nb_after.tr_a_sigma_neg;
            totals.drift_before += drift(&nb).abs();
            totals.drift_after += drift(&nb_after).abs();
        }
        rows.push(RebalanceRow {
            name: s.name.clone(),
            kind: s.kind.clone(),
            c: nb.c,
            tr_a_sigma: nb.tr_a_sigma,
            tr_a_sigma_pos: nb.tr_a_sigma_pos,
            tr_a_sigma_neg: nb.tr_a_sigma_neg,
            drift: drift(&nb),
            lambda_star: sol.lambda,
            status: sol.status,
            note,
            c_star: sol.c_star,
            applied: row_applied,
            loss_before,
            loss_after,
            tr_a_sigma_after: nb_after.tr_a_sigma,
            tr_a_sigma_pos_after: nb_after.tr_a_sigma_pos,
            tr_a_sigma_neg_after: nb_after.tr_a_sigma_neg,
            drift_after: drift(&nb_after),
        });
    }
    let loss_after = after.loss;
    let mut notes = cat.notes.clone();
    if cat.symmetries.is_empty() {
        notes.push("no one-parameter symmetry in the catalog: θ is returned unchanged".into());
    }
    if !fam.converged {
        notes.push(format!(
            "the joint solve of the applied rows stopped after {} sweeps (largest imbalance {:e})",
            fam.sweeps, fam.max_residual
        ));
    }
    let mut families = vec![];
    for f in &cat.families {
        let before = super::matrix_family::family_balance(model, f, theta, x, y, n, &params)?;
        let at = super::matrix_family::family_balance(model, f, &fam.theta_star, x, y, n, &params)?;
        let loss_at_equilibrium = match &before.theta_star {
            Some(t) => model.loss_chunked(t, x, y, n, &mut ws),
            None => f64::NAN,
        };
        families.push(FamilyRow {
            name: f.name.clone(),
            dim: f.dim,
            residual: before.residual,
            residual_after: at.residual,
            distance: before.distance,
            loss_at_equilibrium,
            note: before.note,
        });
    }
    Ok(RebalanceReport {
        model: model.describe(),
        eta,
        batch,
        gamma,
        time: params.time,
        n,
        rows,
        theta: fam.theta_star,
        loss_before,
        loss_after,
        sweeps: fam.sweeps,
        totals,
        families,
        notes,
    })
}
