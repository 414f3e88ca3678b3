r"""Images in and out, and Caffe's preprocessing (SPEC §1).

An image on disk becomes an RGB ``uint8`` array ``(H, W, 3)`` with :func:`load_image`;
:func:`preprocess` turns it into the network's input, a float ``1×3×H×W`` blob in BGR
order minus the ILSVRC mean pixel; :func:`deprocess` is its exact inverse, returning
floats (clipping to 0..255 and rounding happen only when a file is written, in
:func:`to_uint8`).
"""

import math
import os
import re
import warnings

import numpy as np

from ..backend import to_numpy
from ..errors import ImageError
from ..io import atomic_path
from ..nn.inputs import CAFFE_INPUT, MEAN_BGR, affine  # noqa: F401 (MEAN_BGR: the mean pixel, for callers)


def preprocess(rgb, dtype="float32", space=CAFFE_INPUT):
    r"""RGB 0..255 ``(H, W, 3)`` -> the network's input ``(1, 3, H, W)``: by default Caffe's, BGR minus the mean pixel.

    .. math:: x_{0,c,i,j} = s \, \mathrm{rgb}_{i,j,2-c} - \mu_c, \quad \mu = (103.939, 116.779, 123.68), \; s = 1

    Another image ``space`` (:mod:`refstyle.nn.inputs`: an implementation's own, such as
    neural-style's ×256 (:data:`~refstyle.nn.inputs.LUA_INPUT`) or torchvision's RGB 0..1)
    gives :math:`x_k = (s\, \mathrm{rgb}_{\pi(k)} - m_k)/\sigma_k`, :math:`s` = ``range[1]``/255.
    The arithmetic is done in float64 and the result cast to ``dtype`` once.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(f"preprocess takes an RGB image of shape (H, W, 3), not {rgb.shape}")
    t = affine(space)
    bgr = rgb[:, :, ::-1].astype(np.float64)
    x = np.stack([t.a[k] * bgr[:, :, i] + t.c[k] for k, i in enumerate(t.order)])
    return np.ascontiguousarray(x[None]).astype(dtype)


def deprocess(x, space=CAFFE_INPUT):
    r"""The network's input ``(1, 3, H, W)`` -> RGB floats ``(H, W, 3)``: the exact inverse of :func:`preprocess`.

    .. math:: \mathrm{rgb}_{i,j,c} = (x_{0,2-c,i,j} + \mu_{2-c}) / s

    (in ``space``: :math:`\mathrm{rgb}_{\pi(k)} = (\sigma_k x_k + m_k)/s`). No clipping or
    rounding: the result can lie outside 0..255 (see :func:`to_uint8`).
    """
    x = to_numpy(x)
    if x.ndim != 4 or x.shape[:2] != (1, 3):
        raise ImageError(f"deprocess takes a 1×3×H×W network input, not {x.shape}")
    t = affine(space)
    rgb = np.empty(x.shape[2:] + (3,))
    for k, i in enumerate(t.order):  # p_{π(k)} = (x_k − c_k)/a_k, BGR index i is RGB index 2 − i
        rgb[:, :, 2 - i] = (x[0, k].astype(np.float64) - t.c[k]) / t.a[k]
    return rgb


def white_noise(shape, seed, dtype="float32", space=CAFFE_INPUT):
    """A white-noise image of ``shape = (H, W)``, preprocessed: RGB uniform in 0..255 per pixel.

    The paper's starting point. Seeded, so a run is reproducible from its seed.
    """
    rng = np.random.default_rng(seed)
    return preprocess(rng.uniform(0.0, 255.0, (int(shape[0]), int(shape[1]), 3)), dtype, space)


def sized_inputs(content, styles, size=None, style_scale=1.0, shape=None):
    """The photograph and the artworks at the sizes a run uses.

    The photograph (RGB array) is resized so that its longer side is ``size``, or to
    exactly ``shape = (H, W)`` when given (the size of a given image x). Each artwork's
    longer side becomes the photograph's longer side times ``style_scale``, aspect ratio
    kept. An image already at its target size is not resampled.
    """
    if shape is not None:
        content = resize(content, shape)
    elif size is not None:
        content = resize_longer(content, size)
    if style_scale <= 0:
        raise ImageError(f"--style-scale must be positive, not {style_scale}")
    target = max(1, round_half_up(max(content.shape[:2]) * style_scale))
    return content, [resize_longer(a, target) for a in styles]


def to_uint8(rgb):
    """Clip to 0..255 and round to the nearest integer: the image a file can hold."""
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


SKIMAGE_PREFIX = "skimage:"
# scikit-image's photographs of natural scenes and textures (its data folder's other images are
# drawings, text, microscopy and test patterns): a stated, shipped set of images to normalise over.
SKIMAGE_PHOTOS = ("astronaut", "brick", "camera", "chelsea", "coffee", "grass", "gravel", "hubble_deep_field",
                  "motorcycle_left", "rocket")


def resolve_image(name):
    """An image path from a path or ``skimage:NAME``, an image of scikit-image's data folder.

    ``skimage:chelsea`` is ``<site-packages>/skimage/data/chelsea.png``: photographs and
    textures that a registry package ships, for demos and tests that need no other file.
    scikit-image is found, not imported.
    """
    import glob
    import importlib.util

    name = os.fspath(name)
    if not name.startswith(SKIMAGE_PREFIX) or os.path.exists(name):
        return name
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ImageError(f"{name}: the skimage: images come with scikit-image (pip install scikit-image)")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "data")
    stem = name[len(SKIMAGE_PREFIX) :]
    found = sorted(
        p for p in glob.glob(os.path.join(folder, glob.escape(stem) + ".*")) if p.endswith((".png", ".jpg", ".tif"))
    )
    if not found:
        names = sorted({os.path.splitext(f)[0] for f in os.listdir(folder) if f.endswith((".png", ".jpg"))})
        raise ImageError(f"{name}: scikit-image has no image {stem!r}; it has {', '.join(names)}")
    return found[0]


def load_image(path):
    """Read any image Pillow can read as RGB ``uint8`` ``(H, W, 3)``.

    ``path`` may also name an image of scikit-image's data folder (:func:`resolve_image`).
    The EXIF orientation is applied; grayscale becomes three equal channels; 16-bit
    grayscale is scaled to 8 bits; transparent (RGBA, LA, palette with transparency)
    images are composited over white.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = resolve_image(path)
    if not os.path.exists(path):
        raise ImageError(f"{path}: no such image file")
    if os.path.isdir(path):
        raise ImageError(f"{path}: is a folder, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # refused below, before any pixel is read
            im = Image.open(path)
        with im:
            im = ImageOps.exif_transpose(im)
            im.load()
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image that Pillow can read (PNG, JPEG, …)") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise _too_many_pixels(path, e, Image.MAX_IMAGE_PIXELS) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: a damaged or truncated image ({e})") from None
    return _to_rgb(im)


