"""A bridge for PyTorch users: their image, layer responses and loss → a refstyle gradient file.

Validating an implementation is then three lines in its own script::

    from refstyle.app.bridge import record_responses, write_gradient_file_from_torch
    F = record_responses(model, ["conv_1", "conv_2", "conv_3", "conv_4", "conv_5"])  # before the forward
    ...                                             # the script computes its loss as always
    write_gradient_file_from_torch("theirs.npz", input_img, F, loss, convention="pytorch-tutorial")

and ``refstyle grad --convention pytorch-tutorial ... -o ours.npz`` followed by
``refstyle compare ours.npz theirs.npz`` says where the two differ. torch is imported by
the caller, never here: refstyle does not need it.

What is written (the layout of :mod:`refstyle.app.validate`):

- ``x`` and ``grad`` = :math:`\\partial L/\\partial x`, in the implementation's own image
  space, named in the key ``image`` (``compare`` converts between spaces);
- ``F:<tap>``, each response under refstyle's name for it (``conv_4`` of the tutorial is
  ``conv2_2:pre``, neural-style's ``relu4_2`` is ``conv4_2``, :func:`~refstyle.paper.conventions.tap_of`);
- ``dF:<tap>`` = the derivative of the loss terms *at that layer* with respect to its
  response, as refstyle writes it. Autograd gives the total derivative
  :math:`\\bar F_l = \\partial L/\\partial F_l`, which also holds what flows back from the
  deeper layers; in a chain network all of that passes through the next tapped response
  :math:`F_m`, so the layer's own part is

  .. math:: \\mathrm{dF}_l = \\bar F_l - \\Big(\\frac{\\partial F_m}{\\partial F_l}\\Big)^{\\!\\top} \\bar F_m,

  one vector-Jacobian product through autograd per layer. This holds when ``responses``
  has every layer the loss takes; a layer left out shows up in ``compare`` as a ``dF``
  that differs;
- ``loss``; ``loss_content`` and ``loss_style`` when given, else NaN ("not given").
"""

import json
import math

import numpy as np

from ..errors import RefstyleError
from ..nn.arch import ARCHS, VGG19_LAYERS, split_tap
from ..nn.inputs import CAFFE_INPUT, describe_input, input_by_name, is_input_convention
from ..paper.conventions import get_convention, tap_of
from .validate import write_gradient_file


def record_responses(model, names):
    """A dict that holds, after every forward of ``model``, the output of each submodule in ``names``.

    ``names`` are the names of ``model.named_modules()`` (``"conv_4"`` in the tutorial's
    ``nn.Sequential``, ``"features.20"`` in a torchvision VGG). Forward hooks fill the dict;
    ``dict.hooks`` holds their handles (``h.remove()`` to stop). A module followed by an
    in-place ReLU hands on a tensor that the ReLU then overwrites: record the ReLU instead.
    """
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise RefstyleError(f"the model has no submodule named {', '.join(map(repr, missing))} "
                            f"(it has: {', '.join(n for n in modules if n)})")
    responses = _Responses()
    for name in names:
        responses.hooks.append(modules[name].register_forward_hook(_store(responses, name)))
    return responses


class _Responses(dict):
    def __init__(self):
        super().__init__()
        self.hooks = []


def _store(responses, name):
    def hook(module, inputs, output):
        responses[name] = output
    return hook


def _numpy(t):
    return t.detach().to("cpu").double().numpy().copy()


def _space(image, convention):
    if image is None:  # the convention's (one whose mean comes from the weights file needs it stated: image=)
        return dict(CAFFE_INPUT if convention is None else convention.image_space())
    if isinstance(image, str):
        return dict(input_by_name(image))
    if not is_input_convention(image):
        raise RefstyleError(f"image must name an image space or be one like {json.dumps(CAFFE_INPUT)}, not {image!r}")
    return dict(image)


def _taps(names, convention, arch):
    """``[(their name, refstyle tap)]`` in network order, pre-ReLU before post at the same convolution."""
    taps = []
    for name in names:
        tap = tap_of(convention, name, arch) if convention is not None else name
        layer, pre = split_tap(tap)
        if layer not in VGG19_LAYERS:
            hint = f" under the convention {convention.name}" if convention is not None else ""
            raise RefstyleError(f"the response {name!r} is no layer refstyle knows{hint}: name it as refstyle does "
                                f"(conv4_2, conv4_2:pre) or pass the implementation's convention=")
        taps.append((VGG19_LAYERS.index(layer), not pre, name, tap))
    seen = {}
    for *_, name, tap in taps:
        if tap in seen:
            raise RefstyleError(f"the responses {seen[tap]!r} and {name!r} are both refstyle's {tap}: give one")
        seen[tap] = name
    return [(name, tap) for *_, name, tap in sorted(taps)]


