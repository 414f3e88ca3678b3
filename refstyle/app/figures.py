r"""The paper's figure grids: a grid is data, its cells run in parallel and are cached on disk.

A grid is a small JSON description (``refstyle/app/figure_specs/*.json`` for the paper's
figures, or a user's own file)::

    {"title": "...",
     "defaults": {"kind": "transfer", "content": "tubingen.jpg", "styles": ["composition_vii.jpg"]},
     "rows":    [{"label": "conv1_1", "style_layers": ["conv1_1"]}, ...],
     "columns": [{"label": "α/β = 1e-5", "ratio": 1e-5}, ...],
     "cells":   {"0,0": {"kind": "empty"}}}

Each cell's settings are ``defaults``, then its row's, then its column's, then its own
entry in ``cells`` (``"row,column"``, 0-based), later ones overriding earlier ones.
A cell's ``kind`` is ``transfer``, ``content`` (reconstruction from ``content_layers``),
``style`` (texture synthesis from ``style_layers``), ``image`` (an input shown as it is:
``image``, else the first of ``styles``, else ``content``) or ``empty``. The other keys
are :data:`CELL_KEYS`; the network, the size, the iterations and the seed are the same
for the whole grid and come from the command line.

A grid is checked whole before any cell runs, and a mistake is one line naming the cell,
its row's and column's labels, the field and where it was set (exit status 2, a
:class:`~refstyle.errors.UsageError`): :func:`parse_grid` checks each field of every cell
(:data:`FIELDS`: types, numbers finite and in range, choices) and what a cell's kind needs;
:func:`check_grid` checks the layer names against the network of the weights and the
layer weights against the style layers; :func:`find_images` that every image is there.

Every cell that runs an optimisation is a :class:`Job`, a plain picklable value that
:func:`run_cell` turns into an image in any process: one of this machine's
(``jobs > 1``) or a Dask worker's (``scheduler``). Its result is stored in a
:class:`CellCache` under :func:`cell_key`, a hash of everything that determines it
(the inputs' and weights' SHA-256, all settings), so an interrupted grid resumes where
it stopped and an unchanged cell is never computed twice.
"""

import contextlib
import hashlib
import json
import math
import os
import warnings
from typing import NamedTuple

import numpy as np

from ..version import __version__
from ..errors import ImageError, LayerError, RefstyleError, RefstyleWarning, UsageError
from ..io import file_sha256, pyplot, write_npz, write_png
from ..nn.arch import check_layers
from ..paper.build import build_network
from ..paper.conventions import CONVENTIONS, PAPER_ITERS, PAPER_SIZE, tap_of
from ..paper.images import load_image, resize_longer, to_uint8
from ..paper.memory import check_memory, run_estimate
from ..paper.optimize import OPTIMIZERS
from ..paper.settings import INITS, KINDS as RUN_KINDS, Settings, for_kind
from ..paper.synthesis import run_shapes, synthesize
from .signals import Lifeline, follow_parent

SPECS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figure_specs")
KINDS = RUN_KINDS + ("image", "empty")  # the kinds that run an optimisation, and the two that show an image or none
CELL_NUMBERS = ("loss", "iterations", "evaluations", "seconds")  # stored beside a cell's image (run_cell, CellCache)


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _name(v):
    return isinstance(v, str) and v != ""


def _names(v):
    return isinstance(v, list) and len(v) > 0 and all(_name(n) for n in v)


def _weights(v):
    return isinstance(v, list) and all(_number(w) and w >= 0 for w in v)


