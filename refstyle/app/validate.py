"""Validating another implementation: the gradient file and the comparison of two of them.

The gradient file is an ``.npz`` that any tool can write (numpy, or
``numpy.savez`` from a PyTorch/JAX script). Its keys:

==========================  =======================================================
``x``                       the image, ``1×3×H×W``, in the image space ``image`` names
                            (without it Caffe's: BGR, 0..255, mean subtracted)
``loss``                    L_total = alpha L_content + beta L_style (scalar)
``loss_content``            L_content, before alpha (scalar; NaN: not given separately)
``loss_style``              L_style = Σ w_l E_l, before beta (scalar; NaN: not given separately)
``grad``                    ∂L_total/∂x, like ``x`` (in the same image space)
``F:<layer>``               the layer's response (after ReLU), ``1×N_l×H_l×W_l``
``dF:<layer>``              ∂L_total/∂F of that layer's loss terms (α, β, w_l included;
                            before the ReLU mask), like ``F:<layer>``
``loss_content:<layer>``    that layer's content term, before alpha (optional)
``loss_style:<layer>``      that layer's E_l, before w_l and beta (optional)
``image``                   a JSON string of the image space of ``x`` and ``grad``, e.g.
                            ``{"channels": "RGB", "range": [0, 1], "mean": [...], "std": [...]}``
                            (optional; default Caffe's, :data:`~refstyle.nn.inputs.CAFFE_INPUT`)
``settings``                a JSON string of the settings that produced it (optional)
==========================  =======================================================

When two files are in different image spaces, B's ``x`` and ``grad`` are converted into
A's before the comparison (:func:`to_image_space`). After the table the comparison says
why the files differ where the pattern of the difference tells (:func:`diagnose`).
"""

import json
import os
from typing import NamedTuple

import numpy as np

from .. import filekind
from ..backend import to_numpy
from ..errors import LayerError, RefstyleError
from ..io import pyplot, write_npz, write_png
from ..nn.arch import VGG19_LAYERS, block_of
from ..nn.inputs import CAFFE_INPUT, InputStage, describe_input, is_input_convention, pixel_text
from ..paper.conventions import CONVENTIONS, get_convention
from ..paper.diagnose import relative_error  # compare's measure, the fit's too

REQUIRED_KEYS = ("x", "loss", "loss_content", "loss_style", "grad")
SEPARABLE_KEYS = ("loss_content", "loss_style")  # NaN: the writer gave only the total loss
TEXT_KEYS = ("settings", "image")  # JSON strings, not numbers


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


def image_space(arrays, source="the file"):
    """The image space of a gradient file's ``x`` and ``grad``: its key ``image``, else Caffe's.

    ``source`` names the file in the error raised for a malformed value.
    """
    if "image" not in arrays:
        return dict(CAFFE_INPUT)
    try:
        space = json.loads(str(np.asarray(arrays["image"])))
    except ValueError:
        space = None
    if not is_input_convention(space):
        raise RefstyleError(
            f"{source}: the key image must be a JSON image space like "
            '{"channels": "RGB", "range": [0, 1], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}'
        )
    return space


def check_file_kind(path, kinds, expected):
    """The :mod:`refstyle.filekind` key of the file at ``path``, one of ``kinds``; else one clear error.

    The error names what the file is, from its first bytes, and what was ``expected``
    there (a missing file, a folder and an unreadable file are named too).
    """
    try:
        kind = filekind.kind_of(path)
    except FileNotFoundError:
        raise RefstyleError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RefstyleError(f"{path}: is a folder, but {expected}") from None
    except OSError as e:
        raise RefstyleError(f"{path}: cannot be read ({e.strerror or e})") from None
    if kind not in kinds:
        raise RefstyleError(f"{path}: {filekind.NAMES[kind]}, but {expected}")
    return kind


GRADIENT_FILE = "a gradient file is a NumPy .npz archive (numpy.savez of x, loss, ..., grad: refstyle grad --help)"


