r"""A large transfer on the CPU: its memory plan, then a short run with the peak measured.

The plan counts what a style transfer holds at its peak, from the architecture and the
image size alone, for ``kernels="fast"`` (what the network keeps between its forward and
backward sweeps is one bit per response element, the ReLU masks; every other
activation is freed as soon as the next layer has read it) and for
``kernels="reference"`` (each layer's response kept for the backward, and im2col
matrices of 9·C rows). Then it runs ``--iters`` iterations of the paper's optimiser
(SciPy's L-BFGS-B, history 20, :func:`refstyle.paper.optimize.lbfgs`) from white noise and
reports the process's peak resident memory (``VmHWM``) and the time per evaluation.

    python benchmarks/large.py --size 2048 --iters 2                # the plan, then the run
    python benchmarks/large.py --size 2048 --plan-only --kernels reference
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import refstyle  # noqa: E402
from refstyle.nn.arch import is_conv  # noqa: E402
from run import CONTENT_LAYERS, DEEPEST, MALLOC_ENV, PAPER, STYLE_LAYERS, _status_kb, make_weights  # noqa: E402

from refstyle.nn.arch import ARCHS  # noqa: E402

GB = 2**30


def layer_shapes(weights, arch, size):
    """``[(name, C_in, C_out, H, W)]`` for the conv layers to conv5_1 and ``(name, C, H, W)`` for the pools."""
    out, h, w, c = [], size, size, 3
    for name in ARCHS[arch][: ARCHS[arch].index(DEEPEST) + 1]:
        if is_conv(name):
            O = weights[name][0].shape[0]
            out.append((name, c, O, h, w))
            c = O
        else:
            h, w = (h + 1) // 2, (w + 1) // 2
    return out


def memory_plan(weights, arch, size, kernels="fast", maxcor=20, band_bytes=None):
    """The bytes a transfer holds at its peak, by item (float32 network, SciPy L-BFGS-B in float64)."""
    from refstyle.nn.fast import BAND_BYTES, SMALL_LAYER

    convs = layer_shapes(weights, arch, size)
    n = 3 * size * size
    act = {name: 4 * O * H * W for name, C, O, H, W in convs}  # one float32 response
    loss_layers = set(CONTENT_LAYERS) | set(STYLE_LAYERS)
    plan = {
        "weights (float32)": sum(4 * W.size + 4 * b.size for name, (W, b) in weights.items() if name in act),
        "targets P and A": sum(act[n_] for n_ in CONTENT_LAYERS) + sum(4 * O * O for name, C, O, H, W in convs if name in STYLE_LAYERS),
        "responses F at the loss layers (kept by the objective)": sum(act[n_] for n_ in loss_layers),
        "their gradients dL/dF (kept by the objective)": sum(act[n_] for n_ in loss_layers),
        "L-BFGS-B: history 2·m·n and work 5·n (float64)": 8 * (2 * maxcor + 5) * n,
        "L-BFGS-B: bounds l, u (float64) and integer work": (8 + 8 + 16) * n,
        "x and its gradient in float64 for SciPy, the best image": (8 + 8 + 4) * n,
    }
    big = max(act.values())  # the largest response: conv1_x
    if kernels == "reference":
        plan["responses kept for the backward (ReLU caches)"] = sum(act.values())
        # at conv1_2: the padded input, the im2col matrix (9·C rows) and the output
        C, O, H, W = convs[1][1:]
        plan["largest layer's scratch (im2col of conv1_2, padded input)"] = 4 * 9 * C * H * W + 4 * C * (H + 2) * (W + 2)
        plan["gradient in flight (two responses)"] = 2 * big
    else:
        # one layer's transformed filters at a time (made in each sweep): the largest layer's,
        # or a small layer's with its contiguous backward copy
        plan["Winograd filters of one layer (workspace)"] = max(
            4 * 16 * C * O * (1 if C * O > SMALL_LAYER else 2) for name, C, O, H, W in convs[1:])
        plan["ReLU masks, one bit per response element"] = sum(a // 32 for a in act.values())
        plan["workspace (bands of tiles)"] = BAND_BYTES if band_bytes is None else band_bytes
        plan["gradient in flight: a layer's input and output"] = 2 * big
    plan["total"] = sum(plan.values())
    return plan


def untouched_history(maxcor, iterations, n):
    """Bytes of L-BFGS-B's history not yet written after ``iterations``: not resident yet."""
    return 8 * 2 * max(0, maxcor - iterations) * n


