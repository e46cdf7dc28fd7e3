//! Data: Gaussian sources with known second moments, teachers, label noise, fixed datasets and
//! batch samplers.
//!
//! Conventions. Inputs and targets are stored row-major, one sample per row (`n × d_x` and
//! `n × d_y`). `Σ_x = E[xxᵀ]` and `Σ_ε = E[εεᵀ]` are *second moments* (book `theory/constants.md#second-moments`); for the
//! zero-mean Gaussians generated here they equal the covariances.
//!
//! Two modes: *online* draws fresh i.i.d. samples every step (SGD on the population); *fixed*
//! draws `N` samples once and batches from them, with or without replacement.

use crate::core::linalg::{cholesky, Dense};
use crate::core::models::{Model, Workspace};
use crate::core::rng::Rng;
use crate::simd::{multiversion, Isa};
use crate::{invalid, Result};

/// A covariance (second-moment) matrix for a zero-mean Gaussian in `ℝ^d`.
#[derive(Clone, Debug, PartialEq)]
pub enum Cov {
    /// `s·I`.
    Scalar(f64),
    /// `diag(v)`; the length must be `d`.
    Diag(Vec<f64>),
    /// Consecutive blocks of equal variance: `[(size, variance), …]`, sizes summing to `d`.
    /// The paper's `φ_x` input is `[(d/2, φ), (d − d/2, 2 − φ)]`, see [`Cov::phi`].
    Blocks(Vec<(usize, f64)>),
    /// A full symmetric positive-definite matrix.
    Full(Dense),
}

impl Cov {
    /// The paper's Fig. 3 / Fig. 8 input covariance: `diag(φ·I_{⌊d/2⌋}, (2 − φ)·I_{d − ⌊d/2⌋})`.
    pub fn phi(d: usize, phi: f64) -> Cov {
        Cov::Blocks(vec![(d / 2, phi), (d - d / 2, 2.0 - phi)])
    }