def read_gradient_file(path, required=REQUIRED_KEYS):
    """Read a gradient file into a dict of arrays (no pickle); a clear error if it is not one or lacks a ``required`` key."""
    check_file_kind(path, ("npz", "zip"), GRADIENT_FILE)  # a zip of other members: its keys are missing
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {key: z[key] for key in z.files}
    except FileNotFoundError:
        raise RefstyleError(f"{path}: no such file") from None
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError: not an .npz we can read
        raise RefstyleError(f"{path}: not a readable .npz gradient file ({e})") from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise RefstyleError(f"{path}: a gradient file needs the keys {', '.join(missing)} (see refstyle grad --help)")
    for key, v in arrays.items():
        if key not in TEXT_KEYS and not np.issubdtype(v.dtype, np.floating):
            raise RefstyleError(
                f"{path}: {key} holds {v.dtype} values; a gradient file holds floating-point arrays (an integer "
                "image or loss would hide the rounding being compared): save them with .astype(numpy.float64)"
            )
    image_space(arrays, path)  # a malformed image space is an error at once, naming the file
    return arrays


DIAGNOSE_KEYS = ("x", "loss", "grad")  # what diagnose needs of a gradient file; F:, dF: help


def check_gradient_arrays(path, arrays):
    """A gradient file diagnose can read: x 1×3×H×W, grad like it, a scalar loss, responses 1×N×h×w, all finite."""
    x, loss, grad = (np.asarray(arrays[k]) for k in DIAGNOSE_KEYS)
    if x.ndim != 4 or x.shape[:2] != (1, 3) or 0 in x.shape:
        raise RefstyleError(f"{path}: x must be the 1×3×H×W image, not of shape {x.shape}")
    if grad.shape != x.shape:
        raise RefstyleError(f"{path}: grad has shape {grad.shape}, x {x.shape}: grad is ∂loss/∂x, shaped like x")
    if loss.ndim != 0:
        raise RefstyleError(f"{path}: loss must be one number, not an array of shape {loss.shape}")
    for key, v in arrays.items():
        if key in TEXT_KEYS or key in ("loss_content", "loss_style") and np.ndim(v) == 0:
            continue
        if key.startswith(("F:", "dF:")) and (np.ndim(v) != 4 or np.shape(v)[0] != 1):
            raise RefstyleError(f"{path}: {key} must be a 1×N×H×W response, not of shape {np.shape(v)}")
        if not np.all(np.isfinite(v)):
            raise RefstyleError(f"{path}: {key} holds NaN or infinite values: nothing can be fitted to them")
    for key in arrays:
        if key.startswith("dF:") and "F:" + key[3:] in arrays and np.shape(arrays[key]) != np.shape(arrays["F:" + key[3:]]):
            raise RefstyleError(f"{path}: {key} and F:{key[3:]} differ in shape: dF is ∂loss/∂F, shaped like F")
    if float(loss) == 0 and not np.any(grad):
        raise RefstyleError(f"{path}: the loss and the gradient are 0: nothing to fit")


def to_image_space(arrays, src, dst):
    r"""A copy of a gradient file's arrays with ``x`` and ``grad`` moved from space ``src`` to ``dst``.

    The image maps forward, ``InputStage(src, dst).forward(x)``. The gradient goes back
    through the map the other way: with :math:`x_{src} = M x_{dst} + c`
    (``InputStage(dst, src)``), a loss has :math:`\partial L/\partial x_{dst} = M^T\,
    \partial L/\partial x_{src}`, which is ``InputStage(dst, src).backward(grad)``.
    Responses and losses do not depend on the space the image is kept in.
    """
    out = dict(arrays)
    for key, stage in (("x", InputStage(src, dst).forward), ("grad", InputStage(dst, src).backward)):
        v = np.asarray(arrays[key], dtype=np.float64)
        if v.ndim == 4 and v.shape[1] == 3:
            out[key] = stage(v.copy())
    return out


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
    status: str  # "ok", "DIFF", "SHAPE", "only in A", "only in B", "not given", or non-finite ("NaN in B", ...)
    shape: tuple
    max_rel: float  # max |a - b| / max(|a|, |b|)
    scale: float  # the least-squares factor s with a ≈ s b: far from 1 means a constant factor


