//! Cross-entropy through the engine: the loss and its gradient against central differences and
//! against the direct formula, Hessian-vector products against differences of the gradient, the
//! batched per-sample statistics against a per-sample loop, the exact symmetry identity
//! `θᵀA∇ℓ_i = 0` of a ReLU net's rescalings, the equilibrium, and the refusals of the linear
//! families' mean-squared-error closed forms.

use nequil::core::curvature::{hvp, linear_hessian_trace, paper_sharpness, PopulationHessian};
use nequil::core::equilibrium::two_layer_equilibrium_empirical;
use nequil::core::layers::{LinearConfig, ReluConfig, SelfAttentionConfig, TanhConfig};
use nequil::core::linalg::Dense;
use nequil::core::stats::{per_sample_grads, quad_forms};
use nequil::{catalog, grad_stats, Activation, Init, Loss, Model, Rng};

/// Logits of order one and a parameter point off any special value.
fn params(model: &Model, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let mut theta = model.init(&Init::Xavier, &mut rng).unwrap();
    for v in theta.iter_mut() {
        *v += 0.3 * rng.normal();
    }
    theta
}

/// `n` Gaussian inputs and uniformly drawn class labels (one per position).
fn data(model: &Model, n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = Rng::new(seed);
    let mut x = vec![0.0; n * model.d_in()];
    rng.fill_normal(&mut x);
    let k = model.classes();
    let y = (0..n * model.d_y()).map(|_| rng.below(k) as f64).collect();
    (x, y)
}

fn ce(model: Model) -> Model {
    model.with_loss(Loss::CrossEntropy, "loss").unwrap()
}

/// A smooth classifier 5 → 7 → 4 (tanh, biases).
fn mlp() -> Model {
    ce(Model::mlp(&[5, 7, 4], Activation::Tanh, true).unwrap())
}

/// A sequence model: causal self-attention over `[T = 3, E = 4]`, then a linear head to K = 5
/// logits per position; labels `[n, 3]`.
fn sequence() -> Model {
    ce(Model::sequential(
        &[3, 4],
        &[
            SelfAttentionConfig {
                heads: 2,
                causal: true,
                bias: true,
            }
            .into(),
            TanhConfig {}.into(),
            LinearConfig {
                out_features: 5,
                bias: true,
            }
            .into(),
        ],
    )
    .unwrap())
}

fn mean_loss(model: &Model, theta: &[f64], x: &[f64], y: &[f64], n: usize) -> f64 {
    model.loss(theta, x, y, n, &mut model.workspace(n))
}

