r"""Which convention an implementation computes, read from its numbers: fit a record to a gradient file.

An implementation's gradient file (:mod:`refstyle.app.validate`'s layout: ``x``, ``loss``,
``grad``, and where its writer gave them the responses ``F:<layer>`` and the per-layer
gradients ``dF:<layer>``) is explained in two steps.

1. **The network, a discrete choice.** The space :math:`\vec x` is in (stated by the file,
   or each of :data:`~refstyle.nn.inputs.INPUTS` taking ``x``'s numbers as they are), what
   ``conv1_1`` is fed, the pooling, its rounding and whether the filters run transposed:
   few enough to enumerate (:func:`networks`). With ``F:`` arrays each network is tested by
   one forward pass at ``x``; a response is explained by the layer's output after its ReLU
   or before it. Where no network explains a layer, that is the first layer nothing fits.
2. **The loss, linear unknowns.** Given a network, every term an implementation can
   build is the paper's term times an unknown factor: :math:`\tfrac12\sum(F-P)^2` and
   :math:`E_l` (the Gram target made with :math:`g = 1` or :math:`g \propto M_l`) at every
   layer, before and after its ReLU, and each total-variation form, in the loss or in the
   gradient only (:func:`loss_columns`). The file's loss, gradient and ``dF:`` arrays are a
   non-negative combination of them: a least-squares problem whose solution holds
   :math:`\alpha`, :math:`\beta`, the layer weights and the normalisations together
   (:func:`fit_columns`). A few thousand gradient entries pin it.

The factors are then written as a record: the nearest built-in one (the fewest changes)
with its fields changed where the fit says so (:func:`record_from_fit`), each change a
sentence (``style weights ∝ 1 : 3 : 5 : 9 : 13, where gatys-pytorch has weights 1e3/N^2``;
per-layer factors a power of :math:`N_l` and :math:`M_l` apart from the record's are a
normalisation: ``style divided by N^3, where neural-style-pt divides by N^2``). Where the
record's own factor for a term fits the file as well, it is kept (:func:`snap`), and the
fitted numbers are written as short as still fit (:func:`tidy`). Choices the file
cannot decide (floor or ceil at a size where they agree, the Gram divisor when the artwork
has x's size) are named, not guessed: the record takes the built-in's value.
"""

import copy
import json
import math
from typing import NamedTuple

import numpy as np

from ..errors import RefstyleError
from ..nn.arch import ARCHS, PRE_RELU, conv_layers, split_tap
from ..nn.inputs import INPUTS, InputStage, describe_input, is_input_convention, name_of_input
from ..nn.layers import POOLINGS, ROUNDINGS, pool_output_size
from ..nn.vgg import FILTERS, VGG
from .build import build_network
from .conventions import CONVENTIONS, RECORDS_DIR, FEED_IMAGE, parse_record, tap_of
from .expressions import Expression
from .images import preprocess
from .losses import TV_FORMS, content_loss, gram, style_loss
from .objective import build_objective
from .settings import Settings

KERNELS = "fast"  # the networks' kernels: the same numbers as the reference ones (to float64 rounding here), sooner
TOL = 1e-6  # a fit reproduces the file to this relative error (the yardstick's float64 agreement is ~1e-12)
GRAM_DIVIDE_BY = {0: "1", 1: "M"}  # each image's Gram matrix divided by M_l^p: p and the record's gram_divide_by
GRAM_POWERS = tuple(GRAM_DIVIDE_BY)  # (N_l in the divisor only scales the term: a factor the fit finds)
MAX_ROWS = 4096  # gradient entries used in the least squares (all are used to measure the residual)
NEGLIGIBLE = 1e-10  # a fitted term contributing less than this (relative) is left out
ROUGH = 1e-4  # a least-squares residual below which a fit is pruned of the terms it does without
SPARE = 1e-9  # a term is done without when leaving it out keeps the residual under this (or twice what it was)


def relative_error(a, b):
    """``max|a − b| / max(|a|, |b|)`` (0 for two zero arrays): the one measure of agreement, compare's and the fit's."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.max(np.abs(a)), np.max(np.abs(b))) if a.size else 0.0
    return float(np.max(np.abs(a - b)) / scale) if scale > 0 else 0.0


def _tap_text(tap):
    layer, pre = split_tap(tap)
    return f"{layer} before its ReLU" if pre else layer


def _symbols(text):
    """A divisor as the sentences write it: ``M`` is ``M_l``, ``N`` is ``N_l``."""
    return text.replace("M", "M_l").replace("N", "N_l")


def _fmt(v):
    return f"{v:.6g}"


# --- 1. the networks ------------------------------------------------------------------------


class Network(NamedTuple):
    """One discrete choice: the space x is in, what conv1_1 is fed, the pooling, its rounding, the filters."""

    image: dict
    feed: dict
    pooling: str
    rounding: str
    filters: str

    def build(self, weights, arch):
        return VGG(weights, arch=arch, pooling=self.pooling, dtype="float64", rounding=self.rounding, kernels=KERNELS,
                   image=self.image, feed=self.feed, filters=self.filters)

    def text(self):
        return (f"x {describe_input(self.image)}, conv1_1 fed {describe_input(self.feed)}, {self.pooling} pooling "
                f"({self.rounding}), filters {self.filters}")


def networks(weights_input, stated=None):
    """Every :class:`Network` to try: x in the stated space (else in each named one), each distinct feed."""
    spaces = [dict(stated)] if stated is not None else [dict(s) for s in INPUTS.values()]
    out = []
    for image in spaces:
        feeds = []
        for f in [weights_input, image, *INPUTS.values()]:
            if not any(InputStage(f, g).identity for g in feeds):
                feeds.append(dict(f))
        for feed in feeds:
            for pooling in POOLINGS:
                for rounding in ROUNDINGS:
                    for filters in FILTERS:
                        out.append(Network(image, feed, pooling, rounding, filters))
    return out


def response_keys(theirs, arch):
    """The file's ``F:`` keys in network order, as ``[(key, layer)]`` (the layer without ``:pre``)."""
    order = list(conv_layers(arch))
    found = []
    for key in theirs:
        if key.startswith("F:"):
            layer, pre = split_tap(key[2:])
            if layer not in order:
                raise RefstyleError(f"the file's {key} names no convolution of {arch}: name responses as refstyle does "
                                    "(conv4_2, conv4_2:pre)")
            found.append((order.index(layer), pre, key, layer))
    return [(key, layer) for _, _, key, layer in sorted(found)]