def _scalar(v):
    if v is None:
        return np.float64(np.nan)
    v = float(v.detach()) if hasattr(v, "detach") else float(v)
    return np.float64(v)


def gradient_arrays_from_torch(x, responses, loss, *, image=None, convention=None, arch="vgg19",
                               loss_content=None, loss_style=None, settings=None):
    """The arrays of a gradient file from a PyTorch evaluation (see the module docstring); nothing is written.

    ``x``: the image tensor the loss was computed from (``requires_grad``). ``responses``:
    ``{name: tensor}`` of the layers the loss takes, still in the graph (not detached),
    named as refstyle does or as ``convention``'s implementation does. ``loss``: the
    scalar tensor. ``image``: the space ``x`` is in, a name (``caffe``, ``lua``,
    ``torchvision``, ``rgb01``) or a dict; default the convention's. The graph is kept
    (``retain_graph``), so the script can still call ``loss.backward()``.
    """
    import torch  # the caller's: refstyle itself never needs it

    if arch not in ARCHS:
        raise RefstyleError(f"unknown arch {arch!r}: choose one of {', '.join(ARCHS)}")
    convention = None if convention is None else get_convention(convention)
    space = _space(image, convention)
    if not torch.is_tensor(loss) or loss.numel() != 1:
        raise RefstyleError("loss must be the scalar tensor the script minimises (not a float: autograd needs it)")
    if not torch.is_tensor(x) or x.dim() != 4 or tuple(x.shape[:2]) != (1, 3):
        raise RefstyleError(f"x must be the 1×3×H×W image tensor, not {getattr(x, 'shape', type(x).__name__)}")
    if not x.requires_grad:
        raise RefstyleError("x does not require grad: pass the tensor the loss is computed from, after "
                            "x.requires_grad_(True)")
    order = _taps(list(responses), convention, arch)
    Fs = [responses[name] for name, _ in order]
    for (name, _), F in zip(order, Fs):
        if not torch.is_tensor(F) or not F.requires_grad:
            raise RefstyleError(f"the response {name!r} is not in the loss's graph (detached, or computed under "
                                "no_grad): record the tensor the loss is computed from")
    totals = torch.autograd.grad(loss, [x, *Fs], retain_graph=True, allow_unused=True)
    grad, totals = totals[0], list(totals[1:])
    if grad is None:
        raise RefstyleError("the loss does not depend on x: pass the image tensor the network was run on")
    totals = [torch.zeros_like(F) if t is None else t for F, t in zip(Fs, totals)]
    arrays = {"x": _numpy(x), "grad": _numpy(grad), "loss": _scalar(loss),
              "loss_content": _scalar(loss_content), "loss_style": _scalar(loss_style)}
    for i, ((name, tap), F) in enumerate(zip(order, Fs)):
        own = totals[i]
        if i + 1 < len(order):  # take away what flows back from the deeper layers, through the next response
            (through,) = torch.autograd.grad(Fs[i + 1], F, grad_outputs=totals[i + 1], retain_graph=True,
                                             allow_unused=True)
            if through is not None:
                own = own - through
        arrays[f"F:{tap}"] = _numpy(F)
        arrays[f"dF:{tap}"] = _numpy(own)
    if not math.isfinite(float(arrays["loss"])):
        raise RefstyleError(f"the loss is {float(arrays['loss'])}: nothing to compare")
    record = {"writer": "refstyle.app.bridge", "convention": None if convention is None else convention.name,
              "arch": arch, "names": {name: tap for name, tap in order}, "image": space,
              "image_text": describe_input(space)}
    record.update(settings or {})
    arrays["settings"] = np.array(json.dumps(record, sort_keys=True, default=str))
    arrays["image"] = np.array(json.dumps(space))
    return arrays


def write_gradient_file_from_torch(path, x, responses, loss, *, image=None, convention=None, arch="vgg19",
                                   loss_content=None, loss_style=None, settings=None):
    """Write refstyle's gradient file (atomically) from a PyTorch evaluation: :func:`gradient_arrays_from_torch`.

    Returns the arrays written.
    """
    arrays = gradient_arrays_from_torch(x, responses, loss, image=image, convention=convention, arch=arch,
                                        loss_content=loss_content, loss_style=loss_style, settings=settings)
    write_gradient_file(path, arrays)
    return arrays
