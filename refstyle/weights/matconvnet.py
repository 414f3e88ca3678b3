r"""Reader for MatConvNet's ``.mat`` networks (``imagenet-vgg-verydeep-19.mat``, ``-16``), with SciPy's ``loadmat``.

The file many TensorFlow style-transfer implementations ask their users to download
(anishathalye/neural-style, cysmith/neural-style-tf, lengstrom/fast-style-transfer) is
MatConvNet's "SimpleNN" VGG: a MATLAB 5 ``.mat`` file whose variable ``layers`` is a
cell array of structs, one per layer, each with (at least) the fields ``name``
(``conv1_1``, ``relu1_1``, ``pool1``, ..., ``fc6``) and ``type`` (``conv``, ``relu``,
``pool``, ``softmax``). A ``conv`` layer keeps its filters and biases in the field
``weights``, a 1×2 cell ``{F, b}`` (MatConvNet before beta-8 used two fields,
``filters`` and ``biases``; both are read). Two layouts of the rest:

- older files: ``normalization`` at the top level, beside ``layers`` and ``classes``;
- newer files: ``meta.normalization`` (with ``meta.classes``, ``meta.inputs``).

``normalization.averageImage`` is what MatConvNet subtracts from an RGB image in
0..255: an ``H×W×3`` image (its mean over the image is taken, as every implementation
does) or a 3-vector, rounded to 4 decimals (the file's float32 holds 7 digits). It becomes the weights' stated input,
``{"channels": "RGB", "range": [0, 255], "mean": [r, g, b]}`` (:mod:`refstyle.nn.inputs`).

Filters ``F`` are ``H×W×in×out`` (height, width, input channels, filters) and
MatConvNet's ``vl_nnconv`` is a cross-correlation, as Caffe's is: MatConvNet's own
``utils/import-caffe.py`` (vlfeat/matconvnet at 000f296c) turns a Caffe blob
``(out, in, h, w)`` into ``(w, h, in, out)`` with NumPy's ``.transpose()`` and then
applies ``.transpose([1, 0, 2, 3])``, giving ``(h, w, in, out)``, and reverses the
input channels of the first convolution (Caffe's BGR to MatConvNet's RGB). So a
filter becomes ``W = F.transpose(3, 2, 0, 1)``, with no flip and no swap of height and
width. (anishathalye/neural-style's ``vgg.py``, at 6f86bf9b, swaps the first two axes,
``np.transpose(kernels, (1, 0, 2, 3))``, on the comment that MatConvNet stores
``[width, height, in_channels, out_channels]``: by the importer it is height first, so
that code runs every filter transposed in space. refstyle reads the file as MatConvNet
does.) Biases are ``1×out`` or ``out×1``.

The classifier (``fc6``, ``fc7``, ``fc8``, stored as ``conv`` layers of 7×7 and 1×1
filters) is skipped; ``loadmat`` reads ``layers`` as one variable, so its 480 MB are
read but not converted. MATLAB v7.3 files (HDF5 inside) are not read by ``loadmat``:
they are refused with the way to save them again.
"""

import os

import numpy as np

from .. import filekind
from ..errors import WeightsError
from ..nn.arch import VGG_CONV_NAMES


def _fields(struct):
    """The field names of a MATLAB struct as ``loadmat`` returns it (a 1×1 record array, or one record), or ()."""
    return (struct.dtype.names or ()) if isinstance(struct, (np.ndarray, np.void)) else ()


def _field(struct, name):
    """Field ``name`` of a 1×1 MATLAB struct, or None when it has no such field."""
    if name not in _fields(struct):
        return None
    record = struct.reshape(-1)[0] if isinstance(struct, np.ndarray) else struct
    return record[name]


def _text(value):
    """A MATLAB char array as ``loadmat`` gives it (``array(['conv1_1'])``) as a str; '' when empty."""
    flat = np.asarray(value).reshape(-1)
    return str(flat[0]) if flat.size else ""


def _cells(value):
    """The elements of a MATLAB cell array or struct array, in MATLAB's column-major order."""
    value = np.asarray(value)
    return list(value.reshape(-1, order="F") if value.dtype.names else value.astype(object).reshape(-1, order="F"))


def _mean(normalization, path):
    """The RGB mean pixel of ``normalization.averageImage``: the image averaged, or the 3-vector."""
    average = _field(normalization, "averageImage")
    if average is None:
        raise WeightsError(f"{path}: its normalization has no averageImage, so the input the weights take "
                           "is unknown; state it with --weights-input")
    average = np.asarray(average, dtype=np.float64)
    if average.ndim == 3 and average.shape[2] == 3:
        mean = average.mean(axis=(0, 1))
    elif average.size == 3:
        mean = average.reshape(-1)
    else:
        raise WeightsError(f"{path}: normalization.averageImage has shape {average.shape}, neither an H×W×3 "
                           "image nor 3 values; state the input with --weights-input")
    if not np.all(np.isfinite(mean)):
        raise WeightsError(f"{path}: normalization.averageImage holds NaN or Inf values")
    return [round(float(v), 4) for v in mean]  # float32 values (7 digits): 123.68, not 123.68000030517578


