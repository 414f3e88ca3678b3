r"""How much memory a synthesis needs, and whether the machine has it: checked before any work.

A run holds at its peak, each counted at the run's dtype:

- the **weights**: every convolution of the architecture at the published widths
  (:data:`~refstyle.nn.arch.VGG_WIDTHS`, VGG19's 20,024,384 parameters); the fast kernels
  add one layer's Winograd filters and their workspace of bands;
- the **layers**: the responses :math:`F^l` at the loss layers and their gradients (the
  objective keeps both), the content targets, the largest layer's input and output in
  flight, and what the kernel set keeps for the backward sweep: one bit per response for
  the fast kernels, every response and ``conv1_2``'s im2col matrix for the reference
  ones; for the largest image the network sees (the photograph at ``--size``, or an
  artwork at ``--style-scale``);
- the optimiser's **history**: L-BFGS keeps ``2·maxcor`` image-sized corrections, and
  SciPy's L-BFGS-B (in float64) its work arrays, bounds and copies besides
  (:data:`OPTIMIZER_VECTORS`).

This is the plan of ``benchmarks/large.py``, whose fast-kernel plan measured within 11%
of the process's peak at 1024 and 2048 pixels; ``tests/test_memory.py`` keeps the
estimate within :data:`ESTIMATE_FACTOR` of the peak ``tracemalloc`` measures at small
sizes. The interpreter and its libraries add :data:`BASE_BYTES`. :func:`check_memory`
compares the total with what the machine has available (:func:`available_memory`) and,
where it does not fit, names the largest ``--size`` that does. Nothing is allocated to
find out.
"""

import os
from typing import NamedTuple

import numpy as np

from ..errors import RefstyleError
from ..nn.arch import ARCHS, VGG_WIDTHS, block_of, conv_layers, is_conv, split_tap
from .conventions import PAPER_MAXCOR
from .images import fit_longer, round_half_up

# Image-sized vectors each optimiser keeps besides L-BFGS's 2·maxcor corrections: SciPy's
# L-BFGS-B (float64) its work arrays, bounds and copies; the others x, the gradient, their moments.
OPTIMIZER_VECTORS = {"lbfgs": 30, "lbfgs-xp": 4, "gd": 2, "adam": 4}
WORKSPACE_BYTES = 16 * 2**20  # the fast kernels' bands of tiles (refstyle.nn.fast.BAND_BYTES)
BASE_BYTES = 300 * 2**20  # the interpreter, NumPy, SciPy, Pillow and the BLAS buffers
ESTIMATE_FACTOR = 1.5  # the estimate of the arrays is within this factor of their measured peak


class MemoryEstimate(NamedTuple):
    """The bytes a run needs at its peak, by part."""

    weights: int
    blobs: int
    history: int
    history_on_host: bool  # SciPy's L-BFGS-B keeps its history on the host, even in a GPU run
    processes: int = 1  # runs at once, each in a process of its own (figure --jobs)

    @property
    def arrays(self):
        return self.weights + self.blobs + self.history

    @property
    def total(self):
        """The arrays and :data:`BASE_BYTES` for each process."""
        return self.arrays + self.processes * BASE_BYTES

    def times(self, processes):
        """The memory of ``processes`` such runs at once, each in its own process."""
        k = int(processes)
        return MemoryEstimate(k * self.weights, k * self.blobs, k * self.history, self.history_on_host, k * self.processes)


def responses(shape, arch, deepest):
    """``{conv layer: elements of its response}`` from ``conv1_1`` to ``deepest``, for an image of ``shape = (H, W)``.

    Pooling rounds up, as Caffe does (floor rounding never makes more).
    """
    H, W = int(shape[0]), int(shape[1])
    sizes = {}
    for name in ARCHS[arch][: ARCHS[arch].index(deepest) + 1]:
        if is_conv(name):
            sizes[name] = VGG_WIDTHS[block_of(name) - 1] * H * W
        else:
            H, W = (H + 1) // 2, (W + 1) // 2
    return sizes


