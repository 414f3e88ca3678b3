"""refstyle: the reference implementation of Gatys, Ecker & Bethge's neural style transfer.

The VGG network, its gradients and the paper's losses written out in NumPy (CuPy on a
GPU), computed the way Caffe computes them::

    import refstyle
    w = refstyle.load_weights(path)                      # .caffemodel or refstyle .npz
    net = refstyle.VGG(w, arch="vgg16", pooling="avg")   # float32 NumPy by default
    F, cache = net.forward(x, ["conv1_1", "conv4_2"])    # x: 1×3×H×W, BGR, mean subtracted
    dx = net.backward({"conv4_2": dF}, cache)            # ∂(Σ F·dF)/∂x
    x = refstyle.preprocess(rgb_uint8); rgb = refstyle.deprocess(x)
"""

__version__ = "0.1.0"

from .errors import ImageError, LayerError, RefstyleError, WeightsError
from .gradcheck import check_gradient
from .images import deprocess, load_image, preprocess, resize_longer, save_image
from .losses import content_loss, gram, style_loss
from .network import ARCHS, VGG, VGG16_LAYERS, VGG19_LAYERS
from .objective import Objective, content_targets, style_targets
from .synthesis import Settings, synthesize
from .weights import Weights, check_weights, generate_weights, load_weights, save_npz

__all__ = [
    "ARCHS",
    "VGG",
    "VGG16_LAYERS",
    "VGG19_LAYERS",
    "ImageError",
    "LayerError",
    "Objective",
    "RefstyleError",
    "Settings",
    "Weights",
    "WeightsError",
    "check_gradient",
    "check_weights",
    "content_loss",
    "content_targets",
    "deprocess",
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
