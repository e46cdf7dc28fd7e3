//! Kernel benchmarks: one SGD step of each model family at several sizes, the per-sample gradient
//! statistics, the equilibrium solve (`rebalance`) and a Hessian-vector product. Fixed seeds and
//! named inputs, so numbers are comparable between commits on one machine.
//!
//! Run with `cargo bench -p nequil --bench kernels` (a filter selects, e.g. `-- step/linear`).
//! One SGD step = batch sampling from an online Gaussian source (x ~ N(0, diag(φI, (2−φ)I)),
//! y = target(x) + ε), the loss gradient and the update (see `nequil::train::Stepper`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nequil::core::data::{Cov, Gaussian, Source, Target};
use nequil::core::equilibrium::rebalance;
use nequil::core::models::{Activation, Init, Model, ScaleKind};
use nequil::core::rng::Rng;
use nequil::core::stats::grad_stats;
use nequil::train::{Batching, Stepper};
use std::hint::black_box;
use std::time::Duration;

/// A named step workload: model, batch size.
struct StepCase {
    name: &'static str,
    model: Model,
    batch: usize,
}

fn mlp(w: &[usize], act: Activation, bias: bool) -> Model {
    Model::mlp(w, act, bias).unwrap()
}

fn step_cases() -> Vec<StepCase> {
    use Activation::*;
    vec![
        // The paper's two-layer linear autoencoder (bench workload "linear2 tiny").
        StepCase {
            name: "linear_10-20-10_s1",
            model: mlp(&[10, 20, 10], Identity, false),
            batch: 1,
        },
        StepCase {
            name: "linear_10-20-10_s16",
            model: mlp(&[10, 20, 10], Identity, false),
            batch: 16,
        },
        // Bench workload "linear2 small".
        StepCase {
            name: "linear_100-200-100_s100",
            model: mlp(&[100, 200, 100], Identity, false),
            batch: 100,
        },
        StepCase {
            name: "linear_10-20-20-10_s1",
            model: mlp(&[10, 20, 20, 10], Identity, false),
            batch: 1,
        },
        StepCase {
            name: "mlp-tanh_10-32-10_s1",
            model: mlp(&[10, 32, 10], Tanh, true),
            batch: 1,
        },
        StepCase {
            name: "mlp-tanh_100-256-100_s64",
            model: mlp(&[100, 256, 100], Tanh, true),
            batch: 64,
        },
        StepCase {
            name: "mlp-relu_10-32-10_s1",
            model: mlp(&[10, 32, 10], Relu, true),
            batch: 1,
        },
        StepCase {
            name: "mlp-relu_100-256-256-100_s64",
            model: mlp(&[100, 256, 256, 100], Relu, true),
            batch: 64,
        },
        StepCase {
            name: "net-a_10-32-10_s1",
            model: Model::scale_net(ScaleKind::NetA, 10, 32, 10).unwrap(),
            batch: 1,
        },
        StepCase {
            name: "net-a_100-256-100_s64",
            model: Model::scale_net(ScaleKind::NetA, 100, 256, 100).unwrap(),
            batch: 64,
        },
    ]
}

fn source(model: &Model) -> Source {
    let d = model.d_in();
    let target = if model.d_out() == d {
        Target::Identity
    } else {
        Target::random_linear(d, model.d_out(), &mut Rng::new(9))
    };
    Source::Online(Gaussian::new(d, model.d_out(), Cov::phi(d, 0.25), target, Some(Cov::Scalar(1.0))).unwrap())
}

fn bench_steps(c: &mut Criterion) {
    let mut g = c.benchmark_group("step");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for case in step_cases() {
        let model = &case.model;
        let mut src = source(model);
        let mut theta = model.init(&Init::Kaiming, &mut Rng::new(1)).unwrap();
        let mut st = Stepper::new(model, &src, Batching::Sgd(case.batch), 0.0, 2).unwrap();
        // A small learning rate keeps every model far from divergence over millions of steps.
        let lr = 1e-4;
        let mut k = 0u64;
        g.throughput(Throughput::Elements(case.batch as u64));
        g.bench_function(case.name, |b| {
            b.iter(|| {
                k += 1;
                black_box(st.step(model, &mut src, &mut theta, lr, k).unwrap())
            })
        });
    }
    g.finish();
}

