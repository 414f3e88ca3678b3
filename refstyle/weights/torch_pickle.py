r"""PyTorch's ``torch.save`` files read without torch: a restricted unpickler, storages, the two layouts.

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

What the state dict's keys mean is :mod:`refstyle.weights.pth`'s business.

A hostile file must not cost more memory than an honest one of its size, nor crash the
reader. Before anything is read or built:

- the pickle's opcodes are scanned, not run, and objects nested deeper than
  ``MAX_NESTING`` are refused (hashing a tuple nested 100,000 deep overflows the C
  stack of CPython and kills the process);
- zip members must be stored uncompressed, as torch writes them (a deflated storage
  can swell a thousandfold: a zip bomb), lie within the file and have the size their
  storage's element count says;
- each tensor may not have more elements than its storage (no repeating one element
  by stride 0), and :mod:`refstyle.weights.pth` checks its shape against what its key
  calls for before its storage is read;
- the storages read add up to at most the file's size, and the tensors built to at
  most the storages' elements.
"""

import io
import math
import pickle
import pickletools
import reprlib
import struct
import zipfile
from typing import NamedTuple

import numpy as np

from .. import filekind
from ..errors import WeightsError

MAGIC_NUMBER = filekind.TORCH_LEGACY_MAGIC  # the legacy format's first pickle
PROTOCOL_VERSION = 1001

# How deep a pickle may nest objects (a state dict nests 5 or 6 deep).
MAX_NESTING = 100

# torch storage types -> NumPy dtype (without byte order). bfloat16, which NumPy
# lacks, is read as its 16 bits and widened to float32 (it is float32's top half).
STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "BFloat16Storage": "bf16",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?", "UntypedStorage": "u1",
}  # fmt: skip


class Damaged(Exception):
    """Raised while reading; turned into a WeightsError naming the file."""


class _ShortRepr(reprlib.Repr):
    """``repr`` for messages about values from a hostile file: bounded in depth and length."""

    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxtuple, self.maxlist, self.maxdict = 3, 6, 6, 4
        self.maxstring, self.maxlong, self.maxother = 60, 40, 60

    def repr_instance(self, x, level):
        if isinstance(x, _Admitted):
            return x.name
        if isinstance(x, (bytes, float, complex, bool, type(None))):
            return super().repr_instance(x, level)
        return f"<{type(x).__name__}>"  # never the repr of an object the pickle made


def short_repr(value):
    """A short repr of ``value`` for a message, whatever the file put in it."""
    try:
        return _ShortRepr().repr(value)
    except Exception:  # a huge int (ValueError), anything else repr cannot do
        return f"<{type(value).__name__}>"


class Refused(Exception):
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


class TensorRef(NamedTuple):
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
        raise Damaged(f"a tensor's {what} {short_repr(value)} is not a list of non-negative integers")
    return tuple(value)


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    """``torch._utils._rebuild_tensor[_v2]``: a :class:`TensorRef`, checked to lie inside its storage."""
    if not isinstance(storage, _Storage):
        raise Damaged(f"a tensor built on {type(storage).__name__}, not on a storage")
    if type(offset) is not int or offset < 0:
        raise Damaged(f"a tensor at storage offset {short_repr(offset)}")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise Damaged(f"a tensor of size {short_repr(size)} with strides {short_repr(stride)}")
    extent = storage.view[1] if storage.view is not None else storage.numel
    if 0 not in size and offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) >= extent:
        raise Damaged(
            f"a tensor of size {short_repr(size)}, strides {short_repr(stride)}, offset {offset} "
            f"reaches past its {extent} elements"
        )
    if metadata is not None and not isinstance(metadata, dict):
        raise Damaged(f"a tensor with metadata {short_repr(metadata)}")
    metadata = dict(metadata or {})
    neg = bool(metadata.pop("neg", False))
    if any(metadata.values()):
        raise Damaged(f"a tensor with flags {short_repr(metadata)} (complex conjugation is not read)")
    return TensorRef(storage, offset, size, stride, neg)


