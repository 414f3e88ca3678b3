r"""Reader for PyTorch ``.pth``/``.pt`` state dicts, without torch.

``torch.save(model.state_dict(), path)`` writes a pickle of an ``OrderedDict``
``{key: tensor}`` whose tensors refer to *storages* (flat typed buffers) kept outside
the pickle. Two file layouts hold them:

- **zip** (``pth-zip``, PyTorch ≥ 1.6): a zip archive of uncompressed records under one
  folder ``<root>/`` (the file's stem, or ``archive``): ``data.pkl`` (the pickle),
  ``data/<key>`` (one storage's raw bytes each), ``byteorder`` (``little`` or ``big``;
  absent in old files, which are little-endian), ``version`` and a few others unused
  here. A storage is named in the pickle by the persistent id
  ``("storage", torch.<T>Storage, key, location, numel)``, ``numel`` in elements.
- **legacy** (``pth-legacy``, before 1.6, or ``_use_new_zipfile_serialization=False``):
  pickles one after another, the magic number ``0x1950a86a20f9469cfc6c``, the protocol
  version 1001, a dict of system information (``little_endian``), the main pickle,
  and a pickled list of storage keys; then for each key in that order an int64
  element count followed by the storage's raw bytes. The persistent id has a sixth
  entry, ``None`` or ``(view key, offset, size)`` for a view into a storage.

A tensor is the pickled call ``torch._utils._rebuild_tensor_v2(storage, offset, size,
stride, requires_grad, hooks[, metadata])``: element ``[i_0, i_1, ...]`` of the tensor is
element ``offset + Σ_d i_d·stride_d`` of its storage. Several tensors can share one
storage (views, slices, a transposed tensor saved as is).

A pickle is a program: loading one can call any function it names. This reader runs
the pickle with an unpickler that admits only the names a state dict is made of,
each mapped to a function of this module that builds NumPy arrays (``OrderedDict``,
``_rebuild_tensor_v2``, ``_rebuild_tensor``, ``_rebuild_parameter[_with_state]`` and
the ``torch.<T>Storage`` types); any other name stops the load with a
:class:`WeightsError` before anything is called. Tensors are built lazily: only the
convolutions' storages are read, so optimizer state or the classifier's 400 MB in a
checkpoint cost nothing.

The keys are named by :mod:`refstyle.formats.names` (torchvision's ``features.N``,
``conv1_1`` or ``block1_conv1``, under any prefix such as DataParallel's ``module.``);
checkpoints that wrap the state dict (``{"state_dict": ...}``, ``{"model": ...}``, ...)
are unwrapped. torchvision's ``vgg16_bn``/``vgg19_bn`` are read with each BatchNorm
folded into the convolution before it.
"""

import math
import os
import pickle
import struct
import zipfile
import zlib
from typing import NamedTuple

import numpy as np

from ..errors import WeightsError
from . import open_weights
from .names import INPUTS, name_keys

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# torch.nn.BatchNorm2d's default eps, which torchvision's vgg*_bn use; not stored in the file.
BN_EPS = 1e-5

# The most elements a tensor may have beyond those of its storage (repeated by stride 0).
MAX_REPEATED = 2**27

# Keys under which checkpoints commonly keep the state dict, tried in this order.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "params", "weights")

# torch storage types -> NumPy dtype (without byte order). bfloat16, which NumPy
# lacks, is read as its 16 bits and widened to float32 (it is float32's top half).
STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "BFloat16Storage": "bf16",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?", "UntypedStorage": "u1",
}  # fmt: skip


class _Damaged(Exception):
    """Raised while reading; turned into a WeightsError naming the file."""


class _Refused(Exception):
    """The pickle names a global that a state dict never needs."""

    def __init__(self, module, name):
        super().__init__(f"{module}.{name}")
        self.module, self.name = module, name


# ---------------------------------------------------------------------------
# What the unpickler builds: lazy references, resolved after the pickle is read
# ---------------------------------------------------------------------------


class _Storage(NamedTuple):
    key: str
    dtype: str  # a STORAGE_DTYPES value
    numel: int  # elements of the root storage
    view: tuple  # (offset, size) in elements of a legacy view into it, or None


