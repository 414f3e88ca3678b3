"""The array backend: NumPy on the CPU, CuPy on an NVIDIA GPU, through one ``xp``.

The numerical code never asks which library it runs on. A public entry point
resolves the array module once, with :func:`array_module` (from the arrays it was
given) or :func:`device_module` (from a device name), and passes ``xp`` down; the
functions below it use only the part of the NumPy API that CuPy implements too.
CuPy is imported lazily and is optional: on a machine without it, asking for the GPU
raises a :class:`~refstyle.errors.RefstyleError` that says how to install it.
"""

import functools

import numpy as np

from .errors import RefstyleError

DEVICES = ("cpu", "gpu")
DTYPES = ("float32", "float64")  # float32 for speed, float64 where a gradient is checked


def _cupy():
    """Return the CuPy module, or None when it is not installed or has no GPU.

    Every path to the GPU module goes through here (:func:`array_module`,
    :func:`device_module`, :func:`have_gpu`), so that a test can hand refstyle another
    module for ``device="gpu"``: the suite's CuPy emulation on machines without a GPU.
    """
    return _probe()[0]


@functools.cache
def _probe():
    """``(cupy, "")`` when CuPy runs here, else ``(None, why not)``.

    Counting devices is not enough: with the driver but without CUDA's compiler and math
    libraries CuPy imports, counts the GPU and fails at its first kernel. So one small
    element-wise operation (compiled by NVRTC) and one small matrix product (cuBLAS) are
    run and their results checked before the GPU is taken as usable.
    """
    try:
        import cupy
    except ImportError:
        return None, "CuPy is not installed"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None, "CuPy sees no GPU"
    except Exception as e:  # no driver, no device: CuPy imports but cannot run
        return None, f"CuPy finds no usable GPU driver ({type(e).__name__}: {e})"
    try:
        a = cupy.arange(4, dtype=cupy.float32).reshape(2, 2) * 2 + 1  # an element-wise kernel
        product = (a @ a).get()  # a matrix product, read back
    except Exception as e:  # e.g. libnvrtc or libcublas missing
        return None, f"CuPy cannot run a kernel here ({type(e).__name__}: {e})"
    if not np.array_equal(product, [[16.0, 24.0], [40.0, 64.0]]):
        return None, f"CuPy computed a wrong matrix product here ({product.tolist()})"
    return cupy, ""


def have_gpu():
    """True when CuPy is installed, sees a GPU and runs an element-wise kernel and a matrix product on it."""
    return _cupy() is not None


def array_module(*arrays):
    """Return the module (``numpy`` or ``cupy``) that owns the given arrays.

    NumPy arrays, Python scalars and None give ``numpy``; any CuPy array gives ``cupy``.
    """
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            return _cupy()
    return np


def device_module(device="cpu"):
    """Return the array module for a device name: ``"cpu"`` -> numpy, ``"gpu"`` -> cupy."""
    if device == "cpu":
        return np
    if device == "gpu":
        cupy = _cupy()
        if cupy is None:
            raise RefstyleError(
                f"--device gpu needs CuPy running on an NVIDIA GPU, and {_probe()[1]}: install the package "
                "with the 'gpu' extra (pip install 'refstyle[gpu]': CuPy with the CUDA libraries it compiles "
                "and multiplies with) on a machine with an NVIDIA driver, or use --device cpu"
            )
        return cupy
    raise RefstyleError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")


def to_numpy(a):
    """Return ``a`` as a NumPy array (a copy from the GPU for CuPy arrays, else as is)."""
    if hasattr(a, "get") and type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)


def resolve_dtype(dtype):
    """Return a NumPy floating dtype: float32 (speed) or float64 (gradient checks)."""
    dt = np.dtype(dtype)
    if dt.name not in DTYPES:
        raise RefstyleError(f"dtype must be {' or '.join(DTYPES)}, not {dt.name}")
    return dt
