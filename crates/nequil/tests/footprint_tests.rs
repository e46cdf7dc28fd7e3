//! Footprints are contracts: every layer kind and every probe kind, on a small and a medium shape,
//! runs under a counting global allocator, and the peak of live bytes it adds lies between half its
//! declaration and its declaration (`Layer::footprint` through `Model::footprint`,
//! `Probe::footprint`). Only the measuring thread's allocations are counted, so the test harness's
//! other threads cannot disturb the numbers.

use nequil::core::data::{Cov, Gaussian, Source, Target};
use nequil::core::footprint::Footprint;
use nequil::core::linalg::Dense;
use nequil::core::models::{Init, Model};
use nequil::core::rng::Rng;
use nequil::core::symmetry::{catalog, catalog_families, Momentum};
use nequil::instruments::{
    ChargeProbe, CurvatureData, FamilyProbe, HessianTraceProbe, MomentSource, PaperSharpnessProbe, StepChargeProbe,
    TopEigenProbe, TwoLayerEquilibriumProbe,
};
use nequil::lab::spec::model_spec_from_toml;
use nequil::train::{Optimizer, Probe, ProbeCtx, StepCtx};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<i128> = const { Cell::new(0) };
    static PEAK: Cell<i128> = const { Cell::new(0) };
}

fn add(delta: i128) {
    // `try_with`: the thread-locals may be gone while a thread exits.
    let _ = ON.try_with(|on| {
        if on.get() {
            let live = LIVE.with(|l| {
                l.set(l.get() + delta);
                l.get()
            });
            PEAK.with(|p| p.set(p.get().max(live)));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as i128);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as i128);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as i128));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as i128 - layout.size() as i128);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The peak of live bytes `f` adds on this thread (what it returns is dropped inside).
fn peak<R>(f: impl FnOnce() -> R) -> u128 {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    ON.with(|o| o.set(true));
    let r = f();
    drop(r);
    ON.with(|o| o.set(false));
    PEAK.with(|p| p.get()).max(0) as u128
}

