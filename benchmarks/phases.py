r"""Where one iteration of the fast kernels spends its time, phase by phase.

Times one iteration of the objective of ``run.py`` (VGG19 to ``conv5_1``, the paper's
losses, random weights of the real widths) with the fast kernels, after a warm-up,
and splits it into phases by wrapping the functions that do each step with wall-clock
timers. Each timer counts its own time only (*exclusive*: a function's time less that
of the timed functions it calls), per thread, so that the phases add up to the
iteration's wall time on one thread, and to more than it (thread-seconds) when bands
run on several threads. With ``--threads N`` the band threads and NumPy's BLAS are
both held to ``N``:

- **GEMM**: the batched matrix products of the Winograd convolutions (``matmul``
  inside :func:`~refstyle.nn.fast.winograd_conv`);
- **input transform**: the padded band copies (with the ReLU mask applied on the way
  back) and :math:`B^\top d B`; **output transform**: :math:`A^\top m A`, the bias and
  the ReLU; **filter transform**: :math:`G g G^\top` for each layer and sweep;
- **masks**: packing the ReLU masks (forward) and unpacking them (backward);
- **conv1_1**: its im2col over channel planes, forward and backward;
- **pooling**, **layout** (Caffe ↔ channels last at the network's edges and where loss
  gradients are added), **losses** (content and style terms with their gradients);
- **other**: the rest of the iteration (Python, the Winograd driver's own work).

    python benchmarks/phases.py --size 512 --threads 1,2 --repeat 3
"""

import argparse
import statistics
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import refstyle  # noqa: E402
import refstyle.nn.fast as fast  # noqa: E402
from refstyle.nn.fast import conv as fconv, layout as flayout, winograd as fwino  # noqa: E402
from refstyle.paper import objective as fobjective  # noqa: E402
from run import cpu_model, make_weights, refstyle_objective  # noqa: E402

#: (phase, module, function name): the functions timed, where their callers look them up.
TIMED = [
    ("input transform", fwino, "padded_band"),
    ("input transform", fwino, "_row_transform"),
    ("input transform", fwino, "_column_transform"),
    ("output transform", fwino, "_output_columns"),
    ("output transform", fwino, "_output_rows"),
    ("filter transform", fconv, "winograd_filters"),
    ("filter transform", fconv, "winograd_backward_filters"),
    ("masks", fconv, "relu_mask"),
    ("masks", flayout, "mask_rows"),
    ("masks", fconv, "mask_rows"),
    ("conv1_1", fconv, "planes_conv"),
    ("conv1_1", fconv, "planes_conv_backward"),
    ("pooling", fast, "pool_forward"),
    ("pooling", fast, "pool_backward"),
    ("layout", fast, "to_hwc"),
    ("layout", fast, "nchw"),
    ("layout", fast, "add_nchw"),
    ("losses", fobjective, "content_loss"),
    ("losses", fobjective, "style_loss"),
]
#: A phase timed inside these ones counts as theirs (the filter transform is a GEMM too).
INNER_PHASES = {"GEMM": ("filter transform",)}
PHASES = ["GEMM", "input transform", "output transform", "filter transform", "masks", "conv1_1",
          "pooling", "layout", "losses", "other"]


class Clock:
    """Exclusive wall-clock time per phase, with one stack of open timers per thread."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.local = threading.local()
        self.lock = threading.Lock()

    def wrap(self, phase, f):
        def timed(*args, **kwargs):
            stack = self.local.__dict__.setdefault("stack", [])
            if stack and stack[-1][0] in INNER_PHASES.get(phase, ()):
                return f(*args, **kwargs)  # part of the phase that called it
            stack.append([phase, 0.0])  # time spent in timed callees
            t = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                total = time.perf_counter() - t
                inner = stack.pop()[1]
                if stack:
                    stack[-1][1] += total
                with self.lock:
                    self.seconds[phase] += total - inner
        return timed


class TimedModule:
    """An array module whose ``matmul`` is timed as the GEMM phase; everything else passes through."""

    def __init__(self, xp, clock):
        self.xp, self.matmul = xp, clock.wrap("GEMM", xp.matmul)

    def __getattr__(self, name):
        return getattr(self.xp, name)


def instrument(clock):
    """Wrap the timed functions; returns a function that undoes it."""
    saved = [(m, n, getattr(m, n)) for _, m, n in TIMED] + [(fwino, "array_module", fwino.array_module)]
    for phase, m, n in TIMED:
        setattr(m, n, clock.wrap(phase, getattr(m, n)))
    original = fwino.array_module
    fwino.array_module = lambda *arrays: TimedModule(original(*arrays), clock)

    def undo():
        for m, n, f in saved:
            setattr(m, n, f)
    return undo


def profile(size, threads, repeat):
    """``(wall seconds per iteration, {phase: seconds per iteration})``, the medians of ``repeat`` iterations."""
    weights = make_weights("vgg19")
    evaluate, x0 = refstyle_objective(weights, "vgg19", size, "fast")
    evaluate.net.kernel_set.threads = threads
    fast.set_blas_threads(threads)  # the GEMMs outside the bands (losses, filter transforms) on as many
    evaluate(x0)
    walls, runs = [], []
    for _ in range(repeat):
        clock = Clock()
        undo = instrument(clock)
        try:
            t = time.perf_counter()
            evaluate(x0)
            wall = time.perf_counter() - t
        finally:
            undo()
        clock.seconds["other"] = max(0.0, wall - sum(clock.seconds.values()))
        walls.append(wall)
        runs.append(dict(clock.seconds))
    return statistics.median(walls), {p: statistics.median(r.get(p, 0.0) for r in runs) for p in PHASES}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", default="1,2", help="band threads of the fast kernels, comma-separated (default 1,2)")
    ap.add_argument("--repeat", type=int, default=3, help="timed iterations (default 3; the medians are printed)")
    args = ap.parse_args(argv)
    print(f"{cpu_model()}; VGG19 at {args.size}, fast kernels; seconds per iteration (median of {args.repeat})")
    cols = [int(n) for n in args.threads.split(",")]
    results = {n: profile(args.size, n, args.repeat) for n in cols}
    print("| phase | " + " | ".join(f"{n} thread{'s' if n > 1 else ''}" for n in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for p in PHASES:
        print(f"| {p} | " + " | ".join(f"{results[n][1][p]:.3f}" for n in cols) + " |")
    print("| **iteration (wall)** | " + " | ".join(f"**{results[n][0]:.3f}**" for n in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