    /// Checks the covariance against the dimension `d`; `what` names the key in errors.
    pub fn validate(&self, d: usize, what: &str) -> Result<()> {
        let bad = |v: f64| !(v.is_finite() && v >= 0.0);
        match self {
            Cov::Scalar(s) if bad(*s) => Err(invalid!("{what}: variance must be finite and ≥ 0, got {s}")),
            Cov::Diag(v) if v.len() != d => Err(invalid!("{what}: diagonal has {} entries, dimension is {d}", v.len())),
            Cov::Diag(v) if v.iter().any(|x| bad(*x)) => {
                Err(invalid!("{what}: diagonal entries must be finite and ≥ 0"))
            }
            Cov::Blocks(b) if b.iter().try_fold(0usize, |a, x| a.checked_add(x.0)) != Some(d) => Err(invalid!(
                "{what}: block sizes sum to {}, dimension is {d}",
                b.iter().fold(0u128, |a, x| a + x.0 as u128)
            )),
            Cov::Blocks(b) if b.iter().any(|x| bad(x.1)) => {
                Err(invalid!("{what}: block variances must be finite and ≥ 0"))
            }
            Cov::Full(m) if m.rows != d || m.cols != d => {
                Err(invalid!("{what}: matrix is {}×{}, dimension is {d}", m.rows, m.cols))
            }
            Cov::Full(m) => {
                if let Some(k) = m.data.iter().position(|v| !v.is_finite()) {
                    return Err(invalid!(
                        "{what}: entry ({}, {}) is not finite ({})",
                        k / d,
                        k % d,
                        m.data[k]
                    ));
                }
                for i in 0..d {
                    for j in 0..i {
                        let (a, b) = (m.at(i, j), m.at(j, i));
                        if (a - b).abs() > 1e-12 * (1.0 + a.abs().max(b.abs())) {
                            return Err(invalid!("{what}: matrix is not symmetric at ({i}, {j})"));
                        }
                    }
                }
                cholesky(m).map_err(|e| invalid!("{what}: not positive definite ({e})"))?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The diagonal of the matrix, if it is diagonal.
    pub fn diagonal(&self, d: usize) -> Option<Vec<f64>> {
        match self {
            Cov::Scalar(s) => Some(vec![*s; d]),
            Cov::Diag(v) => Some(v.clone()),
            Cov::Blocks(b) => Some(b.iter().flat_map(|&(n, v)| std::iter::repeat_n(v, n)).collect()),
            Cov::Full(_) => None,
        }
    }

    /// The matrix as a dense `d × d` matrix.
    pub fn dense(&self, d: usize) -> Dense {
        match self {
            Cov::Full(m) => m.clone(),
            _ => Dense::diag(&self.diagonal(d).expect("diagonal")),
        }
    }

    fn sampler(&self, d: usize) -> Result<Factor> {
        Ok(match self.diagonal(d) {
            Some(v) => Factor::Diag(v.iter().map(|x| x.sqrt()).collect()),
            None => Factor::Chol(cholesky(&self.dense(d))?),
        })
    }
}

/// A square-root factor `L` with `L Lᵀ = Σ`, used to draw `L z`, `z ~ N(0, I)`.
#[derive(Clone, Debug)]
enum Factor {
    Diag(Vec<f64>),
    Chol(Dense),
}

impl Factor {
    /// Writes `L z` into `out` using `z` as scratch (both of length d).
    #[inline]
    fn draw(&self, rng: &mut Rng, out: &mut [f64], z: &mut [f64]) {
        match self {
            Factor::Diag(s) => {
                for (o, si) in out.iter_mut().zip(s) {
                    *o = si * rng.normal();
                }
            }
            Factor::Chol(l) => {
                rng.fill_normal(z);
                let d = out.len();
                for i in 0..d {
                    let row = &l.data[i * d..i * d + i + 1];
                    out[i] = row.iter().zip(&z[..=i]).map(|(a, b)| a * b).sum();
                }
            }
        }
    }
}

/// How targets are made from inputs (before label noise is added).
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// `y' = x` (autoencoding); requires `d_y = d_x`.
    Identity,
    /// `y' = V x` with `V` of shape `d_y × d_x`.
    Linear(Dense),
    /// `y' = W₂ tanh(W₁ x)` with `W₁: h × d_x`, `W₂: d_y × h`.
    Tanh {
        /// First layer, `h × d_x`.
        w1: Dense,
        /// Second layer, `d_y × h`.
        w2: Dense,
    },
    /// `y' = f(x; θ_T)`: a model at fixed parameters, e.g. a random teacher of the student's own
    /// architecture ([`Teacher`]).
    Model(Teacher),
}

/// A model at fixed parameters `θ_T`, used as a teacher: `y' = f(x; θ_T)` (any stack of layers;
/// inputs flattened to `d_x`, outputs to `d_y`).
#[derive(Clone, Debug)]
pub struct Teacher {
    model: Model,
    theta: Vec<f64>,
}

impl Teacher {
    /// The teacher `f(·; theta)`; `theta` must have the model's parameter count.
    pub fn new(model: Model, theta: Vec<f64>) -> Result<Self> {
        if theta.len() != model.n_params() {
            return Err(invalid!(
                "data.teacher: {} parameters given, the model {} has {}",
                theta.len(),
                model.describe(),
                model.n_params()
            ));
        }
        if let Some(i) = theta.iter().position(|v| !v.is_finite()) {
            return Err(invalid!("data.teacher: parameter {i} is not finite"));
        }
        Ok(Teacher { model, theta })
    }
    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }
    /// Its parameters `θ_T`.
    pub fn theta(&self) -> &[f64] {
        &self.theta
    }
}

impl PartialEq for Teacher {
    /// The same architecture (description and shapes) at the same parameters.
    fn eq(&self, o: &Self) -> bool {
        self.theta == o.theta
            && self.model.describe() == o.model.describe()
            && self.model.in_shape() == o.model.in_shape()
            && self.model.out_shape() == o.model.out_shape()
    }
}

impl Target {
    /// A random linear teacher `V_ij ~ N(0, 1/d_x)`.
    pub fn random_linear(d_x: usize, d_y: usize, rng: &mut Rng) -> Target {
        let mut v = Dense::zeros(d_y, d_x);
        let s = (1.0 / d_x as f64).sqrt();
        v.data.iter_mut().for_each(|e| *e = s * rng.normal());
        Target::Linear(v)
    }

