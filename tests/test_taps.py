"""Where a loss taps the network (after or before the ReLU), pooling's rounding, and the input stage."""

import numpy as np
import pytest
from conftest import numeric_gradient

import refstyle
from refstyle.nn import layers as L
from refstyle.nn.inputs import CAFFE_INPUT, LUA_INPUT, RGB01_INPUT, TORCHVISION_INPUT, InputStage
from refstyle.weights.model import Weights

rng = np.random.default_rng(15)
KERNELS = ["reference", "fast", "im2col"]


def small(arch="vgg19", depth="conv3_1", widths=(4, 16, 16, 16, 16)):
    return refstyle.generate_weights(arch, widths=widths, depth=depth, seed=4, dtype="float64")


@pytest.mark.parametrize("kernels", KERNELS)
def test_a_tap_before_the_relu_is_the_convolutions_output(kernels):
    w = small()
    net = refstyle.VGG(w, kernels=kernels, dtype="float64")
    x = rng.standard_normal((1, 3, 13, 11)) * 50
    F, _ = net.forward(x, ["conv1_2:pre", "conv1_2"])
    z1, _ = L.conv_forward(x, *w["conv1_1"])
    z2, _ = L.conv_forward(np.maximum(z1, 0), *w["conv1_2"])
    np.testing.assert_allclose(F["conv1_2:pre"], z2, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(F["conv1_2"], np.maximum(z2, 0), rtol=1e-10, atol=1e-9)
    assert (F["conv1_2:pre"] < 0).any()  # before the ReLU: negative values are kept
    with pytest.raises(refstyle.LayerError, match="only a convolution"):
        net.forward(x, ["pool1:pre"])


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("taps", [["conv2_1:pre"], ["conv1_2:pre", "conv2_1"], ["conv2_1:pre", "conv2_1", "conv1_1"]])
def test_gradients_at_taps_before_and_after_the_relu(kernels, taps):
    net = refstyle.VGG(small(), kernels=kernels, dtype="float64")
    x = rng.standard_normal((1, 3, 9, 10)) * 30
    F, _ = net.forward(x, taps)
    dF = {t: rng.standard_normal(F[t].shape) for t in taps}

    def f(x_):
        G, _ = net.forward(x_, taps)
        return sum(float((np.asarray(G[t]) * dF[t]).sum()) for t in taps)

    _, cache = net.forward(x, taps)
    dx = net.backward(dF, cache)
    coords = rng.choice(x.size, 25, replace=False)
    numeric = numeric_gradient(f, x, h=1e-5, coords=coords).reshape(-1)[coords]
    np.testing.assert_allclose(np.asarray(dx).reshape(-1)[coords], numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_floor_rounding_drops_the_odd_last_row_and_column(kernels, pooling):
    w = small()
    x = rng.standard_normal((1, 3, 13, 11)) * 30
    ceil = refstyle.VGG(w, kernels=kernels, pooling=pooling, dtype="float64")
    floor = refstyle.VGG(w, kernels=kernels, pooling=pooling, dtype="float64", rounding="floor")
    assert ceil.forward(x, ["pool1"])[0]["pool1"].shape[2:] == (7, 6)
    F, cache = floor.forward(x, ["pool1", "conv2_1"])
    assert F["pool1"].shape[2:] == (6, 5)
    # the same as pooling the even crop with Caffe's rules
    h, _ = floor.forward(x, ["conv1_2"])
    expected, _ = L.pool_forward(np.ascontiguousarray(h["conv1_2"][:, :, :12, :10]), pooling)
    np.testing.assert_allclose(F["pool1"], expected, rtol=1e-12)
    dF = {"conv2_1": rng.standard_normal(F["conv2_1"].shape)}
    dx = floor.backward(dF, cache)

    def f(x_):
        return float((np.asarray(floor.forward(x_, ["conv2_1"])[0]["conv2_1"]) * dF["conv2_1"]).sum())

    coords = rng.choice(x.size, 20, replace=False)
    numeric = numeric_gradient(f, x, h=1e-5, coords=coords).reshape(-1)[coords]
    np.testing.assert_allclose(np.asarray(dx).reshape(-1)[coords], numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("src, dst", [(CAFFE_INPUT, TORCHVISION_INPUT), (RGB01_INPUT, TORCHVISION_INPUT),
                                      (LUA_INPUT, CAFFE_INPUT), (CAFFE_INPUT, CAFFE_INPUT)])
def test_the_input_stage_maps_the_same_pixels_and_its_backward_is_the_transpose(src, dst):
    p = rng.uniform(0, 255, (1, 3, 4, 5))  # BGR pixels

    def space(conv):
        order = ["BGR".index(ch) for ch in conv["channels"]]
        s = conv["range"][1] / 255
        std = np.asarray(conv.get("std", [1, 1, 1]))[None, :, None, None]
        return (s * p[:, order] - np.asarray(conv["mean"])[None, :, None, None]) / std

    stage = InputStage(src, dst)
    np.testing.assert_allclose(stage.forward(space(src)), space(dst), rtol=1e-12, atol=1e-12)
    assert stage.identity == (src is dst)
    x, y = rng.standard_normal((1, 3, 4, 5)), rng.standard_normal((1, 3, 4, 5))
    linear = stage.forward(x) - stage.forward(np.zeros_like(x))
    assert float((linear * y).sum()) == pytest.approx(float((x * stage.backward(y)).sum()), rel=1e-12)


def test_torchvision_weights_kept_unfolded_pad_with_zeros_in_their_own_space():
    """The input stage runs before conv1_1's padding: the border ring is that of a normalised image."""
    w = small(depth="conv1_1")
    tv = Weights(dict(w), {"arch": "vgg19", "input": TORCHVISION_INPUT})
    net = refstyle.VGG(tv, dtype="float64", image=RGB01_INPUT)
    x01 = rng.uniform(0, 1, (1, 3, 7, 8))
    normalised = (x01 - np.array(TORCHVISION_INPUT["mean"])[None, :, None, None]) / np.array(
        TORCHVISION_INPUT["std"])[None, :, None, None]
    z, _ = L.conv_forward(normalised, *w["conv1_1"])
    F, _ = net.forward(x01, ["conv1_1:pre"])
    np.testing.assert_allclose(F["conv1_1:pre"], z, rtol=1e-12, atol=1e-12)  # border included
