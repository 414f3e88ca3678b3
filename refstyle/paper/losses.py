r"""The paper's losses, each returning the loss and its gradient with respect to the response.

Notation (Gatys, Ecker & Bethge, Methods): layer :math:`l` has :math:`N_l` filters and
:math:`M_l = H_l W_l` positions; :math:`F^l \in \mathbb{R}^{N_l \times M_l}` is the
response (after ReLU) of the generated image :math:`\vec x`, :math:`P^l` that of the
photograph :math:`\vec p`, :math:`A^l` the Gram matrix of the artwork :math:`\vec a`.

The gradients here are taken with respect to the response :math:`F^l` itself. The paper
writes them "where :math:`F^l_{ij} > 0`" and 0 elsewhere: that mask is the derivative of
the ReLU that produced :math:`F^l`, and refstyle applies it in exactly one place,
:func:`refstyle.nn.layers.relu_backward`, when :meth:`refstyle.VGG.backward` carries the
gradient down. Keeping it out of the losses lets each be checked alone.

Responses arrive as network blobs ``(1, N_l, H_l, W_l)``; they are viewed as
:math:`N_l \times M_l` matrices, and gradients are returned in the blob's shape. A loss
is returned as a float64 scalar of the array module: a NumPy ``float64`` (a Python
float) on the CPU, a 0-d array left on the GPU, so that the objective adds a whole
evaluation's terms there and reads them once (``float(L)`` reads one).
"""

from ..backend import array_module


def _sum64(a):
    """``a.sum()`` accumulated in float64, as a float64 scalar left where it is (no host transfer).

    Summed in float32, a loss carries rounding of about 1e-7 of itself: L-BFGS's first step
    (of length 1 in pixel units) changes a style loss at the white noise by less than that
    at 256 pixels, and its line search then fails at the first iteration.
    """
    return a.sum(dtype="float64")


def as_matrix(F):
    r"""View a response blob ``(1, N_l, H_l, W_l)`` as the matrix :math:`F^l` of shape ``(N_l, M_l)``."""
    return F.reshape(F.shape[1], -1)


def content_loss(F, P):
    r"""Content loss of one layer and its gradient (paper, eq. 1 and 2).

    .. math::
        L_\text{content} = \tfrac12 \sum_{ij} (F^l_{ij} - P^l_{ij})^2, \qquad
        \frac{\partial L_\text{content}}{\partial F^l_{ij}} = (F^l - P^l)_{ij}

    Returns ``(L, dF)`` with ``dF`` shaped like ``F``.
    """
    diff = F - P
    return 0.5 * _sum64(diff * diff), diff


def gram(F):
    r"""Gram matrix of a response (paper, eq. 3): :math:`G^l_{ij} = \sum_k F^l_{ik} F^l_{jk}`, i.e. :math:`G = F F^\top`.

    Returns an ``(N_l, N_l)`` matrix; not normalised (the :math:`1/(4N_l^2M_l^2)`
    lives in :func:`style_loss`).
    """
    Fm = as_matrix(F)
    return Fm @ Fm.T


def style_loss(F, A):
    r"""Style loss of one layer and its gradient (paper, eq. 4 and 6).

    .. math::
        E_l = \frac{1}{4 N_l^2 M_l^2} \sum_{ij} (G^l_{ij} - A^l_{ij})^2, \qquad
        \frac{\partial E_l}{\partial F^l_{ij}} = \frac{1}{N_l^2 M_l^2} \big((G^l - A^l) F^l\big)_{ij}

    (the gradient uses that :math:`G - A` is symmetric). ``A`` is the artwork's Gram
    matrix, ``(N_l, N_l)``. Returns ``(E_l, dF)`` with ``dF`` shaped like ``F`` and
    laid out in memory as ``F`` is (channels last for the fast network's responses).
    """
    N_l = F.shape[1]
    M_l = F.size // N_l
    G = gram(F)
    diff = G - A
    scale = 1.0 / (N_l**2 * M_l**2)
    E = (0.25 * scale) * _sum64(diff * diff)
    Fm = as_matrix(F)
    if Fm.flags.c_contiguous:
        dF = diff @ Fm
    else:  # a channels-last response: Fᵀ (G − A), C-ordered (M_l, N_l), is (G − A) F in F's memory order
        dF = (Fm.T @ diff).T
    dF *= scale
    return E, dF.reshape(F.shape)


def blend_grams(grams, weights=None):
    r"""Style targets blended from several artworks: :math:`A^l = \sum_s v_s A^l_s`.

    ``grams``: one Gram matrix per artwork; ``weights`` :math:`v_s` default to equal
    shares summing to 1.
    """
    if weights is None:
        weights = [1.0 / len(grams)] * len(grams)
    if len(weights) != len(grams):
        raise ValueError(f"{len(grams)} style images but {len(weights)} blend weights")
    xp = array_module(*grams)
    A = xp.zeros_like(grams[0])
    for v, G in zip(weights, grams):
        A += v * G
    return A


def total_variation(x):
    r"""Squared total variation of the image and its gradient (not in the paper; off by default).

    .. math::
        L_\text{TV} = \sum_{c,i,j} (x_{c,i+1,j} - x_{c,i,j})^2 + (x_{c,i,j+1} - x_{c,i,j})^2

    A smoothness prior that some implementations add (neural-style's ``-tv_weight``,
    which uses this squared form). Returns ``(L_TV, dx)``.
    """
    xp = array_module(x)
    dv = x[:, :, 1:, :] - x[:, :, :-1, :]
    dh = x[:, :, :, 1:] - x[:, :, :, :-1]
    L = _sum64(dv * dv) + _sum64(dh * dh)
    dx = xp.zeros_like(x)
    dx[:, :, 1:, :] += 2 * dv
    dx[:, :, :-1, :] -= 2 * dv
    dx[:, :, :, 1:] += 2 * dh
    dx[:, :, :, :-1] -= 2 * dh
    return L, dx