    /// A random two-layer tanh teacher with fan-in Gaussian weights.
    pub fn random_tanh(d_x: usize, h: usize, d_y: usize, rng: &mut Rng) -> Target {
        let mut w1 = Dense::zeros(h, d_x);
        let mut w2 = Dense::zeros(d_y, h);
        let s1 = (1.0 / d_x as f64).sqrt();
        let s2 = (1.0 / h as f64).sqrt();
        w1.data.iter_mut().for_each(|e| *e = s1 * rng.normal());
        w2.data.iter_mut().for_each(|e| *e = s2 * rng.normal());
        Target::Tanh { w1, w2 }
    }

    /// A random teacher of `model`'s own architecture: `θ_T` drawn with `init` from `rng`.
    pub fn model_teacher(model: &Model, init: &crate::core::models::Init, rng: &mut Rng) -> Result<Target> {
        let theta = model.init(init, rng)?;
        Ok(Target::Model(Teacher::new(model.clone(), theta)?))
    }

    /// Writes `y'(x)` into `y` (length `d_y`), using `h` as scratch for the tanh teacher. A model
    /// teacher is applied by the batch in [`Gaussian::sample`], not here.
    #[inline]
    fn apply(&self, x: &[f64], y: &mut [f64], h: &mut [f64]) {
        match self {
            Target::Model(_) => unreachable!("model teachers are applied by the batch"),
            Target::Identity => y.copy_from_slice(x),
            Target::Linear(v) => {
                for (i, yi) in y.iter_mut().enumerate() {
                    *yi = v.data[i * v.cols..(i + 1) * v.cols]
                        .iter()
                        .zip(x)
                        .map(|(a, b)| a * b)
                        .sum();
                }
            }
            Target::Tanh { w1, w2 } => {
                for (j, hj) in h.iter_mut().enumerate().take(w1.rows) {
                    *hj = w1.data[j * w1.cols..(j + 1) * w1.cols]
                        .iter()
                        .zip(x)
                        .map(|(a, b)| a * b)
                        .sum::<f64>();
                    *hj = crate::core::math::tanh(*hj);
                }
                for (i, yi) in y.iter_mut().enumerate() {
                    *yi = w2.data[i * w2.cols..(i + 1) * w2.cols]
                        .iter()
                        .zip(h.iter())
                        .map(|(a, b)| a * b)
                        .sum();
                }
            }
        }
    }

