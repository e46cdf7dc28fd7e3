//! Curvature instruments: exact Hessian-vector products against central differences of the
//! analytic gradient for every model family, the assembled Hessian against symmetry and a
//! hand-derived closed form, Lanczos and the exact trace against the dense spectrum, Hutchinson
//! against the exact trace, the population Hessian of linear nets against the empirical one, and
//! the paper's sharpness against the numerical Hessian trace (with its factor ½).

use nequil::core::curvature::{
    data_moments, dense_hessian, exact_trace, hessian_spectrum, hutchinson_trace, lanczos, linear_hessian_trace,
    paper_sharpness, sharpness::PAPER_SHARPNESS_FACTOR, trace, EmpiricalHessian, HessianOp, HvpOptions, HvpWorkspace,
    LanczosOptions, PopulationHessian, WeightDecay, Which, DENSE_MAX_PARAMS,
};
use nequil::core::data::{Cov, Gaussian, Source, Target};
use nequil::core::linalg::Dense;
use nequil::core::models::{Activation, DenseChain, Init, Model, ScaleKind};
use nequil::core::rng::Rng;
use nequil::instruments::{CurvatureData, HessianTraceProbe, PaperSharpnessProbe, TopEigenProbe};
use nequil::train::{Probe, ProbeCtx, Schedule};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

const ACTS: [Activation; 5] = [
    Activation::Identity,
    Activation::Tanh,
    Activation::Relu,
    Activation::LeakyRelu(0.1),
    Activation::Swish,
];

/// Kinds 0..5: MLP with `ACTS[kind]`; 5: Net-A; 6: Net-B.
fn family(kind: usize, widths: &[usize], bias: bool) -> Model {
    if kind < ACTS.len() {
        Model::mlp(widths, ACTS[kind], bias).unwrap()
    } else {
        let k = if kind == 5 { ScaleKind::NetA } else { ScaleKind::NetB };
        Model::scale_net(k, widths[0], widths[1], *widths.last().unwrap()).unwrap()
    }
}

fn data(model: &Model, n: usize, rng: &mut Rng) -> (Vec<f64>, Vec<f64>) {
    let mut x = vec![0.0; n * model.d_in()];
    let mut y = vec![0.0; n * model.d_out()];
    rng.fill_normal(&mut x);
    rng.fill_normal(&mut y);
    (x, y)
}

fn params(model: &Model, rng: &mut Rng) -> Vec<f64> {
    let mut theta = model.init(&Init::Xavier, rng).unwrap();
    // Biases start at zero; move every parameter off special values.
    for v in theta.iter_mut() {
        *v += 0.2 * rng.normal();
    }
    theta
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

fn diff_norm(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt()
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, a| m.max(a.abs()))
}

/// Smallest |pre-activation| over all hidden units and samples (a naive forward pass).
fn min_abs_hidden_preact(m: &DenseChain, theta: &[f64], x: &[f64], n: usize) -> f64 {
    let w = m.widths();
    let mut best = f64::INFINITY;
    for i in 0..n {
        let mut a: Vec<f64> = x[i * w[0]..(i + 1) * w[0]].to_vec();
        for l in 0..m.depth() - 1 {
            let wo = m.weight_offset(l);
            let z: Vec<f64> = (0..w[l + 1])
                .map(|r| {
                    let mut s: f64 = (0..w[l]).map(|c| theta[wo + r * w[l] + c] * a[c]).sum();
                    if let Some(bo) = m.bias_offset(l) {
                        s += theta[bo + r];
                    }
                    s
                })
                .collect();
            best = z.iter().fold(best, |b, v| b.min(v.abs()));
            a = z.iter().map(|&v| m.activation().apply(v)).collect();
        }
    }
    best
}

/// Central difference of the analytic mean-loss gradient along v: (g(θ+hv) − g(θ−hv)) / 2h.
fn fd_hv(model: &Model, theta: &[f64], x: &[f64], y: &[f64], n: usize, v: &[f64], h: f64) -> Vec<f64> {
    let p = model.n_params();
    let mut ws = model.workspace(n);
    let (mut gp, mut gm) = (vec![0.0; p], vec![0.0; p]);
    let tp: Vec<f64> = theta.iter().zip(v).map(|(t, d)| t + h * d).collect();
    let tm: Vec<f64> = theta.iter().zip(v).map(|(t, d)| t - h * d).collect();
    model.loss_grad(&tp, x, y, n, &mut gp, &mut ws);
    model.loss_grad(&tm, x, y, n, &mut gm, &mut ws);
    gp.iter().zip(&gm).map(|(a, b)| (a - b) / (2.0 * h)).collect()
}

