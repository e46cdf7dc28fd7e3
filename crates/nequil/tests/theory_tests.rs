//! The theory as a library: generators, catalog, discovery, the law of motion, the equilibrium
//! solver and the closed forms, each against an exact identity or an independent computation.
//!
//! Tolerances: exact identities are checked to 1e-10 relative (f64 rounding is ~1e-16 per
//! operation; the margin covers accumulation over the O(P) sums involved); Monte Carlo checks use
//! standard errors estimated from the same samples.

use nequil::core::data::{Cov, Gaussian, Source, Target};
use nequil::core::equilibrium::*;
use nequil::core::linalg::Dense;
use nequil::core::models::{Activation, DenseChain, Init, Model, ScaleKind};
use nequil::core::rng::Rng;
use nequil::core::stats::{covariance, grad_stats, per_sample_grads};
use nequil::core::symmetry::*;
use nequil::instruments::*;
use nequil::train::{Probe, ProbeCtx};
use proptest::prelude::*;

fn mlp(widths: &[usize], act: Activation, bias: bool) -> Model {
    Model::mlp(widths, act, bias).unwrap()
}

fn as_mlp(m: &Model) -> DenseChain {
    m.as_chain().expect("an MLP")
}

fn scale_net(kind: ScaleKind) -> Model {
    Model::scale_net(kind, 3, 4, 2).unwrap()
}

fn gaussian(dx: usize, dy: usize, seed: u64) -> Gaussian {
    let mut r = Rng::new(seed);
    Gaussian::new(
        dx,
        dy,
        Cov::Scalar(1.0),
        Target::random_linear(dx, dy, &mut r),
        Some(Cov::Scalar(0.3)),
    )
    .unwrap()
}

fn data(model: &Model, n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut g = gaussian(model.d_in(), model.d_out(), seed);
    let ds = g.dataset(&mut Rng::new(seed + 1), n);
    (ds.x, ds.y)
}

fn theta0(model: &Model, seed: u64) -> Vec<f64> {
    let mut r = Rng::new(seed);
    let mut t = model.init(&Init::Xavier, &mut r).unwrap();
    for v in t.iter_mut() {
        *v += 0.1 * r.normal();
    }
    t
}

fn random_sym(h: usize, seed: u64) -> Dense {
    let mut r = Rng::new(seed);
    let mut b = Dense::zeros(h, h);
    r.fill_normal(&mut b.data);
    b.sym()
}

/// The families used throughout, with all their catalogued symmetries plus, for linear chains,
/// a double rotation with a random `B` for every pair.
fn zoo() -> Vec<(String, Model, Vec<Symmetry>)> {
    let models = vec![
        ("linear".to_string(), mlp(&[3, 4, 5, 2], Activation::Identity, false)),
        ("linear+bias".to_string(), mlp(&[3, 4, 2], Activation::Identity, true)),
        ("relu".to_string(), mlp(&[3, 5, 4, 2], Activation::Relu, true)),
        ("leaky".to_string(), mlp(&[3, 4, 2], Activation::LeakyRelu(0.2), true)),
        ("net-a".to_string(), scale_net(ScaleKind::NetA)),
        ("net-b".to_string(), scale_net(ScaleKind::NetB)),
    ];
    models
        .into_iter()
        .map(|(name, m)| {
            let cat = catalog(&m);
            let mut syms = cat.symmetries.clone();
            for label in &cat.rotation_pairs {
                let l: usize = label.parse().unwrap();
                let h = as_mlp(&m).widths()[l + 1];
                syms.push(double_rotation(&m, l, &random_sym(h, 10 + l as u64)).unwrap());
            }
            (name, m, syms)
        })
        .collect()
}

fn abs_quad(g: &Generator, v: &[f64]) -> f64 {
    let (p, n) = g.quad_split(v);
    p - n
}

// ---------------------------------------------------------------------------------------------
// Generators and the catalog.

#[test]
fn catalog_counts_and_notes() {
    let c = catalog(&mlp(&[3, 5, 4, 2], Activation::Relu, true));
    assert_eq!(
        c.symmetries
            .iter()
            .filter(|s| matches!(s.kind, SymmetryKind::NeuronRescaling { .. }))
            .count(),
        9
    );
    assert_eq!(
        c.symmetries
            .iter()
            .filter(|s| matches!(s.kind, SymmetryKind::LayerPairRescaling { .. }))
            .count(),
        2
    );
    assert!(c.rotation_pairs.is_empty());
    let c = catalog(&mlp(&[3, 4, 5, 2], Activation::Identity, false));
    assert_eq!(c.rotation_pairs, ["0", "1"]);
    for act in [Activation::Tanh, Activation::Swish] {
        let c = catalog(&mlp(&[3, 4, 2], act, true));
        assert!(c.symmetries.is_empty() && !c.notes.is_empty());
    }
    assert_eq!(catalog(&scale_net(ScaleKind::NetA)).symmetries.len(), 1);
    assert_eq!(catalog(&scale_net(ScaleKind::NetB)).symmetries.len(), 2);
    assert!(neuron_rescaling(&mlp(&[3, 4, 2], Activation::Tanh, true), 0, 0).is_err());
    assert!(double_rotation(&mlp(&[3, 4, 2], Activation::Relu, false), 0, &Dense::eye(4)).is_err());
}

#[test]
fn every_catalog_symmetry_verifies_and_non_symmetries_do_not() {
    let lams = [-1.5, -0.3, 0.7, 2.0];
    for (name, model, syms) in zoo() {
        let (x, y) = data(&model, 40, 3);
        let theta = theta0(&model, 4);
        for s in &syms {
            let v = verify(&model, &theta, &s.generator, &x, &y, 40, &lams, 1e-9).unwrap();
            assert!(v.holds, "{name} {}: {v:?}", s.name);
        }
    }
    // A "neuron rescaling" of a tanh net, the wrong sign pattern in a ReLU net, and a Net-A
    // layer-wise scaling are not symmetries.
    let tanh = mlp(&[3, 4, 2], Activation::Tanh, true);
    let m = as_mlp(&tanh);
    let mut a = vec![0.0; tanh.n_params()];
    a[m.weight_offset(0)..m.weight_offset(0) + 3].fill(1.0);
    a[m.bias_offset(0).unwrap()] = 1.0;
    for i in 0..2 {
        a[m.weight_offset(1) + i * 4] = -1.0;
    }
    let relu = mlp(&[3, 4, 2], Activation::Relu, true);
    let mut wrong = neuron_rescaling(&relu, 0, 1)
        .unwrap()
        .generator
        .as_diagonal()
        .unwrap()
        .to_vec();
    wrong.iter_mut().for_each(|v| *v = v.abs());
    let neta = scale_net(ScaleKind::NetA);
    let cases = [
        (tanh, Generator::Diagonal(a)),
        (relu, Generator::Diagonal(wrong)),
        (neta.clone(), block_scale(&neta, "layers.0.weight").unwrap().generator),
    ];
    for (model, g) in cases {
        let (x, y) = data(&model, 40, 3);
        let v = verify(&model, &theta0(&model, 4), &g, &x, &y, 40, &lams, 1e-9).unwrap();
        assert!(!v.holds && v.max_orthogonality > 1e-3, "{v:?}");
    }
}

