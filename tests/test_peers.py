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
    if peer in ZERO_ONE:
        x = np.clip(x, 0.05, 0.95) + rng.uniform(-0.01, 0.01, x.shape)
    else:
        x = x + rng.standard_normal(x.shape)
    return content, styles, x


ZERO_ONE = (peers.pytorch_tutorial, peers.tf_tutorial)  # image spaces in 0..1
ONE_STYLE = (peers.pytorch_tutorial, peers.tf_tutorial, peers.keras_example)  # take one style image, not a list


def style_arg(peer, styles):
    """The tutorials and Keras's example take one style image; the others a list of them."""
    return styles[0] if peer in ONE_STYLE else styles


def state_dict_for(peer, layers):
    """The peer's weights argument: its file's key names, or refstyle's layers for the TensorFlow-world peers."""
    return {
        peers.neural_style_pt: peers.neural_style_pt_state_dict,
        peers.neural_style_lua: peers.neural_style_lua_state_dict,
        peers.pytorch_tutorial: peers.pytorch_tutorial_state_dict,
        peers.gatys_pytorch: peers.gatys_pytorch_state_dict,
    }.get(peer, dict)(layers)


def call(torch, peer, layers, size, seed=0, **options):
    content, styles, x = images(peer, size, seed)
    style = style_arg(peer, styles)
    return peer(torch, state_dict_for(peer, layers), content, style, x, **options), (content, style, x)


PEERS = [peers.neural_style_pt, peers.neural_style_lua, peers.pytorch_tutorial, peers.gatys_pytorch,
         peers.tf_tutorial, peers.keras_example, peers.anishathalye]
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
    h = 1e-5 if peer in ZERO_ONE else 1e-3
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
    assert np.allclose(peers.tf_tutorial.image_space_of(rgb)[0, :, 0, 0], [1.0, 128 / 255, 0.0])  # RGB 0..1
    keras = peers.keras_example.image_space_of(rgb)[0, :, 0, 0]  # vgg19.preprocess_input: BGR, u - mean
    assert np.allclose(keras, [0 - 103.939, 128 - 116.779, 255 - 123.68], atol=1e-12)
    anish = peers.anishathalye_image_space(rgb, (120.0, 110.0, 100.0))[0, :, 0, 0]  # RGB, u - the .mat's mean
    assert np.allclose(anish, [255 - 120.0, 128 - 110.0, 0 - 100.0], atol=1e-12)
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


# --- the TensorFlow-world peers: each loss term as the published code writes it -------------------


def _gram(F):
    X = F.reshape(F.shape[1], -1)
    return X @ X.T


def _responses(torch, peer, layers, content, style, x, **options):
    info = {}
    peer(torch, layers, content, style, x, diagnostics=info, **options)
    return info


def test_tf_tutorial_terms(torch, layers19):
    peer = peers.tf_tutorial
    content, (style,), x = images(peer, ODD, seed=10)
    rng = np.random.default_rng(11)
    style = peer.image_space_of(_rgb(rng, (40, 36)))  # the style image may have another size
    info = _responses(torch, peer, layers19, content, style, x)
    P = _responses(torch, peer, layers19, content, style, content)["responses"]["block5_conv2"]
    A = _responses(torch, peer, layers19, style, style, style)["responses"]  # the style image's own responses
    Fx = info["responses"]
    assert info["content"]["block5_conv2"] == pytest.approx(1e4 * np.mean((Fx["block5_conv2"] - P) ** 2), rel=1e-12)
    for n in peers.KERAS_STYLE_LAYERS:  # G / M_l, the mean over N_l², 1e-2 / 5 each
        M, M_a = Fx[n].shape[2] * Fx[n].shape[3], A[n].shape[2] * A[n].shape[3]
        expected = 1e-2 / 5 * np.mean((_gram(Fx[n]) / M - _gram(A[n]) / M_a) ** 2)
        assert info["style"][n] == pytest.approx(expected, rel=1e-12)
    tv = 30 * (np.abs(np.diff(x, axis=2)).sum() + np.abs(np.diff(x, axis=3)).sum())  # L1, whole image, 0..1
    assert info["tv"] == pytest.approx(tv, rel=1e-12)
    assert Fx["block2_conv1"].shape[2:] == (16, 14)  # max pooling, floor ("valid")


def test_tf_tutorial_preprocesses_inside_the_model(torch, layers19):
    """×255, RGB->BGR, minus the mean, then the network: Caffe's input, as Keras's example feeds it."""
    content, (style,), x = images(peers.tf_tutorial, EVEN, seed=12)
    ours = _responses(torch, peers.tf_tutorial, layers19, content, style, x)["responses"]["block1_conv1"]
    caffe = lambda v: (v * 255.0)[:, ::-1] - np.reshape(peers.CAFFE_MEAN_BGR, (1, 3, 1, 1))  # noqa: E731
    keras = _responses(torch, peers.keras_example, layers19, caffe(content), caffe(style), caffe(x))
    assert max_rel_error(ours, keras["responses"]["block1_conv1"]) < 1e-13


