//! The noise equilibrium on one orbit: a 1-D monotone root (book `theory/equilibrium.md#noise-equilibrium`, `theory/equilibrium.md#solving`).
//!
//! Along the orbit `θ_λ = e^{λA}θ` every per-sample gradient transforms as `e^{−λA}∇ℓ(θ)`
//! (Lemma B.1), so the statistics at θ alone determine the flow everywhere on the orbit. In A's
//! eigenbasis `A = Σ_i μ_i n_i n_iᵀ`, with `c_i = (n_iᵀθ)²`:
//!
//! * **continuous time** (book `theory/constants.md#noether-flow-constant`):
//!   `G(λ) = Σ_i μ_i [(η/S) s_i e^{−2λμ_i} − 4γ c_i e^{2λμ_i}]` with
//!   `s_i = n_iᵀΣn_i` (per-sample covariance): the drift `Ċ` at `θ_λ`;
//! * **discrete time** (Theorem D.1 with weight decay): `G_d(λ) = Σ_i μ_i [η² d_i e^{−2λμ_i} −
//!   κ c_i e^{2λμ_i}]` with `d_i = n_iᵀ E[ĝĝᵀ] n_i = (n_iᵀ∇L)² + s_i/S` (raw second moment of the
//!   batch gradient, which transforms the same way along the orbit) and `κ = 1 − (1 − 2ηγ)²`:
//!   the exact expected change `E[ΔC]` per step at `θ_λ`.
//!
//! Both have the form `G(λ) = Σ_i μ_i [ν_i e^{−2λμ_i} − b c_i e^{2λμ_i}] = I₁(λ) − I₂(λ)`, where
//! `I₁` collects the positive terms (noise along `μ > 0`, decay along `μ < 0`), each a weight times
//! `e^{−2λ|μ|}`, and `I₂` the others, each a weight times `e^{+2λ|μ|}`. `I₁` is zero or strictly
//! decreasing, `I₂` zero or strictly increasing (Theorem 4.3). The solver finds the root of
//! `h(λ) = ln I₁(λ) − ln I₂(λ)`, computed by log-sum-exp (no overflow for any λ), which is strictly
//! decreasing with slope `h' ∈ [−2(max|μ|₁ + max|μ|₂), −2(min|μ|₁ + min|μ|₂)]`; hence the bracket
//! `[0, h(0)/(2(min|μ|₁ + min|μ|₂))]` (or its mirror) always holds the root, and a safeguarded
//! Newton iteration converges in a handful of steps. If `I₁ ≡ 0` the root is `λ* = −∞`, if
//! `I₂ ≡ 0` it is `+∞` (a result, not an error, with its reason); if both vanish every point of the
//! orbit is stationary.

use crate::core::linalg::Dense;
use crate::core::stats::GradStats;
use crate::core::symmetry::Generator;
use crate::{invalid, Result};
use serde::Serialize;

/// Continuous-time (SDE) or discrete-time (expected per-step) flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Time {
    /// `Ċ = −4γC + (η/S) Tr[AΣ]`, per unit time `t = η·steps`.
    Continuous,
    /// `E[ΔC] = η²(∇LᵀA∇L + Tr[AΣ]/S) − 4ηγC + 4η²γ²C`, per step.
    Discrete,
}

/// Learning rate η, batch size S, weight decay γ (loss `+ γ‖θ‖²`) and the time model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FlowParams {
    /// Learning rate η ≥ 0.
    pub eta: f64,
    /// Batch size S ≥ 1 (drawn with replacement; `Cov(ĝ) = Σ/S`).
    pub batch: usize,
    /// Weight decay γ ≥ 0.
    pub gamma: f64,
    /// Which flow.
    pub time: Time,
    /// Discrete time: the weight `f` of the mean-gradient and `γ²` terms (1 for SGD; momentum's
    /// stationary law, [`crate::core::symmetry::Momentum::mean_weight`], has more). Unused in
    /// continuous time.
    pub mean_weight: f64,
}

