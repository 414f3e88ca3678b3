r"""``refstyle explain``: the walkthrough's steps (docs/walkthrough.md) on the user's own image and layer.

:func:`explain` yields the lines of the walk: the input and its preprocessing, the
responses :math:`F^l` (``N_l``, ``M_l``), the content loss and its gradient, the Gram
matrix, the style loss and its gradient, the ReLU mask, the total loss, the gradient
with respect to the image, a few L-BFGS iterations, and the paper's own objective (content
``conv4_2``, style ``conv1_1 … conv5_1``, :math:`w_l = 1/5`) with each layer's share of the
loss, each gradient checked by central differences (:func:`~refstyle.paper.gradcheck.check_gradient`:
PASS, PASS within the noise floor, or FAIL). It works in float64 (the checks need it).
"""

import numpy as np

from ..nn.arch import split_tap
from ..nn.inputs import MEAN_BGR, describe_input, is_caffe_input
from ..paper.conventions import get_convention, loss_weights, tap_of
from ..paper.gradcheck import check_gradient
from ..paper.images import preprocess, white_noise
from ..paper.losses import as_matrix, content_loss, gram, style_loss
from ..paper.objective import build_objective, content_targets, style_targets
from ..paper.optimize import lbfgs
from ..paper.settings import Settings
from ..paper.synthesis import minimum_size


def _check(report, tol=1e-6):
    """The verdict of a :func:`check_gradient` report in one line (PASS, PASS within the noise floor, FAIL)."""
    return "finite differences: " + report.summary(tol)


def _check_in_F(f, F):
    r"""Check a loss's gradient with respect to a response: its 10 largest coordinates and 5 random directions.

    Random single coordinates are left out: the derivatives span many orders of magnitude,
    and the smallest lie below what finite differences of a loss summed over all of F's
    entries can resolve (each probe's bound, :math:`1.5\,\delta/h` of rounding for a noise
    :math:`\delta \ge \epsilon |L|` of the loss, would leave them unresolved).
    """
    return _check(check_gradient(f, F, coords=0, largest=10, directions=5))


def paper_layers(net, rgb, x, alpha=None, beta=None, settings=Settings()):
    r"""Step 10: eq. 7 on the convention's layers, each term's share of :math:`L`, and :math:`\partial L/\partial x` checked.

    For the paper, the content layer is ``conv4_2``, the style layers ``conv1_1 … conv5_1`` with
    :math:`w_l = 1/5` (:data:`~refstyle.paper.conventions.PAPER_STYLE_LAYERS`); the targets are the
    image's own :math:`P^l` and :math:`A^l` (of ``rgb``), as in the steps before. A term's share is
    :math:`\alpha L_{content} / L` or :math:`\beta w_l E_l / L`.
    """
    s = settings._replace(alpha=alpha, beta=beta).resolved()
    alpha, beta = s.alpha, s.beta
    content, style = list(s.content_layers), list(s.style_layers)
    c = get_convention(s.convention)  # read once (a record file is read each time it is looked up)
    whose = "the paper's" if s.convention == "paper" else f"the {c.name} convention's"
    rule = c.layer_weights
    weights = (f"w_l = {rule.text.replace('n', str(len(style)))}" if s.layer_weights is None and hasattr(rule, "symbols")
               and rule.symbols <= {"n"} else "w_l as the convention weights them")
    yield (f"10. {whose} layers (eq. 7): content {', '.join(content)}, style {' '.join(style)}, "
           f"{weights}, α = {alpha:g}, β = {beta:g}, targets from the image itself")
    taps = [tap_of(s.convention, name, net.arch) for name in content + style]
    need = minimum_size(taps, net.arch)
    if min(x.shape[2:]) < need:
        deepest = max(taps, key=lambda t: minimum_size([t], net.arch))
        yield f"   (skipped: the image is {x.shape[2]}×{x.shape[3]}, {deepest} needs {need} pixels on each side)"
        return
    objective = build_objective(net, rgb, [rgb], s)
    e = objective.evaluate(x)
    for (kind, name), term in e.layer_losses.items():
        if kind == "tv":
            share = objective.tv_weight * term
            yield (f"   total variation ({c.tv}): λ L_TV = {share:<9.4g} "
                   + (f"({100 * share / e.loss:.2g}% of L)" if c.tv_in_loss else
                      "(its gradient only: not in L)"))
            continue
        F_l = e.F[name]
        weight, symbol = (alpha, "α L_content") if kind == "content" else (beta * objective.layer_weights[name], "β w_l E_l")
        H_W = f"{F_l.shape[2]}×{F_l.shape[3]}"
        yield (f"   {kind:<7} {name}: N_l = {F_l.shape[1]:>3}, M_l = {H_W:>5} = {F_l[0, 0].size:>4}, "
               f"{symbol} = {weight * term:<9.4g} ({100 * weight * term / e.loss:.2g}% of L)")
    yield f"   L = {e.loss:.6g}; ∂L/∂x at the white noise:"
    yield "   " + _check(check_gradient(objective, x, coords=1, largest=2, directions=1))


