"""Self-checks of the PyTorch peers in tests/peers.py (refstyle's side is compared elsewhere).

Small random VGG weights (a few filters per block), an even (32×32) and an odd size
(33×29; 35×33 for the notebook, whose forward needs 32 px to reach pool5), float64.
"""

import numpy as np
import pytest
from conftest import max_rel_error, numeric_gradient, require_torch

import peers

EVEN, ODD = (32, 32), (33, 29)
ODD_GATYS = (35, 33)


@pytest.fixture(scope="module")
def torch():
    return require_torch()


@pytest.fixture(scope="module")
def layers19():
    return peers.random_vgg_layers(np.random.default_rng(19), "vgg19")


@pytest.fixture(scope="module")
def layers16():
    return peers.random_vgg_layers(np.random.default_rng(16), "vgg16")


def _rgb(rng, size):
    return rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)


def images(peer, size, seed=0, n_styles=1):
    """content, styles, x in the peer's own space; x made continuous (no ties at pooling or |·| kinks)."""
    rng = np.random.default_rng(seed)
    space = peer.image_space_of
    content = space(_rgb(rng, size))
    styles = [space(_rgb(rng, size)) for _ in range(n_styles)]
    x = space(_rgb(rng, size))
    if peer is peers.pytorch_tutorial:
        x = np.clip(x, 0.05, 0.95) + rng.uniform(-0.01, 0.01, x.shape)
    else:
        x = x + rng.standard_normal(x.shape)
    return content, styles, x


def style_arg(peer, styles):
    """The tutorial takes one style image; the others a list of them."""
    return styles[0] if peer is peers.pytorch_tutorial else styles


def state_dict_for(peer, layers):
    return {
        peers.neural_style_pt: peers.neural_style_pt_state_dict,
        peers.neural_style_lua: peers.neural_style_lua_state_dict,
        peers.pytorch_tutorial: peers.pytorch_tutorial_state_dict,
        peers.gatys_pytorch: peers.gatys_pytorch_state_dict,
    }[peer](layers)


def call(torch, peer, layers, size, seed=0, **options):
    content, styles, x = images(peer, size, seed)
    style = style_arg(peer, styles)
    return peer(torch, state_dict_for(peer, layers), content, style, x, **options), (content, style, x)


PEERS = [peers.neural_style_pt, peers.neural_style_lua, peers.pytorch_tutorial, peers.gatys_pytorch]
SIZES = {peers.gatys_pytorch: (EVEN, ODD_GATYS)}


def peer_sizes():
    for peer in PEERS:
        for size in SIZES.get(peer, (EVEN, ODD)):
            yield pytest.param(peer, size, id=f"{peer.__name__}-{size[0]}x{size[1]}")


# --- every peer: finite values, and its gradient against central differences ------------------


@pytest.mark.parametrize("peer,size", list(peer_sizes()))
def test_finite_loss_and_gradient(torch, layers19, peer, size):
    info = {}
    (loss, grad), (_, _, x) = call(torch, peer, layers19, size, diagnostics=info)
    assert np.isfinite(loss) and loss > 0
    assert grad.shape == x.shape and grad.dtype == np.float64
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
    assert info["responses"] and all(np.all(np.isfinite(r)) for r in info["responses"].values())


# options that make the returned loss the function whose gradient is returned
FD_OPTIONS = {peers.neural_style_lua: {"include_tv_in_loss": True}}


@pytest.mark.parametrize("peer,size", list(peer_sizes()))
def test_gradient_matches_finite_differences(torch, layers19, peer, size):
    options = FD_OPTIONS.get(peer, {})
    content, styles, x = images(peer, size, seed=1)
    style = style_arg(peer, styles)
    sd = state_dict_for(peer, layers19)
    _, grad = peer(torch, sd, content, style, x, **options)
    coords = np.random.default_rng(2).choice(x.size, 6, replace=False)
    h = 1e-5 if peer is peers.pytorch_tutorial else 1e-3
    numeric = numeric_gradient(lambda z: peer(torch, sd, content, style, z, **options)[0], x, h, coords)
    assert max_rel_error(grad.reshape(-1)[coords], numeric.reshape(-1)[coords]) < 1e-6