impl FlowParams {
    /// Continuous-time flow.
    pub fn continuous(eta: f64, batch: usize, gamma: f64) -> Self {
        FlowParams {
            eta,
            batch,
            gamma,
            time: Time::Continuous,
            mean_weight: 1.0,
        }
    }
    /// Discrete-time flow.
    pub fn discrete(eta: f64, batch: usize, gamma: f64) -> Self {
        FlowParams {
            eta,
            batch,
            gamma,
            time: Time::Discrete,
            mean_weight: 1.0,
        }
    }
    /// The flow of momentum's law ([`crate::core::symmetry::Momentum`], book `theory/momentum.md`):
    /// SGD's with the effective step `ηρ` and, in discrete time, the stationary law's weight `f`
    /// of the mean-gradient and `γ²` terms. The root (C*) is the same as for the time `t = η·steps`
    /// of the run; the drift's time unit is `ηρ·steps`.
    pub fn momentum(m: &crate::core::symmetry::Momentum, eta: f64, batch: usize, gamma: f64, time: Time) -> Self {
        FlowParams {
            eta: eta * m.rate(),
            batch,
            gamma,
            time,
            mean_weight: if time == Time::Discrete { m.mean_weight() } else { 1.0 },
        }
    }
    /// Checks `η ≥ 0`, `S ≥ 1`, `γ ≥ 0`, all finite, and (discrete) `ηγ ≤ 1` so that the weight
    /// decay shrinks rather than flips θ (`κ = 1 − (1 − 2ηγ)² ≥ 0`).
    pub fn validate(&self) -> Result<()> {
        if !(self.eta.is_finite() && self.eta >= 0.0) {
            return Err(invalid!("learning rate η must be finite and ≥ 0, got {}", self.eta));
        }
        if self.batch == 0 {
            return Err(invalid!("batch size S must be ≥ 1"));
        }
        if !(self.gamma.is_finite() && self.gamma >= 0.0) {
            return Err(invalid!("weight decay γ must be finite and ≥ 0, got {}", self.gamma));
        }
        if !(self.mean_weight.is_finite() && self.mean_weight >= 1.0) {
            return Err(invalid!(
                "mean-gradient weight f must be finite and ≥ 1, got {}",
                self.mean_weight
            ));
        }
        if self.time == Time::Discrete && self.eta * self.gamma * self.mean_weight > 1.0 {
            return Err(invalid!(
                "discrete flow needs ηγf ≤ 1 (got {}): otherwise the weight-decay terms would grow |C|",
                self.eta * self.gamma * self.mean_weight
            ));
        }
        Ok(())
    }
    /// The decay coefficient `b`: `4γ` (continuous) or `κ = 1 − (1 − 2ηγ)² = 4ηγ − 4η²γ²` (discrete;
    /// `4ηγ − 4η²γ²f` with a mean weight `f ≠ 1`).
    pub fn decay(&self) -> f64 {
        match self.time {
            Time::Continuous => 4.0 * self.gamma,
            Time::Discrete if self.mean_weight == 1.0 => {
                let k = 1.0 - 2.0 * self.eta * self.gamma;
                1.0 - k * k
            }
            Time::Discrete => 4.0 * self.eta * self.gamma * (1.0 - self.eta * self.gamma * self.mean_weight),
        }
    }
    /// The noise weight `ν` of one eigendirection from the projected mean gradient `m = nᵀ∇L` and
    /// variance `s = nᵀΣn`: `(η/S)s` (continuous) or `η²(f·m² + s/S)` (discrete; f = 1 for SGD).
    pub fn noise_weight(&self, m: f64, s: f64) -> f64 {
        let s = s.max(0.0);
        match self.time {
            Time::Continuous => self.eta / self.batch as f64 * s,
            Time::Discrete => self.eta * self.eta * (self.mean_weight * m * m + s / self.batch as f64),
        }
    }
}

/// One eigendirection of A in the flow: `μ (ν e^{−2λμ} − b c e^{2λμ})`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FlowTerm {
    /// Eigenvalue μ ≠ 0.
    pub mu: f64,
    /// Noise weight ν ≥ 0 (see [`FlowParams::noise_weight`]).
    pub noise: f64,
    /// `c = (nᵀθ)² ≥ 0`.
    pub charge: f64,
}

/// How the root was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SolveStatus {
    /// A finite root, converged.
    Converged,
    /// `λ* = +∞`: nothing pulls C down.
    PlusInfinity,
    /// `λ* = −∞`: nothing pushes C up.
    MinusInfinity,
    /// `G ≡ 0` on the orbit: every point is stationary (λ* reported as 0).
    Degenerate,
    /// The iteration limit was reached (λ* is the best iterate).
    NotConverged,
}

/// The equilibrium of one orbit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OrbitSolution {
    /// λ*, possibly ±∞ (serialised as `null` by JSON writers; see `status`).
    pub lambda: f64,
    /// How it was found.
    pub status: SolveStatus,
    /// Why λ* is infinite or undetermined, for a person.
    pub reason: Option<String>,
    /// The charge at θ (λ = 0).
    pub c: f64,
    /// The predicted charge `C* = C(θ_{λ*}) = Σ μ_i c_i e^{2λ*μ_i}` (its limit for infinite λ*).
    pub c_star: f64,
    /// The flow at θ, `G(0)`.
    pub flow: f64,
    /// Newton/bisection iterations used.
    pub iterations: usize,
    /// `|I₁ − I₂| / (I₁ + I₂)` at λ* (0 for infinite or degenerate roots).
    pub residual: f64,
}

