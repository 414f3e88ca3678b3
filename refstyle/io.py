"""Writing files safely: an interrupted run never leaves half a file or clobbers a good one."""

import contextlib
import os
import tempfile

from .errors import RefstyleError


# What an output of each suffix holds: the only format written under that name (another suffix is refused).
OUTPUT_FORMATS = {
    ".png": "PNG (lossless, with the run's settings in a text chunk; convert it afterwards for another format)",
    ".npz": "NumPy .npz archives",
    ".json": "JSON (a convention record)",
}


def check_writable(path, force=False, suffix=None):
    """Check, before any work, that ``path`` can be written.

    Refuses an existing file unless ``force``, an existing folder always, a missing
    folder, and a folder this user may not write to; and, where ``suffix`` (a key of
    :data:`OUTPUT_FORMATS`) is given, a name that does not end with it (any case), so
    that ``-o result.jpg`` never holds PNG data.
    """
    path = os.fspath(path)
    if suffix is not None and not path.lower().endswith(suffix):
        stem = os.path.splitext(os.path.basename(path))[0] or "out"
        raise RefstyleError(f"cannot write {path}: refstyle writes only {OUTPUT_FORMATS[suffix]}, so the name must "
                            f"end in {suffix}: e.g. {stem}{suffix}")
    if os.path.isdir(path):
        raise RefstyleError(f"cannot write {path}: it is a folder; give a file name")
    if os.path.exists(path) and not force:
        raise RefstyleError(f"{path} exists: choose another output name or pass --force to overwrite it")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise RefstyleError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RefstyleError(f"cannot write {path}: no permission to write in the folder {folder}")
    return path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The rename is atomic on POSIX and Windows, so readers see either the old file or
    the complete new one. On any error (Ctrl-C included) the temporary file is removed
    and ``path`` is left as it was.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".part", dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; an output gets the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_npz(path, arrays):
    """``numpy.savez`` of a dict of arrays, atomically (see :func:`atomic_path`)."""
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def write_json(path, data):
    """A JSON document (indented, UTF-8, a final newline), atomically (see :func:`atomic_path`)."""
    import json

    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.write("\n")


def file_sha256(path, chunk=1 << 22):
    """The SHA-256 of a file, read in chunks (a weights file can be 550 MB)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_png(fig, path, dpi=100, text=None):
    """Save a matplotlib figure as a PNG, atomically (see :func:`atomic_path`), and close it.

    ``text``: ``{key: str}`` written as the PNG's text chunks (the run's settings, say).
    """
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata=text)
    pyplot().close(fig)
