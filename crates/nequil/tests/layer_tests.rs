//! Every layer kind, through models built as stacks: the derived symmetries against discovery and
//! exact invariance, gradients and Hessian-vector products against finite differences, and the
//! per-sample statistics against a naive per-sample loop.
//!
//! The zoo covers every layer kind (dense with and without bias, each activation, sigmoid, GELU
//! (both forms), softplus, hardswish, batch-norm, rms-norm,
//! group-norm, Net-A, Net-B) in the paper's families and in mixed stacks
//! that no family describes.

use nequil::core::curvature::{EmpiricalHessian, HessianOp, HvpOptions, HvpWorkspace};
use nequil::core::layers::{
    Activation, ActivationLayer, AdaptiveAvgPool1dConfig, AdaptiveAvgPool2dConfig, AvgPool2dConfig, BatchNormConfig,
    Conv1dConfig, Conv2dConfig, FlattenConfig, GeluApproximate, GeluConfig, GroupNormConfig, HardswishConfig,
    KernelSpec, LayerConfig as L, LayerNormConfig, LeakyReluConfig, Linear, LinearConfig, MaxPool2dConfig,
    MeanPoolConfig, Padding, PaddingMode, ReluConfig, ResidualConfig, RmsNormConfig, SelfAttentionConfig,
    SigmoidConfig, SoftplusConfig, TanhConfig,
};
use nequil::core::models::{Init, Model, NodeSpec, ScaleKind};
use nequil::core::rng::Rng;
use nequil::core::stats::{grad_stats, per_sample_grads, quad_forms};
use nequil::core::symmetry::{catalog, discover_diagonal, verify, DiscoverOptions, Generator};
use std::sync::Arc;

fn dense(i: usize, o: usize, bias: bool, label: &str) -> NodeSpec {
    NodeSpec {
        layer: Arc::new(Linear::new(i, o, bias)),
        module: format!("layers.{label}"),
        label: label.into(),
    }
}

fn act(a: Activation, w: usize) -> NodeSpec {
    NodeSpec {
        layer: Arc::new(ActivationLayer::new(a, vec![w])),
        module: String::new(),
        label: String::new(),
    }
}

fn relu() -> L {
    L::Relu(ReluConfig {})
}

/// A small CNN: conv, ReLU, max-pool, conv, ReLU, avg-pool, flatten, linear.
fn cnn() -> Model {
    Model::sequential(
        &[2, 6, 6],
        &[
            L::Conv2d(Conv2dConfig {
                out_channels: 3,
                kernel: KernelSpec::Square(3),
                stride: 1,
                padding: 1.into(),
                dilation: KernelSpec::Square(1),
                groups: 1,
                bias: true,
            }),
            relu(),
            L::MaxPool2d(MaxPool2dConfig {
                kernel: 2,
                stride: Some(2),
            }),
            L::Conv2d(Conv2dConfig {
                out_channels: 4,
                kernel: KernelSpec::Square(2),
                stride: 1,
                padding: 0.into(),
                dilation: KernelSpec::Square(1),
                groups: 1,
                bias: false,
            }),
            relu(),
            L::AvgPool2d(AvgPool2dConfig {
                kernel: 2,
                stride: Some(1),
            }),
            L::Flatten(FlattenConfig {}),
            L::Linear(LinearConfig {
                out_features: 2,
                bias: true,
            }),
        ],
    )
    .unwrap()
}

/// A strided, padded CNN with a non-square kernel.
fn cnn_strided() -> Model {
    Model::sequential(
        &[1, 7, 5],
        &[
            L::Conv2d(Conv2dConfig {
                out_channels: 2,
                kernel: KernelSpec::Rect([3, 2]),
                stride: 2,
                padding: 1.into(),
                dilation: KernelSpec::Square(1),
                groups: 1,
                bias: true,
            }),
            L::LeakyRelu(LeakyReluConfig { slope: 0.1 }),
            L::Flatten(FlattenConfig {}),
            L::Linear(LinearConfig {
                out_features: 2,
                bias: false,
            }),
        ],
    )
    .unwrap()
}

