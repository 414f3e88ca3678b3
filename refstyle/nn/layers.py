r"""The layers of the VGG conv stack, each a pair of pure functions.

``*_forward(x, ...) -> (y, cache)`` computes the layer; ``*_backward(dy, cache) -> dx``
back-propagates the gradient of a scalar loss from the layer's output ``y`` to its
input ``x``. The cache is a small NamedTuple holding exactly what the backward needs
and nothing else. Blobs are ``N×C×H×W`` (Caffe's layout); every function works on
NumPy or CuPy arrays (``xp`` is taken from the input) in float32 or float64, and never
writes into its inputs.

Only the gradient with respect to the *input* is computed: style transfer optimises
the image, never the weights (SPEC §2).

Beside each vectorised kernel stands a slow, obviously-correct loop version
(``*_naive``); the tests hold the two against each other and against finite
differences.
"""

import math
from typing import NamedTuple

import numpy as np

from ..backend import array_module

# ---------------------------------------------------------------------------
# 3×3 convolution, pad 1, stride 1
# ---------------------------------------------------------------------------


class ConvCache(NamedTuple):
    W: object  # the filters, (out, in, 3, 3)


def _correlate3x3(x, W):
    r"""Cross-correlate ``x`` (N×C×H×W) with 3×3 filters ``W`` (O×C×3×3), zero pad 1.

    im2col: the nine shifted copies of the padded input are stacked into a
    ``(N, C·9, H·W)`` matrix, so the correlation is one matrix product with
    ``W`` viewed as ``(O, C·9)``.
    """
    xp = array_module(x)
    N, C, H, Wd = x.shape
    O = W.shape[0]
    xpad = xp.zeros((N, C, H + 2, Wd + 2), dtype=x.dtype)
    xpad[:, :, 1:-1, 1:-1] = x
    cols = xp.empty((N, C, 3, 3, H, Wd), dtype=x.dtype)
    for ky in range(3):
        for kx in range(3):
            cols[:, :, ky, kx] = xpad[:, :, ky : ky + H, kx : kx + Wd]
    y = xp.matmul(W.reshape(O, C * 9), cols.reshape(N, C * 9, H * Wd))
    return y.reshape(N, O, H, Wd)


def conv_forward(x, W, b):
    r"""Caffe's 3×3 convolution with pad 1 and stride 1 (a cross-correlation).

    .. math:: y_{n,o,i,j} = b_o + \sum_{c}\sum_{u,v=0}^{2} W_{o,c,u,v}\, x_{n,c,i+u-1,j+v-1}

    with ``x`` taken as 0 outside the image. Shapes: ``x`` (N, C, H, W),
    ``W`` (O, C, 3, 3), ``b`` (O,), ``y`` (N, O, H, W).
    """
    y = _correlate3x3(x, W)
    y += b.reshape(1, -1, 1, 1)
    return y, ConvCache(W)


def conv_backward(dy, cache):
    r"""Gradient of a 3×3 pad-1 convolution with respect to its input.

    .. math:: \frac{\partial L}{\partial x_{n,c,i,j}}
              = \sum_{o}\sum_{u,v} W_{o,c,u,v}\, \frac{\partial L}{\partial y_{n,o,i-u+1,j-v+1}}

    which is itself a pad-1 cross-correlation of ``dy`` with the filters flipped in
    both spatial axes and with input and output channels swapped:
    ``W'[c, o, u, v] = W[o, c, 2-u, 2-v]``.
    """
    W = cache.W
    W_flipped = W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    return _correlate3x3(dy, array_module(W).ascontiguousarray(W_flipped))


def conv_forward_naive(x, W, b):
    """Loop version of :func:`conv_forward` (NumPy only; for tests)."""
    N, C, H, Wd = x.shape
    O = W.shape[0]
    xpad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = np.empty((N, O, H, Wd), dtype=x.dtype)
    for n in range(N):
        for o in range(O):
            for i in range(H):
                for j in range(Wd):
                    y[n, o, i, j] = b[o] + np.sum(W[o] * xpad[n, :, i : i + 3, j : j + 3])
    return y