_AT_LEAST_0 = (lambda v: _number(v) and v >= 0, "a number ≥ 0")
_IMAGE = (_name, 'an image file name such as "tubingen.jpg"')
# The keys a grid file may set for a cell: what each must hold (a test and the words that say it),
# checked for every cell before any runs. Their meaning is synthesis.Settings'; ratio = α/β sets β = 1.
FIELDS = {
    "kind": (lambda v: v in KINDS, "one of " + ", ".join(KINDS)),
    "label": (lambda v: isinstance(v, str), "a string"),
    "content": _IMAGE,
    "image": _IMAGE,
    "styles": (_names, 'a list of image file names such as ["starry_night.jpg"]'),
    "content_layers": (_names, 'a list of layer names such as ["conv4_2"]'),
    "style_layers": (_names, 'a list of layer names such as ["conv1_1", "conv2_1"]'),
    "layer_weights": (_weights, "a list of numbers ≥ 0, one per style layer"),
    "style_blend": (lambda v: _weights(v) and any(w > 0 for w in v),
                    "a list of numbers ≥ 0, one per artwork, at least one of them > 0"),
    "ratio": _AT_LEAST_0,
    "alpha": _AT_LEAST_0,
    "beta": _AT_LEAST_0,
    "tv_weight": _AT_LEAST_0,
    "style_scale": (lambda v: _number(v) and v > 0, "a number > 0"),
    "init": (_name, f"one of {', '.join(INITS)}, or an image file name"),
    "optimizer": (lambda v: v in OPTIMIZERS, "one of " + ", ".join(OPTIMIZERS)),
}
CELL_KEYS = set(FIELDS)
# What each kind that runs reads, and what the start images "content" and "style" start from.
NEEDS = {"transfer": ("content", "styles"), "content": ("content",), "style": ("styles",)}
STARTS = {"content": "content", "style": "styles"}


class Cell(NamedTuple):
    row: int
    col: int
    spec: dict  # the merged settings of this cell (see the module docstring)
    origin: dict = {}  # where each key of spec was set: "defaults", "rows[1]", "columns[0]", "cells['1,0']"
    where: str = ""  # the cell in a message: "fig.json: cell 1,0 (row 'conv2_1', column 'α/β = 1e-3')"


class Grid(NamedTuple):
    name: str
    title: str
    row_labels: list
    col_labels: list
    cells: list  # Cell, row by row


def builtin_figures():
    """The names of the paper's figures that ``refstyle figure`` knows."""
    return sorted(f[:-5] for f in os.listdir(SPECS_DIR) if f.endswith(".json"))


