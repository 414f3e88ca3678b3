"""The input conventions a VGG's weights can expect, as data.

A convention says how the network's input is made from an image's pixels in 0..255:
the channel order, the range the pixels are scaled to, a mean subtracted and, for
torchvision, a standard deviation divided by (see
:func:`refstyle.weights.fold.to_caffe_input` for the formula). refstyle's network takes
Caffe's input (SPEC §1) unless told otherwise; weights trained on another input have
their convention folded into ``conv1_1``.
"""

import numpy as np

# The ILSVRC mean pixel of the VGG release, in BGR order (B 103.939, G 116.779, R 123.68).
# Not the mean image averaged (104.007, 116.669, 122.679) that some ports use.
MEAN_BGR = (103.939, 116.779, 123.68)

# What the network expects of its input; recorded with converted weights (SPEC §1).
CAFFE_INPUT = {"channels": "BGR", "range": [0, 255], "mean": list(MEAN_BGR)}

# torchvision.models.vgg: transforms.Normalize(mean, std) on RGB in 0..1.
TORCHVISION_INPUT = {
    "channels": "RGB",
    "range": [0, 1],
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}


def _numbers(n, v):
    return (isinstance(v, list) and len(v) == n
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v))


def is_input_convention(v):
    """Whether ``v`` has the form of a convention: ``channels``, ``range``, ``mean`` and optionally ``std``."""
    return (isinstance(v, dict) and {"channels", "range", "mean"} <= set(v) <= {"channels", "range", "mean", "std"}
            and v["channels"] in ("BGR", "RGB") and _numbers(2, v["range"]) and _numbers(3, v["mean"])
            and ("std" not in v or (_numbers(3, v["std"]) and all(x > 0 for x in v["std"]))))


def is_caffe_input(convention):
    """True when ``convention`` is Caffe's input (BGR, 0..255, its mean pixel to 1e-9, no std): nothing to fold."""
    return (
        convention.get("channels", "BGR").upper() == CAFFE_INPUT["channels"]
        and list(convention.get("range", [0, 255])) == list(CAFFE_INPUT["range"])
        and np.allclose(convention.get("mean", [0, 0, 0]), CAFFE_INPUT["mean"], rtol=0, atol=1e-9)
        and np.all(np.asarray(convention.get("std", [1, 1, 1])) == 1)
    )


def pixel_text(values):
    """``(v1, v2, v3)`` to 6 significant digits, for messages."""
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def describe_input(convention):
    """One line: ``RGB 0..1 minus (0.485, 0.456, 0.406) divided by (0.229, 0.224, 0.225)``."""
    std = convention.get("std")
    low, high = convention["range"]
    text = f"{convention['channels']} {low}..{high} minus {pixel_text(convention['mean'])}"
    return text + (f" divided by {pixel_text(std)}" if std is not None else "")
