r"""The VGG16 and VGG19 convolution stacks, with Caffe's layer names: one loop, any kernel set.

Only the convolutional part is built (no fully connected layers are ever used). Each
``convB_K`` is a 3×3 pad-1 convolution followed by its ReLU, and its *response*
:math:`F^l` is the output after the ReLU, as with Caffe's in-place ReLU. Each
``poolB`` is a 2×2 stride-2 pooling, average (the paper's choice) or max.

``VGG.forward`` computes only up to the deepest requested layer and returns the
responses with a cache; ``VGG.backward`` takes a dict of gradients :math:`\partial L/\partial F^l`
at any set of computed layers and returns :math:`\partial L/\partial x` in one backward sweep.
Both are one loop over the layer table (:mod:`refstyle.nn.arch`); each step is computed
by the network's kernel set (:mod:`refstyle.nn.kernels`): the readable reference
kernels by default, or the fast ones, which give the same numbers to float32 rounding.
"""

from typing import NamedTuple

from ..backend import device_module, resolve_dtype, to_numpy
from ..errors import LayerError, RefstyleError
from .arch import PRE_RELU, check_arch, check_layers, check_weights, computed_layers, infer_arch, is_conv, split_tap
from .inputs import CAFFE_INPUT, InputStage
from .kernels import KERNELS, kernel_set
from .layers import POOLINGS, ROUNDINGS


# How the weights' 3×3 filters are run: as stored, or transposed in space (an implementation that reads
# MatConvNet's height × width as width × height: anishathalye/neural-style).
FILTERS = ("as-stored", "transposed")