def _rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
    """``torch._utils._rebuild_parameter[_with_state]``: the parameter's tensor."""
    if not isinstance(data, TensorRef):
        raise Damaged(f"a parameter holding {type(data).__name__}, not a tensor")
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
            raise Damaged(f"the pickle calls {self.name}, which is a storage type")
        return self.call(*args)

    def __setstate__(self, state):
        raise Damaged(f"the pickle sets attributes of {self.name}")


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
            raise Refused(module, name)
        return _Admitted(f"{module}.{name}", call)

    def persistent_load(self, pid):
        fields = 6 if self.legacy else 5
        if not isinstance(pid, tuple) or len(pid) != fields or _text(pid[0]) != "storage":
            raise Damaged(f"an unknown persistent id {short_repr(pid)}")
        kind, key, numel = pid[1], _text(pid[2]), pid[4]
        if not isinstance(kind, _Admitted) or kind.call is not None or not isinstance(key, str):
            raise Damaged(f"a storage id {short_repr(pid)} that does not name a storage type and a key")
        if type(numel) is not int or numel < 0:
            raise Damaged(f"storage {short_repr(key)} of {short_repr(numel)} elements")
        dtype = STORAGE_DTYPES[kind.name.rpartition(".")[2]]
        if self.storages.setdefault(key, (dtype, numel)) != (dtype, numel):
            raise Damaged(f"storage {short_repr(key)} named with two types or sizes")
        view = None
        if self.legacy and pid[5] is not None:
            if not isinstance(pid[5], tuple) or len(pid[5]) != 3:
                raise Damaged(f"a storage view {short_repr(pid[5])}, not (key, offset, size)")
            _view_key, offset, size = pid[5]
            if type(offset) is not int or type(size) is not int or offset < 0 or size < 0 or offset + size > numel:
                raise Damaged(
                    f"a view of {short_repr(size)} elements at {short_repr(offset)} into storage {short_repr(key)} of {numel}"
                )
            view = (offset, size)
        return _Storage(key, dtype, numel, view)


def _text(value):
    return value.decode("ascii") if isinstance(value, bytes) else value


_MARK = object()  # a MARK on the stack of _check_nesting
_MEMO_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
_MEMO_GET = {"GET", "BINGET", "LONG_BINGET"}
_GROWERS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}  # [container, items] -> [container]


def _check_nesting(file):
    """Scan one pickle's opcodes without running them: refuse objects nested past ``MAX_NESTING``.

    Each entry of a simulated stack is the depth of the object it stands for: 0 for a
    constant, one more than the deepest of its parts for an object built from others
    (a tuple, a call's result), and for a container that ``APPEND``, ``SETITEM`` or
    ``BUILD`` fill, at least one more than what went in. Tuples, which cannot change
    once built, get their depth exactly, and a tuple is what CPython hashes (as a dict
    key) by a recursion that nothing stops short of the end of the C stack.
    """
    stack, memo = [], {}
    for op, arg, pos in pickletools.genops(file):
        if op.name in _MEMO_PUT or op.name == "MEMOIZE":
            if not stack or stack[-1] is _MARK:
                raise Damaged(f"a pickle that memoizes nothing at byte {pos}")
            memo[len(memo) if op.name == "MEMOIZE" else arg] = stack[-1]
            continue
        if op.name in _MEMO_GET:
            stack.append(memo.get(arg, 0))  # a missing entry stops the unpickler itself
            continue
        popped, singles = [], len(op.stack_before)
        if pickletools.markobject in op.stack_before:  # [... singles, mark, items]: pop to the mark
            while stack and stack[-1] is not _MARK:
                popped.append(stack.pop())
            if not stack:
                raise Damaged(f"a pickle that pops to a missing mark at byte {pos}")
            stack.pop()
            singles = op.stack_before.index(pickletools.markobject)
        for _ in range(singles):
            if not stack or stack[-1] is _MARK:
                raise Damaged(f"a pickle that pops an empty stack at byte {pos}")
            popped.append(stack.pop())
        if op.name in _GROWERS:  # popped[-1] is the container
            depth = max(popped[-1], 1 + max(popped[:-1], default=0))
        elif op.name == "DUP":
            depth = popped[0]
        else:
            depth = 1 + max(popped) if popped else 0
        if depth > MAX_NESTING:
            raise Damaged(f"objects nested more than {MAX_NESTING} deep (at byte {pos} of a pickle)")
        stack.extend(_MARK if item is pickletools.markobject else depth for item in op.stack_after)


