"""The paper's normalised network (SPEC §3): mean responses of 1, responses divided per channel."""

import json
import os

import numpy as np
import pytest
from conftest import shared_path
from PIL import Image

import refstyle
from refstyle.app.cli import main
from refstyle.errors import RefstyleError
from refstyle.paper.normalize import mean_responses, normalize, normalize_over_images

rng = np.random.default_rng(8)


def _images(n=3):
    return [rng.integers(0, 256, (20 + 3 * k, 24, 3)).astype(np.uint8) for k in range(n)]


def _inputs(images, size, dtype="float64"):
    return [refstyle.preprocess(refstyle.resize_longer(rgb, size), dtype) for rgb in images]


@pytest.mark.parametrize("pooling", ["max", "avg"])
@pytest.mark.parametrize("arch", ["vgg19", "vgg16"])
def test_normalised_means_are_one_and_responses_are_divided(arch, pooling):
    weights = refstyle.generate_weights(arch, widths=(4, 5, 6, 6, 6), seed=5)
    images = _images()
    result = normalize_over_images(weights, images, size=24, pooling=pooling, dtype="float64")
    original = refstyle.VGG(weights, pooling=pooling, dtype="float64")
    normalised = refstyle.VGG(result.weights, pooling=pooling, dtype="float64")
    means = mean_responses(normalised, _inputs(images, 24))
    for name, m in means.items():
        alive = np.ones(m.shape, bool)
        alive[result.dead.get(name, [])] = False
        np.testing.assert_allclose(m[alive], 1.0, atol=1e-5, err_msg=name)
        assert (m[~alive] == 0).all()
    x = _inputs(images[:1], 24)[0]
    layers = [name for name in original.layers if name.startswith("conv")]
    F, F_norm = original.responses(x, layers), normalised.responses(x, layers)
    for name in layers:
        np.testing.assert_allclose(F_norm[name], F[name] / result.scales[name][None, :, None, None],
                                   rtol=1e-10, atol=1e-12 * np.abs(F[name]).max(), err_msg=name)
    assert result.weights.meta["normalized"]["pooling"] == pooling
    assert result.weights.meta["normalized"]["images"] == 3


def test_the_scales_follow_the_equation():
    """W'_ic = W_ic m^{l-1}_c / m^l_i and b'_i = b_i / m^l_i, with m^0 = 1; the input is not changed."""
    weights = refstyle.generate_weights("vgg19", widths=(2, 3, 3, 3, 3), depth="conv2_1", seed=1)
    means = {name: rng.random(W.shape[0]) + 0.5 for name, (W, b) in weights.items()}
    out = normalize(weights, means).weights
    W1, b1 = weights["conv1_1"]
    np.testing.assert_allclose(out["conv1_1"][0], W1 / means["conv1_1"][:, None, None, None], rtol=1e-15)
    np.testing.assert_allclose(out["conv1_1"][1], b1 / means["conv1_1"], rtol=1e-15)
    W2 = weights["conv1_2"][0]
    expected = W2 * means["conv1_1"][None, :, None, None] / means["conv1_2"][:, None, None, None]
    np.testing.assert_allclose(out["conv1_2"][0], expected, rtol=1e-15)
    assert weights["conv1_1"][0] is W1  # pure: the input weights are untouched
    with pytest.raises(RefstyleError, match="non-negative"):
        normalize(weights, dict(means, conv1_2=-means["conv1_2"]))
    with pytest.raises(RefstyleError, match="no mean response for conv2_1"):
        normalize(weights, {"conv1_1": means["conv1_1"], "conv1_2": means["conv1_2"]})


def test_a_filter_that_never_responds_is_left_alone_and_reported():
    weights = refstyle.generate_weights("vgg19", widths=(4, 4, 4, 4, 4), depth="conv2_2", seed=2)
    layers = dict(weights)
    W, b = layers["conv1_2"]
    b = b.copy()
    b[1] = -1e6  # filter 1 of conv1_2 is off everywhere
    layers["conv1_2"] = (W, b)
    weights = refstyle.Weights(layers, weights.meta)
    result = normalize_over_images(weights, _images(2), size=24, dtype="float64")
    assert result.dead == {"conv1_2": [1]} and result.scales["conv1_2"][1] == 1.0
    np.testing.assert_array_equal(result.weights["conv1_2"][1][1], -1e6 / 1.0)
    # the next layer's weights on that channel are only divided by its own filters' means
    W21, W21_new = weights["conv2_1"][0], result.weights["conv2_1"][0]
    np.testing.assert_allclose(W21_new[:, 1], W21[:, 1] / result.scales["conv2_1"][:, None, None], rtol=1e-14)
    assert result.weights.meta["normalized"]["dead"] == {"conv1_2": [1]}