class NetCache(NamedTuple):
    """What :meth:`VGG.backward` needs from a forward pass: each computed layer's cache."""

    names: tuple  # the layers computed, in order
    caches: tuple  # one per layer, the kernel set's: a conv layer's (with its ReLU's mask), a pooling's
    shapes: tuple  # each layer's output shape, as a Caffe blob


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
        ``"reference"``: :mod:`refstyle.nn.layers`, the readable definitions; ``"fast"``:
        :mod:`refstyle.nn.fast` (channels last, Winograd); ``"im2col"``: the fast path
        with channels-last im2col convolutions. All compute the same function; in
        float32 they differ by rounding (about 1e-6 relative, see ``benchmarks/README.md``).
    """

    def __init__(self, weights, arch=None, pooling="avg", dtype="float32", device="cpu", kernels="reference",
                 rounding="ceil", image=None, feed=None, filters=FILTERS[0]):
        if pooling not in POOLINGS:
            raise RefstyleError(f"unknown pooling {pooling!r}: choose one of {', '.join(POOLINGS)}")
        if rounding not in ROUNDINGS:
            raise RefstyleError(f"unknown pooling rounding {rounding!r}: choose one of {', '.join(ROUNDINGS)}")
        if kernels not in KERNELS:
            raise RefstyleError(f"unknown kernels {kernels!r}: choose one of {', '.join(KERNELS)}")
        if filters not in FILTERS:
            raise RefstyleError(f"unknown filters {filters!r}: choose one of {', '.join(FILTERS)}")
        self.arch = check_arch(arch if arch is not None else infer_arch(weights))
        convs = check_weights(weights, self.arch)
        self.pooling, self.rounding = pooling, rounding
        self.dtype = resolve_dtype(dtype)
        self.xp = device_module(device)
        self.device = device
        self.layers = computed_layers(self.arch, convs)
        # an implementation that reads its file's 3×3 filters with height and width swapped runs them transposed
        self.filters = filters
        turn = (lambda W: W.swapaxes(2, 3)) if filters == "transposed" else (lambda W: W)
        self.params = {
            name: (self.xp.ascontiguousarray(self.xp.asarray(turn(weights[name][0]), dtype=self.dtype)),
                   self.xp.asarray(weights[name][1], dtype=self.dtype))
            for name in convs
        }
        self.kernels = kernels
        self.kernel_set = kernel_set(kernels, self.params, self.xp)
        # the space of the images x given to forward, and the space conv1_1 is fed: by default the
        # one the weights were trained on. An exact per-channel map between them runs first
        # (before conv1_1's zero padding).
        self.image = dict(CAFFE_INPUT if image is None else image)
        self.weights_input = dict(getattr(weights, "meta", {}).get("input", CAFFE_INPUT))
        self.stage = InputStage(self.image, self.weights_input if feed is None else feed)

    def __repr__(self):
        kernels = "" if self.kernels == "reference" else f"kernels={self.kernels!r}, "
        rounding = "" if self.rounding == "ceil" else f"rounding={self.rounding!r}, "
        stage = "" if self.stage.identity else f"input {self.stage}, "
        stage += "" if self.filters == FILTERS[0] else f"filters={self.filters!r}, "
        return (
            f"VGG(arch={self.arch!r}, pooling={self.pooling!r}, {rounding}dtype={self.dtype.name!r}, "
            f"device={self.device!r}, {kernels}{stage}layers {self.layers[0]}..{self.layers[-1]})"
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
            network's channels-last array (:func:`refstyle.nn.fast.nchw_view`): the
            blob's shape and values, not its memory order (``numpy.ascontiguousarray``
            makes a Caffe-ordered copy).
        cache : NetCache
            What :meth:`backward` needs.
        """
        layers = [layers] if isinstance(layers, str) else list(layers)
        check_layers(layers, self.arch, self.layers)
        if not layers:
            raise LayerError("no layers requested: name at least one layer")
        depth = max(self.layers.index(split_tap(tap)[0]) for tap in layers)
        before_relu = {split_tap(tap)[0] for tap in layers if split_tap(tap)[1]}
        k = self.kernel_set
        h = k.enter(self.stage.forward(self._input(x)))
        F, caches, shapes = {}, [], []
        for name in self.layers[: depth + 1]:
            if is_conv(name):
                h, z, cache = k.conv_relu_forward(name, h, keep_z=name in before_relu)
                if z is not None:
                    F[name + PRE_RELU] = k.response(z)
            else:
                h, cache = k.pool_forward(h, self.pooling, self.rounding)
            caches.append(cache)
            shapes.append(k.blob_shape(h))
            if name in layers:
                F[name] = k.response(h)
        return {tap: F[tap] for tap in layers}, NetCache(self.layers[: depth + 1], tuple(caches), tuple(shapes))

    def backward(self, dF, cache):
        r"""Back-propagate gradients at several layers to the input image.

        Given ``dF = {name: ∂L/∂F^l}`` for any set of layers computed by the forward
        pass that produced ``cache``, returns ``∂L/∂x`` for ``L = Σ_l Σ F^l · dF^l``,
        in one sweep from the deepest of those layers down: on the way, each layer's
        gradient is added where that layer is passed. The gradients given are never
        written to.
        """
        if not dF:
            raise LayerError("backward needs the gradient at one layer at least")
        for tap, g in dF.items():
            name = split_tap(tap)[0]
            if name not in cache.names:
                raise LayerError(
                    f"no gradient can flow from {tap!r}: the forward pass stopped at {cache.names[-1]!r}"
                )
            expected = cache.shapes[cache.names.index(name)]
            if tuple(g.shape) != tuple(expected):
                raise RefstyleError(
                    f"the gradient at {tap!r} has shape {tuple(g.shape)}, but the response has {tuple(expected)}"
                )
        deepest = max(cache.names.index(split_tap(tap)[0]) for tap in dF)
        k = self.kernel_set
        d = None
        for i in range(deepest, -1, -1):
            name = cache.names[i]
            if name in dF:
                d = k.add_gradient(d, self.xp.asarray(dF[name], dtype=self.dtype))
            if is_conv(name):
                dz = dF.get(name + PRE_RELU)
                dz = None if dz is None else k.blob(self.xp.asarray(dz, dtype=self.dtype))
                d = k.conv_relu_backward(d, cache.caches[i], dz)
            else:
                d = k.pool_backward(d, cache.caches[i])
        return self.stage.backward(k.leave(d))

    def responses(self, x, layers):
        """The responses of the requested layers as NumPy arrays (for inspection)."""
        F, _ = self.forward(x, layers)
        return {name: to_numpy(v) for name, v in F.items()}
