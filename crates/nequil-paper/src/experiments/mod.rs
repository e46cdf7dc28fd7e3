//! The paper's figures as experiments: each is a plan of named runs (specs plus probes) that the
//! engine runs ([`simulate`]), checks that compare the runs with the theory, a figure and the
//! details of its report ([`plan`] describes the shape). `nequil reproduce` runs them and renders
//! the report; `nequil list` prints [`catalog`].
//!
//! Every check states a claim in words, the theory value, the measured value, a tolerance and how
//! that tolerance was derived (standard errors over seeds, finite-η bias from two step sizes,
//! rounding), and passes or fails. Settings the paper leaves out are chosen here, fixed, and
//! reported with the experiment.

mod beyond_cnn;
mod beyond_layernorm;
mod beyond_optimizers;
mod beyond_transformer;
mod common;
mod fig1;
mod fig2;
mod fig3;
mod fig4;
mod fig5;
mod fig6;
mod fig7;
mod fig8;
mod law;
pub mod plan;
mod rebalanced_init;
pub mod record;
mod simulation;

pub use crate::files::{Check, Figure, Panel, PanelKind, Role, Series, Style};
pub use common::{Ctx, Outcome};
pub use fig5::{digits_dataset, mnist_dataset, DIGITS_NPZ};
pub use plan::{Details, Plan, PlannedRun, Results, RunResult};
pub use simulation::simulate;

use nequil::Result;

/// Where an experiment belongs in the report and in `nequil list`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// A figure or claim of the paper.
    Paper,
    /// The theory applied where the paper does not go (convolutions, normalization, attention).
    Beyond,
}

impl Group {
    /// The heading of the group.
    pub fn heading(self) -> &'static str {
        match self {
            Group::Paper => "The paper",
            Group::Beyond => "Beyond the paper",
        }
    }
}

/// One named experiment.
pub struct Experiment {
    /// Short name used on the command line (e.g. `fig1-scale-invariance`).
    pub name: &'static str,
    /// One-line title.
    pub title: &'static str,
    /// What the paper claims (or, beyond the paper, what the theory predicts), in one sentence.
    pub claim: &'static str,
    /// The group it belongs to.
    pub group: Group,
    /// The named runs.
    pub plan: fn(&Ctx) -> Result<Plan>,
    /// The checks of the claims, from the runs.
    pub checks: fn(&Results) -> Result<Vec<Check>>,
    /// The figure, from the runs.
    pub figure: fn(&Results) -> Result<Figure>,
    /// Settings, notes and logs, from the runs.
    pub details: fn(&Results) -> Result<Details>,
}

impl Experiment {
    /// Plans, simulates, checks and draws: the whole experiment.
    pub fn run(&self, ctx: &Ctx) -> Result<Outcome> {
        let results = simulate((self.plan)(ctx)?, ctx)?;
        let d = (self.details)(&results)?;
        Ok(Outcome {
            checks: (self.checks)(&results)?,
            figure: (self.figure)(&results)?,
            settings: d.settings,
            logs: d.logs,
            notes: d.notes,
            resumed: results.resumed(),
            runs: results.len(),
        })
    }
}

/// An [`Experiment`] from the four functions of an experiment module.
macro_rules! experiment {
    ($name:expr, $title:expr, $claim:expr, $m:ident $(,)?) => {
        experiment!($name, $title, $claim, $m, Group::Paper)
    };
    ($name:expr, $title:expr, $claim:expr, $m:ident, $group:expr $(,)?) => {
        Experiment {
            name: $name,
            title: $title,
            claim: $claim,
            group: $group,
            plan: $m::plan,
            checks: $m::checks,
            figure: $m::figure,
            details: $m::details,
        }
    };
}

