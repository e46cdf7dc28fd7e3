//! The extension module `nequil._core`: the library's models, statistics, equilibrium, curvature,
//! runs and experiments for the Python package (`nequil/`, which wraps these in NumPy arrays and
//! documented classes).
//!
//! The boundary is narrow on purpose. Arrays cross it as `bytes` of native-endian `f64` with their
//! shapes beside them (the Python side makes them with `np.ascontiguousarray(a, np.float64)` and
//! reads them back with `np.frombuffer`), which needs nothing of NumPy's C API and keeps one wheel
//! good for every CPython ≥ 3.9 (abi3). Specs cross it as JSON text. Every function:
//!
//! * releases the GIL while it computes ([`Python::detach`]), so other Python threads run;
//! * turns the library's errors into Python exceptions with the command-line tool's messages
//!   (`to_py_err`: bad input → `ValueError`, a missing file → `FileNotFoundError`, other file
//!   trouble → `OSError`, a numerical failure → `ArithmeticError`);
//! * never lets a panic cross into Python: `guarded` catches it and raises `RuntimeError`
//!   naming it a bug.

use nequil::core::curvature::{
    hessian_spectrum, lanczos, trace, EmpiricalHessian, HvpOptions, HvpWorkspace, LanczosOptions, Which,
};
use nequil::core::equilibrium::rebalance_with;
use nequil::core::models::Model;
use nequil::core::rng::Rng;
use nequil::core::stats::grad_stats;
use nequil::core::symmetry::{catalog, Generator, NoiseBalance};
use nequil::lab::inputs::{data_for, flow_params, Keys};
use nequil::lab::io::theta_from_tensors;
use nequil::lab::io::{NdArray, Tensors};
use nequil::lab::runner::{run_spec, run_summary, write_run_dir};
use nequil::lab::spec::instruments::TimeChoice;
use nequil::lab::spec::{
    charges_spec_from_json, load_model, load_model_spec, model_spec_from_json, model_spec_from_toml, LossName,
    ModelSpec, Spec,
};
use nequil::train::{Probe, ProbeCtx};
use nequil::{invalid, Error};
use pyo3::exceptions::{PyArithmeticError, PyFileNotFoundError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

/// A library error as the Python exception a Python programmer expects, with the command-line
/// tool's message: `Invalid` → `ValueError`; `Io` → `FileNotFoundError` when the file does not
/// exist (the operating system's "os error 2"), `OSError` otherwise; `Numerical` →
/// `ArithmeticError`; `Diverged` and `ProbeFailed` → `RuntimeError`.
fn to_py_err(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::Invalid(_) => PyValueError::new_err(msg),
        Error::Io(m) if m.contains("(os error 2)") => PyFileNotFoundError::new_err(msg),
        Error::Io(_) => PyOSError::new_err(msg),
        Error::Numerical(_) => PyArithmeticError::new_err(msg),
        Error::Diverged { .. } | Error::ProbeFailed { .. } => PyRuntimeError::new_err(msg),
    }
}

/// Runs `f`, catching a panic: it becomes `RuntimeError("internal error (a bug in nequil): …")`
/// instead of unwinding into the interpreter.
fn guarded<T>(what: &str, f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(PyRuntimeError::new_err(format!(
            "internal error in nequil.{what} (a bug in nequil; please report it with the inputs that caused it): {}",
            nequil::error::panic_message(&*payload)
        ))),
    }
}

/// [`guarded`] with the GIL released: `f` computes without touching Python objects.
fn compute<T: Send>(py: Python<'_>, what: &str, f: impl FnOnce() -> nequil::Result<T> + Send) -> PyResult<T> {
    py.detach(|| guarded(what, || f().map_err(to_py_err)))
}

/// Native-endian `f64` values from `bytes`; a length that is not a multiple of 8 is a bug of the
/// Python side.
fn f64s(b: &[u8], what: &str) -> PyResult<Vec<f64>> {
    if !b.len().is_multiple_of(8) {
        return Err(PyValueError::new_err(format!(
            "{what}: {} bytes is not a whole number of float64 values",
            b.len()
        )));
    }
    Ok(b.chunks_exact(8)
        .map(|c| f64::from_ne_bytes(c.try_into().expect("chunks of 8")))
        .collect())
}

