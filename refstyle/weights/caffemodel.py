r"""Reader for Caffe ``.caffemodel`` files, written against the protobuf wire format.

A ``.caffemodel`` is one serialised ``NetParameter`` message (``caffe.proto``). No
Caffe and no generated protobuf code are needed to read one: the wire format is a
sequence of fields, each a *tag* ``(field_number << 3) | wire_type`` written as a
varint, followed by its value:

============  ===================================  =================================
wire type     value                                used here for
============  ===================================  =================================
0 varint      7 bits a byte, low group first        enums, ints, blob dims
1 fixed64     8 bytes little-endian                 (skipped)
2 length      varint byte count, then the bytes     strings, sub-messages, packed arrays
5 fixed32     4 bytes little-endian                 an unpacked float
============  ===================================  =================================

The fields refstyle needs (numbers from ``caffe.proto``):

- ``NetParameter``: ``layers = 2`` (V1LayerParameter, the format of the 2014 VGG
  caffemodels) and ``layer = 100`` (LayerParameter, Caffe's current "V2" format).
- ``V1LayerParameter``: ``name = 4``, ``type = 5`` (an enum: ``CONVOLUTION = 4``),
  ``blobs = 6``.
- ``LayerParameter``: ``name = 1``, ``type = 2`` (a string: ``"Convolution"``),
  ``blobs = 7``.
- ``BlobProto``: legacy dims ``num = 1, channels = 2, height = 3, width = 4``, or
  ``shape = 7`` (a ``BlobShape`` whose ``dim = 1`` is a packed int64 list); values in
  ``data = 5`` (packed float32) or ``double_data = 8`` (packed float64).

A convolution has blobs ``[W, b]``: ``W`` is ``(out, in, kh, kw)``; ``b`` is stored
as ``(out,)`` in the ``shape`` form or ``(1, 1, 1, out)`` in the legacy form, and is
returned as ``(out,)``.

The file is memory-mapped and walked once to find where each field lies; a float
array is then copied once, from the map straight into its NumPy array
(:func:`numpy.frombuffer` on the map, then ``copy``), so a 550 MB VGG19 file is
never held twice.
"""

import mmap
import os

import numpy as np

from ..errors import WeightsError
from .files import open_weights

# V1LayerParameter.LayerType values (caffe.proto), for naming layers in reports.
V1_LAYER_TYPES = {
    0: "None", 1: "Accuracy", 2: "BNLL", 3: "Concat", 4: "Convolution", 5: "Data",
    6: "Dropout", 7: "EuclideanLoss", 8: "Flatten", 9: "HDF5Data", 10: "HDF5Output",
    11: "Im2col", 12: "ImageData", 13: "InfogainLoss", 14: "InnerProduct", 15: "LRN",
    16: "MultinomialLogisticLoss", 17: "Pooling", 18: "ReLU", 19: "Sigmoid",
    20: "Softmax", 21: "SoftmaxWithLoss", 22: "Split", 23: "TanH", 24: "WindowData",
    25: "Eltwise", 26: "Power", 27: "SigmoidCrossEntropyLoss", 28: "HingeLoss",
    29: "MemoryData", 30: "ArgMax", 31: "Threshold", 32: "DummyData", 33: "Slice",
    34: "MVN", 35: "AbsVal", 36: "Silence", 37: "ContrastiveLoss", 38: "Exp",
    39: "Deconvolution",
}  # fmt: skip

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5

# Field numbers: NetParameter, V1LayerParameter, LayerParameter, BlobProto, BlobShape.
NET_LAYERS_V1, NET_LAYER_V2 = 2, 100
V1_NAME, V1_TYPE, V1_BLOBS = 4, 5, 6
V2_NAME, V2_TYPE, V2_BLOBS = 1, 2, 7
BLOB_LEGACY_DIMS = (1, 2, 3, 4)  # num, channels, height, width
BLOB_DATA, BLOB_SHAPE, BLOB_DOUBLE_DATA = 5, 7, 8
SHAPE_DIM = 1