class Comparison(NamedTuple):
    rows: list
    tol: float
    reasons: tuple = ()  # why the files differ, most specific first (:func:`diagnose`)
    converted: tuple = None  # (B's image space, A's) where B's x and grad were converted

    @property
    def failed(self):
        return [r for r in self.rows if r.status in ("DIFF", "SHAPE") or r.status.startswith(NON_FINITE)
                or (r.status.startswith("only") and r.key in REQUIRED_KEYS)]

    def format(self, names=("A", "B")):
        lines = []
        if self.converted is not None:
            src, dst = self.converted
            lines.append(f"{names[1]}'s x and grad converted from {describe_input(src)} to {describe_input(dst)}")
        lines.append(f"{'array':<22} {'shape':<20} {'max rel. error':>14} {'scale A/B':>12}  verdict")
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
            elif first.status.startswith(NON_FINITE):
                hint = f" ({first.status}: no error can be measured; the computation overflowed or divided by zero)"
            lines.append(
                f"FAIL: {len(failed)} of {len(self.rows)} arrays differ beyond {self.tol:g}; "
                f"in network order the first is {first.key}{hint}"
            )
        else:
            lines.append(f"PASS: all {len(self.rows)} arrays agree within {self.tol:g}")
        lines += [f"why: {reason}" for reason in self.reasons]
        return "\n".join(lines)


NON_FINITE = ("NaN", "Inf")  # how a row whose values are not all finite begins its status


def non_finite(a, b, names=("A", "B")):
    """None where both arrays are finite, else what they hold and where: ``"NaN in B"``, ``"NaN in A, Inf in B"``."""
    found = []
    for name, v in zip(names, (a, b)):
        kinds = [kind for kind, test in zip(NON_FINITE, (np.isnan, np.isinf)) if np.any(test(v))]
        if kinds:
            found.append(f"{' and '.join(kinds)} in {name}")
    return ", ".join(found) if found else None


def compare_arrays(a, b, tol=1e-4):
    """Compare two dicts of arrays key by key (see :func:`compare_files`).

    Where their image spaces (key ``image``) differ, B's ``x`` and ``grad`` are first
    converted into A's (:func:`to_image_space`).
    """
    space_a, space_b = image_space(a, "A"), image_space(b, "B")
    converted, b_as_stored = None, b
    if not InputStage(space_b, space_a).identity:
        b = to_image_space(b, space_b, space_a)
        converted = (space_b, space_a)
    rows = []
    for key in sorted(set(a) | set(b), key=_order):
        if key in TEXT_KEYS:
            continue
        if key not in b or key not in a:
            shape = np.shape(a[key] if key in a else b[key])
            rows.append(Row(key, "only in A" if key in a else "only in B", shape, np.nan, np.nan))
            continue
        x, y = np.asarray(a[key], np.float64), np.asarray(b[key], np.float64)
        if x.shape != y.shape:
            rows.append(Row(key, "SHAPE", f"{x.shape} vs {y.shape}", np.nan, np.nan))
            continue
        if key in SEPARABLE_KEYS and x.ndim == 0 and (np.isnan(x) or np.isnan(y)):
            rows.append(Row(key, "not given", x.shape, np.nan, np.nan))
            continue
        bad = non_finite(x, y)
        if bad is not None:
            rows.append(Row(key, bad, x.shape, np.nan, np.nan))
            continue
        err = relative_error(x, y)
        yy = float(np.sum(y * y))
        s = float(np.sum(x * y) / yy) if yy > 0 else np.nan
        rows.append(Row(key, "ok" if err <= tol else "DIFF", x.shape, err, s))
    reasons = diagnose(rows, a, b, tol)
    scale = image_scale(a, b_as_stored, space_a, space_b, tol) if converted else None
    if scale is not None:  # the same numbers in two scales: not two image spaces of one image
        reasons = [scale] + [r for r in reasons if not r.startswith("x differs by a per-channel affine map")]
    return Comparison(rows, tol, tuple(reasons), converted)


def compare_files(path_a, path_b, tol=1e-4, plot=None):
    """Compare two gradient files array by array: relative error and best scale factor per key.

    ``plot``: a PNG path to draw the errors to (:func:`plot_comparison`), written atomically.
    """
    result = compare_arrays(read_gradient_file(path_a), read_gradient_file(path_b), tol)
    if plot is not None:
        plot_comparison(result, plot, names=(os.fspath(path_a), os.fspath(path_b)))
    return result


