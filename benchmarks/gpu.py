r"""refstyle on the GPU (CuPy) against PyTorch with cuDNN, and a 1000-iteration transfer.

The device half of ``benchmarks/run.py``: the same iteration (the image to ``conv5_1``,
the paper's losses, the backward to :math:`\partial L/\partial x`; random weights of
the real VGG widths), timed with refstyle's ``VGG(device="gpu")`` on CuPy for each
kernel set asked for, and with PyTorch (``conv2d`` and autograd, cuDNN's autotuner on)
on the same device, alternating. Every timed call ends with a synchronisation of the
device, so the figures are the kernels' own time. Then a whole transfer: ``--transfer``
iterations of refstyle's ``lbfgs_xp`` (L-BFGS on the array module: nothing leaves the
GPU) and of ``torch.optim.LBFGS`` (strong Wolfe, history 20), from the same white noise.
Memory, per configuration: CuPy's pool (it keeps what it once held, so about the
peak) and PyTorch's ``max_memory_allocated``.

One short prepared run for a lent GPU (see ``benchmarks/README.md``)::

    python benchmarks/gpu.py --sizes 512,1024 --arch vgg19 --repeat 10 --transfer 1000 -o benchmarks/results-gpu.json

``--device cpu`` runs the same script on NumPy and PyTorch's CPU: the check of the
script itself where there is no GPU (``--sizes 64 --repeat 2 --transfer 5``).
"""

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402  (benchmarks/run.py: the problem, the weights, the PyTorch objective)

from refstyle.backend import have_gpu  # noqa: E402
from refstyle.nn.kernels import KERNELS  # noqa: E402
from refstyle.paper.images import white_noise  # noqa: E402
from refstyle.paper.optimize import lbfgs_xp  # noqa: E402


class TorchObjective(run.TorchObjective):
    """:class:`run.TorchObjective` that takes the image as a tensor on its device and gives the gradient there."""

    def __call__(self, x):
        xt = x.detach().clone().requires_grad_(True)
        loss = self.loss(xt)
        loss.backward()
        return float(loss.item()), xt.grad


def synchronizer(device, torch):
    """A function that waits for both libraries' work on the device."""
    if device == "cpu":
        return lambda: None
    import cupy

    def sync():
        cupy.cuda.Device().synchronize()
        torch.cuda.synchronize()

    return sync


def build(impl, weights, arch, size, device, torch):
    """``(evaluate, x0)`` of :func:`run.build`, with ``x0`` on the device."""
    evaluate, x0 = run.build(impl, weights, arch, size, torch, device, torch_objective=TorchObjective)
    return evaluate, evaluate.tensor(x0) if impl == "torch" else evaluate.net.xp.asarray(x0)


def time_config(arch, size, impls, args, torch, sync):
    reset_memory(args, torch)
    weights = run.make_weights(arch, args.weights)
    flops = run.nominal_flops(weights, arch, size)
    built = {impl: build(impl, weights, arch, size, args.device, torch) for impl in impls}
    first = {}
    for impl, (evaluate, x0) in built.items():  # warm-up (cuDNN's autotuner, CuPy's kernel compilation)
        for _ in range(2):
            first[impl] = evaluate(x0)[0]
        sync()
    times = {impl: [] for impl in impls}
    for _ in range(args.repeat):
        for impl, (evaluate, x0) in built.items():
            sync()
            t = time.perf_counter()
            evaluate(x0)
            sync()
            times[impl].append(time.perf_counter() - t)
    rows = []
    for impl in impls:
        s = run.summary(times[impl])
        rows.append({"arch": arch, "size": size, "impl": impl, "seconds": s, "gflops": flops / s["median"] / 1e9,
                     "loss": first[impl]})
    if "torch" in impls:
        t_torch = statistics.median(times["torch"])
        for row in rows:
            row["ratio_to_torch"] = row["seconds"]["median"] / t_torch
            row["loss_rel_diff_to_torch"] = abs(row["loss"] - first["torch"]) / abs(first["torch"])
    del built
    used = memory(args, torch)
    for row in rows:
        row["memory"] = used
    return rows


def transfer(impl, arch, size, iters, args, torch, sync):
    """Seconds for ``iters`` L-BFGS iterations from white noise (no pixel bounds, history 20)."""
    reset_memory(args, torch)
    weights = run.make_weights(arch, args.weights)
    evaluate, _ = build(impl, weights, arch, size, args.device, torch)
    x0 = white_noise((size, size), seed=0)
    if impl == "torch":
        x = torch.nn.Parameter(evaluate.tensor(x0))
        initial = evaluate(x)[0]
        opt = torch.optim.LBFGS([x], lr=1, max_iter=iters, max_eval=25 * iters, tolerance_grad=0.0,
                                tolerance_change=0.0, history_size=20, line_search_fn="strong_wolfe")
        count = [0]

        def closure():
            loss, grad = evaluate(x)
            x.grad = grad
            count[0] += 1
            return loss

        sync()
        t = time.perf_counter()
        opt.step(closure)
        sync()
        seconds = time.perf_counter() - t
        state = opt.state[x]
        result = {"iterations": int(state["n_iter"]), "evaluations": count[0], "final_loss": float(evaluate(x)[0])}
    else:
        xp = evaluate.net.xp
        initial = evaluate(xp.asarray(x0))[0]
        sync()
        t = time.perf_counter()
        res = lbfgs_xp(evaluate, xp.asarray(x0), iters, maxcor=20)
        sync()
        seconds = time.perf_counter() - t
        result = {"iterations": res.iterations, "evaluations": res.evaluations, "final_loss": float(res.loss)}
    result.update(initial_loss=float(initial), seconds=seconds, seconds_per_iteration=seconds / max(1, result["iterations"]))
    return {"arch": arch, "size": size, "impl": impl, "transfer": result, "memory": memory(args, torch)}