/// A one-block transformer: LayerNorm + causal attention, LayerNorm + MLP, each residual, then a
/// mean over the sequence and a linear head.
fn transformer(eps: f64, causal: bool) -> Model {
    Model::sequential(
        &[4, 4],
        &[
            L::Residual(ResidualConfig {
                layers: vec![
                    L::LayerNorm(LayerNormConfig { eps, affine: true }),
                    L::SelfAttention(SelfAttentionConfig {
                        heads: 2,
                        causal,
                        bias: true,
                    }),
                ],
            }),
            L::Residual(ResidualConfig {
                layers: vec![
                    L::LayerNorm(LayerNormConfig { eps, affine: true }),
                    L::Linear(LinearConfig {
                        out_features: 6,
                        bias: true,
                    }),
                    relu(),
                    L::Linear(LinearConfig {
                        out_features: 4,
                        bias: true,
                    }),
                ],
            }),
            L::MeanPool(MeanPoolConfig {}),
            L::Linear(LinearConfig {
                out_features: 2,
                bias: true,
            }),
        ],
    )
    .unwrap()
}

/// `linear 3 → 4, relu, linear 4 → 4, {layer}, linear 4 → 2` (biases): the ReLU passes the first
/// map's 4 neurons to the second; `layer`, not positively homogeneous, blocks the second's.
fn blocked_by(layer: L) -> Model {
    let lin = |o: usize| {
        L::Linear(LinearConfig {
            out_features: o,
            bias: true,
        })
    };
    Model::sequential(&[3], &[lin(4), L::Relu(ReluConfig {}), lin(4), layer, lin(2)]).unwrap()
}