def load_grid(name):
    """A :class:`Grid` from a built-in figure name (``fig3``) or a JSON file of the same form."""
    path = os.path.join(SPECS_DIR, f"{name}.json") if name in builtin_figures() else os.fspath(name)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise RefstyleError(
            f"{name}: neither a known figure ({', '.join(builtin_figures())}) nor a grid file"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RefstyleError(f"{path}: not a readable JSON grid file ({e})") from None
    return parse_grid(data, os.path.splitext(os.path.basename(path))[0], path)


def _bad(cell, field, expected):
    """The one line that says a cell's ``field`` does not hold ``expected``, and where it was set."""
    value = json.dumps(cell.spec[field], ensure_ascii=False, default=str)
    return UsageError(f"{cell.where}: {_field(cell, field)} must be {expected}, not {value}")


def _field(cell, field):
    origin = cell.origin.get(field)
    return f"'{field}'" + (f" (set in {origin})" if origin else "")


def parse_grid(data, name="grid", where="the grid"):
    """Check and merge a grid description (a dict, as read from JSON) into a :class:`Grid`.

    Every field of every cell is checked here (:data:`FIELDS`, :func:`check_spec`); the
    layer names need the network and are checked by :func:`check_grid`. A mistake is a
    :class:`~refstyle.errors.UsageError`, one line naming the cell and the field.
    """
    if not isinstance(data, dict):
        raise UsageError(f"{where}: a grid is a JSON object with 'rows' and 'columns'")
    unknown = set(data) - {"title", "defaults", "rows", "columns", "cells"}
    if unknown:
        raise UsageError(f"{where}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    for part in ("rows", "columns"):
        if not isinstance(data.get(part), list) or not data[part]:
            value = json.dumps(data.get(part), ensure_ascii=False)
            raise UsageError(
                f"{where}: a grid needs non-empty 'rows' and 'columns' lists of objects; '{part}' is {value}"
            )
    for part, what in (("defaults", "an object"), ("cells", 'an object {"row,column": {...}}'), ("title", "a string")):
        if part in data and not isinstance(data[part], str if part == "title" else dict):
            raise UsageError(f"{where}: '{part}' must be {what}, not {json.dumps(data[part], ensure_ascii=False)}")
    rows, cols = data["rows"], data["columns"]
    overrides = data.get("cells") or {}
    entries = [("defaults", data.get("defaults") or {})] + [(f"rows[{r}]", row) for r, row in enumerate(rows)]
    entries += [(f"columns[{c}]", col) for c, col in enumerate(cols)]
    entries += [(f"cells[{key!r}]", entry) for key, entry in overrides.items()]
    for part, entry in entries:
        if not isinstance(entry, dict):
            raise UsageError(f"{where}: {part} must be an object, not {json.dumps(entry, ensure_ascii=False)}")
        bad = set(entry) - CELL_KEYS
        if bad:
            raise UsageError(
                f"{where}: unknown key(s) {', '.join(sorted(bad))} in {part} (known: {', '.join(sorted(CELL_KEYS))})"
            )
        if not FIELDS["label"][0](entry.get("label", "")):
            raise UsageError(f"{where}: {part}: 'label' must be a string, not {json.dumps(entry['label'])}")
    at = {}  # (row, column): the key in "cells" and its entry
    for key, entry in overrides.items():
        try:
            r, c = (int(v) for v in key.split(","))
        except ValueError:
            raise UsageError(f"{where}: cell keys are 'row,column' (0-based), not {key!r}") from None
        if not (0 <= r < len(rows) and 0 <= c < len(cols)):
            raise UsageError(f"{where}: cell {key!r} is outside the {len(rows)}×{len(cols)} grid")
        if (r, c) in at:
            raise UsageError(f"{where}: cells {at[r, c][0]!r} and {key!r} are the same cell: merge them")
        at[r, c] = key, entry
    row_labels = [row.get("label", "") for row in rows]
    col_labels = [col.get("label", "") for col in cols]
    cells = []
    for r, row in enumerate(rows):
        for c, col in enumerate(cols):
            key, own = at.get((r, c), (None, {}))
            spec, origin = {}, {}
            for part, entry in (("defaults", data.get("defaults") or {}), (f"rows[{r}]", row),
                                (f"columns[{c}]", col), (f"cells[{key!r}]", own)):
                spec.update(entry)
                origin.update(dict.fromkeys(entry, part))
            spec.pop("label", None)
            spec.setdefault("kind", "transfer")
            labels = [f"{what} {label!r}" for what, label in (("row", row_labels[r]), ("column", col_labels[c]))
                      if label]
            cell = Cell(r, c, spec, origin, f"{where}: cell {r},{c}" + (f" ({', '.join(labels)})" if labels else ""))
            check_spec(cell)
            cells.append(cell)
    return Grid(name, data.get("title", name), row_labels, col_labels, cells)


def check_spec(cell):
    """Check one cell's merged spec: every field's value (:data:`FIELDS`) and what its kind needs."""
    spec = cell.spec
    for field, value in spec.items():
        test, expected = FIELDS[field]
        if not test(value):
            raise _bad(cell, field, expected)
    kind = spec["kind"]
    if "ratio" in spec and ("alpha" in spec or "beta" in spec):
        other = "alpha" if "alpha" in spec else "beta"
        raise UsageError(f"{cell.where}: {_field(cell, 'ratio')} and {_field(cell, other)} are both given: "
                         "'ratio' sets α = ratio and β = 1; give either 'ratio' or 'alpha'/'beta'")
    for field in NEEDS.get(kind, ()):
        if field not in spec:
            raise UsageError(f"{cell.where}: a '{kind}' cell needs '{field}' ({FIELDS[field][1]})")
    if kind == "image" and _shown(spec) is None:
        raise UsageError(f"{cell.where}: an 'image' cell needs 'image', 'styles' or 'content'")
    if "style_blend" in spec and "styles" in spec and len(spec["style_blend"]) != len(spec["styles"]):
        raise UsageError(f"{cell.where}: {_field(cell, 'style_blend')} has {len(spec['style_blend'])} values for "
                         f"{len(spec['styles'])} artworks in {_field(cell, 'styles')}: give one per artwork")
    if kind in RUN_KINDS and spec.get("init") in STARTS and STARTS[spec["init"]] not in NEEDS[kind]:
        raise UsageError(f"{cell.where}: {_field(cell, 'init')} is {spec['init']!r}, which starts from the cell's "
                         f"'{STARTS[spec['init']]}', but a '{kind}' cell has none: use noise or an image file")


def check_grid(grid, arch, base=Settings(), available=None):
    """Check what needs the network: every layer name of every cell, and the layer weights' count.

    Names are the convention's (``base.convention``, mapped by
    :func:`~refstyle.paper.conventions.tap_of`) and must be layers of ``arch``; ``available``:
    the layers the weights compute (a network whose weights end early). ``layer_weights``
    has one value per style layer, the cell's or the convention's.
    """
    base = base.resolved()
    for cell in grid.cells:
        spec = cell.spec
        for field in ("content_layers", "style_layers"):
            for name in spec.get(field, ()):
                try:
                    check_layers([tap_of(base.convention, name, arch)], arch, available)
                except LayerError as e:
                    raise UsageError(f"{cell.where}: {_field(cell, field)}: {e}") from None
        if "layer_weights" in spec:
            layers = spec.get("style_layers", base.style_layers)
            if len(spec["layer_weights"]) != len(layers):
                said = _field(cell, "style_layers") if "style_layers" in spec else "the convention's style layers"
                raise UsageError(f"{cell.where}: {_field(cell, 'layer_weights')} has {len(spec['layer_weights'])} "
                                 f"values for the {len(layers)} layers of {said}: give one per style layer")


def _shown(spec):
    """The image file an 'image' cell shows: ``image``, else the first of ``styles``, else ``content``."""
    return spec.get("image") or (spec.get("styles") or [None])[0] or spec.get("content")


def _inputs(spec):
    """The image file names a cell reads (its spec checked by :func:`check_spec`)."""
    kind = spec["kind"]
    if kind == "empty":
        return []
    if kind == "image":
        return [_shown(spec)]
    names = [spec["content"]] if "content" in NEEDS[kind] else []
    if "styles" in NEEDS[kind]:
        names.extend(spec["styles"])
    if spec.get("init", INITS[0]) not in INITS:  # a start image
        names.append(spec["init"])
    return names


def required_images(grid):
    """Every image file name the grid needs, sorted."""
    return sorted({name for cell in grid.cells for name in _inputs(cell.spec)})


def default_images_dir():
    """``$REFSTYLE_SHARED/images``, else ``../shared/images`` when it exists, else None."""
    shared = os.environ.get("REFSTYLE_SHARED")
    for folder in ([os.path.join(shared, "images")] if shared else []) + [os.path.join("..", "shared", "images")]:
        if os.path.isdir(folder):
            return folder
    return None


def find_images(grid, folder):
    """``{file name: path}`` for the grid's images in ``folder``; a clear error naming what is missing."""
    needed = required_images(grid)
    if folder is None:
        raise RefstyleError(
            f"{grid.name} needs the images {', '.join(needed)}: give the folder that holds them with --images DIR"
        )
    missing = [n for n in needed if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise RefstyleError(
            f"{grid.name} needs the images {', '.join(needed)} in {folder}; missing: {', '.join(missing)} "
            "(give the folder that holds them with --images DIR)"
        )
    return {n: os.path.abspath(os.path.join(folder, n)) for n in needed}


class Job(NamedTuple):
    """Everything one cell's optimisation needs, as plain values (it travels to other processes)."""

    kind: str  # transfer, content or style
    content: str  # path, or None
    styles: tuple  # paths
    settings: Settings  # resolved: the convention, its pooling and rounding, every loss setting
    weights: str  # path
    arch: str
    dtype: str
    device: str
    kernels: str = "fast"  # the network's kernels (refstyle.VGG): "fast", "reference" or "im2col"
    weights_input: object = None  # the weights' input, stated (--weights-input: a name or a space); None: the file's


def cell_job(spec, images, weights, arch, base=Settings(), dtype="float32", device="cpu", size=PAPER_SIZE,
             iters=PAPER_ITERS, seed=0, kernels="fast", optimizer=None, weights_input=None, ratio_scale=1.0):
    """The :class:`Job` of one cell (kinds transfer, content, style) from its merged spec.

    ``spec``: a cell's, checked (:func:`parse_grid`, :func:`check_grid`). ``base``: the grid's
    settings (its convention, pooling and rounding); the cell's spec overrides its layers and
    weights, and :func:`~refstyle.paper.settings.for_kind` keeps the cell's one term for a
    reconstruction. ``ratio_scale``: a transfer cell's α/β is its spec's times this
    (``refstyle figure --ratio-scale``: the α/β at which a network whose responses have
    another scale strikes the paper's balance; α is multiplied, β kept).
    """
    kind = spec["kind"]
    # resolved: the convention's layers stated, so that a cell's cache key holds every setting
    settings = base._replace(size=int(size), iters=int(iters), seed=int(seed)).resolved()
    if optimizer is not None:  # the grid's optimiser; a cell's own "optimizer" overrides it
        settings = settings._replace(optimizer=optimizer)
    changes = {k: spec[k] for k in ("style_blend", "style_scale", "init", "optimizer", "tv_weight") if k in spec}
    if changes.get("init", INITS[0]) not in INITS:  # a start image, from the grid's images
        changes["init"] = images[changes["init"]]
    if "content_layers" in spec:
        changes["content_layers"] = tuple(spec["content_layers"])
    if "style_layers" in spec:
        changes["style_layers"] = tuple(spec["style_layers"])
    style_layers = changes.get("style_layers", settings.style_layers)
    if "layer_weights" in spec:  # one per style layer (check_grid)
        changes["layer_weights"] = dict(zip(style_layers, map(float, spec["layer_weights"])))
    elif "style_layers" in changes:  # the convention's weights for these layers
        changes["layer_weights"] = None
    if "ratio" in spec:
        changes.update(alpha=float(spec["ratio"]), beta=1.0)
    else:
        changes.update({k: float(spec[k]) for k in ("alpha", "beta") if k in spec})
    if kind == "transfer":
        changes["alpha"] = changes.get("alpha", settings.alpha) * ratio_scale
    settings = for_kind(settings._replace(**changes), kind)
    content = images[spec["content"]] if kind in ("transfer", "content") else None
    styles = tuple(images[s] for s in spec.get("styles", [])) if kind in ("transfer", "style") else ()
    return Job(kind, content, styles, settings, os.path.abspath(weights), arch, dtype, device, kernels, weights_input)


def check_grid_memory(jobs, arch, dtype="float32", device="cpu", size=PAPER_SIZE, at_once=1, kernels="fast",
                      available=None):
    """Before any cell runs: the hungriest of ``jobs``' memory, times the cells run at once, against what the machine has.

    Raises :class:`RefstyleError` naming the largest ``size`` that fits
    (:func:`refstyle.paper.memory.check_memory`). Only the images' headers are read.
    """
    from PIL import Image

    def shape(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a decompression bomb is refused, in its own words, when the cell reads it
            with Image.open(path) as im:
                return im.size[::-1]

    estimators = []
    for job in jobs:
        try:
            photo = None if job.content is None else shape(job.content)
            artworks = [shape(p) for p in job.styles]
        except Exception:  # not an image Pillow reads: the cell's run says so
            return
        estimate_at = run_estimate(job.settings, photo, artworks, arch, dtype, kernels)
        if estimate_at is not None:
            estimators.append(estimate_at)
    if not estimators:
        return
    at_once = min(int(at_once), len(jobs))
    check_memory(lambda s: max((e(s) for e in estimators), key=lambda e: e.total).times(at_once), size, device,
                 available)


def cell_key(job, sha256):
    """The cache key of a job: a SHA-256 over its inputs' and weights' contents and every setting.

    ``sha256(path)`` gives a file's checksum (cached by the caller). Paths themselves do
    not enter the key: the same images and weights elsewhere give the same key.
    """
    settings = job.settings._asdict()
    if settings["init"] not in INITS:  # a start image: its contents, as the other images'
        settings["init"] = sha256(settings["init"])
    if settings["convention"] not in CONVENTIONS:  # a record file of the user's: its contents, not its path
        settings["convention"] = {"record": sha256(settings["convention"])}
    record = {
        "refstyle": __version__,
        "kind": job.kind,
        "content": None if job.content is None else sha256(job.content),
        "styles": [sha256(p) for p in job.styles],
        "settings": settings,
        "weights": sha256(job.weights),
        "weights_input": job.weights_input,
        "arch": job.arch,
        "dtype": job.dtype,
        "device": job.device,
    }
    if job.kernels != "reference":  # cells cached before the kernels were a choice keep their keys
        record["kernels"] = job.kernels
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def run_cell(job):
    """Run one cell's optimisation; returns ``{"rgb": uint8 (H, W, 3), "loss", ...}`` (:data:`CELL_NUMBERS`).

    A plain function of a plain value, so that any process (a local pool's or a Dask
    worker's) can run it. A run stopped by Ctrl-C comes back with ``interrupted=True``
    and is not cached.
    """
    import time


    start = time.perf_counter()
    net = build_network(job.weights, job.settings, arch=job.arch, dtype=job.dtype, device=job.device,
                        kernels=job.kernels, weights_input=job.weights_input)
    photo = load_image(job.content) if job.content is not None else None
    artworks = [load_image(p) for p in job.styles]
    result = synthesize(net, photo, artworks, job.settings)
    last = result.results[-1]
    return {
        "rgb": to_uint8(result.rgb),
        "loss": float(last.loss),
        "iterations": int(sum(r.iterations for r in result.results)),
        "evaluations": int(sum(r.evaluations for r in result.results)),
        "seconds": time.perf_counter() - start,
        "interrupted": bool(last.interrupted),
    }


def cell_shape(job, image_shape=None):
    """The ``(H, W, 3)`` of the image a job makes, as :func:`~refstyle.paper.synthesis.synthesize` sizes it.

    Its reference image (the photograph, else the first artwork) with the longer side
    ``size``, aspect ratio kept (:func:`~refstyle.paper.synthesis.run_shapes`, which raises
    :class:`~refstyle.errors.ImageError` for an image too small for its layers).
    ``image_shape(path)``: an image's ``(H, W)`` (read from the file by default).
    """
    image_shape = image_shape or (lambda path: load_image(path).shape[:2])
    reference = job.content if job.content is not None else job.styles[0]
    shapes = run_shapes(job.settings, job.arch, image_shape(reference), [image_shape(p) for p in job.styles],
                        job.content is not None)  # checked: each image large enough for its layers
    return shapes[-1][0] + (3,)


def _cache_problem(entry, shape):
    """What is wrong with a cache entry's arrays (None: nothing): a key missing, the image, a number."""
    missing = [k for k in ("rgb",) + CELL_NUMBERS if k not in entry]
    if missing:
        return f"it has no {', '.join(missing)}"
    rgb = entry["rgb"]
    if rgb.ndim != 3 or rgb.shape[2] != 3 or (shape is not None and rgb.shape != tuple(shape)):
        expected = "H×W×3" if shape is None else "×".join(map(str, shape))
        return f"its image is {'×'.join(map(str, rgb.shape))}, not {expected}"
    if rgb.dtype.kind not in "ui" or (rgb.size and (rgb.min() < 0 or rgb.max() > 255)):
        return f"its image holds {rgb.dtype}, not bytes 0..255"
    for k in CELL_NUMBERS:
        if entry[k].shape != () or entry[k].dtype.kind not in "uif" or not np.isfinite(entry[k]):
            return f"its {k} is not a finite number"
    return None


class CellCache:
    """Finished cells on disk: ``<folder>/<key>.npz`` with the image and its numbers, written atomically."""

    def __init__(self, folder):
        self.folder = os.fspath(folder)

    def path(self, key):
        return os.path.join(self.folder, f"{key}.npz")

    def load(self, key, shape=None, what=None):
        """The cell stored under ``key``, checked: ``{"rgb": uint8 (H, W, 3), "loss", ...}`` or None.

        None when there is none, and, with a :class:`~refstyle.errors.RefstyleWarning` naming
        ``what`` (the cell) and the file, when the entry is damaged: unreadable, a key
        missing, an image not ``shape`` (``(H, W, 3)``, :func:`cell_shape`; any H×W×3 when
        None) or not of bytes, a number not finite. A damaged cell is computed again, never drawn.
        """
        path = self.path(key)
        try:
            with np.load(path, allow_pickle=False) as z:
                entry = {k: z[k] for k in z.files}
        except FileNotFoundError:
            return None
        except Exception as e:  # any unreadable entry (truncated, not a zip, pickled objects) is recomputed
            problem = f"not a readable .npz archive ({type(e).__name__}: {e})"
        else:
            problem = _cache_problem(entry, shape)
        if problem is not None:
            warnings.warn(f"{what + ': ' if what else ''}the cached cell {path} is damaged ({problem}); "
                          "computing it again", RefstyleWarning, stacklevel=2)
            return None
        return {"rgb": entry["rgb"].astype(np.uint8), **{k: entry[k].item() for k in CELL_NUMBERS}}

    def save(self, key, result):
        os.makedirs(self.folder, exist_ok=True)
        write_npz(self.path(key), {k: np.asarray(v) for k, v in result.items()})


def default_cache_dir():
    """``$REFSTYLE_CACHE/cells``, default ``~/.cache/refstyle/cells`` (``$XDG_CACHE_HOME`` honoured)."""
    base = os.environ.get("REFSTYLE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "refstyle"
    )
    return os.path.join(base, "cells")


BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _blas_threads(n):
    """Let processes started inside use ``n`` BLAS threads each (a user's own setting wins)."""
    saved = {k: os.environ.get(k) for k in BLAS_THREAD_VARS}
    for k in BLAS_THREAD_VARS:
        os.environ.setdefault(k, str(n))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_all(todo, jobs, scheduler, on_done):
    """Run ``{key: Job}`` serially, in ``jobs`` local processes, or on a Dask scheduler; report each result."""
    if scheduler:
        try:
            from distributed import Client, as_completed
        except ImportError:
            raise RefstyleError("--scheduler needs Dask's distributed scheduler: pip install 'refstyle[dask]'") from None
        try:
            client = Client(scheduler, timeout=10)
        except (OSError, TimeoutError) as e:
            raise RefstyleError(f"cannot reach the Dask scheduler at {scheduler} ({e})") from None
        with client:
            futures = {client.submit(run_cell, job, key=f"refstyle-cell-{key}", pure=False): key for key, job in todo.items()}
            for future in as_completed(futures):
                on_done(futures[future], future.result())
    elif jobs > 1 and len(todo) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # jobs × threads = cores, not jobs × cores (workers start at the first submits and read it then)
        threads = _blas_threads(max(1, (os.cpu_count() or 1) // jobs))
        context = multiprocessing.get_context("spawn")
        lifeline = Lifeline(context)  # the workers end with this process, however it ends
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=follow_parent,
                                   initargs=(lifeline.reader, lifeline.parent))
        with lifeline, threads, pool:
            futures = {pool.submit(run_cell, job): key for key, job in todo.items()}
            try:
                for future in as_completed(futures):
                    on_done(futures[future], future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                lifeline.cut()  # the running cells end now, rather than when they finish
                raise
    else:
        for key, job in todo.items():
            on_done(key, run_cell(job))


class FigureResult(NamedTuple):
    images: dict  # (row, col) -> RGB uint8, or None for an empty cell
    computed: int  # cells optimised in this run
    cached: int  # cells taken from the cache
    stats: dict  # (row, col) -> the cell's numbers (loss, iterations, evaluations, seconds)
    arch: str = None  # the network's architecture


def make_grid(grid, images, weights, arch=None, base=Settings(), dtype="float32", device="cpu", size=PAPER_SIZE,
              iters=PAPER_ITERS, seed=0, jobs=1, scheduler=None, cache_dir=None, progress=None, kernels="fast",
              optimizer=None, weights_input=None, ratio_scale=1.0):
    """Compute every cell of ``grid`` (from the cache where possible): a :class:`FigureResult`.

    ``images``: ``{file name: path}`` (:func:`find_images`). ``base``: the grid's
    :class:`~refstyle.paper.settings.Settings` (convention, pooling, rounding; the paper's by
    default), which each cell's network is built from (:func:`~refstyle.paper.build.build_network`).
    ``progress(done, total, text)`` is told as cells finish. Finished cells are cached as
    they arrive, so an interrupted call loses only the cells that were running.
    ``kernels``: the network's (:class:`refstyle.VGG`); the fast ones by default, as
    ``refstyle transfer``. ``ratio_scale``: every transfer cell's α/β is multiplied by it
    (:func:`cell_job`).
    """

    # the weights read, the network the grid's settings describe built once, and every cell's layers
    # checked against it, before any cell starts
    net = build_network(weights, base.resolved(), arch=arch, kernels=kernels, weights_input=weights_input)
    arch = net.arch
    check_grid(grid, arch, base, net.layers)
    runs = {(cell.row, cell.col): cell_job(cell.spec, images, weights, arch, base, dtype, device, size, iters, seed,
                                           kernels, optimizer, weights_input, ratio_scale)
            for cell in grid.cells if cell.spec["kind"] in RUN_KINDS}
    if scheduler is None:  # the cells run on this machine: they must fit in its memory
        check_grid_memory(list(runs.values()), arch, dtype, device, size, jobs, kernels)
    checksums, image_shapes = {}, {}

    def sha256(path):
        if path not in checksums:
            checksums[path] = file_sha256(path)
        return checksums[path]

    def image_shape(path):
        if path not in image_shapes:
            image_shapes[path] = load_image(path).shape[:2]
        return image_shapes[path]

    cache = CellCache(cache_dir or default_cache_dir())
    out, stats, todo, where, shapes, names = {}, {}, {}, {}, {}, {}
    for cell in grid.cells:
        spec, at = cell.spec, (cell.row, cell.col)
        if spec["kind"] == "empty":
            out[at] = None
        elif spec["kind"] == "image":
            out[at] = resize_longer(load_image(images[_inputs(spec)[0]]), size)
        else:
            job = runs[at]
            key = cell_key(job, sha256)
            where.setdefault(key, []).append(at)
            todo[key] = job
            try:  # every image large enough for its layers, before any cell runs
                shapes[key] = cell_shape(job, image_shape)
            except ImageError as e:
                raise UsageError(f"{cell.where}: {e}") from None
            names.setdefault(key, cell.where)
    total = len(todo)
    cached = 0
    for key in list(todo):
        hit = cache.load(key, shapes[key], names[key])
        if hit is not None:
            for at in where[key]:
                out[at], stats[at] = hit["rgb"], {k: v for k, v in hit.items() if k != "rgb"}
            del todo[key]
            cached += 1
    done = [cached]
    if progress is not None:
        progress(cached, total, f"{cached} from the cache")

    def on_done(key, result):
        if result.pop("interrupted", False):
            raise KeyboardInterrupt
        cache.save(key, result)
        for at in where[key]:
            out[at], stats[at] = result["rgb"], {k: v for k, v in result.items() if k != "rgb"}
        done[0] += 1
        if progress is not None:
            progress(done[0], total, f"cell {where[key][0][0]},{where[key][0][1]}: loss {result['loss']:.4e}")

    _run_all(todo, jobs, scheduler, on_done)
    return FigureResult(out, total - cached, cached, stats, arch)


def draw_grid(grid, result, path, caption="", meta=None):
    """Draw the grid with matplotlib (row and column labels as in the paper, a caption) to a PNG, atomically.

    ``meta``: a dict written as JSON into the PNG's text chunk ``refstyle`` (the network, the
    settings, each cell's numbers), as a transfer's output carries its own.
    """
    import textwrap

    plt = pyplot()
    rows, cols = len(grid.row_labels), len(grid.col_labels)
    shapes = [im.shape for im in result.images.values() if im is not None]
    aspect = np.median([s[0] / s[1] for s in shapes]) if shapes else 1.0
    width, top, bottom, left = 2.0, 0.75, 0.3, 0.3  # inches: a cell's width, the margins
    fig_w = width * cols * 1.04 + left
    fig_h = width * aspect * rows * 1.15 + top + bottom
    fig, axes = plt.subplots(
        rows, cols, figsize=(fig_w, fig_h), squeeze=False,
        gridspec_kw={"wspace": 0.04, "hspace": 0.15, "left": left / fig_w, "right": 0.995,
                     "top": 1 - top / fig_h, "bottom": bottom / fig_h},
    )
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            im = result.images.get((r, c))
            if im is not None:
                ax.imshow(im, interpolation="nearest")
            if r == 0:
                ax.set_title("\n".join(textwrap.wrap(grid.col_labels[c], 26)), fontsize=7)
            if c == 0 and grid.row_labels[r]:
                ax.set_ylabel(grid.row_labels[r], fontsize=8)
    fig.suptitle(grid.title, fontsize=9, y=1 - 0.12 / fig_h, va="top")
    if caption:
        fig.text(0.5, 0.01, caption, ha="center", va="bottom", fontsize=6, color="0.3")
    # at least one pixel of the PNG per pixel of the widest cell, so that a cell of 256 pixels is drawn
    # at its own resolution (a cell's axes are about `width` inches wide: 200 pixels at 100 dpi)
    cell_px = max((s[1] for s in shapes), default=0)
    dpi = max(100, int(np.ceil(cell_px / (axes[0][0].get_position().width * fig_w))))
    write_png(fig, path, dpi=dpi, text=None if meta is None else {"refstyle": json.dumps(meta, default=str)})
