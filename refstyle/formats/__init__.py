"""Readers and writers of the weights file formats refstyle understands.

Each reader returns an ordered ``{layer name: (W, b)}`` dict of NumPy arrays,
``W`` of shape ``(out, in, kh, kw)`` and ``b`` of shape ``(out,)``, with Caffe layer
names; :mod:`refstyle.weights` turns that into checked :class:`~refstyle.weights.Weights`.
"""


def open_weights(path):
    """Open a weights file for reading in binary, turning the usual failures into a clear :class:`WeightsError`."""
    from ..errors import WeightsError

    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such weights file") from None
    except IsADirectoryError:
        raise WeightsError(f"{path}: is a folder, not a weights file") from None
    except OSError as e:
        raise WeightsError(f"{path}: cannot be read ({e.strerror})") from None
