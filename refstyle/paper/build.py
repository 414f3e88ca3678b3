r"""One builder from weights and :class:`~refstyle.paper.settings.Settings` to the network of a run.

A convention says how its implementation's network is made: the image space :math:`\vec x`
lives in, what ``conv1_1`` is fed, the pooling and its rounding, how the filters are run. :func:`build_network`
builds that network; :func:`check_network` refuses one that contradicts the settings
(:func:`~refstyle.paper.objective.build_objective` calls it), so that an objective is never
computed on a network other than the one its convention describes. The command line,
the API, ``figure``, ``explain`` and the benchmarks all build their networks here.
"""

from collections.abc import Mapping

from ..errors import RefstyleError
from ..nn.arch import check_layers
from ..nn.inputs import CAFFE_INPUT, InputStage, describe_input
from ..nn.vgg import VGG
from ..weights import load_weights
from .conventions import get_convention, tap_of


def build_network(weights, settings, arch=None, dtype="float32", device="cpu", kernels="reference",
                  weights_input=None):
    """The :class:`VGG` the settings describe, checked to reach every loss layer.

    ``weights``: loaded weights (:func:`refstyle.load_weights`, :func:`refstyle.generate_weights`)
    or a file or known name, loaded here unfolded (the network's input stage maps the
    convention's image space exactly) with ``weights_input`` stating their input where the
    file does not. A convention whose implementation runs the filters transposed in space
    (``"filters": "transposed"``) gets them so.
    """
    s = settings.resolved()
    convention = get_convention(s.convention)
    if not isinstance(weights, Mapping):
        weights = load_weights(weights, arch=arch, input=weights_input, fold=False)
    trained_on = dict(getattr(weights, "meta", {}).get("input") or CAFFE_INPUT)
    net = VGG(weights, arch=arch, pooling=s.pooling, dtype=dtype, kernels=kernels, device=device,
              rounding=s.rounding, image=convention.image_space(trained_on), feed=convention.feed_space(trained_on),
              filters=convention.filters)
    taps = [tap_of(convention, name, net.arch) for name in list(s.content_layers) + list(s.style_layers)]
    check_layers(taps, net.arch, net.layers)
    return net


def check_network(net, settings):
    """Refuse a network whose pooling, rounding, filters, image space or feed is not what the settings' convention says."""
    s = settings.resolved()
    c = get_convention(s.convention)
    fix = "build it with refstyle.build_network(weights, settings)"
    for what, have, want in (("pools", net.pooling, s.pooling), ("rounds its pooling", net.rounding, s.rounding),
                             ("runs its filters", net.filters, c.filters)):
        if have != want:
            raise RefstyleError(f"the network {what} {have!r}, but the settings (convention {c.name}) say {want!r}: {fix}")
    image = c.image_space(net.weights_input)
    if not InputStage(net.image, image).identity:
        raise RefstyleError(
            f"the {c.name} convention optimises an image in {describe_input(image)}, but the network takes "
            f"{describe_input(net.image)}: {fix}"
        )
    feed = c.feed_space(net.weights_input) or net.weights_input
    if not InputStage(net.stage.dst, feed).identity:
        raise RefstyleError(
            f"the {c.name} convention feeds conv1_1 {describe_input(feed)}, but the network feeds it "
            f"{describe_input(net.stage.dst)}: {fix}"
        )
