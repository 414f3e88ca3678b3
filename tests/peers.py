r"""Independent PyTorch rewrites of seven published neural-style implementations' loss code.

Each peer computes **one evaluation** of that implementation's total loss and its gradient
with respect to the image it optimises, as its published code does: its input space, its
network (layers, ReLU placement and in-place effects, pooling type and rounding, padding),
where its losses tap the network, how they are normalised, its default weights and layers
and its extras (TV loss, gradient normalisation). Every default is a keyword argument.

- :func:`neural_style_pt`: ProGamerGov/neural-style-pt, ``neural_style.py`` and
  ``CaffeLoader.py``; weights keyed ``features.N.weight``.
- :func:`neural_style_lua`: jcjohnson/neural-style, ``neural_style.lua`` (Lua Torch), whose
  network szagoruyko/loadcaffe (``loadcaffe.cpp``) builds; weights keyed by Caffe layer name,
  ``conv1_1.weight``.
- :func:`pytorch_tutorial`: pytorch/tutorials, ``advanced_source/neural_style_tutorial.py``;
  weights keyed as torchvision's ``vgg19().features``, ``0.weight``.
- :func:`gatys_pytorch`: leongatys/PytorchNeuralStyleTransfer, ``NeuralStyleTransfer.ipynb``;
  weights keyed as ``vgg_conv.pth``, ``conv1_1.weight``.

Conventions shared by all seven peers:

- ``torch`` is passed in (tests import it with ``conftest.require_torch``), so importing this
  module needs only NumPy.
- ``state_dict`` maps that implementation's own key names to NumPy arrays (conv weights in
  Caffe/PyTorch order ``(out, in, 3, 3)``); keys of other layers (``classifier.*``) are
  ignored. The architecture (VGG19: 16 convs, VGG16: 13) and the widths come from the
  weights, so small generated networks run the same code as the real ones. (The three
  TensorFlow-world peers take refstyle's ``layers`` instead, see below.)
- Images are NumPy arrays ``(1, 3, H, W)`` already in the implementation's own input space;
  ``image_space_of(rgb_uint8)`` (an attribute of each peer, and a module-level function)
  makes that space from an RGB ``uint8`` image exactly as the implementation's
  preprocessing does after its resize. The returned gradient is in that same space.
  (``anishathalye_image_space`` also takes the weights file's mean pixel; the attribute uses
  the VGG ``.mat``'s (123.68, 116.779, 103.939).) Channels-last code is rewritten NCHW.
- Everything is computed in float64 (the published code runs float32), deterministically.
- A peer returns ``(loss, grad)``: a float and an array shaped like ``x``. Pass
  ``diagnostics={}`` to receive the tapped responses (``"responses"``, by the
  implementation's own layer names, before any in-place change), each loss term
  (``"content"``, ``"style"``, ``"tv"``) and the layer sequence that was built (``"net"``).

And the paper itself, :func:`paper`: Gatys, Ecker & Bethge's equations as their Methods
section writes them, on the Caffe VGG19 they used (average pooling), written from the paper,
not from refstyle's code.

Three TensorFlow-world implementations, each read at a named commit (files and lines there):

- :func:`tf_tutorial`: tensorflow/docs ``site/en/tutorials/generative/style_transfer.ipynb``
  at 60c51e7 (2026-01-14); the Keras VGG19 it builds, ``keras/src/applications/vgg19.py``.
- :func:`keras_example`: keras-team/keras-io ``examples/generative/neural_style_transfer.py``
  at 0896b2e.
- :func:`anishathalye`: anishathalye/neural-style ``vgg.py``, ``stylize.py``,
  ``neural_style.py`` at d0a1148 (2026-04-18; the loss code last changed in ab9d69e).

These three take ``layers``, refstyle's own form ``{"conv1_1": (W, b), ...}`` with ``W``
``(out, in, 3, 3)``, in the input-channel order of that implementation's weights file (said
in each docstring), instead of a ``state_dict``; they are VGG19 only, as their code is.

The four PyTorch/Lua peers' sources were read from stored copies of those repositories,
which hold several versions (and forks) of each file; places are cited by file and function
or command-line option, not by line. Where versions differ it is said: neural-style-pt's
master (7251405) multiplies the input by 255 and has ``-normalize_gradients``, both since
commit cbcd023 (2020-12-06); before it the input was multiplied by 256.
"""

import functools
from collections import OrderedDict

import numpy as np

VGG_BLOCKS = {"vgg19": (2, 2, 4, 4, 4), "vgg16": (2, 2, 3, 3, 3)}
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # neural_style.lua/.py `preprocess`, the Caffe VGG mean pixel


# --- the VGG layer sequence and the implementations' key names -----------------------------


def vgg_sequence(arch):
    """``[(kind, caffe_name)]`` of the VGG feature stack: conv1_1, relu1_1, ..., pool1, ....

    The position of an entry is also its index in torchvision's ``vgg*.features`` (and in
    neural-style-pt's ``CaffeLoader.buildSequential``), which is what ``features.N`` means.
    """
    seq = []
    for block, n in enumerate(VGG_BLOCKS[arch], 1):
        for i in range(1, n + 1):
            seq += [("conv", f"conv{block}_{i}"), ("relu", f"relu{block}_{i}")]
        seq.append(("pool", f"pool{block}"))
    return seq


def conv_names(arch):
    return [name for kind, name in vgg_sequence(arch) if kind == "conv"]


def _arch_of(n_convs):
    for arch in VGG_BLOCKS:
        if sum(VGG_BLOCKS[arch]) == n_convs:
            return arch
    raise ValueError(f"{n_convs} conv layers: neither VGG19 (16) nor VGG16 (13)")


def _torchvision_index(arch):
    return {name: i for i, (kind, name) in enumerate(vgg_sequence(arch)) if kind == "conv"}


def neural_style_pt_state_dict(layers):
    """refstyle layers ``{"conv1_1": (W, b), ...}`` -> neural-style-pt's ``features.N.weight`` keys."""
    index = _torchvision_index(_arch_of(len(layers)))
    out = OrderedDict()
    for name in sorted(layers, key=index.__getitem__):
        W, b = layers[name]
        out[f"features.{index[name]}.weight"] = np.asarray(W)
        out[f"features.{index[name]}.bias"] = np.asarray(b)
    return out


def pytorch_tutorial_state_dict(layers):
    """refstyle layers -> the keys of torchvision's ``vgg19(...).features`` (``0.weight``, ...)."""
    return OrderedDict((k[len("features.") :], v) for k, v in neural_style_pt_state_dict(layers).items())


def gatys_pytorch_state_dict(layers):
    """refstyle layers -> ``vgg_conv.pth``'s keys (``conv1_1.weight``, ``conv1_1.bias``, ...)."""
    order = conv_names(_arch_of(len(layers)))
    out = OrderedDict()
    for name in order:
        W, b = layers[name]
        out[f"{name}.weight"] = np.asarray(W)
        out[f"{name}.bias"] = np.asarray(b)
    return out


def neural_style_lua_state_dict(layers):
    """refstyle layers -> the caffemodel's layer names with blobs 0 and 1 as ``.weight``/``.bias``.

    loadcaffe names each Torch module after its Caffe layer and copies blob 0 (weights,
    ``(out, in, 3, 3)``) and blob 1 (bias) unchanged, so these are the Caffe arrays.
    """
    return gatys_pytorch_state_dict(layers)


def save_state_dict(torch, state_dict, path):
    """Write ``state_dict`` (NumPy arrays) as a real ``.pth`` with ``torch.save``, keys and dtypes kept."""
    tensors = OrderedDict((k, torch.from_numpy(np.array(v))) for k, v in state_dict.items())
    torch.save(tensors, str(path))


def random_vgg_layers(rng, arch="vgg19", widths=(4, 6, 8, 8, 8)):
    """Small random VGG weights ``{"conv1_1": (W, b), ...}`` (float64, He-scaled), for tests."""
    layers, c_in = {}, 3
    for block, n in enumerate(VGG_BLOCKS[arch], 1):
        for i in range(1, n + 1):
            c_out = widths[block - 1]
            W = rng.standard_normal((c_out, c_in, 3, 3)) * np.sqrt(2.0 / (9 * c_in))
            layers[f"conv{block}_{i}"] = (W, 0.1 * rng.standard_normal(c_out))
            c_in = c_out
    return layers


def _read_torchvision_keys(state_dict):
    """``features.N.weight`` or ``N.weight`` keys -> (arch, {caffe conv name: (W, b)})."""
    found = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] == "features":
            parts = parts[1:]
        if len(parts) == 2 and parts[0].isdigit() and parts[1] in ("weight", "bias"):
            found.setdefault(int(parts[0]), {})[parts[1]] = value
    arch = _arch_of(len(found))
    index = _torchvision_index(arch)
    if sorted(found) != sorted(index.values()):
        raise ValueError(f"conv indices {sorted(found)} are not those of {arch}: {sorted(index.values())}")
    return arch, {name: (found[i]["weight"], found[i]["bias"]) for name, i in index.items()}


def _read_named_keys(state_dict):
    """``conv1_1.weight`` keys -> (arch, {caffe conv name: (W, b)})."""
    names = sorted({k.rsplit(".", 1)[0] for k in state_dict if k.startswith("conv")})
    arch = _arch_of(len(names))
    if set(names) != set(conv_names(arch)):
        raise ValueError(f"conv names {names} are not those of {arch}")
    return arch, {n: (state_dict[f"{n}.weight"], state_dict[f"{n}.bias"]) for n in conv_names(arch)}