def _unpickle(f, legacy):
    """The next pickle in ``f``, scanned by :func:`_check_nesting` then loaded: ``(object, unpickler)``."""
    start = f.tell()
    _check_nesting(f)
    f.seek(start)
    unpickler = _Unpickler(f, legacy)
    return unpickler.load(), unpickler


# ---------------------------------------------------------------------------
# Reading storages and tensors
# ---------------------------------------------------------------------------


def _numpy_dtype(dtype, byteorder):
    code = "u2" if dtype == "bf16" else dtype
    return np.dtype(code).newbyteorder("<" if byteorder == "little" else ">")


class _Arrays:
    """Turns :class:`TensorRef` references into NumPy arrays, reading each storage once.

    ``read(key, nbytes)`` returns a storage's bytes (checking that it has ``nbytes``).
    The storages read may add up to at most ``size`` bytes (the file's size: honest
    storages do not overlap), and the tensors built to at most their elements.
    """

    def __init__(self, read, byteorder, size):
        self.read, self.byteorder, self.size = read, byteorder, size
        self.cache = {}
        self.stored_bytes = self.stored_elements = self.built = 0

    def storage(self, ref):
        """The storage (or legacy view) as a 1-D array in the file's byte order."""
        if ref.key not in self.cache:
            dtype = _numpy_dtype(ref.dtype, self.byteorder)
            nbytes = ref.numel * dtype.itemsize
            if self.stored_bytes + nbytes > self.size:
                raise Damaged(
                    f"its storages add up to more than the file's {self.size} bytes (storage {short_repr(ref.key)} "
                    f"of {nbytes} bytes after {self.stored_bytes})"
                )
            self.cache[ref.key] = np.frombuffer(self.read(ref.key, nbytes), dtype=dtype)
            self.stored_bytes += nbytes
            self.stored_elements += ref.numel
        flat = self.cache[ref.key]
        if ref.view is not None:
            flat = flat[ref.view[0] : ref.view[0] + ref.view[1]]
        return flat

    def tensor(self, t):
        r"""The tensor's elements ``flat[offset + Σ_d i_d·stride_d]``, copied to a native array.

        bfloat16 becomes float32 (its 16 bits are float32's upper half). A tensor may
        not have more elements than its storage (a state dict's tensors never repeat
        elements by stride 0, as ``expand`` does), and all the tensors built together
        not more than the storages read.
        """
        flat = self.storage(t.storage)
        numel = math.prod(t.size)
        if numel > flat.size:
            raise Damaged(
                f"a tensor of size {short_repr(t.size)} from a storage of {flat.size} elements: "
                "more elements than its storage holds"
            )
        if self.built + numel > self.stored_elements:
            raise Damaged(
                f"its tensors hold more elements than their storages ({self.built + numel} from "
                f"{self.stored_elements}): they overlap"
            )
        self.built += numel
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
        raise Damaged(f"a zip file with {len(roots)} <name>/data.pkl records, where a checkpoint has one")
    root = roots[0]
    if any(n.startswith(f"{root}/code/") or n == f"{root}/constants.pkl" for n in zf.namelist()):
        raise WeightsError(
            "a TorchScript archive (torch.jit.save), which holds code: save the model's weights with "
            "torch.save(model.state_dict(), path) and give that file"
        )
    return root


