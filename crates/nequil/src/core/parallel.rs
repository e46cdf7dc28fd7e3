//! Several threads for one run, with results bit-identical to one thread.
//!
//! [`with_threads`] starts a pool of `threads − 1` workers (scoped threads, alive for the whole
//! call) and makes it the current pool of the calling thread. While it is current, the large
//! products of [`crate::core::linalg`] (`m·n·k` at least [`PAR_MIN`]) split their output into
//! blocks of whole rows, or of whole columns when there are too few rows, one block per thread.
//! A block is computed by the same kernel, over the same `k` in the same order, as it is inside
//! the whole product, so every output entry gets exactly the same floating-point operations
//! whatever the thread count: nothing is split along a reduction. Everything built on those
//! products (forward and backward passes, the per-sample statistics of [`crate::core::stats`],
//! the Hessian-vector products of [`crate::core::curvature`]) therefore gives the same bits with
//! 1, 2 or more threads. Below the threshold, and for element-wise work, the calling thread works
//! alone.
//!
//! Workers wait for the next product by spinning briefly, then sleep on a condition variable, so
//! a burst of products pays no thread start-up and an idle pool costs no CPU.
//!
//! Independent runs (the points of a sweep, the runs of an experiment) are spread over threads by
//! [`par_map`] and [`par_map_owned`]: one item per thread at a time, results in the items' order.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

/// Products with `m·n·k` below this are never split (the hand-off, about a microsecond, would
/// cost more than the work saved).
pub const PAR_MIN: usize = 1 << 17;

/// Spins of a waiting thread before it sleeps (a few tens of microseconds).
const SPINS: u32 = 1 << 14;

/// A job: `f(t)` for every task `t`, claimed by whichever thread comes first.
type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// Bumped for every job; a waiting worker looks for work when it changes.
    generation: AtomicU64,
    stop: AtomicBool,
    /// The current job and its number of tasks (`None` between jobs: no worker may join then).
    job: Mutex<Option<(SendJob, usize)>>,
    /// Next task to claim, tasks finished, workers inside the current job.
    next: AtomicUsize,
    done: AtomicUsize,
    active: AtomicUsize,
    /// A worker's task panicked.
    panicked: AtomicBool,
    sleep: Mutex<()>,
    wake: Condvar,
    finished: Condvar,
}

#[derive(Clone, Copy)]
struct SendJob(Job);
// SAFETY: the pointee is `Sync` and outlives every use: `Pool::run` removes the job and waits
// until no worker is inside it before returning.
unsafe impl Send for SendJob {}

/// The pool of the current thread (see [`with_threads`]).
pub(crate) struct Pool {
    shared: *const Shared,
    threads: usize,
}

thread_local! {
    static CURRENT: Cell<Option<&'static Pool>> = const { Cell::new(None) };
    /// Inside a `with_threads` call (of any size) on this thread: nested calls keep its choice.
    static CHOSEN: Cell<bool> = const { Cell::new(false) };
}

/// Number of threads that products started on this thread use: the pool size inside
/// [`with_threads`], otherwise 1 (also on the pool's workers, which never split further).
pub fn current_threads() -> usize {
    CURRENT.with(|c| c.get().map_or(1, |p| p.threads))
}