fn hv_with(model: &Model, theta: &[f64], x: &[f64], y: &[f64], n: usize, v: &[f64], opts: HvpOptions) -> Vec<f64> {
    let mut ws = HvpWorkspace::new(model, opts);
    let mut op = EmpiricalHessian::new(model, theta, x, y, n, &mut ws).unwrap();
    let mut out = vec![0.0; model.n_params()];
    op.apply(v, &mut out);
    out
}

fn widths_for(kind: usize, depth: usize, w: [usize; 4]) -> Vec<usize> {
    if kind >= 5 {
        return vec![w[0], w[1], w[3]];
    }
    let mut v = vec![w[0]];
    v.extend(&w[1..depth]);
    v.push(w[3]);
    v
}

proptest! {
    // A fixed seed: every run draws the same cases, so the suite is reproducible.
    #![proptest_config(ProptestConfig { cases: 96, rng_seed: RngSeed::Fixed(20240207), ..ProptestConfig::default() })]

    /// Exact Hv (default options) against central differences of the analytic gradient, and
    /// against itself under other chunk sizes, thread counts and with/without the forward cache.
    #[test]
    fn hvp_matches_central_differences(
        kind in 0usize..7, depth in 1usize..4, w in proptest::array::uniform4(1usize..6),
        bias in any::<bool>(), seed in 0u64..10_000, n in 1usize..13,
        chunk in 1usize..6, threads in 1usize..4, cache in any::<bool>(),
    ) {
        let widths = widths_for(kind, depth, w);
        let model = family(kind, &widths, bias);
        let mut rng = Rng::new(seed);
        let theta = params(&model, &mut rng);
        let (x, y) = data(&model, n, &mut rng);
        let p = model.n_params();
        let mut v = vec![0.0; p];
        rng.fill_normal(&mut v);
        let nv = norm(&v);
        v.iter_mut().for_each(|e| *e /= nv);
        if let Some(m) = &model.as_chain() {
            // ReLU-type kinks within the difference step make central differences meaningless.
            if matches!(m.activation(), Activation::Relu | Activation::LeakyRelu(_)) {
                prop_assume!(min_abs_hidden_preact(m, &theta, &x, n) > 1e-3);
            }
        }
        let hv = hv_with(&model, &theta, &x, &y, n, &v, HvpOptions::default());
        // Step 1e-5: truncation O(h²·‖∇³L‖) ≈ 1e-10, rounding O(ε‖g‖/h) ≈ 1e-11 — both far below
        // the 1e-6 relative tolerance.
        let fd = fd_hv(&model, &theta, &x, &y, n, &v, 1e-5);
        let err = diff_norm(&hv, &fd);
        prop_assert!(err <= 1e-6 * (norm(&hv) + 1e-6), "{}: |Hv − fd| = {err:e}, |Hv| = {:e}", model.describe(), norm(&hv));
        let opts = HvpOptions { chunk, threads, cache_bytes: if cache { usize::MAX } else { 0 } };
        let hv2 = hv_with(&model, &theta, &x, &y, n, &v, opts);
        prop_assert!(diff_norm(&hv, &hv2) <= 1e-12 * (1.0 + norm(&hv)));
    }
}

/// The Hessian assembled from P products is symmetric to rounding, for every family.
#[test]
fn assembled_hessian_is_symmetric() {
    for kind in 0..7 {
        for bias in [false, true] {
            let model = family(kind, &[4, 5, 3, 2], bias);
            let mut rng = Rng::new(100 + kind as u64);
            let theta = params(&model, &mut rng);
            let n = 17;
            let (x, y) = data(&model, n, &mut rng);
            let mut ws = HvpWorkspace::new(
                &model,
                HvpOptions {
                    chunk: 5,
                    ..HvpOptions::default()
                },
            );
            let mut op = EmpiricalHessian::new(&model, &theta, &x, &y, n, &mut ws).unwrap();
            let h = dense_hessian(&mut op).unwrap();
            let scale = max_abs(&h.data);
            let asym = max_abs(&h.add_scaled(-1.0, &h.t()).data);
            assert!(
                asym <= 1e-10 * scale,
                "{}: asymmetry {asym:e} vs scale {scale:e}",
                model.describe()
            );
        }
    }
}

