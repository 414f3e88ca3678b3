r"""Fast kernels for the VGG conv stack: channels-last blobs and Winograd F(2×2, 3×3).

The functions here compute the layers of :mod:`refstyle.layers` — Caffe's 3×3 pad-1
convolution with its in-place ReLU, and Caffe's 2×2 stride-2 pooling (ceil mode,
in-image divisor, first maximum) — and their input gradients, in a different order
of operations chosen for speed. :mod:`refstyle.layers` stays the definition; the tests
(``tests/test_fastconv.py``) hold every function here against it, in float32 and
float64. :class:`refstyle.VGG` uses them with ``kernels="fast"`` (or ``"im2col"``).

What makes them fast (each measured on a 2-core CPU, ``benchmarks/README.md``):

- **Channels last.** A blob is an ``(H, W, C)`` array (batch 1, as the network's
  input always is). A spatial shift is a slice over whole rows of ``C`` contiguous
  numbers, and a response viewed as ``(H·W, C)`` is already the matrix a GEMM wants.
  Caffe blobs are converted only at the network's edges (the image, the responses
  asked for, their gradients), in cache-sized blocks (:func:`nchw`, :func:`to_hwc`).
- **Winograd F(2×2, 3×3)** (Lavin & Gray, "Fast Algorithms for Convolutional Neural
  Networks", 2016) for every convolution with at least :data:`MIN_CHANNELS` input
  channels. Each 2×2 block of outputs comes from the 4×4 block of inputs around it:

  .. math:: Y = A^\top \Big[ \textstyle\sum_c (G\, g_{o,c}\, G^\top) \odot (B^\top d_c\, B) \Big] A

  so the channel sum becomes 16 independent matrix products, one per position
  :math:`\xi` of the 4×4 transformed tile, :math:`M_\xi = V_\xi U_\xi^\top` with
  :math:`V_\xi` (tiles × C) and :math:`U_\xi` (O × C): 16 multiplications per 4
  outputs instead of 36, 2.25× fewer FLOPs than im2col. The filter transform
  :math:`U = G g G^\top` (:func:`winograd_filters`, one small GEMM per layer) is
  computed anew in each sweep: keeping it would hold 16/9 of the weights' memory.
- **The input gradient is a convolution too**, with the filters flipped and their
  channel axes swapped (:func:`refstyle.layers.conv_backward`); in the Winograd
  domain that is the same :math:`U` with its tile positions permuted and each
  :math:`U_\xi` transposed (:data:`BACKWARD_TILE`): one transform serves both ways.
- **Fused steps**: the bias is added once per tile, inside the output transform, and
  the ReLU is applied as the outputs are written; the ReLU's backward mask is kept
  as packed bits (:func:`relu_mask`, a 32nd of the response's memory) and applied
  while the gradient is copied into the padded band.
- **Bands and reused buffers**: the image is processed in bands of tile rows whose
  scratch arrays fit a fixed budget (:data:`BAND_BYTES`), carved from one
  :class:`Workspace` buffer kept between calls; the band's columns are stored
  even ones first, so that every transform step reads contiguous runs. Memory
  beyond a layer's input and output does not grow with the image.
- **Channel planes for the first layer** (:func:`planes_conv`): with ``C = 3``
  input channels Winograd gains nothing, so ``conv1_1`` is one im2col GEMM
  (``K = 27``) over shifted channel planes, and its input gradient a GEMM followed
  by col2im (nine shifted adds into three planes).

Rounding: Winograd F(2×2, 3×3)'s transforms use only the coefficients 0, ±½ and ±1,
so in float32 its results differ from the im2col reference by rounding only — a
relative error of 3e-7 to 7e-7 per layer, about 1e-6 through VGG19 and its losses,
the size of the reference's own float32 error (``benchmarks/accuracy.py``).
(F(4×4, 3×3) would save another 44% of the multiplications but, measured the same
way, has 1e-5 per layer.)

All functions take NumPy or CuPy arrays (the module ``xp`` is resolved from the
input with :func:`refstyle.backend.array_module`), in float32 or float64, and never
write into their inputs.
"""