/// `bytes` of native-endian `f64` values.
fn to_bytes<'py>(py: Python<'py>, v: &[f64]) -> Bound<'py, PyBytes> {
    let raw: Vec<u8> = v.iter().flat_map(|x| x.to_ne_bytes()).collect();
    PyBytes::new(py, &raw)
}

/// An array from its bytes and shape, the shape checked against the number of values.
fn nd(data: &[u8], shape: Vec<usize>, what: &str) -> PyResult<NdArray> {
    let data = f64s(data, what)?;
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if count != Some(data.len()) {
        return Err(PyValueError::new_err(format!(
            "{what}: shape {shape:?} does not hold {} values",
            data.len()
        )));
    }
    Ok(NdArray { shape, data })
}

/// A model as the library builds it from a `[model]` table ([`ModelSpec`]), for the Python class
/// `nequil.Model`.
#[pyclass(module = "nequil._core", name = "Model", frozen)]
struct PyModel {
    spec: ModelSpec,
    model: Model,
}

#[pymethods]
impl PyModel {
    /// A model from a `[model]` table given as JSON text (a dict on the Python side).
    #[staticmethod]
    fn from_json(py: Python<'_>, text: &str) -> PyResult<Self> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| PyValueError::new_err(format!("model: not valid JSON: {e}")))?;
        let spec = compute(py, "Model", || model_spec_from_json(&value))?;
        Self::build(py, spec)
    }

    /// A model from TOML text: a run spec (its `[model]` table) or a file holding only `[model]`.
    #[staticmethod]
    fn from_toml(py: Python<'_>, text: &str) -> PyResult<Self> {
        let spec = compute(py, "Model", || model_spec_from_toml(text))?;
        Self::build(py, spec)
    }

    /// A model from a TOML file (a run spec or a file holding only `[model]`), read and checked as
    /// `nequil equilibrium --model` reads it (messages name the file).
    #[staticmethod]
    fn from_file(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let spec = compute(py, "Model", || load_model_spec(&path))?;
        let model = compute(py, "Model", || load_model(&path))?;
        Ok(PyModel { spec, model })
    }

    /// `Model.describe()`: the model in words (`mlp [8, 32, 1] relu, bias`).
    fn describe(&self) -> String {
        self.model.describe()
    }

    /// The number of parameters P.
    #[getter]
    fn n_params(&self) -> usize {
        self.model.n_params()
    }

    /// Values per input sample.
    #[getter]
    fn d_in(&self) -> usize {
        self.model.d_in()
    }

    /// Values per output.
    #[getter]
    fn d_out(&self) -> usize {
        self.model.d_out()
    }

    /// Target values per sample: `d_out` for `mse`, one class label per position for
    /// `cross-entropy`.
    #[getter]
    fn d_y(&self) -> usize {
        self.model.d_y()
    }