def _member(zf, name, size, most=None):
    """The bytes of the zip record ``name``, checked first to be stored as torch stores it.

    torch.save writes every record uncompressed (``ZIP_STORED``); a compressed one could
    swell a thousandfold (a zip bomb), so it is refused unread, as is one whose sizes
    disagree or reach past the file's ``size`` bytes, or hold more than ``most``.
    """
    info = zf.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED:
        raise Damaged(f"record {name} is compressed (zip method {info.compress_type}), which torch.save never does")
    if info.compress_size != info.file_size or info.header_offset + info.file_size > size:
        raise Damaged(f"record {name} claims {info.file_size} bytes, more than the file's {size} bytes hold")
    if most is not None and info.file_size > most:
        raise Damaged(f"record {name} has {info.file_size} bytes, where it has at most {most}")
    return zf.read(name)


def load_zip(f, size):
    """Unpickle a zip checkpoint: ``(object, _Arrays)``."""
    zf = zipfile.ZipFile(f)
    root = _zip_root(zf)
    names = set(zf.namelist())
    byteorder = "little"
    if f"{root}/byteorder" in names:
        byteorder = _member(zf, f"{root}/byteorder", size, most=16).decode("ascii")
    if byteorder not in ("little", "big"):
        raise Damaged(f"byte order {short_repr(byteorder)}")
    obj, _ = _unpickle(io.BytesIO(_member(zf, f"{root}/data.pkl", size)), legacy=False)

    def read(key, nbytes):
        name = f"{root}/data/{key}"
        if name not in names:
            raise Damaged(f"storage {short_repr(key)} is missing ({short_repr(name)})")
        if zf.getinfo(name).file_size != nbytes:
            raise Damaged(f"storage {key} has {zf.getinfo(name).file_size} bytes, its tensors need {nbytes}")
        return _member(zf, name, size)

    return obj, _Arrays(read, byteorder, size)


def load_legacy(f, size):
    """Unpickle a legacy checkpoint: ``(object, _Arrays)``; storages are found, not yet read."""

    def header():
        return _unpickle(f, legacy=True)[0]

    if header() != MAGIC_NUMBER:
        raise Damaged("it does not start with PyTorch's magic number")
    version = header()
    if version != PROTOCOL_VERSION:
        raise Damaged(f"protocol version {short_repr(version)}, not {PROTOCOL_VERSION}")
    sys_info = header()
    if not isinstance(sys_info, dict):
        raise Damaged("no system information after the protocol version")
    byteorder = "little" if sys_info.get("little_endian", True) else "big"
    obj, unpickler = _unpickle(f, legacy=True)
    keys = header()
    if not isinstance(keys, list):
        raise Damaged("no list of storage keys after the main pickle")
    at, pos = {}, f.tell()
    for key in map(_text, keys):
        if not isinstance(key, str) or key not in unpickler.storages:
            raise Damaged(f"storage {short_repr(key)} is listed but no tensor names it")
        dtype, numel = unpickler.storages[key]
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            raise Damaged(f"truncated at byte {pos}, before storage {key}")
        (count,) = struct.unpack("<q" if byteorder == "little" else ">q", head)
        if count != numel:
            raise Damaged(f"storage {key} holds {count} elements, its tensors say {numel}")
        at[key] = pos + 8
        pos += 8 + numel * _numpy_dtype(dtype, byteorder).itemsize
        if pos > size:
            raise Damaged(f"truncated: storage {key} ends at byte {pos} of {size}")

    def read(key, nbytes):
        if key not in at:
            raise Damaged(f"storage {key} is named but not stored")
        f.seek(at[key])
        return f.read(nbytes)

    return obj, _Arrays(read, byteorder, size)


def pth_format(path):
    """``"pth-zip"``, ``"pth-legacy"`` or None: what a file's first bytes say it is (:mod:`refstyle.filekind`).

    A zip is a PyTorch checkpoint only when it has a ``<name>/data.pkl`` record
    (refstyle's ``.npz`` is a zip too); a zip cut short counts when its first record is one.
    """
    kind = filekind.kind_of(path)
    if kind == "zip-truncated":
        with open(path, "rb") as f:
            kind = "torch-zip" if b"/data.pkl" in f.read(64) else kind
    return {"torch-zip": "pth-zip", "torch-legacy": "pth-legacy"}.get(kind)