import math
from typing import NamedTuple

import numpy as np

from .backend import array_module
from .layers import pool_output_size

# ---------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------


def hwc_view(x):
    """A Caffe blob ``(1, C, H, W)`` seen channels-last, ``(H, W, C)``: a view, no copy.

    The kernels below accept such views (they copy what they read into their own
    buffers); their outputs are contiguous channels-last arrays.
    """
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"expected a 1×C×H×W blob, got shape {x.shape}")
    return x[0].transpose(1, 2, 0)


def nchw(h):
    """A channels-last ``(H, W, C)`` array as a contiguous Caffe blob ``(1, C, H, W)``.

    A copy, unless ``h`` is already a channels-last view of such a blob. NumPy copies a
    transposed array in the output's order, reading the input with large strides;
    copying four rows at a time keeps what is read in cache (5× faster at 256×256×64).
    """
    xp = array_module(h)
    if xp is not np or h.transpose(2, 0, 1).flags.c_contiguous:
        return xp.ascontiguousarray(h.transpose(2, 0, 1))[None]
    H, W, C = h.shape
    out = np.empty((C, H, W), dtype=h.dtype)
    for r in range(0, H, 4):
        out[:, r : r + 4] = h[r : r + 4].transpose(2, 0, 1)
    return out[None]


def nchw_view(h):
    """A channels-last ``(H, W, C)`` array seen as a Caffe blob ``(1, C, H, W)``: a view, no copy.

    The shape and the values are the blob's; the memory stays channels last. The fast
    network hands its responses out this way when ``h`` is contiguous (NumPy and the
    losses take any strides: :func:`refstyle.losses.as_matrix` of such a view is a
    transposed matrix, which a GEMM reads as it is).
    """
    return h.transpose(2, 0, 1)[None]


def _channels_last(x):
    """Whether the blob ``x`` (1, C, H, W) is a view of a contiguous channels-last array."""
    return hwc_view(x).flags.c_contiguous


def to_hwc(x):
    """A Caffe blob ``(1, C, H, W)`` as a contiguous channels-last ``(H, W, C)`` array (a copy).

    Copied eight channels at a time (2–4× faster than one transposed copy, see
    :func:`nchw`); one plain copy when ``x`` is already channels last in memory
    (:func:`nchw_view`).
    """
    xp = array_module(x)
    if xp is not np or _channels_last(x):
        return xp.array(hwc_view(x), order="C", copy=True)
    _, C, H, W = x.shape
    out = np.empty((H, W, C), dtype=x.dtype)
    for c in range(0, C, 8):
        out[:, :, c : c + 8] = x[0, c : c + 8].transpose(1, 2, 0)
    return out


def add_nchw(h, x):
    """``h += x`` for a channels-last ``h`` (H, W, C) and a Caffe blob ``x`` (1, C, H, W), in place.

    Eight channels at a time, like :func:`to_hwc`, and with no channels-last copy of
    ``x``; one plain addition when ``x`` is already channels last in memory.
    """
    xp = array_module(h)
    if xp is not np or _channels_last(x):
        h += hwc_view(x)
        return h
    for c in range(0, h.shape[2], 8):
        target = h[:, :, c : c + 8]
        np.add(target, x[0, c : c + 8].transpose(1, 2, 0), out=target)
    return h


# ---------------------------------------------------------------------------
# ReLU masks
# ---------------------------------------------------------------------------


def relu_mask(F):
    """Where the ReLU passes the gradient, :math:`F > 0`, for an ``(H, W, C)`` response.

    With NumPy it is kept packed, 8 channels to a byte (``(H, W, ⌈C/8⌉)`` uint8, a
    32nd of the response's memory); with CuPy as a bool array.
    """
    m = F > 0
    return np.packbits(m, axis=-1) if array_module(F) is np else m


def mask_rows(mask, lo, hi, columns, C):
    """Rows ``lo .. hi - 1`` and the given columns of a :func:`relu_mask`, as a bool array."""
    part = mask[lo:hi, columns]
    if part.dtype == np.bool_:
        return part
    return np.unpackbits(part, axis=-1, count=C).view(np.bool_)