def layer_elements(shape, arch, loss_layers, content_layers, kernels):
    """The elements a forward and backward sweep holds at its peak (see the module docstring)."""
    deepest = max(loss_layers, key=ARCHS[arch].index)
    F = responses(shape, arch, deepest)
    total = 2 * sum(F.get(n, 0) for n in loss_layers) + sum(F.get(n, 0) for n in content_layers) + 2 * max(F.values())
    if kernels == "fast":
        return total + sum(F.values()) / 32  # the ReLU masks, one bit each
    im2col = 9 * VGG_WIDTHS[0] * int(shape[0]) * int(shape[1])  # conv1_2's matrix, 9·C rows
    return total + im2col + (sum(F.values()) if kernels == "reference" else sum(F.values()) / 32)


def weight_elements(arch):
    """The parameters of the architecture's convolutions at the published widths."""
    total, inputs = 0, 3
    for name in conv_layers(arch):
        outputs = VGG_WIDTHS[block_of(name) - 1]
        total += outputs * inputs * 9 + outputs
        inputs = outputs
    return total


def run_shapes(reference, size, style_scale=1.0, artworks=()):
    """The ``(H, W)`` of the images the network sees at the final scale, as :func:`~refstyle.paper.synthesis.synthesize` sizes them.

    ``reference`` (the photograph's shape, else the first artwork's) gets the longer side
    ``size``; each of ``artworks`` (shapes) that times ``style_scale``.
    """
    shape = fit_longer(reference, size)
    side = max(1, round_half_up(max(shape) * style_scale))
    return [shape] + [fit_longer(a, side) for a in artworks]


def estimate_memory(arch, shapes, layers, dtype="float32", kernels="fast", optimizer="lbfgs", maxcor=PAPER_MAXCOR,
                    content_layers=()):
    """A :class:`MemoryEstimate` for a run on images of ``shapes`` (the first is the one optimised).

    ``layers``: every loss layer (taps such as ``conv4_2:pre`` count as their layer);
    ``content_layers``: those whose targets :math:`P^l` are kept.
    """
    itemsize = np.dtype(dtype).itemsize
    loss_layers = sorted({split_tap(tap)[0] for tap in layers})
    content = sorted({split_tap(tap)[0] for tap in content_layers})
    blobs = max(layer_elements(s, arch, loss_layers, content, kernels) for s in shapes) * itemsize
    weights = weight_elements(arch) * (itemsize + (4 if itemsize > 4 else 0))  # and the float32 ones read
    if kernels != "reference":  # one layer's Winograd filters and their backward copy, the bands
        weights += 2 * 16 * VGG_WIDTHS[-1] ** 2 * itemsize + WORKSPACE_BYTES
    n = 3 * int(shapes[0][0]) * int(shapes[0][1])
    vectors = OPTIMIZER_VECTORS[optimizer] + (2 * maxcor if optimizer.startswith("lbfgs") else 0)
    history = n * vectors * (8 if optimizer == "lbfgs" else itemsize)
    return MemoryEstimate(int(weights), int(blobs), int(history), optimizer == "lbfgs")


# A container's memory limit and use: cgroup v2's files, then v1's.
CGROUP_FILES = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)


def _read_int(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):  # missing, or "max": no limit
        return None


def _container_room():
    """What a container's memory limit leaves (limit - use), or None outside one or without a limit."""
    for limit_file, use_file in CGROUP_FILES:
        limit, used = _read_int(limit_file), _read_int(use_file)
        if limit is not None and used is not None and limit < 2**60:  # v1 writes "no limit" as a huge number
            return max(0, limit - used)
    return None