def _too_many_pixels(path, bomb, limit):
    """The error for an image over Pillow's decompression-bomb ``limit``, with its pixel count and the limit."""
    found = re.search(r"\d+", str(bomb))  # Pillow's "Image size (N pixels) exceeds limit of M pixels ..."
    pixels = f"{int(found.group()):,} pixels" if found else "too many pixels"
    return ImageError(
        f"{path}: declares {pixels}, over the {limit:,} that refstyle reads (Pillow's guard against decompression "
        "bombs); downscale it first, e.g. to 4096 pixels on its longer side (the network runs at --size anyway)"
    )


def _to_rgb(im):
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        scale = 257.0 if a.max() > 255 else 1.0
        im = Image.fromarray(np.clip(np.rint(a / scale), 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def resize_longer(rgb, size):
    """Resize so that the longer side is ``size`` pixels, aspect ratio kept (Lanczos).

    An image whose longer side already is ``size`` is returned as it is, not resampled.
    The shorter side is rounded and at least 1.
    """
    size = int(size)
    if size < 1:
        raise ImageError(f"the size must be a positive number of pixels, not {size}")
    return resize(rgb, fit_longer(rgb.shape[:2], size))


def fit_longer(shape, side):
    """The ``(H, W)`` with longer side ``side`` and the aspect ratio of ``shape`` (rounded half up, at least 1)."""
    H, W = int(shape[0]), int(shape[1])
    if max(H, W) == side:
        return (H, W)
    f = side / max(H, W)
    return (max(1, round_half_up(H * f)), max(1, round_half_up(W * f)))


def round_half_up(v):
    """Round half up (Python's round() rounds 6.5 to 6)."""
    return int(math.floor(v + 0.5))


def resize(rgb, shape):
    """Resize an RGB ``uint8`` image to ``shape = (H, W)`` with Lanczos resampling."""
    from PIL import Image

    H, W = int(shape[0]), int(shape[1])
    if rgb.shape[:2] == (H, W):
        return rgb
    im = Image.fromarray(np.asarray(rgb, dtype=np.uint8), "RGB")
    return np.asarray(im.resize((W, H), Image.Resampling.LANCZOS))


def save_image(rgb, path, text=None):
    """Write an RGB image (floats are clipped and rounded) as PNG, atomically.

    ``text``: a dict stored as PNG text chunks (settings, seed, versions).
    """
    from PIL import Image, PngImagePlugin


    im = Image.fromarray(to_uint8(rgb) if rgb.dtype != np.uint8 else rgb, "RGB")
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(str(key), str(value))
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG", pnginfo=info)