/// Runs `f` with `threads` threads for its large products (the calling thread and `threads − 1`
/// workers, started once for the whole call; `threads ≤ 1`: the calling thread alone). The
/// outermost call on a thread decides: a call nested inside another `with_threads` just runs `f`
/// with the enclosing choice (so a caller's `--threads` or a sweep's share of the cores takes the
/// place of a spec's `train.threads`). Results are bit-identical to one thread.
pub fn with_threads<R>(threads: usize, f: impl FnOnce() -> R) -> R {
    if CHOSEN.with(|c| c.get()) {
        return f();
    }
    /// Unsets the choice when the call ends (also by a panic).
    struct Chosen;
    impl Drop for Chosen {
        fn drop(&mut self) {
            CHOSEN.with(|c| c.set(false));
        }
    }
    CHOSEN.with(|c| c.set(true));
    let _chosen = Chosen;
    if threads <= 1 {
        return f();
    }
    let shared = Shared {
        generation: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        job: Mutex::new(None),
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        active: AtomicUsize::new(0),
        panicked: AtomicBool::new(false),
        sleep: Mutex::new(()),
        wake: Condvar::new(),
        finished: Condvar::new(),
    };
    let pool = Pool {
        shared: &shared,
        threads,
    };
    /// Stops the workers and unsets the current pool, also when `f` panics.
    struct Guard<'a>(&'a Shared);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(None));
            self.0.stop.store(true, Ordering::Release);
            let _g = lock(&self.0.sleep);
            self.0.wake.notify_all();
        }
    }
    std::thread::scope(|s| {
        for _ in 1..threads {
            let sh = &shared;
            s.spawn(move || worker(sh));
        }
        let _guard = Guard(&shared);
        // SAFETY: the reference is unset by the guard before `pool` goes out of scope, and only
        // this thread reads it.
        let as_static: &'static Pool = unsafe { &*(&pool as *const Pool) };
        CURRENT.with(|c| c.set(Some(as_static)));
        f()
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Claims and runs tasks of the job `f` until none is left.
fn claim(sh: &Shared, f: &(dyn Fn(usize) + Sync), tasks: usize) {
    loop {
        let t = sh.next.fetch_add(1, Ordering::AcqRel);
        if t >= tasks {
            return;
        }
        if catch_unwind(AssertUnwindSafe(|| f(t))).is_err() {
            sh.panicked.store(true, Ordering::Release);
        }
        if sh.done.fetch_add(1, Ordering::AcqRel) + 1 == tasks {
            let _g = lock(&sh.sleep);
            sh.finished.notify_all();
        }
    }
}

fn worker(sh: &Shared) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0u32;
        loop {
            if sh.generation.load(Ordering::Acquire) != seen {
                break;
            }
            if sh.stop.load(Ordering::Acquire) {
                return;
            }
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
            } else {
                let mut g = lock(&sh.sleep);
                while sh.generation.load(Ordering::Acquire) == seen && !sh.stop.load(Ordering::Acquire) {
                    g = sh.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
        seen = sh.generation.load(Ordering::Acquire);
        // Join the job only while it is published; the caller removes it before it waits for
        // `active` to reach 0, so a worker that wakes late never touches a finished job.
        let job = {
            let g = lock(&sh.job);
            if g.is_some() {
                sh.active.fetch_add(1, Ordering::AcqRel);
            }
            *g
        };
        if let Some((SendJob(job), tasks)) = job {
            // SAFETY: the caller of `run` keeps the job alive until `active` is back to 0, which
            // happens only after this use.
            claim(sh, unsafe { &*job }, tasks);
            if sh.active.fetch_sub(1, Ordering::AcqRel) == 1 {
                let _g = lock(&sh.sleep);
                sh.finished.notify_all();
            }
        }
    }
}

/// Waits (spinning first) until `ready()`.
fn wait_until(sh: &Shared, ready: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !ready() {
        if spins < SPINS {
            spins += 1;
            std::hint::spin_loop();
        } else {
            let mut g = lock(&sh.sleep);
            while !ready() {
                g = sh.finished.wait(g).unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}

impl Pool {
    /// Runs `f(t)` for every `t < tasks` on the calling thread and the workers (each task once,
    /// on whichever thread claims it first, so a worker that the system has not scheduled delays
    /// nothing), and returns when all are done.
    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        // SAFETY: `shared` lives for the whole `with_threads` call, which outlives every use of
        // the current pool.
        let sh = unsafe { &*self.shared };
        // SAFETY (of the lifetime erasure): this function removes the job and waits until no
        // worker is inside it before `f` can go out of scope.
        let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f) };
        {
            let mut g = lock(&sh.job);
            sh.next.store(0, Ordering::Release);
            sh.done.store(0, Ordering::Release);
            *g = Some((SendJob(job), tasks));
        }
        sh.generation.fetch_add(1, Ordering::AcqRel);
        {
            let _g = lock(&sh.sleep);
            sh.wake.notify_all();
        }
        claim(sh, f, tasks);
        wait_until(sh, || sh.done.load(Ordering::Acquire) == tasks);
        *lock(&sh.job) = None;
        wait_until(sh, || sh.active.load(Ordering::Acquire) == 0);
        if sh.panicked.swap(false, Ordering::AcqRel) {
            panic!("a task of a parallel product panicked");
        }
    }
}

/// Runs `f(t)` for `t < tasks` on the current pool (each task once, on any of its threads), or
/// all on the calling thread, in order, when there is no pool.
pub(crate) fn run_tasks(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    match CURRENT.with(|c| c.get()) {
        Some(p) if tasks > 1 => p.run(tasks, f),
        _ => (0..tasks).for_each(f),
    }
}

/// Cuts `0..len` into at most `parts` consecutive blocks whose boundaries are multiples of
/// `align` (the last block takes the remainder), each at least `min` long; fewer blocks when
/// `len` is too short. Returns the boundaries `[0, b₁, …, len]`.
pub(crate) fn blocks(len: usize, parts: usize, align: usize, min: usize) -> Vec<usize> {
    let min = min.max(align).max(1);
    let parts = parts.min(len / min).max(1);
    let mut cuts = vec![0];
    for i in 1..parts {
        let c = (len * i / parts) / align * align;
        if c > *cuts.last().expect("non-empty") && len - c >= min {
            cuts.push(c);
        }
    }
    cuts.push(len);
    cuts
}

/// Maps `f` over `items` on up to `jobs` threads, keeping the order. Each item is one independent
/// run; results are identical to a sequential map because every run carries its own seed.
pub fn par_map<T: Sync, R: Send>(jobs: usize, items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let n = items.len();
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<R>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r = f(&items[i]);
                out.lock().expect("no poisoned lock")[i] = Some(r);
            });
        }
    });
    out.into_inner()
        .expect("lock")
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