#[test]
fn double_rotation_generator_is_symmetric_and_its_charge_matches_the_matrix_form() {
    let model = mlp(&[3, 4, 5, 2], Activation::Identity, false);
    let m = as_mlp(&model);
    let theta = theta0(&model, 1);
    for l in 0..2 {
        let h = as_mlp(&model).widths()[l + 1];
        let b = random_sym(h, 7 + l as u64);
        let s = double_rotation(&model, l, &b).unwrap();
        let d = s.generator.to_dense();
        for i in 0..d.rows {
            for j in 0..d.cols {
                assert_eq!(d.at(i, j), d.at(j, i));
            }
        }
        // C_B = Tr[B (W_l W_lᵀ − W_{l+1}ᵀ W_{l+1})].
        let w = as_mlp(&model).widths().to_vec();
        let wl = Dense::from_slice(
            w[l + 1],
            w[l],
            &theta[m.weight_offset(l)..m.weight_offset(l) + w[l + 1] * w[l]],
        );
        let wn = Dense::from_slice(
            w[l + 2],
            w[l + 1],
            &theta[m.weight_offset(l + 1)..m.weight_offset(l + 1) + w[l + 2] * w[l + 1]],
        );
        let q = wl.mul(&wl.t()).add_scaled(-1.0, &wn.t().mul(&wn));
        let want = b.mul(&q).trace();
        let got = s.generator.charge(&theta);
        assert!((got - want).abs() < 1e-12 * (1.0 + want.abs()), "{got} vs {want}");
        // The action is W_l → e^{λB}W_l, W_{l+1} → W_{l+1}e^{−λB}.
        let lam = 0.37;
        let eb = nequil::core::linalg::sym_fn(&b, |v| (lam * v).exp()).unwrap();
        let emb = nequil::core::linalg::sym_fn(&b, |v| (-lam * v).exp()).unwrap();
        let t2 = s.generator.exp_apply(lam, &theta);
        let wl2 = eb.mul(&wl);
        let wn2 = wn.mul(&emb);
        for (a, b) in t2[m.weight_offset(l)..].iter().zip(&wl2.data) {
            assert!((a - b).abs() < 1e-12);
        }
        for (a, b) in t2[m.weight_offset(l + 1)..].iter().zip(&wn2.data) {
            assert!((a - b).abs() < 1e-12);
        }
    }
}

#[test]
fn exponential_action_agrees_across_storage_forms() {
    let model = mlp(&[3, 4, 2], Activation::Identity, true);
    let theta = theta0(&model, 2);
    let s = double_rotation(&model, 0, &random_sym(4, 3)).unwrap();
    let dense = Generator::dense(s.generator.to_dense()).unwrap();
    let diag = neuron_rescaling(&model, 0, 2).unwrap().generator;
    let diag_as_dense = Generator::dense(diag.to_dense()).unwrap();
    for (a, b) in [(&s.generator, &dense), (&diag, &diag_as_dense)] {
        for lam in [-2.0, -0.5, 0.0, 0.3, 1.7] {
            let (u, v) = (a.exp_apply(lam, &theta), b.exp_apply(lam, &theta));
            for (x, y) in u.iter().zip(&v) {
                assert!((x - y).abs() < 1e-12 * (1.0 + x.abs()));
            }
            // Group law e^{λA}e^{μA} = e^{(λ+μ)A}.
            let w = a.exp_apply(0.4, &u);
            let z = a.exp_apply(lam + 0.4, &theta);
            for (x, y) in w.iter().zip(&z) {
                assert!((x - y).abs() < 1e-12 * (1.0 + x.abs()));
            }
        }
        // d/dλ e^{λA}θ at 0 is Aθ; the charge is θᵀAθ; Ag products agree.
        let h = 1e-6;
        let (p, m) = (a.exp_apply(h, &theta), a.exp_apply(-h, &theta));
        let at = a.apply(&theta);
        for i in 0..theta.len() {
            assert!(((p[i] - m[i]) / (2.0 * h) - at[i]).abs() < 1e-8);
        }
        assert!((a.charge(&theta) - b.charge(&theta)).abs() < 1e-12);
        assert!((a.charge(&theta) - theta.iter().zip(&at).map(|(x, y)| x * y).sum::<f64>()).abs() < 1e-12);
        let (pp, nn) = a.quad_split(&theta);
        assert!((pp + nn - a.charge(&theta)).abs() < 1e-12 && pp >= 0.0 && nn <= 0.0);
    }
    assert!(BlockSparse::new(
        3,
        vec![Dense::eye(2)],
        vec![
            SymBlock {
                indices: vec![0, 1],
                mat: 0
            },
            SymBlock {
                indices: vec![1, 2],
                mat: 0
            }
        ]
    )
    .is_err());
    assert!(Generator::dense(Dense::from_slice(2, 2, &[0.0, 1.0, 2.0, 0.0])).is_err());
}

// ---------------------------------------------------------------------------------------------
// Discovery.

fn discover(model: &Model) -> Discovery {
    let p = model.n_params();
    let n = p + 10;
    let (x, y) = data(model, n, 11);
    discover_diagonal(model, &x, &y, n, &DiscoverOptions::default(), &mut Rng::new(5)).unwrap()
}

#[test]
fn discovery_finds_one_rescaling_per_hidden_neuron() {
    for model in [
        mlp(&[3, 5, 2], Activation::Relu, true),
        mlp(&[3, 5, 4, 2], Activation::Relu, true),
        mlp(&[3, 4, 3, 2], Activation::LeakyRelu(0.1), false),
        mlp(&[3, 4, 5, 2], Activation::Identity, false),
        mlp(&[4, 3, 4], Activation::Identity, false),
        mlp(&[3, 4, 3, 4, 2], Activation::Identity, false),
        mlp(&[2, 3, 4, 3, 2], Activation::Relu, false),
    ] {
        let d = discover(&model);
        let cat = catalog(&model);
        let neurons: Vec<&Symmetry> = cat
            .symmetries
            .iter()
            .filter(|s| matches!(s.kind, SymmetryKind::NeuronRescaling { .. }))
            .collect();
        assert_eq!(
            d.null_dim,
            neurons.len(),
            "{}: singular values {:?}",
            model.describe(),
            d.singular_values
        );
        assert!(d.gap.unwrap() > 1e5, "gap {:?}", d.gap);
        // Each discovered generator is exactly one catalog neuron rescaling; all are found.
        let found = d.diagonals();
        assert_eq!(found.len(), neurons.len());
        if as_mlp(&model).widths().len() == 3 {
            assert_eq!(
                d.groups.len(),
                neurons.len(),
                "one hidden layer: disjoint supports, one group per neuron"
            );
        }
        eprintln!(
            "{}: {} diagonal symmetries in {} groups, gap {:.1e}",
            model.describe(),
            d.null_dim,
            d.groups.len(),
            d.gap.unwrap()
        );
        for s in neurons {
            let a = s.generator.as_diagonal().unwrap();
            let hit = found.iter().any(|f| f.iter().zip(a).all(|(u, v)| (u - v).abs() < 1e-8));
            assert!(hit, "{} not found", s.name);
        }
    }
}