class Match(NamedTuple):
    network: Network
    depth: int  # how many of the file's responses, in network order, it explains
    taps: dict  # {F: key: the tap that explains it}
    error: float  # the relative error at the first response it does not explain (0 when all)


def match_responses(net, x, theirs, keys, tol):
    """How far ``net`` explains the file's responses: ``(depth, {F: key: tap}, error at the first unexplained)``."""
    taps = [t for _, layer in keys for t in (layer, layer + PRE_RELU)]
    F, _ = net.forward(x, taps)
    found = {}
    for i, (key, layer) in enumerate(keys):
        want = np.asarray(theirs[key], np.float64)
        wanted_pre = split_tap(key[2:])[1]
        errors = {}
        for tap in ([layer + PRE_RELU] if wanted_pre else [layer, layer + PRE_RELU]):
            ours = np.asarray(F[tap], np.float64)
            errors[tap] = relative_error(ours, want) if ours.shape == want.shape else math.inf
        tap = min(errors, key=errors.get)
        if errors[tap] > tol:
            return i, found, errors[tap]
        found[key] = tap
    return len(keys), found, 0.0


# --- 2. the loss terms, and the least squares ---------------------------------------------------


class Column(NamedTuple):
    r"""One term an implementation can build: its value (0 for a term in the gradient only) and :math:`\partial/\partial x`.

    ``key``: ``("content", tap)``, ``("style", tap, p)`` (Gram matrices divided by :math:`M_l^p`;
    ``p`` None where the artworks have x's :math:`M_l` at that tap and it cannot matter), ``("tv", form, in_loss)``.
    ``dF``: the term's derivative at its own tap (None for TV).
    """

    key: tuple
    loss: float
    grad: np.ndarray
    dF: object = None


def loss_columns(net, x, photo, artworks, blend=None, only=None):
    """Every :class:`Column` at ``x`` on ``net``, the photograph and artworks preprocessed in its image space.

    ``only``: the taps to build terms at (default: every layer, after and before its ReLU).
    Returns the distinct columns, ``{tap: shape of F}`` (of every tap), the equivalences
    found (``[(kept key, proportional keys)]``) and all the columns.
    """
    taps = [t for layer in conv_layers(net.arch) if layer in net.layers for t in (layer, layer + PRE_RELU)]
    terms = taps if only is None else [t for t in taps if t in only]
    space = net.image
    P, _ = net.forward(preprocess(photo, "float64", space), taps)
    blend = [1.0 / len(artworks)] * len(artworks) if blend is None else blend
    F, cache = net.forward(x, taps)
    M_x = {t: F[t][0, 0].size for t in taps}
    grams, same_size = {p: {} for p in GRAM_POWERS}, dict.fromkeys(taps, True)
    for v, a in zip(blend, artworks):
        Fa, _ = net.forward(preprocess(a, "float64", space), taps)
        for t in taps:
            M_a = Fa[t][0, 0].size
            same_size[t] &= M_a == M_x[t]
            for p in GRAM_POWERS:
                term = gram(np.asarray(Fa[t], np.float64)) * (v * (M_x[t] / M_a) ** p)
                grams[p][t] = term if t not in grams[p] else grams[p][t] + term
    columns = []
    for t in terms:
        Ft = np.asarray(F[t], np.float64)
        L, dL = content_loss(Ft, np.asarray(P[t], np.float64))
        columns.append(Column(("content", t), float(L), net.backward({t: dL}, cache), dL))
        # where every artwork has x's M_l at t (the same size, or one that pools to it) the divisor cannot matter
        for p in [None] if same_size[t] else GRAM_POWERS:
            E, dE = style_loss(Ft, grams[0 if p is None else p][t])
            columns.append(Column(("style", t, p), float(E), net.backward({t: dE}, cache), dE))
    for form, tv in TV_FORMS.items():
        L, d = tv(np.asarray(x, np.float64))
        columns.append(Column(("tv", form, True), float(L), d))
        columns.append(Column(("tv", form, False), 0.0, d))
    columns = [c for c in columns if c.loss != 0 or np.any(c.grad)]
    kept, same = _distinct(columns)
    return kept, {t: tuple(F[t].shape) for t in taps}, same, columns


def _distinct(columns):
    """The columns without those proportional to an earlier one, and ``[(kept key, [equal keys])]``."""
    rows = _rows(columns[0].grad.size)
    V = np.stack([np.concatenate([[c.loss], c.grad.ravel()[rows]]) for c in columns])
    V = V / np.linalg.norm(V, axis=1, keepdims=True)
    equal = np.triu(V @ V.T > 1 - 1e-12, 1)
    kept, same, gone = [], [], set()
    for i, c in enumerate(columns):
        if i in gone:
            continue
        twins = [j for j in np.flatnonzero(equal[i]) if j not in gone]
        gone.update(twins)
        kept.append(c)
        if twins:
            same.append((c.key, [columns[j].key for j in twins]))
    return kept, same


class Fit(NamedTuple):
    coefficients: dict  # {column key: factor}
    loss: float  # the loss the fit reproduces
    grad: np.ndarray
    loss_error: float  # |L_fit − L| / |L|
    grad_error: float  # relative_error(grad_fit, grad)
    dF_errors: dict  # {dF: key: rel error} where the file has dF

    @property
    def error(self):
        return max(self.loss_error, self.grad_error, *self.dF_errors.values())


