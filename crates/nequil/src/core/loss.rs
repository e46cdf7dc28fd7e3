//! The per-sample loss ℓ(θ, (x, y)) a model's outputs are scored by, its output gradient and its
//! output Hessian (book `theory/conventions.md#losses`).
//!
//! * [`Loss::Mse`] (the default, the paper's): `ℓ = ‖f(x) − y‖²`, summed over the outputs, no ½.
//!   Targets are `d_out` real values per sample. Output gradient `δ = 2(f − y)`, output Hessian
//!   `2I`.
//! * [`Loss::CrossEntropy`]: the model's output is read as logits over its last axis: a model with
//!   output shape `[K]` gives one distribution over K classes, one with output shape `[T, K]` (a
//!   sequence model) one per position. Targets are integer class labels, one per position (`n` or
//!   `n × T` values, stored as `f64`). The per-sample loss is the mean over the T positions of
//!   `−log softmax(f_t)_{y_t}`, so a sequence is one sample (for Σ, the batch size S and the law),
//!   as a batch of sequences is drawn. Output gradient `δ_t = (p_t − e_{y_t})/T` with
//!   `p_t = softmax(f_t)`; output Hessian `(diag(p_t) − p_t p_tᵀ)/T`, block diagonal over positions
//!   and independent of the labels.
//!
//! The batch loss is the mean of ℓ over the batch for both (PyTorch's `nn.CrossEntropyLoss()`
//! with its default mean reduction, for `[n, K]` logits; `nn.MSELoss()` divides by the number of
//! output elements as well, so it is `ℓ/d_out` averaged).

use crate::{invalid, Result};

/// The per-sample loss (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Loss {
    /// `ℓ = ‖f(x) − y‖²` (sum over outputs, no ½).
    #[default]
    Mse,
    /// `ℓ = (1/T) Σ_t −log softmax(f_t)_{y_t}` over logits `f_t ∈ R^K` and integer labels.
    CrossEntropy,
}

impl Loss {
    /// The name in specs, commands and Python (`"mse"`, `"cross-entropy"`).
    pub fn name(self) -> &'static str {
        match self {
            Loss::Mse => "mse",
            Loss::CrossEntropy => "cross-entropy",
        }
    }

    /// Every allowed name, in order.
    pub const NAMES: &'static [&'static str] = &["mse", "cross-entropy"];

    /// The loss of a name, or an error naming `key` and the allowed values.
    pub fn parse(name: &str, key: &str) -> Result<Loss> {
        match name {
            "mse" => Ok(Loss::Mse),
            "cross-entropy" => Ok(Loss::CrossEntropy),
            _ => Err(invalid!(
                "{key}: unknown loss `{name}`, expected `mse` or `cross-entropy`"
            )),
        }
    }

    /// The error for an instrument or closed form that holds for the mean-squared error only,
    /// naming it (`what`): e.g. the two-layer linear equilibrium of Theorem 5.2.
    pub fn mse_only(self, what: &str) -> Result<()> {
        match self {
            Loss::Mse => Ok(()),
            Loss::CrossEntropy => Err(invalid!(
                "{what}: a closed form of the mean-squared error; it does not hold with loss = \"cross-entropy\""
            )),
        }
    }
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The class index of label `v` among `k` classes, if it is one (an integer in `0..k`).
#[inline]
pub fn class_of(v: f64, k: usize) -> Option<usize> {
    (v >= 0.0 && v < k as f64 && v.fract() == 0.0).then_some(v as usize)
}

/// Checks `labels` (integers in `0..k`); the error names `what`, the sample (`per_sample` labels
/// per sample) and the value.
pub fn check_labels(labels: &[f64], k: usize, per_sample: usize, what: &str) -> Result<()> {
    for (i, &v) in labels.iter().enumerate() {
        if class_of(v, k).is_none() {
            let at = if per_sample > 1 {
                format!("sample {}, position {}", i / per_sample, i % per_sample)
            } else {
                format!("sample {i}")
            };
            let why = if !v.is_finite() || v.fract() != 0.0 {
                "is not an integer"
            } else {
                "is out of range"
            };
            return Err(invalid!(
                "{what}: label {v} at {at} {why}: cross-entropy needs integer class labels in 0..{k} (the model has {k} logits)"
            ));
        }
    }
    Ok(())
}

