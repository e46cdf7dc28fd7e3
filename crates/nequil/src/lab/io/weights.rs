//! Model weights as safetensors files: θ by PyTorch state-dict name (`layers.0.weight`, shape
//! `[out, in]`), written as `f64` and read from `F64`, `F32`, `F16` or `BF16`, checked against the
//! model's parameter layout.

use super::{read_safetensors, safetensors_bytes, write_atomic, Tensors};
use crate::core::models::Model;
use crate::{invalid, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// The tensors of θ as `(name, shape, values)` in layout order.
pub fn named_tensors<'a>(model: &Model, theta: &'a [f64]) -> Vec<(String, Vec<usize>, &'a [f64])> {
    model
        .layout()
        .blocks()
        .iter()
        .map(|b| (b.name.clone(), b.shape.clone(), &theta[b.range()]))
        .collect()
}

/// Writes θ as safetensors (`f64`, PyTorch names and `[out, in]` shapes; metadata `format = pt`).
pub fn save_weights(path: &Path, model: &Model, theta: &[f64]) -> Result<()> {
    write_atomic(path, &weights_bytes(model, theta)?)
}

/// The bytes [`save_weights`] writes.
pub fn weights_bytes(model: &Model, theta: &[f64]) -> Result<Vec<u8>> {
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    meta.insert("nequil.model".to_string(), model.describe());
    safetensors_bytes(&named_tensors(model, theta), Some(meta))
}

/// Reads θ for `model` from a safetensors file, by PyTorch state-dict name: the file written by
/// [`save_weights`], or `safetensors.torch.save_file(net.state_dict(), path)` for an `nn.Module`
/// whose `nn.Linear` layers sit in an `nn.ModuleList` named `layers` (`layers.{l}.weight` is
/// `[out, in]`, `layers.{l}.bias` is `[out]`; Net-A/Net-B: `layers.0.weight` is W,
/// `layers.1.weight` is U). `F64`, `F32`, `F16` and `BF16` tensors are read as `f64`.
///
/// Every tensor of the layout must be present with its shape, no other tensor may be present
/// (except the layers' fixed buffers, equal to the spec's: see [`theta_from_tensors`]), and
/// every value must be finite. An error names the file and lists every missing, unexpected and
/// misshapen tensor (expected vs got), or the first non-finite value.
pub fn load_weights(path: &Path, model: &Model) -> Result<Vec<f64>> {
    let tensors = read_safetensors(path)?;
    theta_from_tensors(&format!("weights {}", path.display()), &tensors, model)
}

/// The fixed buffers of `model`'s layers by full state-dict name ([`crate::core::layers::Layer::buffers`]).
fn model_buffers(model: &Model) -> Vec<(String, Option<Vec<f64>>)> {
    model
        .nodes()
        .iter()
        .flat_map(|n| n.layer().buffers().into_iter().map(move |(b, v)| (n.block_name(&b), v)))
        .collect()
}

