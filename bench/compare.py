#!/usr/bin/env python3
"""nequil against its peers, in one sitting: every peer workload alternates with nequil's
equivalent, each is repeated, and the table reports medians and ratios.

    python3 bench/compare.py                 # everything (about 15 minutes; torch.func noise ~1 min/run)
    python3 bench/compare.py --only cnn,transformer   # the layers' per-sample statistics
    python3 bench/compare.py --only tiny,small --repeats 7
    python3 bench/compare.py --json out.json # also write every measurement (bench/results/ keeps
                                             # the files of the sittings the book's tables show)
    python3 bench/compare.py --only simd --no-build --repeats 9   # nequil alone: SIMD paths

Standard library only. Peers run in the venv of bench/README (default $HOME/.nequil-peers, or
--python) single-threaded (OMP_NUM_THREADS=1 and friends; XLA told to use one thread); nequil runs
one thread per run, except in the parallel workload (d), which measures exactly that.

What is timed (see "Timing" in the printed notes):
* wall: the whole process, from spawn to exit, measured here (includes interpreter start and
  imports for the peers, process start and spec parsing for nequil);
* internal: the program's own timer around the work (`time_s=` in its output). The peers'
  internal timers exclude imports and set-up (and JAX's compilation), as nequil's does.
Headline ratios divide the peer's internal time by nequil's whole-process wall time, which is
the comparison least favourable to nequil; the like-for-like internal/internal ratio is shown too.
"""
import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

# Everything is found relative to this file, so the script runs from any checkout.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "bench", "peers")
SPECS = os.path.join(ROOT, "bench", "specs")

ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


TWO_THREADS = {
    "OMP_NUM_THREADS": "2",
    "MKL_NUM_THREADS": "2",
    "OPENBLAS_NUM_THREADS": "2",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=2",
}
PEER_ENV = {1: ONE_THREAD, 2: TWO_THREADS}


def machine():
    model, cores = platform.processor() or "?", os.cpu_count()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        m = re.search(r"Model name:\s*(.+)", out)
        model = m.group(1).strip() if m else model
        fam = re.search(r"CPU family:\s*(\d+)", out)
        if fam:
            model += f" (family {fam.group(1)})"
    except OSError:
        pass
    return f"{model}, {cores} cores, {platform.system()} {platform.release()}"


def commit():
    """The checkout's commit (with `-dirty` when it has uncommitted changes), or "?" outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return (head + "-dirty" if dirty else head) or "?"
    except OSError:
        return "?"


def run(cmd, env=None, cwd=ROOT):
    """Runs cmd; returns (stdout, wall seconds, child CPU seconds, max RSS in KiB)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=full_env, cwd=cwd)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, etext = out.read().decode(), err.read().decode()
    if p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{text}\n{etext}")
    return text, wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss


def field(text, key):
    m = re.search(rf"\b{key}=(\S+)", text)
    if not m:
        sys.exit(f"no {key}= in output:\n{text}")
    return float(m.group(1))


class Series:
    """Repeated measurements of one command."""

    def __init__(self, name, cmd, env=None):
        self.name, self.cmd, self.env = name, cmd, env
        self.wall, self.internal, self.cpu, self.rss, self.outputs = [], [], [], [], []

    def once(self):
        text, wall, cpu, rss = run(self.cmd, self.env)
        self.wall.append(wall)
        self.internal.append(field(text, "time_s"))
        self.cpu.append(cpu)
        self.rss.append(rss)
        self.outputs.append(text.strip())

    def med(self, what):
        return statistics.median(getattr(self, what))

    def record(self):
        return {
            "name": self.name,
            # Paths inside the checkout are written relative to it, so a result file names no machine.
            "cmd": [os.path.relpath(c, ROOT) if c.startswith(ROOT + os.sep) else c for c in self.cmd],
            "wall_s": self.wall,
            "internal_s": self.internal,
            "cpu_s": self.cpu,
            "max_rss_kib": self.rss,
            "last_output": self.outputs[-1] if self.outputs else "",
        }


def alternate(series, repeats, verbose):
    """One round = each series once, in order; `repeats` rounds (so peers and nequil see the same
    load over the sitting)."""
    for r in range(repeats):
        for s in series:
            s.once()
            if verbose:
                print(f"  [{r + 1}/{repeats}] {s.name}: wall {s.wall[-1]:.4f} s, internal {s.internal[-1]:.6f} s",
                      file=sys.stderr)


def fmt_s(v):
    return f"{v * 1e3:.2f} ms" if v < 1 else f"{v:.3f} s"


