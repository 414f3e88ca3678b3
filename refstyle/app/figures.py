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
import os
import warnings
from typing import NamedTuple

import numpy as np

from ..version import __version__
from ..errors import RefstyleError
from ..io import file_sha256, pyplot, write_npz, write_png
from ..nn.vgg import VGG
from ..paper.conventions import PAPER_CONTENT_LAYERS, PAPER_ITERS, PAPER_POOLING, PAPER_SIZE, PAPER_STYLE_LAYERS
from ..paper.images import load_image, resize_longer, to_uint8
from ..paper.memory import check_memory, run_estimate
from ..paper.settings import Settings
from ..paper.synthesis import synthesize
from ..weights import load_weights
from .signals import Lifeline, follow_parent

SPECS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figure_specs")
KINDS = ("transfer", "content", "style", "image", "empty")
# The keys a grid file may set for a cell, with what they mean for synthesis.Settings.
CELL_KEYS = {
    "kind", "label", "content", "styles", "image", "content_layers", "style_layers", "layer_weights",
    "ratio", "alpha", "beta", "style_blend", "style_scale", "init", "optimizer", "tv_weight",
}  # fmt: skip


class Cell(NamedTuple):
    row: int
    col: int
    spec: dict  # the merged settings of this cell (see the module docstring)


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


