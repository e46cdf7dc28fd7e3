//! The paper's figures as experiments: each runs simulations, compares them with the theory, and
//! returns checks, a figure description and logs. `nequil reproduce` runs them and renders the
//! report; `nequil list` prints [`catalog`].
//!
//! Every check states a claim in words, the theory value, the measured value, a tolerance and how
//! that tolerance was derived (standard errors of the run, finite-η bias, rounding), and passes or
//! fails. Settings the paper leaves out are chosen here, fixed, and reported with the experiment.

mod common;
mod fig1;
mod fig2;
mod fig3;
mod fig4;
mod fig5;
mod fig6;
mod fig7;
mod fig8;
pub mod figure;
mod law;

pub use common::{par_map, Check, Ctx, Outcome};
pub use figure::{Figure, Panel, PanelKind, Role, Series, Style};

use crate::Result;

/// One named experiment.
pub struct Experiment {
    /// Short name used on the command line (e.g. `fig1-scale-invariance`).
    pub name: &'static str,
    /// One-line title.
    pub title: &'static str,
    /// What the paper claims, in one sentence.
    pub claim: &'static str,
    /// Runs the experiment.
    pub run: fn(&Ctx) -> Result<Outcome>,
}

/// Every experiment, in the paper's figure order.
pub fn catalog() -> Vec<Experiment> {
    vec![
        Experiment {
            name: "fig1-scale-invariance",
            title: "Fig. 1: a 2-D scale-invariant loss — gradient flow keeps ‖θ‖, SGD moves outward",
            claim: "Under scale invariance the gradient is tangent to circles: gradient flow stays on its circle, while SGD's ‖θ‖² never decreases and grows.",
            run: fig1::run,
        },
        Experiment {
            name: "fig2-matrix-factorization",
            title: "Fig. 2: matrix factorization — SGD aligns the layers as Theorem 5.2 predicts, GD keeps its initialization",
            claim: "SGD drives UᵀΓ_U U − WΓ_W Wᵀ to zero and ends at the Theorem 5.2 solution; GD from the same initialization ends more than ten times farther from it.",
            run: fig2::run,
        },
        Experiment {
            name: "fig3-norm-balance",
            title: "Fig. 3: the norm ratio ‖W‖²/‖U‖² of a linear autoencoder against the input anisotropy φ_x",
            claim: "SGD's solution is norm-balanced only for isotropic input (φ_x = 1), following 1/√(φ(2 − φ)); SGD with tiny weight decay behaves like SGD, GD with weight decay is always balanced.",
            run: fig3::run,
        },
        Experiment {
            name: "fig4-warmup",
            title: "Fig. 4: warmup — SGD's noise flattens a sharp rank-1 factorization until a large η is safe",
            claim: "SGD from Kaiming init at η = 0.008 diverges, warmup (0.001 for 5000 steps) trains; Kaiming and Xavier reach the same sharpness; GD does not flatten.",
            run: fig4::run,
        },
        Experiment {
            name: "fig5-deep-linear",
            title: "Fig. 5: per-layer norms of a deep linear net — intermediate layers converge to one norm",
            claim: "Under SGD the intermediate layers of a deep linear net converge to a common norm, from equal or unequal initial norms, as the corrected Theorem 5.4 predicts; input and output layers differ.",
            run: fig5::run,
        },
        Experiment {
            name: "fig6-representations",
            title: "Fig. 6/9: two-layer nets learn aligned representations under SGD, not under GD",
            claim: "Under SGD the normalized matrices W Σ̄_x Wᵀ and Uᵀ Σ̄_ε U become similar (noise balance), under GD they do not.",
            run: fig6::run,
        },
        Experiment {
            name: "fig7-net-a-net-b",
            title: "Fig. 7: norms of scale-invariant nets Net-A and Net-B under SGD and GD",
            claim: "Under SGD the total norm never decreases (and Net-B's layer norms each never decrease); under GD the norm changes only by the η² term.",
            run: fig7::run,
        },
        Experiment {
            name: "fig8-convergence",
            title: "Fig. 8: convergence to the noise equilibrium is robust, at a rate ∝ η/S",
            claim: "The distance to the noise equilibrium decays exponentially for every η, S and dimension; the charge moves exactly as the Noether flow η²(∇LᵀA∇L + Tr[AΣ]/S) says, at a rate ∝ η/S.",
            run: fig8::run,
        },
        Experiment {
            name: "law-of-balance",
            title: "Law of balance: the scalar u·w model balances u² = w² exponentially fast",
            claim: "For ℓ = (u w x − y)², the charge u² − w² decays as exp(−4(γ + (η/S) Var[r x]) t).",
            run: law::run,
        },
    ]
}