def _rows(n, seed=0):
    if n <= MAX_ROWS:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, MAX_ROWS, replace=False))


def fit_columns(columns, loss, grad, dF=None):
    r"""The non-negative factors of the columns that reproduce ``loss``, ``grad`` and ``dF`` (``{tap: array}``): a :class:`Fit`.

    With the columns' terms :math:`T_k` (each :math:`	frac12\sum(F^l-P^l)^2`, :math:`E_l`, or a
    total variation) the file's numbers are taken to be

    .. math:: \mathcal L = \sum_k c_k T_k,\quad rac{\partial\mathcal L}{\partialec x} = \sum_k c_k
              rac{\partial T_k}{\partialec x},\quad rac{\partial\mathcal L}{\partial F^l}\Big|_{own} =
              \sum_{k 	ext{ at } l} c_k rac{\partial T_k}{\partial F^l},\qquad c_k \ge 0,

    solved as :math:`\min_{c \ge 0}\lVert A c - b
Vert` (SciPy's ``nnls``) over the loss, up to
    :data:`MAX_ROWS` gradient entries and each ``dF``. Each block of rows (the loss, the
    gradient, each ``dF``) is scaled by its own largest value, so that each is matched
    relative to itself; the columns are scaled to unit norm. Terms the fit does as well
    without are then left out, and the rest solved again without the bound (the last digits).
    """
    from scipy.optimize import nnls  # only here, as optimize.py imports SciPy: not on every refstyle command

    dF = dF or {}
    rows = _rows(grad.size)
    blocks = [(np.array([loss]), [np.array([c.loss]) for c in columns])]
    blocks.append((grad.ravel()[rows], [c.grad.ravel()[rows] for c in columns]))
    for tap, d in dF.items():
        r = _rows(d.size)
        blocks.append((d.ravel()[r], [c.dF.ravel()[r] if c.dF is not None and c.key[1] == tap else np.zeros(r.size)
                                      for c in columns]))
    A, b = [], []
    for target, cols in blocks:
        s = np.max(np.abs(target))
        s = 1.0 / s if s > 0 else 1.0
        A.append(np.stack(cols, axis=1) * s)
        b.append(target * s)
    A, b = np.concatenate(A), np.concatenate(b)
    norms = np.linalg.norm(A, axis=0)
    norms[norms == 0] = 1.0
    A = A / norms
    coef, _ = nnls(A, b, maxiter=50 * A.shape[1])
    keep = [i for i, c in enumerate(coef) if c > NEGLIGIBLE * np.linalg.norm(b)]
    sol, residual = _refit(A, b, keep)
    if residual <= ROUGH:  # a fit: leave out each term the fit does as well without, smallest first
        for i in sorted(keep, key=lambda i: abs(sol[keep.index(i)])):
            fewer = [j for j in keep if j != i]
            s2, r2 = _refit(A, b, fewer)
            if r2 <= max(2 * residual, SPARE):
                keep, sol, residual = fewer, s2, r2
    coef = np.zeros(len(columns))
    coef[keep] = sol
    coef = coef / norms
    return _fit(columns, {columns[i].key: float(coef[i]) for i in keep}, loss, grad, dF)


def _refit(A, b, keep):
    """Least squares on the chosen columns (unbounded: the last digits), and its relative residual."""
    if not keep:
        return np.zeros(0), 1.0
    sol, *_ = np.linalg.lstsq(A[:, keep], b, rcond=None)
    return sol, float(np.linalg.norm(A[:, keep] @ sol - b) / np.linalg.norm(b))


def _fit(columns, coefficients, loss, grad, dF):
    L = sum(coefficients.get(c.key, 0.0) * c.loss for c in columns)
    g = np.zeros_like(grad)
    for c in columns:
        if c.key in coefficients:
            g = g + coefficients[c.key] * c.grad
    dF_errors = {}
    for tap, d in (dF or {}).items():
        ours = sum((coefficients[c.key] * c.dF for c in columns if c.key in coefficients and c.dF is not None
                    and c.key[1] == tap), np.zeros_like(d))
        dF_errors[tap] = relative_error(ours, d)
    loss_error = abs(L - loss) / abs(loss) if loss != 0 else abs(L)
    return Fit(coefficients, float(L), g, float(loss_error), relative_error(g, grad), dF_errors)


# --- 3. the factors as a record -----------------------------------------------------------------


def gram_power(c):
    """``p`` of a convention's Gram divisor ``g ∝ M_l^p``."""
    return round(math.log2(c.gram_scale(1, 2) / c.gram_scale(1, 1)))


def convention_coefficients(c, shapes, H, W, arch):
    """What a convention multiplies each column by, on a network whose responses have ``shapes``: ``{key: factor}``."""
    out = {}
    taps = [tap_of(c, n, arch) for n in c.content_layers]
    N = [shapes[t][1] for t in taps]
    for (t, w), n in zip(c.content_layer_weights(taps, N, arch).items(), N):
        if w != 0 and c.alpha != 0:
            out["content", t] = c.alpha * w * c.content_factor(n, math.prod(shapes[t][2:]), H, W)
    taps = [tap_of(c, n, arch) for n in c.style_layers]
    N = [shapes[t][1] for t in taps]
    for (t, w), n in zip(c.style_layer_weights(taps, N, arch).items(), N):
        if w != 0 and c.beta != 0:
            out["style", t, gram_power(c)] = c.beta * w * c.style_factor(n, math.prod(shapes[t][2:]), H, W)
    if c.tv_weight > 0:
        out["tv", c.tv, c.tv_in_loss] = c.tv_weight
    return out


