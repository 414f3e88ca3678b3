r"""A CuPy emulation for the test suite: NumPy underneath, CuPy's rules on top.

refstyle's numerical code takes its array module ``xp`` from its arrays, and on a GPU
that module is CuPy. CI machines have no GPU, so without this module every test
parametrised over ``xp = cupy`` would be skipped there and a NumPy call that CuPy
refuses would only be found on a GPU. This module is an array module that *behaves as
CuPy does where portability is decided*, and computes with NumPy, so that its results
are NumPy's:

- its arrays (:class:`ndarray`, holding a NumPy array in ``_a``) refuse to become NumPy
  arrays implicitly: ``numpy.asarray(a)``, ``numpy.array(a)``, ``__array__``, the buffer
  protocol, ``numpy.array([a, 1])`` raise CuPy's ``TypeError`` (:data:`IMPLICIT`);
  there is no ``__array_interface__``;
- they refuse NumPy arrays where CuPy does: in operators, ufuncs (``out=`` included),
  ``matmul``, ``copyto`` and the module's functions (``TypeError: Unsupported type
  <class 'numpy.ndarray'>``), and in basic item assignment (``a[...] = host`` is
  CuPy's ``fill``: ``ValueError``). They accept what CuPy accepts: Python scalars and
  NumPy scalars (``numpy.generic``) everywhere a scalar goes, a 0-d NumPy array in a
  comparison, in ``fill`` and in ``copyto``; host index arrays and host values in
  *advanced* item assignment (CuPy copies them to the device: counted as transfers);
- NumPy's own functions applied to them dispatch as CuPy's ``__array_ufunc__`` and
  ``__array_function__`` do: to the function of the same name here, or, when there is
  none, ``TypeError`` (NumPy's "no implementation found"). ``numpy.exp(a)`` works, as
  it does on CuPy; ``numpy.add(a, host)`` does not;
- the module holds only the functions below, each with CuPy's own signature, so a
  function CuPy lacks is an ``AttributeError`` and a keyword CuPy does not take a
  ``TypeError`` (ufuncs take ``out``, ``dtype``, ``casting`` only: CuPy's
  ``TypeError: Wrong arguments {...}``). The evidence for each signature is cited beside it;
- reductions, ``dot`` of vectors, ``vdot``, ``linalg.norm`` and full integer indexing
  return 0-d device arrays, never Python or NumPy scalars; ``float()``, ``int()``,
  ``bool()``, ``.item()``, ``.get()``, printing are what make a host value of them;
- :func:`counting` counts what a GPU would pay for: host-to-device and device-to-host
  transfers with their bytes, synchronisations (a host value of a device scalar,
  ``.get()``, a boolean-mask index or assignment, whose size CuPy computes on the host,
  ``nonzero``, ``argwhere``, printing, ``cuda.Device().synchronize()``), and calls: every
  function, ufunc or method that would launch a kernel (views, such as ``reshape``,
  ``transpose`` or a basic index, launch none), including the hidden copies CuPy makes
  (a ufunc input that overlaps its ``out`` but is not the same object is copied first;
  ``matmul`` into a non-C-contiguous ``out`` goes through a temporary). ``where`` says
  from which line of the caller each event came.

Usage::

    import cupy_emulation as cupy_emu
    with cupy_emu.counting() as c:
        e = objective.evaluate(x)
    c.h2d, c.h2d_bytes, c.d2h, c.d2h_bytes, c.syncs, c.calls, c.copies
    print(c.report())           # the totals and the busiest call sites

What it does not emulate: the order in which CuPy's reduction kernels add (a tree,
not NumPy's order: bitwise comparisons of sums can differ on a GPU and not here),
CuPy's type promotion where it differs from NumPy 2's, streams and asynchrony,
``cupyx``, RawKernels, ``fuse``, and memory pools (``get_default_memory_pool`` is absent).
The conversion of CuPy's host-array rules is strict where CuPy is lax by accident:
a module function given a host array raises here even where CuPy's implementation
happens to call the array's own method and compute on the host.

Sources (the CuPy repository and docs.cupy.dev, as stored by the search tool):
``cupy/_core/core.pyx`` (``__array__``, ``__array_ufunc__``, ``__array_function__``,
the operators, ``fill``, ``get``, ``item``), ``cupy/_core/_kernel.pyx`` (ufunc keywords,
``_copy_in_args_if_needed``), ``cupy/_core/_scalar.pyx`` (``CScalar``: Python and NumPy
scalars only), ``cupy/_core/_routines_indexing.pyx`` (index preparation, mask sync,
``_scatter_op``), ``cupy/_core/_routines_linalg.pyx`` (``matmul``, ``dot``),
``cupy/_core/_gufuncs.py`` (``matmul``'s keywords), ``cupy/_manipulation/basic.py``
(``copyto``).
"""

import builtins
import collections
import contextlib
import os
import sys
import types

import numpy as np

#: CuPy's message for any implicit device-to-host conversion (cupy/_core/core.pyx, __array__).
IMPLICIT = (
    "Implicit conversion to a NumPy array is not allowed. "
    "Please use `.get()` to construct a NumPy array explicitly."
)

#: The dtypes CuPy arrays can hold (cupy/_core/core.pyx, _send_object_to_gpu).
_SUPPORTED_DTYPE_CHARS = "?bhilqBHILQefdFD"

_PYTHON_SCALARS = (bool, int, float, complex)

# ---------------------------------------------------------------------------
# Counters
# ---------------------------------------------------------------------------


class Counters:
    """What one stretch of code cost a GPU: transfers, synchronisations and kernel calls.

    ``h2d``/``d2h``: host-to-device and device-to-host copies, ``h2d_bytes``/``d2h_bytes``
    their sizes; ``syncs``: points where the host waits for the device; ``calls``: kernel
    launches (one per emulated function, ufunc or computing method, and one per hidden copy);
    ``copies``: the hidden copies among the calls. ``by_name`` counts calls by name;
    ``where`` counts every event by ``(event, "file:line function")`` of the caller.
    """

    def __init__(self):
        self.h2d = self.h2d_bytes = self.d2h = self.d2h_bytes = 0
        self.syncs = self.calls = self.copies = 0
        self.by_name = collections.Counter()
        self.where = collections.Counter()

    def as_dict(self):
        return {
            "h2d": self.h2d, "h2d_bytes": self.h2d_bytes, "d2h": self.d2h, "d2h_bytes": self.d2h_bytes,
            "syncs": self.syncs, "calls": self.calls, "copies": self.copies,
        }

    def __repr__(self):
        return "Counters(" + ", ".join(f"{k}={v}" for k, v in self.as_dict().items()) + ")"

    def report(self, top=12):
        """The totals, then the call sites of the transfers and syncs, and the busiest call sites."""
        lines = [repr(self)]
        for event in ("h2d", "d2h", "sync", "copy"):
            sites = [(site, n) for (ev, site), n in self.where.most_common() if ev == event]
            if sites:
                lines.append(f"{event}:")
                lines += [f"  {n:6d}  {site}" for site, n in sites[:top]]
        calls = [(site, n) for (ev, site), n in self.where.most_common() if ev == "call"]
        if calls:
            lines.append("calls:")
            lines += [f"  {n:6d}  {site}" for site, n in calls[:top]]
        return "\n".join(lines)