#[test]
fn discovery_finds_nothing_in_tanh_nets_and_the_scale_symmetries_of_net_a_and_b() {
    for act in [Activation::Tanh, Activation::Swish] {
        let d = discover(&mlp(&[3, 5, 2], act, true));
        assert_eq!(d.null_dim, 0, "{act:?}: {:?}", d.singular_values);
        assert!(*d.singular_values.last().unwrap() > 1e-6);
    }
    let a = discover(&scale_net(ScaleKind::NetA));
    assert_eq!(a.null_dim, 1);
    assert!(a.diagonals()[0].iter().all(|v| (v - 1.0).abs() < 1e-8));
    let netb = scale_net(ScaleKind::NetB);
    let b = discover(&netb);
    assert_eq!(b.null_dim, 2);
    for s in catalog(&netb).symmetries {
        let a = s.generator.as_diagonal().unwrap();
        assert!(b
            .diagonals()
            .iter()
            .any(|f| f.iter().zip(a).all(|(u, v)| (u - v).abs() < 1e-8)));
    }
}

// ---------------------------------------------------------------------------------------------
// The law of motion.

#[test]
fn exact_per_step_identity_for_every_catalog_symmetry_over_1000_sgd_steps_with_weight_decay() {
    let (eta, gamma, s) = (0.02, 0.05, 4);
    for (name, model, syms) in zoo() {
        let mut src = gaussian(model.d_in(), model.d_out(), 21);
        let mut rng = Rng::new(22);
        let mut theta = theta0(&model, 23);
        let mut ws = model.workspace(s);
        let (mut x, mut y) = (vec![0.0; s * model.d_in()], vec![0.0; s * model.d_out()]);
        let mut g = vec![0.0; model.n_params()];
        let mut worst = 0.0f64;
        for _ in 0..1000 {
            src.sample(&mut rng, &mut x, &mut y, s);
            model.loss_grad(&theta, &x, &y, s, &mut g, &mut ws);
            let before: Vec<(f64, f64)> = syms
                .iter()
                .map(|sym| (sym.generator.charge(&theta), sym.generator.quad(&g)))
                .collect();
            for (t, gi) in theta.iter_mut().zip(&g) {
                *t = (1.0 - 2.0 * eta * gamma) * *t - eta * gi;
            }
            for (sym, (c, q)) in syms.iter().zip(before) {
                let pred = charge_after_step(c, q, eta, gamma);
                let got = sym.generator.charge(&theta);
                let scale = abs_quad(&sym.generator, &theta) + eta * eta * abs_quad(&sym.generator, &g);
                let err = (got - pred).abs() / scale;
                worst = worst.max(err);
                assert!(err < 1e-10, "{name} {}: {got} vs {pred} (relative {err:e})", sym.name);
            }
        }
        eprintln!("{name}: worst relative deviation from C_(t+1) = (1-2ηγ)²C_t + η²ĝᵀAĝ over 1000 steps: {worst:.1e}");
    }
}

#[test]
fn expected_discrete_drift_is_exact_for_batches_drawn_with_replacement() {
    // Enumerate every ordered batch of two drawn with replacement from a small data set.
    let model = mlp(&[3, 4, 2], Activation::Relu, true);
    let n = 12;
    let (x, y) = data(&model, n, 31);
    let theta = theta0(&model, 32);
    let (eta, gamma) = (0.05, 0.1);
    let mut ws = model.workspace(2);
    let mut g = vec![0.0; model.n_params()];
    for s in catalog(&model).symmetries {
        let nb = NoiseBalance::compute(&model, &theta, &s.generator, &x, &y, n).unwrap();
        let mut mean_dc = 0.0;
        let (dx, dy) = (3, 2);
        for i in 0..n {
            for j in 0..n {
                let xb: Vec<f64> = x[i * dx..(i + 1) * dx]
                    .iter()
                    .chain(&x[j * dx..(j + 1) * dx])
                    .copied()
                    .collect();
                let yb: Vec<f64> = y[i * dy..(i + 1) * dy]
                    .iter()
                    .chain(&y[j * dy..(j + 1) * dy])
                    .copied()
                    .collect();
                model.loss_grad(&theta, &xb, &yb, 2, &mut g, &mut ws);
                let t2: Vec<f64> = theta
                    .iter()
                    .zip(&g)
                    .map(|(t, gi)| (1.0 - 2.0 * eta * gamma) * t - eta * gi)
                    .collect();
                mean_dc += (s.generator.charge(&t2) - nb.c) / (n * n) as f64;
            }
        }
        let pred = nb.expected_step_drift(eta, 2, gamma);
        let scale =
            eta * eta * (nb.tr_a_sigma_pos - nb.tr_a_sigma_neg) + 4.0 * eta * gamma * abs_quad(&s.generator, &theta);
        assert!(
            (mean_dc - pred).abs() < 1e-10 * scale,
            "{}: {mean_dc} vs {pred}",
            s.name
        );
        // The continuous drift is its leading order per unit time.
        let cont = nb.continuous_drift(eta, 2, gamma);
        assert!(
            (pred / eta - cont - eta * (nb.grad_quad + 4.0 * gamma * gamma * nb.c)).abs() < 1e-10 * (1.0 + cont.abs())
        );
    }
}

#[test]
fn noise_balance_paths_agree() {
    // Diagonal generators: grad_stats path = per-sample path = full covariance.
    let model = mlp(&[3, 4, 2], Activation::Identity, true);
    let n = 30;
    let (x, y) = data(&model, n, 41);
    let theta = theta0(&model, 42);
    let grads = per_sample_grads(&model, &theta, &x, &y, n);
    let (cov, _) = covariance(&model, &theta, &x, &y, n);
    let mut syms = catalog(&model).symmetries;
    syms.push(double_rotation(&model, 0, &random_sym(4, 1)).unwrap());
    for s in syms {
        let a = NoiseBalance::compute(&model, &theta, &s.generator, &x, &y, n).unwrap();
        let b = NoiseBalance::from_grads(&s.generator, &theta, &grads).unwrap();
        let tr = s.generator.to_dense().mul(&cov).trace();
        for (u, v) in [
            (a.tr_a_sigma, b.tr_a_sigma),
            (a.tr_a_sigma, tr),
            (a.tr_a_sigma_pos, b.tr_a_sigma_pos),
            (a.grad_quad, b.grad_quad),
        ] {
            assert!((u - v).abs() < 1e-10 * (1.0 + u.abs()), "{}: {u} vs {v}", s.name);
        }
    }
}

