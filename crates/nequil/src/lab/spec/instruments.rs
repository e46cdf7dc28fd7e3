//! The instrument tables of a spec (`[probes.charges]`, `[probes.hessian]`, `[probes.sharpness]`,
//! `[probes.equilibrium]`): their schema, their validation against the model and the data, and
//! the probes they build ([`Spec::probes`]).
//!
//! Each table is optional; a present table (even an empty one) adds its instrument. Each has its
//! own `every` / `log_points` schedule (default: the run's schedule, `probes.every` /
//! `probes.log_points`); the log gains a row at every step of every schedule, and an instrument
//! writes `nan` in the rows that are not on its own schedule. Validation happens in
//! [`Spec::build`], before anything is run or written; errors name the dotted key.

use super::{choice, Built, ProbeSpec, Spec};
use crate::core::curvature::LanczosOptions;
use crate::core::data::Source;
use crate::core::equilibrium::Time;
use crate::core::footprint::Footprint;
use crate::core::models::Model;
use crate::core::symmetry::{catalog, catalog_families, catalog_names, catalog_symmetry};
use crate::instruments::{
    as_two_layer_linear, has_exact_two_layer_moments, ChargeProbe, CurvatureData, FamilyProbe, HessianTraceProbe,
    MomentSource, PaperSharpnessProbe, TopEigenProbe, TwoLayerEquilibriumProbe,
};
use crate::train::{Probe, Schedule};
use crate::{invalid, Result};
use serde::{Deserialize, Serialize};

choice!(
    /// Where an instrument's data come from (`probes.hessian.data`, `probes.sharpness.data`,
    /// `probes.equilibrium.data`).
    DataChoice {
        /// The exact population quantity where it is known, else the evaluation set.
        Auto = "auto",
        /// The run's evaluation set.
        Eval = "eval",
        /// The exact population quantity (an error where it is not known).
        Population = "population",
    }
);

choice!(
    /// `probes.charges.time`.
    TimeChoice {
        /// The drift per unit time `Ċ = −4γC + (η/S)Tr[AΣ]` and the SDE's C*.
        Continuous = "continuous",
        /// The exact expected change per step and the discrete-time C*.
        Discrete = "discrete",
    }
);

/// Largest number of generator entries (symmetries × parameters) `[probes.charges]` may hold
/// (2²⁷ values, 1 GiB): every catalog symmetry is a diagonal of P values, and a wide net has one
/// per hidden neuron.
pub const MAX_CHARGE_ENTRIES: usize = 1 << 27;

/// `[probes.charges]`: the Noether charges of catalog symmetries ([`ChargeProbe`]). Five columns
/// per symmetry: `{name}/C`, `{name}/tr_a_sigma`, `{name}/drift`, `{name}/C_star`,
/// `{name}/C_minus_C_star`, computed on the run's evaluation set.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChargesSpec {
    /// Record every k steps (exclusive with `log_points`; default: the run's schedule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    /// Record at about this many log-spaced steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_points: Option<usize>,
    /// Which symmetries: `"all"` (default), catalog names (`"neuron.0.3"`, `"layer_pair.0"`,
    /// `"scale"`, `"scale.layers.0.weight"`), or a prefix ending in `*` (`"neuron.0.*"`).
    #[serde(default = "all_symmetries")]
    pub symmetries: Vec<String>,
    /// `"continuous"` (default): drift `Ċ = −4γC + (η/S)Tr[AΣ]` per unit time and the
    /// continuous-time C*; `"discrete"`: the exact expected change per step `E[ΔC]` and the
    /// discrete-time C*.
    #[serde(default = "continuous")]
    pub time: TimeChoice,
    /// Matrix families to track as a whole (default none): names (`"qk.0.1.0"`, `"rotation.0"`),
    /// prefixes ending in `*` (`"qk.*"`) or `"all"`; four columns each
    /// ([`crate::instruments::FamilyProbe`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub families: Vec<String>,
}

fn all_symmetries() -> Vec<String> {
    vec!["all".into()]
}
fn continuous() -> TimeChoice {
    TimeChoice::Continuous
}

