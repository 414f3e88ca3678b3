r"""Caffe's 2×2 stride-2 pooling on channels-last blobs: the same rules as :mod:`refstyle.nn.layers`."""

from typing import NamedTuple


from ...backend import array_module
from ..layers import pool_output_size
from .layout import BAND_BYTES, workspace_for

# ---------------------------------------------------------------------------
# 2×2 stride-2 pooling, channels last, with Caffe's rules
# ---------------------------------------------------------------------------


class PoolCache(NamedTuple):
    x_shape: tuple  # (H, W, C)
    mode: str
    scale: object = None  # avg: 1 / (in-image cells of each window), (Ho, Wo, 1)
    argmax: object = None  # max: the index 0..3 of each window's first maximum in row-major order, uint8 (Ho, Wo, C)


def _even_windows(x, fill):
    """``x`` (H, W, C) padded at the end with ``fill`` to even sides, and its four window corners.

    Corner ``k = 2·du + dv`` is ``xe[du::2, dv::2]``, (Ho, Wo, C): cell ``k`` of every
    window, in row-major window order.
    """
    xp = array_module(x)
    H, W, C = x.shape
    Ho, Wo = pool_output_size(H), pool_output_size(W)
    if (2 * Ho, 2 * Wo) != (H, W):
        xe = xp.full((2 * Ho, 2 * Wo, C), fill, dtype=x.dtype)
        xe[:H, :W] = x
        x = xe
    return [x[du::2, dv::2] for du in range(2) for dv in range(2)]


def _inverse_counts(xp, H, W, dtype):
    """``1 / |R_ij|``, the in-image cells of each window, as (Ho, Wo, 1)."""
    Ho, Wo = pool_output_size(H), pool_output_size(W)
    rows = xp.minimum(2 * xp.arange(Ho) + 2, H) - 2 * xp.arange(Ho)  # computed where it is used: no upload
    cols = xp.minimum(2 * xp.arange(Wo) + 2, W) - 2 * xp.arange(Wo)
    return (1.0 / (rows[:, None, None] * cols[None, :, None])).astype(dtype)


def pool_forward(x, mode, work=None):
    r"""Caffe's 2×2 stride-2 pooling of a channels-last ``x`` (H, W, C): ``"avg"`` or ``"max"``.

    Same rules as :func:`refstyle.nn.layers.pool_forward`: output ``ceil((H-2)/2)+1`` ×
    ``ceil((W-2)/2)+1``; avg divides by the window's in-image cells :math:`|R_{ij}|`;
    max keeps the first maximum in row-major window order. Returns ``(y, cache)``.
    Average pooling runs in bands of output rows on ``work``'s threads (a
    :class:`~refstyle.nn.fast.Workspace`).
    """
    xp = array_module(x)
    H, W, C = x.shape
    if mode == "avg":
        c = _even_windows(x, 0)
        scale = _inverse_counts(xp, H, W, x.dtype)
        y = xp.empty(c[0].shape, dtype=x.dtype)

        def rows(r0, r1, slot):
            out = y[r0:r1]
            xp.add(c[0][r0:r1], c[1][r0:r1], out=out)
            for k in (2, 3):
                xp.add(out, c[k][r0:r1], out=out)
            xp.multiply(out, scale[r0:r1], out=out)

        workspace_for(work, xp).run_bands(y.shape[0], 4 * y[0].nbytes, BAND_BYTES, rows)
        return y, PoolCache(x.shape, mode, scale=scale)
    if mode == "max":
        c = _even_windows(x, -xp.inf)
        y = c[0].copy()
        argmax = xp.zeros(y.shape, dtype=xp.uint8)
        for k in range(1, 4):
            better = c[k] > y  # strict: an equal later cell does not replace the first maximum
            xp.copyto(y, c[k], where=better)
            xp.copyto(argmax, k, where=better)  # not argmax[better] = k: a mask index counts on the host
        return y, PoolCache(x.shape, mode, argmax=argmax)
    raise ValueError(f"pooling mode must be 'avg' or 'max', not {mode!r}")


def pool_backward(dy, cache, work=None):
    r"""Gradient of :func:`pool_forward` with respect to its channels-last input.

    avg: every in-image cell of window :math:`R_{ij}` receives :math:`dy_{ij}/|R_{ij}|`;
    max: the window's first maximum receives :math:`dy_{ij}`, its other cells 0.
    Returns a new ``(H, W, C)`` array. Average pooling's is one pass over it, in bands of
    rows on ``work``'s threads.
    """
    xp = array_module(dy)
    H, W, C = cache.x_shape
    Ho, Wo = dy.shape[:2]
    dx = xp.empty((2 * Ho, 2 * Wo, C), dtype=dy.dtype)
    if cache.mode == "avg":  # one pass: dx seen as (Ho, du, Wo, dv, C), dy and the scale broadcast over du, dv
        dx5, dy5, scale5 = dx.reshape(Ho, 2, Wo, 2, C), dy[:, None, :, None], cache.scale[:, None, :, None]

        def rows(r0, r1, slot):
            xp.multiply(dy5[r0:r1], scale5[r0:r1], out=dx5[r0:r1])

        workspace_for(work, xp).run_bands(Ho, 4 * dy[0].nbytes, BAND_BYTES, rows)
    else:
        for du in range(2):
            for dv in range(2):
                xp.multiply(dy, cache.argmax == 2 * du + dv, out=dx[du::2, dv::2])
    if (2 * Ho, 2 * Wo) != (H, W):
        return xp.ascontiguousarray(dx[:H, :W])
    return dx