# ---------------------------------------------------------------------------
# Why two files differ: each pattern of a difference and what causes it
# ---------------------------------------------------------------------------


def _rows(rows, status):
    return [r for r in rows if r.status == status]


def _f64(arrays, key):
    return np.asarray(arrays[key], dtype=np.float64)


def _row(rows, key):
    """The row of ``key``, or None."""
    return next((r for r in rows if r.key == key), None)


def _first_response(rows):
    """The first ``F:`` row in network order (rows come sorted), or None."""
    return next((r for r in rows if r.key.startswith("F:")), None)


def pooling_rounding(rows, a, b):
    """Shapes off by at most one row and one column on pooled layers: ceil against floor pooling.

    Caffe rounds a pooling's output size up, PyTorch by default down, so an odd size loses
    its last row or column after each pooling in one of the two.
    """
    for r in _rows(rows, "SHAPE"):
        _, _, layer = r.key.partition(":")
        try:
            pooled = block_of(layer) > 1
        except LayerError:
            continue
        sa, sb = np.shape(a[r.key]), np.shape(b[r.key])
        if (pooled and len(sa) == len(sb) >= 2 and sa[:-2] == sb[:-2]
                and all(abs(p - q) <= 1 for p, q in zip(sa[-2:], sb[-2:]))):
            return (f"shapes differ by one row/column from {layer} on: "
                    "ceil against floor pooling (refstyle --rounding floor|ceil)")
    return None


def channel_swap(rows, a, b, tol):
    """``x`` or ``grad`` that differ but agree once B's channel axis is reversed: RGB against BGR.

    Only the image and its gradient have colour channels; a response's channels are
    features, and reversing them means nothing.
    """
    swapped = []
    for key in ("x", "grad"):
        row = _row(rows, key)
        if row is None or row.status != "DIFF":
            continue
        x, y = _f64(a, key), _f64(b, key)
        if x.ndim == 4 and x.shape[1] == 3 and np.all(np.isfinite(y)) and relative_error(x, y[:, ::-1]) <= tol:
            swapped.append(key)
    if not swapped:
        return None
    verb = "agrees" if len(swapped) == 1 else "agree"
    return f"{' and '.join(swapped)} {verb} with B's channels reversed: one file is RGB, the other BGR"


def fit_channel_affine(x, y):
    r"""The least-squares :math:`x_k \approx a_k\, y_k + c_k` per channel (axis 1): ``(a, c, residual)``.

    ``residual``: :func:`relative_error` of the fit, the table's measure.
    """
    scales, offsets, fit = [], [], np.empty_like(x)
    for k in range(x.shape[1]):
        yk, xk = y[:, k].ravel(), x[:, k].ravel()
        design = np.stack([yk, np.ones_like(yk)], axis=1)
        (s, c), *_ = np.linalg.lstsq(design, xk, rcond=None)
        scales.append(float(s))
        offsets.append(float(c))
        fit[:, k] = s * y[:, k] + c
    return scales, offsets, relative_error(x, fit)