def test_normalize_command_with_the_real_weights(tmp_path, capsys):
    folder = tmp_path / "calib"
    folder.mkdir()
    for name in ("tubingen.jpg", "starry_night.jpg"):
        Image.open(shared_path("images", name)).save(folder / name)
    (folder / "notes.txt").write_text("not an image: ignored")
    out = tmp_path / "norm.npz"
    src = str(shared_path("weights", "vgg16_hed_bsds500.caffemodel"))
    assert main(["weights", "normalize", src, str(out), "--images", str(folder), "--size", "48"]) == 0
    stdout = capsys.readouterr().out
    assert "normalised over 2 images at 48 px (max pooling)" in stdout and "conv5_3" in stdout
    loaded = refstyle.load_weights(out)
    record = loaded.meta["normalized"]
    assert loaded.meta["arch"] == "vgg16" and record["images"] == 2 and record["size"] == 48
    assert loaded.meta["original_format"] == "caffemodel"
    net = refstyle.VGG(loaded, pooling="max")
    rgbs = [refstyle.load_image(folder / n) for n in ("starry_night.jpg", "tubingen.jpg")]
    means = mean_responses(net, _inputs(rgbs, 48, "float32"))
    for name, m in means.items():
        alive = np.array(record["means"][name]) > 0
        np.testing.assert_allclose(m[alive], 1.0, rtol=2e-4, err_msg=name)  # float32 responses
    z = np.load(out)
    assert json.loads(str(z["meta"]))["normalized"]["pooling"] == "max"
    # errors: one line, no file
    for argv, message in [
        (["--images", str(tmp_path / "none")], "no such folder of images"),
        (["--images", str(tmp_path)], "no images in it"),
    ]:
        assert main(["weights", "normalize", src, str(tmp_path / "x.npz"), *argv]) == 1
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_normalize_over_several_folders_measures_them_together(tmp_path, monkeypatch, capsys):
    """``--images A B`` measures the images of both folders as one set (the means are over all of them),
    names the default output after both, and refuses a folder given twice."""
    monkeypatch.setenv("REFSTYLE_CACHE", str(tmp_path / "cache"))
    folders = [tmp_path / "photos", tmp_path / "paintings"]
    for k, folder in enumerate(folders):
        folder.mkdir()
        for j in range(2):
            Image.fromarray((rng.random((20 + 4 * j, 24, 3)) * 255 * (k + 1) / 2).astype(np.uint8)).save(
                folder / f"{j}.png")
    src = tmp_path / "small.npz"
    weights = refstyle.generate_weights("vgg19", widths=(4, 4, 4, 4, 4), seed=2, dtype="float32")
    refstyle.save_npz(weights, src)
    argv = ["weights", "normalize", str(src), "--images", *map(str, folders), "--size", "24"]
    assert main(argv) == 0
    out = tmp_path / "cache" / "weights" / "normalized" / "small-photos+paintings-24px-max.npz"
    assert "normalised over 4 images" in capsys.readouterr().out
    record = refstyle.load_weights(out).meta["normalized"]
    assert record["images"] == 4 and record["image_names"] == ["0.png", "1.png", "0.png", "1.png"]
    paths = [folder / f"{j}.png" for folder in folders for j in range(2)]
    expected = normalize_over_images(weights, [str(p) for p in paths], size=24).scales
    for name, m in expected.items():
        np.testing.assert_allclose(record["means"][name], m, rtol=1e-6, err_msg=name)
    one = normalize_over_images(weights, [str(p) for p in paths[:2]], size=24).scales
    assert not np.allclose(one["conv1_1"], expected["conv1_1"])  # the second folder counts
    assert main(["weights", "normalize", str(src), str(tmp_path / "y.npz"), "--images", str(folders[0]),
                 str(folders[0]) + "/"]) == 2
    assert "twice: give each folder once" in capsys.readouterr().err
    assert not (tmp_path / "y.npz").exists()


def test_the_weights_order_does_not_matter():
    """A mapping in another order than the network's (it loads and runs the same) is normalised the same."""
    weights = refstyle.generate_weights("vgg19", widths=(4, 4, 4, 4, 4), depth="conv2_2", seed=3)
    shuffled = refstyle.Weights({n: weights[n] for n in ("conv1_1", "conv2_1", "conv1_2", "conv2_2")}, weights.meta)
    means = {name: rng.random(4) + 0.5 for name in weights}
    a, b = normalize(weights, means).weights, normalize(shuffled, means).weights
    for name in weights:
        np.testing.assert_array_equal(a[name][0], b[name][0], err_msg=name)


def test_normalize_over_scikit_images_photographs_into_the_cache(tmp_path, monkeypatch, capsys):
    """``--images skimage:`` is the stated set SKIMAGE_PHOTOS; without OUT the .npz goes to the cache, its record
    naming the images."""
    from refstyle.paper.images import SKIMAGE_PHOTOS, resolve_image

    try:
        resolve_image("skimage:chelsea")
    except refstyle.RefstyleError as e:
        pytest.skip(str(e))
    monkeypatch.setenv("REFSTYLE_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "small.npz"
    refstyle.save_npz(refstyle.generate_weights("vgg19", widths=(4, 4, 4, 4, 4), seed=2, dtype="float32"), src)
    assert main(["weights", "normalize", str(src), "--images", "skimage:", "--size", "32"]) == 0
    out = tmp_path / "cache" / "weights" / "normalized" / "small-skimage-32px-max.npz"
    assert str(out) in capsys.readouterr().out
    record = refstyle.load_weights(out).meta["normalized"]
    assert record["images"] == len(SKIMAGE_PHOTOS) == 10 and record["size"] == 32
    assert record["image_names"] == [os.path.basename(resolve_image("skimage:" + n)) for n in SKIMAGE_PHOTOS]
    assert "over 10 images (astronaut.png, brick.png," in refstyle.weights.describe(out)