def _machine_available():
    """Linux's ``MemAvailable`` (free memory and the caches it can drop), else the free physical pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX, or the names unknown here
        return None


def available_memory(device="cpu"):
    """The bytes the machine can still give a run, or None where that is unknown.

    The CPU: Linux's ``MemAvailable``, else the free physical pages (``sysconf``), and
    no more than a container's memory limit leaves (cgroup v2 or v1). The GPU: its free
    memory (CuPy's ``memGetInfo``).
    """
    if device == "gpu":
        from ..backend import device_module

        try:
            return int(device_module("gpu").cuda.runtime.memGetInfo()[0])
        except Exception:  # no CuPy, no device: the run itself says so
            return None
    known = [n for n in (_machine_available(), _container_room()) if n is not None]
    return min(known) if known else None


def size_text(n):
    """Bytes as GiB (or MiB below one GiB), one decimal."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_memory(estimate_at, size, device="cpu", available=None):
    """Raise a :class:`RefstyleError` where a run at ``size`` needs more memory than is available.

    ``estimate_at(size)``: the :class:`MemoryEstimate` at a longer side of ``size``
    pixels. ``available``: the bytes the run may use (default :func:`available_memory`, of
    the GPU for the device's part of a GPU run). The message gives the estimate, what is
    available and the largest size that fits.
    """
    host = available_memory("cpu") if available is None else available
    gpu = available_memory("gpu") if device == "gpu" and available is None else None

    def need(s):  # (bytes on the device, bytes on the host)
        e = estimate_at(s)
        if gpu is None:
            return 0, e.total
        on_host = e.history if e.history_on_host else 0
        return e.arrays - on_host, e.processes * BASE_BYTES + on_host

    def fits(s):
        on_device, on_host = need(s)
        return (gpu is None or on_device <= gpu) and (host is None or on_host <= host)

    if fits(size):
        return
    low, high = 0, size  # the largest size that fits lies in [low, high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    e = estimate_at(size)
    has = f"the GPU has {size_text(gpu)} free" if gpu is not None and need(size)[0] > gpu else (
        f"this machine has {size_text(host)} available")
    advice = f"--size {low} fits" if low >= 1 and fits(low) else "no size fits: free some memory"
    runs = f" for {e.processes} runs at once" if e.processes > 1 else ""
    raise RefstyleError(
        f"--size {size} needs about {size_text(e.total)} of memory{runs} (weights {size_text(e.weights)}, layers "
        f"{size_text(e.blobs)}, optimiser {size_text(e.history)}), but {has}: {advice}"
    )


def run_estimate(settings, photo_shape, artwork_shapes, arch="vgg19", dtype="float32", kernels="fast"):
    """``estimate_at(size)``, the :class:`MemoryEstimate` of a synthesis with ``settings`` at a longer side of ``size``.

    ``photo_shape``: the photograph's ``(H, W)`` as read, or None (texture synthesis);
    ``artwork_shapes``: the artworks'. ``arch``: the network's, VGG19 (the larger) where
    it is not known yet. None where the run has no loss layer or names a layer the
    architecture lacks: the run itself reports those.
    """
    s = settings.resolved()
    layers = list(s.content_layers if photo_shape is not None and s.alpha else [])
    layers += list(s.style_layers if artwork_shapes and s.beta else [])
    if not layers or any(split_tap(tap)[0] not in ARCHS[arch] for tap in layers):
        return None
    reference = photo_shape if photo_shape is not None else artwork_shapes[0]
    maxcor = (s.optimizer_options or {}).get("maxcor", PAPER_MAXCOR)
    content = s.content_layers if photo_shape is not None and s.alpha else ()

    def estimate_at(size):
        shapes = run_shapes(reference, size, s.style_scale, artwork_shapes)
        return estimate_memory(arch, shapes, layers, dtype, kernels, s.optimizer, maxcor, content)

    return estimate_at


def check_run_memory(settings, photo_shape, artwork_shapes, arch="vgg19", dtype="float32", kernels="fast",
                     device="cpu", available=None):
    """:func:`check_memory` for a synthesis with ``settings`` at ``settings.size`` (see :func:`run_estimate`)."""
    estimate_at = run_estimate(settings, photo_shape, artwork_shapes, arch, dtype, kernels)
    if estimate_at is not None:
        check_memory(estimate_at, settings.size, device, available)