    /// The per-sample loss: `"mse"` or `"cross-entropy"`.
    #[getter]
    fn loss(&self) -> &'static str {
        self.model.loss_kind().name()
    }

    /// The same model scored by the loss `name` (`"mse"`, `"cross-entropy"`); errors name `loss`.
    fn with_loss(&self, py: Python<'_>, name: &str) -> PyResult<Self> {
        let mut spec = self.spec.clone();
        let model = compute(py, "Model", || {
            let l = LossName::parse(name, "loss")?;
            spec.loss = Some(l);
            self.model.clone().with_loss(l.loss(), "loss")
        })?;
        Ok(PyModel { spec, model })
    }

    /// The `[model]` table with every default filled in, as JSON text.
    fn spec_json(&self) -> String {
        serde_json::to_string(&self.spec).expect("a model spec serializes")
    }

    /// The parameter tensors in layout order: `[(name, shape), …]` with PyTorch's names and shapes.
    fn layout(&self) -> Vec<(String, Vec<usize>)> {
        self.model
            .layout()
            .blocks()
            .iter()
            .map(|b| (b.name.clone(), b.shape.clone()))
            .collect()
    }

    /// The catalog as JSON text: `symmetries` (name and kind of each), `families` (name and
    /// dimension), `notes`, `inert` (indices of parameters that do not affect the output).
    fn catalog_json(&self, py: Python<'_>) -> PyResult<String> {
        let model = &self.model;
        compute(py, "Model.symmetries", || {
            let c = catalog(model);
            let syms: Vec<serde_json::Value> = c
                .symmetries
                .iter()
                .map(|s| serde_json::json!({ "name": s.name, "kind": s.kind }))
                .collect();
            let fams: Vec<serde_json::Value> = c
                .families
                .iter()
                .map(|f| serde_json::json!({ "name": f.name, "dim": f.dim }))
                .collect();
            Ok(serde_json::json!({
                "symmetries": syms,
                "families": fams,
                "notes": c.notes,
                "inert": c.inert,
            })
            .to_string())
        })
    }

    /// The generators of the catalog's symmetries, in catalog order: for each, the `P` values of
    /// its diagonal as bytes, or for a non-diagonal one the `P × P` matrix.
    fn generators<'py>(&self, py: Python<'py>) -> PyResult<Vec<(Bound<'py, PyBytes>, bool)>> {
        let model = &self.model;
        let gens = compute(py, "Model.symmetries", || {
            Ok(catalog(model)
                .symmetries
                .into_iter()
                .map(|s| match s.generator {
                    Generator::Diagonal(a) => (a, true),
                    g => (g.to_dense().data, false),
                })
                .collect::<Vec<_>>())
        })?;
        Ok(gens.iter().map(|(v, d)| (to_bytes(py, v), *d)).collect())
    }

    /// θ as one flat vector in layout order from named tensors `[(name, shape, bytes), …]`,
    /// checked as `nequil equilibrium` checks a weights file.
    fn flatten<'py>(
        &self,
        py: Python<'py>,
        tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let theta = self.theta(py, tensors)?;
        Ok(to_bytes(py, &theta))
    }

    /// The initial θ the spec's `init` draws with `seed` (as `nequil run` does with the spec's
    /// seed).
    fn init<'py>(&self, py: Python<'py>, seed: u64) -> PyResult<Bound<'py, PyBytes>> {
        let (spec, model) = (&self.spec, &self.model);
        let theta = compute(py, "Model.init", || {
            let init = spec.init_scheme()?;
            model.init(&init, &mut Rng::derive(seed, "init"))
        })?;
        Ok(to_bytes(py, &theta))
    }

    /// The model's outputs `f(x)` for inputs `x` (`n × d_in`), `n × d_out` values.
    fn forward<'py>(
        &self,
        py: Python<'py>,
        theta: Vec<u8>,
        x: Vec<u8>,
        x_shape: Vec<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let theta = f64s(&theta, "params")?;
        let x = nd(&x, x_shape, "x")?;
        let model = &self.model;
        let out = compute(py, "Model.forward", || {
            check_theta(model, &theta)?;
            // Targets are not used; zeros are valid for both losses (class 0 for cross-entropy).
            let dummy_y = NdArray {
                shape: vec![x.shape.first().copied().unwrap_or(0), model.d_y()],
                data: vec![0.0; x.shape.first().copied().unwrap_or(0) * model.d_y()],
            };
            let ds = data_for(model, &x, "x", &dummy_y, "y")?;
            let mut ws = model.workspace(ds.n.clamp(1, 256));
            let mut out = vec![0.0; ds.n * model.d_out()];
            for (start, chunk) in (0..ds.n).step_by(256).map(|s| (s, (ds.n - s).min(256))) {
                let xs = &ds.x[start * model.d_in()..(start + chunk) * model.d_in()];
                model.forward(&theta, xs, chunk, &mut ws);
                let k = chunk * model.d_out();
                out[start * model.d_out()..start * model.d_out() + k].copy_from_slice(&ws.output()[..k]);
            }
            Ok(out)
        })?;
        Ok(to_bytes(py, &out))
    }
}