def table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def linear2(args, name, dims, steps_lr, spec, results, notes):
    d, h, s = dims
    eta, steps = steps_lr
    py = [args.python]
    peer_args = [str(d), str(h), str(s), str(eta), str(steps), "0.25", "0"]
    nq = [args.nequil, "bench", "train", os.path.join(SPECS, spec)]
    series = [
        Series("PyTorch eager", py + [os.path.join(PEERS, "linear2_torch.py")] + peer_args, ONE_THREAD),
        Series("nequil", nq),
        Series("JAX jit", py + [os.path.join(PEERS, "linear2_jax.py")] + peer_args, ONE_THREAD),
        Series("nequil (again)", nq),
    ]
    if args.with_run:
        out_dir = tempfile.mkdtemp(prefix="nequil-bench-")
        series.append(Series("nequil run (writes run dir)", [args.nequil, "run", os.path.join(SPECS, spec), "--out",
                                                              out_dir, "--quiet"]))
    print(f"\n## ({name}) linear2 D={d} H={h} S={s}, {steps} steps", file=sys.stderr)
    alternate(series, args.repeats, args.verbose)
    torch_s, nq1, jax_s, nq2 = series[:4]
    nq1.wall += nq2.wall
    nq1.internal += nq2.internal
    nq1.cpu += nq2.cpu
    nq_wall, nq_int = nq1.med("wall"), nq1.med("internal")
    rows = []
    for peer in (torch_s, jax_s):
        p_int = peer.med("internal")
        rows.append([peer.name, fmt_s(peer.med("wall")), fmt_s(p_int), f"{1e6 * p_int / steps:.2f}",
                     f"{p_int / nq_wall:.1f}×", f"{p_int / nq_int:.1f}×"])
    rows.append(["nequil", fmt_s(nq_wall), fmt_s(nq_int), f"{1e6 * nq_int / steps:.3f}", "1", "1"])
    if args.with_run:
        rs = series[4]
        rows.append(["nequil run (run dir, fsync)", fmt_s(rs.med("wall")), "—", "—", "—", "—"])
    out = {"torch_internal_s": torch_s.med("internal"), "jax_internal_s": jax_s.med("internal"),
           "nequil_wall_s": nq_wall, "nequil_internal_s": nq_int,
           "ratio_torch": torch_s.med("internal") / nq_wall, "ratio_jax": jax_s.med("internal") / nq_wall,
           "ratio_torch_internal": torch_s.med("internal") / nq_int,
           "ratio_jax_internal": jax_s.med("internal") / nq_int,
           "series": [x.record() for x in series]}
    results[name] = out
    header = ["program", "wall (median)", "internal (median)", "µs/step (internal)",
              "nequil faster, peer internal / nequil wall", "… internal / internal"]
    return header, rows, out


GEMM_SHAPES = [  # the five products of one linear2-small step (m, n, k, form as the engine calls them)
    (100, 200, 100, "nt"),  # z1 = x Wᵀ
    (100, 100, 200, "nt"),  # f = z1 Uᵀ
    (100, 200, 100, "tn"),  # ∇U = δ2ᵀ z1
    (100, 200, 100, "nn"),  # δ1 = δ2 U
    (200, 100, 100, "tn"),  # ∇W = δ1ᵀ x
]


def gemm_rate(args):
    """faer's single-thread rate over the five shapes of the small step: total FLOPs / total time
    (each shape: best of 7 blocks of ~50 ms)."""
    flops, secs = 0.0, 0.0
    for m, n, k, form in GEMM_SHAPES:
        text, *_ = run([args.nequil, "bench", "gemm", str(m), str(n), str(k), "--form", form])
        flops += 2.0 * m * n * k
        secs += field(text, "time_s")
    return flops / secs / 1e9


NUMPY_GEMM = """
import time, numpy as np
a, b = np.random.randn(100, 100), np.random.randn(100, 200)
c = np.empty((100, 200)); best = 1e9
for _ in range(7):
    t = time.perf_counter()
    for _ in range(500): np.matmul(a, b, out=c)
    best = min(best, (time.perf_counter() - t) / 500)
print(f"time_s={best:.9f} gflops={2 * 100 * 200 * 100 / best * 1e-9:.3f}")
"""