def _normalization(data, path):
    """``normalization`` (older files) or ``meta.normalization`` (newer ones)."""
    if "normalization" in data:
        return data["normalization"]
    meta = data.get("meta")
    normalization = _field(meta, "normalization") if meta is not None else None
    if normalization is None:
        raise WeightsError(f"{path}: a MatConvNet network without normalization or meta.normalization, so the "
                           "input the weights take is unknown; state it with --weights-input")
    return normalization


def _filters(layer, name, path):
    """``(F, b)`` of one conv layer, from ``weights = {F, b}`` or the older ``filters``/``biases``."""
    weights = _field(layer, "weights")
    if weights is not None:
        cells = _cells(weights)
        if len(cells) not in (1, 2):
            raise WeightsError(f"{path}: layer {name} has {len(cells)} weights, expected {{filters, biases}}")
        F = cells[0]
        b = cells[1] if len(cells) == 2 else None
    elif "filters" in _fields(layer):
        F, b = _field(layer, "filters"), _field(layer, "biases")
    else:
        raise WeightsError(f"{path}: conv layer {name} has neither weights nor filters (fields: "
                           f"{', '.join(_fields(layer))})")
    F = np.asarray(F)
    if F.ndim != 4 or not np.issubdtype(F.dtype, np.floating):
        raise WeightsError(f"{path}: layer {name} has filters of shape {F.shape} ({F.dtype}), expected "
                           "height × width × in × out floats")
    out = F.shape[3]
    b = np.zeros(out, F.dtype) if b is None or np.asarray(b).size == 0 else np.asarray(b).reshape(-1)
    if b.size != out:
        raise WeightsError(f"{path}: layer {name} has {b.size} biases for {out} filters")
    return F, b


def read_matconvnet(path):
    r"""Read the VGG convolutions of a MatConvNet SimpleNN ``.mat``: ``({caffe name: (W, b)}, info)``.

    ``W`` is float32 ``(out, in, kh, kw)`` and ``b`` float32 ``(out,)``, in file
    order. ``info`` has ``input`` (RGB 0..255 minus the file's ``averageImage``
    averaged), ``layout`` (``"normalization"`` or ``"meta.normalization"``) and
    ``skipped`` (the other conv layers: the classifier).
    """
    import scipy.io

    path = os.fspath(path)
    v73 = WeightsError(f"{path}: a MATLAB v7.3 .mat file, which SciPy cannot read: in MATLAB, load it and save "
                       "it again with save(..., '-v7')")
    if filekind.kind_of(path) == "mat73":
        raise v73
    try:
        data = scipy.io.loadmat(path)
    except NotImplementedError:  # scipy's answer to a v7.3 file its header did not show
        raise v73 from None
    except (ValueError, TypeError, OSError, EOFError, MemoryError) as e:
        raise WeightsError(f"{path}: a damaged or unreadable .mat file ({type(e).__name__}: {e}); "
                           "download the weights again") from None
    variables = sorted(k for k in data if not k.startswith("__"))
    if "layers" not in data:
        dag = " (a DagNN network, which refstyle does not read)" if {"params", "vars"} <= set(variables) else ""
        raise WeightsError(f"{path}: a .mat file without a layers variable, so not a MatConvNet SimpleNN "
                           f"network{dag} (its variables: {', '.join(variables) or 'none'})")
    layout = "normalization" if "normalization" in data else "meta.normalization"
    mean = _mean(_normalization(data, path), path)
    layers, skipped = {}, []
    for k, layer in enumerate(_cells(data["layers"])):
        if "name" not in _fields(layer) or "type" not in _fields(layer):
            raise WeightsError(f"{path}: layers{{{k + 1}}} is not a struct with a name and a type")
        name, kind = _text(_field(layer, "name")), _text(_field(layer, "type"))
        if kind != "conv":
            continue
        if name not in VGG_CONV_NAMES:
            skipped.append(name)
            continue
        F, b = _filters(layer, name, path)
        layers[name] = (np.ascontiguousarray(F.transpose(3, 2, 0, 1), dtype=np.float32), b.astype(np.float32))
    if not layers:
        raise WeightsError(f"{path}: a MatConvNet network without VGG convolutions (conv1_1 ... conv5_4)")
    info = {"input": {"channels": "RGB", "range": [0, 255], "mean": mean}, "layout": layout}
    if skipped:
        info["skipped"] = skipped
    return layers, info