impl OrbitSolution {
    /// `θ* = e^{λ*A}θ` if λ* is finite, else θ unchanged.
    pub fn apply(&self, gen: &Generator, theta: &[f64]) -> Vec<f64> {
        if self.lambda.is_finite() && self.lambda != 0.0 {
            gen.exp_apply(self.lambda, theta)
        } else {
            theta.to_vec()
        }
    }
}

/// Log-weights and rates of `I₁` (terms `e^{lw − 2λr}`) and `I₂` (terms `e^{lw + 2λr}`).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LogParts {
    pub(crate) one: Vec<(f64, f64)>,
    pub(crate) two: Vec<(f64, f64)>,
}

fn lse(terms: &[(f64, f64)], sign: f64, lambda: f64) -> (f64, f64) {
    // Returns (ln Σ e^{lw + sign·2λr}, softmax-weighted mean of r).
    let mx = terms
        .iter()
        .map(|(lw, r)| lw + sign * 2.0 * lambda * r)
        .fold(f64::NEG_INFINITY, f64::max);
    let (mut s, mut sr) = (0.0, 0.0);
    for (lw, r) in terms {
        let e = (lw + sign * 2.0 * lambda * r - mx).exp();
        s += e;
        sr += e * r;
    }
    (mx + s.ln(), sr / s)
}

impl LogParts {
    /// `h(λ) = ln I₁ − ln I₂` and `h'(λ)`. Both parts must be non-empty.
    pub(crate) fn h(&self, lambda: f64) -> (f64, f64) {
        let (l1, r1) = lse(&self.one, -1.0, lambda);
        let (l2, r2) = lse(&self.two, 1.0, lambda);
        (l1 - l2, -2.0 * (r1 + r2))
    }
}

/// The flow of one charge along its orbit, `G(λ) = Σ μ (ν e^{−2λμ} − b c e^{2λμ})`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OrbitFlow {
    /// The eigendirections (μ ≠ 0).
    pub terms: Vec<FlowTerm>,
    /// The decay coefficient `b` (`4γ` or `κ`).
    pub decay: f64,
}

impl OrbitFlow {
    /// A flow from explicit terms. All weights must be finite and ≥ 0, μ finite and ≠ 0.
    pub fn new(terms: Vec<FlowTerm>, decay: f64) -> Result<Self> {
        if !(decay.is_finite() && decay >= 0.0) {
            return Err(invalid!(
                "orbit flow: decay coefficient must be finite and ≥ 0, got {decay}"
            ));
        }
        for t in &terms {
            if !(t.mu.is_finite()
                && t.mu != 0.0
                && t.noise.is_finite()
                && t.noise >= 0.0
                && t.charge.is_finite()
                && t.charge >= 0.0)
            {
                return Err(invalid!(
                    "orbit flow: invalid term {t:?} (need μ ≠ 0 finite, ν ≥ 0, c ≥ 0)"
                ));
            }
        }
        Ok(OrbitFlow { terms, decay })
    }

    /// From per-parameter statistics ([`crate::core::stats::grad_stats`]); `gen` must be diagonal.
    pub fn from_stats(gen: &Generator, theta: &[f64], stats: &GradStats, params: &FlowParams) -> Result<Self> {
        params.validate()?;
        let a = gen
            .as_diagonal()
            .ok_or_else(|| invalid!("orbit flow from per-parameter statistics needs a diagonal generator"))?;
        if a.len() != theta.len() || a.len() != stats.mean.len() {
            return Err(invalid!(
                "orbit flow: generator, θ and statistics have different lengths"
            ));
        }
        let terms = (0..a.len())
            .filter(|&p| a[p] != 0.0)
            .map(|p| {
                let m = stats.mean[p];
                FlowTerm {
                    mu: a[p],
                    noise: params.noise_weight(m, stats.second_moment[p] - m * m),
                    charge: theta[p] * theta[p],
                }
            })
            .collect();
        Self::new(terms, params.decay())
    }