def small_extra(args, res):
    """GEMM rates, measured between rounds of the small workload's repeats."""
    rates, np_rates = [], []
    for _ in range(args.repeats):
        rates.append(gemm_rate(args))
        text, *_ = run([args.python, "-c", NUMPY_GEMM], ONE_THREAD)
        np_rates.append(field(text, "gflops"))
    rate, np_rate = statistics.median(rates), statistics.median(np_rates)
    steps, (d, h, s) = 2000, (100, 200, 100)
    flops_brief = 3 * 2 * s * (d * h + h * d)  # forward 2·S·(DH + HD), backward ≈ 2× forward
    flops_exact = 5 * 2 * s * d * h  # five products of 2·S·D·H (no input gradient is needed)
    per_step = res["nequil_internal_s"] / steps
    res.update({"gemm_gflops_faer": rate, "gemm_gflops_faer_all": rates, "gemm_gflops_numpy": np_rate,
                "step_gflops_brief": flops_brief / per_step / 1e9, "step_gflops_exact": flops_exact / per_step / 1e9})
    res["fraction_brief"] = res["step_gflops_brief"] / rate
    res["fraction_exact"] = res["step_gflops_exact"] / rate
    return [
        ["single-thread f64 GEMM rate, faer at the step's five shapes (best of 7 blocks, median of runs)",
         f"{rate:.1f} GFLOP/s"],
        ["same, NumPy/OpenBLAS 1 thread at 100×100·100×200", f"{np_rate:.1f} GFLOP/s"],
        ["nequil step, useful FLOPs 6·S·D·H = 24 MFLOP (forward 2·S·(DH+HD), backward 2×)",
         f"{res['step_gflops_brief']:.1f} GFLOP/s = {100 * res['fraction_brief']:.0f}% of faer's rate"],
        ["nequil step, the 5 products it needs = 20 MFLOP",
         f"{res['step_gflops_exact']:.1f} GFLOP/s = {100 * res['fraction_exact']:.0f}% of faer's rate"],
    ]


def noise(args, results):
    torch_script = os.path.join(PEERS, "noise_torch.py")
    series = [
        Series("PyTorch torch.func (vmap(grad), chunk 1000)",
               [args.python, torch_script, "784", "256", "10000", "1000", "0"], ONE_THREAD),
        Series("nequil bench noise", [args.nequil, "bench", "noise", "--widths", "784,256,256,10", "--n", "10000",
                                      "--chunk", "1000", "--seed", "0"]),
    ]
    print("\n## (c) noise: ReLU MLP 784-256-256-10, N = 10000", file=sys.stderr)
    alternate(series, args.noise_repeats, args.verbose)
    t, nq = series
    data_bytes = field(nq.outputs[-1], "data_plus_params_bytes")
    res = {"torch_internal_s": t.med("internal"), "nequil_internal_s": nq.med("internal"),
           "nequil_wall_s": nq.med("wall"), "ratio": t.med("internal") / nq.med("wall"),
           "ratio_internal": t.med("internal") / nq.med("internal"),
           "nequil_max_rss_bytes": 1024 * max(nq.rss), "torch_max_rss_bytes": 1024 * max(t.rss),
           "data_plus_params_bytes": data_bytes, "series": [x.record() for x in series]}
    res["memory_ratio"] = res["nequil_max_rss_bytes"] / data_bytes
    results["noise"] = res
    grab = lambda s, k: s.outputs[-1] and re.search(rf"{k}=(\S+)", s.outputs[-1]).group(1)
    rows = [
        [t.name, fmt_s(t.med("wall")), fmt_s(t.med("internal")), f"{res['torch_max_rss_bytes'] / 2**20:.0f} MiB",
         grab(t, "imbalance_sum"), f"{res['ratio']:.0f}× ({res['ratio_internal']:.0f}× internal)"],
        [nq.name, fmt_s(nq.med("wall")), fmt_s(nq.med("internal")),
         f"{res['nequil_max_rss_bytes'] / 2**20:.0f} MiB = {res['memory_ratio']:.2f}× data+params "
         f"({data_bytes / 2**20:.1f} MiB)", grab(nq, "imbalance_sum"), "1"],
    ]
    header = ["program", "wall (median)", "internal (median)", "peak RSS", "imbalance_sum (checksum)",
              "nequil faster, peer internal / nequil wall"]
    return header, rows


STATS = {  # workload: (title, peer script, peer label, nequil's model file, N, chunk)
    "cnn": ("CNN 1×28×28 → conv 16, 32 (3×3) → linear 10", "stats_backpack.py",
            "BackPACK (SumGradSquared + gradient)", "cnn-stats.toml", 10000, 1000),
    "transformer": ("transformer block T=16 E=32, 4 heads, MLP 64", "stats_torchfunc.py",
                    "PyTorch torch.func (vmap(grad))", "transformer-stats.toml", 2000, 250),
}