fn check_theta(model: &Model, theta: &[f64]) -> nequil::Result<()> {
    if theta.len() != model.n_params() {
        return Err(invalid!(
            "params: {} values, the model {} has {} parameters",
            theta.len(),
            model.describe(),
            model.n_params()
        ));
    }
    Ok(())
}

impl PyModel {
    fn build(py: Python<'_>, spec: ModelSpec) -> PyResult<Self> {
        let model = compute(py, "Model", || spec.build_for_analysis())?;
        Ok(PyModel { spec, model })
    }

    fn theta(&self, py: Python<'_>, tensors: Vec<(String, Vec<usize>, Vec<u8>)>) -> PyResult<Vec<f64>> {
        let mut map = Tensors::new();
        for (name, shape, data) in tensors {
            let values = f64s(&data, &format!("params[{name:?}]"))?;
            map.insert(name, (shape, values));
        }
        let model = &self.model;
        compute(py, "params", || theta_from_tensors("params", &map, model))
    }
}

/// The data arrays of an analysis, checked against the model (messages name `x` and `y`).
fn data(
    py: Python<'_>,
    model: &Model,
    x: NdArray,
    y: NdArray,
    labels: (&str, &str),
) -> PyResult<(Vec<f64>, Vec<f64>, usize)> {
    let ds = compute(py, "data", || data_for(model, &x, labels.0, &y, labels.1))?;
    Ok((ds.x, ds.y, ds.n))
}

type Arr = (Vec<u8>, Vec<usize>);

/// θ, the inputs x and targets y (flat) and the number of samples n.
type Inputs = (Vec<f64>, Vec<f64>, Vec<f64>, usize);

/// θ (flat, layout order) and the data of one analysis call, checked.
fn inputs(py: Python<'_>, m: &PyModel, theta: Vec<u8>, x: Arr, y: Arr) -> PyResult<Inputs> {
    let theta = f64s(&theta, "params")?;
    compute(py, "params", || check_theta(&m.model, &theta))?;
    let (x, y, n) = data(py, &m.model, nd(&x.0, x.1, "x")?, nd(&y.0, y.1, "y")?, ("x", "y"))?;
    Ok((theta, x, y, n))
}

/// Per-parameter gradient statistics and every catalog symmetry's noise balance at θ on the data:
/// a dict with `loss`, `n`, `mean` and `var` (bytes, layout order; variance with weight 1/n) and
/// `rows` (JSON text: per symmetry `name`, `kind`, `C`, `tr_a_sigma`, `tr_a_sigma_pos`,
/// `tr_a_sigma_neg`, `grad_quad`).
#[pyfunction]
fn noise_stats<'py>(py: Python<'py>, model: &PyModel, theta: Vec<u8>, x: Arr, y: Arr) -> PyResult<Bound<'py, PyDict>> {
    let (theta, x, y, n) = inputs(py, model, theta, x, y)?;
    let m = &model.model;
    let (st, var, rows) = compute(py, "noise_stats", || {
        let mut ws = m.workspace(n.min(256));
        let st = grad_stats(m, &theta, &x, &y, n, &mut ws);
        let mut rows = vec![];
        for s in catalog(m).symmetries {
            let nb = NoiseBalance::from_stats(&s.generator, &theta, &st)?;
            rows.push(serde_json::json!({
                "name": s.name,
                "kind": s.kind,
                "C": nb.c,
                "tr_a_sigma": nb.tr_a_sigma,
                "tr_a_sigma_pos": nb.tr_a_sigma_pos,
                "tr_a_sigma_neg": nb.tr_a_sigma_neg,
                "grad_quad": nb.grad_quad,
            }));
        }
        let var = st.variance();
        Ok((st, var, serde_json::Value::Array(rows).to_string()))
    })?;
    let d = PyDict::new(py);
    d.set_item("loss", st.loss)?;
    d.set_item("n", st.n)?;
    d.set_item("mean", to_bytes(py, &st.mean))?;
    d.set_item("var", to_bytes(py, &var))?;
    d.set_item("rows", rows)?;
    Ok(d)
}

