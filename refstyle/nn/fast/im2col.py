"""Channels-last im2col convolutions, and the channel-plane GEMM of the first layer.

:func:`im2col_conv` gathers each pixel's 3×3 neighbourhood into a row of ``9C``
numbers and multiplies by the ``(9C, O)`` filters; :func:`planes_conv` does the same
for ``conv1_1``'s three input channels from shifted channel planes (``K = 27``), where
neither Winograd nor a channels-last gather would pay.
"""

import numpy as np

from ...backend import array_module
from .layout import BAND_BYTES, band_shape, padded_band, workspace_for, mask_rows

# ---------------------------------------------------------------------------
# im2col: channels last, and over channel planes for the first layer
# ---------------------------------------------------------------------------


def im2col_filters(W):
    """``W`` (O, C, 3, 3) as the ``(9·C, O)`` matrix that multiplies channels-last im2col rows.

    Row ``(u·3 + v)·C + c`` holds ``W[:, c, u, v]``.
    """
    xp = array_module(W)
    O, C = W.shape[:2]
    return xp.ascontiguousarray(W.transpose(2, 3, 1, 0).reshape(9 * C, O))


def im2col_conv(x, Wmat, bias=None, relu=False, mask=None, work=None, budget=None):
    r"""3×3 pad-1 cross-correlation of channels-last ``x`` as one GEMM per band of rows.

    The nine shifted copies of each band are gathered into ``cols`` (rows, W, 3, 3, C),
    so :math:`y = \text{cols} \cdot W_\text{mat} + b` with ``Wmat = im2col_filters(W)``
    (then :math:`\max(y, 0)` with ``relu``). ``mask`` multiplies ``x`` first. For a
    backward pass give ``im2col_filters`` of the flipped, channel-swapped filters.
    Returns a new contiguous ``(H, W, O)`` array.
    """
    xp = array_module(x, Wmat)
    work = workspace_for(work, xp)
    budget = BAND_BYTES if budget is None else budget
    H, Wd, C = x.shape
    O = Wmat.shape[1]
    y = xp.empty((H, Wd, O), dtype=x.dtype)
    itemsize = np.dtype(x.dtype).itemsize

    def pixel_rows(r0, r1, slot):
        band, cols = work.arrays(x.dtype, band_shape(x, r0, r1), (r1 - r0, Wd, 3, 3, C), slot=slot)
        padded_band(band, x, r0, r1, mask)
        for u in range(3):
            for v in range(3):
                xp.copyto(cols[:, :, u, v], band[u : u + r1 - r0, v : v + Wd])
        out = y[r0:r1].reshape(-1, O)
        xp.matmul(cols.reshape(-1, 9 * C), Wmat, out=out)
        if bias is not None:
            xp.add(out, bias, out=out)
        if relu:
            xp.maximum(out, 0, out=out)

    work.run_bands(H, itemsize * Wd * (9 * C + 3 * C), budget, pixel_rows)
    return y


def planes_conv(x, Wp, bias=None, relu=False, work=None, budget=None):
    r"""3×3 pad-1 cross-correlation for few input channels: im2col over channel planes.

    For the first layer (``C = 3``): ``x`` (H, W, C) is read as channel planes
    (C, H, W) — a free view when ``x`` is itself a view of a Caffe blob — so each of
    the ``9·C`` rows of ``colsᵀ`` is one shifted plane, copied in contiguous runs of
    ``W``; then :math:`y = \text{cols} \cdot W_p^\top + b` with ``Wp = W.reshape(O, 9·C)``
    (rows ordered ``(c, u, v)``), ``K = 9·C``. Returns a new contiguous ``(H, W, O)`` array.
    """
    xp = array_module(x, Wp)
    work = workspace_for(work, xp)
    budget = BAND_BYTES if budget is None else budget
    H, Wd, C = x.shape
    O = Wp.shape[0]
    planes = x.transpose(2, 0, 1)
    y = xp.empty((H, Wd, O), dtype=x.dtype)
    itemsize = np.dtype(x.dtype).itemsize

    def pixel_rows(r0, r1, slot):
        n = (r1 - r0) * Wd
        band, cols = work.arrays(x.dtype, (C, r1 - r0 + 2, Wd + 2), (C, 3, 3, r1 - r0, Wd), slot=slot)
        lo, hi = max(r0 - 1, 0), min(r1 + 1, H)
        top, bottom = lo - (r0 - 1), (r1 + 1) - hi
        band[:, :top] = 0
        band[:, band.shape[1] - bottom :] = 0
        band[:, :, 0] = 0
        band[:, :, -1] = 0
        xp.copyto(band[:, top : band.shape[1] - bottom, 1:-1], planes[:, lo:hi])
        for u in range(3):
            for v in range(3):
                xp.copyto(cols[:, u, v], band[:, u : u + r1 - r0, v : v + Wd])
        out = y[r0:r1].reshape(n, O)
        xp.matmul(cols.reshape(9 * C, n).T, Wp.T, out=out)
        if bias is not None:
            xp.add(out, bias, out=out)
        if relu:
            xp.maximum(out, 0, out=out)

    work.run_bands(H, itemsize * (Wd + 2) * 11 * C, budget, pixel_rows)
    return y