/// Stacks covering every layer kind, with the number of diagonal symmetries each must have
/// (not counting inert parameters).
fn zoo() -> Vec<(&'static str, Model, usize)> {
    let mixed = Model::from_nodes(
        vec![
            dense(3, 4, true, "0"),
            act(Activation::Relu, 4),
            dense(4, 5, false, "1"),
            dense(5, 3, true, "2"),
            act(Activation::Tanh, 3),
            dense(3, 2, true, "3"),
        ],
        "mixed: linear, relu, linear, linear, tanh, linear",
    )
    .unwrap();
    let leaky_swish = Model::from_nodes(
        vec![
            dense(3, 3, true, "0"),
            act(Activation::LeakyRelu(0.2), 3),
            act(Activation::Identity, 3),
            dense(3, 4, true, "1"),
            act(Activation::Swish, 4),
            dense(4, 2, false, "2"),
        ],
        "mixed: linear, leaky-relu, identity, linear, swish, linear",
    )
    .unwrap();
    vec![
        ("linear", Model::linear(&[3, 4, 5, 2]).unwrap(), 9),
        ("relu", Model::mlp(&[3, 4, 3, 2], Activation::Relu, true).unwrap(), 7),
        (
            "leaky",
            Model::mlp(&[3, 4, 2], Activation::LeakyRelu(0.1), true).unwrap(),
            4,
        ),
        ("tanh", Model::mlp(&[3, 4, 2], Activation::Tanh, true).unwrap(), 0),
        ("swish", Model::mlp(&[3, 4, 2], Activation::Swish, false).unwrap(), 0),
        ("mixed", mixed, 9),
        ("leaky-swish", leaky_swish, 3),
        ("net-a", Model::scale_net(ScaleKind::NetA, 3, 4, 2).unwrap(), 1),
        ("net-b", Model::scale_net(ScaleKind::NetB, 3, 4, 2).unwrap(), 2),
        // conv channels (3) through ReLU and max-pool to the next conv; its channels (4) through
        // ReLU, avg-pool and flatten to the linear head.
        ("cnn", cnn(), 7),
        ("cnn-strided", cnn_strided(), 2),
        // The linear layer feeding a normalization without ε is scale invariant; the affine
        // features (4) reach the head through ReLU.
        (
            "layer-norm",
            Model::sequential(
                &[5],
                &[
                    L::Linear(LinearConfig {
                        out_features: 4,
                        bias: true,
                    }),
                    L::LayerNorm(LayerNormConfig { eps: 0.0, affine: true }),
                    relu(),
                    L::Linear(LinearConfig {
                        out_features: 2,
                        bias: true,
                    }),
                ],
            )
            .unwrap(),
            5,
        ),
        (
            "layer-norm-eps",
            Model::sequential(
                &[5],
                &[
                    L::Linear(LinearConfig {
                        out_features: 4,
                        bias: true,
                    }),
                    L::LayerNorm(LayerNormConfig {
                        eps: 1e-3,
                        affine: false,
                    }),
                    L::Linear(LinearConfig {
                        out_features: 2,
                        bias: false,
                    }),
                ],
            )
            .unwrap(),
            0,
        ),
        // Per residual block: 4 LayerNorm features absorbed by the next map; attention: 2 heads ×
        // 2 dims of qk and of vo; MLP: 6 neurons.
        ("transformer", transformer(0.0, true), 4 + 8 + 4 + 6),
        ("transformer-eps", transformer(1e-5, false), 4 + 8 + 4 + 6),
        // Batch-norm with running means ≠ 0 blocks the conv's channels; its own 3 channels reach
        // the head through ReLU, avg-pool and flatten.
        (
            "batch-norm",
            Model::sequential(
                &[2, 4, 4],
                &[
                    L::Conv2d(Conv2dConfig {
                        out_channels: 3,
                        kernel: KernelSpec::Square(3),
                        stride: 1,
                        padding: 1.into(),
                        dilation: KernelSpec::Square(1),
                        groups: 1,
                        bias: true,
                    }),
                    L::BatchNorm(BatchNormConfig {
                        running_mean: Some(vec![0.5, -0.3, 0.2]),
                        running_var: Some(vec![1.5, 0.5, 2.0]),
                        ..Default::default()
                    }),
                    relu(),
                    L::AvgPool2d(AvgPool2dConfig {
                        kernel: 2,
                        stride: None,
                    }),
                    L::Flatten(FlattenConfig {}),
                    L::Linear(LinearConfig {
                        out_features: 2,
                        bias: true,
                    }),
                ],
            )
            .unwrap(),
            3,
        ),
        // PyTorch's fresh buffers (μ = 0): the linear layer's 4 neurons are taken in by γ, and the
        // batch-norm's 4 features reach the head through ReLU.
        (
            "batch-norm-fresh",
            Model::sequential(
                &[3],
                &[
                    L::Linear(LinearConfig {
                        out_features: 4,
                        bias: true,
                    }),
                    L::BatchNorm(BatchNormConfig::default()),
                    relu(),
                    L::Linear(LinearConfig {
                        out_features: 2,
                        bias: true,
                    }),
                ],
            )
            .unwrap(),
            8,
        ),
        // As layer-norm: the linear layer feeding an RMS normalization without ε is scale
        // invariant; the 4 affine features reach the head through ReLU.
        (
            "rms-norm",
            Model::sequential(
                &[5],
                &[
                    L::Linear(LinearConfig {
                        out_features: 4,
                        bias: true,
                    }),
                    L::RmsNorm(RmsNormConfig {
                        eps: Some(0.0),
                        affine: true,
                    }),
                    relu(),
                    L::Linear(LinearConfig {
                        out_features: 2,
                        bias: true,
                    }),
                ],
            )
            .unwrap(),
            5,
        ),
        // With ε > 0 the scale invariance is only approximate and is not claimed (ε = 1e-3, as
        // layer-norm-eps, so that the breaking is far above the discovery's tolerance).
        (
            "rms-norm-eps",
            Model::sequential(
                &[5],
                &[
                    L::Linear(LinearConfig {
                        out_features: 4,
                        bias: true,
                    }),
                    L::RmsNorm(RmsNormConfig {
                        eps: Some(1e-3),
                        affine: false,
                    }),
                    L::Linear(LinearConfig {
                        out_features: 2,
                        bias: false,
                    }),
                ],
            )
            .unwrap(),
            0,
        ),
        // Group-norm (2 groups of 2 channels, ε > 0): the conv's channels are blocked, the 4
        // affine channels reach the head through ReLU, avg-pool and flatten.
        (
            "group-norm",
            Model::sequential(
                &[1, 4, 4],
                &[
                    L::Conv2d(Conv2dConfig {
                        out_channels: 4,
                        kernel: KernelSpec::Square(3),
                        stride: 1,
                        padding: 1.into(),
                        dilation: KernelSpec::Square(1),
                        groups: 1,
                        bias: true,
                    }),
                    L::GroupNorm(GroupNormConfig {
                        num_groups: 2,
                        eps: 1e-3,
                        affine: true,
                    }),
                    relu(),
                    L::AvgPool2d(AvgPool2dConfig {
                        kernel: 2,
                        stride: None,
                    }),
                    L::Flatten(FlattenConfig {}),
                    L::Linear(LinearConfig {
                        out_features: 2,
                        bias: true,
                    }),
                ],
            )
            .unwrap(),
            4,
        ),
        // A 1-D CNN: the grouped, dilated conv1d's 4 channels through ReLU to the depthwise
        // conv1d (each absorbed by its own filter), whose 4 channels reach the head through ReLU
        // and adaptive average pooling (overlapping windows: 5 → 3).
        (
            "conv1d",
            Model::sequential(
                &[2, 8],
                &[
                    L::Conv1d(Conv1dConfig {
                        out_channels: 4,
                        kernel: 3,
                        stride: 1,
                        padding: Padding::Mode(PaddingMode::Same),
                        dilation: 2,
                        groups: 2,
                        bias: true,
                    }),
                    relu(),
                    L::Conv1d(Conv1dConfig {
                        out_channels: 4,
                        kernel: 2,
                        stride: 2,
                        padding: 1.into(),
                        dilation: 1,
                        groups: 4,
                        bias: true,
                    }),
                    relu(),
                    L::AdaptiveAvgPool1d(AdaptiveAvgPool1dConfig { output_size: 3 }),
                    L::Flatten(FlattenConfig {}),
                    L::Linear(LinearConfig {
                        out_features: 2,
                        bias: true,
                    }),
                ],
            )
            .unwrap(),
            8,
        ),
        // Grouped 2-D convolutions (even kernel, "same" padding, dilation) and adaptive average
        // pooling (5×5 → 2×3): 4 + 4 channels.
        (
            "cnn-grouped",
            Model::sequential(
                &[2, 5, 5],
                &[
                    L::Conv2d(Conv2dConfig {
                        out_channels: 4,
                        kernel: KernelSpec::Square(3),
                        stride: 1,
                        padding: 1.into(),
                        dilation: KernelSpec::Square(1),
                        groups: 2,
                        bias: true,
                    }),
                    relu(),
                    L::Conv2d(Conv2dConfig {
                        out_channels: 4,
                        kernel: KernelSpec::Rect([2, 3]),
                        stride: 1,
                        padding: Padding::Mode(PaddingMode::Same),
                        dilation: KernelSpec::Rect([2, 1]),
                        groups: 2,
                        bias: false,
                    }),
                    relu(),
                    L::AdaptiveAvgPool2d(AdaptiveAvgPool2dConfig {
                        output_size: KernelSpec::Rect([2, 3]),
                    }),
                    L::Flatten(FlattenConfig {}),
                    L::Linear(LinearConfig {
                        out_features: 2,
                        bias: true,
                    }),
                ],
            )
            .unwrap(),
            8,
        ),
        // ReLU passes the first layer's 4 neurons to the next map; sigmoid blocks the second's.
        (
            "sigmoid",
            Model::sequential(
                &[3],
                &[
                    L::Linear(LinearConfig {
                        out_features: 4,
                        bias: true,
                    }),
                    L::Relu(ReluConfig {}),
                    L::Linear(LinearConfig {
                        out_features: 4,
                        bias: true,
                    }),
                    L::Sigmoid(SigmoidConfig {}),
                    L::Linear(LinearConfig {
                        out_features: 2,
                        bias: true,
                    }),
                ],
            )
            .unwrap(),
            4,
        ),
        // The same with each of the other element-wise kinds that are not positively homogeneous
        // in the sigmoid's place: each blocks the second map's neurons.
        ("gelu", blocked_by(L::Gelu(GeluConfig::default())), 4),
        (
            "gelu-tanh",
            blocked_by(L::Gelu(GeluConfig {
                approximate: GeluApproximate::Tanh,
            })),
            4,
        ),
        (
            "softplus",
            blocked_by(L::Softplus(SoftplusConfig {
                beta: 1.5,
                threshold: 20.0,
            })),
            4,
        ),
        ("hardswish", blocked_by(L::Hardswish(HardswishConfig {})), 4),
        (
            "sequence-mlp",
            Model::sequential(
                &[3, 2],
                &[
                    L::Linear(LinearConfig {
                        out_features: 4,
                        bias: true,
                    }),
                    L::LeakyRelu(LeakyReluConfig { slope: 0.3 }),
                    L::Linear(LinearConfig {
                        out_features: 3,
                        bias: false,
                    }),
                    L::MeanPool(MeanPoolConfig {}),
                    L::Linear(LinearConfig {
                        out_features: 2,
                        bias: true,
                    }),
                ],
            )
            .unwrap(),
            4 + 3,
        ),
    ]
}

