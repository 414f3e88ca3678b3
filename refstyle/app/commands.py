"""The ``refstyle`` commands: one handler per command, each a function of the parsed options.

A handler reads its options (never changing them), builds what the run needs through
the library's own entry points (:class:`~refstyle.paper.settings.Settings`,
:func:`~refstyle.paper.objective.build_objective`, :func:`~refstyle.weights.load_weights`),
runs it, and reports on stdout; a user error is a
:class:`~refstyle.errors.RefstyleError`, which :func:`refstyle.app.cli.main` prints
as one line. Handlers return the exit status (None is 0).
"""

import csv
import io
import json
import os

import numpy as np

from ..errors import RefstyleError, UsageError
from ..io import atomic_path, check_writable, file_sha256, write_json
from ..paper.conventions import PAPER_MAXCOR, get_convention, loss_weights, tap_of
from ..paper.diagnose import diagnose as diagnose_file
from ..paper.gradcheck import check_gradient
from ..paper.images import (
    SKIMAGE_PHOTOS, SKIMAGE_PREFIX, deprocess, load_image, resize_longer, resolve_image, save_image, sized_inputs,
    white_noise,
)
from ..paper.memory import check_run_memory
from ..paper.normalize import normalize_over_images
from ..paper.objective import build_objective
from ..paper.optimize import LBFGS
from ..paper.build import build_network
from ..paper.settings import RECONSTRUCTIONS, Settings, for_kind
from ..paper.synthesis import check_size, synthesize
from ..progress import Progress
from ..version import __version__
from ..weights import describe, generate_weights, load_weights, resolve_weights, save_npz
from ..weights.cache import cache_dir, list_cache, list_sources
from ..weights.catalogue import find_source, size_text
from ..weights.download import fetch
from .explain import explain as explain_steps
from .signals import hold_stop_signals, stop_reason, stop_status
from .figures import builtin_figures, default_images_dir, draw_grid, find_images, load_grid, make_grid
from .validate import (
    DIAGNOSE_KEYS, check_file_kind, check_gradient_arrays, compare_files, gradient_arrays,
    read_gradient_file, write_gradient_file,
)

# ---------------------------------------------------------------------------
# From the options to a run: its settings and its network
# ---------------------------------------------------------------------------

# What suits each device where the user does not say. On a GPU: our own L-BFGS, which stays on
# the device (SciPy's would copy the image to the host and back at every evaluation), and the
# reference kernels, whose few large matrix products suit it (about 440 calls an evaluation
# at 512², against some 14,000 for the fast kernels, shaped for CPU caches).
DEVICE_DEFAULTS = {
    "cpu": {"optimizer": "lbfgs", "kernels": "fast"},
    "gpu": {"optimizer": "lbfgs-xp", "kernels": "reference"},
}


def device_default(args, option):
    """The option's value, or where it was not given the default for the run's ``--device``."""
    value = getattr(args, option)
    return DEVICE_DEFAULTS[getattr(args, "device", "cpu")][option] if value is None else value