impl Default for ChargesSpec {
    fn default() -> Self {
        ChargesSpec {
            every: None,
            log_points: None,
            symmetries: all_symmetries(),
            time: continuous(),
            families: vec![],
        }
    }
}

/// `[probes.hessian]`: the Hessian of the mean loss (no ½, without weight decay unless
/// `weight_decay = true`): its trace ([`HessianTraceProbe`]: `hess_trace`, `hess_trace_se`) and
/// its top eigenvalue with the stability margin ([`TopEigenProbe`]: `lambda_max`,
/// `eta_lambda_max`, `lambda_max_residual`, `lanczos_iterations`, `lanczos_converged`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HessianSpec {
    /// Record every k steps (exclusive with `log_points`; default: the run's schedule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    /// Record at about this many log-spaced steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_points: Option<usize>,
    /// Record the trace (default true).
    #[serde(default = "yes")]
    pub trace: bool,
    /// Record the top eigenvalue and `η·λ_max` (default true).
    #[serde(default = "yes")]
    pub top_eigen: bool,
    /// `"auto"` (default: the exact population Hessian for a deep linear net on online Gaussian
    /// data with an identity or linear teacher, else the evaluation set), `"eval"` or
    /// `"population"`.
    #[serde(default = "auto")]
    pub data: DataChoice,
    /// Use at most the first n samples of the evaluation set (default: all of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_samples: Option<usize>,
    /// Measure `H + 2γI`, the Hessian of the loss with its weight-decay term (default false).
    #[serde(default)]
    pub weight_decay: bool,
    /// The trace is exact (P Hessian-vector products) when P ≤ this (default 512); else Hutchinson.
    #[serde(default = "default_exact_max")]
    pub exact_max: usize,
    /// Number of Rademacher vectors of the Hutchinson estimate (default 32, at least 2).
    #[serde(default = "default_hutchinson")]
    pub hutchinson: usize,
    /// Most Lanczos steps (Hessian-vector products) for λ_max (default 80).
    #[serde(default = "default_lanczos_iter")]
    pub lanczos_iter: usize,
    /// Lanczos convergence tolerance, relative to ‖H‖ (default 1e-6).
    #[serde(default = "default_lanczos_tol")]
    pub lanczos_tol: f64,
}

fn yes() -> bool {
    true
}
fn auto() -> DataChoice {
    DataChoice::Auto
}
fn default_exact_max() -> usize {
    512
}
fn default_hutchinson() -> usize {
    32
}
fn default_lanczos_iter() -> usize {
    80
}
fn default_lanczos_tol() -> f64 {
    1e-6
}

impl Default for HessianSpec {
    fn default() -> Self {
        HessianSpec {
            every: None,
            log_points: None,
            trace: true,
            top_eigen: true,
            data: auto(),
            max_samples: None,
            weight_decay: false,
            exact_max: default_exact_max(),
            hutchinson: default_hutchinson(),
            lanczos_iter: default_lanczos_iter(),
            lanczos_tol: default_lanczos_tol(),
        }
    }
}

/// `[probes.sharpness]`: the paper's sharpness `S = d_y Tr[WΣ_xWᵀ] + ‖U‖_F² Tr Σ_x` of a two-layer
/// linear net (column `paper_sharpness`; half the true Hessian trace), and
/// `[probes.equilibrium]`: the distance of a two-layer linear net to its predicted noise
/// equilibrium ([`TwoLayerEquilibriumProbe`]: `pred_norm2_U`, `pred_norm2_W`,
/// `alignment_residual`, `dist_to_equilibrium`, `pred_paper_sharpness`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TwoLayerSpec {
    /// Record every k steps (exclusive with `log_points`; default: the run's schedule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    /// Record at about this many log-spaced steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_points: Option<usize>,
    /// Where the data moments come from: `"auto"` (default: exact moments of the distribution for
    /// online data, the training set for fixed data), `"eval"` or `"population"`.
    #[serde(default = "auto")]
    pub data: DataChoice,
}

impl Default for TwoLayerSpec {
    fn default() -> Self {
        TwoLayerSpec {
            every: None,
            log_points: None,
            data: auto(),
        }
    }
}