/// Maps `f` over owned `items` on up to `jobs` threads, keeping the order. Each item is one
/// independent run; results are identical to a sequential map because every run carries its own
/// seed.
pub fn par_map_owned<T: Send, R: Send>(jobs: usize, items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let n = items.len();
    let next = AtomicUsize::new(0);
    let inputs: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let out: Mutex<Vec<Option<R>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let item = inputs[i]
                    .lock()
                    .expect("no poisoned lock")
                    .take()
                    .expect("each item once");
                let r = f(item);
                out.lock().expect("no poisoned lock")[i] = Some(r);
            });
        }
    });
    out.into_inner()
        .expect("lock")
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn par_maps_keep_the_order_and_run_each_item_once() {
        let items: Vec<u64> = (0..97).collect();
        for jobs in [0, 1, 3, 200] {
            let calls = AtomicUsize::new(0);
            let out = par_map(jobs, &items, |&i| {
                calls.fetch_add(1, Ordering::Relaxed);
                i * i
            });
            assert_eq!(out, items.iter().map(|i| i * i).collect::<Vec<_>>(), "jobs = {jobs}");
            assert_eq!(calls.load(Ordering::Relaxed), items.len());
            let owned = par_map_owned(jobs, items.iter().map(|i| vec![*i; 2]).collect(), |v| v[0] + v[1]);
            assert_eq!(owned, items.iter().map(|i| 2 * i).collect::<Vec<_>>(), "jobs = {jobs}");
        }
        assert!(par_map(4, &[] as &[u64], |&i| i).is_empty());
    }

    #[test]
    fn blocks_cover_and_align() {
        for len in [0usize, 1, 7, 8, 16, 100, 101, 1000] {
            for parts in 1..5 {
                let b = blocks(len, parts, 8, 16);
                assert_eq!(b[0], 0);
                assert_eq!(*b.last().unwrap(), len);
                assert!(b.len() - 1 <= parts);
                for w in b.windows(2) {
                    assert!(w[0] < w[1] || len == 0);
                    assert_eq!(w[0] % 8, 0);
                }
                if b.len() > 2 {
                    assert!(b.windows(2).all(|w| w[1] - w[0] >= 16), "{len} {parts} {b:?}");
                }
            }
        }
    }

    #[test]
    fn pool_runs_every_task_once_and_nests_alone() {
        let count: Vec<AtomicUsize> = (0..7).map(|_| AtomicUsize::new(0)).collect();
        let on_workers = AtomicUsize::new(0);
        with_threads(3, || {
            assert_eq!(current_threads(), 3);
            for _ in 0..1000 {
                run_tasks(7, &|t| {
                    count[t].fetch_add(1, Ordering::Relaxed);
                    // Workers have no pool of their own.
                    if current_threads() == 1 {
                        on_workers.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            with_threads(2, || assert_eq!(current_threads(), 3));
        });
        with_threads(1, || with_threads(3, || assert_eq!(current_threads(), 1)));
        assert_eq!(current_threads(), 1);
        for c in &count {
            assert_eq!(c.load(Ordering::Relaxed), 1000);
        }
        // Not asserted beyond this: how many tasks the workers take depends on the scheduler.
        assert!(on_workers.load(Ordering::Relaxed) <= 7000);
    }

    #[test]
    fn a_worker_panic_reaches_the_caller() {
        let r = std::panic::catch_unwind(|| {
            with_threads(2, || run_tasks(4, &|t| assert_ne!(t, 1, "task one fails")));
        });
        assert!(r.is_err());
        assert_eq!(current_threads(), 1);
    }
}