    fn hidden(&self) -> usize {
        match self {
            Target::Tanh { w1, .. } => w1.rows,
            _ => 0,
        }
    }
}

/// A Gaussian data distribution: `x ~ N(0, Σ_x)`, `y = y'(x) + ε`, `ε ~ N(0, Σ_ε)` independent.
#[derive(Clone, Debug)]
pub struct Gaussian {
    d_x: usize,
    d_y: usize,
    x_cov: Cov,
    noise_cov: Option<Cov>,
    target: Target,
    x_factor: Factor,
    noise_factor: Option<Factor>,
    scratch: Vec<f64>,
    noise_scratch: Vec<f64>,
    /// Buffers of a model teacher's forward pass ([`TEACHER_CHUNK`] samples at a time).
    teacher_ws: Option<Box<Workspace>>,
}

/// Samples a model teacher labels per forward pass.
const TEACHER_CHUNK: usize = 64;

impl Gaussian {
    /// Builds and validates the distribution. `noise = None` means noiseless labels.
    pub fn new(d_x: usize, d_y: usize, x_cov: Cov, target: Target, noise: Option<Cov>) -> Result<Self> {
        if d_x == 0 || d_y == 0 {
            return Err(invalid!("data: dimensions must be positive (d_x = {d_x}, d_y = {d_y})"));
        }
        x_cov.validate(d_x, "data.x_cov")?;
        if let Some(n) = &noise {
            n.validate(d_y, "data.noise_cov")?;
        }
        match &target {
            Target::Identity if d_x != d_y => {
                return Err(invalid!(
                    "data.target: identity target needs d_y = d_x (got {d_y} and {d_x})"
                ))
            }
            Target::Linear(v) if v.rows != d_y || v.cols != d_x => {
                return Err(invalid!(
                    "data.teacher: shape {}×{}, expected {d_y}×{d_x}",
                    v.rows,
                    v.cols
                ))
            }
            Target::Tanh { w1, w2 } if w1.cols != d_x || w2.rows != d_y || w2.cols != w1.rows => {
                return Err(invalid!("data.teacher: tanh teacher shapes do not chain {d_x} → {d_y}"))
            }
            Target::Model(t) if t.model.d_in() != d_x || t.model.d_out() != d_y => {
                return Err(invalid!(
                    "data.teacher: the teacher maps {} → {} features, the data has {d_x} → {d_y}",
                    t.model.d_in(),
                    t.model.d_out()
                ))
            }
            _ => {}
        }
        let teacher_ws = match &target {
            Target::Model(t) => Some(Box::new(t.model.workspace(TEACHER_CHUNK))),
            _ => None,
        };
        let x_factor = x_cov.sampler(d_x)?;
        let noise_factor = match &noise {
            Some(c) => Some(c.sampler(d_y)?),
            None => None,
        };
        let scratch = vec![0.0; d_x.max(d_y).max(target.hidden())];
        let noise_scratch = vec![0.0; 2 * d_y];
        Ok(Gaussian {
            d_x,
            d_y,
            x_cov,
            noise_cov: noise,
            target,
            x_factor,
            noise_factor,
            scratch,
            noise_scratch,
            teacher_ws,
        })
    }

    /// Input dimension `d_x`.
    pub fn d_x(&self) -> usize {
        self.d_x
    }
    /// Output dimension `d_y`.
    pub fn d_y(&self) -> usize {
        self.d_y
    }
    /// The target map.
    pub fn target(&self) -> &Target {
        &self.target
    }
    /// The exact input second moment `Σ_x = E[xxᵀ]`.
    pub fn x_second_moment(&self) -> Dense {
        self.x_cov.dense(self.d_x)
    }
    /// The exact label-noise second moment `Σ_ε = E[εεᵀ]` (zero if noiseless).
    pub fn noise_second_moment(&self) -> Dense {
        match &self.noise_cov {
            Some(c) => c.dense(self.d_y),
            None => Dense::zeros(self.d_y, self.d_y),
        }
    }
    /// The input covariance specification.
    pub fn x_cov(&self) -> &Cov {
        &self.x_cov
    }
    /// The noise covariance specification.
    pub fn noise_cov(&self) -> Option<&Cov> {
        self.noise_cov.as_ref()
    }

    /// Draws `b` samples into `x` (`b × d_x`) and `y` (`b × d_y`). Allocation-free.
    pub fn sample(&mut self, rng: &mut Rng, x: &mut [f64], y: &mut [f64], b: usize) {
        let (dx, dy) = (self.d_x, self.d_y);
        // The paper's common case (diagonal Σ_x, identity target, diagonal or no label noise) in one
        // fused loop: the same draws in the same order as the general loop below.
        if let (Factor::Diag(sx), Target::Identity) = (&self.x_factor, &self.target) {
            let noise = match &self.noise_factor {
                Some(Factor::Diag(se)) => Some(se.as_slice()),
                None => None,
                Some(Factor::Chol(_)) => return self.sample_general(rng, x, y, b),
            };
            sample_identity_diag_with(Isa::active(), rng, sx, noise, &mut x[..b * dx], &mut y[..b * dy]);
            return;
        }
        self.sample_general(rng, x, y, b)
    }