#[test]
fn charge_probe_records_consistent_columns() {
    let model = mlp(&[3, 4, 2], Activation::Relu, true);
    let n = 50;
    let (x, y) = data(&model, n, 51);
    let theta = theta0(&model, 52);
    let src = Source::Online(gaussian(3, 2, 51));
    let mut syms: Vec<Symmetry> = catalog(&model).symmetries.into_iter().take(2).collect();
    syms.push(global_scale(&model));
    let mut probe = ChargeProbe::new(syms.clone());
    let cols = probe.columns();
    assert_eq!(cols.len(), 15);
    assert_eq!(cols[0], "neuron.0.0/C");
    let ctx = ProbeCtx {
        step: 10,
        t: 0.1,
        lr: 0.01,
        batch_size: 4,
        weight_decay: 0.02,
        optimizer: &nequil::train::Optimizer::Sgd,
        velocity: &[],
        model: &model,
        theta: &theta,
        eval_x: &x,
        eval_y: &y,
        eval_n: n,
        source: &src,
    };
    let mut out = vec![];
    probe.record(&ctx, &mut out).unwrap();
    assert_eq!(out.len(), 15);
    for (k, s) in syms.iter().enumerate() {
        let nb = NoiseBalance::compute(&model, &theta, &s.generator, &x, &y, n).unwrap();
        let row = &out[5 * k..5 * k + 5];
        assert!((row[0] - nb.c).abs() < 1e-12 * (1.0 + nb.c.abs()));
        assert!((row[1] - nb.tr_a_sigma).abs() < 1e-12 * (1.0 + nb.tr_a_sigma.abs()));
        assert!((row[2] - nb.continuous_drift(0.01, 4, 0.02)).abs() < 1e-12);
        assert!((row[0] - row[3] - row[4]).abs() < 1e-12 * (1.0 + row[3].abs()));
        // Drift and distance to C* have opposite signs (attractiveness).
        assert!(
            row[2] * row[4] <= 0.0,
            "{}: drift {} vs C − C* {}",
            s.name,
            row[2],
            row[4]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The equilibrium solver.

fn stats_of(model: &Model, theta: &[f64], x: &[f64], y: &[f64], n: usize) -> nequil::core::stats::GradStats {
    let mut ws = model.workspace(64);
    grad_stats(model, theta, x, y, n, &mut ws)
}

#[test]
fn at_the_equilibrium_loss_is_unchanged_and_the_noise_balances_without_weight_decay() {
    let (eta, s) = (0.05, 8);
    let params = FlowParams::continuous(eta, s, 0.0);
    for model in [
        mlp(&[3, 5, 2], Activation::Relu, true),
        mlp(&[3, 5, 4, 2], Activation::Relu, true),
        mlp(&[4, 3, 5, 2], Activation::Identity, false),
    ] {
        let n = 200;
        let (x, y) = data(&model, n, 61);
        let theta = theta0(&model, 62);
        let st = stats_of(&model, &theta, &x, &y, n);
        let cat = catalog(&model);
        let mut ws = model.workspace(64);
        let loss0 = model.loss_chunked(&theta, &x, &y, n, &mut ws);
        // All neuron rescalings jointly.
        let neurons: Vec<&Symmetry> = cat
            .symmetries
            .iter()
            .filter(|s| matches!(s.kind, SymmetryKind::NeuronRescaling { .. }))
            .collect();
        let gens: Vec<&[f64]> = neurons.iter().map(|s| s.generator.as_diagonal().unwrap()).collect();
        let fam = solve_diagonal_family(&gens, &theta, &st, &params, &FamilyOptions::default()).unwrap();
        assert!(
            fam.converged,
            "{}: {} sweeps, residual {:e}",
            model.describe(),
            fam.sweeps,
            fam.max_residual
        );
        eprintln!(
            "{}: joint neuron solve, {} colours, {} sweeps",
            model.describe(),
            fam.colours,
            fam.sweeps
        );
        let loss1 = model.loss_chunked(&fam.theta_star, &x, &y, n, &mut ws);
        assert!((loss1 - loss0).abs() < 1e-12 * loss0, "{loss0} vs {loss1}");
        for s in &neurons {
            let nb = NoiseBalance::compute(&model, &fam.theta_star, &s.generator, &x, &y, n).unwrap();
            let parts = nb.tr_a_sigma_pos - nb.tr_a_sigma_neg;
            assert!(
                nb.tr_a_sigma.abs() < 1e-8 * parts,
                "{}: Tr[AΣ(θ*)] = {:e}, parts {parts:e}",
                s.name,
                nb.tr_a_sigma
            );
        }
        // Each layer-pair rescaling alone, and (linear chains) double rotations with random B.
        let mut others: Vec<Symmetry> = cat
            .symmetries
            .iter()
            .filter(|s| matches!(s.kind, SymmetryKind::LayerPairRescaling { .. }))
            .cloned()
            .collect();
        for label in &cat.rotation_pairs {
            let l: usize = label.parse().unwrap();
            others
                .push(double_rotation(&model, l, &random_sym(as_mlp(&model).widths()[l + 1], 63 + l as u64)).unwrap());
        }
        let grads = per_sample_grads(&model, &theta, &x, &y, n);
        for s in &others {
            let flow = OrbitFlow::from_grads(&s.generator, &theta, &grads, &params).unwrap();
            let sol = flow.solve();
            assert_eq!(sol.status, SolveStatus::Converged);
            let ts = sol.apply(&s.generator, &theta);
            let loss1 = model.loss_chunked(&ts, &x, &y, n, &mut ws);
            assert!((loss1 - loss0).abs() < 1e-12 * loss0, "{}: {loss0} vs {loss1}", s.name);
            let nb = NoiseBalance::compute(&model, &ts, &s.generator, &x, &y, n).unwrap();
            let parts = nb.tr_a_sigma_pos - nb.tr_a_sigma_neg;
            assert!(
                nb.tr_a_sigma.abs() < 1e-8 * parts,
                "{}: Tr[AΣ(θ*)] = {:e}, parts {parts:e}",
                s.name,
                nb.tr_a_sigma
            );
            assert!(
                (nb.c - sol.c_star).abs() < 1e-10 * abs_quad(&s.generator, &ts),
                "C* is the charge at θ*"
            );
        }
    }
}

#[test]
fn equilibrium_with_weight_decay_and_in_discrete_time_recomputed_from_scratch() {
    let model = mlp(&[3, 5, 2], Activation::LeakyRelu(0.3), true);
    let n = 150;
    let (x, y) = data(&model, n, 71);
    let theta = theta0(&model, 72);
    let st = stats_of(&model, &theta, &x, &y, n);
    let (eta, s, gamma) = (0.1, 2, 0.01);
    for sym in catalog(&model).symmetries {
        for params in [
            FlowParams::continuous(eta, s, gamma),
            FlowParams::discrete(eta, s, gamma),
        ] {
            let sol = OrbitFlow::from_stats(&sym.generator, &theta, &st, &params)
                .unwrap()
                .solve();
            assert_eq!(sol.status, SolveStatus::Converged);
            let ts = sol.apply(&sym.generator, &theta);
            let nb = NoiseBalance::compute(&model, &ts, &sym.generator, &x, &y, n).unwrap();
            let (g, scale) = match params.time {
                Time::Continuous => (
                    nb.continuous_drift(eta, s, gamma),
                    4.0 * gamma * abs_quad(&sym.generator, &ts)
                        + eta / s as f64 * (nb.tr_a_sigma_pos - nb.tr_a_sigma_neg),
                ),
                Time::Discrete => {
                    let st2 = stats_of(&model, &ts, &x, &y, n);
                    let a = sym.generator.as_diagonal().unwrap();
                    let gq_abs: f64 = a.iter().zip(&st2.mean).map(|(ai, m)| ai.abs() * m * m).sum();
                    (
                        nb.expected_step_drift(eta, s, gamma),
                        eta * eta * (gq_abs + (nb.tr_a_sigma_pos - nb.tr_a_sigma_neg) / s as f64)
                            + 4.0 * eta * gamma * abs_quad(&sym.generator, &ts),
                    )
                }
            };
            assert!(
                g.abs() < 1e-8 * scale,
                "{} {:?}: drift {g:e} at θ*, scale {scale:e}",
                sym.name,
                params.time
            );
        }
    }
}

#[test]
fn scale_invariance_without_weight_decay_diverges_and_with_weight_decay_balances() {
    for kind in [ScaleKind::NetA, ScaleKind::NetB] {
        let model = scale_net(kind);
        let n = 100;
        let (x, y) = data(&model, n, 81);
        let theta = theta0(&model, 82);
        let st = stats_of(&model, &theta, &x, &y, n);
        for sym in catalog(&model).symmetries {
            let sol = OrbitFlow::from_stats(&sym.generator, &theta, &st, &FlowParams::continuous(0.1, 1, 0.0))
                .unwrap()
                .solve();
            assert_eq!(sol.status, SolveStatus::PlusInfinity);
            assert!(sol.lambda == f64::INFINITY && sol.c_star == f64::INFINITY);
            assert!(
                sol.reason.as_deref().unwrap().contains("scale invariance"),
                "{:?}",
                sol.reason
            );
            let (eta, s, gamma) = (0.1, 1, 0.01);
            let sol = OrbitFlow::from_stats(&sym.generator, &theta, &st, &FlowParams::continuous(eta, s, gamma))
                .unwrap()
                .solve();
            assert_eq!(sol.status, SolveStatus::Converged);
            // 4γC* = (η/S)Tr[Σ(θ*)A], recomputed at θ*.
            let ts = sol.apply(&sym.generator, &theta);
            let nb = NoiseBalance::compute(&model, &ts, &sym.generator, &x, &y, n).unwrap();
            let lhs = 4.0 * gamma * nb.c;
            let rhs = eta / s as f64 * nb.tr_a_sigma;
            assert!((lhs - rhs).abs() < 1e-9 * lhs, "{}: {lhs} vs {rhs}", sym.name);
            assert!((sol.c_star - nb.c).abs() < 1e-10 * nb.c);
        }
    }
    // The structural reasons for the other infinite and degenerate cases.
    let only_up = OrbitFlow::new(
        vec![
            FlowTerm {
                mu: 1.0,
                noise: 1.0,
                charge: 1.0,
            },
            FlowTerm {
                mu: -1.0,
                noise: 0.0,
                charge: 1.0,
            },
        ],
        0.0,
    )
    .unwrap()
    .solve();
    assert_eq!(only_up.status, SolveStatus::PlusInfinity);
    let only_down = OrbitFlow::new(
        vec![
            FlowTerm {
                mu: 1.0,
                noise: 0.0,
                charge: 0.0,
            },
            FlowTerm {
                mu: -2.0,
                noise: 1.0,
                charge: 1.0,
            },
        ],
        0.0,
    )
    .unwrap()
    .solve();
    assert_eq!(only_down.status, SolveStatus::MinusInfinity);
    assert_eq!(only_down.c_star, f64::NEG_INFINITY);
    let none = OrbitFlow::new(
        vec![FlowTerm {
            mu: 1.0,
            noise: 0.0,
            charge: 1.0,
        }],
        0.0,
    )
    .unwrap()
    .solve();
    assert_eq!((none.status, none.lambda), (SolveStatus::Degenerate, 0.0));
}

fn arb_flow() -> impl Strategy<Value = OrbitFlow> {
    let term = (
        0.05f64..3.0,
        any::<bool>(),
        -30.0f64..30.0,
        -30.0f64..30.0,
        any::<bool>(),
        any::<bool>(),
    );
    (prop::collection::vec(term, 1..12), prop_oneof![Just(0.0), 1e-6f64..1.0]).prop_map(|(ts, decay)| {
        let terms = ts
            .into_iter()
            .map(|(m, neg, ln, lc, zn, zc)| FlowTerm {
                mu: if neg { -m } else { m },
                noise: if zn { 0.0 } else { ln.exp() },
                charge: if zc { 0.0 } else { lc.exp() },
            })
            .collect();
        OrbitFlow::new(terms, decay).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_flow_is_monotone_and_its_root_unique(flow in arb_flow()) {
        let sol = flow.solve();
        let (p1, p2) = flow.parts(0.0);
        // Strictly decreasing log-ratio and decreasing G on a grid; C increasing.
        let grid: Vec<f64> = (-40..=40).map(|i| i as f64 * 0.25).collect();
        for w in grid.windows(2) {
            let (h0, h1) = (flow.log_ratio(w[0]), flow.log_ratio(w[1]));
            if h0.is_finite() {
                prop_assert!(h1 < h0, "h not decreasing at {}: {h0} → {h1}", w[0]);
            }
            let (g0, g1) = (flow.g(w[0]), flow.g(w[1]));
            if g0.is_finite() && g1.is_finite() {
                prop_assert!(g1 <= g0 + 1e-12 * g0.abs().max(g1.abs()));
            }
            prop_assert!(flow.charge(w[1]) >= flow.charge(w[0]) - 1e-12 * flow.charge(w[0]).abs());
        }
        match sol.status {
            SolveStatus::Converged => {
                prop_assert!(p1 > 0.0 && p2 > 0.0);
                prop_assert!(sol.lambda.is_finite());
                prop_assert!(sol.residual < 1e-12, "residual {}", sol.residual);
                // Unique: h changes sign exactly once, at λ*.
                let d = 1e-6 * (1.0 + sol.lambda.abs());
                prop_assert!(flow.log_ratio(sol.lambda - d) > 0.0 && flow.log_ratio(sol.lambda + d) < 0.0);
                prop_assert!(sol.iterations <= 60, "iterations {}", sol.iterations);
            }
            SolveStatus::PlusInfinity => prop_assert!(p2 == 0.0 && p1 > 0.0),
            SolveStatus::MinusInfinity => prop_assert!(p1 == 0.0 && p2 > 0.0),
            SolveStatus::Degenerate => prop_assert!(p1 == 0.0 && p2 == 0.0),
            SolveStatus::NotConverged => prop_assert!(false, "not converged"),
        }
    }
}

#[test]
fn the_solver_handles_roots_far_out_without_overflow() {
    // Noise 1e-300 against 1: λ* ≈ ln(1e300)/4 ≈ 173; exp(2λ*μ) overflows for μ = 3, the log-space
    // solve does not.
    let flow = OrbitFlow::new(
        vec![
            FlowTerm {
                mu: 3.0,
                noise: 1e-300,
                charge: 0.0,
            },
            FlowTerm {
                mu: -3.0,
                noise: 1.0,
                charge: 0.0,
            },
        ],
        0.0,
    )
    .unwrap();
    let sol = flow.solve();
    assert_eq!(sol.status, SolveStatus::Converged);
    let want = (1e-300f64).ln() / 12.0;
    assert!(
        (sol.lambda - want).abs() < 1e-12 * want.abs(),
        "{} vs {want}",
        sol.lambda
    );
}

// ---------------------------------------------------------------------------------------------
// Closed forms.

fn spd(d: usize, seed: u64) -> Dense {
    let mut r = Rng::new(seed);
    let mut g = Dense::zeros(d, d);
    r.fill_normal(&mut g.data);
    g.mul(&g.t()).scale(1.0 / d as f64).add_scaled(0.5, &Dense::eye(d))
}

fn rand_mat(r: usize, c: usize, seed: u64) -> Dense {
    let mut rng = Rng::new(seed);
    let mut m = Dense::zeros(r, c);
    rng.fill_normal(&mut m.data);
    m.scale(1.0 / (c as f64).sqrt())
}

#[test]
fn gaussian_two_layer_moments_match_monte_carlo() {
    let (dx, dy) = (3, 2);
    let sx = spd(dx, 1);
    let se = Dense::diag(&[0.5, 1.5]);
    let v_true = rand_mat(dy, dx, 2);
    let v = rand_mat(dy, dx, 3);
    let exact = TwoLayerGammas::gaussian(&v, &v_true, &sx, &se).unwrap();
    let mut g = Gaussian::new(
        dx,
        dy,
        Cov::Full(sx.clone()),
        Target::Linear(v_true.clone()),
        Some(Cov::Diag(vec![0.5, 1.5])),
    )
    .unwrap();
    let n = 200_000;
    let ds = g.dataset(&mut Rng::new(4), n);
    let emp = TwoLayerGammas::empirical(&v, &ds.x, &ds.y, n).unwrap();
    // Standard errors of each entry from the per-sample values.
    let mut s2 = [vec![0.0; dx * dx], vec![0.0; dy * dy], vec![0.0; dy * dx]];
    for i in 0..n {
        let x = &ds.x[i * dx..(i + 1) * dx];
        let r: Vec<f64> = (0..dy)
            .map(|k| (0..dx).map(|j| v.at(k, j) * x[j]).sum::<f64>() - ds.y[i * dy + k])
            .collect();
        let (rn, xn) = (
            r.iter().map(|e| e * e).sum::<f64>(),
            x.iter().map(|e| e * e).sum::<f64>(),
        );
        for a in 0..dx {
            for b in 0..dx {
                s2[0][a * dx + b] += (rn * x[a] * x[b]).powi(2) / n as f64;
            }
        }
        for a in 0..dy {
            for b in 0..dy {
                s2[1][a * dy + b] += (xn * r[a] * r[b]).powi(2) / n as f64;
            }
            for b in 0..dx {
                s2[2][a * dx + b] += (r[a] * x[b]).powi(2) / n as f64;
            }
        }
    }
    for (k, (e, m)) in [
        (&exact.gamma_w, &emp.gamma_w),
        (&exact.gamma_u, &emp.gamma_u),
        (&exact.m, &emp.m),
    ]
    .into_iter()
    .enumerate()
    {
        for i in 0..e.data.len() {
            let se = ((s2[k][i] - m.data[i] * m.data[i]) / n as f64).sqrt();
            let z = (e.data[i] - m.data[i]) / se;
            assert!(
                z.abs() < 5.0,
                "moment {k} entry {i}: exact {} vs Monte Carlo {} ({z:.1} standard errors)",
                e.data[i],
                m.data[i]
            );
        }
    }
}

#[test]
fn two_layer_closed_form_satisfies_its_defining_equation() {
    for (h, gamma) in [(3, 0.0), (5, 0.02), (2, 0.01)] {
        let model = mlp(&[4, h, 3], Activation::Identity, false);
        let m = as_mlp(&model);
        let theta = theta0(&model, 90 + h as u64);
        let (u, w) = two_layer_factors(&m, &theta).unwrap();
        let g = TwoLayerGammas::gaussian(&u.mul(&w), &rand_mat(3, 4, 91), &spd(4, 92), &spd(3, 93)).unwrap();
        let (eta, s) = (0.05, 4);
        let eq = two_layer_equilibrium(&m, &theta, &g, eta, s, gamma).unwrap();
        let (us, ws) = two_layer_factors(&m, &eq.theta_star).unwrap();
        let (gw, gu) = g.tilde(eta, s, gamma).unwrap();
        assert!(eq.residual_star < 1e-10, "h = {h}: residual {:e}", eq.residual_star);
        assert!(alignment_residual(&us, &ws, &gw, &gu) < 1e-10);
        assert!(eq.residual > 1e-3);
        // Same product, so same loss and same Γ's.
        let v = u.mul(&w);
        let d = us.mul(&ws).add_scaled(-1.0, &v);
        assert!(d.frob2().sqrt() < 1e-10 * v.frob2().sqrt());
        assert!((eq.u_star_norm2 - us.frob2()).abs() < 1e-12 * us.frob2());
        // The defining equation of the flow: every double rotation's drift vanishes,
        // i.e. −4γ(W*W*ᵀ − U*ᵀU*) + (4η/S)[U*ᵀ(Γ'_U − MMᵀ)U* − W*(Γ'_W − MᵀM)W*ᵀ] = 0.
        let gwm = g.gamma_w.add_scaled(-1.0, &g.m.t().mul(&g.m));
        let gum = g.gamma_u.add_scaled(-1.0, &g.m.mul(&g.m.t()));
        let q = ws.mul(&ws.t()).add_scaled(-1.0, &us.t().mul(&us));
        let noise = us.t().mul(&gum).mul(&us).add_scaled(-1.0, &ws.mul(&gwm).mul(&ws.t()));
        let flow = q.scale(-4.0 * gamma).add_scaled(4.0 * eta / s as f64, &noise);
        let scale = ws.mul(&gwm).mul(&ws.t()).frob2().sqrt() * 4.0 * eta / s as f64;
        assert!(
            flow.frob2().sqrt() < 1e-10 * scale,
            "h = {h}: matrix flow {:e}",
            flow.frob2().sqrt()
        );
    }
}

#[test]
fn two_layer_closed_form_reproduces_the_worked_example() {
    // book `theory/closed-forms.md#two-layer-recipe` at d = 10 (Σ_x = diag(φ×5, (2−φ)×5), Σ_ε = I, V = I, γ = 0):
    // ‖U*‖² = 5(√φ + √(2−φ)), ‖W*‖² = 5(1/√φ + 1/√(2−φ)), and the paper-convention sharpness
    // S = d_y Tr[W*Σ_xW*ᵀ] + ‖U*‖² TrΣ_x = 10·5(√φ + √(2−φ)) + 10·5(√φ + √(2−φ)) = 100(√φ + √(2−φ)).
    let phi: f64 = 0.25;
    let dist = Gaussian::new(10, 10, Cov::phi(10, phi), Target::Identity, Some(Cov::Scalar(1.0))).unwrap();
    let model = mlp(&[10, 20, 10], Activation::Identity, false);
    let m = as_mlp(&model);
    // A factorisation of V = I (the closed form depends on θ only through V = UW): W = [I; 0], U = [I, 0].
    let mut w = Dense::zeros(20, 10);
    let mut u = Dense::zeros(10, 20);
    for i in 0..10 {
        *w.at_mut(i, i) = 1.0;
        *u.at_mut(i, i) = 1.0;
    }
    let theta = two_layer_theta(&m, &u, &w);
    let eq = two_layer_equilibrium_gaussian(&m, &theta, &dist, 0.01, 1, 0.0).unwrap();
    let (a, b) = (phi.sqrt(), (2.0 - phi).sqrt());
    let (un, wn) = (5.0 * (a + b), 5.0 * (1.0 / a + 1.0 / b));
    assert!((eq.u_star_norm2 - un).abs() < 1e-10 * un, "{} vs {un}", eq.u_star_norm2);
    assert!((eq.w_star_norm2 - wn).abs() < 1e-10 * wn, "{} vs {wn}", eq.w_star_norm2);
    let s = 100.0 * (a + b);
    assert!((eq.sharpness_star - s).abs() < 1e-9 * s, "{} vs {s}", eq.sharpness_star);
    eprintln!(
        "§7.2 worked example, φ = 0.25: ‖U*‖² = {:.4}, ‖W*‖² = {:.4}, S = {:.2}",
        eq.u_star_norm2, eq.w_star_norm2, eq.sharpness_star
    );
}

#[test]
fn one_dimensional_solver_agrees_with_the_two_layer_closed_form() {
    // (1) Hidden width 1: GL(1) is the rescaling of the single neuron, so the 1-D solve of
    //     neuron.0.0 and the closed form must give the same θ*, from the same empirical data.
    for (gamma, seed) in [(0.0, 1), (0.03, 2)] {
        let model = mlp(&[4, 1, 3], Activation::Identity, false);
        let m = as_mlp(&model);
        let n = 300;
        let (x, y) = data(&model, n, 100 + seed);
        let theta = theta0(&model, 200 + seed);
        let (eta, s) = (0.05, 4);
        let sym = neuron_rescaling(&model, 0, 0).unwrap();
        let st = stats_of(&model, &theta, &x, &y, n);
        let sol = OrbitFlow::from_stats(&sym.generator, &theta, &st, &FlowParams::continuous(eta, s, gamma))
            .unwrap()
            .solve();
        let t1 = sol.apply(&sym.generator, &theta);
        let cf = two_layer_equilibrium_empirical(&m, &theta, &x, &y, n, eta, s, gamma).unwrap();
        for (a, b) in t1.iter().zip(&cf.theta_star) {
            assert!(
                (a - b).abs() < 1e-9 * (1.0 + a.abs()),
                "γ = {gamma}: 1-D {a} vs closed form {b}"
            );
        }
    }
    // (2) Wider hidden layer: at the closed-form point every one-parameter subgroup (any B,
    //     including a single neuron's rescaling) is already at equilibrium: λ* = 0.
    let model = mlp(&[4, 3, 5], Activation::Identity, false);
    let m = as_mlp(&model);
    let n = 400;
    let (x, y) = data(&model, n, 300);
    let theta = theta0(&model, 301);
    let (eta, s, gamma) = (0.05, 2, 0.01);
    let cf = two_layer_equilibrium_empirical(&m, &theta, &x, &y, n, eta, s, gamma).unwrap();
    let grads = per_sample_grads(&model, &cf.theta_star, &x, &y, n);
    let mut syms = vec![
        neuron_rescaling(&model, 0, 1).unwrap(),
        layer_pair_rescaling(&model, 0).unwrap(),
    ];
    for k in 0..3 {
        syms.push(double_rotation(&model, 0, &random_sym(3, 310 + k)).unwrap());
    }
    for sym in syms {
        let sol = OrbitFlow::from_grads(
            &sym.generator,
            &cf.theta_star,
            &grads,
            &FlowParams::continuous(eta, s, gamma),
        )
        .unwrap()
        .solve();
        assert!(
            sol.lambda.abs() < 1e-9,
            "{}: λ* = {:e} at the closed-form equilibrium",
            sym.name,
            sol.lambda
        );
        // ... while from the original θ it is not.
        let g0 = per_sample_grads(&model, &theta, &x, &y, n);
        let sol0 = OrbitFlow::from_grads(&sym.generator, &theta, &g0, &FlowParams::continuous(eta, s, gamma))
            .unwrap()
            .solve();
        assert!(sol0.lambda.abs() > 1e-3, "{}: {}", sym.name, sol0.lambda);
    }
}

#[test]
fn deep_linear_closed_form_satisfies_eq_122_and_reproduces_section_7_3() {
    // §7.3: D = 3, widths 6, Σ_x = diag(0.5×3, 1.5×3), Σ_ε = diag(3, 1×5), V = I.
    let sx = Dense::diag(&[0.5, 0.5, 0.5, 1.5, 1.5, 1.5]);
    let se = Dense::diag(&[3.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
    let eq = deep_linear_equilibrium(&[6, 6, 6, 6], &Dense::eye(6), &sx, &se).unwrap();
    let want = [6.90, 5.64, 6.55];
    for (k, (got, w)) in eq.norms2.iter().zip(want).enumerate() {
        assert!((got - w).abs() < 0.005, "layer {k}: {got} vs {w}");
        assert!((got - eq.predicted_norms2[k]).abs() < 1e-10 * got);
    }
    eprintln!("§7.3 corrected Thm 5.4 layer norms: {:?}", eq.norms2);
    // Eq. 122 and the product, for random shapes and covariance scales, depths 2–5.
    for (depth, seed) in [(2usize, 1u64), (3, 2), (4, 3), (5, 4)] {
        let (dx, dy) = (4, 3);
        let mut widths = vec![dx];
        for i in 1..depth {
            widths.push(3 + (i % 3));
        }
        widths.push(dy);
        let v = rand_mat(dy, dx, seed);
        let (sx, se) = (spd(dx, seed + 10).scale(7.0), spd(dy, seed + 20).scale(0.3));
        let eq = deep_linear_equilibrium(&widths, &v, &sx, &se).unwrap();
        let layers: Vec<Dense> = eq
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| Dense::from_slice(widths[i + 1], widths[i], l))
            .collect();
        let res = deep_linear_residuals(&layers, &sx, &se).unwrap();
        assert!(res.iter().all(|r| *r < 1e-10), "depth {depth}: {res:?}");
        let mut p = layers[0].clone();
        for l in &layers[1..] {
            p = l.mul(&p);
        }
        assert!(p.add_scaled(-1.0, &v).frob2().sqrt() < 1e-10 * v.frob2().sqrt());
        for (a, b) in eq.norms2.iter().zip(&eq.predicted_norms2) {
            assert!((a - b).abs() < 1e-10 * a);
        }
        // A perturbed (non-equilibrium) factorisation fails Eq. 122.
        let mut bad = layers.clone();
        bad[0] = bad[0].scale(2.0);
        bad[1] = bad[1].scale(0.5);
        assert!(deep_linear_residuals(&bad, &sx, &se).unwrap()[0] > 1e-2);
    }
    // D = 2 reduces to the two-layer closed form at the global minimum with γ = 0.
    let (sx, se, v) = (spd(4, 50), spd(3, 51), rand_mat(3, 4, 52));
    let eq = deep_linear_equilibrium(&[4, 5, 3], &v, &sx, &se).unwrap();
    let model = mlp(&[4, 5, 3], Activation::Identity, false);
    let g = TwoLayerGammas::gaussian(&v, &v, &sx, &se).unwrap();
    let two = two_layer_equilibrium(&as_mlp(&model), &eq.theta, &g, 0.1, 1, 0.0).unwrap();
    assert!((two.w_star_norm2 - eq.norms2[0]).abs() < 1e-10 * two.w_star_norm2);
    assert!((two.u_star_norm2 - eq.norms2[1]).abs() < 1e-10 * two.u_star_norm2);
    assert!(
        two.residual < 1e-10,
        "the deep closed form is already a two-layer equilibrium"
    );
}

#[test]
fn scalar_uw_rate_satisfies_the_flow_equation() {
    // Ċ = −4γC + (η/S)Tr[AΣ] = −rate·C with rate = 4(γ + (η/S)Var[rx]), from per-sample data.
    let model = mlp(&[1, 1, 1], Activation::Identity, false);
    let n = 500;
    let (x, y) = data(&model, n, 400);
    for theta in [vec![1.3, 0.4], vec![-0.7, 2.0], vec![0.2, 0.1]] {
        let sym = neuron_rescaling(&model, 0, 0).unwrap();
        let nb = NoiseBalance::compute(&model, &theta, &sym.generator, &x, &y, n).unwrap();
        let p = theta[0] * theta[1];
        let rx: Vec<f64> = (0..n).map(|i| (p * x[i] - y[i]) * x[i]).collect();
        let mean = rx.iter().sum::<f64>() / n as f64;
        let var = rx.iter().map(|v| v * v).sum::<f64>() / n as f64 - mean * mean;
        for (eta, s, gamma) in [(0.01, 1, 0.0), (0.1, 3, 0.02)] {
            let rate = scalar_uw_decay_rate(gamma, eta, s, var);
            let drift = nb.continuous_drift(eta, s, gamma);
            assert!(
                (drift + rate * nb.c).abs() < 1e-10 * (rate * nb.c).abs(),
                "{drift} vs {}",
                -rate * nb.c
            );
        }
    }
    // The Gaussian Var[rx] formula against a large sample at p ≠ v.
    let (p, v, vx, ve) = (1.4, 0.9, 2.0, 0.5);
    let mut g = Gaussian::new(
        1,
        1,
        Cov::Scalar(vx),
        Target::Linear(Dense::from_slice(1, 1, &[v])),
        Some(Cov::Scalar(ve)),
    )
    .unwrap();
    let n = 400_000;
    let ds = g.dataset(&mut Rng::new(5), n);
    let rx: Vec<f64> = (0..n).map(|i| (p * ds.x[i] - ds.y[i]) * ds.x[i]).collect();
    let m1 = rx.iter().sum::<f64>() / n as f64;
    let m2 = rx.iter().map(|v| v * v).sum::<f64>() / n as f64;
    let m4 = rx.iter().map(|v| (v - m1).powi(4)).sum::<f64>() / n as f64;
    let var = m2 - m1 * m1;
    let se = ((m4 - var * var) / n as f64).sqrt();
    let want = scalar_uw_var_rx(p, v, vx, ve);
    assert!((var - want).abs() < 5.0 * se, "{var} vs {want} ± {se}");
    assert!((scalar_uw_second_moment_rx(p, v, vx, ve) - want - ((p - v) * vx).powi(2)).abs() < 1e-12);
}

// ---------------------------------------------------------------------------------------------
// `nequil equilibrium`.

#[test]
fn rebalance_reports_every_symmetry_and_keeps_the_loss() {
    let model = mlp(&[3, 5, 4, 2], Activation::Relu, true);
    let n = 200;
    let (x, y) = data(&model, n, 500);
    let theta = theta0(&model, 501);
    let rep = rebalance(&model, &theta, &x, &y, n, 0.05, 8, 0.0).unwrap();
    assert_eq!(rep.rows.len(), catalog(&model).symmetries.len());
    assert!((rep.loss_after - rep.loss_before).abs() < 1e-12 * rep.loss_before);
    for row in &rep.rows {
        assert!(
            (row.loss_after - row.loss_before).abs() < 1e-12 * row.loss_before,
            "{}",
            row.name
        );
        match row.status {
            SolveStatus::Converged => assert_eq!(row.applied, matches!(row.kind, SymmetryKind::NeuronRescaling { .. })),
            // A dead ReLU neuron (never active on the data): no noise on either side, γ = 0.
            SolveStatus::Degenerate => {
                assert!(row.tr_a_sigma_pos == 0.0 && row.tr_a_sigma_neg == 0.0 && !row.applied);
                assert!(row.note.as_deref().unwrap().contains("unchanged"));
            }
            s => panic!("{}: {s:?}", row.name),
        }
    }
    assert!(rep.rows.iter().filter(|r| r.status == SolveStatus::Converged).count() >= 9);
    // At the rebalanced θ every neuron's noise is balanced.
    for s in catalog(&model)
        .symmetries
        .iter()
        .filter(|s| matches!(s.kind, SymmetryKind::NeuronRescaling { .. }))
    {
        let nb = NoiseBalance::compute(&model, &rep.theta, &s.generator, &x, &y, n).unwrap();
        assert!(
            nb.tr_a_sigma.abs() <= 1e-8 * (nb.tr_a_sigma_pos - nb.tr_a_sigma_neg),
            "{}",
            s.name
        );
    }
    let json = serde_json::to_string(&rep).unwrap();
    assert!(json.contains("\"neuron.1.3\"") && json.contains("layer_pair"));

    // Net-A without weight decay: λ* = +∞, θ unchanged, and the reason is given.
    let neta = scale_net(ScaleKind::NetA);
    let (x, y) = data(&neta, 50, 502);
    let theta = theta0(&neta, 503);
    let rep = rebalance(&neta, &theta, &x, &y, 50, 0.1, 1, 0.0).unwrap();
    assert_eq!(rep.rows[0].status, SolveStatus::PlusInfinity);
    assert!(!rep.rows[0].applied && rep.rows[0].note.as_deref().unwrap().contains("unchanged"));
    assert_eq!(rep.theta, theta);
    assert!(serde_json::to_string(&rep).is_ok());
    let rep = rebalance(&neta, &theta, &x, &y, 50, 0.1, 1, 0.01).unwrap();
    assert!(rep.rows[0].applied && rep.rows[0].lambda_star.is_finite());

    // Tanh: nothing to do. Errors: NaN data, bad shapes, bad hyper-parameters.
    let tanh = mlp(&[3, 4, 2], Activation::Tanh, true);
    let (x, y) = data(&tanh, 20, 504);
    let theta = theta0(&tanh, 505);
    let rep = rebalance(&tanh, &theta, &x, &y, 20, 0.1, 1, 0.0).unwrap();
    assert!(rep.rows.is_empty() && rep.theta == theta && !rep.notes.is_empty());
    let mut bad = x.clone();
    bad[7] = f64::NAN;
    let e = rebalance(&tanh, &theta, &bad, &y, 20, 0.1, 1, 0.0).unwrap_err();
    assert!(e.to_string().contains("sample 2"), "{e}");
    assert!(rebalance(&tanh, &theta[1..], &x, &y, 20, 0.1, 1, 0.0).is_err());
    assert!(rebalance(&tanh, &theta, &x, &y, 21, 0.1, 1, 0.0).is_err());
    assert!(rebalance(&tanh, &theta, &x, &y, 20, -0.1, 1, 0.0).is_err());
    assert!(rebalance(&tanh, &theta, &x, &y, 20, 0.1, 0, 0.0).is_err());
    assert!(rebalance(&tanh, &theta, &x, &y, 20, 0.1, 1, f64::NAN).is_err());
}