# ---------------------------------------------------------------------------
# Scratch buffers
# ---------------------------------------------------------------------------

#: The scratch memory one band of a convolution may use (its padded input rows,
#: transformed tiles and products). Large enough that the GEMMs stay efficient,
#: small enough that the scratch stays near the caches and does not grow with the image.
BAND_BYTES = 16 * 2**20


class Workspace:
    """Scratch memory kept between calls, so that big arrays are not allocated anew each time.

    ``arrays(dtype, *shapes, slot="bands")`` returns uninitialised arrays of those
    shapes, carved from one flat buffer per ``slot`` that grows to the largest total
    ever asked for at once in that slot. The arrays are valid until the next call
    for the same slot: each kernel asks once per band (slot ``"bands"``), and each
    conv layer once per sweep for its transformed filters (slot ``"filters"``). A
    workspace belongs to one network and one thread.
    """

    ALIGN = 64  # bytes: each array starts on a cache line

    def __init__(self, xp=np):
        self.xp = xp
        self._buffers = {}

    def arrays(self, dtype, *shapes, slot="bands"):
        dtype = np.dtype(dtype)
        step = max(1, self.ALIGN // dtype.itemsize)
        sizes = [math.prod(shape) for shape in shapes]
        total = sum(-(-n // step) * step for n in sizes)
        buffer = self._buffers.get(slot)
        if buffer is None or buffer.dtype != dtype or buffer.size < total:
            self._buffers.pop(slot, None)  # free the old one first
            buffer = self._buffers[slot] = self.xp.empty(total, dtype=dtype)
        out, offset = [], 0
        for shape, n in zip(shapes, sizes):
            out.append(buffer[offset : offset + n].reshape(shape))
            offset += -(-n // step) * step
        return out

    def nbytes(self, slot=None):
        """The memory the workspace holds (in one ``slot``, or in all)."""
        if slot is not None:
            return self._buffers[slot].nbytes if slot in self._buffers else 0
        return sum(buffer.nbytes for buffer in self._buffers.values())

    def clear(self):
        """Free the buffers."""
        self._buffers = {}


def _workspace(work, xp):
    return Workspace(xp) if work is None else work


def _band_rows(total_rows, bytes_per_row, budget):
    """How many rows (of tiles or pixels) make one band within ``budget`` bytes."""
    return int(max(1, min(total_rows, budget // max(1, bytes_per_row))))


def _band_shape(x, r0, r1, split=False):
    """The shape of :func:`_padded_band`'s ``band`` for rows ``r0 .. r1 - 1`` of ``x`` (H, W, C)."""
    H, W, C = x.shape
    half = (W + 1) // 2 + 1
    return (r1 - r0 + 2, 2, half, C) if split else (r1 - r0 + 2, 2 * half, C)


def _padded_band(band, x, r0, r1, mask=None, split=False):
    """Fill ``band`` with rows ``r0 - 1 .. r1`` of ``x`` (H, W, C) zero-padded by one pixel.

    Rows and columns outside the image (above row 0, below row H-1, left of column 0,
    right of column W-1) are zero; the band is ``(r1 - r0 + 2, Wp, C)`` with
    ``Wp = 2⌈W/2⌉ + 2`` (an odd width gets one more zero column). With ``split``
    its columns are stored even ones first: ``(r1 - r0 + 2, 2, Wp/2, C)``, where
    ``[:, p, j]`` is padded column ``2j + p``, so that the Winograd transforms read
    contiguous runs. With ``mask`` (a :func:`relu_mask` of an array shaped like ``x``)
    the band holds ``x * mask``: the ReLU's backward, fused into the copy.
    """
    xp = array_module(x)
    H, W, C = x.shape
    rows = r1 - r0 + 2
    lo, hi = max(r0 - 1, 0), min(r1 + 1, H)  # the image rows the band holds
    top, bottom = lo - (r0 - 1), (r1 + 1) - hi  # zero rows above and below them
    if top:
        band[:top] = 0
    if bottom:
        band[rows - bottom :] = 0
    inside = band[top : rows - bottom]
    if split:  # padded column 2j + p is image column 2j + p - 1
        n_odd, n_even = W // 2, (W + 1) // 2  # image columns 1, 3, … and 0, 2, …
        inside[:, 0, 0] = 0
        inside[:, 0, 1 + n_odd :] = 0
        inside[:, 1, n_even:] = 0
        parts = [(inside[:, 0, 1 : 1 + n_odd], slice(1, None, 2)), (inside[:, 1, :n_even], slice(0, None, 2))]
    else:
        inside[:, 0] = 0
        inside[:, W + 1 :] = 0
        parts = [(inside[:, 1 : W + 1], slice(None))]
    for target, columns in parts:
        if mask is None:
            xp.copyto(target, x[lo:hi, columns])
        else:
            xp.multiply(x[lo:hi, columns], mask_rows(mask, lo, hi, columns, C), out=target)
    return band


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


def winograd_filters(W, out=None):
    r"""Transform 3×3 filters for Winograd F(2×2, 3×3): :math:`U_{\xi} = (G\, g_{o,c}\, G^\top)_{\xi}`.

    ``W`` (O, C, 3, 3) → ``U`` (16, O, C), ``U[4a + b, o, c] = Σ_uv G[a,u] W[o,c,u,v] G[b,v]``:
    at tile position ξ the products are ``V_ξ @ U[ξ].T`` with ``V_ξ`` (tiles × C).
    Computed as one product ``WINOGRAD_T @ W.reshape(O·C, 9).T`` in ``W``'s dtype
    (a sum of at most nine terms per entry: a few units of rounding in float32),
    into ``out`` (16, O, C) when given. The fast network computes it anew in each
    sweep rather than keeping 16/9 of the weights' memory: about 16 ms per sweep for
    VGG19's layers to ``conv5_1`` on two Zen 3 cores, 3–4% of an iteration at 256×256.
    """
    xp = array_module(W)
    O, C = W.shape[:2]
    if out is not None and not (out.shape == (16, O, C) and out.dtype == W.dtype and out.flags.c_contiguous):
        raise ValueError(f"out must be a C-contiguous {W.dtype} array of shape {(16, O, C)}")
    U = xp.empty((16, O, C), dtype=W.dtype) if out is None else out
    T = xp.asarray(WINOGRAD_T, dtype=W.dtype)
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
    their columns split by parity (:func:`_padded_band`).
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
    xp.add(m[0], m[1], out=S[0])
    xp.add(S[0], m[2], out=S[0])
    xp.subtract(m[1], m[2], out=S[1])
    xp.subtract(S[1], m[3], out=S[1])


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
    """
    xp = array_module(x, U)
    work = _workspace(work, xp)
    budget = BAND_BYTES if budget is None else budget
    H, Wd, C = x.shape
    O = U[0].shape[0]
    nTh, nTw = (H + 1) // 2, (Wd + 1) // 2
    half = nTw + 1  # the padded band's width, 2 * half, split into even and odd columns
    y = xp.empty((2 * nTh, 2 * nTw, O), dtype=x.dtype)
    itemsize = np.dtype(x.dtype).itemsize
    per_tile_row = itemsize * (12 * half * C + nTw * (4 * C + 4 * O + 8 * O))
    rows = _band_rows(nTh, per_tile_row, budget)
    for r0 in range(0, nTh, rows):
        r1 = min(nTh, r0 + rows)
        nb, t = r1 - r0, (r1 - r0) * nTw
        band, R, V, M, S = work.arrays(
            x.dtype, _band_shape(x, 2 * r0, 2 * r1, split=True), (4, nb, 2, half, C), (4, nb, nTw, C),
            (4, nb, nTw, O), (4, 2, nb, nTw, O),
        )
        _padded_band(band, x, 2 * r0, 2 * r1, mask, split=True)
        _row_transform(band, nb, R)
        Vm, Mm = V.reshape(4, t, C), M.reshape(4, t, O)
        for a in range(4):
            _column_transform(R[a], nTw, V)
            for b in range(4):
                xp.matmul(Vm[b], U[4 * a + b].T, out=Mm[b])
            if bias is not None and a == 1:
                xp.add(M[1], bias, out=M[1])
            _output_columns(M, S[a])
        _output_rows(S, y[2 * r0 : 2 * r1], relu)
    return y[:H, :Wd]


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
    work = _workspace(work, xp)
    budget = BAND_BYTES if budget is None else budget
    H, Wd, C = x.shape
    O = Wmat.shape[1]
    y = xp.empty((H, Wd, O), dtype=x.dtype)
    itemsize = np.dtype(x.dtype).itemsize
    rows = _band_rows(H, itemsize * Wd * (9 * C + 3 * C), budget)
    for r0 in range(0, H, rows):
        r1 = min(H, r0 + rows)
        band, cols = work.arrays(x.dtype, _band_shape(x, r0, r1), (r1 - r0, Wd, 3, 3, C))
        _padded_band(band, x, r0, r1, mask)
        for u in range(3):
            for v in range(3):
                xp.copyto(cols[:, :, u, v], band[u : u + r1 - r0, v : v + Wd])
        out = y[r0:r1].reshape(-1, O)
        xp.matmul(cols.reshape(-1, 9 * C), Wmat, out=out)
        if bias is not None:
            xp.add(out, bias, out=out)
        if relu:
            xp.maximum(out, 0, out=out)
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
    work = _workspace(work, xp)
    budget = BAND_BYTES if budget is None else budget
    H, Wd, C = x.shape
    O = Wp.shape[0]
    planes = x.transpose(2, 0, 1)
    y = xp.empty((H, Wd, O), dtype=x.dtype)
    itemsize = np.dtype(x.dtype).itemsize
    rows = _band_rows(H, itemsize * (Wd + 2) * 11 * C, budget)
    for r0 in range(0, H, rows):
        r1 = min(H, r0 + rows)
        n = (r1 - r0) * Wd
        band, cols = work.arrays(x.dtype, (C, r1 - r0 + 2, Wd + 2), (C, 3, 3, r1 - r0, Wd))
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
    return y


def planes_conv_backward(dy, Wp, mask=None, work=None, budget=None):
    r"""Input gradient of :func:`planes_conv`: a GEMM, then col2im over channel planes.

    .. math:: \frac{\partial L}{\partial x_{c,i,j}} = \sum_{u,v} \Big(\sum_o
              W_{o,c,u,v}\, \frac{\partial L}{\partial y_{o,\,i-u+1,\,j-v+1}}\Big)

    The inner sum is one GEMM, ``dcolsᵀ = Wpᵀ · dyᵀ`` (9·C × positions); the outer one
    adds each of the nine ``(u, v)`` planes of ``dcolsᵀ`` into the gradient shifted by
    ``(1-u, 1-v)`` — nine shifted adds over C planes. ``mask`` multiplies ``dy`` first
    (the ReLU backward). Returns an ``(H, W, C)`` view of a new ``(C, H, W)`` array.
    """
    xp = array_module(dy, Wp)
    work = _workspace(work, xp)
    budget = BAND_BYTES if budget is None else budget
    H, Wd, O = dy.shape
    C = Wp.shape[1] // 9
    dxpad = xp.zeros((C, H + 2, Wd + 2), dtype=dy.dtype)
    itemsize = np.dtype(dy.dtype).itemsize
    rows = _band_rows(H, itemsize * Wd * (9 * C + O), budget)
    for r0 in range(0, H, rows):
        r1 = min(H, r0 + rows)
        n = (r1 - r0) * Wd
        d, dcols = work.arrays(dy.dtype, (r1 - r0, Wd, O), (C, 3, 3, r1 - r0, Wd))
        if mask is None:
            xp.copyto(d, dy[r0:r1])
        else:
            xp.multiply(dy[r0:r1], mask_rows(mask, r0, r1, slice(None), O), out=d)
        xp.matmul(Wp.T, d.reshape(n, O).T, out=dcols.reshape(9 * C, n))
        for u in range(3):
            for v in range(3):
                target = dxpad[:, r0 + u : r1 + u, v : v + Wd]
                xp.add(target, dcols[:, u, v], out=target)
    return dxpad[:, 1:-1, 1:-1].transpose(1, 2, 0)


# ---------------------------------------------------------------------------
# Convolution + ReLU layers, as the network uses them
# ---------------------------------------------------------------------------

#: The methods a conv layer can use: Winograd where it pays (the default), or
#: channels-last im2col everywhere (for comparison). Layers with few input channels
#: use ``"planes"`` (:func:`planes_conv`) under either.
METHODS = ("winograd", "im2col")

#: Below this many input channels a layer uses :func:`planes_conv`: Winograd's
#: transforms, or a channels-last gather with runs of C numbers, would cost more
#: than the GEMM.
MIN_CHANNELS = 16

#: Layers with at most this many filter entries per tile position (O·C) make a
#: contiguous copy of their backward filters (16·O·C numbers): OpenBLAS is up to
#: 1.6× faster on 64×64 products when the filter operand is a transposed view.
SMALL_LAYER = 128 * 128


class ConvPlan(NamedTuple):
    """One conv layer's filters, prepared for the fast kernels."""

    method: str  # "winograd", "im2col" or "planes", as chosen for this layer
    b: object  # bias (O,)
    K: object  # the filters for the forward: W itself for winograd (transformed in each
    #            sweep, winograd_filters), im2col_filters(W) (9C, O), or for planes W.reshape(O, 9C)
    K_back: object  # for the input gradient: im2col_filters of the flipped, channel-swapped
    #                 filters (9O, C); None for winograd (from K in each sweep) and planes


def conv_plan(W, b, method="winograd"):
    """Prepare a layer's filters ``W`` (O, C, 3, 3) and bias ``b`` (O,) for the fast kernels.

    ``method="winograd"`` or ``"im2col"``; a layer with fewer than
    :data:`MIN_CHANNELS` input channels uses ``"planes"`` under either.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    xp = array_module(W)
    O, C = W.shape[:2]
    if C < MIN_CHANNELS:
        return ConvPlan("planes", b, xp.ascontiguousarray(W.reshape(O, 9 * C)), None)
    if method == "winograd":
        return ConvPlan("winograd", b, W, None)
    flipped = xp.ascontiguousarray(W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    return ConvPlan("im2col", b, im2col_filters(W), im2col_filters(flipped))


def _filters(plan, work, backward=False):
    """The plan's filters for one sweep: Winograd's transformed into the workspace's ``"filters"`` slot."""
    if plan.method != "winograd":
        return plan.K_back if backward else plan.K
    W = plan.K
    O, C = W.shape[:2]
    if not backward:
        (U,) = work.arrays(W.dtype, (16, O, C), slot="filters")
        return winograd_filters(W, out=U)
    if O * C > SMALL_LAYER:
        (U,) = work.arrays(W.dtype, (16, O, C), slot="filters")
        return winograd_backward_filters(winograd_filters(W, out=U))
    U, U_back = work.arrays(W.dtype, (16, O, C), (16, C, O), slot="filters")
    return winograd_backward_filters(winograd_filters(W, out=U), copy=True, out=U_back)


class ConvReluCache(NamedTuple):
    plan: ConvPlan
    mask: object  # relu_mask(F): F > 0, packed on NumPy: where the ReLU passes the gradient


def conv_relu_forward(x, plan, work=None, budget=None):
    r"""A conv layer and its ReLU on a channels-last blob: :math:`F = \max(W * x + b, 0)`.

    Returns ``(F, cache)``; ``F`` is ``(H, W, O)``, the cache holds the ReLU's mask
    :math:`F > 0` (:func:`relu_mask`, packed bits) and the plan — not ``x``: the
    input gradient needs only the filters.
    """
    conv = {"winograd": winograd_conv, "im2col": im2col_conv, "planes": planes_conv}[plan.method]
    work = _workspace(work, array_module(x))
    F = conv(x, _filters(plan, work), plan.b, relu=True, work=work, budget=budget)
    return F, ConvReluCache(plan, relu_mask(F))


def conv_relu_backward(dF, cache, work=None, budget=None):
    r"""Back through the ReLU (:math:`dF \cdot [F > 0]`) and the convolution to the layer's input.

    .. math:: dx = W' * (dF \odot [F > 0]), \qquad W'_{c,o,u,v} = W_{o,c,2-u,2-v}

    Returns an ``(H, W, C)`` array (perhaps a view).
    """
    plan = cache.plan
    if plan.method == "planes":
        return planes_conv_backward(dF, plan.K, mask=cache.mask, work=work, budget=budget)
    conv = winograd_conv if plan.method == "winograd" else im2col_conv
    work = _workspace(work, array_module(dF))
    return conv(dF, _filters(plan, work, backward=True), mask=cache.mask, work=work, budget=budget)


# ---------------------------------------------------------------------------
# 2×2 stride-2 pooling, channels last, with Caffe's rules
# ---------------------------------------------------------------------------


class PoolCache(NamedTuple):
    x_shape: tuple  # (H, W, C)
    mode: str
    # avg: 1 / (in-image cells of each window), (Ho, Wo, 1); max: the index 0..3 of
    # each window's first maximum in row-major order, uint8 (Ho, Wo, C).
    scale_or_argmax: object


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
    rows = np.minimum(2 * np.arange(Ho) + 2, H) - 2 * np.arange(Ho)
    cols = np.minimum(2 * np.arange(Wo) + 2, W) - 2 * np.arange(Wo)
    return xp.asarray(1.0 / (rows[:, None, None] * cols[None, :, None]), dtype=dtype)


def pool_forward(x, mode):
    r"""Caffe's 2×2 stride-2 pooling of a channels-last ``x`` (H, W, C): ``"avg"`` or ``"max"``.

    Same rules as :func:`refstyle.layers.pool_forward`: output ``ceil((H-2)/2)+1`` ×
    ``ceil((W-2)/2)+1``; avg divides by the window's in-image cells :math:`|R_{ij}|`;
    max keeps the first maximum in row-major window order. Returns ``(y, cache)``.
    """
    xp = array_module(x)
    H, W, C = x.shape
    if mode == "avg":
        c = _even_windows(x, 0)
        y = c[0] + c[1]
        y += c[2]
        y += c[3]
        scale = _inverse_counts(xp, H, W, x.dtype)
        y *= scale
        return y, PoolCache(x.shape, mode, scale)
    if mode == "max":
        c = _even_windows(x, -xp.inf)
        y = c[0].copy()
        argmax = xp.zeros(y.shape, dtype=xp.uint8)
        for k in range(1, 4):
            better = c[k] > y  # strict: an equal later cell does not replace the first maximum
            xp.copyto(y, c[k], where=better)
            argmax[better] = k
        return y, PoolCache(x.shape, mode, argmax)
    raise ValueError(f"pooling mode must be 'avg' or 'max', not {mode!r}")


def pool_backward(dy, cache):
    r"""Gradient of :func:`pool_forward` with respect to its channels-last input.

    avg: every in-image cell of window :math:`R_{ij}` receives :math:`dy_{ij}/|R_{ij}|`;
    max: the window's first maximum receives :math:`dy_{ij}`, its other cells 0.
    Returns a new ``(H, W, C)`` array.
    """
    xp = array_module(dy)
    H, W, C = cache.x_shape
    Ho, Wo = dy.shape[:2]
    dx = xp.empty((2 * Ho, 2 * Wo, C), dtype=dy.dtype)
    if cache.mode == "avg":
        share = dy * cache.scale_or_argmax
        for du in range(2):
            for dv in range(2):
                dx[du::2, dv::2] = share
    else:
        for du in range(2):
            for dv in range(2):
                xp.multiply(dy, cache.scale_or_argmax == 2 * du + dv, out=dx[du::2, dv::2])
    if (2 * Ho, 2 * Wo) != (H, W):
        return xp.ascontiguousarray(dx[:H, :W])
    return dx
