"""Loading VGG weights from any file refstyle reads, by path or by a known name.

:func:`load_weights` finds the file (a path, or a known name in the cache:
:mod:`.cache`), reads it with the reader its content calls for (:mod:`.formats`, the
registry of readers), keeps the VGG convolutions, checks them against the architecture
(:func:`refstyle.nn.arch.check_weights`) and folds another input convention into
``conv1_1`` (:mod:`.fold`). :func:`describe` summarises a file for ``refstyle weights info``.
"""

import os
import warnings

import numpy as np

from ..errors import RefstyleWarning, WeightsError
from ..nn.arch import check_arch, check_weights, infer_arch
from ..nn.inputs import CAFFE_INPUT, describe_input, input_by_name
from .cache import resolve, source_named_like, source_of
from .caffemodel import caffemodel_layers
from .catalogue import load_sources
from .fold import take_caffe_input
from .formats import format_title, read_weights, reader_for
from .npz import RECORDED


def _known_names():
    try:
        return sorted(load_sources())
    except WeightsError:
        return []


def _hint():
    return (f" (give a weights file or a known name: {', '.join(_known_names())}; "
            "`refstyle weights list` shows them)")


def known_source(name):
    """The record of the known weights ``name`` (``weights/NAME.json``), or None for a path."""
    name = os.fspath(name)
    if os.path.exists(name):
        return None
    try:
        return load_sources().get(name)
    except WeightsError:
        return None  # no readable catalogue: a name is then just a missing file


def resolve_weights(name):
    """A weights path from a path or a known name: the fetched file in the cache (``refstyle weights list``)."""
    source = known_source(name)
    return os.fspath(name) if source is None else os.fspath(resolve(source.name))


def load_weights(path, arch=None, input=None, fold=True):
    """Load VGG weights from any file of :data:`~refstyle.weights.formats.FORMATS`, told by its content.

    Returns :class:`Weights`, checked against ``arch`` (default: the architecture
    they record or imply, which is then stored in ``meta['arch']``).

    ``input``: the input convention the weights were trained on, stated (a name of
    :data:`refstyle.nn.inputs.INPUTS` or a convention dict); by default a known source's
    record says it, else the file: a caffemodel, Keras file or refstyle ``.npz`` is
    certain, while torchvision's key names (``features.N``) are only a guess, warned
    about (neural-style-pt's model files hold Caffe weights under those names); a file
    with a known source's file name (``vgg19-d01eb7cb.pth``) takes that record's input,
    warned about too. With
    ``fold`` (the default) another convention is folded into ``conv1_1`` so the weights
    take Caffe's input (exact but on the border ring); without, ``meta['input']`` keeps
    it and :class:`refstyle.VGG` maps the image into it exactly (its input stage).
    """
    if arch is not None:
        check_arch(arch)
    path = resolve_weights(path)
    weights = read_weights(path, _hint())
    guessed = weights.meta.pop("input_guessed", False)
    source = source_of(path)  # a known source's file, named or given by its path: its record says its input
    if source is not None:
        weights.meta.update(source=f"{source.name} ({path})", input=source.input)
        guessed = False
    if input is not None:
        weights.meta["input"] = dict(input_by_name(input) if isinstance(input, str) else input)
        guessed = False
    named = source_named_like(path) if guessed else None
    if named is not None and named.format == "pth":
        weights.meta.update(source=f"{named.name}? ({path})", input=named.input)
        warnings.warn(
            f"{path}: torchvision's key names, taken by its file name for the known weights {named.name} "
            f"({named.record.name}), whose input is {describe_input(named.input)}; state it with --weights-input "
            "(load_weights(..., input=...)) to confirm or correct",
            RefstyleWarning, stacklevel=2,
        )
    elif guessed:
        warnings.warn(
            f"{path}: torchvision's key names, so its input is taken to be torchvision's "
            f"({describe_input(weights.meta['input'])}); files named so that hold Caffe weights (neural-style-pt's "
            "vgg19-d01eb7cb.pth and vgg16-00b39a1b.pth) take Caffe's: state it with --weights-input caffe "
            "(load_weights(..., input='caffe')), or --weights-input torchvision to confirm",
            RefstyleWarning, stacklevel=2,
        )
    if arch is not None:
        weights.meta["arch"] = arch
    weights.meta.setdefault("arch", infer_arch(weights))
    check_weights(weights, weights.meta["arch"])
    return take_caffe_input(weights) if fold else weights


def describe(path):
    """A human-readable summary of a weights file, for ``refstyle weights info``."""
    name = os.fspath(path)
    path = resolve_weights(name)
    reader = reader_for(path, _hint())
    source = source_of(path)
    lines = [f"file:   {path} ({os.path.getsize(path):,} bytes)" + (f", the known weights {name}" if path != name else "")]
    if source is not None:
        lines.append(f"what:   {source.description}")
    weights = read_weights(path)  # every format's values are read: NaN and Inf are refused here too
    guessed = weights.meta.pop("input_guessed", False)
    named = source_named_like(path) if guessed and source is None else None
    if source is not None:
        weights.meta["input"] = source.input
    elif named is not None and named.format == "pth":
        weights.meta["input"] = named.input
        weights.meta["input_note"] = (f"from the record {named.name}, by the file's name: state it with "
                                      "--weights-input to confirm")
    elif guessed:
        weights.meta["input_note"] = ("a guess from torchvision's key names: neural-style-pt's files hold "
                                      "Caffe weights under them; state it with --weights-input")
    lines.append(f"format: {format_title(weights.meta['format'])}")
    note = weights.meta.pop("input_note", None)
    lines.append(f"input:  {weights.meta.get('input', CAFFE_INPUT)}" + (f" ({note})" if note else ""))
    for key in RECORDED:
        if key in weights.meta:
            value = weights.meta[key]
            if key == "input_conversion":
                value = value["note"]
            elif key == "normalized":
                names = f" ({', '.join(value['image_names'])})" if value.get("image_names") else ""
                value = f"over {value['images']} images{names} at {value['size']} px, {value['pooling']} pooling"
            elif key == "quantised":
                steps = ", ".join(f"{layer} {step:.1%}" for layer, step in value["worst_relative_step"].items())
                central = value.get("central_step_over_rms", {})
                coarsest = max(central, key=central.get, default=None)
                value = (f"{value['levels']} levels per layer; the worst relative step (the widest gap between "
                         f"levels over the layer's largest |weight|): {steps}" + (
                             f"; among the levels holding 99% of the weights, the widest gap is at most "
                             f"{central[coarsest]:.1%} of the layer's RMS weight ({coarsest})" if coarsest else ""))
            lines.append(f"{key}: {value}")
    if reader.name == "caffemodel":  # every layer of the net, the classifier too, with its blobs' shapes
        rows = caffemodel_layers(path)
    else:
        rows = [(name, "Convolution", [np.shape(W), np.shape(b)]) for name, (W, b) in weights.items()]
    arch = infer_arch(weights)
    try:
        covered = check_weights(weights, arch)
        fit = f"fits {arch} ({covered[0]}..{covered[-1]})"
    except WeightsError as e:
        fit = f"does not fit {arch}: {e}"
    lines.append(f"arch:   {fit}")
    params = 0
    for name, kind, shapes in rows:
        n = sum(int(np.prod(s)) for s in shapes)
        params += n
        lines.append(f"  {name:<12} {kind:<14} {' '.join('x'.join(map(str, s)) for s in shapes):<24} {n:>12,}")
    lines.append(f"parameters: {params:,}")
    return "\n".join(lines)
