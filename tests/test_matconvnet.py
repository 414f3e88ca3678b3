"""The MatConvNet .mat reader, on files written here with scipy.io.savemat in the structure MatConvNet saves.

MatConvNet's importer (vlfeat/matconvnet utils/import-caffe.py) turns each Caffe blob
(out, in, h, w) into filters h × w × in × out, reverses the first layer's input channels
(BGR to RGB) and stores the mean pixel as normalization.averageImage (RGB). The files
here are made that way from generated Caffe weights, so the .mat must load as the same
network as the caffemodel of those weights.
"""

import numpy as np
import pytest
import scipy.io
from protowire import caffemodel

import refstyle
from refstyle.errors import WeightsError
from refstyle.nn.inputs import MEAN_BGR

MEAN_RGB = MEAN_BGR[::-1]


def small(arch="vgg19"):
    return refstyle.generate_weights(arch, widths=(2, 3, 4, 4, 4), seed=4, dtype="float32")


def _cell(*values):
    cell = np.empty((1, len(values)), dtype=object)
    for k, v in enumerate(values):
        cell[0, k] = v
    return cell


def matconvnet_layers(w, old_fields=False):
    """MatConvNet's ``layers``: a 1×N cell of structs, conv/relu/pool and the fc classifier as conv layers."""
    entries, first = [], True
    for name, (W, b) in w.items():
        F = W.transpose(2, 3, 1, 0)  # (out, in, h, w) -> h × w × in × out
        if first:
            F, first = F[:, :, ::-1, :], False  # the importer's BGR -> RGB of the first layer
        conv = {"name": name, "type": "conv", "pad": np.ones((1, 4)), "stride": np.ones((1, 2))}
        if old_fields:
            conv.update(filters=F, biases=b.reshape(1, -1))
        else:
            conv["weights"] = _cell(F, b.reshape(1, -1))
        entries.append(conv)
        entries.append({"name": "relu" + name[4:], "type": "relu"})
        if name in ("conv1_2", "conv2_2", "conv3_4", "conv4_4", "conv5_4", "conv3_3", "conv4_3", "conv5_3"):
            entries.append({"name": f"pool{name[4]}", "type": "pool", "method": "max", "pool": np.full((1, 2), 2.0)})
    out = w[list(w)[-1]][0].shape[0]
    entries.append({"name": "fc6", "type": "conv", "weights": _cell(np.ones((7, 7, out, 5), np.float32),
                                                                     np.zeros((1, 5), np.float32))})
    entries.append({"name": "prob", "type": "softmax"})
    return _cell(*entries)


def write_mat(path, w, layout="normalization", average=None, old_fields=False):
    """A MatConvNet SimpleNN file: ``layers`` with ``normalization`` (older) or ``meta.normalization`` (newer)."""
    if average is None:
        average = np.ones((6, 6, 3)) * np.array(MEAN_RGB)  # the importer's constant image
    normalization = {"averageImage": average, "keepAspect": 1, "interpolation": "bilinear",
                     "imageSize": np.array([[224.0, 224.0, 3.0]])}
    classes = {"name": np.array(["n01", "n02"], dtype=object), "description": np.array(["a", "b"], dtype=object)}
    data = {"layers": matconvnet_layers(w, old_fields)}
    if layout == "normalization":
        data.update(normalization=normalization, classes=classes)
    else:
        data["meta"] = {"normalization": normalization, "classes": classes, "inputs": {"name": "data"}}
    scipy.io.savemat(path, data)
    return path