def parse_grid(data, name="grid", where="the grid"):
    """Check and merge a grid description (a dict, as read from JSON) into a :class:`Grid`."""
    if not isinstance(data, dict) or not data.get("rows") or not data.get("columns"):
        raise RefstyleError(f"{where}: a grid needs non-empty 'rows' and 'columns' lists")
    unknown = set(data) - {"title", "defaults", "rows", "columns", "cells"}
    if unknown:
        raise RefstyleError(f"{where}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    rows, cols = data["rows"], data["columns"]
    overrides = data.get("cells") or {}
    for part, entries in (("defaults", [data.get("defaults") or {}]), ("rows", rows), ("columns", cols),
                          ("cells", list(overrides.values()))):
        for entry in entries:
            if not isinstance(entry, dict):
                raise RefstyleError(f"{where}: every entry of '{part}' must be an object, not {entry!r}")
            bad = set(entry) - CELL_KEYS
            if bad:
                raise RefstyleError(
                    f"{where}: unknown key(s) {', '.join(sorted(bad))} in '{part}' (known: {', '.join(sorted(CELL_KEYS))})"
                )
    cells = []
    for key in overrides:
        try:
            r, c = (int(v) for v in key.split(","))
        except ValueError:
            raise RefstyleError(f"{where}: cell keys are 'row,column' (0-based), not {key!r}") from None
        if not (0 <= r < len(rows) and 0 <= c < len(cols)):
            raise RefstyleError(f"{where}: cell {key!r} is outside the {len(rows)}×{len(cols)} grid")
    for r, row in enumerate(rows):
        for c, col in enumerate(cols):
            spec = {**(data.get("defaults") or {}), **row, **col, **overrides.get(f"{r},{c}", {})}
            spec.pop("label", None)
            spec.setdefault("kind", "transfer")
            if spec["kind"] not in KINDS:
                raise RefstyleError(f"{where}: cell {r},{c} has kind {spec['kind']!r}; choose one of {', '.join(KINDS)}")
            cells.append(Cell(r, c, spec))
    return Grid(
        name, data.get("title", name), [row.get("label", "") for row in rows], [col.get("label", "") for col in cols],
        cells,
    )


def _inputs(spec):
    """The image file names a cell reads."""
    kind = spec["kind"]
    if kind == "empty":
        return []
    if kind == "image":
        shown = spec.get("image") or (spec.get("styles") or [None])[0] or spec.get("content")
        if not shown:
            raise RefstyleError("an 'image' cell needs 'image', 'styles' or 'content'")
        return [shown]
    names = []
    if kind in ("transfer", "content"):
        if not spec.get("content"):
            raise RefstyleError(f"a '{kind}' cell needs 'content' (the photograph)")
        names.append(spec["content"])
    if kind in ("transfer", "style"):
        if not spec.get("styles"):
            raise RefstyleError(f"a '{kind}' cell needs 'styles' (a list of artworks)")
        names.extend(spec["styles"])
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
    settings: Settings
    weights: str  # path
    arch: str
    pooling: str
    dtype: str
    device: str
    kernels: str = "fast"  # the network's kernels (refstyle.VGG): "fast", "reference" or "im2col"


def cell_job(spec, images, weights, arch, pooling, dtype="float32", device="cpu", size=PAPER_SIZE, iters=PAPER_ITERS,
             seed=0, kernels="fast", optimizer=None):
    """The :class:`Job` of one cell (kinds transfer, content, style) from its merged spec."""
    kind = spec["kind"]
    # the paper's layers stated, not left to the convention: a cell's cache key holds every setting
    settings = Settings(content_layers=PAPER_CONTENT_LAYERS, style_layers=PAPER_STYLE_LAYERS, size=int(size),
                        iters=int(iters), seed=int(seed))
    if optimizer is not None:  # the grid's optimiser; a cell's own "optimizer" overrides it
        settings = settings._replace(optimizer=optimizer)
    changes = {k: spec[k] for k in ("style_blend", "style_scale", "init", "optimizer", "tv_weight") if k in spec}
    if "content_layers" in spec:
        changes["content_layers"] = tuple(spec["content_layers"])
    if "style_layers" in spec:
        changes["style_layers"] = tuple(spec["style_layers"])
    style_layers = changes.get("style_layers", settings.style_layers)
    if "layer_weights" in spec:
        if len(spec["layer_weights"]) != len(style_layers):
            raise RefstyleError(f"layer_weights has {len(spec['layer_weights'])} values for {len(style_layers)} style layers")
        changes["layer_weights"] = dict(zip(style_layers, map(float, spec["layer_weights"])))
    if kind == "content":
        changes.update(alpha=1.0, beta=0.0)
    elif kind == "style":
        changes.update(alpha=0.0, beta=1.0)
    elif "ratio" in spec:
        changes.update(alpha=float(spec["ratio"]), beta=1.0)
    else:
        changes.update({k: float(spec[k]) for k in ("alpha", "beta") if k in spec})
    content = images[spec["content"]] if kind in ("transfer", "content") else None
    styles = tuple(images[s] for s in spec.get("styles", [])) if kind in ("transfer", "style") else ()
    return Job(kind, content, styles, settings._replace(**changes), os.path.abspath(weights), arch, pooling, dtype, device,
               kernels)


def check_grid_memory(grid, images, weights, arch, pooling, dtype="float32", device="cpu", size=PAPER_SIZE, jobs=1,
                      kernels="fast", optimizer=None, available=None):
    """Before any cell runs: the hungriest cell's memory, times the cells run at once, against what the machine has.

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
    cells = [cell.spec for cell in grid.cells if cell.spec["kind"] not in ("empty", "image")]
    for spec in cells:
        job = cell_job(spec, images, weights, arch, pooling, dtype, device, size, 1, 0, kernels, optimizer)
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
    at_once = min(int(jobs), len(cells))
    check_memory(lambda s: max((e(s) for e in estimators), key=lambda e: e.total).times(at_once), size, device,
                 available)


def cell_key(job, sha256):
    """The cache key of a job: a SHA-256 over its inputs' and weights' contents and every setting.

    ``sha256(path)`` gives a file's checksum (cached by the caller). Paths themselves do
    not enter the key: the same images and weights elsewhere give the same key.
    """
    record = {
        "refstyle": __version__,
        "kind": job.kind,
        "content": None if job.content is None else sha256(job.content),
        "styles": [sha256(p) for p in job.styles],
        "settings": job.settings._asdict(),
        "weights": sha256(job.weights),
        "arch": job.arch,
        "pooling": job.pooling,
        "dtype": job.dtype,
        "device": job.device,
    }
    if job.kernels != "reference":  # cells cached before the kernels were a choice keep their keys
        record["kernels"] = job.kernels
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def run_cell(job):
    """Run one cell's optimisation; returns ``{"rgb": uint8 (H, W, 3), "loss", "iterations", ...}``.

    A plain function of a plain value, so that any process (a local pool's or a Dask
    worker's) can run it. A run stopped by Ctrl-C comes back with ``interrupted=True``
    and is not cached.
    """
    import time


    start = time.perf_counter()
    net = VGG(load_weights(job.weights, arch=job.arch), arch=job.arch, pooling=job.pooling, dtype=job.dtype,
              device=job.device, kernels=job.kernels)
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


class CellCache:
    """Finished cells on disk: ``<folder>/<key>.npz`` with the image and its numbers, written atomically."""

    def __init__(self, folder):
        self.folder = os.fspath(folder)

    def path(self, key):
        return os.path.join(self.folder, f"{key}.npz")

    def load(self, key):
        try:
            with np.load(self.path(key), allow_pickle=False) as z:
                result = {k: z[k] for k in z.files}
        except FileNotFoundError:
            return None
        except Exception:  # a damaged entry is recomputed
            return None
        result["rgb"] = result["rgb"].astype(np.uint8)
        return {k: (v if k == "rgb" else v.item()) for k, v in result.items()}

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


def make_grid(grid, images, weights, arch=None, pooling=PAPER_POOLING, dtype="float32", device="cpu", size=PAPER_SIZE, iters=PAPER_ITERS,
              seed=0, jobs=1, scheduler=None, cache_dir=None, progress=None, kernels="fast", optimizer=None):
    """Compute every cell of ``grid`` (from the cache where possible): a :class:`FigureResult`.

    ``images``: ``{file name: path}`` (:func:`find_images`). ``progress(done, total, text)``
    is told as cells finish. Finished cells are cached as they arrive, so an interrupted
    call loses only the cells that were running. ``kernels``: the network's
    (:class:`refstyle.VGG`); the fast ones by default, as ``refstyle transfer``.
    """

    arch = arch or load_weights(weights).meta["arch"]  # also checks the weights before any cell starts
    checksums = {}

    def sha256(path):
        if path not in checksums:
            checksums[path] = file_sha256(path)
        return checksums[path]

    cache = CellCache(cache_dir or default_cache_dir())
    out, stats, todo, where = {}, {}, {}, {}
    for cell in grid.cells:
        spec, at = cell.spec, (cell.row, cell.col)
        if spec["kind"] == "empty":
            out[at] = None
        elif spec["kind"] == "image":
            out[at] = resize_longer(load_image(images[_inputs(spec)[0]]), size)
        else:
            job = cell_job(spec, images, weights, arch, pooling, dtype, device, size, iters, seed, kernels, optimizer)
            key = cell_key(job, sha256)
            where.setdefault(key, []).append(at)
            todo[key] = job
    total = len(todo)
    cached = 0
    for key in list(todo):
        hit = cache.load(key)
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
    return FigureResult(out, total - cached, cached, stats)


def draw_grid(grid, result, path, caption=""):
    """Draw the grid with matplotlib (row and column labels as in the paper, a caption) to a PNG, atomically."""
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
    write_png(fig, path)