def run_settings(args, kind="transfer"):
    """The :class:`Settings` the options describe, for a transfer, a reconstruction or ``grad``.

    ``kind``: ``"transfer"`` (and ``grad``, ``gradcheck``), ``"content"`` (only
    ``α L_content`` at ``--layer``) or ``"style"`` (only ``β L_style`` at ``--layers``), as
    :func:`~refstyle.paper.settings.for_kind` makes them. The convention's defaults fill
    what is not given (:meth:`Settings.resolved`).
    """
    convention = get_convention(args.convention)
    alpha, beta, ratio = args.alpha, args.beta, args.ratio
    content_layers, style_layers = args.content_layers, args.style_layers
    if kind in RECONSTRUCTIONS:
        if ratio is not None or (alpha if kind == "style" else beta) is not None:
            raise RefstyleError("a reconstruction has one loss term: --ratio and the other term's weight do not apply")
        if kind == "content":
            content_layers = [args.layer]
        else:
            style_layers = args.layers
    else:
        alpha, beta = loss_weights(convention, alpha, beta, ratio)
    content_layers = tuple(convention.content_layers if content_layers is None else content_layers)
    style_layers = tuple(convention.style_layers if style_layers is None else style_layers)
    layer_weights = _per_layer(args.layer_weights, style_layers, "--layer-weights", "style")
    content_weights = _per_layer(getattr(args, "content_weights", None), content_layers, "--content-weights", "content")
    settings = Settings(
        content_layers=content_layers, style_layers=style_layers, layer_weights=layer_weights, alpha=alpha,
        beta=beta, convention=convention.path or convention.name, style_blend=args.style_blend, size=args.size,
        style_scale=args.style_scale, seed=args.seed, tv_weight=args.tv_weight, pooling=args.pooling,
        rounding=args.rounding, content_weights=content_weights,
    )
    settings = for_kind(settings, kind, alpha if kind == "content" else beta if kind == "style" else None).resolved()
    if not hasattr(args, "iters"):  # grad, gradcheck: one evaluation, no optimiser
        return settings
    optimizer = device_default(args, "optimizer")
    return settings._replace(
        iters=args.iters, optimizer=optimizer, optimizer_options=_optimizer_options(args, optimizer),
        init=args.init, scales=args.scales, preserve_color=args.preserve_color,
        bounds=optimizer == "lbfgs" and not args.no_bounds,
    )


def _per_layer(values, layers, flag, what):
    if values is None:
        return None
    if len(values) != len(layers):
        raise RefstyleError(f"{flag} has {len(values)} values for {len(layers)} {what} layers")
    return dict(zip(layers, values))


def _optimizer_options(args, optimizer):
    if optimizer in LBFGS:
        if args.lr is not None:
            raise RefstyleError("--lr is the step size of gd and adam; L-BFGS finds its own steps (drop --lr)")
        return {"maxcor": PAPER_MAXCOR if args.maxcor is None else args.maxcor}
    if args.maxcor is not None or args.no_bounds:
        flag = "--maxcor" if args.maxcor is not None else "--no-bounds"
        raise RefstyleError(f"{flag} is an option of lbfgs, not of {optimizer} (drop it)")
    if args.lr is None:
        return {}
    if not args.lr > 0:
        raise RefstyleError(f"--lr must be positive, not {args.lr}")
    return {"lr": args.lr}


def run_network(args, settings, weights=None, dtype=None):
    """The :class:`VGG` of a run (:func:`~refstyle.paper.build.build_network`): ``--weights`` or the ``weights`` given."""
    return build_network(args.weights if weights is None else weights, settings, arch=args.arch,
                         dtype=dtype or args.dtype, device=getattr(args, "device", "cpu"),
                         kernels=device_default(args, "kernels"), weights_input=args.weights_input)


# ---------------------------------------------------------------------------
# grad, gradcheck, compare: validating gradients
# ---------------------------------------------------------------------------