/// The dense Hessian of a two-layer linear net `U W` on a dataset against the hand-derived
/// closed form in the moments `Σ = XᵀX/n`, `C = YᵀX/n`:
/// `∂²L/∂U_ab∂U_cd = 2δ_ac (WΣWᵀ)_bd`, `∂²L/∂W_ab∂W_cd = 2(UᵀU)_ac Σ_bd`,
/// `∂²L/∂U_ab∂W_cd = 2U_ac (WΣ)_bd + δ_bc G_ad` with `G = 2(UWΣ − C)`.
#[test]
fn linear_net_hessian_matches_closed_form() {
    for (dx, d, dy, seed) in [(3, 4, 2, 1u64), (5, 2, 3, 2), (1, 1, 1, 3), (4, 6, 4, 4)] {
        let model = Model::linear(&[dx, d, dy]).unwrap();
        let mlp = model.as_chain().unwrap();
        let mut rng = Rng::new(seed);
        let theta = params(&model, &mut rng);
        let n = 40;
        let (x, y) = data(&model, n, &mut rng);
        let (sx, c) = data_moments(&x, &y, n, dx, dy).unwrap();
        let wm = Dense::from_slice(d, dx, &theta[mlp.weight_offset(0)..mlp.weight_offset(0) + d * dx]);
        let um = Dense::from_slice(dy, d, &theta[mlp.weight_offset(1)..mlp.weight_offset(1) + dy * d]);
        let wsw = wm.mul(&sx).mul(&wm.t());
        let utu = um.t().mul(&um);
        let ws_ = wm.mul(&sx);
        let g = um.mul(&wm).mul(&sx).add_scaled(-1.0, &c).scale(2.0);
        let p = model.n_params();
        let iw = |a: usize, b: usize| mlp.weight_offset(0) + a * dx + b;
        let iu = |a: usize, b: usize| mlp.weight_offset(1) + a * d + b;
        let mut want = Dense::zeros(p, p);
        for a in 0..dy {
            for b in 0..d {
                for c2 in 0..dy {
                    for dd in 0..d {
                        if a == c2 {
                            *want.at_mut(iu(a, b), iu(c2, dd)) = 2.0 * wsw.at(b, dd);
                        }
                    }
                }
                for c2 in 0..d {
                    for dd in 0..dx {
                        let mut v = 2.0 * um.at(a, c2) * ws_.at(b, dd);
                        if b == c2 {
                            v += g.at(a, dd);
                        }
                        *want.at_mut(iu(a, b), iw(c2, dd)) = v;
                        *want.at_mut(iw(c2, dd), iu(a, b)) = v;
                    }
                }
            }
        }
        for a in 0..d {
            for b in 0..dx {
                for c2 in 0..d {
                    for dd in 0..dx {
                        *want.at_mut(iw(a, b), iw(c2, dd)) = 2.0 * utu.at(a, c2) * sx.at(b, dd);
                    }
                }
            }
        }
        let scale = max_abs(&want.data);
        let mut ws = HvpWorkspace::new(&model, HvpOptions::default());
        let mut emp = EmpiricalHessian::new(&model, &theta, &x, &y, n, &mut ws).unwrap();
        let he = dense_hessian(&mut emp).unwrap();
        let mut pop = PopulationHessian::new(&model, &theta, &sx, &c).unwrap();
        let hp = dense_hessian(&mut pop).unwrap();
        let e1 = max_abs(&he.add_scaled(-1.0, &want).data);
        let e2 = max_abs(&hp.add_scaled(-1.0, &want).data);
        assert!(
            e1 <= 1e-10 * scale,
            "empirical vs closed form: {e1:e} (scale {scale:e})"
        );
        assert!(
            e2 <= 1e-10 * scale,
            "population vs closed form: {e2:e} (scale {scale:e})"
        );
    }
}

