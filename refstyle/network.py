r"""The VGG16 and VGG19 convolution stacks, with Caffe's layer names.

Only the convolutional part is built (no fully connected layers are ever used). Each
``convB_K`` is a 3×3 pad-1 convolution followed by its ReLU, and its *response*
:math:`F^l` is the output after the ReLU, as with Caffe's in-place ReLU. Each
``poolB`` is a 2×2 stride-2 pooling, average (the paper's choice) or max.

``VGG.forward`` computes only up to the deepest requested layer and returns the
responses with a cache; ``VGG.backward`` takes a dict of gradients :math:`\partial L/\partial F^l`
at any set of computed layers and returns :math:`\partial L/\partial x` in one backward sweep.

Two sets of kernels compute the same layers: ``kernels="reference"`` (the default),
the readable ones of :mod:`refstyle.layers` on Caffe's ``N×C×H×W`` blobs, and
``kernels="fast"``, those of :mod:`refstyle.fastconv` — channels-last blobs inside
the network and Winograd F(2×2, 3×3) convolutions, tested against the reference ones
and taking 0.70–0.75 of PyTorch's time on a 2-core CPU (``benchmarks/README.md``);
``kernels="im2col"`` is the fast path with channels-last im2col instead of Winograd.
Either way the responses and gradients come in and go out as Caffe blobs. In float32
the kernel sets differ by rounding only (about 1e-6 relative through the network).
"""

from typing import NamedTuple

from . import fastconv
from . import layers as L
from .backend import device_module, resolve_dtype, to_numpy
from .errors import LayerError, RefstyleError

# The conv stacks, in order. Layer tables are defined once, here, and shared by the
# API, the command line and the figures.
_BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}


def _stack(convs_per_block):
    names = []
    for block, n in enumerate(convs_per_block, start=1):
        names += [f"conv{block}_{k}" for k in range(1, n + 1)] + [f"pool{block}"]
    return tuple(names)


ARCHS = {arch: _stack(blocks) for arch, blocks in _BLOCKS.items()}
VGG16_LAYERS = ARCHS["vgg16"]
VGG19_LAYERS = ARCHS["vgg19"]

# The number of filters of each block's convolutions in the published networks.
VGG_WIDTHS = (64, 128, 256, 512, 512)

# The kernel sets a VGG can compute with (see the module docstring).
KERNELS = ("reference", "fast", "im2col")


def conv_layers(arch):
    """The names of an architecture's convolution layers, in order."""
    return tuple(name for name in ARCHS[arch] if name.startswith("conv"))


def check_arch(arch):
    """Return ``arch`` if it is a known architecture, else raise a clear error."""
    if arch not in ARCHS:
        raise RefstyleError(f"unknown architecture {arch!r}: choose one of {', '.join(ARCHS)}")
    return arch


def check_layers(names, arch, available=None):
    """Raise :class:`LayerError` for the first name that is not a layer of ``arch``.

    ``available`` (a prefix of the architecture's layers, when the weights end early)
    narrows what can be computed.
    """
    arch = check_arch(arch)
    available = ARCHS[arch] if available is None else available
    for name in names:
        if name in available:
            continue
        if name in ARCHS[arch]:
            raise LayerError(
                f"layer {name!r} cannot be computed: the weights end at {available[-1]!r}; "
                f"use weights that include {name!r} or a shallower layer"
            )
        others = [a for a in ARCHS if name in ARCHS[a]]
        hint = f" (it is a {others[0]} layer: use --arch {others[0]})" if others else ""
        raise LayerError(
            f"{arch} has no layer {name!r}{hint}; its layers are {', '.join(ARCHS[arch])}"
        )


class NetCache(NamedTuple):
    """What :meth:`VGG.backward` needs from a forward pass: each computed layer's cache."""

    names: tuple  # the layers computed, in order
    caches: tuple  # one per layer: (ConvCache, ReluCache) for a conv, PoolCache for a pool
    shapes: tuple  # each layer's output shape


def conv_relu_forward(x, W, b):
    """A conv layer and its in-place ReLU: the response ``F = max(conv(x) + b, 0)``."""
    z, conv_cache = L.conv_forward(x, W, b)
    F, relu_cache = L.relu_forward(z)
    return F, (conv_cache, relu_cache)