def test_tf_tutorial_weights_divide_by_the_number_of_layers(torch, layers19):
    content, (style,), x = images(peers.tf_tutorial, EVEN, seed=13)
    five = _responses(torch, peers.tf_tutorial, layers19, content, style, x)
    one = _responses(torch, peers.tf_tutorial, layers19, content, style, x, style_layers=("block3_conv1",))
    assert one["style"]["block3_conv1"] == pytest.approx(5 * five["style"]["block3_conv1"], rel=1e-12)


def test_keras_example_terms(torch, layers19):
    peer = peers.keras_example
    content, (style,), x = images(peer, ODD, seed=14)
    info = _responses(torch, peer, layers19, content, style, x)
    P = _responses(torch, peer, layers19, content, style, content)["responses"]["block5_conv2"]
    A = _responses(torch, peer, layers19, content, style, style)["responses"]
    Fx = info["responses"]
    assert info["content"]["block5_conv2"] == pytest.approx(2.5e-8 * np.sum((Fx["block5_conv2"] - P) ** 2), rel=1e-12)
    size = ODD[0] * ODD[1]  # the image's H·W for every layer, and channels = 3
    for n in peers.KERAS_STYLE_LAYERS:
        expected = 1e-6 / 5 * np.sum((_gram(Fx[n]) - _gram(A[n])) ** 2) / (4.0 * 3**2 * size**2)
        assert info["style"][n] == pytest.approx(expected, rel=1e-12)
    a = (x[:, :, :-1, :-1] - x[:, :, 1:, :-1]) ** 2  # the top-left (H-1)×(W-1) cells only
    b = (x[:, :, :-1, :-1] - x[:, :, :-1, 1:]) ** 2
    assert info["tv"] == pytest.approx(1e-6 * np.sum((a + b) ** 1.25), rel=1e-12)


def test_keras_example_needs_one_size(torch, layers19):
    content, (style,), x = images(peers.keras_example, EVEN, seed=15)
    with pytest.raises(ValueError, match="one size"):
        peers.keras_example(torch, layers19, content, style[:, :, :-2], x)


@pytest.mark.parametrize("peer", [peers.tf_tutorial, peers.keras_example, peers.anishathalye])
def test_zero_loss_at_the_targets(torch, layers19, peer):
    content, (style,), _ = images(peer, ODD, seed=16)
    tv = {"tv_weight" if peer is peers.anishathalye else "total_variation_weight": 0.0}
    loss, grad = peer(torch, layers19, content, style_arg(peer, [content]), content, **tv)
    assert loss == 0.0 and not np.any(grad)


@pytest.mark.parametrize("peer", [peers.tf_tutorial, peers.keras_example, peers.anishathalye])
def test_layer_names_are_the_implementations(torch, layers19, peer):
    with pytest.raises(ValueError, match="layers"):
        call(torch, peer, {k: v for k, v in layers19.items() if k != "conv5_4"}, EVEN)  # VGG19 only
    if peer is not peers.anishathalye:
        with pytest.raises(ValueError, match="Keras VGG19 conv layers"):
            call(torch, peer, layers19, EVEN, style_layers=("relu1_1",))  # Keras's names, not Caffe's
    assert peers.keras_layer_names()["relu5_2"] == "block5_conv2"


def test_anishathalye_terms(torch, layers19):
    peer = peers.anishathalye
    content, (style,), x = images(peer, ODD, seed=17)
    style = peer.image_space_of(_rgb(np.random.default_rng(18), (41, 38)))
    info = _responses(torch, peer, layers19, content, [style], x, content_weight_blend=0.3)
    P = _responses(torch, peer, layers19, content, [style], content)["responses"]
    A = _responses(torch, peer, layers19, style, [style], style)["responses"]  # the style image's own responses
    Fx = info["responses"]
    for n, blend in (("relu4_2", 0.3), ("relu5_2", 0.7)):  # 5 · blend · mean (F − P)²
        assert info["content"][n] == pytest.approx(5 * blend * np.mean((Fx[n] - P[n]) ** 2), rel=1e-12)
    for n in peers.ANISHATHALYE_STYLE_LAYERS:  # 500 · 1/5 · Σ (G/NM − A/NM_a)² / N²
        N = Fx[n].shape[1]
        expected = 500 / 5 * np.sum((_gram(Fx[n]) / Fx[n].size - _gram(A[n]) / A[n].size) ** 2) / N**2
        assert info["style"][n] == pytest.approx(expected, rel=1e-12)
    H, W = ODD
    dy2, dx2 = np.diff(x, axis=2) ** 2, np.diff(x, axis=3) ** 2  # means over (H-1)·W·3 and H·(W-1)·3
    tv = 100 * (np.sum(dy2) / ((H - 1) * W * 3) + np.sum(dx2) / (H * (W - 1) * 3))
    assert info["tv"] == pytest.approx(tv, rel=1e-12)
    assert Fx["relu2_1"].shape[2:] == (17, 15) and Fx["relu5_1"].shape[2:] == (3, 2)  # SAME pooling: ceil


