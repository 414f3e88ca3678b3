r"""How an implementation of the paper differs from it, as data: a convention record.

Every implementation computes the same two losses, but divides and weights them
differently (the Gram matrix divided by :math:`N_l M_l` or by :math:`M_l`, a mean instead
of a sum, per-layer weights of :math:`10^3/N_l^2`, the input scaled by 256 instead of
255), taps other layers, pools with other rounding, and optimises its image in another
space. A convention states all of that in a JSON record (``refstyle/paper/records/``
for the implementations refstyle knows, or a user's own file, ``--convention FILE``),
and refstyle reproduces that implementation's numbers exactly while computing only the
paper's losses (:mod:`refstyle.paper.losses`). With the symbols of
:mod:`refstyle.paper.expressions` and a record's ``divide_by`` formulas :math:`D`:

- content, one term per layer: :math:`\sum_{ij}(F^l - P^l)^2 / D_c`. The paper's
  :math:`L_\text{content} = \frac12\sum(F-P)^2` has :math:`D_c = 2`, so the objective
  multiplies the paper's term by :math:`2/D_c` (:meth:`Convention.content_factor`);
- style: each image's Gram matrix divided by :math:`g` (``gram_divide_by``, with that
  image's own :math:`M_l`), then :math:`\sum_{ij}(\hat G^l - \hat A^l)^2 / D_s`. The
  paper's :math:`E_l = \sum(G-A)^2/(4N_l^2M_l^2)` has :math:`g = 1`,
  :math:`D_s = 4N_l^2M_l^2`; the objective computes :math:`E_l` against the target
  :math:`g\hat A^l` and multiplies it by :math:`4N_l^2M_l^2/(g^2 D_s)`
  (:meth:`Convention.style_factor`);
- the total: :math:`\alpha \sum_l c_l\,(\text{content term}) + \beta \sum_l w_l\,(\text{style term})`
  (+ the total-variation term in the record's form), with the record's :math:`\alpha`,
  :math:`\beta`, content layer weights :math:`c_l` and style layer weights :math:`w_l`.

For example, jcjohnson's style term, the mean over the :math:`N_l^2` entries of
:math:`(G/N_lM_l - A/N_lM_l)^2`, has :math:`g = N_lM_l`, :math:`D_s = N_l^2`: the factor is
:math:`4/N_l^2`. ``docs/conventions.md`` has every record's table and the lines of code
each number comes from.

A record's fields (every one but ``name`` optional, the paper's value by default):

``name``, ``description``, ``source`` (where the implementation's code is: repository,
path, commit), ``differences`` (a list of sentences, each a difference from the paper and
the line it comes from);
``image``: the space :math:`\vec x` is optimised in, a name of :data:`refstyle.nn.inputs.INPUTS`
or ``{"channels", "range", "mean", "std"}``, whose ``mean`` may be ``"weights"`` (the
weights file's own mean pixel, as a MatConvNet file states it);
``feed``: what ``conv1_1`` is fed: ``null`` (the input the weights were trained on),
``"image"`` (:math:`\vec x` as it is, whatever the weights expect), or a space; the zero
padding is in that space;
``names``: how the implementation names layers (:data:`NAMINGS`); ``filters``: whether it runs
the weights' 3×3 filters as stored or transposed in space (:data:`FILTERS`); ``pooling``, ``rounding``;
``alpha``, ``beta``;
``content``: ``{"layers", "weights", "divide_by"}``; ``style``: ``{"layers", "weights",
"normalise_weights", "gram_divide_by", "divide_by"}``, where ``weights`` is a list (one per
layer) or a formula of ``N``, ``n``, ``k``;
``tv``: ``{"form", "weight", "in_loss"}`` with a form of :data:`refstyle.paper.losses.TV_FORMS`.
"""

import json
import math
import os
import re
from pathlib import Path
from typing import NamedTuple

from ..errors import RefstyleError
from ..nn.arch import PRE_RELU, conv_layers
from ..nn.inputs import INPUTS, affine, describe_input, is_input_convention, with_mean_pixel
from ..nn.layers import POOLINGS, ROUNDINGS
from ..nn.vgg import FILTERS
from .expressions import Expression
from .losses import TV_FORMS