class _Tensor(NamedTuple):
    storage: _Storage
    offset: int
    size: tuple
    stride: tuple
    neg: bool  # torch's lazy negation bit (metadata {"neg": True})


class _Dict(dict):
    """An unpickled ``OrderedDict``; its pickled attributes (``_metadata``) are dropped."""

    def __setstate__(self, state):
        pass


def _ints(value, what):
    if not isinstance(value, (tuple, list)) or not all(type(v) is int and v >= 0 for v in value):
        raise _Damaged(f"a tensor's {what} {value!r} is not a list of non-negative integers")
    return tuple(value)


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    """``torch._utils._rebuild_tensor[_v2]``: a :class:`_Tensor`, checked to lie inside its storage."""
    if not isinstance(storage, _Storage):
        raise _Damaged(f"a tensor built on {type(storage).__name__}, not on a storage")
    if type(offset) is not int or offset < 0:
        raise _Damaged(f"a tensor at storage offset {offset!r}")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise _Damaged(f"a tensor of size {size} with strides {stride}")
    extent = storage.view[1] if storage.view is not None else storage.numel
    if 0 not in size and offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) >= extent:
        raise _Damaged(f"a tensor of size {size}, strides {stride}, offset {offset} reaches past its {extent} elements")
    metadata = dict(metadata or {})
    neg = bool(metadata.pop("neg", False))
    if any(metadata.values()):
        raise _Damaged(f"a tensor with flags {metadata} (complex conjugation is not read)")
    return _Tensor(storage, offset, size, stride, neg)


def _rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
    """``torch._utils._rebuild_parameter[_with_state]``: the parameter's tensor."""
    if not isinstance(data, _Tensor):
        raise _Damaged(f"a parameter holding {type(data).__name__}, not a tensor")
    return data


class _Admitted:
    """What the unpickler hands out for an admitted global: a callable that cannot be changed.

    Not the function itself, so that the pickle's ``BUILD`` opcode, which sets
    attributes, cannot reach a function or a class of refstyle.
    """

    __slots__ = ("call", "name")

    def __init__(self, name, call):
        self.name, self.call = name, call

    def __call__(self, *args):
        if self.call is None:
            raise _Damaged(f"the pickle calls {self.name}, which is a storage type")
        return self.call(*args)

    def __setstate__(self, state):
        raise _Damaged(f"the pickle sets attributes of {self.name}")