    fn sample_general(&mut self, rng: &mut Rng, x: &mut [f64], y: &mut [f64], b: usize) {
        let (dx, dy) = (self.d_x, self.d_y);
        let by_batch = matches!(self.target, Target::Model(_));
        for i in 0..b {
            let xi = &mut x[i * dx..(i + 1) * dx];
            self.x_factor.draw(rng, xi, &mut self.scratch[..dx]);
            let yi = &mut y[i * dy..(i + 1) * dy];
            if by_batch {
                yi.fill(0.0);
            } else {
                self.target.apply(xi, yi, &mut self.scratch);
            }
            if let Some(f) = &self.noise_factor {
                let (e, z) = self.noise_scratch.split_at_mut(dy);
                f.draw(rng, e, z);
                for (yv, ev) in yi.iter_mut().zip(e.iter()) {
                    *yv += ev;
                }
            }
        }
        // A model teacher: the same draws in the same order, then y += f(x; θ_T) by chunks.
        if let (Target::Model(t), Some(ws)) = (&self.target, self.teacher_ws.as_deref_mut()) {
            crate::core::models::for_chunks(b, TEACHER_CHUNK, |i, n| {
                t.model.forward(&t.theta, &x[i * dx..(i + n) * dx], n, ws);
                for (yv, f) in y[i * dy..(i + n) * dy].iter_mut().zip(ws.output()) {
                    *yv += f;
                }
            });
        }
    }

    /// The noiseless dataset whose empirical second moment is exactly `Σ_x` and whose targets
    /// are the teacher's: `d_x` rows `x_k = √d_x (Σ_x^{1/2})_{·k}`, `y_k = V x_k`. Full-batch GD on
    /// it follows the population gradient of a linear-teacher problem exactly (the label noise
    /// only adds the constant `Tr Σ_ε` to the loss), at the cost of `d_x` samples per step.
    /// Errors for a non-linear teacher (tanh, model), whose population gradient is not a finite sum.
    pub fn population_dataset(&self) -> Result<Dataset> {
        let d = self.d_x;
        let root = crate::core::linalg::sym_fn(&self.x_second_moment(), |l| l.max(0.0).sqrt())?;
        let v = match &self.target {
            Target::Identity => Dense::eye(d),
            Target::Linear(m) => m.clone(),
            Target::Tanh { .. } | Target::Model(_) => {
                return Err(invalid!(
                    "data.mode: \"population\" needs an identity or linear teacher (the population gradient of a \
                     non-linear teacher is not a finite sum)"
                ))
            }
        };
        let x = root.t().scale((d as f64).sqrt()); // row k = √d · column k of Σ^{1/2} (symmetric)
        let y = x.mul(&v.t());
        Dataset::new(d, d, self.d_y, x.data, y.data)
    }

    /// Draws a fixed dataset of `n` samples.
    pub fn dataset(&mut self, rng: &mut Rng, n: usize) -> Dataset {
        let mut x = vec![0.0; n * self.d_x];
        let mut y = vec![0.0; n * self.d_y];
        self.sample(rng, &mut x, &mut y, n);
        Dataset {
            n,
            d_x: self.d_x,
            d_y: self.d_y,
            x,
            y,
        }
    }
}

/// A fixed dataset, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Number of samples N.
    pub n: usize,
    /// Input dimension.
    pub d_x: usize,
    /// Target dimension.
    pub d_y: usize,
    /// Inputs, `n × d_x`.
    pub x: Vec<f64>,
    /// Targets, `n × d_y`.
    pub y: Vec<f64>,
}