# The paper's settings (SPEC §3), written once: the API, the command line and the figures take them from here.
PAPER_CONTENT_LAYERS = ("conv4_2",)
PAPER_STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
PAPER_RATIO = 1e-3  # alpha / beta of Fig. 2 B, C, D
PAPER_POOLING = "avg"
PAPER_SIZE = 512  # the longer side of the images, in pixels (the CVPR paper's 512×512)
PAPER_ITERS = 500  # L-BFGS iterations
PAPER_MAXCOR = 20  # L-BFGS history, as in the author's DeepTextures code

RECORDS_DIR = Path(__file__).resolve().parent / "records"  # the built-in records, shipped with the package
FROM_WEIGHTS = "weights"  # an image space's "mean": the weights file's own mean pixel

FEED_IMAGE = "image"  # a record's "feed": conv1_1 takes x as it is


# --- the implementations' layer names ---------------------------------------------------

_CAFFE_NAME = re.compile(r"^(relu|conv)([1-5])_([1-4])$")
_TORCH_NAME = re.compile(r"^(conv|relu)_(\d+)$")


def neural_style_names(name, arch):
    """neural-style's names (Lua and PyTorch), anishathalye's too: ``reluB_K``, after the ReLU, is refstyle's ``convB_K``.

    neural-style's ``convB_K`` is the output *before* the ReLU, but refstyle's ``convB_K`` is
    Caffe's, after it: that name keeps refstyle's meaning, and the output before the ReLU
    is written ``convB_K:pre``.
    """
    m = _CAFFE_NAME.match(name)
    if m is None or m.group(1) != "relu":
        return None
    return f"conv{m.group(2)}_{m.group(3)}"


def tutorial_names(name, arch):
    """The PyTorch tutorial's ``conv_i`` (before the ReLU) and ``relu_i`` (after it): the ``i``-th convolution, from 1."""
    m = _TORCH_NAME.match(name)
    convs = conv_layers(arch)
    if m is None or not 1 <= int(m.group(2)) <= len(convs):
        return None
    layer = convs[int(m.group(2)) - 1]
    return layer + PRE_RELU if m.group(1) == "conv" else layer


def gatys_names(name, arch):
    """The author's PyTorch notebook: ``rBK`` after the ReLU of ``convB_K`` (``r42`` is ``conv4_2``)."""
    m = re.match(r"^r([1-5])([1-4])$", name)
    return None if m is None else f"conv{m.group(1)}_{m.group(2)}"


def keras_names(name, arch):
    """Keras's ``blockB_convK``: a convolution with its ReLU built in (``activation="relu"``), refstyle's ``convB_K``."""
    m = re.match(r"^block([1-5])_conv([1-4])$", name)
    return None if m is None else f"conv{m.group(1)}_{m.group(2)}"


# A record's "names": how its implementation names the layers it taps ("caffe": as refstyle does).
NAMINGS = {"caffe": None, "neural-style": neural_style_names, "pytorch-tutorial": tutorial_names,
           "gatys": gatys_names, "keras": keras_names}


# --- the record --------------------------------------------------------------------------


