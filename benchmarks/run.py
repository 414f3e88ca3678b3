r"""Time refstyle's objective and a short L-BFGS run against PyTorch on the same CPU.

One *iteration* is what L-BFGS asks for at every step: the forward sweep of the image
to ``conv5_1``, the paper's losses (content ``conv4_2``, style ``conv1_1 … conv5_1``,
:math:`w_l = 1/5`, :math:`\alpha/\beta = 10^{-3}`, average pooling) and the backward
sweep to :math:`\partial L/\partial x` — :meth:`refstyle.Objective.__call__`. PyTorch
computes the same objective in the same process (``conv2d``, ``relu``,
``avg_pool2d(ceil_mode=True)``, autograd for the backward), with its default
threads (the core count, as NumPy's BLAS); it is optional and skipped with a
message when it is not installed.

Weights are random with the real VGG widths (64, 128, 256, 512, 512 filters), so no
weight file is needed; ``--weights FILE`` takes real ones. Each configuration
(architecture × size) is timed in this process, refstyle and PyTorch alternating
(``--repeat`` iterations each after a warm-up), so that a disturbance of the machine
hits both; the figures are the median, min and max seconds per iteration and the ratio
of the medians. GFLOP/s counts the *nominal* work of an iteration — every 3×3
convolution forward and its input gradient, ``2·H·W·C·O·9`` each, plus the Gram
products of the style layers — so that a Winograd convolution, which does 2.25× fewer
multiplications, shows as an effective rate above the GEMM peak. The peak is
measured here: the best float32 ``numpy.matmul`` of square matrices.

Peak memory is measured in a fresh subprocess per configuration and implementation:
after the imports, it builds the network and the targets, runs one iteration, resets
the kernel's high-water mark of the resident set (``/proc/self/clear_refs``), runs two
more, and reports ``VmHWM`` minus the resident set after the imports — the memory the
configuration needs (weights, targets, workspaces and the iteration's peak) beyond
the interpreter and libraries — and ``VmHWM`` minus the resident set just before the
timed iterations (what one iteration adds).

Usage::

    python benchmarks/run.py --sizes 128,256 --arch vgg19 --repeat 5 -o benchmarks/results-<machine>.json
    python benchmarks/run.py --table benchmarks/results-<machine>.json      # the README table again
    python benchmarks/run.py --sizes 256,512 --arch vgg19 --threads 1,2 --lbfgs 0   # the share of the threads

With ``--threads 1,2`` each configuration is timed once per thread count, with
refstyle's band threads (:class:`refstyle.nn.fast.Workspace`), NumPy's BLAS and
PyTorch's intra-op threads all held to that many; without it each runs with its
default (the cores).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import refstyle  # noqa: E402
from refstyle.nn.arch import ARCHS, VGG_WIDTHS, is_conv  # noqa: E402
from refstyle.nn.fast import blas_threads, set_blas_threads  # noqa: E402
from refstyle.nn.kernels import KERNELS  # noqa: E402
from refstyle.paper.conventions import get_convention  # noqa: E402

PAPER = refstyle.Settings().resolved()  # the paper's losses, as every refstyle run builds them
CONTENT_LAYERS = list(PAPER.content_layers)
STYLE_LAYERS = list(PAPER.style_layers)
DEEPEST = "conv5_1"


# ---------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return " ".join(fields.get("Model name", "unknown").split())


def machine_info(torch):
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    blas = {}
    try:
        config = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = {k: config.get(k) for k in ("name", "version", "openblas configuration")}
    except Exception:  # older NumPy: no dict mode
        pass
    info = {
        "cpu": cpu_model(),
        "cores": cores,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas,
        "threads_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ},
        "blas_threads": blas_threads(),
    }
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    return info


def median_seconds(f, repeat):
    f()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_peak(repeat=3, sizes=(1024, 2048, 4096)):
    """The best float32 GEMM rate of NumPy here, GFLOP/s, over a few square sizes."""
    best = 0.0
    for n in sizes:
        a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
        best = max(best, 2 * n**3 / median_seconds(lambda: a @ a, repeat) / 1e9)
    return best


# ---------------------------------------------------------------------------
# The problem
# ---------------------------------------------------------------------------


def nominal_flops(weights, arch, size):
    """The nominal FLOPs of one iteration: each conv to conv5_1 forward and backward to its input, and the Grams."""
    flops, h, w = 0, size, size
    for name in ARCHS[arch][: ARCHS[arch].index(DEEPEST) + 1]:
        if is_conv(name):
            O, C = weights[name][0].shape[:2]
            flops += 2 * (2 * h * w * C * O * 9)
            if name in STYLE_LAYERS:
                flops += 2 * (2 * O * O * h * w)  # G = F Fᵀ and dF = (G - A) F
        else:
            h, w = (h + 1) // 2, (w + 1) // 2
    return flops


def make_weights(arch, path=None):
    if path:
        return refstyle.load_weights(path, arch=arch)
    return refstyle.generate_weights(arch, widths=VGG_WIDTHS, depth=DEEPEST, seed=0, dtype="float32")


def make_images(size, seed=0):
    """Photograph and artwork (RGB 0..255) and the start image (preprocessed): random images (their
    content does not change the work)."""
    rng = np.random.default_rng(seed)
    p_rgb, a_rgb = (rng.uniform(0, 255, (size, size, 3)) for _ in range(2))
    x0 = refstyle.preprocess(rng.uniform(0, 255, (size, size, 3)))
    return p_rgb, a_rgb, x0


def refstyle_objective(weights, arch, size, kernels, device="cpu"):
    net = refstyle.build_network(weights, PAPER, arch=arch, dtype="float32", device=device, kernels=kernels)
    p_rgb, a_rgb, x0 = make_images(size)
    return refstyle.build_objective(net, p_rgb, [a_rgb], PAPER), x0


class TorchObjective:
    """The same L_total in PyTorch: ``x (numpy) -> (loss, dL/dx as numpy float32)``.

    Weights and targets live on ``device`` (``"cpu"``, or ``"cuda"`` for ``benchmarks/gpu.py``).
    """

    def __init__(self, torch, weights, arch, size, alpha, beta, layer_weights, device="cpu"):
        import torch.nn.functional as tF

        self.torch, self.tF, self.device = torch, tF, device
        self.layers = ARCHS[arch][: ARCHS[arch].index(DEEPEST) + 1]
        self.params = {n: (self.tensor(W), self.tensor(b)) for n, (W, b) in weights.items() if n in self.layers}
        self.alpha, self.beta, self.w = alpha, beta, layer_weights
        p_rgb, a_rgb, _ = make_images(size)
        with torch.no_grad():
            Fp, Fa = self.net(self.tensor(refstyle.preprocess(p_rgb))), self.net(self.tensor(refstyle.preprocess(a_rgb)))
            self.P = {n: Fp[n] for n in CONTENT_LAYERS}
            self.A = {n: self.gram(Fa[n]) for n in STYLE_LAYERS}

    def tensor(self, a):
        """A NumPy array as a float32 tensor on the device."""
        return self.torch.from_numpy(np.asarray(a, np.float32)).to(self.device)

    def net(self, h):
        out = {}
        for name in self.layers:
            if is_conv(name):
                h = self.tF.relu(self.tF.conv2d(h, *self.params[name], padding=1))
            else:
                h = self.tF.avg_pool2d(h, 2, 2, ceil_mode=True)
            out[name] = h
        return out

    @staticmethod
    def gram(F):
        F = F.reshape(F.shape[1], -1)
        return F @ F.T

    def loss(self, xt):
        """L_total of the image tensor ``xt``, recorded by autograd."""
        F = self.net(xt)
        loss = sum(0.5 * ((F[n] - self.P[n]) ** 2).sum() for n in CONTENT_LAYERS) * self.alpha
        for n in STYLE_LAYERS:
            N, M = F[n].shape[1], F[n].shape[2] * F[n].shape[3]
            loss = loss + self.beta * self.w[n] * ((self.gram(F[n]) - self.A[n]) ** 2).sum() / (4 * N**2 * M**2)
        return loss

    def __call__(self, x):
        xt = self.torch.from_numpy(np.asarray(x, np.float32)).requires_grad_(True)
        loss = self.loss(xt)
        loss.backward()
        return float(loss.item()), xt.grad.numpy()


def import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def build(impl, weights, arch, size, torch, device="cpu", torch_objective=None):
    """``(evaluate, x0)`` for ``impl``: a refstyle kernel set's name or ``"torch"``.

    Both take the paper's defaults: :class:`refstyle.Objective`'s, and for PyTorch the
    same ones from :func:`refstyle.paper.conventions.get_convention`. ``device`` is
    refstyle's (``"cpu"`` or ``"gpu"``; PyTorch then uses ``"cuda"``), ``torch_objective``
    a subclass of :class:`TorchObjective` to build instead; ``x0`` is a NumPy array.
    """
    if impl != "torch":
        return refstyle_objective(weights, arch, size, impl, device)
    paper = get_convention("paper")
    w = paper.style_layer_weights(STYLE_LAYERS, [None] * len(STYLE_LAYERS))
    cls = torch_objective or TorchObjective
    obj = cls(torch, weights, arch, size, paper.alpha, paper.beta, w, "cuda" if device == "gpu" else "cpu")
    return obj, make_images(size)[2]


def lbfgs_run(evaluate, x0, iters):
    """Seconds per iteration of SciPy's L-BFGS-B (refstyle's paper settings) over ``evaluate``."""
    from refstyle.paper.optimize import lbfgs

    t = time.perf_counter()
    result = lbfgs(evaluate, x0, iters)
    seconds = time.perf_counter() - t
    return {"iterations": result.iterations, "evaluations": result.evaluations, "seconds": seconds,
            "seconds_per_iteration": seconds / max(1, result.iterations), "final_loss": result.loss}


# ---------------------------------------------------------------------------
# Memory, in a subprocess per configuration
# ---------------------------------------------------------------------------


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def memory_worker(spec):
    """Run in a fresh process: the resident memory a configuration needs (see the module docstring)."""
    torch = import_torch() if spec["impl"] == "torch" else None
    base = _status_kb("VmRSS")
    weights = make_weights(spec["arch"], spec.get("weights"))
    evaluate, x0 = build(spec["impl"], weights, spec["arch"], spec["size"], torch)
    limit_threads(spec.get("threads"), torch, {spec["impl"]: (evaluate, x0)})
    evaluate(x0)
    before = _status_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident set
        how = "VmHWM after clear_refs"
    except OSError:
        how = "VmHWM over the whole process (clear_refs not writable)"
    for _ in range(2):
        evaluate(x0)
    peak = _status_kb("VmHWM")
    mb = 1 / 1024
    return {"config_mb": (peak - base) * mb, "iteration_mb": (peak - before) * mb,
            "after_imports_mb": base * mb, "peak_rss_mb": peak * mb, "how": how}


#: For the memory subprocesses: glibc then serves every allocation above 1 MiB with its
#: own mmap and returns it to the system when freed, so that the resident set follows
#: the memory in use (by default it keeps freed blocks of up to 32 MiB in its heap).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(2**20), "MALLOC_TRIM_THRESHOLD_": str(2**20)}


def measure_memory(spec):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-worker", json.dumps(spec)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **MALLOC_ENV})
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------


def summary(times):
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "times": times}


def rel_diff(a, b):
    """‖a − b‖ / ‖b‖ (2-norms over the whole array)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def limit_threads(threads, torch, built):
    """Hold every implementation to ``threads`` threads: NumPy's BLAS, refstyle's band threads, PyTorch's."""
    if threads is None:
        return
    if not set_blas_threads(threads):
        print(f"NumPy's BLAS threads cannot be set here: --threads {threads} limits only the band threads", file=sys.stderr)
    if torch is not None:
        torch.set_num_threads(threads)
    for evaluate, _ in built.values():
        kernels = getattr(getattr(evaluate, "net", None), "kernel_set", None)
        if hasattr(kernels, "threads"):
            kernels.threads = threads


