//! The inputs of an analysis at given weights (`nequil equilibrium`, and the same functions of the
//! Python package): the SGD settings and the data arrays, checked with one set of messages.
//!
//! Every front end names its own arguments: the command line its flags (`--lr`), the Python
//! package its keyword arguments (`lr`). [`Keys`] carries that difference and nothing else, so a
//! person reads the same sentence whichever way they called.

use crate::core::data::Dataset;
use crate::core::equilibrium::FlowParams;
use crate::core::models::Model;
use crate::lab::io::{has_non_finite, NdArray};
use crate::lab::spec::dataset_from_arrays;
use crate::{invalid, Error, Result};

/// How a front end spells the SGD settings: `--lr`, `--batch-size`, `--weight-decay`,
/// `--discrete` for the command line ([`Keys::FLAGS`]), `lr`, `batch_size`, `weight_decay`,
/// `discrete` for Python ([`Keys::KWARGS`]).
#[derive(Clone, Copy, Debug)]
pub struct Keys {
    /// The learning rate η.
    pub lr: &'static str,
    /// The batch size S.
    pub batch_size: &'static str,
    /// The weight decay γ.
    pub weight_decay: &'static str,
    /// The discrete-time switch.
    pub discrete: &'static str,
}

impl Keys {
    /// The command line's flags.
    pub const FLAGS: Keys = Keys {
        lr: "--lr",
        batch_size: "--batch-size",
        weight_decay: "--weight-decay",
        discrete: "--discrete",
    };
    /// Python's keyword arguments.
    pub const KWARGS: Keys = Keys {
        lr: "lr",
        batch_size: "batch_size",
        weight_decay: "weight_decay",
        discrete: "discrete=True",
    };
}

/// The SGD whose noise equilibrium is asked for: learning rate η > 0, batch size S ≥ 1, weight
/// decay γ ≥ 0 (all finite) and, in discrete time, ηγ ≤ 1 (else the per-step decay factor
/// `(1 − 2ηγ)²` exceeds 1). Errors name the argument as `keys` spells it.
pub fn flow_params(lr: f64, batch_size: usize, weight_decay: f64, discrete: bool, keys: Keys) -> Result<FlowParams> {
    if !(lr.is_finite() && lr > 0.0) {
        return Err(invalid!(
            "{}: the learning rate must be finite and > 0, got {lr}",
            keys.lr
        ));
    }
    if batch_size == 0 {
        return Err(invalid!("{}: must be ≥ 1", keys.batch_size));
    }
    if !(weight_decay.is_finite() && weight_decay >= 0.0) {
        return Err(invalid!(
            "{}: must be finite and ≥ 0, got {weight_decay}",
            keys.weight_decay
        ));
    }
    if discrete && lr * weight_decay > 1.0 {
        return Err(invalid!(
            "{} needs lr × weight-decay ≤ 1 (got {}): the decay factor (1 − 2ηγ)² would exceed 1",
            keys.discrete,
            lr * weight_decay
        ));
    }
    Ok(if discrete {
        FlowParams::discrete(lr, batch_size, weight_decay)
    } else {
        FlowParams::continuous(lr, batch_size, weight_decay)
    })
}

/// Checks one data array against the model: `[n, width]` (or `[n, …]` with `width` values per
/// sample, or a vector of n values when `width = 1`), with `n` rows when `n` is given, at least one
/// sample, every value finite. `label` begins every message (a file name, or `x`/`y`); `what` is
/// `inputs` or `targets`.
pub fn check_array(a: &NdArray, label: &str, what: &str, width: usize, n: Option<usize>, model: &Model) -> Result<()> {
    let rows = a.shape.first().copied().unwrap_or(0);
    let per: usize = a.shape.iter().skip(1).product();
    let ok = !a.shape.is_empty() && per == width && n.is_none_or(|n| n == rows);
    if !ok {
        let want = match n {
            Some(n) => format!("[{n}, {width}]"),
            None => format!("[n, {width}]"),
        };
        return Err(invalid!(
            "{label}: {what} have shape {:?}, the model ({}) expects {want}{}",
            a.shape,
            model.describe(),
            if width == 1 { " (or a vector of n values)" } else { "" }
        ));
    }
    if rows == 0 {
        return Err(invalid!("{label}: {what}: no samples"));
    }
    if let Some(i) = has_non_finite(a) {
        return Err(invalid!(
            "{label}: {what}: non-finite value ({}) at sample {}, feature {}",
            a.data[i],
            i / width.max(1),
            i % width.max(1)
        ));
    }
    Ok(())
}

/// The dataset of inputs `x` and targets `y` for `model`, both checked by [`check_array`]
/// (`x_label`, `y_label` begin the messages); with cross-entropy the targets are `[n]` (or
/// `[n, T]`) integer class labels ([`Model::check_targets`]).
pub fn data_for(model: &Model, x: &NdArray, x_label: &str, y: &NdArray, y_label: &str) -> Result<Dataset> {
    let (dx, dy) = (model.d_in(), model.d_y());
    check_array(x, x_label, "inputs", dx, None, model)?;
    let n = x.shape[0];
    check_array(y, y_label, "targets", dy, Some(n), model)?;
    model.check_targets(&y.data, n, y_label)?;
    dataset_from_arrays(x, y, dx, dy).map_err(|e| match e {
        Error::Invalid(m) => invalid!("{x_label}: {m}"),
        e => e,
    })
}