fn data(model: &Model, n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = Rng::new(seed);
    let mut x = vec![0.0; n * model.d_in()];
    let mut y = vec![0.0; n * model.d_out()];
    rng.fill_normal(&mut x);
    rng.fill_normal(&mut y);
    (x, y)
}

/// θ with biases away from zero, so that nothing is accidentally symmetric or at a kink.
fn theta(model: &Model, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let mut t = model.init(&Init::Xavier, &mut rng).unwrap();
    for v in &mut t {
        *v += 0.3 * rng.normal();
    }
    t
}

fn grad(model: &Model, t: &[f64], x: &[f64], y: &[f64], n: usize) -> Vec<f64> {
    let mut g = vec![0.0; model.n_params()];
    let mut ws = model.workspace(n);
    model.loss_grad(t, x, y, n, &mut g, &mut ws);
    g
}

fn min_kink_distance(model: &Model, t: &[f64], x: &[f64], n: usize) -> f64 {
    model.kink_distance(t, x, n)
}

#[test]
fn gradients_match_central_differences() {
    for (name, model, _) in zoo() {
        let n = 6;
        let (x, y) = data(&model, n, 1);
        let mut seed = 10;
        let t = loop {
            let t = theta(&model, seed);
            if min_kink_distance(&model, &t, &x, n) > 1e-3 {
                break t;
            }
            seed += 1;
        };
        let g = grad(&model, &t, &x, &y, n);
        let mut ws = model.workspace(n);
        let h = 1e-6;
        for p in 0..model.n_params() {
            let (mut tp, mut tm) = (t.clone(), t.clone());
            tp[p] += h;
            tm[p] -= h;
            let fd = (model.loss(&tp, &x, &y, n, &mut ws) - model.loss(&tm, &x, &y, n, &mut ws)) / (2.0 * h);
            // Central differences: truncation O(h²·|ℓ'''|) plus rounding O(ε·ℓ/h) ≈ 1e-9 here.
            assert!(
                (fd - g[p]).abs() <= 1e-6 * (1.0 + g[p].abs()),
                "{name} param {p}: analytic {} vs central difference {fd}",
                g[p]
            );
        }
    }
}