def run_config(arch, size, impls, args, torch, peak, threads=None):
    weights = make_weights(arch, args.weights)
    flops = nominal_flops(weights, arch, size)
    built = {impl: build(impl, weights, arch, size, torch) for impl in impls}
    limit_threads(threads, torch, built)
    first = {}
    for impl, (evaluate, x0) in built.items():  # warm-up, and the check that all compute one objective
        first[impl] = evaluate(x0)
    times = {impl: [] for impl in impls}
    for _ in range(args.repeat):  # alternating, so that a disturbance hits every implementation
        for impl, (evaluate, x0) in built.items():
            t = time.perf_counter()
            evaluate(x0)
            times[impl].append(time.perf_counter() - t)
    rows = []
    ref_impl = impls[0]
    for impl in impls:
        s = summary(times[impl])
        row = {"arch": arch, "size": size, "impl": impl, "threads": threads, "seconds": s, "nominal_gflop": flops / 1e9,
               "gflops": flops / s["median"] / 1e9, "peak_fraction": flops / s["median"] / 1e9 / peak}
        if impl != ref_impl:
            row["loss_rel_diff_to_" + ref_impl] = abs(first[impl][0] - first[ref_impl][0]) / abs(first[ref_impl][0])
            row["grad_rel_diff_to_" + ref_impl] = rel_diff(first[impl][1], first[ref_impl][1])  # 2-norm
        rows.append(row)
    if "torch" in impls:
        t_torch = statistics.median(times["torch"])
        for row in rows:
            row["ratio_to_torch"] = row["seconds"]["median"] / t_torch
    if args.lbfgs:
        for row in rows:
            evaluate, x0 = built[row["impl"]]
            row["lbfgs"] = lbfgs_run(evaluate, x0, args.lbfgs)
            run = row["lbfgs"]
            run["optimizer_fraction"] = max(0.0, 1 - run["evaluations"] * row["seconds"]["median"] / run["seconds"])
        if "torch" in impls:
            t_torch = next(r for r in rows if r["impl"] == "torch")["lbfgs"]["seconds_per_iteration"]
            for row in rows:
                row["lbfgs"]["ratio_to_torch"] = row["lbfgs"]["seconds_per_iteration"] / t_torch
    del built
    if args.memory:
        for row in rows:
            row["memory"] = measure_memory({"impl": row["impl"], "arch": arch, "size": size, "weights": args.weights,
                                            "threads": threads})
    return rows