@pytest.mark.parametrize("layout", ["normalization", "meta.normalization"])
def test_a_mat_file_loads_as_the_caffemodel_of_the_same_weights(tmp_path, layout):
    w = small()
    mat = write_mat(tmp_path / "imagenet-vgg-verydeep-19.mat", w, layout=layout)
    (tmp_path / "same.caffemodel").write_bytes(caffemodel(w, version=1))
    got = refstyle.load_weights(mat)  # the RGB input folded into conv1_1: Caffe's BGR
    ref = refstyle.load_weights(tmp_path / "same.caffemodel")
    assert list(got) == list(ref) == list(w) and got.meta["arch"] == "vgg19" and got.meta["format"] == "matconvnet"
    for name in w:
        np.testing.assert_allclose(got[name][0], ref[name][0], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(got[name][1], ref[name][1])
    assert got.meta["skipped"] == ["fc6"] and got.meta["checkpoint"] == {"layout": layout}


def test_the_stated_input_is_the_files_average_image(tmp_path):
    """Unfolded, the weights keep MatConvNet's RGB input, whose mean is the averageImage averaged over the image."""
    w = small("vgg16")
    average = np.stack([*np.meshgrid(np.arange(4.0), np.arange(4.0), indexing="ij"), np.zeros((4, 4))], -1)
    average = average + np.array([120.0, 110.0, 100.0])  # a varying image: its mean is (121.5, 111.5, 100)
    mat = write_mat(tmp_path / "v16.mat", w, average=average)
    got = refstyle.load_weights(mat, fold=False)
    assert got.meta["input"] == {"channels": "RGB", "range": [0, 255], "mean": [121.5, 111.5, 100.0]}
    np.testing.assert_array_equal(got["conv1_1"][0], w["conv1_1"][0][:, ::-1])  # RGB filters
    vector = write_mat(tmp_path / "v16b.mat", w, layout="meta", average=np.array([[123.68], [116.779], [103.939]]))
    assert refstyle.load_weights(vector, fold=False).meta["input"]["mean"] == list(MEAN_RGB)


def test_against_an_independent_reading_of_the_arrays(tmp_path):
    """scipy.io.loadmat's arrays, indexed here by hand, against the reader's (W, b), for the older fields too."""
    w = small()
    for old_fields in (False, True):
        mat = write_mat(tmp_path / f"x{old_fields}.mat", w, old_fields=old_fields)
        got = refstyle.load_weights(mat, fold=False)
        raw = scipy.io.loadmat(mat)["layers"][0]
        convs = [layer[0, 0] for layer in raw if layer[0, 0]["type"][0] == "conv" and layer[0, 0]["name"][0] != "fc6"]
        assert [c["name"][0] for c in convs] == list(got)
        for c in convs:
            F, b = (c["filters"], c["biases"]) if old_fields else (c["weights"][0, 0], c["weights"][0, 1])
            W = np.stack([[F[:, :, i, o] for i in range(F.shape[2])] for o in range(F.shape[3])])  # out, in, h, w
            np.testing.assert_array_equal(got[c["name"][0]][0], W)
            np.testing.assert_array_equal(got[c["name"][0]][1], b.ravel())


def test_bad_mat_files_get_one_line(tmp_path):
    w = small("vgg16")
    scipy.io.savemat(tmp_path / "nolayers.mat", {"net": np.ones(3), "meta": {"a": 1}})
    with pytest.raises(WeightsError, match=r"nolayers.mat: a .mat file without a layers variable, so not a "
                                           r"MatConvNet SimpleNN network \(its variables: meta, net\)"):
        refstyle.load_weights(tmp_path / "nolayers.mat")
    scipy.io.savemat(tmp_path / "dag.mat", {"vars": np.ones(1), "params": np.ones(1), "meta": {"a": 1}})
    with pytest.raises(WeightsError, match="a DagNN network"):
        refstyle.load_weights(tmp_path / "dag.mat")
    scipy.io.savemat(tmp_path / "nonorm.mat", {"layers": matconvnet_layers(w)})
    with pytest.raises(WeightsError, match="without normalization or meta.normalization.*--weights-input"):
        refstyle.load_weights(tmp_path / "nonorm.mat")
    write_mat(tmp_path / "badmean.mat", w, average=np.zeros((1, 2)))
    with pytest.raises(WeightsError, match=r"averageImage has shape \(1, 2\)"):
        refstyle.load_weights(tmp_path / "badmean.mat")
    layers = matconvnet_layers(w)
    layers[0, 0] = {"name": "conv1_1", "type": "conv", "weights": _cell(np.ones((3, 3), np.float32), np.ones(2))}
    scipy.io.savemat(tmp_path / "flat.mat", {"layers": layers, "normalization": {"averageImage": np.ones(3)}})
    with pytest.raises(WeightsError, match=r"layer conv1_1 has filters of shape \(3, 3\)"):
        refstyle.load_weights(tmp_path / "flat.mat")
    mat73 = tmp_path / "v73.mat"
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  4 12:00:00 2016 HDF5 schema 1.00 .".ljust(116)
    mat73.write_bytes((header + bytes(8) + b"\x00\x02IM").ljust(512, b"\0") + b"\x89HDF\r\n\x1a\n" + bytes(600))
    with pytest.raises(WeightsError, match=r"v73.mat: a MATLAB v7.3 .mat file, which SciPy cannot read.*'-v7'"):
        refstyle.load_weights(mat73)
    cut = tmp_path / "cut.mat"
    data = (tmp_path / "badmean.mat").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="cut.mat: a damaged or unreadable .mat file"):
        refstyle.load_weights(cut)


def test_weights_info_on_a_mat_file(tmp_path):
    mat = write_mat(tmp_path / "imagenet-vgg-verydeep-16.mat", small("vgg16"), layout="meta")
    text = refstyle.weights.describe(mat)
    assert "format: MatConvNet SimpleNN .mat" in text and "fits vgg16 (conv1_1..conv5_3)" in text
    assert "input:  {'channels': 'RGB', 'range': [0, 255], 'mean': [123.68, 116.779, 103.939]}" in text