    /// From the `n × P` per-sample gradients ([`crate::core::stats::per_sample_grads`]); any generator.
    pub fn from_grads(gen: &Generator, theta: &[f64], grads: &Dense, params: &FlowParams) -> Result<Self> {
        params.validate()?;
        let (n, p) = (grads.rows, grads.cols);
        if gen.dim() != p || theta.len() != p || n == 0 {
            return Err(invalid!(
                "orbit flow: generator, θ and gradients have different lengths (or no samples)"
            ));
        }
        let mut terms = vec![];
        for e in gen.spectrum() {
            let (mut m, mut m2) = (0.0, 0.0);
            for i in 0..n {
                let v = e.project(&grads.data[i * p..(i + 1) * p]);
                m += v;
                m2 += v * v;
            }
            m /= n as f64;
            m2 /= n as f64;
            terms.push(FlowTerm {
                mu: e.mu,
                noise: params.noise_weight(m, m2 - m * m),
                charge: e.project(theta).powi(2),
            });
        }
        Self::new(terms, params.decay())
    }

    /// From the covariance `Σ` (P × P) and mean gradient `∇L`; any generator.
    pub fn from_covariance(
        gen: &Generator,
        theta: &[f64],
        cov: &Dense,
        mean: &[f64],
        params: &FlowParams,
    ) -> Result<Self> {
        params.validate()?;
        let p = gen.dim();
        if cov.rows != p || cov.cols != p || mean.len() != p || theta.len() != p {
            return Err(invalid!(
                "orbit flow: generator, θ, covariance and mean have different sizes"
            ));
        }
        let mut terms = vec![];
        for e in gen.spectrum() {
            let mut s = 0.0;
            for (a, &i) in e.indices.iter().enumerate() {
                for (b, &j) in e.indices.iter().enumerate() {
                    s += e.values[a] * cov.at(i, j) * e.values[b];
                }
            }
            terms.push(FlowTerm {
                mu: e.mu,
                noise: params.noise_weight(e.project(mean), s),
                charge: e.project(theta).powi(2),
            });
        }
        Self::new(terms, params.decay())
    }

    /// `G(λ)`, evaluated directly (may overflow to ±∞ for large |λ|).
    pub fn g(&self, lambda: f64) -> f64 {
        self.terms
            .iter()
            .map(|t| {
                t.mu * (t.noise * (-2.0 * lambda * t.mu).exp() - self.decay * t.charge * (2.0 * lambda * t.mu).exp())
            })
            .sum()
    }

    /// The charge along the orbit, `C(λ) = Σ μ c e^{2λμ}` (increasing in λ).
    pub fn charge(&self, lambda: f64) -> f64 {
        self.terms
            .iter()
            .map(|t| t.mu * t.charge * (2.0 * lambda * t.mu).exp())
            .sum()
    }

    pub(crate) fn log_parts(&self) -> LogParts {
        let mut lp = LogParts::default();
        for t in &self.terms {
            let r = t.mu.abs();
            let ln = (r * t.noise).ln();
            let lc = (r * self.decay * t.charge).ln();
            let (noise_to, charge_to) = if t.mu > 0.0 {
                (&mut lp.one, &mut lp.two)
            } else {
                (&mut lp.two, &mut lp.one)
            };
            if t.noise > 0.0 && ln.is_finite() {
                noise_to.push((ln, r));
            }
            if self.decay > 0.0 && t.charge > 0.0 && lc.is_finite() {
                charge_to.push((lc, r));
            }
        }
        lp
    }

    /// `h(λ) = ln I₁(λ) − ln I₂(λ)`, strictly decreasing (±∞ if a part vanishes identically).
    pub fn log_ratio(&self, lambda: f64) -> f64 {
        let lp = self.log_parts();
        match (lp.one.is_empty(), lp.two.is_empty()) {
            (true, true) => f64::NAN,
            (true, false) => f64::NEG_INFINITY,
            (false, true) => f64::INFINITY,
            _ => lp.h(lambda).0,
        }
    }

    /// `(I₁(λ), I₂(λ))`: the parts of `G = I₁ − I₂` that push C up and down.
    pub fn parts(&self, lambda: f64) -> (f64, f64) {
        let lp = self.log_parts();
        let f = |v: &[(f64, f64)], s: f64| if v.is_empty() { 0.0 } else { lse(v, s, lambda).0.exp() };
        (f(&lp.one, -1.0), f(&lp.two, 1.0))
    }

    /// The charge in the limit λ → ±∞.
    fn charge_limit(&self, plus: bool) -> f64 {
        let up = self.terms.iter().any(|t| t.charge > 0.0 && (t.mu > 0.0) == plus);
        match (plus, up) {
            (true, true) => f64::INFINITY,
            (false, true) => f64::NEG_INFINITY,
            _ => 0.0,
        }
    }