/// The engine's three product forms at the shapes of the linear2 workloads' steps (m, n, k as in
/// `nequil::core::linalg`): tiny (S = 1, D = 10, H = 20) and small (S = 100, D = 100, H = 200).
fn bench_gemm(c: &mut Criterion) {
    use nequil::core::linalg::{gemm_nn, gemm_nt, gemm_tn};
    let mut g = c.benchmark_group("gemm");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    let shapes: [(&str, usize, usize, usize); 10] = [
        ("nt", 1, 20, 10),
        ("nt", 1, 10, 20),
        ("tn", 10, 20, 1),
        ("nn", 1, 20, 10),
        ("tn", 20, 10, 1),
        ("nt", 100, 200, 100),
        ("nt", 100, 100, 200),
        ("tn", 100, 200, 100),
        ("nn", 100, 200, 100),
        ("tn", 200, 100, 100),
    ];
    let mut r = Rng::new(11);
    for (form, m, n, k) in shapes {
        let mut a = vec![0.0; m.max(k) * k.max(m)];
        let mut b = vec![0.0; n.max(k) * k.max(n)];
        r.fill_normal(&mut a);
        r.fill_normal(&mut b);
        let mut out = vec![0.0; m * n];
        g.throughput(Throughput::Elements((2 * m * n * k) as u64));
        g.bench_function(format!("{form}_{m}x{n}x{k}"), |bch| {
            bch.iter(|| {
                match form {
                    "nt" => gemm_nt(&mut out, black_box(&a), &b, m, n, k, false),
                    "nn" => gemm_nn(&mut out, black_box(&a), &b, m, n, k, false),
                    _ => gemm_tn(&mut out, black_box(&a), &b, m, n, k, 1.0, false),
                }
                black_box(out[0])
            })
        });
    }
    g.finish();
}

fn gaussian_data(model: &Model, n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut r = Rng::new(seed);
    let mut x = vec![0.0; n * model.d_in()];
    let mut y = vec![0.0; n * model.d_out()];
    r.fill_normal(&mut x);
    r.fill_normal(&mut y);
    (x, y)
}

fn bench_stats(c: &mut Criterion) {
    let mut g = c.benchmark_group("grad_stats");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(3));
    let cases = [
        (
            "linear_10-20-10_n4096_chunk256",
            mlp(&[10, 20, 10], Activation::Identity, false),
            4096,
            256,
        ),
        (
            "mlp-tanh_50-128-10_n4096_chunk512",
            mlp(&[50, 128, 10], Activation::Tanh, true),
            4096,
            512,
        ),
        // The bench workload "noise" at a fifth of its N.
        (
            "mlp-relu_784-256-256-10_n2000_chunk1000",
            mlp(&[784, 256, 256, 10], Activation::Relu, true),
            2000,
            1000,
        ),
    ];
    for (name, model, n, chunk) in cases {
        let theta = model.init(&Init::Kaiming, &mut Rng::new(3)).unwrap();
        let (x, y) = gaussian_data(&model, n, 4);
        let mut ws = model.workspace(chunk);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(name, |b| {
            b.iter(|| black_box(grad_stats(&model, &theta, &x, &y, n, &mut ws).loss))
        });
    }
    g.finish();
}

fn bench_theory(c: &mut Criterion) {
    let mut g = c.benchmark_group("theory");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(3));
    // Equilibrium solve of every catalogued symmetry of a ReLU MLP (per-sample statistics, 1-D
    // solves, the joint neuron-rescaling solve and the rebalanced θ).
    let model = mlp(&[20, 32, 32, 5], Activation::Relu, true);
    let theta = model.init(&Init::Kaiming, &mut Rng::new(5)).unwrap();
    let n = 1000;
    let (x, y) = gaussian_data(&model, n, 6);
    g.bench_function("rebalance_relu_20-32-32-5_n1000", |b| {
        b.iter(|| black_box(rebalance(&model, &theta, &x, &y, n, 0.05, 8, 1e-3).unwrap().loss_after))
    });
    // One exact Hessian-vector product (R-operator) of the mean loss.
    for (name, model, n) in [
        ("tanh_20-64-5_n512", mlp(&[20, 64, 5], Activation::Tanh, true), 512),
        (
            "relu_100-128-128-10_n1000",
            mlp(&[100, 128, 128, 10], Activation::Relu, true),
            1000,
        ),
        (
            "net-a_20-64-5_n512",
            Model::scale_net(ScaleKind::NetA, 20, 64, 5).unwrap(),
            512,
        ),
    ] {
        let theta = model.init(&Init::Kaiming, &mut Rng::new(7)).unwrap();
        let (x, y) = gaussian_data(&model, n, 8);
        let mut v = vec![0.0; model.n_params()];
        Rng::new(9).fill_normal(&mut v);
        let mut out = vec![0.0; model.n_params()];
        g.bench_with_input(BenchmarkId::new("hvp", name), &n, |b, &n| {
            b.iter(|| {
                nequil::core::curvature::hvp(&model, &theta, &x, &y, n, black_box(&v), &mut out).unwrap();
                black_box(out[0])
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_gemm, bench_steps, bench_stats, bench_theory);
criterion_main!(benches);