/// θ for `model` from tensors by PyTorch state-dict name (`name → (shape, values)`), with the
/// checks and messages of [`load_weights`]: every tensor of the layout present with its shape, no
/// other tensor but the layers' fixed buffers (a batch-norm's `running_mean`, `running_var` and
/// `num_batches_tracked`, as `state_dict()` holds them; a buffer's values must equal the spec's),
/// every value finite. `what` begins every message (`weights w.safetensors`,
/// `params`).
pub fn theta_from_tensors(what: &str, tensors: &Tensors, model: &Model) -> Result<Vec<f64>> {
    let layout = model.layout();
    let mut problems = vec![];
    for b in layout.blocks() {
        match tensors.get(&b.name) {
            None => problems.push(format!("missing tensor `{}` (expected shape {:?})", b.name, b.shape)),
            Some((shape, _)) if *shape != b.shape => problems.push(format!(
                "tensor `{}` has shape {shape:?}, expected {:?}",
                b.name, b.shape
            )),
            Some(_) => {}
        }
    }
    let buffers = model_buffers(model);
    for (name, (shape, data)) in tensors {
        if layout.find(name).is_some() {
            continue;
        }
        match buffers.iter().find(|(n, _)| n == name) {
            None => problems.push(format!("unexpected tensor `{name}` (shape {shape:?})")),
            Some((_, Some(spec))) if spec != data => problems.push(format!(
                "buffer `{name}` differs from the model's (buffers are fixed by the model's spec, not read \
                 from weights: build the model from the module that holds them)"
            )),
            Some(_) => {}
        }
    }
    if !problems.is_empty() {
        let expected: Vec<String> = layout
            .blocks()
            .iter()
            .map(|b| format!("{} {:?}", b.name, b.shape))
            .collect();
        return Err(invalid!(
            "{what}: {} (the model {} has exactly: {})",
            problems.join("; "),
            model.describe(),
            expected.join(", ")
        ));
    }
    let mut theta = vec![0.0; layout.len()];
    for b in layout.blocks() {
        let data = &tensors[&b.name].1;
        if data.len() != b.range().len() {
            return Err(invalid!(
                "{what}: tensor `{}` holds {} values, its shape {:?} needs {}",
                b.name,
                data.len(),
                b.shape,
                b.range().len()
            ));
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(invalid!(
                "{what}: tensor `{}` has a non-finite value ({}) at flat index {i}",
                b.name,
                data[i]
            ));
        }
        theta[b.range()].copy_from_slice(data);
    }
    Ok(theta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::layers::{BatchNormConfig, LayerConfig, LinearConfig, ResidualConfig};

    /// A state dict with a batch-norm's buffers (inside a residual block too) is read: the
    /// buffers are checked against the spec's and left out of θ; a differing one is refused.
    #[test]
    fn batch_norm_buffers_are_checked_and_not_read_into_theta() {
        let bn = LayerConfig::from(BatchNormConfig {
            running_mean: Some(vec![0.5, -1.0]),
            running_var: Some(vec![2.0, 0.5]),
            ..Default::default()
        });
        let model = Model::sequential(
            &[2],
            &[
                bn.clone(),
                LayerConfig::from(ResidualConfig { layers: vec![bn] }),
                LayerConfig::from(LinearConfig {
                    out_features: 1,
                    bias: false,
                }),
            ],
        )
        .unwrap();
        let mut t = Tensors::new();
        let names: Vec<String> = model.layout().blocks().iter().map(|b| b.name.clone()).collect();
        assert_eq!(names, ["0.weight", "0.bias", "1.0.weight", "1.0.bias", "2.weight"]);
        for (k, b) in model.layout().blocks().iter().enumerate() {
            t.insert(b.name.clone(), (b.shape.clone(), vec![k as f64 + 0.5; b.range().len()]));
        }
        for m in ["0", "1.0"] {
            t.insert(format!("{m}.running_mean"), (vec![2], vec![0.5, -1.0]));
            t.insert(format!("{m}.running_var"), (vec![2], vec![2.0, 0.5]));
            t.insert(format!("{m}.num_batches_tracked"), (vec![], vec![7.0]));
        }
        let theta = theta_from_tensors("params", &t, &model).unwrap();
        assert_eq!(theta, vec![0.5, 0.5, 1.5, 1.5, 2.5, 2.5, 3.5, 3.5, 4.5, 4.5]);
        t.insert("1.0.running_var".into(), (vec![2], vec![2.0, 0.25]));
        let e = theta_from_tensors("params", &t, &model).unwrap_err().to_string();
        assert!(e.contains("buffer `1.0.running_var` differs from the model's"), "{e}");
        t.insert("1.0.running_avg".into(), (vec![2], vec![2.0, 0.5]));
        let e = theta_from_tensors("params", &t, &model).unwrap_err().to_string();
        assert!(e.contains("unexpected tensor `1.0.running_avg`"), "{e}");
    }
}
