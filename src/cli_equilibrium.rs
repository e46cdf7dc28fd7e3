//! `nequil equilibrium`: the noise equilibrium of every catalogued symmetry of a trained model
//! (weights from PyTorch or nequil, data from NumPy), and the rebalanced weights.
//!
//! Everything is read and checked before anything is computed, and the rebalanced weights are
//! written (atomically) only after the whole analysis has succeeded: on any bad input the command
//! exits with status 2, names the file, tensor or key, and writes nothing.

use clap::Args;
use nequil::core::equilibrium::{rebalance_with, RebalanceReport};
use nequil::core::models::Model;
use nequil::core::parallel::with_threads;
use nequil::lab::inputs::{data_for, flow_params, Keys};
use nequil::lab::io::{load_weights, named_tensors};
use nequil::lab::io::{read_npy, read_npz, write_safetensors};
use nequil::lab::spec::load_model;
use nequil::{invalid, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `nequil equilibrium`.
#[derive(Args)]
pub struct EquilibriumArgs {
    /// The model: a run spec (its `[model]` table is used) or a TOML file with just a `[model]` table.
    #[arg(long, value_name = "MODEL.toml")]
    model: PathBuf,
    /// The weights (safetensors) by PyTorch state-dict name, saved as they are: with kind =
    /// "sequential", nn.Sequential's own names (`0.weight`, `2.bias`, …); with the other kinds,
    /// `layers.{l}.weight` `[out, in]` and `layers.{l}.bias` `[out]`. E.g.
    /// safetensors.torch.save_file(net.state_dict(), path), or nequil run's final.safetensors.
    #[arg(long, value_name = "W.safetensors")]
    weights: PathBuf,
    /// Inputs, an .npy array of shape `[n, d_in]` (or `[n, …]` with d_in features per sample).
    #[arg(
        long,
        value_name = "X.npy",
        required_unless_present = "npz",
        conflicts_with = "npz",
        requires = "y"
    )]
    x: Option<PathBuf>,
    /// Targets, an .npy array of shape `[n, d_out]` (or `[n]` when d_out = 1); with
    /// cross-entropy, integer class labels `[n]` (`[n, T]` for a sequence model's `[T, K]` logits).
    #[arg(long, value_name = "Y.npy", requires = "x")]
    y: Option<PathBuf>,
    /// An .npz archive holding inputs and targets (instead of --x and --y).
    #[arg(long, value_name = "D.npz")]
    npz: Option<PathBuf>,
    /// Key of the inputs in the --npz archive [default: x].
    #[arg(long, value_name = "KEY", requires = "npz")]
    x_key: Option<String>,
    /// Key of the targets in the --npz archive [default: y].
    #[arg(long, value_name = "KEY", requires = "npz")]
    y_key: Option<String>,
    /// Learning rate η of the SGD whose noise equilibrium is asked for (> 0).
    #[arg(long, value_name = "η")]
    lr: f64,
    /// Batch size S (batches drawn with replacement: gradient covariance Σ/S).
    #[arg(long, value_name = "S")]
    batch_size: usize,
    /// Weight decay γ (the loss carries γ‖θ‖²).
    #[arg(long, value_name = "γ", default_value_t = 0.0)]
    weight_decay: f64,
    /// Solve the discrete-time equilibrium `E[ΔC] = 0` per step (Theorem D.1) instead of the
    /// continuous-time `4γC = (η/S)Tr[AΣ]`.
    #[arg(long)]
    discrete: bool,
    /// Print the report as JSON on stdout (λ* = ±∞ as the strings "inf"/"-inf", with the reason).
    #[arg(long)]
    json: bool,
    /// Write the rebalanced weights here (safetensors, same names and shapes, f64), atomically.
    #[arg(long, value_name = "REBALANCED.safetensors")]
    out: Option<PathBuf>,
    /// Also write the per-sample gradient statistics at the given weights (safetensors, f64):
    /// `mean.{name}` (the mean gradient ∇L) and `var.{name}` (the per-parameter variance diag Σ,
    /// weight 1/n), for every tensor, by PyTorch name.
    #[arg(long, value_name = "STATS.safetensors")]
    stats: Option<PathBuf>,
    /// Threads for the large products behind the statistics and curvature (the results are
    /// bit-identical for every count).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: u16,
    /// The per-sample loss, in place of the model file's `model.loss`: `mse` (‖f(x) − y‖², summed
    /// over outputs) or `cross-entropy` (logits and integer class labels).
    #[arg(long, value_name = "LOSS")]
    loss: Option<String>,
}

