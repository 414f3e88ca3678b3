r"""Checkpoint names → Caffe names, and the input convention each naming implies.

VGG weights travel under three naming schemes, each tied to the preprocessing its
network was trained or converted with (``[prefix.]`` is any prefix ending in a dot,
such as DataParallel's ``module.``):

- ``torchvision``: ``[prefix.]features.N.weight`` and ``.bias``, ``N`` the module's
  index in ``features``; or ``features`` saved alone (``vgg.features.state_dict()``,
  the common form in style-transfer code), whose keys are the bare ``N.weight`` and
  ``N.bias`` (with no prefix, or DataParallel's ``module.``). Input
  ``TORCHVISION_INPUT``: RGB in 0..1, minus (0.485, 0.456, 0.406), divided by
  (0.229, 0.224, 0.225).
- ``caffe``: ``[prefix.]conv1_1.weight`` and ``.bias`` (the Gatys tutorial's
  ``vgg_conv.pth``, converted from the caffemodel). Input ``CAFFE_INPUT``: BGR in
  0..255 minus the mean pixel (103.939, 116.779, 123.68).
- ``keras``: ``[prefix.]block1_conv1.weight`` and ``.bias`` (``keras.applications``
  names, holding PyTorch's ``(out, in, kh, kw)`` filters). Input ``CAFFE_INPUT``.

torchvision numbers the modules of ``features`` in order, a ReLU after every
convolution (and a BatchNorm between them in ``vgg16_bn``/``vgg19_bn``) and a max-pool
after every block, so ``N`` says which convolution a key belongs to only once the
architecture is known: vgg16's convolutions are at 0, 2, 5, 7, 10, 12, 14, 17, 19, 21,
24, 26, 28 and vgg19's at 0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34.
:func:`name_keys` tells them apart by the set of indices present, which for a whole
network, or for any prefix of one reaching past ``conv3_3``, fits one layout only.

:func:`refstyle.weights.fold.to_caffe_input` folds another input convention into
``conv1_1``, so that weights read under any scheme can be used with refstyle's Caffe
preprocessing.
"""

import re
from typing import NamedTuple

from ..errors import WeightsError
from ..nn.arch import ARCHS, is_conv
from ..nn.inputs import CAFFE_INPUT, TORCHVISION_INPUT

# The input each naming scheme's weights expect.
INPUTS = {"torchvision": TORCHVISION_INPUT, "caffe": CAFFE_INPUT, "keras": CAFFE_INPUT}

# Key → (prefix, conv name or torchvision index, parameter) for each scheme.
_TORCHVISION = re.compile(r"^(.*?)features\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")
# vgg.features.state_dict(): bare indices, under no prefix but DataParallel's (under any
# other, such as classifier., they would be another Sequential's).
_TORCHVISION_BARE = re.compile(r"^((?:module\.)?)(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")
_CAFFE = re.compile(r"^(.*?)conv([1-5])_([1-4])\.(weight|bias)$")
_KERAS = re.compile(r"^(.*?)block([1-5])_conv([1-4])\.(weight|bias|kernel)$")
_PREFIX = re.compile(r"(^|.*[./])$")  # a prefix ends where a name part ends

# The schemes _match tells apart ("torchvision-bare" is reported as "torchvision"), for messages.
_PATTERNS = {"torchvision": "features.N", "torchvision-bare": "N", "caffe": "convB_K", "keras": "blockB_convK"}
_CONV_ROLES = {"weight": "W", "kernel": "W", "bias": "b"}
_BN_ROLES = {"weight": "gamma", "bias": "beta", "running_mean": "mean", "running_var": "var"}


def torchvision_layout(arch, batchnorm=False):
    r"""``{N: conv name}``: where each convolution of ``arch`` sits in torchvision's ``features``.

    ``features`` holds, in order, for each ``convB_K`` a ``Conv2d``, a ``BatchNorm2d``
    (only with ``batchnorm``) and a ``ReLU``, and for each ``poolB`` a ``MaxPool2d``.
    The BatchNorm of the conv at ``N`` is at ``N + 1``.
    """
    layout, index = {}, 0
    for name in ARCHS[arch]:
        if is_conv(name):
            layout[index] = name
            index += 3 if batchnorm else 2
        else:
            index += 1
    return layout


# The torchvision layouts refstyle can read, by torchvision's model names.
TORCHVISION_LAYOUTS = {
    f"{arch}{'_bn' if bn else ''}": (arch, bn, torchvision_layout(arch, bn)) for arch in ARCHS for bn in (False, True)
}


