"""The VGG16 and VGG19 conv stacks as tables, and the checks against them.

Layer tables are defined once, here, and shared by the network, the weights readers,
the command line and the figures. Names are Caffe's (the 2014 caffemodels'):
``convB_K`` is the ``K``-th 3×3 convolution of block ``B`` (with its ReLU), ``poolB``
the 2×2 pooling that ends block ``B``.
"""

import re

import numpy as np

from ..errors import LayerError, RefstyleError, WeightsError

# Convolutions per block of each architecture.
_BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}


def _stack(convs_per_block):
    names = []
    for block, n in enumerate(convs_per_block, start=1):
        names += [f"conv{block}_{k}" for k in range(1, n + 1)] + [f"pool{block}"]
    return tuple(names)


ARCHS = {arch: _stack(blocks) for arch, blocks in _BLOCKS.items()}
VGG16_LAYERS = ARCHS["vgg16"]
VGG19_LAYERS = ARCHS["vgg19"]

# The number of filters of each block's convolutions in the published networks.
VGG_WIDTHS = (64, 128, 256, 512, 512)

_NAME = re.compile(r"^(conv|pool)([1-5])(?:_([1-4]))?$")


def block_of(name):
    """The block ``B`` (1..5) of a layer ``convB_K`` or ``poolB``."""
    m = _NAME.match(name)
    if m is None:
        raise LayerError(f"{name!r} is not a VGG layer name (convB_K or poolB)")
    return int(m.group(2))


def is_conv(name):
    """Whether a layer of the table is a convolution (with its ReLU), not a pooling."""
    return name.startswith("conv")


def conv_layers(arch):
    """The names of an architecture's convolution layers, in order."""
    return tuple(name for name in ARCHS[arch] if is_conv(name))


# Every VGG convolution name; a file's other convolutions (HED's score-dsn, FCN's fc6) are not the network's.
VGG_CONV_NAMES = frozenset(name for arch in ARCHS for name in conv_layers(arch))


def check_arch(arch):
    """Return ``arch`` if it is a known architecture, else raise a clear error."""
    if arch not in ARCHS:
        raise RefstyleError(f"unknown architecture {arch!r}: choose one of {', '.join(ARCHS)}")
    return arch


# A loss taps a layer after its ReLU (Caffe's in-place ReLU: the name alone, "conv4_2") or before
# it, at the convolution's output z (the name with this suffix, "conv4_2:pre"), as implementations
# built on torchvision's VGG do.
PRE_RELU = ":pre"


def split_tap(tap):
    """``(layer, before_relu)`` of a tap name: ``"conv4_2"`` → ``("conv4_2", False)``, ``"conv4_2:pre"`` → ``(..., True)``."""
    if tap.endswith(PRE_RELU):
        return tap[: -len(PRE_RELU)], True
    return tap, False


def check_layers(names, arch, available=None):
    """Raise :class:`LayerError` for the first name that is not a layer of ``arch`` (or a tap of one).

    ``available`` (a prefix of the architecture's layers, when the weights end early)
    narrows what can be computed. A name may tap a convolution before its ReLU
    (``conv4_2:pre``, :data:`PRE_RELU`).
    """
    arch = check_arch(arch)
    available = ARCHS[arch] if available is None else available
    for tap in names:
        name, pre = split_tap(tap)
        if pre and not is_conv(name):
            raise LayerError(f"{tap!r}: only a convolution has an output before its ReLU, {name!r} is a pooling")
        if name in available:
            continue
        if name in ARCHS[arch]:
            raise LayerError(
                f"layer {name!r} cannot be computed: the weights end at {available[-1]!r}; "
                f"use weights that include {name!r} or a shallower layer"
            )
        others = [a for a in ARCHS if name in ARCHS[a]]
        hint = f" (it is a {others[0]} layer: use --arch {others[0]})" if others else ""
        raise LayerError(
            f"{arch} has no layer {name!r}{hint}; its layers are {', '.join(ARCHS[arch])}"
        )


def computed_layers(arch, convs):
    """The layers a network with the convolutions ``convs`` (a prefix) computes: up to the
    last of them, and the pooling that ends its block (which needs no weights)."""
    table = ARCHS[arch]
    last = table.index(convs[-1])
    if table[last + 1 : last + 2] == (f"pool{block_of(convs[-1])}",):
        last += 1
    return table[: last + 1]


def infer_arch(weights):
    """The architecture that weights record (``meta['arch']``) or imply by their names.

    A fourth conv in block 3, 4 or 5 means VGG19; without one, VGG16 when block 3 has
    its third conv, else (weights that end early) VGG19, the paper's network.
    """
    arch = getattr(weights, "meta", {}).get("arch")
    if arch in ARCHS:
        return arch
    names = set(weights)
    if names & {"conv3_4", "conv4_4", "conv5_4"}:
        return "vgg19"
    if "conv3_3" in names and "conv4_1" in names and "conv3_4" not in names:
        return "vgg16"
    return "vgg19"


def check_weights(weights, arch):
    """Check that ``weights`` fit ``arch``; return the conv layer names they cover.

    They fit when they hold, from ``conv1_1`` on, a prefix of the architecture's
    convolutions and nothing else, each ``W`` of shape ``(out, in, 3, 3)`` with ``in``
    equal to the previous layer's ``out`` (3 for ``conv1_1``) and ``b`` of shape
    ``(out,)``. Raises :class:`WeightsError` naming the first mismatch.
    """
    expected = conv_layers(arch)
    names = list(weights)
    if not names:
        raise WeightsError("the weights hold no convolution layers")
    for name in names:
        if name not in expected:
            others = [a for a in ARCHS if name in ARCHS[a]]
            hint = f": these look like {others[0]} weights, use --arch {others[0]}" if others else ""
            raise WeightsError(f"the weights have a layer {name!r} that {arch} lacks{hint}")
    covered = expected[: len(names)]
    for i, name in enumerate(covered):
        if name not in weights:
            if i == 0:
                raise WeightsError(
                    f"the weights lack {name!r}, the first layer of {arch}: they start at {names[0]!r}; "
                    "give weights of the whole network from conv1_1 on"
                )
            hint = ""
            if name.endswith("_4") and arch == "vgg19":
                hint = ": these look like vgg16 weights, use --arch vgg16"
            raise WeightsError(f"the weights lack {name!r}, which {arch} needs after {covered[i - 1]!r}{hint}")
    prev_out = 3
    for name in covered:
        W, b = weights[name]
        W_shape, b_shape = tuple(np.shape(W)), tuple(np.shape(b))
        if len(W_shape) != 4 or W_shape[1:] != (prev_out, 3, 3):
            raise WeightsError(
                f"{name}: filters of shape {W_shape} do not fit {arch}: expected (out, {prev_out}, 3, 3)"
            )
        if b_shape != (W_shape[0],):
            raise WeightsError(f"{name}: bias of shape {b_shape} does not fit {W_shape[0]} filters")
        prev_out = W_shape[0]
    return covered


def conv_position(name):
    """``(B, K)`` of ``convB_K``: sorts convolution names in network order."""
    m = _NAME.match(name)
    if m is None or m.group(1) != "conv":
        raise LayerError(f"{name!r} is not a VGG convolution name (convB_K)")
    return int(m.group(2)), int(m.group(3))
