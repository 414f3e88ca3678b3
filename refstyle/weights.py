"""VGG weights in memory, the project's ``.npz`` format, and the architecture check.

In memory, weights are a :class:`Weights` mapping ``{"conv1_1": (W, b), ...}`` in the
architecture's order, ``W`` float32 ``(out, in, 3, 3)`` and ``b`` ``(out,)``, plus a
``meta`` dict saying what they are (architecture, source file, input convention).

The ``.npz`` format stores each layer as the arrays ``<layer>/W`` and ``<layer>/b``
and one JSON string ``meta`` recording the format version, the architecture, the
layer names and shapes, and the input convention. It is loaded without pickle.
"""

import json
import os
import zipfile
from collections.abc import Mapping

import numpy as np

from .errors import WeightsError
from .network import ARCHS, check_arch, conv_layers

NPZ_FORMAT = "refstyle-weights"
# What else a converted .npz records about its weights when known: the format they were read
# from, the convolutions left out, how another input convention was folded into conv1_1, the
# normalisation.
RECORDED = ("original_format", "naming", "checkpoint", "skipped", "input_conversion", "normalized")
NPZ_VERSION = 1

# What the network expects of its input; recorded with converted weights (SPEC §1).
CAFFE_INPUT = {"channels": "BGR", "range": [0, 255], "mean": [103.939, 116.779, 123.68]}


class Weights(Mapping):
    """Ordered ``{layer: (W, b)}`` with a ``meta`` dict (arch, source, input convention)."""

    def __init__(self, layers, meta=None):
        self._layers = dict(layers)
        self.meta = dict(meta or {})

    def __getitem__(self, name):
        return self._layers[name]

    def __iter__(self):
        return iter(self._layers)

    def __len__(self):
        return len(self._layers)

    def __repr__(self):
        names = list(self._layers)
        span = f"{names[0]}..{names[-1]}" if names else "no layers"
        return f"Weights({len(names)} conv layers {span}, arch={self.meta.get('arch')!r})"


def infer_arch(weights):
    """The architecture that weights record (``meta['arch']``) or imply by their names.

    A fourth conv in block 3, 4 or 5 means VGG19; without one, VGG16 when block 3 has
    its third conv, else (weights that end early) VGG19, the paper's network.
    """
    arch = getattr(weights, "meta", {}).get("arch")
    if arch in ARCHS:
        return arch
    names = set(weights)
    if names & {"conv3_4", "conv4_4", "conv5_4"}:
        return "vgg19"
    if "conv3_3" in names and "conv4_1" in names and "conv3_4" not in names:
        return "vgg16"
    return "vgg19"


def check_weights(weights, arch):
    """Check that ``weights`` fit ``arch``; return the conv layer names they cover.

    They fit when they hold, from ``conv1_1`` on, a prefix of the architecture's
    convolutions and nothing else, each ``W`` of shape ``(out, in, 3, 3)`` with ``in``
    equal to the previous layer's ``out`` (3 for ``conv1_1``) and ``b`` of shape
    ``(out,)``. Raises :class:`WeightsError` naming the first mismatch.
    """
    expected = conv_layers(arch)
    names = list(weights)
    if not names:
        raise WeightsError("the weights hold no convolution layers")
    for name in names:
        if name not in expected:
            others = [a for a in ARCHS if name in ARCHS[a]]
            hint = f": these look like {others[0]} weights, use --arch {others[0]}" if others else ""
            raise WeightsError(f"the weights have a layer {name!r} that {arch} lacks{hint}")
    covered = expected[: len(names)]
    for i, name in enumerate(covered):
        if name not in weights:
            if i == 0:
                raise WeightsError(
                    f"the weights lack {name!r}, the first layer of {arch}: they start at {names[0]!r}; "
                    "give weights of the whole network from conv1_1 on"
                )
            hint = ""
            if name.endswith("_4") and arch == "vgg19":
                hint = ": these look like vgg16 weights, use --arch vgg16"
            raise WeightsError(f"the weights lack {name!r}, which {arch} needs after {covered[i - 1]!r}{hint}")
    prev_out = 3
    for name in covered:
        W, b = weights[name]
        W_shape, b_shape = tuple(np.shape(W)), tuple(np.shape(b))
        if len(W_shape) != 4 or W_shape[1:] != (prev_out, 3, 3):
            raise WeightsError(
                f"{name}: filters of shape {W_shape} do not fit {arch}: expected (out, {prev_out}, 3, 3)"
            )
        if b_shape != (W_shape[0],):
            raise WeightsError(f"{name}: bias of shape {b_shape} does not fit {W_shape[0]} filters")
        prev_out = W_shape[0]
    return covered


