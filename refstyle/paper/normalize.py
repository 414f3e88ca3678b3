r"""The paper's normalised network: every filter's mean response over images and positions is 1.

Gatys et al. used "a normalised version of the 16 convolutional and 5 pooling layers of
the 19-layer VGG network": each filter's weights and bias are divided by the mean of its
responses (after the ReLU) over a set of images and positions, and the next layer's
input weights are multiplied by it. Because the ReLU and both poolings are positively
homogeneous (:math:`\max(0, a z) = a \max(0, z)` for :math:`a > 0`), each layer's
responses are then the original ones divided per channel by that mean:

.. math::
    m^l_i = \frac{1}{K M_l} \sum_{k=1}^{K} \sum_{j} F^l_{ij}(\vec x_k), \qquad
    W'^l_{i c} = W^l_{i c} \, \frac{m^{l-1}_c}{m^l_i}, \qquad b'^l_i = \frac{b^l_i}{m^l_i}, \qquad
    F'^l_{ij} = \frac{F^l_{ij}}{m^l_i}

with :math:`m^0 = 1` for the image's channels. A filter that never responds on the
images (:math:`m^l_i = 0`) cannot be scaled: it keeps :math:`m^l_i = 1` and is reported.

:func:`mean_responses` measures the means on the original network; :func:`normalize`
applies them; ``refstyle weights normalize`` runs both over a folder of images.
"""

import os
from typing import NamedTuple

import numpy as np

from ..backend import to_numpy
from ..errors import RefstyleError
from ..nn.arch import conv_layers, infer_arch, is_conv
from ..nn.vgg import VGG
from ..weights.model import Weights
from .images import load_image, preprocess, resize_longer


def mean_responses(net, images, on_image=None):
    r"""The mean response :math:`m^l_i` of every filter of ``net`` over ``images`` and positions.

    ``images`` are network inputs ``(1, 3, H, W)`` (:func:`refstyle.preprocess`), of any
    sizes; each image counts in proportion to its number of positions :math:`M_l` (the
    mean is over all positions of all images). Accumulated in float64. Returns
    ``{conv layer: array (N_l,)}``; ``on_image(k)`` is told when image ``k`` is done.
    """
    convs = [name for name in net.layers if is_conv(name)]
    sums = {name: np.zeros(net.params[name][0].shape[0]) for name in convs}
    positions = dict.fromkeys(convs, 0)
    for k, x in enumerate(images):
        F, _ = net.forward(x, convs)
        for name in convs:
            f = F[name]
            sums[name] += to_numpy(f.sum(axis=(0, 2, 3), dtype=np.float64))
            positions[name] += f.shape[2] * f.shape[3]
        if on_image is not None:
            on_image(k)
    if not positions or not positions[convs[0]]:
        raise RefstyleError("no images to measure the mean responses on")
    return {name: sums[name] / positions[name] for name in convs}


class Normalized(NamedTuple):
    weights: Weights  # the normalised weights
    scales: dict  # {layer: the m^l divided out: the means, with 1 where a filter never responds}
    dead: dict  # {layer: [indices of the filters whose mean is 0, left alone]}


def normalize(weights, means):
    r"""Scale ``weights`` by the mean responses ``means``: :math:`W'^l_{ic} = W^l_{ic} m^{l-1}_c / m^l_i`, :math:`b'^l_i = b^l_i / m^l_i`.

    ``means`` holds :math:`m^l` for every conv layer of ``weights`` (from
    :func:`mean_responses` on the original network). Filters with :math:`m^l_i = 0`
    keep scale 1. Pure: returns a :class:`Normalized`; the inputs are not changed.
    Computed in float64 and stored in the weights' dtype.
    """
    layers, scales, dead = {}, {}, {}
    previous = np.ones(3)
    for name in [n for n in conv_layers(infer_arch(weights)) if n in weights]:  # network order, whatever the dict's
        W, b = weights[name]
        if name not in means:
            raise RefstyleError(f"no mean response for {name}: measure the means on the same network")
        m = np.asarray(means[name], dtype=np.float64)
        if m.shape != (W.shape[0],):
            raise RefstyleError(f"{name}: {m.shape[0] if m.ndim == 1 else m.shape} means for {W.shape[0]} filters")
        if (m < 0).any() or not np.isfinite(m).all():
            raise RefstyleError(f"{name}: mean responses must be finite and non-negative (they follow a ReLU)")
        zero = np.flatnonzero(m == 0)
        if zero.size:
            dead[name] = zero.tolist()
            m = np.where(m == 0, 1.0, m)
        W64, b64 = np.asarray(W, np.float64), np.asarray(b, np.float64)
        W_new = W64 * previous[None, :, None, None] / m[:, None, None, None]
        layers[name] = (W_new.astype(np.asarray(W).dtype), (b64 / m).astype(np.asarray(b).dtype))
        scales[name] = m
        previous = m
    meta = dict(getattr(weights, "meta", {}))
    return Normalized(Weights(layers, meta), scales, dead)


def normalize_over_images(weights, images, size=256, pooling="max", dtype="float32", on_image=None):
    """Measure the mean responses of ``weights`` over images and normalise them.

    ``images``: a list of RGB arrays or image paths (read one at a time), each resized
    to longer side ``size``. ``pooling``: the network's pooling while measuring; VGG was
    trained with max pooling, and the means of the layers after a pooling depend on it.
    ``dtype``: of the measuring network (the means are summed in float64 either way).
    Returns a :class:`Normalized` whose weights' ``meta['normalized']`` records the
    number of images and their file names, the size, the pooling, the means :math:`m^l` and the filters left
    alone.
    """
    def inputs():
        for image in images:
            rgb = image if isinstance(image, np.ndarray) else load_image(image)
            yield preprocess(resize_longer(rgb, size), dtype)

    net = VGG(weights, pooling=pooling, dtype=dtype)
    means = mean_responses(net, inputs(), on_image)
    result = normalize(weights, means)
    result.weights.meta["normalized"] = {
        "images": len(images), "size": size, "pooling": pooling,
        "image_names": [os.path.basename(image) if not isinstance(image, np.ndarray) else "(an array)"
                        for image in images],
        "means": {name: [float(v) for v in m] for name, m in means.items()},
        "dead": result.dead,
    }
    return result