fn grad(model: &Model, theta: &[f64], x: &[f64], y: &[f64], n: usize) -> Vec<f64> {
    let mut g = vec![0.0; model.n_params()];
    model.loss_grad(theta, x, y, n, &mut g, &mut model.workspace(n));
    g
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

/// The loss is the direct formula `(1/n) Σ_i (1/T) Σ_t [log Σ_k e^{f_tk} − f_{t,y_t}]` on the
/// model's outputs (no shift: logits of order one, so the direct sum loses nothing); both are
/// sums of the same O(1) terms in a different order, equal to 1e-13 relative.
#[test]
fn loss_is_the_mean_over_samples_of_the_mean_over_positions() {
    for model in [mlp(), sequence()] {
        let n = 6;
        let theta = params(&model, 1);
        let (x, y) = data(&model, n, 2);
        let mut ws = model.workspace(n);
        model.forward(&theta, &x, n, &mut ws);
        let f = ws.output().to_vec();
        let (k, t) = (model.classes(), model.d_y());
        let mut direct = 0.0;
        for i in 0..n {
            for p in 0..t {
                let row = &f[(i * t + p) * k..(i * t + p + 1) * k];
                let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
                direct += (lse - row[y[i * t + p] as usize]) / t as f64;
            }
        }
        direct /= n as f64;
        let l = mean_loss(&model, &theta, &x, &y, n);
        assert!(
            (l - direct).abs() <= 1e-13 * direct,
            "{}: {l} vs {direct}",
            model.describe()
        );
        // loss_grad returns the same value.
        let mut g = vec![0.0; model.n_params()];
        let l2 = model.loss_grad(&theta, &x, &y, n, &mut g, &mut ws);
        assert_eq!(l, l2);
    }
}

/// The analytic gradient against central differences of the loss, every coordinate. Step
/// h = 1e-5: the truncation error is `h²/6 · |∂³L|` ≲ 1e-10 · O(1) for these O(1) logits, the
/// rounding error `ε|L|/h` ≈ 2e-11; the tolerance 1e-7 (absolute, gradients are O(0.1–1)) is far
/// above both and far below any missing term (a wrong output residual changes entries by
/// O(1/n)).
#[test]
fn gradient_matches_central_differences() {
    for model in [mlp(), sequence()] {
        let n = 5;
        let theta = params(&model, 3);
        let (x, y) = data(&model, n, 4);
        let g = grad(&model, &theta, &x, &y, n);
        let h = 1e-5;
        let mut tp = theta.clone();
        for j in 0..model.n_params() {
            tp[j] = theta[j] + h;
            let lp = mean_loss(&model, &tp, &x, &y, n);
            tp[j] = theta[j] - h;
            let lm = mean_loss(&model, &tp, &x, &y, n);
            tp[j] = theta[j];
            let fd = (lp - lm) / (2.0 * h);
            assert!(
                (g[j] - fd).abs() <= 1e-7,
                "{} θ[{j}]: {} vs {fd}",
                model.describe(),
                g[j]
            );
        }
    }
}

/// Exact Hv (output Hessian `diag(p) − ppᵀ` included) against central differences of the
/// analytic gradient along a unit direction. Step 1e-5: truncation `h²|∇³g|` ≈ 1e-10, rounding
/// `ε‖g‖/h` ≈ 1e-11; tolerance 1e-7 relative to ‖Hv‖ (which is O(0.1–1) here). The Gauss–Newton
/// part alone (dropping the softmax curvature) misses by O(‖Hv‖), and so would `2I` in place of
/// the cross-entropy output Hessian.
#[test]
fn hvp_matches_differences_of_the_gradient() {
    for model in [mlp(), sequence()] {
        let n = 7;
        let theta = params(&model, 5);
        let (x, y) = data(&model, n, 6);
        let p = model.n_params();
        let mut rng = Rng::new(7);
        let mut v = vec![0.0; p];
        rng.fill_normal(&mut v);
        let nv = norm(&v);
        v.iter_mut().for_each(|e| *e /= nv);
        let mut hv = vec![0.0; p];
        hvp(&model, &theta, &x, &y, n, &v, &mut hv).unwrap();
        let h = 1e-5;
        let plus: Vec<f64> = theta.iter().zip(&v).map(|(a, b)| a + h * b).collect();
        let minus: Vec<f64> = theta.iter().zip(&v).map(|(a, b)| a - h * b).collect();
        let (gp, gm) = (grad(&model, &plus, &x, &y, n), grad(&model, &minus, &x, &y, n));
        let err: f64 = hv
            .iter()
            .zip(gp.iter().zip(&gm))
            .map(|(a, (b, c))| (a - (b - c) / (2.0 * h)).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(
            err <= 1e-7 * norm(&hv),
            "{}: |Hv − fd| = {err:e}, |Hv| = {:e}",
            model.describe(),
            norm(&hv)
        );
    }
}

/// The batched per-sample statistics (mean, per-parameter second moment from the layers' GEMM
/// blocks, quadratic forms `g_iᵀDg_i`) against a loop over samples, each a batch of one. The
/// batched and looped sums differ only in summation order: 1e-12 relative.
#[test]
fn per_sample_statistics_match_a_per_sample_loop() {
    for model in [mlp(), sequence()] {
        let n = 9;
        let theta = params(&model, 8);
        let (x, y) = data(&model, n, 9);
        let p = model.n_params();
        let g = per_sample_grads(&model, &theta, &x, &y, n);
        let (mut mean, mut sm, mut loss) = (vec![0.0; p], vec![0.0; p], 0.0);
        let (dx, dy) = (model.d_in(), model.d_y());
        for i in 0..n {
            let row = &g.data[i * p..(i + 1) * p];
            for j in 0..p {
                mean[j] += row[j] / n as f64;
                sm[j] += row[j] * row[j] / n as f64;
            }
            loss += mean_loss(&model, &theta, &x[i * dx..(i + 1) * dx], &y[i * dy..(i + 1) * dy], 1) / n as f64;
        }
        // Chunks of 4: the statistics cross chunk boundaries.
        let st = grad_stats(&model, &theta, &x, &y, n, &mut model.workspace(4));
        assert!((st.loss - loss).abs() <= 1e-12 * loss);
        let close =
            |a: &[f64], b: &[f64]| norm(&a.iter().zip(b).map(|(u, v)| u - v).collect::<Vec<_>>()) <= 1e-12 * norm(b);
        assert!(close(&st.mean, &mean), "{}: mean", model.describe());
        assert!(close(&st.second_moment, &sm), "{}: second moment", model.describe());
        let mut rng = Rng::new(10);
        let d: Vec<f64> = (0..p).map(|_| rng.normal()).collect();
        let mut q = vec![0.0; n];
        quad_forms(&model, &theta, &x, &y, n, &d, &mut q, &mut model.workspace(4));
        for i in 0..n {
            let row = &g.data[i * p..(i + 1) * p];
            let direct: f64 = row.iter().zip(&d).map(|(a, b)| b * a * a).sum();
            let scale: f64 = row.iter().zip(&d).map(|(a, b)| (b * a * a).abs()).sum();
            assert!(
                (q[i] - direct).abs() <= 1e-12 * scale,
                "{}: sample {i}",
                model.describe()
            );
        }
    }
}

/// The rescaling symmetry of every hidden ReLU neuron holds for cross-entropy as for any loss of
/// the outputs: `θᵀA∇ℓ_i = 0` for every sample, exactly. The sum has terms of size
/// `|θ_p A_pp g_ip|` that cancel; rounding leaves at most a few ε times their total: 1e-10 of it.
#[test]
fn relu_rescalings_are_exact_symmetries_of_cross_entropy() {
    let model = ce(Model::sequential(
        &[6],
        &[
            LinearConfig {
                out_features: 8,
                bias: true,
            }
            .into(),
            ReluConfig {}.into(),
            LinearConfig {
                out_features: 3,
                bias: true,
            }
            .into(),
        ],
    )
    .unwrap());
    let n = 11;
    let theta = params(&model, 11);
    let (x, y) = data(&model, n, 12);
    let g = per_sample_grads(&model, &theta, &x, &y, n);
    let p = model.n_params();
    let cat = catalog(&model);
    let neurons: Vec<_> = cat
        .symmetries
        .iter()
        .filter(|s| s.name.starts_with("neuron."))
        .collect();
    assert_eq!(neurons.len(), 8);
    for s in neurons {
        let a = s.generator.as_diagonal().expect("a diagonal rescaling");
        let mut active = 0;
        for i in 0..n {
            let gi = &g.data[i * p..(i + 1) * p];
            let dot: f64 = (0..p).map(|j| theta[j] * a[j] * gi[j]).sum();
            // An inactive neuron (ReLU at zero for this sample) has no gradient at all: 0 = 0.
            let scale: f64 = (0..p).map(|j| (theta[j] * a[j] * gi[j]).abs()).sum();
            active += usize::from(scale > 0.0);
            assert!(
                dot.abs() <= 1e-10 * scale,
                "{} sample {i}: θᵀA∇ℓ = {dot:e} of {scale:e}",
                s.name
            );
        }
        assert!(
            active > 0,
            "{}: inactive on every sample, the check would be empty",
            s.name
        );
    }
}

/// The noise equilibrium with cross-entropy: rebalancing every neuron of a ReLU net keeps the
/// function (hence the loss, to rounding: 1e-10 relative) and balances the noise (without weight
/// decay the equilibrium is `Tr[A_kΣ] = 0`: the total imbalance falls to rounding of its size
/// before, as in the mean-squared-error case of the library's example).
#[test]
fn equilibrium_rebalances_a_cross_entropy_classifier() {
    let model = ce(Model::mlp(&[4, 6, 3], Activation::Relu, true).unwrap());
    let n = 64;
    let theta = params(&model, 13);
    let (x, y) = data(&model, n, 14);
    let r = nequil::rebalance(&model, &theta, &x, &y, n, 0.05, 4, 0.0).unwrap();
    assert!(r.totals.applied > 0);
    assert!((r.loss_after - r.loss_before).abs() <= 1e-10 * r.loss_before);
    assert!(r.totals.imbalance_before > 0.0);
    assert!(r.totals.imbalance_after <= 1e-8 * r.totals.imbalance_before);
    let mut ws = model.workspace(n);
    model.forward(&theta, &x, n, &mut ws);
    let f0 = ws.output()[..n * 3].to_vec();
    model.forward(&r.theta, &x, n, &mut ws);
    for (a, b) in f0.iter().zip(&ws.output()[..n * 3]) {
        assert!((a - b).abs() <= 1e-10 * (1.0 + a.abs()));
    }
}

/// Mean-squared error is the default, and asking for it changes nothing, bit for bit.
#[test]
fn mse_is_the_default_and_unchanged() {
    let base = Model::mlp(&[3, 4, 2], Activation::Tanh, true).unwrap();
    assert_eq!(base.loss_kind(), Loss::Mse);
    assert_eq!(base.d_y(), 2);
    let same = base.clone().with_loss(Loss::Mse, "loss").unwrap();
    let theta = params(&base, 15);
    let mut rng = Rng::new(16);
    let (mut x, mut y) = (vec![0.0; 12], vec![0.0; 8]);
    rng.fill_normal(&mut x);
    rng.fill_normal(&mut y);
    assert_eq!(grad(&base, &theta, &x, &y, 4), grad(&same, &theta, &x, &y, 4));
    assert_eq!(
        mean_loss(&base, &theta, &x, &y, 4).to_bits(),
        mean_loss(&same, &theta, &x, &y, 4).to_bits()
    );
}

/// The linear families' closed forms are claims about the mean-squared error: with
/// cross-entropy each is an error naming it, never a number.
#[test]
fn mse_closed_forms_refuse_cross_entropy() {
    let model = ce(Model::linear(&[3, 4, 2]).unwrap());
    let theta = params(&model, 17);
    let (x, y) = data(&model, 8, 18);
    let sx = Dense::from_slice(3, 3, &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    let chain = model.as_chain().unwrap();
    let errors = [
        paper_sharpness(&model, &theta, &sx).unwrap_err().to_string(),
        linear_hessian_trace(&model, &theta, &sx).unwrap_err().to_string(),
        PopulationHessian::new(&model, &theta, &sx, &Dense::zeros(2, 3))
            .err()
            .unwrap()
            .to_string(),
        two_layer_equilibrium_empirical(&chain, &theta, &x, &y, 8, 0.1, 1, 0.0)
            .unwrap_err()
            .to_string(),
    ];
    for (e, what) in errors
        .iter()
        .zip(["sharpness", "sharpness", "population Hessian", "Theorem 5.2"])
    {
        assert!(e.contains(what) && e.contains("cross-entropy"), "{e}");
    }
    // The general instruments take it: the Hessian by the R-operator, the equilibrium.
    let mut hv = vec![0.0; model.n_params()];
    hvp(&model, &theta, &x, &y, 8, &vec![1.0; model.n_params()], &mut hv).unwrap();
    assert!(hv.iter().all(|v| v.is_finite()));
}

/// Bad labels and models: errors name what is wrong.
#[test]
fn bad_labels_and_models_are_errors() {
    let model = mlp();
    let e = model.check_targets(&[0.0, 4.0], 2, "y.npy").unwrap_err().to_string();
    assert!(
        e.contains("y.npy") && e.contains("sample 1") && e.contains("0..4"),
        "{e}"
    );
    let e = model.check_targets(&[1.5], 1, "y").unwrap_err().to_string();
    assert!(e.contains("not an integer"), "{e}");
    assert!(model.check_targets(&[0.0, 3.0, 2.0], 3, "y").is_ok());
    let seq = sequence();
    assert_eq!((seq.classes(), seq.d_y()), (5, 3));
    let e = seq
        .check_targets(&[0.0, 1.0, 2.0, 3.0, 5.0, 0.0], 2, "y")
        .unwrap_err()
        .to_string();
    assert!(e.contains("sample 1, position 1"), "{e}");
    // One logit is no distribution.
    let e = Model::mlp(&[3, 1], Activation::Identity, false)
        .unwrap()
        .with_loss(Loss::CrossEntropy, "model.loss")
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.loss") && e.contains("at least 2 logits"), "{e}");
}