def stats(args, key, results):
    """Per-parameter per-sample gradient mean and variance of one model: the peer against `nequil
    bench stats` on the same architecture, N and chunk (both draw their own N(0, 1) data and
    PyTorch-default weights, so the var_sum checksums differ; examples/torch_layers.py checks
    equality to 1e-10 on shared weights and data)."""
    title, script, label, spec, n, chunk = STATS[key]
    series = [
        Series(label, [args.python, os.path.join(PEERS, script), str(n), str(chunk), "0"], ONE_THREAD),
        Series("nequil bench stats", [args.nequil, "bench", "stats", os.path.join(SPECS, spec),
                                      "--n", str(n), "--chunk", str(chunk), "--seed", "0"]),
    ]
    print(f"\n## ({key}) per-sample statistics: {title}, N = {n}", file=sys.stderr)
    alternate(series, args.stats_repeats, args.verbose)
    peer, nq = series
    res = {"peer": label, "n": n, "chunk": chunk,
           "peer_internal_s": peer.med("internal"), "nequil_internal_s": nq.med("internal"),
           "nequil_wall_s": nq.med("wall"), "ratio": peer.med("internal") / nq.med("wall"),
           "ratio_internal": peer.med("internal") / nq.med("internal"),
           "peer_cpu_s": peer.med("cpu"), "nequil_cpu_s": nq.med("cpu"),
           "ratio_cpu": peer.med("cpu") / nq.med("cpu"),
           "peer_max_rss_bytes": 1024 * max(peer.rss), "nequil_max_rss_bytes": 1024 * max(nq.rss),
           "series": [x.record() for x in series]}
    results[key] = res
    # On a loaded machine the wall times stretch with the other work; the processes' CPU times
    # (whole process, the peer's imports included) do not, so their ratio is shown too.
    rows = [
        [peer.name, fmt_s(peer.med("wall")), fmt_s(peer.med("internal")), fmt_s(peer.med("cpu")),
         f"{res['peer_max_rss_bytes'] / 2**20:.0f} MiB",
         f"{res['ratio']:.1f}× ({res['ratio_internal']:.1f}× internal, {res['ratio_cpu']:.1f}× CPU)"],
        [nq.name, fmt_s(nq.med("wall")), fmt_s(nq.med("internal")), fmt_s(nq.med("cpu")),
         f"{res['nequil_max_rss_bytes'] / 2**20:.0f} MiB", "1"],
    ]
    header = ["program", "wall (median)", "internal (median)", "process CPU (median)", "peak RSS",
              "nequil faster, peer internal / nequil wall"]
    return title, n, header, rows


def parallel(args, results):
    spec = os.path.join(SPECS, "linear2-tiny.toml")
    steps = str(args.parallel_steps)
    series = [
        Series("8 runs, --jobs 1 (one after another)",
               [args.nequil, "bench", "parallel", spec, "--runs", "8", "--jobs", "1", "--steps", steps]),
        Series("8 runs, --jobs 2 (two threads)",
               [args.nequil, "bench", "parallel", spec, "--runs", "8", "--jobs", "2", "--steps", steps]),
    ]
    sweep_out = tempfile.mkdtemp(prefix="nequil-sweep-")
    sweep_spec = os.path.join(sweep_out, "sweep.toml")
    with open(spec) as f:
        text = re.sub(r"(?m)^steps = \d+", f"steps = {steps}", f.read())
    with open(sweep_spec, "w") as f:
        f.write(text + "\n[sweep]\nseed = [0, 1, 2, 3, 4, 5, 6, 7]\n")
    sweeps = []
    for jobs in (1, 2):
        sweeps.append(Series(f"nequil sweep, 8 runs, --jobs {jobs} (run dirs)",
                             [sys.executable, "-c", SWEEP_WRAPPER, args.nequil, sweep_spec, sweep_out, str(jobs)]))
    print(f"\n## (d) 8 tiny runs ({steps} steps each) on 2 cores", file=sys.stderr)
    alternate(series + sweeps, args.repeats, args.verbose)
    shutil.rmtree(sweep_out, ignore_errors=True)
    seq, par = series
    res = {"sequential_wall_s": seq.med("wall"), "parallel_wall_s": par.med("wall"),
           "speedup": seq.med("wall") / par.med("wall"),
           "parallel_cpu_utilization": statistics.median(c / w for c, w in zip(par.cpu, par.wall)),
           "sweep_speedup": sweeps[0].med("wall") / sweeps[1].med("wall"),
           "series": [x.record() for x in series + sweeps]}
    results["parallel"] = res
    rows = []
    for s in series + sweeps:
        util = statistics.median(c / w for c, w in zip(s.cpu, s.wall))
        rows.append([s.name, fmt_s(s.med("wall")), fmt_s(s.med("internal")), f"{util:.2f} cores"])
    rows.append(["speedup, bench parallel (whole process)", f"{res['speedup']:.2f}×", "", ""])
    rows.append(["speedup, nequil sweep (whole process)", f"{res['sweep_speedup']:.2f}×", "", ""])
    return ["command", "wall (median)", "internal (median)", "CPU time / wall"], rows