/// What the data sources hold, in `f64` values (× 8 bytes), known from their shapes before they
/// exist ([`crate::core::footprint`]); the spec's memory check names each with its key.
pub mod footprint {
    /// `n` samples of `d_x + d_y` values each ([`super::Dataset`]: `x` and `y`).
    pub fn samples(n: u128, d_x: u128, d_y: u128) -> u128 {
        n.saturating_mul(d_x + d_y)
    }
    /// A linear teacher `V` (`d_y × d_x`, [`super::Target::Linear`]).
    pub fn linear_teacher(d_x: u128, d_y: u128) -> u128 {
        d_y * d_x
    }
    /// A tanh teacher with `hidden` units (`W₁`: `hidden × d_x`, `W₂`: `d_y × hidden`).
    pub fn tanh_teacher(hidden: u128, d_x: u128, d_y: u128) -> u128 {
        hidden * (d_x + d_y)
    }
    /// A full `d × d` covariance ([`super::Cov::Full`]) and its factor.
    pub fn full_covariance(d: u128) -> u128 {
        2 * d * d
    }
    /// The exact second moments `Σ_x` and `Σ_ε` as matrices (population data and the
    /// instruments that use them).
    pub fn second_moments(d_x: u128, d_y: u128) -> u128 {
        d_x * d_x + d_y * d_y
    }
}

impl Dataset {
    /// Builds a dataset from row-major arrays, checking shapes and finiteness.
    pub fn new(n: usize, d_x: usize, d_y: usize, x: Vec<f64>, y: Vec<f64>) -> Result<Self> {
        if x.len() != n * d_x || y.len() != n * d_y {
            return Err(invalid!(
                "dataset: expected {n}×{d_x} inputs and {n}×{d_y} targets, got {} and {} values",
                x.len(),
                y.len()
            ));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(invalid!("dataset: input of sample {} is not finite", i / d_x.max(1)));
        }
        if let Some(i) = y.iter().position(|v| !v.is_finite()) {
            return Err(invalid!("dataset: target of sample {} is not finite", i / d_y.max(1)));
        }
        Ok(Dataset { n, d_x, d_y, x, y })
    }

    /// The empirical input second moment `(1/N) Σ x xᵀ`.
    pub fn x_second_moment(&self) -> Dense {
        let mut m = Dense::zeros(self.d_x, self.d_x);
        crate::core::linalg::gemm_tn(
            &mut m.data,
            &self.x,
            &self.x,
            self.d_x,
            self.d_x,
            self.n,
            1.0 / self.n as f64,
            false,
        );
        m
    }
}

/// Where training batches come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// Fresh samples from the distribution every step.
    Online(Gaussian),
    /// Batches from a fixed dataset.
    Fixed {
        /// The data.
        data: Dataset,
        /// Draw batches with replacement (`true`) or by reshuffled passes (`false`).
        replacement: bool,
        /// The distribution the data came from, if known (for exact second moments).
        dist: Option<Gaussian>,
    },
}

impl Source {
    /// Input dimension.
    pub fn d_x(&self) -> usize {
        match self {
            Source::Online(g) => g.d_x(),
            Source::Fixed { data, .. } => data.d_x,
        }
    }
    /// Target dimension.
    pub fn d_y(&self) -> usize {
        match self {
            Source::Online(g) => g.d_y(),
            Source::Fixed { data, .. } => data.d_y,
        }
    }
    /// The known distribution, if any.
    pub fn distribution(&self) -> Option<&Gaussian> {
        match self {
            Source::Online(g) => Some(g),
            Source::Fixed { dist, .. } => dist.as_ref(),
        }
    }
}

/// Draws batches from a [`Source`] into preallocated buffers, without allocating per batch.
#[derive(Clone, Debug)]
pub struct Batcher {
    perm: Vec<usize>,
    pos: usize,
}

impl Batcher {
    /// A batcher for `source`.
    pub fn new(source: &Source, rng: &mut Rng) -> Self {
        let perm = match source {
            Source::Fixed {
                data,
                replacement: false,
                ..
            } => {
                let mut p: Vec<usize> = (0..data.n).collect();
                rng.shuffle(&mut p);
                p
            }
            _ => Vec::new(),
        };
        Batcher { perm, pos: 0 }
    }

