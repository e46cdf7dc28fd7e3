//! Several threads give the same bits as one (`core::parallel`): training (final θ and every
//! metric, with Hessian and charge instruments), the per-sample statistics and the Hessian-vector
//! products, on shapes whose products are above the split threshold.

use nequil::core::curvature::{EmpiricalHessian, HessianOp, HvpOptions, HvpWorkspace};
use nequil::core::layers::Activation;
use nequil::core::models::Model;
use nequil::core::parallel::{with_threads, PAR_MIN};
use nequil::core::rng::Rng;
use nequil::core::stats::{grad_stats, quad_forms};
use nequil::lab::runner::run_spec;
use nequil::lab::spec::Spec;
use std::path::Path;

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Widths 64-256-64 with a batch of 32: the first layer's forward product is 32·256·64, four
/// times the split threshold, and so are the weight-gradient products.
const WIDTHS: [usize; 3] = [64, 256, 64];

#[test]
fn the_shapes_cross_the_threshold() {
    assert!(32 * WIDTHS[0] * WIDTHS[1] >= 4 * PAR_MIN);
}

fn spec(threads: usize) -> Spec {
    Spec::from_toml(&format!(
        r#"
seed = 11
[model]
kind = "mlp"
widths = {WIDTHS:?}
activation = "relu"
bias = true
[data]
noise_cov = {{ scalar = 0.1 }}
[train]
lr = 0.02
batch_size = 32
steps = 40
threads = {threads}
[probes]
every = 20
eval_samples = 300
[probes.hessian]
hutchinson = 2
lanczos_iter = 8
[probes.charges]
symmetries = ["neuron.0.*"]
"#
    ))
    .unwrap()
}

#[test]
fn training_is_bit_identical_across_thread_counts() {
    let run = |t: usize| run_spec(&spec(t), Path::new("."), &mut [], &mut |_, _| {}).unwrap().1;
    let one = run(1);
    assert!(one.error.is_none());
    assert!(one
        .log
        .columns
        .iter()
        .any(|c| c.contains("lambda_max") || c.contains("trace")));
    for t in [2, 3] {
        let many = run(t);
        assert_eq!(bits(&many.theta), bits(&one.theta), "final θ with {t} threads");
        assert_eq!(many.log.columns, one.log.columns);
        assert_eq!(many.log.rows.len(), one.log.rows.len());
        for (a, b) in many.log.rows.iter().zip(&one.log.rows) {
            assert_eq!(bits(a), bits(b), "metrics with {t} threads");
        }
    }
    // An enclosing choice (a sweep's share of the cores, `--threads`) takes the place of the
    // spec's, with the same bits.
    let outer = with_threads(2, || run(1));
    assert_eq!(bits(&outer.theta), bits(&one.theta));
}

#[test]
fn statistics_and_hessian_products_are_bit_identical_across_thread_counts() {
    let model = Model::mlp(&WIDTHS, Activation::Tanh, true).unwrap();
    let mut r = Rng::new(5);
    let theta = model.init(&nequil::core::models::Init::Kaiming, &mut r).unwrap();
    let n = 300;
    let mut x = vec![0.0; n * WIDTHS[0]];
    let mut y = vec![0.0; n * WIDTHS[2]];
    r.fill_normal(&mut x);
    r.fill_normal(&mut y);
    let p = model.n_params();
    let mut diag = vec![0.0; p];
    let mut v = vec![0.0; p];
    r.fill_normal(&mut v);
    for (i, d) in diag.iter_mut().enumerate() {
        *d = 1.0 + (i % 7) as f64;
    }
    let compute = || {
        // Chunks of 128 samples: 128·256·64 per product, with a last chunk of 44.
        let mut ws = model.workspace(128);
        let st = grad_stats(&model, &theta, &x, &y, n, &mut ws);
        let mut q = vec![0.0; n];
        quad_forms(&model, &theta, &x, &y, n, &diag, &mut q, &mut ws);
        let mut hv = vec![0.0; p];
        for cache_bytes in [0, 256 << 20] {
            let opts = HvpOptions {
                chunk: 128,
                cache_bytes,
                ..HvpOptions::default()
            };
            let mut hws = HvpWorkspace::new(&model, opts);
            let mut op = EmpiricalHessian::new(&model, &theta, &x, &y, n, &mut hws).unwrap();
            let mut out = vec![0.0; p];
            op.apply(&v, &mut out);
            hv.extend(out);
        }
        (st, q, hv)
    };
    let (st1, q1, hv1) = compute();
    assert!(st1.loss.is_finite() && hv1.iter().any(|h| *h != 0.0));
    for t in [2, 3] {
        let (st, q, hv) = with_threads(t, compute);
        assert_eq!(st.loss.to_bits(), st1.loss.to_bits(), "loss, {t} threads");
        assert_eq!(bits(&st.mean), bits(&st1.mean), "mean gradient, {t} threads");
        assert_eq!(
            bits(&st.second_moment),
            bits(&st1.second_moment),
            "second moment, {t} threads"
        );
        assert_eq!(bits(&q), bits(&q1), "quadratic forms, {t} threads");
        assert_eq!(bits(&hv), bits(&hv1), "Hessian-vector products, {t} threads");
    }
}