#[test]
fn hessian_vector_products_match_differences_of_gradients() {
    for (name, model, _) in zoo() {
        let n = 7;
        let (x, y) = data(&model, n, 2);
        let mut seed = 20;
        let t = loop {
            let t = theta(&model, seed);
            if min_kink_distance(&model, &t, &x, n) > 1e-3 {
                break t;
            }
            seed += 1;
        };
        let mut rng = Rng::new(3);
        let mut v = vec![0.0; model.n_params()];
        rng.fill_normal(&mut v);
        for (chunk, threads, cache) in [(256, 1, 1 << 20), (3, 2, 0), (2, 1, 1 << 20)] {
            let opts = HvpOptions {
                chunk,
                threads,
                cache_bytes: cache,
            };
            let mut ws = HvpWorkspace::new(&model, opts);
            let mut op = EmpiricalHessian::new(&model, &t, &x, &y, n, &mut ws).unwrap();
            let mut hv = vec![0.0; model.n_params()];
            op.apply(&v, &mut hv);
            let h = 1e-5;
            let tp: Vec<f64> = t.iter().zip(&v).map(|(a, b)| a + h * b).collect();
            let tm: Vec<f64> = t.iter().zip(&v).map(|(a, b)| a - h * b).collect();
            let (gp, gm) = (grad(&model, &tp, &x, &y, n), grad(&model, &tm, &x, &y, n));
            let scale = hv.iter().fold(1.0f64, |a, b| a.max(b.abs()));
            for p in 0..model.n_params() {
                let fd = (gp[p] - gm[p]) / (2.0 * h);
                // Truncation O(h²·|∇⁴L|·|v|³) ≈ 1e-9 at these sizes; rounding O(ε/h) ≈ 1e-11.
                assert!(
                    (fd - hv[p]).abs() <= 1e-6 * scale,
                    "{name} (chunk {chunk}, threads {threads}) param {p}: Hv {} vs difference {fd}",
                    hv[p]
                );
            }
        }
    }
}

