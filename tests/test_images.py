"""Caffe preprocessing, its inverse, and reading images of every kind."""

import os
import warnings

import numpy as np
import pytest
from PIL import Image

import refstyle
from refstyle.errors import ImageError
from refstyle.paper.images import MEAN_BGR, resize, sized_inputs, to_uint8

rng = np.random.default_rng(3)


def test_preprocess_is_bgr_minus_the_vgg_mean_pixel():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (255, 128, 0)  # R, G, B
    x = refstyle.preprocess(rgb)
    assert x.shape == (1, 3, 2, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], [0 - 103.939, 128 - 116.779, 255 - 123.68], rtol=1e-6)
    np.testing.assert_allclose(x[0, :, 1, 2], [-103.939, -116.779, -123.68], rtol=1e-6)
    assert MEAN_BGR == (103.939, 116.779, 123.68)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_deprocess_is_the_exact_inverse(dtype):
    rgb = rng.integers(0, 256, (7, 5, 3)).astype(np.uint8)
    back = refstyle.deprocess(refstyle.preprocess(rgb, dtype))
    assert back.shape == (7, 5, 3)
    np.testing.assert_array_equal(to_uint8(back), rgb)
    tol = 1e-12 if dtype == "float64" else 2e-5
    assert np.max(np.abs(back - rgb)) < tol


def test_deprocess_does_not_clip_and_to_uint8_clips_and_rounds():
    x = np.zeros((1, 3, 1, 2))
    x[0, 2, 0, 0] = 200.0  # R channel far above 255 - 123.68
    rgb = refstyle.deprocess(x)
    assert rgb[0, 0, 0] == pytest.approx(323.68)
    np.testing.assert_array_equal(to_uint8(np.array([-3.0, 0.49, 0.5, 254.6, 300.0])), [0, 0, 0, 255, 255])


def _save(tmp_path, name, im):
    path = tmp_path / name
    im.save(path)
    return path


def test_load_image_modes(tmp_path):
    gray = Image.fromarray(np.array([[0, 100], [200, 255]], np.uint8), "L")
    a = refstyle.load_image(_save(tmp_path, "g.png", gray))
    assert a.shape == (2, 2, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a[..., 0], a[..., 2])
    rgba = Image.fromarray(np.array([[[255, 0, 0, 255], [0, 0, 255, 0]]], np.uint8), "RGBA")
    a = refstyle.load_image(_save(tmp_path, "a.png", rgba))
    np.testing.assert_array_equal(a[0], [[255, 0, 0], [255, 255, 255]])  # transparent over white
    pal = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    pal.putpalette([10, 20, 30, 40, 50, 60])
    a = refstyle.load_image(_save(tmp_path, "p.png", pal))
    np.testing.assert_array_equal(a[0], [[10, 20, 30], [40, 50, 60]])
    g16 = Image.fromarray(np.array([[0, 65535]], np.uint16))
    a = refstyle.load_image(_save(tmp_path, "g16.png", g16))
    np.testing.assert_array_equal(a[0, :, 0], [0, 255])


def test_load_image_errors(tmp_path):
    with pytest.raises(ImageError, match="no such image file"):
        refstyle.load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="is a folder"):
        refstyle.load_image(tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ImageError, match="not an image"):
        refstyle.load_image(tmp_path / "notes.txt")
    good = _save(tmp_path, "good.png", Image.fromarray(rng.integers(0, 256, (40, 40, 3)).astype(np.uint8)))
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageError, match="damaged or truncated"):
        refstyle.load_image(tmp_path / "cut.png")


def test_an_image_too_large_to_decode_safely(tmp_path, monkeypatch):
    path = _save(tmp_path, "big.png", Image.fromarray(np.zeros((64, 64, 3), np.uint8)))
    # over twice the limit Pillow raises an error, between once and twice it only warns (and decodes):
    # refstyle refuses both before decoding, with the pixel count and the limit, in one line of its own
    for limit in (1000, 3000):
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no warning of Pillow's leaks out
            with pytest.raises(ImageError) as e:
                refstyle.load_image(path)
        assert str(e.value) == (
            f"{path}: declares 4,096 pixels, over the {limit:,} that refstyle reads (Pillow's guard against "
            "decompression bombs); downscale it first, e.g. to 4096 pixels on its longer side (the network runs "
            "at --size anyway)"
        )


def test_resize_longer_side():
    rgb = rng.integers(0, 256, (30, 40, 3)).astype(np.uint8)
    assert refstyle.resize_longer(rgb, 20).shape == (15, 20, 3)
    assert refstyle.resize_longer(rgb, 41).shape == (31, 41, 3)  # 30.75 rounds to 31
    assert refstyle.resize_longer(rgb, 40) is rgb  # already at size: not resampled
    assert refstyle.resize_longer(rgb[:1], 4).shape == (1, 4, 3)  # never below 1 pixel
    assert resize(rgb, (7, 9)).shape == (7, 9, 3)
    with pytest.raises(ImageError, match="positive"):
        refstyle.resize_longer(rgb, 0)


def test_sized_inputs_follow_the_photograph():
    photo = rng.integers(0, 256, (30, 40, 3)).astype(np.uint8)
    wide = rng.integers(0, 256, (10, 50, 3)).astype(np.uint8)
    tall = rng.integers(0, 256, (20, 20, 3)).astype(np.uint8)
    p, (a, b) = sized_inputs(photo, [wide, tall], size=20)
    assert p.shape == (15, 20, 3) and a.shape == (4, 20, 3) and b.shape == (20, 20, 3)
    assert b is tall  # already at its target size: not resampled
    p, (a,) = sized_inputs(photo, [wide], size=40, style_scale=1.5)
    assert p is photo and a.shape == (12, 60, 3)
    p, (a,) = sized_inputs(photo, [wide], shape=(9, 31))  # the size of a given x
    assert p.shape == (9, 31, 3) and a.shape == (6, 31, 3)
    with pytest.raises(ImageError, match="--style-scale must be positive"):
        sized_inputs(photo, [wide], style_scale=0)


def test_save_image_is_atomic_and_keeps_text(tmp_path):
    path = tmp_path / "out.png"
    refstyle.save_image(np.full((4, 5, 3), 300.0), path, text={"seed": 7})
    with Image.open(path) as im:
        assert im.text["seed"] == "7"
        assert np.asarray(im).max() == 255
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the private mode of a temporary file
