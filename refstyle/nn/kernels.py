r"""The kernel sets: each an object holding one way of computing the VGG layers.

:class:`refstyle.nn.vgg.VGG` runs one loop over its layer table, forward and backward,
and asks its kernel set for each step: enter the image, a conv layer with its ReLU, a
pooling, and the way back. Two sets exist:

- :class:`ReferenceKernels` (``"reference"``): :mod:`refstyle.nn.layers` on Caffe's
  ``N×C×H×W`` blobs, the readable definitions; the ReLU mask is applied in
  :func:`~refstyle.nn.layers.relu_backward`;
- :class:`FastKernels` (``"fast"`` with Winograd, ``"im2col"`` with channels-last
  im2col): :mod:`refstyle.nn.fast`, channels-last blobs inside the network; the same
  mask, kept as bits, is applied as the gradient is copied into a padded band.

Either way the responses and gradients come in and go out as Caffe blobs, and the
sets compute the same function (in float32 they differ by rounding, about 1e-6
relative through the network).
"""

from typing import NamedTuple

from . import fast
from . import layers as L

# The kernel sets a VGG can compute with, by name: the list of choices, written once.
KERNELS = ("reference", "fast", "im2col")


class ConvReluCache(NamedTuple):
    """The reference kernels' cache of a conv layer and its in-place ReLU."""

    conv: L.ConvCache
    relu: L.ReluCache


def conv_relu_forward(x, W, b):
    """A conv layer and its in-place ReLU: the response ``F = max(conv(x) + b, 0)``."""
    z, conv_cache = L.conv_forward(x, W, b)
    F, relu_cache = L.relu_forward(z)
    return F, ConvReluCache(conv_cache, relu_cache)


def conv_relu_backward(dF, cache):
    """Back through the ReLU (the ``F > 0`` mask), then through the convolution."""
    return L.conv_backward(L.relu_backward(dF, cache.relu), cache.conv)


class ReferenceKernels:
    """:mod:`refstyle.nn.layers` on Caffe blobs: what the network computes, written to be read."""

    name = "reference"

    def __init__(self, params, xp):
        self.params = params  # {conv name: (W, b)} on the device

    def enter(self, x):
        """The image as the kernels hold blobs: Caffe's layout, as it is."""
        return x

    def blob_shape(self, h):
        return tuple(h.shape)

    def response(self, h):
        return h

    def conv_relu_forward(self, name, h):
        return conv_relu_forward(h, *self.params[name])

    def conv_relu_backward(self, d, cache):
        return conv_relu_backward(d, cache)

    def pool_forward(self, h, mode):
        return L.pool_forward(h, mode)

    def pool_backward(self, d, cache):
        return L.pool_backward(d, cache)

    def add_gradient(self, d, g):
        """``d + g``, where ``g`` is a gradient given at a layer (a Caffe blob) and ``d`` is None or the one carried down."""
        return g if d is None else d + g

    def leave(self, d):
        """The gradient at the image as a Caffe blob."""
        return d


class FastKernels:
    """:mod:`refstyle.nn.fast`: channels-last ``(H, W, C)`` blobs inside, Winograd or im2col convolutions.

    Each layer's filters are prepared once (:func:`~refstyle.nn.fast.conv_plan`), and one
    :class:`~refstyle.nn.fast.Workspace` holds the scratch memory between calls.
    """

    def __init__(self, params, xp, method="winograd"):
        self.name = "fast" if method == "winograd" else "im2col"
        self.params = params
        self.plans = {name: fast.conv_plan(W, b, method) for name, (W, b) in params.items()}
        self.workspace = fast.Workspace(xp)

    def enter(self, x):
        return fast.hwc_view(x)

    def blob_shape(self, h):
        return (1, h.shape[2], h.shape[0], h.shape[1])

    def response(self, h):
        # the blob's shape with channels-last memory: no copy, unless a cropped view (odd
        # width) would make every matrix view of it a copy
        return fast.nchw_view(h) if h.flags.c_contiguous else fast.nchw(h)

    def conv_relu_forward(self, name, h):
        return fast.conv_relu_forward(h, self.plans[name], self.workspace)

    def conv_relu_backward(self, d, cache):
        return fast.conv_relu_backward(d, cache, self.workspace)

    def pool_forward(self, h, mode):
        return fast.pool_forward(h, mode)

    def pool_backward(self, d, cache):
        return fast.pool_backward(d, cache)

    def add_gradient(self, d, g):
        """``d + g`` for a Caffe blob ``g``; the gradients given are never written to."""
        return fast.to_hwc(g) if d is None else fast.add_nchw(d, g)

    def leave(self, d):
        return fast.nchw(d)


def kernel_set(name, params, xp):
    """The kernel set called ``name`` (one of :data:`KERNELS`) over the prepared ``params``."""
    if name == "reference":
        return ReferenceKernels(params, xp)
    return FastKernels(params, xp, method="winograd" if name == "fast" else "im2col")
