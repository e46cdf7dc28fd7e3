//! Curvature benchmarks: the top Hessian eigenvalue (Lanczos over exact R-operator products) of a
//! ReLU MLP 784-256-256-10 with biases on 5000 fixed-seed Gaussian samples, MNIST-sized.
//!
//! Run with `cargo bench -p nequil --bench curvature`. The Lanczos settings are the defaults of
//! the `TopEigenProbe` (k = 1, tol 1e-6 relative residual, at most 80 steps).

use criterion::{criterion_group, criterion_main, Criterion};
use nequil::core::curvature::{lanczos, EmpiricalHessian, HessianOp, HvpOptions, HvpWorkspace, LanczosOptions};
use nequil::core::models::{Activation, Init, Model};
use nequil::core::rng::Rng;
use std::hint::black_box;
use std::time::Duration;

struct Problem {
    model: Model,
    theta: Vec<f64>,
    x: Vec<f64>,
    y: Vec<f64>,
    n: usize,
}

fn problem() -> Problem {
    let model = Model::mlp(&[784, 256, 256, 10], Activation::Relu, true).unwrap();
    let mut rng = Rng::new(42);
    let theta = model.init(&Init::Kaiming, &mut rng).unwrap();
    let n = 5000;
    let mut x = vec![0.0; n * 784];
    let mut y = vec![0.0; n * 10];
    rng.fill_normal(&mut x);
    rng.fill_normal(&mut y);
    Problem { model, theta, x, y, n }
}

fn top_eigenvalue(pb: &Problem, ws: &mut HvpWorkspace) -> nequil::core::curvature::LanczosResult {
    let mut op = EmpiricalHessian::new(&pb.model, &pb.theta, &pb.x, &pb.y, pb.n, ws).unwrap();
    lanczos(&mut op, &LanczosOptions::default()).unwrap()
}

fn bench(c: &mut Criterion) {
    let pb = problem();
    let p = pb.model.n_params();
    let mut g = c.benchmark_group("relu_784-256-256-10_n5000");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    for threads in [1, 2] {
        let opts = HvpOptions {
            chunk: 500,
            threads,
            ..HvpOptions::default()
        };
        let mut ws = HvpWorkspace::new(&pb.model, opts);
        let r = top_eigenvalue(&pb, &mut ws);
        eprintln!(
            "threads {threads}: λ_max = {:.6}, {} Lanczos steps, residual {:.2e}, converged {}",
            r.values[0], r.iterations, r.residuals[0], r.converged
        );
        g.bench_function(format!("lanczos_top1_threads{threads}"), |b| {
            b.iter(|| black_box(top_eigenvalue(&pb, &mut ws).values[0]))
        });
        let mut op = EmpiricalHessian::new(&pb.model, &pb.theta, &pb.x, &pb.y, pb.n, &mut ws).unwrap();
        let mut v = vec![0.0; p];
        Rng::new(1).fill_normal(&mut v);
        let mut out = vec![0.0; p];
        g.bench_function(format!("hvp_cached_threads{threads}"), |b| {
            b.iter(|| {
                op.apply(black_box(&v), &mut out);
                black_box(out[0])
            })
        });
    }
    let mut ws = HvpWorkspace::new(
        &pb.model,
        HvpOptions {
            chunk: 500,
            cache_bytes: 0,
            ..HvpOptions::default()
        },
    );
    let mut op = EmpiricalHessian::new(&pb.model, &pb.theta, &pb.x, &pb.y, pb.n, &mut ws).unwrap();
    let mut v = vec![0.0; p];
    Rng::new(1).fill_normal(&mut v);
    let mut out = vec![0.0; p];
    g.bench_function("hvp_uncached_threads1", |b| {
        b.iter(|| {
            op.apply(black_box(&v), &mut out);
            black_box(out[0])
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