    /// Fills `x` (`b × d_x`) and `y` (`b × d_y`) with the next batch of size `b`.
    pub fn next(&mut self, source: &mut Source, rng: &mut Rng, x: &mut [f64], y: &mut [f64], b: usize) {
        match source {
            Source::Online(g) => g.sample(rng, x, y, b),
            Source::Fixed { data, replacement, .. } => {
                let (dx, dy) = (data.d_x, data.d_y);
                for i in 0..b {
                    let j = if *replacement {
                        rng.below(data.n)
                    } else {
                        if self.pos == self.perm.len() {
                            rng.shuffle(&mut self.perm);
                            self.pos = 0;
                        }
                        self.pos += 1;
                        self.perm[self.pos - 1]
                    };
                    x[i * dx..(i + 1) * dx].copy_from_slice(&data.x[j * dx..(j + 1) * dx]);
                    y[i * dy..(i + 1) * dy].copy_from_slice(&data.y[j * dy..(j + 1) * dy]);
                }
            }
        }
    }
}

/// The fused sampling loop of [`Gaussian::sample`] for a diagonal input covariance, the identity
/// target and diagonal or no label noise: per sample, `x = s_x ⊙ z`, then `y = x + s_ε ⊙ z'` (or
/// `y = x`), with the draws in that order. `x` holds whole rows of `sx.len()`, `y` as many rows.
#[inline(always)]
fn sample_identity_diag_body(rng: &mut Rng, sx: &[f64], noise: Option<&[f64]>, x: &mut [f64], y: &mut [f64]) {
    let d = sx.len();
    for (xi, yi) in x.chunks_exact_mut(d).zip(y.chunks_exact_mut(d)) {
        rng.fill_normal_scaled(xi, sx, None);
        match noise {
            Some(se) => rng.fill_normal_scaled(yi, se, Some(xi)),
            None => yi.copy_from_slice(xi),
        }
    }
}