_active = []  # the Counters of every counting() block now open
_HERE = os.path.abspath(__file__)


def _site():
    """``file:line function`` of the innermost caller outside this module."""
    f = sys._getframe(2)
    while f is not None and os.path.abspath(f.f_code.co_filename) == _HERE:
        f = f.f_back
    if f is None:
        return "?"
    return f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno} {f.f_code.co_name}"


def _event(kind, name="", nbytes=0):
    if not _active:
        return
    site = _site()
    for c in _active:
        if kind == "call":
            c.calls += 1
            c.by_name[name] += 1
        elif kind == "copy":
            c.calls += 1
            c.copies += 1
            c.by_name["copy (" + name + ")"] += 1
        elif kind == "sync":
            c.syncs += 1
        elif kind == "h2d":
            c.h2d += 1
            c.h2d_bytes += nbytes
        elif kind == "d2h":
            c.d2h += 1
            c.d2h_bytes += nbytes
        c.where[kind, site] += 1


def _call(name):
    _event("call", name)


def _to_host(a, what):
    """A device-to-host copy of ``a`` (a NumPy array), which synchronises."""
    _event("sync", what)
    _event("d2h", what, a.nbytes)


@contextlib.contextmanager
def counting():
    """Count transfers, synchronisations and calls inside the block: ``with counting() as c: ...``.

    Blocks may nest; each gets its own :class:`Counters`, filled while it is open.
    """
    c = Counters()
    _active.append(c)
    try:
        yield c
    finally:
        _active.remove(c)


# ---------------------------------------------------------------------------
# Arguments: what CuPy takes where
# ---------------------------------------------------------------------------


def _unsupported(x):
    # cupy/_core/_scalar.pyx, CScalar.__init__: anything but a Python or NumPy scalar.
    return TypeError(f"Unsupported type {type(x)}")


def _kernel_arg(x):
    """A ufunc or kernel input: a device array, a Python scalar or a NumPy scalar."""
    if isinstance(x, ndarray):
        return x._a
    if type(x) in _PYTHON_SCALARS or isinstance(x, np.generic):
        return x
    raise _unsupported(x)


def _array_arg(x, func, name="a"):
    """An argument that must be a device array (CuPy's ``ndarray a`` parameters)."""
    if isinstance(x, ndarray):
        return x._a
    raise TypeError(
        f"{func}: argument {name!r} must be a cupy.ndarray, not {type(x).__module__}.{type(x).__name__}"
        + (" (CuPy does not copy host arrays to the device implicitly: use cupy.asarray)"
           if isinstance(x, np.ndarray) else "")
    )


def _out_arg(out):
    if out is None:
        return None
    if not isinstance(out, ndarray):
        raise TypeError("Output arguments type must be cupy.ndarray")
    return out._a


def _check_dtype(dt):
    dt = np.dtype(dt)
    if dt.char not in _SUPPORTED_DTYPE_CHARS:
        raise ValueError(f"Unsupported dtype {dt}")
    return dt


def _wrap(a):
    """A device array holding the NumPy array (or NumPy scalar, as a 0-d array) ``a``."""
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    obj = object.__new__(ndarray)
    obj._a = a
    return obj


def _result(r, out):
    """Return the emulated ``out`` itself (CuPy returns the array passed) or wrap ``r``."""
    return out if out is not None else _wrap(r)


def _overlap_copies(name, inputs, outs):
    """CuPy copies a ufunc input that may share memory with an output but is not that output.

    cupy/_core/_kernel.pyx, _copy_in_args_if_needed: ``inp is not out and may_share_bounds``:
    ``xp.add(M[1], b, out=M[1])`` indexes twice, so its input is copied first (the result
    is right; the copy is a kernel and an allocation).
    """
    for x in inputs:
        if isinstance(x, ndarray):
            for o in outs:
                if x is not o and np.may_share_memory(x._a, o._a):
                    _event("copy", name + ": input overlaps out")
                    break


def _host_to_device(obj, dtype=None, order="K", ndmin=0):
    """cupy.array of a host object: one host-to-device copy (a fill kernel for a 0-d value)."""
    if isinstance(obj, (list, tuple)):
        leaves = _leaves(obj)
        if leaves and builtins.all(isinstance(x, ndarray) for x in leaves):
            shapes = {x.shape for x in leaves}
            if len(shapes) == 1:  # a nested sequence of device arrays: concatenated on the device
                _call("array (concatenate)")
                a = np.array([x._a for x in leaves], dtype=dtype, ndmin=ndmin)
                return _wrap(a.reshape(_nested_shape(obj) + leaves[0].shape))
        # numpy.array on a sequence that holds a device array calls its __array__: IMPLICIT
    if isinstance(obj, np.ndarray) and order in ("K", "A", None):
        order = "F" if obj.flags.f_contiguous and not obj.flags.c_contiguous else "C"
    a = np.array(obj, dtype=dtype, order="C" if order in ("K", "A", None) else order, ndmin=ndmin, copy=True)
    _check_dtype(a.dtype)
    if a.ndim == 0:
        _call("fill")  # cupy fills a new 0-d array with the value: a kernel, no memcpy
    else:
        _event("h2d", "array", a.nbytes)
    return _wrap(a)


def _leaves(seq):
    out = []
    for x in seq:
        if isinstance(x, (list, tuple)):
            out += _leaves(x)
        else:
            out.append(x)
    return out


def _nested_shape(seq):
    shape = [len(seq)]
    while len(seq) and isinstance(seq[0], (list, tuple)):
        seq = seq[0]
        shape.append(len(seq))
    return tuple(shape)


