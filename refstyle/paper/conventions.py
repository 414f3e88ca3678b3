r"""How the well-known implementations scale the paper's losses, as data.

Every implementation computes the same two losses, but divides and multiplies them
differently: the Gram matrix divided by :math:`N_l M_l` or by :math:`M_l`, a mean
instead of a sum, per-layer weights of :math:`10^3/N_l^2`, the input scaled by 256
instead of 255. Comparing gradients across implementations then drowns in constant
factors. A :class:`Convention` states those factors so that refstyle reproduces another
implementation's numbers exactly, while computing only the paper's losses
(:mod:`refstyle.paper.losses`):

- each image's Gram matrix is divided by ``gram_divisor(N_l, M_l)`` *with that image's
  own* :math:`M_l` before the two are compared (so with an artwork of another size
  than the generated image, the target is rescaled by
  :math:`g(N_l, M_l^x) / g(N_l, M_l^a)`);
- a layer's content term is the paper's :math:`L_\text{content}` times
  ``content_factor(N_l, M_l)``; its style term is the paper's :math:`E_l` (computed
  against the rescaled target) times ``style_factor(N_l, M_l)``;
- the totals are :math:`\alpha \sum L + \beta \sum_l w_l E_l` with the convention's
  default :math:`\alpha`, :math:`\beta` and :math:`w_l` unless given.

For example, jcjohnson's style term is :math:`\frac{1}{N^2}\sum_{ij}(G_{ij}/NM - A_{ij}/NM)^2
= \frac{4}{N^2} \cdot \frac{1}{4N^2M^2}\sum_{ij}(G_{ij}-A_{ij})^2`, so ``style_factor`` is
:math:`4/N^2`. ``docs/conventions.md`` has the full table.
"""

import math
import re
from typing import Callable, NamedTuple

from ..errors import RefstyleError
from ..nn.arch import PRE_RELU, conv_layers
from ..nn.inputs import CAFFE_INPUT, LUA_INPUT, RGB01_INPUT, TORCHVISION_INPUT

# The paper's settings (SPEC §3), written once: the API, the command line and the figures take them from here.
PAPER_CONTENT_LAYERS = ("conv4_2",)
PAPER_STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
PAPER_RATIO = 1e-3  # alpha / beta of Fig. 2 B, C, D
PAPER_POOLING = "avg"
PAPER_SIZE = 512  # the longer side of the images, in pixels (the CVPR paper's 512×512)
PAPER_ITERS = 500  # L-BFGS iterations
PAPER_MAXCOR = 20  # L-BFGS history, as in the author's DeepTextures code


class Convention(NamedTuple):
    name: str
    description: str
    gram_divisor: Callable  # (N_l, M_l) -> divisor of each image's Gram matrix
    content_factor: Callable  # (N_l, M_l) -> multiplier of the paper's content loss
    style_factor: Callable  # (N_l, M_l) -> multiplier of the paper's E_l
    alpha: float  # default content weight
    beta: float  # default style weight
    layer_weight: Callable  # (N_l, number of style layers) -> default w_l
    image: dict  # the space the image x is optimised in (refstyle.nn.inputs): Caffe's, ×256, RGB 0..1
    content_layers: tuple  # refstyle tap names: "conv4_2" after the ReLU, "conv4_2:pre" before it
    style_layers: tuple
    pooling: str
    rounding: str = "ceil"  # pooling's output size for an odd side: Caffe's "ceil" or PyTorch's "floor"
    names: Callable = None  # (the implementation's layer name, arch) -> refstyle tap name, or None
    tv: str = "squared"  # the total-variation term's form (refstyle.paper.losses.TV_FORMS)
    tv_weight: float = 0.0  # its default weight
    tv_in_loss: bool = True  # whether the reported loss includes it (neural-style's Lua adds its gradient only)
    feed: dict = None  # what the implementation feeds conv1_1, whatever its weights were trained on:
    #                    None (the paper, refstyle) maps the image into the weights' own input space


def _mse_content(N, M):
    # mean over the N·M entries of (F - P)^2 = 2/(N M) · ½ Σ (F - P)^2
    return 2.0 / (N * M)


_CAFFE_NAME = re.compile(r"^(relu|conv)([1-5])_([1-4])$")
_TORCH_NAME = re.compile(r"^(conv|relu)_(\d+)$")


def neural_style_names(name, arch):
    """neural-style's names (Lua and PyTorch): ``reluB_K``, the response after the ReLU, is refstyle's ``convB_K``.

    neural-style's ``convB_K`` is the output *before* the ReLU, but refstyle's ``convB_K`` is
    Caffe's, after it: that name keeps refstyle's meaning, and the output before the ReLU
    is written ``convB_K:pre``.
    """
    m = _CAFFE_NAME.match(name)
    if m is None or m.group(1) != "relu":
        return None
    return f"conv{m.group(2)}_{m.group(3)}"


def tutorial_names(name, arch):
    """The PyTorch tutorial's ``conv_i`` (before the ReLU) and ``relu_i`` (after it): the ``i``-th convolution, from 1."""
    m = _TORCH_NAME.match(name)
    convs = conv_layers(arch)
    if m is None or not 1 <= int(m.group(2)) <= len(convs):
        return None
    layer = convs[int(m.group(2)) - 1]
    return layer + PRE_RELU if m.group(1) == "conv" else layer


def gatys_names(name, arch):
    """The author's PyTorch notebook: ``rBK`` after the ReLU of ``convB_K`` (``r42`` is ``conv4_2``)."""
    m = re.match(r"^r([1-5])([1-4])$", name)
    return None if m is None else f"conv{m.group(1)}_{m.group(2)}"