def threads_list(args):
    return [int(t) for t in args.threads.split(",")]


def load_now():
    return f"{os.getloadavg()[0]:.2f}"


def backpack(args, results):
    """(f) BackPACK's SumGradSquared + gradient on the noise workload, against nequil's full
    per-parameter variance and its per-neuron imbalances by quadratic forms, at each thread count."""
    n = str(args.backpack_n)
    rows, res = [], {"load_start": load_now()}
    for t in threads_list(args):
        series = [
            Series(f"BackPACK SumGradSquared + grad, {t} thr",
                   [args.python, os.path.join(PEERS, "noise_backpack.py"), "784", "256", n, "1000", "0"], PEER_ENV[t]),
            Series(f"nequil variance (grad_stats), {t} thr",
                   [args.nequil, "bench", "--threads", str(t), "noise", "--n", n, "--chunk", "1000"]),
            Series(f"nequil per-neuron Tr[A_kΣ] (quadratic forms), {t} thr",
                   [args.nequil, "bench", "--threads", str(t), "noise", "--n", n, "--chunk", "1000",
                    "--method", "imbalance"]),
        ]
        print(f"\n## (f) BackPACK noise, N = {n}, {t} thread(s)", file=sys.stderr)
        alternate(series, args.noise_repeats, args.verbose)
        bp, var, imb = series
        r = {"backpack_s": bp.med("internal"), "variance_s": var.med("internal"), "imbalance_s": imb.med("internal"),
             "variance_wall_s": var.med("wall"), "imbalance_wall_s": imb.med("wall")}
        r["ratio_variance"] = r["backpack_s"] / r["variance_s"]
        r["ratio_imbalance"] = r["backpack_s"] / r["imbalance_s"]
        res[f"threads_{t}"] = r
        res[f"series_{t}"] = [x.record() for x in series]
        rows.append([bp.name, fmt_s(bp.med("wall")), fmt_s(r["backpack_s"]), "1"])
        rows.append([var.name, fmt_s(var.med("wall")), fmt_s(r["variance_s"]), f"{r['ratio_variance']:.2f}×"])
        rows.append([imb.name, fmt_s(imb.med("wall")), fmt_s(r["imbalance_s"]), f"{r['ratio_imbalance']:.2f}×"])
    res["load_end"] = load_now()
    results["backpack"] = res
    return ["program", "wall (median)", "internal (median)", "nequil faster (internal / internal)"], rows


def pyhessian(args, results):
    """(g) PyHessian's top eigenvalue (power iteration, tol) and Hutchinson trace against nequil's
    Lanczos (residual ≤ tol·|λ|, which bounds the eigenvalue's relative error by tol) and Hutchinson
    with as many Rademacher vectors as PyHessian used, on the same weights and data."""
    n, tol = str(args.hessian_n), str(args.hessian_tol)
    work = tempfile.mkdtemp(prefix="nequil-hessian-")
    script = os.path.join(PEERS, "hessian_pyhessian.py")
    first, *_ = run([args.python, script, "784", "256", n, work, tol, "0"], ONE_THREAD)
    probes = str(int(field(first, "trace_probes")))
    weights, npz = os.path.join(work, "weights.safetensors"), os.path.join(work, "data.npz")
    rows, res = [], {"load_start": load_now(), "trace_probes": int(probes)}
    for t in threads_list(args):
        series = [
            Series(f"PyHessian, {t} thr", [args.python, script, "784", "256", n, work, tol, "0"], PEER_ENV[t]),
            Series(f"nequil Lanczos + Hutchinson, {t} thr",
                   [args.nequil, "bench", "--threads", str(t), "hessian", "--weights", weights, "--npz", npz,
                    "--tol", tol, "--hutchinson", probes]),
        ]
        print(f"\n## (g) PyHessian, N = {n}, {t} thread(s)", file=sys.stderr)
        alternate(series, args.noise_repeats, args.verbose)
        ph, nq = series
        med = lambda s, k: statistics.median(field(o, k) for o in s.outputs)
        r = {k: med(ph, k) for k in ("eig_s", "trace_s", "lambda_max", "eig_hvps", "trace")}
        r.update({"nequil_" + k: med(nq, k) for k in ("eig_s", "trace_s", "lambda_max", "iterations", "trace",
                                                       "residual")})
        r["ratio_eig"] = r["eig_s"] / r["nequil_eig_s"]
        r["ratio_trace"] = r["trace_s"] / r["nequil_trace_s"]
        r["lambda_rel_diff"] = abs(r["lambda_max"] - r["nequil_lambda_max"]) / r["nequil_lambda_max"]
        res[f"threads_{t}"] = r
        res[f"series_{t}"] = [x.record() for x in series]
        rows.append([f"top eigenvalue, {t} thr", f"{fmt_s(r['eig_s'])} ({r['eig_hvps']:.0f} HVPs)",
                     f"{fmt_s(r['nequil_eig_s'])} ({r['nequil_iterations']:.0f}+1 HVPs)",
                     f"{r['ratio_eig']:.2f}×",
                     f"{r['lambda_max']:.6g} vs {r['nequil_lambda_max']:.6g} (rel. diff {r['lambda_rel_diff']:.1e})"])
        rows.append([f"Hutchinson trace, {probes} vectors, {t} thr", fmt_s(r["trace_s"]), fmt_s(r["nequil_trace_s"]),
                     f"{r['ratio_trace']:.2f}×", f"{r['trace']:.6g} vs {r['nequil_trace']:.6g}"])
    shutil.rmtree(work, ignore_errors=True)
    res["load_end"] = load_now()
    results["pyhessian"] = res
    return ["measure", "PyHessian (median)", "nequil (median)", "nequil faster", "values"], rows