#[test]
fn per_sample_statistics_match_a_naive_loop() {
    for (name, model, _) in zoo() {
        let n = 11;
        let (x, y) = data(&model, n, 4);
        let t = theta(&model, 5);
        let p = model.n_params();
        let g = per_sample_grads(&model, &t, &x, &y, n);
        let mut rng = Rng::new(6);
        let mut d = vec![0.0; p];
        rng.fill_normal(&mut d);
        for chunk in [1, 4, n] {
            let mut ws = model.workspace(chunk);
            let st = grad_stats(&model, &t, &x, &y, n, &mut ws);
            let mut q = vec![0.0; n];
            quad_forms(&model, &t, &x, &y, n, &d, &mut q, &mut ws);
            for j in 0..p {
                let mean: f64 = (0..n).map(|i| g.at(i, j)).sum::<f64>() / n as f64;
                let sm: f64 = (0..n).map(|i| g.at(i, j) * g.at(i, j)).sum::<f64>() / n as f64;
                // Same products summed in another order: relative 1e-12.
                assert!(
                    (st.mean[j] - mean).abs() <= 1e-12 * (1.0 + mean.abs()),
                    "{name} mean {j}"
                );
                assert!(
                    (st.second_moment[j] - sm).abs() <= 1e-12 * (1.0 + sm.abs()),
                    "{name} second moment {j}: {} vs {sm}",
                    st.second_moment[j]
                );
            }
            for (i, qi) in q.iter().enumerate() {
                let naive: f64 = (0..p).map(|j| d[j] * g.at(i, j) * g.at(i, j)).sum();
                let mag: f64 = (0..p).map(|j| (d[j] * g.at(i, j) * g.at(i, j)).abs()).sum();
                assert!(
                    (qi - naive).abs() <= 1e-12 * (1.0 + mag),
                    "{name} quad form {i}: {qi} vs {naive}"
                );
            }
        }
    }
}

/// Rank of a set of vectors (Gram–Schmidt with a relative tolerance).
fn rank(vs: &[Vec<f64>], tol: f64) -> usize {
    let mut basis: Vec<Vec<f64>> = vec![];
    for v in vs {
        let mut w = v.clone();
        for b in &basis {
            let c: f64 = w.iter().zip(b).map(|(a, b)| a * b).sum();
            w.iter_mut().zip(b).for_each(|(a, b)| *a -= c * b);
        }
        let n = w.iter().map(|a| a * a).sum::<f64>().sqrt();
        let n0 = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        if n > tol * n0.max(1e-300) {
            basis.push(w.iter().map(|a| a / n).collect());
        }
    }
    basis.len()
}

#[test]
fn derived_symmetries_are_exact_and_span_the_discovered_ones() {
    for (name, model, expected) in zoo() {
        let n = 30;
        let (x, y) = data(&model, n, 7);
        let t = theta(&model, 8);
        let cat = catalog(&model);
        let derived: Vec<Vec<f64>> = cat
            .symmetries
            .iter()
            .map(|s| match &s.generator {
                Generator::Diagonal(a) => a.clone(),
                _ => panic!("{name}: catalog generators are diagonal"),
            })
            .collect();
        // Every derived generator leaves every per-sample loss unchanged along its orbit.
        for s in &cat.symmetries {
            let v = verify(&model, &t, &s.generator, &x, &y, n, &[-1.3, -0.2, 0.5, 1.7], 1e-12).unwrap();
            assert!(v.holds, "{name} {}: {v:?}", s.name);
        }
        let d = discover_diagonal(&model, &x, &y, n, &DiscoverOptions::default(), &mut Rng::new(9)).unwrap();
        // Inert parameters (zero gradient everywhere) are trivially in the discovered space: each
        // one its own generator. Compare the spaces without them.
        assert_eq!(d.null_dim, expected + cat.inert.len(), "{name}: discovered dimension");
        let strip = |v: &Vec<f64>| {
            let mut w = v.clone();
            cat.inert.iter().for_each(|&i| w[i] = 0.0);
            w
        };
        let derived: Vec<Vec<f64>> = derived.iter().map(strip).collect();
        let found: Vec<Vec<f64>> = d.diagonals().iter().map(strip).collect();
        assert_eq!(rank(&derived, 1e-9), expected, "{name}: derived dimension");
        assert_eq!(
            rank(&found, 1e-6),
            expected,
            "{name}: discovered dimension without inert parameters"
        );
        // Same space: the union has the dimension of each.
        let union: Vec<Vec<f64>> = derived.iter().chain(&found).cloned().collect();
        assert_eq!(
            rank(&union, 1e-6),
            expected,
            "{name}: derived and discovered spans differ"
        );
        // Inert parameters really have no gradient.
        let g = per_sample_grads(&model, &t, &x, &y, n);
        for &i in &cat.inert {
            assert!(
                (0..n).all(|s| g.at(s, i).abs() < 1e-12),
                "{name}: parameter {i} is not inert"
            );
        }
        // Matrix families: a random symmetric generator leaves the loss unchanged.
        for fam in &cat.families {
            let mut m = nequil::core::linalg::Dense::zeros(fam.dim, fam.dim);
            let mut r = Rng::new(11);
            for i in 0..fam.dim {
                for j in 0..=i {
                    let v = r.normal();
                    *m.at_mut(i, j) = v;
                    *m.at_mut(j, i) = v;
                }
            }
            let gen = fam.generator(model.n_params(), &m).unwrap();
            let v = verify(&model, &t, &gen, &x, &y, n, &[-0.7, 0.4], 1e-10).unwrap();
            assert!(v.holds, "{name} {}: {v:?}", fam.name);
        }
    }
}