def generate_weights(arch="vgg19", widths=(4, 6, 8, 8, 8), seed=0, dtype="float64", depth=None):
    """Random weights for a VGG-shaped network with few filters (tests, gradient checks).

    ``widths`` are the filter counts of blocks 1..5 (``VGG_WIDTHS`` for the real
    sizes); ``depth`` (a conv layer name) ends the network early. Filters are drawn
    with He scaling, so responses keep their size through the stack; biases are
    small and random, so some units are off and the ReLU masks matter.
    """
    rng = np.random.default_rng(seed)
    names = conv_layers(arch)
    if depth is not None:
        names = names[: names.index(depth) + 1]
    layers, prev = {}, 3
    for name in names:
        out = widths[int(name[4]) - 1]
        W = rng.standard_normal((out, prev, 3, 3)) * np.sqrt(2.0 / (9 * prev))
        b = rng.standard_normal(out) * 0.1
        layers[name] = (W.astype(dtype), b.astype(dtype))
        prev = out
    return Weights(layers, {"arch": arch, "source": f"generated (seed {seed}, widths {list(widths)})"})


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def _known_names():
    from .sources import load_sources

    try:
        return sorted(load_sources())
    except WeightsError:
        return []


def _sniff(path):
    try:
        with open(path, "rb") as f:
            return f.read(8)
    except FileNotFoundError:
        raise WeightsError(
            f"{path}: no such weights file (give a .caffemodel, .h5, .pth or .npz path, or a known name: "
            f"{', '.join(_known_names())}; `refstyle weights list` shows them)"
        ) from None
    except IsADirectoryError:
        raise WeightsError(f"{path}: is a folder, not a weights file") from None
    except OSError as e:
        raise WeightsError(f"{path}: cannot be read ({e.strerror})") from None


HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


# Every VGG convolution name; a file's other convolutions (HED's score-dsn, FCN's fc6) are not the network's.
VGG_CONV_NAMES = frozenset(name for arch in ARCHS for name in conv_layers(arch))


def _keep_vgg(layers, meta):
    """The VGG convolutions of ``layers``; the names of the others go to ``meta['skipped']``."""
    skipped = [name for name in layers if name not in VGG_CONV_NAMES]
    if skipped:
        meta["skipped"] = skipped
    return Weights({name: Wb for name, Wb in layers.items() if name in VGG_CONV_NAMES}, meta)


def _read(path, head):
    """Read any supported file into unchecked :class:`Weights`."""
    from .formats.pth import pth_format

    source = {"source": os.path.abspath(path), "input": CAFFE_INPUT}
    kind = pth_format(path)
    if kind is not None:
        from .formats.pth import read_pth

        layers, info = read_pth(path)
        meta = dict(source, format=kind, input=info["input"], naming=info["naming"])
        if "arch" in info:
            meta["arch"] = info["arch"]
        checkpoint = {k: info[k] for k in ("layout", "prefix", "wrapper", "batchnorm") if info.get(k)}
        if checkpoint:
            meta["checkpoint"] = checkpoint  # how the state dict was laid out (recorded in a converted .npz)
        return _keep_vgg(layers, meta)
    if head.startswith(b"PK"):
        return _load_npz(path)
    if head.startswith(HDF5_MAGIC):
        from .formats.keras import read_keras_h5

        return _keep_vgg(read_keras_h5(path), dict(source, format="keras-h5"))
    from .formats.caffemodel import read_caffemodel

    return _keep_vgg(read_caffemodel(path), dict(source, format="caffemodel"))


def known_source(name):
    """The record of the known weights ``name`` (``weights/NAME.json``), or None for a path."""
    from .sources import load_sources

    name = os.fspath(name)
    if os.path.exists(name):
        return None
    try:
        return load_sources().get(name)
    except WeightsError:
        return None  # no readable catalogue: a name is then just a missing file


def resolve_weights(name):
    """A weights path from a path or a known name: the fetched file in the cache (``refstyle weights list``)."""
    from .sources import resolve

    source = known_source(name)
    return os.fspath(name) if source is None else os.fspath(resolve(source.name))


def load_weights(path, arch=None):
    """Load VGG weights from a ``.caffemodel`` (Caffe V1 or V2), a Keras ``.h5`` or the project's ``.npz``.

    Returns :class:`Weights`, checked against ``arch`` (default: the architecture
    they record or imply, which is then stored in ``meta['arch']``).
    """
    if arch is not None:
        check_arch(arch)
    from .sources import source_of

    path = resolve_weights(path)
    weights = _read(path, _sniff(path))
    source = source_of(path)  # a known source's file, named or given by its path: its record says its input
    if source is not None:
        weights.meta.update(source=f"{source.name} ({path})", input=source.input)
    if arch is not None:
        weights.meta["arch"] = arch
    weights.meta.setdefault("arch", infer_arch(weights))
    check_weights(weights, weights.meta["arch"])
    return take_caffe_input(weights)