PAPER_SHAPES = [  # the five products of one step of linear2 100-2000-100, S = 100
    (100, 2000, 100, "nt"), (100, 100, 2000, "nt"), (100, 2000, 100, "tn"), (100, 2000, 100, "nn"),
    (2000, 100, 100, "tn"),
]


def gemm_rate_at(args, shapes, threads):
    flops, secs = 0.0, 0.0
    for m, n, k, form in shapes:
        text, *_ = run([args.nequil, "bench", "--threads", str(threads), "gemm", str(m), str(n), str(k), "--form",
                        form])
        flops += 2.0 * m * n * k
        secs += field(text, "time_s")
    return flops / secs / 1e9


def paper(args, results):
    """(e) linear2 at the paper's scale (D = 100, H = 2000, S = 100, 200 steps) against PyTorch and
    JAX at each thread count, with the machine's f64 GEMM rate at the step's shapes measured in
    between."""
    d, h, s, eta, steps = 100, 2000, 100, 0.001, 200
    peer_args = [str(d), str(h), str(s), str(eta), str(steps), "0.25", "0"]
    spec = os.path.join(SPECS, "linear2-paper.toml")
    rows, res = [], {"load_start": load_now()}
    flops_step = 5 * 2 * s * d * h  # the five products of 2·S·D·H
    for t in threads_list(args):
        series = [
            Series(f"PyTorch eager, {t} thr", [args.python, os.path.join(PEERS, "linear2_torch.py")] + peer_args,
                   PEER_ENV[t]),
            Series(f"nequil, {t} thr", [args.nequil, "bench", "--threads", str(t), "train", spec]),
            Series(f"JAX jit, {t} thr", [args.python, os.path.join(PEERS, "linear2_jax.py")] + peer_args, PEER_ENV[t]),
        ]
        print(f"\n## (e) paper-scale linear2, {t} thread(s)", file=sys.stderr)
        rates = []
        for r in range(args.repeats):
            for x in series:
                x.once()
            rates.append(gemm_rate_at(args, PAPER_SHAPES, t))
        torch_s, nq, jax_s = series
        rate = statistics.median(rates)
        per_step = nq.med("internal") / steps
        r = {"torch_s": torch_s.med("internal"), "jax_s": jax_s.med("internal"), "nequil_s": nq.med("internal"),
             "nequil_wall_s": nq.med("wall"), "gemm_gflops": rate, "gemm_gflops_all": rates,
             "step_gflops": flops_step / per_step / 1e9}
        r["ratio_torch"] = r["torch_s"] / r["nequil_s"]
        r["ratio_jax"] = r["jax_s"] / r["nequil_s"]
        r["fraction_of_gemm"] = r["step_gflops"] / rate
        res[f"threads_{t}"] = r
        res[f"series_{t}"] = [x.record() for x in series]
        for x in (torch_s, jax_s):
            rows.append([x.name, fmt_s(x.med("wall")), fmt_s(x.med("internal")),
                         f"{1e3 * x.med('internal') / steps:.2f}", f"{x.med('internal') / r['nequil_s']:.2f}×", ""])
        rows.append([nq.name, fmt_s(nq.med("wall")), fmt_s(r["nequil_s"]), f"{1e3 * per_step:.2f}", "1",
                     f"{r['step_gflops']:.1f} GFLOP/s = {100 * r['fraction_of_gemm']:.0f}% of {rate:.1f} "
                     f"GFLOP/s ({t}-thread GEMM rate)"])
    res["load_end"] = load_now()
    results["paper"] = res
    return ["program", "wall (median)", "internal (median)", "ms/step (internal)", "peer / nequil (internal)",
            "nequil: rate of the step's 5 products (200 MFLOP) vs the GEMM rate"], rows

