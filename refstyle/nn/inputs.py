"""The input conventions a VGG's weights can expect, as data.

A convention says how the network's input is made from an image's pixels in 0..255:
the channel order, the range the pixels are scaled to, a mean subtracted and, for
torchvision, a standard deviation divided by (see
:func:`refstyle.weights.fold.to_caffe_input` for the formula). refstyle's network takes
Caffe's input (SPEC §1) unless told otherwise; weights trained on another input have
their convention folded into ``conv1_1``.
"""

from typing import NamedTuple

import numpy as np

from ..errors import RefstyleError

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
            and v["channels"] in ("BGR", "RGB") and _numbers(2, v["range"]) and v["range"][0] == 0
            and v["range"][1] > 0 and _numbers(3, v["mean"])
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


# Other image spaces that implementations optimise their image in.
LUA_INPUT = {"channels": "BGR", "range": [0, 256], "mean": list(MEAN_BGR)}  # jcjohnson/neural-style: ×256
RGB01_INPUT = {"channels": "RGB", "range": [0, 1], "mean": [0.0, 0.0, 0.0]}  # torchvision's images before Normalize
INPUTS = {"caffe": CAFFE_INPUT, "lua": LUA_INPUT, "torchvision": TORCHVISION_INPUT, "rgb01": RGB01_INPUT}


def input_by_name(name):
    """A named input convention (:data:`INPUTS`), or a clear error listing them."""
    if name not in INPUTS:
        raise RefstyleError(f"unknown input convention {name!r}: choose one of {', '.join(INPUTS)}")
    return INPUTS[name]


def name_of_input(convention):
    """The name in :data:`INPUTS` of a convention with the same numbers, or None."""
    for name, known in INPUTS.items():
        if (known["channels"] == convention.get("channels") and list(known["range"]) == list(convention["range"])
                and np.allclose(known["mean"], convention["mean"], rtol=0, atol=1e-9)
                and np.allclose(known.get("std", [1, 1, 1]), convention.get("std", [1, 1, 1]), rtol=0, atol=1e-12)):
            return name
    return None


class Affine(NamedTuple):
    r"""An image space as a map from pixels: :math:`x_k = a_k\, p_{\pi(k)} + c_k`, :math:`p` BGR in 0..255.

    From a space's :math:`x_k = (s\, p_{\pi(k)} - m_k)/\sigma_k` with :math:`s` = ``range[1]``/255:
    :math:`a_k = s/\sigma_k`, :math:`c_k = -m_k/\sigma_k`; ``order[k]`` :math:`= \pi(k)` is the BGR
    index of channel :math:`k`. The one place an image space becomes arithmetic: preprocessing
    and its inverse (:mod:`refstyle.paper.images`), the input stage below, the fold of a space
    into ``conv1_1`` (:mod:`refstyle.weights.fold`) and a record's mean taken from the weights
    all derive from it.
    """

    order: list
    a: np.ndarray
    c: np.ndarray

    def mean_pixel(self):
        r"""The BGR pixel (0..255) that the space maps to 0: :math:`p_{\pi(k)} = -c_k/a_k`."""
        q = np.empty(3)
        q[self.order] = -self.c / self.a
        return q


def affine(space):
    """The :class:`Affine` of an image space (``channels``, ``range``, ``mean``, optional ``std``)."""
    channels = space["channels"].upper()
    if sorted(channels) != sorted("BGR"):
        raise RefstyleError(f"an image space with channels {channels!r}: expected RGB or BGR")
    if space["range"][0] != 0:
        raise RefstyleError(f"an image space with range {space['range']}: expected one starting at 0")
    s = float(space["range"][1]) / 255.0
    sigma = np.asarray(space.get("std", [1.0, 1.0, 1.0]), dtype=np.float64)
    m = np.asarray(space["mean"], dtype=np.float64)
    return Affine(["BGR".index(ch) for ch in channels], s / sigma, -m / sigma)


def with_mean_pixel(space, pixel_bgr):
    """``space`` (without a std) with the mean that maps the BGR pixel ``pixel_bgr`` (0..255) to 0."""
    if "std" in space:
        raise RefstyleError("a mean pixel cannot be set in an image space that divides by a std")
    t = affine({**space, "mean": [0.0, 0.0, 0.0]})
    return {**space, "mean": [float(a * pixel_bgr[i]) for a, i in zip(t.a, t.order)]}


class InputStage:
    r"""The exact map from one image space to another, the network's first step.

    An image :math:`x` in the space ``src`` (the one being optimised: Caffe's, an
    implementation's own) becomes the input :math:`x'` of the space ``dst`` that the
    weights take, channel by channel:

    .. math:: x'_k = \frac{a'_k}{a_i} (x_i - c_i) + c'_k, \qquad i = \pi^{-1}(\pi'(k))

    with :func:`affine`'s :math:`a, c, \pi` of each space. It runs before ``conv1_1``, so
    the zero padding is in the weights' own space, as in the implementation they come from
    (which a fold into ``conv1_1`` cannot give on the border). Its backward is the
    transpose: :math:`\partial L/\partial x_i = (a'_k/a_i)\, \partial L/\partial x'_k`.
    When the two spaces are the same it does nothing.
    """

    def __init__(self, src, dst):
        pi, a, c = affine(src)
        pi2, a2, c2 = affine(dst)
        self.src, self.dst = dict(src), dict(dst)
        self.index = [pi.index(pi2[k]) for k in range(3)]  # the source channel of each target channel
        self.scale = [float(a2[k] / a[i]) for k, i in enumerate(self.index)]
        self.offset = [float(c2[k] - a2[k] * c[i] / a[i]) for k, i in enumerate(self.index)]
        self.identity = (self.index == [0, 1, 2] and np.allclose(self.scale, 1, rtol=0, atol=1e-12)
                         and np.allclose(self.offset, 0, rtol=0, atol=1e-9))

    def __repr__(self):
        return f"{describe_input(self.src)} -> {describe_input(self.dst)}"

    def forward(self, x):
        """``x`` (1, 3, H, W) in the source space → the weights' space (a new array; ``x`` itself when identical)."""
        if self.identity:
            return x
        out = x.copy()
        for k, i in enumerate(self.index):
            out[:, k] = x[:, i] * self.scale[k] + self.offset[k]
        return out

    def backward(self, dx):
        """The gradient at the weights' input → at the source image (the transpose of :meth:`forward`)."""
        if self.identity:
            return dx
        out = dx.copy()
        for k, i in enumerate(self.index):
            out[:, i] = dx[:, k] * self.scale[k]
        return out