/// The population Hessian of deep linear nets, given a dataset's moments, equals the dataset's
/// empirical Hessian exactly (same quadratic loss), for depths 1–4.
#[test]
fn population_hvp_equals_empirical_with_matching_moments() {
    let mut rng = Rng::new(7);
    for widths in [vec![3, 2], vec![4, 3, 2], vec![3, 5, 4, 2], vec![2, 3, 3, 4, 3]] {
        let model = Model::linear(&widths).unwrap();
        let theta = params(&model, &mut rng);
        let n = 33;
        let (x, y) = data(&model, n, &mut rng);
        let (sx, c) = data_moments(&x, &y, n, model.d_in(), model.d_out()).unwrap();
        let mut pop = PopulationHessian::new(&model, &theta, &sx, &c).unwrap();
        let mut ws = HvpWorkspace::new(&model, HvpOptions::default());
        let mut emp = EmpiricalHessian::new(&model, &theta, &x, &y, n, &mut ws).unwrap();
        let p = model.n_params();
        for _ in 0..5 {
            let mut v = vec![0.0; p];
            rng.fill_normal(&mut v);
            let (mut a, mut b) = (vec![0.0; p], vec![0.0; p]);
            pop.apply(&v, &mut a);
            emp.apply(&v, &mut b);
            assert!(
                diff_norm(&a, &b) <= 1e-10 * norm(&b),
                "{widths:?}: {:e}",
                diff_norm(&a, &b)
            );
        }
    }
}

/// For a Gaussian source, `from_gaussian` uses `Σ_x` and `E[yxᵀ] = VΣ_x` (label noise does not
/// enter), and refuses non-linear models and the tanh teacher.
#[test]
fn population_hessian_from_gaussian_uses_exact_moments() {
    let mut rng = Rng::new(9);
    let (dx, dy) = (4, 3);
    let full = {
        let mut g = Dense::zeros(dx, dx);
        rng.fill_normal(&mut g.data);
        g.mul(&g.t()).add_scaled(1.0, &Dense::eye(dx))
    };
    let teacher = Target::random_linear(dx, dy, &mut rng);
    let v = match &teacher {
        Target::Linear(v) => v.clone(),
        _ => unreachable!(),
    };
    let dist = Gaussian::new(dx, dy, Cov::Full(full.clone()), teacher, Some(Cov::Scalar(0.7))).unwrap();
    let model = Model::linear(&[dx, 5, dy]).unwrap();
    let theta = params(&model, &mut rng);
    let mut a = PopulationHessian::from_gaussian(&model, &theta, &dist).unwrap();
    let mut b = PopulationHessian::new(&model, &theta, &full, &v.mul(&full)).unwrap();
    let ha = dense_hessian(&mut a).unwrap();
    let hb = dense_hessian(&mut b).unwrap();
    assert_eq!(ha, hb);
    let tanh_model = Model::mlp(&[dx, 5, dy], Activation::Tanh, false).unwrap();
    assert!(PopulationHessian::from_gaussian(&tanh_model, &theta, &dist).is_err());
    let tanh_dist = Gaussian::new(dx, dy, Cov::Scalar(1.0), Target::random_tanh(dx, 3, dy, &mut rng), None).unwrap();
    assert!(PopulationHessian::from_gaussian(&model, &theta, &tanh_dist).is_err());
}

/// Lanczos (largest k = 1 and 3, smallest k = 2) and the exact trace against the dense spectrum
/// of small nets of every family. With `tol = 1e-10` the Ritz values are within `1e-10 ‖H‖` of
/// eigenvalues, so 1e-8 relative is a safe margin.
#[test]
fn lanczos_and_exact_trace_match_dense_spectrum() {
    for kind in 0..7 {
        let model = family(kind, &[4, 5, 3], kind % 2 == 1);
        let mut rng = Rng::new(200 + kind as u64);
        let theta = params(&model, &mut rng);
        let n = 25;
        let (x, y) = data(&model, n, &mut rng);
        let mut ws = HvpWorkspace::new(&model, HvpOptions::default());
        let mut op = EmpiricalHessian::new(&model, &theta, &x, &y, n, &mut ws).unwrap();
        let (vals, _) = hessian_spectrum(&mut op).unwrap();
        let p = vals.len();
        let scale = vals.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let tr: f64 = vals.iter().sum();
        let et = exact_trace(&mut op);
        assert!(
            (et - tr).abs() <= 1e-8 * scale.max(tr.abs()),
            "{}: trace {et} vs {tr}",
            model.describe()
        );
        for (k, which) in [(1, Which::Largest), (3, Which::Largest), (2, Which::Smallest)] {
            let opts = LanczosOptions {
                k,
                which,
                max_iter: p,
                tol: 1e-10,
                seed: 5,
            };
            let r = lanczos(&mut op, &opts).unwrap();
            assert!(r.converged, "{}: not converged {r:?}", model.describe());
            for i in 0..k {
                let want = match which {
                    Which::Largest => vals[p - 1 - i],
                    Which::Smallest => vals[i],
                };
                assert!(
                    (r.values[i] - want).abs() <= 1e-8 * scale,
                    "{} {which:?} #{i}: {} vs {want}",
                    model.describe(),
                    r.values[i]
                );
                assert!(r.residuals[i] <= 1e-10 * scale * 1.0001);
            }
        }
    }
}