def conv_backward_naive(dy, W, x_shape):
    """Loop version of :func:`conv_backward`: scatter each output's gradient back."""
    N, C, H, Wd = x_shape
    dxpad = np.zeros((N, C, H + 2, Wd + 2), dtype=dy.dtype)
    for n in range(N):
        for o in range(W.shape[0]):
            for i in range(H):
                for j in range(Wd):
                    dxpad[n, :, i : i + 3, j : j + 3] += W[o] * dy[n, o, i, j]
    return dxpad[:, :, 1:-1, 1:-1]


# ---------------------------------------------------------------------------
# ReLU
# ---------------------------------------------------------------------------


class ReluCache(NamedTuple):
    y: object  # the output max(x, 0); where it is > 0 the gradient passes


def relu_forward(x):
    r"""Rectified linear unit, :math:`y = \max(x, 0)`."""
    xp = array_module(x)
    y = xp.maximum(x, 0)
    return y, ReluCache(y)


def relu_backward(dy, cache):
    r"""Gradient of the ReLU: :math:`\partial L/\partial x = \partial L/\partial y \cdot [x > 0]`.

    Caffe's rule: the gradient is 0 where the input is exactly 0. This is the only
    place in refstyle where the "where :math:`F_{ij} > 0`" masks of the paper's loss
    derivatives are applied.
    """
    return dy * (cache.y > 0)


# ---------------------------------------------------------------------------
# 2×2 stride-2 pooling with Caffe's rules
# ---------------------------------------------------------------------------

POOLINGS = ("avg", "max")
# How a pooling's output size is rounded for an odd side: Caffe's ceil (the last row gets a
# window of its own) or floor (PyTorch's and TensorFlow's default: the last row is dropped).
ROUNDINGS = ("ceil", "floor")


