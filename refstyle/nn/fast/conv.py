r"""A conv layer and its ReLU as the fast network runs them: the plan, the forward, the backward.

:func:`conv_plan` prepares a layer's filters once for the method it uses (Winograd,
im2col, or channel planes for few input channels); :func:`conv_relu_forward` and
:func:`conv_relu_backward` are the pair that :mod:`refstyle.nn.kernels` hands the
network, with the ReLU's mask packed in the cache.
"""

from typing import NamedTuple

from ...backend import array_module
from .layout import mask_rows, relu_mask, workspace_for
from .winograd import WINOGRAD_T, winograd_backward_filters, winograd_conv, winograd_filters
from .im2col import im2col_conv, im2col_filters, planes_conv, planes_conv_backward

# ---------------------------------------------------------------------------
# Convolution + ReLU layers, as the network uses them
# ---------------------------------------------------------------------------

#: The methods a conv layer can use: Winograd where it pays (the default), or
#: channels-last im2col everywhere (for comparison). Layers with few input channels
#: use ``"planes"`` (:func:`planes_conv`) under either.
METHODS = ("winograd", "im2col")

#: Below this many input channels a layer uses :func:`planes_conv`: Winograd's
#: transforms, or a channels-last gather with runs of C numbers, would cost more
#: than the GEMM.
MIN_CHANNELS = 16

#: Layers with at most this many filter entries per tile position (O·C) make a
#: contiguous copy of their backward filters (16·O·C numbers): OpenBLAS is up to
#: 1.6× faster on 64×64 products when the filter operand is a transposed view.
SMALL_LAYER = 128 * 128


class ConvPlan(NamedTuple):
    """One conv layer's filters, prepared for the fast kernels."""

    method: str  # "winograd", "im2col" or "planes", as chosen for this layer
    b: object  # bias (O,)
    K: object  # the filters for the forward: W itself for winograd (transformed in each
    #            sweep, winograd_filters), im2col_filters(W) (9C, O), or for planes W.reshape(O, 9C)
    K_back: object  # for the input gradient: im2col_filters of the flipped, channel-swapped
    #                 filters (9O, C); None for winograd (from K in each sweep) and planes


def conv_plan(W, b, method="winograd"):
    """Prepare a layer's filters ``W`` (O, C, 3, 3) and bias ``b`` (O,) for the fast kernels.

    ``method="winograd"`` or ``"im2col"``; a layer with fewer than
    :data:`MIN_CHANNELS` input channels uses ``"planes"`` under either.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    xp = array_module(W)
    O, C = W.shape[:2]
    if C < MIN_CHANNELS:
        return ConvPlan("planes", b, xp.ascontiguousarray(W.reshape(O, 9 * C)), None)
    if method == "winograd":
        return ConvPlan("winograd", b, W, None)
    flipped = xp.ascontiguousarray(W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    return ConvPlan("im2col", b, im2col_filters(W), im2col_filters(flipped))


def _filters(plan, work, backward=False):
    """The plan's filters for one sweep: Winograd's transformed into the workspace's ``"filters"`` slot."""
    if plan.method != "winograd":
        return plan.K_back if backward else plan.K
    W = plan.K
    O, C = W.shape[:2]
    T = work.constant("winograd_T", WINOGRAD_T, W.dtype)
    if not backward:
        (U,) = work.arrays(W.dtype, (16, O, C), slot="filters")
        return winograd_filters(W, out=U, T=T)
    if O * C > SMALL_LAYER:
        (U,) = work.arrays(W.dtype, (16, O, C), slot="filters")
        return winograd_backward_filters(winograd_filters(W, out=U, T=T))
    U, U_back = work.arrays(W.dtype, (16, O, C), (16, C, O), slot="filters")
    return winograd_backward_filters(winograd_filters(W, out=U, T=T), copy=True, out=U_back)


class ConvReluCache(NamedTuple):
    plan: ConvPlan
    mask: object  # relu_mask(F): F > 0, packed on NumPy: where the ReLU passes the gradient


def conv_relu_forward(x, plan, work=None, budget=None):
    r"""A conv layer and its ReLU on a channels-last blob: :math:`F = \max(W * x + b, 0)`.

    Returns ``(F, cache)``; ``F`` is ``(H, W, O)``, the cache holds the ReLU's mask
    :math:`F > 0` (:func:`relu_mask`, packed bits) and the plan — not ``x``: the
    input gradient needs only the filters.
    """
    conv = {"winograd": winograd_conv, "im2col": im2col_conv, "planes": planes_conv}[plan.method]
    work = workspace_for(work, array_module(x))
    with work.one_blas_thread():
        F = conv(x, _filters(plan, work), plan.b, relu=True, work=work, budget=budget)
        return F, ConvReluCache(plan, relu_mask(F, work))


def conv_relu_forward_with_z(x, plan, work=None, budget=None):
    r""":func:`conv_relu_forward` that also returns the convolution's output :math:`z = W * x + b`, before the ReLU.

    For a loss that taps the layer before its ReLU. Returns ``(F, z, cache)``: the ReLU is
    applied to ``z`` as its own step (not fused), with the same mask :math:`F > 0`.
    """
    conv = {"winograd": winograd_conv, "im2col": im2col_conv, "planes": planes_conv}[plan.method]
    xp = array_module(x)
    work = workspace_for(work, xp)
    with work.one_blas_thread():
        z = conv(x, _filters(plan, work), plan.b, relu=False, work=work, budget=budget)
        F = xp.maximum(z, 0)
        return F, z, ConvReluCache(plan, relu_mask(F, work))


def conv_relu_backward(dF, cache, work=None, budget=None, dz=None):
    r"""Back through the ReLU (:math:`dF \cdot [F > 0]`) and the convolution to the layer's input.

    .. math:: dx = W' * (dF \odot [F > 0] + dz), \qquad W'_{c,o,u,v} = W_{o,c,2-u,2-v}

    ``dz``: a gradient at the convolution's output itself (a loss that taps the layer
    before its ReLU), channels last; ``dF`` may then be None. Without ``dz`` the mask is
    fused into the copy of ``dF`` (:func:`padded_band`). Returns an ``(H, W, C)`` array
    (perhaps a view).
    """
    plan, mask = cache.plan, cache.mask
    if dz is not None:  # the ReLU's backward as a step of its own, then the tapped gradient added
        d = dz if dF is None else dF * mask_rows(mask, 0, dF.shape[0], slice(None), dF.shape[2]) + dz
        dF, mask = d, None
    work = workspace_for(work, array_module(dF))
    with work.one_blas_thread():
        if plan.method == "planes":
            return planes_conv_backward(dF, plan.K, mask=mask, work=work, budget=budget)
        conv = winograd_conv if plan.method == "winograd" else im2col_conv
        return conv(dF, _filters(plan, work, backward=True), mask=mask, work=work, budget=budget)
