r"""Winograd F(2×2, 3×3) convolutions on channels-last blobs (Lavin & Gray 2016).

Each 2×2 block of outputs comes from the 4×4 block of inputs around it:

.. math:: Y = A^\top \Big[ \textstyle\sum_c (G\, g_{o,c}\, G^\top) \odot (B^\top d_c\, B) \Big] A

so the channel sum becomes 16 independent matrix products, one per position
:math:`\xi` of the 4×4 transformed tile. The input gradient is the same
convolution with the transformed filters' tile positions permuted and each transposed
(:data:`BACKWARD_TILE`). See :mod:`refstyle.nn.fast` for the whole design.
"""

import numpy as np

from ...backend import array_module
from .layout import BAND_BYTES, band_shape, padded_band, workspace_for

# ---------------------------------------------------------------------------
# Winograd F(2×2, 3×3)
# ---------------------------------------------------------------------------

#: Winograd F(2, 3) matrices (Lavin & Gray 2016): input transform B^T, filter
#: transform G, output transform A^T; y = A^T [(G g) ⊙ (B^T d)] for a 1-D 4-tap tile.
WINOGRAD_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
WINOGRAD_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)

#: Flipping a filter reverses G's columns, which swaps G's rows 0 and 3:
#: G J = P G with P this permutation. So the transformed flipped filter at tile
#: position (a, b) is the transformed filter at (p[a], p[b]).
_FLIP = (3, 1, 2, 0)
#: For each tile position ξ = 4a + b, the position of U whose transpose the input
#: gradient uses: ``U_back[ξ] = U[BACKWARD_TILE[ξ]].T``.
BACKWARD_TILE = tuple(4 * _FLIP[a] + _FLIP[b] for a in range(4) for b in range(4))


#: The filter transform as one matrix: ``WINOGRAD_T[4a + b, 3u + v] = G[a,u] G[b,v]``.
#: Its entries are 0, ±¼, ±½ and ±1, exact in any floating-point type.
WINOGRAD_T = np.einsum("au,bv->abuv", WINOGRAD_G, WINOGRAD_G).reshape(16, 9)


def winograd_filters(W, out=None, T=None):
    r"""Transform 3×3 filters for Winograd F(2×2, 3×3): :math:`U_{\xi} = (G\, g_{o,c}\, G^\top)_{\xi}`.

    ``W`` (O, C, 3, 3) → ``U`` (16, O, C), ``U[4a + b, o, c] = Σ_uv G[a,u] W[o,c,u,v] G[b,v]``:
    at tile position ξ the products are ``V_ξ @ U[ξ].T`` with ``V_ξ`` (tiles × C).
    Computed as one product ``WINOGRAD_T @ W.reshape(O·C, 9).T`` in ``W``'s dtype
    (a sum of at most nine terms per entry: a few units of rounding in float32),
    into ``out`` (16, O, C) when given; ``T``: ``WINOGRAD_T`` already on ``W``'s device in its
    dtype (the workspace keeps it, so it is uploaded once, not in every sweep). The fast network computes it anew in each
    sweep rather than keeping 16/9 of the weights' memory: about 16 ms per sweep for
    VGG19's layers to ``conv5_1`` on two Zen 3 cores, 3–4% of an iteration at 256×256.
    """
    xp = array_module(W)
    O, C = W.shape[:2]
    if out is not None and not (out.shape == (16, O, C) and out.dtype == W.dtype and out.flags.c_contiguous):
        raise ValueError(f"out must be a C-contiguous {W.dtype} array of shape {(16, O, C)}")
    U = xp.empty((16, O, C), dtype=W.dtype) if out is None else out
    T = xp.asarray(WINOGRAD_T, dtype=W.dtype) if T is None else T
    xp.matmul(T, W.reshape(O * C, 9).T, out=U.reshape(16, O * C))
    return U