# --- small shared pieces ----------------------------------------------------------------------


def _t(torch, a):
    """A float64 tensor copy of an array (the caller's array is never written)."""
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=torch.float64)


def _image(torch, a, what):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 4 or a.shape[0] != 1 or a.shape[1] != 3:
        raise ValueError(f"{what} must be an array (1, 3, H, W), got shape {a.shape}")
    return _t(torch, a)


def _image_list(torch, style_xs):
    if isinstance(style_xs, np.ndarray) and style_xs.ndim == 4:
        style_xs = [style_xs]
    return [_image(torch, s, "each style image") for s in style_xs]


def _names(layers):
    """Layer names from ``"relu1_1,relu2_1"`` (the command lines' form) or a sequence."""
    return layers.split(",") if isinstance(layers, str) else list(layers)


def _blend(n, weights):
    """neural_style.lua/.py: blend weights normalised to sum 1; default equal."""
    w = [1.0] * n if weights is None else [float(v) for v in weights]
    if len(w) != n:
        raise ValueError(f"{len(w)} style blend weights for {n} style images")
    return [v / sum(w) for v in w]


def _pool(F, h, pooling, ceil_mode):
    if pooling == "max":
        return F.max_pool2d(h, 2, 2, ceil_mode=ceil_mode)
    if pooling == "avg":
        return F.avg_pool2d(h, 2, 2, ceil_mode=ceil_mode)
    raise ValueError(f"pooling must be 'max' or 'avg', not {pooling!r}")


def _done(diagnostics, x, loss, info):
    if diagnostics is not None:
        diagnostics.update(info)
    return float(loss.detach()), x.grad.detach().numpy().copy()


@functools.lru_cache(maxsize=None)
def _functions(torch):
    """The autograd Functions the peers need, made once per torch module."""

    class ScaleGradients(torch.autograd.Function):
        """neural_style.py ``ScaleGradients``: identity forward; backward g/(‖g‖₂+1e-8)·strength²."""

        @staticmethod
        def forward(ctx, loss, strength):
            ctx.strength = strength
            return loss.clone()

        @staticmethod
        def backward(ctx, g):
            return g / (torch.linalg.vector_norm(g) + 1e-8) * ctx.strength * ctx.strength, None

    def _lua_normalise(d, normalize):
        # neural_style.lua: self.gradInput:div(torch.norm(self.gradInput, 1) + 1e-8)
        return d / (d.abs().sum() + 1e-8) if normalize else d

    class LuaContentLoss(torch.autograd.Function):
        """neural_style.lua ``nn.ContentLoss`` in loss mode.

        forward (updateOutput): ``strength · MSECriterion(F, P)``, the mean of (F-P)².
        backward (updateGradInput): ``strength · 2(F_b - P)/n``, where ``F_b`` is the tensor
        the module holds as its input when the backward pass runs (see :func:`neural_style_lua`).
        """

        @staticmethod
        def forward(ctx, F, F_b, P, strength, normalize):
            ctx.save_for_backward(F_b, P)
            ctx.strength, ctx.normalize = strength, normalize
            return strength * ((F - P) ** 2).mean()

        @staticmethod
        def backward(ctx, g):
            F_b, P = ctx.saved_tensors
            d = _lua_normalise(2.0 * (F_b - P) / F_b.numel(), ctx.normalize)
            return g * ctx.strength * d, None, None, None, None

    class LuaStyleLoss(torch.autograd.Function):
        """neural_style.lua ``nn.StyleLoss`` in loss mode.

        forward: ``G = F Fᵀ / n`` (n = C·H·W), loss ``strength · MSECriterion(G, A)``.
        backward: ``dG = 2(G - A)/C² / n`` from the forward's G, then the GramMatrix
        backward ``dG F_b + dGᵀ F_b`` with the input ``F_b`` held at backward time.
        """

        @staticmethod
        def forward(ctx, F, F_b, A, strength, normalize):
            C = F.shape[1]
            X = F.reshape(C, -1)
            G = X @ X.T / F.numel()
            ctx.save_for_backward(G, A, F_b)
            ctx.strength, ctx.normalize = strength, normalize
            return strength * ((G - A) ** 2).mean()

        @staticmethod
        def backward(ctx, g):
            G, A, F_b = ctx.saved_tensors
            C = F_b.shape[1]
            dG = 2.0 * (G - A) / (C * C) / F_b.numel()
            X_b = F_b.reshape(C, -1)
            d = _lua_normalise((dG @ X_b + dG.T @ X_b).reshape(F_b.shape), ctx.normalize)
            return g * ctx.strength * d, None, None, None, None

    return ScaleGradients, LuaContentLoss, LuaStyleLoss


# --- ProGamerGov/neural-style-pt ---------------------------------------------------------------


NEURAL_STYLE_PT_SCALE = 255.0  # neural_style.py `preprocess`: `Loader(image) * 255` since cbcd023 (2020-12-06)
NEURAL_STYLE_PT_SCALE_BEFORE_CBCD023 = 256.0  # `Loader(image) * 256`, 276cd6d (first commit) .. 97081c3


def neural_style_pt_image_space(rgb_uint8, scale=NEURAL_STYLE_PT_SCALE):
    """neural_style.py ``preprocess`` after its resize: ToTensor (u/255), ``* scale``, RGB->BGR, minus the mean pixel.

    Today's master (7251405) multiplies by 255 (``Loader(image) * 255``; ``deprocess``
    divides by 255): commit cbcd023 ("Add -normalize_gradients parameter", 2020-12-06)
    changed both from 256. Before it (first commit 276cd6d to 97081c3) the code multiplied
    by 256 as the Lua original does: ``scale=NEURAL_STYLE_PT_SCALE_BEFORE_CBCD023``.
    """
    v = np.asarray(rgb_uint8, dtype=np.float64).transpose(2, 0, 1) / 255.0
    v = (v * scale)[::-1]
    return (v - np.reshape(CAFFE_MEAN_BGR, (3, 1, 1)))[None].copy()