def channel_affine(rows, a, b, tol):
    """``x`` that differs by a per-channel affine map (B's channels as they are, or reversed): two image spaces."""
    row = _row(rows, "x")
    if row is None or row.status != "DIFF":
        return None
    x, y = _f64(a, "x"), _f64(b, "x")
    if not (x.ndim == 4 and x.shape[1] == 3 and np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return None
    for reverse in (False, True):
        scales, offsets, residual = fit_channel_affine(x, y[:, ::-1] if reverse else y)
        pure_swap = reverse and np.allclose(scales, 1, atol=tol) and np.allclose(offsets, 0, atol=tol * np.max(np.abs(x)))
        if residual <= tol and not pure_swap:  # a pure swap is channel_swap's
            of = " of B's channels reversed" if reverse else ""
            return (f"x differs by a per-channel affine map{of} (scale {pixel_text(scales)}, offset {pixel_text(offsets)}): "
                    "the files are in different image spaces; record the space in the key `image`")
    return None


def constant_factor(rows, a, b, tol):
    r"""Arrays that differ but agree within ``tol`` after their least-squares factor ``s``: a loss scaling.

    Gradients (``grad``, ``dF:``) and losses only: a response off by a factor is not a
    scaling of the loss. A scalar always fits some factor, so a loss is named only with an
    array of the same factor, or when only scalars differ. Arrays of one factor are named
    together, once.
    """
    groups = []  # [factor, keys, has an array]
    for r in _rows(rows, "DIFF"):
        if r.key == "x" or r.key.startswith("F:") or np.isnan(r.scale) or r.scale == 0:
            continue
        x, y = _f64(a, r.key), _f64(b, r.key)
        if relative_error(x, r.scale * y) > tol:
            continue
        group = next((g for g in groups if abs(r.scale - g[0]) <= max(10 * tol, 1e-9) * abs(g[0])), None)
        if group is None:
            group = [r.scale, [], False]
            groups.append(group)
        group[1].append(r.key)
        group[2] |= x.ndim > 0
    only_scalars = all(np.ndim(a[r.key]) == 0 for r in _rows(rows, "DIFF"))
    return [
        f"off by a constant factor {s:.6g} on {', '.join(keys)}: a loss scaling "
        "(alpha, beta, a layer weight, a normalisation such as 1/(4 N_l² M_l²))"
        for s, keys, arrays in groups if arrays or only_scalars
    ]


def border_ring(rows, a, b, tol):
    """Spatial arrays that agree once a ring of width 1 (or 2) is dropped: a difference at the border.

    Zero padding pads in the space the network's input is in; an input convention folded
    into ``conv1_1`` pads with zeros of the other space, which changes only the border.
    """
    found = []
    for r in _rows(rows, "DIFF"):
        x, y = _f64(a, r.key), _f64(b, r.key)
        if x.ndim != 4 or min(x.shape[2:]) < 5 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            continue
        for w in (1, 2):
            if relative_error(x[..., w:-w, w:-w], y[..., w:-w, w:-w]) <= tol:
                found.append(f"{r.key} (width {w})")
                break
    if not found:
        return None
    return (f"differs only on the border ring of {', '.join(found)}: zero padding in a different image space, "
            "or the input convention folded into conv1_1 (refstyle grad --weights-input / the convention's image)")


def first_layer_responses(rows):
    """The first tapped layer's responses differ while ``x`` agrees: the weights' input convention."""
    first = _first_response(rows)
    x = _row(rows, "x")
    if first is None or x is None or first.status != "DIFF" or x.status != "ok":
        return None
    layer = first.key.partition(":")[2]
    return f"responses differ already at {layer}: the input convention (channel order, range, mean/std) of the weights"


def loss_definition(rows):
    """Layers whose responses agree but whose ``dF`` does not: the loss at that layer is defined differently."""
    status = {r.key: r.status for r in rows}
    layers = [r.key[3:] for r in rows if r.key.startswith("dF:") and r.status == "DIFF" and status.get("F:" + r.key[3:]) == "ok"]
    if not layers:
        return None
    if len(layers) == 1:
        (layer,) = layers
        return (f"F:{layer} agrees but dF:{layer} does not: "
                f"the loss definition at {layer} (its normalisation, layer weight, or Gram form)")
    return (f"F agrees but dF does not at {', '.join(layers)}: "
            "the loss definition at those layers (its normalisation, layer weight, or Gram form)")


def _scale_of(space):
    """``(R, the rest)`` of a space without a std: the top of its range, and its channels and mean numbers."""
    if "std" in space:
        return None
    return float(space["range"][1]), (space["channels"].upper(), tuple(round(float(m), 9) for m in space["mean"]))


def image_scale(a, b, space_a, space_b, tol):
    """``x`` holds the same numbers in both files, in spaces that differ only in the pixels' scale (×255 against ×256).

    Then the point is the same, but each implementation made its targets :math:`P^l`, :math:`A^l`
    from the photograph and artworks at its own scale, so every layer's targets differ by
    that factor: the record's ``image`` is the field at fault. Names the built-in record
    that is A's convention with B's image space, where there is one.
    """
    sa, sb = _scale_of(space_a), _scale_of(space_b)
    x, y = np.asarray(a.get("x"), np.float64), np.asarray(b.get("x"), np.float64)
    if sa is None or sb is None or sa[0] == sb[0] or x.shape != y.shape or relative_error(x, y) > tol:
        return None
    if sa[1] != sb[1]:  # not the same space but for the scale
        return None
    text = (f"x holds the same numbers in both files, but A's image space is {describe_input(space_a)} and B's "
            f"{describe_input(space_b)}: the same x, with targets P and A made from images scaled "
            f"{sb[0]:g}/{sa[0]:g} apart at every layer; the convention's field image sets the scale")
    try:
        convention = get_convention(json.loads(str(a["settings"])).get("convention", "paper"))
    except (KeyError, ValueError, RefstyleError):
        return text
    for other in CONVENTIONS.values():
        same = other._replace(name=convention.name, description=convention.description, image=convention.image,
                              source=convention.source, differences=convention.differences, path=convention.path)
        if same == convention and other.name != convention.name and InputStage(other.image, space_b).identity:
            return text + f": B is reproduced by --convention {other.name}"
    return text + f": a record as {convention.name} with \"image\": {json.dumps(space_b)} reproduces B"


def diagnose(rows, a, b, tol):
    """Why two gradient files differ, from the pattern of the difference: reasons, most specific first.

    ``rows``: :func:`compare_arrays`'s, in network order; ``a``, ``b``: the compared arrays
    (B's already in A's image space).
    """
    found = [
        pooling_rounding(rows, a, b),
        channel_swap(rows, a, b, tol),
        channel_affine(rows, a, b, tol),
        *constant_factor(rows, a, b, tol),
        border_ring(rows, a, b, tol),
        loss_definition(rows),
        first_layer_responses(rows),
    ]
    return [reason for reason in found if reason is not None]


# ---------------------------------------------------------------------------
# The plot
# ---------------------------------------------------------------------------

ZERO_FLOOR = 1e-17  # where an error of exactly 0 is drawn on the log scale
NO_ERROR = 2.0  # where an array with no error to show (SHAPE, missing, not finite) is drawn: max|a-b|/max(|a|,|b|) ≤ 2


def plot_comparison(comparison, path, names=("A", "B")):
    """Draw each array's relative error in network order to a PNG, atomically; returns ``(labels, values)``.

    ``values`` are the plotted heights: the row's error, ``ZERO_FLOOR`` for an exact 0 and
    ``NO_ERROR`` for a failing array without one (a shape that differs, a missing array,
    a non-finite value). Arrays marked "not given" are left out.
    """
    plt = pyplot()
    failed = {r.key for r in comparison.failed}
    shown = [r for r in comparison.rows if r.status != "not given" and (np.isfinite(r.max_rel) or r.key in failed)]
    labels = [r.key for r in shown]
    values = [NO_ERROR if not np.isfinite(r.max_rel) else max(r.max_rel, ZERO_FLOOR) for r in shown]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.32 * len(labels) + 1.5), 4.5))
    pos = np.arange(len(labels))
    ax.plot(pos, values, color="0.75", linewidth=0.8, zorder=1)
    groups = [
        ("agrees", "tab:blue", "o", lambda r: r.key not in failed and r.max_rel > 0),
        ("exactly equal (drawn at 1e-17)", "tab:green", "v", lambda r: r.key not in failed and r.max_rel == 0),
        ("differs", "tab:red", "s", lambda r: r.key in failed and np.isfinite(r.max_rel)),
        ("no error to show (shape, missing, not finite)", "tab:red", "X", lambda r: r.key in failed and not np.isfinite(r.max_rel)),
    ]
    for label, color, marker, test in groups:
        idx = [i for i, r in enumerate(shown) if test(r)]
        if idx:
            ax.scatter(pos[idx], [values[i] for i in idx], color=color, marker=marker, label=label, zorder=2)
    ax.axhline(comparison.tol, color="tab:orange", linestyle="--", linewidth=1, label=f"tol {comparison.tol:g}")
    ax.set_yscale("log")
    ax.set_ylim(ZERO_FLOOR / 3, NO_ERROR * 3)
    ax.set_xticks(pos)
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("max |a − b| / max(|a|, |b|)")
    ax.set_title(f"{os.path.basename(names[0])} vs {os.path.basename(names[1])}", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.grid(True, axis="y", which="major", alpha=0.3)
    fig.tight_layout()
    write_png(fig, path)
    return labels, values
