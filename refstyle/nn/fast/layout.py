"""Channels-last blobs, packed ReLU masks, and the scratch memory of the fast kernels.

A blob is an ``(H, W, C)`` array (batch 1, as the network's input always is): a spatial
shift is a slice over whole rows of ``C`` contiguous numbers, and a response viewed as
``(H·W, C)`` is already the matrix a GEMM wants. Caffe blobs are converted only at the
network's edges (the image, the responses asked for, their gradients), in cache-sized
blocks (:func:`nchw`, :func:`to_hwc`). The ReLU's backward mask :math:`F > 0` is kept as
packed bits (:func:`relu_mask`) and applied while the gradient is copied into the
padded band (:func:`padded_band`): the fast twin of :func:`refstyle.nn.layers.relu_backward`.
"""

import contextlib
import math
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from ...backend import array_module
from .threads import blas_limit, cores

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
    losses take any strides: :func:`refstyle.paper.losses.as_matrix` of such a view is a
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


def add_nchw(h, x, work=None):
    """``h += x`` for a channels-last ``h`` (H, W, C) and a Caffe blob ``x`` (1, C, H, W), in place.

    Eight channels at a time, like :func:`to_hwc`, and with no channels-last copy of
    ``x``; one plain addition when ``x`` is already channels last in memory. In bands
    of rows on ``work``'s threads.
    """
    xp = array_module(h)
    H, W, C = h.shape
    if xp is not np or _channels_last(x):
        xh = hwc_view(x)

        def rows(r0, r1, slot):
            target = h[r0:r1]
            xp.add(target, xh[r0:r1], out=target)

    else:

        def rows(r0, r1, slot):
            for c in range(0, C, 8):
                target = h[r0:r1, :, c : c + 8]
                np.add(target, x[0, c : c + 8, r0:r1].transpose(1, 2, 0), out=target)

    workspace_for(work, xp).run_bands(H, 2 * h[0].nbytes, BAND_BYTES, rows)
    return h


# ---------------------------------------------------------------------------
# ReLU masks
# ---------------------------------------------------------------------------


