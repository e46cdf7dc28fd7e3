//! The step loop allocates nothing: a counting global allocator around `Stepper::step` for every
//! model family and batching mode, and around `train` between its rows. Only allocations made by
//! the measuring thread are counted, so the test harness's own threads cannot disturb it.

use nequil::core::data::{Cov, Gaussian, Source, Target};
use nequil::core::models::{Activation, Init, Model, ScaleKind};
use nequil::core::rng::Rng;
use nequil::train::{Batching, Stepper};
use std::alloc::{GlobalAlloc, Layout, System};

struct Counting;
thread_local! {
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Allocations this thread made while counting (per thread, so tests running at once do not
    /// see each other's).
    static ALLOCS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn count() {
    if COUNTING.with(|c| c.get()) {
        ALLOCS.with(|a| a.set(a.get() + 1));
    }
}

/// Allocations counted on this thread so far.
fn allocs_so_far() -> usize {
    ALLOCS.with(|a| a.get())
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn step_loop_allocates_nothing() {
    let models = vec![
        Model::linear(&[6, 8, 6]).unwrap(),
        Model::mlp(&[6, 8, 7, 6], Activation::Relu, true).unwrap(),
        Model::mlp(&[6, 64, 6], Activation::Tanh, true).unwrap(),
        Model::mlp(&[6, 8, 6], Activation::LeakyRelu(0.1), true).unwrap(),
        Model::mlp(&[6, 8, 6], Activation::Swish, false).unwrap(),
        Model::scale_net(ScaleKind::NetA, 6, 8, 6).unwrap(),
        Model::scale_net(ScaleKind::NetB, 6, 8, 6).unwrap(),
    ];
    let full = nequil::core::linalg::Dense::from_slice(6, 6, &{
        let mut m = vec![0.0; 36];
        for i in 0..6 {
            m[i * 6 + i] = 1.0 + i as f64;
        }
        m[1] = 0.3;
        m[6] = 0.3;
        m
    });
    for model in &models {
        for (mode, batching) in [
            ("online", Batching::Sgd(4)),
            ("fixed", Batching::Sgd(4)),
            ("fixed-noreplace", Batching::Sgd(3)),
            ("gd", Batching::Full),
        ] {
            let g = Gaussian::new(
                6,
                6,
                Cov::Full(full.clone()),
                Target::Identity,
                Some(Cov::Full(full.clone())),
            )
            .unwrap();
            let mut source = match mode {
                "online" => Source::Online(g),
                _ => {
                    let mut g2 = g.clone();
                    let data = g2.dataset(&mut Rng::new(1), 200);
                    Source::Fixed {
                        data,
                        replacement: mode == "fixed",
                        dist: Some(g),
                    }
                }
            };
            let mut theta = model.init(&Init::Kaiming, &mut Rng::new(2)).unwrap();
            let mut st = Stepper::new(model, &source, batching, 0.01, 3).unwrap();
            st.step(model, &mut source, &mut theta, 1e-3, 0).unwrap();
            let before = allocs_so_far();
            COUNTING.with(|c| c.set(true));
            for k in 1..200 {
                st.step(model, &mut source, &mut theta, 1e-3, k).unwrap();
            }
            COUNTING.with(|c| c.set(false));
            let after = allocs_so_far();
            assert_eq!(
                after - before,
                0,
                "{} ({mode}) allocated {} times in 199 steps",
                model.describe(),
                after - before
            );
        }
    }
}

#[test]
fn every_update_rule_allocates_nothing() {
    use nequil::core::symmetry::Momentum;
    use nequil::train::Optimizer;
    let model = Model::mlp(&[6, 8, 6], Activation::Relu, true).unwrap();
    for opt in [
        Optimizer::Momentum(Momentum::heavy_ball(0.9)),
        Optimizer::Momentum(Momentum::nesterov(0.9)),
        Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            decoupled: false,
        },
        Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            decoupled: true,
        },
    ] {
        let g = Gaussian::new(6, 6, Cov::Scalar(1.0), Target::Identity, Some(Cov::Scalar(1.0))).unwrap();
        let mut source = Source::Online(g);
        let mut theta = model.init(&Init::Kaiming, &mut Rng::new(2)).unwrap();
        let mut st = Stepper::new(&model, &source, Batching::Sgd(4), 0.01, 3)
            .unwrap()
            .with_optimizer(opt)
            .unwrap();
        st.step(&model, &mut source, &mut theta, 1e-3, 0).unwrap();
        let before = allocs_so_far();
        COUNTING.with(|c| c.set(true));
        for k in 1..200 {
            st.step(&model, &mut source, &mut theta, 1e-3, k).unwrap();
        }
        COUNTING.with(|c| c.set(false));
        let after = allocs_so_far();
        assert_eq!(
            after - before,
            0,
            "{} allocated {} times in 199 steps",
            opt.name(),
            after - before
        );
    }
}

/// `train` allocates nothing between rows: a run of 4 000 steps allocates exactly as often as one
/// of 400 with the same two rows (step 0 and the last), for SGD and for momentum (whose velocity
/// the rows read).
#[test]
fn train_allocates_nothing_between_rows() {
    use nequil::core::symmetry::Momentum;
    use nequil::train::{train, LrSchedule, Optimizer, Schedule, TrainConfig};
    let model = Model::mlp(&[6, 8, 6], Activation::Relu, true).unwrap();
    for opt in [Optimizer::Sgd, Optimizer::Momentum(Momentum::heavy_ball(0.9))] {
        let allocs = |steps: u64| {
            let g = Gaussian::new(6, 6, Cov::Scalar(1.0), Target::Identity, Some(Cov::Scalar(1.0))).unwrap();
            let mut source = Source::Online(g);
            let theta = model.init(&Init::Kaiming, &mut Rng::new(2)).unwrap();
            let cfg = TrainConfig {
                steps,
                batching: Batching::Sgd(4),
                lr: LrSchedule::Constant(1e-3),
                weight_decay: 0.01,
                optimizer: opt,
                schedule: Schedule::Steps(vec![]),
                eval_samples: 64,
                seed: 3,
            };
            let before = allocs_so_far();
            COUNTING.with(|c| c.set(true));
            let out = train(&model, &mut source, theta, &cfg, &mut [], &mut |_| {}).unwrap();
            COUNTING.with(|c| c.set(false));
            let after = allocs_so_far();
            assert!(out.error.is_none());
            assert_eq!(out.log.column("step").unwrap(), vec![0.0, steps as f64]);
            drop(out);
            after - before
        };
        let (short, long) = (allocs(400), allocs(4000));
        // The counter sees train's own allocations (buffers, evaluation set, rows).
        assert!(short > 0, "{}: no allocation counted", opt.name());
        assert_eq!(
            long,
            short,
            "{}: 3 600 more steps allocated {} more times",
            opt.name(),
            long as i64 - short as i64
        );
    }
}