class _Damaged(Exception):
    """Raised inside the parser; turned into a WeightsError naming the file."""


def _varint(buf, pos, end):
    """Decode the varint at ``buf[pos]``: ``(value, position after it)``."""
    value, shift = 0, 0
    while True:
        if pos >= end:
            raise _Damaged(f"truncated at byte {pos}: a number runs past the end of its field")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise _Damaged(f"byte {pos}: a number longer than 10 bytes")


def _fields(buf, start, end):
    """Walk the fields of one message in ``buf[start:end]``.

    Yields ``(field_number, wire_type, value)``: the integer for varints, and for
    length-delimited fields the ``(start, end)`` byte range of their contents, which
    are left unread. Fixed-width values are yielded as their byte range too.
    """
    pos = start
    while pos < end:
        tag_at = pos
        tag, pos = _varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise _Damaged(f"byte {tag_at}: field number 0 is not valid protobuf")
        if wire == VARINT:
            value, pos = _varint(buf, pos, end)
        elif wire == LENGTH:
            n, pos = _varint(buf, pos, end)
            value = (pos, pos + n)
            pos += n
        elif wire == FIXED32:
            value = (pos, pos + 4)
            pos += 4
        elif wire == FIXED64:
            value = (pos, pos + 8)
            pos += 8
        else:
            raise _Damaged(f"byte {tag_at}: wire type {wire} is not used by caffe.proto")
        if pos > end:
            raise _Damaged(f"truncated at byte {end}: field {number} at byte {tag_at} needs {pos - end} more bytes")
        yield number, wire, value


def _packed_varints(buf, span):
    start, end = span
    values, pos = [], start
    while pos < end:
        v, pos = _varint(buf, pos, end)
        values.append(v)
    return values


