r"""How much each style layer pulls, for a network and the figures' images: the check behind the figures' network.

For each weights file and each painting it prints the paper's style loss of each style
layer with the photograph as the image :math:`\vec x`,

.. math::
    E_l = \frac{1}{4 N_l^2 M_l^2} \sum_{ij} (G^l_{ij} - A^l_{ij})^2,

and the share of the largest channel :math:`i` in it, :math:`\sum_j (G-A)^2_{ij} / \sum_{ij} (G-A)^2`.
The paper's normalised network makes every filter's mean response 1, so that the layers
pull together; a filter whose mean was measured near 0 is scaled up by its inverse, and on
a painting where it fires its one channel holds nearly all of its layer's :math:`E_l`
(a share near 100%). Computed with average pooling (the paper's), in float64, with
:math:`A^l` from the painting at the photograph's size (its Gram matrix scaled by
:math:`M_l / M_l^a`, as the style term sees it).

    python figures/style_shares.py vgg19-paper.npz --size 256
    python figures/style_shares.py a.npz b.npz --paintings starry_night.jpg composition_vii.jpg
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from refstyle import Settings, build_network, load_image, preprocess, resize_longer  # noqa: E402
from refstyle.paper.losses import as_matrix  # noqa: E402

STYLE_LAYERS = Settings().resolved().style_layers  # the paper's


def responses(net, rgb, size):
    x = preprocess(resize_longer(rgb, size), "float64")
    F, _ = net.forward(x, list(STYLE_LAYERS))
    return {name: as_matrix(F[name]) for name in STYLE_LAYERS}


def shares(P, S):
    """``{layer: (E_l, the largest channel's share of it)}`` with the photograph's responses ``P`` as x."""
    out = {}
    for name in STYLE_LAYERS:
        N, M = P[name].shape
        G = P[name] @ P[name].T
        A = S[name] @ S[name].T * (M / S[name].shape[1])
        D = (G - A) ** 2
        out[name] = (D.sum() / (4 * N**2 * M**2), D.sum(axis=1).max() / D.sum())
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", nargs="+", help="weights files (or known names)")
    parser.add_argument("--images", default=os.environ.get("REFSTYLE_SHARED", "../shared") + "/images")
    parser.add_argument("--photo", default="tubingen.jpg")
    parser.add_argument("--paintings", nargs="+", default=["starry_night.jpg", "composition_vii.jpg"])
    parser.add_argument("--size", type=int, default=256, help="longer side in pixels (default 256)")
    args = parser.parse_args(argv)
    for weights in args.weights:
        net = build_network(weights, Settings().resolved(), dtype="float64")
        P = responses(net, load_image(os.path.join(args.images, args.photo)), args.size)
        print(f"{weights}  ({args.photo} as x, {args.size} px, average pooling)")
        print(f"  {'painting':<22}" + "".join(f"{name:>18}" for name in STYLE_LAYERS))
        for painting in args.paintings:
            S = responses(net, load_image(os.path.join(args.images, painting)), args.size)
            row = shares(P, S)
            print(f"  {painting:<22}" + "".join(f"{E:>10.3g} ({share:4.0%})" for E, share in row.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
