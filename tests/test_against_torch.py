"""VGG16 with the real weights on a real photograph, against PyTorch as an independent peer.

PyTorch computes the same stack with its own kernels (``conv2d``, ``relu``, and
``avg_pool2d``/``max_pool2d`` with ``ceil_mode=True``, which with no padding reproduces
Caffe's output size and in-image divisor) and its autograd computes the backward.
The input has odd sides so that the ceil-mode edge windows are exercised at every
pooling level: 57×75 -> 29×38 -> 15×19 -> 8×10 -> 4×5 -> 2×3.
"""

import numpy as np
import pytest
from conftest import max_rel_error, require_torch, shared_path

import refstyle
from refstyle.paper.images import resize

LAYERS = ["conv1_1", "conv1_2", "pool1", "conv2_1", "conv3_1", "pool3", "conv4_2", "conv5_1", "conv5_3", "pool5"]
GRAD_LAYERS = ["conv1_2", "conv3_1", "conv4_2", "conv5_1", "pool5"]


@pytest.fixture(scope="module")
def weights():
    return refstyle.load_weights(shared_path("weights", "vgg16_hed_bsds500.caffemodel"))


@pytest.fixture(scope="module")
def x():
    rgb = refstyle.load_image(shared_path("images", "tubingen.jpg"))
    return refstyle.preprocess(resize(rgb, (57, 75)))


def torch_vgg(torch, weights, x, pooling, upto):
    """The VGG16 stack in PyTorch: every response, with autograd tracking x."""
    import torch.nn.functional as tF

    h, out = x, {}
    for name in refstyle.VGG16_LAYERS:
        if name.startswith("conv"):
            W, b = weights[name]
            h = tF.relu(tF.conv2d(h, torch.from_numpy(W), torch.from_numpy(b), padding=1))
        elif pooling == "avg":
            h = tF.avg_pool2d(h, 2, 2, ceil_mode=True)
        else:
            h = tF.max_pool2d(h, 2, 2, ceil_mode=True)
        out[name] = h
        if name == upto:
            return out


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_forward_and_backward_agree_with_pytorch(weights, x, pooling):
    torch = require_torch()
    torch.set_num_threads(2)
    net = refstyle.VGG(weights, arch="vgg16", pooling=pooling)
    F, cache = net.forward(x, LAYERS)
    assert F["pool5"].shape == (1, 512, 2, 3)

    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    Ft = torch_vgg(torch, weights, xt, pooling, "pool5")
    for name in LAYERS:
        err = max_rel_error(F[name], Ft[name].detach().numpy())
        assert err < 1e-4, (name, err)

    rng = np.random.default_rng(0)
    dF = {name: rng.standard_normal(F[name].shape).astype(np.float32) for name in GRAD_LAYERS}
    dx = net.backward(dF, cache)
    loss = sum((Ft[name] * torch.from_numpy(dF[name])).sum() for name in GRAD_LAYERS)
    loss.backward()
    err = max_rel_error(dx, xt.grad.numpy())
    assert err < 1e-4, err


def torch_objective(torch, weights, x, p, a, alpha, beta, content_layers, style_layers, w_l):
    """The paper's L_total written directly in PyTorch; autograd gives ∂L/∂x."""
    deepest = max(content_layers + style_layers, key=refstyle.VGG16_LAYERS.index)
    Fx = torch_vgg(torch, weights, x, "avg", deepest)
    with torch.no_grad():
        Fp = torch_vgg(torch, weights, p, "avg", deepest)
        Fa = torch_vgg(torch, weights, a, "avg", deepest)

    def G(F):
        F = F.reshape(F.shape[1], -1)
        return F @ F.T

    L_content = sum(0.5 * ((Fx[n] - Fp[n]) ** 2).sum() for n in content_layers)
    L_style = 0
    for n in style_layers:
        N, M = Fx[n].shape[1], Fx[n].shape[2] * Fx[n].shape[3]
        L_style = L_style + w_l * ((G(Fx[n]) - G(Fa[n])) ** 2).sum() / (4 * N**2 * M**2)
    return alpha * L_content + beta * L_style


def test_objective_agrees_with_pytorch(weights, x):
    from refstyle.paper.conventions import PAPER_STYLE_LAYERS
    from refstyle.paper.images import white_noise
    from refstyle.paper.objective import Objective, content_targets, style_targets

    torch = require_torch()
    torch.set_num_threads(2)
    net = refstyle.VGG(weights, arch="vgg16", pooling="avg")
    art = refstyle.preprocess(resize(refstyle.load_image(shared_path("images", "starry_night.jpg")), (47, 75)))
    noise = white_noise((57, 75), seed=3)
    content_layers, style_layers = ["conv4_2"], list(PAPER_STYLE_LAYERS)
    obj = Objective(
        net, content_targets(net, x, content_layers), style_targets(net, [art], style_layers), alpha=1e-3, beta=1.0
    )
    loss, grad = obj(noise)
    xt = torch.from_numpy(noise.copy()).requires_grad_(True)
    Lt = torch_objective(
        torch, weights, xt, torch.from_numpy(x), torch.from_numpy(art), 1e-3, 1.0, content_layers, style_layers, 0.2
    )
    Lt.backward()
    assert abs(loss - Lt.item()) / abs(Lt.item()) < 1e-4
    assert max_rel_error(grad, xt.grad.numpy()) < 1e-4