def winograd_backward_filters(U, copy=False, out=None):
    r"""The transformed filters of the input gradient, from the forward ones ``U`` (16, O, C).

    The input gradient correlates with :math:`W'_{c,o,u,v} = W_{o,c,2-u,2-v}`; its
    transform at tile position ξ is ``U[BACKWARD_TILE[ξ]].T`` (C, O). Returns the 16
    matrices as views of ``U`` (no memory), or with ``copy`` as one contiguous
    (16, C, O) array, ``out`` when given (faster GEMMs for small layers: OpenBLAS
    multiplies a transposed 64×64 operand faster than a plain one).
    """
    xp = array_module(U)
    Ub = [U[BACKWARD_TILE[k]].T for k in range(16)]
    if not copy:
        return Ub
    out = xp.empty((16,) + Ub[0].shape, dtype=U.dtype) if out is None else out
    for k in range(16):
        out[k] = Ub[k]
    return out


def _row_transform(band, nb, R):
    r"""First half of :math:`B^\top d\, B`: the row transform of every tile of a padded band at once.

    Tile row ``i`` is band rows ``2i..2i+3``; with
    :math:`B^\top` = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]] its four transformed
    rows are ``d0 - d2, d1 + d2, d2 - d1, d1 - d3``, each computed for all tile rows
    by one operation on strided row sets. ``band`` and ``R`` (4, nb, 2, Wp/2, C) have
    their columns split by parity (:func:`padded_band`).
    """
    xp = array_module(band)
    d = [band[i : i + 2 * nb : 2] for i in range(4)]  # row i of every tile row: (nb, 2, Wp/2, C)
    xp.subtract(d[0], d[2], out=R[0])
    xp.add(d[1], d[2], out=R[1])
    xp.subtract(d[2], d[1], out=R[2])
    xp.subtract(d[1], d[3], out=R[3])


def _column_transform(Ra, nTw, V):
    r"""Second half of :math:`B^\top d\, B`: the same four combinations over the columns of one transformed row.

    ``Ra`` (nb, 2, Wp/2, C), columns split by parity, → ``V`` (4, nb, nTw, C), the
    tile positions ``(a, 0..3)``. Column ``2j + q`` of the band is ``Ra[:, q % 2, j + q // 2]``,
    so the four columns of every tile are four contiguous slices.
    """
    xp = array_module(Ra)
    e = [Ra[:, 0, :nTw], Ra[:, 1, :nTw], Ra[:, 0, 1 : nTw + 1], Ra[:, 1, 1 : nTw + 1]]  # column q of every tile
    xp.subtract(e[0], e[2], out=V[0])
    xp.add(e[1], e[2], out=V[1])
    xp.subtract(e[2], e[1], out=V[2])
    xp.subtract(e[1], e[3], out=V[3])


def _output_columns(m, S):
    r"""First half of :math:`A^\top m A`, over the columns of one row ``a`` of products.

    :math:`A^\top` = [[1,1,1,0],[0,1,-1,-1]]: ``m`` (4, nb, nTw, O), the products at
    tile positions ``(a, 0..3)``, → ``S`` (2, nb, nTw, O): ``m0 + m1 + m2`` and ``m1 - m2 - m3``.
    """
    xp = array_module(m)
    m0, m1, m2, m3 = m[0], m[1], m[2], m[3]
    S0, S1 = S[0], S[1]  # each view bound once: CuPy copies an input that is another view of out's memory
    xp.add(m0, m1, out=S0)
    xp.add(S0, m2, out=S0)
    xp.subtract(m1, m2, out=S1)
    xp.subtract(S1, m3, out=S1)