# ---------------------------------------------------------------------------
# The array
# ---------------------------------------------------------------------------


class _Flags:
    """CuPy's flags: ``c_contiguous``, ``f_contiguous`` and ``owndata`` only (cupy/_core/flags.pyx)."""

    __slots__ = ("c_contiguous", "f_contiguous", "owndata")

    def __init__(self, a):
        self.c_contiguous = a.flags.c_contiguous
        self.f_contiguous = a.flags.f_contiguous
        self.owndata = a.base is None

    def __getitem__(self, name):
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous, "OWNDATA": self.owndata}[name]

    def __repr__(self):
        return f"  C_CONTIGUOUS : {self.c_contiguous}\n  F_CONTIGUOUS : {self.f_contiguous}\n  OWNDATA : {self.owndata}"


class _Device:
    """``cupy.cuda.Device``: device 0; ``synchronize`` waits for it (a sync)."""

    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)

    def synchronize(self):
        _event("sync", "Device.synchronize")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


def _defers(other):
    """Whether a binary operator should return NotImplemented (CuPy's ``_should_use_rop``)."""
    try:
        return other.__array_ufunc__ is None
    except AttributeError:
        return getattr(other, "__array_priority__", 0) > ndarray.__array_priority__


def _binary(name, reflected=False):
    def op(self, other):
        if not isinstance(other, ndarray) and _defers(other):
            return NotImplemented
        f = _UFUNCS[name]
        return f(other, self) if reflected else f(self, other)

    op.__name__ = f"__{'r' if reflected else ''}{name}__"
    return op


def _inplace(name):
    def op(self, other):
        return _UFUNCS[name](self, other, out=self)

    return op


def _compare(name):
    def op(self, other):
        if not isinstance(other, ndarray):
            if _defers(other):
                return NotImplemented
            if isinstance(other, np.ndarray) and other.ndim == 0:
                other = other.item()  # core.pyx __richcmp__: a 0-d NumPy array is taken as its value
        return _UFUNCS[name](self, other)

    return op


