r"""The optimiser's own cost per iteration: ``lbfgs-xp`` against SciPy's L-BFGS-B, with and without bounds.

The objective is a diagonal quadratic :math:`L(x) = \tfrac12 \sum_i a_i (x_i - c_i)^2` on a
1×3×H×W float32 image (curvatures :math:`a_i` from 1 to 100, minimiser :math:`c` in pixel units,
about 1 pixel in 8 outside the bounds ±128 so that bounds become active). The time spent inside
the objective is measured and subtracted: what is left is the optimiser -- its direction, its
line search, the float32/float64 copies around SciPy, and the best-image copy of ``_Tracker``.
Iterations after the history is full (``maxcor`` + 1 on) are timed; each figure is the median
over ``--runs`` runs::

    python benchmarks/lbfgs_overhead.py                  # 512×512, history 20, CPU
    python benchmarks/lbfgs_overhead.py --device gpu     # CuPy (SciPy then copies to the host and back)
"""

import argparse
import statistics
import time

import numpy as np

from refstyle.backend import device_module
from refstyle.paper.optimize import lbfgs, lbfgs_xp


def quadratic(xp, shape, seed=0):
    rng = np.random.default_rng(seed)
    a = xp.asarray(np.exp(rng.uniform(0, np.log(100), shape)), dtype=np.float32)
    c = xp.asarray(rng.uniform(-150, 150, shape), dtype=np.float32)
    spent = [0.0]

    def evaluate(x):
        start = time.perf_counter()
        d = x - c
        grad = a * d
        loss = 0.5 * float((d * grad).sum(dtype=np.float64))  # float() waits for the GPU
        spent[0] += time.perf_counter() - start
        return loss, grad

    x0 = xp.asarray(rng.uniform(-100, 100, shape), dtype=np.float32)
    return evaluate, x0, spent


def overhead(run, xp, shape, iters, maxcor, seed):
    """Seconds per iteration outside the objective, over the iterations after the history is full."""
    evaluate, x0, spent = quadratic(xp, shape, seed)
    marks = []  # (wall clock, time inside the objective, evaluations) after each iteration
    result = run(evaluate, x0, iters, maxcor, lambda step: marks.append((time.perf_counter(), spent[0], step.evaluations)))
    (t0, e0, n0), (t1, e1, n1) = marks[maxcor], marks[-1]
    k = len(marks) - 1 - maxcor
    return (t1 - t0 - (e1 - e0)) / k, (e1 - e0) / (n1 - n0), (n1 - n0) / k, result.loss


OPTIMISERS = {
    "lbfgs-xp": lambda f, x0, iters, m, cb: lbfgs_xp(f, x0, iters, maxcor=m, callback=cb),
    "scipy L-BFGS-B": lambda f, x0, iters, m, cb: lbfgs(f, x0, iters, maxcor=m, callback=cb),
    "scipy L-BFGS-B, bounds": lambda f, x0, iters, m, cb: lbfgs(f, x0, iters, maxcor=m, bounds=(-128.0, 128.0), callback=cb),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--maxcor", type=int, default=20)
    p.add_argument("--iters", type=int, default=50, help="iterations per run (the last iters - maxcor are timed)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    args = p.parse_args(argv)
    xp = device_module(args.device)
    shape = (1, 3, args.size, args.size)
    print(f"{args.size}×{args.size}×3 float32 on the {args.device}, history {args.maxcor}, "
          f"iterations {args.maxcor + 1}..{args.iters} timed, median of {args.runs} runs")
    print(f"{'optimiser':24s} {'overhead s/it (min..max)':>28s} {'evals/it':>9s} {'objective s/eval':>17s} {'final loss':>11s}")
    for name, run in OPTIMISERS.items():
        rows = [overhead(run, xp, shape, args.iters, args.maxcor, seed) for seed in range(args.runs)]
        per_it = [r[0] for r in rows]
        print(f"{name:24s} {statistics.median(per_it):12.4f} ({min(per_it):.4f}..{max(per_it):.4f}) "
              f"{statistics.median(r[2] for r in rows):9.2f} {statistics.median(r[1] for r in rows):17.4f} "
              f"{statistics.median(r[3] for r in rows):11.4g}")


if __name__ == "__main__":
    main()