@pytest.mark.parametrize("peer", [peers.neural_style_pt, peers.neural_style_lua])
def test_vgg16_weights(torch, layers16, peer):
    options = FD_OPTIONS.get(peer, {})
    content, style, x = images(peer, ODD, seed=3)
    sd = state_dict_for(peer, layers16)
    info = {}
    _, grad = peer(torch, sd, content, style, x, diagnostics=info, **options)
    assert "relu5_1" in info["responses"]
    coords = np.random.default_rng(4).choice(x.size, 4, replace=False)
    numeric = numeric_gradient(lambda z: peer(torch, sd, content, style, z, **options)[0], x, 1e-3, coords)
    assert max_rel_error(grad.reshape(-1)[coords], numeric.reshape(-1)[coords]) < 1e-6


# --- pooling: floor mode drops the last row and column at an odd size ---------------------------


def _shape(torch, peer, layers, size, name, **options):
    info = {}
    call(torch, peer, layers, size, diagnostics=info, **options)
    return info["responses"][name].shape[2:]


def test_floor_pooling_drops_the_last_row(torch, layers19):
    # 33×29 -> 16×14 after pool1 (floor), 17×15 with ceil
    assert _shape(torch, peers.neural_style_pt, layers19, ODD, "relu2_1") == (16, 14)
    assert _shape(torch, peers.neural_style_pt, layers19, ODD, "relu2_1", pooling="avg") == (16, 14)
    assert _shape(torch, peers.pytorch_tutorial, layers19, ODD, "conv_3") == (16, 14)
    assert _shape(torch, peers.gatys_pytorch, layers19, ODD_GATYS, "r21") == (17, 16)
    assert _shape(torch, peers.gatys_pytorch, layers19, ODD_GATYS, "r51") == (2, 2)  # 35→17→8→4→2, 33→16→8→4→2


def test_lua_max_pooling_is_ceil_and_its_avg_pooling_floor(torch, layers19):
    # loadcaffe's SpatialMaxPooling(...):ceil(); neural_style.lua's avg replacement has no :ceil()
    assert _shape(torch, peers.neural_style_lua, layers19, ODD, "relu2_1") == (17, 15)
    assert _shape(torch, peers.neural_style_lua, layers19, ODD, "relu5_1") == (3, 2)
    assert _shape(torch, peers.neural_style_lua, layers19, ODD, "relu2_1", pooling="avg") == (16, 14)
    assert _shape(torch, peers.neural_style_lua, layers19, ODD, "relu2_1", ceil_mode=False) == (16, 14)


def test_gatys_forward_needs_32_pixels(torch, layers19):
    # VGG.forward computes p5 whatever the taps: 29 -> 14 -> 7 -> 3 -> 1 -> pool5 fails
    with pytest.raises(RuntimeError, match="too small"):
        call(torch, peers.gatys_pytorch, layers19, ODD)


# --- the tutorial normalises inside the model, before conv1_1's zero padding --------------------


def test_tutorial_normalises_before_zero_padding(torch, layers19):
    import torch.nn.functional as F

    info = {}
    (_, _), (_, _, x) = call(torch, peers.pytorch_tutorial, layers19, ODD, diagnostics=info)
    W, b = (torch.from_numpy(a) for a in layers19["conv1_1"])
    xt = torch.from_numpy(np.clip(x, 0, 1))
    mean = torch.tensor(peers.TUTORIAL_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(peers.TUTORIAL_STD, dtype=torch.float64).view(1, 3, 1, 1)
    normalised_then_padded = F.conv2d(F.pad((xt - mean) / std, (1, 1, 1, 1)), W, b).numpy()
    padded_then_normalised = F.conv2d((F.pad(xt, (1, 1, 1, 1)) - mean) / std, W, b).numpy()
    conv_1 = info["responses"]["conv_1"]
    assert max_rel_error(conv_1, normalised_then_padded) < 1e-13
    assert max_rel_error(conv_1, padded_then_normalised) > 1e-3  # the check can tell them apart


def test_tutorial_taps_before_relu_and_clamps(torch, layers19):
    info = {}
    (loss, grad), (content, style, x) = call(torch, peers.pytorch_tutorial, layers19, EVEN, diagnostics=info)
    assert np.any(info["responses"]["conv_1"] < 0)  # conv output, before ReLU
    sd = peers.pytorch_tutorial_state_dict(layers19)
    outside = x.copy()
    outside[0, 0, :4, :4] = 1.7  # clamped to 1 before the evaluation
    clamped = np.clip(outside, 0, 1)
    a = peers.pytorch_tutorial(torch, sd, content, style, outside)
    b = peers.pytorch_tutorial(torch, sd, content, style, clamped)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])
    assert peers.tutorial_layer_names()["conv2_2"] == "conv_4"