def relu_mask(F, work=None):
    """Where the ReLU passes the gradient, :math:`F > 0`, for an ``(H, W, C)`` response.

    With NumPy it is kept packed, 8 channels to a byte (``(H, W, ⌈C/8⌉)`` uint8, a
    32nd of the response's memory), computed in bands of rows on ``work``'s threads;
    with CuPy as a bool array.
    """
    if array_module(F) is not np:
        return F > 0
    H, W, C = F.shape
    mask = np.empty((H, W, -(-C // 8)), dtype=np.uint8)

    def rows(r0, r1, slot):
        mask[r0:r1] = np.packbits(F[r0:r1] > 0, axis=-1)

    workspace_for(work, np).run_bands(H, W * C, BAND_BYTES, rows)
    return mask


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


#: A convolution whose bands need less scratch than this in all runs on one thread:
#: handing its bands to a second thread would cost more than it saves.
THREAD_BYTES = 2**20


class Workspace:
    """Scratch memory kept between calls, and the threads that run a convolution's bands.

    ``arrays(dtype, *shapes, slot="bands")`` returns uninitialised arrays of those
    shapes, carved from one flat buffer per ``slot`` that grows to the largest total
    ever asked for at once in that slot. The arrays are valid until the next call
    for the same slot: each kernel asks once per band (slot ``"bands"``, and
    ``"bands1"``, … on the other band threads), and each conv layer once per sweep for
    its transformed filters (slot ``"filters"``). A workspace belongs to one network
    and is used from one thread at a time; its band threads are its own.

    ``threads``: how many bands run at once (:meth:`run_bands`), each on its own core
    with its GEMMs on one BLAS thread (:func:`~refstyle.nn.fast.threads.blas_limit`);
    the band scratch stays within one budget, shared between them. The default is the
    cores this process may use. An array module other than NumPy runs its kernels on its
    device, not on the host's cores: its workspace has one thread, whatever is asked.
    """

    ALIGN = 64  # bytes: each array starts on a cache line

    def __init__(self, xp=np, threads=None):
        self.xp = xp
        self._buffers = {}
        self._constants = {}
        self._pool = None
        self.threads = cores() if threads is None else threads

    @property
    def threads(self):
        return self._threads

    @threads.setter
    def threads(self, n):
        if int(n) < 1:
            raise ValueError(f"threads must be at least 1, not {n}")
        self._threads = int(n) if self.xp is np else 1
        if self._pool is not None:  # made again, of the new size, when next needed
            self._pool.shutdown(wait=True)
            self._pool = None

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

    def constant(self, name, value, dtype):
        """A constant array (a NumPy ``value``) on the workspace's device in ``dtype``: uploaded once, then kept."""
        key = (name, np.dtype(dtype).str)
        if key not in self._constants:
            self._constants[key] = self.xp.asarray(value, dtype=dtype)
        return self._constants[key]

    def nbytes(self, slot=None):
        """The memory the workspace holds (in one ``slot``, or in all)."""
        if slot is not None:
            return self._buffers[slot].nbytes if slot in self._buffers else 0
        return sum(buffer.nbytes for buffer in self._buffers.values())

    def clear(self):
        """Free the buffers."""
        self._buffers = {}

    def one_blas_thread(self):
        """A context in which NumPy's BLAS runs on one thread, when this workspace runs bands on several.

        For a whole layer, its filter transform included: a product on two BLAS threads
        just before the bands would leave OpenBLAS's idle thread spinning (about 0.1 s)
        on a core the band threads need.
        """
        return blas_limit(1) if self.threads > 1 else contextlib.nullcontext(False)

    def bands(self, total_rows, bytes_per_row, budget):
        """``(bands, g)``: the bands ``(r0, r1)`` of ``total_rows`` rows, and how many threads share them.

        One thread when the workspace has one or the scratch is small
        (:data:`THREAD_BYTES`), its bands within ``budget`` bytes; else
        ``g = min(threads, total_rows)`` threads, the bands within ``budget / g`` bytes
        each (so that the scratch of all stays within ``budget``), as equal as the rows
        allow and a multiple of ``g`` in number.
        """
        g = min(self.threads, total_rows)
        if g < 2 or total_rows * bytes_per_row < THREAD_BYTES:
            rows = band_rows(total_rows, bytes_per_row, budget)
            return [(r0, min(total_rows, r0 + rows)) for r0 in range(0, total_rows, rows)], 1
        n = -(-total_rows // band_rows(total_rows, bytes_per_row, budget // g))
        n = -(-n // g) * g
        bounds = [total_rows * k // n for k in range(n + 1)]
        return list(zip(bounds[:-1], bounds[1:])), g

    def run_bands(self, total_rows, bytes_per_row, budget, body):
        """Call ``body(r0, r1, slot)`` for each band of :meth:`bands`, on that many threads at once.

        Each thread (the caller's among them) takes the next band not yet taken until
        none is left, and uses scratch slot ``"bands"`` (the caller) or ``"bands<k>"``;
        the GEMMs run on ``threads // g`` BLAS threads meanwhile. Where the BLAS cannot
        be held to that (:func:`~refstyle.nn.fast.threads.blas_limit`), the bands run
        one after the other on the caller's thread. The bands must write disjoint parts
        of the output; which thread computes a band does not change its numbers.
        """
        bands, g = self.bands(total_rows, bytes_per_row, budget)
        if g == 1:
            for r0, r1 in bands:
                body(r0, r1, "bands")  # the BLAS as it is set
            return
        with blas_limit(max(1, self.threads // g)) as held:
            if not held:
                for r0, r1 in bands:
                    body(r0, r1, "bands")
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="refstyle-band")
            todo, lock = iter(bands), threading.Lock()

            def run(slot):
                while True:
                    with lock:
                        band = next(todo, None)
                    if band is None:
                        return
                    body(*band, slot)

            futures = [self._pool.submit(run, f"bands{k}") for k in range(1, g)]
            try:
                run("bands")
            finally:
                wait(futures)
            for f in futures:
                f.result()  # raises a band thread's exception here


def workspace_for(work, xp):
    """``work``, or for a kernel called without one a workspace for this call: one thread, no pool."""
    return Workspace(xp, threads=1) if work is None else work


def band_rows(total_rows, bytes_per_row, budget):
    """How many rows (of tiles or pixels) make one band within ``budget`` bytes."""
    return int(max(1, min(total_rows, budget // max(1, bytes_per_row))))


def band_shape(x, r0, r1, split=False):
    """The shape of :func:`padded_band`'s ``band`` for rows ``r0 .. r1 - 1`` of ``x`` (H, W, C)."""
    H, W, C = x.shape
    half = (W + 1) // 2 + 1
    return (r1 - r0 + 2, 2, half, C) if split else (r1 - r0 + 2, 2 * half, C)


def padded_band(band, x, r0, r1, mask=None, split=False):
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