def conv_relu_backward(dF, cache):
    """Back through the ReLU (the ``F > 0`` mask), then through the convolution."""
    conv_cache, relu_cache = cache
    return L.conv_backward(L.relu_backward(dF, relu_cache), conv_cache)


class VGG:
    r"""A VGG conv stack over given weights.

    Parameters
    ----------
    weights : Mapping
        ``{"conv1_1": (W, b), ...}`` as returned by :func:`refstyle.load_weights` or
        :func:`refstyle.generate_weights`. Any filter counts are accepted as long as
        they chain (each layer's input channels equal the previous layer's filters).
        The weights may end early (a prefix of the architecture); deeper layers then
        cannot be requested.
    arch : {"vgg19", "vgg16"} or None
        None takes the architecture the weights record or imply.
    pooling : {"avg", "max"}
        The paper replaces VGG's max pooling by average pooling.
    dtype : float32 (default, speed) or float64 (gradient checks).
    device : {"cpu", "gpu"}
        NumPy on the CPU, CuPy on the GPU.
    kernels : {"reference", "fast", "im2col"}
        ``"reference"``: :mod:`refstyle.layers`, the readable definitions; ``"fast"``:
        :mod:`refstyle.fastconv` (channels last, Winograd); ``"im2col"``: the fast path
        with channels-last im2col convolutions. All compute the same function; in
        float32 they differ by rounding (about 1e-6 relative, see ``benchmarks/README.md``).
    """

    def __init__(self, weights, arch=None, pooling="avg", dtype="float32", device="cpu", kernels="reference"):
        from .weights import check_weights, infer_arch

        if pooling not in L.POOLINGS:
            raise RefstyleError(f"unknown pooling {pooling!r}: choose one of {', '.join(L.POOLINGS)}")
        if kernels not in KERNELS:
            raise RefstyleError(f"unknown kernels {kernels!r}: choose one of {', '.join(KERNELS)}")
        self.arch = check_arch(arch if arch is not None else infer_arch(weights))
        convs = check_weights(weights, self.arch)
        self.pooling = pooling
        self.dtype = resolve_dtype(dtype)
        self.xp = device_module(device)
        self.device = device
        last = ARCHS[self.arch].index(convs[-1])
        if ARCHS[self.arch][last + 1 : last + 2] == (f"pool{convs[-1][4]}",):
            last += 1  # the pool that ends the last conv's block needs no weights
        self.layers = ARCHS[self.arch][: last + 1]
        self.params = {
            name: tuple(self.xp.asarray(a, dtype=self.dtype) for a in weights[name]) for name in convs
        }
        self.kernels = kernels
        self.plans, self.workspace = {}, None
        if kernels != "reference":
            method = "winograd" if kernels == "fast" else "im2col"
            self.plans = {name: fastconv.conv_plan(W, b, method) for name, (W, b) in self.params.items()}
            self.workspace = fastconv.Workspace(self.xp)

    def __repr__(self):
        kernels = "" if self.kernels == "reference" else f"kernels={self.kernels!r}, "
        return (
            f"VGG(arch={self.arch!r}, pooling={self.pooling!r}, dtype={self.dtype.name!r}, "
            f"device={self.device!r}, {kernels}layers {self.layers[0]}..{self.layers[-1]})"
        )

    def _input(self, x):
        if getattr(x, "ndim", None) != 4 or x.shape[:2] != (1, 3):
            shape = getattr(x, "shape", type(x).__name__)
            raise RefstyleError(
                f"the network's input must be a 1×3×H×W array (Caffe layout, BGR, mean "
                f"subtracted: see refstyle.preprocess), not {shape}"
            )
        return self.xp.asarray(x, dtype=self.dtype)

    def forward(self, x, layers):
        r"""Compute the responses :math:`F^l` (after ReLU) of the requested layers.

        Computes only as deep as the deepest requested layer.

        Returns
        -------
        F : dict
            ``{name: array of shape (1, N_l, H_l, W_l)}`` for each requested layer. With
            the fast kernels each is, where the layer's array is contiguous, a view of the
            network's channels-last array (:func:`refstyle.fastconv.nchw_view`): the
            blob's shape and values, not its memory order (``numpy.ascontiguousarray``
            makes a Caffe-ordered copy).
        cache : NetCache
            What :meth:`backward` needs.
        """
        layers = [layers] if isinstance(layers, str) else list(layers)
        check_layers(layers, self.arch, self.layers)
        if not layers:
            raise LayerError("no layers requested: name at least one layer")
        depth = max(self.layers.index(name) for name in layers)
        h = self._input(x)
        if self.kernels != "reference":
            return self._forward_fast(h, layers, depth)
        F, caches, shapes = {}, [], []
        for name in self.layers[: depth + 1]:
            if name.startswith("conv"):
                h, cache = conv_relu_forward(h, *self.params[name])
            else:
                h, cache = L.pool_forward(h, self.pooling)
            caches.append(cache)
            shapes.append(h.shape)
            if name in layers:
                F[name] = h
        return F, NetCache(self.layers[: depth + 1], tuple(caches), tuple(shapes))

    def _forward_fast(self, x, layers, depth):
        """:meth:`forward` with :mod:`refstyle.fastconv`: channels-last ``(H, W, C)`` inside."""
        h = fastconv.hwc_view(x)
        F, caches, shapes = {}, [], []
        for name in self.layers[: depth + 1]:
            if name.startswith("conv"):
                h, cache = fastconv.conv_relu_forward(h, self.plans[name], self.workspace)
            else:
                h, cache = fastconv.pool_forward(h, self.pooling)
            caches.append(cache)
            shapes.append((1, h.shape[2], h.shape[0], h.shape[1]))
            if name in layers:  # the blob's shape, channels-last memory: no copy, unless a
                # cropped view (odd width) would make every matrix view of it a copy
                F[name] = fastconv.nchw_view(h) if h.flags.c_contiguous else fastconv.nchw(h)
        return F, NetCache(self.layers[: depth + 1], tuple(caches), tuple(shapes))

    def backward(self, dF, cache):
        r"""Back-propagate gradients at several layers to the input image.

        Given ``dF = {name: ∂L/∂F^l}`` for any set of layers computed by the forward
        pass that produced ``cache``, returns ``∂L/∂x`` for ``L = Σ_l Σ F^l · dF^l``,
        in one sweep from the deepest of those layers down: on the way, each layer's
        gradient is added where that layer is passed.
        """
        if not dF:
            raise LayerError("backward needs the gradient at one layer at least")
        for name, g in dF.items():
            if name not in cache.names:
                raise LayerError(
                    f"no gradient can flow from {name!r}: the forward pass stopped at {cache.names[-1]!r}"
                )
            expected = cache.shapes[cache.names.index(name)]
            if tuple(g.shape) != tuple(expected):
                raise RefstyleError(
                    f"the gradient at {name!r} has shape {tuple(g.shape)}, but the response has {tuple(expected)}"
                )
        deepest = max(cache.names.index(name) for name in dF)
        if self.kernels != "reference":
            return self._backward_fast(dF, cache, deepest)
        d = None
        for i in range(deepest, -1, -1):
            name = cache.names[i]
            if name in dF:
                g = self.xp.asarray(dF[name], dtype=self.dtype)
                d = g if d is None else d + g
            if name.startswith("conv"):
                d = conv_relu_backward(d, cache.caches[i])
            else:
                d = L.pool_backward(d, cache.caches[i])
        return d

    def _backward_fast(self, dF, cache, deepest):
        """:meth:`backward` with :mod:`refstyle.fastconv`; the gradients given are never written to."""
        d = None
        for i in range(deepest, -1, -1):
            name = cache.names[i]
            if name in dF:
                g = self.xp.asarray(dF[name], dtype=self.dtype)
                d = fastconv.to_hwc(g) if d is None else fastconv.add_nchw(d, g)
            if name.startswith("conv"):
                d = fastconv.conv_relu_backward(d, cache.caches[i], self.workspace)
            else:
                d = fastconv.pool_backward(d, cache.caches[i])
        return fastconv.nchw(d)

    def responses(self, x, layers):
        """The responses of the requested layers as NumPy arrays (for inspection)."""
        F, _ = self.forward(x, layers)
        return {name: to_numpy(v) for name, v in F.items()}
