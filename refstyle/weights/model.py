"""VGG weights in memory: a :class:`Weights` mapping and random weights for experiments.

In memory, weights are a :class:`Weights` mapping ``{"conv1_1": (W, b), ...}`` in the
architecture's order, ``W`` ``(out, in, 3, 3)`` and ``b`` ``(out,)``, plus a ``meta``
dict saying what they are (architecture, source file, input convention). The readers
of :mod:`refstyle.weights` make them; :func:`refstyle.nn.arch.check_weights` checks
them against an architecture.
"""

from collections.abc import Mapping

import numpy as np

from ..errors import NonFiniteWeightsError
from ..nn.arch import VGG_CONV_NAMES, block_of, conv_layers


class Weights(Mapping):
    """Ordered ``{layer: (W, b)}`` with a ``meta`` dict (arch, source, input convention)."""

    def __init__(self, layers, meta=None):
        self._layers = dict(layers)
        self.meta = dict(meta or {})

    def __getitem__(self, name):
        return self._layers[name]

    def __iter__(self):
        return iter(self._layers)

    def __len__(self):
        return len(self._layers)

    def __repr__(self):
        names = list(self._layers)
        span = f"{names[0]}..{names[-1]}" if names else "no layers"
        return f"Weights({len(names)} conv layers {span}, arch={self.meta.get('arch')!r})"


def generate_weights(arch="vgg19", widths=(4, 6, 8, 8, 8), seed=0, dtype="float64", depth=None):
    """Random weights for a VGG-shaped network with few filters (tests, gradient checks).

    ``widths`` are the filter counts of blocks 1..5 (``VGG_WIDTHS`` for the real
    sizes); ``depth`` (a conv layer name) ends the network early. Filters are drawn
    with He scaling, so responses keep their size through the stack; biases are
    small and random, so some units are off and the ReLU masks matter.
    """
    rng = np.random.default_rng(seed)
    names = conv_layers(arch)
    if depth is not None:
        names = names[: names.index(depth) + 1]
    layers, prev = {}, 3
    for name in names:
        out = widths[block_of(name) - 1]
        W = rng.standard_normal((out, prev, 3, 3)) * np.sqrt(2.0 / (9 * prev))
        b = rng.standard_normal(out) * 0.1
        layers[name] = (W.astype(dtype), b.astype(dtype))
        prev = out
    return Weights(layers, {"arch": arch, "source": f"generated (seed {seed}, widths {list(widths)})"})


def keep_vgg(layers, meta):
    """The VGG convolutions of ``layers``; the names of the others go to ``meta['skipped']``."""
    skipped = [name for name in layers if name not in VGG_CONV_NAMES]
    if skipped:
        meta["skipped"] = skipped
    return Weights({name: Wb for name, Wb in layers.items() if name in VGG_CONV_NAMES}, meta)


def check_finite(weights, path):
    """Refuse weights that hold NaN or Inf, naming the first such layer and what it holds."""
    for name, (W, b) in weights.items():
        for what, a in (("weights", W), ("biases", b)):
            a = np.asarray(a)
            if np.isfinite(a).all():
                continue
            nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
            found = " and ".join(text for n, text in ((nan, f"{nan:,} NaN"), (inf, f"{inf:,} Inf")) if n)
            raise NonFiniteWeightsError(
                f"{path}: {name}'s {what} hold {found} of {a.size:,} values: a damaged file, or weights from a "
                "training run that diverged; download or convert them again"
            )
