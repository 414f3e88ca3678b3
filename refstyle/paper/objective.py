r"""The total loss of the paper and its gradient with respect to the image.

.. math::
    L_\text{total}(\vec p, \vec a, \vec x) = \alpha L_\text{content}(\vec p, \vec x)
                                           + \beta L_\text{style}(\vec a, \vec x),
    \qquad L_\text{style} = \sum_l w_l E_l

One evaluation is one forward sweep to the deepest loss layer, the per-layer losses
and their gradients :math:`\partial L/\partial F^l` (:mod:`refstyle.paper.losses`), and one
backward sweep that carries all of them down to :math:`\partial L_\text{total}/\partial \vec x`.
"""

from typing import NamedTuple

from ..backend import to_numpy
from ..errors import RefstyleError
from ..nn.inputs import InputStage, describe_input
from .conventions import get_convention, loss_weights, tap_of
from .images import preprocess
from .losses import TV_FORMS, content_loss, gram, style_loss


def content_targets(net, p, layers):
    r"""The photograph's responses :math:`P^l` at the content layers."""
    F, _ = net.forward(p, layers)
    return F


def style_targets(net, artworks, layers, blend=None, convention="paper"):
    r"""The artworks' Gram matrices at the style layers, blended: :math:`A^l = \sum_s v_s A^l_s`.

    ``artworks``: one preprocessed image per artwork (sizes may differ); ``blend``:
    the weights :math:`v_s` (default: equal, summing to 1). Each Gram matrix is
    divided by the convention's ``gram_divisor`` with its own artwork's :math:`M_l`
    (1 for the paper), so that targets from artworks of different sizes can be blended.
    """
    convention = get_convention(convention)
    if blend is None:
        blend = [1.0 / len(artworks)] * len(artworks)
    if len(blend) != len(artworks):
        raise RefstyleError(f"{len(artworks)} style images but {len(blend)} blend weights")
    A = {}
    for v, a in zip(blend, artworks):
        F, _ = net.forward(a, layers)
        for name in layers:
            N_l, M_l = F[name].shape[1], F[name][0, 0].size
            term = gram(F[name]) * (v / convention.gram_divisor(N_l, M_l))
            A[name] = term if name not in A else A[name] + term
    return A


class Evaluation(NamedTuple):
    """One evaluation of the objective at an image ``x``."""

    loss: float  # L_total = alpha L_content + beta L_style
    grad: object  # dL_total/dx, like x
    loss_content: float  # L_content = sum over content layers (before alpha)
    loss_style: float  # L_style = sum_l w_l E_l (before beta)
    layer_losses: dict  # {("content" or "style", layer): that layer's term, before any weight}
    F: dict  # the responses at the loss layers
    dF: dict  # dL_total/dF^l through each layer's own loss terms


