r"""Image synthesis: style transfer and the paper's Fig. 1 reconstructions, end to end.

:func:`synthesize` is what ``refstyle transfer`` and ``refstyle reconstruct`` run: it
sizes the images (the photograph's longer side is ``size``; each artwork's is the
photograph's times ``style_scale``), computes the targets :math:`P^l` and :math:`A^l`,
builds the objective, picks the start image, and runs the optimiser, optionally
coarse to fine over several scales. The parts are small functions that can be run alone.
"""

import warnings
from typing import NamedTuple

import numpy as np

from ..backend import to_numpy
from ..errors import ImageError, RefstyleError, RefstyleWarning
from ..nn.arch import ARCHS, is_conv, split_tap
from ..nn.inputs import CAFFE_INPUT
from .conventions import tap_of
from .images import deprocess, fit_longer, load_image, preprocess, resize, round_half_up, white_noise
from .objective import build_objective
from .optimize import minimize_image
from .settings import INITS, Settings


def _position(tap, arch):
    return ARCHS[arch].index(split_tap(tap)[0])


def minimum_size(layers, arch="vgg19"):
    """The smallest image side at which every requested layer (or tap, ``conv2_2:pre``) still has at least 2×2 positions.

    With Caffe's ceil-mode pooling any size reaches every layer, but a layer with
    fewer than 2×2 positions carries no spatial structure; after ``k`` poolings a side
    of ``2^k + 1`` keeps 2.
    """
    poolings = max((sum(not is_conv(n) for n in ARCHS[arch][: _position(name, arch)]) for name in layers), default=0)
    return 2**poolings + 1 if poolings else 1


def check_size(shape, layers, arch, what="the image", fix="use a larger --size or a shallower layer"):
    """Raise a clear error when an image is too small for the deepest requested layer."""
    need = minimum_size(layers, arch)
    if min(shape) < need:
        deepest = max(layers, key=lambda tap: _position(tap, arch))
        raise ImageError(
            f"{what} is {shape[0]}×{shape[1]} pixels, too small for {deepest}: it needs at least {need} pixels "
            f"on each side ({fix})"
        )


def run_shapes(settings, arch, reference, artworks=(), photo=True):
    """The ``(H, W)`` of a run's image and of each artwork at every scale, each checked for the layers it reaches.

    ``reference``: the ``(H, W)`` of the photograph (``photo``), else of the first
    artwork; ``artworks``: the artworks' ``(H, W)``. The image's longer side is
    ``settings.size`` at the finest scale (halved at each coarser one), the artworks'
    that times ``style_scale``, aspect ratios kept: what :func:`synthesize` resizes them
    to. Raises :func:`check_size`'s error, naming the layer and the fix, for the first
    image too small, so that a run (or a figure's every cell) is refused before any work.
    """
    s = settings.resolved()
    taps = lambda names: [tap_of(s.convention, name, arch) for name in names]  # noqa: E731 (the convention's names)
    layers = taps(s.content_layers if photo and s.alpha else []) + taps(s.style_layers if artworks and s.beta else [])
    shapes = []
    for k, side in enumerate(scale_sizes(s.size, s.scales)):
        shape = fit_longer(reference, side)
        fix = "use a larger --size or a shallower layer"
        if k < s.scales - 1:
            fix = f"at the coarsest of --scales {s.scales}; use fewer --scales or a larger --size"
        check_size(shape, layers, arch, fix=fix)
        a_side = max(1, round_half_up(max(shape) * s.style_scale))
        a_shapes = [fit_longer(a, a_side) for a in artworks]
        if s.beta:
            for a in a_shapes:
                check_size(a, taps(s.style_layers), arch, "the artwork", fix + ", or a larger --style-scale")
        shapes.append((shape, a_shapes))
    return shapes


def scale_sizes(size, scales):
    """The longer side at each of ``scales`` coarse-to-fine scales: ``size / 2^(scales-1-k)``, rounded half up."""
    return [max(1, round_half_up(size / 2 ** (scales - 1 - k))) for k in range(scales)]


def upsample(x, shape):
    """Resize a network-layout image to ``shape = (H, W)`` (bilinear, per channel, in network units)."""
    from PIL import Image

    x = to_numpy(x)
    out = np.empty((1, 3) + tuple(shape), dtype=x.dtype)
    for c in range(3):
        im = Image.fromarray(x[0, c].astype(np.float32), "F")
        out[0, c] = np.asarray(im.resize((shape[1], shape[0]), Image.Resampling.BILINEAR))
    return out


def initial_image(init, photo, artwork, shape, seed, dtype, space=CAFFE_INPUT):
    """The start image: white noise (the paper's), the photograph, the artwork, or a file."""
    if init == "noise":
        return white_noise(shape, seed, dtype, space)
    if init == "content":
        rgb = photo
    elif init == "style":
        rgb = artwork
    else:
        rgb = load_image(init)
    return preprocess(resize(rgb, shape), dtype, space)