def grad(args):
    check_writable(args.output, args.force, suffix=".npz")
    settings = run_settings(args)
    net = run_network(args, settings)
    shape = None
    if args.x is not None:
        x = _load_x(args.x)
        shape = x.shape[2:]
    photo, artworks = sized_inputs(
        load_image(args.content), [load_image(s) for s in args.styles], args.size, args.style_scale, shape
    )
    objective = build_objective(net, photo, artworks, settings)
    if args.x is None:
        x = white_noise(photo.shape[:2], args.seed, net.dtype, net.image)
    with np.errstate(all="ignore"):  # an overflow is reported below, in one line
        e = objective.evaluate(x)
    bad = [what for what, v in (("the loss", e.loss), ("the gradient", e.grad)) if not np.all(np.isfinite(np.asarray(v)))]
    if bad:
        raise RefstyleError(f"{' and '.join(bad)} at this x {'are' if len(bad) > 1 else 'is'} not finite (loss {e.loss:g}): "
                            "the weights α, β, w_l or the convention's divisors overflow; nothing written")
    record = {
        "refstyle": __version__, "weights": args.weights, "arch": net.arch, "pooling": net.pooling,
        "convention": settings.convention, "alpha": objective.alpha, "beta": objective.beta,
        "content_layers": list(settings.content_layers), "style_layers": list(settings.style_layers),
        "layer_weights": objective.layer_weights, "size": list(photo.shape[:2]),
        "style_sizes": [list(a.shape[:2]) for a in artworks], "seed": args.seed, "dtype": net.dtype.name,
        "content": args.content, "styles": args.styles, "x": args.x, "kernels": net.kernels,
        "rounding": net.rounding, "tv_weight": objective.tv_weight, "image": net.image,
        "weights_input": net.weights_input,
    }
    arrays = gradient_arrays(x, e, record)
    arrays["image"] = np.array(json.dumps(net.image))  # the space x and grad are in: the convention's own
    write_gradient_file(args.output, arrays)
    print(f"wrote {args.output}: loss {e.loss:.6e} (content {e.loss_content:.6e}, style {e.loss_style:.6e}), "
          f"x {x.shape[2]}×{x.shape[3]}")


X_FILE = "--x takes one NumPy .npy array (numpy.save of the float 1×3×H×W image, in network layout)"


def _load_x(path):
    check_file_kind(path, ("npy",), X_FILE)  # a text file, an image, an .npz: named for what it is
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise RefstyleError(f"{path}: a .npy array refstyle cannot read ({e})") from None
    if x.ndim != 4 or x.shape[:2] != (1, 3) or not np.issubdtype(x.dtype, np.floating) or 0 in x.shape:
        raise RefstyleError(f"{path}: --x must be a float 1×3×H×W array in network layout, not {x.dtype} {x.shape}")
    if not np.isfinite(x).all():
        raise RefstyleError(f"{path}: --x holds NaN or infinite values")
    return x


def gradcheck(args):
    weights = None
    if args.weights == "generated":
        widths = tuple(args.widths)
        if len(widths) != 5:
            raise RefstyleError("--widths takes five filter counts, one per block")
        weights = generate_weights(args.arch or "vgg19", widths=widths, seed=args.seed)
    settings = run_settings(args)
    net = run_network(args, settings, weights, dtype="float64")
    rng = np.random.default_rng(args.seed)
    size = args.size
    photo = load_image(args.content) if args.content else rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
    art = load_image(args.style) if args.style else rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
    photo, artworks = sized_inputs(photo, [art], size, args.style_scale)
    objective = build_objective(net, photo, artworks, settings)
    x = white_noise(photo.shape[:2], args.seed + 1, "float64", net.image)
    print(f"gradcheck: {net!r}, {settings.convention} losses, content {','.join(settings.content_layers)} "
          f"style {','.join(settings.style_layers)}, image {photo.shape[0]}×{photo.shape[1]}")
    report = check_gradient(objective, x, coords=args.coords, directions=args.directions, seed=args.seed,
                            tol=args.tol)
    print(report.format(args.tol))
    return 1 if report.verdict(args.tol) == "FAIL" else 0


def compare(args):
    if args.plot is not None:
        check_writable(args.plot, args.force, suffix=".png")
    result = compare_files(args.a, args.b, args.tol, plot=args.plot)
    print(f"A = {args.a}\nB = {args.b}")
    print(result.format())
    if args.plot is not None:
        print(f"wrote {args.plot}")
    return 1 if result.failed else 0


FLOAT32_TOL = 1e-4  # a tolerance that float32 numbers meet


