r"""Folding an input convention into ``conv1_1``, so that any weights take Caffe's input.

Weights trained on another input than Caffe's (torchvision's RGB 0..1 normalised by
mean and std, another mean pixel: :mod:`refstyle.nn.inputs`) compute the same
responses from Caffe's preprocessed image once their first layer absorbs the
difference: :func:`to_caffe_input` says how, and where it is not exact (the border).
"""

import numpy as np

from ..errors import RefstyleError, WeightsError
from ..nn.inputs import CAFFE_INPUT, affine, describe_input, is_caffe_input, pixel_text
from .model import Weights


def take_caffe_input(weights):
    """Weights that take Caffe's input (:data:`CAFFE_INPUT`), whatever input convention they were trained on.

    Weights trained on another input (torchvision's RGB 0..1 normalised by mean and std,
    or another mean pixel) get that convention folded into ``conv1_1``
    (:func:`to_caffe_input`: exact away from the image border);
    ``meta['input_conversion']`` says what was done and ``meta['input']`` becomes Caffe's.
    """
    convention = weights.meta.get("input", CAFFE_INPUT)
    if is_caffe_input(convention):
        return weights

    layers, note = to_caffe_input(dict(weights), convention)
    meta = dict(weights.meta, input=CAFFE_INPUT, input_conversion={"from": convention, "note": note})
    return Weights(layers, meta)


def to_caffe_input(layers, convention):
    r"""Fold an input convention into ``conv1_1`` so the weights take Caffe's input.

    A convention says how the network's input :math:`x'` is made from an image's
    pixels :math:`p` in 0..255: :math:`x'_k = (s\,p_{\pi(k)} - m_k)/\sigma_k` with
    channel order ``channels`` (:math:`\pi(k)` is the BGR index of channel :math:`k`),
    :math:`s` = ``range[1]``/255, ``mean`` :math:`m` in the units of ``range`` and
    ``std`` :math:`\sigma` (1 when absent). Caffe's is :math:`x_c = p_c - \mu_c`, BGR,
    :math:`\mu` = ``CAFFE_INPUT["mean"]``. Substituting :math:`x'` into ``conv1_1``
    (pad 1, see :func:`refstyle.nn.layers.conv_forward`):

    .. math::

        W'_{o,\pi(k),u,v} = W_{o,k,u,v}\,\frac{s}{\sigma_k}, \qquad
        b'_o = b_o + \sum_{c,u,v} W'_{o,c,u,v}\,\Bigl(\mu_c - \frac{m_{\pi^{-1}(c)}}{s}\Bigr)

    so that :math:`\mathrm{conv}(x', W, b) = \mathrm{conv}(x, W', b')` exactly at
    every output pixel whose 3×3 window lies inside the image: the channels are
    reordered, each divided by its :math:`\sigma_k/s`, and the difference of the two
    mean pixels goes into the bias. (For torchvision, :math:`s = 1/255` and
    :math:`m/s = 255\cdot(0.485, 0.456, 0.406)`.)

    Notes
    -----
    The border is not exact. The zero padding of :math:`x'` stands for the pixel
    :math:`q_c = m_{\pi^{-1}(c)}/s` (the convention's mean pixel), the zero padding of
    :math:`x` for :math:`\mu`. On ``conv1_1``'s outer ring of output pixels the folded
    layer therefore differs by

    .. math:: \Delta y_o = \sum_{(u,v)\ \text{outside}} \sum_c W'_{o,c,u,v}\,(\mu_c - q_c),

    as if the pixels beyond the edge were :math:`\mu` instead of :math:`q`. For
    torchvision, :math:`q` = (103.530, 116.280, 123.675) BGR against :math:`\mu` =
    (103.939, 116.779, 123.680): at most 0.499 grey levels of 255 apart, less than
    8-bit rounding, so :math:`|\Delta y_o| \le 0.499 \sum_{\text{outside}} |W'_{o}|`
    (three taps of nine on an edge, five at a corner): at most 0.499/255 < 0.2 % of the
    range :math:`255 \sum |W'_o|` that :math:`y_o` spans over all images. Deeper layers
    see the change only within their receptive field of the edge.

    ``layers`` is ``{name: (W, b)}`` and is not changed; the result is a new dict with
    a new ``conv1_1`` (computed in float64, stored in ``W``'s dtype) and the other
    layers as they were, and a one-line note saying what was folded.
    """
    try:
        t = affine(convention)  # x'_k = a_k p_{π(k)} + c_k: a_k = s/σ_k, and the convention's mean pixel q = −c/a
    except RefstyleError as e:
        raise WeightsError(str(e).replace("an image space", "an input convention")) from None
    mu = np.asarray(CAFFE_INPUT["mean"], dtype=np.float64)
    if is_caffe_input(convention):
        return dict(layers), "the weights already take Caffe's input: nothing folded"
    if "conv1_1" not in layers:
        raise WeightsError("the weights lack conv1_1, into which their input convention would be folded")

    W, b = layers["conv1_1"]
    W64 = np.asarray(W, dtype=np.float64)
    W_new = np.empty_like(W64)
    W_new[:, t.order] = W64 * t.a[None, :, None, None]
    q = t.mean_pixel()  # the convention's mean pixel, BGR, 0..255
    b_new = np.asarray(b, dtype=np.float64) + np.einsum("ocuv,c->o", W_new, mu - q)

    folded = dict(layers)
    folded["conv1_1"] = (W_new.astype(np.asarray(W).dtype), b_new.astype(np.asarray(b).dtype))
    note = (
        f"conv1_1 folded from the input {describe_input(convention)} to Caffe's ({describe_input(CAFFE_INPUT)}); "
        f"exact but on conv1_1's outer pixel ring, where the padding now stands for the pixel "
        f"{pixel_text(mu)} BGR instead of {pixel_text(q)}, "
        f"at most {np.max(np.abs(mu - q)):.3g} grey levels apart"
    )
    return folded, note