def proportions(values, N=None):
    """``1 : 3 : 5 : 9 : 13``: values relative to the smallest, as whole numbers where they are; ``∝ 1/N_l²`` where so."""
    v = np.asarray(values, np.float64)
    base = np.min(v[v > 0]) if np.any(v > 0) else 1.0
    r = v / base
    if np.allclose(r, np.rint(r), rtol=0, atol=1e-6 * np.max(r)) and np.max(r) <= 1000:
        text = " : ".join(str(int(round(x))) for x in r)
    else:
        text = " : ".join(f"{x:.4g}" for x in r)
    if N is not None and len(set(N)) > 1:
        for q, name in ((-2, "1/N_l²"), (-1, "1/N_l"), (1, "N_l"), (2, "N_l²")):
            if np.allclose(v / np.asarray(N, np.float64) ** q, v[0] / N[0] ** q, rtol=1e-6):
                return f"{text} (∝ {name})"
    return text


def _rule(c, kind):
    rule = c.layer_weights if kind == "style" else c.content_weights
    if isinstance(rule, tuple):
        return f"weights {proportions(rule)}"
    if not {"N", "k"} & set(rule.text):
        return "equal weights"
    return f"weights {rule.text}"


def _uniform(values, tol=1e-6):
    v = np.asarray(values, np.float64)
    return v.size > 0 and np.allclose(v, v[0], rtol=tol, atol=0)


def _space_words(fitted, base, what):
    if InputStage(fitted, base).identity:
        return None
    if (fitted["channels"] == base["channels"] and "std" not in fitted and "std" not in base
            and InputStage({**fitted, "range": base["range"]}, base).identity
            or InputStage(fitted, {**base, "range": fitted["range"]}).identity):
        return f"{what} scaled by {fitted['range'][1]:g}, not {base['range'][1]:g}"
    return f"{what} {describe_input(fitted)}, where the record has {describe_input(base)}"


def _space_value(space):
    return name_of_input(space) or dict(space)


class Record(NamedTuple):
    data: dict  # the record, as JSON
    base: str  # the built-in record it departs from
    words: list  # each departure, a sentence
    weight: int  # how many fields depart


def record_from_fit(fit, network, shapes, H, W, arch, base, weights_input):
    """The record ``base`` with what the fit says: a :class:`Record` (``base``: a built-in :class:`Convention`)."""
    data = json.loads((RECORDS_DIR / f"{base.name}.json").read_text(encoding="utf-8"))
    for field in ("differences", "description", "source"):
        data.pop(field, None)
    data["name"] = f"{base.name}-fitted"
    words, weight = [], 0

    def depart(text, n=1):
        nonlocal weight
        words.append(text)
        weight += n

    image = base.image_space(weights_input)
    said = _space_words(network.image, image, "input")
    if said:
        data["image"] = _space_value(network.image)
        depart(said.replace("the record", base.name))
    feed = base.feed_space(weights_input) or weights_input
    as_is = base.feed == FEED_IMAGE and InputStage(network.image, network.feed).identity  # x fed as it is, as the record
    if not as_is and not InputStage(network.feed, feed).identity:
        data["feed"] = (FEED_IMAGE if InputStage(network.image, network.feed).identity
                        else None if InputStage(weights_input, network.feed).identity else _space_value(network.feed))
        depart(f"conv1_1 fed {describe_input(network.feed)}, where {base.name} feeds it {describe_input(feed)}")
    for field, value, text in (("pooling", network.pooling, "{} pooling, not {}"),
                               ("rounding", network.rounding, "pooling {}, not {}"),
                               ("filters", network.filters, "filters {}, not {}")):
        if value != getattr(base, field):
            data[field] = value
            depart(text.format(value, getattr(base, field)))
    ours = convention_coefficients(base, shapes, H, W, arch)
    coef = fit.coefficients
    # the content
    fitted = {k[1]: v for k, v in coef.items() if k[0] == "content"}
    theirs = {k[1]: v for k, v in ours.items() if k[0] == "content"}
    part = data.setdefault("content", {})
    _fit_term(data, part, "content", "alpha", fitted, theirs, base, shapes, H, W, arch, depart,
              f"no content term, where {base.name} has one at {', '.join(map(_tap_text, theirs))}")
    # the style: its Gram divisor first, which changes the factor of every layer
    fitted = {k[1]: (k[2], v) for k, v in coef.items() if k[0] == "style"}
    powers = {p for p, _ in fitted.values() if p is not None}
    part = data.setdefault("style", {})
    if len(powers) > 1:
        raise RefstyleError("the fit divides the Gram matrices of different layers differently: no record says so")
    if powers and powers != {gram_power(base)}:
        (p,) = powers
        part["gram_divide_by"] = GRAM_DIVIDE_BY[p]
        depart(f"each Gram matrix divided by {_symbols(GRAM_DIVIDE_BY[p])}, where {base.name} divides it by "
               f"{base.gram_divisor.text}")
    fitted = {t: v for t, (_, v) in fitted.items()}
    c = parse_record(data, "the fitted record")
    theirs = {k[1]: v for k, v in convention_coefficients(c, shapes, H, W, arch).items() if k[0] == "style"}
    _fit_term(data, part, "style", "beta", fitted, theirs, c, shapes, H, W, arch, depart,
              f"no style term, where {base.name} has one")
    # the total variation
    tv = {(k[1], k[2]): v for k, v in coef.items() if k[0] == "tv"}
    part = data.setdefault("tv", {})
    if len(tv) > 1:
        raise RefstyleError("the fit takes two forms of total variation at once: no record says so")
    if not tv and base.tv_weight > 0:
        part["weight"] = 0.0
        depart(f"no total variation, where {base.name} has {base.tv} × {_fmt(base.tv_weight)}")
    for (form, in_loss), w in tv.items():
        n = (form != base.tv) + (in_loss != base.tv_in_loss) + (abs(w / base.tv_weight - 1) > TOL if base.tv_weight
                                                                else 1)
        if n:
            part.update(form=form, weight=w, in_loss=in_loss)
            where = "in the loss" if in_loss else "in the gradient only"
            was = (f"{base.tv} × {_fmt(base.tv_weight)} {'in the loss' if base.tv_in_loss else 'in the gradient only'}"
                   if base.tv_weight > 0 else "none")
            depart(f"total variation {form} × {_fmt(w)} {where}, where {base.name} has {was}", n)
    for part in ("content", "style", "tv"):
        if not data.get(part, True):
            del data[part]
    data["description"] = f"{base.name} as refstyle diagnose fitted it" + (": " + "; ".join(words) if words else "")
    data["differences"] = list(words)
    parse_record(data, "the fitted record")
    return Record(data, base.name, words, weight)


