"""Validating another implementation: the gradient file and the comparison of two of them.

The gradient file is an ``.npz`` that any tool can write (numpy, or
``numpy.savez`` from a PyTorch/JAX script). Its keys:

==========================  =======================================================
``x``                       the image, ``1×3×H×W``, network layout: BGR, mean subtracted
``loss``                    L_total = alpha L_content + beta L_style (scalar)
``loss_content``            L_content, before alpha (scalar)
``loss_style``              L_style = Σ w_l E_l, before beta (scalar)
``grad``                    ∂L_total/∂x, like ``x``
``F:<layer>``               the layer's response (after ReLU), ``1×N_l×H_l×W_l``
``dF:<layer>``              ∂L_total/∂F of that layer's loss terms (α, β, w_l included;
                            before the ReLU mask), like ``F:<layer>``
``loss_content:<layer>``    that layer's content term, before alpha (optional)
``loss_style:<layer>``      that layer's E_l, before w_l and beta (optional)
``settings``                a JSON string of the settings that produced it (optional)
==========================  =======================================================
"""

import json
from typing import NamedTuple

import numpy as np

from ..backend import to_numpy
from ..errors import RefstyleError
from ..io import write_npz
from ..nn.arch import VGG19_LAYERS

REQUIRED_KEYS = ("x", "loss", "loss_content", "loss_style", "grad")


def gradient_arrays(x, evaluation, settings=None):
    """The arrays of a gradient file, from an :class:`~refstyle.paper.objective.Evaluation`."""
    e = evaluation
    arrays = {
        "x": to_numpy(x),
        "loss": np.float64(e.loss),
        "loss_content": np.float64(e.loss_content),
        "loss_style": np.float64(e.loss_style),
        "grad": to_numpy(e.grad),
    }
    for name in e.F:
        arrays[f"F:{name}"] = to_numpy(e.F[name])
        arrays[f"dF:{name}"] = to_numpy(e.dF[name])
    for (kind, name), value in e.layer_losses.items():
        arrays[f"loss_{kind}:{name}"] = np.float64(value)
    if settings is not None:
        arrays["settings"] = np.array(json.dumps(settings, sort_keys=True))
    return arrays


def write_gradient_file(path, arrays):
    """Write a gradient file atomically."""
    write_npz(path, arrays)


def read_gradient_file(path):
    """Read a gradient file into a dict of arrays (no pickle); a clear error if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {key: z[key] for key in z.files}
    except FileNotFoundError:
        raise RefstyleError(f"{path}: no such file") from None
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError: not an .npz we can read
        raise RefstyleError(f"{path}: not a readable .npz gradient file ({e})") from None
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise RefstyleError(f"{path}: a gradient file needs the keys {', '.join(missing)} (see refstyle grad --help)")
    return arrays


def _order(key):
    """Sort keys as a reader follows the network: scalars, then layer by layer, then x and grad."""
    base, _, layer = key.partition(":")
    depth = VGG19_LAYERS.index(layer) if layer in VGG19_LAYERS else len(VGG19_LAYERS)
    head = {"loss": 0, "loss_content": 1, "loss_style": 2}.get(key)
    if head is not None:
        return (0, head, key)
    if key in ("x", "grad"):
        return (2 if key == "grad" else -1, 0, key)
    return (1, depth, base)


class Row(NamedTuple):
    key: str
    status: str  # "ok", "DIFF", "SHAPE", "only in A", "only in B"
    shape: tuple
    max_rel: float  # max |a - b| / max(|a|, |b|)
    scale: float  # the least-squares factor s with a ≈ s b: far from 1 means a constant factor


class Comparison(NamedTuple):
    rows: list
    tol: float

    @property
    def failed(self):
        return [r for r in self.rows if r.status in ("DIFF", "SHAPE") or (r.status.startswith("only") and r.key in REQUIRED_KEYS)]

    def format(self, names=("A", "B")):
        lines = [f"{'array':<22} {'shape':<20} {'max rel. error':>14} {'scale A/B':>12}  verdict"]
        for r in self.rows:
            if isinstance(r.shape, str):
                shape = r.shape
            else:
                shape = "x".join(map(str, r.shape)) if r.shape else "scalar"
            err = "" if np.isnan(r.max_rel) else f"{r.max_rel:.3e}"
            scale = "" if np.isnan(r.scale) else f"{r.scale:.6g}"
            lines.append(f"{r.key:<22} {shape:<20} {err:>14} {scale:>12}  {r.status}")
        failed = self.failed
        if failed:
            first = failed[0]
            hint = ""
            if first.status == "DIFF" and abs(first.scale - 1) > self.tol and not np.isnan(first.scale):
                hint = f" (it is off by a factor of about {first.scale:.6g}: a scaling convention?)"
            lines.append(
                f"FAIL: {len(failed)} of {len(self.rows)} arrays differ beyond {self.tol:g}; "
                f"in network order the first is {first.key}{hint}"
            )
        else:
            lines.append(f"PASS: all {len(self.rows)} arrays agree within {self.tol:g}")
        return "\n".join(lines)


def compare_arrays(a, b, tol=1e-4):
    """Compare two dicts of arrays key by key (see :func:`compare_files`)."""
    rows = []
    for key in sorted(set(a) | set(b), key=_order):
        if key in ("settings", "image"):  # text, not numbers
            continue
        if key not in b or key not in a:
            shape = np.shape(a[key] if key in a else b[key])
            rows.append(Row(key, "only in A" if key in a else "only in B", shape, np.nan, np.nan))
            continue
        x, y = np.asarray(a[key], np.float64), np.asarray(b[key], np.float64)
        if x.shape != y.shape:
            rows.append(Row(key, "SHAPE", f"{x.shape} vs {y.shape}", np.nan, np.nan))
            continue
        scale = max(np.max(np.abs(x)), np.max(np.abs(y))) if x.size else 0.0
        err = float(np.max(np.abs(x - y)) / scale) if scale > 0 else 0.0
        yy = float(np.sum(y * y))
        s = float(np.sum(x * y) / yy) if yy > 0 else np.nan
        finite = np.all(np.isfinite(x)) and np.all(np.isfinite(y))
        status = "ok" if finite and err <= tol else "DIFF"
        rows.append(Row(key, status, x.shape, err if finite else np.inf, s))
    return Comparison(rows, tol)


def compare_files(path_a, path_b, tol=1e-4):
    """Compare two gradient files array by array: relative error and best scale factor per key."""
    return compare_arrays(read_gradient_file(path_a), read_gradient_file(path_b), tol)