def planes_conv_backward(dy, Wp, mask=None, work=None, budget=None):
    r"""Input gradient of :func:`planes_conv`: a GEMM, then col2im over channel planes.

    .. math:: \frac{\partial L}{\partial x_{c,i,j}} = \sum_{u,v} \Big(\sum_o
              W_{o,c,u,v}\, \frac{\partial L}{\partial y_{o,\,i-u+1,\,j-v+1}}\Big)

    The inner sum is one GEMM, ``dcolsᵀ = Wpᵀ · dyᵀ`` (9·C × positions); the outer one
    adds each of the nine ``(u, v)`` planes of ``dcolsᵀ`` into the gradient shifted by
    ``(1-u, 1-v)`` — nine shifted adds over C planes. ``mask`` multiplies ``dy`` first
    (the ReLU backward). Bands of rows run on ``work``'s threads; the two padded rows
    that a band shares with the band above it are added into a halo of its own and then
    into the gradient once all bands are done. Returns an ``(H, W, C)`` view of a new
    ``(C, H, W)`` array.
    """
    xp = array_module(dy, Wp)
    work = workspace_for(work, xp)
    budget = BAND_BYTES if budget is None else budget
    H, Wd, O = dy.shape
    C = Wp.shape[1] // 9
    dxpad = xp.zeros((C, H + 2, Wd + 2), dtype=dy.dtype)
    itemsize = np.dtype(dy.dtype).itemsize
    halos = {}  # r0: what the band from row r0 adds to padded rows r0, r0 + 1, which the band above adds to too

    def pixel_rows(r0, r1, slot):
        n = (r1 - r0) * Wd
        d, dcols = work.arrays(dy.dtype, (r1 - r0, Wd, O), (C, 3, 3, r1 - r0, Wd), slot=slot)
        if mask is None:
            xp.copyto(d, dy[r0:r1])
        else:
            xp.multiply(dy[r0:r1], mask_rows(mask, r0, r1, slice(None), O), out=d)
        xp.matmul(Wp.T, d.reshape(n, O).T, out=dcols.reshape(9 * C, n))
        halo = xp.zeros((C, 2, Wd + 2), dtype=dy.dtype) if r0 > 0 else None
        for u in range(3):
            k = 0 if halo is None else min(2 - u, r1 - r0) if u < 2 else 0  # rows of dcols that land on the halo
            for v in range(3):
                src = dcols[:, u, v]  # lands on padded rows r0 + u … r1 + u - 1
                if k:
                    part = halo[:, u : u + k, v : v + Wd]
                    xp.add(part, src[:, :k], out=part)
                target = dxpad[:, r0 + u + k : r1 + u, v : v + Wd]
                xp.add(target, src[:, k:], out=target)
        if halo is not None:
            halos[r0] = halo

    work.run_bands(H, itemsize * Wd * (9 * C + O), budget, pixel_rows)
    for r0, halo in halos.items():  # after every band: the rows two bands share, added one band at a time
        target = dxpad[:, r0 : r0 + 2]
        xp.add(target, halo, out=target)
    return dxpad[:, 1:-1, 1:-1].transpose(1, 2, 0)
