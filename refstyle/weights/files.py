"""Opening a weights file, with the usual failures turned into one clear :class:`WeightsError`.

Each reader (the registry :mod:`.formats` lists them) returns an
ordered ``{layer name: (W, b)}`` dict of NumPy arrays, ``W`` of shape
``(out, in, kh, kw)`` and ``b`` of shape ``(out,)``, with Caffe layer names;
:mod:`.load` turns that into checked :class:`~refstyle.weights.model.Weights`.
"""

from ..errors import WeightsError


def open_weights(path, hint=""):
    """Open a weights file for reading in binary; ``hint`` is added to the message of a missing file."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such weights file{hint}") from None
    except IsADirectoryError:
        raise WeightsError(f"{path}: is a folder, not a weights file") from None
    except OSError as e:
        raise WeightsError(f"{path}: cannot be read ({e.strerror})") from None
