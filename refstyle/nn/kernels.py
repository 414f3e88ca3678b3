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
relative through the network). Both can hand out a convolution's output before its ReLU
(a loss that taps it there), take a gradient there, and pool with floor rounding
(the odd last row or column left out, as PyTorch does) instead of Caffe's ceil.
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


class PoolStep(NamedTuple):
    """A pooling's cache, and the shape of its input before a floor rounding cropped it (else None)."""

    cache: object
    full_shape: tuple


def conv_relu_forward(x, W, b):
    """A conv layer and its in-place ReLU: ``(F, z, cache)``, the response ``F = max(z, 0)`` of ``z = conv(x) + b``."""
    z, conv_cache = L.conv_forward(x, W, b)
    F, relu_cache = L.relu_forward(z)
    return F, z, ConvReluCache(conv_cache, relu_cache)


def conv_relu_backward(dF, cache, dz=None):
    """Back through the ReLU (the ``F > 0`` mask), add ``dz`` (a gradient at ``z``), then through the convolution."""
    d = None if dF is None else L.relu_backward(dF, cache.relu)
    if dz is not None:
        d = dz if d is None else d + dz
    return L.conv_backward(d, cache.conv)


class ReferenceKernels:
    """:mod:`refstyle.nn.layers` on Caffe blobs: what the network computes, written to be read."""

    name = "reference"

    def __init__(self, params, xp):
        self.params = params  # {conv name: (W, b)} on the device
        self.xp = xp

    def enter(self, x):
        """The image as the kernels hold blobs: Caffe's layout, as it is."""
        return x

    def blob_shape(self, h):
        return tuple(h.shape)

    def response(self, h):
        return h

    def conv_relu_forward(self, name, h, keep_z=False):
        """``(F, z, cache)``: the response after the ReLU, and with ``keep_z`` the convolution's output before it."""
        F, z, cache = conv_relu_forward(h, *self.params[name])
        return F, (z if keep_z else None), cache

    def conv_relu_backward(self, d, cache, dz=None):
        return conv_relu_backward(d, cache, dz)

    def pool_forward(self, h, mode, rounding="ceil"):
        full = None
        if rounding == "floor" and L.floor_crop(h.shape) != tuple(h.shape[2:]):
            full = tuple(h.shape)
            H, W = L.floor_crop(h.shape)
            h = h[:, :, :H, :W]
        y, cache = L.pool_forward(h, mode)
        return y, PoolStep(cache, full)

    def pool_backward(self, d, step):
        dx = L.pool_backward(d, step.cache)
        if step.full_shape is None:
            return dx
        out = self.xp.zeros(step.full_shape, dtype=dx.dtype)  # the rows floor rounding left out get no gradient
        out[:, :, : dx.shape[2], : dx.shape[3]] = dx
        return out

    def blob(self, g):
        """A gradient given as a Caffe blob, in the kernels' own layout."""
        return g

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

    def __init__(self, params, xp, method="winograd", threads=None):
        self.name = "fast" if method == "winograd" else "im2col"
        self.params, self.xp = params, xp
        self.plans = {name: fast.conv_plan(W, b, method) for name, (W, b) in params.items()}
        self.workspace = fast.Workspace(xp, threads)

    @property
    def threads(self):
        """How many bands of a layer run at once, on as many cores (:class:`~refstyle.nn.fast.Workspace`):
        by default the cores this process may use; always 1 on a GPU."""
        return self.workspace.threads

    @threads.setter
    def threads(self, n):
        self.workspace.threads = n

    def enter(self, x):
        return fast.hwc_view(x)

    def blob_shape(self, h):
        return (1, h.shape[2], h.shape[0], h.shape[1])

    def response(self, h):
        # the blob's shape with channels-last memory: no copy, unless a cropped view (odd
        # width) would make every matrix view of it a copy
        return fast.nchw_view(h) if h.flags.c_contiguous else fast.nchw(h)

    def conv_relu_forward(self, name, h, keep_z=False):
        if keep_z:
            return fast.conv_relu_forward_with_z(h, self.plans[name], self.workspace)
        F, cache = fast.conv_relu_forward(h, self.plans[name], self.workspace)
        return F, None, cache

    def conv_relu_backward(self, d, cache, dz=None):
        return fast.conv_relu_backward(d, cache, self.workspace, dz=dz)

    def pool_forward(self, h, mode, rounding="ceil"):
        full = None
        H, W = L.floor_crop(h.shape[:2])  # channels last: (H, W, C)
        if rounding == "floor" and (H, W) != tuple(h.shape[:2]):
            full, h = tuple(h.shape), h[:H, :W]
        y, cache = fast.pool_forward(h, mode, self.workspace)
        return y, PoolStep(cache, full)

    def pool_backward(self, d, step):
        dx = fast.pool_backward(d, step.cache, self.workspace)
        if step.full_shape is None:
            return dx
        out = self.xp.zeros(step.full_shape, dtype=dx.dtype)  # the rows floor rounding left out get no gradient
        out[: dx.shape[0], : dx.shape[1]] = dx
        return out

    def blob(self, g):
        return fast.to_hwc(g)

    def add_gradient(self, d, g):
        """``d + g`` for a Caffe blob ``g``; the gradients given are never written to."""
        return fast.to_hwc(g) if d is None else fast.add_nchw(d, g, self.workspace)

    def leave(self, d):
        return fast.nchw(d)


def kernel_set(name, params, xp):
    """The kernel set called ``name`` (one of :data:`KERNELS`) over the prepared ``params``."""
    if name == "reference":
        return ReferenceKernels(params, xp)
    return FastKernels(params, xp, method="winograd" if name == "fast" else "im2col")