/// The noise equilibrium of every catalog symmetry at θ (`nequil equilibrium`): `(json, table,
/// rebalanced θ)` with the command's JSON report and table.
#[pyfunction]
#[pyo3(signature = (model, theta, x, y, lr, batch_size, weight_decay, discrete))]
fn equilibrium<'py>(
    py: Python<'py>,
    model: &PyModel,
    theta: Vec<u8>,
    x: Arr,
    y: Arr,
    lr: f64,
    batch_size: i64,
    weight_decay: f64,
    discrete: bool,
) -> PyResult<(String, String, Bound<'py, PyBytes>)> {
    let batch = usize::try_from(batch_size).unwrap_or(0);
    let params = compute(py, "equilibrium", || {
        flow_params(lr, batch, weight_decay, discrete, Keys::KWARGS)
    })?;
    let (theta, x, y, n) = inputs(py, model, theta, x, y)?;
    let m = &model.model;
    let report = compute(py, "equilibrium", || {
        nequil::lab::resources::check_equilibrium(m, n, &format!("model {}", m.describe()))?;
        rebalance_with(m, &theta, &x, &y, n, &params)
    })?;
    let mut json = report.to_json();
    json["summary"] = serde_json::json!(report.summary_line(None));
    Ok((json.to_string(), report.table(None), to_bytes(py, &report.theta)))
}

/// The Hessian of the mean loss `(1/n) Σ ‖f(x_i) − y_i‖²` (no ½, no weight decay) at θ on the
/// data, for `nequil.hessian`.
#[pyclass(module = "nequil._core", name = "Hessian", frozen)]
struct PyHessian {
    model: Model,
    theta: Vec<f64>,
    x: Vec<f64>,
    y: Vec<f64>,
    n: usize,
}

impl PyHessian {
    fn with<T>(&self, f: impl FnOnce(&mut EmpiricalHessian<'_>) -> nequil::Result<T>) -> nequil::Result<T> {
        let mut ws = HvpWorkspace::new(&self.model, HvpOptions::default());
        let mut op = EmpiricalHessian::new(&self.model, &self.theta, &self.x, &self.y, self.n, &mut ws)?;
        f(&mut op)
    }
}

#[pymethods]
impl PyHessian {
    #[new]
    fn new(py: Python<'_>, model: &PyModel, theta: Vec<u8>, x: Arr, y: Arr) -> PyResult<Self> {
        let (theta, x, y, n) = inputs(py, model, theta, x, y)?;
        Ok(PyHessian {
            model: model.model.clone(),
            theta,
            x,
            y,
            n,
        })
    }

    /// The number of parameters P.
    #[getter]
    fn dim(&self) -> usize {
        self.model.n_params()
    }