class ndarray:
    """A device array: CuPy's ``cupy.ndarray`` as far as portability goes, a NumPy array inside.

    ``_a`` is the NumPy array holding the values (for the emulation itself and its
    tests only: refstyle never reaches it).
    """

    __slots__ = ("_a", "__weakref__")
    __array_priority__ = 100  # cupy/_core/core.pyx
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("cupy_emulation: ndarray(memptr=, strides=) is not emulated")
        self._a = np.empty(shape, dtype=_check_dtype(dtype), order=order)

    # --- attributes -----------------------------------------------------------
    @property
    def shape(self):
        return self._a.shape

    @shape.setter
    def shape(self, value):
        self._a.shape = value  # without a copy, or an error: as CuPy's setter

    @property
    def ndim(self):
        return self._a.ndim

    @property
    def size(self):
        return self._a.size

    @property
    def dtype(self):
        return self._a.dtype

    @property
    def itemsize(self):
        return self._a.itemsize

    @property
    def nbytes(self):
        return self._a.nbytes

    @property
    def strides(self):
        return self._a.strides

    @property
    def flags(self):
        return _Flags(self._a)

    @property
    def T(self):
        return self if self.ndim < 2 else _wrap(self._a.T)

    @property
    def base(self):
        b = self._a.base
        return _wrap(b) if isinstance(b, np.ndarray) else None

    @property
    def device(self):
        return _Device(0)

    # --- no implicit conversion to NumPy ---------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError(IMPLICIT)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # cupy/_core/core.pyx, ndarray.__array_ufunc__
        inout = inputs
        if "out" in kwargs:
            out = kwargs["out"]
            if len(out) != 1:
                raise ValueError("The 'out' parameter must have exactly one array value")
            inout = inout + tuple(out)
            kwargs["out"] = out[0]
        if method != "__call__":
            return NotImplemented
        f = getattr(_MODULE, ufunc.__name__, None)  # as CuPy's getattr(cupy, name)
        if not isinstance(f, ufunc_type) and ufunc.__name__ != "matmul":
            return NotImplemented
        for x in inout:
            if not (isinstance(x, (ndarray, np.ndarray)) or type(x) in _PYTHON_SCALARS or isinstance(x, np.generic)):
                return NotImplemented
        if ufunc.__name__ in ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal"):
            inputs = tuple(x.item() if isinstance(x, np.ndarray) and x.ndim == 0 else x for x in inputs)
        return f(*inputs, **kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        # cupy/_core/core.pyx, ndarray.__array_function__: the function of the same name in
        # the same submodule, or NotImplemented (NumPy then raises TypeError).
        target = _MODULE
        try:
            for part in func.__module__.split(".")[1:]:
                target = getattr(target, part)
            cupy_func = getattr(target, func.__name__)
        except AttributeError:
            return NotImplemented
        if not callable(cupy_func) or getattr(cupy_func, "__module__", None) == "numpy":
            return NotImplemented
        for t in types_:
            if t not in (ndarray, np.ndarray):
                return NotImplemented
        return cupy_func(*args, **kwargs)

    # --- explicit transfers and host values (each a synchronisation) ----------
    def get(self, stream=None, order="C", out=None):
        """A copy on the host: a device-to-host transfer."""
        if out is not None:
            if not isinstance(out, np.ndarray):
                raise TypeError("Only numpy.ndarray can be obtained fromcupy.ndarray")
            if out.dtype != self.dtype:
                raise TypeError(f"{out.dtype} array cannot be obtained from {self.dtype} array")
            if out.shape != self.shape:
                raise ValueError(f"Shape mismatch. Expected shape: {self.shape}, actual shape: {out.shape}")
            out[...] = self._a
            _to_host(self._a, "get")
            return out
        a = np.array(self._a, order=order.upper(), copy=True)
        _to_host(a, "get")
        return a

    def set(self, arr, stream=None):
        """Copy a host array into this one: a host-to-device transfer."""
        if not isinstance(arr, np.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if self.dtype != arr.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        if self.shape != arr.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        self._a[...] = arr
        _event("h2d", "set", arr.nbytes)

    def item(self):
        if self.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        _to_host(self._a, "item")
        return self._a.item()

    def tolist(self):
        _to_host(self._a, "tolist")
        return self._a.tolist()

    def tobytes(self, order="C"):
        _to_host(self._a, "tobytes")
        return self._a.tobytes(order)

    def __float__(self):
        _to_host(self._a, "float()")
        return float(self._a)

    def __int__(self):
        _to_host(self._a, "int()")
        return int(self._a)

    def __complex__(self):
        _to_host(self._a, "complex()")
        return complex(self._a)

    def __bool__(self):
        if self.size == 0:
            return False
        if self.size == 1:
            _to_host(self._a, "bool()")
            return bool(self._a)
        raise ValueError("The truth value of an array with more than one element is ambiguous. Use a.any() or a.all()")

    def __repr__(self):
        _to_host(self._a, "repr()")
        return repr(self._a)

    def __str__(self):
        _to_host(self._a, "str()")
        return str(self._a)

    def __format__(self, spec):
        _to_host(self._a, "format()")
        return format(self._a, spec)

    def __reduce__(self):
        _to_host(self._a, "pickle")
        return (_unpickle, (self._a.copy(),))

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    # --- container ------------------------------------------------------------
    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    def __getitem__(self, key):
        items, advanced, mask = _prepare_index(key)
        if mask:
            _event("sync", "boolean mask index")  # the number of True values, read on the host
            _event("d2h", "boolean mask index", 4)
        r = self._a[_numpy_index(items)]
        if advanced:
            _call("getitem (advanced index)")
        return _wrap(r)

    def __setitem__(self, key, value):
        # cupy/_core/_routines_indexing.pyx, _scatter_op
        items, advanced, mask = _prepare_index(key)
        index = _numpy_index(items)
        if advanced:
            if mask:
                _event("sync", "boolean mask assignment")
                _event("d2h", "boolean mask assignment", 4)
            v = value._a if isinstance(value, ndarray) else _host_to_device(value, dtype=self.dtype)._a
            self._a[index] = v
            _call("setitem (advanced index)")
            return
        if isinstance(value, ndarray):
            target, x = self._a[index], value._a
            if (target.shape, target.strides, target.__array_interface__["data"][0]) == (
                    x.shape, x.strides, x.__array_interface__["data"][0]):
                return  # the array itself: CuPy skips the copy
            if np.may_share_memory(x, target):
                _event("copy", "setitem: value overlaps the target")
            target[...] = x
            _call("setitem (copy)")
            return
        _fill(self._a[index], value)

    def fill(self, value):
        _fill(self._a, value)

    # --- operators ------------------------------------------------------------
    __add__, __radd__, __iadd__ = _binary("add"), _binary("add", True), _inplace("add")
    __sub__, __rsub__, __isub__ = _binary("subtract"), _binary("subtract", True), _inplace("subtract")
    __mul__, __rmul__, __imul__ = _binary("multiply"), _binary("multiply", True), _inplace("multiply")
    __truediv__, __rtruediv__ = _binary("true_divide"), _binary("true_divide", True)
    __itruediv__ = _inplace("true_divide")
    __floordiv__, __rfloordiv__ = _binary("floor_divide"), _binary("floor_divide", True)
    __ifloordiv__ = _inplace("floor_divide")
    __mod__, __rmod__, __imod__ = _binary("remainder"), _binary("remainder", True), _inplace("remainder")
    __pow__, __rpow__, __ipow__ = _binary("power"), _binary("power", True), _inplace("power")
    __and__, __rand__, __iand__ = _binary("bitwise_and"), _binary("bitwise_and", True), _inplace("bitwise_and")
    __or__, __ror__, __ior__ = _binary("bitwise_or"), _binary("bitwise_or", True), _inplace("bitwise_or")
    __xor__, __rxor__, __ixor__ = _binary("bitwise_xor"), _binary("bitwise_xor", True), _inplace("bitwise_xor")
    __lt__, __le__ = _compare("less"), _compare("less_equal")
    __gt__, __ge__ = _compare("greater"), _compare("greater_equal")
    __eq__, __ne__ = _compare("equal"), _compare("not_equal")

    def __matmul__(self, other):
        if not isinstance(other, ndarray) and _defers(other):
            return NotImplemented
        return matmul(self, other)

    def __rmatmul__(self, other):
        if _defers(other):
            return NotImplemented
        return matmul(other, self)

    def __neg__(self):
        return negative(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return absolute(self)

    def __invert__(self):
        return invert(self)

    # --- methods (cupy/_core/core.pyx signatures) -----------------------------
    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        dtype = _check_dtype(dtype)
        if not copy and dtype == self.dtype:
            return self
        _call("astype")
        return _wrap(self._a.astype(dtype, order=order, casting="unsafe" if casting is None else casting))

    def copy(self, order="C"):
        _call("copy")
        return _wrap(self._a.copy(order=order))

    def view(self, dtype=None):
        return _wrap(self._a.view() if dtype is None else self._a.view(dtype))

    def reshape(self, *shape, order="C"):
        r = self._a.reshape(*shape, order=order)
        if not np.may_share_memory(r, self._a) and self.size:
            _call("reshape (copy)")
        return _wrap(r)

    def transpose(self, *axes):
        return _wrap(self._a.transpose(*axes))

    def swapaxes(self, axis1, axis2):
        return _wrap(self._a.swapaxes(axis1, axis2))

    def squeeze(self, axis=None):
        return _wrap(self._a.squeeze(axis))

    def ravel(self, order="C"):
        r = self._a.ravel(order)
        if not np.may_share_memory(r, self._a) and self.size:
            _call("ravel (copy)")
        return _wrap(r)

    def flatten(self):
        _call("flatten")
        return _wrap(self._a.flatten())

    def take(self, indices, axis=None, out=None):
        if not (np.isscalar(indices) or isinstance(indices, ndarray)):
            indices = _host_to_device(indices)  # core.array(indices): a host-to-device copy
        idx = indices._a if isinstance(indices, ndarray) else indices
        _call("take")
        return _result(np.take(self._a, idx, axis=axis, out=_out_arg(out)), out)

    def sum(self, axis=None, dtype=None, out=None, keepdims=False):
        _call("sum")
        return _result(self._a.sum(axis=axis, dtype=dtype, out=_out_arg(out), keepdims=keepdims), out)

    def prod(self, axis=None, dtype=None, out=None, keepdims=None):
        _call("prod")
        return _result(self._a.prod(axis=axis, dtype=dtype, out=_out_arg(out), keepdims=bool(keepdims)), out)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False):
        _call("mean")
        return _result(self._a.mean(axis=axis, dtype=dtype, out=_out_arg(out), keepdims=keepdims), out)

    def var(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
        _call("var")
        return _result(self._a.var(axis=axis, dtype=dtype, out=_out_arg(out), ddof=ddof, keepdims=keepdims), out)

    def std(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
        _call("std")
        return _result(self._a.std(axis=axis, dtype=dtype, out=_out_arg(out), ddof=ddof, keepdims=keepdims), out)

    def max(self, axis=None, out=None, keepdims=False):
        _call("max")
        return _result(self._a.max(axis=axis, out=_out_arg(out), keepdims=keepdims), out)

    def min(self, axis=None, out=None, keepdims=False):
        _call("min")
        return _result(self._a.min(axis=axis, out=_out_arg(out), keepdims=keepdims), out)

    def argmax(self, axis=None, out=None, dtype=None, keepdims=False):
        _call("argmax")
        r = self._a.argmax(axis=axis, keepdims=keepdims)
        r = np.asarray(r if dtype is None else r.astype(dtype))
        if out is not None:
            out._a[...] = r
        return _result(r, out)

    def argmin(self, axis=None, out=None, dtype=None, keepdims=False):
        _call("argmin")
        r = self._a.argmin(axis=axis, keepdims=keepdims)
        r = np.asarray(r if dtype is None else r.astype(dtype))
        if out is not None:
            out._a[...] = r
        return _result(r, out)

    def all(self, axis=None, out=None, keepdims=False):
        _call("all")
        return _result(self._a.all(axis=axis, out=_out_arg(out), keepdims=keepdims), out)

    def any(self, axis=None, out=None, keepdims=False):
        _call("any")
        return _result(self._a.any(axis=axis, out=_out_arg(out), keepdims=keepdims), out)

    def cumsum(self, axis=None, dtype=None, out=None):
        _call("cumsum")
        return _result(self._a.cumsum(axis=axis, dtype=dtype, out=_out_arg(out)), out)

    def dot(self, b, out=None):
        return dot(self, b, out)

    def nonzero(self):
        return nonzero(self)

    def conj(self):
        _call("conj")
        return _wrap(self._a.conj())


ndarray.__module__ = "cupy"  # as CuPy's: type(a).__module__ starts with "cupy", which refstyle.backend reads


def _unpickle(a):
    _event("h2d", "unpickle", a.nbytes)
    return _wrap(a)


def _fill(target, value):
    """cupy.ndarray.fill: a scalar, or a 0-d NumPy array taken as its value (core.pyx)."""
    if isinstance(value, np.ndarray):
        if value.shape != ():
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        value = value.item()
    target[...] = _kernel_arg(value)  # TypeError for anything but a scalar or a device array (a list, ...)
    _call("fill")


def _prepare_index(key):
    """cupy/_core/_routines_indexing.pyx, _prepare_slice_list: host index arrays go to the device.

    Returns the index items, whether any is an array (advanced indexing), and whether any is
    a boolean mask (whose count of True values CuPy reads on the host: a sync).
    """
    items = list(key) if isinstance(key, tuple) else [key]
    advanced = mask = False
    for i, s in enumerate(items):
        if s is None or s is Ellipsis or isinstance(s, slice):
            continue
        if not isinstance(s, ndarray):
            if np.isscalar(s) and not isinstance(s, (bool, np.bool_)):
                continue  # an integer: a view
            fix_empty = isinstance(s, (list, tuple))
            s = _host_to_device(s)
            if fix_empty and s.size == 0:
                s = _wrap(s._a.astype(np.int32))
            items[i] = s
        kind = s.dtype.kind
        if kind not in "biu":
            raise IndexError(f"arrays used as indices must be of integer or boolean type. (actual: {s.dtype.type})")
        advanced = True
        mask = mask or kind == "b"
    return items, advanced, mask


def _numpy_index(items):
    index = tuple(s._a if isinstance(s, ndarray) else s for s in items)
    if not builtins.any(s is Ellipsis for s in index):
        index += (Ellipsis,)  # a full integer index gives a 0-d view, as CuPy's, not a scalar
    return index


# ---------------------------------------------------------------------------
# Ufuncs
# ---------------------------------------------------------------------------


class ufunc:
    """A CuPy ufunc: inputs are device arrays or scalars; keywords ``out``, ``dtype``, ``casting`` only.

    cupy/_core/_kernel.pyx, ufunc.__call__: ``out``, ``_where`` (internal), ``dtype`` and
    ``casting`` are popped, anything else is ``TypeError('Wrong arguments %s' % kwargs)``;
    NumPy's ``where=``, ``order=``, ``subok=``, ``signature=`` are not accepted.
    """

    def __init__(self, name, np_ufunc):
        self.__name__ = name
        self.name = "cupy_" + name
        self._np = np_ufunc
        self.nin, self.nout = np_ufunc.nin, np_ufunc.nout
        self.nargs = self.nin + self.nout

    def __repr__(self):
        return f"<ufunc '{self.__name__}'>"

    def __call__(self, *args, **kwargs):
        out = kwargs.pop("out", None)
        dtype = kwargs.pop("dtype", None)
        casting = kwargs.pop("casting", "same_kind")
        if kwargs:
            raise TypeError(f"Wrong arguments {kwargs}")
        if not self.nin <= len(args) <= self.nargs:
            raise TypeError(
                f"Wrong number of arguments for {self.name!r}. It must be either {self.nin} or "
                f"{self.nargs} (with outputs), but given {len(args)}."
            )
        ins, outs = args[: self.nin], tuple(args[self.nin :])
        if out is not None:
            if outs:
                raise ValueError("Cannot specify 'out' as both a positional and keyword argument")
            outs = out if isinstance(out, tuple) else (out,)
        np_ins = [_kernel_arg(x) for x in ins]
        np_outs = tuple(_out_arg(o) for o in outs)
        _overlap_copies(self.__name__, ins, outs)
        _call(self.__name__)
        kw = {"casting": casting}
        if dtype is not None:
            kw["dtype"] = dtype
        if np_outs:
            kw["out"] = np_outs
        r = self._np(*np_ins, **kw)
        if outs:
            return outs[0] if self.nout == 1 else tuple(outs)
        if self.nout == 1:
            return _wrap(r)
        return tuple(_wrap(x) for x in r)


# Ufuncs CuPy defines under the same names (docs.cupy.dev, "Universal functions").
# refstyle uses add, subtract, multiply, maximum, minimum, sqrt, abs (and, through the
# operators, true_divide, negative, greater, equal, power).
_UFUNC_NAMES = (
    "add", "subtract", "multiply", "divide", "true_divide", "floor_divide", "negative", "power",
    "remainder", "maximum", "minimum", "fmax", "fmin", "sqrt", "square", "exp", "log", "absolute",
    "sign", "greater", "greater_equal", "less", "less_equal", "equal", "not_equal", "logical_and",
    "logical_or", "logical_not", "isfinite", "isnan", "isinf", "bitwise_and", "bitwise_or",
    "bitwise_xor", "invert", "left_shift", "right_shift",
)
_UFUNCS = {name: ufunc(name, getattr(np, name)) for name in _UFUNC_NAMES}
globals().update(_UFUNCS)
ufunc_type = ufunc
abs = absolute = _UFUNCS["absolute"]  # noqa: A001 (cupy.abs is cupy.absolute)
mod = _UFUNCS["remainder"]

# ---------------------------------------------------------------------------
# Module functions: CuPy's signatures, each checked against docs.cupy.dev (latest) or the
# CuPy source named beside it. Those refstyle uses are marked [refstyle].
# ---------------------------------------------------------------------------

# dtypes and constants
dtype = np.dtype
bool_ = np.bool_
int8, int16, int32, int64 = np.int8, np.int16, np.int32, np.int64
uint8, uint16, uint32, uint64 = np.uint8, np.uint16, np.uint32, np.uint64  # [refstyle] uint8
float16, float32, float64 = np.float16, np.float32, np.float64  # [refstyle]
complex64, complex128 = np.complex64, np.complex128
inf, nan, pi, e = np.inf, np.nan, np.pi, np.e  # [refstyle] inf
newaxis = None


def _creation(name, a):
    _check_dtype(a.dtype)
    if a.size:
        _call(name)
    return _wrap(a)


def empty(shape, dtype=float, order="C"):  # [refstyle] cupy.empty(shape, dtype=float, order='C')
    return _wrap(np.empty(shape, dtype=_check_dtype(dtype), order=order))  # no kernel


def zeros(shape, dtype=float, order="C"):  # [refstyle] cupy.zeros(shape, dtype=float, order='C')
    return _creation("zeros", np.zeros(shape, dtype=_check_dtype(dtype), order=order))


def ones(shape, dtype=float, order="C"):  # cupy.ones(shape, dtype=float, order='C')
    return _creation("ones", np.ones(shape, dtype=_check_dtype(dtype), order=order))


def full(shape, fill_value, dtype=None, order="C"):  # [refstyle] cupy.full(shape, fill_value, dtype=None, order='C')
    a = np.empty(shape, dtype=_check_dtype(dtype if dtype is not None else np.array(_fill_value(fill_value)).dtype), order=order)
    if isinstance(fill_value, ndarray):
        a[...] = fill_value._a
        _call("full")
    else:
        _fill(a, fill_value)
    return _wrap(a)


def _fill_value(v):
    return v._a if isinstance(v, ndarray) else v


def _like(name, prototype, dtype, order, subok, shape):
    if subok is not None:
        raise TypeError("subok is not supported yet")
    return np.empty_like(_array_arg(prototype, name, "prototype"), dtype=dtype, order=order, shape=shape)


def empty_like(prototype, dtype=None, order="K", subok=None, shape=None):  # [refstyle] docs: same signature
    return _wrap(_like("empty_like", prototype, dtype, order, subok, shape))


def zeros_like(a, dtype=None, order="K", subok=None, shape=None):  # [refstyle]
    r = _like("zeros_like", a, dtype, order, subok, shape)
    r[...] = 0
    return _creation("zeros_like", r)


def ones_like(a, dtype=None, order="K", subok=None, shape=None):  # used by tests/test_layers.py
    r = _like("ones_like", a, dtype, order, subok, shape)
    r[...] = 1
    return _creation("ones_like", r)


def full_like(a, fill_value, dtype=None, order="K", subok=None, shape=None):
    r = _like("full_like", a, dtype, order, subok, shape)
    _fill(r, fill_value)
    return _wrap(r)


def arange(start, stop=None, step=1, dtype=None):  # [refstyle] cupy.arange(start, stop=None, step=1, dtype=None)
    for v in (start, stop, step):
        if v is not None and not (type(v) in _PYTHON_SCALARS or isinstance(v, np.generic)):
            raise _unsupported(v)
    a = np.arange(start, stop, step, dtype=dtype) if stop is not None else np.arange(start, step=step, dtype=dtype)
    return _creation("arange", a)


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    """[refstyle] cupy.array(obj, dtype=None, copy=True, order='K', subok=False, ndmin=0, *, blocking=False)."""
    if subok:
        raise NotImplementedError
    if isinstance(obj, ndarray):
        dt = obj.dtype if dtype is None else _check_dtype(dtype)
        a = obj._a
        if copy is False and (dt != obj.dtype or order == "C" and not a.flags.c_contiguous
                              or order == "F" and not a.flags.f_contiguous):
            raise ValueError("Unable to avoid copy while creating an array as requested.")
        if copy or dt != obj.dtype or order == "C" and not a.flags.c_contiguous or order == "F" and not a.flags.f_contiguous:
            _call("array (copy)")
            a = np.array(a, dtype=dt, order=order, copy=True)
        r = _wrap(a) if a is not obj._a else obj
        if ndmin > r.ndim:
            r = _wrap(r._a.reshape((1,) * (ndmin - r.ndim) + r.shape))
        return r
    if copy is False:
        raise ValueError("Unable to avoid copy while creating an array as requested (the object is on the host).")
    return _host_to_device(obj, dtype=dtype, order=order, ndmin=ndmin)


def asarray(a, dtype=None, order=None, *, copy=None, blocking=False):
    """[refstyle] cupy.asarray(a, dtype=None, order=None, *, copy=None, blocking=False): a host object is copied to the device."""
    return array(a, dtype=dtype, copy=copy, order="K" if order is None else order, blocking=blocking)


def ascontiguousarray(a, dtype=None):
    """[refstyle] cupy.ascontiguousarray(a, dtype=None); core.pyx: ``cpdef ndarray ascontiguousarray(ndarray a, dtype=None)``."""
    x = _array_arg(a, "ascontiguousarray")
    dt = x.dtype if dtype is None else _check_dtype(dtype)
    if dt == x.dtype and x.flags.c_contiguous:
        return a if x.ndim else _wrap(x.reshape(1))  # a 0-d array becomes a 1-d view (core.pyx)
    _call("ascontiguousarray")
    return _wrap(np.ascontiguousarray(x, dtype=dt))


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    """cupy.asnumpy(a, stream=None, order='C', out=None, *, blocking=True): a device array's ``get``."""
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out)
    if out is not None:
        out[...] = a
        return out
    return np.asarray(a, order=order)


def get_array_module(*args):
    """cupy.get_array_module(*args): this module if any argument is a device array, else numpy."""
    return _MODULE if builtins.any(isinstance(a, ndarray) for a in args) else np


def copyto(dst, src, casting="same_kind", where=None):
    """[refstyle] cupy.copyto(dst, src, casting='same_kind', where=None); cupy/_manipulation/basic.py.

    A Python scalar, or a NumPy array or scalar of size 1 (taken as its value), may be the
    source; a larger NumPy array is ``ValueError('non-scalar numpy.ndarray cannot be used
    for copyto')``. ``where`` must be a device array (or a scalar).
    """
    d = _array_arg(dst, "copyto", "dst")
    if type(src) in _PYTHON_SCALARS:
        s = src
        np.copyto(np.empty((), dtype=d.dtype), s, casting=casting)
    elif isinstance(src, (np.ndarray, np.generic)):
        if src.size != 1:
            raise ValueError("non-scalar numpy.ndarray cannot be used for copyto")
        if not np.can_cast(src.dtype, d.dtype, casting):
            raise TypeError(f"Cannot cast {src.dtype} to {d.dtype} in {casting} casting mode")
        s = src.item()
    else:
        s = _array_arg(src, "copyto", "src")
        if not np.can_cast(s.dtype, d.dtype, casting):
            raise TypeError(f"Cannot cast {s.dtype} to {d.dtype} in {casting} casting mode")
        _overlap_copies("copyto", [src], [dst])
    w = True if where is None else _kernel_arg(where)
    if isinstance(w, np.ndarray) and w.dtype != np.bool_:
        raise TypeError(f"Cannot cast array data from {w.dtype!r} to dtype('bool') according to the rule 'safe'")
    np.copyto(d, s, casting="unsafe", where=w)
    _call("copyto")


def broadcast_to(array, shape):  # [refstyle] cupy.broadcast_to(array, shape): a view
    return _wrap(np.broadcast_to(_array_arg(array, "broadcast_to", "array"), shape))


def reshape(a, newshape, order="C"):  # cupy.reshape(a, newshape, order='C')
    return _as_ndarray(a, "reshape").reshape(newshape, order=order)


def transpose(a, axes=None):  # cupy.transpose(a, axes=None)
    return _wrap(np.transpose(_array_arg(a, "transpose"), axes))


def _as_ndarray(a, func):
    _array_arg(a, func)
    return a


def take_along_axis(a, indices, axis):  # [refstyle] cupy.take_along_axis(a, indices, axis)
    r = np.take_along_axis(_array_arg(a, "take_along_axis"), _array_arg(indices, "take_along_axis", "indices"), axis)
    _call("take_along_axis")
    return _wrap(r)


def concatenate(tup, axis=0, out=None, *, dtype=None, casting="same_kind"):
    """cupy.concatenate(tup, axis=0, out=None, *, dtype=None, casting='same_kind')."""
    arrays = [_array_arg(x, "concatenate", "tup") for x in tup]
    _call("concatenate")
    return _result(np.concatenate(arrays, axis=axis, out=_out_arg(out), dtype=dtype, casting=casting), out)


def stack(tup, axis=0, out=None, *, dtype=None, casting="same_kind"):
    """cupy.stack(tup, axis=0, out=None, *, dtype=None, casting='same_kind')."""
    arrays = [_array_arg(x, "stack", "tup") for x in tup]
    _call("stack")
    return _result(np.stack(arrays, axis=axis, out=_out_arg(out), dtype=dtype, casting=casting), out)


def where(condition, x=None, y=None):  # cupy.where(condition, x=None, y=None)
    if x is None and y is None:
        return nonzero(condition)
    c = _array_arg(condition, "where", "condition")
    _call("where")
    return _wrap(np.where(c, _kernel_arg(x), _kernel_arg(y)))


def nonzero(a):
    """cupy.nonzero(a): the number of nonzero values is read on the host (_ndarray_argwhere: "synchronize!")."""
    x = _array_arg(a, "nonzero")
    _call("nonzero")
    _event("sync", "nonzero")
    _event("d2h", "nonzero", 4)
    return tuple(_wrap(i) for i in np.nonzero(x))


def argwhere(a):  # cupy.argwhere(a): as nonzero, a sync
    x = _array_arg(a, "argwhere")
    _call("argwhere")
    _event("sync", "argwhere")
    _event("d2h", "argwhere", 4)
    return _wrap(np.argwhere(x))


def count_nonzero(a, axis=None):  # cupy.count_nonzero(a, axis=None): a device result, no sync
    _call("count_nonzero")
    return _wrap(np.asarray(np.count_nonzero(_array_arg(a, "count_nonzero"), axis=axis)))


def sum(a, axis=None, dtype=None, out=None, keepdims=False):  # noqa: A001; cupy.sum(a, axis=None, dtype=None, out=None, keepdims=False)
    return _as_ndarray(a, "sum").sum(axis, dtype, out, keepdims)


def mean(a, axis=None, dtype=None, out=None, keepdims=False):  # cupy.mean(a, axis=None, dtype=None, out=None, keepdims=False)
    return _as_ndarray(a, "mean").mean(axis, dtype, out, keepdims)


def amax(a, axis=None, out=None, keepdims=False):  # cupy.amax(a, axis=None, out=None, keepdims=False)
    return _as_ndarray(a, "amax").max(axis, out, keepdims)


def amin(a, axis=None, out=None, keepdims=False):  # cupy.amin(a, axis=None, out=None, keepdims=False)
    return _as_ndarray(a, "amin").min(axis, out, keepdims)


max = amax  # noqa: A001 (cupy.max is cupy.amax)
min = amin  # noqa: A001


def argmax(a, axis=None, dtype=None, out=None, keepdims=False):  # cupy.argmax(a, axis=None, dtype=None, out=None, keepdims=False)
    return _as_ndarray(a, "argmax").argmax(axis, out, dtype, keepdims)


def all(a, axis=None, out=None, keepdims=False):  # noqa: A001; cupy.all(a, axis=None, out=None, keepdims=False)
    return _as_ndarray(a, "all").all(axis, out, keepdims)


def any(a, axis=None, out=None, keepdims=False):  # noqa: A001; cupy.any(a, axis=None, out=None, keepdims=False)
    return _as_ndarray(a, "any").any(axis, out, keepdims)


def _matmul_hidden_copies(a, b, out, func):
    """The copies cupy/_core/_routines_linalg.pyx (matmul, dot) makes, and the overlap it cannot handle.

    Up to 2-d: an operand neither C- nor F-contiguous is copied (_mat_to_cublas_contiguous);
    an ``out`` that is not C-contiguous, or of another dtype, gets the result through a
    temporary and a copy; an ``out`` that shares memory with an operand is written by cuBLAS
    while it is read ("The out array as input is currently not supported"): an error here.
    Above 2-d: operands are made C-contiguous; an ``out`` not C-contiguous or overlapping
    an operand goes through a temporary.
    """
    ret = np.promote_types(a.dtype, b.dtype)
    if builtins.max(a.ndim, b.ndim) <= 2:
        for x in (a, b):
            if x.ndim == 2 and not (x.flags.c_contiguous or x.flags.f_contiguous):
                _event("copy", f"{func}: operand neither C- nor F-contiguous")
        if out is not None:
            if out.flags.c_contiguous and out.dtype == ret:
                if np.may_share_memory(out, a) or np.may_share_memory(out, b):
                    raise ValueError(
                        f"{func}: out shares memory with an operand: CuPy's cuBLAS call would read what it "
                        "writes ('The out array as input is currently not supported')"
                    )
            else:
                _event("copy", f"{func}: out not C-contiguous (a temporary, then a copy)")
        return
    for x in (a, b):
        if not x.flags.c_contiguous:
            _event("copy", f"{func}: operand not C-contiguous")
    if out is not None and (not out.flags.c_contiguous or out.dtype != ret
                            or np.may_share_memory(out, a) or np.may_share_memory(out, b)):
        _event("copy", f"{func}: out not C-contiguous or overlapping (a temporary, then a copy)")



def matmul(x1, x2, /, out=None, *, axes=None, axis=None, keepdims=False, casting="same_kind", dtype=None,
           signature=None, order="K"):
    """[refstyle] cupy.matmul, a _GUFunc: cupy/_core/_gufuncs.py, ``_GUFunc.__call__(self, *args, axes=None,
    axis=None, keepdims=False, casting='same_kind', dtype=None, signature=None, order='K', out=None)``.
    (CuPy 9 had ``matmul(x1, x2, out=None, *, axes=None)``: ``axes`` is not new.)"""
    a, b = _array_arg(x1, "matmul", "x1"), _array_arg(x2, "matmul", "x2")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("Scalar operands are not allowed, use '*' instead")
    if out is not None and not isinstance(out, ndarray):
        raise TypeError("`out` must be a tuple or `cupy.ndarray`")
    o = _out_arg(out)
    kw = {k: v for k, v in dict(axes=axes, axis=axis, dtype=dtype, signature=signature).items() if v is not None}
    if keepdims:
        kw["keepdims"] = True
    if not kw:
        _matmul_hidden_copies(a, b, o, "matmul")
    _call("matmul")
    return _result(np.matmul(a, b, out=o, casting=casting, order=order, **kw), out)


def dot(a, b, out=None):
    """cupy.dot(a, b, out=None); _routines_linalg.pyx ``dot``: ``out`` must be C-contiguous and of the result's dtype."""
    x, y = _array_arg(a, "dot"), _array_arg(b, "dot", "b")
    o = _out_arg(out)
    if o is not None:
        if np.result_type(x.dtype, y.dtype) != o.dtype:
            raise ValueError("Not supported dtype combination.")
        if not o.flags.c_contiguous:
            raise ValueError("Output array must be C-contiguous")
    if x.ndim <= 2 and y.ndim <= 2:
        _matmul_hidden_copies(x, y, o, "dot")
    _call("dot")
    return _result(np.dot(x, y, out=o), out)


def vdot(a, b):  # cupy.vdot(a, b): "Zero-dimensional array of the dot product result"
    _call("vdot")
    return _wrap(np.asarray(np.vdot(_array_arg(a, "vdot"), _array_arg(b, "vdot", "b"))))


def einsum(subscripts, *operands, dtype=None, optimize=False):
    """cupy.einsum(subscripts, *operands, dtype=None, optimize=False): "out, order, and casting options
    are not supported"; ``optimize`` in {False, True, 'greedy', 'optimal'} or a path (docs, latest)."""
    arrays = [_array_arg(x, "einsum", "operands") for x in operands]
    _call("einsum")
    return _wrap(np.asarray(np.einsum(subscripts, *arrays, dtype=dtype, optimize=optimize)))


def packbits(a, axis=None, bitorder="big"):
    """cupy.packbits(a, axis=None, bitorder='big'): "axis (int, optional) – Not supported yet"."""
    if axis is not None:
        raise NotImplementedError("axis option is not supported yet")
    _call("packbits")
    return _wrap(np.packbits(_array_arg(a, "packbits"), bitorder=bitorder))


def unpackbits(a, axis=None, bitorder="big"):
    """cupy.unpackbits(a, axis=None, bitorder='big'): no ``count``; "does not support axis option"."""
    if axis is not None:
        raise NotImplementedError("axis option is not supported yet")
    _call("unpackbits")
    return _wrap(np.unpackbits(_array_arg(a, "unpackbits"), bitorder=bitorder))


def _norm(x, ord=None, axis=None, keepdims=False):  # cupy.linalg.norm(x, ord=None, axis=None, keepdims=False)
    _call("linalg.norm")
    return _wrap(np.asarray(np.linalg.norm(_array_arg(x, "linalg.norm", "x"), ord=ord, axis=axis, keepdims=keepdims)))


linalg = types.SimpleNamespace(norm=_norm)

# cupy.cuda: refstyle.backend asks cupy.cuda.runtime.getDeviceCount(); benchmarks/gpu.py
# synchronises with cupy.cuda.Device().synchronize().
cuda = types.SimpleNamespace(
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
    Device=_Device,
    is_available=lambda: True,
)

_MODULE = sys.modules[__name__]
