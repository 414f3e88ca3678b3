r"""The float32 error of the fast kernels, against the reference kernels and against float64.

For one configuration (architecture, size, weights), computes the paper's objective
(content ``conv4_2``, style ``conv1_1 … conv5_1``, as in ``run.py``) at one image with
each kernel set in float32 and with the reference kernels in float64 (the ground
truth), and prints the relative errors of the responses at the loss layers (max |a − b|
/ max |b| over each array, the worst layer), of the loss, and of the gradient ∂L/∂x
(‖a − b‖ / ‖b‖, and max |a − b| / max |b|).

The last one is the exception to "rounding only": where a unit's pre-activation is
within rounding of 0, two float32 computations can disagree on its ReLU mask, and the
gradient through that one unit (its dL/dF times two or three layers of filters) then
differs in a few pixels by up to a few percent of the largest gradient, between any two
float32 implementations (PyTorch's included). The 2-norm error stays at rounding level.

    python benchmarks/accuracy.py --size 256 --arch vgg19
    python benchmarks/accuracy.py --size 256 --arch vgg16 --weights ../shared/weights/vgg16_hed_bsds500.caffemodel
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import refstyle  # noqa: E402
from refstyle.nn.arch import is_conv  # noqa: E402
from run import DEEPEST, PAPER, make_images, make_weights  # noqa: E402



def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def rel2(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def mask_flips(F, G):
    return int(sum(np.count_nonzero((F[n] > 0) != (G[n] > 0)) for n in G))


def evaluate(weights, arch, size, kernels, dtype):
    net = refstyle.VGG(weights, arch=arch, dtype=dtype, kernels=kernels)
    p_rgb, a_rgb, x = make_images(size)
    obj = refstyle.build_objective(net, p_rgb, [a_rgb], PAPER)
    e = obj.evaluate(x.astype(dtype))
    stack = refstyle.ARCHS[arch]
    F_all, _ = net.forward(x.astype(dtype), [n for n in stack[: stack.index(DEEPEST) + 1] if is_conv(n)])
    return {"loss": e.loss, "grad": e.grad, "F": e.F, "F_all": F_all}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--arch", default="vgg19")
    ap.add_argument("--weights", help="a weight file (default: random weights of the real widths)")
    ap.add_argument("-o", "--output", help="write the errors as JSON here")
    args = ap.parse_args(argv)
    weights = make_weights(args.arch, args.weights)
    truth = evaluate(weights, args.arch, args.size, "reference", "float64")
    runs = {k: evaluate(weights, args.arch, args.size, k, "float32") for k in ("reference", "fast", "im2col")}
    rows = []
    for kernels, r in runs.items():
        against = {"float64 reference": truth}
        if kernels != "reference":
            against["float32 reference"] = runs["reference"]
        for what, t in against.items():
            row = {"kernels": kernels, "against": what, "loss": abs(r["loss"] - t["loss"]) / abs(t["loss"]),
                   "grad_2norm": rel2(r["grad"], t["grad"]), "grad_max": rel(r["grad"], t["grad"]),
                   "responses": max(rel(r["F"][n], t["F"][n]) for n in t["F"]),
                   "relu_mask_flips": mask_flips(r["F_all"], t["F_all"])}
            rows.append(row)
            print(f"float32 {kernels:>9} vs {what:<17}: responses {row['responses']:.1e}  loss {row['loss']:.1e}  "
                  f"gradient {row['grad_2norm']:.1e} (2-norm), {row['grad_max']:.1e} (max)  "
                  f"ReLU mask flips (all layers): {row['relu_mask_flips']}")
    if args.output:
        Path(args.output).write_text(json.dumps({"arch": args.arch, "size": args.size, "weights": args.weights or "random (real widths)",
                                                 "errors": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