    /// `Hv` for a vector `v` of P values.
    fn hvp<'py>(&self, py: Python<'py>, v: Vec<u8>) -> PyResult<Bound<'py, PyBytes>> {
        let v = f64s(&v, "v")?;
        let p = self.model.n_params();
        let out = compute(py, "Hessian.hvp", || {
            if v.len() != p {
                return Err(invalid!("v: {} values, the model has {p} parameters", v.len()));
            }
            if let Some(i) = v.iter().position(|a| !a.is_finite()) {
                return Err(invalid!("v: non-finite value ({}) at index {i}", v[i]));
            }
            let mut out = vec![0.0; p];
            self.with(|op| {
                use nequil::core::curvature::HessianOp;
                op.apply(&v, &mut out);
                Ok(())
            })?;
            Ok(out)
        })?;
        Ok(to_bytes(py, &out))
    }

    /// The trace: exact (P products) when P ≤ `max_exact`, else Hutchinson with `probes` Rademacher
    /// vectors from `seed`. Returns `(estimate, std_error, exact, products)`.
    fn trace(&self, py: Python<'_>, max_exact: usize, probes: usize, seed: u64) -> PyResult<(f64, f64, bool, usize)> {
        compute(py, "Hessian.trace", || {
            self.with(|op| {
                let t = trace(op, max_exact, probes, &mut Rng::new(seed))?;
                Ok((t.estimate, t.std_error, t.exact, t.probes))
            })
        })
    }

    /// The `k` extreme eigenvalues by Lanczos (`largest`: descending; else ascending): `(values,
    /// residuals, converged, iterations)`.
    fn top_eigenvalues(
        &self,
        py: Python<'_>,
        k: usize,
        largest: bool,
        max_iter: usize,
        tol: f64,
        seed: u64,
    ) -> PyResult<(Vec<f64>, Vec<f64>, bool, usize)> {
        let p = self.model.n_params();
        compute(py, "Hessian.top_eigenvalues", || {
            if k == 0 || k > p {
                return Err(invalid!(
                    "k: must be between 1 and the number of parameters ({p}), got {k}"
                ));
            }
            if !(tol.is_finite() && tol > 0.0) {
                return Err(invalid!("tol: must be finite and > 0, got {tol}"));
            }
            let opts = LanczosOptions {
                k,
                which: if largest { Which::Largest } else { Which::Smallest },
                max_iter: max_iter.max(k),
                tol,
                seed,
            };
            self.with(|op| {
                let r = lanczos(op, &opts)?;
                Ok((r.values, r.residuals, r.converged, r.iterations))
            })
        })
    }

    /// Every eigenvalue, ascending, from the dense Hessian (P ≤ 2048).
    fn eigenvalues(&self, py: Python<'_>) -> PyResult<Vec<f64>> {
        compute(py, "Hessian.eigenvalues", || {
            self.with(|op| hessian_spectrum(op).map(|(v, _)| v))
        })
    }
}

/// A run of a spec (`nequil run`): `source` is JSON text (`kind = "json"`), TOML text (`"toml"`)
/// or the path of a spec file (`"path"`, read as the command reads it); relative data paths are
/// resolved against `base`. With `out`, the run directory is written as the command writes it.
/// Returns a dict: `columns`, `rows` (bytes, row-major), `n_rows`, `theta` (bytes), `layout`,
/// `summary` (JSON text of `summary.json`), `spec` (the resolved TOML), `error` (a message or
/// None).
#[pyfunction]
#[pyo3(signature = (source, kind, base, out=None))]
fn run<'py>(
    py: Python<'py>,
    source: &str,
    kind: &str,
    base: PathBuf,
    out: Option<PathBuf>,
) -> PyResult<Bound<'py, PyDict>> {
    let spec = match kind {
        "json" => {
            let value: serde_json::Value = serde_json::from_str(source)
                .map_err(|e| PyValueError::new_err(format!("spec: not valid JSON: {e}")))?;
            compute(py, "run", || Spec::from_json(&value))?
        }
        "toml" => compute(py, "run", || Spec::from_toml(source))?,
        _ => compute(py, "run", || Spec::from_file(std::path::Path::new(source)))?,
    };
    if let Some(dir) = &out {
        // As the command: before training, the output directory must be writable.
        compute(py, "run", || nequil::lab::runner::check_writable(dir))?;
    }
    let (model, outcome) = compute(py, "run", || run_spec(&spec, &base, &mut [], &mut |_, _| {}))?;
    if let Some(dir) = &out {
        compute(py, "run", || write_run_dir(dir, &spec, &model, &outcome))?;
    }
    let summary = serde_json::to_string(&run_summary(&model, &outcome)).expect("summary serializes");
    let flat: Vec<f64> = outcome.log.rows.iter().flatten().copied().collect();
    let d = PyDict::new(py);
    d.set_item("columns", PyList::new(py, &outcome.log.columns)?)?;
    d.set_item("rows", to_bytes(py, &flat))?;
    d.set_item("n_rows", outcome.log.rows.len())?;
    d.set_item("theta", to_bytes(py, &outcome.theta))?;
    d.set_item("layout", PyModel::layout_of(&model))?;
    d.set_item("summary", summary)?;
    d.set_item("spec", spec.resolved_toml())?;
    d.set_item("error", outcome.error.as_ref().map(|e| e.to_string()))?;
    Ok(d)
}

