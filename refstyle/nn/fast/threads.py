r"""Bands on several cores: the threads of a :class:`~refstyle.nn.fast.Workspace`, and OpenBLAS held to one per band.

NumPy releases the GIL inside its ufuncs and its matrix products, so the independent
bands of a convolution can run on several Python threads at once, each doing its own
element-wise transforms and its own GEMMs. The GEMMs then must run on one thread each:
OpenBLAS would otherwise start its own threads for every product and the two kinds of
threads would compete for the same cores. :func:`blas_limit` holds the OpenBLAS that
NumPy loaded to that many threads while the bands run, and gives its setting back after.

Where the BLAS cannot be held (another BLAS, or a platform without ``/proc/self/maps``),
:func:`blas_limit` says so and the kernels run their bands one after the other: the
numbers are the same either way (each band's arithmetic does not depend on which
thread runs it), only the time differs.
"""

import contextlib
import ctypes
import os
import threading

#: The setter and getter of the thread count, under the names OpenBLAS builds export
#: (plain, 64-bit-integer, and the ``scipy_`` prefixed builds that NumPy's wheels bundle).
_SYMBOLS = (
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
)


def cores():
    """The default number of band threads: the CPU cores this process may run on, at most ``$OMP_NUM_THREADS``.

    ``refstyle figure --jobs N`` gives each of its worker processes its share of the cores
    through that variable, as it does OpenBLAS's, so that N workers do not run N × cores threads.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(n, int(limit))) if limit.strip().isdigit() else n


def _openblas_libraries():
    """``[(set, get)]`` for each OpenBLAS this process has loaded (found in ``/proc/self/maps``)."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line})
    except OSError:
        return []
    found = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)  # already loaded: the same library, not a new copy
        except OSError:
            continue
        for set_name, get_name in _SYMBOLS:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                setter, getter = getattr(lib, set_name), getattr(lib, get_name)
                setter.argtypes, setter.restype, getter.restype = [ctypes.c_int], None, ctypes.c_int
                found.append((setter, getter))
                break
    return found


class _BlasThreads:
    """The thread count of the loaded OpenBLAS, held while any caller needs it held.

    One instance for the process, because the BLAS it controls is one for the process:
    the first caller in sets the count and the last one out restores it, so that nested
    or concurrent kernels (two networks on two threads) leave the BLAS as they found it.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._libraries = None  # found on first use, after NumPy has loaded its BLAS
        self._depth = 0
        self._saved = []

    def libraries(self):
        with self._lock:
            if self._libraries is None:
                self._libraries = _openblas_libraries()
            return self._libraries

    @contextlib.contextmanager
    def limit(self, n):
        libraries = self.libraries()
        if not libraries:
            yield False
            return
        with self._lock:
            if self._depth == 0:
                self._saved = [getter() for _, getter in libraries]
                for setter, _ in libraries:
                    setter(int(n))
            self._depth += 1
        try:
            yield True
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    for (setter, _), n_saved in zip(libraries, self._saved):
                        setter(n_saved)

    def get(self):
        """The loaded OpenBLAS's thread count, or None when none can be controlled."""
        libraries = self.libraries()
        return libraries[0][1]() if libraries else None

    def set(self, n):
        """Set the loaded OpenBLAS's thread count for good (a benchmark's choice); False when none can be."""
        libraries = self.libraries()
        for setter, _ in libraries:
            setter(int(n))
        return bool(libraries)


_BLAS = _BlasThreads()


def blas_limit(n):
    """A context in which NumPy's OpenBLAS uses ``n`` threads; it yields False (and changes nothing) when it cannot."""
    return _BLAS.limit(n)


def blas_threads():
    """The thread count of NumPy's OpenBLAS now, or None when it cannot be read."""
    return _BLAS.get()


def set_blas_threads(n):
    """Set the thread count of NumPy's OpenBLAS (for benchmarks that compare thread counts); False when it cannot."""
    return _BLAS.set(n)
