"""Everything that defines a run, with the paper's defaults: :class:`Settings`.

The defaults are the paper's (:mod:`refstyle.paper.conventions`, SPEC §3); a field left
``None`` takes the convention's value, and :meth:`Settings.resolved` fills them in. The
API (:func:`refstyle.synthesize`), the command line and the figures all build their runs
from a :class:`Settings`, so a default cannot differ between them.
"""

from typing import NamedTuple

from .conventions import PAPER_ITERS, PAPER_SIZE, get_convention, loss_weights

# The start images a run can take besides an image file: the paper's white noise, the photograph, the artwork.
INITS = ("noise", "content", "style")


class Settings(NamedTuple):
    """Everything that defines a synthesis run, with the paper's defaults."""

    content_layers: tuple = None  # None: the convention's (the paper: conv4_2)
    style_layers: tuple = None  # None: the convention's (the paper: conv1_1 ... conv5_1)
    layer_weights: dict = None  # {layer: w_l}; None: the convention's (the paper: 1/5 each)
    alpha: float = None  # None: the convention's (the paper: α/β = 1e-3)
    beta: float = None
    convention: str = "paper"
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

    def resolved(self):
        """These settings with the convention's values where a field is None (layers, α, β)."""
        c = get_convention(self.convention)
        alpha, beta = loss_weights(c, self.alpha, self.beta)
        return self._replace(
            content_layers=tuple(c.content_layers if self.content_layers is None else self.content_layers),
            style_layers=tuple(c.style_layers if self.style_layers is None else self.style_layers),
            alpha=alpha,
            beta=beta,
            tv_weight=c.tv_weight if self.tv_weight is None else float(self.tv_weight),
        )
