//! The update rules against straightforward reference implementations written here from
//! PyTorch's documented algorithms (`torch.optim.SGD`, `Adam`, `AdamW`), with the project's weight
//! decay `γ‖θ‖²` entering as PyTorch's `weight_decay = 2γ`.
//!
//! Two paths: the engine's `Stepper` on SGD batches (the reference applies its rule to the same
//! batch gradient, read back after each step), and the whole training loop on full batches (the
//! reference computes its own gradients). Trajectories agree to rounding: the reference does the
//! same arithmetic in another order at most, so the relative difference stays within a few
//! hundred ulps over the steps taken (bound 1e-11, checked at every step).

use nequil::core::data::{Cov, Gaussian, Source, Target};
use nequil::core::models::{Activation, Init, Model};
use nequil::core::rng::Rng;
use nequil::core::symmetry::Momentum;
use nequil::train::{train, Batching, LrSchedule, Optimizer, Schedule, Stepper, TrainConfig};

/// The reference rules, one step at a time, as PyTorch's docs write them.
struct Reference {
    opt: Optimizer,
    buf: Vec<f64>,
    m: Vec<f64>,
    s: Vec<f64>,
    k: u64,
}

impl Reference {
    fn new(opt: Optimizer, p: usize) -> Self {
        Reference {
            opt,
            buf: vec![],
            m: vec![0.0; p],
            s: vec![0.0; p],
            k: 0,
        }
    }

    fn step(&mut self, theta: &mut [f64], grad: &[f64], lr: f64, gamma: f64) {
        let wd = 2.0 * gamma; // PyTorch's weight_decay for the loss term γ‖θ‖²
        self.k += 1;
        match self.opt {
            Optimizer::Sgd => {
                for (t, g) in theta.iter_mut().zip(grad) {
                    *t -= lr * (g + wd * *t);
                }
            }
            Optimizer::Momentum(Momentum {
                beta,
                dampening,
                nesterov,
            }) => {
                let d_p: Vec<f64> = grad.iter().zip(theta.iter()).map(|(g, t)| g + wd * t).collect();
                if self.buf.is_empty() {
                    self.buf = d_p.clone();
                } else {
                    for (b, d) in self.buf.iter_mut().zip(&d_p) {
                        *b = beta * *b + (1.0 - dampening) * d;
                    }
                }
                for i in 0..theta.len() {
                    let dir = if nesterov {
                        d_p[i] + beta * self.buf[i]
                    } else {
                        self.buf[i]
                    };
                    theta[i] -= lr * dir;
                }
            }
            Optimizer::Adam {
                beta1,
                beta2,
                eps,
                decoupled,
            } => {
                let k = self.k as i32;
                for i in 0..theta.len() {
                    let g = if decoupled {
                        theta[i] *= 1.0 - lr * wd;
                        grad[i]
                    } else {
                        grad[i] + wd * theta[i]
                    };
                    self.m[i] = beta1 * self.m[i] + (1.0 - beta1) * g;
                    self.s[i] = beta2 * self.s[i] + (1.0 - beta2) * g * g;
                    let m_hat = self.m[i] / (1.0 - beta1.powi(k));
                    let s_hat = self.s[i] / (1.0 - beta2.powi(k));
                    theta[i] -= lr * m_hat / (s_hat.sqrt() + eps);
                }
            }
        }
    }
}

fn optimizers() -> Vec<Optimizer> {
    vec![
        Optimizer::Sgd,
        Optimizer::Momentum(Momentum::heavy_ball(0.9)),
        Optimizer::Momentum(Momentum {
            beta: 0.8,
            dampening: 0.3,
            nesterov: false,
        }),
        Optimizer::Momentum(Momentum::nesterov(0.9)),
        Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            decoupled: false,
        },
        Optimizer::Adam {
            beta1: 0.8,
            beta2: 0.99,
            eps: 1e-6,
            decoupled: true,
        },
    ]
}

fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale
}

fn source(d_in: usize, d_out: usize, fixed: Option<usize>) -> Source {
    let teacher = Target::random_linear(d_in, d_out, &mut Rng::new(11));
    let mut g = Gaussian::new(d_in, d_out, Cov::Scalar(1.0), teacher, Some(Cov::Scalar(0.25))).unwrap();
    match fixed {
        None => Source::Online(g),
        Some(n) => {
            let data = g.dataset(&mut Rng::new(12), n);
            Source::Fixed {
                data,
                replacement: true,
                dist: Some(g),
            }
        }
    }
}