def total_variation_l1(x):
    r"""Total variation as neural-style-pt's ``TVLoss`` writes it: absolute differences (not in the paper).

    .. math::
        L_\text{TV} = \sum_{c,i,j} |x_{c,i+1,j} - x_{c,i,j}| + |x_{c,i,j+1} - x_{c,i,j}|

    Its gradient takes the sign of each difference, 0 where a difference is exactly 0
    (as ``torch.abs``'s does). Returns ``(L_TV, dx)``.
    """
    xp = array_module(x)
    sv = xp.sign(x[:, :, 1:, :] - x[:, :, :-1, :])
    sh = xp.sign(x[:, :, :, 1:] - x[:, :, :, :-1])
    L = _sum64(xp.abs(x[:, :, 1:, :] - x[:, :, :-1, :])) + _sum64(xp.abs(x[:, :, :, 1:] - x[:, :, :, :-1]))
    dx = xp.zeros_like(x)
    dx[:, :, 1:, :] += sv
    dx[:, :, :-1, :] -= sv
    dx[:, :, :, 1:] += sh
    dx[:, :, :, :-1] -= sh
    return L, dx


def total_variation_neural_style(x):
    r"""Total variation as jcjohnson/neural-style's ``TVLoss`` (Lua) computes its gradient (not in the paper).

    On the image less its last row and column, with :math:`h_{ij} = x_{i,j} - x_{i,j+1}` and
    :math:`v_{ij} = x_{i,j} - x_{i+1,j}` for :math:`i < H-1, j < W-1`:

    .. math:: L_\text{TV} = \tfrac12 \sum_{c,i,j} h_{ij}^2 + v_{ij}^2

    whose gradient the Lua module adds in its backward (it reports no loss of its own).
    Returns ``(L_TV, dx)``.
    """
    xp = array_module(x)
    corner = x[:, :, :-1, :-1]
    h = corner - x[:, :, :-1, 1:]
    v = corner - x[:, :, 1:, :-1]
    L = 0.5 * (_sum64(h * h) + _sum64(v * v))
    dx = xp.zeros_like(x)
    dx[:, :, :-1, :-1] += h + v
    dx[:, :, :-1, 1:] -= h
    dx[:, :, 1:, :-1] -= v
    return L, dx


def total_variation_keras(x):
    r"""Total variation as Keras's neural style transfer example writes it (not in the paper).

    On the interior (all but the last row and column), per channel, with
    :math:`v_{ij} = x_{i,j} - x_{i+1,j}` and :math:`h_{ij} = x_{i,j} - x_{i,j+1}`:

    .. math:: L_\text{TV} = \sum_{c,i,j} (v_{ij}^2 + h_{ij}^2)^{1.25}, \qquad
              \frac{\partial}{\partial v_{ij}} = 2.5\, (v_{ij}^2 + h_{ij}^2)^{0.25}\, v_{ij}

    Returns ``(L_TV, dx)``.
    """
    xp = array_module(x)
    corner = x[:, :, :-1, :-1]
    v = corner - x[:, :, 1:, :-1]
    h = corner - x[:, :, :-1, 1:]
    s = v * v + h * h
    L = _sum64(s ** 1.25)
    k = 2.5 * s ** 0.25
    dx = xp.zeros_like(x)
    dx[:, :, :-1, :-1] += k * (v + h)
    dx[:, :, 1:, :-1] -= k * v
    dx[:, :, :-1, 1:] -= k * h
    return L, dx


def total_variation_mean_squares(x):
    r"""Total variation as anishathalye/neural-style writes it: the means of the squared differences (not in the paper).

    .. math:: L_\text{TV} = \frac{1}{|v|} \sum_{c,i,j} v_{ij}^2 + \frac{1}{|h|} \sum_{c,i,j} h_{ij}^2

    with :math:`v_{ij} = x_{i+1,j} - x_{i,j}` over its :math:`|v| = 3(H-1)W` entries and
    :math:`h_{ij} = x_{i,j+1} - x_{i,j}` over its :math:`|h| = 3H(W-1)` (``2 * l2_loss(d) / size``
    of each). Returns ``(L_TV, dx)``.
    """
    xp = array_module(x)
    dv = x[:, :, 1:, :] - x[:, :, :-1, :]
    dh = x[:, :, :, 1:] - x[:, :, :, :-1]
    nv, nh = max(dv.size, 1), max(dh.size, 1)
    L = _sum64(dv * dv) / nv + _sum64(dh * dh) / nh
    dx = xp.zeros_like(x)
    dx[:, :, 1:, :] += (2.0 / nv) * dv
    dx[:, :, :-1, :] -= (2.0 / nv) * dv
    dx[:, :, :, 1:] += (2.0 / nh) * dh
    dx[:, :, :, :-1] -= (2.0 / nh) * dh
    return L, dx


# The forms a convention's total-variation term takes, by name.
TV_FORMS = {"squared": total_variation, "l1": total_variation_l1, "neural-style": total_variation_neural_style,
            "keras": total_variation_keras, "mean-squares": total_variation_mean_squares}