def run(args):
    weights = make_weights(args.arch, args.weights)
    plan = memory_plan(weights, args.arch, args.size, args.kernels)
    print(f"memory plan, {args.arch} {args.size}×{args.size}, kernels={args.kernels}:")
    for item, b in plan.items():
        print(f"  {b / GB:7.2f} GB  {item}")
    result = {"arch": args.arch, "size": args.size, "kernels": args.kernels, "plan_gb": {k: v / GB for k, v in plan.items()}}
    if args.plan_only:
        return result
    base = _status_kb("VmRSS")
    t0 = time.perf_counter()
    net = refstyle.VGG(weights, arch=args.arch, dtype="float32", kernels=args.kernels)
    rng = np.random.default_rng(0)
    p_rgb, a_rgb = (rng.uniform(0, 255, (args.size, args.size, 3)) for _ in range(2))
    obj = refstyle.build_objective(net, p_rgb, [a_rgb], PAPER)
    del p_rgb, a_rgb
    t_targets = time.perf_counter() - t0
    from refstyle.paper.images import white_noise
    from refstyle.paper.optimize import lbfgs

    x0 = white_noise((args.size, args.size), seed=0)
    times = []

    def evaluate(x):
        t = time.perf_counter()
        out = obj(x)
        times.append(time.perf_counter() - t)
        print(f"  evaluation {len(times)}: {times[-1]:.1f} s, loss {out[0]:.4g}, peak so far {(_status_kb('VmHWM') - base) / 2**20:.2f} GB", flush=True)
        return out

    t0 = time.perf_counter()
    res = lbfgs(evaluate, x0, args.iters)
    t_run = time.perf_counter() - t0
    peak = (_status_kb("VmHWM") - base) * 1024
    result.update({"targets_s": t_targets, "iterations": res.iterations, "evaluations": res.evaluations,
                   "run_s": t_run, "evaluation_s": times, "peak_gb": peak / GB, "after_imports_gb": base / 2**20,
                   "final_loss": res.loss})
    unwritten = untouched_history(20, res.iterations, x0.size)
    result["history_not_yet_written_gb"] = unwritten / GB
    print(f"targets {t_targets:.0f} s; {res.iterations} L-BFGS iterations, {res.evaluations} evaluations in {t_run:.0f} s "
          f"(median evaluation {float(np.median(times)):.1f} s); peak resident memory {peak / GB:.2f} GB beyond the "
          f"{base / 2**20:.2f} GB after the imports (plan: {plan['total'] / GB:.2f} GB, of which "
          f"{unwritten / GB:.2f} GB of L-BFGS history not yet written after {res.iterations} iterations)")
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--arch", default="vgg19")
    ap.add_argument("--kernels", default="fast", choices=["fast", "reference", "im2col"])
    ap.add_argument("--iters", type=int, default=2, help="L-BFGS iterations (default 2)")
    ap.add_argument("--weights", help="a weight file (default: random weights of the real widths)")
    ap.add_argument("--plan-only", action="store_true", help="print the memory plan and stop")
    ap.add_argument("-o", "--output", help="append the result as one JSON line here")
    args = ap.parse_args(argv)
    result = run(args)
    if args.output:
        with open(args.output, "a") as f:
            f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    # glibc returns freed blocks to the system only above its mmap threshold; run under
    # MALLOC_ENV (as run.py's memory subprocesses do) so that the peak is the memory in use.
    import os

    if any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, **MALLOC_ENV})
    sys.exit(main())
