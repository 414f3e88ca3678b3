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
from ..nn.arch import split_tap
from .build import check_network
from .conventions import get_convention, loss_weights, tap_of
from .images import preprocess
from .losses import TV_FORMS, content_loss, gram, style_loss


def content_targets(net, p, layers):
    r"""The photograph's responses :math:`P^l` at the content layers."""
    F, _ = net.forward(p, layers)
    return F


class StyleTargets(dict):
    """``{layer: A^l}``, remembering the divisor of the Gram matrices it blends (the convention's ``g``)."""

    def __init__(self, grams, gram_divisor):
        super().__init__(grams)
        self.gram_divisor = gram_divisor


def _once(layers, what):
    seen = set()
    for name in layers:
        if name in seen:
            raise RefstyleError(f"the {what} layer {name} is given twice (perhaps under two names): give each layer once")
        seen.add(name)


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
    _once(layers, "style")
    A = StyleTargets({}, convention.gram_divisor.text)
    for v, a in zip(blend, artworks):
        F, _ = net.forward(a, layers)
        for name in layers:
            N_l, M_l = F[name].shape[1], F[name][0, 0].size
            term = gram(F[name]) * (v / convention.gram_scale(N_l, M_l))
            A[name] = term if name not in A else A[name] + term
    return A


class Evaluation(NamedTuple):
    """One evaluation of the objective at an image ``x``."""

    loss: float  # L_total = alpha L_content + beta L_style
    grad: object  # dL_total/dx, like x
    loss_content: float  # L_content = sum_l c_l (content term of l), before alpha
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
    convention : str or Convention
        ``"paper"``, the name of an implementation whose numbers to reproduce, or a record
        (:mod:`refstyle.paper.conventions`).
    tv_weight : float
        Weight of a total-variation term :math:`L_\text{TV}(\vec x)` added to the loss, in
        the convention's form (:data:`refstyle.paper.losses.TV_FORMS`: the squared
        :func:`~refstyle.paper.losses.total_variation` for the paper's); 0, as in the paper,
        by default. A convention whose implementation leaves it out of its reported loss
        (neural-style's Lua) adds only its gradient.
    content_weights : dict or None
        ``{layer: c_l}`` of the content layers; None gives the convention's (the paper: 1).

    With the convention's factors (1 for the paper), one evaluation computes eq. 7:

    .. math:: L = \alpha \sum_l c_l k^c_l L^l_\text{content} + \beta \sum_l w_l k^s_l E_l
    """

    def __init__(self, net, P, A, layer_weights=None, alpha=None, beta=None, convention="paper", tv_weight=0.0,
                 content_weights=None):
        self.net = net
        self.convention = get_convention(convention)
        self.alpha, self.beta = loss_weights(self.convention, alpha, beta)
        self.P = dict(P) if self.alpha != 0 else {}
        self.A = dict(A) if self.beta != 0 else {}
        if not self.P and not self.A:
            raise RefstyleError("the objective has no loss term: give content layers with alpha ≠ 0 or style layers with beta ≠ 0")
        made_with = getattr(A, "gram_divisor", None)  # style_targets' record of how it divided the Grams
        if self.A and made_with is not None and made_with != self.convention.gram_divisor.text:
            raise RefstyleError(
                f"the style targets divide each Gram matrix by {made_with}, but the {self.convention.name} convention "
                f"by {self.convention.gram_divisor.text}: make them with style_targets(..., convention=the same)"
            )
        arch = net.arch
        self.layer_weights = self._weights(layer_weights, self.A, "style", "w_l",
                                           lambda *a: self.convention.style_layer_weights(*a, arch),
                                           lambda A_l: A_l.shape[0])
        self.content_weights = self._weights(content_weights, self.P, "content", "c_l",
                                             lambda *a: self.convention.content_layer_weights(*a, arch),
                                             lambda P_l: P_l.shape[1])
        self.layers = list(dict.fromkeys(list(self.P) + list(self.A)))
        self.tv_weight = float(tv_weight)

    @staticmethod
    def _weights(given, targets, what, symbol, default, filters):
        if given is None:
            return default(list(targets), [filters(t) for t in targets.values()])
        missing = [name for name in targets if name not in given]
        if missing:
            raise RefstyleError(f"no layer weight {symbol} for the {what} layer(s) {', '.join(missing)}")
        return {name: float(given[name]) for name in targets}

    def evaluate(self, x):
        """One forward sweep, the losses, one backward sweep: an :class:`Evaluation`.

        Each layer's term stays where it was computed (on the GPU, a 0-d array) until
        all are known; they are then read to the host together, once per evaluation.
        """
        c = self.convention
        xp = self.net.xp
        H, W = x.shape[2], x.shape[3]
        F, cache = self.net.forward(x, self.layers)
        dF, terms = {}, {}  # terms: {("content" or "style", layer): that layer's term, before any weight}
        for name, P_l in self.P.items():
            if F[name].shape != P_l.shape:
                raise RefstyleError(
                    f"the image's {name} response is {F[name].shape[2:]}, the photograph's {P_l.shape[2:]}: "
                    f"the image must have the photograph's height and width"
                )
            N_l, M_l = P_l.shape[1], P_l[0, 0].size
            k = c.content_factor(N_l, M_l, H, W)
            L, dL = content_loss(F[name], P_l)
            terms["content", name] = k * L
            dF[name] = (self.alpha * self.content_weights[name] * k) * dL
        for name, A_hat in self.A.items():
            N_l, M_l = F[name].shape[1], F[name][0, 0].size
            k = c.style_factor(N_l, M_l, H, W)
            g = c.gram_scale(N_l, M_l)
            A_l = A_hat if g == 1.0 else A_hat * g
            E, dE = style_loss(F[name], A_l)
            w = self.layer_weights[name]
            terms["style", name] = k * E
            d = (self.beta * w * k) * dE
            dF[name] = d if name not in dF else dF[name] + d
        grad = self.net.backward(dF, cache)
        if self.tv_weight:
            L_tv, d_tv = TV_FORMS[c.tv](xp.asarray(x, dtype=grad.dtype))
            terms["tv", "x"] = L_tv
            grad += self.tv_weight * d_tv
        values = to_numpy(xp.stack([xp.asarray(v, dtype="float64") for v in terms.values()]))  # the one read
        layer_losses = {key: float(v) for key, v in zip(terms, values)}
        loss_content = sum(self.content_weights[name] * v for (kind, name), v in layer_losses.items() if kind == "content")
        loss_style = sum(self.layer_weights[name] * v for (kind, name), v in layer_losses.items() if kind == "style")
        loss = self.alpha * loss_content + self.beta * loss_style
        if self.tv_weight and c.tv_in_loss:
            loss += self.tv_weight * layer_losses["tv", "x"]
        return Evaluation(loss, grad, loss_content, loss_style, layer_losses, F, dF)

    def __call__(self, x):
        e = self.evaluate(x)
        return e.loss, e.grad


def _filters(net, tap):
    """:math:`N_l` of a tapped layer: its convolution's filter count (of the last convolution before a pooling)."""
    layer, _ = split_tap(tap)
    for name in reversed(net.layers[: net.layers.index(layer) + 1] if layer in net.layers else []):
        if name in net.params:
            return net.params[name][0].shape[0]
    return 0


def build_objective(net, photo, artworks, settings):
    r"""The targets and the objective of a run, from RGB images and :class:`~refstyle.paper.settings.Settings`.

    ``photo``: the photograph :math:`\vec p` (RGB 0..255, ``(H, W, 3)``) or None;
    ``artworks``: the artworks :math:`\vec a_s` at the sizes to use. Each is preprocessed
    into the convention's image space in the network's dtype; :math:`P^l` is computed
    where :math:`\alpha \ne 0`, the blended :math:`A^l` where :math:`\beta \ne 0`.
    The network must be the one the settings describe (:func:`~refstyle.paper.build.check_network`:
    its pooling, rounding, image space and feed); build it with
    :func:`~refstyle.paper.build.build_network`. Every caller builds its objective here: the
    synthesis, the command line's ``grad`` and ``gradcheck``, ``explain``, the figures and
    the benchmarks.
    """
    s = settings.resolved()
    convention = get_convention(s.convention)
    check_network(net, s)
    space = net.image
    content_layers = [tap_of(convention, name, net.arch) for name in s.content_layers]
    style_layers = [tap_of(convention, name, net.arch) for name in s.style_layers]
    layer_weights, content_weights = (
        None if given is None else {tap_of(convention, name, net.arch): w for name, w in given.items()}
        for given in (s.layer_weights, s.content_weights)
    )
    if content_weights is None:  # a content layer weighted 0 (anishathalye's blend) is left out
        content_weights = convention.content_layer_weights(content_layers, [_filters(net, t) for t in content_layers],
                                                           net.arch)
    _once(content_layers, "content")
    _once(style_layers, "style")
    content_layers = [name for name in content_layers if content_weights.get(name, 1.0) != 0]
    P, A = {}, {}
    if s.alpha != 0 and photo is not None and content_layers:
        P = content_targets(net, preprocess(photo, net.dtype, space), content_layers)
    if s.beta != 0 and artworks:
        A = style_targets(net, [preprocess(a, net.dtype, space) for a in artworks], style_layers, s.style_blend,
                          convention)
    return Objective(net, P, A, layer_weights, s.alpha, s.beta, convention, s.tv_weight, content_weights)