def fmt_row(r):
    s = r["seconds"]
    parts = [f"{r['arch']:>5} {r['size']:>5} {r['impl']:>9}" + (f" {r['threads']}T" if r.get("threads") else ""),
             f"{s['median']:8.3f} s [{s['min']:.3f}..{s['max']:.3f}]",
             f"ratio {r['ratio_to_torch']:5.2f}" if "ratio_to_torch" in r else " " * 11,
             f"{r['gflops']:6.1f} GFLOP/s ({100 * r['peak_fraction']:4.0f}% of peak)"]
    if "lbfgs" in r:
        lb = r["lbfgs"]
        parts.append(f"L-BFGS {lb['seconds_per_iteration']:.3f} s/it ({lb['evaluations']} evals, optimiser {100 * lb['optimizer_fraction']:.0f}%)")
    if "memory" in r:
        m = r["memory"]
        parts.append(f"mem {m['config_mb']:.0f} MB (iteration {m['iteration_mb']:.0f})" if "config_mb" in m else f"mem: {m['error']}")
    return "  ".join(parts)


def markdown(results):
    threads = any(r.get("threads") for r in results["results"])
    lines = [
        "| arch | size | impl | " + ("threads | " if threads else "") + "s/iter median [min–max] | ratio to torch "
        "| GFLOP/s (nominal) | % of matmul peak | L-BFGS s/iter (ratio) | optimiser share | peak memory MB (iteration) |",
        "|---|---|---|" + ("---|" if threads else "") + "---|---|---|---|---|---|---|",
    ]
    for r in results["results"]:
        s = r["seconds"]
        lb = r.get("lbfgs")
        m = r.get("memory", {})
        lines.append(
            f"| {r['arch']} | {r['size']} | {r['impl']} | " + (f"{r.get('threads') or '–'} | " if threads else "")
            + f"{s['median']:.3f} [{s['min']:.3f}–{s['max']:.3f}] | "
            + (f"{r['ratio_to_torch']:.2f}" if "ratio_to_torch" in r else "–")
            + f" | {r['gflops']:.1f} | {100 * r['peak_fraction']:.0f}% | "
            + (f"{lb['seconds_per_iteration']:.3f}" + (f" ({lb['ratio_to_torch']:.2f})" if "ratio_to_torch" in lb else "") if lb else "–")
            + " | " + (f"{100 * lb['optimizer_fraction']:.0f}%" if lb else "–")
            + " | " + (f"{m['config_mb']:.0f} ({m['iteration_mb']:.0f})" if "config_mb" in m else "–") + " |"
        )
    return "\n".join(lines)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="128,256,512", help="image sides, comma-separated (default 128,256,512)")
    ap.add_argument("--arch", default="vgg16,vgg19", help="architectures, comma-separated (default vgg16,vgg19)")
    ap.add_argument("--kernels", default="fast", help=f"refstyle kernel sets to time, comma-separated, of {', '.join(KERNELS)} (default fast)")
    ap.add_argument("--repeat", type=int, default=5, help="timed iterations per implementation and configuration (default 5)")
    ap.add_argument("--lbfgs", type=int, default=10, metavar="N", help="iterations of the L-BFGS run (0: none; default 10)")
    ap.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory subprocesses")
    ap.add_argument("--no-torch", dest="torch", action="store_false", help="do not compare with PyTorch")
    ap.add_argument("--weights", help="a weight file (default: random weights of the real widths)")
    ap.add_argument("--threads", help="thread counts to time, comma-separated (e.g. 1,2): refstyle's band threads, "
                    "NumPy's BLAS and PyTorch each held to that many (default: each its own default, the cores)")
    ap.add_argument("--peak-sizes", default="1024,2048,4096", help="square matmul sizes for the peak (default 1024,2048,4096)")
    ap.add_argument("-o", "--output", help="write the results as JSON here")
    ap.add_argument("--update", action="store_true",
                    help="keep the other configurations already in --output (re-run a disturbed one alone)")
    ap.add_argument("--table", metavar="JSON", help="print the Markdown table of a results file and exit")
    ap.add_argument("--memory-worker", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.memory_worker:
        print(json.dumps(memory_worker(json.loads(args.memory_worker))))
        return 0
    if args.table:
        print(markdown(json.loads(Path(args.table).read_text())))
        return 0
    torch = import_torch() if args.torch else None
    if args.torch and torch is None:
        print("PyTorch is not installed: timing refstyle alone (pip install torch for the comparison)", file=sys.stderr)
    impls = [k.strip() for k in args.kernels.split(",") if k.strip()]
    for k in impls:
        if k not in KERNELS:
            sys.exit(f"unknown kernels {k!r}: choose from {', '.join(KERNELS)}")
    if torch is not None:
        impls.append("torch")
    import scipy.optimize  # noqa: F401  (imported before any timing: its first import takes a while)

    peak = matmul_peak(sizes=[int(n) for n in args.peak_sizes.split(",")])
    results = {"machine": machine_info(torch), "command": "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "matmul_peak_gflops": peak, "unix_time": time.time(), "results": []}
    kept = []
    if args.update and args.output and Path(args.output).exists():
        kept = json.loads(Path(args.output).read_text())["results"]
    m = results["machine"]
    print(f"{m['cpu']}, {m['cores']} cores; numpy {m['numpy']} ({m['blas'].get('name', '?')} {m['blas'].get('version', '')}); "
          + (f"torch {m['torch']} ({m['torch_threads']} threads); " if torch is not None else "")
          + f"float32 matmul peak {peak:.1f} GFLOP/s")
    thread_counts = [int(n) for n in args.threads.split(",")] if args.threads else [None]
    key = lambda r: (r["arch"], r["size"], r.get("threads") or 0)  # noqa: E731
    for arch in [a.strip() for a in args.arch.split(",")]:
        for size in [int(s) for s in args.sizes.split(",")]:
            for threads in thread_counts:
                rows = run_config(arch, size, impls, args, torch, peak, threads)
                for row in rows:
                    print(fmt_row(row), flush=True)
                results["results"] += rows
                if args.output:
                    done = {key(r) + (r["impl"],) for r in results["results"]}
                    merged = [r for r in kept if key(r) + (r["impl"],) not in done] + results["results"]
                    merged.sort(key=lambda r: key(r) + (impls.index(r["impl"]) if r["impl"] in impls else -1,))
                    Path(args.output).write_text(json.dumps({**results, "results": merged}, indent=1) + "\n")
    print()
    print(markdown(json.loads(Path(args.output).read_text()) if args.output else results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