def _match(key):
    """``(scheme, prefix, layer, param)`` for a key of a known scheme, else None.

    ``scheme`` is a key of ``_PATTERNS``; ``layer`` is the Caffe conv name, or for
    torchvision the index ``N`` (an int).
    """
    m = _TORCHVISION.match(key)
    if m and _PREFIX.match(m.group(1)):
        return "torchvision", m.group(1), int(m.group(2)), m.group(3)
    m = _TORCHVISION_BARE.match(key)
    if m:
        return "torchvision-bare", m.group(1), int(m.group(2)), m.group(3)
    m = _CAFFE.match(key)
    if m and _PREFIX.match(m.group(1)):
        return "caffe", m.group(1), f"conv{m.group(2)}_{m.group(3)}", m.group(4)
    m = _KERAS.match(key)
    if m and _PREFIX.match(m.group(1)):
        return "keras", m.group(1), f"conv{m.group(2)}_{m.group(3)}", m.group(4)
    return None


def caffe_name(key, layout=None):
    """The Caffe name and role of one checkpoint key: ``(name, role)``, or None.

    ``role`` is ``"W"`` or ``"b"`` for a convolution's filters or bias, and for the
    BatchNorm after a convolution (torchvision ``*_bn`` layouts) ``"gamma"``, ``"beta"``,
    ``"mean"`` or ``"var"``. None means the key is no part of the conv stack (a
    classifier layer, a ReLU's index, ``num_batches_tracked``, an unknown name).
    torchvision keys ``features.N.*`` and ``N.*`` need ``layout``, a key of
    ``TORCHVISION_LAYOUTS`` (``name_keys`` finds it from all the keys of a file).
    """
    found = _match(key)
    if found is None:
        return None
    scheme, _, layer, param = found
    if not scheme.startswith("torchvision"):
        return layer, _CONV_ROLES[param]
    if layout is None:
        raise ValueError(f"{key!r} is named by its position in torchvision's features: give its layout")
    _, batchnorm, convs = TORCHVISION_LAYOUTS[layout]
    if layer in convs and param in _CONV_ROLES:
        return convs[layer], _CONV_ROLES[param]
    if batchnorm and layer - 1 in convs and param in _BN_ROLES:
        return convs[layer - 1], _BN_ROLES[param]
    return None


class Naming(NamedTuple):
    """How a checkpoint's keys were read (the result of :func:`name_keys`)."""

    names: dict  # {key: (caffe name, role)} for every key of the conv stack
    scheme: str  # "torchvision" (features.N or bare N), "caffe" or "keras"
    layout: str  # a TORCHVISION_LAYOUTS key; for a stack short enough to fit several, the first
    arch: str  # "vgg16" or "vgg19", or None where the names fit both
    prefix: str  # what stands before the scheme's names ("", "module.", "vgg19.", ...)
    ignored: list  # the keys that are not part of the conv stack


def _torchvision_layouts(indices):
    """The layouts whose convolutions (and BatchNorms) sit exactly at ``indices``, for some depth."""
    fits = []
    for name, (_, batchnorm, convs) in TORCHVISION_LAYOUTS.items():
        expected = set()
        for N in convs:
            expected |= {N, N + 1} if batchnorm else {N}
            if expected == indices:
                fits.append(name)
                break
    return fits


def name_keys(keys):
    """Find the naming scheme of a checkpoint's keys and the Caffe name of each.

    Returns a :class:`Naming`. Raises :class:`WeightsError` when no key is of a known
    scheme, when two schemes or two prefixes (two networks) are mixed, or when
    torchvision indices fit no VGG16/VGG19 layout (another network, or VGG11/13).
    """
    keys = list(keys)
    matched = {key: m for key in keys if (m := _match(key)) is not None}
    if not matched:
        shown = ", ".join(keys[:6]) + (", ..." if len(keys) > 6 else "")
        raise WeightsError(
            f"no VGG convolutions found among the keys ({shown}); expected torchvision's "
            "features.N.weight (or N.weight, for features alone), conv1_1.weight or block1_conv1.weight names"
        )
    schemes = {(scheme, prefix) for scheme, prefix, _, _ in matched.values()}
    if len(schemes) > 1:
        described = ", ".join(sorted(prefix + _PATTERNS[s] for s, prefix in schemes))
        raise WeightsError(f"the keys hold more than one conv stack ({described}); save the one VGG alone")
    ((scheme, prefix),) = schemes
    layout, arch = None, None
    if scheme.startswith("torchvision"):
        indices = {layer for _, _, layer, param in matched.values() if param != "num_batches_tracked"}
        fits = _torchvision_layouts(indices)
        if not fits:
            raise WeightsError(
                f"the modules {prefix}{_PATTERNS[scheme]} at N = {', '.join(map(str, sorted(indices)))} fit no "
                f"torchvision VGG layout ({', '.join(TORCHVISION_LAYOUTS)}); refstyle reads VGG16 and VGG19 only"
            )
        layout = fits[0]
        archs = {TORCHVISION_LAYOUTS[f][0] for f in fits}
        arch = archs.pop() if len(archs) == 1 else None
    names = {key: named for key in matched if (named := caffe_name(key, layout)) is not None}
    ignored = [key for key in keys if key not in names]
    return Naming(names, scheme.partition("-")[0], layout, arch, prefix, ignored)
