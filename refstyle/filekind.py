r"""What a file is, from its first bytes: so a message can say what it got and what it expected.

A file's extension is what a user chose to call it; its first bytes are what it is. A
``.pth`` that is really a text page a browser saved, a ``.h5`` that is a zip, a ``.npz``
that is one ``.npy``: each gets a message naming both. :func:`sniff` tells the kind of
a file's first bytes (:data:`HEAD` of them) as a short key, :data:`NAMES` says it in
words, and :func:`what_is` does both for a path, looking into a zip's directory and
at its end where the head alone cannot tell (a PyTorch checkpoint, a NumPy ``.npz``,
a zip cut short).

The signatures (the "magic numbers" each format's specification puts first):

============  ==========================================  =====================================
key           first bytes                                 format
============  ==========================================  =====================================
``zip``       ``PK\x03\x04`` (``PK\x05\x06``: empty)       zip (``torch.save``, ``.npz``, wheels)
``pickle``    ``\x80`` then the protocol, 2..5             Python pickle (a legacy ``torch.save``)
``hdf5``      ``\x89HDF\r\n\x1a\n`` at 0, 512, 1024, ...   HDF5 (Keras ``.h5``)
``mat5``      ``MATLAB 5.0 MAT-file`` text, ``IM``/``MI``  MATLAB 5 ``.mat`` (``scipy.io.loadmat``)
``mat73``     ``MATLAB 7.3 MAT-file``, HDF5 at 512        MATLAB v7.3 ``.mat`` (HDF5 inside)
``npy``       ``\x93NUMPY``                               one NumPy array (``numpy.save``)
``png``       ``\x89PNG\r\n\x1a\n``                       PNG image
``jpeg``      ``\xff\xd8\xff``                            JPEG image
``gzip``      ``\x1f\x8b``                                gzip
``tar``       ``ustar`` at byte 257                       tar archive
``protobuf``  a field tag Caffe's ``NetParameter`` starts  protobuf (a ``.caffemodel``): no magic,
              with (``name`` 1, ``layers`` 2, ``layer``     so only a guess
              100, all length-delimited)
``html``      ``<!doctype html`` or ``<html`` (text)       a web page (an error page saved as a file)
``text``      UTF-8 without control characters            text (a ``.prototxt``, a script)
============  ==========================================  =====================================

This module imports nothing from refstyle's subpackages: every layer may use it.
"""

import os
import zipfile

# How many bytes of a file sniff() looks at: an HDF5 superblock may sit at 0, 512, 1024 or 2048.
HEAD = 2056

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
HDF5_OFFSETS = (0, 512, 1024, 2048)
MAT5_TEXT = b"MATLAB 5.0 MAT-file"
MAT73_TEXT = b"MATLAB 7.3 MAT-file"
NPY_MAGIC = b"\x93NUMPY"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
# The protobuf tags a caffemodel's NetParameter begins with: name (1), layers (2, V1), layer (100).
CAFFE_TAGS = (b"\x0a", b"\x12", b"\xa2\x06")
# torch.save's legacy format begins with a pickle of this magic number (a 10-byte LONG1).
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
TORCH_LEGACY = b"\x8a\x0a" + TORCH_LEGACY_MAGIC.to_bytes(10, "little")

NAMES = {
    "empty": "an empty file",
    "zip": "a zip archive",
    "zip-truncated": "a zip archive cut short or damaged (its directory at the end is unreadable)",
    "torch-zip": "a PyTorch checkpoint (zip)",
    "npz": "a NumPy .npz archive",
    "pickle": "a Python pickle",
    "torch-legacy": "a PyTorch checkpoint (legacy pickles)",
    "hdf5": "an HDF5 file",
    "mat5": "a MATLAB 5 .mat file",
    "mat73": "a MATLAB v7.3 .mat file (HDF5)",
    "npy": "a NumPy .npy array",
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "gzip": "a gzip-compressed file",
    "tar": "a tar archive",
    "protobuf": "binary data that may be protobuf (a caffemodel)",
    "html": "a web page (HTML)",
    "text": "text",
    "unknown": "binary data of no known kind",
}


def _is_text(head):
    """True when ``head`` is UTF-8 without control characters (a character cut at its end allowed)."""
    cuts = range(4) if len(head) >= HEAD else range(1)  # a whole file has no cut character
    for cut in cuts:
        try:
            text = head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return all(c >= " " or c in "\t\r\n\f" for c in text)
    return False


def sniff(head):
    """The kind of a file whose first bytes are ``head`` (at least :data:`HEAD` of them, or the whole file).

    Returns a key of :data:`NAMES`. ``zip`` and ``pickle`` are refined by :func:`what_is`,
    which can look past the head.
    """
    head = bytes(head[:HEAD])
    if not head:
        return "empty"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(MAT73_TEXT) and head[512:520] == HDF5_MAGIC:
        return "mat73"
    if head.startswith(MAT5_TEXT) or (head.startswith(b"MATLAB") and head[126:128] in (b"IM", b"MI")):
        return "mat5"
    if any(head[k : k + 8] == HDF5_MAGIC for k in HDF5_OFFSETS):
        return "hdf5"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch-legacy" if head[2:14] == TORCH_LEGACY else "pickle"
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head[257:262] == b"ustar":
        return "tar"
    if _is_text(head):
        start = head.lstrip()[:15].lower()
        return "html" if start.startswith((b"<!doctype html", b"<html")) else "text"
    if head.startswith(CAFFE_TAGS):
        return "protobuf"
    return "unknown"


def _zip_kind(f):
    """``torch-zip``, ``npz``, ``zip`` or ``zip-truncated`` for an open zip file."""
    try:
        names = zipfile.ZipFile(f).namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return "zip-truncated"
    if any(n.endswith("/data.pkl") and n.count("/") == 1 for n in names):
        return "torch-zip"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    return "zip"


def kind_of(path):
    """The :data:`NAMES` key of the file at ``path`` (see :func:`sniff`), looking into a zip.

    Raises ``OSError`` as ``open`` does for a file that cannot be read.
    """
    with open(os.fspath(path), "rb") as f:
        kind = sniff(f.read(HEAD))
        if kind == "zip":
            f.seek(0)
            kind = _zip_kind(f)
    return kind


def what_is(path):
    """What the file at ``path`` is, in words: ``'a Python pickle'``, ``'an HDF5 file'``, ``'text'``, ...

    Raises ``OSError`` as ``open`` does for a file that cannot be read.
    """
    return NAMES[kind_of(path)]
