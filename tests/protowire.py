"""A tiny protobuf *encoder* for writing test caffemodels (the reader under test only decodes).

Written from the wire-format rules, independently of ``refstyle.weights.caffemodel``:
a field is ``varint(number << 3 | wire_type)`` then its value; wire type 0 is a varint,
2 a varint length then bytes, 5 four little-endian bytes.
"""

import struct

import numpy as np


def varint(n):
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field_varint(number, value):
    return varint(number << 3 | 0) + varint(value)


def field_bytes(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def field_fixed32(number, payload4):
    return varint(number << 3 | 5) + payload4


def blob(array, legacy=True, packed=True, double=False):
    """A BlobProto: legacy num/channels/height/width dims (padded with 1s in front) or a BlobShape."""
    array = np.asarray(array)
    if legacy:
        dims = (1,) * (4 - array.ndim) + array.shape
        out = b"".join(field_varint(n, d) for n, d in zip((1, 2, 3, 4), dims))
    else:
        packed_dims = b"".join(varint(d) for d in array.shape)
        out = field_bytes(7, field_bytes(1, packed_dims))
    flat = array.reshape(-1)
    if double:
        out += field_bytes(8, flat.astype("<f8").tobytes())
    elif packed:
        out += field_bytes(5, flat.astype("<f4").tobytes())
    else:
        out += b"".join(field_fixed32(5, struct.pack("<f", v)) for v in flat)
    return out


def layer_v1(name, type_enum, blobs=(), bottom="data"):
    """A V1LayerParameter (NetParameter field 2): name 4, type 5 (enum), blobs 6, bottom 2, top 3."""
    out = field_bytes(2, bottom.encode()) + field_bytes(3, name.encode())
    out += field_bytes(4, name.encode()) + field_varint(5, type_enum)
    return field_bytes(2, out + b"".join(field_bytes(6, b) for b in blobs))


def layer_v2(name, type_name, blobs=(), bottom="data"):
    """A LayerParameter (NetParameter field 100): name 1, type 2 (string), bottom 3, top 4, blobs 7."""
    out = field_bytes(1, name.encode()) + field_bytes(2, type_name.encode())
    out += field_bytes(3, bottom.encode()) + field_bytes(4, name.encode())
    return field_bytes(100, out + b"".join(field_bytes(7, b) for b in blobs))


CONVOLUTION, POOLING, RELU, INNER_PRODUCT = 4, 17, 18, 14


def caffemodel(weights, version=1, net_name="test", packed=True, double=False, extras=True):
    """Serialise ``{name: (W, b)}`` as a NetParameter, with ReLU/Pooling/InnerProduct layers between."""
    legacy = version == 1
    out = b"" if net_name is None else field_bytes(1, net_name.encode())
    for name, (W, b) in weights.items():
        blobs = [blob(W, legacy, packed, double), blob(b, legacy, packed, double)]
        if version == 1:
            out += layer_v1(name, CONVOLUTION, blobs)
            if extras:
                out += layer_v1("relu" + name[4:], RELU)
        else:
            out += layer_v2(name, "Convolution", blobs)
            if extras:
                out += layer_v2("relu" + name[4:], "ReLU")
    if extras:
        fc = [blob(np.ones((2, 3), np.float32), legacy), blob(np.zeros(2, np.float32), legacy)]
        out += layer_v1("pool1", POOLING) if version == 1 else layer_v2("pool1", "Pooling")
        out += layer_v1("fc6", INNER_PRODUCT, fc) if version == 1 else layer_v2("fc6", "InnerProduct", fc)
    return out