def diagnose(args):
    blend = args.style_blend
    if blend is not None and len(blend) != len(args.styles):
        raise RefstyleError(f"{len(args.styles)} style images but {len(blend)} --style-blend weights")
    blend = None if blend is None else [v / sum(blend) for v in blend]
    if args.output is not None:
        check_writable(args.output, args.force, suffix=".json")
    theirs = read_gradient_file(args.theirs, required=DIAGNOSE_KEYS)
    check_gradient_arrays(args.theirs, theirs)
    weights = load_weights(args.weights, arch=args.arch, input=args.weights_input, fold=False)
    x = theirs["x"]
    photo, artworks = sized_inputs(load_image(args.content), [load_image(s) for s in args.styles], None,
                                   args.style_scale, x.shape[2:])
    bar = {}  # {what: its Progress}: one bar for the networks passed through, then one for the fits

    def progress(what, done, total):
        if what not in bar:
            for b in bar.values():
                b.close()
            bar.clear()
            bar[what] = Progress(total, label=f"diagnose: {what} ", unit=what)
        bar[what].total = total
        bar[what].update(done)

    try:
        result = diagnose_file(weights, photo, artworks, theirs, arch=args.arch, tol=args.tol, blend=blend,
                               progress=progress)  # x's image space: the one THEIRS states (read_gradient_file checked it)
    finally:
        for b in bar.values():
            b.close()  # ends a progress line on a terminal, so that what follows starts on a line of its own
    print(f"THEIRS = {args.theirs}")
    print(result.format(args.tol))
    if not result.fits and args.tol < FLOAT32_TOL and np.asarray(theirs["grad"]).dtype == np.float32:
        print(f"note: THEIRS holds float32 numbers, which agree to about 1e-5: try --tol {FLOAT32_TOL:g}")
    if result.record is not None and not result.fits and args.output is not None:
        print(f"{args.output} not written: the record above does not reproduce THEIRS to --tol {args.tol:g}")
    if result.record is not None and result.fits and args.output is not None:
        write_json(args.output, result.record)
        same = "".join(f" {option} {value}" for option, value in (
            ("--weights-input", args.weights_input), ("--style-scale", args.style_scale if args.style_scale != 1 else None),
            ("--style-blend", ",".join(f"{v:g}" for v in args.style_blend) if args.style_blend else None)) if value)
        print(f"wrote {args.output}: with X.npy THEIRS's x (numpy.save('X.npy', numpy.load('{args.theirs}')['x'])), "
              f"refstyle grad {args.content} {' '.join(args.styles)} --weights {args.weights}{same} "
              f"--convention {args.output} --x X.npy --dtype float64 -o OURS.npz, then refstyle compare OURS.npz "
              f"{args.theirs}")
    return 0 if result.fits else 1


# ---------------------------------------------------------------------------
# transfer, reconstruct: synthesis runs
# ---------------------------------------------------------------------------


def _check_outputs(args):
    """Every file a transfer or reconstruction writes, checked before any work: ``(stem, total iterations)``."""
    stem, _ = os.path.splitext(args.output)
    total = args.iters * args.scales
    snapshots = [f"{stem}.{n:05d}.png" for n in range(args.save_every, total + 1, args.save_every)] if args.save_every else []
    check_writable(args.output, args.force, suffix=".png")
    for path in [stem + ".losses.csv"] + snapshots:  # every other file this run writes
        check_writable(path, args.force)
    return stem, total