/// Lanczos on a large operator stops well before P and reports convergence; on a rank-2 operator
/// the Krylov space becomes invariant after 3 steps and it restarts to find the zero eigenvalues.
#[test]
fn lanczos_converges_early_and_handles_invariant_subspaces() {
    let p = 400;
    let mut d: Vec<f64> = (0..p).map(|i| i as f64 / p as f64).collect();
    d[p - 1] = 10.0;
    d[p - 2] = 5.0;
    let mut op = Dense::diag(&d);
    let r = lanczos(
        &mut op,
        &LanczosOptions {
            k: 2,
            tol: 1e-9,
            ..LanczosOptions::default()
        },
    )
    .unwrap();
    assert!(r.converged && r.iterations < 60, "{} iterations", r.iterations);
    assert!((r.values[0] - 10.0).abs() < 1e-12 && (r.values[1] - 5.0).abs() < 1e-12);

    let mut rng = Rng::new(3);
    let n = 30;
    let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
    rng.fill_normal(&mut a);
    rng.fill_normal(&mut b);
    let mut m = Dense::zeros(n, n);
    for i in 0..n {
        for j in 0..n {
            *m.at_mut(i, j) = 3.0 * a[i] * a[j] - 2.0 * b[i] * b[j];
        }
    }
    let (vals, _) = nequil::core::linalg::sym_eigen(&m).unwrap();
    let r = lanczos(
        &mut m,
        &LanczosOptions {
            k: 4,
            tol: 1e-10,
            ..LanczosOptions::default()
        },
    )
    .unwrap();
    assert!(r.converged);
    let scale = vals[n - 1].abs().max(vals[0].abs());
    assert!((r.values[0] - vals[n - 1]).abs() < 1e-10 * scale);
    for i in 1..4 {
        assert!(r.values[i].abs() < 1e-10 * scale, "{:?}", r.values);
    }
    let r = lanczos(
        &mut m,
        &LanczosOptions {
            k: 2,
            which: Which::Smallest,
            tol: 1e-10,
            ..LanczosOptions::default()
        },
    )
    .unwrap();
    assert!(r.converged);
    assert!(
        (r.values[0] - vals[0]).abs() < 1e-10 * scale && r.values[1].abs() < 1e-10 * scale,
        "{:?}",
        r.values
    );
}

/// Hutchinson's estimate lies within 3 standard errors of the exact trace, and its reported
/// standard error agrees with the exact one, `sqrt(2 Σ_{p≠q} H_pq² / m)`.
///
/// Not flaky: the probes come from a fixed seed, so the test is deterministic and reproduces
/// bit for bit. The tolerances are statistical, not tuned: for a random seed the estimate of m =
/// 400 probes is close to normal and leaves the 3σ band with probability ≈ 0.3%, and the relative
/// spread of the sample standard error is ≈ `sqrt(1/(2m))·(kurtosis factor)` ≈ 5–10%, far inside
/// the accepted factor [0.75, 1.33].
#[test]
fn hutchinson_within_three_standard_errors() {
    let model = family(1, &[5, 6, 4], true);
    let mut rng = Rng::new(31);
    let theta = params(&model, &mut rng);
    let n = 50;
    let (x, y) = data(&model, n, &mut rng);
    let mut ws = HvpWorkspace::new(&model, HvpOptions::default());
    let mut op = EmpiricalHessian::new(&model, &theta, &x, &y, n, &mut ws).unwrap();
    let exact = exact_trace(&mut op);
    let h = dense_hessian(&mut op).unwrap();
    let p = h.rows;
    let off2: f64 = (0..p)
        .flat_map(|i| (0..p).map(move |j| (i, j)))
        .filter(|(i, j)| i != j)
        .map(|(i, j)| h.at(i, j).powi(2))
        .sum();
    let m = 400;
    let est = hutchinson_trace(&mut op, m, &mut Rng::new(2024)).unwrap();
    assert_eq!(est.probes, m);
    assert!(!est.exact);
    assert!(
        (est.estimate - exact).abs() <= 3.0 * est.std_error,
        "{est:?} vs exact {exact}"
    );
    let se_exact = (2.0 * off2 / m as f64).sqrt();
    let ratio = est.std_error / se_exact;
    assert!(
        (0.75..1.33).contains(&ratio),
        "se {} vs exact se {se_exact}",
        est.std_error
    );
    // `trace` picks the exact route for small P and reports it as such.
    let t = trace(&mut op, p, 8, &mut Rng::new(1)).unwrap();
    assert!(t.exact && t.std_error == 0.0 && t.estimate == exact);
    assert!(hutchinson_trace(&mut op, 1, &mut Rng::new(1)).is_err());
}