impl PyModel {
    fn layout_of(model: &Model) -> Vec<(String, Vec<usize>)> {
        model
            .layout()
            .blocks()
            .iter()
            .map(|b| (b.name.clone(), b.shape.clone()))
            .collect()
    }
}

/// The instruments of a `[probes.charges]` table, called from outside the training loop: the
/// recorder behind `nequil.torch.Monitor`. It holds a fixed probe set (the evaluation set of a
/// run) and the SGD settings, and records one row of the charge probe's columns at a given θ.
#[pyclass(module = "nequil._core", name = "ChargeRecorder", frozen)]
struct PyChargeRecorder {
    model: Model,
    /// The probes keep state between rows; a lock makes the recorder shareable across threads.
    probes: std::sync::Mutex<Vec<Box<dyn Probe>>>,
    columns: Vec<String>,
    x: Vec<f64>,
    y: Vec<f64>,
    n: usize,
    source: nequil::Source,
    lr: f64,
    batch: usize,
    gamma: f64,
}

#[pymethods]
impl PyChargeRecorder {
    #[new]
    #[pyo3(signature = (model, charges_json, x, y, lr, batch_size, weight_decay))]
    fn new(
        py: Python<'_>,
        model: &PyModel,
        charges_json: &str,
        x: Arr,
        y: Arr,
        lr: f64,
        batch_size: i64,
        weight_decay: f64,
    ) -> PyResult<Self> {
        let batch = usize::try_from(batch_size).unwrap_or(0);
        let value: serde_json::Value = serde_json::from_str(charges_json)
            .map_err(|e| PyValueError::new_err(format!("probes.charges: not valid JSON: {e}")))?;
        let m = &model.model;
        let probes = compute(py, "torch.Monitor", || {
            let spec = charges_spec_from_json(&value)?;
            let discrete = spec.time == TimeChoice::Discrete;
            flow_params(lr, batch, weight_decay, discrete, Keys::KWARGS)?;
            nequil::lab::spec::instruments::charges_probes(&spec, m)
        })?;
        let (x, y, n) = data(
            py,
            m,
            nd(&x.0, x.1, "x_probe")?,
            nd(&y.0, y.1, "y_probe")?,
            ("x_probe", "y_probe"),
        )?;
        let columns = probes.iter().flat_map(|p| p.columns()).collect();
        let source = nequil::Source::Fixed {
            data: compute(py, "torch.Monitor", || {
                nequil::Dataset::new(n, m.d_in(), m.d_y(), x.clone(), y.clone())
            })?,
            replacement: true,
            dist: None,
        };
        Ok(PyChargeRecorder {
            model: m.clone(),
            probes: std::sync::Mutex::new(probes),
            columns,
            x,
            y,
            n,
            source,
            lr,
            batch,
            gamma: weight_decay,
        })
    }

    /// The columns of a row: `{name}/C`, `{name}/tr_a_sigma`, `{name}/drift`, `{name}/C_star`,
    /// `{name}/C_minus_C_star` per symmetry (and the family columns, if any).
    #[getter]
    fn columns(&self) -> Vec<String> {
        self.columns.clone()
    }

    /// One row of the columns at θ after `step` updates (`t = lr · step`).
    fn record<'py>(&self, py: Python<'py>, step: u64, theta: Vec<u8>) -> PyResult<Bound<'py, PyBytes>> {
        let theta = f64s(&theta, "params")?;
        let this = self;
        let row = py.detach(|| {
            guarded("torch.Monitor.step", || {
                let run = || -> nequil::Result<Vec<f64>> {
                    check_theta(&this.model, &theta)?;
                    if let Some(i) = theta.iter().position(|v| !v.is_finite()) {
                        return Err(invalid!(
                            "params: non-finite value ({}) at flat index {i} at step {step}",
                            theta[i]
                        ));
                    }
                    // The monitor's loop is plain SGD (momentum's laws need its velocity).
                    let sgd = nequil::train::Optimizer::Sgd;
                    let ctx = ProbeCtx {
                        step,
                        t: this.lr * step as f64,
                        lr: this.lr,
                        batch_size: this.batch,
                        weight_decay: this.gamma,
                        optimizer: &sgd,
                        velocity: &[],
                        model: &this.model,
                        theta: &theta,
                        eval_x: &this.x,
                        eval_y: &this.y,
                        eval_n: this.n,
                        source: &this.source,
                    };
                    let mut out = Vec::with_capacity(this.columns.len());
                    let mut probes = this.probes.lock().unwrap_or_else(|p| p.into_inner());
                    for p in probes.iter_mut() {
                        p.record(&ctx, &mut out)?;
                    }
                    Ok(out)
                };
                run().map_err(to_py_err)
            })
        })?;
        Ok(to_bytes(py, &row))
    }
}