class Convention(NamedTuple):
    """A convention record, checked and parsed (see the module docstring for each field)."""

    name: str
    description: str
    image: dict  # the space x is optimised in; its "mean" may be FROM_WEIGHTS
    feed: object  # None (the weights' own input), FEED_IMAGE, or a space
    names: str  # a key of NAMINGS
    pooling: str
    rounding: str
    alpha: float
    beta: float
    content_layers: tuple  # refstyle tap names or the implementation's own
    content_weights: object  # an Expression of N, n, k, or a tuple of numbers
    content_divisor: Expression  # D_c
    style_layers: tuple
    layer_weights: object  # an Expression of N, n, k, or a tuple of numbers
    normalise_weights: bool  # w_l divided by their sum
    gram_divisor: Expression  # g, of N and the image's own M
    style_divisor: Expression  # D_s
    tv: str  # a key of TV_FORMS
    tv_weight: float
    tv_in_loss: bool  # whether the reported loss includes the TV term (neural-style's Lua adds its gradient only)
    source: dict = None
    differences: tuple = ()
    path: str = None  # the file it was read from
    filters: str = "as-stored"  # a FILTERS: the weights' 3×3 filters as stored, or transposed in space

    def content_factor(self, N, M, H, W):
        r"""What the paper's :math:`\frac12\sum(F-P)^2` is multiplied by: :math:`2/D_c`."""
        return 2.0 / self.content_divisor(N=N, M=M, H=H, W=W)

    def gram_scale(self, N, M):
        """The divisor :math:`g` of an image's Gram matrix, with that image's own :math:`M_l`."""
        return self.gram_divisor(N=N, M=M)

    def style_factor(self, N, M, H, W):
        r"""What the paper's :math:`E_l` (against the target :math:`g\hat A`) is multiplied by: :math:`4N^2M^2/(g^2 D_s)`."""
        g = self.gram_scale(N, M)
        return 4.0 * N**2 * M**2 / (g**2 * self.style_divisor(N=N, M=M, H=H, W=W))

    def style_layer_weights(self, layers, N, arch="vgg19"):
        """``{layer: w_l}`` of the style layers (``N``: each one's filter count), by the record's rule or list.

        A list weights the record's own layers (compared as refstyle's taps on ``arch``); a
        layer it does not name weighs 1.
        """
        own = [tap_of(self, name, arch) for name in self.style_layers]
        return _layer_weights(self.layer_weights, layers, N, self.normalise_weights, own)

    def content_layer_weights(self, layers, N, arch="vgg19"):
        """``{layer: c_l}`` of the content layers (``N``: each one's filter count), as :meth:`style_layer_weights`."""
        own = [tap_of(self, name, arch) for name in self.content_layers]
        return _layer_weights(self.content_weights, layers, N, False, own)

    def image_space(self, weights_input=None):
        """The space x is optimised in, with a mean taken from the weights where the record says so."""
        return _resolve_mean(self.image, weights_input, self.name)

    def feed_space(self, weights_input=None):
        """What conv1_1 is fed: None (the weights' own input) or a space."""
        if self.feed is None:
            return None
        if self.feed == FEED_IMAGE:
            return self.image_space(weights_input)
        return _resolve_mean(self.feed, weights_input, self.name)


def _layer_weights(rule, layers, N, normalise, own):
    layers = list(layers)
    if isinstance(rule, Expression):
        weights = [rule(N=N[k], n=len(layers), k=k) for k in range(len(layers))]
    else:  # by the record's own layers; another layer weighs 1
        by_layer = dict(zip(own, rule))
        weights = [float(by_layer.get(name, 1.0)) for name in layers]
    if normalise:
        total = sum(weights)
        if not total > 0:
            raise RefstyleError(f"the layer weights {weights} sum to {total:g}: they cannot be normalised to sum 1")
        weights = [w / total for w in weights]
    return dict(zip(layers, weights))


def _resolve_mean(space, weights_input, name):
    space = dict(space)
    if space.get("mean") != FROM_WEIGHTS:
        return space
    if weights_input is None:
        raise RefstyleError(f"the convention {name} takes its mean pixel from the weights file: give the weights")
    if "std" in weights_input or "std" in space:
        raise RefstyleError(f"the convention {name} takes its mean pixel from weights whose input divides by a std: "
                            "state the image space's mean in the record")
    return with_mean_pixel(space, affine(weights_input).mean_pixel())


# The paper's values of every field: a record states only where its implementation differs.
PAPER = {
    "description": "",
    "image": "caffe",
    "feed": None,
    "names": "caffe",
    "filters": FILTERS[0],
    "pooling": PAPER_POOLING,
    "rounding": "ceil",
    "alpha": PAPER_RATIO,
    "beta": 1.0,
    "content": {"layers": list(PAPER_CONTENT_LAYERS), "weights": "1", "divide_by": "2"},
    "style": {"layers": list(PAPER_STYLE_LAYERS), "weights": "1/n", "normalise_weights": False,
              "gram_divide_by": "1", "divide_by": "4*N^2*M^2"},
    "tv": {"form": "squared", "weight": 0.0, "in_loss": True},
}
_TOP = set(PAPER) | {"name", "source", "differences"}


def _bad(where, field, expected, value):
    return RefstyleError(f"{where}: field {field!r}: expected {expected}, not {json.dumps(value, default=str)}")