fn spd(d: usize, rng: &mut Rng) -> Dense {
    let mut g = Dense::zeros(d, d);
    rng.fill_normal(&mut g.data);
    g.mul(&g.t()).scale(1.0 / d as f64).add_scaled(0.5, &Dense::eye(d))
}

/// The paper's sharpness is exactly half the numerical Hessian trace of the population loss
/// `E‖UWx − y‖²` (P products on the exact population Hessian), at arbitrary θ (not a minimum),
/// and of a dataset's mean loss with the dataset's `Σ_x`. The depth-D trace formula agrees too.
#[test]
fn paper_sharpness_is_half_the_hessian_trace() {
    assert_eq!(PAPER_SHARPNESS_FACTOR, 0.5);
    let mut rng = Rng::new(41);
    for (dx, d, dy) in [(3, 4, 2), (5, 1, 5), (2, 7, 3), (6, 3, 1)] {
        let sx = spd(dx, &mut rng);
        let dist = Gaussian::new(
            dx,
            dy,
            Cov::Full(sx.clone()),
            Target::random_linear(dx, dy, &mut rng),
            Some(Cov::Scalar(1.0)),
        )
        .unwrap();
        let model = Model::linear(&[dx, d, dy]).unwrap();
        let theta = params(&model, &mut rng);
        let s = paper_sharpness(&model, &theta, &sx).unwrap();
        let mut pop = PopulationHessian::from_gaussian(&model, &theta, &dist).unwrap();
        let tr = exact_trace(&mut pop);
        assert!(
            (tr - s / PAPER_SHARPNESS_FACTOR).abs() <= 1e-10 * tr.abs(),
            "trace {tr} vs 2S = {}",
            2.0 * s
        );
        let lt = linear_hessian_trace(&model, &theta, &sx).unwrap();
        assert!((lt - tr).abs() <= 1e-10 * tr.abs());
        // A dataset: its mean loss has Hessian trace 2 S(θ; XᵀX/n).
        let n = 64;
        let (x, y) = data(&model, n, &mut rng);
        let (sxh, _) = data_moments(&x, &y, n, dx, dy).unwrap();
        let mut ws = HvpWorkspace::new(&model, HvpOptions::default());
        let mut emp = EmpiricalHessian::new(&model, &theta, &x, &y, n, &mut ws).unwrap();
        let te = exact_trace(&mut emp);
        let se = paper_sharpness(&model, &theta, &sxh).unwrap();
        assert!(
            (te - 2.0 * se).abs() <= 1e-10 * te.abs(),
            "dataset trace {te} vs 2S = {}",
            2.0 * se
        );
    }
    // Deep linear nets: the closed-form trace against P products.
    for widths in [vec![3, 4, 2, 3], vec![2, 3, 4, 3, 2], vec![4, 4]] {
        let model = Model::linear(&widths).unwrap();
        let theta = params(&model, &mut rng);
        let sx = spd(widths[0], &mut rng);
        let c = Dense::zeros(*widths.last().unwrap(), widths[0]);
        let mut pop = PopulationHessian::new(&model, &theta, &sx, &c).unwrap();
        let tr = exact_trace(&mut pop);
        let lt = linear_hessian_trace(&model, &theta, &sx).unwrap();
        assert!((lt - tr).abs() <= 1e-10 * tr.abs(), "{widths:?}: {lt} vs {tr}");
    }
    // The paper's formula is for two layers only.
    let deep = Model::linear(&[2, 2, 2, 2]).unwrap();
    assert!(paper_sharpness(&deep, &vec![0.1; deep.n_params()], &Dense::eye(2)).is_err());
}

