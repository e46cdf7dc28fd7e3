//! The step loop allocates nothing: a counting global allocator around `Stepper::step` for every
//! model family and batching mode. Only allocations made by the measuring thread are counted, so
//! the test harness's own threads cannot disturb it.

use nequil::core::data::{Cov, Gaussian, Source, Target};
use nequil::core::models::{Activation, Init, Model, ScaleKind};
use nequil::core::rng::Rng;
use nequil::train::{Batching, Stepper};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn count() {
    if COUNTING.with(|c| c.get()) {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
    }
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
            let before = ALLOCS.load(Ordering::SeqCst);
            COUNTING.with(|c| c.set(true));
            for k in 1..200 {
                st.step(model, &mut source, &mut theta, 1e-3, k).unwrap();
            }
            COUNTING.with(|c| c.set(false));
            let after = ALLOCS.load(Ordering::SeqCst);
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
        let before = ALLOCS.load(Ordering::SeqCst);
        COUNTING.with(|c| c.set(true));
        for k in 1..200 {
            st.step(&model, &mut source, &mut theta, 1e-3, k).unwrap();
        }
        COUNTING.with(|c| c.set(false));
        let after = ALLOCS.load(Ordering::SeqCst);
        assert_eq!(
            after - before,
            0,
            "{} allocated {} times in 199 steps",
            opt.name(),
            after - before
        );
    }
}
