"""refstyle: the reference implementation of Gatys, Ecker & Bethge's neural style transfer.

The VGG network, its gradients and the paper's losses written out in NumPy (CuPy on a
GPU), computed the way Caffe computes them::

    import refstyle
    w = refstyle.load_weights(path)                      # any file of refstyle.weights.formats
    net = refstyle.VGG(w, arch="vgg16", pooling="avg")   # float32 NumPy by default
    F, cache = net.forward(x, ["conv1_1", "conv4_2"])    # x: 1×3×H×W, BGR, mean subtracted
    dx = net.backward({"conv4_2": dF}, cache)            # ∂(Σ F·dF)/∂x
    x = refstyle.preprocess(rgb_uint8); rgb = refstyle.deprocess(x)

The package is layered, each layer importing only from those below it:

- foundation: :mod:`.errors`, :mod:`.backend` (NumPy or CuPy), :mod:`.io`, :mod:`.progress`;
- :mod:`refstyle.nn`: the network (layer tables, layers, kernel sets, :class:`VGG`);
- :mod:`refstyle.weights`: weights in memory, their file formats, the known weights;
- :mod:`refstyle.paper`: the paper's method (images, losses, objective, optimisers, synthesis);
- :mod:`refstyle.app`: the command line, validation, ``explain``, the figures.
"""

from .errors import ImageError, LayerError, RefstyleError, RefstyleWarning, UsageError, WeightsError
from .nn.arch import ARCHS, VGG16_LAYERS, VGG19_LAYERS
from .nn.vgg import VGG
from .paper import images
from .paper.gradcheck import check_gradient
from .paper.images import deprocess, load_image, preprocess, resize_longer, save_image
from .paper.losses import content_loss, gram, style_loss
from .paper.build import build_network
from .paper.conventions import get_convention
from .paper.diagnose import diagnose
from .paper.objective import Objective, build_objective, content_targets, style_targets
from .paper.settings import Settings
from .paper.synthesis import synthesize
from .version import __version__
from .weights import Weights, check_weights, generate_weights, load_weights, save_npz

__all__ = [
    "ARCHS",
    "VGG",
    "VGG16_LAYERS",
    "VGG19_LAYERS",
    "__version__",
    "ImageError",
    "LayerError",
    "Objective",
    "RefstyleError",
    "RefstyleWarning",
    "Settings",
    "UsageError",
    "Weights",
    "WeightsError",
    "check_gradient",
    "check_weights",
    "content_loss",
    "build_network",
    "build_objective",
    "get_convention",
    "content_targets",
    "deprocess",
    "diagnose",
    "generate_weights",
    "gram",
    "load_image",
    "load_weights",
    "preprocess",
    "resize_longer",
    "save_image",
    "save_npz",
    "style_loss",
    "style_targets",
    "synthesize",
]