# --- in-place ReLU effects at conv taps ---------------------------------------------------------


def test_pt_conv_tap_fails_in_backward_as_neural_style_pt(torch, layers19):
    with pytest.raises(RuntimeError, match="inplace"):
        call(torch, peers.neural_style_pt, layers19, EVEN, content_layers="conv4_2")


def test_lua_conv_tap_gradient_uses_the_post_relu_response(torch, layers19):
    sd = peers.neural_style_lua_state_dict(layers19)
    content, styles, x = images(peers.neural_style_lua, EVEN, seed=5)
    opts = {"content_layers": ("conv3_1",), "style_layers": ("relu1_1", "relu4_1"), "include_tv_in_loss": True}
    info = {}
    _, grad = peers.neural_style_lua(torch, sd, content, styles, x, diagnostics=info, **opts)
    assert info["aliased"] == ["conv3_1"]
    coords = np.random.default_rng(6).choice(x.size, 6, replace=False)
    f = lambda z: peers.neural_style_lua(torch, sd, content, styles, z, **opts)[0]  # noqa: E731
    numeric = numeric_gradient(f, x, 1e-3, coords)
    assert max_rel_error(grad.reshape(-1)[coords], numeric.reshape(-1)[coords]) > 1e-3
    # the same conv tap as the net's last layer: its ReLU is not in the net, and the gradient is exact
    opts["style_layers"] = ("relu1_1",)
    info = {}
    _, grad = peers.neural_style_lua(torch, sd, content, styles, x, diagnostics=info, **opts)
    assert info["aliased"] == [] and info["net"][-1] == "conv3_1"
    numeric = numeric_gradient(f, x, 1e-3, coords)
    assert max_rel_error(grad.reshape(-1)[coords], numeric.reshape(-1)[coords]) < 1e-6


def test_lua_layers_must_be_in_network_order(torch, layers19):
    with pytest.raises(ValueError, match="network order"):
        call(torch, peers.neural_style_lua, layers19, EVEN, style_layers="relu2_1,relu1_1")


# --- TV, normalisation and blending options -----------------------------------------------------


def test_lua_tv_is_in_the_gradient_but_not_the_loss(torch, layers19):
    (with_tv, g_tv), _ = call(torch, peers.neural_style_lua, layers19, EVEN)
    (without, g0), _ = call(torch, peers.neural_style_lua, layers19, EVEN, tv_weight=0.0)
    assert with_tv == without
    assert max_rel_error(g_tv, g0) > 1e-6


def test_pt_tv_is_l1_and_in_the_loss(torch, layers19):
    info = {}
    (loss, _), (_, _, x) = call(torch, peers.neural_style_pt, layers19, EVEN, diagnostics=info)
    tv = 1e-3 * (np.abs(np.diff(x, axis=2)).sum() + np.abs(np.diff(x, axis=3)).sum())
    assert info["tv"] == pytest.approx(tv, rel=1e-12)
    assert loss == pytest.approx(sum(info["content"].values()) + sum(info["style"].values()) + tv, rel=1e-12)


def test_pt_normalize_gradients_scales_a_layer_gradient_by_its_strength(torch, layers19):
    opts = {"style_layers": (), "tv_weight": 0.0, "content_weight": 5.0}
    (loss, grad), _ = call(torch, peers.neural_style_pt, layers19, EVEN, **opts)
    (loss_n, grad_n), _ = call(torch, peers.neural_style_pt, layers19, EVEN, normalize_gradients=True, **opts)
    assert loss_n == loss
    assert max_rel_error(grad_n, grad * 5.0**2 / (5.0 + 1e-8)) < 1e-12


def test_lua_normalize_gradients_changes_the_gradient_not_the_loss(torch, layers19):
    (loss, grad), _ = call(torch, peers.neural_style_lua, layers19, EVEN)
    (loss_n, grad_n), _ = call(torch, peers.neural_style_lua, layers19, EVEN, normalize_gradients=True)
    assert loss_n == loss and max_rel_error(grad_n, grad) > 1e-3