def reset_memory(args, torch):
    """Free what the last configuration left, and restart the peak counters."""
    gc.collect()
    if args.device == "gpu":
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def memory(args, torch):
    """Device memory since :func:`reset_memory`: CuPy's pool (it keeps what it held: about
    refstyle's peak, over its kernel sets) and PyTorch's peak allocation."""
    if args.device != "gpu":
        return {}
    import cupy

    return {"cupy_pool_total_mb": cupy.get_default_memory_pool().total_bytes() / 2**20,
            "torch_max_allocated_mb": torch.cuda.max_memory_allocated() / 2**20}


def device_info(args, torch):
    info = {"device": args.device, "numpy": np.__version__, "torch": torch.__version__}
    if args.device == "gpu":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        info.update(gpu=props["name"].decode(), cupy=cupy.__version__, cuda_runtime=cupy.cuda.runtime.runtimeGetVersion(),
                    cudnn=torch.backends.cudnn.version(), cudnn_benchmark=torch.backends.cudnn.benchmark,
                    tf32=torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32)
    else:
        info["cpu"] = run.cpu_model()
    return info


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("gpu", "cpu"), default="gpu", help="gpu (CuPy and CUDA), or cpu to check the script")
    ap.add_argument("--sizes", default="512,1024", help="image sides, comma-separated (default 512,1024)")
    ap.add_argument("--arch", default="vgg19", help="architectures, comma-separated (default vgg19)")
    ap.add_argument("--kernels", default="reference,fast", help="refstyle kernel sets, comma-separated (default reference,fast)")
    ap.add_argument("--repeat", type=int, default=10, help="timed iterations per implementation (default 10)")
    ap.add_argument("--transfer", type=int, default=1000, metavar="N",
                    help="L-BFGS iterations of the whole transfer at the first size, 0 for none (default 1000)")
    ap.add_argument("--transfer-kernels", default="auto",
                    help="refstyle's kernels for the transfer (default auto: the faster of those timed at its size)")
    ap.add_argument("--weights", help="a weight file (default: random weights of the real widths)")
    ap.add_argument("-o", "--output", help="write the results as JSON here")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch = run.import_torch()
    if torch is None:
        sys.exit("PyTorch is needed for the comparison: pip install torch")
    if args.device == "gpu":
        if not have_gpu():
            sys.exit("no GPU here (CuPy cannot see one): run on a machine with an NVIDIA GPU, or give --device cpu")
        torch.backends.cudnn.benchmark = True
        # full float32 as CuPy's cuBLAS computes it: no TF32 tensor-core rounding
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    sync = synchronizer(args.device, torch)
    kernel_sets = [k.strip() for k in args.kernels.split(",") if k.strip()]
    for k in kernel_sets + ([] if args.transfer_kernels == "auto" else [args.transfer_kernels]):
        if k not in KERNELS:
            sys.exit(f"unknown kernels {k!r}: choose from {', '.join(KERNELS)}")
    impls = kernel_sets + ["torch"]
    results = {"machine": device_info(args, torch), "command": "python benchmarks/gpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "unix_time": time.time(), "results": []}
    print(results["machine"], flush=True)

    def save():
        if args.output:
            tmp = Path(args.output + ".part")
            tmp.write_text(json.dumps(results, indent=1) + "\n")
            tmp.replace(args.output)

    archs = [a.strip() for a in args.arch.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    for arch in archs:
        for size in sizes:
            rows = time_config(arch, size, impls, args, torch, sync)
            for row in rows:
                results["results"].append(row)
                s = row["seconds"]
                print(f"{arch} {size:>5} {row['impl']:>9}  {s['median'] * 1e3:8.2f} ms [{s['min'] * 1e3:.2f}..{s['max'] * 1e3:.2f}]"
                      f"  ratio {row.get('ratio_to_torch', float('nan')):5.2f}  {row['gflops']:8.1f} GFLOP/s", flush=True)
            print(f"{arch} {size:>5} memory {rows[-1]['memory']}", flush=True)
            save()
    if args.transfer:
        kernels = args.transfer_kernels
        if kernels == "auto":  # the faster of refstyle's kernel sets at the transfer's size
            timed = [r for r in results["results"] if (r["arch"], r["size"]) == (archs[0], sizes[0]) and r["impl"] != "torch"]
            kernels = min(timed, key=lambda r: r["seconds"]["median"])["impl"]
        for impl in [kernels, "torch"]:
            row = transfer(impl, archs[0], sizes[0], args.transfer, args, torch, sync)
            results["results"].append(row)
            tr = row["transfer"]
            print(f"transfer {archs[0]} {sizes[0]} {impl:>9}: {tr['iterations']} iterations, {tr['evaluations']} evaluations "
                  f"in {tr['seconds']:.1f} s ({tr['seconds_per_iteration'] * 1e3:.1f} ms/iteration), loss {tr['final_loss']:.4g}",
                  flush=True)
            save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