#[test]
fn mixed_stack_symmetries_have_the_expected_names() {
    let (_, model, _) = zoo().into_iter().find(|z| z.0 == "mixed").unwrap();
    let cat = catalog(&model);
    let names: Vec<_> = cat.symmetries.iter().map(|s| s.name.as_str()).collect();
    // Layer 0 → ReLU → layer 1: 4 neurons; layer 1 → layer 2 directly: 5 neurons and a double
    // rotation; layer 2 → tanh → layer 3: none.
    assert_eq!(names.iter().filter(|n| n.starts_with("neuron.0.")).count(), 4);
    assert_eq!(names.iter().filter(|n| n.starts_with("neuron.1.")).count(), 5);
    assert!(names.contains(&"layer_pair.0") && names.contains(&"layer_pair.1"));
    assert!(!names.iter().any(|n| n.starts_with("neuron.2.")));
    assert_eq!(cat.rotation_pairs, ["1"]);
    assert!(cat.notes.iter().any(|n| n.contains("tanh")));
    assert!(model.as_chain().is_none(), "a mixed stack is not a chain");
}

mod random_shapes {
    //! Proptest over shapes, strides, paddings, kernels, heads and flags: gradients and
    //! Hessian-vector products against central differences, per-sample statistics against a naive
    //! per-sample loop (relative 1e-12).

    use super::*;
    use nequil::core::rng::Rng;
    use proptest::prelude::*;