/// A validated instrument, ready to become a probe.
enum Planned {
    /// Built as it is (cheap to construct).
    Ready(Box<dyn Probe>),
    /// A [`ChargeProbe`] for these catalog names (its generators are built only when it runs).
    Charges {
        names: Vec<String>,
        time: Time,
        schedule: Option<Schedule>,
    },
}

/// The catalog's matrix families named by `wanted` (names, prefixes ending in `*`, or `"all"`).
fn select_families(model: &Model, wanted: &[String]) -> Result<Vec<crate::core::symmetry::MatrixFamily>> {
    let all = catalog_families(model);
    let mut out: Vec<crate::core::symmetry::MatrixFamily> = vec![];
    for w in wanted {
        let hits: Vec<_> = all
            .iter()
            .filter(|f| w == "all" || f.name == *w || w.strip_suffix('*').is_some_and(|p| f.name.starts_with(p)))
            .cloned()
            .collect();
        if hits.is_empty() {
            let names: Vec<&str> = all.iter().map(|f| f.name.as_str()).collect();
            return Err(invalid!(
                "probes.charges.families: {} has no matrix family matching \"{w}\" (it has: {})",
                model.describe(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ));
        }
        for h in hits {
            if !out.iter().any(|f| f.name == h.name) {
                out.push(h);
            }
        }
    }
    Ok(out)
}

fn schedule(key: &str, every: Option<u64>, log_points: Option<usize>) -> Result<Option<Schedule>> {
    match (every, log_points) {
        (Some(_), Some(_)) => Err(invalid!("{key}: give either `every` or `log_points`, not both")),
        (Some(0), _) => Err(invalid!("{key}.every: must be ≥ 1")),
        (Some(k), None) => Ok(Some(Schedule::Every(k))),
        (None, Some(n)) if n < 2 => Err(invalid!("{key}.log_points: must be ≥ 2")),
        (None, Some(n)) => Ok(Some(Schedule::LogSpaced(n))),
        (None, None) => Ok(None),
    }
}

fn is_deep_linear(model: &Model) -> bool {
    model.as_linear_chain().is_some()
}

fn two_layer(key: &str, what: &str, model: &Model) -> Result<()> {
    model.loss_kind().mse_only(&format!("{key}: {what}"))?;
    as_two_layer_linear(model).map(|_| ()).map_err(|_| {
        invalid!(
            "{key}: {what} is defined for a two-layer linear net U W only (model.kind = \"linear\", \
                 model.widths = [d_x, h, d_y]), got {}; remove the table",
            model.describe()
        )
    })
}

/// A compact listing of catalog names: the neurons of each layer as a range.
fn summarize(names: &[String]) -> String {
    let mut parts: Vec<String> = vec![];
    let mut i = 0;
    while i < names.len() {
        let layer_of = |n: &str| {
            n.strip_prefix("neuron.")
                .and_then(|r| r.split_once('.'))
                .map(|(l, _)| l.to_string())
        };
        match layer_of(&names[i]) {
            Some(l) => {
                let j = (i..names.len())
                    .find(|&j| layer_of(&names[j]).as_deref() != Some(l.as_str()))
                    .unwrap_or(names.len());
                parts.push(if j - i == 1 {
                    names[i].clone()
                } else {
                    format!("neuron.{l}.0 … neuron.{l}.{}", j - i - 1)
                });
                i = j;
            }
            None => {
                parts.push(names[i].clone());
                i += 1;
            }
        }
    }
    parts.join(", ")
}

fn select_symmetries(model: &Model, wanted: &[String]) -> Result<Vec<String>> {
    let key = "probes.charges.symmetries";
    let avail = catalog_names(model);
    if avail.is_empty() {
        let notes = catalog(model).notes.join("; ");
        return Err(invalid!(
            "probes.charges: {} has no exponential symmetry in the catalog ({notes}); remove the table",
            model.describe()
        ));
    }
    if wanted.is_empty() {
        return Err(invalid!(
            "{key}: empty; give [\"all\"], catalog names or prefixes ending in *"
        ));
    }
    let help = || {
        format!(
            "{} has: {} (or \"all\", or a prefix ending in *, e.g. \"neuron.0.*\")",
            model.describe(),
            summarize(&avail)
        )
    };
    let mut out: Vec<String> = vec![];
    for w in wanted {
        let matched: Vec<&String> = if w == "all" {
            avail.iter().collect()
        } else if let Some(prefix) = w.strip_suffix('*') {
            avail.iter().filter(|n| n.starts_with(prefix)).collect()
        } else {
            avail.iter().filter(|n| *n == w).collect()
        };
        if matched.is_empty() {
            return Err(invalid!("{key}: no catalog symmetry matches \"{w}\"; {}", help()));
        }
        for m in matched {
            if !out.contains(m) {
                out.push(m.clone());
            }
        }
    }
    let entries = out.len().saturating_mul(model.n_params());
    if entries > MAX_CHARGE_ENTRIES {
        return Err(invalid!(
            "{key}: {} symmetries × {} parameters would hold {:.1} GiB of generators; select fewer \
             (e.g. [\"layer_pair.*\"] or a few neurons)",
            out.len(),
            model.n_params(),
            entries as f64 * 8.0 / (1u64 << 30) as f64
        ));
    }
    Ok(out)
}

fn curvature_data(v: DataChoice) -> CurvatureData {
    match v {
        DataChoice::Auto => CurvatureData::Auto,
        DataChoice::Eval => CurvatureData::Eval,
        DataChoice::Population => CurvatureData::Population,
    }
}

/// The probes of a `[probes.charges]` table alone, for `model`: what a spec with this table
/// records (the same columns, names and meanings), for front ends that call the probes themselves
/// (the Python package's training-loop monitor). The table's schedule keys are kept on the probes;
/// errors name the `probes.charges.*` key.
pub fn charges_probes(c: &ChargesSpec, model: &Model) -> Result<Vec<Box<dyn Probe>>> {
    plan_charges(c, model)?.into_iter().map(|p| ready(p, model)).collect()
}

fn ready(p: Planned, model: &Model) -> Result<Box<dyn Probe>> {
    match p {
        Planned::Ready(b) => Ok(b),
        Planned::Charges { names, time, schedule } => {
            let syms = names
                .iter()
                .map(|n| catalog_symmetry(model, n))
                .collect::<Result<Vec<_>>>()?;
            let mut probe = ChargeProbe::new(syms);
            if time == Time::Discrete {
                probe = probe.discrete();
            }
            if let Some(s) = schedule {
                probe = probe.with_schedule(s);
            }
            Ok(Box::new(probe) as Box<dyn Probe>)
        }
    }
}

fn plan_charges(c: &ChargesSpec, model: &Model) -> Result<Vec<Planned>> {
    let mut out = vec![];
    {
        let key = "probes.charges";
        let schedule = schedule(key, c.every, c.log_points)?;
        let time = match c.time {
            TimeChoice::Discrete => Time::Discrete,
            TimeChoice::Continuous => Time::Continuous,
        };
        // `symmetries = []` is allowed when only families are tracked.
        if !c.symmetries.is_empty() || c.families.is_empty() {
            let names = select_symmetries(model, &c.symmetries)?;
            out.push(Planned::Charges {
                names,
                time,
                schedule: schedule.clone(),
            });
        }
        if !c.families.is_empty() {
            let mut probe = FamilyProbe::new(select_families(model, &c.families)?);
            if time == Time::Discrete {
                probe = probe.discrete();
            }
            if let Some(s) = schedule {
                probe = probe.with_schedule(s);
            }
            out.push(Planned::Ready(Box::new(probe)));
        }
    }
    Ok(out)
}

/// The validated instruments of `p`. `source` is `None` when the data are not built yet (for the
/// footprint, [`footprint`]): the checks against the data are then left to the later call.
fn plan(p: &ProbeSpec, model: &Model, source: Option<&Source>, seed: u64) -> Result<Vec<Planned>> {
    let mut out = vec![];
    if let Some(c) = &p.charges {
        out.extend(plan_charges(c, model)?);
    }
    if let Some(h) = &p.hessian {
        let key = "probes.hessian";
        let schedule = schedule(key, h.every, h.log_points)?;
        if !h.trace && !h.top_eigen {
            return Err(invalid!(
                "{key}: trace and top_eigen are both false, so it records nothing; remove the table"
            ));
        }
        let data = curvature_data(h.data);
        if data == CurvatureData::Population {
            model
                .loss_kind()
                .mse_only("probes.hessian.data: \"population\" (the exact population Hessian of a deep linear net)")?;
            if !is_deep_linear(model) {
                return Err(invalid!(
                    "probes.hessian.data: \"population\" (the exact population Hessian) needs a deep linear net \
                     (model.kind = \"linear\"), got {}; use \"auto\" or \"eval\"",
                    model.describe()
                ));
            }
            if source.is_some_and(|s| !has_exact_two_layer_moments(s)) {
                return Err(invalid!(
                    "probes.hessian.data: \"population\" needs Gaussian data with an identity or linear teacher \
                     (the data's distribution is unknown or has a non-linear teacher); use \"auto\" or \"eval\""
                ));
            }
        }
        if h.max_samples == Some(0) {
            return Err(invalid!("probes.hessian.max_samples: must be ≥ 1"));
        }
        if h.hutchinson < 2 {
            return Err(invalid!("probes.hessian.hutchinson: must be ≥ 2, got {}", h.hutchinson));
        }
        // Hutchinson's estimate runs only where P > exact_max; more probe vectors than P cost more
        // than the exact trace.
        let p = model.n_params();
        if p > h.exact_max && h.hutchinson > p {
            return Err(invalid!(
                "probes.hessian.hutchinson: {} probe vectors for {p} parameters cost more Hessian-vector products                  than the exact trace; give at most {p}, or exact_max ≥ {p} for the exact trace",
                h.hutchinson
            ));
        }
        if h.lanczos_iter == 0 {
            return Err(invalid!("probes.hessian.lanczos_iter: must be ≥ 1"));
        }
        if !(h.lanczos_tol.is_finite() && h.lanczos_tol > 0.0) {
            return Err(invalid!(
                "probes.hessian.lanczos_tol: must be finite and > 0, got {}",
                h.lanczos_tol
            ));
        }
        if h.trace {
            let mut t = HessianTraceProbe::new()
                .with_data(data)
                .with_weight_decay(h.weight_decay)
                .with_exact_max(h.exact_max)
                .with_probes(h.hutchinson)
                .with_seed(seed);
            if let Some(n) = h.max_samples {
                t = t.with_max_samples(n);
            }
            if let Some(s) = &schedule {
                t = t.with_schedule(s.clone());
            }
            out.push(Planned::Ready(Box::new(t)));
        }
        if h.top_eigen {
            let mut e = TopEigenProbe::new()
                .with_data(data)
                .with_weight_decay(h.weight_decay)
                .with_lanczos(LanczosOptions {
                    max_iter: h.lanczos_iter,
                    tol: h.lanczos_tol,
                    seed,
                    ..LanczosOptions::default()
                });
            if let Some(n) = h.max_samples {
                e = e.with_max_samples(n);
            }
            if let Some(s) = schedule {
                e = e.with_schedule(s);
            }
            out.push(Planned::Ready(Box::new(e)));
        }
    }
    if let Some(s) = &p.sharpness {
        let key = "probes.sharpness";
        let schedule = schedule(key, s.every, s.log_points)?;
        two_layer(key, "the paper's sharpness S = d_y Tr[WΣ_xWᵀ] + ‖U‖² TrΣ_x", model)?;
        let data = curvature_data(s.data);
        if data == CurvatureData::Population && source.is_some_and(|s| s.distribution().is_none()) {
            return Err(invalid!(
                "probes.sharpness.data: \"population\" needs the data's distribution (Gaussian data); use \"auto\" or \"eval\""
            ));
        }
        let mut probe = PaperSharpnessProbe::new().with_data(data);
        if let Some(s) = schedule {
            probe = probe.with_schedule(s);
        }
        out.push(Planned::Ready(Box::new(probe)));
    }
    if let Some(e) = &p.equilibrium {
        let key = "probes.equilibrium";
        let schedule = schedule(key, e.every, e.log_points)?;
        two_layer(key, "the closed-form noise equilibrium (Thm 5.2)", model)?;
        let moments = match e.data {
            DataChoice::Auto => MomentSource::Auto,
            DataChoice::Eval => MomentSource::Eval,
            DataChoice::Population => MomentSource::Population,
        };
        if moments == MomentSource::Population && source.is_some_and(|s| !has_exact_two_layer_moments(s)) {
            return Err(invalid!(
                "probes.equilibrium.data: \"population\" needs Gaussian data with an identity or linear teacher \
                 (the data's distribution is unknown or has a non-linear teacher); use \"auto\" or \"eval\""
            ));
        }
        let mut probe = TwoLayerEquilibriumProbe::new().with_moments(moments);
        if let Some(s) = schedule {
            probe = probe.with_schedule(s);
        }
        out.push(Planned::Ready(Box::new(probe)));
    }
    Ok(out)
}

/// Checks the instrument tables against the model and the data (called by [`Spec::build`]).
pub(crate) fn validate(p: &ProbeSpec, model: &Model, source: &Source, seed: u64) -> Result<()> {
    plan(p, model, Some(source), seed).map(|_| ())
}

/// The memory the instruments of `p` will need on `model` with an evaluation set of `eval_n`
/// samples: each probe's declaration ([`Probe::footprint`]), its parts named by the probe's spec
/// key. Checks the tables against the model (not yet against the data) and builds nothing large:
/// the charges' generators are counted, not built.
pub(crate) fn footprint(p: &ProbeSpec, model: &Model, eval_n: usize, seed: u64) -> Result<Footprint> {
    let mut f = Footprint::new();
    for q in plan(p, model, None, seed)? {
        match q {
            Planned::Ready(b) => f.extend_named(&b.name(), b.footprint(model, eval_n)),
            Planned::Charges { names, .. } => f.extend_named(
                "probes.charges",
                ChargeProbe::catalog_footprint(model, names.len(), eval_n),
            ),
        }
    }
    Ok(f)
}

/// [`validate`], returning the number of columns the instruments add to the log.
pub(crate) fn columns(p: &ProbeSpec, model: &Model, source: &Source, seed: u64) -> Result<usize> {
    Ok(plan(p, model, Some(source), seed)?
        .iter()
        .map(|q| match q {
            Planned::Ready(b) => b.columns().len(),
            Planned::Charges { names, .. } => 5 * names.len(),
        })
        .sum())
}

/// The instruments' own schedules (`None`: the run's), for sizing the log.
pub(crate) fn schedules(p: &ProbeSpec) -> Result<Vec<Option<Schedule>>> {
    Ok(vec![
        match &p.charges {
            Some(c) => schedule("probes.charges", c.every, c.log_points)?,
            None => None,
        },
        match &p.hessian {
            Some(h) => schedule("probes.hessian", h.every, h.log_points)?,
            None => None,
        },
        match &p.sharpness {
            Some(s) => schedule("probes.sharpness", s.every, s.log_points)?,
            None => None,
        },
        match &p.equilibrium {
            Some(e) => schedule("probes.equilibrium", e.every, e.log_points)?,
            None => None,
        },
    ])
}

impl Spec {
    /// The instruments of the spec's `[probes.*]` tables as probes for [`crate::train::train`], in
    /// the order charges, Hessian trace, top eigenvalue, paper sharpness, equilibrium (the order of
    /// their columns in the log). `built` is what [`Spec::build`] made of this spec. Errors (a
    /// symmetry the model does not have, an instrument that does not apply to the model or the
    /// data) name the key; [`Spec::build`] has already reported them.
    pub fn probes(&self, built: &Built) -> Result<Vec<Box<dyn Probe>>> {
        plan(&self.probes, &built.model, Some(&built.source), self.seed)?
            .into_iter()
            .map(|p| ready(p, &built.model))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_group_neurons_by_layer() {
        let names: Vec<String> = ["neuron.0.0", "neuron.0.1", "neuron.0.2", "neuron.1.0", "layer_pair.0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(summarize(&names), "neuron.0.0 … neuron.0.2, neuron.1.0, layer_pair.0");
    }
}