/// The paper's worked example (book `theory/closed-forms.md#worked-example`): at the noise-equilibrium solution of the
/// Fig. 3 setting with φ = 1 the paper's sharpness is `2 min(d, d_x) Tr Σ_x`; with `U = Wᵀ = I` for
/// d = d_x = d_y = 10 and `Σ_x = I`, `S = 10·10 + 10·10 = 200`.
#[test]
fn paper_sharpness_worked_example() {
    let d = 10;
    let model = Model::linear(&[d, d, d]).unwrap();
    let mut theta = vec![0.0; model.n_params()];
    for i in 0..d {
        theta[i * d + i] = 1.0;
        theta[d * d + i * d + i] = 1.0;
    }
    let s = paper_sharpness(&model, &theta, &Dense::eye(d)).unwrap();
    assert!((s - 200.0).abs() < 1e-12);
}

fn ctx<'a>(
    model: &'a Model,
    theta: &'a [f64],
    x: &'a [f64],
    y: &'a [f64],
    n: usize,
    source: &'a Source,
) -> ProbeCtx<'a> {
    ProbeCtx {
        step: 10,
        t: 0.1,
        lr: 0.01,
        batch_size: 4,
        weight_decay: 0.05,
        optimizer: &nequil::train::Optimizer::Sgd,
        velocity: &[],
        model,
        theta,
        eval_x: x,
        eval_y: y,
        eval_n: n,
        source,
    }
}

/// The probes record what the functions compute: population Hessian for online linear nets,
/// evaluation set otherwise; η·λ_max; the paper's sharpness is half the recorded trace.
#[test]
fn probes_record_the_right_quantities() {
    let mut rng = Rng::new(77);
    let (dx, d, dy) = (4, 3, 2);
    let sx = spd(dx, &mut rng);
    let dist = Gaussian::new(
        dx,
        dy,
        Cov::Full(sx.clone()),
        Target::random_linear(dx, dy, &mut rng),
        Some(Cov::Scalar(0.5)),
    )
    .unwrap();
    let mut g2 = dist.clone();
    let model = Model::linear(&[dx, d, dy]).unwrap();
    let theta = params(&model, &mut rng);
    let n = 100;
    let ds = g2.dataset(&mut rng, n);
    let source = Source::Online(dist.clone());
    let c = ctx(&model, &theta, &ds.x, &ds.y, n, &source);

    let mut tp = HessianTraceProbe::new().with_schedule(Schedule::Every(5));
    assert_eq!(tp.columns(), vec!["hess_trace", "hess_trace_se"]);
    assert_eq!(tp.schedule(), Some(&Schedule::Every(5)));
    let mut out = vec![];
    tp.record(&c, &mut out).unwrap();
    let mut pop = PopulationHessian::from_gaussian(&model, &theta, &dist).unwrap();
    let (vals, _) = hessian_spectrum(&mut pop).unwrap();
    let tr: f64 = vals.iter().sum();
    assert!((out[0] - tr).abs() <= 1e-10 * tr && out[1] == 0.0, "{out:?} vs {tr}");

    let mut sp = PaperSharpnessProbe::new();
    let mut s_out = vec![];
    sp.record(&c, &mut s_out).unwrap();
    assert!((2.0 * s_out[0] - out[0]).abs() <= 1e-10 * out[0]);

    let mut ep = TopEigenProbe::new().with_lanczos(LanczosOptions {
        tol: 1e-10,
        ..LanczosOptions::default()
    });
    assert_eq!(ep.columns().len(), 5);
    let mut e_out = vec![];
    ep.record(&c, &mut e_out).unwrap();
    let lmax = vals[vals.len() - 1];
    assert!((e_out[0] - lmax).abs() <= 1e-8 * lmax, "{e_out:?} vs {lmax}");
    assert!((e_out[1] - 0.01 * e_out[0]).abs() <= 1e-15 * e_out[0]);
    assert_eq!(e_out[4], 1.0);

    // With weight decay: λ_max + 2γ and trace + 2γP.
    let mut ep_wd = TopEigenProbe::new().with_weight_decay(true);
    let mut o = vec![];
    ep_wd.record(&c, &mut o).unwrap();
    assert!((o[0] - (lmax + 0.1)).abs() <= 1e-6 * lmax);
    let mut tp_wd = HessianTraceProbe::new().with_weight_decay(true);
    let mut o = vec![];
    tp_wd.record(&c, &mut o).unwrap();
    assert!((o[0] - (tr + 0.1 * model.n_params() as f64)).abs() <= 1e-9 * tr);

    // The evaluation set instead: the dataset's Hessian; Hutchinson when P > exact_max.
    let mut ws = HvpWorkspace::new(&model, HvpOptions::default());
    let mut emp = EmpiricalHessian::new(&model, &theta, &ds.x, &ds.y, n, &mut ws).unwrap();
    let tr_emp = exact_trace(&mut emp);
    let mut te = HessianTraceProbe::new().with_data(CurvatureData::Eval);
    let mut o = vec![];
    te.record(&c, &mut o).unwrap();
    assert!((o[0] - tr_emp).abs() <= 1e-10 * tr_emp);
    // Linear nets use the closed-form trace even when P exceeds `exact_max`.
    let mut tl = HessianTraceProbe::new()
        .with_data(CurvatureData::Eval)
        .with_exact_max(0);
    let mut o = vec![];
    tl.record(&c, &mut o).unwrap();
    assert!((o[0] - tr_emp).abs() <= 1e-10 * tr_emp && o[1] == 0.0);

    // Online data with a tanh model: Auto falls back to the evaluation set; Population refuses.
    let tanh = Model::mlp(&[dx, d, dy], Activation::Tanh, true).unwrap();
    let th_tanh = params(&tanh, &mut rng);
    let c2 = ctx(&tanh, &th_tanh, &ds.x, &ds.y, n, &source);
    let mut o = vec![];
    HessianTraceProbe::new().record(&c2, &mut o).unwrap();
    let mut ws = HvpWorkspace::new(&tanh, HvpOptions::default());
    let mut emp = EmpiricalHessian::new(&tanh, &th_tanh, &ds.x, &ds.y, n, &mut ws).unwrap();
    let tr_tanh = exact_trace(&mut emp);
    assert!((o[0] - tr_tanh).abs() <= 1e-10 * o[0].abs());
    // Hutchinson when P > exact_max: within 4 standard errors (fixed seed, deterministic).
    let mut th = HessianTraceProbe::new().with_exact_max(0).with_probes(64);
    let mut o = vec![];
    th.record(&c2, &mut o).unwrap();
    assert!(o[1] > 0.0 && (o[0] - tr_tanh).abs() <= 4.0 * o[1], "{o:?} vs {tr_tanh}");
    // Reproducible: the same step gives the same Hutchinson probes.
    let mut o2 = vec![];
    th.record(&c2, &mut o2).unwrap();
    assert_eq!(o, o2);
    assert!(HessianTraceProbe::new()
        .with_data(CurvatureData::Population)
        .record(&c2, &mut vec![])
        .is_err());
}

