"""Everything that defines a run, with the paper's defaults: :class:`Settings`, and the recipe of each kind of run.

The defaults are the paper's (:mod:`refstyle.paper.conventions`, SPEC §3); a field left
``None`` takes the convention's value, and :meth:`Settings.resolved` fills them in. The
API (:func:`refstyle.synthesize`), the command line and the figures all build their runs
from a :class:`Settings` (and their networks from it, :func:`refstyle.paper.build.build_network`),
so a default cannot differ between them. :func:`for_kind` is the one place that says what
a transfer, a content reconstruction and a texture synthesis keep of the loss.
"""

from typing import NamedTuple

from ..errors import RefstyleError
from .conventions import PAPER_ITERS, PAPER_SIZE, get_convention, loss_weights

# The start images a run can take besides an image file: the paper's white noise, the photograph, the artwork.
INITS = ("noise", "content", "style")
# What a run optimises: eq. 7 (transfer), or one of its terms alone, the paper's Fig. 1 (RECONSTRUCTIONS).
KINDS = ("transfer", "content", "style")
RECONSTRUCTIONS = KINDS[1:]


class Settings(NamedTuple):
    """Everything that defines a synthesis run, with the paper's defaults."""

    content_layers: tuple = None  # None: the convention's (the paper: conv4_2)
    style_layers: tuple = None  # None: the convention's (the paper: conv1_1 ... conv5_1)
    layer_weights: dict = None  # {layer: w_l}; None: the convention's (the paper: 1/5 each)
    alpha: float = None  # None: the convention's (the paper: α/β = 1e-3)
    beta: float = None
    convention: str = "paper"  # a built-in convention's name, or the path of a record file
    style_blend: tuple = None  # v_s of several artworks; None: equal
    tv_weight: float = None  # None: the convention's (the paper: 0, none; neural-style: 1e-3)
    size: int = PAPER_SIZE  # the photograph's longer side
    style_scale: float = 1.0
    iters: int = PAPER_ITERS
    optimizer: str = "lbfgs"
    optimizer_options: dict = None  # e.g. {"maxcor": 20} or {"lr": 1.0}
    init: str = "noise"  # "noise", "content", "style", or a path to an image
    seed: int = 0
    scales: int = 1  # coarse to fine: 1 is a single run at `size`
    preserve_color: bool = False
    bounds: bool = True  # L-BFGS-B pixel bounds at the photograph's min and max (the author's code)
    pooling: str = None  # None: the convention's (the paper: "avg")
    rounding: str = None  # None: the convention's (the paper: Caffe's "ceil")
    content_weights: dict = None  # {layer: c_l}; None: the convention's (the paper: 1)

    def resolved(self):
        """These settings with the convention's values where a field is None (layers, α, β, pooling, …)."""
        c = get_convention(self.convention)
        alpha, beta = loss_weights(c, self.alpha, self.beta)
        return self._replace(
            content_layers=tuple(c.content_layers if self.content_layers is None else self.content_layers),
            style_layers=tuple(c.style_layers if self.style_layers is None else self.style_layers),
            alpha=alpha,
            beta=beta,
            tv_weight=c.tv_weight if self.tv_weight is None else float(self.tv_weight),
            pooling=c.pooling if self.pooling is None else self.pooling,
            rounding=c.rounding if self.rounding is None else self.rounding,
        )


def for_kind(settings, kind, weight=None):
    r"""The settings of a run of ``kind``: a transfer keeps them; a reconstruction keeps one term.

    ``"content"``: :math:`\alpha L_\text{content}` alone (:math:`\beta = 0`, :math:`\alpha` =
    ``weight`` or 1), the paper's Fig. 1 content reconstructions; ``"style"``:
    :math:`\beta L_\text{style}` alone (:math:`\alpha = 0`, :math:`\beta` = ``weight`` or 1),
    its texture syntheses. The command line, the figures and the API all make a run's
    settings here.
    """
    if kind not in KINDS:
        raise RefstyleError(f"unknown kind of run {kind!r}: choose one of {', '.join(KINDS)}")
    if kind == "transfer":
        return settings
    w = 1.0 if weight is None else float(weight)
    return settings._replace(alpha=w, beta=0.0) if kind == "content" else settings._replace(alpha=0.0, beta=w)