def _synthesis_run(args, photo, artworks, kind, outputs):
    """Shared by transfer and reconstruct: run, show progress, write the image, its log and metadata.

    ``outputs``: :func:`_check_outputs`'s, checked before the images were read.
    """
    stem, total = outputs
    settings = run_settings(args, kind)
    check_run_memory(settings, None if photo is None else photo.shape[:2], [a.shape[:2] for a in artworks],
                     arch=args.arch or "vgg19", dtype=args.dtype, kernels=device_default(args, "kernels"),
                     device=args.device)  # before the weights are read: nothing large is allocated yet
    net = run_network(args, settings)
    bar = Progress(total, label=f"{kind} ")
    log, done = [], [0]

    def on_step(step, e):
        done[0] += 1
        log.append((done[0], step.evaluations, round(step.seconds, 4), step.loss, e.loss_content, e.loss_style))
        bar.update(done[0], f"loss {step.loss:.4e} (content {e.loss_content:.3e}, style {e.loss_style:.3e})")
        if args.save_every and done[0] % args.save_every == 0:
            save_image(deprocess(step.x, net.image), f"{stem}.{done[0]:05d}.png")

    try:
        result = synthesize(net, photo, artworks, settings, callback=on_step)
    finally:
        bar.close()  # ends the progress line, so an error message starts on a line of its own
    with hold_stop_signals() as held:  # a further Ctrl-C or SIGTERM waits until the files are written
        weights_path = resolve_weights(args.weights)
        meta = {
            "refstyle": __version__, "command": kind, "weights": args.weights, "weights_sha256": file_sha256(weights_path),
            "arch": net.arch, "pooling": net.pooling, "dtype": net.dtype.name, "device": args.device, "kernels": net.kernels,
            "settings": settings._asdict(), "iterations": sum(r.iterations for r in result.results),
            "evaluations": sum(r.evaluations for r in result.results), "loss": result.results[-1].loss,
            "interrupted": result.results[-1].interrupted,
            "inputs": {"content": getattr(args, "content", None), "styles": getattr(args, "styles", None)},
        }
        save_image(result.rgb, args.output, text={"refstyle": json.dumps(meta, default=str)})
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["iteration", "evaluations", "seconds", "loss", "loss_content", "loss_style"])
        writer.writerows(log)
        with atomic_path(stem + ".losses.csv") as tmp:
            with open(tmp, "w", newline="") as f:
                f.write(buf.getvalue())
    first = log[0][3] if log else float("nan")
    if meta["interrupted"] or held:
        print(f"{stop_reason()} after {meta['iterations']} iterations: wrote the best image so far to "
              f"{os.path.abspath(args.output)}")
        return stop_status()
    print(f"wrote {os.path.abspath(args.output)} ({result.rgb.shape[0]}×{result.rgb.shape[1]}): loss {first:.4e} -> {meta['loss']:.4e} "
          f"in {meta['iterations']} iterations, {meta['evaluations']} evaluations; log {stem}.losses.csv")
    return 0


def transfer(args):
    outputs = _check_outputs(args)  # before the images are read
    photo = load_image(args.content)
    artworks = [load_image(a) for a in args.styles]
    return _synthesis_run(args, photo, artworks, "transfer", outputs)


def reconstruct(args):
    outputs = _check_outputs(args)
    image = load_image(args.image)
    if args.what == "content":
        return _synthesis_run(args, image, [], "content", outputs)
    return _synthesis_run(args, None, [image], "style", outputs)


# ---------------------------------------------------------------------------
# figure, explain
# ---------------------------------------------------------------------------


def _weights_summary(path):
    """The head of ``refstyle weights info PATH`` (format, input, normalisation, quantisation, architecture), as lines."""
    return [line for line in describe(path).splitlines() if not line.startswith((" ", "parameters:"))]