/// A log as `nequil run` writes `metrics.csv` (numbers that read back to the same bits).
#[pyfunction]
fn log_csv(columns: Vec<String>, rows: Vec<u8>) -> PyResult<String> {
    let flat = f64s(&rows, "rows")?;
    let w = columns.len().max(1);
    let rows = flat.chunks(w).map(|r| r.to_vec()).collect();
    Ok(nequil::lab::files::log_csv(&nequil::train::Log { columns, rows }))
}

/// Re-runs the paper's experiments (all, or `names`) into `out` as `nequil reproduce` does:
/// per experiment its logs, `summary.json`, `figure.json`, `figure.svg` and `figure.png`, then
/// `report.html`. With `full`, finished runs are recorded in `out/<experiment>/runs/` and loaded
/// on the next call instead of run again; `fresh` deletes them first. Returns the JSON text of
/// the summaries.
#[pyfunction]
#[pyo3(signature = (names, out, full, jobs, fresh = false))]
fn reproduce(
    py: Python<'_>,
    names: Vec<String>,
    out: PathBuf,
    full: bool,
    jobs: Option<usize>,
    fresh: bool,
) -> PyResult<String> {
    compute(py, "reproduce", || {
        let summaries = nequil_paper::reproduce::reproduce_into(
            &out,
            &names,
            if full {
                nequil_paper::reproduce::Tier::Full
            } else {
                nequil_paper::reproduce::Tier::Quick
            },
            jobs,
            None,
            true,
            fresh,
            &mut nequil_paper::reproduce::Silent,
        )?;
        Ok(serde_json::to_string(&summaries).expect("summaries serialize"))
    })
}

/// The experiments of `reproduce`: `[(name, title, claim), …]`.
#[pyfunction]
fn experiments() -> Vec<(String, String, String)> {
    nequil_paper::experiments::catalog()
        .iter()
        .map(|e| (e.name.to_string(), e.title.to_string(), e.claim.to_string()))
        .collect()
}

/// The SIMD path in use and the ones this CPU supports.
#[pyfunction]
fn simd() -> (String, Vec<String>) {
    (
        nequil::simd::active().name().to_string(),
        nequil::simd::supported()
            .into_iter()
            .map(|p| p.name().to_string())
            .collect(),
    )
}

/// Raises a panic inside a guarded call: the test that no panic crosses into Python.
#[pyfunction]
fn _panic_for_tests(py: Python<'_>) -> PyResult<()> {
    compute(py, "_panic_for_tests", || -> nequil::Result<()> {
        panic!("deliberate panic of the boundary test")
    })
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The SIMD path is chosen once, before anything computes; a NEQUIL_SIMD this CPU cannot honour
    // is an error at import, as it is at the command line's start.
    nequil::simd::init().map_err(to_py_err)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<PyModel>()?;
    m.add_class::<PyHessian>()?;
    m.add_class::<PyChargeRecorder>()?;
    m.add_function(wrap_pyfunction!(noise_stats, m)?)?;
    m.add_function(wrap_pyfunction!(equilibrium, m)?)?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(reproduce, m)?)?;
    m.add_function(wrap_pyfunction!(experiments, m)?)?;
    m.add_function(wrap_pyfunction!(simd, m)?)?;
    m.add_function(wrap_pyfunction!(log_csv, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_tests, m)?)?;
    Ok(())
}
