"""Make the walkthrough's pictures in docs/img/ with the real VGG16 weights.

    python docs/make_pictures.py [SHARED]     # SHARED: the folder with weights/ and images/ (default ../shared)

- feature_maps.png: the photograph and eight of its conv1_1 and conv3_1 response maps F^l;
- gram.png: the Gram matrices G^l of conv1_1 for the photograph and for The Starry Night;
- reconstruction.png: the content reconstruction from conv2_1 after 0, 10, 50 and 200 L-BFGS iterations.
"""

import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import refstyle  # noqa: E402
from refstyle.paper.images import resize_longer, white_noise  # noqa: E402
from refstyle.io import atomic_path  # noqa: E402
from refstyle.paper.optimize import lbfgs  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "img")


def save(fig, name):
    os.makedirs(OUT, exist_ok=True)
    with atomic_path(os.path.join(OUT, name)) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    print("wrote", os.path.join(OUT, name))


def main(shared):
    net = refstyle.VGG(refstyle.load_weights(os.path.join(shared, "weights", "vgg16_hed_bsds500.caffemodel")))
    photo = resize_longer(refstyle.load_image(os.path.join(shared, "images", "tubingen.jpg")), 128)
    art = resize_longer(refstyle.load_image(os.path.join(shared, "images", "starry_night.jpg")), 128)
    p, a = refstyle.preprocess(photo), refstyle.preprocess(art)

    F, _ = net.forward(p, ["conv1_1", "conv3_1"])
    fig, axes = plt.subplots(2, 9, figsize=(16, 3.4))
    for row, name in enumerate(["conv1_1", "conv3_1"]):
        axes[row][0].imshow(photo)
        axes[row][0].set_title("photograph" if row == 0 else "", fontsize=8)
        for k in range(8):
            axes[row][k + 1].imshow(F[name][0, k], cmap="gray")
            axes[row][k + 1].set_title(f"{name} map {k}", fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    save(fig, "feature_maps.png")

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for ax, (title, image) in zip(axes, [("photograph", p), ("The Starry Night", a)]):
        G = refstyle.gram(net.forward(image, ["conv1_1"])[0]["conv1_1"])
        shown = ax.imshow(np.log10(np.maximum(G, 1.0)), cmap="viridis")
        ax.set_title(f"log10 G of conv1_1, {title} ({G.shape[0]}×{G.shape[1]})", fontsize=8)
        ax.set_axis_off()
        fig.colorbar(shown, ax=ax, fraction=0.046)
    save(fig, "gram.png")

    objective = refstyle.Objective(net, refstyle.content_targets(net, p, ["conv2_1"]), {}, alpha=1.0, beta=0.0)
    x = white_noise(photo.shape[:2], seed=0)
    shots = {0: x}
    for n in (10, 50, 200):
        shots[n] = lbfgs(objective, x, iters=n, bounds=(float(p.min()), float(p.max()))).x
    fig, axes = plt.subplots(1, 5, figsize=(15, 2.6))
    axes[0].imshow(photo)
    axes[0].set_title("photograph", fontsize=8)
    for ax, (n, image) in zip(axes[1:], shots.items()):
        ax.imshow(refstyle.paper.images.to_uint8(refstyle.deprocess(image)))
        ax.set_title(f"from conv2_1, {n} iterations", fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    save(fig, "reconstruction.png")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "shared"))