def _output_rows(S, y, relu):
    r"""Second half of :math:`A^\top m A`: the same combinations of the rows, written into ``y`` (2nb, 2nTw, O).

    ``S`` (4, 2, nb, nTw, O) holds :func:`_output_columns` of rows ``a = 0..3`` (and is
    overwritten); output ``(di, dj)`` of every tile is ``y[di::2, dj::2]``, written once
    (through the ReLU with ``relu``).
    """
    xp = array_module(S)
    for j in range(2):
        s0, s1, s2, s3 = S[0, j], S[1, j], S[2, j], S[3, j]
        xp.add(s0, s1, out=s0)
        xp.subtract(s1, s3, out=s3)
        y0, y1 = y[0::2, j::2], y[1::2, j::2]  # (nb, nTw, O) each
        if relu:
            xp.add(s0, s2, out=s0)  # s0 + s1 + s2: output row 0
            xp.subtract(s3, s2, out=s3)  # s1 - s2 - s3: output row 1
            xp.maximum(s0, 0, out=y0)
            xp.maximum(s3, 0, out=y1)
        else:
            xp.add(s0, s2, out=y0)
            xp.subtract(s3, s2, out=y1)


def winograd_conv(x, U, bias=None, relu=False, mask=None, work=None, budget=None):
    r"""3×3 pad-1 cross-correlation of a channels-last ``x`` by Winograd F(2×2, 3×3).

    .. math:: y_{i,j,o} = b_o + \sum_{c}\sum_{u,v=0}^{2} W_{o,c,u,v}\, x_{i+u-1,\,j+v-1,\,c}

    (then :math:`\max(y, 0)` with ``relu``), from ``U = winograd_filters(W)`` (16, O, C)
    or any sequence of 16 (O, C) matrices. Given
    ``U = winograd_backward_filters(winograd_filters(W))`` it correlates with the
    flipped, channel-swapped filters :math:`W'_{c,o,u,v} = W_{o,c,2-u,2-v}`: the input
    gradient of the convolution. ``mask`` (a :func:`relu_mask`) multiplies ``x``
    first: the ReLU's backward. ``x`` (H, W, C) may be any view; returns a new
    ``(H, W, O)`` array (a view of a ``(2⌈H/2⌉, 2⌈W/2⌉, O)`` one when a side is odd).

    The band's 16 products are formed one row ``a`` of tile positions at a time,
    each followed at once by the part of the output transform that needs only that
    row, so that the transformed tiles and products are still in cache when used.
    A bias added to the product at tile position (1, 1) reaches each of the four
    outputs of a tile exactly once (its row and column of :math:`A^\top` are [1, 1]).
    The bands run on ``work``'s threads (:meth:`~refstyle.nn.fast.Workspace.run_bands`),
    each with its own scratch; a tile's numbers do not depend on its band or thread.
    """
    xp = array_module(x, U)
    work = workspace_for(work, xp)
    budget = BAND_BYTES if budget is None else budget
    H, Wd, C = x.shape
    O = U[0].shape[0]
    nTh, nTw = (H + 1) // 2, (Wd + 1) // 2
    half = nTw + 1  # the padded band's width, 2 * half, split into even and odd columns
    y = xp.empty((2 * nTh, 2 * nTw, O), dtype=x.dtype)
    itemsize = np.dtype(x.dtype).itemsize
    per_tile_row = itemsize * (12 * half * C + nTw * (4 * C + 4 * O + 8 * O))

    def tile_rows(r0, r1, slot):
        nb, t = r1 - r0, (r1 - r0) * nTw
        band, R, V, M, S = work.arrays(
            x.dtype, band_shape(x, 2 * r0, 2 * r1, split=True), (4, nb, 2, half, C), (4, nb, nTw, C),
            (4, nb, nTw, O), (4, 2, nb, nTw, O), slot=slot,
        )
        padded_band(band, x, 2 * r0, 2 * r1, mask, split=True)
        _row_transform(band, nb, R)
        Vm, Mm = V.reshape(4, t, C), M.reshape(4, t, O)
        for a in range(4):
            _column_transform(R[a], nTw, V)
            for b in range(4):
                xp.matmul(Vm[b], U[4 * a + b].T, out=Mm[b])
            if bias is not None and a == 1:
                M1 = M[1]
                xp.add(M1, bias, out=M1)
            _output_columns(M, S[a])
        _output_rows(S, y[2 * r0 : 2 * r1], relu)

    work.run_bands(nTh, per_tile_row, budget, tile_rows)
    return y[:H, :Wd]