multiversion! {
    /// [`sample_identity_diag_body`] compiled for a SIMD path (the same draws and bits on every
    /// path: nothing is fused).
    fn sample_identity_diag_with(rng: &mut Rng, sx: &[f64], noise: Option<&[f64]>, x: &mut [f64], y: &mut [f64]) =
        sample_identity_diag_body;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_sampling_is_the_same_on_every_path() {
        let sx = [0.5, 1.0, 2.0];
        let se = [0.1, 0.2, 0.3];
        for noise in [None, Some(&se[..])] {
            let mut want: Option<(Vec<f64>, Vec<f64>)> = None;
            for isa in Isa::all() {
                let mut rng = Rng::new(9);
                let (mut x, mut y) = (vec![0.0; 15], vec![0.0; 15]);
                sample_identity_diag_with(isa, &mut rng, &sx, noise, &mut x, &mut y);
                // The same draws as the general loop: x = s_x ⊙ z, then y = x + s_ε ⊙ z'.
                let mut r2 = Rng::new(9);
                for i in 0..5 {
                    for j in 0..3 {
                        assert_eq!(x[3 * i + j], sx[j] * r2.normal());
                    }
                    for j in 0..3 {
                        let e = noise.map_or(0.0, |se| se[j] * r2.normal());
                        assert_eq!(
                            y[3 * i + j],
                            if noise.is_some() {
                                x[3 * i + j] + e
                            } else {
                                x[3 * i + j]
                            }
                        );
                    }
                }
                match &want {
                    None => want = Some((x, y)),
                    Some((wx, wy)) => assert!(wx == &x && wy == &y, "{}", isa.path()),
                }
            }
        }
    }

    #[test]
    fn second_moments_match_samples() {
        let full = Dense::from_slice(2, 2, &[2.0, 0.6, 0.6, 1.0]);
        let mut g = Gaussian::new(
            2,
            2,
            Cov::Full(full.clone()),
            Target::Identity,
            Some(Cov::Diag(vec![0.5, 3.0])),
        )
        .unwrap();
        let mut rng = Rng::new(1);
        let n = 100_000;
        let ds = g.dataset(&mut rng, n);
        let m = ds.x_second_moment();
        for i in 0..4 {
            // Entries of a sample second moment have sd ≤ sqrt(2·2·2/n)·… ; 0.03 is > 5 sd here.
            assert!((m.data[i] - full.data[i]).abs() < 0.03, "{:?}", m.data);
        }
        // Noise variance: y − x = ε.
        let mut v = [0.0; 2];
        for i in 0..n {
            for k in 0..2 {
                let e = ds.y[i * 2 + k] - ds.x[i * 2 + k];
                v[k] += e * e / n as f64;
            }
        }
        assert!((v[0] - 0.5).abs() < 0.02 && (v[1] - 3.0).abs() < 0.1, "{v:?}");
    }

    #[test]
    fn a_model_teacher_labels_with_its_forward_pass_and_the_usual_draws() {
        use crate::core::models::{Activation, Init};
        let model = Model::mlp(&[3, 5, 2], Activation::Relu, true).unwrap();
        let target = Target::model_teacher(&model, &Init::Kaiming, &mut Rng::new(2)).unwrap();
        let Target::Model(t) = &target else {
            panic!("a model target")
        };
        let noise = Some(Cov::Diag(vec![0.3, 0.7]));
        let mut g = Gaussian::new(3, 2, Cov::Scalar(1.5), target.clone(), noise.clone()).unwrap();
        // More samples than one forward chunk, so the chunking is exercised.
        let n = 2 * TEACHER_CHUNK + 7;
        let d = g.dataset(&mut Rng::new(9), n);
        // The same draws as any other target: a zero linear teacher gives x and ε alone.
        let zero = Target::Linear(Dense::zeros(2, 3));
        let e = Gaussian::new(3, 2, Cov::Scalar(1.5), zero, noise)
            .unwrap()
            .dataset(&mut Rng::new(9), n);
        assert_eq!(d.x, e.x);
        let mut ws = model.workspace(n);
        model.forward(t.theta(), &d.x, n, &mut ws);
        for ((y, f), eps) in d.y.iter().zip(ws.output()).zip(&e.y) {
            assert!(
                (y - f - eps).abs() <= 1e-14 * (1.0 + f.abs() + eps.abs()),
                "{y} ≠ {f} + {eps}"
            );
        }
        // Shapes must match the data, and the population dataset is refused.
        let wrong = Gaussian::new(4, 2, Cov::Scalar(1.0), target.clone(), None).unwrap_err();
        assert!(wrong.to_string().contains("data.teacher"), "{wrong}");
        let pop = Gaussian::new(3, 2, Cov::Scalar(1.0), target, None)
            .unwrap()
            .population_dataset();
        assert!(pop.unwrap_err().to_string().contains("population"));
        assert!(Teacher::new(model.clone(), vec![0.0; 3]).is_err());
    }

    #[test]
    fn validation_names_keys() {
        let e = Gaussian::new(3, 3, Cov::Diag(vec![1.0, 2.0]), Target::Identity, None).unwrap_err();
        assert!(e.to_string().contains("data.x_cov"));
        let e = Gaussian::new(3, 2, Cov::Scalar(1.0), Target::Identity, None).unwrap_err();
        assert!(e.to_string().contains("identity"));
        let e = Gaussian::new(
            2,
            2,
            Cov::Full(Dense::from_slice(2, 2, &[1.0, 2.0, 2.0, 1.0])),
            Target::Identity,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("positive definite"));
    }

    #[test]
    fn without_replacement_visits_each_sample_once_per_pass() {
        let n = 10;
        let data = Dataset::new(n, 1, 1, (0..n).map(|i| i as f64).collect(), vec![0.0; n]).unwrap();
        let mut src = Source::Fixed {
            data,
            replacement: false,
            dist: None,
        };
        let mut rng = Rng::new(4);
        let mut b = Batcher::new(&src, &mut rng);
        let mut x = vec![0.0; 5];
        let mut y = vec![0.0; 5];
        let mut seen = vec![];
        for _ in 0..2 {
            b.next(&mut src, &mut rng, &mut x, &mut y, 5);
            seen.extend(x.iter().map(|v| *v as usize));
        }
        seen.sort();
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
    }
}