def take_caffe_input(weights):
    """Weights that take Caffe's input (:data:`CAFFE_INPUT`), whatever input convention they were trained on.

    Weights trained on another input (torchvision's RGB 0..1 normalised by mean and std,
    or another mean pixel) get that convention folded into ``conv1_1``
    (:func:`refstyle.formats.names.to_caffe_input`: exact away from the image border);
    ``meta['input_conversion']`` says what was done and ``meta['input']`` becomes Caffe's.
    """
    from .formats.names import is_caffe_input, to_caffe_input

    convention = weights.meta.get("input", CAFFE_INPUT)
    if is_caffe_input(convention):
        return weights

    layers, note = to_caffe_input(dict(weights), convention)
    meta = dict(weights.meta, input=CAFFE_INPUT, input_conversion={"from": convention, "note": note})
    return Weights(layers, meta)


def weights_meta(weights):
    """The JSON-able description of weights stored in the ``.npz``: arch, layers, shapes."""
    meta = {
        "format": NPZ_FORMAT,
        "version": NPZ_VERSION,
        "arch": weights.meta.get("arch", infer_arch(weights)),
        "layers": [
            {"name": name, "W": list(np.shape(W)), "b": list(np.shape(b))} for name, (W, b) in weights.items()
        ],
        "input": weights.meta.get("input", CAFFE_INPUT),
        "source": weights.meta.get("source", "unknown"),
        **{key: weights.meta[key] for key in RECORDED if key in weights.meta},
    }
    if "original_format" not in meta and weights.meta.get("format") not in (None, "npz"):
        meta["original_format"] = weights.meta["format"]
    return meta


def save_npz(weights, path):
    """Write weights in the project's ``.npz`` format, atomically (temporary file, rename)."""
    from .io import write_npz

    arrays = {"meta": np.array(json.dumps(weights_meta(weights)))}
    for name, (W, b) in weights.items():
        arrays[f"{name}/W"] = np.asarray(W, dtype=np.float32)
        arrays[f"{name}/b"] = np.asarray(b, dtype=np.float32)
    write_npz(path, arrays)


def _load_npz(path):
    try:
        with np.load(path, allow_pickle=False) as z:
            if "meta" not in z.files:
                raise WeightsError(f"{path}: an .npz without refstyle's 'meta' record: not a refstyle weights file")
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != NPZ_FORMAT:
                raise WeightsError(f"{path}: not a refstyle weights file (format {meta.get('format')!r})")
            layers = {}
            for entry in meta["layers"]:
                name = entry["name"]
                W, b = z[f"{name}/W"], z[f"{name}/b"]
                if list(W.shape) != entry["W"] or list(b.shape) != entry["b"]:
                    raise WeightsError(f"{path}: {name} has shapes {W.shape}, {b.shape}, its record says {entry}")
                layers[name] = (W, b)
    except WeightsError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise WeightsError(f"{path}: a damaged refstyle .npz weights file ({e}); convert the weights again") from None
    from .sources import is_input_convention

    if "input" in meta and not is_input_convention(meta["input"]):
        raise WeightsError(f"{path}: its record's input convention {meta['input']!r} is not of the form "
                           f"{CAFFE_INPUT} (channels, range, mean, optionally std); convert the weights again")
    info = {k: meta[k] for k in ("arch", "input", "source") + RECORDED if k in meta}
    return Weights(layers, dict(info, format="npz"))


def describe(path):
    """A human-readable summary of a weights file, for ``refstyle weights info``."""
    from .sources import source_of

    name = os.fspath(path)
    path = resolve_weights(name)
    head = _sniff(path)
    source = source_of(path)
    lines = [f"file:   {path} ({os.path.getsize(path):,} bytes)" + (f", the known weights {name}" if path != name else "")]
    from .formats.pth import pth_format

    if head.startswith(b"PK") or head.startswith(HDF5_MAGIC) or pth_format(path):
        weights = _read(path, head)
        if source is not None:
            weights.meta["input"] = source.input
        formats = {"npz": "refstyle .npz", "keras-h5": "Keras HDF5 (its 3×3 convolutions)",
                   "pth-zip": "PyTorch state dict (zip)", "pth-legacy": "PyTorch state dict (legacy, before 1.6)"}
        lines.append(f"format: {formats[weights.meta['format']]}")
        lines.append(f"input:  {weights.meta.get('input', CAFFE_INPUT)}")
        for key in RECORDED:
            if key in weights.meta:
                value = weights.meta[key]
                if key == "input_conversion":
                    value = value["note"]
                elif key == "normalized":
                    value = f"over {value['images']} images at {value['size']} px, {value['pooling']} pooling"
                lines.append(f"{key}: {value}")
        rows = [(name, "Convolution", [np.shape(W), np.shape(b)]) for name, (W, b) in weights.items()]
    else:
        from .formats.caffemodel import caffemodel_layers

        lines.append("format: Caffe caffemodel (protobuf NetParameter)")
        rows = caffemodel_layers(path)
        weights = Weights(
            {
                name: (np.broadcast_to(np.empty((), bool), shapes[0]), np.empty(int(np.prod(shapes[1])), bool))
                for name, kind, shapes in rows
                if kind.lower() == "convolution" and len(shapes) == 2 and name in VGG_CONV_NAMES
            }
        )
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