/// Every experiment: the paper's, in its figure order, then those beyond the paper.
pub fn catalog() -> Vec<Experiment> {
    vec![
        experiment!(
            "fig1-scale-invariance",
            "Fig. 1: a 2-D scale-invariant loss — gradient flow keeps ‖θ‖, SGD moves outward",
            "Under scale invariance the gradient is tangent to circles: gradient flow stays on its circle, while SGD's ‖θ‖² never decreases and grows.",
            fig1,
        ),
        experiment!(
            "fig2-matrix-factorization",
            "Fig. 2: matrix factorization — SGD aligns the layers as Theorem 5.2 predicts, GD keeps its initialization",
            "SGD drives UᵀΓ_U U − WΓ_W Wᵀ to zero and ends at the Theorem 5.2 solution; GD from the same initialization ends more than ten times farther from it.",
            fig2,
        ),
        experiment!(
            "fig3-norm-balance",
            "Fig. 3: the norm ratio ‖W‖²/‖U‖² of a linear autoencoder against the input anisotropy φ_x",
            "SGD's solution is norm-balanced only for isotropic input (φ_x = 1), following 1/√(φ(2 − φ)); SGD with tiny weight decay behaves like SGD, GD with weight decay is always balanced.",
            fig3,
        ),
        experiment!(
            "fig4-warmup",
            "Fig. 4: warmup — SGD's noise flattens a sharp rank-1 factorization until a large η is safe",
            "SGD from Kaiming init at η = 0.008 diverges, warmup (0.001 for 5000 steps) trains; Kaiming and Xavier reach the same sharpness; GD does not flatten.",
            fig4,
        ),
        experiment!(
            "fig5-deep-linear",
            "Fig. 5: per-layer norms of a deep linear net — intermediate layers converge to one norm",
            "Under SGD the intermediate layers of a deep linear net converge to a common norm, from equal or unequal initial norms, as the corrected Theorem 5.4 predicts; input and output layers differ.",
            fig5,
        ),
        experiment!(
            "fig6-representations",
            "Fig. 6/9: two-layer nets learn aligned representations under SGD, not under GD",
            "Under SGD the normalized matrices W Σ̄_x Wᵀ and Uᵀ Σ̄_ε U become similar (noise balance), under GD they do not.",
            fig6,
        ),
        experiment!(
            "fig7-net-a-net-b",
            "Fig. 7: norms of scale-invariant nets Net-A and Net-B under SGD and GD",
            "Under SGD the total norm never decreases (and Net-B's layer norms each never decrease); under GD the norm changes only by the η² term.",
            fig7,
        ),
        experiment!(
            "fig8-convergence",
            "Fig. 8: convergence to the noise equilibrium is robust, at a rate ∝ η/S",
            "The distance to the noise equilibrium decays exponentially for every η, S and dimension; the charge moves exactly as the Noether flow η²(∇LᵀA∇L + Tr[AΣ]/S) says, at a rate ∝ η/S.",
            fig8,
        ),
        experiment!(
            "law-of-balance",
            "Law of balance: the scalar u·w model balances u² = w² exponentially fast",
            "For ℓ = (u w x − y)², the charge u² − w² decays as exp(−4(γ + (η/S) Var[r x]) t).",
            law,
        ),
        // Beyond the paper.
        experiment!(
            "beyond-optimizers",
            "Beyond the paper: momentum and Adam — where the charges settle",
            "Under heavy-ball momentum a charge settles where SGD's law puts it at the effective step η/(1 − β), not at η; under Adam no law is claimed and where the charges go is measured.",
            beyond_optimizers,
            Group::Beyond,
        ),
        experiment!(
            "rebalanced-init",
            "Beyond the paper: a rebalanced initialization instead of warmup",
            "Moving the initialization to its noise equilibrium with the solver keeps the loss, balances the noise and, for the rank-1 net, gives the closed-form equilibrium's sharpness; whether the large step then trains without warmup is measured.",
            rebalanced_init,
            Group::Beyond,
        ),
        experiment!(
            "beyond-cnn",
            "Beyond (a): a ReLU CNN — SGD balances the gradient noise of every channel, GD does not",
            "Each conv channel's rescaling symmetry has a charge that only gradient noise moves: SGD drives the per-channel noise imbalance Tr[A_kΣ] to zero (on average, exactly, with the per-step term), GD from the same initialization stays unbalanced.",
            beyond_cnn,
            Group::Beyond,
        ),
        experiment!(
            "beyond-layernorm",
            "Beyond (b): LayerNorm — the norm of the weights feeding it never decreases under SGD, and settles at the noise equilibrium with weight decay",
            "The weights feeding a LayerNorm with ε = 0 are scale invariant: without weight decay SGD's step adds exactly η²‖ĝ‖² to their squared norm, so it never decreases; with weight decay it settles where the expected change vanishes, the charge probe's C*.",
            beyond_layernorm,
            Group::Beyond,
        ),
        experiment!(
            "beyond-transformer",
            "Beyond (c): a transformer block — SGD aligns the gradient noise of every attention head's QK and VO pair, GD does not",
            "Per head, W_Q → BW_Q, W_K → B⁻ᵀW_K and W_V → BW_V, W_O → W_OB⁻¹ are matrix families of symmetries: SGD drives the time-averaged matrix imbalance of their gradient noise to zero (the alignment W_KΓ_KW_Kᵀ = W_QΓ_QW_Qᵀ), GD from the same initialization stays unaligned.",
            beyond_transformer,
            Group::Beyond,
        ),
    ]
}