    /// Solves `G(λ*) = 0` (see the module docs).
    pub fn solve(&self) -> OrbitSolution {
        solve_parts(self, &self.log_parts())
    }
}

fn infinite_reason(flow: &OrbitFlow, plus: bool) -> String {
    let (dir, other, verb) = if plus {
        ("negative", "positive", "up")
    } else {
        ("positive", "negative", "down")
    };
    let has_other_sign = flow.terms.iter().any(|t| (t.mu < 0.0) == plus);
    if flow.decay == 0.0 && !has_other_sign {
        if plus {
            "A ⪰ 0 (e.g. scale invariance) without weight decay: the noise only pushes C up, so C and ‖θ‖ grow without bound (λ* = +∞)".into()
        } else {
            "A ⪯ 0 without weight decay: the noise only pushes C down (λ* = −∞)".into()
        }
    } else if flow.decay == 0.0 {
        format!(
            "no weight decay and no gradient noise along A's {dir} eigendirections: the noise only pushes C {verb} (λ* = {}∞)",
            if plus { "+" } else { "−" }
        )
    } else {
        format!(
            "no gradient noise along A's {dir} eigendirections and θ has no component along its {other} ones: nothing pushes C {} (λ* = {}∞)",
            if plus { "down" } else { "up" },
            if plus { "+" } else { "−" }
        )
    }
}

pub(crate) fn solve_parts(flow: &OrbitFlow, lp: &LogParts) -> OrbitSolution {
    let c = flow.charge(0.0);
    let g0 = flow.g(0.0);
    let mk = |lambda: f64, status, reason: Option<String>, c_star: f64, iterations, residual| OrbitSolution {
        lambda,
        status,
        reason,
        c,
        c_star,
        flow: g0,
        iterations,
        residual,
    };
    match (lp.one.is_empty(), lp.two.is_empty()) {
        (true, true) => {
            return mk(
                0.0,
                SolveStatus::Degenerate,
                Some("no gradient noise and no weight-decay pull along this orbit: every point of it is stationary (θ left unchanged)".into()),
                c,
                0,
                0.0,
            )
        }
        (false, true) => return mk(f64::INFINITY, SolveStatus::PlusInfinity, Some(infinite_reason(flow, true)), flow.charge_limit(true), 0, 0.0),
        (true, false) => return mk(f64::NEG_INFINITY, SolveStatus::MinusInfinity, Some(infinite_reason(flow, false)), flow.charge_limit(false), 0, 0.0),
        _ => {}
    }
    let (lambda, iters, h, ok) = root(lp, 0.0);
    let status = if ok {
        SolveStatus::Converged
    } else {
        SolveStatus::NotConverged
    };
    let reason = (!ok).then(|| "iteration limit reached".to_string());
    mk(
        lambda,
        status,
        reason,
        flow.charge(lambda),
        iters,
        (h / 2.0).tanh().abs(),
    )
}

/// Safeguarded Newton on the strictly decreasing `h`, started at `start`. Returns
/// `(λ, iterations, h(λ), converged)`.
pub(crate) fn root(lp: &LogParts, start: f64) -> (f64, usize, f64, bool) {
    let m1 = lp.one.iter().map(|t| t.1).fold(f64::INFINITY, f64::min);
    let m2 = lp.two.iter().map(|t| t.1).fold(f64::INFINITY, f64::min);
    let slope_min = 2.0 * (m1 + m2);
    let (h0, d0) = lp.h(start);
    if h0 == 0.0 {
        return (start, 0, 0.0, true);
    }
    // h(λ) ≤ h(start) − slope_min (λ − start) for λ > start, and mirrored: a guaranteed bracket.
    let (mut lo, mut hi) = if h0 > 0.0 {
        (start, start + h0 / slope_min)
    } else {
        (start + h0 / slope_min, start)
    };
    let (mut lam, mut h, mut d) = (start, h0, d0);
    for it in 1..=200 {
        let mut next = lam - h / d;
        if !(next > lo && next < hi && next.is_finite()) {
            next = 0.5 * (lo + hi);
        }
        let (hn, dn) = lp.h(next);
        if hn > 0.0 {
            lo = next;
        } else if hn < 0.0 {
            hi = next;
        }
        let step = (next - lam).abs();
        lam = next;
        h = hn;
        d = dn;
        if hn == 0.0
            || hn.abs() <= 1e-15
            || step <= 1e-15 * (1.0 + lam.abs())
            || hi - lo <= 4.0 * f64::EPSILON * (1.0 + lam.abs())
        {
            return (lam, it, h, true);
        }
    }
    (lam, 200, h, false)
}