def floor_crop(shape):
    """The even ``(H, W)`` that floor rounding pools: an odd last row or column is left out."""
    return 2 * (shape[-2] // 2), 2 * (shape[-1] // 2)


def pool_output_size(n):
    """Caffe's pooled size of an axis of length ``n`` (kernel 2, stride 2, pad 0).

    ``ceil((n - 2) / 2) + 1``: ceil mode, so an odd ``n`` keeps its last row or column
    in a window of its own (PyTorch and TensorFlow floor by default and drop it).
    """
    return math.ceil((n - 2) / 2) + 1


class PoolCache(NamedTuple):
    x_shape: tuple
    mode: str
    counts: object = None  # avg: the number of in-image cells of each window, (Ho, Wo)
    argmax: object = None  # max: the index 0..3 of each window's first maximum in row-major order, (N, C, Ho, Wo)


def _windows(x, fill):
    """View ``x`` (N, C, H, W) as (N, C, Ho, Wo, 4) 2×2 windows in row-major order.

    Odd sizes are padded at the end with ``fill`` so that the last windows, which in
    Caffe hang over the edge, exist.
    """
    xp = array_module(x)
    N, C, H, W = x.shape
    Ho, Wo = pool_output_size(H), pool_output_size(W)
    if (2 * Ho, 2 * Wo) != (H, W):
        xpad = xp.full((N, C, 2 * Ho, 2 * Wo), fill, dtype=x.dtype)
        xpad[:, :, :H, :W] = x
        x = xpad
    win = x.reshape(N, C, Ho, 2, Wo, 2).transpose(0, 1, 2, 4, 3, 5)
    return win.reshape(N, C, Ho, Wo, 4)


def _unwindow(win, x_shape):
    """Inverse of :func:`_windows`: (N, C, Ho, Wo, 4) back to (N, C, H, W), cropped."""
    N, C, Ho, Wo, _ = win.shape
    x = win.reshape(N, C, Ho, Wo, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(N, C, 2 * Ho, 2 * Wo)
    H, W = x_shape[2:]
    return x[:, :, :H, :W]


def _in_image_counts(xp, H, W, dtype):
    """Number of cells of each 2×2 window that lie inside an H×W input: 4, 2 or 1."""
    Ho, Wo = pool_output_size(H), pool_output_size(W)
    rows = xp.minimum(2 * xp.arange(Ho) + 2, H) - 2 * xp.arange(Ho)
    cols = xp.minimum(2 * xp.arange(Wo) + 2, W) - 2 * xp.arange(Wo)
    return (rows[:, None] * cols[None, :]).astype(dtype)


def pool_forward(x, mode):
    r"""2×2 stride-2 pooling, ``mode`` ``"avg"`` (the paper's choice) or ``"max"``.

    Output size ``ceil((H-2)/2)+1`` × ``ceil((W-2)/2)+1``. For window :math:`R_{ij}`
    (its cells that lie inside the input):

    - avg: :math:`y_{ij} = \frac{1}{|R_{ij}|} \sum_{(u,v)\in R_{ij}} x_{uv}` — the divisor
      counts only in-image cells, so an edge window of 2 cells averages those 2;
    - max: :math:`y_{ij} = \max_{(u,v)\in R_{ij}} x_{uv}`, remembering the first maximum in
      row-major window order for the backward.
    """
    xp = array_module(x)
    H, W = x.shape[2:]
    if mode == "avg":
        counts = _in_image_counts(xp, H, W, x.dtype)
        y = _windows(x, 0).sum(axis=-1) / counts
        return y, PoolCache(x.shape, mode, counts=counts)
    if mode == "max":
        win = _windows(x, -xp.inf)
        argmax = win.argmax(axis=-1)  # argmax returns the first maximum, as Caffe's strict ">"
        y = xp.take_along_axis(win, argmax[..., None], axis=-1)[..., 0]
        return y, PoolCache(x.shape, mode, argmax=argmax.astype(xp.uint8))
    raise ValueError(f"pooling mode must be one of {POOLINGS}, not {mode!r}")


def pool_backward(dy, cache):
    r"""Gradient of :func:`pool_forward` with respect to its input.

    - avg: each in-image cell of window :math:`R_{ij}` receives :math:`dy_{ij}/|R_{ij}|`;
    - max: the first maximum of each window receives :math:`dy_{ij}`, the other cells 0.
    """
    xp = array_module(dy)
    if cache.mode == "avg":
        share = dy / cache.counts
        win = xp.broadcast_to(share[..., None], share.shape + (4,))
    else:
        win = (xp.arange(4, dtype=xp.uint8) == cache.argmax[..., None]) * dy[..., None]
    return xp.ascontiguousarray(_unwindow(win, cache.x_shape))


def pool_forward_naive(x, mode):
    """Loop version of :func:`pool_forward`, written like Caffe's CPU kernel (NumPy only)."""
    N, C, H, W = x.shape
    Ho, Wo = pool_output_size(H), pool_output_size(W)
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    hs, ws = 2 * i, 2 * j
                    he, we = min(hs + 2, H), min(ws + 2, W)
                    cells = [x[n, c, u, v] for u in range(hs, he) for v in range(ws, we)]
                    if mode == "avg":
                        y[n, c, i, j] = sum(cells) / len(cells)
                    else:
                        best = cells[0]
                        for value in cells[1:]:
                            if value > best:  # strict: the first maximum wins
                                best = value
                        y[n, c, i, j] = best
    return y


def pool_backward_naive(dy, x, mode):
    """Loop version of :func:`pool_backward`, written like Caffe's CPU kernel."""
    N, C, H, W = x.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(dy.shape[2]):
                for j in range(dy.shape[3]):
                    hs, ws = 2 * i, 2 * j
                    he, we = min(hs + 2, H), min(ws + 2, W)
                    cells = [(u, v) for u in range(hs, he) for v in range(ws, we)]
                    if mode == "avg":
                        for u, v in cells:
                            dx[n, c, u, v] += dy[n, c, i, j] / len(cells)
                    else:
                        bu, bv = cells[0]
                        for u, v in cells[1:]:
                            if x[n, c, u, v] > x[n, c, bu, bv]:
                                bu, bv = u, v
                        dx[n, c, bu, bv] += dy[n, c, i, j]
    return dx