/// Cross-entropy of one position: writes `δ = scale·(softmax(f) − e_y)` into `delta` and returns
/// `−log softmax(f)_y` (by the shifted log-sum-exp, exact for any finite logits). A label that is
/// not a class index (callers validate labels at their boundary) gives NaN.
#[inline]
pub fn cross_entropy_row(f: &[f64], label: f64, delta: &mut [f64], scale: f64) -> f64 {
    let k = f.len();
    let m = f.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut z = 0.0;
    for (d, &v) in delta.iter_mut().zip(f) {
        let e = (v - m).exp();
        *d = e;
        z += e;
    }
    let inv = 1.0 / z;
    for d in delta.iter_mut() {
        *d *= inv * scale;
    }
    match class_of(label, k) {
        Some(c) => {
            delta[c] -= scale;
            z.ln() + m - f[c]
        }
        None => {
            delta.fill(f64::NAN);
            f64::NAN
        }
    }
}

/// Cross-entropy of one position, without its gradient.
#[inline]
pub fn cross_entropy_value(f: &[f64], label: f64) -> f64 {
    let m = f.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = f.iter().map(|v| (v - m).exp()).sum();
    match class_of(label, f.len()) {
        Some(c) => z.ln() + m - f[c],
        None => f64::NAN,
    }
}

/// The output Hessian of one position's cross-entropy applied to `r`:
/// `out = scale·(diag(p) − ppᵀ) r = scale·p ⊙ (r − pᵀr)` with `p = softmax(f)`.
#[inline]
pub fn cross_entropy_hess_row(f: &[f64], r: &[f64], out: &mut [f64], scale: f64) {
    let m = f.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut z = 0.0;
    for (o, &v) in out.iter_mut().zip(f) {
        let e = (v - m).exp();
        *o = e;
        z += e;
    }
    let inv = 1.0 / z;
    let mut pr = 0.0;
    for (o, &rv) in out.iter_mut().zip(r) {
        *o *= inv;
        pr += *o * rv;
    }
    for (o, &rv) in out.iter_mut().zip(r) {
        *o *= scale * (rv - pr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for &n in Loss::NAMES {
            assert_eq!(Loss::parse(n, "loss").unwrap().name(), n);
        }
        let e = Loss::parse("hinge", "model.loss").unwrap_err().to_string();
        assert!(e.contains("model.loss") && e.contains("hinge"), "{e}");
    }

    #[test]
    fn labels_are_checked() {
        assert!(check_labels(&[0.0, 2.0, 1.0], 3, 1, "y").is_ok());
        let e = check_labels(&[0.0, 3.0], 3, 1, "data.y_path").unwrap_err().to_string();
        assert!(
            e.contains("data.y_path") && e.contains("sample 1") && e.contains("out of range"),
            "{e}"
        );
        let e = check_labels(&[0.0, 0.5], 3, 1, "y").unwrap_err().to_string();
        assert!(e.contains("not an integer"), "{e}");
        let e = check_labels(&[0.0, 1.0, -1.0, 0.0], 3, 2, "y").unwrap_err().to_string();
        assert!(e.contains("sample 1, position 0") && e.contains("out of range"), "{e}");
        assert!(check_labels(&[f64::NAN], 3, 1, "y").is_err());
    }

    /// The shifted log-sum-exp against the direct formula where the direct one is exact enough
    /// (logits of order one: both agree to a few ulps of the loss, 1e-14 relative), and against
    /// its own limit for logits far apart (1e3: the direct `exp` would overflow).
    #[test]
    fn value_and_gradient_row() {
        let f = [0.3, -1.2, 2.0, 0.1];
        let z: f64 = f.iter().map(|v: &f64| v.exp()).sum();
        let mut d = [0.0; 4];
        let l = cross_entropy_row(&f, 2.0, &mut d, 1.0);
        assert!((l - (z.ln() - 2.0)).abs() < 1e-14 * l.abs().max(1.0));
        assert_eq!(l, cross_entropy_value(&f, 2.0));
        // δ sums to zero (p sums to one) up to rounding.
        assert!(d.iter().sum::<f64>().abs() < 1e-15);
        let big = [1000.0, 0.0];
        let mut d2 = [0.0; 2];
        assert!((cross_entropy_row(&big, 1.0, &mut d2, 1.0) - 1000.0).abs() < 1e-12);
        assert!(cross_entropy_row(&big, 2.0, &mut d2, 1.0).is_nan());
    }
}