def figure(args):
    if args.list:
        for name in builtin_figures():
            grid = load_grid(name)
            print(f"{name:<14} {len(grid.row_labels)}×{len(grid.col_labels)}  {grid.title}")
        return 0
    if args.name is None or args.output is None:
        raise RefstyleError("give a figure name (or a grid .json file) and -o OUT.png; --list shows the figures")
    if args.weights is None:
        raise RefstyleError("give the VGG weights with --weights FILE")
    check_writable(args.output, args.force, suffix=".png")
    grid = load_grid(args.name)
    images = find_images(grid, args.images if args.images is not None else default_images_dir())
    weights_path = resolve_weights(args.weights)
    bar = [None]

    def progress(done, total, text):
        if bar[0] is None:
            bar[0] = Progress(total, label=f"{grid.name} cells ", unit="cells", start=done)
        bar[0].update(done, text)

    base = Settings(convention=args.convention, pooling=args.pooling, rounding=args.rounding).resolved()
    try:
        result = make_grid(
            grid, images, weights_path, arch=args.arch, base=base, dtype=args.dtype, device=args.device,
            size=args.size, iters=args.iters, seed=args.seed, jobs=args.jobs, scheduler=args.scheduler,
            cache_dir=args.cache, progress=progress, kernels=device_default(args, "kernels"),
            optimizer=DEVICE_DEFAULTS[args.device]["optimizer"], weights_input=args.weights_input,
            ratio_scale=args.ratio_scale,
        )
    finally:
        if bar[0] is not None:
            bar[0].close()
    arch = result.arch
    convention = "" if base.convention == "paper" else f"{get_convention(base.convention).name} convention, "
    caption = (f"refstyle {__version__} · weights {os.path.basename(weights_path)} ({arch}, {convention}{base.pooling} "
               f"pooling, {base.rounding}) · {args.size} px · {args.iters} L-BFGS iterations · seed {args.seed}"
               + (f" · every α/β shown × {args.ratio_scale:g}" if args.ratio_scale != 1 else ""))
    meta = {"refstyle": __version__, "command": "figure", "grid": grid.name, "weights": args.weights,
            "weights_sha256": file_sha256(weights_path), "arch": arch, "settings": base._asdict(), "size": args.size,
            "iters": args.iters, "seed": args.seed, "dtype": args.dtype, "device": args.device,
            "ratio_scale": args.ratio_scale, "weights_info": _weights_summary(weights_path),
            "cells": {f"{r},{c}": stats for (r, c), stats in sorted(result.stats.items())}}
    draw_grid(grid, result, args.output, caption, meta)
    print(f"wrote {os.path.abspath(args.output)}: {result.computed} cells computed, {result.cached} from the cache")
    return 0


def explain(args):
    settings = Settings(convention=args.convention, pooling=args.pooling, rounding=args.rounding,
                        content_layers=(args.layer,), style_layers=(args.layer,)).resolved()
    if args.weights is None:
        weights = generate_weights(args.arch or "vgg19", seed=args.seed)
        print(f"(no --weights: a small generated {args.arch or 'vgg19'} with random filters; give real weights "
              "to see real responses)")
    else:
        weights = args.weights
    net = build_network(weights, settings, arch=args.arch, dtype="float64", weights_input=args.weights_input)
    layer = tap_of(settings.convention, args.layer, net.arch)  # the convention's own name, as refstyle's tap
    rgb = resize_longer(load_image(args.image), args.size)
    check_size(rgb.shape[:2], [layer], net.arch)
    print(f"{net}, image {args.image} at {rgb.shape[0]}×{rgb.shape[1]}, layer {args.layer}"
          + (f" ({layer})" if layer != args.layer else ""))
    base = settings._replace(content_layers=None, style_layers=None)
    for line in explain_steps(net, rgb, layer, seed=args.seed, iters=args.iters, settings=base):
        print(line, flush=True)
    return 0


# ---------------------------------------------------------------------------
# weights: convert, normalize, fetch, list, info
# ---------------------------------------------------------------------------


def weights_convert(args):
    check_writable(args.output, args.force)
    weights = load_weights(args.input, arch=args.arch, input=args.weights_input)
    save_npz(weights, args.output)
    names = list(weights)
    print(f"wrote {args.output}: {weights.meta['arch']}, {len(names)} conv layers {names[0]}..{names[-1]}")
    if weights.meta.get("skipped"):
        print(f"  left out (not VGG convolutions): {', '.join(weights.meta['skipped'])}")
    if weights.meta.get("input_conversion"):
        print(f"  input convention: {weights.meta['input_conversion']['note']}")


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".gif")


def _image_files(folders):
    """The images of each folder in turn, and for ``skimage:`` scikit-image's photographs (``SKIMAGE_PHOTOS``)."""
    paths = [path for folder in folders for path in _folder_images(folder)]
    real = [os.path.realpath(p) for p in paths]
    repeated = sorted({p for p, r in zip(paths, real) if real.count(r) > 1})
    if repeated:
        raise UsageError(f"--images reaches {repeated[0]} twice: give each folder once")
    return paths