POWERS = range(-3, 4)  # the exponents of N_l and M_l a normalisation is looked for with


def _power_law(r, shapes):
    """``(k, a, b)`` with ``r_l = k N_l^a M_l^b`` for every layer, the simplest such; None if there is none."""
    N = np.array([s[1] for s in shapes], np.float64)
    M = np.array([math.prod(s[2:]) for s in shapes], np.float64)
    for a, b in sorted(((a, b) for a in POWERS for b in POWERS if (a, b) != (0, 0)), key=lambda ab: abs(ab[0]) + abs(ab[1])):
        q = np.asarray(r) / (N**a * M**b)
        if _uniform(q):
            return float(q[0]), a, b
    return None


def _divided(text, a, b):
    r"""A divisor formula times :math:`N^{-a} M^{-b}`: merged where the formula is a monomial of N and M."""
    D = Expression(text, ("N", "M", "H", "W"))
    at = lambda n, m, h=3.0, w=5.0: D(N=n, M=m, H=h, W=w)  # noqa: E731
    c0 = at(1.0, 1.0)
    p, q = math.log2(at(2.0, 1.0) / c0), math.log2(at(1.0, 2.0) / c0)
    monomial = (p == round(p) and q == round(q) and at(1.0, 1.0, 7.0, 11.0) == c0
                and math.isclose(at(3.0, 5.0), c0 * 3**p * 5**q, rel_tol=1e-12))
    if not monomial:
        p, q, c0, head = 0, 0, 1.0, f"({text})"
    else:
        head = "" if c0 == 1 else _fmt(c0)
    up, down = [head] if head else [], []
    for symbol, e in (("N", round(p) - a), ("M", round(q) - b)):
        if e:
            (up if e > 0 else down).append(symbol if abs(e) == 1 else f"{symbol}^{abs(e)}")
    text = "*".join(up) or "1"
    return text + (f"/({'*'.join(down)})" if down else "")


def _fit_term(data, part, name, weight, fitted, theirs, record, shapes, H, W, arch, depart, missing):
    """One term of the record (content or style): its factors fitted (:func:`_fit_part`), or, where the fit
    has none of it but ``record`` has, its weight set to 0 and ``missing`` said."""
    if fitted:
        _fit_part(data, part, name, weight, fitted, theirs, record, shapes, H, W, arch, depart)
    elif theirs:
        data[weight] = 0.0
        depart(missing)


def _fit_part(data, part, kind, factor, fitted, theirs, c, shapes, H, W, arch, depart):
    """Write one term's layers, weights and ``alpha``/``beta`` into ``data``; say how they depart from ``c``."""
    symbol = "α" if kind == "content" else "β"
    old = getattr(c, factor)
    if set(fitted) == set(theirs):
        r = [fitted[t] / theirs[t] for t in theirs]
        law = (r[0], 0, 0) if _uniform(r) else _power_law(r, [shapes[t] for t in theirs])
        if law is not None:  # one factor, or a normalisation N_l^a M_l^b apart: the record's weights stay
            k, a, b = law
            if (a, b) != (0, 0):
                divisor = c.style_divisor if kind == "style" else c.content_divisor
                part["divide_by"] = _divided(divisor.text, a, b)
                depart(f"{kind} divided by {part['divide_by']}, where {c.name.removesuffix('-fitted')} divides by "
                       f"{divisor.text}")
            if abs(k - 1) > TOL:
                data[factor] = old * k
                depart(f"{kind} weight {symbol} = {_fmt(old * k)}, where {c.name.removesuffix('-fitted')} has "
                       f"{_fmt(old)}")
            return
    order = [t for t in shapes if t in fitted]
    if kind == "content":
        unit = {t: c.alpha * c.content_factor(shapes[t][1], math.prod(shapes[t][2:]), H, W) for t in order}
    else:
        unit = {t: c.beta * c.style_factor(shapes[t][1], math.prod(shapes[t][2:]), H, W) for t in order}
    w = [fitted[t] / unit[t] for t in order]
    name = c.name.removesuffix("-fitted")
    if set(fitted) != set(theirs):
        taps = lambda ts: ", ".join(map(_tap_text, ts))  # noqa: E731
        was = [t for t in shapes if t in theirs]
        added, removed = [t for t in order if t not in was], [t for t in was if t not in order]
        if not was:
            depart(f"a {kind} term at {taps(order)}, where {name} has none")
        elif added and removed:
            depart(f"{kind} at {taps(added)}, not {taps(removed)}")
        elif added:
            depart(f"{kind} also at {taps(added)}")
        else:
            depart(f"no {kind} term at {taps(removed)}")
        if not was:
            old = 1.0
    own = c.style_layers if kind == "style" else c.content_layers
    if set(fitted) == set(theirs) and len(own) == len(order):  # the record's layers, in its names and order
        taps = [tap_of(c, n, arch) for n in own]
        w = [w[order.index(t)] for t in taps]
        order = taps
    else:
        part["layers"] = order
    if kind == "style":
        part["normalise_weights"] = False
    if _uniform(w):
        data[factor] = old * w[0]
        part["weights"] = "1"
        if abs(w[0] - 1) > TOL and theirs:  # a term where the record has none is said above
            depart(f"{kind} weight {symbol} = {_fmt(old * w[0])}, where {name} has {_fmt(old)}")
        return
    part["weights"] = w
    if set(fitted) == set(theirs):
        depart(f"{kind} weights ∝ {proportions(w, [shapes[t][1] for t in order])}, where {name} has {_rule(c, kind)}")
    else:
        depart(f"{kind} weights ∝ {proportions(w, [shapes[t][1] for t in order])}", 0)