class _Blob:
    """Where one ``BlobProto`` keeps its shape and values (nothing read yet)."""

    def __init__(self, buf, span):
        self.buf = buf
        self.legacy = {}
        self.dims = None
        self.packed = []  # byte ranges of packed data / double_data, with their dtype
        self.unpacked = []  # byte ranges of single fixed-width values
        for number, wire, value in _fields(buf, *span):
            if number in BLOB_LEGACY_DIMS and wire == VARINT:
                self.legacy[number] = value
            elif number == BLOB_SHAPE and wire == LENGTH:
                dims = []
                for n, w, v in _fields(buf, *value):
                    if n == SHAPE_DIM:
                        dims.extend(_packed_varints(buf, v) if w == LENGTH else [v])
                self.dims = dims
            elif number in (BLOB_DATA, BLOB_DOUBLE_DATA):
                dtype = "<f4" if number == BLOB_DATA else "<f8"
                (self.packed if wire == LENGTH else self.unpacked).append((dtype, value))

    @property
    def shape(self):
        if self.dims is not None:
            return tuple(int(d) for d in self.dims)
        return tuple(int(self.legacy.get(k, 1)) for k in BLOB_LEGACY_DIMS)

    def array(self):
        """The blob's values as a new NumPy array of its shape (one copy out of the map)."""
        pieces = []
        for dtype, (start, end) in self.packed + self.unpacked:
            itemsize = np.dtype(dtype).itemsize
            if (end - start) % itemsize:
                raise _Damaged(f"byte {start}: a float array of {end - start} bytes, not a multiple of {itemsize}")
            view = np.frombuffer(self.buf, dtype=dtype, count=(end - start) // itemsize, offset=start)
            pieces.append(view.astype(dtype[1:], copy=True))  # the one copy; native byte order
            del view  # no view of the map may outlive it
        values = pieces[0] if len(pieces) == 1 else np.concatenate(pieces) if pieces else np.empty(0, np.float32)
        shape = self.shape
        if values.size != int(np.prod(shape)):
            raise _Damaged(f"a blob of shape {shape} holds {values.size} values")
        return values.reshape(shape)


def _layers(buf, size):
    """``[(name, type, [_Blob, ...]), ...]`` for every layer of the net, in file order."""
    found = []
    for number, wire, value in _fields(buf, 0, size):
        if wire != LENGTH or number not in (NET_LAYERS_V1, NET_LAYER_V2):
            continue
        name_field, type_field, blobs_field = (
            (V1_NAME, V1_TYPE, V1_BLOBS) if number == NET_LAYERS_V1 else (V2_NAME, V2_TYPE, V2_BLOBS)
        )
        name, kind, blobs = None, None, []
        for n, w, v in _fields(buf, *value):
            if n == name_field and w == LENGTH:
                name = bytes(buf[v[0] : v[1]]).decode("utf-8", "replace")
            elif n == type_field:
                if w == VARINT:  # V1: an enum
                    kind = V1_LAYER_TYPES.get(v, f"type{v}")
                elif w == LENGTH:  # V2: a string
                    kind = bytes(buf[v[0] : v[1]]).decode("utf-8", "replace")
            elif n == blobs_field and w == LENGTH:
                blobs.append(_Blob(buf, v))
        found.append((name or f"<unnamed layer {len(found)}>", kind or "unknown", blobs))
    return found


def _looks_like_text(head):
    """True for the start of a text file (a ``.prototxt``); a binary caffemodel has control bytes early."""
    return all(32 <= c < 127 or c in b"\t\r\n" for c in head) and (b":" in head or b"{" in head)


def _open(path, use):
    """Memory-map ``path`` and run ``use(buffer, size)``, turning parse failures into WeightsError."""
    path = os.fspath(path)
    with open_weights(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise WeightsError(f"{path}: the file is empty; download or convert the weights again")
        head = f.read(64)
        if _looks_like_text(head):
            raise WeightsError(
                f"{path}: a text .prototxt (the net's description), not a binary .caffemodel with weights"
            )
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                return use(buf, size)
            except _Damaged as e:
                raise WeightsError(
                    f"{path}: not a Caffe caffemodel, or a damaged one ({e}; the file has {size:,} bytes); "
                    "download or convert the weights again"
                ) from None


def caffemodel_layers(path):
    """Every layer of a caffemodel as ``(name, type, [blob shapes])``, without reading any values."""

    def use(buf, size):
        rows = [(name, kind, [blob.shape for blob in blobs]) for name, kind, blobs in _layers(buf, size)]
        if not rows:
            raise _Damaged("no layers found")
        return rows

    return _open(path, use)


def read_caffemodel(path, layers=None):
    r"""Read the convolution weights of a caffemodel: ``{name: (W, b)}`` in file order.

    ``W`` is ``(out, in, kh, kw)`` and ``b`` is ``(out,)``, float32 (float64 where the
    file stores ``double_data``). ``layers`` (names) limits what is read: the values
    of every other layer are skipped, not copied.
    """
    wanted = None if layers is None else set(layers)

    def use(buf, size):
        found = _layers(buf, size)
        if not found:
            raise _Damaged("no layers found")
        convs = {}
        for name, kind, blobs in found:
            if kind.lower() != "convolution" or (wanted is not None and name not in wanted):
                continue
            if len(blobs) not in (1, 2):
                raise _Damaged(f"convolution {name} has {len(blobs)} blobs, expected weights and a bias")
            W = blobs[0].array()
            if W.ndim != 4:
                raise _Damaged(f"convolution {name} has weights of shape {W.shape}, expected (out, in, kh, kw)")
            b = blobs[1].array().reshape(-1) if len(blobs) == 2 else np.zeros(W.shape[0], W.dtype)
            convs[name] = (W, b)
        if not convs:
            kinds = sorted({kind for _, kind, _ in found})
            raise _Damaged(f"no convolution layers with weights (layer types: {', '.join(kinds)})")
        return convs

    return _open(path, use)