_ADMITTED = {
    ("collections", "OrderedDict"): _Dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    """An unpickler that admits only what a state dict is made of (see the module's docstring).

    ``storages`` collects ``{key: (dtype, numel)}`` of every storage the pickle names.
    """

    def __init__(self, file, legacy):
        super().__init__(file, encoding="utf-8")
        self.legacy = legacy
        self.storages = {}

    def find_class(self, module, name):
        if module == "torch" and name.endswith("Storage"):
            if name not in STORAGE_DTYPES:
                raise WeightsError(
                    f"tensors of type torch.{name}, which refstyle does not read (it reads float32, float16, "
                    "float64 and bfloat16 weights)"
                )
            return _Admitted(f"torch.{name}", None)
        if (module, name) == ("torch.storage", "UntypedStorage"):
            return _Admitted("torch.UntypedStorage", None)
        call = _ADMITTED.get((module, name))
        if call is None:
            raise _Refused(module, name)
        return _Admitted(f"{module}.{name}", call)

    def persistent_load(self, pid):
        fields = 6 if self.legacy else 5
        if not isinstance(pid, tuple) or len(pid) != fields or _text(pid[0]) != "storage":
            raise _Damaged(f"an unknown persistent id {pid!r}")
        kind, key, numel = pid[1], _text(pid[2]), pid[4]
        if not isinstance(kind, _Admitted) or kind.call is not None or not isinstance(key, str):
            raise _Damaged(f"a storage id {pid!r} that does not name a storage type and a key")
        if type(numel) is not int or numel < 0:
            raise _Damaged(f"storage {key} of {numel!r} elements")
        dtype = STORAGE_DTYPES[kind.name.rpartition(".")[2]]
        if self.storages.setdefault(key, (dtype, numel)) != (dtype, numel):
            raise _Damaged(f"storage {key} named with two types or sizes")
        view = None
        if self.legacy and pid[5] is not None:
            _view_key, offset, size = pid[5]
            if type(offset) is not int or type(size) is not int or offset < 0 or size < 0 or offset + size > numel:
                raise _Damaged(f"a view of {size!r} elements at {offset!r} into storage {key} of {numel}")
            view = (offset, size)
        return _Storage(key, dtype, numel, view)


def _text(value):
    return value.decode("ascii") if isinstance(value, bytes) else value


# ---------------------------------------------------------------------------
# Reading storages and tensors
# ---------------------------------------------------------------------------


def _numpy_dtype(dtype, byteorder):
    code = "u2" if dtype == "bf16" else dtype
    return np.dtype(code).newbyteorder("<" if byteorder == "little" else ">")


class _Arrays:
    """Turns :class:`_Tensor` references into NumPy arrays, reading each storage once.

    ``read(key, nbytes)`` returns a storage's bytes (checking that it has ``nbytes``).
    """

    def __init__(self, read, byteorder):
        self.read, self.byteorder = read, byteorder
        self.cache = {}

    def storage(self, ref):
        """The storage (or legacy view) as a 1-D array in the file's byte order."""
        if ref.key not in self.cache:
            dtype = _numpy_dtype(ref.dtype, self.byteorder)
            self.cache[ref.key] = np.frombuffer(self.read(ref.key, ref.numel * dtype.itemsize), dtype=dtype)
        flat = self.cache[ref.key]
        if ref.view is not None:
            flat = flat[ref.view[0] : ref.view[0] + ref.view[1]]
        return flat

    def tensor(self, t):
        r"""The tensor's elements ``flat[offset + Σ_d i_d·stride_d]``, copied to a native array.

        bfloat16 becomes float32 (its 16 bits are float32's upper half). A tensor may
        repeat its storage's elements (stride 0, as ``expand`` makes) but not swell past
        ``MAX_REPEATED`` elements from a smaller storage.
        """
        flat = self.storage(t.storage)
        if math.prod(t.size) > max(flat.size, MAX_REPEATED):
            raise _Damaged(f"a tensor of size {t.size} from a storage of {flat.size} elements")
        if 0 in t.size:
            a = np.zeros(t.size, flat.dtype)
        else:
            strides = tuple(s * flat.itemsize for s in t.stride)
            a = np.lib.stride_tricks.as_strided(flat[t.offset :], shape=t.size, strides=strides, writeable=False)
        a = a.astype(a.dtype.newbyteorder("="), copy=True)  # a contiguous, native-order copy
        if t.storage.dtype == "bf16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        return -a if t.neg else a


# ---------------------------------------------------------------------------
# The two layouts
# ---------------------------------------------------------------------------


def _zip_root(zf):
    """The folder ``<root>`` that holds ``data.pkl``; refuses TorchScript archives."""
    roots = [n[: -len("/data.pkl")] for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(roots) != 1:
        raise _Damaged(f"a zip file with {len(roots)} <name>/data.pkl records, where a checkpoint has one")
    root = roots[0]
    if any(n.startswith(f"{root}/code/") or n == f"{root}/constants.pkl" for n in zf.namelist()):
        raise WeightsError(
            "a TorchScript archive (torch.jit.save), which holds code: save the model's weights with "
            "torch.save(model.state_dict(), path) and give that file"
        )
    return root


def _load_zip(f, size):
    """Unpickle a zip checkpoint: ``(object, _Arrays)``."""
    zf = zipfile.ZipFile(f)
    root = _zip_root(zf)
    names = set(zf.namelist())
    byteorder = zf.read(f"{root}/byteorder").decode("ascii") if f"{root}/byteorder" in names else "little"
    if byteorder not in ("little", "big"):
        raise _Damaged(f"byte order {byteorder!r}")
    with zf.open(f"{root}/data.pkl") as pkl:
        unpickler = _Unpickler(pkl, legacy=False)
        obj = unpickler.load()

    def read(key, nbytes):
        name = f"{root}/data/{key}"
        if name not in names:
            raise _Damaged(f"storage {key} is missing ({name})")
        if zf.getinfo(name).file_size != nbytes:
            raise _Damaged(f"storage {key} has {zf.getinfo(name).file_size} bytes, its tensors need {nbytes}")
        return zf.read(name)

    return obj, _Arrays(read, byteorder)


def _load_legacy(f, size):
    """Unpickle a legacy checkpoint: ``(object, _Arrays)``; storages are found, not yet read."""

    def header():
        return _Unpickler(f, legacy=True).load()

    if header() != MAGIC_NUMBER:
        raise _Damaged("it does not start with PyTorch's magic number")
    version = header()
    if version != PROTOCOL_VERSION:
        raise _Damaged(f"protocol version {version!r}, not {PROTOCOL_VERSION}")
    sys_info = header()
    if not isinstance(sys_info, dict):
        raise _Damaged("no system information after the protocol version")
    byteorder = "little" if sys_info.get("little_endian", True) else "big"
    unpickler = _Unpickler(f, legacy=True)
    obj = unpickler.load()
    keys = header()
    if not isinstance(keys, list):
        raise _Damaged("no list of storage keys after the main pickle")
    at, pos = {}, f.tell()
    for key in keys:
        if key not in unpickler.storages:
            raise _Damaged(f"storage {key!r} is listed but no tensor names it")
        dtype, numel = unpickler.storages[key]
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            raise _Damaged(f"truncated at byte {pos}, before storage {key}")
        (count,) = struct.unpack("<q" if byteorder == "little" else ">q", head)
        if count != numel:
            raise _Damaged(f"storage {key} holds {count} elements, its tensors say {numel}")
        at[key] = pos + 8
        pos += 8 + numel * _numpy_dtype(dtype, byteorder).itemsize
        if pos > size:
            raise _Damaged(f"truncated: storage {key} ends at byte {pos} of {size}")

    def read(key, nbytes):
        if key not in at:
            raise _Damaged(f"storage {key} is named but not stored")
        f.seek(at[key])
        return f.read(nbytes)

    return obj, _Arrays(read, byteorder)


def pth_format(path):
    """``"pth-zip"``, ``"pth-legacy"`` or None: what a file's first bytes say it is.

    A zip is a PyTorch checkpoint only when it has a ``<name>/data.pkl`` record
    (refstyle's ``.npz`` is a zip too).
    """
    with open(path, "rb") as f:
        head = f.read(32)
        if head.startswith(b"PK\x03\x04"):
            try:
                f.seek(0)
                names = zipfile.ZipFile(f).namelist()
            except (zipfile.BadZipFile, OSError, ValueError):
                return "pth-zip" if b"/data.pkl" in head else None
            return "pth-zip" if any(n.endswith("/data.pkl") and n.count("/") == 1 for n in names) else None
    magic = MAGIC_NUMBER.to_bytes(10, "little")
    return "pth-legacy" if head.startswith(b"\x80") and b"\x8a\x0a" + magic in head else None


# ---------------------------------------------------------------------------
# From the unpickled object to Caffe-named (W, b)
# ---------------------------------------------------------------------------


def _state_dict(obj, trail=()):
    """The ``{key: tensor}`` dict in ``obj``, unwrapping ``WRAPPER_KEYS``: ``(dict, trail of keys)``."""
    if not isinstance(obj, dict):
        raise WeightsError(f"it holds a {type(obj).__name__}, not a state dict (a dict of tensors)")
    if any(isinstance(key, str) and isinstance(v, _Tensor) for key, v in obj.items()):
        return obj, trail
    for key in WRAPPER_KEYS:
        if isinstance(obj.get(key), dict):
            return _state_dict(obj[key], (*trail, key))
    keys = ", ".join(map(repr, list(obj)[:8])) + (", ..." if len(obj) > 8 else "")
    raise WeightsError(f"a dict without tensors (keys {keys}) and none of {', '.join(WRAPPER_KEYS)} inside")


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


def _conv(name, roles, tensors):
    """``(W, b)`` of one convolution, float32, from its keys by role (BatchNorm folded in)."""
    if "W" not in roles:
        raise WeightsError(f"{name} has {', '.join(roles.values())} but no weight")
    W = tensors(roles["W"])
    if W.ndim != 4 or W.shape[2:] != (3, 3) or W.shape[1] < 1:
        raise WeightsError(f"{roles['W']} ({name}) has shape {W.shape}, not that of 3×3 filters (out, in, 3, 3)")
    if W.dtype.kind != "f":
        raise WeightsError(f"{roles['W']} ({name}) holds {W.dtype} numbers, not floating point")
    b = tensors(roles["b"]) if "b" in roles else np.zeros(W.shape[0], W.dtype)
    if b.shape != (W.shape[0],):
        raise WeightsError(f"{roles.get('b')} ({name}) has shape {b.shape}, its filters {W.shape}")
    bn = [role for role in ("gamma", "beta", "mean", "var") if role in roles]
    if bn:
        if len(bn) != 4:
            raise WeightsError(
                f"the BatchNorm after {name} lacks {', '.join({'gamma', 'beta', 'mean', 'var'} - set(bn))}"
            )
        W, b = fold_batchnorm(W, b, *(tensors(roles[r]).reshape(-1) for r in ("gamma", "beta", "mean", "var")))
    return np.ascontiguousarray(W, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32)


def _layers(state, arrays):
    """``({caffe name: (W, b)}, info)`` from a state dict of :class:`_Tensor` references."""
    tensor_keys = [key for key, v in state.items() if isinstance(key, str) and isinstance(v, _Tensor)]
    named = set(tensor_keys)
    others = [key for key in state if key not in named]
    naming = name_keys(tensor_keys)
    by_layer = {}
    for key, (name, role) in naming.names.items():
        by_layer.setdefault(name, {})[role] = key
    layers = {}
    for name in sorted(by_layer, key=lambda n: (int(n[4]), int(n[6]))):
        layers[name] = _conv(name, by_layer[name], lambda key: arrays.tensor(state[key]))
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
    _Damaged, pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
    OverflowError, UnicodeDecodeError, struct.error, zipfile.BadZipFile, zlib.error, OSError,
)  # fmt: skip


def read_pth(path):
    r"""Read the 3×3 convolutions of a PyTorch state dict: ``({caffe name: (W, b)}, info)``.

    ``W`` is float32 ``(out, in, 3, 3)`` and ``b`` float32 ``(out,)``, in network order
    (``conv1_1``, ``conv1_2``, ``conv2_1``, ...). Keys outside the conv stack (the
    classifier, ``num_batches_tracked``, optimizer state) are not read. ``info`` says:

    - ``format``: ``"pth-zip"`` or ``"pth-legacy"``;
    - ``naming``: ``"torchvision"``, ``"caffe"`` or ``"keras"`` (:mod:`~refstyle.formats.names`);
    - ``input``: the input convention the weights expect (``TORCHVISION_INPUT`` or
      ``CAFFE_INPUT``; :func:`~refstyle.formats.names.to_caffe_input` folds the first
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
            obj, arrays = (_load_zip if kind == "pth-zip" else _load_legacy)(f, size)
            state, trail = _state_dict(obj)
            layers, info = _layers(state, arrays)
        except _Refused as e:
            raise WeightsError(
                f"{path}: refusing to load: the pickle asks for {e}, which a weights file never needs; "
                "a .pth file can run code, so refstyle reads only state dicts, saved with "
                "torch.save(model.state_dict(), path); only load files from sources you trust"
            ) from None
        except WeightsError as e:
            raise WeightsError(f"{path}: {e}") from None
        except _READ_ERRORS as e:
            what = str(e) if isinstance(e, _Damaged) else f"{type(e).__name__}: {e}"
            raise WeightsError(
                f"{path}: a damaged or unreadable PyTorch {kind} checkpoint ({what}); "
                "download or save the weights again"
            ) from None
    info = dict(format=kind, **info)
    if trail:
        info["wrapper"] = "/".join(trail)
    return layers, info