/// Errors: the dense Hessian above its limit, a workspace of another model, bad shapes, bad
/// Lanczos settings. Weight decay adds `2γ` to the spectrum.
#[test]
fn errors_and_weight_decay() {
    let big = Model::mlp(&[50, 50], Activation::Identity, true).unwrap();
    assert!(big.n_params() > DENSE_MAX_PARAMS);
    let mut rng = Rng::new(5);
    let theta = params(&big, &mut rng);
    let (x, y) = data(&big, 3, &mut rng);
    let mut ws = HvpWorkspace::new(&big, HvpOptions::default());
    let mut op = EmpiricalHessian::new(&big, &theta, &x, &y, 3, &mut ws).unwrap();
    assert!(dense_hessian(&mut op).is_err());
    assert!(lanczos(
        &mut op,
        &LanczosOptions {
            k: 0,
            ..LanczosOptions::default()
        }
    )
    .is_err());
    let small = family(1, &[2, 3, 1], true);
    let mut ws_small = HvpWorkspace::new(&small, HvpOptions::default());
    assert!(EmpiricalHessian::new(&big, &theta, &x, &y, 3, &mut ws_small).is_err());
    assert!(EmpiricalHessian::new(&big, &theta[1..], &x, &y, 3, &mut ws).is_err());
    assert!(EmpiricalHessian::new(&big, &theta, &x, &y, 4, &mut ws).is_err());
    assert!(EmpiricalHessian::new(&big, &theta, &x, &y, 0, &mut ws).is_err());

    let th = params(&small, &mut rng);
    let (x, y) = data(&small, 9, &mut rng);
    let mut ws = HvpWorkspace::new(&small, HvpOptions::default());
    let op = EmpiricalHessian::new(&small, &th, &x, &y, 9, &mut ws).unwrap();
    let mut reg = WeightDecay { inner: op, gamma: 0.25 };
    let (with, _) = hessian_spectrum(&mut reg).unwrap();
    let (without, _) = hessian_spectrum(&mut reg.inner).unwrap();
    for (a, b) in with.iter().zip(&without) {
        assert!((a - b - 0.5).abs() < 1e-12);
    }
}