def _folder_images(folder):
    """The images of one folder, or for ``skimage:`` scikit-image's photographs."""
    if folder == SKIMAGE_PREFIX:
        return [resolve_image(SKIMAGE_PREFIX + name) for name in SKIMAGE_PHOTOS]
    if not os.path.isdir(folder):
        raise RefstyleError(f"{folder}: no such folder of images")
    paths = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))
    if not paths:
        raise RefstyleError(f"{folder}: no images in it ({', '.join(IMAGE_SUFFIXES)})")
    return paths


def _normalized_path(args):
    """Where ``weights normalize`` writes without OUT: ``<cache>/normalized/<weights>-<images>-<size>px-<pooling>.npz``."""
    stem = os.path.splitext(os.path.basename(os.fspath(args.input)))[0]
    images = "+".join("skimage" if folder == SKIMAGE_PREFIX else os.path.basename(os.path.normpath(folder))
                      for folder in args.images)
    folder = os.path.join(cache_dir(), "normalized")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f"{stem}-{images}-{args.size}px-{args.pooling}.npz")


def weights_normalize(args):
    output = _normalized_path(args) if args.output is None else args.output  # the options stay as they were given
    check_writable(output, args.force)
    paths = _image_files(args.images)
    weights = load_weights(args.input, arch=args.arch, input=args.weights_input)
    bar = Progress(len(paths), label="mean responses ", unit="images")
    try:
        result = normalize_over_images(weights, paths, size=args.size, pooling=args.pooling,
                                       on_image=lambda k: bar.update(k + 1, os.path.basename(paths[k])))
    finally:
        bar.close()
    save_npz(result.weights, output)
    dead = sum(len(v) for v in result.dead.values())
    print(f"wrote {output}: {weights.meta['arch']} normalised over {len(paths)} images at {args.size} px "
          f"({args.pooling} pooling)")
    for name, m in result.scales.items():
        alive = np.delete(m, result.dead.get(name, []))
        span = f"mean response {alive.min():.4g} .. {alive.max():.4g}" if alive.size else "no filter responds"
        print(f"  {name:<8} {span}"
              + (f"; {len(result.dead[name])} filters never respond, left alone: {result.dead[name]}" if name in result.dead else ""))
    if dead:
        print(f"{dead} filters never responded on these images and were left unscaled")


def weights_fetch(args):
    source = find_source(args.name)
    try:
        path = fetch(source, force=args.force, verify=not args.no_verify)
    except OSError as e:  # the cache cannot be written (full, read-only, a file in the way)
        raise RefstyleError(f"cannot write {source.name} into the cache ({e}): set $REFSTYLE_CACHE to a folder "
                            "you can write") from None
    print(f"{source.name}: {path} ({os.path.getsize(path):,} bytes, {source.arch}, {source.licence})")
    print(f"use it with --weights {source.name}")


def weights_list(args):
    print("known weights (weights/*.json; `refstyle weights fetch NAME` downloads one):")
    for row in list_sources():
        s = row.source
        state = "ready" if row.cached else "-"
        where = f"{row.note}: {row.path}" if row.note else str(row.path)
        print(f"  {s.name:<22} {s.arch:<6} {size_text(s.size):>17}  {state:<6} {where}")
    print(f"cache {cache_dir()} ($REFSTYLE_CACHE/weights):")
    rows = list_cache(digests=not args.quick)
    for e in rows:
        check = {True: "checked", False: "MISMATCH", None: ""}[e.verified]
        print(f"  {e.size:>14,}  {e.sha256 or '-':<64}  {check:<8} {e.path}" + (f"  ({e.note})" if e.note else ""))
    if not rows:
        print("  (empty)")


def weights_info(args):
    print(describe(args.file))