# --- 4. the whole diagnosis -----------------------------------------------------------------------


class Diagnosis(NamedTuple):
    record: dict  # the fitted record (None when nothing fits)
    base: str  # the nearest built-in record
    words: list  # how the record departs from it
    undecided: list  # what the file cannot decide, each a sentence
    loss_error: float  # of the record, evaluated as refstyle grad would
    grad_error: float
    fits: bool
    failure: str  # where nothing fits, why, and the first layer
    tried: str  # what was tried
    notes: list  # what was assumed (x's numbers taken as they are, ...)

    def format(self, tol=TOL):
        lines = []
        if self.fits and not self.words:
            lines.append(f"THEIRS is {self.base}: the built-in record reproduces it")
        elif self.record is not None:
            if not self.fits:
                lines.append(f"nothing fits: {self.failure}")
            lines.append(f"THEIRS is {self.base} with {len(self.words)} difference{'s' * (len(self.words) != 1)}:")
            lines += [f"  - {w}" for w in self.words]
        else:
            lines.append(f"nothing fits: {self.failure}")
            lines.append(f"tried: {self.tried}")
        if self.record is not None:
            lines.append(f"fit: the loss to {self.loss_error:.2e}, the gradient to {self.grad_error:.2e} "
                         f"(max relative error of the record, evaluated as refstyle grad does; tolerance {tol:g})")
        lines += [f"cannot decide: {u}" for u in self.undecided]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _their_dF(theirs, taps):
    """``{tap: dF}`` of the file's ``dF:`` arrays, each under the tap its response was explained by."""
    out = {}
    for key, v in theirs.items():
        if key.startswith("dF:"):
            tap = taps.get("F:" + key[3:], key[3:])
            out[tap] = np.asarray(v, np.float64)
    return out


def _differs(values):
    """The values of a list, once each, if there are several."""
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out if len(out) > 1 else None


def _key_text(key):
    if key[0] == "tv":
        return f"total variation {key[1]} {'in the loss' if key[2] else 'in the gradient only'}"
    return f"{key[0]} at {_tap_text(key[1])}" + (f" (Gram divided by M_l^{key[2]})" if key[0] == "style" and key[2] is not None else "")


def _undecided(nets, same, used):
    """Sentences for the choices the file cannot decide: between the networks that fit, and equal columns."""
    out = []
    for field, what in (("image", "the space of x"), ("feed", "what conv1_1 is fed"), ("pooling", "the pooling"),
                        ("rounding", "the pooling's rounding"), ("filters", "the filters' orientation")):
        values = _differs([json.dumps(getattr(n, field), sort_keys=True) for n in nets])
        if values:
            shown = [describe_input(json.loads(v)) if field in ("image", "feed") else json.loads(v) for v in values]
            hint = " (an odd size decides)" if field == "rounding" else ""
            out.append(f"{what}: {' and '.join(map(str, shown))} give the same numbers here{hint}")
    for key, twins in same:
        if key not in used:
            continue
        if key[0] == "style" and key[2] is None:
            continue  # said once below
        out.append(f"{' and '.join(_key_text(k) for k in [key, *twins])} give the same numbers here")
    style = [k for k in used if k[0] == "style"]
    if style and all(k[2] is None for k in style):
        out.append("the Gram divisor's dependence on M_l (1, M_l or N_l·M_l): the artworks have x's size here "
                   "(an artwork of another size decides)")
    return out


def _rounding_matters(sizes, arch):
    """Whether floor and ceil pooling give different sizes for any of these images (an odd side before a pooling)."""
    pools = sum(1 for name in ARCHS[arch] if name.startswith("pool"))
    for size in sizes:
        for n in size:
            for _ in range(pools):
                if pool_output_size(n) != n // 2:  # Caffe's ceil against floor
                    return True
                n //= 2
    return False


class Tried(NamedTuple):
    """A network that explains the file's responses, and the least-squares fit of the loss terms on it."""

    network: Network
    arch: str
    fit: Fit
    shapes: dict  # {tap: the shape of its response at x}
    same: list  # the terms that give the same numbers here
    columns: list  # every column, those proportional to another too (None where the fit is far off)
    dF: dict  # the file's dF, by tap


def snap(tried, coefficients, loss, grad, tol):
    r"""The fit with a record's own factors wherever they fit the file as well (within ``tol``).

    A term that is a small part of the loss (a content term :math:`10^{-7}` of a style-heavy
    loss) is pinned only loosely by the least squares, or left out; where the record's
    terms of that part (content, style, TV) reproduce the file too, the file cannot tell
    them apart and the record's are kept.
    ``coefficients``: :func:`convention_coefficients` of the record, on the same network.
    """
    fit = tried.fit
    present = {c.key for c in tried.columns}
    theirs = {}
    for key, v in coefficients.items():  # a style term whose Gram divisor cannot matter here has p None
        if key not in present and key[0] == "style":
            key = (*key[:2], None)
        theirs[key] = v
    for part in ("content", "style", "tv"):
        base = {k: v for k, v in theirs.items() if k[0] == part}
        if not set(base) <= present:
            continue
        trial = {**{k: v for k, v in fit.coefficients.items() if k[0] != part}, **base}
        snapped = _fit(tried.columns, trial, loss, grad, tried.dF)
        if snapped.error <= tol:
            fit = snapped
    return fit