def test_pt_normalize_weights_divides_by_the_largest_target_side(torch, layers19):
    opts = {"style_layers": ("relu1_1",), "tv_weight": 0.0}
    info, info_n = {}, {}
    call(torch, peers.neural_style_pt, layers19, EVEN, diagnostics=info, **opts)
    call(torch, peers.neural_style_pt, layers19, EVEN, diagnostics=info_n, normalize_weights=True, **opts)
    assert info_n["content"]["relu4_2"] == pytest.approx(info["content"]["relu4_2"] / 8, rel=1e-12)  # max(1, 8, 4, 4)
    assert info_n["style"]["relu1_1"] == pytest.approx(info["style"]["relu1_1"] / 4, rel=1e-12)  # N = 4


@pytest.mark.parametrize("peer", [peers.neural_style_pt, peers.neural_style_lua])
def test_blending_identical_style_images_equals_one(torch, layers19, peer):
    content, styles, x = images(peer, ODD, seed=7)
    sd = state_dict_for(peer, layers19)
    one = peer(torch, sd, content, styles, x)
    two = peer(torch, sd, content, styles * 2, x, style_blend_weights=(3, 1))
    assert two[0] == pytest.approx(one[0], rel=1e-12)
    assert max_rel_error(two[1], one[1]) < 1e-12


def test_style_image_of_another_size(torch, layers19):
    content, _, x = images(peers.neural_style_pt, EVEN, seed=8)
    style = peers.neural_style_pt.image_space_of(_rgb(np.random.default_rng(9), (40, 36)))
    loss, grad = peers.neural_style_pt(torch, peers.neural_style_pt_state_dict(layers19), content, [style], x)
    assert np.isfinite(loss) and grad.shape == x.shape


# --- image spaces, key names, .pth files --------------------------------------------------------


def test_image_spaces():
    rgb = np.array([[[255, 128, 0]]], dtype=np.uint8)  # one pixel: R, G, B
    caffe = peers.neural_style_pt.image_space_of(rgb)[0, :, 0, 0]  # master: BGR, u, minus the mean pixel
    assert np.allclose(caffe, [0 - 103.939, 128 - 116.779, 255 - 123.68], atol=1e-12)
    before = peers.neural_style_pt_image_space(rgb, scale=256)[0, :, 0, 0]  # before cbcd023: ×256/255
    assert np.allclose(before, [0 * 256 / 255 - 103.939, 128 * 256 / 255 - 116.779, 256 - 123.68], atol=1e-12)
    assert np.array_equal(peers.neural_style_lua.image_space_of(rgb), peers.neural_style_pt_image_space(rgb, scale=256))
    assert np.allclose(peers.pytorch_tutorial.image_space_of(rgb)[0, :, 0, 0], [1.0, 128 / 255, 0.0])
    gatys = peers.gatys_pytorch.image_space_of(rgb)[0, :, 0, 0]  # BGR, u - mean: Caffe's input
    assert np.allclose(gatys, [0 - 103.939, 128 - 116.779, 255 - 123.68], atol=1e-5)
    assert peers.neural_style_pt.image_space_of(rgb).shape == (1, 3, 1, 1)


def test_key_names_and_saved_pth(torch, layers19, tmp_path):
    pt = peers.neural_style_pt_state_dict(layers19)
    assert list(pt)[:4] == ["features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias"]
    assert "features.5.weight" in pt and "features.34.weight" in pt  # conv2_1 after pool1; conv5_4
    assert "features.28.weight" in peers.neural_style_pt_state_dict(
        peers.random_vgg_layers(np.random.default_rng(0), "vgg16")
    )  # VGG16's conv5_3
    assert "0.weight" in peers.pytorch_tutorial_state_dict(layers19)
    assert list(peers.gatys_pytorch_state_dict(layers19))[:2] == ["conv1_1.weight", "conv1_1.bias"]
    path = tmp_path / "vgg19-test.pth"
    peers.save_state_dict(torch, pt, path)
    loaded = torch.load(str(path))
    assert list(loaded) == list(pt)
    for k, v in pt.items():
        assert loaded[k].dtype == torch.float64 and np.array_equal(loaded[k].numpy(), v)
    assert peers.gatys_layer_names()["relu4_2"] == "r42" and peers.gatys_layer_names()["pool5"] == "p5"