def _number(where, field, v, positive=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise _bad(where, field, "a positive number" if positive else "a number ≥ 0", v)
    return float(v)


def _space(where, field, v, allow_feed=False):
    if allow_feed and (v is None or v == FEED_IMAGE):
        return v
    if isinstance(v, str) and v in INPUTS:
        return dict(INPUTS[v])
    if isinstance(v, dict) and v.get("mean") == FROM_WEIGHTS and is_input_convention({**v, "mean": [0, 0, 0]}):
        return dict(v)
    if is_input_convention(v):
        return dict(v)
    names = ", ".join(INPUTS) + (f", {FEED_IMAGE!r} or null" if allow_feed else "")
    raise _bad(where, field, f"one of {names}, or {{\"channels\": \"RGB\"|\"BGR\", \"range\": [0, R], "
               f"\"mean\": [m1, m2, m3] or \"weights\", optional \"std\": [s1, s2, s3]}}", v)


def _layers(where, field, v):
    if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v):
        raise _bad(where, field, "a list of layer names such as [\"conv4_2\"]", v)
    return tuple(v)


def _weights(where, field, v, n):
    if isinstance(v, list):
        if len(v) != n:
            raise _bad(where, field, f"{n} numbers (one per layer) or a formula of N, n, k", v)
        return tuple(_number(where, field, w) for w in v)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = repr(float(v))
    return Expression(v, ("N", "n", "k"), f"{where}: field {field!r}")


def _part(where, key, data, fields):
    part = data.get(key, {})
    if not isinstance(part, dict):
        raise _bad(where, key, "an object with " + ", ".join(fields), part)
    unknown = set(part) - set(fields)
    if unknown:
        raise RefstyleError(f"{where}: field {key!r} has unknown key(s) {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(fields)})")
    return {**PAPER[key], **part}


def parse_record(data, where="the convention record"):
    """A :class:`Convention` from a record (a dict, as read from JSON); one line naming the field if it is wrong."""
    if not isinstance(data, dict):
        raise RefstyleError(f"{where}: a convention record is a JSON object with at least a 'name'")
    unknown = set(data) - _TOP
    if unknown:
        raise RefstyleError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_TOP))})")
    name = data.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise _bad(where, "name", "a name of letters, digits, '.', '_' and '-'", name)
    d = {**PAPER, **data}
    for field, choices in (("pooling", POOLINGS), ("rounding", ROUNDINGS), ("names", tuple(NAMINGS)),
                           ("filters", FILTERS)):
        if d[field] not in choices:
            raise _bad(where, field, "one of " + ", ".join(map(repr, choices)), d[field])
    content = _part(where, "content", data, ("layers", "weights", "divide_by"))
    style = _part(where, "style", data, ("layers", "weights", "normalise_weights", "gram_divide_by", "divide_by"))
    tv = _part(where, "tv", data, ("form", "weight", "in_loss"))
    content_layers = _layers(where, "content.layers", content["layers"])
    style_layers = _layers(where, "style.layers", style["layers"])
    if tv["form"] not in TV_FORMS:
        raise _bad(where, "tv.form", "one of " + ", ".join(map(repr, TV_FORMS)), tv["form"])
    for field, v in (("style.normalise_weights", style["normalise_weights"]), ("tv.in_loss", tv["in_loss"])):
        if not isinstance(v, bool):
            raise _bad(where, field, "true or false", v)
    for field in ("description",):
        if not isinstance(d[field], str):
            raise _bad(where, field, "a string", d[field])
    if not isinstance(d.get("source") or {}, dict):
        raise _bad(where, "source", "an object (repository, path, commit)", d["source"])
    differences = d.get("differences") or []
    if not isinstance(differences, list) or not all(isinstance(s, str) for s in differences):
        raise _bad(where, "differences", "a list of sentences", differences)
    return Convention(
        name=name,
        description=d["description"],
        image=_space(where, "image", d["image"]),
        feed=_space(where, "feed", d["feed"], allow_feed=True),
        names=d["names"],
        filters=d["filters"],
        pooling=d["pooling"],
        rounding=d["rounding"],
        alpha=_number(where, "alpha", d["alpha"]),
        beta=_number(where, "beta", d["beta"]),
        content_layers=content_layers,
        content_weights=_weights(where, "content.weights", content["weights"], len(content_layers)),
        content_divisor=Expression(content["divide_by"], ("N", "M", "H", "W"), f"{where}: field 'content.divide_by'",
                                   "> 0"),
        style_layers=style_layers,
        layer_weights=_weights(where, "style.weights", style["weights"], len(style_layers)),
        normalise_weights=style["normalise_weights"],
        gram_divisor=Expression(style["gram_divide_by"], ("N", "M"), f"{where}: field 'style.gram_divide_by'", "> 0"),
        style_divisor=Expression(style["divide_by"], ("N", "M", "H", "W"), f"{where}: field 'style.divide_by'", "> 0"),
        tv=tv["form"],
        tv_weight=_number(where, "tv.weight", tv["weight"]),
        tv_in_loss=tv["in_loss"],
        source=d.get("source"),
        differences=tuple(differences),
    )