def test_anishathalye_content_blend_default_is_relu4_2_only(torch, layers19):
    info = {}
    call(torch, peers.anishathalye, layers19, EVEN, diagnostics=info)
    assert info["content"]["relu5_2"] == 0.0 and info["content"]["relu4_2"] > 0
    info0 = {}
    call(torch, peers.anishathalye, layers19, EVEN, diagnostics=info0, content_weight_blend=0.0)
    assert info0["content"]["relu4_2"] == 0.0 and info0["content"]["relu5_2"] > 0


def test_anishathalye_style_layer_weights(torch, layers19):
    assert np.allclose(peers.anishathalye_style_layer_weights(2.0), np.array([1, 2, 4, 8, 16]) / 31, atol=1e-15)
    assert peers.anishathalye_style_layer_weights(1.0) == [0.2] * 5
    one, two = {}, {}
    call(torch, peers.anishathalye, layers19, EVEN, diagnostics=one)
    call(torch, peers.anishathalye, layers19, EVEN, diagnostics=two, style_layer_weight_exp=2.0)
    for n, w in zip(peers.ANISHATHALYE_STYLE_LAYERS, [1, 2, 4, 8, 16]):
        assert two["style"][n] == pytest.approx(one["style"][n] * (w / 31) / (1 / 5), rel=1e-12)


def test_anishathalye_several_styles_are_several_losses_not_a_blended_target(torch, layers19):
    peer = peers.anishathalye
    content, styles, x = images(peer, EVEN, seed=19, n_styles=2)
    one, two = (peer(torch, layers19, content, [s], x, content_weight=0.0, tv_weight=0.0)[0] for s in styles)
    both = peer(torch, layers19, content, styles, x, content_weight=0.0, tv_weight=0.0, style_blend_weights=(3, 1))
    assert both[0] == pytest.approx(0.75 * one + 0.25 * two, rel=1e-12)
    same = peer(torch, layers19, content, styles[:1] * 2, x, content_weight=0.0, tv_weight=0.0)
    assert same[0] == pytest.approx(one, rel=1e-12)


def test_same_padding_average_pooling_counts_only_pixels_inside(torch):
    import torch.nn.functional as F

    pool = peers._pool_same(F, "avg")
    h = torch.arange(15, dtype=torch.float64).reshape(1, 1, 3, 5)  # rows 0-4, 5-9, 10-14
    expected = [[(0 + 1 + 5 + 6) / 4, (2 + 3 + 7 + 8) / 4, (4 + 9) / 2], [(10 + 11) / 2, (12 + 13) / 2, 14.0]]
    assert np.allclose(pool(h).numpy()[0, 0], expected, atol=1e-14)
    assert np.allclose(peers._pool_same(F, "max")(h).numpy()[0, 0], [[6, 8, 9], [11, 13, 14]])
    (_, grad), _ = call(torch, peers.anishathalye, peers.random_vgg_layers(np.random.default_rng(3)), ODD,
                        pooling="avg")
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("source", ["mat", "h5"])
def test_weights_files_kernels_give_tensorflows_correlation(torch, source):
    """tf.nn.conv2d correlates with a kernel (h, w, in, out): Keras's h5 stores that; vgg.py makes it from the
    .mat's by swapping its first two axes. The peers' conv with the converted W agrees."""
    import torch.nn.functional as F

    rng = np.random.default_rng(20)
    kernels, bias = rng.standard_normal((3, 3, 2, 4)), rng.standard_normal((1, 4))
    convert = peers.anishathalye_conv_from_mat if source == "mat" else peers.keras_conv_from_h5
    W, b = convert(kernels, bias)
    image = rng.standard_normal((1, 2, 5, 6))
    out = F.conv2d(torch.from_numpy(image), torch.from_numpy(W), torch.from_numpy(b), padding=1).numpy()
    tf_kernel = np.transpose(kernels, (1, 0, 2, 3)) if source == "mat" else kernels  # vgg.net_preloaded's
    padded = np.pad(image[0], ((0, 0), (1, 1), (1, 1)))
    y, x = 2, 3
    by_hand = np.einsum("ipq,pqio->o", padded[:, y : y + 3, x : x + 3], tf_kernel) + bias.reshape(-1)
    assert np.allclose(out[0, :, y, x], by_hand, atol=1e-12)
    assert b.shape == (4,)