def _try(candidates, weights, arch, x, loss, grad, theirs, photo, artworks, blend, sizes, tol, progress):
    """Fit every candidate network that explains the file's responses: a list of :class:`Tried`.

    A string instead: no network explains the responses, and where they stop being explained.
    Networks that differ only in a rounding these sizes cannot tell are fitted once.
    ``progress(what, done, total)`` is told of each network passed through and each fitted.
    """
    keys, matches = None, []
    for i, n in enumerate(candidates):  # one network at a time: each holds its own copy of the weights
        progress("networks", i, len(candidates))
        net = n.build(weights, arch)
        arch = net.arch
        keys = response_keys(theirs, arch) if keys is None else keys
        try:
            depth, taps, err = match_responses(net, x, theirs, keys, tol) if keys else (0, {}, 0.0)
        except RefstyleError:  # a size the network cannot take (pooling below 1 pixel)
            continue
        matches.append((n, Match(n, depth, taps, err)))
    progress("networks", len(candidates), len(candidates))
    if not matches:
        raise RefstyleError(f"no network takes x of {x.shape[2]}×{x.shape[3]}: it is too small for VGG's poolings")
    if keys:
        best = max(m.depth for _, m in matches)
        if best < len(keys):
            key, layer = keys[best]
            close = min((m for _, m in matches if m.depth == best), key=lambda m: m.error)
            where = (f"the responses are explained up to {keys[best - 1][0]}, but no network explains {key}" if best
                     else f"no network explains even the first response, {key}")
            return (f"{where} (the closest, {close.network.text()}, is off by {close.error:.2e} there): the weights "
                    f"or the network differ from {layer} on")
        matches = [(n, m) for n, m in matches if m.depth == len(keys)]
    matters = _rounding_matters(sizes, arch)
    key = lambda n: json.dumps(n._replace(rounding=ROUNDINGS[0]) if not matters else n, sort_keys=True)  # noqa: E731
    fitted, twins = {}, []  # {network: its best Tried so far}; networks fitted as their twin
    for n, m in matches:
        if key(n) in fitted or n in twins:
            twins.append(n)
            continue
        fitted[key(n)] = None
    todo = [(n, m) for n, m in matches if n not in twins]
    # the terms at the layers the file gives responses of (the bridge gives every layer the loss takes), then
    # after each ReLU at every layer, then before it too: each only where nothing has fitted yet
    post = {t for t in conv_layers(arch)}
    stages = ([lambda m: set(m.taps.values()) | set(_their_dF(theirs, m.taps))] if keys else []) + [
        lambda m: post, lambda m: None]
    done, total = 0, len(stages) * len(todo)
    for stage, filters in ((stage, f) for stage in stages for f in FILTERS):  # filters transposed second at each
        for n, m in todo:
            if n.filters != filters:
                continue
            progress("fits", done, total)
            done += 1
            if fitted[key(n)] is not None and fitted[key(n)].fit.error <= tol:
                continue
            net = n.build(weights, arch)
            try:
                net.forward(x, [conv_layers(arch)[-1]])
            except RefstyleError:  # pooled to nothing before the last layer: a size this network cannot take
                continue
            dF = _their_dF(theirs, m.taps)
            columns, shapes, same, every = loss_columns(net, x, photo, artworks, blend, stage(m))
            missing = [t for t in dF if t not in shapes]
            if missing:
                raise RefstyleError(f"the file's dF:{missing[0]} names no layer refstyle computes")
            fit = fit_columns(columns, loss, grad, dF)
            every = every if fit.error <= ROUGH else None  # a network that does not fit keeps no gradients (memory)
            if fitted[key(n)] is None or fit.error < fitted[key(n)].fit.error:
                fitted[key(n)] = Tried(n, arch, fit, shapes, same, every, dF)
        if any(t is not None and t.fit.error <= tol for t in fitted.values()):
            break
    progress("fits", done, done)  # the stages left are not needed
    return [fitted[key(n)]._replace(network=n) for n, _ in matches if fitted[key(n)] is not None]