/// Loads the data and checks it against the model; returns `(x, y, n)`.
fn load_data(a: &EquilibriumArgs, model: &Model) -> Result<(Vec<f64>, Vec<f64>, usize)> {
    let (x, xp, y, yp) = match (&a.npz, &a.x, &a.y) {
        (Some(p), None, None) => {
            let arrays = read_npz(p)?;
            let get = |k: &str| {
                arrays
                    .iter()
                    .find(|(name, _)| name == k)
                    .map(|(_, arr)| arr.clone())
                    .ok_or_else(|| {
                        let names: Vec<&str> = arrays.iter().map(|(n, _)| n.as_str()).collect();
                        invalid!(
                            "{}: no array `{k}` in the archive (it holds: {}); choose with --x-key/--y-key",
                            p.display(),
                            names.join(", ")
                        )
                    })
            };
            let x = get(a.x_key.as_deref().unwrap_or("x"))?;
            let y = get(a.y_key.as_deref().unwrap_or("y"))?;
            (x, p.clone(), y, p.clone())
        }
        (None, Some(xp), Some(yp)) => (read_npy(xp)?, xp.clone(), read_npy(yp)?, yp.clone()),
        _ => return Err(invalid!("data: give either --x and --y, or --npz")),
    };
    let ds = data_for(model, &x, &xp.display().to_string(), &y, &yp.display().to_string())?;
    Ok((ds.x, ds.y, ds.n))
}

/// The JSON report: the library's ([`RebalanceReport::to_json`]) with the file names of this
/// command.
fn json_report(r: &RebalanceReport, a: &EquilibriumArgs) -> serde_json::Value {
    let mut v = r.to_json();
    v["weights"] = json!(a.weights.display().to_string());
    v["out"] = json!(a.out.as_ref().map(|p| p.display().to_string()));
    v["summary"] = json!(r.summary_line(a.out.as_ref().map(|p| p.display().to_string()).as_deref()));
    v
}

/// Runs `nequil equilibrium`.
pub fn equilibrium(a: EquilibriumArgs) -> Result<ExitCode> {
    let params = flow_params(a.lr, a.batch_size, a.weight_decay, a.discrete, Keys::FLAGS)?;
    let model = load_model(&a.model)?;
    let model = match &a.loss {
        Some(l) => model.with_loss(nequil::core::loss::Loss::parse(l, "--loss")?, "--loss")?,
        None => model,
    };
    // The analysis's own footprint (the catalog's generators), before the weights and data are read.
    nequil::lab::resources::check_equilibrium(&model, 256, &format!("model file {}", a.model.display()))?;
    let theta = load_weights(&a.weights, &model)?;
    let (x, y, n) = load_data(&a, &model)?;
    let (report, stats) = with_threads(a.threads.into(), || {
        let report = rebalance_with(&model, &theta, &x, &y, n, &params)?;
        let stats = match &a.stats {
            Some(_) => {
                let mut ws = model.workspace(n.min(256));
                Some(nequil::core::stats::grad_stats(&model, &theta, &x, &y, n, &mut ws))
            }
            None => None,
        };
        Result::Ok((report, stats))
    })?;
    // Everything has been checked and computed: only now is anything written (atomically).
    if let (Some(path), Some(st)) = (&a.stats, &stats) {
        let var = st.variance();
        let mut tensors = vec![];
        for b in model.layout().blocks() {
            tensors.push((format!("mean.{}", b.name), b.shape.clone(), &st.mean[b.range()]));
        }
        for b in model.layout().blocks() {
            tensors.push((format!("var.{}", b.name), b.shape.clone(), &var[b.range()]));
        }
        let mut meta = BTreeMap::new();
        meta.insert("nequil.model".to_string(), model.describe());
        meta.insert(
            "nequil.stats".to_string(),
            format!("per-sample gradients of ‖f(x) − y‖² over n = {n} samples, weight 1/n"),
        );
        write_safetensors(path, &tensors, Some(meta))?;
    }
    if let Some(out) = &a.out {
        let mut meta = BTreeMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        meta.insert("nequil.model".to_string(), model.describe());
        meta.insert(
            "nequil.rebalanced".to_string(),
            format!(
                "noise equilibrium ({} time) at eta={}, batch_size={}, weight_decay={} of {}",
                if a.discrete { "discrete" } else { "continuous" },
                a.lr,
                a.batch_size,
                a.weight_decay,
                a.weights.display()
            ),
        );
        write_safetensors(out, &named_tensors(&model, &report.theta), Some(meta))?;
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json_report(&report, &a)).expect("json")
        );
    } else {
        print!(
            "{}",
            report.table(a.out.as_ref().map(|p| p.display().to_string()).as_deref())
        );
    }
    Ok(ExitCode::SUCCESS)
}
