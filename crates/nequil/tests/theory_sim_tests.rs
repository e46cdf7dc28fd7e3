//! Theory against simulation (slower; each test runs in seconds with the test profile's
//! opt-level 2). Tolerances come from the statistics of the run (standard errors by batch means,
//! the exactly known finite-η trend), never tuned to pass.

use nequil::core::data::{Cov, Gaussian, Target};
use nequil::core::equilibrium::*;
use nequil::core::linalg::Dense;
use nequil::core::models::{DenseChain, Init, Model};
use nequil::core::rng::Rng;
use nequil::core::symmetry::neuron_rescaling;

fn autoencoder() -> (Model, Gaussian) {
    let model = Model::linear(&[10, 20, 10]).unwrap();
    let dist = Gaussian::new(10, 10, Cov::phi(10, 0.25), Target::Identity, Some(Cov::Scalar(1.0))).unwrap();
    (model, dist)
}

fn mlp_of(m: &Model) -> DenseChain {
    m.as_chain().expect("an MLP")
}

/// Online SGD (S = 1, γ = 0) from `theta`; returns the time averages of ‖U‖², ‖W‖² over the last
/// `avg_frac` of the steps and their standard errors (batch means over 20 blocks).
fn sgd_norms(
    model: &Model,
    dist: &mut Gaussian,
    theta: &[f64],
    eta: f64,
    steps: usize,
    avg_frac: f64,
    seed: u64,
) -> ([f64; 2], [f64; 2], Vec<f64>) {
    let m = &mlp_of(model);
    let mut theta = theta.to_vec();
    let mut rng = Rng::new(seed);
    let mut ws = model.workspace(1);
    let (mut x, mut y) = (vec![0.0; 10], vec![0.0; 10]);
    let mut g = vec![0.0; model.n_params()];
    let (wo, uo, nw) = (m.weight_offset(0), m.weight_offset(1), 200);
    let start = steps - (avg_frac * steps as f64) as usize;
    let blocks = 20;
    let per = (steps - start) / blocks;
    let mut sums = vec![[0.0f64; 2]; blocks];
    for t in 0..steps {
        dist.sample(&mut rng, &mut x, &mut y, 1);
        model.loss_grad(&theta, &x, &y, 1, &mut g, &mut ws);
        for (th, gi) in theta.iter_mut().zip(&g) {
            *th -= eta * gi;
        }
        if t >= start && (t - start) / per < blocks {
            let b = (t - start) / per;
            sums[b][0] += theta[uo..uo + nw].iter().map(|v| v * v).sum::<f64>() / per as f64;
            sums[b][1] += theta[wo..wo + nw].iter().map(|v| v * v).sum::<f64>() / per as f64;
        }
    }
    let mut mean = [0.0; 2];
    let mut se = [0.0; 2];
    for k in 0..2 {
        mean[k] = sums.iter().map(|s| s[k]).sum::<f64>() / blocks as f64;
        let var = sums.iter().map(|s| (s[k] - mean[k]).powi(2)).sum::<f64>() / (blocks - 1) as f64;
        se[k] = (var / blocks as f64).sqrt();
    }
    (mean, se, theta)
}

fn factors(m: &DenseChain, theta: &[f64]) -> (Dense, Dense) {
    two_layer_factors(m, theta).unwrap()
}

/// The matrix charge `WWᵀ − UᵀU` of all double rotations at once.
fn matrix_charge(u: &Dense, w: &Dense) -> Dense {
    w.mul(&w.t()).add_scaled(-1.0, &u.t().mul(u))
}