def preserve_color(result_rgb, photo_rgb):
    r"""Keep the photograph's colours: the result's luminance with the photograph's chroma (YIQ).

    .. math:: Y = 0.299 R + 0.587 G + 0.114 B

    A post-hoc variant of Gatys et al.'s "Preserving color in neural artistic style
    transfer" (2016): the transfer itself is unchanged; its output's Y channel is
    combined with the photograph's I and Q channels.
    """
    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    yiq_result = result_rgb.astype(np.float64) @ to_yiq.T
    yiq_photo = photo_rgb.astype(np.float64) @ to_yiq.T
    yiq = np.concatenate([yiq_result[..., :1], yiq_photo[..., 1:]], axis=-1)
    return yiq @ np.linalg.inv(to_yiq).T


class Synthesis(NamedTuple):
    rgb: object  # the result, RGB floats (H, W, 3), not yet clipped
    x: object  # the result in network layout
    results: list  # one optimize.Result per scale
    photo: object  # the photograph at the final size (RGB uint8), or None
    artworks: list  # the artworks at the final size


def synthesize(net, photo, artworks, settings=Settings(), callback=None, on_scale=None):
    """Run a synthesis: transfer (photograph and artworks), or a reconstruction (one of them).

    ``photo``: RGB uint8 image or None (texture synthesis); ``artworks``: list of RGB
    images (empty for a content reconstruction). Settings with ``alpha = 0`` or
    ``beta = 0`` drop the content or the style term. ``callback(step)`` is passed to
    the optimiser; ``on_scale(k, shape)`` is told when scale ``k`` starts.
    """
    s = settings.resolved()
    alpha = s.alpha if photo is not None else 0.0
    beta = s.beta if artworks else 0.0
    if alpha == 0 and beta == 0:
        raise RefstyleError("nothing to synthesise: give a photograph with alpha > 0, or artworks with beta > 0")
    s = s._replace(alpha=alpha, beta=beta)
    if s.init not in INITS and not isinstance(s.init, str):
        raise RefstyleError(f"--init must be one of {', '.join(INITS)} or an image file")
    if s.init == "content" and photo is None:
        raise RefstyleError("--init content starts from the photograph, but there is none here: use noise, style or a file")
    if s.init == "style" and not artworks:
        raise RefstyleError("--init style starts from the artwork, but there is none here: use noise, content or a file")
    if s.scales < 1:
        raise RefstyleError(f"--scales must be at least 1, not {s.scales}")
    if s.style_scale <= 0:
        raise ImageError(f"--style-scale must be positive, not {s.style_scale}")
    reference = photo if photo is not None else artworks[0]
    sizes = run_shapes(s, net.arch, reference.shape[:2], [a.shape[:2] for a in artworks], photo is not None)
    space = net.image  # the space the image is optimised in (build_objective checks it is the convention's)
    x, results = None, []
    for k, (shape, a_shapes) in enumerate(sizes):
        p_rgb = resize(photo, shape) if photo is not None else None
        a_rgbs = [resize(a, a_shape) for a, a_shape in zip(artworks, a_shapes)]
        if on_scale is not None:
            on_scale(k, shape)
        objective = build_objective(net, p_rgb, a_rgbs, s)
        if x is None:
            x0 = initial_image(s.init, p_rgb, a_rgbs[0] if a_rgbs else None, shape, s.seed, net.dtype, space)
        else:
            x0 = upsample(x, shape)
        options = dict(s.optimizer_options or {})
        if s.optimizer == "lbfgs" and s.bounds and "bounds" not in options:
            src = preprocess(p_rgb if p_rgb is not None else a_rgbs[0], "float64", space)
            options["bounds"] = (float(src.min()), float(src.max()))
        last = []

        def evaluate(x, objective=objective):
            e = objective.evaluate(x)
            last[:] = [e]
            return e.loss, e.grad

        step_callback = None if callback is None else (lambda step: callback(step, last[0]))
        result = minimize_image(evaluate, net.xp.asarray(x0), s.iters, s.optimizer, callback=step_callback, **options)
        results.append(result)
        if result.x is None:  # stopped before the first evaluation finished: no image to keep
            raise KeyboardInterrupt
        x = result.x
        if result.interrupted:
            break
        tolerances = any(options.get(name) for name in ("ftol", "gtol", "rtol"))  # stops the user asked for
        if result.iterations < s.iters and not tolerances:  # else only the iteration cap ends a run
            warnings.warn(f"{s.optimizer} stopped after {result.iterations} of {s.iters} iterations"
                          + (f" at scale {k + 1} of {len(sizes)}" if len(sizes) > 1 else "")
                          + f": {result.message}; the image is the best one it found", RefstyleWarning, stacklevel=2)
    rgb = deprocess(x, space)
    if s.preserve_color and photo is not None:
        rgb = preserve_color(rgb, p_rgb)
    return Synthesis(rgb, x, results, p_rgb, a_rgbs)