def neural_style_pt(
    torch,
    state_dict,
    content_x,
    style_xs,
    x,
    *,
    content_layers=("relu4_2",),
    style_layers=("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
    content_weight=5.0,
    style_weight=100.0,
    tv_weight=1e-3,
    pooling="max",
    normalize_weights=False,
    normalize_gradients=False,
    style_blend_weights=None,
    diagnostics=None,
):
    r"""One ``feval`` of ProGamerGov/neural-style-pt: its total loss and ``∂loss/∂x``.

    Image space: BGR, ``u − (103.939, 116.779, 123.68)`` for u in 0..255 on today's master,
    ``256/255·u − (...)`` in the code before commit cbcd023 (December 2020)
    (:func:`neural_style_pt_image_space` and its ``scale``; this function is the same for both). ``state_dict``: the model file's keys
    (``features.N.weight``; ``vgg19-d01eb7cb.pth``/``vgg16-00b39a1b.pth`` are
    jcjohnson's conversions of the Caffe VGG weights, ``models/download_models.py``).
    Options are the command line's (``-content_layers`` ... ``-style_blend_weights``),
    with its defaults; layer lists may be given as the command line's comma-separated string.

    Differences from the paper (Gatys, Ecker & Bethge), where they are in the code:

    1. **Input scale** (``neural_style.py: preprocess``): ×255 since cbcd023, Caffe's input;
       ×256 before, where the network sees ``256/255·u − mean`` although Caffe's VGG was
       trained on ``u − mean``.
    2. **Pooling**: ``-pooling max`` by default (the paper: average). Both are PyTorch's
       ``nn.MaxPool2d(2, 2)``/``nn.AvgPool2d(2, 2)`` in **floor** mode
       (``CaffeLoader.py: buildSequential``), where Caffe rounds up: at an odd side the last
       row/column is dropped.
    3. **ReLU in place** (``nn.ReLU(inplace=True)`` in ``buildSequential``). Taps named
       ``reluX_Y`` see the response after ReLU, as the paper's Caffe responses. A tap named
       ``convX_Y`` is inserted between the conv and its in-place ReLU: the ReLU then
       overwrites the tensor the loss saved, so ``backward`` raises PyTorch's "modified by
       an inplace operation" error (reproduced here), and a content target captured there
       is the post-ReLU response (``ContentLoss.forward`` keeps ``input.detach()``, which
       shares the storage).
    4. **Gram** ``F Fᵀ`` divided by ``input.nelement()`` = :math:`N_l M_l`
       (``StyleLoss.forward``, ``GramMatrix``); the style target uses the style image's own
       :math:`M_l`. Loss ``nn.MSELoss`` (mean over :math:`N_l^2`):
       :math:`\frac1{N^2}\sum(G/NM - A/NM_a)^2`, vs the paper's :math:`\frac1{4N^2M^2}\sum(G-A)^2`.
    5. **Content** ``nn.MSELoss`` (mean over :math:`N_l M_l`) of F and P (``ContentLoss``),
       vs the paper's :math:`\frac12\sum(F-P)^2`.
    6. **Weights**: ``-content_weight 5``, ``-style_weight 100``, the same 100 for every
       style layer (the paper: α/β = 1e-3 and :math:`w_l = 1/5`).
    7. **Layers**: ``-content_layers relu4_2``, ``-style_layers relu1_1,...,relu5_1`` (the
       paper's layers, post-ReLU). Matched by membership in the list (``main``); a name not
       in the network is silently ignored (listed in ``diagnostics["ignored_layers"]``).
    8. **TV loss on by default**: ``-tv_weight 1e-3``, ``TVLoss.forward``:
       ``strength·(Σ|x[:,:,1:,:]−x[:,:,:-1,:]| + Σ|x[:,:,:,1:]−x[:,:,:,:-1]|)``, an
       anisotropic L1 TV over the whole image in the preprocessed space, included in the
       loss. The paper has none.
    9. ``-normalize_weights`` (off; ``normalize_weights``): each strength divided by
       ``max(target.size())``: content by ``max(1, N, H, W)``, style by ``N``.
    10. ``-normalize_gradients`` (off; ``ScaleGradients``): the *scalar* loss of each layer
        passes through a function whose backward returns ``g/(|g|+1e-8)·strength²``; as
        ``g = strength``, the layer's gradient becomes ``strength³/(strength+1e-8)·∇mse``
        while its reported loss is unchanged (no per-layer L1 normalisation as in the Lua
        original).
    11. **Several style images** (``-style_image a,b``): target ``Σ_i w_i G_i/(N M_i)``
        with ``-style_blend_weights`` normalised to sum 1, equal by default (``main``,
        ``StyleLoss.forward``). ``-style_scale`` only sets the style images' resize
        (``int(image_size·style_scale)``), not done here.
    12. The architecture comes from the model file's name (``"19"``/``"16"`` in it,
        ``CaffeLoader.py: modelSelector``); here from the number of convs in ``state_dict``.
        ``GramMatrix`` views the input as ``(C, H·W)``: batch size 1 only.
    """
    F = torch.nn.functional
    ScaleGradients = _functions(torch)[0]
    arch, convs = _read_torchvision_keys(state_dict)
    content_layers, style_layers = _names(content_layers), _names(style_layers)
    known = {name for _, name in vgg_sequence(arch)}
    ignored = [n for n in content_layers + style_layers if n not in known]

    # main(): the net, truncated once every relu-named tap is in (conv taps never count)
    net = [("tv", "tv")] if tv_weight > 0 else []
    next_content, next_style = 1, 1
    for kind, name in vgg_sequence(arch):
        if not (next_content <= len(content_layers) or next_style <= len(style_layers)):
            break
        net.append((kind, name))
        if kind in ("conv", "relu"):
            if name in content_layers:
                net.append(("content", name))
                next_content += kind == "relu"
            if name in style_layers:
                net.append(("style", name))
                next_style += kind == "relu"

    params = {n: (_t(torch, W), _t(torch, b)) for n, (W, b) in convs.items()}
    content_t, style_t = {}, {}  # the targets, by tap name
    content_w = {n: content_weight for k, n in net if k == "content"}
    style_w = {n: style_weight for k, n in net if k == "style"}
    terms = {"content": {}, "style": {}, "tv": 0.0}
    responses = {}

    def gram(h):
        X = h.view(h.shape[1], h.shape[2] * h.shape[3])  # GramMatrix: input.view(C, H * W)
        return (X @ X.t()) / h.numel()  # StyleLoss: self.G.div(input.nelement())

    def run(h, mode, blend=None):
        for kind, name in net:
            if kind == "tv" and mode == "loss":
                dx = h[:, :, 1:, :] - h[:, :, :-1, :]
                dy = h[:, :, :, 1:] - h[:, :, :, :-1]
                terms["tv"] = tv_weight * (dx.abs().sum() + dy.abs().sum())
            elif kind == "conv":
                h = F.conv2d(h, *params[name], padding=1)
            elif kind == "relu":
                h = h.relu_()  # nn.ReLU(inplace=True)
            elif kind == "pool":
                h = _pool(F, h, pooling, ceil_mode=False)
            elif kind == "content":
                if mode == "content":
                    content_t[name] = h.detach()  # shares storage: a following in-place ReLU changes it
                elif mode == "loss":
                    responses[name] = h.detach().clone()
                    loss = F.mse_loss(h, content_t[name])
                    if normalize_gradients:
                        loss = ScaleGradients.apply(loss, content_w[name])
                    terms["content"][name] = loss * content_w[name]
            elif kind == "style":
                G = gram(h)
                if mode == "style":
                    style_t[name] = G.detach() * blend if name not in style_t else style_t[name] + blend * G.detach()
                elif mode == "loss":
                    responses[name] = h.detach().clone()
                    loss = F.mse_loss(G, style_t[name])
                    if normalize_gradients:
                        loss = ScaleGradients.apply(loss, style_w[name])
                    terms["style"][name] = style_w[name] * loss

    with torch.no_grad():
        run(_image(torch, content_x, "content_x"), "content")
        styles = _image_list(torch, style_xs)
        for s, w in zip(styles, _blend(len(styles), style_blend_weights)):
            run(s, "style", w)
    if normalize_weights:  # normalize_weights(): strength / max(target.size())
        content_w = {n: w / max(content_t[n].shape) for n, w in content_w.items()}
        style_w = {n: w / max(style_t[n].shape) for n, w in style_w.items()}

    xt = _image(torch, x, "x").requires_grad_(True)
    run(xt, "loss")
    total = sum(terms["content"].values()) + sum(terms["style"].values())
    if tv_weight > 0:
        total = total + terms["tv"]
    total.backward()
    return _done(diagnostics, xt, total, _info(terms, responses, net, ignored_layers=ignored))


def _info(terms, responses, net, **extra):
    as_float = lambda v: float(v.detach()) if hasattr(v, "detach") else float(v)  # noqa: E731
    return {
        "content": {k: as_float(v) for k, v in terms["content"].items()},
        "style": {k: as_float(v) for k, v in terms["style"].items()},
        "tv": as_float(terms["tv"]),
        "responses": {k: v.numpy() for k, v in responses.items()},
        "net": [name for _, name in net],
        **extra,
    }


neural_style_pt.image_space_of = neural_style_pt_image_space


# --- jcjohnson/neural-style (Lua Torch) ------------------------------------------------------


def neural_style_lua_image_space(rgb_uint8):
    """neural_style.lua ``preprocess`` after ``image.load`` (u/255) and ``image.scale``: BGR, ``:mul(256.0)``, minus the mean pixel."""
    return neural_style_pt_image_space(rgb_uint8, scale=256.0)


def neural_style_lua(
    torch,
    state_dict,
    content_x,
    style_xs,
    x,
    *,
    content_layers=("relu4_2",),
    style_layers=("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
    content_weight=5.0,
    style_weight=100.0,
    tv_weight=1e-3,
    pooling="max",
    ceil_mode=None,
    normalize_gradients=False,
    style_blend_weights=None,
    include_tv_in_loss=False,
    diagnostics=None,
):
    r"""One ``feval`` of jcjohnson/neural-style: the loss it returns to ``optim.lbfgs`` and its gradient.

    Image space: BGR, ``256/255·u − (103.939, 116.779, 123.68)``
    (:func:`neural_style_lua_image_space`). ``state_dict``: the caffemodel's layer names,
    ``conv1_1.weight`` (blob 0) and ``conv1_1.bias`` (blob 1), which loadcaffe copies into
    the Torch modules unchanged. Options are the command line's (``-content_layers`` ...),
    with its defaults; ``ceil_mode`` (None: as the code) and ``include_tv_in_loss`` are
    test-side switches, not options of neural_style.lua. The Lua modules' hand-written
    backward passes are rewritten as autograd Functions; the network's backward is autograd.

    Differences from the paper, where they are in the code:

    1. **Input scale** ×256 (``preprocess``: ``img:index(1, perm):mul(256.0)``, then minus
       the mean pixel), not ×255.
    2. **Pooling**: ``-pooling max`` by default (the paper: average). The max pooling is
       loadcaffe's ``nn.SpatialMaxPooling(2, 2, 2, 2, 0, 0):ceil()`` (``loadcaffe.cpp``,
       POOLING case), **ceil mode** as Caffe: an odd side keeps a last, partial window.
       ``-pooling avg`` replaces it with ``nn.SpatialAveragePooling(kW, kH, dW, dH)``
       without ``:ceil()`` (``main``), i.e. **floor mode**: an odd side drops its last row.
    3. **ReLU in place**: loadcaffe emits ``nn.ReLU(true)`` (``loadcaffe.cpp``, RELU case).
       Taps named ``reluX_Y`` see the post-ReLU response, as the paper. A tap named
       ``convX_Y`` sits between the conv and its in-place ReLU: its loss *value* uses the
       pre-ReLU response, but by the time ``updateGradInput`` runs the ReLU has overwritten
       the module's input, so the gradient is computed from the post-ReLU response
       (content: ``2/(NM)·(relu(F)−P)``; style: ``dG·relu(F) + dGᵀ·relu(F)`` with ``dG``
       from the pre-ReLU Gram) and, being added after the ReLU's backward, is not masked
       by it: it is not the gradient of the returned loss. (Targets are copied before the
       ReLU, so they are pre-ReLU.) This does not happen when the conv tap is the last
       layer of the truncated net, whose ReLU is then not in it.
    4. **Gram** ``F Fᵀ`` (``GramMatrix``) divided by ``input:nElement()`` =
       :math:`N_l M_l` (``StyleLoss:updateOutput``), ``nn.MSECriterion`` (mean over
       :math:`N_l^2`); the style target uses the style image's own :math:`M_l`.
    5. **Content** ``nn.MSECriterion`` (mean over :math:`N_l M_l`) (``ContentLoss``).
    6. **Weights** ``-content_weight 5``, ``-style_weight 100`` for every style layer.
    7. **Layers** ``-content_layers relu4_2``, ``-style_layers relu1_1,...,relu5_1``,
       matched **in order** by layer name (``content_layers[next_content_idx]``): a list
       out of network order, or a name not in the network, leaves the loop running into
       the fully connected layers, which fail for images not 224×224 (raised here as
       ValueError).
    8. **TV loss on by default**, ``-tv_weight 1e-3``, and **not in the returned loss**:
       ``TVLoss:updateOutput`` passes its input through (``feval`` sums only the content and
       style modules' losses) while ``TVLoss:updateGradInput`` adds ``strength·∇`` of
       :math:`\tfrac12\sum_{c,\,i<H-1,\,j<W-1}[(x_{c,i,j}-x_{c,i,j+1})^2+(x_{c,i,j}-x_{c,i+1,j})^2]`:
       squared differences over the top-left :math:`(H-1)\times(W-1)` region (the last
       row's horizontal and the last column's vertical differences are left out), in the
       preprocessed space. ``include_tv_in_loss=True`` adds that energy to the returned loss
       (then the loss and gradient agree; the Lua code never does this).
    9. ``-normalize_gradients`` (false): each loss module's own gradient divided by its L1
       norm + 1e-8 before ×strength (``ContentLoss``/``StyleLoss:updateGradInput``); the
       loss values are unchanged.
    10. **Several style images** (``-style_image a,b``): target ``Σ_i w_i G_i/(N M_i)``,
        ``-style_blend_weights`` normalised to sum 1, equal by default. ``-style_scale``
        only sets their resize (``math.ceil(style_scale·image_size)``), not done here.
    11. Lua tensors are 3-D ``C×H×W`` (no batch), float32; here ``1×C×H×W``, float64.
    """
    F = torch.nn.functional
    _, LuaContentLoss, LuaStyleLoss = _functions(torch)
    arch, convs = _read_named_keys(state_dict)
    content_layers, style_layers = _names(content_layers), _names(style_layers)
    if ceil_mode is None:
        ceil_mode = pooling == "max"  # loadcaffe's :ceil() max pooling; the avg replacement has none

    # main(): add layers until every tap is found, each list matched in order
    net = [("tv", "tv")] if tv_weight > 0 else []
    next_content, next_style = 0, 0
    for kind, name in vgg_sequence(arch):
        if not (next_content < len(content_layers) or next_style < len(style_layers)):
            break
        net.append((kind, name))
        if next_content < len(content_layers) and name == content_layers[next_content]:
            net.append(("content", name))
            next_content += 1
        if next_style < len(style_layers) and name == style_layers[next_style]:
            net.append(("style", name))
            next_style += 1
    if next_content < len(content_layers) or next_style < len(style_layers):
        missing = content_layers[next_content:] + style_layers[next_style:]
        raise ValueError(
            f"layers {missing} not found in network order: neural_style.lua would go on into "
            "the fully connected layers and fail"
        )

    # a loss module whose next layer in the net is the in-place ReLU sees that ReLU's output at backward time
    aliased = set()
    for i, (kind, name) in enumerate(net):
        if kind in ("content", "style"):
            after = [k for k, _ in net[i + 1 :] if k not in ("content", "style")]
            if after and after[0] == "relu":
                aliased.add((kind, name))

    params = {n: (_t(torch, W), _t(torch, b)) for n, (W, b) in convs.items()}
    content_t, style_t = {}, {}
    terms = {"content": {}, "style": {}, "tv": 0.0}
    responses = {}

    def run(h, mode, blend=None):
        for kind, name in net:
            if kind == "tv" and mode == "loss":
                dx = h[:, :, :-1, :-1] - h[:, :, :-1, 1:]
                dy = h[:, :, :-1, :-1] - h[:, :, 1:, :-1]
                terms["tv"] = 0.5 * tv_weight * ((dx**2).sum() + (dy**2).sum())
            elif kind == "conv":
                h = F.conv2d(h, *params[name], padding=1)
            elif kind == "relu":
                h = F.relu(h)  # in place in Lua: its effect on the loss modules is `aliased`
            elif kind == "pool":
                h = _pool(F, h, pooling, ceil_mode)
            elif kind in ("content", "style"):
                if mode == "content" and kind == "content":
                    content_t[name] = h.detach().clone()  # self.target:resizeAs(input):copy(input)
                elif mode == "style" and kind == "style":
                    X = h.reshape(h.shape[1], -1)
                    G = X @ X.T / h.numel()  # GramMatrix, then self.G:div(input:nElement())
                    style_t[name] = G * blend if name not in style_t else style_t[name] + blend * G
                elif mode == "loss":
                    responses[name] = h.detach().clone()
                    h_b = F.relu(h).detach() if (kind, name) in aliased else h.detach()
                    if kind == "content":
                        terms["content"][name] = LuaContentLoss.apply(
                            h, h_b, content_t[name], content_weight, normalize_gradients
                        )
                    else:
                        terms["style"][name] = LuaStyleLoss.apply(
                            h, h_b, style_t[name], style_weight, normalize_gradients
                        )

    with torch.no_grad():
        run(_image(torch, content_x, "content_x"), "content")
        styles = _image_list(torch, style_xs)
        for s, w in zip(styles, _blend(len(styles), style_blend_weights)):
            run(s, "style", w)

    xt = _image(torch, x, "x").requires_grad_(True)
    run(xt, "loss")
    loss = sum(terms["content"].values()) + sum(terms["style"].values())  # feval
    (loss + terms["tv"]).backward()
    if include_tv_in_loss:
        loss = loss + terms["tv"]
    return _done(diagnostics, xt, loss, _info(terms, responses, net, aliased=sorted(n for _, n in aliased)))


neural_style_lua.image_space_of = neural_style_lua_image_space


# --- pytorch/tutorials: Neural Transfer Using PyTorch --------------------------------------------


def pytorch_tutorial_image_space(rgb_uint8):
    """The tutorial's ``loader`` after its resize: ``transforms.ToTensor()``, RGB, u/255 (normalisation is inside the model)."""
    return (np.asarray(rgb_uint8, dtype=np.float64).transpose(2, 0, 1) / 255.0)[None].copy()


TUTORIAL_MEAN = (0.485, 0.456, 0.406)  # cnn_normalization_mean
TUTORIAL_STD = (0.229, 0.224, 0.225)  # cnn_normalization_std


def tutorial_layer_names(arch="vgg19"):
    """``{caffe name: tutorial name}``: conv_i counts convs in order; relu_i, pool_i take the last conv's i."""
    out, i = {}, 0
    for kind, name in vgg_sequence(arch):
        i += kind == "conv"
        out[name] = f"{kind}_{i}"
    return out


def pytorch_tutorial(
    torch,
    state_dict,
    content_x,
    style_x,
    x,
    *,
    content_layers=("conv_4",),
    style_layers=("conv_1", "conv_2", "conv_3", "conv_4", "conv_5"),
    content_weight=1.0,
    style_weight=1e6,
    mean=TUTORIAL_MEAN,
    std=TUTORIAL_STD,
    clamp=True,
    require_same_size=True,
    diagnostics=None,
):
    r"""One ``closure()`` of PyTorch's neural-style tutorial: ``style_score + content_score`` and its gradient.

    Image space: RGB, ``u/255`` (:func:`pytorch_tutorial_image_space`); the model's first
    module normalises. ``state_dict``: torchvision's ``vgg19(...).features`` keys
    (``0.weight``, ``2.weight``, ...; a ``features.`` prefix is accepted). Options are
    ``get_style_model_and_losses``'s and ``run_style_transfer``'s arguments, with their
    defaults; ``clamp`` and ``require_same_size`` switch off the two behaviours below.
    Layer names are the tutorial's (:func:`tutorial_layer_names`).

    Differences from the paper, where they are in the code:

    1. **Input**: RGB 0..1 through ``Normalization``, ``(img − mean)/std`` with the
       ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), as the first
       module of the model (``get_style_model_and_losses``), so conv1_1 zero-pads the
       *normalised* image. The weights are torchvision's PyTorch-trained VGG19
       (``models.vgg19(pretrained=True)``/``VGG19_Weights.DEFAULT``), not Caffe's VGG
       nor the paper's normalised one.
    2. **Pooling**: torchvision's ``nn.MaxPool2d(2, 2)``, max (the paper: average) and
       **floor** mode: an odd side drops its last row/column.
    3. **Taps before ReLU**: the loss modules go right after the conv named ``conv_i``, and
       the ReLUs are replaced by ``nn.ReLU(inplace=False)`` so they do not alter them
       (``get_style_model_and_losses``). ``conv_i`` counts convs sequentially:
       ``conv_4`` is conv2_2. **Defaults**: content ``conv_4`` (= conv2_2, the paper:
       conv4_2), style ``conv_1`` ... ``conv_5`` (= conv1_1, conv1_2, conv2_1, conv2_2,
       conv3_1; the paper: conv1_1, conv2_1, conv3_1, conv4_1, conv5_1).
    4. **Gram** ``gram_matrix``: ``F Fᵀ`` divided by ``a·b·c·d`` = :math:`N_l M_l`;
       ``StyleLoss``: ``F.mse_loss`` (mean over :math:`N_l^2`).
    5. **Content** ``ContentLoss``: ``F.mse_loss`` (mean over :math:`N_l M_l`).
    6. **Weights** ``run_style_transfer(..., style_weight=1000000, content_weight=1)``:
       the sum of the style layers' losses times 1e6, the same for every layer.
    7. **Clamp**: the closure first clamps the optimised image in place to [0, 1]
       (``input_img.clamp_(0, 1)`` without grad), so the evaluation is at ``clamp(x, 0, 1)``
       and its gradient is that point's, not masked by the clamp.
    8. **One style image**, of the content image's size (``assert style_img.size() ==
       content_img.size()`` after loading). No TV loss, no normalisation options.
    9. Float32 in the tutorial (its mean and std tensors too).
    """
    F = torch.nn.functional
    arch, convs = _read_torchvision_keys(state_dict)
    content_layers, style_layers = _names(content_layers), _names(style_layers)
    content, style = _image(torch, content_x, "content_x"), _image(torch, style_x, "style_x")
    if require_same_size and content.shape != style.shape:
        raise ValueError("the tutorial asserts that the style and content images have the same size")
    names = tutorial_layer_names(arch)

    # get_style_model_and_losses: layer by layer, a loss module after each named one, then trimmed
    model = [("norm", "normalization", None)]
    for kind, caffe_name in vgg_sequence(arch):
        name = names[caffe_name]
        model.append((kind, name, caffe_name))
        if name in content_layers:
            model.append(("content", name, caffe_name))
        if name in style_layers:
            model.append(("style", name, caffe_name))
    last = max((i for i, step in enumerate(model) if step[0] in ("content", "style")), default=0)
    model = model[: last + 1]

    params = {n: (_t(torch, W), _t(torch, b)) for n, (W, b) in convs.items()}
    mean_t, std_t = _t(torch, mean).view(-1, 1, 1), _t(torch, std).view(-1, 1, 1)
    content_t, style_t = {}, {}
    terms = {"content": {}, "style": {}, "tv": 0.0}
    responses = {}

    def gram_matrix(h):
        a, b, c, d = h.size()
        features = h.view(a * b, c * d)
        return (features @ features.t()).div(a * b * c * d)

    def run(h, mode):
        for kind, name, caffe_name in model:
            if kind == "norm":
                h = (h - mean_t) / std_t
            elif kind == "conv":
                h = F.conv2d(h, *params[caffe_name], padding=1)
            elif kind == "relu":
                h = F.relu(h)
            elif kind == "pool":
                h = F.max_pool2d(h, 2, 2)
            elif kind == "content":
                if mode == "capture":
                    content_t[name] = h.detach()
                elif mode == "loss":
                    responses[name] = h.detach().clone()
                    terms["content"][name] = F.mse_loss(h, content_t[name])
            elif kind == "style":
                if mode == "capture_style":
                    style_t[name] = gram_matrix(h).detach()
                elif mode == "loss":
                    responses[name] = h.detach().clone()
                    terms["style"][name] = F.mse_loss(gram_matrix(h), style_t[name])

    with torch.no_grad():
        run(content, "capture")
        run(style, "capture_style")
    x_eval = np.clip(x, 0.0, 1.0) if clamp else x
    xt = _image(torch, x_eval, "x").requires_grad_(True)
    run(xt, "loss")
    style_score = sum(terms["style"].values()) * style_weight
    content_score = sum(terms["content"].values()) * content_weight
    loss = style_score + content_score
    loss.backward()
    return _done(diagnostics, xt, loss, _info(terms, responses, [(s[0], s[1]) for s in model]))


pytorch_tutorial.image_space_of = pytorch_tutorial_image_space


# --- leongatys/PytorchNeuralStyleTransfer ----------------------------------------------------------


GATYS_MEAN = (0.40760392, 0.45795686, 0.48501961)  # prep: Normalize(mean=...), BGR, then ×255
GATYS_STYLE_WEIGHTS = tuple(1e3 / n**2 for n in (64, 128, 256, 512, 512))  # "these are good weights settings"


def gatys_pytorch_image_space(rgb_uint8):
    """The notebook's ``prep`` after ``transforms.Scale``: ToTensor (u/255), RGB->BGR, minus ``GATYS_MEAN``, ``mul_(255)``."""
    v = (np.asarray(rgb_uint8, dtype=np.float64).transpose(2, 0, 1) / 255.0)[::-1]
    return ((v - np.reshape(GATYS_MEAN, (3, 1, 1))) * 255.0)[None].copy()


def gatys_layer_names():
    """``{caffe name: notebook key}``: reluX_Y -> rXY, poolX -> pX (the conv outputs have no key)."""
    out = {}
    for kind, name in vgg_sequence("vgg19"):
        if kind == "relu":
            out[name] = "r" + name[4:].replace("_", "")
        elif kind == "pool":
            out[name] = "p" + name[4:]
    return out


def gatys_pytorch(
    torch,
    state_dict,
    content_x,
    style_xs,
    x,
    *,
    style_layers=("r11", "r21", "r31", "r41", "r51"),
    content_layers=("r42",),
    style_weights=GATYS_STYLE_WEIGHTS,
    content_weights=(1.0,),
    pooling="max",
    diagnostics=None,
):
    r"""One ``closure()`` of Gatys's PyTorch notebook: ``sum(layer_losses)`` and its gradient.

    Image space: BGR, ``(u/255 − GATYS_MEAN)·255`` = ``u − (103.939, 116.779, 123.680)``
    to within 1e-6 (:func:`gatys_pytorch_image_space`): the Caffe input. ``state_dict``:
    ``vgg_conv.pth``'s keys ``conv1_1.weight`` ..., the paper's normalised VGG19. One style
    image (``style_xs``: an array, or a sequence of one). Options are the notebook's
    variables (``style_layers`` ... ``content_weights``) and ``VGG(pool=...)``, with their
    values; ``style_weights``/``content_weights`` pair with the layers by position.

    Differences from the paper, where they are in the notebook:

    1. **Input and weights** as the paper: Caffe input space and the normalised VGG19
       (``vgg_conv.pth``); the mean is ``255·(0.40760392, ...)``, within 1e-6 of Caffe's.
    2. **Pooling**: ``VGG(pool='max')`` by default and the notebook calls ``VGG()``: max
       (the paper: average), ``nn.MaxPool2d(2, 2)``/``nn.AvgPool2d(2, 2)`` in **floor**
       mode (an odd side drops its last row/column; Caffe keeps it).
    3. ``VGG.forward`` computes every layer through ``p5`` whatever the taps, so an image
       side under 32 px fails at pool5 ("Output size is too small"), reproduced here.
    4. **Taps after ReLU** (``out['r11'] = F.relu(self.conv1_1(x))``, out of place): keys
       ``rXY`` and ``pX``; conv outputs before ReLU cannot be tapped. Defaults
       ``style_layers = ['r11','r21','r31','r41','r51']``, ``content_layers = ['r42']``:
       the paper's layers.
    5. **Gram** ``GramMatrix``: ``bmm(F, Fᵀ)`` divided by ``h·w`` = :math:`M_l` (not
       :math:`N_l M_l`), ``GramMSELoss``: ``nn.MSELoss`` (mean over :math:`N_l^2`), i.e.
       :math:`\frac1{N^2M^2}\sum(G-A)^2` = 4 × the paper's :math:`E_l` when the style image
       has the same :math:`M_l` (its target uses its own :math:`M_l`).
    6. **Style weights** ``[1e3/n**2 for n in [64,128,256,512,512]]``: fixed numbers (the
       real VGG19's widths, not read from the network), vs the paper's :math:`w_l = 1/5`
       and β. **Content** ``nn.MSELoss`` (mean over :math:`N_l M_l`), weight ``1e0``.
    7. No TV loss, no options; one style image; float32 (CUDA) in the notebook.
    """
    F = torch.nn.functional
    arch, convs = _read_named_keys(state_dict)
    if arch != "vgg19":
        raise ValueError("the notebook's VGG class is VGG19 only")
    styles = _image_list(torch, style_xs)
    if len(styles) != 1:
        raise ValueError("the notebook takes one style image")
    style_layers, content_layers = _names(style_layers), _names(content_layers)
    if len(style_weights) != len(style_layers) or len(content_weights) != len(content_layers):
        raise ValueError("weights = style_weights + content_weights pair with the layers by position")
    params = {n: (_t(torch, W), _t(torch, b)) for n, (W, b) in convs.items()}
    key = gatys_layer_names()

    def vgg(h, out_keys):
        out = {}
        for kind, name in vgg_sequence("vgg19"):
            if kind == "conv":
                h = F.conv2d(h, *params[name], padding=1)
            elif kind == "relu":
                h = out[key[name]] = F.relu(h)
            else:
                h = out[key[name]] = _pool(F, h, pooling, ceil_mode=False)
        return [out[k] for k in out_keys]

    def gram(h):
        b, c, hh, w = h.size()
        Fm = h.view(b, c, hh * w)
        return torch.bmm(Fm, Fm.transpose(1, 2)).div(hh * w)

    loss_layers = style_layers + content_layers
    weights = list(style_weights) + list(content_weights)
    with torch.no_grad():
        targets = [gram(A) for A in vgg(styles[0], style_layers)]
        targets += [A.clone() for A in vgg(_image(torch, content_x, "content_x"), content_layers)]

    xt = _image(torch, x, "x").requires_grad_(True)
    out = vgg(xt, loss_layers)
    n_style = len(style_layers)
    layer_losses = [
        weights[a] * (F.mse_loss(gram(A), targets[a]) if a < n_style else F.mse_loss(A, targets[a]))
        for a, A in enumerate(out)
    ]
    loss = sum(layer_losses)
    loss.backward()
    terms = {
        "style": dict(zip(style_layers, layer_losses[:n_style])),
        "content": dict(zip(content_layers, layer_losses[n_style:])),
        "tv": 0.0,
    }
    responses = {k: A.detach().clone() for k, A in zip(loss_layers, out)}
    net = [("vgg", key[n]) for k, n in vgg_sequence("vgg19") if k != "conv"]
    return _done(diagnostics, xt, loss, _info(terms, responses, net))


gatys_pytorch.image_space_of = gatys_pytorch_image_space


# --- the TensorFlow-world implementations: a VGG19 whose taps are post-ReLU -------------------


KERAS_STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")


def keras_layer_names():
    """``{caffe relu name: Keras layer name}``: relu1_1 -> block1_conv1.

    Keras's VGG19 ``Conv2D(..., activation="relu", padding="same", name="block1_conv1")``
    holds its ReLU, so a Keras conv layer's output is Caffe's ``reluX_Y``.
    """
    relus = [name for kind, name in vgg_sequence("vgg19") if kind == "relu"]
    return {name: "block{}_conv{}".format(*name[4:].split("_")) for name in relus}


def keras_conv_from_h5(kernel, bias):
    """A Keras ``Conv2D``'s ``(kernel, bias)`` (kernel ``(3, 3, in, out)``, as its h5 stores it) -> ``(W, b)``.

    ``W[o, i, h, w] = kernel[h, w, i, o]``: the same correlation ``tf.nn.conv2d`` computes.
    """
    return np.asarray(kernel).transpose(3, 2, 0, 1).copy(), np.asarray(bias).reshape(-1).copy()


def _vgg19_params(torch, layers):
    """refstyle-form VGG19 ``layers`` -> ``{conv name: (W, b)}`` float64 tensors; VGG19 only."""
    if set(layers) != set(conv_names("vgg19")):
        raise ValueError(f"layers {sorted(layers)} are not VGG19's 16 convs conv1_1 ... conv5_4")
    return {n: (_t(torch, W), _t(torch, np.reshape(b, -1))) for n, (W, b) in layers.items()}


def _relu_responses(F, h, params, wanted, pool):
    """Post-ReLU responses of VGG19 at the Caffe names ``wanted``, computed up to the deepest of them.

    Convs are 3×3, stride 1, zero padding 1 (TensorFlow's ``padding="SAME"`` for a 3×3 kernel);
    ``pool`` is the 2×2, stride 2 pooling the implementation uses. Returns (responses, net).
    """
    seq = vgg_sequence("vgg19")
    relus = {name for kind, name in seq if kind == "relu"}
    unknown = [n for n in wanted if n not in relus]
    if unknown:
        raise ValueError(f"layers {unknown} are not VGG19 conv (ReLU) outputs")
    last = max(i for i, (_, name) in enumerate(seq) if name in wanted)
    out, net = {}, []
    for kind, name in seq[: last + 1]:
        if kind == "conv":
            h = F.conv2d(h, *params[name], padding=1)
        elif kind == "relu":
            h = F.relu(h)
            if name in wanted:
                out[name] = h
        else:
            h = pool(h)
        net.append(name)
    return out, net


def _max_pool_floor(F):
    """Keras ``MaxPooling2D((2, 2), strides=(2, 2))``, padding ``"valid"``: floor, an odd side drops its last row."""
    return lambda h: F.max_pool2d(h, 2, 2)


def _pool_same(F, pooling):
    r"""``tf.nn.max_pool``/``tf.nn.avg_pool`` with ``ksize=strides=2``, ``padding="SAME"``.

    Output side ``ceil(n/2)``; at an odd side TensorFlow pads one cell after the last row
    (column), none before. Max pooling ignores it; average pooling divides each window's sum
    by the number of *input* cells in it (the padding is not counted), so a last, partial
    window of two cells is their mean and the corner cell is itself.
    """
    if pooling == "max":
        return lambda h: F.max_pool2d(h, 2, 2, ceil_mode=True)
    if pooling == "avg":

        def avg(h):
            pad = (0, h.shape[3] % 2, 0, h.shape[2] % 2)
            window_sum = F.avg_pool2d(F.pad(h, pad), 2, 2) * 4
            count = F.avg_pool2d(F.pad(h.new_ones((1, 1) + tuple(h.shape[2:])), pad), 2, 2) * 4
            return window_sum / count

        return avg
    raise ValueError(f"pooling must be 'max' or 'avg', not {pooling!r}")


# --- tensorflow/docs: the "Neural style transfer" tutorial ----------------------------------------


def tf_tutorial_image_space(rgb_uint8):
    """``load_img`` after its resize: ``tf.image.convert_image_dtype(img, tf.float32)``, RGB, u/255.

    (The tutorial resizes the float image; this starts from an image already at its size.)
    The mean is subtracted inside the model (``StyleContentModel.call``), not here.
    """
    return pytorch_tutorial_image_space(rgb_uint8)


def tf_tutorial(
    torch,
    layers,
    content_x,
    style_x,
    x,
    *,
    content_layers=("block5_conv2",),
    style_layers=KERAS_STYLE_LAYERS,
    style_weight=1e-2,
    content_weight=1e4,
    total_variation_weight=30.0,
    diagnostics=None,
):
    r"""The loss of the TensorFlow tutorial's ``train_step`` (the one with TV) and its ``tape.gradient``.

    ``x``, ``content_x``, ``style_x``: ``(1, 3, H, W)`` RGB in 0..1
    (:func:`tf_tutorial_image_space`); the content and style images may differ in size from
    each other (each is run alone, ``extractor(style_image)``), ``x`` has the content
    image's. ``layers``: Keras's VGG19 weights as ``{"conv1_1": (W, b), ...}``, ``W``
    ``(out, in, 3, 3)`` = the Keras kernel ``(3, 3, in, out)`` transposed ``(3, 2, 0, 1)``
    (:func:`keras_conv_from_h5`), **input channels in BGR order** as Keras's ``vgg19_weights_tf_dim_ordering_tf_kernels``
    h5 stores them (converted from Caffe; its ``preprocess_input`` feeds BGR). Layer names
    are Keras's (``block5_conv2`` = Caffe's relu5_2, :func:`keras_layer_names`). Options are
    the notebook's variables with their values; ``total_variation_weight=0`` is the first
    ``train_step`` (without TV).

    Differences from the paper, where they are in the notebook (60c51e7):

    1. **Input** RGB 0..1; ``StyleContentModel.call`` multiplies by 255 and applies
       ``tf.keras.applications.vgg19.preprocess_input`` (Caffe mode: RGB->BGR, minus
       (103.939, 116.779, 123.68), no scaling) before the VGG, so conv1_1 zero-pads Caffe's
       input, and the content and style terms' gradient is 255 × the Caffe-space one with
       its channels flipped back to RGB.
    2. **Taps after ReLU** (Keras's conv layers include it); **max pooling, floor**
       (``MaxPooling2D`` default ``padding="valid"``: an odd side drops its last row).
    3. **Layers** content ``block5_conv2`` (= relu5_2; the paper: conv4_2), style
       ``block1_conv1`` ... ``block5_conv1`` (the paper's).
    4. **Gram** ``gram_matrix``: ``einsum('bijc,bijd->bcd')/num_locations`` with
       ``num_locations = H·W`` = :math:`G/M_l`; the style term of a layer
       ``reduce_mean((G−A)²)``, the mean over :math:`N_l^2`:
       :math:`\frac1{N_l^2M_l^2}\sum(G-A)^2` (4 × the paper's :math:`E_l`, the style target
       with the style image's own :math:`M_l`); their sum ``tf.add_n`` times
       ``style_weight / num_style_layers`` = 1e-2/5.
    5. **Content** ``reduce_mean((F−P)²)`` (mean over :math:`N_l M_l`), summed over the
       content layers, times ``content_weight / num_content_layers`` = 1e4/1.
    6. **TV in the loss**: ``total_variation_weight * tf.image.total_variation(image)``, 30 ×
       the sum of |differences| of vertically and horizontally adjacent pixels over the whole
       image, all channels, in the 0..1 RGB space.
    7. No clamp in the evaluation (``clip_0_1`` is applied after the optimiser's step);
       float32 in the notebook.
    """
    F = torch.nn.functional
    params = _vgg19_params(torch, layers)
    caffe = {v: k for k, v in keras_layer_names().items()}
    content_layers, style_layers = _names(content_layers), _names(style_layers)
    unknown = [n for n in content_layers + style_layers if n not in caffe]
    if unknown:
        raise ValueError(f"layers {unknown} are not Keras VGG19 conv layers (block1_conv1 ... block5_conv4)")
    wanted = [caffe[n] for n in style_layers + content_layers]
    mean = _t(torch, CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    pool = _max_pool_floor(F)

    def extractor(image):
        """StyleContentModel.call: ×255, preprocess_input (RGB->BGR, minus the mean), the VGG."""
        preprocessed = image.mul(255.0).flip(1) - mean
        out, net = _relu_responses(F, preprocessed, params, wanted, pool)
        return {n: out[caffe[n]] for n in style_layers + content_layers}, net

    def gram_matrix(h):
        X = h.reshape(h.shape[1], -1)
        return X @ X.T / (h.shape[2] * h.shape[3])

    with torch.no_grad():
        style_targets = {n: gram_matrix(h) for n, h in extractor(_image(torch, style_x, "style_x"))[0].items()
                         if n in style_layers}
        content_targets = {n: h.clone() for n, h in extractor(_image(torch, content_x, "content_x"))[0].items()
                           if n in content_layers}

    xt = _image(torch, x, "x").requires_grad_(True)
    outputs, net = extractor(xt)
    terms = {
        "style": {n: style_weight / len(style_layers) * ((gram_matrix(outputs[n]) - style_targets[n]) ** 2).mean()
                  for n in style_layers},
        "content": {n: content_weight / len(content_layers) * ((outputs[n] - content_targets[n]) ** 2).mean()
                    for n in content_layers},
    }
    dh = xt[:, :, 1:, :] - xt[:, :, :-1, :]
    dw = xt[:, :, :, 1:] - xt[:, :, :, :-1]
    terms["tv"] = total_variation_weight * (dh.abs().sum() + dw.abs().sum())
    loss = sum(terms["style"].values()) + sum(terms["content"].values()) + terms["tv"]
    loss.backward()
    responses = {n: h.detach().clone() for n, h in outputs.items()}
    return _done(diagnostics, xt, loss, _info(terms, responses, [(None, n) for n in net]))


tf_tutorial.image_space_of = tf_tutorial_image_space


# --- keras-team/keras-io: examples/generative/neural_style_transfer.py ----------------------------


def keras_example_image_space(rgb_uint8):
    """``preprocess_image`` after ``load_img(target_size=...)``: ``img_to_array`` (RGB 0..255), then
    ``vgg19.preprocess_input``.

    Caffe mode: RGB->BGR, minus (103.939, 116.779, 123.68), no scaling: Caffe's input.
    """
    return neural_style_pt_image_space(rgb_uint8, scale=255.0)


def keras_example(
    torch,
    layers,
    content_x,
    style_x,
    x,
    *,
    content_layer="block5_conv2",
    style_layers=KERAS_STYLE_LAYERS,
    content_weight=2.5e-8,
    style_weight=1e-6,
    total_variation_weight=1e-6,
    diagnostics=None,
):
    r"""Keras's example's ``compute_loss_and_grads``: ``compute_loss`` and its ``tape.gradient``.

    ``x`` (``combination_image``), ``content_x`` (``base_image``), ``style_x``
    (``style_reference_image``): ``(1, 3, H, W)``, BGR 0..255 minus the mean pixel
    (:func:`keras_example_image_space`), all three the same size (``img_nrows × img_ncols``).
    ``layers``: Keras's VGG19 weights as ``{"conv1_1": (W, b), ...}``, ``W`` ``(out, in, 3,
    3)`` = the Keras kernel transposed ``(3, 2, 0, 1)`` (:func:`keras_conv_from_h5`), **input
    channels BGR** as in Keras's
    h5 (Caffe's order). Layer names are Keras's (:func:`keras_layer_names`). Options are the
    script's module variables with their values.

    Differences from the paper, where they are in the script (0896b2e):

    1. **Input and network** Caffe's input (``vgg19.preprocess_input``); Keras's VGG19:
       taps after ReLU, **max pooling, floor** (``MaxPooling2D``, ``padding="valid"``).
    2. **One model call** for ``tf.concat([base_image, style_reference_image,
       combination_image])`` (``compute_loss``): the three images must be the same size;
       the targets are rows 0 and 1 of each layer's output (constants for the gradient).
    3. **Layers** content ``block5_conv2`` (= relu5_2; the paper: conv4_2), style
       ``block1_conv1`` ... ``block5_conv1``.
    4. **Gram** unnormalised: ``gram_matrix`` transposes the ``(H, W, C)`` features to
       ``(C, H·W)``, :math:`G = F F^\top`. ``style_loss``:
       ``reduce_sum((S−C)²) / (4.0 * channels**2 * size**2)`` with ``channels = 3`` and
       ``size = img_nrows * img_ncols``, the **image's** :math:`H·W`, the same for every layer
       (the paper: :math:`4N_l^2M_l^2` of that layer). Each layer's term times
       ``style_weight / len(style_layer_names)`` = 1e-6/5.
    5. **Content** ``reduce_sum((F−P)²)`` (no ½), times ``content_weight`` = 2.5e-8.
    6. **TV in the loss**: ``total_variation_weight * total_variation_loss``, 1e-6 ×
       :math:`\sum_{i<H-1,\,j<W-1,\,c}\left[(x_{i,j,c}-x_{i+1,j,c})^2+(x_{i,j,c}-x_{i,j+1,c})^2\right]^{1.25}`
       over the top-left :math:`(H-1)\times(W-1)` cells, in the preprocessed space.
    7. Float32 in the script.
    """
    F = torch.nn.functional
    params = _vgg19_params(torch, layers)
    caffe = {v: k for k, v in keras_layer_names().items()}
    style_layers = _names(style_layers)
    unknown = [n for n in [content_layer] + style_layers if n not in caffe]
    if unknown:
        raise ValueError(f"layers {unknown} are not Keras VGG19 conv layers (block1_conv1 ... block5_conv4)")
    base, style = _image(torch, content_x, "content_x"), _image(torch, style_x, "style_x")
    xt = _image(torch, x, "x").requires_grad_(True)
    if not base.shape == style.shape == xt.shape:
        raise ValueError(f"tf.concat of the three images needs one size: {base.shape}, {style.shape}, {xt.shape}")
    img_nrows, img_ncols = xt.shape[2], xt.shape[3]

    features, net = _relu_responses(F, torch.cat([base, style, xt]), params,
                                     [caffe[n] for n in [content_layer] + style_layers], _max_pool_floor(F))

    def gram_matrix(h):  # h: one image's (C, H, W) features
        X = h.reshape(h.shape[0], -1)
        return X @ X.T

    channels, size = 3, img_nrows * img_ncols
    layer = features[caffe[content_layer]]
    terms = {"content": {content_layer: content_weight * ((layer[2] - layer[0]) ** 2).sum()}, "style": {}}
    for n in style_layers:
        layer = features[caffe[n]]
        S, C = gram_matrix(layer[1]), gram_matrix(layer[2])
        terms["style"][n] = style_weight / len(style_layers) * ((S - C) ** 2).sum() / (4.0 * channels**2 * size**2)
    a = (xt[:, :, : img_nrows - 1, : img_ncols - 1] - xt[:, :, 1:, : img_ncols - 1]) ** 2
    b = (xt[:, :, : img_nrows - 1, : img_ncols - 1] - xt[:, :, : img_nrows - 1, 1:]) ** 2
    terms["tv"] = total_variation_weight * ((a + b) ** 1.25).sum()
    loss = sum(terms["content"].values()) + sum(terms["style"].values()) + terms["tv"]
    loss.backward()
    responses = {n: features[caffe[n]][2].detach().clone()[None] for n in [content_layer] + style_layers}
    return _done(diagnostics, xt, loss, _info(terms, responses, [(None, n) for n in net]))


keras_example.image_space_of = keras_example_image_space


# --- anishathalye/neural-style ----------------------------------------------------------------------


ANISHATHALYE_CONTENT_LAYERS = ("relu4_2", "relu5_2")  # stylize.py CONTENT_LAYERS
ANISHATHALYE_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")  # stylize.py STYLE_LAYERS


def anishathalye_image_space(rgb_uint8, mean_pixel):
    """``imread`` (RGB 0..255 as float) then ``vgg.preprocess``: ``image - mean_pixel``, RGB order.

    ``mean_pixel``: the weights file's own mean, RGB (``vgg.load_net``: the mean of
    ``normalization.averageImage`` over its first two axes, or ``averageImage`` itself).
    """
    v = np.asarray(rgb_uint8, dtype=np.float64) - np.reshape(np.asarray(mean_pixel, dtype=np.float64), 3)
    return v.transpose(2, 0, 1)[None].copy()


def anishathalye_conv_from_mat(kernels, bias):
    """A ``.mat`` conv layer's ``(kernels, bias)`` -> ``(W, b)`` as :func:`anishathalye` takes them.

    ``vgg.net_preloaded`` swaps the ``.mat`` kernel's first two axes (``np.transpose(kernels,
    (1, 0, 2, 3))``, TensorFlow's ``(h, w, in, out)``) and flattens the bias
    (``bias.reshape(-1)``); ``W[o, i, h, w]`` is then ``kernels[w, h, i, o]``.
    """
    return np.asarray(kernels).transpose(3, 2, 1, 0).copy(), np.asarray(bias).reshape(-1).copy()


def anishathalye_style_layer_weights(style_layer_weight_exp, n=len(ANISHATHALYE_STYLE_LAYERS)):
    """``stylize``: weights 1, e, e², ... over the style layers, divided by their sum."""
    w = [float(style_layer_weight_exp) ** k for k in range(n)]
    return [v / sum(w) for v in w]


def anishathalye(
    torch,
    layers,
    content_x,
    style_xs,
    x,
    *,
    content_weight=5.0,
    content_weight_blend=1.0,
    style_weight=5e2,
    style_layer_weight_exp=1.0,
    style_blend_weights=None,
    tv_weight=1e2,
    pooling="max",
    diagnostics=None,
):
    r"""anishathalye/neural-style's ``loss`` (``stylize.py``) and its gradient with respect to ``image``.

    ``x`` (the ``tf.Variable`` ``image``), ``content_x``, each of ``style_xs``: ``(1, 3, H,
    W)``, RGB 0..255 minus the weights file's mean pixel (:func:`anishathalye_image_space`);
    ``x`` has the content image's size, the style images any size. ``layers``: the ``.mat``'s
    weights as ``{"conv1_1": (W, b), ...}`` (:func:`anishathalye_conv_from_mat`), **input
    channels RGB** as MatConvNet's ``imagenet-vgg-verydeep-19.mat`` has them. Layer names are
    the code's (``VGG19_LAYERS``, Caffe's). Options are ``neural_style.py``'s command line
    (``--content-weight`` ... ``--pooling``) with its defaults.

    Differences from the paper, where they are in the code (d0a1148):

    1. **Input** RGB 0..255 minus the ``.mat``'s own mean (``vgg.preprocess``); taps after
       ReLU (``net["relu4_2"]``, ``vgg.net_preloaded``).
    2. **Pooling** ``--pooling max`` by default (the paper: average), ``tf.nn.max_pool`` /
       ``tf.nn.avg_pool`` 2×2, stride 2, ``padding="SAME"`` (``vgg._pool_layer``):
       **ceil** sizes; average pooling counts only the cells inside the image.
    3. **Content** at relu4_2 and relu5_2 (``CONTENT_LAYERS``) with weights
       ``content_weight_blend`` and ``1 − content_weight_blend`` (default 1: relu5_2's term
       is there with weight 0), each ``content_weight · 2·l2_loss(F−P)/P.size`` = 5 ×
       mean over :math:`N_l M_l` of :math:`(F-P)^2`.
    4. **Gram** ``matmul(feats^T, feats) / size`` with ``size = H·W·N`` = :math:`G/(N_l M_l)`
       (the style images' targets with their own size); the style term of a layer
       ``w_l · 2·l2_loss(G−A)/A.size`` = :math:`w_l \frac1{N_l^2}\sum(G-A)^2`, with ``w_l``
       1, e, e², ... (``--style-layer-weight-exp``, default 1) normalised to sum 1
       (:func:`anishathalye_style_layer_weights`); times ``style_weight`` = 500.
    5. **Several style images**: one style loss per image against its own Gram,
       ``style_weight · blend_i · Σ_l``, blend weights normalised to sum 1 (equal by
       default, ``neural_style.py: main``); not one loss against blended targets.
    6. **TV in the loss**: ``tv_weight · 2·(l2_loss(Δy)/tv_y_size + l2_loss(Δx)/tv_x_size)``
       = 100 × (mean of Δy² over :math:`(H-1)·W·3` + mean of Δx² over :math:`H·(W-1)·3`),
       over the whole image in the preprocessed space.
    7. Float32 in the code; Adam, not L-BFGS (no effect on one evaluation).
    """
    F = torch.nn.functional
    params = _vgg19_params(torch, layers)
    pool = _pool_same(F, pooling)
    styles = _image_list(torch, style_xs)
    blend = _blend(len(styles), style_blend_weights)  # neural_style.py main: equal, or normalised to sum 1
    style_layer_weights = dict(zip(ANISHATHALYE_STYLE_LAYERS, anishathalye_style_layer_weights(style_layer_weight_exp)))
    content_layer_weights = {"relu4_2": content_weight_blend, "relu5_2": 1.0 - content_weight_blend}

    def gram(h):
        feats = h.reshape(h.shape[1], -1).T  # tf.reshape(layer, (-1, number)): (H·W, N)
        return feats.T @ feats / h.numel()

    with torch.no_grad():
        content_features = _relu_responses(F, _image(torch, content_x, "content_x"), params,
                                           ANISHATHALYE_CONTENT_LAYERS, pool)[0]
        style_features = []
        for s in styles:
            responses = _relu_responses(F, s, params, ANISHATHALYE_STYLE_LAYERS, pool)[0]
            style_features.append({n: gram(h) for n, h in responses.items()})

    xt = _image(torch, x, "x").requires_grad_(True)
    net, names = _relu_responses(F, xt, params, ANISHATHALYE_CONTENT_LAYERS + ANISHATHALYE_STYLE_LAYERS, pool)
    terms = {
        "content": {n: content_layer_weights[n] * content_weight * ((net[n] - content_features[n]) ** 2).sum()
                    / content_features[n].numel() for n in ANISHATHALYE_CONTENT_LAYERS},
        "style": {},
    }
    for n in ANISHATHALYE_STYLE_LAYERS:
        G = gram(net[n])
        terms["style"][n] = sum(style_weight * w * style_layer_weights[n] * ((G - A[n]) ** 2).sum() / A[n].numel()
                                for w, A in zip(blend, style_features))
    dy = xt[:, :, 1:, :] - xt[:, :, :-1, :]
    dx = xt[:, :, :, 1:] - xt[:, :, :, :-1]
    terms["tv"] = tv_weight * ((dy**2).sum() / dy.numel() + (dx**2).sum() / dx.numel())
    loss = sum(terms["content"].values()) + sum(terms["style"].values()) + terms["tv"]
    loss.backward()
    responses = {n: h.detach().clone() for n, h in net.items()}
    return _done(diagnostics, xt, loss, _info(terms, responses, [(None, n) for n in names]))


def _anishathalye_image_space_of(rgb_uint8, mean_pixel=CAFFE_MEAN_BGR[::-1]):
    return anishathalye_image_space(rgb_uint8, mean_pixel)


anishathalye.image_space_of = _anishathalye_image_space_of  # with the VGG .mat's mean, (123.68, 116.779, 103.939)


# --- the paper: Gatys, Ecker & Bethge, "A Neural Algorithm of Artistic Style", Methods ----------------


PAPER_CONTENT_LAYERS = ("conv4_2",)
PAPER_STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")


def paper_image_space(rgb_uint8):
    """The Caffe VGG's input: BGR 0..255 minus the ImageNet mean pixel (``CAFFE_MEAN_BGR``)."""
    bgr = np.asarray(rgb_uint8, dtype=np.float64)[..., ::-1] - np.asarray(CAFFE_MEAN_BGR)
    return bgr.transpose(2, 0, 1)[None].copy()


def paper(torch, layers, content_x, style_x, x, *, alpha=1e-3, beta=1.0, content_layers=PAPER_CONTENT_LAYERS,
          style_layers=PAPER_STYLE_LAYERS, layer_weights=None, pooling="avg", gram_over_M=False, diagnostics=None):
    r"""The paper's :math:`\mathcal L_{total}` at ``x`` and its gradient (autograd), from its equations.

    ``layers``: the Caffe VGG19 as ``{"conv1_1": (W, b), ...}`` (input channels BGR);
    images ``(1, 3, H, W)`` in :func:`paper_image_space`. A response :math:`F^l` is the layer's
    output after its ReLU (the paper's "conv4_2"); the network's pooling is **average**
    ("we found that replacing the max-pooling operation by average pooling improves the
    gradient flow"), with Caffe's ceil rounding of an odd side (PyTorch's ``ceil_mode=True``,
    no padding: the last window averages its in-image cells).

    - content (eq. 1): :math:`\mathcal L_{content} = \tfrac12\sum_{ij}(F^l_{ij} - P^l_{ij})^2` at conv4_2;
    - Gram (eq. 3): :math:`G^l_{ij} = \sum_k F^l_{ik}F^l_{jk}`, :math:`A^l` the artwork's;
    - style (eq. 4, 5): :math:`E_l = \frac{1}{4N_l^2M_l^2}\sum_{ij}(G^l_{ij} - A^l_{ij})^2`,
      :math:`\mathcal L_{style} = \sum_l w_l E_l`, :math:`w_l = 1/5` at conv1_1 ... conv5_1;
    - total (eq. 7): :math:`\alpha\mathcal L_{content} + \beta\mathcal L_{style}`, :math:`\alpha/\beta = 10^{-3}`.

    ``layer_weights``: the :math:`w_l` (default :math:`1/5` each, the paper's). ``gram_over_M``: a variant, not the paper: each image's Gram matrix divided by its own
    :math:`M_l` (as many rewrites normalise it), :math:`E_l` otherwise as eq. 4.
    """
    F = torch.nn.functional
    params = _vgg19_params(torch, layers)
    relu = {n: "relu" + n[len("conv"):] for n in (*content_layers, *style_layers)}
    pool = functools.partial(_pool, F, pooling=pooling, ceil_mode=True)
    xt = _image(torch, x, "x").requires_grad_(True)
    Fx, net = _relu_responses(F, xt, params, list(relu.values()), pool)
    with torch.no_grad():
        P, _ = _relu_responses(F, _image(torch, content_x, "content_x"), params, list(relu.values()), pool)
        A, _ = _relu_responses(F, _image(torch, style_x, "style_x"), params, list(relu.values()), pool)

    def G(h):
        h = h.reshape(h.shape[1], -1)
        return h @ h.T / (h.shape[1] if gram_over_M else 1)

    terms = {"content": {}, "style": {}, "tv": 0.0}
    for n in content_layers:
        terms["content"][n] = alpha * 0.5 * ((Fx[relu[n]] - P[relu[n]]) ** 2).sum()
    for i, n in enumerate(style_layers):
        N, M = Fx[relu[n]].shape[1], Fx[relu[n]].shape[2] * Fx[relu[n]].shape[3]
        E = ((G(Fx[relu[n]]) - G(A[relu[n]])) ** 2).sum() / (4 * N**2 * M**2)
        terms["style"][n] = beta * E * (1 / len(style_layers) if layer_weights is None else layer_weights[i])
    loss = sum(terms["content"].values()) + sum(terms["style"].values())
    loss.backward()
    responses = {n: Fx[relu[n]].detach().clone() for n in relu}
    return _done(diagnostics, xt, loss, _info(terms, responses, [(None, n) for n in net]))


paper.image_space_of = paper_image_space