SIMD_WORKLOADS = [  # key, label, nequil bench arguments, unit: per step (train) or per call (noise)
    ("tiny", "tiny step, linear 10-20-10, S = 1", ["train", "linear2-tiny-2M.toml"], "µs/step"),
    ("small", "small step, linear 100-200-100, S = 100", ["train", "linear2-small.toml"], "µs/step"),
    ("tanh", "tanh MLP step, 100-256-100 with biases, S = 64", ["train", "mlp-tanh-small.toml"], "µs/step"),
    ("noise", "noise, grad_stats of 784-256-256-10, N = 10 000", ["noise", "--n", "10000", "--chunk", "1000"], "s"),
]


def simd_paths(args, results):
    """(simd) The same nequil workloads on the default SIMD path and on `NEQUIL_SIMD=portable`,
    alternated round by round. nequil only, one thread, no peers. The measure is the calling
    thread's CPU time (`cpu_s=`), which a loaded machine stretches less than wall time; the ratio
    is taken pair by pair (one round's portable run over the same round's default run) and its
    median reported, so that a drift of the machine's speed over the sitting cancels."""
    text, *_ = run([args.nequil, "simd"])
    default = re.search(r"active (\w+)", text).group(1)
    res = {"default_path": default, "other_path": "portable", "workloads": []}
    rows = []
    for key, label, argv, unit in SIMD_WORKLOADS:
        argv = [os.path.join(SPECS, a) if a.endswith(".toml") else a for a in argv]
        series = [Series(f"{key}, default ({default})", [args.nequil, "bench"] + argv),
                  Series(f"{key}, portable", [args.nequil, "bench"] + argv, {"NEQUIL_SIMD": "portable"})]
        print(f"\n## (simd) {label}", file=sys.stderr)
        alternate(series, args.repeats, args.verbose)
        cpu = [[field(o, "cpu_s") for o in s.outputs] for s in series]
        steps = field(series[0].outputs[-1], "steps") if unit == "µs/step" else 1.0
        scale = 1e6 / steps if unit == "µs/step" else 1.0
        ratios = [p / d for d, p in zip(*cpu)]
        w = {"key": key, "label": label, "unit": unit, "steps": steps,
             "default_cpu_s": cpu[0], "portable_cpu_s": cpu[1],
             "series": [x.record() for x in series]}
        res["workloads"].append(w)
        rows.append([label, f"{scale * statistics.median(cpu[0]):.3f} {unit}",
                     f"{scale * statistics.median(cpu[1]):.3f} {unit}",
                     f"{statistics.median(ratios):.3f}", f"{min(ratios):.3f}–{max(ratios):.3f}"])
    results["simd"] = res
    return ["workload", f"default path ({default})", "portable", "portable / default (median of pairs)",
            "range of the pairs"], rows