def diagnose(weights, photo, artworks, theirs, stated=None, arch=None, tol=TOL, blend=None, progress=None):
    r"""Fit a convention record to an implementation's gradient file: a :class:`Diagnosis`.

    ``weights``: loaded (unfolded) weights; ``photo``, ``artworks``: RGB 0..255 at x's
    size and the sizes the implementation used; ``theirs``: the file's arrays (``x``,
    ``loss``, ``grad``, optional ``F:``/``dF:``), checked; ``stated``: the image space of
    ``x``, by default the one the file states (its key ``image``, JSON), else None: then each
    named space takes x's numbers as they are.
    ``progress(what, done, total)``: told of each candidate network passed through
    (``"networks"``) and each least-squares fit (``"fits"``; the last call has
    ``done == total``), for a long diagnosis (real weights without ``F:`` take a minute).
    """
    progress = progress or (lambda what, done, total: None)
    if stated is None and "image" in theirs:
        try:
            stated = json.loads(str(np.asarray(theirs["image"])))
        except ValueError:
            stated = None
        if not is_input_convention(stated):
            raise RefstyleError(f"the file's key image is no image space: {theirs['image']}")
    if arch is None:
        arch = getattr(weights, "meta", {}).get("arch")
    weights_input = dict(getattr(weights, "meta", {}).get("input") or INPUTS["caffe"])
    x = np.asarray(theirs["x"], np.float64)
    loss, grad = float(theirs["loss"]), np.asarray(theirs["grad"], np.float64)
    H, W = x.shape[2:]
    notes = []
    if stated is None:
        notes.append("the file states no image space (key image): x's numbers were taken as they are in each "
                     "candidate space")
    tried = (f"networks with x in {1 if stated is not None else len(INPUTS)} space(s), each feed, pooling "
             f"{'/'.join(POOLINGS)}, rounding {'/'.join(ROUNDINGS)}, filters {'/'.join(FILTERS)}; responses after or "
             f"before each ReLU; content and style terms at every layer (Gram divided by "
             f"{' or '.join(map(_symbols, GRAM_DIVIDE_BY.values()))}), each "
             f"total-variation form in the loss or the gradient only")
    sizes = [(H, W)] + [a.shape[:2] for a in artworks]
    found = _try(networks(weights_input, stated), weights, arch, x, loss, grad, theirs, photo, artworks, blend,
                 sizes, tol, progress)
    failure, fits = (found, []) if isinstance(found, str) else (None, found)
    if not isinstance(found, str) and not found:
        failure = f"every network pools x of {H}×{W} to nothing before its last layer: a larger x"
    arch = fits[0].arch if fits else arch
    good = [t for t in fits if t.fit.error <= tol]
    if not good and not fits:
        return Diagnosis(None, None, [], [], math.nan, math.nan, False, failure, tried, notes)
    if not good:
        closest = min(fits, key=lambda t: t.fit.error)
        net, fit = closest.network, closest.fit
        bad = [t for t, e in sorted(fit.dF_errors.items(), key=lambda te: _depth(te[0], arch)) if e > tol]
        if closest.columns is None:
            _, _, same, every = loss_columns(closest.network.build(weights, arch), x, photo, artworks, blend)
            closest = closest._replace(same=same, columns=every)
        alone = _culprit(closest, loss, grad, tol, arch)
        bad = [alone] if alone is not None else bad
        where = (f"the gradient at {bad[0]} (dF off by {fit.dF_errors[bad[0]]:.2e}) is no combination of the terms "
                 f"tried" if bad else "no combination of the terms tried gives the file's loss and gradient")
        failure = (f"{where}; the closest, on {net.text()}, leaves the loss off by {fit.loss_error:.2e} and the "
                   f"gradient by {fit.grad_error:.2e}")
        return Diagnosis(None, None, [], [], fit.loss_error, fit.grad_error, False, failure, tried, notes)
    best = None
    for t in good:
        net, shapes, same = t.network, t.shapes, t.same
        for base in CONVENTIONS.values():
            fit = snap(t, convention_coefficients(base, shapes, H, W, arch), loss, grad, tol)
            try:
                r = record_from_fit(fit, net, shapes, H, W, arch, base, weights_input)
            except RefstyleError:
                continue
            if best is None or r.weight < best[0].weight:
                best = (r, net, fit, same)
    if best is None:
        raise RefstyleError("the fit cannot be written as a record (two Gram divisors or two TV forms at once)")
    record, net, fit, same = best
    undecided = _undecided([t.network for t in good], same, set(fit.coefficients))
    if stated is None:
        notes.append(f"x's numbers fit {describe_input(net.image)}: state it in THEIRS (key image, or the bridge's "
                     f"image=) before refstyle compare")
    data, e = tidy(record.data, weights, photo, artworks, x, arch, loss, grad, tol)
    record = record._replace(data=data)
    fits = _errors(e, loss, grad) <= tol  # the record, evaluated as refstyle grad will, reproduces the file
    failure = None if fits else (f"the terms fit, but the record written from them, {record.base} with the changes "
                                 f"below, reproduces the file only to {_errors(e, loss, grad):.2e}")
    return Diagnosis(record.data, record.base, record.words, undecided, abs(e.loss - loss) / abs(loss) if loss else
                     abs(e.loss), relative_error(e.grad, grad), fits, failure, tried, notes)


def _culprit(tried, loss, grad, tol, arch):
    """The one layer whose dF, left out, lets everything else fit: the first such in network order, or None."""
    distinct = [c for c in tried.columns if not any(c.key in twins for _, twins in tried.same)]
    for tap in sorted(tried.dF, key=lambda t: _depth(t, arch)):
        rest = {t: d for t, d in tried.dF.items() if t != tap}
        if fit_columns(distinct, loss, grad, rest).error <= tol:
            return tap
    return None


def _rounded(data, digits):
    """The record with α, β, the TV weight and every listed layer weight rounded to ``digits`` significant digits."""
    r = lambda v: float(f"{v:.{digits}g}")  # noqa: E731
    out = copy.deepcopy(data)
    for field in ("alpha", "beta"):
        if isinstance(out.get(field), float):
            out[field] = r(out[field])
    for part in ("content", "style"):
        if isinstance(out.get(part, {}).get("weights"), list):
            out[part]["weights"] = [r(v) for v in out[part]["weights"]]
    if isinstance(out.get("tv", {}).get("weight"), float):
        out["tv"]["weight"] = r(out["tv"]["weight"])
    return out


def tidy(data, weights, photo, artworks, x, arch, loss, grad, tol):
    """The record with its fitted numbers as short as still fit (3, then 6 significant digits), and its evaluation."""
    for digits in (3, 6):
        tidied = _rounded(data, digits)
        e = evaluate_record(tidied, weights, photo, artworks, x, arch)
        if _errors(e, loss, grad) <= tol:
            return tidied, e
    return data, evaluate_record(data, weights, photo, artworks, x, arch)


def _errors(e, loss, grad):
    return max(abs(e.loss - loss) / abs(loss) if loss else abs(e.loss), relative_error(e.grad, grad))


def _depth(tap, arch):
    layer, pre = split_tap(tap)
    order = list(conv_layers(arch))
    return (order.index(layer) if layer in order else len(order), not pre)


def evaluate_record(data, weights, photo, artworks, x, arch=None):
    """One evaluation of a record at ``x`` (in its image space), as ``refstyle grad --convention`` makes it."""
    c = parse_record(copy.deepcopy(data), "the fitted record")
    settings = Settings(convention=c).resolved()
    net = build_network(weights, settings, arch=arch, dtype="float64")
    return build_objective(net, photo, artworks, settings).evaluate(np.asarray(x, np.float64))