def read_record(path):
    """A :class:`Convention` from a JSON file; one clear line if it is missing, not JSON, or wrong."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise RefstyleError(f"{path}: no such convention file") from None
    except IsADirectoryError:
        raise RefstyleError(f"{path}: is a folder, not a convention .json file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RefstyleError(f"{path}: not a readable JSON convention record ({e})") from None
    return parse_record(data, path)._replace(path=path)


def _builtin():
    records = {}
    for path in sorted(RECORDS_DIR.glob("*.json")):
        c = read_record(path)
        if c.name != path.stem:
            raise RefstyleError(f"{path}: its name {c.name!r} is not its file name")
        records[c.name] = c._replace(path=None)  # a built-in record is known by its name
    return records


CONVENTIONS = _builtin()  # the built-in records, by name
if "paper" not in CONVENTIONS:  # an install without its package data
    raise ImportError(f"refstyle's convention records are missing from {RECORDS_DIR}: reinstall refstyle")
ALIASES = {"jcjohnson": "neural-style"}  # names that earlier versions used


def get_convention(name):
    """The :class:`Convention` of a built-in name, or read from a record file (a path); a clear error otherwise."""
    if isinstance(name, Convention):
        return name
    name = os.fspath(name)
    if name in CONVENTIONS or name in ALIASES:
        return CONVENTIONS[ALIASES.get(name, name)]
    if name.endswith(".json") or os.path.sep in name or os.path.exists(name):
        return read_record(name)
    raise RefstyleError(f"unknown convention {name!r}: choose one of {', '.join(CONVENTIONS)}, or give a record "
                        "file (NAME.json, see docs/conventions.md)")


def tap_of(convention, name, arch):
    """refstyle's tap for a layer name as refstyle (``conv4_2``, ``conv4_2:pre``) or the convention's implementation writes it."""
    convention = get_convention(convention)
    names = NAMINGS[convention.names]
    if names is not None:
        tap = names(name, arch)
        if tap is not None:
            return tap
    return name


def loss_weights(convention, alpha=None, beta=None, ratio=None):
    r"""The loss weights :math:`(\alpha, \beta)` of a run: those given, else the convention's.

    ``ratio`` :math:`= \alpha/\beta` sets :math:`\alpha` = ``ratio``, :math:`\beta = 1`
    (the paper's way of stating them) and excludes ``alpha`` and ``beta``. Every caller
    (the objective, the settings of a run, the command line) resolves them here.
    """
    convention = get_convention(convention)
    if ratio is not None:
        if alpha is not None or beta is not None:
            raise RefstyleError("give either --ratio or --alpha/--beta, not both")
        alpha, beta = ratio, 1.0
    alpha = convention.alpha if alpha is None else float(alpha)
    beta = convention.beta if beta is None else float(beta)
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not math.isfinite(value):
            raise RefstyleError(f"{name} must be a finite number, not {value}")
    return alpha, beta


def describe_convention(c):
    """A few lines: what a convention computes, in the paper's terms."""
    lines = [f"{c.name}: {c.description}" if c.description else c.name,
             f"  image x: {describe_input(c.image) if c.image.get('mean') != FROM_WEIGHTS else 'the weights mean'}",
             f"  content {', '.join(c.content_layers)}: Σ(F−P)² / ({c.content_divisor.text}), α = {c.alpha:g}",
             f"  style {', '.join(c.style_layers)}: G / ({c.gram_divisor.text}), Σ(Ĝ−Â)² / ({c.style_divisor.text}), "
             f"β = {c.beta:g}",
             f"  pooling {c.pooling} ({c.rounding}); TV {c.tv} × {c.tv_weight:g}"]
    return "\n".join(lines)