#[test]
fn every_rule_follows_its_reference_on_sgd_batches() {
    let model = Model::mlp(&[5, 9, 3], Activation::Tanh, true).unwrap();
    let gamma = 0.01;
    for opt in optimizers() {
        let mut src = source(5, 3, None);
        let mut theta = model.init(&Init::Kaiming, &mut Rng::new(3)).unwrap();
        let mut reference = theta.clone();
        let mut st = Stepper::new(&model, &src, Batching::Sgd(4), gamma, 5)
            .unwrap()
            .with_optimizer(opt)
            .unwrap();
        let mut rf = Reference::new(opt, theta.len());
        let mut worst = 0.0f64;
        for k in 0..300u64 {
            // A changing rate, as a schedule would give.
            let lr = if k < 100 { 0.003 } else { 0.01 };
            st.step(&model, &mut src, &mut theta, lr, k).unwrap();
            rf.step(&mut reference, st.last_grad(), lr, gamma);
            worst = worst.max(max_rel(&theta, &reference));
        }
        eprintln!("{}: largest relative difference over 300 steps {worst:.2e}", opt.name());
        assert!(worst < 1e-11, "{opt:?}: {worst}");
        // The rule moved θ away from where SGD would have taken it (the rules differ).
        assert_eq!(st.state().steps, 300);
    }
}

#[test]
fn the_training_loop_runs_every_rule_on_full_batches() {
    let model = Model::mlp(&[4, 6, 2], Activation::Relu, true).unwrap();
    let (gamma, lr, steps, n) = (0.005, 0.02, 60u64, 32usize);
    let mut finals = vec![];
    for opt in optimizers() {
        let mut src = source(4, 2, Some(n));
        let theta0 = model.init(&Init::Kaiming, &mut Rng::new(4)).unwrap();
        let cfg = TrainConfig {
            steps,
            batching: Batching::Full,
            lr: LrSchedule::Constant(lr),
            weight_decay: gamma,
            optimizer: opt,
            schedule: Schedule::Every(steps),
            eval_samples: n,
            seed: 1,
        };
        let out = train(&model, &mut src, theta0.clone(), &cfg, &mut [], &mut |_| {}).unwrap();
        assert!(out.error.is_none());
        // The reference with its own full-batch gradients.
        let Source::Fixed { data, .. } = &src else {
            unreachable!()
        };
        let mut ws = model.workspace(n);
        let mut g = vec![0.0; model.n_params()];
        let mut theta = theta0;
        let mut rf = Reference::new(opt, theta.len());
        for _ in 0..steps {
            model.loss_grad(&theta, &data.x, &data.y, n, &mut g, &mut ws);
            rf.step(&mut theta, &g, lr, gamma);
        }
        let d = max_rel(&out.theta, &theta);
        eprintln!("{}: final relative difference {d:.2e}", opt.name());
        assert!(d < 1e-11, "{opt:?}: {d}");
        finals.push(out.theta);
    }
    // Six rules, six different end points.
    for i in 0..finals.len() {
        for j in 0..i {
            assert!(
                max_rel(&finals[i], &finals[j]) > 1e-6,
                "rules {i} and {j} gave the same θ"
            );
        }
    }
}

#[test]
fn momentum_zero_is_sgd() {
    // β = 0 (no dampening) is plain SGD: v = g every step.
    let model = Model::linear(&[3, 4, 3]).unwrap();
    let run = |opt| {
        let mut src = source(3, 3, None);
        let mut theta = model.init(&Init::Kaiming, &mut Rng::new(2)).unwrap();
        let mut st = Stepper::new(&model, &src, Batching::Sgd(2), 0.0, 9)
            .unwrap()
            .with_optimizer(opt)
            .unwrap();
        for k in 0..200 {
            st.step(&model, &mut src, &mut theta, 0.01, k).unwrap();
        }
        theta
    };
    let a = run(Optimizer::Sgd);
    let b = run(Optimizer::Momentum(Momentum::heavy_ball(0.0)));
    assert_eq!(a, b, "γ = 0: the same arithmetic, the same bits");
}