# Times one `nequil sweep` into a fresh directory (the wrapper's own time_s is the sweep's wall time).
SWEEP_WRAPPER = """
import os, shutil, subprocess, sys, time
nequil, spec, out, jobs = sys.argv[1:5]
d = os.path.join(out, 'jobs' + jobs)
shutil.rmtree(d, ignore_errors=True)
t = time.perf_counter()
subprocess.run([nequil, 'sweep', spec, '--out', d, '--jobs', jobs, '--quiet'], check=True)
print(f'time_s={time.perf_counter() - t:.6f}')
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="rounds per workload (default 5)")
    ap.add_argument("--noise-repeats", type=int, default=3, help="rounds of the noise workload (torch ~1 min each)")
    ap.add_argument("--stats-repeats", type=int, default=3, help="rounds of the cnn and transformer workloads")
    ap.add_argument("--only", default="tiny,small,noise,parallel,cnn,transformer,paper,backpack,pyhessian",
                    help="comma-separated workloads (tiny, small, noise, parallel, cnn, transformer, paper, backpack, "
                         "pyhessian; and simd, nequil alone on its default SIMD path against the portable one, "
                         "which is not in the default list)")
    ap.add_argument("--python", default=os.path.expanduser("~/.nequil-peers/bin/python"), help="peers' Python")
    ap.add_argument("--nequil", default=os.path.join(ROOT, "target", "release", "nequil"))
    ap.add_argument("--no-build", action="store_true", help="do not run `cargo build --release` first")
    ap.add_argument("--with-run", action="store_true",
                    help="also time `nequil run` (writes a run directory, with fsync) in (a) and (b)")
    ap.add_argument("--parallel-steps", type=int, default=200_000, help="steps of each run in (d)")
    ap.add_argument("--threads", default="1,2", help="thread counts of (e)–(g) (default 1,2)")
    ap.add_argument("--backpack-n", type=int, default=10_000, help="samples of (f)")
    ap.add_argument("--hessian-n", type=int, default=5_000, help="samples of (g)")
    ap.add_argument("--hessian-tol", type=float, default=1e-3, help="relative tolerance of (g)")
    ap.add_argument("--json", help="write every measurement to this file")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    only = set(args.only.split(","))
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    load = os.getloadavg()
    cmd = " ".join(["python3", "bench/compare.py"] + sys.argv[1:])
    results = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "machine": machine(), "commit": commit(),
               "command": cmd, "load_average_at_start": load, "repeats": args.repeats}
    print(f"# nequil vs peers\n\nMachine: {results['machine']}; load average at start "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}.\nCommand: `{cmd}`; {args.repeats} rounds "
          f"(noise: {args.noise_repeats}), medians.\n")
    if "tiny" in only:
        header, rows, _ = linear2(args, "a", (10, 20, 1), (0.01, 20000), "linear2-tiny.toml", results, None)
        print("### (a) linear2 tiny: D=10 H=20 S=1, 20 000 steps\n")
        print(table(rows, header) + "\n")
    if "small" in only:
        header, rows, res = linear2(args, "b", (100, 200, 100), (0.001, 2000), "linear2-small.toml", results, None)
        extra = small_extra(args, res)
        print("### (b) linear2 small: D=100 H=200 S=100, 2 000 steps\n")
        print(table(rows, header) + "\n")
        print(table(extra, ["GEMM rate", "value"]) + "\n")
    if "noise" in only:
        header, rows = noise(args, results)
        print("### (c) per-sample gradient noise: ReLU MLP 784-256-256-10 with biases, N = 10 000\n")
        print(table(rows, header) + "\n")
    if "parallel" in only:
        header, rows = parallel(args, results)
        print(f"### (d) 8 independent tiny runs (D=10 H=20 S=1, {args.parallel_steps} steps each) on 2 cores\n")
        print(table(rows, header) + "\n")
    for key in ("cnn", "transformer"):
        if key in only:
            title, n, header, rows = stats(args, key, results)
            print(f"### ({key}) per-sample gradient mean and variance: {title}, N = {n}\n")
            print(table(rows, header) + "\n")
    if "paper" in only:
        header, rows = paper(args, results)
        r = results["paper"]
        print(f"### (e) linear2 at the paper's scale: D=100 H=2000 S=100, 200 steps (load {r['load_start']} → "
              f"{r['load_end']})\n")
        print(table(rows, header) + "\n")
    if "backpack" in only:
        header, rows = backpack(args, results)
        r = results["backpack"]
        print(f"### (f) BackPACK: ReLU MLP 784-256-256-10, N = {args.backpack_n} (load {r['load_start']} → "
              f"{r['load_end']})\n")
        print(table(rows, header) + "\n")
    if "pyhessian" in only:
        header, rows = pyhessian(args, results)
        r = results["pyhessian"]
        print(f"### (g) PyHessian: ReLU MLP 784-256-256-10, N = {args.hessian_n}, tol {args.hessian_tol} (load "
              f"{r['load_start']} → {r['load_end']})\n")
        print(table(rows, header) + "\n")
    if "simd" in only:
        header, rows = simd_paths(args, results)
        print(f"### (simd) the default SIMD path ({results['simd']['default_path']}) against the portable one, "
              "thread CPU time, one thread\n")
        print(table(rows, header) + "\n")
    end = os.getloadavg()
    results["load_average_at_end"] = end
    print(f"Load average at end {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}. Timing: wall = whole process measured by "
          "this script; internal = the program's own timer (peers: the training loop / the vmap loop, "
          "excluding imports, set-up and JAX compilation; nequil: the training loop / grad_stats + imbalance, "
          "excluding process start and spec parsing).")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