def explain(net, rgb, layer, seed=0, iters=10, alpha=None, beta=None, settings=Settings()):
    """The walk for image ``rgb`` (RGB uint8) at ``layer``, as lines of text (a generator).

    ``alpha``, ``beta``: the loss weights of step 7, by default the convention's (the
    paper's α/β = 1e-3). ``settings``: the convention, pooling and rounding the network
    was built with (:func:`~refstyle.paper.build.build_network`); the paper's by default.
    """
    alpha, beta = loss_weights(settings.convention, alpha, beta)
    H, W = rgb.shape[:2]
    p = preprocess(rgb, net.dtype, net.image)
    x = white_noise((H, W), seed, net.dtype, net.image)
    if is_caffe_input(net.image):
        yield "1. input (eq. none: Caffe's preprocessing)"
        yield f"   the image is {H}×{W} RGB; x = BGR − mean pixel {MEAN_BGR}, shape {tuple(p.shape)}"
    else:
        yield "1. input (eq. none: the convention's image space)"
        yield f"   the image is {H}×{W} RGB; x = {describe_input(net.image)}, shape {tuple(p.shape)}"
    yield f"   x ranges {float(p.min()):.3f} .. {float(p.max()):.3f}; the start x is seeded white noise (seed {seed})"

    F, _ = net.forward(x, [layer])
    P = content_targets(net, p, [layer])[layer]
    A = style_targets(net, [p], [layer])[layer]
    F_l = F[layer]
    N_l, M_l = F_l.shape[1], F_l.shape[2] * F_l.shape[3]
    before = split_tap(layer)[1]
    yield f"2. responses F^l at {layer} ({'before' if before else 'after'} its ReLU)"
    yield f"   shape {tuple(F_l.shape)}: N_l = {N_l} filters, M_l = {F_l.shape[2]}×{F_l.shape[3]} = {M_l} positions"
    yield f"   as a matrix F^l: {as_matrix(F_l).shape}; the photograph's P^l has {float((P > 0).mean()):.1%} positive entries"

    L, _ = content_loss(F_l, P)
    yield "3. content loss L_content = ½ Σ (F − P)²  (eq. 1), ∂L/∂F = F − P  (eq. 2)"
    yield f"   of the white noise against the image: {L:.6g}"
    yield "   " + _check_in_F(lambda F_: content_loss(F_, P), F_l)

    G = gram(F_l)
    yield "4. Gram matrix G = F Fᵀ  (eq. 3)"
    yield f"   G^l: {tuple(G.shape)}, symmetric: {bool(np.allclose(G, G.T))}, trace {float(G.trace()):.6g} = Σ F² "

    E, _ = style_loss(F_l, A)
    yield "5. style loss E_l = Σ (G − A)² / (4 N_l² M_l²)  (eq. 4), ∂E/∂F = (G − A) F / (N_l² M_l²)  (eq. 6)"
    yield f"   of the white noise against the image's own A^l: {E:.6g}"
    yield "   " + _check_in_F(lambda F_: style_loss(F_, A), F_l)

    if before:
        yield "6. ReLU mask: this tap is before its ReLU, so the derivatives pass it unmasked; the deeper ReLUs mask theirs"
        yield f"   {float((F_l <= 0).mean()):.1%} of the noise's {layer} responses are ≤ 0 (the ReLU would zero them)"
    else:
        yield "6. ReLU mask: the derivatives hold where F^l > 0 and are 0 elsewhere (applied in relu_backward)"
        yield f"   {float((F_l == 0).mean()):.1%} of the noise's {layer} responses are 0: their gradient is masked"

    one = settings._replace(content_layers=(layer,), style_layers=(layer,), layer_weights={layer: 1.0},
                            content_weights={layer: 1.0}, alpha=alpha, beta=beta)
    objective = build_objective(net, rgb, [rgb], one)
    e = objective.evaluate(x)
    tv = e.layer_losses.get(("tv", "x"))
    in_loss = tv is not None and objective.convention.tv_in_loss
    yield (f"7. total loss L = α L_content + β L_style{' + λ L_TV' if in_loss else ''}  (eq. 7), α = {alpha:g}, "
           f"β = {beta:g}, w_l = 1" + (f", λ = {objective.tv_weight:g}" if in_loss else ""))
    yield (f"   {e.loss:.6g} = {alpha:g} × {e.loss_content:.6g} + {beta:g} × {e.loss_style:.6g}"
           + (f" + {objective.tv_weight:g} × {tv:.6g}" if in_loss else ""))

    yield "8. back-propagation to the image: ∂L/∂x through ReLUs, poolings and convolutions (one sweep)"
    yield f"   ∂L/∂x: {tuple(e.grad.shape)}, norm {float(np.linalg.norm(np.asarray(e.grad))):.6g}"
    yield "   " + _check(check_gradient(objective, x, coords=10, directions=2))

    result = lbfgs(objective, x, iters=iters, bounds=(float(p.min()), float(p.max())))
    yield f"9. L-BFGS-B (history 20, ftol = gtol = 0, bounds at the image's min and max), {iters} iterations"
    yield f"   L: {e.loss:.6g} -> {result.loss:.6g} in {result.iterations} iterations, {result.evaluations} evaluations"

    yield from paper_layers(net, rgb, x, alpha, beta, settings)