    fn check(model: &Model, seed: u64) -> Result<(), TestCaseError> {
        let n = 4;
        let (x, y) = data(model, n, seed);
        let t = theta(model, seed + 1);
        prop_assume!(model.kink_distance(&t, &x, n) > 1e-4);
        let p = model.n_params();
        // Gradient: central differences, step 1e-6 (truncation ~1e-12·|ℓ'''|, rounding ~1e-10).
        let g = grad(model, &t, &x, &y, n);
        let mut ws = model.workspace(n);
        let h = 1e-6;
        for j in 0..p {
            let (mut tp, mut tm) = (t.clone(), t.clone());
            tp[j] += h;
            tm[j] -= h;
            let fd = (model.loss(&tp, &x, &y, n, &mut ws) - model.loss(&tm, &x, &y, n, &mut ws)) / (2.0 * h);
            prop_assert!(
                (fd - g[j]).abs() <= 1e-5 * (1.0 + g[j].abs()),
                "{}: param {j}: {} vs {fd}",
                model.describe(),
                g[j]
            );
        }
        // Hessian-vector product against a central difference of gradients.
        let mut rng = Rng::new(seed + 2);
        let mut v = vec![0.0; p];
        rng.fill_normal(&mut v);
        let mut hws = HvpWorkspace::new(
            model,
            HvpOptions {
                chunk: 3,
                threads: 1,
                cache_bytes: 1 << 20,
            },
        );
        let mut op = EmpiricalHessian::new(model, &t, &x, &y, n, &mut hws).unwrap();
        let mut hv = vec![0.0; p];
        op.apply(&v, &mut hv);
        let e = 1e-5;
        let tp: Vec<f64> = t.iter().zip(&v).map(|(a, b)| a + e * b).collect();
        let tm: Vec<f64> = t.iter().zip(&v).map(|(a, b)| a - e * b).collect();
        let (gp, gm) = (grad(model, &tp, &x, &y, n), grad(model, &tm, &x, &y, n));
        let scale = hv.iter().fold(1.0f64, |a, b| a.max(b.abs()));
        for j in 0..p {
            let fd = (gp[j] - gm[j]) / (2.0 * e);
            prop_assert!(
                (fd - hv[j]).abs() <= 1e-5 * scale,
                "{}: Hv {j}: {} vs {fd}",
                model.describe(),
                hv[j]
            );
        }
        // Per-sample statistics against the naive loop.
        let gs = per_sample_grads(model, &t, &x, &y, n);
        let st = grad_stats(model, &t, &x, &y, n, &mut model.workspace(3));
        for j in 0..p {
            let sm: f64 = (0..n).map(|i| gs.at(i, j) * gs.at(i, j)).sum::<f64>() / n as f64;
            prop_assert!((st.second_moment[j] - sm).abs() <= 1e-12 * (1.0 + sm.abs()));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn cnns(c in 1usize..3, h in 4usize..8, w in 3usize..7, o in 1usize..4, k in 1usize..4,
                stride in 1usize..3, pad in 0usize..2, pool in 0usize..3, bias in any::<bool>(), seed in 0u64..1000,
                dil in 1usize..3) {
            let kw = k.max(2).min(w + 2 * pad);
            prop_assume!(h + 2 * pad > dil * (k - 1) && w + 2 * pad > dil * (kw - 1));
            // Two groups where both channel counts are even.
            let groups = if c == 2 && o == 2 { 2 } else { 1 };
            let mut layers = vec![
                L::Conv2d(Conv2dConfig { out_channels: o, kernel: KernelSpec::Rect([k, kw]), stride, padding: pad.into(),
                                         dilation: KernelSpec::Rect([dil, 1]), groups, bias }),
                L::LeakyRelu(LeakyReluConfig { slope: 0.2 }),
            ];
            match pool {
                1 => layers.push(L::MaxPool2d(MaxPool2dConfig { kernel: 2, stride: Some(1) })),
                2 => layers.push(L::AvgPool2d(AvgPool2dConfig { kernel: 2, stride: Some(2) })),
                _ => {}
            }
            layers.push(L::Flatten(FlattenConfig {}));
            layers.push(L::Linear(LinearConfig { out_features: 2, bias: true }));
            let Ok(model) = Model::sequential(&[c, h, w], &layers) else {
                // A pooling window larger than the feature map: refused, as it must be.
                return Ok(());
            };
            check(&model, seed)?;
        }

        #[test]
        fn attention_blocks(t in 1usize..5, heads in 1usize..3, per_head in 1usize..3, causal in any::<bool>(),
                            bias in any::<bool>(), eps in prop_oneof![Just(0.0), Just(1e-5)], affine in any::<bool>(),
                            seed in 0u64..1000) {
            let e = heads * per_head;
            if eps == 0.0 && e == 1 {
                // Normalizing one feature without eps is 0/0: refused with a message, as it must be.
                let r = Model::sequential(&[t, e], &[L::LayerNorm(LayerNormConfig { eps, affine })]);
                prop_assert!(r.is_err_and(|e| e.to_string().contains("eps = 0")));
                return Ok(());
            }
            let model = Model::sequential(
                &[t, e],
                &[
                    L::Residual(ResidualConfig { layers: vec![L::LayerNorm(LayerNormConfig { eps, affine }), L::SelfAttention(SelfAttentionConfig { heads, causal, bias })] }),
                    L::Residual(ResidualConfig { layers: vec![L::Linear(LinearConfig { out_features: 3, bias }), L::Tanh(TanhConfig {}), L::Linear(LinearConfig { out_features: e, bias })] }),
                    L::MeanPool(MeanPoolConfig {}),
                    L::Linear(LinearConfig { out_features: 2, bias: true }),
                ],
            )
            .unwrap();
            check(&model, seed)?;
        }
    }
}