_NEURAL_STYLE = dict(
    gram_divisor=lambda N, M: float(N * M),
    content_factor=_mse_content,
    style_factor=lambda N, M: 4.0 / N**2,
    alpha=5.0,
    beta=100.0,
    layer_weight=lambda N, n: 1.0,
    content_layers=PAPER_CONTENT_LAYERS,
    style_layers=PAPER_STYLE_LAYERS,
    pooling="max",
    names=neural_style_names,
    tv_weight=1e-3,
)

CONVENTIONS = {
    c.name: c
    for c in [
        Convention(
            "paper",
            "Gatys, Ecker & Bethge 2015/2016: L = α ½Σ(F−P)² + β Σ w_l Σ(G−A)²/(4N²M²)",
            gram_divisor=lambda N, M: 1.0,
            content_factor=lambda N, M: 1.0,
            style_factor=lambda N, M: 1.0,
            alpha=PAPER_RATIO,
            beta=1.0,
            layer_weight=lambda N, n: 1.0 / n,
            image=CAFFE_INPUT,
            content_layers=PAPER_CONTENT_LAYERS,
            style_layers=PAPER_STYLE_LAYERS,
            pooling=PAPER_POOLING,
        ),
        Convention(
            "neural-style",
            "jcjohnson/neural-style (Lua Torch): MSE of F; Gram / (N·M), MSE over N²; content_weight 5, "
            "style_weight 100; image ×256 (BGR, minus the mean pixel); max pooling in ceil mode (loadcaffe's); "
            "tv_weight 1e-3, whose squared TV enters the gradient, not the reported loss",
            image=LUA_INPUT,
            feed=LUA_INPUT,  # the ×256 image itself, into weights trained on ×255
            rounding="ceil",
            tv="neural-style",
            tv_in_loss=False,
            **_NEURAL_STYLE,
        ),
        Convention(
            "neural-style-pt",
            "ProGamerGov/neural-style-pt: as neural-style (image ×256, the same losses and weights), but "
            "PyTorch's pooling in floor mode and an L1 total variation (tv_weight 1e-3) in the loss",
            image=LUA_INPUT,
            feed=LUA_INPUT,
            rounding="floor",
            tv="l1",
            **_NEURAL_STYLE,
        ),
        Convention(
            "pytorch-tutorial",
            "PyTorch's 'Neural Transfer Using PyTorch' tutorial: F.mse_loss of F; Gram / (N·M), mse_loss "
            "over N²; content_weight 1, style_weight 1e6; taps the convolutions before their ReLU (conv_4; "
            "conv_1 … conv_5); the image RGB 0..1, normalised by ImageNet's mean and std inside its model; "
            "torchvision's VGG19 with max pooling (floor)",
            gram_divisor=lambda N, M: float(N * M),
            content_factor=_mse_content,
            style_factor=lambda N, M: 4.0 / N**2,
            alpha=1.0,
            beta=1e6,
            layer_weight=lambda N, n: 1.0,
            image=RGB01_INPUT,
            feed=TORCHVISION_INPUT,  # its Normalization module: (x − mean)/std, then conv1_1
            content_layers=("conv2_2" + PRE_RELU,),
            style_layers=tuple(name + PRE_RELU for name in ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1")),
            pooling="max",
            rounding="floor",
            names=tutorial_names,
        ),
        Convention(
            "gatys-pytorch",
            "Gatys's PytorchNeuralStyleTransfer notebook: MSE of F; Gram / M, MSELoss over N²; "
            "style weights 1e3/N_l², content weight 1; Caffe input (BGR, 0..255, mean pixel); max pooling (floor)",
            gram_divisor=lambda N, M: float(M),
            content_factor=_mse_content,
            style_factor=lambda N, M: 4.0,
            alpha=1.0,
            beta=1.0,
            layer_weight=lambda N, n: 1e3 / N**2,
            image=CAFFE_INPUT,
            feed=CAFFE_INPUT,
            content_layers=PAPER_CONTENT_LAYERS,
            style_layers=PAPER_STYLE_LAYERS,
            pooling="max",
            rounding="floor",
            names=gatys_names,
        ),
    ]
}

# Names that earlier versions used.
ALIASES = {"jcjohnson": "neural-style"}


def tap_of(convention, name, arch):
    """refstyle's tap for a layer name as refstyle (``conv4_2``, ``conv4_2:pre``) or the convention's implementation writes it."""
    convention = get_convention(convention)
    if convention.names is not None:
        tap = convention.names(name, arch)
        if tap is not None:
            return tap
    return name


def get_convention(name):
    """The :class:`Convention` of that name, or a clear error listing the known ones."""
    if isinstance(name, Convention):
        return name
    try:
        return CONVENTIONS[ALIASES.get(name, name)]
    except KeyError:
        raise RefstyleError(f"unknown convention {name!r}: choose one of {', '.join(CONVENTIONS)}") from None


def loss_weights(convention, alpha=None, beta=None, ratio=None):
    r"""The loss weights :math:`(\alpha, \beta)` of a run: those given, else the convention's.

    ``ratio`` :math:`= \alpha/\beta` sets :math:`\alpha` = ``ratio``, :math:`\beta = 1`
    (the paper's way of stating them) and excludes ``alpha`` and ``beta``. Every caller
    (the objective, the settings of a run, the command line) resolves them here.
    """
    convention = get_convention(convention)
    if ratio is not None:
        if alpha is not None or beta is not None:
            raise RefstyleError("give either --ratio or --alpha/--beta, not both")
        alpha, beta = ratio, 1.0
    alpha = convention.alpha if alpha is None else float(alpha)
    beta = convention.beta if beta is None else float(beta)
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not math.isfinite(value):
            raise RefstyleError(f"{name} must be a finite number, not {value}")
    return alpha, beta
