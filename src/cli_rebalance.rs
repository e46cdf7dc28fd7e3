//! `nequil rebalance SPEC.toml --out W.safetensors`: a spec's initialization moved to its noise
//! equilibrium (same function, same loss), as weights that `model.init_from` starts a run from.
//!
//! Everything is built and computed before anything is written; on bad input the command exits
//! with status 2 and names the key, file or flag.

use clap::Args;
use nequil::lab::io::named_tensors;
use nequil::lab::io::write_safetensors;
use nequil::lab::rebalance::{rebalance_spec, RebalanceOptions};
use nequil::lab::spec::Spec;
use nequil::Result;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `nequil rebalance`.
#[derive(Args)]
pub struct RebalanceArgs {
    /// The run spec: its model, initialization (or model.init_from), data, batch size, weight
    /// decay and optimizer (sgd, momentum or nesterov).
    spec: PathBuf,
    /// Write the rebalanced initialization here (safetensors, PyTorch names and shapes, f64),
    /// atomically.
    #[arg(long, short, value_name = "W.safetensors")]
    out: PathBuf,
    /// The learning rate η of the equilibrium [default: the spec's rate at its last step].
    #[arg(long, value_name = "η")]
    lr: Option<f64>,
    /// Online data: the size of the population sample the statistics are taken on
    /// [default: the spec's probes.eval_samples, 2048].
    #[arg(long, value_name = "N")]
    samples: Option<usize>,
    /// Solve the discrete-time equilibrium `E[ΔC] = 0` per step instead of the continuous-time one.
    #[arg(long)]
    discrete: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// The per-sample loss, in place of the spec's `model.loss`: `mse` (‖f(x) − y‖², summed over
    /// outputs) or `cross-entropy` (logits and integer class labels).
    #[arg(long, value_name = "LOSS")]
    loss: Option<String>,
}

/// Runs `nequil rebalance`.
pub fn rebalance(a: RebalanceArgs) -> Result<ExitCode> {
    let mut spec = Spec::from_file(&a.spec)?;
    if let Some(l) = &a.loss {
        spec.model.loss = Some(nequil::lab::spec::LossName::parse(l, "--loss")?);
    }
    let base = a.spec.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let opts = RebalanceOptions {
        lr: a.lr,
        samples: a.samples,
        discrete: a.discrete,
    };
    let r = rebalance_spec(&spec, &base, &opts)?;
    let model = &r.built.model;
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    meta.insert("nequil.model".to_string(), model.describe());
    meta.insert(
        "nequil.rebalanced".to_string(),
        format!(
            "noise equilibrium ({} time) of the initialization of {} at eta={}, batch_size={}, weight_decay={}, optimizer={}, on {} samples",
            if a.discrete { "discrete" } else { "continuous" },
            a.spec.display(),
            r.lr,
            r.report.batch,
            r.report.gamma,
            r.built.config.optimizer.name(),
            r.report.n
        ),
    );
    write_safetensors(&a.out, &named_tensors(model, &r.report.theta), Some(meta))?;
    if a.json {
        let mut v = serde_json::to_value(&r.report.totals).expect("totals serialize");
        v = serde_json::json!({
            "model": model.describe(),
            "spec": a.spec.display().to_string(),
            "optimizer": r.built.config.optimizer.name(),
            "eta": r.lr,
            "effective_eta": r.report.eta,
            "batch_size": r.report.batch,
            "weight_decay": r.report.gamma,
            "n": r.report.n,
            "loss_before": r.report.loss_before,
            "loss_after": r.report.loss_after,
            "totals": v,
            "notes": r.report.notes,
            "out": a.out.display().to_string(),
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        if r.report.eta != r.lr {
            println!(
                "{} at η = {}: the equilibrium of the effective step η/(1 − β) = {} (book: theory/momentum.md)",
                r.built.config.optimizer.name(),
                r.lr,
                r.report.eta
            );
        }
        print!("{}", r.report.table(Some(&a.out.display().to_string())));
    }
    Ok(ExitCode::SUCCESS)
}