thread_local! {
    static FAILED: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Notes whether `declared / 2 ≤ measured ≤ declared` (every case is measured and printed before
/// [`verdict`] fails the test).
fn honest(what: &str, measured: u128, declared: &Footprint) {
    let d = declared.total();
    let line = format!(
        "{what}: measured peak {measured} B, declared {d} B, ratio {:.3} ({})",
        measured as f64 / d.max(1) as f64,
        declared.listing()
    );
    println!("{line}");
    if !(measured <= d && 2 * measured >= d) {
        FAILED.with(|f| f.borrow_mut().push(line));
    }
}

/// Fails with every case whose declaration is not honest.
fn verdict() {
    let failed = FAILED.with(|f| f.borrow().clone());
    assert!(
        failed.is_empty(),
        "declared / 2 ≤ measured ≤ declared fails for:\n{}",
        failed.join("\n")
    );
}

fn model(toml: &str) -> Model {
    model_spec_from_toml(toml)
        .unwrap_or_else(|e| panic!("{toml}: {e}"))
        .build_model()
        .unwrap_or_else(|e| panic!("{toml}: {e}"))
}

fn sequential(input: &str, layers: &str) -> Model {
    model(&format!(
        "[model]\nkind = \"sequential\"\ninput = {input}\nlayers = [{layers}]\n"
    ))
}

fn theta(m: &Model) -> Vec<f64> {
    m.init(&Init::Kaiming, &mut Rng::new(3)).unwrap()
}

fn gaussian(m: &Model) -> Gaussian {
    let (dx, dy) = (m.d_in(), m.d_out());
    let v: Vec<f64> = (0..dx * dy).map(|i| ((i * 7 % 11) as f64 - 5.0) / 10.0).collect();
    let teacher = Target::Linear(Dense::from_slice(dy, dx, &v));
    Gaussian::new(dx, dy, Cov::Scalar(1.0), teacher, Some(Cov::Scalar(0.5))).unwrap_or_else(|_| panic!("gaussian"))
}

fn data(m: &Model, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut g = gaussian(m);
    let ds = g.dataset(&mut Rng::new(5), n);
    (ds.x, ds.y)
}

/// Every layer kind on a small and a medium shape: `(name, input shape, layers)`.
fn layer_zoo(medium: bool) -> Vec<(&'static str, Model)> {
    let (w, c, hw) = if medium { (96, 6, 12) } else { (8, 2, 6) };
    let lin = |o: usize| format!("{{ type = \"linear\", out_features = {o} }}");
    let mut out = vec![("linear", sequential(&format!("[{w}]"), &lin(w / 2)))];
    for act in ["identity", "tanh", "relu", "swish", "sigmoid", "gelu", "hardswish"] {
        out.push((act, sequential(&format!("[{w}]"), &format!("{{ type = \"{act}\" }}"))));
    }
    out.push((
        "leaky-relu",
        sequential(&format!("[{w}]"), "{ type = \"leaky-relu\", slope = 0.1 }"),
    ));
    out.push((
        "softplus",
        sequential(&format!("[{w}]"), "{ type = \"softplus\", beta = 2.0 }"),
    ));
    let img = format!("[{c}, {hw}, {hw}]");
    out.push((
        "conv2d",
        sequential(
            &img,
            &format!(
                "{{ type = \"conv2d\", out_channels = {}, kernel = 3, padding = 1 }}",
                2 * c
            ),
        ),
    ));
    out.push((
        "conv1d",
        sequential(
            &format!("[{c}, {}]", hw * hw),
            &format!(
                "{{ type = \"conv1d\", out_channels = {}, kernel = 3, padding = \"same\", dilation = 2, groups = {c} }}",
                2 * c
            ),
        ),
    ));
    out.push((
        "adaptive-avg-pool2d",
        sequential(&img, "{ type = \"adaptive-avg-pool2d\", output_size = [3, 2] }"),
    ));
    out.push((
        "adaptive-avg-pool1d",
        sequential(
            &format!("[{c}, {}]", hw * hw),
            "{ type = \"adaptive-avg-pool1d\", output_size = 5 }",
        ),
    ));
    out.push(("max-pool2d", sequential(&img, "{ type = \"max-pool2d\", kernel = 2 }")));
    out.push(("avg-pool2d", sequential(&img, "{ type = \"avg-pool2d\", kernel = 2 }")));
    out.push(("flatten", sequential(&img, "{ type = \"flatten\" }")));
    out.push(("batch-norm", sequential(&img, "{ type = \"batch-norm\" }")));
    out.push((
        "group-norm",
        sequential(&img, "{ type = \"group-norm\", num_groups = 2 }"),
    ));
    let seq = format!("[{}, {}]", hw, 4 * c);
    out.push(("layer-norm", sequential(&seq, "{ type = \"layer-norm\" }")));
    out.push(("rms-norm", sequential(&seq, "{ type = \"rms-norm\" }")));
    out.push((
        "self-attention",
        sequential(&seq, "{ type = \"self-attention\", heads = 2, causal = true }"),
    ));
    out.push(("mean-pool", sequential(&seq, "{ type = \"mean-pool\" }")));
    out.push((
        "residual",
        sequential(
            &format!("[{w}]"),
            &format!(
                "{{ type = \"residual\", layers = [{}, {{ type = \"relu\" }}, {}] }}",
                lin(w),
                lin(w)
            ),
        ),
    ));
    for kind in ["net-a", "net-b"] {
        out.push((
            kind,
            model(&format!("[model]\nkind = \"{kind}\"\nwidths = [{w}, {w}, 4]\n")),
        ));
    }
    out
}

/// The zoo holds every kind of the layer registry, so that a new kind cannot go without a
/// checked footprint.
#[test]
fn the_zoo_covers_every_registered_layer_kind() {
    let zoo: Vec<&str> = layer_zoo(false).iter().map(|(n, _)| *n).collect();
    for kind in nequil::core::layers::LayerConfig::KINDS {
        assert!(
            zoo.contains(kind),
            "layer kind {kind} has no footprint case in layer_zoo"
        );
    }
}

/// A forward and backward pass over a chunk of `b` samples, with the workspace built inside the
/// measurement: the peak is the workspace, which the layers' declarations size.
#[test]
fn every_layer_kind_allocates_what_it_declares() {
    for medium in [false, true] {
        let b = if medium { 64 } else { 4 };
        for (name, m) in layer_zoo(medium) {
            let th = theta(&m);
            let (x, y) = data(&m, b);
            let mut g = vec![0.0; m.n_params()];
            let mut pass = || {
                let mut ws = m.workspace(b);
                m.loss_grad(&th, &x, &y, b, &mut g, &mut ws);
                ws
            };
            // Once unmeasured, for what a first call initialises once per process.
            drop(pass());
            let measured = peak(pass);
            honest(&format!("{name} (b = {b})"), measured, &m.footprint(b));
        }
    }
    verdict();
}

struct Case {
    model: Model,
    theta: Vec<f64>,
    x: Vec<f64>,
    y: Vec<f64>,
    n: usize,
    source: Source,
}

impl Case {
    fn new(m: Model, n: usize) -> Case {
        let (x, y) = data(&m, n);
        let source = Source::Online(gaussian(&m));
        Case {
            theta: theta(&m),
            model: m,
            x,
            y,
            n,
            source,
        }
    }

    fn ctx<'a>(&'a self, opt: &'a Optimizer) -> ProbeCtx<'a> {
        ProbeCtx {
            step: 3,
            t: 0.3,
            lr: 0.1,
            batch_size: 4,
            weight_decay: 1e-3,
            optimizer: opt,
            velocity: &[],
            model: &self.model,
            theta: &self.theta,
            eval_x: &self.x,
            eval_y: &self.y,
            eval_n: self.n,
            source: &self.source,
        }
    }

    /// Builds a probe and records one row inside the measurement; checks the probe's declaration.
    fn check(&self, name: &str, make: impl Fn() -> Box<dyn Probe>) {
        let opt = Optimizer::Sgd;
        let ctx = self.ctx(&opt);
        // Once unmeasured, for what a first call initialises once per process.
        make()
            .record(&ctx, &mut vec![])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut declared = None;
        let measured = peak(|| {
            let mut p = make();
            let mut out = Vec::with_capacity(p.columns().len());
            p.record(&ctx, &mut out).unwrap_or_else(|e| panic!("{name}: {e}"));
            ON.with(|o| o.set(false));
            declared = Some(p.footprint(&self.model, self.n));
            ON.with(|o| o.set(true));
            (p, out)
        });
        honest(name, measured, &declared.expect("declared"));
    }
}

/// Every probe kind on a small and a medium shape: built and recording one row inside the
/// measurement (the charges' generators, the families' solves, the Hessian operator's buffers and
/// Lanczos' basis, the two-layer equilibrium's moments).
#[test]
fn every_probe_kind_allocates_what_it_declares() {
    for medium in [false, true] {
        let (h, n) = if medium { (48, 256) } else { (6, 16) };
        let (dx, dy) = if medium { (12, 8) } else { (3, 2) };
        let relu = Case::new(
            model(&format!(
                "[model]\nkind = \"mlp\"\nwidths = [{dx}, {h}, {h}, {dy}]\nactivation = \"relu\"\nbias = true\n"
            )),
            n,
        );
        let two = Case::new(
            model(&format!("[model]\nkind = \"linear\"\nwidths = [{dx}, {h}, {dy}]\n")),
            n,
        );
        let tag = |p: &str| format!("{p} (h = {h}, n = {n})");

        relu.check(&tag("probes.charges"), || {
            Box::new(ChargeProbe::from_catalog(&relu.model)) as Box<dyn Probe>
        });
        two.check(&tag("probes.charges.families"), || {
            Box::new(FamilyProbe::new(catalog_families(&two.model))) as Box<dyn Probe>
        });
        two.check(&tag("probes.equilibrium"), || {
            Box::new(TwoLayerEquilibriumProbe::new().with_moments(MomentSource::Eval)) as Box<dyn Probe>
        });
        relu.check(&tag("probes.hessian.trace (exact)"), || {
            Box::new(
                HessianTraceProbe::new()
                    .with_data(CurvatureData::Eval)
                    .with_exact_max(usize::MAX),
            ) as Box<dyn Probe>
        });
        relu.check(&tag("probes.hessian.trace (Hutchinson)"), || {
            Box::new(
                HessianTraceProbe::new()
                    .with_data(CurvatureData::Eval)
                    .with_exact_max(0)
                    .with_probes(4),
            ) as Box<dyn Probe>
        });
        two.check(&tag("probes.hessian.trace (closed form)"), || {
            Box::new(HessianTraceProbe::new().with_data(CurvatureData::Eval)) as Box<dyn Probe>
        });
        relu.check(&tag("probes.hessian.top_eigen"), || {
            Box::new(TopEigenProbe::new().with_data(CurvatureData::Eval)) as Box<dyn Probe>
        });
        two.check(&tag("probes.sharpness"), || {
            Box::new(PaperSharpnessProbe::new().with_data(CurvatureData::Eval)) as Box<dyn Probe>
        });

        // The step probe: built and watching one momentum update.
        let m = &relu.model;
        let gens: Vec<_> = catalog(m)
            .symmetries
            .into_iter()
            .map(|s| (s.name, s.generator))
            .collect();
        let k = gens.len();
        let opt = Optimizer::Momentum(Momentum::heavy_ball(0.9));
        let after: Vec<f64> = relu.theta.iter().map(|v| v * 0.99).collect();
        let grad = vec![0.01; m.n_params()];
        let vel = vec![0.0; m.n_params()];
        let mut declared = None;
        let measured = peak(|| {
            let mut p = StepChargeProbe::new(gens.clone()).unwrap();
            p.on_step(&StepCtx {
                step: 1,
                lr: 0.1,
                weight_decay: 0.0,
                optimizer: &opt,
                velocity_before: &vel,
                batch_loss: 1.0,
                theta_before: &relu.theta,
                theta_after: &after,
                grad: &grad,
            })
            .unwrap();
            ON.with(|o| o.set(false));
            declared = Some(p.footprint(m, n));
            ON.with(|o| o.set(true));
            p
        });
        honest(
            &tag(&format!("step charges ({k} generators)")),
            measured,
            &declared.unwrap(),
        );
    }
    verdict();
}
