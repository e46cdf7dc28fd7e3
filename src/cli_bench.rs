//! `nequil bench …` (hidden): the nequil side of the peer comparison in `bench/compare.py`.
//!
//! * `bench train SPEC` times the training loop of a spec (what `nequil run` does, without the
//!   run directory), like the peers' internal timers that exclude imports and set-up.
//! * `bench gemm M N K` measures this machine's single-thread f64 matrix-product rate (faer, the
//!   engine's own GEMM) at one shape.
//! * `bench parallel SPEC --runs R --jobs J` trains R copies of a spec (seeds 0..R) on J threads,
//!   without writing run directories.
//! * `bench noise` computes the per-parameter gradient variance of a ReLU MLP over N samples and
//!   the per-neuron rescaling imbalance of its first hidden layer (the work of
//!   `bench/peers/noise_torch.py`).
//!
//! * `bench stats MODEL.toml` computes the per-parameter gradient mean and variance of any model
//!   (a `[model]` table, e.g. a CNN or a transformer block) over N samples (the work of
//!   `bench/peers/stats_backpack.py` and `bench/peers/stats_torchfunc.py`).
//!
//! Every command prints one line `key=value …` with `time_s=` (the format of the peer scripts).

use clap::{Args, Subcommand};
use nequil::core::curvature::{hutchinson_trace, lanczos, EmpiricalHessian, HvpOptions, HvpWorkspace, LanczosOptions};
use nequil::core::linalg::{gemm_nn, gemm_nt, gemm_tn};
use nequil::core::models::{Activation, Model};
use nequil::core::parallel::{current_threads, with_threads};
use nequil::core::rng::Rng;
use nequil::core::stats::{grad_stats, neuron_imbalances};
use nequil::lab::spec::Spec;
use nequil::train::train;
use nequil::{invalid, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Per-parameter gradient mean and variance of a model from a `[model]` file over `n` random
/// samples: weights `U(±1/√fan_in)` (PyTorch's default for linear and convolution layers), norm
/// gains 1, data `N(0, 1)`.
fn bench_stats(model_file: &std::path::Path, n: usize, chunk: usize, seed: u64) -> Result<ExitCode> {
    if n == 0 || chunk == 0 {
        return Err(invalid!("bench stats: n and chunk must be ≥ 1"));
    }
    let model = nequil::lab::spec::load_model(model_file)?;
    let mut rng = Rng::new(seed);
    let mut theta = model.init(&nequil::core::models::Init::Kaiming, &mut rng)?;
    let mut off = 0;
    for nd in model.nodes() {
        for b in nd.layer().blocks() {
            let r = off..off + b.len();
            off = r.end;
            let fan_in = match b.init {
                nequil::core::layers::BlockInit::Weight { fan_in, .. } => fan_in,
                _ => continue,
            };
            let bound = 1.0 / (fan_in as f64).sqrt();
            theta[r]
                .iter_mut()
                .for_each(|v| *v = bound * (2.0 * rng.uniform() - 1.0));
        }
    }
    let (dx, dy) = (model.d_in(), model.d_out());
    let mut x = vec![0.0; n * dx];
    let mut y = vec![0.0; n * dy];
    rng.fill_normal(&mut x);
    rng.fill_normal(&mut y);
    let t0 = Instant::now();
    let mut ws = model.workspace(chunk.min(n));
    let st = grad_stats(&model, &theta, &x, &y, n, &mut ws);
    let var = st.variance();
    let el = t0.elapsed().as_secs_f64();
    println!(
        "nequil-stats model={:?} P={} N={n} chunk={chunk} time_s={el:.4} var_sum={:.6e} loss={:.6e} data_plus_params_bytes={}",
        model.describe(),
        model.n_params(),
        var.iter().sum::<f64>(),
        st.loss,
        8 * (x.len() + y.len() + theta.len()),
    );
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `nequil bench`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchCmd,
    /// Threads for the large products (`nequil::core::parallel`; bit-identical results).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Time the training loop of a spec (no run directory is written).
    Train {
        /// The run specification.
        spec: PathBuf,
    },
    /// Single-thread f64 GEMM rate at one shape: C (m×n) = A (m×k)·B, best of `reps` timed blocks.
    Gemm {
        m: usize,
        n: usize,
        k: usize,
        /// Product form: nn (A·B), nt (A·Bᵀ) or tn (Aᵀ·B), all row-major as the engine calls them.
        #[arg(long, default_value = "nn")]
        form: String,
        /// Timed blocks (the best is reported).
        #[arg(long, default_value_t = 7)]
        reps: usize,
    },
    /// Per-sample gradient mean and variance of a `[model]` file's model over N random samples.
    Stats {
        /// A TOML file with a `[model]` table (or a run spec).
        model: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        n: usize,
        #[arg(long, default_value_t = 1000)]
        chunk: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Train `runs` copies of a spec (seeds 0, 1, …) on `jobs` threads (no run directories).
    Parallel {
        /// The run specification.
        spec: PathBuf,
        #[arg(long, default_value_t = 8)]
        runs: usize,
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Override train.steps.
        #[arg(long)]
        steps: Option<u64>,
    },
    /// Per-parameter gradient variance of a ReLU MLP with biases over N random samples and the
    /// per-neuron imbalance of its first hidden layer.
    Noise {
        /// Widths d_in,h_1,…,d_out.
        #[arg(long, value_delimiter = ',', default_value = "784,256,256,10")]
        widths: Vec<usize>,
        /// Number of samples N.
        #[arg(long, default_value_t = 10_000)]
        n: usize,
        /// Samples per chunk (rows of the GEMMs).
        #[arg(long, default_value_t = 1000)]
        chunk: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// `variance`: the per-parameter variance (`grad_stats`), then the first hidden layer's
        /// imbalances from it; `imbalance`: every hidden neuron's `Tr[A_kΣ]` by quadratic forms
        /// (`neuron_imbalances`), without the per-parameter variance.
        #[arg(long, default_value = "variance")]
        method: String,
    },
    /// Top Hessian eigenvalue (Lanczos) and Hutchinson trace of a ReLU MLP with biases at given
    /// weights on given data (the work of `bench/peers/hessian_pyhessian.py`).
    Hessian {
        /// Widths d_in,h_1,…,d_out.
        #[arg(long, value_delimiter = ',', default_value = "784,256,256,10")]
        widths: Vec<usize>,
        /// Weights by PyTorch name (`layers.{l}.weight`, `layers.{l}.bias`).
        #[arg(long)]
        weights: PathBuf,
        /// Data: an .npz with `x` [n, d_in] and `y` [n, d_out].
        #[arg(long)]
        npz: PathBuf,
        /// Lanczos relative tolerance (`‖Hv − λv‖ ≤ tol·|λ|`).
        #[arg(long, default_value_t = 1e-3)]
        tol: f64,
        /// Maximum Lanczos steps.
        #[arg(long, default_value_t = 100)]
        max_iter: usize,
        /// Rademacher vectors of the Hutchinson trace (0: no trace).
        #[arg(long, default_value_t = 0)]
        hutchinson: usize,
        /// Samples per chunk of the Hessian-vector products.
        #[arg(long, default_value_t = 256)]
        chunk: usize,
    },
}

pub fn bench(a: BenchArgs) -> Result<ExitCode> {
    if a.threads == 0 {
        return Err(invalid!("bench --threads: must be ≥ 1"));
    }
    with_threads(a.threads, || bench_one(a.what))
}

fn bench_one(what: BenchCmd) -> Result<ExitCode> {
    match what {
        BenchCmd::Train { spec } => bench_train(&spec),
        BenchCmd::Gemm { m, n, k, form, reps } => bench_gemm(m, n, k, &form, reps),
        BenchCmd::Parallel {
            spec,
            runs,
            jobs,
            steps,
        } => bench_parallel(&spec, runs, jobs, steps),
        BenchCmd::Noise {
            widths,
            n,
            chunk,
            seed,
            method,
        } => bench_noise(&widths, n, chunk, seed, &method),
        BenchCmd::Hessian {
            widths,
            weights,
            npz,
            tol,
            max_iter,
            hutchinson,
            chunk,
        } => bench_hessian(&widths, &weights, &npz, tol, max_iter, hutchinson, chunk),
        BenchCmd::Stats { model, n, chunk, seed } => bench_stats(&model, n, chunk, seed),
    }
}

/// CPU time of the calling thread in seconds (Linux; elsewhere `NaN`). Robust to a loaded
/// machine, where wall-clock time also counts the time the thread waited for a core.
fn thread_cpu_s() -> f64 {
    #[cfg(target_os = "linux")]
    {
        #[repr(C)]
        struct Timespec {
            tv_sec: i64,
            tv_nsec: i64,
        }
        extern "C" {
            fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
        }
        const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
        let mut ts = Timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec through a valid pointer.
        if unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return ts.tv_sec as f64 + 1e-9 * ts.tv_nsec as f64;
        }
    }
    f64::NAN
}

fn bench_train(path: &std::path::Path) -> Result<ExitCode> {
    let spec = Spec::from_file(path)?;
    let base = path.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let built = spec.build(&base)?;
    let mut source = built.source;
    let (t0, c0) = (Instant::now(), thread_cpu_s());
    let out = train(
        &built.model,
        &mut source,
        built.theta0,
        &built.config,
        &mut [],
        &mut |_| {},
    )?;
    let (el, cpu) = (t0.elapsed().as_secs_f64(), thread_cpu_s() - c0);
    if let Some(e) = out.error {
        return Err(e);
    }
    let norms: Vec<String> = built
        .model
        .layout()
        .blocks()
        .iter()
        .map(|b| {
            format!(
                "norm2_{}={:.6e}",
                b.name,
                out.theta[b.range()].iter().map(|v| v * v).sum::<f64>()
            )
        })
        .collect();
    println!(
        "nequil widths={:?} S={} steps={} threads={} time_s={el:.6} cpu_s={cpu:.6} us_per_step={:.4} final_loss={:.6e} {}",
        built.model.as_chain().map(|c| c.widths().to_vec()).unwrap_or_default(),
        spec.train.batch_size,
        out.steps_done,
        current_threads(),
        1e6 * el / out.steps_done.max(1) as f64,
        out.log.last("loss").unwrap_or(f64::NAN),
        norms.join(" ")
    );
    Ok(ExitCode::SUCCESS)
}

fn bench_parallel(path: &std::path::Path, runs: usize, jobs: usize, steps: Option<u64>) -> Result<ExitCode> {
    if runs == 0 || jobs == 0 {
        return Err(invalid!("bench parallel: --runs and --jobs must be ≥ 1"));
    }
    let spec = Spec::from_file(path)?;
    let base = path.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let specs: Vec<Spec> = (0..runs as u64)
        .map(|seed| {
            let mut s = spec.clone();
            s.seed = seed;
            if let Some(n) = steps {
                s.train.steps = n;
            }
            s
        })
        .collect();
    let t0 = Instant::now();
    let losses = nequil::core::parallel::par_map(jobs, &specs, |s| -> Result<f64> {
        let built = s.build(&base)?;
        let mut source = built.source;
        let out = train(
            &built.model,
            &mut source,
            built.theta0,
            &built.config,
            &mut [],
            &mut |_| {},
        )?;
        match out.error {
            Some(e) => Err(e),
            None => Ok(out.log.last("loss").unwrap_or(f64::NAN)),
        }
    });
    let el = t0.elapsed().as_secs_f64();
    let losses = losses.into_iter().collect::<Result<Vec<f64>>>()?;
    println!(
        "nequil-parallel runs={runs} jobs={jobs} steps={} time_s={el:.6} mean_final_loss={:.6e}",
        specs[0].train.steps,
        losses.iter().sum::<f64>() / runs as f64
    );
    Ok(ExitCode::SUCCESS)
}

fn bench_gemm(m: usize, n: usize, k: usize, form: &str, reps: usize) -> Result<ExitCode> {
    if m == 0 || n == 0 || k == 0 || reps == 0 {
        return Err(invalid!("bench gemm: sizes and reps must be ≥ 1"));
    }
    let mut r = Rng::new(1);
    let mut a = vec![0.0; m * k];
    let mut b = vec![0.0; k * n];
    let mut c = vec![0.0; m * n];
    r.fill_normal(&mut a);
    r.fill_normal(&mut b);
    let prod = |c: &mut [f64]| match form {
        "nn" => gemm_nn(c, &a, &b, m, n, k, false),
        "nt" => gemm_nt(c, &a, &b, m, n, k, false),
        _ => gemm_tn(c, &a, &b, m, n, k, 1.0, false),
    };
    if !matches!(form, "nn" | "nt" | "tn") {
        return Err(invalid!("bench gemm --form: expected nn, nt or tn, got {form}"));
    }
    let flops = 2.0 * (m * n * k) as f64;
    // About 50 ms per block.
    let t0 = Instant::now();
    prod(&mut c);
    let once = t0.elapsed().as_secs_f64().max(1e-7);
    let iters = ((0.05 / once) as usize).clamp(1, 1_000_000);
    let (mut best, mut best_cpu) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..reps {
        let (t0, c0) = (Instant::now(), thread_cpu_s());
        for _ in 0..iters {
            prod(&mut c);
        }
        best = best.min(t0.elapsed().as_secs_f64() / iters as f64);
        best_cpu = best_cpu.min((thread_cpu_s() - c0) / iters as f64);
    }
    println!(
        "faer-gemm form={form} m={m} n={n} k={k} threads={} time_s={best:.9} cpu_s={best_cpu:.9} gflops={:.3} gflops_cpu={:.3} \
         checksum={:.6e}",
        current_threads(),
        flops / best * 1e-9,
        flops / best_cpu * 1e-9,
        c.iter().sum::<f64>()
    );
    Ok(ExitCode::SUCCESS)
}

fn bench_noise(widths: &[usize], n: usize, chunk: usize, seed: u64, method: &str) -> Result<ExitCode> {
    if !matches!(method, "variance" | "imbalance") {
        return Err(invalid!(
            "bench noise --method: expected variance or imbalance, got {method}"
        ));
    }
    if widths.len() < 3 || n == 0 || chunk == 0 {
        return Err(invalid!(
            "bench noise: need at least one hidden layer, n ≥ 1 and chunk ≥ 1"
        ));
    }
    let model = Model::mlp(widths, Activation::Relu, true)?;
    let m = model.chain()?;
    // PyTorch's default nn.Linear initialization (weights and biases U(±1/√fan_in)), so that the
    // statistics match noise_torch.py's in distribution; data x, y ~ N(0, 1) as there.
    let mut rng = Rng::new(seed);
    let mut theta = vec![0.0; model.n_params()];
    for l in 0..m.depth() {
        let (din, dout) = (widths[l], widths[l + 1]);
        let bound = 1.0 / (din as f64).sqrt();
        let wo = m.weight_offset(l);
        let bo = m.bias_offset(l).expect("biases");
        for i in (wo..wo + din * dout).chain(bo..bo + dout) {
            theta[i] = bound * (2.0 * rng.uniform() - 1.0);
        }
    }
    let (dx, dy) = (model.d_in(), model.d_out());
    let t_all = Instant::now();
    let mut x = vec![0.0; n * dx];
    let mut y = vec![0.0; n * dy];
    rng.fill_normal(&mut x);
    rng.fill_normal(&mut y);
    let data_s = t_all.elapsed().as_secs_f64();
    if method == "imbalance" {
        let t0 = Instant::now();
        let mut ws = model.workspace(chunk.min(n));
        let imb = neuron_imbalances(&model, &theta, &x, &y, n, &mut ws)?;
        let el = t0.elapsed().as_secs_f64();
        println!(
            "nequil-imbalance D={} H={} N={n} threads={} time_s={el:.4} data_s={data_s:.4} imbalance_sum={:.6e} \
             imbalance_0={:.6e} neurons={}",
            widths[0],
            widths[1],
            current_threads(),
            imb[0].iter().sum::<f64>(),
            imb[0][0],
            imb.iter().map(Vec::len).sum::<usize>(),
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (t0, c0) = (Instant::now(), thread_cpu_s());
    let mut ws = model.workspace(chunk.min(n));
    let st = grad_stats(&model, &theta, &x, &y, n, &mut ws);
    let var = st.variance();
    // Neuron k of the first hidden layer: incoming weights (row k of W_0) and bias b_0[k], minus
    // outgoing weights (column k of W_1).
    let (h, d0) = (widths[1], widths[0]);
    let (w0, b0, w1) = (m.weight_offset(0), m.bias_offset(0).unwrap(), m.weight_offset(1));
    let h2 = widths[2];
    let imb: Vec<f64> = (0..h)
        .map(|k| {
            let inc: f64 = var[w0 + k * d0..w0 + (k + 1) * d0].iter().sum::<f64>() + var[b0 + k];
            let out: f64 = (0..h2).map(|j| var[w1 + j * h + k]).sum();
            inc - out
        })
        .collect();
    let (el, cpu) = (t0.elapsed().as_secs_f64(), thread_cpu_s() - c0);
    println!(
        "nequil-noise D={d0} H={h} N={n} threads={} time_s={el:.4} cpu_s={cpu:.4} data_s={data_s:.4} imbalance_sum={:.6e} \
         imbalance_0={:.6e} loss={:.6e} data_plus_params_bytes={}",
        current_threads(),
        imb.iter().sum::<f64>(),
        imb[0],
        st.loss,
        8 * (x.len() + y.len() + theta.len()),
    );
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
fn bench_hessian(
    widths: &[usize],
    weights: &std::path::Path,
    npz: &std::path::Path,
    tol: f64,
    max_iter: usize,
    hutchinson: usize,
    chunk: usize,
) -> Result<ExitCode> {
    if !(tol.is_finite() && tol > 0.0) || max_iter == 0 || chunk == 0 || hutchinson == 1 {
        return Err(invalid!(
            "bench hessian: need --tol > 0, --max-iter ≥ 1, --chunk ≥ 1 and --hutchinson 0 or ≥ 2"
        ));
    }
    let model = Model::mlp(widths, Activation::Relu, true)?;
    let theta = nequil::lab::io::load_weights(weights, &model)?;
    let arrays = nequil::lab::io::read_npz(npz)?;
    let get = |k: &str| {
        arrays
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, a)| a.data.clone())
            .ok_or_else(|| invalid!("{}: no array `{k}`", npz.display()))
    };
    let (x, y) = (get("x")?, get("y")?);
    let n = x.len() / model.d_in();
    if n == 0 || x.len() != n * model.d_in() || y.len() != n * model.d_out() {
        return Err(invalid!(
            "{}: x and y do not match the widths {widths:?}",
            npz.display()
        ));
    }
    let t0 = Instant::now();
    let mut hws = HvpWorkspace::new(
        &model,
        HvpOptions {
            chunk,
            ..HvpOptions::default()
        },
    );
    let mut op = EmpiricalHessian::new(&model, &theta, &x, &y, n, &mut hws)?;
    let res = lanczos(
        &mut op,
        &LanczosOptions {
            max_iter,
            tol,
            ..LanczosOptions::default()
        },
    )?;
    let eig_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let (trace, trace_probes) = if hutchinson >= 2 {
        let mut rng = Rng::new(0);
        let est = hutchinson_trace(&mut op, hutchinson, &mut rng)?;
        (est.estimate, est.probes)
    } else {
        (f64::NAN, 0)
    };
    let trace_s = t1.elapsed().as_secs_f64();
    println!(
        "nequil-hessian N={n} P={} threads={} time_s={:.4} eig_s={eig_s:.4} trace_s={trace_s:.4} lambda_max={:.9e} \
         iterations={} residual={:.3e} converged={} trace={trace:.6e} trace_probes={trace_probes}",
        model.n_params(),
        current_threads(),
        eig_s + trace_s,
        res.values[0],
        res.iterations,
        res.residuals[0],
        res.converged,
    );
    Ok(ExitCode::SUCCESS)
}