class Objective:
    r"""``x ↦ (L_total, ∂L_total/∂x)`` for fixed targets, as SciPy's ``jac=True`` expects.

    Parameters
    ----------
    net : refstyle.VGG
    P : dict
        ``{layer: P^l}`` from :func:`content_targets` (may be empty when ``alpha == 0``).
    A : dict
        ``{layer: A^l}`` from :func:`style_targets` (may be empty when ``beta == 0``).
    layer_weights : dict or None
        ``{layer: w_l}``; None gives the convention's default (the paper: 1/5 each).
    alpha, beta : float or None
        None gives the convention's default (the paper: α/β = 1e-3).
    convention : str
        ``"paper"`` or the name of an implementation whose scaling to reproduce
        (:mod:`refstyle.paper.conventions`).
    tv_weight : float
        Weight of a total-variation term :math:`L_\text{TV}(\vec x)` added to the loss, in
        the convention's form (:data:`refstyle.paper.losses.TV_FORMS`: the squared
        :func:`~refstyle.paper.losses.total_variation` for the paper's); 0, as in the paper,
        by default. A convention whose implementation leaves it out of its reported loss
        (neural-style's Lua) adds only its gradient.
    """

    def __init__(self, net, P, A, layer_weights=None, alpha=None, beta=None, convention="paper", tv_weight=0.0):
        self.net = net
        self.convention = get_convention(convention)
        self.alpha, self.beta = loss_weights(self.convention, alpha, beta)
        self.P = dict(P) if self.alpha != 0 else {}
        self.A = dict(A) if self.beta != 0 else {}
        if not self.P and not self.A:
            raise RefstyleError("the objective has no loss term: give content layers with alpha ≠ 0 or style layers with beta ≠ 0")
        if layer_weights is None:
            layer_weights = {
                name: self.convention.layer_weight(A_l.shape[0], len(self.A)) for name, A_l in self.A.items()
            }
        missing = [name for name in self.A if name not in layer_weights]
        if missing:
            raise RefstyleError(f"no layer weight w_l for the style layer(s) {', '.join(missing)}")
        self.layer_weights = {name: float(layer_weights[name]) for name in self.A}
        self.layers = list(dict.fromkeys(list(self.P) + list(self.A)))
        self.tv_weight = float(tv_weight)

    def evaluate(self, x):
        """One forward sweep, the losses, one backward sweep: an :class:`Evaluation`.

        Each layer's term stays where it was computed (on the GPU, a 0-d array) until
        all are known; they are then read to the host together, once per evaluation.
        """
        c = self.convention
        xp = self.net.xp
        F, cache = self.net.forward(x, self.layers)
        dF, terms = {}, {}  # terms: {("content" or "style", layer): that layer's term, before any weight}
        for name, P_l in self.P.items():
            if F[name].shape != P_l.shape:
                raise RefstyleError(
                    f"the image's {name} response is {F[name].shape[2:]}, the photograph's {P_l.shape[2:]}: "
                    f"the image must have the photograph's height and width"
                )
            N_l, M_l = P_l.shape[1], P_l[0, 0].size
            k = c.content_factor(N_l, M_l)
            L, dL = content_loss(F[name], P_l)
            terms["content", name] = k * L
            dF[name] = (self.alpha * k) * dL
        for name, A_hat in self.A.items():
            N_l, M_l = F[name].shape[1], F[name][0, 0].size
            k = c.style_factor(N_l, M_l)
            divisor = c.gram_divisor(N_l, M_l)
            A_l = A_hat if divisor == 1.0 else A_hat * divisor
            E, dE = style_loss(F[name], A_l)
            w = self.layer_weights[name]
            terms["style", name] = k * E
            g = (self.beta * w * k) * dE
            dF[name] = g if name not in dF else dF[name] + g
        grad = self.net.backward(dF, cache)
        if self.tv_weight:
            L_tv, d_tv = TV_FORMS[c.tv](xp.asarray(x, dtype=grad.dtype))
            terms["tv", "x"] = L_tv
            grad += self.tv_weight * d_tv
        values = to_numpy(xp.stack([xp.asarray(v, dtype="float64") for v in terms.values()]))  # the one read
        layer_losses = {key: float(v) for key, v in zip(terms, values)}
        loss_content = sum(v for (kind, _), v in layer_losses.items() if kind == "content")
        loss_style = sum(self.layer_weights[name] * v for (kind, name), v in layer_losses.items() if kind == "style")
        loss = self.alpha * loss_content + self.beta * loss_style
        if self.tv_weight and c.tv_in_loss:
            loss += self.tv_weight * layer_losses["tv", "x"]
        return Evaluation(loss, grad, loss_content, loss_style, layer_losses, F, dF)

    def __call__(self, x):
        e = self.evaluate(x)
        return e.loss, e.grad


def build_objective(net, photo, artworks, settings):
    r"""The targets and the objective of a run, from RGB images and :class:`~refstyle.paper.settings.Settings`.

    ``photo``: the photograph :math:`\vec p` (RGB 0..255, ``(H, W, 3)``) or None;
    ``artworks``: the artworks :math:`\vec a_s` at the sizes to use. Each is preprocessed
    with the convention's input scale in the network's dtype; :math:`P^l` is computed
    where :math:`\alpha \ne 0`, the blended :math:`A^l` where :math:`\beta \ne 0`.
    Every caller builds its objective here: the synthesis, the command line's ``grad``
    and ``gradcheck``, ``explain`` and the benchmarks.
    """
    s = settings.resolved()
    convention = get_convention(s.convention)
    space = convention.image
    if not InputStage(net.image, space).identity:
        raise RefstyleError(
            f"the {convention.name} convention optimises an image in {describe_input(space)}, but the network "
            f"takes {describe_input(net.image)}: build it with VGG(..., image=get_convention({convention.name!r}).image)"
        )
    content_layers = [tap_of(convention, name, net.arch) for name in s.content_layers]
    style_layers = [tap_of(convention, name, net.arch) for name in s.style_layers]
    layer_weights = s.layer_weights
    if layer_weights is not None:
        layer_weights = {tap_of(convention, name, net.arch): w for name, w in layer_weights.items()}
    P, A = {}, {}
    if s.alpha != 0 and photo is not None:
        P = content_targets(net, preprocess(photo, net.dtype, space), content_layers)
    if s.beta != 0 and artworks:
        A = style_targets(net, [preprocess(a, net.dtype, space) for a in artworks], style_layers, s.style_blend,
                          convention)
    return Objective(net, P, A, layer_weights, s.alpha, s.beta, convention, s.tv_weight)