#[test]
fn autoencoder_sgd_approaches_the_noise_equilibrium_and_gd_does_not() {
    // book `theory/closed-forms.md#worked-example`: d_x = d_y = 10, hidden 20, Σ_x = diag(φ×5, (2−φ)×5) with φ = 0.25,
    // Σ_ε = I, V = I, fan-in (Kaiming) init, online SGD with S = 1, γ = 0.
    let (model, mut dist) = autoencoder();
    let m = &mlp_of(&model);
    let theta0 = model.init(&Init::Kaiming, &mut Rng::new(1)).unwrap();
    // Prediction: the closed form at the global minimum V = I.
    let pred = {
        let mut w = Dense::zeros(20, 10);
        let mut u = Dense::zeros(10, 20);
        for i in 0..10 {
            *w.at_mut(i, i) = 1.0;
            *u.at_mut(i, i) = 1.0;
        }
        two_layer_equilibrium_gaussian(m, &two_layer_theta(m, &u, &w), &dist, 0.01, 1, 0.0).unwrap()
    };
    let want = [pred.u_star_norm2, pred.w_star_norm2];
    // Both runs cover the same continuous time t = η·steps = 3000 and average over its second half.
    let etas = [0.01, 0.003];
    let mut errs = vec![];
    let mut sgd_theta = vec![];
    for (eta, steps) in [(etas[0], 300_000), (etas[1], 1_000_000)] {
        let (mean, se, theta) = sgd_norms(&model, &mut dist, &theta0, eta, steps, 0.5, 7);
        let rel = [(mean[0] - want[0]) / want[0], (mean[1] - want[1]) / want[1]];
        let rse = [se[0] / want[0], se[1] / want[1]];
        eprintln!(
            "SGD η = {eta}: ‖U‖² = {:.3} ± {:.3}, ‖W‖² = {:.3} ± {:.3} (theory {:.3}, {:.3}; relative error {:+.4}, {:+.4})",
            mean[0], se[0], mean[1], se[1], want[0], want[1], rel[0], rel[1]
        );
        errs.push((rel, rse));
        sgd_theta = theta;
    }
    // The finite-η bias shrinks with η, well beyond the statistical error, and is linear in η:
    // extrapolating the two runs to η → 0 lands on the prediction.
    for k in 0..2 {
        let ((e1, s1), (e2, s2)) = ((errs[0].0[k], errs[0].1[k]), (errs[1].0[k], errs[1].1[k]));
        assert!(
            e2.abs() + 3.0 * (s1 + s2) < e1.abs(),
            "norm {k}: |error| {e1} (η = 0.01) → {e2} (η = 0.003)"
        );
        assert!(e2.abs() < 0.05, "norm {k}: relative error {e2} at η = 0.003");
        let e0 = e2 - etas[1] * (e1 - e2) / (etas[0] - etas[1]);
        let s0 = s2 + etas[1] / (etas[0] - etas[1]) * (s1 + s2);
        eprintln!("norm {k}: linear extrapolation to η → 0: relative error {e0:+.4} ± {s0:.4}");
        assert!(e0.abs() < 0.015 + 4.0 * s0, "norm {k}: extrapolated error {e0}");
    }

    // Full-batch GD on 10 000 fixed samples, same init, η = 0.01. The full-batch gradient of a
    // linear net depends on the data only through Σ̂_xx = XᵀX/N and Σ̂_yx = YᵀX/N:
    // ∇_V L = 2(VΣ̂_xx − Σ̂_yx), ∇_U = ∇_V Wᵀ, ∇_W = Uᵀ∇_V (checked against the model below).
    let n = 10_000;
    let ds = dist.dataset(&mut Rng::new(9), n);
    let mut sxx = Dense::zeros(10, 10);
    let mut syx = Dense::zeros(10, 10);
    nequil::core::linalg::gemm_tn(&mut sxx.data, &ds.x, &ds.x, 10, 10, n, 1.0 / n as f64, false);
    nequil::core::linalg::gemm_tn(&mut syx.data, &ds.y, &ds.x, 10, 10, n, 1.0 / n as f64, false);
    let grads = |u: &Dense, w: &Dense| {
        let gv = u.mul(w).mul(&sxx).add_scaled(-1.0, &syx).scale(2.0);
        (gv.mul(&w.t()), u.t().mul(&gv))
    };
    let check_grad = |theta: &[f64]| {
        let (u, w) = factors(m, theta);
        let (gu, gw) = grads(&u, &w);
        let mut ws = model.workspace(1000);
        let mut g = vec![0.0; model.n_params()];
        let mut full = vec![0.0; model.n_params()];
        for c in 0..n / 1000 {
            model.loss_grad(
                theta,
                &ds.x[c * 10_000..(c + 1) * 10_000],
                &ds.y[c * 10_000..(c + 1) * 10_000],
                1000,
                &mut g,
                &mut ws,
            );
            full.iter_mut().zip(&g).for_each(|(f, gi)| *f += gi / (n / 1000) as f64);
        }
        let mine = two_layer_theta(m, &gu, &gw);
        let scale = full.iter().map(|v| v * v).sum::<f64>().sqrt();
        let diff = full.iter().zip(&mine).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
        assert!(
            diff <= 1e-10 * scale.max(1e-3),
            "full-batch gradient mismatch {diff:e} (scale {scale:e})"
        );
    };
    let eta = 0.01;
    let (mut u, mut w) = factors(m, &theta0);
    let q0 = matrix_charge(&u, &w);
    let mut predicted = Dense::zeros(20, 20);
    check_grad(&theta0);
    for _ in 0..60_000 {
        let (gu, gw) = grads(&u, &w);
        // Exact identity for γ = 0: Δ(WWᵀ − UᵀU) = η²(G_W G_Wᵀ − G_Uᵀ G_U).
        predicted = predicted.add_scaled(eta * eta, &gw.mul(&gw.t()).add_scaled(-1.0, &gu.t().mul(&gu)));
        u = u.add_scaled(-eta, &gu);
        w = w.add_scaled(-eta, &gw);
    }
    let theta_gd = two_layer_theta(m, &u, &w);
    check_grad(&theta_gd);
    let (gu, gw) = grads(&u, &w);
    let gnorm = (gu.frob2() + gw.frob2()).sqrt();
    let moved = matrix_charge(&u, &w).add_scaled(-1.0, &q0);
    let dev = moved.add_scaled(-1.0, &predicted).frob2().sqrt();
    let (us, wsg) = factors(m, &sgd_theta);
    let sgd_moved = matrix_charge(&us, &wsg).add_scaled(-1.0, &q0).frob2().sqrt();
    let gd = [u.frob2(), w.frob2()];
    let gd_err = [(gd[0] - want[0]) / want[0], (gd[1] - want[1]) / want[1]];
    eprintln!(
        "GD: final gradient norm {gnorm:.1e}; ‖ΔQ‖ = {:.4} (identity predicts {:.4}, deviation {dev:.1e}); SGD moved Q by {sgd_moved:.2}; ‖U‖² = {:.3}, ‖W‖² = {:.3} (relative error {:+.3}, {:+.3})",
        moved.frob2().sqrt(),
        predicted.frob2().sqrt(),
        gd[0],
        gd[1],
        gd_err[0],
        gd_err[1]
    );
    assert!(gnorm < 1e-8, "GD has not converged");
    assert!(
        dev < 1e-10 * q0.frob2().sqrt(),
        "GD moved Q by other than the exact identity predicts: {dev:e}"
    );
    assert!(moved.frob2().sqrt() < 0.1 * sgd_moved);
    for k in 0..2 {
        assert!(
            gd_err[k].abs() > 0.1 && gd_err[k].abs() > 5.0 * errs[1].0[k].abs(),
            "norm {k}: GD error {}",
            gd_err[k]
        );
    }
}

/// `E[(rx)⁴]` for `rx = (p − v)x² − εx`, `x ~ N(0, σ_x²)`, `ε ~ N(0, σ_ε²)`:
/// `105a⁴σ_x⁸ + 90a²σ_ε²σ_x⁶ + 9σ_ε⁴σ_x⁴` with `a = p − v` (Gaussian moments 3, 15, 105).
fn fourth_moment_rx(p: f64, v: f64, vx: f64, ve: f64) -> f64 {
    let a = p - v;
    105.0 * a.powi(4) * vx.powi(4) + 90.0 * a * a * ve * vx.powi(3) + 9.0 * ve * ve * vx * vx
}

#[test]
fn scalar_uw_charge_decays_at_the_predicted_rate() {
    // ℓ = (u w x − y)², x ~ N(0, 1), y = x + ε, ε ~ N(0, 1), S = 1, weight decay γ. With
    // A = diag(+1 on w, −1 on u), C = w² − u² and ĝᵀAĝ = −4(rx)²C, so every step multiplies C by
    // (1 − 2ηγ)² − 4η²(r_t x_t)² exactly. The measured rate is k̂ = −ln(C_T/C_0)/(ηT).
    // * Exact discrete expectation: E[ln factor] = ln(1−2ηγ)² − 4η²E[(rx)²]/(1−2ηγ)² − 8η⁴E[(rx)⁴]/(1−2ηγ)⁴ + O(η⁶),
    //   with the moments at the current product p_t = u_t w_t.
    // * Paper (continuous): k = 4(γ + η Var[rx]) (book `theory/closed-forms.md#scalar-uw`), which differs from the above by
    //   4η(E[rx])² = 4η(p−v)²σ_x⁴ and O(η²) terms: O(η) relative, since p − v = O(√η).
    // * Statistical error: the increments' deviations from their conditional means are independent
    //   given the past, so Var(ln C_T) = Σ_t Var_t, with Var_t ≈ 16η⁴ Var[(rx)²] (≈ 16η⁴·8 at p = v:
    //   sd(k̂) ≈ 4η√(8/T)); it is estimated from the realised increments.
    let model = Model::linear(&[1, 1, 1]).unwrap();
    let (v, vx, ve) = (1.0, 1.0, 1.0);
    let sym = neuron_rescaling(&model, 0, 0).unwrap();
    let gamma = 0.002;
    let mut rates = vec![];
    for (eta, steps) in [(0.005f64, 128_000usize), (0.0025, 400_000)] {
        let k = 1.0 - 2.0 * eta * gamma;
        let (mut dlog, mut pred_d, mut pred_c, mut var, mut time) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for seed in 0..8 {
            let mut dist = Gaussian::new(
                1,
                1,
                Cov::Scalar(vx),
                Target::Linear(Dense::from_slice(1, 1, &[v])),
                Some(Cov::Scalar(ve)),
            )
            .unwrap();
            let mut theta = vec![3.0, v / 3.0]; // w = 3, u = 1/3: at the global minimum uw = v, C ≈ 8.9
            let c0 = sym.generator.charge(&theta);
            let mut rng = Rng::new(100 + seed);
            let mut ws = model.workspace(1);
            let (mut x, mut y, mut g) = ([0.0], [0.0], [0.0; 2]);
            for _ in 0..steps {
                let p = theta[0] * theta[1];
                let (m2, m4) = (scalar_uw_second_moment_rx(p, v, vx, ve), fourth_moment_rx(p, v, vx, ve));
                let expected = 2.0 * k.ln() - 4.0 * eta * eta * m2 / (k * k) - 8.0 * eta.powi(4) * m4 / k.powi(4);
                pred_d -= expected;
                pred_c += eta * scalar_uw_decay_rate(gamma, eta, 1, scalar_uw_var_rx(p, v, vx, ve));
                let c_before = sym.generator.charge(&theta);
                dist.sample(&mut rng, &mut x, &mut y, 1);
                model.loss_grad(&theta, &x, &y, 1, &mut g, &mut ws);
                for (t, gi) in theta.iter_mut().zip(&g) {
                    *t = (1.0 - 2.0 * eta * gamma) * *t - eta * gi;
                }
                let inc = (sym.generator.charge(&theta) / c_before).ln();
                var += (inc - expected).powi(2);
            }
            dlog -= (sym.generator.charge(&theta) / c0).ln();
            time += eta * steps as f64;
        }
        let (rate, kd, kc, sd) = (dlog / time, pred_d / time, pred_c / time, var.sqrt() / time);
        let sd_theory = 4.0 * eta * (8.0 / (8 * steps) as f64).sqrt() * ve * vx;
        eprintln!(
            "scalar uw, η = {eta}: measured rate {rate:.6} ± {sd:.6} (derived sd {sd_theory:.6}); exact discrete {kd:.6}; paper 4(γ + ηVar[rx]) = {kc:.6}; GD (4γ) = {:.6}",
            4.0 * gamma
        );
        assert!(
            (sd / sd_theory - 1.0).abs() < 0.2,
            "the realised noise matches the derivation"
        );
        assert!(
            (rate - kd).abs() < 4.0 * sd,
            "η = {eta}: {rate} vs exact discrete {kd} ± {sd}"
        );
        assert!(
            (rate - kc).abs() < 4.0 * sd + (kd - kc).abs(),
            "η = {eta}: {rate} vs paper {kc}"
        );
        assert!((kd - kc).abs() < 0.02 * kc, "the discretisation correction is O(η)");
        assert!(rate - 4.0 * gamma > 20.0 * sd, "the noise-driven part is resolved");
        rates.push((rate, sd, kd));
    }
    // The noise-driven part of the rate, k − 4γ = 4ηVar[rx] (+ O(η²)), halves with η.
    let (n1, n2) = (rates[0].0 - 4.0 * gamma, rates[1].0 - 4.0 * gamma);
    let ratio = n1 / n2;
    let want = (rates[0].2 - 4.0 * gamma) / (rates[1].2 - 4.0 * gamma);
    let sd = ratio * ((rates[0].1 / n1).powi(2) + (rates[1].1 / n2).powi(2)).sqrt();
    eprintln!("noise part ratio (η = 0.005 vs 0.0025): {ratio:.4} ± {sd:.4} (exact discrete {want:.4}; continuous 2)");
    assert!((ratio - want).abs() < 4.0 * sd, "ratio {ratio} vs {want} ± {sd}");
}
